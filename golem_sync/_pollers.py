"""A thread that long-polls one yagna event stream and hands each event to a handler.

Threads: an :class:`EventPoller` owns its thread and its position (``after``) in the stream;
``stop`` may be called from any thread and returns once the thread has ended (at most one poll
timeout later). The handler runs on the poller's thread: it must not block for long.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable, Optional, Sequence

from .errors import YagnaAuthError, YagnaError

__all__ = ["EventPoller"]

logger = logging.getLogger("golem_sync.pollers")

Fetch = Callable[[Optional[datetime], float], Sequence[Any]]


class EventPoller:
    """Calls ``fetch(after, timeout)`` in a loop; events must have an ``event_date``."""

    def __init__(self, name: str, fetch: Fetch, handle: Callable[[Any], None], *, poll_sec: float,
                 after: Optional[datetime] = None, error_backoff: float = 1.0) -> None:
        self.name = name
        self._fetch = fetch
        self._handle = handle
        self._poll_sec = poll_sec
        self._after = after
        self._backoff = error_backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"golem-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def request_stop(self) -> None:
        """Ask the loop to end after the poll in flight; returns at once."""
        self._stop.set()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait for the loop to end (default: one poll plus a margin)."""
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(self._poll_sec + 10.0 if timeout is None else timeout)

    def stop(self, timeout: Optional[float] = None) -> None:
        """``request_stop`` then ``join``. To stop several pollers, request all first, then join."""
        self.request_stop()
        self.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._fetch(self._after, self._poll_sec)
            except YagnaAuthError:
                logger.error("%s: yagna rejected the app key; poller stops", self.name)
                return
            except YagnaError as exc:
                if self._stop.is_set():
                    return  # the poll was aborted on purpose (see request_stop)
                logger.warning("%s: %s; retrying in %.1fs", self.name, exc, self._backoff)
                self._stop.wait(self._backoff)
                continue
            for event in events:
                date = getattr(event, "event_date", None)
                if date is not None and (self._after is None or date > self._after):
                    self._after = date
                if self._stop.is_set():
                    break
                try:
                    self._handle(event)
                except Exception:
                    logger.exception("%s: handling %r failed", self.name, event)
