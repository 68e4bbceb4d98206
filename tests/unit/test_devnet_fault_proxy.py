"""The devnet's fault-injecting proxy against a tiny local upstream (no yagna)."""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from golem_sync.devnet.errors import DevnetConfigError, DevnetError
from golem_sync.devnet.proxy import FaultProxy, FaultProxyClient, FaultRule


class Upstream:
    """A yagna stand-in: /echo, /count (POSTs counted), /slow?t=S, /stream (gated chunks), /plain."""

    def __init__(self) -> None:
        self.posts = 0
        self.lock = threading.Lock()
        self.gates = [threading.Event() for _ in range(3)]
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path == "/slow":
                    time.sleep(float(query.split("=")[1]))
                    self._json(200, {"slept": True})
                elif path == "/stream":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i, gate in enumerate(upstream.gates):
                        gate.wait(30)
                        data = f"event: runtime\ndata: {i}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                elif path == "/plain":
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"until close")
                    self.close_connection = True
                else:
                    self._json(200, {"method": "GET", "path": self.path, "auth": self.headers.get("Authorization"),
                                     "host": self.headers.get("Host")})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with upstream.lock:
                    upstream.posts += 1
                self._json(201, {"method": "POST", "path": self.path, "body": body.decode()})

            do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        for gate in self.gates:
            gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    up = Upstream()
    yield up
    up.close()


def proxy_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("golem-devnet-proxy")]


@pytest.fixture
def proxy(upstream):
    p = FaultProxy(upstream.url, control_token="tok").start()
    session = requests.Session()
    yield p, session
    session.close()
    p.stop()
    assert proxy_threads() == []


def test_forwards_unchanged_with_auth_and_keep_alive(proxy):
    p, s = proxy
    for i in range(3):
        r = s.get(p.url + f"/echo?i={i}", headers={"Authorization": "Bearer secret"})
        assert r.status_code == 200
        assert r.json()["auth"] == "Bearer secret" and r.json()["path"] == f"/echo?i={i}"
    r = s.post(p.url + "/count", json={"a": 1})
    assert r.status_code == 201 and json.loads(r.json()["body"]) == {"a": 1}
    # one client connection carried all four calls
    conn = http.client.HTTPConnection("127.0.0.1", int(p.url.rsplit(":", 1)[1]), timeout=5)
    conn.request("GET", "/echo")
    assert conn.getresponse().read()
    sock = conn.sock
    conn.request("GET", "/echo")
    assert conn.getresponse().status == 200 and conn.sock is sock
    conn.close()


def test_status_rule_answers_yagna_like_json_without_calling_upstream(proxy, upstream):
    p, s = proxy
    rid = p.add_rule(FaultRule(path="/count", method="post", status=500, message="boom"))
    r = s.post(p.url + "/count", json={})
    assert r.status_code == 500 and r.json() == {"message": "boom"}
    assert upstream.posts == 0
    assert s.get(p.url + "/count").status_code == 200  # method must match
    assert p.hits == {rid: 1}


def test_nth_every_times_and_probability(proxy, upstream):
    p, s = proxy
    nth = p.add_rule(path="/echo/nth", status=503, nth=2)
    codes = [s.get(p.url + "/echo/nth").status_code for _ in range(4)]
    assert codes == [200, 503, 200, 200]
    every = p.add_rule(path="/echo/every", status=502, every=2, times=2)
    codes = [s.get(p.url + "/echo/every").status_code for _ in range(8)]
    assert codes == [200, 502, 200, 502, 200, 200, 200, 200]
    stats = {r.id: r for r in p.rules()}
    assert (stats[nth].matched, stats[nth].fired) == (4, 1)
    assert (stats[every].matched, stats[every].fired) == (8, 2)

    def run(seed):
        p.clear()
        p.add_rule(path="/echo/p*", status=500, probability=0.3, seed=seed)
        return [s.get(p.url + "/echo/p").status_code for _ in range(40)]

    first, again = run(7), run(7)
    assert first == again and 3 <= first.count(500) <= 25
    assert run(8) != first


def test_regex_and_glob_paths():
    assert FaultRule(path="/payment-api/*", status=500).matches("GET", "/payment-api/v1/debitNotes/x/accept")
    assert not FaultRule(path="/payment-api/*", status=500).matches("GET", "/market-api/v1/demands")
    rule = FaultRule(path=r"/market-api/v1/agreements/[^/]+/confirm", regex=True, drop_response=True, method="POST")
    assert rule.matches("POST", "/market-api/v1/agreements/abc/confirm")
    assert not rule.matches("POST", "/market-api/v1/agreements/abc/confirm/x")
    assert not rule.matches("GET", "/market-api/v1/agreements/abc/confirm")


@pytest.mark.parametrize("kwargs", [{}, {"status": 500, "reset": True}, {"nth": 1, "every": 2, "status": 500},
                                    {"probability": 0, "status": 500}, {"status": 99}, {"times": 0, "reset": True},
                                    {"regex": True, "path": "(", "reset": True}])
def test_bad_rules_are_refused(kwargs):
    with pytest.raises(DevnetConfigError):
        FaultRule(**kwargs)


def test_reset_before_forwarding(proxy, upstream):
    p, s = proxy
    p.add_rule(path="/count", reset=True, times=1)
    with pytest.raises(requests.ConnectionError):
        s.post(p.url + "/count", json={})
    assert upstream.posts == 0
    assert s.post(p.url + "/count", json={}).status_code == 201  # times=1: the next one passes


def test_drop_response_after_upstream_acted(proxy, upstream):
    p, s = proxy
    p.add_rule(path="/count", drop_response=True, nth=1)
    with pytest.raises(requests.ConnectionError):
        s.post(p.url + "/count", json={})
    assert upstream.posts == 1  # yagna acted; the client never heard
    assert s.post(p.url + "/count", json={}).status_code == 201


def test_delay_then_forward(proxy):
    p, s = proxy
    p.add_rule(path="/echo", delay=0.5)
    t0 = time.monotonic()
    assert s.get(p.url + "/echo").status_code == 200
    assert time.monotonic() - t0 >= 0.5
    p.clear()
    p.add_rule(path="/echo", delay=0.3, status=500)
    t0 = time.monotonic()
    assert s.get(p.url + "/echo").status_code == 500 and time.monotonic() - t0 >= 0.3


def test_streaming_passes_incrementally(proxy, upstream):
    p, s = proxy
    r = s.get(p.url + "/stream", headers={"Accept": "text/event-stream"}, stream=True, timeout=5)
    assert r.headers["Content-Type"] == "text/event-stream"
    lines = r.iter_lines()
    for i, gate in enumerate(upstream.gates):
        gate.set()  # the upstream sends event i only now: the proxy must not wait for the end
        assert next(lines) == b"event: runtime"
        assert next(lines) == f"data: {i}".encode()
        next(lines)
    r.close()


def test_long_poll_is_not_cut_and_close_delimited_bodies_pass(proxy):
    p, s = proxy
    r = s.get(p.url + "/slow?t=2", timeout=10)
    assert r.json() == {"slept": True}
    r = s.get(p.url + "/plain", timeout=5)
    assert r.content == b"until close"


def test_concurrent_requests(proxy):
    p, s = proxy
    results = []

    def call(i):
        with requests.Session() as own:
            results.append(own.get(p.url + f"/slow?t=0.5", timeout=10).status_code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(10)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 10 and time.monotonic() - t0 < 3


def test_upstream_down_answers_502(upstream):
    upstream.close()
    with FaultProxy(upstream.url) as p:
        assert requests.get(p.url + "/echo", timeout=5).status_code == 502


def test_stop_ends_open_connections_and_joins_threads(upstream):
    fds_before = len(os.listdir("/proc/self/fd"))
    p = FaultProxy(upstream.url).start()
    idle = socket.create_connection(("127.0.0.1", int(p.url.rsplit(":", 1)[1])))  # keep-alive, idle
    s = requests.Session()
    assert s.get(p.url + "/echo").status_code == 200  # a pooled keep-alive connection
    polling = threading.Thread(target=lambda: pytest.raises(Exception, s.get, p.url + "/slow?t=2", timeout=60))
    polling.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    p.stop()
    assert time.monotonic() - t0 < 1.5  # did not wait for the long poll
    polling.join(10)
    assert not polling.is_alive()
    assert proxy_threads() == []
    idle.close()
    s.close()
    time.sleep(2.5)  # the upstream's own handler ends its long poll and closes its side
    assert len(os.listdir("/proc/self/fd")) <= fds_before
    p.stop()  # idempotent


def test_control_endpoint_and_client(proxy):
    p, s = proxy
    client = FaultProxyClient(p.url, "tok")
    rid = client.add_rule(FaultRule(path="/echo", status=418))
    assert s.get(p.url + "/echo").status_code == 418
    [stats] = client.rules()
    assert stats.id == rid and stats.rule.status == 418 and stats.fired == 1
    assert client.hits == {rid: 1}
    client.remove_rule(rid)
    assert s.get(p.url + "/echo").status_code == 200
    with pytest.raises(DevnetError, match="no fault rule"):
        client.remove_rule(rid)
    with pytest.raises(DevnetConfigError, match="unknown FaultRule field"):
        client._call("POST", payload={"bogus": 1})
    client.add_rule(path="*", reset=True)
    client.clear()
    assert client.rules() == []
    with pytest.raises(DevnetError, match="X-Fault-Proxy-Token"):
        FaultProxyClient(p.url, "wrong").rules()


def test_rule_json_round_trip_and_describe():
    rule = FaultRule(path="/payment-api/*", method="POST", status=500, every=3, delay=1.5)
    assert FaultRule.from_json(rule.to_json()) == rule
    assert rule.describe() == "POST /payment-api/* -> delay 1.5s, 500 (every 3)"


def _fake_state(tmp_path, proxy):
    """A CLI state dir naming a live pid (ours) and a devnet whose yagna is the test upstream."""
    from golem_sync.devnet import daemon

    info = dict(api_url=proxy.upstream_url, app_key="k", gsb_url="tcp://127.0.0.1:1", requestor_id="0x1",
                subnet="devnet", registry_url="http://127.0.0.1:1", chain_rpc_url="http://127.0.0.1:1",
                token_address="0x2", providers=[], state_dir=str(tmp_path), proxy_url=proxy.url,
                proxy_token=proxy.control_token)
    (tmp_path / daemon.PID_FILE).write_text(f"{os.getpid()}\n")
    (tmp_path / daemon.INFO_FILE).write_text(json.dumps(info))
    return tmp_path


def test_cli_fault_commands_status_and_env(proxy, tmp_path, capsys):
    from golem_sync.devnet.cli import main

    p, s = proxy
    state = str(_fake_state(tmp_path, p))
    assert main(["fault", "add", "--path", "/payment-api/*", "--method", "post", "--status", "500", "--nth", "2",
                 "--state-dir", state]) == 0
    assert capsys.readouterr().out.strip() == "r1: POST /payment-api/* -> 500 (nth 2)"
    assert main(["fault", "add", "--path", "*", "--reset", "--probability", "0.02", "--seed", "1",
                 "--state-dir", state]) == 0
    assert main(["fault", "add", "--path", "*", "--reset", "--status", "500", "--state-dir", state]) == 2
    assert "at most one of" in capsys.readouterr().err
    assert [r.id for r in p.rules()] == ["r1", "r2"]
    assert main(["fault", "list", "--state-dir", state]) == 0
    out = capsys.readouterr().out
    assert "r1: POST /payment-api/* -> 500 (nth 2)  [matched 0, acted 0]" in out and "r2: * * -> reset" in out
    assert main(["status", "--state-dir", state]) == 0
    out = capsys.readouterr().out
    assert f"fault proxy: {p.url}" in out and "fault rule r2:" in out
    assert main(["env", "--via-proxy", "--state-dir", state]) == 0
    assert f"YAGNA_API_URL={p.url}" in capsys.readouterr().out
    assert main(["env", "--state-dir", state]) == 0
    assert f"YAGNA_API_URL={p.upstream_url}" in capsys.readouterr().out
    assert main(["fault", "remove", "r1", "--state-dir", state]) == 0
    assert main(["fault", "remove", "r1", "--state-dir", state]) == 1
    assert main(["fault", "clear", "--state-dir", state]) == 0
    assert p.rules() == []
    assert main(["fault", "list", "--state-dir", str(tmp_path / "none")]) == 1
    assert "no running devnet" in capsys.readouterr().err


def test_devnet_info_proxy_settings(proxy, tmp_path):
    from golem_sync.devnet.errors import DevnetUserError
    from golem_sync.devnet.launcher import DevnetInfo

    p, _ = proxy
    info = DevnetInfo.from_dict(json.loads((_fake_state(tmp_path, p) / "info.json").read_text()))
    assert info.via_proxy().api_url == p.url and info.env(via_proxy=True)["YAGNA_API_URL"] == p.url
    assert "proxy_token" not in repr(info)
    info.proxy.add_rule(path="/x", status=500)
    assert [r.rule.path for r in p.rules()] == ["/x"]
    bare = DevnetInfo.from_dict({**info.to_dict(), "proxy_url": None, "proxy_token": None})
    with pytest.raises(DevnetUserError, match="no fault proxy"):
        bare.via_proxy()
