"""The Job API end to end on the devnet: real yagna, real providers, real payments."""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, Dict, List

import pytest

from golem_sync import (GolemCancelledError, GolemConfigError, GolemNetwork, GolemTimeoutError,
                        GolemUserError, GolemWorkError, JobState, signals)

from hygiene import YagnaProbe  # tests/devnet is on sys.path (pytest rootdir-relative import)

pytestmark = pytest.mark.devnet

IMAGE = "golem/alpine:latest"
JOB_SIGNALS = [signals.job_created, signals.job_started, signals.job_succeeded, signals.job_failed,
               signals.job_cancelled, signals.job_ended]


class Recorder:
    """Records every signal golem_sync sends during one test, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: List[tuple] = []
        self._receivers = []
        for signal in signals.namespace.values():
            def receiver(sender: Any, _name: str = signal.name, **kwargs: Any) -> None:
                with self.lock:
                    self.events.append((_name, sender, kwargs))
            signal.connect(receiver, weak=False)
            self._receivers.append((signal, receiver))

    def names_for(self, sender: Any, prefix: str = "job-") -> List[str]:
        with self.lock:
            return [n for n, s, _ in self.events if s is sender and n.startswith(prefix)]

    def ids(self, name: str, key: str) -> List[str]:
        with self.lock:
            return [kw[key] for n, _, kw in self.events if n == name]

    def close(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture
def probe(golem_devnet) -> YagnaProbe:
    return YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)


def make_network(info, **overrides: Any) -> GolemNetwork:
    options: Dict[str, Any] = dict(
        yagna={"api_url": info.api_url, "app_key": info.app_key},
        payment={"network": info.payment_network, "invoice_wait_sec": 20},
        market={"subnet_tag": info.subnet},
        package={"image_tag": IMAGE, "registry_url": info.registry_url},
        max_workers=24,
    )
    options.update(overrides)
    return GolemNetwork(**options)


@pytest.fixture
def golem(golem_devnet, probe, recorder):
    """An initialized network; on teardown: close it and assert through yagna that nothing is left."""
    network = make_network(golem_devnet).init()
    yield network
    network.close()
    approved = recorder.ids("agreement-approved", "agreement_id")
    activities = {*recorder.ids("activity-created", "activity_id"), *recorder.ids("activity-destroyed", "activity_id")}
    probe.assert_clean(recorder.ids("agreement-created", "agreement_id"), activities,
                       network.allocation_id, invoiced=approved)
    assert requestor_threads() == []


REQUESTOR_THREADS = ("golem-job", "golem-io", "golem-allocation", "golem-payment-retry", "golem-agreement-events",
                     "golem-debit-note-events", "golem-invoice-events", "golem-process", "golem-transfer",
                     "golem-pool")


def requestor_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(REQUESTOR_THREADS)]


def echo(ctx):
    return ctx.run("echo 'Hello, Golem!'").stdout


def test_hello_job_succeeds_with_signals_in_golem_js_order(golem, recorder):
    job = golem.create_job()
    assert job.state is JobState.NEW
    job.start_work(echo)
    assert job.is_running()
    assert job.wait_for_result(timeout=60) == "Hello, Golem!\n"
    assert job.state is JobState.DONE and job.results == "Hello, Golem!\n" and job.error is None
    assert recorder.names_for(job) == ["job-created", "job-started", "job-succeeded", "job-ended"]
    assert job.provider is not None and job.provider.name
    assert golem.get_job_by_id(job.id) is job
    assert golem.get_job_by_id("no-such-job") is None
    assert golem.jobs(JobState.DONE) == [job]


def test_failing_command_returns_an_error_result(golem):
    job = golem.create_job()
    job.start_work(lambda ctx: ctx.run("invalid-command-xyz"))
    result = job.wait_for_result(timeout=60)
    assert result.result == "Error" and not result.ok
    assert "127" in (result.message or "")
    assert "not found" in str(result.stderr)


def test_raise_on_command_error_fails_the_job(golem, recorder):
    job = golem.create_job(work={"raise_on_command_error": True})
    job.start_work(lambda ctx: ctx.run("exit 3"))
    with pytest.raises(GolemWorkError, match="code 3"):
        job.wait_for_result(timeout=60)
    assert job.state is JobState.REJECTED
    assert recorder.names_for(job) == ["job-created", "job-started", "job-failed", "job-ended"]


def test_worker_exception_rejects_the_job_and_is_not_retried(golem, recorder):
    def worker(ctx):
        ctx.run("true")
        raise ValueError("my bug")

    job = golem.create_job(job={"max_retries": 2})
    job.start_work(worker)
    with pytest.raises(ValueError, match="my bug"):
        job.result(timeout=60)
    assert isinstance(job.error, ValueError)
    assert len(recorder.ids("agreement-approved", "agreement_id")) == 1  # no retry
    failed = [kw for n, s, kw in recorder.events if n == "job-failed" and s is job]
    assert isinstance(failed[0]["error"], ValueError)


def test_batch_returns_every_result(golem):
    job = golem.create_job()
    job.start_work(lambda ctx: [r.stdout for r in ctx.begin_batch().run("echo a").run("echo b").end()])
    assert job.wait_for_result(timeout=60) == ["a\n", "b\n"]


def test_cancel_while_waiting_for_offers_ends_within_a_second(golem, recorder):
    job = golem.create_job(market={"denied_name_regex": ".*"})  # every proposal is rejected
    job.start_work(echo)
    time.sleep(1.0)
    started = time.monotonic()
    job.cancel(timeout=10)
    assert time.monotonic() - started < 1.0
    assert job.state is JobState.CANCELLED
    assert isinstance(job.exception(), GolemCancelledError)
    assert isinstance(job.exception(), concurrent.futures.CancelledError)
    assert recorder.names_for(job) == ["job-created", "job-cancelled", "job-ended"]
    assert recorder.ids("demand-unsubscribed", "demand_id")


def test_cancel_inside_a_running_batch(golem, recorder):
    job = golem.create_job()
    running = threading.Event()

    def worker(ctx):
        running.set()
        return ctx.run("sleep 30")

    job.start_work(worker)
    assert running.wait(60)
    time.sleep(0.5)
    started = time.monotonic()
    job.cancel(timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed  # the devnet's activity destroy alone takes ~0.76 s
    assert job.state is JobState.CANCELLED
    assert recorder.names_for(job) == ["job-created", "job-started", "job-cancelled", "job-ended"]


@pytest.mark.parametrize("phase_signal, limit", [
    (signals.proposal_received, 1.0),     # negotiating
    (signals.agreement_approved, 1.0),    # creating the activity (yagna's create is handed off)
    (signals.activity_created, 1.9),      # deploying: cleanup includes yagna's ~0.76 s destroy
])
def test_cancel_reaches_every_phase(golem, recorder, phase_signal, limit):
    job = golem.create_job()
    elapsed = []

    def cancel_now(sender, **kwargs):
        if sender is job and not elapsed:
            elapsed.append(None)  # once
            started = time.monotonic()
            # Receivers run on the job's thread: cancel from another one, as a user would.
            threading.Thread(target=lambda: (job.cancel(timeout=30),
                                             elapsed.append(time.monotonic() - started))).start()

    phase_signal.connect(cancel_now)
    try:
        job.start_work(echo)
        with pytest.raises(GolemCancelledError):
            job.wait_for_result(timeout=60)
        deadline = time.monotonic() + 10
        while len(elapsed) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        phase_signal.disconnect(cancel_now)
    assert job.state is JobState.CANCELLED
    print(f"cancel in {phase_signal.name}: {elapsed[1]:.3f}s")
    assert elapsed[1] < limit, elapsed
    assert recorder.names_for(job)[-2:] == ["job-cancelled", "job-ended"]


def test_cancel_and_wait_from_the_jobs_own_thread_never_deadlock(golem):
    def worker(ctx):
        with pytest.raises(GolemUserError, match="would wait forever"):
            job.wait_for_result(timeout=5)
        started = time.monotonic()
        job.cancel()  # returns at once: it only requests the cancellation
        assert time.monotonic() - started < 0.5
        return ctx.run("echo never")

    job = golem.create_job()
    job.start_work(worker)
    with pytest.raises(GolemCancelledError):
        job.wait_for_result(timeout=30)
    assert job.state is JobState.CANCELLED


def test_startup_timeout_names_the_phase_when_no_provider_matches(golem):
    job = golem.create_job(package={"min_mem_gib": 100000}, job={"startup_timeout_sec": 2})
    job.start_work(echo)
    with pytest.raises(GolemTimeoutError) as info:
        job.wait_for_result(timeout=30)
    assert info.value.phase == "proposal"
    assert "no proposal" in str(info.value)


def test_job_timeout(golem):
    job = golem.create_job(job={"timeout_sec": 4})
    job.start_work(lambda ctx: ctx.run("sleep 30"))
    with pytest.raises(GolemTimeoutError) as info:
        job.wait_for_result(timeout=30)
    assert info.value.phase == "job"
    assert job.state is JobState.REJECTED


def test_misuse_gives_clear_typed_errors(golem):
    job = golem.create_job()
    with pytest.raises(GolemUserError, match="never started"):
        job.wait_for_result()
    with pytest.raises(GolemUserError, match="not running"):
        job.cancel()
    with pytest.raises(TypeError, match="callable"):
        job.start_work("not a function")
    with pytest.raises(GolemConfigError, match="job.timeout_sec"):
        golem.create_job(job={"timeout_sec": -1})
    with pytest.raises(GolemConfigError, match="unknown option 'pakage'"):
        golem.create_job(pakage={})
    job.start_work(lambda ctx: ctx.run("sleep 2"))
    with pytest.raises(GolemUserError, match="already running"):
        job.start_work(echo)
    job.wait_for_result(timeout=60)
    with pytest.raises(GolemUserError, match="already ended"):
        job.start_work(echo)


def test_a_job_without_an_image_fails_at_start_work(golem_devnet, recorder):
    with make_network(golem_devnet, package=None) as network:
        job = network.create_job()
        with pytest.raises(GolemConfigError, match="no image"):
            job.start_work(echo)
        assert job.state is JobState.NEW
    assert recorder.ids("demand-subscribed", "demand_id") == []


def test_a_raising_receiver_does_not_break_the_job(golem):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.job_started.connect(broken)
    try:
        job = golem.create_job()
        job.start_work(echo)
        assert job.wait_for_result(timeout=60) == "Hello, Golem!\n"
    finally:
        signals.job_started.disconnect(broken)


def test_twenty_concurrent_jobs_with_as_completed(golem):
    jobs = [golem.create_job() for _ in range(20)]
    for n, job in enumerate(jobs):
        job.start_work(lambda ctx, n=n: ctx.run(f"echo {n}").stdout.strip())
    results = [f.result() for f in concurrent.futures.as_completed([j.future for j in jobs], timeout=180)]
    assert sorted(results, key=int) == [str(n) for n in range(20)]
    assert all(job.state is JobState.DONE for job in jobs)


def test_close_from_inside_a_worker_is_refused_not_deadlocked(golem):
    def worker(ctx):
        with pytest.raises(GolemUserError, match="close\\(\\) on golem_sync's thread 'golem-job"):
            golem.close()
        return "still fine"

    job = golem.create_job()
    job.start_work(worker)
    assert job.wait_for_result(timeout=30) == "still fine"
