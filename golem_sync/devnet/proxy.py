"""A fault-injecting loopback HTTP/1.1 proxy between a requestor and the real yagna REST API.

Requests pass through unchanged (bodies streamed chunk by chunk, long polls and
``text/event-stream`` answers included, keep-alive kept, WebSocket upgrades tunnelled) unless a
:class:`FaultRule` matches. A rule matches by method and path and then acts:

- ``status=N``: answer N with a yagna-like JSON body ``{"message": ...}`` (yagna is not called);
- ``delay=S``: wait S seconds, then forward (or, combined with another action, then act);
- ``reset=True``: reset the client's connection before anything is forwarded;
- ``drop_response=True``: forward, read yagna's whole answer (yagna acted), then reset the
  client's connection, so the client never learns the outcome.

Triggers: every matching call by default; ``nth=N`` only the Nth matching call; ``every=N``
the Nth, 2Nth, ... matching call; ``probability=P`` with a per-rule RNG seeded by ``seed``
(reproducible for one sequence of calls); ``times=N`` stops the rule after it acted N times.
Rules are tried in the order they were added; the first one that acts wins (a rule that matches
but does not trigger still counts the call and lets later rules try).

Paths: ``path`` is matched against the request path without its query string. By default it is
a glob (:func:`fnmatch.fnmatchcase`: ``*`` also matches ``/``, so ``/payment-api/*`` covers the
whole payment API); with ``regex=True`` it is a regular expression that must match the whole path.

A fault rate for every call, e.g. for a soak run::

    proxy.add_rule(FaultRule(path="*", status=500, probability=0.01, seed=1))
    proxy.add_rule(FaultRule(path="*", reset=True, probability=0.01, seed=2))

Control over HTTP: a proxy made with ``control_token`` also answers, itself, under
``/_fault-proxy/rules`` (``GET`` list, ``POST`` add a rule given as :meth:`FaultRule.to_json`,
``DELETE /_fault-proxy/rules/<id>`` remove, ``DELETE /_fault-proxy/rules`` clear), for requests
carrying ``X-Fault-Proxy-Token: <token>``. :class:`FaultProxyClient` speaks it (the devnet CLI's
``fault`` commands). The ``Authorization`` header is passed through and never logged; only the
method and path (no query: it may hold an app key) are.

Threads: :meth:`FaultProxy.start` starts one accept thread and one thread per client
connection; :meth:`FaultProxy.stop` shuts every client and upstream socket down and joins all of
them. Rule state sits under one lock, held only for the decision (never during network I/O).
"""
from __future__ import annotations

import fnmatch
import http.client
import json
import logging
import random
import re
import select
import socket
import socketserver
import struct
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple
from urllib.parse import urlsplit

import attrs

from .errors import DevnetConfigError, DevnetError

__all__ = ["FaultRule", "FaultProxy", "FaultProxyClient", "RuleStats", "CONTROL_PREFIX", "TOKEN_HEADER"]

logger = logging.getLogger("golem_sync.devnet.proxy")

CONTROL_PREFIX = "/_fault-proxy/rules"
TOKEN_HEADER = "X-Fault-Proxy-Token"
#: Hop-by-hop headers (RFC 9110 7.6.1): never forwarded as they are.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                         "upgrade", "proxy-authenticate", "proxy-authorization"})
_CHUNK = 64 * 1024


def _opt_positive(name: str) -> Any:
    def check(inst: Any, attr: Any, value: Optional[int]) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DevnetConfigError(f"FaultRule.{name} must be a whole number >= 1, got {value!r}")
    return check


def _upper(value: Optional[str]) -> Optional[str]:
    return value.upper() if value else None


@attrs.frozen
class FaultRule:
    """What to do to which yagna calls (see the module docstring for the semantics)."""

    path: str = "*"
    method: Optional[str] = attrs.field(default=None, converter=_upper)
    regex: bool = False
    status: Optional[int] = None
    message: str = "fault injected by the golem_sync devnet proxy"
    delay: float = 0.0
    reset: bool = False
    drop_response: bool = False
    nth: Optional[int] = attrs.field(default=None, validator=_opt_positive("nth"))
    every: Optional[int] = attrs.field(default=None, validator=_opt_positive("every"))
    probability: Optional[float] = None
    seed: Optional[int] = None
    times: Optional[int] = attrs.field(default=None, validator=_opt_positive("times"))

    def __attrs_post_init__(self) -> None:
        actions = [self.status is not None, self.reset, self.drop_response]
        if sum(actions) > 1:
            raise DevnetConfigError("a FaultRule takes at most one of status, reset, drop_response")
        if not any(actions) and not self.delay > 0:
            raise DevnetConfigError("a FaultRule needs an action: status, delay, reset or drop_response")
        if self.status is not None and not 100 <= self.status <= 599:
            raise DevnetConfigError(f"FaultRule.status must be an HTTP status (100-599), got {self.status}")
        if self.delay < 0:
            raise DevnetConfigError(f"FaultRule.delay must be >= 0, got {self.delay}")
        if self.nth is not None and self.every is not None:
            raise DevnetConfigError("a FaultRule takes nth or every, not both")
        if self.probability is not None and not 0.0 < self.probability <= 1.0:
            raise DevnetConfigError(f"FaultRule.probability must be in (0, 1], got {self.probability}")
        if self.regex:
            try:
                re.compile(self.path)
            except re.error as exc:
                raise DevnetConfigError(f"FaultRule.path is not a valid regular expression: {exc}") from exc

    @property
    def action(self) -> str:
        """``"status"``, ``"reset"``, ``"drop-response"`` or ``"delay"``."""
        if self.status is not None:
            return "status"
        if self.reset:
            return "reset"
        return "drop-response" if self.drop_response else "delay"

    def matches(self, method: str, path: str) -> bool:
        """True if a call of ``method`` on ``path`` (no query string) is one this rule is about."""
        if self.method is not None and method.upper() != self.method:
            return False
        if self.regex:
            return re.fullmatch(self.path, path) is not None
        return fnmatch.fnmatchcase(path, self.path)

    def describe(self) -> str:
        """One line for logs and ``status``: e.g. ``POST /activity-api/* -> 500 (nth 1)``."""
        what = {"status": str(self.status), "reset": "reset", "drop-response": "drop response",
                "delay": f"delay {self.delay:g}s"}[self.action]
        if self.delay > 0 and self.action != "delay":
            what = f"delay {self.delay:g}s, {what}"
        when = [f"{k} {v}" for k, v in (("nth", self.nth), ("every", self.every), ("p", self.probability),
                                          ("seed", self.seed), ("times", self.times)) if v is not None]
        pattern = f"re:{self.path}" if self.regex else self.path
        return f"{self.method or '*'} {pattern} -> {what}" + (f" ({', '.join(when)})" if when else "")

    def to_json(self) -> Dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FaultRule":
        known = {a.name for a in attrs.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise DevnetConfigError(f"unknown FaultRule field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise DevnetConfigError(f"bad FaultRule: {exc}") from exc


@attrs.frozen
class RuleStats:
    """One rule as the proxy holds it: its id, the rule, calls it matched and times it acted."""

    id: str
    rule: FaultRule
    matched: int
    fired: int

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.id, "rule": self.rule.to_json(), "matched": self.matched, "fired": self.fired}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RuleStats":
        return cls(id=str(data["id"]), rule=FaultRule.from_json(data["rule"]), matched=int(data["matched"]),
                   fired=int(data["fired"]))


class _RuleState:
    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.matched = 0
        self.fired = 0
        self.rng = random.Random(rule.seed)


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the connection threads
    allow_reuse_address = True

    def __init__(self, proxy: "FaultProxy", addr: Tuple[str, int]) -> None:
        self.proxy = proxy
        super().__init__(addr, _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        threading.current_thread().name = "golem-devnet-proxy-conn"
        super().process_request_thread(request, client_address)


class FaultProxy:
    """The proxy: ``FaultProxy(yagna_url).start()``; point the requestor at :attr:`url`.

    Args:
        upstream_url: yagna's REST root, e.g. ``http://127.0.0.1:7465``.
        host, port: where to listen (loopback, a free port by default).
        control_token: enables the HTTP control endpoint for requests carrying this token.
        upstream_timeout: seconds to wait for yagna's bytes (generous: long polls pass through).
    """

    def __init__(self, upstream_url: str, *, host: str = "127.0.0.1", port: int = 0,
                 control_token: Optional[str] = None, upstream_timeout: float = 600.0) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise DevnetConfigError(f"the fault proxy needs an http:// upstream URL, got {upstream_url!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.upstream_url = upstream_url.rstrip("/")
        self.control_token = control_token
        self.upstream_timeout = upstream_timeout
        self._bind = (host, port)
        self._lock = threading.Lock()
        self._rules: Dict[str, _RuleState] = {}
        self._next_id = 1
        self._sockets: Set[socket.socket] = set()  # client and upstream sockets in use
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.stopping = threading.Event()

    def __repr__(self) -> str:
        return f"FaultProxy({self.url if self._server else 'stopped'} -> {self.upstream_url}, rules={len(self._rules)})"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running proxy."""
        if self._server is None:
            raise DevnetError("the fault proxy is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> "FaultProxy":
        if self._server is not None:
            raise DevnetError("the fault proxy is already running")
        self.stopping.clear()
        self._server = _Server(self, self._bind)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="golem-devnet-proxy", daemon=True)
        self._thread.start()
        logger.info("fault proxy %s -> %s", self.url, self.upstream_url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, end every connection in flight, join every thread; idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.stopping.set()
        server.shutdown()
        thread.join(timeout)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)
        server.server_close()  # joins the connection threads (block_on_close)
        self._server = self._thread = None
        if thread.is_alive():
            raise DevnetError("the fault proxy's accept thread did not stop")

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules -------------------------------------------------------------------------------

    def add_rule(self, rule: Optional[FaultRule] = None, **fields: Any) -> str:
        """Add ``rule`` (or ``FaultRule(**fields)``) after the existing ones; return its id."""
        if rule is None:
            rule = FaultRule(**fields)
        elif fields:
            raise TypeError("give a FaultRule or its fields, not both")
        with self._lock:
            rule_id = f"r{self._next_id}"
            self._next_id += 1
            self._rules[rule_id] = _RuleState(rule)
        logger.info("fault rule %s added: %s", rule_id, rule.describe())
        return rule_id

    def remove_rule(self, rule_id: str) -> None:
        with self._lock:
            if self._rules.pop(rule_id, None) is None:
                raise DevnetError(f"no fault rule {rule_id!r}")
        logger.info("fault rule %s removed", rule_id)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> List[RuleStats]:
        """The rules in order, with their counters."""
        with self._lock:
            return [RuleStats(rid, st.rule, st.matched, st.fired) for rid, st in self._rules.items()]

    @property
    def hits(self) -> Dict[str, int]:
        """Times each rule acted, by rule id."""
        with self._lock:
            return {rid: st.fired for rid, st in self._rules.items()}

    def decide(self, method: str, path: str) -> Optional[Tuple[str, FaultRule]]:
        """The rule that acts on this call (counting it), or None to forward it untouched."""
        with self._lock:
            for rule_id, st in self._rules.items():
                rule = st.rule
                if not rule.matches(method, path):
                    continue
                st.matched += 1
                if rule.times is not None and st.fired >= rule.times:
                    continue
                if rule.nth is not None and st.matched != rule.nth:
                    continue
                if rule.every is not None and st.matched % rule.every:
                    continue
                if rule.probability is not None and st.rng.random() >= rule.probability:
                    continue
                st.fired += 1
                return rule_id, rule
        return None

    # -- for the handler ---------------------------------------------------------------------

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer sees a TCP reset, not an orderly close."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Dropped(Exception):
    """The client's connection was reset on purpose; end the handler quietly."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.proxy = self.server.proxy
        self.proxy.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.proxy.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        pass  # the stdlib's line holds the query string, which may hold an app key

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _Dropped:
            self.close_connection = True
        except (OSError, http.client.HTTPException) as exc:
            if not self.proxy.stopping.is_set():
                logger.debug("fault proxy: connection ended: %s", exc)
            self.close_connection = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._proxy_call
        raise AttributeError(name)

    # -- one call ----------------------------------------------------------------------------

    def _proxy_call(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_body()
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            if self.proxy.control_token is not None:
                self._control(path, body)
                return
        decision = self.proxy.decide(self.command, path)
        rule = decision[1] if decision else None
        if decision and rule is not None:
            logger.info("fault rule %s acts on %s %s: %s", decision[0], self.command, path, rule.action)
            if rule.delay > 0 and self.proxy.stopping.wait(rule.delay):
                raise _Dropped()
            if rule.status is not None:
                self._answer(rule.status, {"message": rule.message})
                return
            if rule.reset:
                self._reset_client()
        if self.headers.get("Upgrade"):
            self._tunnel(body, drop=bool(rule and rule.drop_response))
            return
        self._forward(body, drop=bool(rule and rule.drop_response))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: List[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reset_client(self) -> None:
        self.proxy.untrack(self.connection)
        _reset(self.connection)
        raise _Dropped()

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self._write_head(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        self.wfile.write(data)

    def _write_head(self, status: int, headers: List[Tuple[str, str]], reason: Optional[str] = None) -> None:
        if reason is None:
            reason = http.client.responses.get(status, "")
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _upstream_headers(self, body: bytes, *, upgrade: bool) -> List[Tuple[str, str]]:
        host, port = self.proxy.upstream
        out = [("Host", f"{host}:{port}")]
        for key, value in self.headers.items():
            low = key.lower()
            if low == "host" or low == "content-length" or (low in _HOP_BY_HOP and not upgrade):
                continue
            out.append((key, value))
        if body or self.command in ("POST", "PUT", "PATCH"):
            out.append(("Content-Length", str(len(body))))
        return out

    def _forward(self, body: bytes, *, drop: bool) -> None:
        conn = http.client.HTTPConnection(*self.proxy.upstream, timeout=self.proxy.upstream_timeout)
        try:
            try:
                conn.connect()
                assert conn.sock is not None
                self.proxy.track(conn.sock)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in self._upstream_headers(body, upgrade=False):
                    conn.putheader(key, value)
                conn.endheaders(body or None)
                resp = conn.getresponse()
            except (ConnectionError, OSError, http.client.HTTPException) as exc:
                if self.proxy.stopping.is_set():
                    raise _Dropped() from exc
                logger.warning("fault proxy: yagna failed on %s %s: %s", self.command, self.path.split("?")[0], exc)
                self.close_connection = True
                self._answer(502, {"message": f"fault proxy: yagna failed: {exc}"})
                return
            if drop:
                if "text/event-stream" not in resp.getheader("Content-Type", ""):
                    resp.read()  # yagna's whole answer: it acted on the call
                self._reset_client()
            self._relay(resp)
        finally:
            if conn.sock is not None:
                self.proxy.untrack(conn.sock)
            conn.close()

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        length = resp.getheader("Content-Length")
        chunked = resp.chunked
        if not no_body and length is None and not chunked:
            self.close_connection = True  # body ends when yagna closes: so must ours
        if chunked and not no_body:
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Transfer-Encoding", "chunked"))
        if resp.getheader("Connection", "").lower() == "close" and length is None and not chunked:
            self.close_connection = True
        self._write_head(resp.status, headers, resp.reason)
        if no_body:
            return
        while True:
            data = resp.read1(_CHUNK)
            if not data:
                break
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _tunnel(self, body: bytes, *, drop: bool) -> None:
        """A WebSocket (or other) upgrade: send the request as it came, then pipe bytes both ways."""
        upstream = socket.create_connection(self.proxy.upstream, timeout=self.proxy.upstream_timeout)
        self.proxy.track(upstream)
        try:
            lines = [f"{self.command} {self.path} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in self._upstream_headers(body, upgrade=True)]
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            if drop:
                upstream.recv(_CHUNK)  # yagna's handshake answer
                self._reset_client()
            self.close_connection = True
            client = self.connection
            peers = {client: upstream, upstream: client}
            upstream.settimeout(None)
            while not self.proxy.stopping.is_set():
                readable, _, _ = select.select(list(peers), [], [], 1.0)
                for sock in readable:
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    peers[sock].sendall(data)
        finally:
            self.proxy.untrack(upstream)
            upstream.close()

    # -- control endpoint --------------------------------------------------------------------

    def _control(self, path: str, body: bytes) -> None:
        if self.headers.get(TOKEN_HEADER) != self.proxy.control_token:
            self._answer(403, {"message": f"fault proxy control needs the {TOKEN_HEADER} header"})
            return
        rule_id = path[len(CONTROL_PREFIX) + 1:] if path != CONTROL_PREFIX else ""
        try:
            if self.command == "GET" and not rule_id:
                self._answer(200, [s.to_json() for s in self.proxy.rules()])
            elif self.command == "POST" and not rule_id:
                rule = FaultRule.from_json(json.loads(body or b"{}"))
                self._answer(201, {"id": self.proxy.add_rule(rule)})
            elif self.command == "DELETE" and rule_id:
                self.proxy.remove_rule(rule_id)
                self._answer(200, {"id": rule_id})
            elif self.command == "DELETE":
                self.proxy.clear()
                self._answer(200, {})
            else:
                self._answer(405, {"message": f"fault proxy control: {self.command} {path} is not supported"})
        except DevnetConfigError as exc:
            self._answer(400, {"message": str(exc)})
        except DevnetError as exc:
            self._answer(404, {"message": str(exc)})
        except ValueError as exc:
            self._answer(400, {"message": f"the body is not JSON: {exc}"})


class FaultProxyClient:
    """The rule API of a :class:`FaultProxy` in another process, over its control endpoint."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"FaultProxyClient({self.url})"

    def _call(self, method: str, suffix: str = "", payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + CONTROL_PREFIX + suffix, data=data, method=method,
                                     headers={TOKEN_HEADER: self._token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:  # noqa: S310 (loopback)
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", str(exc))
            except ValueError:
                message = str(exc)
            if exc.code == 400:
                raise DevnetConfigError(message) from None
            raise DevnetError(message) from None
        except OSError as exc:
            raise DevnetError(f"cannot reach the fault proxy at {self.url}: {exc}") from exc

    def add_rule(self, rule: Optional[FaultRule] = None, **fields: Any) -> str:
        rule = rule if rule is not None else FaultRule(**fields)
        return str(self._call("POST", payload=rule.to_json())["id"])

    def remove_rule(self, rule_id: str) -> None:
        self._call("DELETE", "/" + rule_id)

    def clear(self) -> None:
        self._call("DELETE")

    def rules(self) -> List[RuleStats]:
        return [RuleStats.from_json(item) for item in self._call("GET")]

    @property
    def hits(self) -> Dict[str, int]:
        return {s.id: s.fired for s in self.rules()}
