"""Job stores with real jobs on the devnet: two requestor processes share a store (SQLite, and
PostgreSQL on a real server: the same tests).

The other process is a real Python process running its own GolemNetwork (tests/store/devnet_child.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "devnet"))

from hygiene import YagnaProbe  # noqa: E402
from test_job_api import Recorder, make_network  # noqa: E402

from golem_sync import GolemCancelledError, JobState  # noqa: E402
from golem_sync._job import Job  # noqa: E402
from golem_sync.store import GolemInterruptedError, GolemStoreError, MemoryJobStore, StoredJob  # noqa: E402

pytestmark = pytest.mark.devnet

CHILD = os.path.join(os.path.dirname(__file__), "devnet_child.py")


@pytest.fixture
def probe(golem_devnet) -> YagnaProbe:
    return YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.close()


class Child:
    """A second requestor process; stopped (by pid) at the end of the test whatever happens."""

    def __init__(self, info, stores, action: str) -> None:
        settings = dict(api_url=info.api_url, app_key=info.app_key, subnet=info.subnet,
                        payment_network=info.payment_network, registry_url=info.registry_url)
        env = dict(os.environ, GOLEM_TEST_DEVNET=json.dumps(settings),
                   PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, CHILD, *stores.child_args(), action], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def line(self) -> str:
        text = self.proc.stdout.readline()
        assert text, f"the child process ended early (exit code {self.proc.wait(10)})"
        return text.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def children():
    started = []
    yield lambda *args: started.append(Child(*args)) or started[-1]
    for child in started:
        child.stop()


def test_job_started_in_one_process_is_read_and_awaited_in_another(golem_devnet, shared_store, children, probe):
    child = children(golem_devnet, shared_store, "echo")
    job_id = child.line()
    store = shared_store()
    network = make_network(golem_devnet, job_store=store).init()
    try:
        handle = network.get_job_by_id(job_id)
        assert isinstance(handle, StoredJob)
        assert child.line() == "working"
        assert handle.state is JobState.PENDING and handle.is_running()
        assert handle.agreement_id and handle.activity_id and handle.provider
        with pytest.raises(TimeoutError):
            handle.wait_for_result(timeout=0.5)  # the worker waits for our go-ahead
        child.proc.stdin.write("go\n")
        child.proc.stdin.flush()
        assert handle.wait_for_result(timeout=60) == "from-the-other-process\n"
        assert handle.state is JobState.DONE and handle.error is None
        assert json.loads(child.line())["state"] == "done"
        assert child.proc.wait(60) == 0
        assert probe.agreement_state(handle.agreement_id) == "Terminated"
        assert probe.activity_state(handle.activity_id) in ("Terminated", "Gone")
    finally:
        network.close()
        store.close()


def test_cancel_from_another_process_cancels_the_running_job(golem_devnet, shared_store, children, probe):
    child = children(golem_devnet, shared_store, "sleep")
    job_id = child.line()
    assert child.line() == "working"
    with shared_store() as store:
        handle = StoredJob(store, job_id)
        time.sleep(0.5)  # the worker is inside `sleep 120` now
        started = time.monotonic()
        handle.cancel(timeout=30)
        took = time.monotonic() - started
        assert handle.state is JobState.CANCELLED
        assert isinstance(handle.error, GolemCancelledError)
        with pytest.raises(GolemCancelledError, match="another process"):
            handle.wait_for_result(timeout=1)
        outcome = json.loads(child.line())
        assert outcome["state"] == "cancelled" and outcome["error"] == "GolemCancelledError"
        assert child.proc.wait(60) == 0
        assert took < 10.0  # cancel is heard at once; the rest is cleanup in yagna
        assert probe.agreement_state(handle.agreement_id) == "Terminated"
        assert probe.activity_state(handle.activity_id) in ("Terminated", "Gone")


def test_a_killed_process_is_recovered_by_the_next_with_nothing_left_open(golem_devnet, shared_store, children,
                                                                          probe):
    child = children(golem_devnet, shared_store, "sleep")
    job_id = child.line()
    assert child.line() == "working"
    with shared_store() as store:
        before = store.get(job_id)
        assert before.state == "pending" and before.agreement_id and before.activity_id and before.allocation_id
        assert probe.agreement_state(before.agreement_id) == "Approved"
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait(10)
        network = make_network(golem_devnet, job_store=store).init()  # recovery runs here
        try:
            handle = network.get_job_by_id(job_id)
            assert handle.state is JobState.REJECTED
            assert isinstance(handle.error, GolemInterruptedError)
            assert "interrupted" in str(handle.error)
            with pytest.raises(GolemInterruptedError):
                handle.wait_for_result(timeout=1)
            settler = network._store.settler
        finally:
            network.close()  # waits for the recovered agreement's invoice, as for its own
        assert settler is not None and settler.accepted == {before.agreement_id}
        # agreement terminated, activity gone, the provider's invoice for the work done accepted,
        # the dead process's allocation released
        probe.assert_clean([before.agreement_id], [before.activity_id], before.allocation_id,
                           invoiced=[before.agreement_id])


def test_finished_jobs_leave_memory_and_are_read_through_the_store(golem_devnet, recorder, probe):
    store = MemoryJobStore()
    network = make_network(golem_devnet, job_store=store).init()
    try:
        job = network.create_job()
        job.start_work(lambda ctx: ctx.run("echo stored").stdout)
        assert network.get_job_by_id(job.id) is job  # live while it runs
        assert job.wait_for_result(timeout=60) == "stored\n"
        unserializable = network.create_job()
        unserializable.start_work(lambda ctx: ctx.run("true"))  # a Result object: not JSON
        assert unserializable.wait_for_result(timeout=60).ok
    finally:
        network.close()
    handle = network.get_job_by_id(job.id)
    assert isinstance(handle, StoredJob) and not isinstance(handle, Job)
    assert handle.results == "stored\n" and handle.state is JobState.DONE
    assert network.jobs() == []
    with pytest.raises(GolemStoreError, match="cannot be serialized"):
        network.get_job_by_id(unserializable.id).results
    probe.assert_clean(recorder.ids("agreement-created", "agreement_id"),
                       recorder.ids("activity-created", "activity_id"), network.allocation_id,
                       invoiced=recorder.ids("agreement-approved", "agreement_id"))


def test_progress_from_a_worker_in_another_process_and_cancel_through_the_cli(golem_devnet, shared_store,
                                                                              children, probe):
    child = children(golem_devnet, shared_store, "progress")
    job_id = child.line()
    assert child.line() == "working"
    cli = [sys.executable, "-m", "golem_sync", "jobs", "--store", shared_store.location, "--table", shared_store.table]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    with shared_store() as store:
        handle = StoredJob(store, job_id)
        seen = []
        deadline = time.monotonic() + 60
        while len([p for p in seen if p.message.startswith("step")]) < 3:  # steps are 0.5 s apart on the provider
            assert time.monotonic() < deadline, f"progress seen: {[p.message for p in seen]}"
            progress = handle.wait_for_progress(timeout=30)
            assert progress is not None, "no progress while the job runs"
            assert handle.is_running()
            seen.append(progress)
        assert [p.seq for p in seen] == sorted({p.seq for p in seen})  # strictly newer each time
        # The tight loop of 500 reports reached the store as a few writes: far fewer values seen.
        assert sum(p.message == "warming up" for p in seen) < 20
        latest = seen[-1]
        assert latest.data["on"] == handle.provider and 0 < latest.fraction < 1
        assert handle.progress.seq >= latest.seq and handle.state is JobState.PENDING

        listed = subprocess.run(cli + ["list", "--state", "pending", "--json"], capture_output=True, text=True,
                                timeout=60, env=env)
        assert listed.returncode == 0, listed.stderr
        mine = [j for j in json.loads(listed.stdout) if j["job_id"] == job_id]
        assert mine and mine[0]["progress"]["message"].startswith("step") and mine[0]["owner_alive"] is True

        started = time.monotonic()
        cancel = subprocess.run(cli + ["cancel", job_id, "--timeout", "60"], capture_output=True, text=True,
                                timeout=90, env=env)
        took = time.monotonic() - started
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert f"{job_id}: cancelled" in cancel.stdout
        outcome = json.loads(child.line())
        assert outcome["state"] == "cancelled" and outcome["error"] == "GolemCancelledError"
        assert child.proc.wait(60) == 0
        assert took < 30.0
        assert handle.state is JobState.CANCELLED
        final = handle.progress
        assert final is not None and final.seq >= latest.seq and final.message.startswith("step")
        waited = subprocess.run(cli + ["wait", job_id], capture_output=True, text=True, timeout=60, env=env)
        assert waited.returncode == 1 and "cancelled" in waited.stdout
        assert probe.agreement_state(handle.agreement_id) == "Terminated"
        assert probe.activity_state(handle.activity_id) in ("Terminated", "Gone")
