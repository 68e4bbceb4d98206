"""Warm provider pools on the devnet: real yagna, real providers, real payments.

Every test ends with the yagna audit of the ``golem`` fixture (nothing Approved, every activity
destroyed, every invoice accepted, the allocation released) and no golem_sync thread left.
"""
from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import threading
import time
from typing import Any, List

import pytest

from golem_sync import (GolemAgreementError, GolemCancelledError, GolemConfigError, GolemTimeoutError,
                        GolemUserError, JobState, ProviderPool, signals)

from hygiene import YagnaProbe
from test_job_api import IMAGE, Recorder, make_network, probe, recorder, requestor_threads  # noqa: F401 (fixtures)

pytestmark = pytest.mark.devnet


def audit(network, recorder: Recorder, probe: YagnaProbe) -> None:
    network.close()
    activities = {*recorder.ids("activity-created", "activity_id"), *recorder.ids("activity-destroyed", "activity_id")}
    probe.assert_clean(recorder.ids("agreement-created", "agreement_id"), activities, network.allocation_id,
                       invoiced=recorder.ids("agreement-approved", "agreement_id"))
    assert requestor_threads() == []


@pytest.fixture
def golem(golem_devnet, probe, recorder):
    network = make_network(golem_devnet).init()
    yield network
    audit(network, recorder, probe)


def where(ctx) -> tuple:
    return ctx.agreement_id, ctx.activity_id


def test_jobs_reuse_one_warm_lease_and_see_the_files_of_earlier_jobs(golem, recorder):
    with golem.create_pool(size=1) as pool:
        assert isinstance(pool, concurrent.futures.Executor)
        first = pool.submit(lambda ctx: (ctx.run("echo kept > /golem/work/note"), where(ctx))[1])
        a1 = first.result(timeout=60)
        second = pool.submit(lambda ctx: (ctx.run("cat /golem/work/note").stdout, where(ctx)))
        text, a2 = second.result(timeout=60)
        assert text == "kept\n" and a2 == a1  # same agreement, same activity
        for future in (first, second):
            job = future.job
            assert job.state is JobState.DONE and job.agreement_id == a1[0] and job.activity_id == a1[1]
            assert recorder.names_for(job) == ["job-created", "job-started", "job-succeeded", "job-ended"]
            assert golem.get_job_by_id(job.id) is job
        stats = pool.stats()
        assert (stats.leases_created, stats.activities_created, stats.jobs_run, stats.idle) == (1, 1, 2, 1)
    assert pool.closed and pool.stats().retired == {"shutdown": 1}
    assert len(recorder.ids("agreement-approved", "agreement_id")) == 1


def test_fresh_activity_gives_each_job_a_clean_activity_on_the_same_agreement(golem):
    with golem.create_pool(size=1, fresh_activity=True) as pool:
        a1 = pool.submit(lambda ctx: (ctx.run("echo x > /golem/work/note"), where(ctx))[1]).result(timeout=60)
        out, a2 = pool.submit(lambda ctx: (ctx.run("cat /golem/work/note 2>&1 || true").stdout,
                                           where(ctx))).result(timeout=60)
        assert a2[0] == a1[0] and a2[1] != a1[1]
        assert "No such file" in out
        stats = pool.stats()
        assert stats.leases_created == 1 and stats.activities_created >= 2


def test_setup_and_teardown_run_once_per_activity(golem):
    calls: List[str] = []
    with golem.create_pool(size=1, setup=lambda ctx: calls.append(f"setup {ctx.activity_id}"),
                           teardown=lambda ctx: calls.append(f"teardown {ctx.activity_id}")) as pool:
        ids = [pool.submit(lambda ctx: ctx.activity_id).result(timeout=60) for _ in range(3)]
    assert len(set(ids)) == 1
    assert calls == [f"setup {ids[0]}", f"teardown {ids[0]}"]


@pytest.mark.parametrize("how", ["worker raises", "command timeout", "job timeout"])
def test_a_failed_job_retires_the_activity_and_keeps_the_agreement(golem, recorder, how):
    def worker(ctx):
        if how == "worker raises":
            ctx.run("true")
            raise ValueError("worker bug")
        if how == "command timeout":
            return ctx.run("sleep 10", timeout=0.5)
        return ctx.run("sleep 10")

    job_options = {"timeout_sec": 1.0} if how == "job timeout" else {}
    with golem.create_pool(size=1) as pool:
        before = pool.submit(where).result(timeout=60)
        job = pool.create_job(job=job_options)
        job.start_work(worker)
        error = job.exception(timeout=60)
        assert isinstance(error, ValueError if how == "worker raises" else GolemTimeoutError), error
        after = pool.submit(where).result(timeout=60)
        assert after[0] == before[0] and after[1] != before[1]  # same agreement, new activity
        stats = pool.stats()
        assert stats.leases_created == 1 and stats.leases_retired == 0
    assert len(recorder.ids("agreement-approved", "agreement_id")) == 1


def test_cancel_mid_command_ends_the_job_within_a_second(golem):
    with golem.create_pool(size=1, min_size=1) as pool:
        pool.ready(timeout=60)
        started = threading.Event()

        def worker(ctx):
            proc = ctx.spawn("echo go; sleep 60")
            next(iter(proc.stdout))
            started.set()
            return proc.wait()

        job = pool.create_job()
        job.start_work(worker)
        assert started.wait(30)
        t0 = time.monotonic()
        job.cancel(timeout=30)
        took = time.monotonic() - t0
        assert job.state is JobState.CANCELLED and took < 1.0, took
        assert pool.submit(lambda ctx: ctx.run("echo ok").stdout).result(timeout=60) == "ok\n"


def test_cancel_while_waiting_for_a_lease(golem):
    with golem.create_pool(size=1) as pool:
        hold = threading.Event()
        busy = pool.submit(lambda ctx: hold.wait(30))
        waiting = pool.create_job()
        waiting.start_work(lambda ctx: "never")
        time.sleep(0.5)
        waiting.cancel(timeout=5)
        assert waiting.state is JobState.CANCELLED
        with pytest.raises(GolemCancelledError):
            waiting.result(0)
        hold.set()
        assert busy.result(timeout=30) is True


def test_cancel_while_negotiating_a_new_lease_frees_its_slot(golem):
    allow = threading.Event()
    with golem.create_pool(size=1, market={"proposal_filter": lambda p: allow.is_set()}) as pool:
        job = pool.create_job()
        job.start_work(lambda ctx: "never")
        time.sleep(1.0)  # negotiating: every offer is turned down for now
        assert pool.stats().starting == 1
        t0 = time.monotonic()
        job.cancel(timeout=10)
        assert job.state is JobState.CANCELLED and time.monotonic() - t0 < 2.0
        allow.set()
        assert pool.submit(lambda ctx: ctx.run("echo next").stdout).result(timeout=60) == "next\n"


def test_an_idle_lease_has_its_debit_notes_accepted_and_signals_tell_its_life(golem, recorder):
    with golem.create_pool(size=1, min_size=1, market={"debit_note_interval_sec": 1}) as pool:
        pool.ready(timeout=60)
        accepted = threading.Event()
        signals.debit_note_accepted.connect(lambda sender, **kw: accepted.set(), sender=pool, weak=False)
        assert accepted.wait(20)  # nobody holds the lease: the pool accepts its notes
        job = pool.submit(lambda ctx: ctx.run("echo hi").stdout).job
        assert job.result(timeout=60) == "hi\n"
        assert job.get_cost() > 0.0
        rows = [row for row in golem.cost_summary().rows if row.agreement_id == job.agreement_id]
        assert len(rows) == 1 and rows[0].job_id == pool.id
    names = recorder.names_for(pool, prefix="lease-") + recorder.names_for(pool, prefix="pool-")
    assert names == ["lease-created", "lease-acquired", "lease-released", "lease-retired", "pool-closed"]


def test_idle_leases_are_released_down_to_min_size_and_ready_waits_for_min_size(golem, probe, recorder):
    with golem.create_pool(size=2, min_size=1, idle_timeout_sec=1.0) as pool:
        pool.ready(timeout=60)
        assert pool.stats().idle >= 1
        barrier = threading.Barrier(2)
        futures = [pool.submit(lambda ctx: (barrier.wait(30), ctx.agreement_id)[1]) for _ in range(2)]
        agreements = {f.result(timeout=60) for f in futures}
        assert len(agreements) == 2
        retired = threading.Event()
        signals.lease_retired.connect(lambda sender, **kw: retired.set(), sender=pool, weak=False)
        assert retired.wait(30)
        time.sleep(0.5)
        stats = pool.stats()
        assert stats.retired.get("idle_timeout") == 1 and stats.idle == 1
        gone = [a for a in agreements if probe.agreement_state(a) == "Terminated"]
        assert len(gone) == 1


def test_shutdown_cancel_futures_cancels_queued_jobs_and_lets_the_running_one_finish(golem):
    pool = golem.create_pool(size=1)
    started = threading.Event()
    running = pool.submit(lambda ctx: (started.set(), ctx.run("sleep 1").stdout)[1])
    queued = [pool.submit(lambda ctx: "queued") for _ in range(3)]
    assert started.wait(60)
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(0) == ""
    assert all(f.cancelled() for f in queued)
    assert all(f.job.state is JobState.CANCELLED for f in queued)
    assert pool.closed
    with pytest.raises(RuntimeError):
        pool.submit(lambda ctx: None)
    with pytest.raises(GolemUserError):
        pool.create_job()


def test_shutdown_without_wait_lets_queued_jobs_run_and_close_finishes_it(golem):
    pool = golem.create_pool(size=1)
    futures = [pool.submit(lambda ctx, i=i: ctx.run(f"echo {i}").stdout) for i in range(3)]
    pool.shutdown(wait=False)
    assert [f.result(timeout=60) for f in futures] == ["0\n", "1\n", "2\n"]
    golem.close()
    assert pool.closed


def test_map_runs_items_in_order_through_two_leases(golem):
    with golem.create_pool(size=2) as pool:
        assert list(pool.map(lambda ctx, i: int(ctx.run(f"echo {i}").stdout), range(12), timeout=120)) == \
            list(range(12))
        assert pool.stats().leases_created <= 2


def test_two_pools_with_different_packages_run_at_once(golem):
    with golem.create_pool(size=1, work={"env": {"WHO": "a"}}) as a, \
            golem.create_pool(size=1, package={"min_mem_gib": 0.25}, work={"env": {"WHO": "b"}}) as b:
        fa = a.submit(lambda ctx: ctx.run("echo $WHO").stdout)
        fb = b.submit(lambda ctx: ctx.run("echo $WHO").stdout)
        assert (fa.result(timeout=60), fb.result(timeout=60)) == ("a\n", "b\n")
        assert fa.job.agreement_id != fb.job.agreement_id
        with pytest.raises(GolemConfigError, match="package"):
            a.create_job(package={"image_tag": IMAGE})


def test_close_with_busy_and_idle_leases_leaves_nothing_open(golem_devnet, probe, recorder):
    network = make_network(golem_devnet).init()
    pool = network.create_pool(size=2, min_size=2)
    pool.ready(timeout=60)
    started = threading.Event()
    busy = pool.submit(lambda ctx: (started.set(), ctx.run("sleep 60"))[1])
    assert started.wait(60)
    t0 = time.monotonic()
    audit(network, recorder, probe)  # close(): cancels the job, retires both leases
    assert time.monotonic() - t0 < 60
    assert busy.job.state is JobState.CANCELLED and pool.closed
    assert network.pools() == []


def test_pool_jobs_are_in_the_job_store_for_other_processes(golem_devnet, probe, recorder, tmp_path):
    path = tmp_path / "jobs.sqlite"
    network = make_network(golem_devnet, job_store=str(path)).init()
    try:
        with network.create_pool(size=1) as pool:
            job = pool.submit(lambda ctx: ctx.run("echo stored").stdout).job
            assert job.result(timeout=60) == "stored\n"
        code = ("import json, sys; from golem_sync.store import open_store; s = open_store(sys.argv[1]); "
                "r = s.get(sys.argv[2]); print(json.dumps([r.state, r.agreement_id])); s.close()")
        out = subprocess.run([sys.executable, "-c", code, str(path), job.id], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == ["done", job.agreement_id]
    finally:
        audit(network, recorder, probe)


def test_a_pool_on_a_closed_network_is_refused(golem_devnet):
    network = make_network(golem_devnet).init()
    network.close()
    with pytest.raises(GolemUserError):
        network.create_pool()


# -- misbehaving providers -------------------------------------------------------------------

def devnet_of(*specs):
    """A devnet of its own with these providers (for a module's fixture)."""
    from golem_sync.devnet.launcher import Devnet

    devnet = Devnet(providers=list(specs))
    try:
        yield devnet.up()
    finally:
        devnet.down()


def audited_network(info):
    """A network on ``info`` and a recorder; audited through yagna when the test ends."""
    rec = Recorder()
    network = make_network(info).init()
    try:
        yield network, rec
        audit(network, rec, YagnaProbe(info.api_url, info.app_key))
    finally:
        rec.close()


@pytest.fixture(scope="module")
def quitting_devnet():
    from golem_sync.devnet.provider import ProviderFaults, ProviderSpec

    yield from devnet_of(ProviderSpec(name="quitter", faults=ProviderFaults(terminate_agreement_after=1.5)),
                         ProviderSpec(name="steady"))


@pytest.fixture
def quitting(quitting_devnet):
    yield from audited_network(quitting_devnet)


def test_a_provider_that_ends_a_busy_lease_makes_the_job_retry_on_another_lease(quitting):
    network, recorder = quitting
    gone = threading.Event()
    signals.agreement_terminated.connect(lambda sender, **kw: gone.set(), weak=False)
    allow = lambda p: p.provider_name == "quitter" or (p.provider_name == "steady" and gone.is_set())  # noqa: E731
    with network.create_pool(size=2, market={"proposal_filter": allow}, job={"max_retries": 1}) as pool:
        future = pool.submit(lambda ctx: (ctx.run("sleep 4"), ctx.provider_name)[1])
        assert future.result(timeout=90) == "steady"
        assert recorder.names_for(future.job) == ["job-created", "job-started", "job-succeeded", "job-ended"]
        assert pool.stats().retired.get("provider_terminated") == 1


def test_a_provider_that_ends_an_idle_lease_is_dropped_quietly(quitting):
    network, recorder = quitting
    with network.create_pool(size=1, min_size=1, market={"allowed_provider_names": ["quitter"]}) as pool:
        retired = threading.Event()
        reasons: List[Any] = []
        signals.lease_retired.connect(lambda sender, **kw: (reasons.append(kw["reason"]), retired.set()),
                                      sender=pool, weak=False)
        pool.ready(timeout=60)
        assert retired.wait(30)
        assert reasons[0] == "provider_terminated"
        assert pool.stats().jobs_run == 0


# -- the provider's agreement rules (as ya-provider's) ---------------------------------------

@pytest.fixture(scope="module")
def strict_devnet():
    from golem_sync.devnet.provider import ProviderSpec

    yield from devnet_of(ProviderSpec(name="single", multi_activity=False),
                         ProviderSpec(name="strict", idle_agreement_timeout=3.0))


@pytest.fixture
def strict(strict_devnet):
    yield from audited_network(strict_devnet)


def test_a_single_activity_agreement_is_never_given_a_second_activity(strict):
    network, recorder = strict
    with network.create_pool(size=1, market={"allowed_provider_names": ["single"]}) as pool:
        first = pool.submit(where).result(timeout=60)
        failed = pool.submit(lambda ctx: 1 / 0)
        assert isinstance(failed.exception(timeout=60), ZeroDivisionError)
        after = pool.submit(where).result(timeout=60)
        assert after[0] != first[0]  # a new agreement, not a refused second activity
        assert pool.stats().retired.get("single_activity") == 1
    assert recorder.ids("agreement-terminated", "agreement_id") == []  # the provider never had to end one


def test_a_warm_lease_outlives_the_providers_idle_agreement_timeout(strict):
    network, recorder = strict
    with network.create_pool(size=1, min_size=1, idle_timeout_sec=None,
                             market={"allowed_provider_names": ["strict"]}) as pool:
        before = pool.submit(where).result(timeout=60)
        assert isinstance(pool.submit(lambda ctx: 1 / 0).exception(timeout=60), ZeroDivisionError)
        time.sleep(4.5)  # longer than the provider's 3 s idle-agreement timeout, twice over the renewal
        after = pool.submit(where).result(timeout=60)
        assert after[0] == before[0] and after[1] != before[1]
    assert recorder.ids("agreement-terminated", "agreement_id") == []


def test_a_lease_is_retired_before_its_agreement_expires(strict):
    network, recorder = strict
    with network.create_pool(size=1, min_size=1, market={"expiration_sec": 20,
                                                         "allowed_provider_names": ["strict"]}) as pool:
        retired = threading.Event()
        reasons: List[str] = []
        signals.lease_retired.connect(lambda sender, **kw: (reasons.append(kw["reason"]), retired.set()),
                                      sender=pool, weak=False)
        pool.ready(timeout=60)
        assert retired.wait(30)
        assert reasons[0] == "expiring"
        assert pool.submit(lambda ctx: ctx.run("echo still").stdout).result(timeout=60) == "still\n"
    assert recorder.ids("agreement-terminated", "agreement_id") == []
