"""Cooperative cancellation: a token every blocking step checks, and waits it can interrupt.

Threads: a :class:`CancelToken` is created by the job's owner; ``cancel()`` may be called from any
thread (the canceller), everything else from the job's pool thread. Callbacks registered with
``on_cancel`` run once, on the canceller's thread, so they must be quick (wake a condition, close a
socket). No wait in this module sleeps in a loop: every wait is on a ``threading.Condition`` or
``Event`` that cancellation notifies.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Deque, Generic, List, Optional, Sequence, TypeVar

from .errors import GolemCancelledError, GolemTimeoutError

__all__ = ["CancelToken", "Deadline", "Inbox"]

logger = logging.getLogger("golem_sync.cancel")

T = TypeVar("T")


class CancelToken:
    """A one-shot cancellation flag with callbacks and interruptible sleeps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: List[Callable[[], None]] = []
        self._reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def cancel(self, reason: str = "cancelled") -> bool:
        """Set the flag and run the callbacks. Returns False if it was already cancelled."""
        with self._lock:
            if self._event.is_set():
                return False
            self._reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a broken callback must not stop the others
                logger.exception("cancel callback %r failed", callback)
        return True

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise GolemCancelledError(self._reason or "cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep, but raise :class:`GolemCancelledError` as soon as the token is cancelled."""
        if self._event.wait(max(0.0, seconds)):
            raise GolemCancelledError(self._reason or "cancelled")

    def child(self) -> "CancelToken":
        """A token cancelled with this one (with the same reason) that can also be cancelled alone."""
        child = CancelToken()

        def propagate() -> None:
            child.cancel(self._reason)

        remove = self.on_cancel(propagate)
        child.on_cancel(remove)
        return child

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (at once if already cancelled). Returns an unregister function."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)

                def remove() -> None:
                    with self._lock:
                        try:
                            self._callbacks.remove(callback)
                        except ValueError:
                            pass

                return remove
        callback()
        return lambda: None


class Deadline:
    """A point in (monotonic) time; ``None`` seconds means no limit."""

    def __init__(self, seconds: Optional[float]) -> None:
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> Optional[float]:
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def cap(self, seconds: float) -> float:
        """``seconds``, shortened to what is left of the deadline."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)


class Inbox(Generic[T]):
    """A FIFO that one consumer waits on, woken by new items or by cancellation.

    Producers (poller threads) call :meth:`put` from any thread; one consumer calls :meth:`get`.

    Bounded (``limit`` given): every item weighs ``weight(item)`` (1 by default) and when the
    unread items weigh more than ``limit``, :meth:`put` drops the oldest ones (never the item just
    put, so one item heavier than the limit is still delivered). ``dropped`` and
    ``dropped_weight`` count what was lost; ``weight`` is what the unread items weigh now.
    Unbounded by default.
    """

    def __init__(self, limit: Optional[int] = None, weight: Optional[Callable[[T], int]] = None) -> None:
        self._cond = threading.Condition()
        self._items: Deque[T] = deque()
        self._closed: Optional[BaseException] = None
        self._limit = limit
        self._weigh: Callable[[T], int] = weight if weight is not None else _one
        self._weights: Deque[int] = deque()
        self.weight = 0
        self.dropped = 0
        self.dropped_weight = 0

    def put(self, item: T) -> int:
        """Append ``item``; returns how many old items this dropped (0 when unbounded)."""
        return self.put_many((item,))

    def put_many(self, items: Sequence[T]) -> int:
        """Append ``items`` in order (one wake-up); returns how many old items were dropped."""
        if not items:
            return 0
        dropped = 0
        with self._cond:
            for item in items:
                size = self._weigh(item)
                self._items.append(item)
                self._weights.append(size)
                self.weight += size
                if self._limit is not None:
                    while self.weight > self._limit and len(self._items) > 1:
                        self._items.popleft()
                        lost = self._weights.popleft()
                        self.weight -= lost
                        self.dropped += 1
                        self.dropped_weight += lost
                        dropped += 1
            self._cond.notify_all()
        return dropped

    def close(self, error: BaseException) -> None:
        """Make every current and future :meth:`get` on an empty inbox raise ``error``."""
        with self._cond:
            self._closed = error
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def get(self, token: CancelToken, timeout: Optional[float], *, phase: str = "event") -> T:
        """The next item; raises GolemCancelledError, GolemTimeoutError (naming ``phase``) or the close error."""
        deadline = Deadline(timeout)
        remove = token.on_cancel(self.wake)
        try:
            with self._cond:
                while True:
                    if self._items:
                        self.weight -= self._weights.popleft()
                        return self._items.popleft()
                    token.raise_if_cancelled()
                    if self._closed is not None:
                        raise self._closed
                    left = deadline.remaining()
                    if left == 0.0:
                        raise GolemTimeoutError(f"no {phase} within {timeout:g}s", phase=phase)
                    self._cond.wait(left)
        finally:
            remove()

    def drain(self) -> List[T]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._weights.clear()
            self.weight = 0
            return items


def _one(item: object) -> int:
    return 1
