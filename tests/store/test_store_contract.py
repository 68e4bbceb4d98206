"""One test suite for every store (memory, SQLite, PostgreSQL on a real server): the contract
GolemNetwork and StoredJob rely on. Cross-process tests run a real second Python process."""
from __future__ import annotations

import contextlib
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
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=env)


@contextlib.contextmanager
def running(factory, action: str, job_id: str):
    """``spawn``, then kill the child at the end if it is still running (by its pid)."""
    child = spawn(factory, action, job_id)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


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


# -- progress -----------------------------------------------------------------------------------

def _progress(seq: int, message: str = "", **data):
    from golem_sync.store import Progress

    return Progress.create(min(1.0, seq / 10), message or f"step {seq}", data, seq=seq)


def test_progress_round_trip_list_jobs_and_the_final_write(make_store):
    store = make_store()
    old, running, ended = new_id(), new_id(), new_id()
    for job_id in (old, running, ended):
        store.create(job_id, state="pending")
        time.sleep(0.01)  # distinct creation times: list_jobs is newest first
    handle = StoredJob(store, running)
    assert handle.progress is None
    store.set_progress(running, _progress(1, "first", part="a"))
    got = handle.wait_for_progress(timeout=10)
    assert (got.seq, got.message, got.data, got.fraction) == (1, "first", {"part": "a"}, 0.1)
    assert handle.wait_for_progress(timeout=0.3) is None  # nothing newer yet: a timeout
    assert not handle.done()
    store.update(ended, state="done", result="1", progress=_progress(9, "final").to_json())
    store.set_progress(ended, _progress(3, "late"))  # after the end: never written
    listed = store.list_jobs()
    assert [r.job_id for r in listed] == [ended, running, old]
    assert [r.read_progress() and r.read_progress().message for r in listed] == ["final", "first", None]
    assert [r.job_id for r in store.list_jobs(["pending"])] == [running, old]
    assert [r.job_id for r in store.list_jobs(limit=1)] == [ended]
    assert store.list_jobs(["rejected"]) == []
    time.sleep(0.5)
    assert StoredJob(store, ended).progress.message == "final"
    with pytest.raises(GolemUserError, match="limit"):
        store.list_jobs(limit=-1)


def test_progress_writes_are_rate_limited_and_the_last_one_lands(make_store):
    store = make_store()
    job_id = new_id()
    store.create(job_id, state="pending")
    heard = []
    store.add_listener(lambda changed: heard.append(changed) if changed == job_id else None)
    started = time.monotonic()
    seq = 0
    while time.monotonic() - started < 0.6:
        seq += 1
        store.set_progress(job_id, _progress(seq))
    handle = StoredJob(store, job_id)
    deadline = time.monotonic() + 10
    while (handle.progress is None or handle.progress.seq != seq) and time.monotonic() < deadline:
        handle.wait_for_progress(timeout=1)
    assert handle.progress.seq == seq and seq > 100
    assert 3 <= len(heard) <= 6  # 0.6 s at one write per 0.2 s (a leading and a trailing edge)


def test_wait_for_progress_returns_when_the_job_ends_without_one(make_store):
    store = make_store()
    job_id = new_id()
    store.create(job_id, state="pending")
    threading.Timer(0.3, store.update, args=(job_id,), kwargs={"state": "done", "result": "1"}).start()
    started = time.monotonic()
    assert StoredJob(store, job_id).wait_for_progress(timeout=10) is None
    assert time.monotonic() - started < 2.0
    assert list(StoredJob(store, job_id).follow_progress(timeout=1)) == []


def test_follow_progress_times_out_on_a_job_that_does_not_end(make_store):
    store = make_store()
    job_id = new_id()
    store.create(job_id, state="pending")
    store.set_progress(job_id, _progress(1))
    followed = []
    with pytest.raises(GolemTimeoutError, match="did not end within 0.5s") as caught:
        for progress in StoredJob(store, job_id).follow_progress(timeout=0.5):
            followed.append(progress.seq)
    assert followed == [1] and caught.value.phase == "progress"


def test_another_process_follows_progress_while_the_job_runs(shared_store):
    store = shared_store()
    job_id = new_id()
    with running(shared_store, "report-progress", job_id) as child:
        assert child.stdout.readline().strip() == "running"
        handle = StoredJob(store, job_id)
        seen = []
        while len(seen) < 5:
            progress = handle.wait_for_progress(timeout=10)
            assert progress is not None, f"no progress after {seen}"
            seen.append(progress.seq)
            assert handle.is_running()
        child.stdin.write("go\n")
        child.stdin.flush()
        rest = [p.seq for p in handle.follow_progress(timeout=10)]
        assert child.stdout.readline().strip() == "done"
        assert child.wait(10) == 0
    assert seen == [1, 2, 3, 4, 5] and rest == [6]  # every value, in order, the final one last
    assert handle.results == "ok" and handle.progress.message == "finished"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_table_of_the_previous_version_gains_the_progress_column(kind, request, tmp_path):
    table = "t_" + uuid.uuid4().hex[:10]
    old_schema = (f"CREATE TABLE {table} (job_id TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT, "
                  f"created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, "
                  f"ended_at DOUBLE PRECISION, error TEXT, error_type TEXT, result TEXT, result_error TEXT, "
                  f"agreement_id TEXT, activity_id TEXT, allocation_id TEXT, provider TEXT, cancel_reason TEXT)")
    insert = (f"INSERT INTO {table} (job_id, state, created_at, updated_at, ended_at, result) "
              f"VALUES ('old-job', 'done', 1.0, 2.0, 2.0, '7')")
    if kind == "sqlite":
        import sqlite3

        from golem_sync.store import SQLiteJobStore

        location = str(tmp_path / "old.db")
        db = sqlite3.connect(location)
        db.execute(old_schema)
        db.execute(insert)
        db.commit()
        db.close()
        open_one = lambda: SQLiteJobStore(location, table=table)  # noqa: E731
    else:
        import psycopg

        location = request.getfixturevalue("pg_server").conninfo
        with psycopg.connect(location, autocommit=True) as db:
            db.execute(old_schema)
            db.execute(insert)
        from golem_sync.store import PostgresJobStore

        open_one = lambda: PostgresJobStore(location, table=table)  # noqa: E731
    first, second = open_one(), open_one()  # the second sees the column already there
    try:
        old = first.get("old-job")
        assert old is not None and old.progress is None and old.result == "7"
        assert StoredJob(first, "old-job").results == 7
        job_id = new_id()
        first.create(job_id, state="pending")
        first.update(job_id, progress=_progress(2, "migrated").to_json())
        assert StoredJob(second, job_id).progress.message == "migrated"
        assert [r.job_id for r in second.list_jobs()] == [job_id, "old-job"]
    finally:
        first.close()
        second.close()
