"""Abandonable calls: blocking yagna calls the job thread can stop waiting for at once.

A long poll (proposals, batch results, approval) blocks its thread for up to the poll timeout. The
job thread hands such calls to this small pool and waits for the result OR its cancellation token,
so ``job.cancel()`` ends the wait at once. A call still queued when the token fires never runs. A
call already running is abandoned and its answer dropped: a read-only call should go through an
:func:`abortable_reads` client, which the same cancellation aborts, so its thread is free at once.
A call that CREATES something (an activity) may be abandoned only with an ``on_abandon`` cleanup,
which receives the created thing when it arrives, so nothing leaks.

``shutdown`` waits only for abandoned calls that have a cleanup (bounded); abandoned read-only calls
are not waited for (they end at once if aborted, otherwise within their own HTTP timeout).

Threads: one pool per network, shared by every job; ``call`` is safe from any thread and waits on
the caller's thread; the calls and their cleanups run on ``golem-io`` threads, started on demand (at
most ``max_workers``) and ended as soon as no call is queued, so an idle network holds none;
``shutdown`` is called once, by the owner. ``_cond`` guards the queue, the worker count,
``_cleanups``, ``_in_flight``, the idle read clients and ``_closed``.

:meth:`AbandonableCalls.reads` lends a job thread an abortable client for its own long polls (demand
events, approval waits, batch results) and takes it back afterwards, so a warm job does not open a
new connection (and build a new session) for every batch.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from concurrent.futures import CancelledError, Future
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple, TypeVar

import attrs

from ._cancel import CancelToken
from .errors import GolemCancelledError, GolemTimeoutError
from .yagna.client import YagnaClient
from .yagna.config import YagnaConfig
from .yagna.transport import Transport

logger = logging.getLogger("golem_sync.blocking")

__all__ = ["AbandonableCalls", "abortable_reads"]

T = TypeVar("T")


class AbandonableCalls:
    """A pool for abandonable calls.

    Args:
        max_workers: pool threads.
        abort: called by :meth:`shutdown` after the queue is cancelled, to end read-only calls still
            in flight (e.g. ``reads_client.transport.abort`` of an abortable client they go through).
    """

    #: Idle read clients kept per yagna config; more are closed when handed back.
    IDLE_READS = 8

    def __init__(self, max_workers: int, *, abort: Optional[Callable[[], None]] = None) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self._max_workers = max_workers
        self._queue: Deque[Tuple["Future[Any]", Callable[[], Any]]] = deque()
        self._workers = 0  # golem-io threads alive
        self._started = 0  # for thread names
        self._stopping = False  # shutdown() began: no new calls
        self._abort = abort
        self._cond = threading.Condition()
        self._cleanups = 0  # abandoned calls whose on_abandon has not finished yet
        self._in_flight = 0  # calls queued or running
        self._idle_reads: Dict[YagnaConfig, List[YagnaClient]] = {}
        self._closed = False

    @contextlib.contextmanager
    def reads(self, client: YagnaClient, token: CancelToken) -> Iterator[YagnaClient]:
        """Lend an abortable copy of ``client`` for long polls made on THIS thread; ``token`` aborts it.

        Like :func:`abortable_reads`, but the client is reused: after a block that ended normally and
        was not cancelled it goes back to a small idle list (its connection stays open) for the next
        borrower. A cancelled, aborted or failed block closes it. Calls that create or end something
        must keep using ``client``. A call through it made with :meth:`call` must let the error of
        an abandoned call leave the block, so the client it still uses is closed, not lent again.
        """
        reads = self._take_reads(_reads_config(client.config))
        remove = token.on_cancel(reads.transport.abort)
        clean = False
        try:
            yield reads
            clean = True
        finally:
            remove()
            if not (clean and not token.cancelled and not reads.transport.aborted and self._give_back(reads)):
                reads.transport.abort()
                reads.transport.close()

    def _take_reads(self, config: YagnaConfig) -> YagnaClient:
        with self._cond:
            idle = self._idle_reads.get(config)
            if idle:
                return idle.pop()
        return YagnaClient(transport=Transport(config, abortable=True))

    def _give_back(self, reads: YagnaClient) -> bool:
        with self._cond:
            if self._closed:
                return False
            idle = self._idle_reads.setdefault(reads.transport.config, [])
            if len(idle) >= self.IDLE_READS:
                return False
            idle.append(reads)
            return True

    def _close_reads(self) -> None:
        with self._cond:
            self._closed = True
            idle = [reads for clients in self._idle_reads.values() for reads in clients]
            self._idle_reads.clear()
        for reads in idle:
            reads.transport.abort()
            reads.transport.close()

    def call(self, token: CancelToken, fn: Callable[..., T], *args: object, wait_limit: Optional[float] = None,
             on_abandon: Optional[Callable[[T], object]] = None, phase: Optional[str] = None,
             **kwargs: object) -> T:
        """Run ``fn(*args, **kwargs)``; raise GolemCancelledError as soon as ``token`` is cancelled.

        A call still queued then is withdrawn and never runs. ``wait_limit`` bounds the wait as a
        last resort: GolemTimeoutError (a ``TimeoutError``) with ``phase`` (default: ``fn``'s name);
        the calls themselves carry HTTP timeouts. ``on_abandon(result)`` runs on the pool thread if
        the call succeeds after the caller gave up. ``wait_limit``, ``on_abandon`` and ``phase``
        are this method's own: they are never passed to ``fn``.
        """
        token.raise_if_cancelled()
        future: "Future[T]" = self._submit(lambda: fn(*args, **kwargs))
        with self._cond:
            self._in_flight += 1
        future.add_done_callback(self._ended)
        finished = threading.Event()
        future.add_done_callback(lambda _: finished.set())
        remove = token.on_cancel(finished.set)
        try:
            finished.wait(wait_limit)
        finally:
            remove()
        if future.done():
            if future.cancelled():  # withdrawn from the queue by shutdown()
                token.raise_if_cancelled()
                raise GolemCancelledError("the blocking-call pool was shut down")
            error = future.exception()
            if error is not None and token.cancelled:
                # Most likely the cancel aborted the call (abortable_reads): report the cancel.
                raise GolemCancelledError(token.reason or "cancelled") from error
            return future.result()
        if not future.cancel() and on_abandon is not None:  # running: it may still create something
            self._track_cleanup(future, on_abandon)
        token.raise_if_cancelled()
        name = getattr(fn, "__name__", repr(fn))
        raise GolemTimeoutError(f"{name} did not return within {wait_limit}s",
                                phase=phase if phase is not None else name)

    def shutdown(self, wait: bool = True, *, cleanup_timeout: float = 60.0, grace: float = 0.25) -> bool:
        """Stop the pool: queued calls never run, ``abort`` ends read-only calls in flight.

        With ``wait`` it returns once every abandoned call that has an ``on_abandon`` cleanup has run
        it, or after ``cleanup_timeout`` seconds (a warning is logged). Other calls still running
        (abandoned read-only calls) get ``grace`` seconds to end (an aborted one ends at once), and
        so do the pool's threads; threads still running end on their own within their calls' HTTP
        timeouts. Returns False if cleanups were still running.
        """
        with self._cond:
            self._stopping = True
            queued = list(self._queue)
            self._queue.clear()
        for future, _ in queued:
            future.cancel()  # never runs; its caller sees it cancelled (its callbacks count it ended)
        self._close_reads()
        if self._abort is not None:
            try:
                self._abort()
            except Exception:
                logger.exception("aborting the blocking calls in flight failed")
        if not wait:
            return True
        with self._cond:
            done = self._cond.wait_for(lambda: self._cleanups == 0, timeout=cleanup_timeout)
            left = self._cleanups
            idle = self._cond.wait_for(lambda: self._in_flight == 0 and self._workers == 0,
                                       timeout=grace if done else 0.0)
            running = self._in_flight
        if not done:
            logger.warning("%d abandoned call(s) still cleaning up after %.0fs", left, cleanup_timeout)
        if not idle:
            logger.debug("not waiting for %d abandoned read-only call(s)", running)
        return done

    def _submit(self, fn: Callable[[], T]) -> "Future[T]":
        future: "Future[T]" = Future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the blocking-call pool was shut down")
            self._queue.append((future, fn))
            start = self._workers < self._max_workers
            if start:
                self._workers += 1
                self._started += 1
                name = f"golem-io_{self._started}"
        if start:
            threading.Thread(target=self._work, name=name, daemon=True).start()
        return future

    def _work(self) -> None:
        """Run queued calls until none is left, then end (no idle thread is kept)."""
        while True:
            with self._cond:
                if not self._queue:
                    self._workers -= 1
                    self._cond.notify_all()
                    return
                future, fn = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # withdrawn by its caller's cancel
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, as an executor would
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _ended(self, _: "Future[Any]") -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def _track_cleanup(self, future: "Future[T]", on_abandon: Callable[[T], object]) -> None:
        with self._cond:
            self._cleanups += 1

        def run(f: "Future[T]") -> None:
            try:
                _clean_up(f, on_abandon)
            finally:
                with self._cond:
                    self._cleanups -= 1
                    self._cond.notify_all()

        future.add_done_callback(run)


def _clean_up(future: "Future[T]", on_abandon: Callable[[T], object]) -> None:
    try:
        if future.exception() is not None:
            return  # nothing was created
    except CancelledError:
        return
    try:
        on_abandon(future.result())
    except Exception:
        logger.exception("cleanup of an abandoned call failed")


@contextlib.contextmanager
def abortable_reads(client: YagnaClient, token: CancelToken) -> Iterator[YagnaClient]:
    """A private abortable copy of ``client`` for read-only long polls, aborted when ``token`` is cancelled.

    Use it for calls that create nothing (event polls, approval waits, batch results) made through
    :meth:`AbandonableCalls.call`: a cancel then ends the abandoned HTTP request at once, so neither its
    pool thread nor ``close()`` waits it out. It is aborted and closed when the block ends; calls
    that create or end something must keep using ``client``. One connection per block.
    """
    reads = YagnaClient(transport=Transport(_reads_config(client.config), abortable=True))
    remove = token.on_cancel(reads.transport.abort)
    try:
        yield reads
    finally:
        remove()
        reads.transport.abort()  # ends a call abandoned for another reason (wait_limit)
        reads.transport.close()


def _reads_config(config: YagnaConfig) -> YagnaConfig:
    """A read client's config: ``config`` with two connections (one long poll and a spare)."""
    return attrs.evolve(config, pool_size=2)
