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
from typing import Callable, Deque, Generic, List, Optional, TypeVar

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
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: Deque[T] = deque()
        self._closed: Optional[BaseException] = None

    def put(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

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
            return items
