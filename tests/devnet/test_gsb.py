"""The GSB client: codecs offline, and calls through a REAL yagna's GSB router."""
from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from golem_sync.devnet import gsb
from golem_sync.devnet.gsb import (
    GsbCallError,
    GsbClosedError,
    GsbConnection,
    GsbRequest,
    GsbServiceError,
    GsbTimeoutError,
    decode_body,
    encode_body,
    ok_value,
)

REQUESTOR_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcab78d5ba9ef2ff80"


# -- offline: codecs -------------------------------------------------------------------------

def test_body_roundtrip_and_zlib_bodies_are_tolerated() -> None:
    value = {"activityId": "a1", "usage": {"currentUsage": [1.5, 0.0], "timestamp": 17},
             "blob": b"\x00\xff", "none": None, "flag": True, "list": ["x", -3]}
    assert decode_body(encode_body(value)) == value
    assert decode_body(zlib.compress(encode_body(value))) == value
    assert decode_body(b"") is None
    with pytest.raises(gsb.GsbError):
        decode_body(b"\x01\x02\x03garbage")


def test_ok_value_unwraps_serde_results() -> None:
    assert ok_value({"Ok": [1, 2]}) == [1, 2]
    assert ok_value({"Ok": None}) is None
    with pytest.raises(GsbServiceError) as err:
        ok_value({"Err": {"notFound": "batch"}})
    assert err.value.error == {"notFound": "batch"}
    with pytest.raises(gsb.GsbError):
        ok_value({"something": 1})


def test_protobuf_frames_match_the_proto_field_numbers() -> None:
    # CallReply{request_id="r", code=500, reply_type=PARTIAL, data=b"x"} inside Packet field 7.
    frame = gsb._packet(7, gsb._field_bytes(1, "r") + gsb._field_varint(2, 500)
                        + gsb._field_varint(3, 1) + gsb._field_bytes(4, b"x"))
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    packet = gsb._parse_fields(frame[4:])
    assert list(packet) == [7]
    reply = gsb._parse_fields(packet[7])  # type: ignore[arg-type]
    assert reply == {1: b"r", 2: 500, 3: 1, 4: b"x"}
    # Empty messages (Ping/Pong) are still sent as a present oneof member.
    assert gsb._packet(15, b"") == b"\x00\x00\x00\x02\x7a\x00"


# -- against yagna's router ------------------------------------------------------------------

@pytest.fixture(scope="module")
def gsb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yagna = pytest.importorskip("golem_sync.devnet.yagna")
    try:
        yagna.find_yagna()
    except Exception as exc:
        pytest.skip(f"yagna not available: {exc}")
    node = yagna.YagnaNode(Path(tmp_path_factory.mktemp("yagna-gsb")), requestor_secret=REQUESTOR_KEY)
    node.start()
    try:
        yield node.gsb_url
    finally:
        node.stop()


@pytest.fixture
def pair(gsb_url: str) -> Iterator[List[GsbConnection]]:
    server = GsbConnection(gsb_url, "test-server")
    client = GsbConnection(gsb_url, "test-client")
    server.connect(5)
    client.connect(5)
    try:
        yield [server, client]
    finally:
        client.close()
        server.close()


@pytest.mark.devnet
def test_hello_bind_call_and_reply(pair: List[GsbConnection]) -> None:
    server, client = pair
    assert server.server_name  # the router introduced itself
    seen: List[GsbRequest] = []

    def handler(request: GsbRequest) -> None:
        seen.append(request)
        request.reply({"Ok": {"echo": request.body, "method": request.method}})

    server.bind("/public/t-echo", handler)
    reply = client.call("/public/t-echo/Echo", {"n": 42, "blob": b"\x01"}, timeout=5)
    assert reply == {"Ok": {"echo": {"n": 42, "blob": b"\x01"}, "method": "Echo"}}
    assert seen[0].address == "/public/t-echo/Echo"
    assert seen[0].caller == "local"


@pytest.mark.devnet
def test_bus_errors_unknown_address_and_unbind(pair: List[GsbConnection]) -> None:
    server, client = pair
    with pytest.raises(GsbCallError) as err:
        client.call("/public/t-nowhere/X", None, timeout=5)
    assert err.value.code == 400

    server.bind("/public/t-fail", lambda req: req.reply_error("it broke"))
    with pytest.raises(GsbCallError) as err:
        client.call("/public/t-fail/X", None, timeout=5)
    assert err.value.code == 500 and "it broke" in str(err.value)

    server.unbind("/public/t-fail")
    with pytest.raises(GsbCallError) as err:
        client.call("/public/t-fail/X", None, timeout=5)
    assert err.value.code == 400


@pytest.mark.devnet
def test_handler_exception_becomes_a_service_failure(pair: List[GsbConnection]) -> None:
    server, client = pair

    def broken(request: GsbRequest) -> None:
        raise RuntimeError("boom")

    server.bind("/public/t-broken", broken)
    with pytest.raises(GsbCallError) as err:
        client.call("/public/t-broken/X", None, timeout=5)
    assert err.value.code == 500 and "boom" in str(err.value)


@pytest.mark.devnet
def test_streamed_reply_ends_with_empty_full(pair: List[GsbConnection]) -> None:
    server, client = pair

    def stream(request: GsbRequest) -> None:
        for i in range(3):
            request.reply_partial({"Ok": i})
        request.end_stream()
        request.reply({"Ok": "dropped: the stream already ended"})

    server.bind("/public/t-stream", stream)
    data = client.call_raw("/public/t-stream/S", encode_body(None), timeout=5)
    assert data == b""  # the FULL end-of-stream reply is empty


@pytest.mark.devnet
def test_blocking_handler_does_not_stall_other_calls(pair: List[GsbConnection]) -> None:
    server, client = pair
    release = threading.Event()

    def slow(request: GsbRequest) -> None:
        release.wait(5)
        request.reply({"Ok": "slow"})

    server.bind("/public/t-slow", slow)
    server.bind("/public/t-fast", lambda req: req.reply({"Ok": "fast"}))
    results: List[Any] = []
    waiter = threading.Thread(target=lambda: results.append(client.call("/public/t-slow/X", None, 10)))
    waiter.start()
    started = time.monotonic()
    assert client.call("/public/t-fast/X", None, timeout=5) == {"Ok": "fast"}
    assert time.monotonic() - started < 1.0
    release.set()
    waiter.join(5)
    assert results == [{"Ok": "slow"}]


@pytest.mark.devnet
def test_call_times_out_and_close_unblocks_waiters(pair: List[GsbConnection]) -> None:
    server, client = pair
    never = threading.Event()
    server.bind("/public/t-silent", lambda req: never.wait(10))
    started = time.monotonic()
    with pytest.raises(GsbTimeoutError):
        client.call("/public/t-silent/X", None, timeout=0.3)
    assert time.monotonic() - started < 2.0

    errors: List[BaseException] = []

    def call() -> None:
        try:
            client.call("/public/t-silent/X", None, timeout=10)
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=call)
    waiter.start()
    time.sleep(0.2)  # let the call reach the router
    started = time.monotonic()
    client.close()
    waiter.join(5)
    never.set()
    assert time.monotonic() - started < 2.0
    assert len(errors) == 1 and isinstance(errors[0], GsbClosedError)
    with pytest.raises(GsbClosedError):
        client.call("/public/t-silent/X", None, timeout=1)


@pytest.mark.devnet
def test_yagna_local_service_answers_with_a_result(pair: List[GsbConnection]) -> None:
    _, client = pair
    reply = client.call("/local/activity/SetActivityState",
                        {"activityId": "no-such-activity", "state": {"state": ["Ready", None]},
                         "timeout": None, "credentials": None}, timeout=5)
    with pytest.raises(GsbServiceError):
        ok_value(reply)


def test_connect_to_nothing_fails_fast() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        conn = GsbConnection(f"tcp://127.0.0.1:{port}", "nobody")
        with pytest.raises(GsbClosedError):
            conn.connect(2)


class FakeRouter:
    """A scripted router on a loopback socket: the test reads and writes frames itself."""

    def __init__(self) -> None:
        import socket

        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(5)
        self.url = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.sock: Any = None

    def accept(self) -> None:
        self.sock, _ = self.server.accept()
        self.sock.settimeout(5)

    def read(self) -> Any:
        header = self._exact(4)
        (length,) = struct.unpack(">I", header)
        packet = gsb._parse_fields(self._exact(length))
        ((kind, body),) = packet.items()
        assert isinstance(body, bytes)
        return kind, gsb._parse_fields(body)

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "client closed"
            data += chunk
        return data

    def send(self, kind: int, body: bytes) -> None:
        self.sock.sendall(gsb._packet(kind, body))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.server.close()


def test_wire_protocol_against_a_scripted_router() -> None:
    router = FakeRouter()
    conn = GsbConnection(router.url, "wire-test")
    connector = threading.Thread(target=conn.connect, args=(5,))
    try:
        connector.start()
        router.accept()
        kind, hello = router.read()
        assert kind == 1 and hello[1] == b"wire-test" and len(hello[3]) == 16
        router.send(1, gsb._field_bytes(1, "fake-router") + gsb._field_bytes(2, "0.0.1"))
        connector.join(5)
        assert conn.server_name == "fake-router"

        router.send(14, b"")  # Ping
        assert router.read() == (15, {})  # Pong

        seen: List[Any] = []

        def handler(request: GsbRequest) -> None:
            seen.append(request.body)
            request.reply({"Ok": request.caller})

        binder = threading.Thread(target=conn.bind, args=("/public/svc", handler))
        binder.start()
        kind, reg = router.read()
        assert kind == 2 and reg == {1: b"/public/svc"}
        router.send(3, b"")  # RegisterReply code 0 (default, so empty)
        binder.join(5)

        # A zlib-compressed request body (ya-service-bus compression option) is decoded.
        data = zlib.compress(encode_body({"x": 1}))
        router.send(6, gsb._field_bytes(1, "0xcaller") + gsb._field_bytes(2, "/public/svc/Do")
                    + gsb._field_bytes(3, "req-1") + gsb._field_bytes(4, data))
        kind, reply = router.read()
        assert kind == 7 and reply[1] == b"req-1" and 2 not in reply and 3 not in reply
        assert decode_body(reply[4]) == {"Ok": "0xcaller"}
        assert seen == [{"x": 1}]

        # Outgoing call: our request id comes back on the reply; a PARTIAL before FULL is skipped.
        result: List[Any] = []
        caller = threading.Thread(target=lambda: result.append(conn.call("/remote/X", [1, 2], 5)))
        caller.start()
        kind, call = router.read()
        assert kind == 6 and call[2] == b"/remote/X" and call[1] == b"local"
        request_id = call[3]
        assert decode_body(call[4]) == [1, 2]
        router.send(7, gsb._field_bytes(1, request_id) + gsb._field_varint(3, 1)
                    + gsb._field_bytes(4, encode_body("part")))
        router.send(7, gsb._field_bytes(1, request_id)
                    + gsb._field_bytes(4, encode_body({"Ok": "done"})))
        caller.join(5)
        assert result == [{"Ok": "done"}]

        # The router going away closes the connection and fails later calls at once.
        router.sock.close()
        assert conn.wait_closed(5)
        with pytest.raises(GsbClosedError):
            conn.call("/remote/X", None, 1)
    finally:
        conn.close()
        router.close()
