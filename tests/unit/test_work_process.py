"""RemoteProcess against a scripted event stream: lines, exit codes, close, cancel, timeouts."""
from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from types import SimpleNamespace
from typing import List

import pytest

from golem_sync import GolemCancelledError, GolemTimeoutError
from golem_sync._abandonable import AbandonableCalls
from golem_sync._cancel import CancelToken
from golem_sync._work.process import RemoteProcess
from golem_sync.yagna.models import RuntimeEvent

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def event(kind, body=None, index=0):
    if kind == "finished":
        return RuntimeEvent("b", index, NOW, "finished", return_code=body, message=None if body == 0 else "failed")
    return RuntimeEvent("b", index, NOW, kind, output=body)


class ScriptedStream:
    """An event stream fed by the test; iteration blocks like a socket read until close()."""

    def __init__(self) -> None:
        self.events: "queue.Queue[object]" = queue.Queue()
        self.closed = False

    def feed(self, *events: RuntimeEvent) -> None:
        for e in events:
            self.events.put(e)

    def __iter__(self):
        while True:
            item = self.events.get(timeout=30)
            if item is None or self.closed:
                return
            yield item

    def close(self) -> None:
        self.closed = True
        self.events.put(None)


class FakeActivity:
    """The bits of Activity a RemoteProcess uses; batch results come from ``results``."""

    def __init__(self) -> None:
        self.activity_id = "act"
        self.results: List[object] = []
        self.polls = 0
        self._blocking = AbandonableCalls(4)

        def get_batch_results(activity_id, batch_id, timeout=5.0, command_index=None, max_body=None):
            self.polls += 1
            if not self.results:
                time.sleep(min(timeout, 0.05))
            return list(self.results)

        self.client = SimpleNamespace(activity=SimpleNamespace(get_batch_results=get_batch_results))


@pytest.fixture
def parts():
    activity, stream, token = FakeActivity(), ScriptedStream(), CancelToken()
    made = []

    def make(timeout=30.0, **kw):
        proc = RemoteProcess(activity, "batch-1", stream, token, timeout, poll_sec=0.05, **kw)
        made.append(proc)
        return proc

    yield SimpleNamespace(activity=activity, stream=stream, token=token, make=make)
    for proc in made:
        proc.close()
        assert proc.join(5)
    activity._blocking.shutdown()


def test_lines_are_split_across_chunks_and_the_exit_code_is_returned(parts):
    proc = parts.make()
    parts.stream.feed(event("stdout", "hel"), event("stdout", "lo\nwor"), event("stderr", "e1\r\ne2"),
                      event("stdout", "ld\n\npartial"), event("finished", 0))
    assert proc.wait(5) == 0
    assert list(proc.stdout) == ["hello", "world", "", "partial"]
    assert list(proc.stderr) == ["e1", "e2"]
    assert proc.result.ok and proc.returncode == 0
    assert parts.stream.closed  # closed after the finished event: yagna never ends it itself


def test_lines_arrive_before_the_command_finishes(parts):
    proc = parts.make()
    parts.stream.feed(event("stdout", "first\n"))
    assert proc.stdout.next_line(timeout=2) == "first"
    assert not proc.done
    with pytest.raises(GolemTimeoutError) as info:
        proc.wait(0.1)
    assert info.value.phase == "wait"
    parts.stream.feed(event("finished", 7))
    assert proc.wait(5) == 7 and not proc.result.ok


def test_close_from_another_thread_ends_iteration_and_the_stream(parts):
    proc = parts.make()
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout))
    reader.start()
    parts.stream.feed(event("stdout", "a\n"))
    time.sleep(0.1)
    proc.close()
    reader.join(2)
    assert not reader.is_alive() and lines == ["a"]
    assert parts.stream.closed and proc.join(2)


def test_cancellation_wakes_readers_and_waiters(parts):
    proc = parts.make()
    threading.Timer(0.1, parts.token.cancel, args=("user",)).start()
    started = time.monotonic()
    with pytest.raises(GolemCancelledError):
        list(proc.stdout)
    with pytest.raises(GolemCancelledError):
        proc.wait(5)
    assert time.monotonic() - started < 1.0
    assert parts.stream.closed and proc.join(2)


def test_command_timeout_retires_before_waking_the_waiter(parts):
    order = []
    proc = parts.make(timeout=0.2, on_timeout=lambda: order.append("retired"))
    with pytest.raises(GolemTimeoutError) as info:
        proc.wait(5)
    order.append("woken")
    assert info.value.phase == "command"
    assert order == ["retired", "woken"]
    with pytest.raises(GolemTimeoutError):
        list(proc.stdout)
    assert parts.stream.closed


def test_a_missed_finished_event_is_completed_from_the_batch_result(parts, monkeypatch):
    monkeypatch.setattr(RemoteProcess, "FINISH_GRACE_SEC", 0.1)
    proc = parts.make()
    parts.activity.results = [SimpleNamespace(index=0, result="Error", stdout=None, stderr=None,
                                              message="ExeScript command exited with code 5", event_date=NOW,
                                              is_batch_finished=True)]
    assert proc.wait(5) == 5
    assert proc.result.message.endswith("code 5")
    assert parts.stream.closed


# -- a cancel that lands while spawn() is starting the process (audit #15) -----------------------

def test_a_process_built_on_a_cancelled_token_is_done_cancelled_and_closes_its_stream():
    activity, stream, token = FakeActivity(), ScriptedStream(), CancelToken()
    token.cancel("user")
    try:
        proc = RemoteProcess(activity, "batch-1", stream, token, 30.0, poll_sec=0.05)
        assert proc.done and stream.closed
        with pytest.raises(GolemCancelledError):
            proc.wait(1)
        with pytest.raises(GolemCancelledError):
            list(proc.stdout)
        assert proc.join(1)  # no helper thread was started, and join() copes with that
    finally:
        activity._blocking.shutdown()


class SpawnActivity(FakeActivity):
    """An Activity for WorkContext.spawn(): ``send`` lets the test cancel mid-POST."""

    agreement_id = "agr"
    destroyed = False

    def __init__(self, token: CancelToken, stream: ScriptedStream) -> None:
        super().__init__()
        self._token, self._stream_obj = token, stream
        self.options = SimpleNamespace(execute_timeout_sec=30.0, result_poll_sec=0.05)

    def send(self, commands, token):
        self._token.cancel("cancelled by the user")  # lands while the exec POST is in flight
        return "batch-1"

    def stream(self, batch_id, read_timeout):
        return self._stream_obj


def test_spawn_raises_cancelled_when_the_job_is_cancelled_while_it_starts():
    from golem_sync._options import WorkOptions
    from golem_sync._work import ProviderInfo, WorkContext

    token, stream = CancelToken(), ScriptedStream()
    activity = SpawnActivity(token, stream)
    ctx = WorkContext(activity, ProviderInfo("p", "prov"), token, WorkOptions())  # type: ignore[arg-type]
    try:
        with pytest.raises(GolemCancelledError):
            ctx.spawn("sleep 100")
        assert stream.closed  # yagna never ends this stream: it must not be left open
    finally:
        activity._blocking.shutdown()


def test_spawn_closes_the_stream_when_building_the_process_fails(monkeypatch):
    from golem_sync._options import WorkOptions
    from golem_sync._work import ProviderInfo, WorkContext, runner as runner_module

    token, stream = CancelToken(), ScriptedStream()
    activity = SpawnActivity(CancelToken(), stream)  # send() cancels an unrelated token

    def broken(*args, **kwargs):
        raise RuntimeError("cannot start a thread")

    monkeypatch.setattr(runner_module, "RemoteProcess", broken)
    ctx = WorkContext(activity, ProviderInfo("p", "prov"), token, WorkOptions())  # type: ignore[arg-type]
    try:
        with pytest.raises(RuntimeError):
            ctx.spawn("true")
        assert stream.closed
    finally:
        activity._blocking.shutdown()


# -- output that nobody reads is bounded; long lines are linear and bounded (audit #14) ----------

def test_unread_output_is_bounded_drops_the_oldest_lines_and_warns_once(parts, caplog):
    proc = parts.make(buffer_limit=20_000)
    with caplog.at_level("WARNING", logger="golem_sync.work.process"):
        for i in range(200):  # 200 x 10 lines of 100 characters: about 200 kB for a 20 kB budget
            parts.stream.feed(event("stdout", "".join(f"{i:04d}-{j}-" + "y" * 93 + "\n" for j in range(10))))
        parts.stream.feed(event("stderr", "only line\n"), event("finished", 0))
        assert proc.wait(10) == 0
    assert proc.stdout._inbox.weight <= 20_000
    assert proc.stdout.truncated and proc.stdout.dropped_lines > 1500
    assert not proc.stderr.truncated and list(proc.stderr) == ["only line"]
    kept = list(proc.stdout)
    assert len(kept) == 2000 - proc.stdout.dropped_lines
    assert kept[-1].startswith("0199-9-") and kept == sorted(kept)  # the newest, in order
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "stdout" in warnings[0].getMessage()


def test_a_line_longer_than_the_budget_is_delivered_in_bounded_pieces(parts):
    proc = parts.make(buffer_limit=40_000)
    reader_lines: List[str] = []
    reader = threading.Thread(target=lambda: reader_lines.extend(proc.stdout))
    reader.start()
    for _ in range(30):
        parts.stream.feed(event("stdout", "z" * 4000))  # one 120 kB line, no newline
    parts.stream.feed(event("stdout", "\nafter\n"), event("finished", 0))
    assert proc.wait(10) == 0
    reader.join(10)
    assert max(len(line) for line in reader_lines) <= proc.stdout.max_line < 40_000
    assert proc.stdout.split_lines > 0 and reader_lines[-1] == "after"
    if not proc.stdout.truncated:  # read as it came: nothing lost, only cut
        assert "".join(reader_lines[:-1]) == "z" * 120_000


def test_a_line_without_newline_costs_linear_time():
    """Feeding k chunks of one unterminated line must cost O(k), not O(k^2) (ratio of sizes 8)."""
    from golem_sync._work.process import LineStream

    def feed(chunks: int) -> float:
        best = float("inf")
        for _ in range(5):  # the best of 5: a scheduler hiccup cannot fake a quadratic cost
            stream = LineStream("stdout", CancelToken(), limit=1 << 40)  # no splitting: pure accumulation
            piece = "z" * 16384
            started = time.perf_counter()
            for _ in range(chunks):
                stream._feed(piece)
            stream._end()
            best = min(best, time.perf_counter() - started)
            assert len(stream.read_all(1)[0]) == chunks * 16384
        return best

    small, large = feed(128), feed(1024)
    assert large / max(small, 1e-4) < 24  # linear: about 8; quadratic: about 64


def test_a_bad_buffer_limit_is_refused_before_anything_is_sent():
    from golem_sync import GolemConfigError
    from golem_sync._options import WorkOptions
    from golem_sync._work import ProviderInfo, WorkContext

    token, stream = CancelToken(), ScriptedStream()
    activity = SpawnActivity(token, stream)
    ctx = WorkContext(activity, ProviderInfo("p", "prov"), token, WorkOptions())  # type: ignore[arg-type]
    try:
        for bad in (0, -1, 2.5, True):
            with pytest.raises(GolemConfigError, match="buffer_limit"):
                ctx.spawn("true", buffer_limit=bad)
        assert not token.cancelled  # send() was never called
    finally:
        activity._blocking.shutdown()


# -- the watchers do not occupy the network's shared helper pool (audit S3) ----------------------

class BlockingPollClient:
    """A poll client whose long polls last their whole timeout unless the transport is aborted."""

    def __init__(self) -> None:
        self.aborted = threading.Event()
        self.polls = 0
        self.transport = SimpleNamespace(abort=self.aborted.set, close=lambda: None)
        self.activity = SimpleNamespace(get_batch_results=self.get_batch_results)

    def get_batch_results(self, activity_id, batch_id, timeout=5.0, command_index=None, max_body=None):
        self.polls += 1
        if self.aborted.wait(timeout):
            from golem_sync import YagnaUnreachableError
            raise YagnaUnreachableError("aborted")
        return []


def test_spawned_processes_do_not_starve_the_shared_pool_and_close_at_once():
    shared = AbandonableCalls(2)  # the network's pool, shared by every job
    activity = FakeActivity()
    activity._blocking = shared
    activity.client = SimpleNamespace(activity=SimpleNamespace(get_batch_results=BlockingPollClient().get_batch_results))
    pollers = [BlockingPollClient() for _ in range(4)]
    procs = [RemoteProcess(activity, f"batch-{i}", ScriptedStream(), CancelToken(), 60.0, poll_sec=20.0,
                           poll_client=poller)  # type: ignore[arg-type]
             for i, poller in enumerate(pollers)]
    try:
        deadline = time.monotonic() + 5
        while not all(p.polls for p in pollers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(p.polls for p in pollers)  # every watcher is inside a 20-s long poll now
        # Another job's poll through the shared pool is not queued behind them.
        assert shared.call(CancelToken(), lambda: "other job's poll", wait_limit=10.0) == "other job's poll"
    finally:
        for proc in procs:
            proc.close()
        shared.shutdown(wait=False)
    assert all(p.aborted.is_set() for p in pollers)  # close() ends the poll in flight
    assert all(proc.join(5) for proc in procs)


def test_with_a_real_client_the_watcher_polls_on_its_own_connection_and_close_aborts_it():
    import http.server
    import socketserver

    from golem_sync.yagna.client import YagnaClient

    polls: List[str] = []
    release = threading.Event()

    class SlowYagna(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            polls.append(self.path)
            release.wait(30)  # a long poll that would not end by itself for 30 s

        def log_message(self, *args) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SlowYagna)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = YagnaClient(app_key="k", api_url=f"http://127.0.0.1:{server.server_address[1]}")
    activity = SimpleNamespace(activity_id="act", client=client, _blocking=None)  # no shared pool at all
    try:
        proc = RemoteProcess(activity, "batch-1", ScriptedStream(), CancelToken(), 60.0, poll_sec=20.0)  # type: ignore[arg-type]
        deadline = time.monotonic() + 5
        while not polls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert polls and polls[0].startswith("/activity-api/v1/activity/act/exec/batch-1?")
        proc.close()
        assert proc.join(5)  # the 20-s poll in flight was aborted, not waited out
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        client.close()


def test_a_process_whose_threads_cannot_start_closes_its_stream_and_raises(monkeypatch):
    activity, stream, token = FakeActivity(), ScriptedStream(), CancelToken()
    real_start = threading.Thread.start

    def start(self):
        if self.name.endswith("-watch"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    try:
        with pytest.raises(RuntimeError):
            RemoteProcess(activity, "batch-1", stream, token, 30.0, poll_sec=0.05)
        assert stream.closed
        monkeypatch.setattr(threading.Thread, "start", real_start)
        token.cancel("later")  # the cancel callback was unregistered: nothing runs, nothing raises
    finally:
        activity._blocking.shutdown()
