"""The GSB connection: a client of yagna's GSB router (``GSB_URL``) that binds services and calls them.

The bytes on the socket are :mod:`.wire`'s frames; call bodies are :mod:`.body`'s flexbuffers.

Threads: a :class:`GsbConnection` owns one reader thread (``gsb-reader-<name>``), the only
thread that reads the socket; it answers Ping, completes waiting calls and hands incoming call
requests to a small worker pool, so a handler that blocks never stalls the reader. Writes come
from any thread and are serialized by a lock. ``close()`` (from any thread) unblocks every waiter.
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple
from urllib.parse import urlparse

from ..errors import GsbCallError, GsbClosedError, GsbError, GsbTimeoutError
from .wire import (FULL, HEADER_SIZE, PARTIAL, CallReply, CallRequest, Hello, Message, Ping, Pong, RegisterReply,
                   RegisterRequest, UnregisterReply, UnregisterRequest, decode_packet, encode_frame, frame_length)
from .body import decode_body, encode_body

__all__ = ["GsbConnection", "GsbRequest", "Handler", "REPLY_OK", "REPLY_BAD_REQUEST", "REPLY_SERVICE_FAILURE"]

logger = logging.getLogger("golem_sync.devnet.gsb")

REPLY_OK = 0
REPLY_BAD_REQUEST = 400
REPLY_SERVICE_FAILURE = 500


# -- incoming requests -----------------------------------------------------------------------

class GsbRequest:
    """One incoming call: ``address``, ``caller``, decoded ``body``; answer it exactly once.

    Reply with :meth:`reply` (one FULL reply), or stream with :meth:`reply_partial` and finish
    with :meth:`end_stream`, or fail with :meth:`reply_error`. Any thread may reply. Replies after
    the final one, and replies to ``no_reply`` calls, are dropped.
    """

    def __init__(self, conn: "GsbConnection", request_id: str, caller: str, address: str,
                 data: bytes, no_reply: bool) -> None:
        self._conn = conn
        self.request_id = request_id
        self.caller = caller
        self.address = address
        self.data = data
        self.no_reply = no_reply
        self._done = False
        self._lock = threading.Lock()
        self._body: Any = None
        self._decoded = False

    @property
    def body(self) -> Any:
        """The decoded body (raises :class:`GsbError` if it cannot be decoded)."""
        if not self._decoded:
            self._body = decode_body(self.data)
            self._decoded = True
        return self._body

    @property
    def method(self) -> str:
        """The last address segment, e.g. ``Exec`` of ``/public/exeunit/<id>/Exec``."""
        return self.address.rsplit("/", 1)[-1]

    @property
    def done(self) -> bool:
        return self._done

    def reply(self, value: Any) -> None:
        """Send ``value`` as the one FULL reply."""
        self._send(REPLY_OK, FULL, encode_body(value), final=True)

    def reply_partial(self, value: Any) -> None:
        """Send one PARTIAL (streamed) reply."""
        self._send(REPLY_OK, PARTIAL, encode_body(value), final=False)

    def end_stream(self) -> None:
        """End a streamed reply (an empty FULL reply)."""
        self._send(REPLY_OK, FULL, b"", final=True)

    def reply_error(self, text: str, code: int = REPLY_SERVICE_FAILURE) -> None:
        """Fail the call at the bus level: ``code`` with UTF-8 ``text``."""
        self._send(code, FULL, text.encode("utf-8"), final=True)

    def _send(self, code: int, reply_type: int, data: bytes, *, final: bool) -> None:
        with self._lock:
            if self._done or self.no_reply:
                return
            if final:
                self._done = True
        self._conn._send_reply(self.request_id, code, reply_type, data)


#: A request handler; its return value is ignored (it answers through the request).
Handler = Callable[[GsbRequest], object]


# -- outgoing calls --------------------------------------------------------------------------

class _PendingCall:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.parts: List[bytes] = []
        self.data: bytes = b""
        self.code = 0
        self.closed = False


class GsbConnection:
    """A client connection to a GSB router (yagna's ``GSB_URL``).

    ``url`` is ``tcp://host:port`` (or ``unix:/path``); ``name`` is announced in Hello.
    Threads: see the module docstring. ``bind`` handlers run on the worker pool
    (``max_workers`` threads) and may block.
    """

    def __init__(self, url: str, name: str, *, max_workers: int = 16) -> None:
        self.url = url
        self.name = name
        self._max_workers = max_workers
        self._sock: Optional[socket.socket] = None
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._handlers: Dict[str, Handler] = {}
        self._register_waiters: Deque[Tuple[threading.Event, List[Any]]] = collections.deque()
        self._unregister_waiters: Deque[Tuple[threading.Event, List[Any]]] = collections.deque()
        self._calls: Dict[str, _PendingCall] = {}
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()
        self._hello = threading.Event()
        self._closed = threading.Event()
        self._reader: Optional[threading.Thread] = None
        self._pool: Optional[ThreadPoolExecutor] = None
        self.server_name: Optional[str] = None
        self.server_version: Optional[str] = None

    def __repr__(self) -> str:
        return f"GsbConnection(url={self.url!r}, name={self.name!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> None:
        """Open the socket, send Hello and wait (up to ``timeout`` s) for the router's Hello."""
        if self._sock is not None:
            raise GsbError("already connected")
        parsed = urlparse(self.url)
        try:
            if parsed.scheme == "tcp":
                sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 7464),
                                                timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            elif parsed.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(parsed.path)
            else:
                raise GsbError(f"unsupported GSB url {self.url!r} (tcp:// or unix:)")
        except OSError as exc:
            raise GsbClosedError(f"cannot connect to GSB at {self.url}: {exc}") from exc
        # The reader blocks in recv with no timeout; close() unblocks it with shutdown().
        sock.settimeout(None)
        self._sock = sock
        self._pool = ThreadPoolExecutor(max_workers=self._max_workers,
                                        thread_name_prefix=f"gsb-worker-{self.name}")
        self._reader = threading.Thread(target=self._read_loop, name=f"gsb-reader-{self.name}",
                                        daemon=True)
        self._reader.start()
        self._write(encode_frame(Hello(self.name, "0.1.0", os.urandom(16))))
        if not self._hello.wait(timeout) or self._closed.is_set():
            self.close()
            raise GsbTimeoutError(f"no Hello from GSB router at {self.url} within {timeout}s")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def wait_closed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the connection to close; True if it did."""
        return self._closed.wait(timeout)

    def close(self) -> None:
        """Close the socket; every waiting call and register fails with :class:`GsbClosedError`.

        Handlers still running may finish; their replies are dropped.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        with self._state_lock:
            calls = list(self._calls.values())
            self._calls.clear()
            waiters = list(self._register_waiters) + list(self._unregister_waiters)
            self._register_waiters.clear()
            self._unregister_waiters.clear()
        for call in calls:
            call.closed = True
            call.event.set()
        for event, _ in waiters:
            event.set()
        self._hello.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)

    def __enter__(self) -> "GsbConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- services ----------------------------------------------------------------------------

    def bind(self, address: str, handler: Handler, timeout: float = 5.0) -> None:
        """Register ``address`` on the bus; calls to it or below it go to ``handler``."""
        address = address.rstrip("/")
        with self._state_lock:
            self._handlers[address] = handler
        try:
            self._register_cmd(RegisterRequest(address), self._register_waiters, address, timeout)
        except BaseException:
            with self._state_lock:
                self._handlers.pop(address, None)
            raise

    def unbind(self, address: str, timeout: float = 5.0) -> None:
        """Unregister ``address``; later calls to it fail at the router."""
        address = address.rstrip("/")
        with self._state_lock:
            self._handlers.pop(address, None)
        self._register_cmd(UnregisterRequest(address), self._unregister_waiters, address, timeout)

    def _register_cmd(self, message: Message, queue: Deque[Tuple[threading.Event, List[Any]]],
                      address: str, timeout: float) -> None:
        event = threading.Event()
        result: List[Any] = []
        # The router answers (un)register requests in order and without an id: the queue append
        # and the write happen under the write lock so the queue order is the wire order.
        with self._write_lock:
            with self._state_lock:
                if self._closed.is_set():
                    raise GsbClosedError("GSB connection is closed")
                queue.append((event, result))
            self._write_locked(encode_frame(message))
        if not event.wait(timeout):
            raise GsbTimeoutError(f"no (un)register reply for {address} within {timeout}s")
        if not result:
            raise GsbClosedError("GSB connection closed while (un)registering")
        code, message = result[0]
        if code != 0:
            raise GsbCallError(f"(un)register {address} refused: {code} {message}", code=code)

    # -- calls -------------------------------------------------------------------------------

    def call(self, address: str, body: Any, timeout: float = 10.0, *, caller: str = "local") -> Any:
        """Call a service and return its decoded FULL reply (partial replies are ignored).

        Raises :class:`GsbCallError` for a bus error, :class:`GsbTimeoutError` after ``timeout`` s,
        :class:`GsbClosedError` when the connection closes meanwhile.
        """
        data = self.call_raw(address, encode_body(body), timeout, caller=caller)
        return decode_body(data)

    def call_raw(self, address: str, data: bytes, timeout: float = 10.0, *,
                 caller: str = "local") -> bytes:
        """Like :meth:`call` with an already encoded body; returns the raw reply bytes."""
        request_id = f"{self._id_prefix}-{next(self._ids)}"
        pending = _PendingCall()
        with self._state_lock:
            if self._closed.is_set():
                raise GsbClosedError("GSB connection is closed")
            self._calls[request_id] = pending
        try:
            self._write(encode_frame(CallRequest(caller, address, request_id, data)))
            if not pending.event.wait(timeout):
                raise GsbTimeoutError(f"GSB call {address} got no reply within {timeout}s")
        finally:
            with self._state_lock:
                self._calls.pop(request_id, None)
        if pending.closed:
            raise GsbClosedError(f"GSB connection closed during call {address}")
        if pending.code != REPLY_OK:
            text = pending.data.decode("utf-8", "replace")
            raise GsbCallError(f"GSB call {address} failed: {pending.code} {text}", code=pending.code)
        return pending.data

    # -- writing -----------------------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        with self._write_lock:
            self._write_locked(frame)

    def _write_locked(self, frame: bytes) -> None:
        sock = self._sock
        if sock is None or self._closed.is_set():
            raise GsbClosedError("GSB connection is closed")
        try:
            sock.sendall(frame)
        except OSError as exc:
            self._on_lost(f"write failed: {exc}")
            raise GsbClosedError(f"GSB write failed: {exc}") from exc

    def _send_reply(self, request_id: str, code: int, reply_type: int, data: bytes) -> None:
        try:
            self._write(encode_frame(CallReply(request_id, code, reply_type, data)))
        except GsbClosedError:
            logger.debug("%s: reply to %s dropped: connection closed", self.name, request_id)

    # -- reading (reader thread only) --------------------------------------------------------

    def _recv_exact(self, sock: socket.socket, size: int) -> Optional[bytes]:
        chunks = []
        while size:
            chunk = sock.recv(min(size, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        reason = "router closed the connection"
        try:
            while not self._closed.is_set():
                header = self._recv_exact(sock, HEADER_SIZE)
                if header is None:
                    break
                length = frame_length(header)
                frame = self._recv_exact(sock, length) if length else b""
                if frame is None:
                    break
                for message in decode_packet(frame):
                    self._dispatch(message)
        except GsbError as exc:  # a malformed frame: the stream cannot be trusted any more
            reason = str(exc)
        except OSError as exc:
            reason = f"read failed: {exc}"
        except Exception:  # a bug here must not leave waiters hanging forever
            logger.exception("%s: GSB reader failed", self.name)
            reason = "reader failed"
        self._on_lost(reason)

    def _on_lost(self, reason: str) -> None:
        if not self._closed.is_set():
            logger.info("%s: GSB connection lost: %s", self.name, reason)
            threading.Thread(target=self.close, name=f"gsb-close-{self.name}", daemon=True).start()

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Ping):
            try:
                self._write(encode_frame(Pong()))
            except GsbClosedError:
                return
        elif isinstance(message, CallRequest):
            self._on_call_request(message)
        elif isinstance(message, CallReply):
            self._on_call_reply(message)
        elif isinstance(message, Hello):
            self.server_name = message.name
            self.server_version = message.version
            logger.debug("%s: router hello %s/%s", self.name, self.server_name, self.server_version)
            self._hello.set()
        elif isinstance(message, (RegisterReply, UnregisterReply)):
            queue = self._register_waiters if isinstance(message, RegisterReply) else self._unregister_waiters
            with self._state_lock:
                waiter = queue.popleft() if queue else None
            if waiter is None:
                logger.warning("%s: unmatched (un)register reply", self.name)
            else:
                waiter[1].append((message.code, message.message))
                waiter[0].set()
        elif isinstance(message, Pong):
            pass
        else:
            logger.debug("%s: ignoring GSB packet %r", self.name, message)

    def _on_call_reply(self, reply: CallReply) -> None:
        with self._state_lock:
            pending = self._calls.get(reply.request_id)
        if pending is None:
            logger.debug("%s: unmatched call reply %s", self.name, reply.request_id)
            return
        if reply.reply_type == PARTIAL and reply.code == REPLY_OK:
            pending.parts.append(reply.data)
            return
        pending.code = reply.code
        pending.data = reply.data
        pending.event.set()

    def _on_call_request(self, call: CallRequest) -> None:
        request = GsbRequest(self, request_id=call.request_id, caller=call.caller, address=call.address,
                             data=call.data, no_reply=call.no_reply)
        handler = self._find_handler(request.address)
        if handler is None:
            request.reply_error(f"no service at {request.address}", REPLY_BAD_REQUEST)
            return
        pool = self._pool
        if pool is None:
            return
        try:
            pool.submit(self._run_handler, handler, request)
        except RuntimeError:  # pool shut down: we are closing
            pass

    def _find_handler(self, address: str) -> Optional[Handler]:
        with self._state_lock:
            probe = address
            while probe:
                handler = self._handlers.get(probe)
                if handler is not None:
                    return handler
                probe = probe.rsplit("/", 1)[0] if "/" in probe else ""
        return None

    def _run_handler(self, handler: Handler, request: GsbRequest) -> None:
        try:
            handler(request)
        except Exception as exc:
            logger.exception("%s: handler for %s failed", self.name, request.address)
            request.reply_error(f"handler failed: {exc}")
