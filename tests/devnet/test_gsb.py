"""The GSB client: calls through a REAL yagna's GSB router (the codecs: tests/unit/test_devnet_gsb_wire.py)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from golem_sync.devnet.gsb import (
    GsbCallError,
    GsbClosedError,
    GsbConnection,
    GsbRequest,
    GsbServiceError,
    GsbTimeoutError,
    encode_body,
    ok_value,
)

REQUESTOR_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcab78d5ba9ef2ff80"


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

