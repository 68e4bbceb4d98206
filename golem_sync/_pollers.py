"""A thread that long-polls one yagna event stream and hands each event to a handler.

When yagna goes away (stopped, restarting, a broken connection) a poller keeps its position and
tries again with :class:`Backoff` (exponential, capped, jittered), so a restart of yagna is
survived without a log storm: the pollers of one network share an :class:`OutageLog`, which
logs ONE warning when yagna stops answering and ONE info when it answers again; every other
failed poll is logged at debug.

Threads: an :class:`EventPoller` owns its thread and its position (``after``) in the stream;
``stop`` may be called from any thread and returns once the thread has ended (at most one poll
timeout later). The handler runs on the poller's thread: it must not block for long. An
:class:`OutageLog` is shared by several pollers' threads and guards its state with a lock
(never held while logging).
"""
from __future__ import annotations

import logging
import random
import threading
import time
from datetime import datetime
from typing import Any, Callable, Optional, Sequence, Set

import attrs

from .errors import YagnaAuthError, YagnaError

__all__ = ["EventPoller", "Backoff", "OutageLog"]

logger = logging.getLogger("golem_sync.pollers")

Fetch = Callable[[Optional[datetime], float], Sequence[Any]]


@attrs.frozen
class Backoff:
    """How long a poller waits after its n-th failed poll in a row: exponential, capped, jittered.

    The n-th failure (1-based) waits ``min(max_delay, first_delay * factor ** (n - 1))`` seconds
    scaled by a random factor in ``[1 - jitter, 1]`` (so pollers that failed together do not
    retry in lockstep). The defaults retry after about 0.5, 1, 2, 4 s, then every 5 s at most:
    a restarted yagna is noticed within a few seconds and a dead one costs one poll per 5 s.
    """

    first_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 5.0
    jitter: float = 0.3

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``failures``-th failed poll in a row (``rand`` in [0, 1))."""
        base = min(self.max_delay, self.first_delay * self.factor ** max(0, failures - 1))
        return float(base * (1.0 - self.jitter * rand()))


class OutageLog:
    """Says once that yagna went away and once that it came back, for any number of pollers.

    ``failed`` and ``recovered`` are called by the pollers sharing it (from their threads); the
    first failure of an outage is a warning, its end (once every poller that failed has polled
    successfully again) an info with how long it lasted; everything in between is logged at debug.
    """

    def __init__(self, what: str = "yagna", *, clock: Callable[[], float] = time.monotonic) -> None:
        self._what = what
        self._clock = clock
        self._lock = threading.Lock()
        self._since: Optional[float] = None  # when the current outage began, None while reachable
        self._failing: Set[str] = set()  # pollers whose last poll failed
        self._failures = 0

    @property
    def down(self) -> bool:
        """Whether the last poll of some poller failed (an outage is under way)."""
        with self._lock:
            return self._since is not None

    def failed(self, poller: str, error: BaseException, retry_in: float) -> None:
        with self._lock:
            first = self._since is None
            if first:
                self._since = self._clock()
            self._failing.add(poller)
            self._failures += 1
        if first:
            logger.warning("%s is unreachable or failing (%s: %s); polling again with backoff, quietly until it answers",
                           self._what, poller, error)
        else:
            logger.debug("%s: %s; retrying in %.1fs", poller, error, retry_in)

    def recovered(self, poller: str) -> None:
        with self._lock:
            if poller not in self._failing:
                return
            self._failing.discard(poller)
            since, failures = self._since, self._failures
            if self._failing or since is None:
                return  # the outage ends when every poller that failed polls again
            self._since = None
            self._failures = 0
            lasted = self._clock() - since
        logger.info("%s answers again after %.1fs (%d failed polls)", self._what, lasted, failures)


class EventPoller:
    """Calls ``fetch(after, timeout)`` in a loop; events must have an ``event_date``.

    A failed poll (any :class:`YagnaError` but an auth error) is retried after
    ``backoff.delay(n)`` for the n-th failure in a row, from the same position; the outage is
    reported through ``outages`` (a shared :class:`OutageLog`, or one of its own).
    """

    def __init__(self, name: str, fetch: Fetch, handle: Callable[[Any], None], *, poll_sec: float,
                 after: Optional[datetime] = None, backoff: Optional[Backoff] = None,
                 outages: Optional[OutageLog] = None) -> None:
        self.name = name
        self._fetch = fetch
        self._handle = handle
        self._poll_sec = poll_sec
        self._after = after
        self._backoff = backoff or Backoff()
        #: Where outages are reported; assign a shared one before :meth:`start` (see SharedServices).
        self.outages = outages or OutageLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"golem-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def request_stop(self) -> None:
        """Ask the loop to end after the poll in flight (or at once from a backoff wait); returns at once."""
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
        failures = 0
        while not self._stop.is_set():
            try:
                events = self._fetch(self._after, self._poll_sec)
            except YagnaAuthError:
                logger.error("%s: yagna rejected the app key; poller stops", self.name)
                return
            except YagnaError as exc:
                if self._stop.is_set():
                    return  # the poll was aborted on purpose (see request_stop)
                failures += 1
                delay = self._backoff.delay(failures)
                self.outages.failed(self.name, exc, delay)
                self._stop.wait(delay)
                continue
            if failures:
                failures = 0
                self.outages.recovered(self.name)
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
