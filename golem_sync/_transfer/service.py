"""One set of GSB services bound through yagna's GSB API and served over its WebSocket.

``POST /gsb-api/v1/services`` binds ``components`` under an address; yagna then forwards every
GSB call to them as a binary flexbuffers frame ``{id, component, payload}`` on the WebSocket
``/gsb-api/v1/services/<servicesId>`` (subprotocol ``gsb+flexbuffers``), and takes the answer as
``{id, payload}`` or ``{id, error}``. ``DELETE`` unbinds and makes yagna close the socket.

Threads: the caller's thread (a job's worker) opens and closes the service. One
``golem-transfer-<name>`` thread is the only reader of the socket: it decodes each request,
calls ``handler(component, payload)`` and sends the reply, so handlers (and whatever they call,
e.g. progress callbacks) run on that thread. ``close()`` is idempotent and safe from any thread;
it always unbinds and closes the socket, and joins the thread (bounded wait) unless the thread is
inside a handler: user code (a slow ``progress=`` callback or ``transfer_progress`` receiver, maybe
one that cancels the job) is never waited for. After ``close()`` no new handler call starts.
``on_stopped`` (the owner's resource release, e.g. closing the served file) runs exactly once,
when the service is closed AND its reader is gone: on the closing thread if the reader already
ended (or never started), else on the reader thread as it exits. So a descriptor is never closed
under a reader that may still use it, and never leaked either.
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Callable, Optional, Sequence

import websocket

from .. import _flex as flex
from ..errors import GolemError, GolemWorkError, YagnaError, YagnaNotFoundError
from ..yagna import seg
from ..yagna.client import YagnaClient
from ..yagna.net import to_websocket_url

__all__ = ["GsbService", "Handler", "ServiceFailure", "SUBPROTOCOL"]

logger = logging.getLogger("golem_sync.storage.service")

SUBPROTOCOL = "gsb+flexbuffers"

#: ``handler(component, payload) -> reply payload``; raise :class:`ServiceFailure` (or anything)
#: to answer the caller with an error.
Handler = Callable[[str, Any], Any]


class ServiceFailure(Exception):
    """Raised by a handler to answer a GSB call with an error (gftp's ``InternalError``)."""


class GsbService:
    """Bind ``components`` at ``address`` and answer calls with ``handler`` until closed.

    Args:
        client: the yagna client (its app key authenticates the WebSocket in a header, so the
            key never appears in a URL).
        address: the GSB address prefix, e.g. ``/public/gftp/<random name>``.
        components: the message names served under it.
        handler: answers one call (runs on the service thread).
        connect_timeout: limit for the WebSocket handshake and for every send.
        idle_timeout: how long the reader waits for the next frame before checking again that it
            was not asked to stop (the normal wake-up is the socket closing).
        on_stopped: runs once when the service is closed and no reader can touch its resources
            any more (see the module's Threads paragraph); it must be quick and must not raise.
    """

    def __init__(self, client: YagnaClient, address: str, components: Sequence[str], handler: Handler, *,
                 connect_timeout: float = 10.0, idle_timeout: float = 30.0,
                 on_stopped: Optional[Callable[[], None]] = None) -> None:
        self._client = client
        self.address = address
        self._components = list(components)
        self._handler = handler
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self.services_id: Optional[str] = None
        self._ws: Optional[websocket.WebSocket] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # guards the flags below; never held while calling out
        self._closed = False
        self._in_handler = False  # the reader is inside handler() (maybe user code)
        self._reader_done = False
        self._released = False
        self._on_stopped = on_stopped
        #: The first failure of the socket or a handler, for the caller's error message.
        self.error: Optional[BaseException] = None
        self.requests = 0

    def __enter__(self) -> "GsbService":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> "GsbService":
        """Bind the services and connect the WebSocket; on failure nothing stays bound."""
        try:
            self.services_id = self._client.gsb.bind_services(self.address, self._components)
        except YagnaError as exc:
            raise GolemWorkError(f"could not publish {self.address} on yagna's GSB API: {exc}") from exc
        try:
            url = to_websocket_url(self._client.transport.url("gsb", f"/services/{seg(self.services_id)}"))
            # The key goes in a header (spec: app_key security), never in the URL.
            self._ws = websocket.create_connection(
                url, timeout=self._connect_timeout, subprotocols=[SUBPROTOCOL],
                header=[f"Authorization: Bearer {self._client.config.app_key}"], enable_multithread=True)
        except Exception as exc:
            self.close()
            # The exception text of websocket-client carries no header, so no key leaks here.
            raise GolemWorkError(f"could not open the GSB API WebSocket for {self.address}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        self._thread = threading.Thread(target=self._serve, name=f"golem-transfer-{self.address.rsplit('/', 1)[-1][:12]}",
                                        daemon=True)
        self._thread.start()
        logger.debug("serving %s %s", self.address, self._components)
        return self

    def close(self, join_timeout: float = 5.0) -> None:
        """Unbind, close the socket and stop the thread. Never raises; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping.set()  # under the lock: from now on no handler call starts
            busy = self._in_handler
        if self.services_id is not None:
            try:
                self._client.gsb.unbind_services(self.services_id)
            except YagnaNotFoundError:
                pass  # already gone (yagna restarted, or unbound elsewhere)
            except YagnaError as exc:
                logger.warning("could not unbind GSB services %s: %s", self.address, exc)
        thread = self._thread
        if busy:
            # Never wait for user code: the reader ends when the handler returns (its reply then
            # fails on the shut socket) and runs on_stopped on its way out.
            logger.debug("the GSB API reader for %s is inside a handler; it stops when that returns",
                         self.address)
        elif thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout / 2)  # yagna closes the socket after the unbind: the reader ends
            if thread.is_alive():
                self._shutdown_socket()  # wakes a reader blocked in recv
                thread.join(join_timeout / 2)
            if thread.is_alive():
                logger.warning("the GSB API reader for %s did not stop in %.1fs", self.address, join_timeout)
        self._shutdown_socket()
        self._release()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the reader thread -----------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._serve_frames()
        finally:
            with self._lock:
                self._reader_done = True
            self._release()

    def _serve_frames(self) -> None:
        ws = self._ws
        assert ws is not None
        ws.settimeout(self._idle_timeout)
        while not self._stopping.is_set():
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue  # nothing asked for a while: the provider may still be busy
            except (websocket.WebSocketException, OSError, ValueError) as exc:
                if not self._stopping.is_set():
                    self._fail(GolemWorkError(f"the GSB API WebSocket for {self.address} failed: {exc}"))
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:  # a close frame is not flexbuffers
                if not self._stopping.is_set():
                    self._fail(GolemWorkError(f"yagna closed the GSB API WebSocket for {self.address}"))
                return
            if opcode != websocket.ABNF.OPCODE_BINARY:
                continue
            reply = self._answer(data)
            if reply is None:
                continue
            try:
                ws.send(reply, opcode=websocket.ABNF.OPCODE_BINARY)
            except (websocket.WebSocketException, OSError) as exc:
                if not self._stopping.is_set():
                    self._fail(GolemWorkError(f"could not answer on the GSB API WebSocket for {self.address}: {exc}"))
                return

    def _answer(self, data: bytes) -> Optional[bytes]:
        try:
            message = flex.loads(data)
        except YagnaError as exc:
            self._fail(exc)
            return None
        if not isinstance(message, dict) or "id" not in message:
            self._fail(GolemWorkError(f"unexpected GSB API message on {self.address}: {message!r:.200}"))
            return None
        with self._lock:
            if self._stopping.is_set():
                return None  # closed: no handler call starts any more
            self._in_handler = True
        self.requests += 1
        request_id = message["id"]
        try:
            payload = self._handler(str(message.get("component", "")), message.get("payload"))
            return flex.dumps({"id": request_id, "payload": payload})
        except Exception as exc:
            if not isinstance(exc, (ServiceFailure, GolemError)):  # those are refusals, not bugs
                logger.exception("GSB handler for %s failed", self.address)
            self._fail(exc)
            return flex.dumps({"id": request_id, "error": {"InternalError": str(exc) or type(exc).__name__}})
        finally:
            with self._lock:
                self._in_handler = False

    def _release(self) -> None:
        """Run on_stopped once, when closed and no reader is left (either caller may be last)."""
        with self._lock:
            reader_gone = self._thread is None or self._reader_done
            if self._released or not self._closed or not reader_gone:
                return
            self._released = True
        if self._on_stopped is not None:
            try:
                self._on_stopped()
            except Exception:
                logger.exception("releasing the resources of %s failed", self.address)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc

    def _shutdown_socket(self) -> None:
        ws = self._ws
        if ws is None:
            return
        sock = ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # close() alone does not wake a blocked recv
            except OSError:
                pass
        try:
            ws.shutdown()  # type: ignore[no-untyped-call]
        except Exception:  # the socket may be half gone already
            pass
