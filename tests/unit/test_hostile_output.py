"""Hostile output from providers (issue 13 part 4): caps on what is asked for, kept and read;
result indices checked; overlong SSE lines refused; invalid UTF-8 decoded with replacement.

Whole-job paths run on the fake yagna; the body cap is tested against a real local HTTP server
(the streamed read is what bounds the memory). The real-yagna counterparts are in
tests/devnet/test_hostile_output_devnet.py.
"""
from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any, Iterator, List

import pytest

from golem_sync import GolemActivityError, GolemConfigError, GolemWorkError, YagnaResponseTooLargeError
from golem_sync._work.result import Result, capped_capture, capped_commands, results_body_limit
from golem_sync.errors import YagnaNotFoundError, YagnaProtocolError
from golem_sync.yagna import YagnaClient, YagnaConfig
from golem_sync.yagna.models import Capture, CaptureAtEnd, ExeScriptCommandResult, Run, Transfer
from golem_sync.yagna.sse import iter_sse


def raw(stdout: Any = None, stderr: Any = None, index: int = 0) -> ExeScriptCommandResult:
    return ExeScriptCommandResult.from_json({"index": index, "eventDate": "2026-01-01T00:00:00Z", "result": "Ok",
                                             "stdout": stdout, "stderr": stderr, "isBatchFinished": True})


# -- what is kept: Result.of cuts each stream to its last max_output bytes ----------------------

def test_output_over_the_cap_keeps_its_last_bytes_and_says_so():
    result = Result.of(raw("a" * 50 + "END", "e" * 10), max_output=20)
    assert result.stdout == "a" * 17 + "END" and result.stderr == "e" * 10
    assert result.truncated
    untouched = Result.of(raw("x" * 20, "y" * 20), max_output=20)
    assert untouched.stdout == "x" * 20 and not untouched.truncated
    assert not Result.of(raw(None, None), max_output=1).truncated


def test_the_cap_counts_utf8_bytes_and_cuts_at_a_character_boundary():
    text = "é" * 10  # 20 UTF-8 bytes
    result = Result.of(raw(text), max_output=7)
    assert result.truncated and result.stdout == "é" * 3  # the half character at the cut is dropped
    assert len(result.stdout.encode()) <= 7
    assert not Result.of(raw(text), max_output=20).truncated


def test_binary_output_is_cut_as_bytes_and_readable_as_text():
    result = Result.of(raw({"bin": list(b"ok \xff\xfe" * 4)}), max_output=6)
    assert result.stdout == b"\xfeok \xff\xfe" and result.truncated
    assert result.stdout_text == "\ufffdok \ufffd\ufffd"
    assert Result.of(raw([0x68, 0xff])).stdout_text == "h\ufffd"
    assert Result.of(raw(None)).stdout_text == "" and Result.of(raw("s", "t")).stderr_text == "t"


def test_json_of_truncated_output_says_it_was_cut():
    result = Result.of(raw('{"k": "' + "v" * 100 + '"}'), max_output=50)
    with pytest.raises(GolemWorkError, match="truncated to work.max_output_bytes"):
        result.json()


# -- what is asked for: every run captures at most cap + 1 bytes --------------------------------

def test_runs_ask_the_provider_for_the_last_cap_plus_one_bytes():
    at_end, stream = Run("/bin/sh", ["-c", "x"], Capture.at_end()), Run("/bin/sh", [], Capture.stream())
    transfer = Transfer(from_="container:/a", to="gftp://x/y")
    capped = capped_commands([at_end, stream, transfer], 100)
    assert capped[0].to_json()["run"]["capture"] == {"stdout": {"atEnd": {"tail": 101, "format": "str"}},
                                                     "stderr": {"atEnd": {"tail": 101, "format": "str"}}}
    assert capped[1].to_json()["run"]["capture"]["stdout"] == {"stream": {"limit": 101, "format": "str"}}
    assert capped[2] is transfer
    smaller = Capture(stdout=CaptureAtEnd(head=10), stderr=None)
    assert capped_capture(smaller, 100) == smaller  # a smaller limit of the caller's own is kept
    assert capped_capture(Capture(stdout=CaptureAtEnd(head=500)), 100).stdout.head == 101
    assert capped_capture(None, 100) is None


def test_the_body_limit_leaves_room_for_json_escaping_of_every_stream():
    assert results_body_limit(1, 1000) >= 2 * 6 * 1000
    assert results_body_limit(3, 1000) > results_body_limit(1, 1000)
    assert results_body_limit(0, 1000) == results_body_limit(1, 1000)


def test_max_output_bytes_is_a_positive_integer_option():
    from golem_sync import WorkOptions

    assert WorkOptions().max_output_bytes == 4 * 1024 * 1024
    for bad in (0, -1, 1.5, "1", True):
        with pytest.raises(GolemConfigError, match="work.max_output_bytes"):
            WorkOptions(max_output_bytes=bad)


# -- what is read: a result poll larger than its limit is refused while it streams ---------------

class BodyServer:
    """A local HTTP server answering every GET with ``body`` (chunked when ``chunked``).

    Threads: the server's own threads answer; ``sent`` counts what they wrote.
    """

    def __init__(self, body: bytes, *, status: int = 200, chunked: bool = False) -> None:
        owner = self
        self.sent = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for at in range(0, len(body), 65536):
                        piece = body[at:at + 65536]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                        owner.sent += len(piece)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client stopped reading: the point of the test

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: List[BodyServer] = []

    def make(body: bytes, **kw: Any) -> YagnaClient:
        server = BodyServer(body, **kw)
        servers.append(server)
        return YagnaClient(YagnaConfig(app_key="k", api_url=server.url, retries=0))

    yield make
    for server in servers:
        server.close()


def results_json(stdout: str, n: int = 1) -> bytes:
    return json.dumps([{"index": i, "eventDate": "2026-01-01T00:00:00Z", "result": "Ok", "stdout": stdout,
                        "isBatchFinished": i == n - 1} for i in range(n)]).encode()


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(serve):
    client = serve(results_json("x" * 20_000_000))
    t0 = time.monotonic()
    with pytest.raises(YagnaResponseTooLargeError, match="20000[0-9]* bytes, more than the 100000 bytes") as err:
        client.activity.get_batch_results("a1", "b1", timeout=1, max_body=100_000)
    assert err.value.limit == 100_000 and isinstance(err.value, YagnaProtocolError)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("chunked", [True, False])
def test_a_streamed_body_over_the_limit_is_refused_after_at_most_the_limit(serve, chunked):
    client = serve(results_json("x" * 20_000_000), chunked=chunked)
    if not chunked:  # a lying Content-Length is not needed: chunked has none, this one is checked first
        with pytest.raises(YagnaResponseTooLargeError):
            client.activity.get_batch_results("a1", "b1", timeout=1, max_body=1_000_000)
        return
    with pytest.raises(YagnaResponseTooLargeError, match="larger, more than the 1000000 bytes"):
        client.activity.get_batch_results("a1", "b1", timeout=1, max_body=1_000_000)


def test_a_body_within_the_limit_is_parsed_and_errors_keep_their_type(serve):
    client = serve(results_json("hello", n=2), chunked=True)
    results = client.activity.get_batch_results("a1", "b1", timeout=1, max_body=1_000_000)
    assert [r.stdout for r in results] == ["hello", "hello"]
    again = client.activity.get_batch_results("a1", "b1", timeout=1, max_body=1_000_000)  # connection reused
    assert len(again) == 2
    missing = serve(b'{"message": "batch not found"}', status=404)
    with pytest.raises(YagnaNotFoundError, match="batch not found"):
        missing.activity.get_batch_results("a1", "b1", timeout=1, max_body=10)
    assert serve(b"", status=408).activity.get_batch_results("a1", "b1", timeout=1, max_body=10) == []


def test_a_body_that_is_not_utf8_is_decoded_with_replacement(serve):
    body = results_json("ok").replace(b'"ok"', b'"ok\xff\xfe"')
    results = serve(body).activity.get_batch_results("a1", "b1", timeout=1)
    assert results[0].stdout == "ok\ufffd\ufffd"


# -- the SSE parser: a line without an end is refused, not buffered -----------------------------

def test_an_sse_line_without_an_end_is_refused_past_the_limit():
    def endless() -> Iterator[bytes]:
        yield b"event: runtime\ndata: "
        while True:
            yield b"x" * 4096

    with pytest.raises(YagnaProtocolError, match="SSE line longer than 100000 characters"):
        for _ in iter_sse(endless(), max_line=100_000):
            pass


def test_an_sse_message_of_many_data_lines_is_refused_past_the_limit():
    def many() -> Iterator[bytes]:
        while True:
            yield b"data: " + b"y" * 1000 + b"\n"

    with pytest.raises(YagnaProtocolError, match="SSE message longer than 50000"):
        for _ in iter_sse(many(), max_line=50_000):
            pass


def test_a_long_line_in_one_chunk_is_refused_and_short_ones_split_across_chunks_are_whole():
    with pytest.raises(YagnaProtocolError):
        list(iter_sse(iter([b"data: " + b"z" * 2000 + b"\n\n"]), max_line=1000))
    pieces = [b"event: runtime\r", b"\ndata: {\"a\":", b" 1}\r\n", b"\r\n", b"data: \xff\xfe\n\n"]
    messages = list(iter_sse(iter(pieces)))
    assert [(m.event, m.data) for m in messages] == [("runtime", '{"a": 1}'), ("message", "\ufffd\ufffd")]


def test_parsing_a_long_unterminated_stream_is_linear():
    chunks = [b"data: "] + [b"q" * 1024] * 8000  # 8 MB in 1 KiB chunks: quadratic would take minutes
    t0 = time.monotonic()
    messages = list(iter_sse(iter(chunks + [b"\n\n"])))
    assert len(messages[0].data) == 8000 * 1024
    assert time.monotonic() - t0 < 5


# -- whole jobs on the fake yagna: a protocol error ends the job, which cleans up -------------

def bogus(mode: str):
    def hook(results: List[dict], request: Any) -> List[dict]:
        n = len(results)
        if mode == "beyond":
            return [dict(r, index=r["index"] + 7) for r in results]
        if mode == "duplicate":
            return [r for r in results for _ in (0, 1)]
        if mode == "swap":
            return list(reversed(results))
        return results + [dict(results[-1], index=n)]  # extra
    return hook


@pytest.mark.parametrize("mode, message", [
    ("beyond", "result for command index 7 where command 0 was due: index 7 does not exist"),
    ("duplicate", "command index 0 where command 1 was due: index 0 is duplicated"),
    ("swap", "command index 1 where command 0 was due: index 1 is out of order"),
    ("extra", "with 3 results for 2 commands"),
])
def test_results_with_bogus_indices_fail_the_job_with_the_index_and_clean_up(golem, fake_yagna, mode, message):
    g = golem()

    def worker(ctx: Any) -> Any:
        fake_yagna.results_hook = bogus(mode)  # after deploy/start: only the worker's batch is garbled
        return ctx.begin_batch().run("echo a").run("echo b").end()

    job = g.create_job()
    job.start_work(worker)
    with pytest.raises(GolemActivityError, match=message):
        job.wait_for_result(timeout=20)
    assert job.state.value == "rejected"
    assert fake_yagna.activities and not any(fake_yagna.activities.values())  # destroyed
    assert all(state == "Terminated" for state in fake_yagna.agreements.values())


def test_a_flood_past_the_body_limit_fails_the_job_naming_the_cap(golem, fake_yagna):
    g = golem(work={"max_output_bytes": 1000})

    def worker(ctx: Any) -> Any:
        fake_yagna.results_hook = lambda results, request: [dict(r, stdout="x" * 500_000) for r in results]
        return ctx.run("cat big")

    job = g.create_job()
    job.start_work(worker)
    with pytest.raises(GolemActivityError, match=r"larger than \d+ bytes: .*work.max_output_bytes"):
        job.wait_for_result(timeout=20)
    assert not any(fake_yagna.activities.values())


def test_a_provider_ignoring_the_capture_within_the_body_limit_is_cut_to_the_cap(golem, fake_yagna):
    g = golem(work={"max_output_bytes": 1000})

    def worker(ctx: Any) -> Any:
        fake_yagna.results_hook = lambda results, request: [dict(r, stdout="y" * 4000 + "LAST") for r in results]
        return ctx.run("cat big")

    job = g.create_job()
    job.start_work(worker)
    result = job.wait_for_result(timeout=20)
    assert result.truncated and len(result.stdout) == 1000 and result.stdout.endswith("LAST")


# -- the devnet exe-unit's hostile-output knobs and its own bounds ------------------------------

def test_exeunit_fault_knobs_are_validated():
    from golem_sync.devnet.errors import DevnetConfigError
    from golem_sync.devnet.exeunit import ExeUnitFaults

    assert ExeUnitFaults(stdout_flood_mb=100, invalid_utf8=True, bogus_result_index="swap").stdout_flood_mb == 100
    for bad in ({"stdout_flood_mb": -1}, {"invalid_utf8": "yes"}, {"bogus_result_index": "sideways"}):
        with pytest.raises((DevnetConfigError, TypeError)):
            ExeUnitFaults(**bad)


@pytest.mark.parametrize("mode, indices", [("beyond", [8, 9]), ("duplicate", [0, 0, 1, 1]), ("swap", [1, 0]),
                                           ("extra", [0, 1, 3])])
def test_bogus_result_index_garbles_only_batches_that_run_something(tmp_path, mode, indices):
    from golem_sync.devnet.exeunit import ExeUnit, ExeUnitFaults
    from golem_sync.devnet.exeunit.batch import Batch as EngineBatch

    unit = ExeUnit(gsb_url="tcp://127.0.0.1:1", activity_id="a1", agreement_id="g1", work_dir=tmp_path,
                   usage_vector=[], faults=ExeUnitFaults(bogus_result_index=mode))
    results = [{"index": i, "result": "Ok", "isBatchFinished": i == 1} for i in range(2)]
    runs = EngineBatch("b1", [{"run": {"entry_point": "/bin/true"}}, {"run": {"entry_point": "/bin/true"}},
                              {"run": {"entry_point": "/bin/true"}}])
    assert [r["index"] for r in unit._garble(runs, results)] == indices
    deploy = EngineBatch("b2", [{"deploy": {}}, {"start": {}}])
    assert unit._garble(deploy, results) == results


def test_invalid_utf8_knob_captures_the_command_s_own_bytes():
    from golem_sync.devnet.exeunit.unit import _binary_capture

    spec = {"stdout": {"atEnd": {"tail": 10, "format": "str"}}, "stderr": {"stream": {"limit": 5}}}
    assert _binary_capture(spec) == {"stdout": {"atEnd": {"tail": 10, "format": "bin"}},
                                     "stderr": {"stream": {"limit": 5, "format": "bin"}}}
    assert _binary_capture(None)["stdout"] == {"atEnd": {"format": "bin"}}


def test_the_emulator_holds_a_capped_capture_within_its_limits(tmp_path):
    from golem_sync.devnet.exeunit.process import ProcessRunner

    runner = ProcessRunner(threading.Event())
    capture = {"stdout": {"atEnd": {"tail": 11, "format": "str"}}, "stderr": {"atEnd": {"head": 3}}}
    out, err = runner.run(["/bin/sh", "-c", "head -c 30000000 /dev/zero | tr '\\0' a; echo LAST-LINE; "
                                            "echo errors >&2"],
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture=capture, on_output=lambda s, d: None)
    assert out == "aLAST-LINE\n" and err == "err"


def test_the_emulator_capture_buffer_stays_bounded_and_cuts_like_the_spec():
    import random

    from golem_sync.devnet.exeunit.process import CaptureSpec, _Captured

    big = _Captured(CaptureSpec(tail=1000))
    for _ in range(500):
        big.add(b"z" * 65536)
    assert len(big._tail) <= 2 * 1000 + 65536 and big.value() == b"z" * 1000
    rng = random.Random(13)
    for _ in range(300):
        spec = CaptureSpec(head=rng.choice([None, 0, 3, 10]), tail=rng.choice([None, 0, 4, 9]))
        captured, full = _Captured(spec), b""
        for _ in range(rng.randint(0, 12)):
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
            captured.add(data)
            full += data
        assert spec.result(captured.value()) == spec.result(full), spec
