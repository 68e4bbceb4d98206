"""Warm provider pools (issue #11): ``golem.create_pool()`` and ``ProviderPool`` on the stateful fake yagna.

What a user relies on: option errors that name the option, Executor semantics (submit, map,
shutdown, future cancel), one agreement and one activity reused by many jobs that still behave as
jobs (own id, signals, agreement id, cost share), retirement of a lease's activity or of the whole
lease for the right reasons, idle eviction down to ``min_size``, ``ready()``, queued jobs holding
no thread, cancel and startup timeouts while waiting for a lease, and nothing left in yagna after
``golem.close()``. Whole-pool behaviour against real providers is in tests/devnet.

The fake's offers carry ``golem.srv.caps.multi-activity`` here (as ya-provider's do), so a lease
may make a new activity on its agreement; one test takes it away.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from golem_sync import signals
from golem_sync._state import JobState
from golem_sync.errors import (GolemAgreementError, GolemCancelledError, GolemConfigError, GolemTimeoutError,
                               GolemUserError)

ACTIVITY_CREATE = "/activity-api/v1/activity"
AGREEMENT_CREATE = "/market-api/v1/agreements"
WAIT = 10.0  # an upper bound for things that take milliseconds on the fake


_receivers: List["tuple[Any, Callable[..., Any]]"] = []  # (signal, receiver) connected by this test


@pytest.fixture(autouse=True)
def multi_activity(fake_yagna: Any) -> Iterator[None]:
    fake_yagna.offer_props["golem.srv.caps.multi-activity"] = True
    yield
    while _receivers:
        signal, receiver = _receivers.pop()
        signal.disconnect(receiver)


# -- helpers --------------------------------------------------------------------------------------

def activity_creates(fake: Any) -> int:
    return sum(1 for path in fake.calls("POST") if path == ACTIVITY_CREATE)


def agreement_creates(fake: Any) -> int:
    return sum(1 for path in fake.calls("POST") if path == AGREEMENT_CREATE)


def live_agreements(fake: Any) -> List[str]:
    return [a for a, state in fake.agreements.items() if state in ("Proposal", "Pending", "Approved")]


def live_activities(fake: Any) -> List[str]:
    return [a for a, alive in fake.activities.items() if alive]


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """For states no signal announces (a fake's table, a stats counter): a short bounded poll."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def timed(fn: Callable[[], Any]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def connect(signal: Any, receiver: Callable[..., Any], sender: Any = None) -> None:
    """Connect ``receiver`` (to ``sender``'s signals only, if given) until the test ends."""
    if sender is None:
        signal.connect(receiver, weak=False)
    else:
        signal.connect(receiver, sender=sender, weak=False)
    _receivers.append((signal, receiver))


def on_signal(signal: Any, sender: Any = None) -> "tuple[threading.Event, List[Dict[str, Any]]]":
    """An Event set (and a list of kwargs appended) every time ``signal`` is sent (by ``sender``)."""
    fired = threading.Event()
    seen: List[Dict[str, Any]] = []

    def receiver(_sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)
        fired.set()

    connect(signal, receiver, sender)
    return fired, seen


def ok(ctx: Any) -> str:
    return str(ctx.run("echo hi").stdout)


# -- create_pool options ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,name", [
    ({"size": 0}, "size"),
    ({"size": -1}, "size"),
    ({"size": 1.5}, "size"),
    ({"size": True}, "size"),
    ({"size": "2"}, "size"),
    ({"size": 2, "min_size": 3}, "min_size"),
    ({"min_size": -1}, "min_size"),
    ({"min_size": 1.0}, "min_size"),
    ({"idle_timeout_sec": 0}, "idle_timeout_sec"),
    ({"idle_timeout_sec": -1.0}, "idle_timeout_sec"),
    ({"idle_timeout_sec": "x"}, "idle_timeout_sec"),
    ({"idle_timeout_sec": True}, "idle_timeout_sec"),
    ({"fresh_activity": 1}, "fresh_activity"),
    ({"fresh_activity": "yes"}, "fresh_activity"),
    ({"setup": 42}, "setup"),
    ({"setup": "echo"}, "setup"),
    ({"teardown": [print, 3]}, "teardown"),
    ({"vpn": {"enabled": True}}, "vpn"),
    ({"markets": {"expiration_sec": 600}}, "markets"),
    ({"payment": {"budget": 2}}, "payment"),
])
def test_create_pool_option_errors_name_the_option(golem, fake_yagna, kwargs, name):
    g = golem()
    threads_before = {t.ident for t in threading.enumerate()}
    own = name in ("size", "min_size", "idle_timeout_sec", "fresh_activity", "setup", "teardown")
    with pytest.raises(GolemConfigError, match=rf"^{name}\b" if own else rf"\b{name}\b"):
        g.create_pool(**kwargs)
    assert g.pools() == []
    assert not [t.name for t in threading.enumerate()
                if t.ident not in threads_before and t.name.startswith("golem-pool-")], "a refused pool started threads"


def test_create_pool_accepts_the_job_sections_and_a_list_of_hooks(golem, fake_yagna):
    calls: List[str] = []
    g = golem()
    pool = g.create_pool(size=1, market={"expiration_sec": 900}, agreement={"approval_timeout_sec": 30},
                         activity={"execute_timeout_sec": 60}, work={"env": {"A": "1"}}, job={"max_retries": 1},
                         setup=[lambda ctx: calls.append("s1"), lambda ctx: calls.append("s2")],
                         vpn={"enabled": False})
    assert pool.submit(ok).result(timeout=WAIT) == "out\n"
    assert calls == ["s1", "s2"]
    assert g.pools() == [pool]


@pytest.mark.parametrize("section,value", [
    ("package", {"image_hash": "other", "image_url": "http://x/other"}),
    ("market", {"expiration_sec": 600}),
    ("agreement", {"approval_timeout_sec": 5}),
    ("activity", {"execute_timeout_sec": 5}),
    ("vpn", {"enabled": True}),
])
def test_pool_jobs_cannot_set_the_sections_of_the_pool_s_leases(golem, fake_yagna, section, value):
    g = golem()
    pool = g.create_pool(size=1)
    with pytest.raises(GolemConfigError, match=rf"'{section}'"):
        pool.create_job(**{section: value})
    job = pool.create_job()
    with pytest.raises(GolemConfigError, match=rf"'{section}'"):
        job.start_work(ok, **{section: value})
    assert job.state is JobState.NEW  # refused before anything was started
    assert not fake_yagna.calls("POST", "/demands")
    job.start_work(ok)  # still a usable job (and one close() need not wait for)
    assert job.wait_for_result(timeout=WAIT) == "out\n"


def test_pool_jobs_cannot_change_the_warm_activity_s_env(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    with pytest.raises(GolemConfigError, match=r"work\.env"):
        pool.create_job(work={"env": {"A": "1"}})
    job = pool.create_job()
    with pytest.raises(GolemConfigError, match=r"work\.env"):
        job.start_work(ok, work={"env": {"A": "1"}})
    assert job.state is JobState.NEW
    job.start_work(ok)
    assert job.wait_for_result(timeout=WAIT) == "out\n"


def test_pool_jobs_may_set_work_and_job_options(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    seen: List[str] = []
    job = pool.create_job(work={"setup": [lambda ctx: seen.append("job setup")]}, job={"timeout_sec": 30})
    job.start_work(ok, job={"max_retries": 2}, work={"teardown": [lambda ctx: seen.append("job teardown")]})
    assert job.wait_for_result(timeout=WAIT) == "out\n"
    assert seen == ["job setup", "job teardown"]


# -- the Executor -----------------------------------------------------------------------------------

def test_a_pool_is_an_executor_whose_submit_passes_the_context_and_arguments(golem, fake_yagna):
    from golem_sync import Job, WorkContext

    g = golem()
    pool = g.create_pool(size=1)
    assert isinstance(pool, concurrent.futures.Executor)
    got: List[Any] = []

    def worker(ctx: Any, a: int, b: int = 0, *, c: str) -> str:
        got.append((type(ctx), a, b, c))
        return f"{a}-{b}-{c}"

    future = pool.submit(worker, 1, b=2, c="x")
    assert isinstance(future, concurrent.futures.Future)
    assert isinstance(future.job, Job)
    assert future.result(timeout=WAIT) == "1-2-x"
    assert got == [(WorkContext, 1, 2, "x")]
    assert future.job.state is JobState.DONE and future.job.results == "1-2-x"
    assert g.get_job_by_id(future.job.id) is future.job
    with pytest.raises(TypeError):
        pool.submit("not callable")  # type: ignore[arg-type]


def test_a_future_is_running_while_its_worker_runs_and_then_cannot_be_cancelled(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    inside, release, release_gate = threading.Event(), threading.Event(), threading.Event()

    def worker(ctx: Any) -> str:
        inside.set()
        release.wait(WAIT)
        return "done"

    gate = pool.submit(lambda ctx: release_gate.wait(WAIT) and "first")  # holds the only lease
    future = pool.submit(worker)
    assert not future.running()  # queued behind the busy lease
    release_gate.set()
    assert gate.result(timeout=WAIT) == "first"
    assert inside.wait(WAIT)
    assert future.running() and not future.done()
    assert future.cancel() is False  # as ThreadPoolExecutor's: a running future is not cancelled
    release.set()
    assert future.result(timeout=WAIT) == "done"
    assert not future.running() and future.done()


def test_a_worker_s_error_reaches_the_future(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    boom = ValueError("boom")

    def worker(ctx: Any) -> None:
        raise boom

    future = pool.submit(worker)
    assert future.exception(timeout=WAIT) is boom
    with pytest.raises(ValueError, match="boom"):
        future.result(0)
    assert future.job.state is JobState.REJECTED and future.job.error is boom


def test_map_returns_the_results_in_the_order_of_the_items(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=2)
    last_done = threading.Event()
    finished: List[int] = []

    def worker(ctx: Any, n: int) -> int:
        if n == 0:  # the first item finishes last
            assert last_done.wait(WAIT)
        finished.append(n)
        if n == 3:
            last_done.set()
        return n * 10

    assert list(pool.map(worker, range(4), timeout=WAIT)) == [0, 10, 20, 30]
    assert finished[-1] == 0 and sorted(finished) == [0, 1, 2, 3]
    assert agreement_creates(fake_yagna) <= 2


def test_map_s_timeout_raises_timeout_error(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    gate = threading.Event()
    results = pool.map(lambda ctx, n: gate.wait(WAIT), [1], timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        list(results)
    assert time.monotonic() - t0 < 2.0
    gate.set()


def test_with_pool_shuts_it_down_and_releases_its_leases(golem, fake_yagna):
    g = golem()
    closed, _ = on_signal(signals.pool_closed)
    with g.create_pool(size=1) as pool:
        assert pool.submit(ok).result(timeout=WAIT) == "out\n"
        assert live_agreements(fake_yagna)
    assert pool.closed and closed.is_set()
    assert g.pools() == []
    assert not live_agreements(fake_yagna) and not live_activities(fake_yagna)
    stats = pool.stats()
    assert (stats.idle, stats.busy, stats.leases_retired, dict(stats.retired)) == (0, 0, 1, {"shutdown": 1})
    with pytest.raises(RuntimeError):
        pool.submit(ok)
    with pytest.raises(GolemUserError):
        pool.create_job()


def test_shutdown_without_wait_returns_at_once_and_still_releases_everything(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    gate = threading.Event()
    future = pool.submit(lambda ctx: gate.wait(WAIT) and ok(ctx))
    assert wait_until(lambda: pool.stats().busy == 1)
    t0 = time.monotonic()
    pool.shutdown(wait=False)
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(RuntimeError):
        pool.submit(ok)
    assert not pool.closed  # a running job finishes first
    gate.set()
    assert future.result(timeout=WAIT) == "out\n"
    pool.shutdown(wait=True)
    assert pool.closed
    assert not live_agreements(fake_yagna) and not live_activities(fake_yagna)


# -- reuse ----------------------------------------------------------------------------------------

def test_sequential_jobs_reuse_one_agreement_and_one_activity_and_stay_jobs(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    order: List[Any] = []
    jobs = []
    for n in range(5):
        job = pool.create_job()
        for sig in (signals.job_created, signals.job_started, signals.job_succeeded, signals.job_failed,
                    signals.job_ended):
            connect(sig, lambda sender, _n=sig.name, **kw: order.append((sender.id, _n)), job)
        job.start_work(lambda ctx, n=n: (ok(ctx), n))
        assert job.wait_for_result(timeout=WAIT) == ("out\n", n)
        jobs.append(job)
    assert agreement_creates(fake_yagna) == 1
    assert activity_creates(fake_yagna) == 1
    (agreement,) = fake_yagna.agreements
    (activity,) = fake_yagna.activities
    assert len({job.id for job in jobs}) == 5
    assert all(job.agreement_id == agreement and job.activity_id == activity for job in jobs)
    assert all(job.provider is not None and job.provider.id == "0xprov" for job in jobs)
    expected = [(job.id, name) for job in jobs
                for name in ("job-created", "job-started", "job-succeeded", "job-ended")]
    assert order == expected
    stats = pool.stats()
    assert (stats.jobs_run, stats.leases_created, stats.activities_created, stats.idle) == (5, 1, 1, 1)
    assert fake_yagna.agreements[agreement] == "Approved" and fake_yagna.activities[activity]


def test_lease_signals_tell_the_lease_s_life(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    events: List[Any] = []
    for sig in (signals.lease_created, signals.lease_acquired, signals.lease_released, signals.lease_retired):
        connect(sig, lambda sender, _n=sig.name, **kw: events.append((_n, kw)), pool)
    future = pool.submit(ok)
    future.result(timeout=WAIT)
    pool.shutdown(wait=True)
    assert [name for name, _ in events] == ["lease-created", "lease-acquired", "lease-released", "lease-retired"]
    (agreement,) = fake_yagna.agreements
    assert all(kw["lease"].agreement_id == agreement for _, kw in events)
    assert events[1][1]["job"] is future.job
    assert events[2][1]["success"] is True
    assert events[3][1]["reason"] == "shutdown"


def test_files_and_setup_stay_with_the_lease_setup_runs_once_per_activity(golem, fake_yagna):
    setups: List[str] = []
    teardowns: List[str] = []
    g = golem()
    pool = g.create_pool(size=1, setup=lambda ctx: setups.append(ctx.activity_id),
                         teardown=lambda ctx: teardowns.append(ctx.activity_id))
    for _ in range(3):
        pool.submit(ok).result(timeout=WAIT)
    (activity,) = fake_yagna.activities
    assert setups == [activity] and teardowns == []
    pool.shutdown(wait=True)
    assert teardowns == [activity]  # a graceful release runs the pool's teardown once


def test_the_pool_s_work_env_is_deployed_on_its_activities(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1, work={"env": {"POOL_VAR": "42"}})
    pool.submit(ok).result(timeout=WAIT)
    bodies = [call.request.body for call in fake_yagna.rsps.calls if call.request.url.endswith("/exec")]
    texts = [body.decode() if isinstance(body, bytes) else str(body) for body in bodies]
    deploys = [text for text in texts if "deploy" in text]
    assert len(deploys) == 1 and "POOL_VAR" in deploys[0]


# -- retirement -----------------------------------------------------------------------------------

def test_a_worker_that_raises_retires_the_activity_not_the_agreement(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    first = pool.submit(lambda ctx: ctx.activity_id)
    first_activity = first.result(timeout=WAIT)
    boom = RuntimeError("worker failed")

    def bad(ctx: Any) -> None:
        raise boom

    failed = pool.submit(bad)
    assert failed.exception(timeout=WAIT) is boom
    assert failed.job.state is JobState.REJECTED and failed.job.error is boom
    after = pool.submit(lambda ctx: (ctx.activity_id, ctx.agreement_id))
    activity, agreement = after.result(timeout=WAIT)
    assert activity != first_activity
    assert fake_yagna.activities[first_activity] is False  # its state was unknown: destroyed
    assert fake_yagna.activity_agreement[activity] == agreement == first.job.agreement_id
    assert agreement_creates(fake_yagna) == 1
    stats = pool.stats()
    assert (stats.activities_created, stats.leases_created, stats.leases_retired) == (2, 1, 0)
    assert stats.jobs_run == 3


def test_a_cancelled_job_retires_the_activity_and_the_next_job_gets_a_new_one(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    started = threading.Event()

    def long(ctx: Any) -> None:
        fake_yagna.batch_delay = 30.0
        started.set()
        ctx.run("sleep 30")

    future = pool.submit(long)
    assert started.wait(WAIT)
    first_activity = future.job.activity_id
    t0 = time.monotonic()
    future.job.cancel(timeout=WAIT)
    assert time.monotonic() - t0 < 2.0
    assert future.job.state is JobState.CANCELLED
    assert isinstance(future.exception(timeout=WAIT), GolemCancelledError)
    fake_yagna.batch_delay = 0.0
    after = pool.submit(lambda ctx: ctx.activity_id)
    assert after.result(timeout=WAIT) != first_activity
    assert fake_yagna.activities[first_activity] is False
    stats = pool.stats()
    assert (stats.activities_created, stats.leases_created, stats.leases_retired) == (2, 1, 0)


def test_a_job_timeout_retires_the_activity(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    pool.submit(ok).result(timeout=WAIT)
    first_activity = next(iter(fake_yagna.activities))

    def long(ctx: Any) -> None:
        fake_yagna.batch_delay = 30.0
        ctx.run("sleep 30")

    job = pool.create_job(job={"timeout_sec": 0.3})
    job.start_work(long)
    with pytest.raises(GolemTimeoutError) as caught:
        job.wait_for_result(timeout=WAIT)
    assert caught.value.phase == "job"
    fake_yagna.batch_delay = 0.0
    assert pool.submit(lambda ctx: ctx.activity_id).result(timeout=WAIT) != first_activity
    assert fake_yagna.activities[first_activity] is False
    assert pool.stats().leases_created == 1


def test_fresh_activity_gives_each_job_a_new_activity_on_the_same_agreement(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1, fresh_activity=True)
    seen = []
    for n in range(3):
        seen.append(pool.submit(lambda ctx: (ctx.activity_id, ctx.agreement_id)).result(timeout=WAIT))
        # the replacement is made in the background right after the release, not when a job asks
        assert wait_until(lambda: activity_creates(fake_yagna) == n + 2), "no replacement made in the background"
    activities = [a for a, _ in seen]
    assert len(set(activities)) == 3
    assert len({agreement for _, agreement in seen}) == 1 and agreement_creates(fake_yagna) == 1
    assert all(fake_yagna.activity_agreement[a] == seen[0][1] for a in activities)
    assert all(fake_yagna.activities[a] is False for a in activities)  # each given back was destroyed
    # yagna answered the fourth create; the pool counts it once the activity is warm
    assert wait_until(lambda: pool.stats().activities_created == 4)
    stats = pool.stats()
    assert (stats.leases_created, stats.leases_retired, stats.activities_created) == (1, 0, 4)


def test_without_multi_activity_a_failed_job_retires_the_whole_lease(golem, fake_yagna):
    del fake_yagna.offer_props["golem.srv.caps.multi-activity"]
    g = golem()
    pool = g.create_pool(size=1)

    def bad(ctx: Any) -> None:
        raise ValueError("x")

    first = pool.submit(bad)
    first.exception(timeout=WAIT)
    second = pool.submit(lambda ctx: ctx.agreement_id)
    assert second.result(timeout=WAIT) != first.job.agreement_id
    assert fake_yagna.agreements[first.job.agreement_id] == "Terminated"
    stats = pool.stats()
    assert stats.leases_created == 2 and dict(stats.retired) == {"single_activity": 1}


def test_a_provider_that_terminates_an_idle_lease_removes_it_quietly(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    retired, how = on_signal(signals.lease_retired, pool)
    first = pool.submit(lambda ctx: (ctx.agreement_id, ctx.activity_id))
    agreement, activity = first.result(timeout=WAIT)
    fake_yagna.push_terminated(agreement, "provider going away")
    assert retired.wait(WAIT)
    assert how[0]["reason"] == "provider_terminated"
    assert fake_yagna.activities[activity] is False
    assert f"/market-api/v1/agreements/{agreement}/terminate" not in fake_yagna.calls("POST")
    stats = pool.stats()
    assert (stats.idle, stats.busy, dict(stats.retired)) == (0, 0, {"provider_terminated": 1})
    second = pool.submit(lambda ctx: ctx.agreement_id)
    assert second.result(timeout=WAIT) != agreement
    assert pool.stats().leases_created == 2


def test_a_provider_that_terminates_a_busy_lease_fails_the_job_without_retries(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    retired, how = on_signal(signals.lease_retired, pool)

    def worker(ctx: Any) -> None:
        fake_yagna.push_terminated(ctx.agreement_id, "provider going away")
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # each command sees the attempt cancelled once the event lands
            ctx.run("echo still here")

    future = pool.submit(worker)
    error = future.exception(timeout=WAIT)
    assert isinstance(error, GolemAgreementError) and "provider going away" in str(error)
    assert future.job.state is JobState.REJECTED
    assert retired.wait(WAIT) and how[0]["reason"] == "provider_terminated"
    assert not live_activities(fake_yagna)
    assert pool.stats().leases_retired == 1


def test_a_provider_that_terminates_a_busy_lease_has_the_job_retried_on_another(golem, fake_yagna):
    fake_yagna.providers = ["0xp1", "0xp2"]
    g = golem()
    pool = g.create_pool(size=1)
    agreements: List[str] = []

    def worker(ctx: Any) -> str:
        agreements.append(ctx.agreement_id)
        if len(agreements) == 1:
            fake_yagna.push_terminated(ctx.agreement_id, "provider going away")
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                ctx.run("echo still here")
        return ctx.provider.id

    job = pool.create_job(job={"max_retries": 1})
    job.start_work(worker)
    second_provider = job.wait_for_result(timeout=WAIT)
    assert len(agreements) == 2 and agreements[0] != agreements[1]
    first_provider = fake_yagna.agreement_info[agreements[0]][1]
    assert second_provider != first_provider  # retried on ANOTHER provider
    assert job.agreement_id == agreements[1] and job.state is JobState.DONE
    stats = pool.stats()
    assert stats.leases_created == 2 and dict(stats.retired) == {"provider_terminated": 1}
    assert stats.idle == 1


# -- idle eviction and ready() ----------------------------------------------------------------------

def test_an_idle_lease_is_released_after_idle_timeout_sec(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1, min_size=0, idle_timeout_sec=0.3)
    retired, how = on_signal(signals.lease_retired, pool)
    agreement, activity = pool.submit(lambda ctx: (ctx.agreement_id, ctx.activity_id)).result(timeout=WAIT)
    idle_from = time.monotonic()
    assert retired.wait(WAIT)
    assert time.monotonic() - idle_from >= 0.25  # not before its time
    assert how[0]["reason"] == "idle_timeout"
    assert wait_until(lambda: fake_yagna.agreements[agreement] == "Terminated")
    assert fake_yagna.activities[activity] is False
    stats = pool.stats()
    assert (stats.idle, stats.leases_retired, dict(stats.retired)) == (0, 1, {"idle_timeout": 1})


def test_idle_timeout_keeps_min_size_leases(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=2, min_size=1, idle_timeout_sec=0.2)
    pool.ready(timeout=WAIT)
    retired, _ = on_signal(signals.lease_retired, pool)
    assert not retired.wait(0.8)  # four idle timeouts
    assert pool.stats().idle == 1 and len(live_agreements(fake_yagna)) == 1
    assert len(live_activities(fake_yagna)) == 1


def test_idle_eviction_goes_down_to_min_size(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=2, min_size=1, idle_timeout_sec=0.3)
    both = threading.Barrier(2, timeout=WAIT)
    futures = [pool.submit(lambda ctx: both.wait() is not None and ctx.agreement_id) for _ in range(2)]
    agreements = {f.result(timeout=WAIT) for f in futures}
    assert len(agreements) == 2  # two leases at once
    retired, how = on_signal(signals.lease_retired, pool)
    assert retired.wait(WAIT)
    assert not wait_until(lambda: len(how) > 1, timeout=0.8)  # the second one is kept
    assert [kw["reason"] for kw in how] == ["idle_timeout"]
    assert len(live_agreements(fake_yagna)) == 1 and pool.stats().idle == 1


def test_ready_returns_once_min_size_leases_are_warm_without_any_job(golem, fake_yagna):
    g = golem()
    setups: List[str] = []
    pool = g.create_pool(size=3, min_size=2, setup=lambda ctx: setups.append(ctx.activity_id))
    pool.ready(timeout=WAIT)
    stats = pool.stats()
    assert stats.idle == 2 and stats.leases_created == 2 and stats.jobs_run == 0
    assert len(live_agreements(fake_yagna)) == 2 and len(live_activities(fake_yagna)) == 2
    assert len(setups) == 2  # warm means set up too
    t0 = time.monotonic()
    pool.submit(ok).result(timeout=WAIT)
    assert time.monotonic() - t0 < 1.0
    assert agreement_creates(fake_yagna) == 2  # the job took a warm lease


def test_min_size_leases_are_replaced_when_lost(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1, min_size=1)
    pool.ready(timeout=WAIT)
    (agreement,) = fake_yagna.agreements
    created, _ = on_signal(signals.lease_created, pool)
    fake_yagna.push_terminated(agreement)
    assert created.wait(WAIT)
    pool.ready(timeout=WAIT)
    assert len(live_agreements(fake_yagna)) == 1 and live_agreements(fake_yagna) != [agreement]


def test_ready_times_out_with_phase_lease_when_no_provider_offers(golem, fake_yagna):
    fake_yagna.providers = []
    g = golem()
    pool = g.create_pool(size=1, min_size=1)
    t0 = time.monotonic()
    with pytest.raises(GolemTimeoutError) as caught:
        pool.ready(timeout=0.5)
    assert 0.4 <= time.monotonic() - t0 < 2.0
    assert caught.value.phase == "lease"
    t0 = time.monotonic()
    g.close()  # the background negotiation is ended, not waited out
    assert time.monotonic() - t0 < 3.0
    assert not fake_yagna.agreements


def test_ready_times_out_with_phase_lease_when_the_demand_fails(golem, fake_yagna):
    fake_yagna.fail_next("POST", "/demands", status=500, times=1000, message="market is down")
    g = golem()
    pool = g.create_pool(size=1, min_size=1)
    with pytest.raises(GolemTimeoutError) as caught:
        pool.ready(timeout=3.0)  # a 5xx on POST /demands is tried 4 times (under 2 s) before it is the error
    assert caught.value.phase == "lease"
    assert "market is down" in str(caught.value)  # the reason is in the error
    assert "market is down" in (pool.stats().last_error or "")


def test_ready_after_shutdown_is_refused(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1, min_size=1)
    pool.shutdown(wait=True)
    with pytest.raises(GolemUserError):
        pool.ready(timeout=0.2)


# -- queueing, cancel, timeouts ------------------------------------------------------------------

def test_queued_submissions_hold_no_thread(golem, fake_yagna):
    g = golem()
    baseline = threading.active_count()
    pool = g.create_pool(size=1)
    gate = threading.Event()
    started: List[int] = []

    def worker(ctx: Any, n: int) -> int:
        started.append(n)
        assert gate.wait(WAIT)
        return n

    futures = [pool.submit(worker, n) for n in range(30)]
    assert wait_until(lambda: started == [0])
    pool_job_threads = [t.name for t in threading.enumerate() if t.name.startswith("golem-pool-job")]
    assert len(pool_job_threads) <= 1, pool_job_threads
    assert threading.active_count() <= baseline + pool.size + 8, [t.name for t in threading.enumerate()]
    assert pool.stats().pending == 30
    gate.set()
    assert [f.result(timeout=WAIT) for f in futures] == list(range(30))
    assert started == list(range(30))  # first come, first served
    assert agreement_creates(fake_yagna) == 1


def busy_pool(g: Any) -> Tuple[Any, Any, threading.Event]:
    """A pool of one lease, held by a running job until ``gate`` is set (its result: "finished")."""
    pool = g.create_pool(size=1)
    gate = threading.Event()
    running = threading.Event()

    def blocker(ctx: Any) -> str:
        running.set()
        assert gate.wait(WAIT)
        return "finished"

    first = pool.submit(blocker)
    assert running.wait(WAIT)
    return pool, first, gate


def test_future_cancel_of_a_queued_job_cancels_it(golem, fake_yagna):
    g = golem()
    pool, first, gate = busy_pool(g)
    queued = pool.submit(ok)
    cancelled, _ = on_signal(signals.job_cancelled, queued.job)
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    assert queued.job.state is JobState.CANCELLED and cancelled.is_set()
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(0)
    assert first.cancel() is False  # running: left running
    assert not first.done() and first.job.state is JobState.PENDING
    gate.set()
    assert first.result(timeout=WAIT) == "finished"
    assert first.cancel() is False and not first.cancelled()  # done: too late
    assert pool.stats().jobs_run == 1  # the cancelled one never got the lease


def test_shutdown_with_cancel_futures_cancels_the_queued_and_lets_the_running_finish(golem, fake_yagna):
    g = golem()
    pool, first, gate = busy_pool(g)
    queued = [pool.submit(ok) for _ in range(3)]
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True})
    closer.start()
    done, _ = concurrent.futures.wait(queued, timeout=WAIT)
    assert len(done) == 3
    assert all(f.job.state is JobState.CANCELLED for f in queued)
    assert closer.is_alive() and not first.done()  # wait=True waits for the running job
    gate.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert first.result(0) == "finished"
    assert pool.closed and not live_agreements(fake_yagna) and not live_activities(fake_yagna)


def test_shutdown_with_cancel_futures_leaves_the_queued_futures_cancelled(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    gate = threading.Event()
    running = threading.Event()
    first = pool.submit(lambda ctx: running.set() or gate.wait(WAIT))
    assert running.wait(WAIT)
    queued = [pool.submit(ok) for _ in range(2)]
    pool.shutdown(wait=False, cancel_futures=True)
    try:
        assert all(f.done() for f in queued)
        assert all(f.cancelled() for f in queued), [f._state for f in queued]
    finally:
        gate.set()
        first.result(timeout=WAIT)


def _pool_with_a_lease_on_hold(golem: Any, fake: Any) -> "tuple[Any, Any, threading.Event]":
    """A size-1 pool whose only lease is renewing its activity and stuck in the pool's setup.

    A job submitted now has a thread but waits for a lease (the state cancel and
    startup_timeout_sec must end).
    """
    gate = threading.Event()
    calls: List[int] = []

    def setup(ctx: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            gate.wait(WAIT)

    g = golem()
    pool = g.create_pool(size=1, setup=setup)

    def bad(ctx: Any) -> None:
        raise ValueError("retire this activity")

    pool.submit(bad).exception(timeout=WAIT)
    assert wait_until(lambda: len(calls) == 2), "the renewal's setup did not start"
    return g, pool, gate


def test_cancel_of_a_job_waiting_for_a_lease_ends_it_promptly(golem, fake_yagna):
    g, pool, gate = _pool_with_a_lease_on_hold(golem, fake_yagna)
    try:
        job = pool.create_job()
        job.start_work(ok)
        assert wait_until(lambda: pool.stats().waiting == 1), pool.stats()
        t0 = time.monotonic()
        job.cancel(timeout=WAIT)
        assert time.monotonic() - t0 < 1.0
        assert job.state is JobState.CANCELLED and isinstance(job.error, GolemCancelledError)
        assert job.agreement_id is None  # it never got a lease
        assert pool.stats().waiting == 0
    finally:
        gate.set()
    assert pool.submit(ok).result(timeout=WAIT) == "out\n"  # the lease is still lent to the next job


def test_startup_timeout_while_waiting_for_a_lease_is_a_timeout_error(golem, fake_yagna):
    g, pool, gate = _pool_with_a_lease_on_hold(golem, fake_yagna)
    try:
        job = pool.create_job(job={"startup_timeout_sec": 0.3})
        t0 = time.monotonic()
        job.start_work(ok)
        with pytest.raises(GolemTimeoutError) as caught:
            job.wait_for_result(timeout=WAIT)
        assert 0.25 <= time.monotonic() - t0 < 2.0
        assert caught.value.phase == "lease"
        assert job.state is JobState.REJECTED
    finally:
        gate.set()


def test_a_job_queued_behind_a_busy_lease_ends_cancelled_at_once(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    gate = threading.Event()
    running = threading.Event()
    first = pool.submit(lambda ctx: running.set() or gate.wait(WAIT))
    assert running.wait(WAIT)
    waiting = pool.create_job()
    waiting.start_work(ok)
    t0 = time.monotonic()
    waiting.cancel(timeout=WAIT)
    assert time.monotonic() - t0 < 0.5
    assert waiting.state is JobState.CANCELLED
    gate.set()
    assert first.result(timeout=WAIT) is True


# -- closing the network ----------------------------------------------------------------------------

def test_close_ends_a_pool_with_idle_and_busy_leases_and_leaves_nothing_in_yagna(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=2)
    both = threading.Barrier(2, timeout=WAIT)
    long_started = threading.Event()

    def quick(ctx: Any) -> str:
        both.wait()
        return "quick"

    def long(ctx: Any) -> None:
        both.wait()
        fake_yagna.batch_delay = 60.0
        long_started.set()
        ctx.run("sleep 60")

    quick_future = pool.submit(quick)
    long_future = pool.submit(long)
    assert quick_future.result(timeout=WAIT) == "quick"
    assert long_started.wait(WAIT)
    assert wait_until(lambda: pool.stats().idle == 1 and pool.stats().busy == 1), pool.stats()
    t0 = time.monotonic()
    g.close()
    assert time.monotonic() - t0 < 5.0
    assert long_future.job.state is JobState.CANCELLED
    assert pool.closed and g.pools() == []
    assert len(fake_yagna.agreements) == 2
    assert not live_agreements(fake_yagna), fake_yagna.agreements
    assert not live_activities(fake_yagna), fake_yagna.activities
    assert fake_yagna.allocations and set(fake_yagna.allocations) <= set(fake_yagna.released)
    left = [t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith("golem-")]
    assert not left, left
    with pytest.raises(GolemUserError):
        g.create_pool(size=1)


def test_close_is_prompt_with_a_pool_job_never_started(golem, fake_yagna, monkeypatch):
    from golem_sync import _network

    monkeypatch.setattr(_network, "JOB_END_GRACE_SEC", 1.5)  # (120 s otherwise: keep the failure fast)
    g = golem()
    pool = g.create_pool(size=1)
    pool.submit(ok).result(timeout=WAIT)
    pool.create_job()  # e.g. a start_work refused for its options
    t0 = time.monotonic()
    g.close()
    assert time.monotonic() - t0 < 1.0
    assert pool.closed


def test_close_is_prompt_with_a_network_job_never_started(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    pool.submit(ok).result(timeout=WAIT)
    g.create_job()
    t0 = time.monotonic()
    g.close()
    assert time.monotonic() - t0 < 1.0


def test_close_releases_several_pools(golem, fake_yagna):
    g = golem()
    pools = [g.create_pool(size=1, min_size=1) for _ in range(2)]
    for pool in pools:
        pool.ready(timeout=WAIT)
    assert len(live_agreements(fake_yagna)) == 2
    g.close()
    assert all(pool.closed for pool in pools)
    assert not live_agreements(fake_yagna) and not live_activities(fake_yagna)


# -- costs ----------------------------------------------------------------------------------------

def test_a_pool_job_s_cost_is_its_share_of_the_lease(golem, fake_yagna):
    # Linear pricing of the fake: 0.1 per cpu second, 0.01 per second of duration, no start price.
    g = golem()
    pool = g.create_pool(size=1)
    pool.submit(ok).result(timeout=WAIT)  # the lease's activity reports [cpu 1, duration 2] from here

    def use(cpu: float, duration: float) -> Callable[[Any], str]:
        def worker(ctx: Any) -> str:
            fake_yagna.usage[ctx.activity_id] = [cpu, duration]
            ctx.get_usage()  # a short job's share counts the usage it read (it does not read it back itself)
            return ok(ctx)
        return worker

    first = pool.submit(use(3.0, 12.0))   # adds cpu 2, duration 10: 0.2 + 0.1
    first.result(timeout=WAIT)
    assert first.job.get_cost() == pytest.approx(0.3, rel=1e-6)
    second = pool.submit(use(4.0, 14.0))  # adds cpu 1, duration 2: 0.1 + 0.02
    second.result(timeout=WAIT)
    assert second.job.get_cost() == pytest.approx(0.12, rel=1e-6)
    assert first.job.get_cost() == pytest.approx(0.3, rel=1e-6)  # not the later job's usage
    (agreement,) = fake_yagna.agreements
    rows = [row for row in g.cost_summary().rows if row.agreement_id == agreement]
    assert len(rows) == 1 and rows[0].estimated == pytest.approx(0.54, rel=1e-6)  # the whole lease
    assert rows[0].job_id == pool.id  # cost_summary() shows the pool's agreement as the pool's


def test_a_short_pool_job_costs_at_least_the_time_it_held_the_lease(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    future = pool.submit(lambda ctx: time.sleep(0.2))  # the fake's usage does not move
    future.result(timeout=WAIT)
    cost = future.job.get_cost()
    assert cost >= 0.01 * 0.2
    assert cost < 0.01 * 5  # its own time, not the lease's whole usage (0.12)


# -- stats ----------------------------------------------------------------------------------------

def test_stats_count_what_happened(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=2, min_size=0)
    stats = pool.stats()
    assert (stats.size, stats.min_size, stats.idle, stats.busy, stats.starting, stats.pending,
            stats.jobs_run, stats.leases_created, stats.leases_retired) == (2, 0, 0, 0, 0, 0, 0, 0, 0)
    gate = threading.Event()
    running = threading.Event()
    busy = pool.submit(lambda ctx: running.set() or gate.wait(WAIT))
    assert running.wait(WAIT)
    stats = pool.stats()
    assert (stats.busy, stats.idle, stats.pending, stats.leases_created) == (1, 0, 1, 1)
    gate.set()
    busy.result(timeout=WAIT)
    for _ in range(2):
        pool.submit(ok).result(timeout=WAIT)
    assert wait_until(lambda: pool.stats().pending == 0)
    stats = pool.stats()
    assert (stats.busy, stats.idle, stats.jobs_run, stats.leases_created, stats.activities_created) == (0, 1, 3, 1, 1)
    pool.submit(lambda ctx: 1 / 0).exception(timeout=WAIT)
    assert wait_until(lambda: pool.stats().idle == 1)
    stats = pool.stats()
    assert (stats.jobs_run, stats.activities_created, stats.leases_retired) == (4, 2, 0)
    pool.shutdown(wait=True)
    stats = pool.stats()
    assert (stats.idle, stats.busy, stats.starting, stats.retiring) == (0, 0, 0, 0)
    assert (stats.leases_created, stats.leases_retired, dict(stats.retired)) == (1, 1, {"shutdown": 1})
    assert stats.last_error is None


# -- more retirement paths --------------------------------------------------------------------------

def test_a_command_timeout_the_worker_lets_through_retires_the_activity(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)

    def slow(ctx: Any) -> None:
        fake_yagna.batch_delay = 30.0
        ctx.run("sleep 30", timeout=0.2)

    future = pool.submit(slow)
    error = future.exception(timeout=WAIT)
    assert isinstance(error, GolemTimeoutError)
    first_activity = future.job.activity_id
    fake_yagna.batch_delay = 0.0
    after = pool.submit(lambda ctx: (ctx.activity_id, ctx.agreement_id))
    activity, agreement = after.result(timeout=WAIT)
    assert activity != first_activity and fake_yagna.activities[first_activity] is False
    assert agreement == future.job.agreement_id and agreement_creates(fake_yagna) == 1


def test_an_activity_replaced_after_a_command_timeout_stays_with_the_lease(golem, fake_yagna):
    g = golem()
    setups: List[str] = []
    pool = g.create_pool(size=1, setup=lambda ctx: setups.append(ctx.activity_id))

    def recovers(ctx: Any) -> str:
        fake_yagna.batch_delay = 30.0
        with pytest.raises(GolemTimeoutError):
            ctx.run("sleep 30", timeout=0.2)
        fake_yagna.batch_delay = 0.0
        ctx.run("echo on the replacement")  # a new activity on the same agreement
        return ctx.activity_id

    future = pool.submit(recovers)
    replacement = future.result(timeout=WAIT)
    first_activity = setups[0]
    assert replacement != first_activity and fake_yagna.activities[first_activity] is False
    assert setups == [first_activity, replacement]  # the pool's setup ran on the replacement too
    assert future.job.activity_id == replacement
    # the next job runs on the replacement: no new activity, no new agreement
    assert pool.submit(lambda ctx: ctx.activity_id).result(timeout=WAIT) == replacement
    assert activity_creates(fake_yagna) == 2 and agreement_creates(fake_yagna) == 1
    assert pool.stats().activities_created == 2  # the job's replacement counts too
    g.close()
    assert not live_activities(fake_yagna) and not live_agreements(fake_yagna)


def test_an_activity_lost_by_the_provider_retires_the_whole_lease(golem, fake_yagna):
    from golem_sync.errors import GolemActivityError

    g = golem()
    pool = g.create_pool(size=1)
    first = pool.submit(lambda ctx: ctx.agreement_id)
    agreement = first.result(timeout=WAIT)

    def worker(ctx: Any) -> None:
        fake_yagna.fail_next("POST", "/exec", status=404, message="Activity not found")
        ctx.run("echo hi")

    failed = pool.submit(worker)
    assert isinstance(failed.exception(timeout=WAIT), GolemActivityError)
    assert wait_until(lambda: pool.stats().starting == 0 and pool.stats().retiring == 0)
    assert pool.stats().leases_retired == 1
    assert fake_yagna.agreements[agreement] == "Terminated"
    assert pool.submit(lambda ctx: ctx.agreement_id).result(timeout=WAIT) != agreement


def test_an_activity_lost_with_max_retries_runs_the_job_on_another_provider(golem, fake_yagna):
    fake_yagna.providers = ["0xp1", "0xp2"]
    g = golem()
    pool = g.create_pool(size=1)
    providers: List[str] = []

    def worker(ctx: Any) -> str:
        providers.append(ctx.provider.id)
        if len(providers) == 1:
            fake_yagna.fail_next("POST", "/exec", status=404, message="Activity not found")
        return ok(ctx)

    job = pool.create_job(job={"max_retries": 1})
    job.start_work(worker)
    assert job.wait_for_result(timeout=WAIT) == "out\n"
    assert len(providers) == 2 and providers[0] != providers[1]
    assert job.provider.id == providers[1]
    assert pool.stats().leases_created == 2


def test_fresh_activity_runs_the_pool_s_teardown_on_every_activity_given_back(golem, fake_yagna):
    teardowns: List[str] = []
    g = golem()
    pool = g.create_pool(size=1, fresh_activity=True, teardown=lambda ctx: teardowns.append(ctx.activity_id))
    used = [pool.submit(lambda ctx: ctx.activity_id).result(timeout=WAIT) for _ in range(2)]
    assert wait_until(lambda: len(teardowns) == 2)
    assert teardowns == used


def test_a_lease_near_its_agreement_s_expiration_is_retired_and_not_lent(golem, fake_yagna):
    g = golem()
    # expiration 2 s: a lease is usable until a quarter of its lifetime is left (1.5 s)
    pool = g.create_pool(size=1, market={"expiration_sec": 2}, idle_timeout_sec=None)
    retired, how = on_signal(signals.lease_retired, pool)
    agreement = pool.submit(lambda ctx: ctx.agreement_id).result(timeout=WAIT)
    assert retired.wait(WAIT)
    assert how[0]["reason"] == "expiring"
    assert fake_yagna.agreements[agreement] == "Terminated"
    assert pool.submit(lambda ctx: ctx.agreement_id).result(timeout=WAIT) != agreement


# -- cancel and timeouts while negotiating a new lease ------------------------------------------------

def test_cancel_of_a_job_negotiating_its_lease_returns_the_slot(golem, fake_yagna):
    fake_yagna.approve, fake_yagna.max_wait = False, 1.0  # the provider takes its time to approve
    g = golem()
    pool = g.create_pool(size=1, agreement={"approval_timeout_sec": 15})
    started, _ = on_signal(signals.job_started)
    job = pool.create_job()
    job.start_work(ok)
    assert wait_until(lambda: bool(fake_yagna.calls("POST", "/wait")))
    t0 = time.monotonic()
    job.cancel(timeout=WAIT)
    assert time.monotonic() - t0 < 2.0
    assert job.state is JobState.CANCELLED and not started.is_set()
    assert not live_agreements(fake_yagna)  # the half-made agreement was cancelled
    assert pool.stats().starting == 0
    fake_yagna.approve = True
    assert pool.submit(ok).result(timeout=WAIT) == "out\n"  # the slot was given back
    g.close()
    for thread in threading.enumerate():  # the fake's held approval poll cannot be aborted: let it end
        if thread.name.startswith("golem-io"):
            thread.join(10)


def test_startup_timeout_while_negotiating_a_lease(golem, fake_yagna):
    fake_yagna.providers = []
    g = golem()
    pool = g.create_pool(size=1)
    job = pool.create_job(job={"startup_timeout_sec": 0.3})
    job.start_work(ok)
    with pytest.raises(GolemTimeoutError):
        job.wait_for_result(timeout=WAIT)
    assert job.state is JobState.REJECTED
    stats = pool.stats()
    assert (stats.starting, stats.leases_created, stats.pending) == (0, 0, 0)


def test_job_timeout_while_waiting_for_a_lease(golem, fake_yagna):
    g, pool, gate = _pool_with_a_lease_on_hold(golem, fake_yagna)
    try:
        job = pool.create_job(job={"timeout_sec": 0.3})
        job.start_work(ok)
        with pytest.raises(GolemTimeoutError) as caught:
            job.wait_for_result(timeout=WAIT)
        assert caught.value.phase == "job"
        assert pool.stats().waiting == 0
    finally:
        gate.set()


# -- payments, store, several pools ---------------------------------------------------------------------

def test_debit_notes_of_an_idle_lease_are_accepted_and_its_invoice_paid(golem, fake_yagna):
    g = golem(payment={"invoice_wait_sec": 5})
    pool = g.create_pool(size=1)
    agreement = pool.submit(lambda ctx: ctx.agreement_id).result(timeout=WAIT)
    accepted, _ = on_signal(signals.debit_note_accepted)
    fake_yagna.push_debit_note("dn-idle", agreement, amount="0.01")
    assert accepted.wait(WAIT)
    assert fake_yagna.accepted.get("dn-idle") == g.allocation_id
    pool.shutdown(wait=True)
    fake_yagna.push_invoice("inv-pool", agreement, amount="0.02")
    g.close()
    assert fake_yagna.accepted.get("inv-pool") == fake_yagna.allocations[0]


def test_pool_jobs_are_in_the_job_store(golem, fake_yagna, tmp_path):
    path = str(tmp_path / "jobs.sqlite")
    g = golem(job_store=path)
    pool = g.create_pool(size=1)
    future = pool.submit(lambda ctx: "stored")
    assert future.result(timeout=WAIT) == "stored"
    other = golem(job_store=path)  # another network on the same store ("another process")
    stored = other.get_job_by_id(future.job.id)
    assert stored is not None and stored is not future.job
    assert stored.state is JobState.DONE and stored.results == "stored"
    assert stored.agreement_id == future.job.agreement_id


def test_two_pools_keep_their_leases_apart(golem, fake_yagna):
    g = golem()
    first = g.create_pool(size=1, package={"image_hash": "aaa", "image_url": "http://x/a"})
    second = g.create_pool(size=1, package={"image_hash": "bbb", "image_url": "http://x/b"})
    a = [first.submit(lambda ctx: ctx.agreement_id).result(timeout=WAIT) for _ in range(2)]
    b = [second.submit(lambda ctx: ctx.agreement_id).result(timeout=WAIT) for _ in range(2)]
    assert len(set(a)) == 1 and len(set(b)) == 1 and a[0] != b[0]
    assert first.stats().leases_created == 1 and second.stats().leases_created == 1
    demands = _demand_bodies(fake_yagna)
    assert len(demands) == 2 and sum("aaa" in d for d in demands) == 1 and sum("bbb" in d for d in demands) == 1
    first.shutdown(wait=True)
    assert second.submit(lambda ctx: ctx.agreement_id).result(timeout=WAIT) == b[0]  # the other pool goes on


def _demand_bodies(fake: Any) -> List[str]:
    bodies = [call.request.body for call in fake.rsps.calls
              if call.request.method == "POST" and call.request.url.split("?")[0].endswith("/market-api/v1/demands")]
    return [body.decode() if isinstance(body, bytes) else str(body) for body in bodies]


def test_pool_close_cancels_the_running_jobs_and_releases_everything(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    started = threading.Event()

    def long(ctx: Any) -> None:
        fake_yagna.batch_delay = 30.0
        started.set()
        ctx.run("sleep 30")

    future = pool.submit(long)
    queued = pool.submit(ok)
    assert started.wait(WAIT)
    t0 = time.monotonic()
    assert pool.close(timeout=WAIT) is True
    assert time.monotonic() - t0 < 3.0
    assert future.job.state is JobState.CANCELLED and queued.job.state is JobState.CANCELLED
    assert pool.closed and g.pools() == []
    assert not live_agreements(fake_yagna) and not live_activities(fake_yagna)
    fake_yagna.batch_delay = 0.0
    job = g.create_job()  # the network goes on without the pool
    job.start_work(ok)
    assert job.wait_for_result(timeout=WAIT) == "out\n"


# -- concurrency, setup errors, cancel during activation -----------------------------------------------

def test_concurrent_jobs_never_exceed_size_leases(golem, fake_yagna):
    fake_yagna.providers = ["0xp1", "0xp2", "0xp3"]
    g = golem()
    pool = g.create_pool(size=2)
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def worker(ctx: Any, n: int) -> "tuple[int, str]":
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        try:
            ctx.run("echo")
            time.sleep(0.01)
            return n, ctx.agreement_id
        finally:
            with lock:
                running[0] -= 1

    results = list(pool.map(worker, range(12), timeout=30))
    assert [n for n, _ in results] == list(range(12))
    assert running[1] <= 2
    assert len({agreement for _, agreement in results}) <= 2 and agreement_creates(fake_yagna) <= 2
    stats = pool.stats()
    assert stats.jobs_run == 12 and stats.leases_created == agreement_creates(fake_yagna)
    assert len(live_agreements(fake_yagna)) == stats.leases_created


def test_a_pool_setup_that_raises_fails_the_job_and_leaves_nothing_open(golem, fake_yagna):
    g = golem()
    oops = RuntimeError("setup broke")

    def setup(ctx: Any) -> None:
        raise oops

    pool = g.create_pool(size=1, setup=setup)
    future = pool.submit(ok)
    assert future.exception(timeout=WAIT) is oops
    assert future.job.state is JobState.REJECTED
    assert wait_until(lambda: not live_agreements(fake_yagna) and not live_activities(fake_yagna))
    stats = pool.stats()
    assert (stats.idle, stats.busy, stats.starting, stats.leases_retired) == (0, 0, 0, 1)


def test_cancel_of_a_job_while_its_new_lease_deploys(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    fake_yagna.batch_delay = 30.0  # the deploy never finishes
    job = pool.create_job()
    job.start_work(ok)
    assert wait_until(lambda: bool(fake_yagna.calls("POST", "/exec")))
    t0 = time.monotonic()
    job.cancel(timeout=WAIT)
    assert time.monotonic() - t0 < 2.0
    assert job.state is JobState.CANCELLED
    assert wait_until(lambda: not live_agreements(fake_yagna) and not live_activities(fake_yagna))
    fake_yagna.batch_delay = 0.0
    assert pool.submit(ok).result(timeout=WAIT) == "out\n"  # the slot was given back


def test_shutdown_with_wait_from_a_worker_is_refused(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    future = pool.submit(lambda ctx: pool.shutdown(wait=True))
    assert isinstance(future.exception(timeout=WAIT), GolemUserError)
    assert pool.submit(ok).result(timeout=WAIT) == "out\n"  # nothing was shut down


def test_ready_without_min_size_returns_at_once(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    t0 = time.monotonic()
    pool.ready(timeout=0)
    assert time.monotonic() - t0 < 0.2
    assert not fake_yagna.calls("POST", "/demands")  # min_size 0: nothing is made in advance


# -- who sends the signals of a lease ---------------------------------------------------------------

def test_a_lease_s_activity_signals_come_from_the_job_that_holds_it(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    by_pool: List[Any] = []
    connect(signals.batch_sent, lambda sender, **kw: by_pool.append(kw["activity_id"]), pool)
    pool.submit(ok).result(timeout=WAIT)  # the lease's deploy and start are the pool's
    (activity,) = fake_yagna.activities
    assert by_pool and set(by_pool) == {activity}
    pool_batches = len(by_pool)
    job = pool.create_job()
    by_job: List[Any] = []
    connect(signals.batch_sent, lambda sender, **kw: by_job.append(kw["activity_id"]), job)
    job.start_work(ok)
    job.wait_for_result(timeout=WAIT)
    assert by_job == [activity]  # the job's command, sent as the job
    assert len(by_pool) == pool_batches  # not as the pool


def test_a_provider_termination_during_a_pool_job_is_announced_as_the_job_s(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    pool.submit(ok).result(timeout=WAIT)
    job = pool.create_job()
    heard, _ = on_signal(signals.agreement_terminated, job)
    anyone, senders = threading.Event(), []
    connect(signals.agreement_terminated, lambda sender, **kw: (senders.append(sender), anyone.set()))

    def worker(ctx: Any) -> None:
        fake_yagna.push_terminated(ctx.agreement_id, "provider going away")
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            ctx.run("echo still here")

    job.start_work(worker)
    job.exception(timeout=WAIT)
    assert anyone.wait(WAIT)
    assert heard.is_set(), f"announced with sender {senders}"


def test_a_debit_note_during_a_pool_job_is_announced_as_the_job_s(golem, fake_yagna):
    g = golem()
    pool = g.create_pool(size=1)
    pool.submit(ok).result(timeout=WAIT)
    job = pool.create_job()
    heard, _ = on_signal(signals.debit_note_accepted, job)
    anyone, _ = on_signal(signals.debit_note_accepted)

    def worker(ctx: Any) -> None:
        fake_yagna.push_debit_note("dn-busy", ctx.agreement_id, amount="0.01")
        assert anyone.wait(WAIT)

    job.start_work(worker)
    job.wait_for_result(timeout=WAIT)
    assert heard.is_set()


def test_a_usage_read_that_fails_when_a_lease_starts_does_not_stop_it(golem, fake_yagna, caplog):
    fake_yagna.fail_next("GET", "/usage", 500, times=10)
    g = golem()
    pool = g.create_pool(size=1, min_size=1)
    with caplog.at_level("ERROR", logger="golem_sync"):
        pool.ready(timeout=WAIT)
        future = pool.submit(ok)
        future.result(timeout=WAIT)
        assert future.job.state is JobState.DONE
    assert pool.stats().leases_created == 1 and pool.stats().retired == {}
    assert not [r for r in caplog.records if "usage" in r.getMessage()]  # not an error: only the baseline is lost


# -- the liveness probe of an idle lease after yagna went away ------------------------------------

PROBE = "/command"  # GET /activity/{id}/command: reaches the exe-unit itself


def warm_lease_through_an_outage(g: Any, fake_yagna: Any, caplog: Any) -> Any:
    """A pool with one idle lease, then yagna goes away and comes back (its pollers say so)."""
    pool = g.create_pool(size=1)
    assert pool.submit(ok).result(timeout=WAIT) == "out\n"
    caplog.set_level("INFO", logger="golem_sync")
    fake_yagna.restart(down_sec=1.0)
    assert wait_until(lambda: any("answers again" in r.getMessage() for r in caplog.records))
    return pool


def test_after_an_outage_a_lease_whose_activity_answers_is_lent_again(golem, fake_yagna, caplog):
    g = golem()
    pool = warm_lease_through_an_outage(g, fake_yagna, caplog)
    assert pool.submit(ok).result(timeout=WAIT) == "out\n"
    assert len(fake_yagna.calls("GET", PROBE)) == 1  # asked once, before lending
    assert activity_creates(fake_yagna) == 1  # the same activity


@pytest.mark.parametrize("stop", ["job.cancel", "pool.close"])
def test_a_hanging_liveness_probe_ends_at_once_when_the_job_is_cancelled_or_the_pool_closes(
        golem, fake_yagna, caplog, stop):
    g = golem()
    pool = warm_lease_through_an_outage(g, fake_yagna, caplog)
    hang = threading.Event()
    fake_yagna.command_hang = hang  # the probe gets no answer (for 10 s)
    try:
        future = pool.submit(ok)
        assert wait_until(lambda: fake_yagna.calls("GET", PROBE))
        if stop == "job.cancel":
            assert timed(lambda: future.job.cancel(timeout=WAIT)) < 3.0
        else:
            assert timed(lambda: pool.close(timeout=WAIT)) < 3.0
        assert future.job.state is JobState.CANCELLED
        if stop == "job.cancel":  # the cancel says nothing against the lease: it stays, with its activity
            assert wait_until(lambda: pool.stats().idle == 1)
            assert activity_creates(fake_yagna) == 1 and pool.stats().leases_retired == 0
    finally:
        hang.set()  # the mock cannot be aborted like a real socket: let its late answer go


def test_a_liveness_probe_that_gets_no_answer_in_time_makes_a_new_activity(golem, fake_yagna, caplog, monkeypatch):
    from golem_sync._pool import keeper

    monkeypatch.setattr(keeper, "LIVENESS_PROBE_SEC", 0.3)
    g = golem()
    pool = warm_lease_through_an_outage(g, fake_yagna, caplog)
    hang = threading.Event()
    fake_yagna.command_hang = hang
    try:
        started = time.monotonic()
        assert pool.submit(ok).result(timeout=WAIT) == "out\n"
        assert time.monotonic() - started < 5.0  # not the probe's 10 s
    finally:
        hang.set()
    assert activity_creates(fake_yagna) == 2 and agreement_creates(fake_yagna) == 1  # same agreement
    assert any("no longer answers" in r.getMessage() for r in caplog.records)


def test_a_liveness_probe_cut_short_by_the_startup_timeout_keeps_the_lease(golem, fake_yagna, caplog):
    g = golem()
    pool = warm_lease_through_an_outage(g, fake_yagna, caplog)
    hang = threading.Event()
    fake_yagna.command_hang = hang
    try:
        job = pool.create_job(job={"startup_timeout_sec": 0.5})
        started = time.monotonic()
        job.start_work(ok)
        with pytest.raises(GolemTimeoutError) as caught:
            job.wait_for_result(timeout=WAIT)
        assert time.monotonic() - started < 3.0
        assert caught.value.phase == "lease" and job.state is JobState.REJECTED
    finally:
        hang.set()
    fake_yagna.command_hang = None
    assert wait_until(lambda: pool.stats().idle == 1)  # not thrown away: the next job asks again
    assert pool.submit(ok).result(timeout=WAIT) == "out\n"
    assert activity_creates(fake_yagna) == 1 and len(fake_yagna.calls("GET", PROBE)) == 2
