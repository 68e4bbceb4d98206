"""Rate-limited progress writes: at most one store write per job per interval, the latest value last.

A worker may report progress in a tight loop; each report only replaces the job's *pending* value
(a dict entry) and wakes one writer thread. The writer writes a job's pending value at once if the
job's previous write is at least ``interval`` old (leading edge), otherwise when it becomes so
(trailing edge): so a report is never lost, the last one is always written, and a job costs the
store at most one write (and one notification to every process) per interval.

Threads: :meth:`ProgressThrottle.submit` and :meth:`forget` are safe from any thread and never
block on the store. One daemon thread (``golem-store-progress``, started by a submit, ending
when nothing is left to write) does every write, so a job's writes are never reordered; the lock is
never held while writing.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from .. import _threads as threads

__all__ = ["ProgressThrottle", "PROGRESS_INTERVAL_SEC"]

logger = logging.getLogger("golem_sync.store")

#: The shortest time between two progress writes of one job.
PROGRESS_INTERVAL_SEC = 0.2


class ProgressThrottle:
    """Coalesces ``(job_id, text)`` submissions into calls of ``write(job_id, text)``.

    ``clock`` and ``thread=False`` are for tests: they then call :meth:`pump` themselves.
    """

    def __init__(self, write: Callable[[str, str], None], *, interval: float = PROGRESS_INTERVAL_SEC,
                 clock: Callable[[], float] = time.monotonic, thread: bool = True) -> None:
        self._write = write
        self.interval = interval
        self._clock = clock
        self._use_thread = thread
        self._cond = threading.Condition()
        self._pending: Dict[str, str] = {}
        self._last: Dict[str, float] = {}  # job id -> clock of its last write (only recent ones kept)
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self.writes = 0  # how many writes were made (for tests and stats)

    def submit(self, job_id: str, text: str) -> None:
        """Make ``text`` the job's value to write (replacing one not written yet)."""
        with self._cond:
            if self._closed:
                return
            self._pending[job_id] = text
            if self._use_thread and self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"{threads.PREFIX}store-progress",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def forget(self, job_id: str) -> None:
        """Drop the job's pending value (its final value was written another way)."""
        with self._cond:
            self._pending.pop(job_id, None)
            self._last.pop(job_id, None)

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _take_due(self, now: float) -> Tuple[List[Tuple[str, str]], Optional[float]]:
        """(writes due now, seconds until the next one is due); under the lock."""
        due: List[Tuple[str, str]] = []
        wake: Optional[float] = None
        for job_id in list(self._pending):
            last = self._last.get(job_id)
            left = 0.0 if last is None else last + self.interval - now
            if left <= 0.0:
                due.append((job_id, self._pending.pop(job_id)))
                self._last[job_id] = now
            elif wake is None or left < wake:
                wake = left
        # Forget write times older than the interval: they no longer delay anything.
        for job_id in [j for j, t in self._last.items() if now - t >= self.interval and j not in self._pending]:
            del self._last[job_id]
        return due, wake

    def pump(self) -> Optional[float]:
        """Write what is due now; return seconds until the next write is due (None: nothing pending)."""
        with self._cond:
            due, wake = self._take_due(self._clock())
        self._run(due)
        return wake

    def _run(self, due: List[Tuple[str, str]]) -> None:
        for job_id, text in due:
            try:
                self._write(job_id, text)
                self.writes += 1
            except Exception as exc:  # a store failure must not stop later writes
                logger.warning("job %s: could not write its progress to the job store: %s", job_id, exc)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    due, wake = self._take_due(self._clock())
                    if due or self._closed:
                        break
                    if wake is None:  # nothing pending: the thread ends (submit starts another)
                        self._thread = None
                        return
                    self._cond.wait(wake)
                closed = self._closed
            self._run(due)
            if closed and not due:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Write every pending value now (ignoring the interval) and stop the thread. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            rest = list(self._pending.items())
            self._pending.clear()
        self._run(rest)
