"""A one-thread timer queue: run jobs at (or after) a monotonic deadline, in deadline order.

Threads: :meth:`Scheduler.run` is the agent's *payments* thread and runs every job (debit
notes, invoices, provider-side terminations, the agreement clocks: idle timeout and expiration),
so payment documents of one provider are issued one at a time and never race each other. There
is no cancel: a job that may have become stale checks, when it runs, whether it still applies.
:meth:`schedule` and :meth:`stop` are safe from any thread. The thread sleeps on a condition
until the next deadline (no polling).
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable, List, Tuple

__all__ = ["Scheduler"]

logger = logging.getLogger("golem_sync.devnet.provider")

Job = Callable[[], None]


class Scheduler:
    """Runs queued jobs on one thread. Jobs must not block for long (each REST call has a timeout)."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._cond = threading.Condition()
        self._heap: List[Tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._stopped = False

    def schedule(self, delay: float, job: Job) -> None:
        """Run ``job`` on the scheduler thread ``delay`` seconds from now (0 = as soon as possible)."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), job))
            self._cond.notify()

    def stop(self) -> None:
        """Drop pending jobs and end :meth:`run` after the job running now (if any)."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    wait = self._heap[0][0] - now if self._heap else None
                    # Bounded even with an empty queue, so a lost notify can never hang the thread.
                    self._cond.wait(min(wait, 5.0) if wait is not None else 5.0)
                if self._stopped:
                    return
                _, _, job = heapq.heappop(self._heap)
            try:
                job()
            except Exception:  # one failing job must not end payments for every other activity
                logger.exception("%s: scheduled job failed", self._label)
