"""Worker progress: the Progress model, the rate-limited store writes, and ctx.report_progress through
a job (plain and pooled) on the fake yagna, with a job store."""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, List, Tuple

import pytest

from golem_sync import Progress, signals
from golem_sync._progress import MAX_PROGRESS_CHARS
from golem_sync.store import MemoryJobStore, SQLiteJobStore, StoredJob
from golem_sync.store.throttle import ProgressThrottle

WAIT = 10.0


# -- the model ---------------------------------------------------------------------------------

def test_progress_keeps_what_was_reported_and_round_trips_as_json():
    data = {"step": 3, "files": ["a", "b"], "nested": {"ok": True, "none": None}}
    p = Progress.create(0.25, "copying", data, seq=4, timestamp=1000.5)
    data["files"].append("c")  # a snapshot: the worker changing its data later changes nothing
    assert (p.fraction, p.message, p.seq, p.timestamp) == (0.25, "copying", 4, 1000.5)
    assert p.data == {"step": 3, "files": ["a", "b"], "nested": {"ok": True, "none": None}}
    assert p.percent == 25.0
    assert Progress.from_json(p.to_json()) == p
    assert json.loads(p.to_json())["fraction"] == 0.25
    assert p.describe() == '25% copying (step=3, files=["a", "b"], nested={"ok": true, "none": null})'
    assert Progress.create().describe() == "-"
    assert Progress.create(1).fraction == 1.0 and isinstance(Progress.create(1).fraction, float)
    assert Progress.create(0).fraction == 0.0


@pytest.mark.parametrize("fraction, error, text", [
    (True, TypeError, "fraction must be a number"),
    ("0.5", TypeError, "fraction must be a number"),
    (-0.01, ValueError, r"fraction must be in \[0, 1\], got -0.01"),
    (1.5, ValueError, r"fraction must be in \[0, 1\], got 1.5"),
    (float("nan"), ValueError, "fraction must be in"),
    (float("inf"), ValueError, "fraction must be in"),
])
def test_progress_rejects_a_bad_fraction(fraction, error, text):
    with pytest.raises(error, match=text):
        Progress.create(fraction)


def test_progress_names_the_bad_message_or_data_key():
    with pytest.raises(TypeError, match="message must be a str"):
        Progress.create(None, 42)
    with pytest.raises(TypeError, match=r"data 'handle' is not JSON-serialisable"):
        Progress.create(None, None, {"fine": 1, "handle": object()})
    with pytest.raises(TypeError, match=r"data 'when' is not JSON-serialisable"):
        Progress.create(None, None, {"when": {1, 2}})
    with pytest.raises(ValueError, match=r"data 'ratio' is not valid JSON"):
        Progress.create(None, None, {"ratio": float("nan")})
    with pytest.raises(ValueError, match=f"more than the {MAX_PROGRESS_CHARS} allowed"):
        Progress.create(None, "x" * (MAX_PROGRESS_CHARS + 1))


def test_from_json_of_nothing_or_garbage_is_none():
    assert Progress.from_json(None) is None
    assert Progress.from_json("") is None
    assert Progress.from_json("not json") is None
    assert Progress.from_json("[1, 2]") is None


# -- rate limiting (a fake clock, no thread) ---------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _throttle(interval: float = 0.2) -> Tuple[ProgressThrottle, List[Tuple[str, str]], FakeClock]:
    clock = FakeClock()
    written: List[Tuple[str, str]] = []
    throttle = ProgressThrottle(lambda job, text: written.append((job, text)), interval=interval,
                                clock=clock, thread=False)
    return throttle, written, clock


def test_a_tight_loop_writes_once_per_interval_and_the_last_value_always():
    throttle, written, clock = _throttle()
    throttle.submit("j", "0")
    assert throttle.pump() is None  # the first value goes at once (leading edge)
    assert written == [("j", "0")]
    for i in range(1, 1001):  # 1000 reports within 0.1 s
        clock.now += 0.0001
        throttle.submit("j", str(i))
        wake = throttle.pump()
        assert wake is not None and 0.0 < wake <= 0.2
    assert written == [("j", "0")]  # nothing more inside the interval
    clock.now = 100.2  # the interval is up: the trailing write carries the latest value
    assert throttle.pump() is None
    assert written == [("j", "0"), ("j", "1000")]
    assert throttle.pump() is None and len(written) == 2  # nothing twice


def test_each_job_has_its_own_interval():
    throttle, written, clock = _throttle()
    throttle.submit("a", "a1")
    throttle.pump()
    clock.now += 0.05
    throttle.submit("a", "a2")
    throttle.submit("b", "b1")  # b never wrote: at once, even though a must wait
    assert throttle.pump() == pytest.approx(0.15)
    assert written == [("a", "a1"), ("b", "b1")]
    clock.now += 0.15
    throttle.pump()
    assert written[-1] == ("a", "a2")


def test_a_report_after_a_quiet_interval_is_written_at_once():
    throttle, written, clock = _throttle()
    throttle.submit("j", "1")
    throttle.pump()
    clock.now += 5.0
    throttle.submit("j", "2")
    throttle.pump()
    assert written == [("j", "1"), ("j", "2")]


def test_forget_drops_the_pending_value_and_close_flushes_the_rest():
    throttle, written, clock = _throttle()
    throttle.submit("a", "a1")
    throttle.submit("b", "b1")
    throttle.pump()
    throttle.submit("a", "a2")
    throttle.submit("b", "b2")
    throttle.forget("a")  # a's end was written with its final value
    assert throttle.pending() == 1
    throttle.close()  # b2 is written now, though its interval is not up
    assert written == [("a", "a1"), ("b", "b1"), ("b", "b2")]
    throttle.submit("b", "late")  # after close: ignored
    assert throttle.pending() == 0


def test_a_failing_write_is_logged_and_later_writes_go_on(caplog):
    clock = FakeClock()
    calls: List[str] = []

    def write(job: str, text: str) -> None:
        calls.append(text)
        if text == "bad":
            raise RuntimeError("database is locked")

    throttle = ProgressThrottle(write, clock=clock, thread=False)
    with caplog.at_level(logging.WARNING, logger="golem_sync.store"):
        throttle.submit("j", "bad")
        throttle.pump()
        clock.now += 1
        throttle.submit("j", "good")
        throttle.pump()
    assert calls == ["bad", "good"] and throttle.writes == 1
    assert "could not write its progress" in caplog.text and "database is locked" in caplog.text


def test_the_writer_thread_rate_limits_real_store_writes_and_ends_when_idle():
    store = MemoryJobStore()
    writes: List[str] = []
    store.add_listener(writes.append)  # one notification per write
    store.create("j", state="pending")
    writes.clear()
    started = time.monotonic()
    last = None
    while time.monotonic() - started < 0.5:
        last = Progress.create(None, None, {"t": time.monotonic()}, seq=len(writes) + 1)
        store.set_progress("j", last)
    deadline = time.monotonic() + WAIT
    while store.get("j").read_progress() != last and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get("j").read_progress() == last  # the last value always arrives
    assert 2 <= len(writes) <= 5  # 0.5 s at one write per 0.2 s, not thousands
    deadline = time.monotonic() + WAIT
    while any(t.name == "golem-store-progress" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name == "golem-store-progress" for t in threading.enumerate())
    store.close()


def test_progress_is_written_only_for_a_pending_job_of_this_store():
    store = MemoryJobStore()
    store.create("new")
    store.create("mine", state="pending")
    store.create("theirs", state="pending")
    store.update("theirs", owner="someone-else")
    for job_id in ("new", "mine", "theirs", "missing"):
        store.set_progress(job_id, Progress.create(0.5))
    store.close()  # flushes
    assert store.get("mine").read_progress().fraction == 0.5
    assert store.get("new").progress is None and store.get("theirs").progress is None


# -- through a job ------------------------------------------------------------------------------

def test_report_progress_reaches_the_job_the_signal_and_the_store(golem, fake_yagna, tmp_path):
    path = str(tmp_path / "jobs.db")
    g = golem(job_store=path)
    seen: List[Tuple[Any, Progress]] = []
    reader = SQLiteJobStore(path)  # another "process" on the same store
    halfway = threading.Event()
    go_on = threading.Event()

    def receiver(sender: Any, progress: Progress) -> None:
        seen.append((sender, progress))

    def worker(ctx: Any) -> str:
        for i in range(50):
            ctx.report_progress(i / 49, f"step {i}", step=i)
        halfway.set()
        assert go_on.wait(WAIT)
        ctx.report_progress(1.0, "finished", step="end")
        return "ok"

    signals.job_progress.connect(receiver)
    try:
        job = g.create_job()
        job.start_work(worker)
        assert halfway.wait(WAIT)
        handle = StoredJob(reader, job.id)
        progress = handle.wait_for_progress(timeout=WAIT)  # while the job runs
        while progress is not None and progress.seq < 50:
            progress = handle.wait_for_progress(timeout=WAIT)
        assert progress is not None and (progress.seq, progress.message, progress.data) == (50, "step 49", {"step": 49})
        assert handle.is_running()
        assert job.progress.seq == 50
        go_on.set()
        assert job.wait_for_result(WAIT) == "ok"
    finally:
        signals.job_progress.disconnect(receiver)
    assert [p.seq for s, p in seen if s is job] == list(range(1, 52))  # the signal: every call
    assert job.progress.message == "finished" and job.progress.fraction == 1.0
    assert handle.progress == job.progress  # the final value is stored with the end
    assert handle.wait_for_progress(timeout=WAIT) is None and handle.done()  # nothing newer after the end
    assert [p.message for p in StoredJob(reader, job.id).follow_progress(WAIT)] == ["finished"]
    listed = reader.list_jobs()
    assert [(r.job_id, r.read_progress().message) for r in listed] == [(job.id, "finished")]
    reader.close()


def test_a_bad_report_raises_in_the_worker_with_the_key_named(golem, fake_yagna):
    g = golem()

    def worker(ctx: Any) -> str:
        try:
            ctx.report_progress(0.5, blob=object())
        except TypeError as exc:
            return str(exc)
        return "no error"

    job = g.create_job()
    job.start_work(worker)
    assert "data 'blob' is not JSON-serialisable" in job.wait_for_result(WAIT)
    assert job.progress is None


def test_pool_jobs_report_progress_to_the_store(golem, fake_yagna, tmp_path):
    path = str(tmp_path / "jobs.db")
    g = golem(job_store=path)
    pool = g.create_pool(size=1)

    def worker(ctx: Any) -> str:
        ctx.report_progress(0.1, "warm")
        ctx.report_progress(0.9, "nearly", left=1)
        return "pooled"

    future = pool.submit(worker)
    assert future.result(timeout=WAIT) == "pooled"
    assert future.job.progress.message == "nearly"
    stored = g.get_job_by_id(future.job.id)
    other = golem(job_store=path).get_job_by_id(future.job.id)
    assert other is not None and other is not future.job
    assert other.progress == future.job.progress and other.progress.data == {"left": 1}
    assert stored is not None


def test_a_report_after_the_end_is_dropped(golem, fake_yagna):
    g = golem()
    contexts: List[Any] = []

    def worker(ctx: Any) -> str:
        ctx.report_progress(0.5, "half")
        contexts.append(ctx)
        return "ok"

    job = g.create_job()
    job.start_work(worker)
    assert job.wait_for_result(WAIT) == "ok"
    assert job.report_progress(0.9, "late") is None
    with pytest.raises(ValueError, match="fraction"):
        job.report_progress(2.0)  # still validated
    assert job.progress.message == "half"
