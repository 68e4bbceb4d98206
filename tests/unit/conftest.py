"""Fixtures for the yagna client unit tests: a mocked yagna (``responses``) and a tiny real
HTTP server on 127.0.0.1 for error paths that must go through real sockets and urllib3 retries."""
from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Tuple
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from golem_sync.yagna import YagnaClient, YagnaConfig

#: Looks like a real key so a leak would be visible in any string that contains it.
SECRET_KEY = "sk-TEST-4f1c2e9a8b7d6c5e"
API = "http://127.0.0.1:7465"


@pytest.fixture
def app_key() -> str:
    return SECRET_KEY


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """A ``responses`` mock of yagna at ``API``; every registered answer must be used.

    ``responses`` patches requests for the whole process: other HTTP traffic (e.g. the provider
    threads of a session-wide devnet started by another test module) passes through untouched.
    """
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add_passthru(re.compile(rf"^(?!{re.escape(API)}/)"))
        yield rsps


@pytest.fixture
def client() -> Iterator[YagnaClient]:
    """A client on the default URL (answered by ``mocked``) with fast, few retries."""
    with YagnaClient(YagnaConfig(app_key=SECRET_KEY, api_url=API, retries=2, backoff=0.01)) as c:
        yield c


Reply = Tuple[int, Any]  # (status, body: dict/list/str/bytes/None); status 0 = never answer


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 that answers from a script and records what it got.

    Threads: served by ``ThreadingHTTPServer`` worker threads; ``requests`` and ``replies`` are
    guarded by ``lock``. A status of 0 means "read the request, never answer" (until shutdown).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.replies: List[Reply] = []
        self.requests: List[Dict[str, Any]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server.lock:
                    server.requests.append({"method": self.command, "path": self.path,
                                            "headers": dict(self.headers), "body": body,
                                            "peer": self.client_address})
                    status, payload = server.replies.pop(0) if server.replies else (500, {"message": "no script"})
                if status == 0:
                    server.release.wait(timeout=30)
                    return
                if isinstance(payload, bytes):
                    data = payload
                elif payload is None:
                    data = b""
                else:
                    data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="scripted-yagna", daemon=True)
        self.thread.start()

    def script(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port that was just free: nothing listens on it (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def client_for() -> Iterator[Any]:
    """A factory ``client_for(url, **options)`` of clients closed at teardown."""
    made: List[YagnaClient] = []

    def make(url: str, **overrides: Any) -> YagnaClient:
        options: Dict[str, Any] = {"retries": 2, "backoff": 0.01, "connect_timeout": 2.0}
        options.update(overrides)
        c = YagnaClient(YagnaConfig(app_key=SECRET_KEY, api_url=url, **options))
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def calls(mocked: responses.RequestsMock) -> Any:
    """``calls()`` → the mocked calls that went to the mocked yagna (other traffic passes through)."""

    def get() -> List[Any]:
        return [call for call in mocked.calls if call.request.url.startswith(API + "/")]

    return get


@pytest.fixture
def sent(mocked: responses.RequestsMock) -> Any:
    """``sent(i=-1)`` → (method, path, query dict, decoded JSON body or None) of a mocked call."""

    def get(i: int = -1) -> Tuple[str, str, Dict[str, str], Any]:
        req = [call for call in mocked.calls if call.request.url.startswith(API + "/")][i].request
        parts = urlsplit(req.url)
        body = req.body
        if isinstance(body, bytes):
            body = body.decode()
        return req.method, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)), (
            json.loads(body) if body else None)

    return get


@pytest.fixture
def fake_yagna() -> Iterator[Any]:
    """A stateful fake yagna (``fakeyagna.FakeYagna``) answering at ``API``; other traffic passes."""
    from fakeyagna import FakeYagna

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(re.compile(rf"^(?!{re.escape(API)}/)"))
        yield FakeYagna(rsps, poll_sleep=0.02)


@pytest.fixture
def golem(fake_yagna: Any) -> Iterator[Any]:
    """``golem(**options)`` → an initialised GolemNetwork on the fake yagna, closed at teardown.

    Teardown also asserts the promise every test relies on: no golem_sync thread outlives close().
    """
    from fakeyagna import PACKAGE, client as fake_client

    from golem_sync import GolemNetwork

    made: List[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("package", PACKAGE)
        options.setdefault("payment", {"invoice_wait_sec": 0.2})
        network = GolemNetwork(client=fake_client(), **options).init()
        made.append(network)
        return network

    before = {t.ident for t in threading.enumerate()}
    yield make
    for network in made:
        network.close()
    leftover = [t.name for t in threading.enumerate()
                if t.ident not in before and t.is_alive() and t.name.startswith("golem-")]
    assert not leftover, f"threads left after close(): {leftover}"
