"""The SSE batch stream over a real socket: parsing, close from another thread, read timeout."""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import Iterator, List

import pytest

from golem_sync.errors import YagnaTimeoutError
from golem_sync.yagna import YagnaClient, YagnaConfig
from golem_sync.yagna.models import RuntimeEvent
from golem_sync.yagna.sse import iter_sse


def _event(index: int, kind: dict) -> bytes:
    data = json.dumps({"batch_id": "b1", "index": index, "timestamp": "2024-05-01T10:00:00.5", "kind": kind})
    return f"event: runtime\ndata: {data}\n\n".encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class SseServer:
    """Answers one request with an endless chunked event stream: the given pieces, then silence.

    Threads: one server thread accepts and writes; ``hold`` (an Event) keeps the connection open
    until the test sets it, like yagna, which never ends the stream.
    """

    def __init__(self, pieces: List[bytes]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.pieces = pieces
        self.hold = threading.Event()
        self.request = b""
        self.thread = threading.Thread(target=self._serve, name="sse-server", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(10)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            while b"\r\n\r\n" not in self.request:
                data = conn.recv(4096)
                if not data:
                    return
                self.request += data
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for piece in self.pieces:
                conn.sendall(_chunk(piece))
                time.sleep(0.02)  # separate TCP writes, so the client sees separate chunks
            self.hold.wait(timeout=30)

    def close(self) -> None:
        self.hold.set()
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def sse_server_factory() -> Iterator[object]:
    made: List[SseServer] = []

    def make(pieces: List[bytes]) -> SseServer:
        srv = SseServer(pieces)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


def _client(url: str, app_key: str) -> YagnaClient:
    return YagnaClient(YagnaConfig(app_key=app_key, api_url=url, retries=0))


def test_events_split_across_chunks(sse_server_factory: object, app_key: str) -> None:
    whole = b":ping\n\n" + _event(0, {"stdout": "a"}) + _event(0, {"finished": {"return_code": 0, "message": None}})
    pieces = [whole[:5], whole[5:40], whole[40:41], whole[41:]]
    srv = sse_server_factory(pieces)  # type: ignore[operator]
    with _client(srv.url, app_key) as client, client.activity.stream_batch("act-1", "b1") as stream:
        events = []
        for ev in stream:
            events.append(ev)
            if ev.kind == "finished":
                break  # yagna never ends the stream: stop at the last command's finished
    assert [(e.kind, e.output, e.return_code) for e in events] == [("stdout", "a", None), ("finished", None, 0)]
    assert b"GET /activity-api/v1/activity/act-1/exec/b1 " in srv.request
    assert b"accept: text/event-stream" in srv.request.lower()


def test_close_from_another_thread_unblocks_the_reader(sse_server_factory: object, app_key: str) -> None:
    srv = sse_server_factory([_event(0, {"started": {"command": {"terminate": {}}}})])  # type: ignore[operator]
    got: List[RuntimeEvent] = []
    first = threading.Event()
    ended = threading.Event()
    errors: List[BaseException] = []
    with _client(srv.url, app_key) as client:
        stream = client.activity.stream_batch("act-1", "b1", read_timeout=30.0)

        def consume() -> None:
            try:
                for ev in stream:
                    got.append(ev)
                    first.set()
            except BaseException as exc:  # reported by the assertions below
                errors.append(exc)
            finally:
                ended.set()

        reader = threading.Thread(target=consume, name="sse-reader")
        reader.start()
        assert first.wait(timeout=5), "first event never arrived"
        assert not ended.wait(timeout=0.2)  # the reader is now blocked on a silent stream
        started = time.monotonic()
        stream.close()
        assert ended.wait(timeout=3), "close() did not unblock the reader"
        reader.join(timeout=1)
        assert time.monotonic() - started < 3
    assert errors == [] and [e.kind for e in got] == ["started"]
    assert stream.closed


def test_silent_stream_hits_the_read_timeout(sse_server_factory: object, app_key: str) -> None:
    srv = sse_server_factory([b":ping\n\n"])  # type: ignore[operator]
    with _client(srv.url, app_key) as client, client.activity.stream_batch("act-1", "b1", read_timeout=0.3) as s:
        started = time.monotonic()
        with pytest.raises(YagnaTimeoutError) as info:
            next(iter(s))
        assert time.monotonic() - started < 3
    assert app_key not in str(info.value)


def test_iter_sse_grammar() -> None:
    raw = [b"event: runtime\r\ndata: line1\r", b"\ndata:line2\n", b": comment\nid: 7\nretry: 10\n\n",
           b"data: tail-without-blank-line"]
    msgs = list(iter_sse(iter(raw)))
    assert [(m.event, m.data, m.id) for m in msgs] == [("runtime", "line1\nline2", "7"),
                                                        ("message", "tail-without-blank-line", "7")]
