"""Ending agreements at once, off the caller's thread: what a cost cap and an overcharge both need.

Threads: :meth:`AgreementStopper.stop` starts one short-lived daemon thread per agreement (named
by the owner); :meth:`AgreementStopper.join` waits for them, bounded. One lock guards the list.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, List, Sequence

__all__ = ["AgreementStopper", "Terminate"]

logger = logging.getLogger("golem_sync.payment")

#: Ends an agreement with a reason: ``terminate(agreement_id, message)``; must not raise.
Terminate = Callable[[str, str], Any]


class AgreementStopper:
    """Terminates agreements on ``thread_name`` threads; ``why`` words the log of a failure."""

    def __init__(self, terminate: Terminate, *, thread_name: str, why: str) -> None:
        self._terminate = terminate
        self._thread_name = thread_name
        self._why = why
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []

    def stop(self, agreement_id: str, message: str) -> None:
        """End the agreement with ``message`` on a new thread (returns at once)."""
        def run() -> None:
            try:
                self._terminate(agreement_id, message)
            except Exception:
                logger.exception("terminating agreement %s %s failed", agreement_id, self._why)

        thread = threading.Thread(target=run, name=self._thread_name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def threads(self) -> List[threading.Thread]:
        with self._lock:
            return list(self._threads)

    def join(self, timeout: float, *, also: Sequence[threading.Thread] = ()) -> None:
        """Wait (within ``timeout`` in all) for the terminations still running, and ``also`` these threads."""
        end = time.monotonic() + timeout
        for thread in [*also, *self.threads()]:
            if thread is not threading.current_thread():
                thread.join(max(0.0, end - time.monotonic()))
                if thread.is_alive():
                    logger.warning("closing: %s is still ending an agreement; leaving it", thread.name)
