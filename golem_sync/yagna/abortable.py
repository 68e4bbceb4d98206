"""An HTTP adapter whose in-flight requests can be aborted from another thread.

A long poll blocks its thread inside ``recv`` until yagna answers; closing a ``requests.Session``
does not wake it. This adapter remembers every connection it opens and ``abort()`` shuts their
sockets down, which makes a blocked ``recv`` return at once; afterwards no new connection can be
opened. The network uses it for its event pollers, so ``close()`` does not wait out a poll.

Threads: connections register themselves on the requesting threads; ``abort`` may be called from any
thread, once the owner decided to stop.
"""
from __future__ import annotations

import socket
import threading
import weakref
from typing import Any, Optional

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

__all__ = ["AbortableAdapter"]


class _AbortAwareRetry(Retry):
    """urllib3's Retry that gives up at once after ``abort()`` and waits its backoff interruptibly."""

    adapter: "Optional[AbortableAdapter]" = None

    def new(self, **kwargs: Any) -> "_AbortAwareRetry":
        retry = super().new(**kwargs)
        retry.adapter = self.adapter
        return retry

    def increment(self, *args: Any, **kwargs: Any) -> Any:
        if self.adapter is not None and self.adapter.aborted:
            raise MaxRetryError(kwargs.get("_pool"), kwargs.get("url") or "",  # type: ignore[arg-type]
                                ConnectionAbortedError("the connection pool was aborted"))
        return super().increment(*args, **kwargs)

    def sleep(self, response: Any = None) -> None:
        backoff = self.get_backoff_time()
        if backoff > 0 and self.adapter is not None:
            self.adapter._aborted_event.wait(backoff)
        elif backoff > 0:
            super().sleep(response)


class AbortableAdapter(HTTPAdapter):
    """``HTTPAdapter`` + ``abort()``; an aborted call also skips its remaining retries."""

    def __init__(self, **kwargs: Any) -> None:
        self._live: "weakref.WeakSet[HTTPConnection]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._aborted = False
        self._aborted_event = threading.Event()
        retry = kwargs.get("max_retries")
        if isinstance(retry, Retry):
            aware = _AbortAwareRetry(**{k: getattr(retry, k) for k in _RETRY_FIELDS})
            aware.adapter = self
            kwargs["max_retries"] = aware
        super().__init__(**kwargs)

    @property
    def aborted(self) -> bool:
        return self._aborted

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        adapter = self

        class TrackedHTTP(HTTPConnection):
            def connect(self) -> None:
                adapter._before_connect()
                super().connect()
                adapter._track(self)

        class TrackedHTTPS(HTTPSConnection):
            def connect(self) -> None:
                adapter._before_connect()
                super().connect()
                adapter._track(self)

        class HTTPPool(HTTPConnectionPool):
            ConnectionCls = TrackedHTTP

        class HTTPSPool(HTTPSConnectionPool):
            ConnectionCls = TrackedHTTPS

        self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}

    def abort(self) -> None:
        """Shut down every open connection and refuse new ones. Idempotent."""
        with self._lock:
            self._aborted = True
            live = list(self._live)
        self._aborted_event.set()
        for connection in live:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _before_connect(self) -> None:
        with self._lock:
            if self._aborted:
                raise ConnectionAbortedError("the connection pool was aborted")

    def _track(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._live.add(connection)
            aborted = self._aborted
        if aborted:  # lost a race with abort(): do not leave this one open
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


_RETRY_FIELDS = ("total", "connect", "read", "redirect", "status", "other", "allowed_methods",
                 "status_forcelist", "backoff_factor", "raise_on_redirect", "raise_on_status",
                 "respect_retry_after_header")
