"""Blocking read-only yagna calls the job thread can stop waiting for at once.

A long poll (proposals, batch results, approval) blocks its thread for up to the poll timeout. The
job thread hands such calls to this small pool and waits for the result OR its cancellation token,
so ``job.cancel()`` ends the wait at once; the abandoned call finishes on its own within its HTTP
timeout and its answer is dropped. Only calls that create nothing may be abandoned: a POST that
creates an agreement or an activity always runs on the job thread, so its id is never lost.

Threads: one pool per network, shared by every job; ``call`` is safe from any thread.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional, TypeVar

from .cancel import CancelToken

__all__ = ["Blocking"]

T = TypeVar("T")


class Blocking:
    """A pool for abandonable calls."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="golem-io")

    def call(self, token: CancelToken, fn: Callable[..., T], *args: object, wait_limit: Optional[float] = None,
             **kwargs: object) -> T:
        """Run ``fn(*args, **kwargs)``; raise GolemCancelledError as soon as ``token`` is cancelled.

        ``wait_limit`` bounds the wait as a last resort; the calls themselves carry HTTP timeouts.
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
        token.raise_if_cancelled()
        future.cancel()
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} did not return within {wait_limit}s")

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
