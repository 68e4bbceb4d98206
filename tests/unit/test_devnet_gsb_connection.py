"""The devnet's GsbConnection against a scripted router on a loopback socket (offline)."""
from __future__ import annotations

import socket
import threading
import zlib
from typing import Any, List

import pytest

from golem_sync.devnet.errors import GsbClosedError
from golem_sync.devnet.gsb import GsbConnection, GsbRequest, decode_body, encode_body, wire


class FakeRouter:
    """A scripted router: the test reads and writes :mod:`wire` messages itself."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(5)
        self.url = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.sock: Any = None

    def accept(self) -> None:
        self.sock, _ = self.server.accept()
        self.sock.settimeout(5)

    def read(self) -> wire.Message:
        length = wire.frame_length(self._exact(wire.HEADER_SIZE))
        (message,) = wire.decode_packet(self._exact(length))
        return message

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "client closed"
            data += chunk
        return data

    def send(self, message: wire.Message) -> None:
        self.sock.sendall(wire.encode_frame(message))

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
        hello = router.read()
        assert isinstance(hello, wire.Hello) and hello.name == "wire-test" and len(hello.instance_id) == 16
        router.send(wire.Hello("fake-router", "0.0.1"))
        connector.join(5)
        assert conn.server_name == "fake-router"

        router.send(wire.Ping())
        assert router.read() == wire.Pong()

        seen: List[Any] = []

        def handler(request: GsbRequest) -> None:
            seen.append(request.body)
            request.reply({"Ok": request.caller})

        binder = threading.Thread(target=conn.bind, args=("/public/svc", handler))
        binder.start()
        assert router.read() == wire.RegisterRequest("/public/svc")
        router.send(wire.RegisterReply(0))
        binder.join(5)

        # A zlib-compressed request body (ya-service-bus compression option) is decoded.
        data = zlib.compress(encode_body({"x": 1}))
        router.send(wire.CallRequest("0xcaller", "/public/svc/Do", "req-1", data))
        reply = router.read()
        assert isinstance(reply, wire.CallReply) and reply.request_id == "req-1"
        assert (reply.code, reply.reply_type) == (0, wire.FULL)
        assert decode_body(reply.data) == {"Ok": "0xcaller"}
        assert seen == [{"x": 1}]

        # A call to an address nobody bound is refused with 400 by the connection itself.
        router.send(wire.CallRequest("0xcaller", "/public/other/Do", "req-2"))
        refused = router.read()
        assert isinstance(refused, wire.CallReply) and refused.code == 400

        # Outgoing call: our request id comes back on the reply; a PARTIAL before FULL is skipped.
        result: List[Any] = []
        caller = threading.Thread(target=lambda: result.append(conn.call("/remote/X", [1, 2], 5)))
        caller.start()
        call = router.read()
        assert isinstance(call, wire.CallRequest) and call.address == "/remote/X" and call.caller == "local"
        assert decode_body(call.data) == [1, 2]
        router.send(wire.CallReply(call.request_id, 0, wire.PARTIAL, encode_body("part")))
        router.send(wire.CallReply(call.request_id, 0, wire.FULL, encode_body({"Ok": "done"})))
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


def test_a_malformed_frame_closes_the_connection() -> None:
    router = FakeRouter()
    conn = GsbConnection(router.url, "garbage-test")
    connector = threading.Thread(target=conn.connect, args=(5,))
    try:
        connector.start()
        router.accept()
        router.read()
        router.send(wire.Hello("fake-router", "0.0.1"))
        connector.join(5)
        router.sock.sendall(b"\x00\x00\x00\x02\x3a\xff")  # a CallReply whose length runs past the end
        assert conn.wait_closed(5)
    finally:
        conn.close()
        router.close()
