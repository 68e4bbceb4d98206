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
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["AbortableAdapter"]


class AbortableAdapter(HTTPAdapter):
    """``HTTPAdapter`` + ``abort()``."""

    def __init__(self, **kwargs: Any) -> None:
        self._live: "weakref.WeakSet[HTTPConnection]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._aborted = False
        super().__init__(**kwargs)

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
