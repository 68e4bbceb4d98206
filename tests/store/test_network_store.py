"""GolemNetwork's use of a job store, without yagna: a recording stub client stands in for it."""
from __future__ import annotations

import datetime
import threading
import types
from typing import Any, List, Tuple

import pytest

from golem_sync import GolemNetwork, JobState, signals
from golem_sync._job import Job
from golem_sync.store import GolemInterruptedError, GolemStoreError, JobRecord, MemoryJobStore, SQLiteJobStore, StoredJob


class StubClient:
    """Answers what init(), recovery and close() ask yagna, and records every call."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any]] = []
        self.version = types.SimpleNamespace(
            get=lambda: types.SimpleNamespace(current=types.SimpleNamespace(version="0.17.6")))
        self.identity = types.SimpleNamespace(me=lambda: types.SimpleNamespace(identity="0xrequestor"))
        self.activity = types.SimpleNamespace(
            destroy_activity=lambda activity_id, timeout=None: self.calls.append(("destroy", activity_id)))
        self.market = types.SimpleNamespace(
            get_agreement=lambda agreement_id: types.SimpleNamespace(state="Approved"),
            terminate_agreement=lambda agreement_id, reason: self.calls.append(("terminate", agreement_id)),
            cancel_agreement=lambda agreement_id, reason: self.calls.append(("cancel", agreement_id)))
        self.payment = types.SimpleNamespace(
            release_allocation=lambda allocation_id: self.calls.append(("release", allocation_id)),
            collect_invoice_events=self._invoice_events, get_invoice=self._invoice,
            create_allocation=lambda **kw: self.calls.append(("allocate", None)) or types.SimpleNamespace(
                allocation_id="alloc-new"),
            accept_invoice=lambda invoice_id, amount, allocation_id: self.calls.append(
                ("accept", (invoice_id, amount, allocation_id))))
        self._invoice_sent = threading.Event()

    def _invoice_events(self, timeout, after_timestamp, max_events):
        """The provider's invoice for a terminated agreement: one event, then an empty long poll."""
        if self._invoice_sent.is_set():
            threading.Event().wait(timeout)
            return []
        self._invoice_sent.set()
        when = after_timestamp + datetime.timedelta(seconds=1)
        return [types.SimpleNamespace(event_type="InvoiceReceivedEvent", event_date=when, invoice_id="inv-x")]

    def _invoice(self, invoice_id):
        return types.SimpleNamespace(invoice_id=invoice_id, agreement_id="agr-x", status="RECEIVED", amount="0.5")

    def close(self) -> None:
        self.calls.append(("close", None))


def network_with(store, client=None) -> GolemNetwork:
    return GolemNetwork(client=client or StubClient(), job_store=store, max_workers=1)


def pretend_run(job: Job, result: Any) -> None:
    """The hook sequence of a real run (state, agreement, activity, end) without a provider."""
    job._state = JobState.PENDING
    job._persist()
    signals.emit(signals.agreement_created, job, agreement_id="agr-" + job.id[:8], provider="prov-1")
    signals.emit(signals.activity_created, job, activity_id="act-" + job.id[:8], agreement_id="agr-" + job.id[:8])
    job._finish(JobState.DONE, result, None)


def test_jobs_are_recorded_and_finished_ones_are_served_from_the_store(tmp_path):
    store = SQLiteJobStore(tmp_path / "jobs.db")
    network = network_with(store).init()
    try:
        job = network.create_job()
        assert store.get(job.id).state == "new" and network.get_job_by_id(job.id) is job
        pretend_run(job, {"answer": 42})
        record = store.get(job.id)
        assert (record.state, record.agreement_id, record.activity_id, record.provider) == (
            "done", "agr-" + job.id[:8], "act-" + job.id[:8], "prov-1")
        handle = network.get_job_by_id(job.id)
        assert isinstance(handle, StoredJob) and handle.results == {"answer": 42}
        assert network.jobs() == []  # the registry let go of it
        assert network.get_job_by_id("nope") is None
    finally:
        network.close()
        store.close()


def test_a_cancel_request_in_the_store_cancels_the_local_job():
    store = MemoryJobStore()
    network = network_with(store).init()
    try:
        job = network.create_job()
        job._state = JobState.PENDING
        job._persist()
        heard = threading.Event()
        job._token.on_cancel(heard.set)
        assert store.request_cancel(job.id, "from elsewhere")
        assert heard.wait(5) and job._token.reason == "from elsewhere"
    finally:
        job._finish(JobState.CANCELLED, None, RuntimeError("x"))
        network.close()


def test_init_recovers_jobs_of_dead_processes_once_and_frees_their_resources():
    store = MemoryJobStore()
    # Records a process that is gone left behind (a memory store counts only itself as alive).
    store._insert(JobRecord(job_id="orphan", state="pending", owner="memory/1/dead", agreement_id="agr-x",
                            activity_id="act-x", allocation_id="alloc-x"))
    store._insert(JobRecord(job_id="never-started", state="new", owner="memory/1/dead"))
    client = StubClient()
    network = network_with(store, client).init()
    network.close()
    orphan = StoredJob(store, "orphan")
    assert orphan.state is JobState.REJECTED and isinstance(orphan.error, GolemInterruptedError)
    assert StoredJob(store, "never-started").state is JobState.REJECTED
    assert client.calls[:3] == [("destroy", "act-x"), ("terminate", "agr-x"), ("release", "alloc-x")]
    # the provider's invoice for the work done is paid from an allocation made for it, then released
    assert client.calls[3:6] == [("allocate", None), ("accept", ("inv-x", "0.5", "alloc-new")),
                                 ("release", "alloc-new")]
    again = StubClient()
    network_with(store, again).init().close()
    assert again.calls == [("close", None)]  # nothing left to recover


def test_a_live_owners_jobs_are_left_alone(tmp_path):
    first = SQLiteJobStore(tmp_path / "jobs.db")
    second = SQLiteJobStore(tmp_path / "jobs.db")
    try:
        first.create("running", state="pending", agreement_id="agr-live")
        client = StubClient()
        network_with(second, client).init().close()
        assert second.get("running").state == "pending"
        assert client.calls == [("close", None)]
    finally:
        first.close()
        second.close()


def test_job_store_must_be_a_store_or_a_path():
    with pytest.raises(TypeError, match="job_store"):
        network_with(42)


def test_a_store_refuses_to_be_used_across_fork(tmp_path):
    import os

    store = SQLiteJobStore(tmp_path / "jobs.db")
    try:
        pid = os.fork()
        if pid == 0:  # the child: the parent's store must refuse, not share its identity and sockets
            try:
                store.get("x")
            except Exception as exc:
                os._exit(0 if "fork" in str(exc) else 2)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert store.get("x") is None  # the parent's store still works
    finally:
        store.close()


def test_jobs_never_started_end_with_the_network():
    store = MemoryJobStore()
    network = network_with(store).init()
    job = network.create_job()
    network.close()
    handle = StoredJob(store, job.id)
    assert handle.state is JobState.CANCELLED and network.get_job_by_id(job.id) is job
    assert "closed before the job was started" in str(handle.error)


class PickleSerializer:
    """A user-supplied serializer for results JSON cannot carry."""

    def dumps(self, value):
        import base64
        import pickle

        return base64.b64encode(pickle.dumps(value)).decode()

    def loads(self, text):
        import base64
        import pickle

        return pickle.loads(base64.b64decode(text))


def test_a_user_serializer_stores_results_json_cannot(tmp_path):
    result = {"when": datetime.date(2026, 11, 22), "bytes": b"\x00\x01"}
    default = SQLiteJobStore(tmp_path / "json.db")
    custom = SQLiteJobStore(tmp_path / "pickle.db", serializer=PickleSerializer())
    try:
        for store in (default, custom):
            network = network_with(store).init()
            job = network.create_job()
            pretend_run(job, result)
            network.close()
            if store is custom:
                assert StoredJob(store, job.id).wait_for_result(timeout=1) == result
            else:
                with pytest.raises(GolemStoreError, match="type dict cannot be serialized.*serializer"):
                    StoredJob(store, job.id).wait_for_result(timeout=1)
    finally:
        default.close()
        custom.close()
