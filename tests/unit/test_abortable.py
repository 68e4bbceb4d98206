"""An abortable transport ends a blocked long poll at once and refuses new calls."""
import socket
import threading
import time

import pytest

from golem_sync import YagnaUnreachableError
from golem_sync.yagna import Transport, YagnaConfig


@pytest.fixture
def silent_server():
    """Accepts connections and never answers (like yagna holding a long poll)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def _aborted_poll(transport, path):
    """Start a long poll on a thread, abort the transport 0.3 s in; returns (error, seconds taken)."""
    outcome = {}

    def poll():
        started = time.monotonic()
        try:
            transport.request("GET", "payment", path, long_poll=30)
        except Exception as exc:  # noqa: BLE001 - the callers assert the type
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    transport.abort()
    thread.join(10)
    assert not thread.is_alive()
    return outcome["error"], outcome["elapsed"]


def test_abort_ends_a_blocked_long_poll_and_refuses_new_calls(silent_server):
    transport = Transport(YagnaConfig(app_key="k", api_url=silent_server, retries=0), abortable=True)
    error, elapsed = _aborted_poll(transport, "/invoiceEvents")
    assert elapsed < 2.0
    assert isinstance(error, YagnaUnreachableError)
    with pytest.raises(YagnaUnreachableError):
        transport.request("GET", "payment", "/invoiceEvents", long_poll=1)


def test_abort_needs_an_abortable_transport():
    with pytest.raises(TypeError):
        Transport(YagnaConfig(app_key="k")).abort()


def test_a_poller_stopped_mid_poll_ends_quietly(silent_server, caplog):
    from golem_sync._pollers import EventPoller

    transport = Transport(YagnaConfig(app_key="k", api_url=silent_server, retries=0), abortable=True)
    poller = EventPoller("test-events", lambda after, timeout: transport.request(
        "GET", "payment", "/invoiceEvents", long_poll=timeout) or [], lambda event: None, poll_sec=30)
    poller.start()
    time.sleep(0.3)
    started = time.monotonic()
    poller.request_stop()
    transport.abort()
    poller.join(5)
    assert not poller.alive and time.monotonic() - started < 2.0
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []


def test_abort_also_ends_the_retries_of_the_aborted_call(silent_server):
    """An aborted GET does not sleep through its retry backoff (it kept a pool thread ~1 s past close)."""
    transport = Transport(YagnaConfig(app_key="k", api_url=silent_server, retries=3, backoff=1.0),
                          abortable=True)
    error, elapsed = _aborted_poll(transport, "/debitNoteEvents")
    assert isinstance(error, YagnaUnreachableError)
    assert elapsed < 1.0  # without the fix: 0.3 s + backoffs of 1, 2, 4 s
