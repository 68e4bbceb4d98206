"""Blocking read-only yagna calls the job thread can stop waiting for at once.

A long poll (proposals, batch results, approval) blocks its thread for up to the poll timeout. The
job thread hands such calls to this small pool and waits for the result OR its cancellation token,
so ``job.cancel()`` ends the wait at once; the abandoned call finishes on its own within its HTTP
timeout and its answer is dropped. A call that CREATES something (an activity) may be abandoned only
with an ``on_abandon`` cleanup, which receives the created thing when it arrives, so nothing leaks.

Threads: one pool per network, shared by every job; ``call`` is safe from any thread.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional, TypeVar

from .cancel import CancelToken

logger = logging.getLogger("golem_sync.blocking")

__all__ = ["Blocking"]

T = TypeVar("T")


class Blocking:
    """A pool for abandonable calls."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="golem-io")

    def call(self, token: CancelToken, fn: Callable[..., T], *args: object, wait_limit: Optional[float] = None,
             on_abandon: Optional[Callable[[T], object]] = None, **kwargs: object) -> T:
        """Run ``fn(*args, **kwargs)``; raise GolemCancelledError as soon as ``token`` is cancelled.

        ``wait_limit`` bounds the wait as a last resort; the calls themselves carry HTTP timeouts.
        ``on_abandon(result)`` runs on the pool thread if the call succeeds after the caller gave up.
        """
        token.raise_if_cancelled()
        future: "Future[T]" = self._pool.submit(fn, *args, **kwargs)
        finished = threading.Event()
        future.add_done_callback(lambda _: finished.set())
        remove = token.on_cancel(finished.set)
        try:
            finished.wait(wait_limit)
        finally:
            remove()
        if future.done():
            return future.result()
        if on_abandon is not None:
            future.add_done_callback(lambda f: _clean_up(f, on_abandon))
        token.raise_if_cancelled()
        future.cancel()
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} did not return within {wait_limit}s")

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool; with ``wait`` it returns after abandoned calls and their cleanups ended."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


def _clean_up(future: "Future[T]", on_abandon: Callable[[T], object]) -> None:
    if future.cancelled() or future.exception() is not None:
        return  # nothing was created
    try:
        on_abandon(future.result())
    except Exception:
        logger.exception("cleanup of an abandoned call failed")
