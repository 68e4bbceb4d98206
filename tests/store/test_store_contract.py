"""One test suite for every store (memory, SQLite, PostgreSQL on a real server): the contract
GolemNetwork and StoredJob rely on. Cross-process tests run a real second Python process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from golem_sync import GolemCancelledError, GolemTimeoutError, GolemUserError, JobState
from golem_sync.store import (GolemInterruptedError, GolemRemoteJobError, GolemStoreError, Retention,
                              StoredJob)

CHILD = os.path.join(os.path.dirname(__file__), "child.py")


def new_id() -> str:
    return str(uuid.uuid4())


def test_round_trip_and_final_state_sets_ended_at(make_store):
    store = make_store()
    job_id = new_id()
    created = store.create(job_id)
    assert created.state == "new" and created.owner == store.owner and created.ended_at is None
    assert store.update(job_id, state="pending", agreement_id="agr-1")
    assert store.update(job_id, activity_id="act-1")
    record = store.get(job_id)
    assert (record.state, record.agreement_id, record.activity_id) == ("pending", "agr-1", "act-1")
    assert [r.job_id for r in store.running()] == [job_id]
    assert store.update(job_id, state="done", result=store.serializer.dumps({"answer": 42}))
    record = store.get(job_id)
    assert record.ended and record.ended_at is not None and record.ended_at >= record.created_at
    assert store.running() == []
    assert store.get("no-such-job") is None
    assert not store.update("no-such-job", state="done")
    with pytest.raises(GolemUserError, match="unknown"):
        store.update(job_id, colour="red")


def test_conditional_update_claims_a_job_once(make_store):
    store = make_store()
    job_id = new_id()
    store.create(job_id, state="pending")
    owner = store.owner
    assert store.update(job_id, expect_states=("new", "pending"), expect_owner=owner, state="rejected", owner="me")
    assert not store.update(job_id, expect_states=("new", "pending"), expect_owner=owner, state="rejected")
    assert store.get(job_id).owner == "me"


def test_cancel_requests_only_reach_running_jobs(make_store):
    store = make_store()
    new, running = new_id(), new_id()
    store.create(new)
    store.create(running, state="pending")
    assert not store.request_cancel(new)
    assert store.request_cancel(running, "stop it")
    assert store.get(running).cancel_reason == "stop it"
    with pytest.raises(GolemUserError, match="not running"):
        StoredJob(store, new).cancel(timeout=1)


def test_waiters_wake_on_notification_not_polling(make_store):
    store = make_store()
    job_id = new_id()
    store.create(job_id, state="pending")
    writer = threading.Timer(0.3, store.update, args=(job_id,), kwargs={"state": "done", "result": "7"})
    writer.start()
    started = time.monotonic()
    record = store.wait_until(job_id, lambda r: r.ended, timeout=10)
    waited = time.monotonic() - started
    writer.join()
    assert record.state == "done"
    assert 0.25 < waited < 1.5  # the safety re-read is every 5 s: only a notification explains this
    started = time.monotonic()
    other = new_id()
    store.create(other, state="pending")
    assert store.wait_until(other, lambda r: r.ended, timeout=0.3).state == "pending"
    assert 0.25 < time.monotonic() - started < 2.0


def test_listeners_hear_every_change(make_store):
    store = make_store()
    heard = []
    got = threading.Event()

    def listener(job_id: str) -> None:
        heard.append(job_id)
        got.set()

    remove = store.add_listener(listener)
    job_id = new_id()
    store.create(job_id)
    assert got.wait(5)
    assert job_id in heard
    remove()


def test_stored_job_reads_results_and_rebuilds_errors(make_store):
    store = make_store()
    ids = [new_id() for _ in range(6)]
    store.create(ids[0], state="done", result=store.serializer.dumps(["a\n", "b\n"]))
    store.create(ids[1], state="cancelled", error_type="GolemCancelledError", error="cancelled by the user")
    store.create(ids[2], state="rejected", error_type="ValueError", error="my bug")
    store.create(ids[3], state="rejected", error_type="GolemInterruptedError", error="interrupted: gone")
    store.create(ids[4], state="done", result_error="a result of type Result cannot be serialized")
    store.create(ids[5])
    done = StoredJob(store, ids[0])
    assert done.state is JobState.DONE and done.done() and not done.is_running()
    assert done.results == ["a\n", "b\n"] and done.error is None
    assert done.wait_for_result(timeout=1) == ["a\n", "b\n"]
    with pytest.raises(GolemCancelledError, match="by the user"):
        StoredJob(store, ids[1]).wait_for_result(timeout=1)
    with pytest.raises(GolemRemoteJobError, match="ValueError: my bug") as info:
        StoredJob(store, ids[2]).wait_for_result(timeout=1)
    assert info.value.type_name == "ValueError"
    assert isinstance(StoredJob(store, ids[3]).error, GolemInterruptedError)
    with pytest.raises(GolemStoreError, match="could not be stored.*cannot be serialized"):
        StoredJob(store, ids[4]).wait_for_result(timeout=1)
    with pytest.raises(GolemUserError, match="never started"):
        StoredJob(store, ids[5]).wait_for_result(timeout=1)
    store.update(ids[5], state="pending")
    with pytest.raises(GolemTimeoutError) as timeout:
        StoredJob(store, ids[5]).wait_for_result(timeout=0.2)
    assert timeout.value.phase == "wait"


def test_eviction_by_count_keeps_the_newest_and_never_running_jobs(make_store):
    store = make_store(retention=Retention(max_age_sec=None, max_finished=3))
    finished = []
    for _ in range(6):
        job_id = new_id()
        store.create(job_id, state="pending")
        store.update(job_id, state="done", result="1")
        finished.append(job_id)
        time.sleep(0.002)  # distinct end times, so "newest" is well defined
    running = new_id()
    store.create(running, state="pending")
    assert store.evict(force=True) == 3
    assert [store.get(j) is not None for j in finished] == [False] * 3 + [True] * 3
    assert store.get(running) is not None
    with pytest.raises(GolemStoreError, match="evicted"):
        StoredJob(store, finished[0]).state


def test_eviction_by_age(make_store):
    store = make_store(retention=Retention(max_age_sec=0.2, max_finished=None))
    old, young = new_id(), new_id()
    store.create(old, state="pending")
    store.update(old, state="rejected", error="x", error_type="ValueError")
    time.sleep(0.3)
    store.create(young, state="pending")
    store.update(young, state="done", result="1")
    assert store.evict(force=True) == 1
    assert store.get(old) is None and store.get(young) is not None
    assert store.evict() == 0  # throttled: at most once per Retention.every_sec


def test_a_non_json_result_is_refused_by_the_default_serializer(make_store):
    store = make_store()
    with pytest.raises(TypeError):
        store.serializer.dumps(object())


# -- several processes ----------------------------------------------------------------------


def spawn(factory, action: str, job_id: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, CHILD, *factory.child_args(), action, job_id],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_another_process_awaits_a_result_woken_by_notification(shared_store):
    store = shared_store()
    job_id = new_id()
    store.create(job_id, state="pending")
    child = spawn(shared_store, "wait", job_id)
    try:
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(0.5)  # the child is now blocked in wait_for_result
        store.update(job_id, state="done", result=store.serializer.dumps({"out": "hi"}))
        line = json.loads(child.stdout.readline())
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert line["result"] == {"out": "hi"}
    assert line["waited"] < 2.0  # woken by the notification, not the 5 s safety re-read


def test_cancel_from_another_process_is_heard_by_the_running_one(shared_store):
    store = shared_store()
    job_id = new_id()
    child = spawn(shared_store, "run-until-cancelled", job_id)
    try:
        assert child.stdout.readline().strip() == "running"
        started = time.monotonic()
        StoredJob(store, job_id).cancel(timeout=10)
        took = time.monotonic() - started
        assert child.stdout.readline().strip() == "cancelled"
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert StoredJob(store, job_id).state is JobState.CANCELLED
    assert took < 2.0


def test_a_killed_owner_is_seen_as_gone_and_a_live_one_as_alive(shared_store):
    store = shared_store()
    job_id = new_id()
    child = spawn(shared_store, "hold", job_id)
    try:
        assert child.stdout.readline().strip() == job_id
        owner = store.get(job_id).owner
        assert owner != store.owner
        assert store.owner_alive(owner)
        assert store.owner_alive(store.owner)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 10  # PostgreSQL notices the dropped session within moments
    while store.owner_alive(owner):
        assert time.monotonic() < deadline, "a killed owner still counts as alive"
        time.sleep(0.05)


def test_a_waiter_learns_that_the_running_process_died(shared_store):
    store = shared_store()
    job_id = new_id()
    child = spawn(shared_store, "hold", job_id)
    try:
        assert child.stdout.readline().strip() == job_id
        outcome = {}

        def wait() -> None:
            started = time.monotonic()
            try:
                StoredJob(store, job_id).wait_for_result(timeout=30)
            except Exception as exc:
                outcome["error"], outcome["after"] = exc, time.monotonic() - started

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait()
        waiter.join(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert isinstance(outcome["error"], GolemInterruptedError)
    assert "is gone" in str(outcome["error"])
    assert outcome["after"] < 10.0  # the dead send no notifications: the 5 s safety re-read finds it


def test_sqlite_notifications_work_for_paths_too_long_for_a_unix_socket(tmp_path):
    from golem_sync.store import SQLiteJobStore
    from golem_sync.store.notify import notify_dir_for

    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 4)
    deep.mkdir(parents=True)
    path = str(deep / "jobs.db")
    assert not notify_dir_for(path).startswith(str(tmp_path))  # moved to the temp dir, by hash
    with SQLiteJobStore(path) as writer, SQLiteJobStore(path) as reader:
        job_id = new_id()
        writer.create(job_id, state="pending")
        threading.Timer(0.2, writer.update, args=(job_id,), kwargs={"state": "done", "result": "1"}).start()
        started = time.monotonic()
        assert reader.wait_until(job_id, lambda r: r.ended, timeout=10).state == "done"
        assert time.monotonic() - started < 1.5


def test_postgres_store_rides_out_lost_connections(pg_server):
    from golem_sync.store import PostgresJobStore

    table = "t_" + uuid.uuid4().hex[:10]
    with PostgresJobStore(pg_server.conninfo, table=table) as waiter, \
            PostgresJobStore(pg_server.conninfo, table=table) as writer:
        job_id = new_id()
        writer.create(job_id, state="pending")
        outcome = {}

        def wait() -> None:
            started = time.monotonic()
            outcome["record"] = waiter.wait_until(job_id, lambda r: r.ended, timeout=20)
            outcome["after"] = time.monotonic() - started

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)
        # The server drops the waiter's listener session (as on a server restart or network cut);
        # the job ends while it is away, so that notification is lost.
        writer._run("SELECT pg_terminate_backend(?)", (waiter._listen_db.info.backend_pid,))
        writer.update(job_id, state="done", result="1")
        thread.join(30)
        assert outcome["record"].state == "done"
        assert outcome["after"] < 3.0  # the reconnected listener re-read the job; no 5 s safety wait
        deadline = time.monotonic() + 10
        while not writer.owner_alive(waiter.owner):  # the liveness lock is taken again on reconnect
            assert time.monotonic() < deadline
            time.sleep(0.05)
        writer._run("SELECT pg_terminate_backend(?)", (waiter._db.info.backend_pid,))
        assert waiter.get(job_id).state == "done"  # the main connection reconnects on use
