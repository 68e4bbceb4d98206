"""Job: one unit of work run by ``worker(ctx)`` on a provider, in the background.

A job is both a golem-js style Job (``state``, ``results``, ``error``, ``cancel()``,
``wait_for_result()``, lifecycle signals) and a ``concurrent.futures`` citizen: ``job.future`` is a
real :class:`~concurrent.futures.Future`, so ``concurrent.futures.wait`` and ``as_completed`` work
on jobs' futures, and ``job.result(timeout)`` / ``job.exception(timeout)`` delegate to it.

Threads: ``start_work``, ``cancel``, ``wait_for_result`` and the properties are safe from any thread
(state changes happen under one lock). The run itself owns one thread of the network's pool from
start to end; cleanup (activity destroyed, agreement ended) happens on that thread, before the
``job_ended`` signal and before the future completes.

Every path ends: whatever yagna answers and whatever user code does in a receiver or callback, a
started job reaches a terminal state and its future completes (cleanup steps are isolated and
never raise). Waits never wait for themselves: on one of golem_sync's own threads (a worker, a
signal receiver, a done-callback, a progress callback) ``cancel()`` only requests the cancellation,
and ``wait_for_result()``/``result()`` on the job being run raise :class:`GolemUserError`. A worker
may start another job and wait for it: a child still queued behind busy pool threads is then run
on a thread of its own, and the wait ends when the waiting job is cancelled or times out.
"""
from __future__ import annotations

import logging
import threading
import warnings
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, Callable, Generic, Optional, Tuple, TypeVar

from . import signals, _threads as threads
from ._cancel import CancelToken, Deadline
from .errors import GolemCancelledError, GolemTimeoutError, GolemUserError
from ._options import OptionLayer, RunOptions, merge_layers
from ._package import check_package
from ._progress import Progress
from ._run import execute
from ._runtime import JobRuntime
from ._state import FINAL, JobState
from ._work import ProviderInfo, WorkContext

__all__ = ["Job", "JobState"]

logger = logging.getLogger("golem_sync.job")

T = TypeVar("T")


class _Running(threading.local):
    """The job whose run the current pool thread is executing (None elsewhere)."""

    job: "Optional[Job[Any]]" = None


_running = _Running()


class _JobFuture(Future):  # type: ignore[type-arg]
    """``job.future``: a real Future whose blocking reads never wait for their own thread.

    ``result()``/``exception()`` called on the job's own thread (its worker, or a ``job_ended``
    receiver) answer from the job's final state, or raise :class:`GolemUserError` while it runs;
    called from another job's worker they also end when that job is cancelled.
    """

    def __init__(self, job: "Job[Any]") -> None:
        super().__init__()
        self._job = job

    def result(self, timeout: Optional[float] = None) -> Any:
        if not self.done():
            ended = self._wait(timeout)
            if ended is not None:
                if ended[1] is not None:
                    raise ended[1]
                return ended[0]
        return super().result(0)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if not self.done():
            ended = self._wait(timeout)
            if ended is not None:
                return ended[1]
        return super().exception(0)

    def _wait(self, timeout: Optional[float]) -> Optional[Tuple[Any, Optional[BaseException]]]:
        try:
            return self._job._before_blocking_read(timeout)
        except GolemTimeoutError as exc:  # the Future contract: concurrent.futures.TimeoutError
            raise FutureTimeoutError(str(exc)) from None


class Job(Generic[T]):
    """A unit of work; create it with :meth:`GolemNetwork.create_job`."""

    def __init__(self, runtime: JobRuntime, job_id: str, layer: OptionLayer) -> None:
        self.id = job_id
        self._runtime = runtime
        self._layer = layer
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # notified once the future is complete
        self._state = JobState.NEW
        self._token = CancelToken()
        self.future: "Future[T]" = _JobFuture(self)
        self.results: Optional[T] = None
        self.error: Optional[BaseException] = None
        self.provider: Optional[ProviderInfo] = None
        self.agreement_id: Optional[str] = None
        self.activity_id: Optional[str] = None
        self.progress: Optional[Progress] = None  # the latest ctx.report_progress(), every call
        self._started_emitted = False
        self._claimed = False  # a run (or a direct end) has taken the job: exactly one ever does
        self._timed_out = False
        self._runner: Optional[int] = None  # ident of the thread running this job
        self._announcer: Optional[int] = None  # ident of the thread emitting job_created
        self._task: "Optional[Future[None]]" = None  # the pool's task for this job
        self._moved = False  # taken out of the pool's queue to run on a thread of its own
        self._run_args: Optional[Tuple[Callable[[WorkContext], T], RunOptions]] = None

    def __repr__(self) -> str:
        return f"<Job {self.id} {self._state.value}>"

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> JobState:
        return self._state

    def is_running(self) -> bool:
        return self._state is JobState.PENDING

    # -- control -----------------------------------------------------------------------------

    def start_work(self, worker: Callable[[WorkContext], T], **options: Any) -> None:
        """Validate, then run ``worker(ctx)`` on a provider in the background; returns at once.

        ``options`` are sections (``package``, ``market``, ``agreement``, ``activity``, ``work``,
        ``job``) that override the job's and the network's, field by field.
        """
        if not callable(worker):
            raise TypeError(f"worker must be callable (a function taking a WorkContext), got {type(worker).__name__}")
        call_layer = OptionLayer.parse(options, where="start_work")
        self._runtime.check_layer(call_layer, "start_work")
        run_options = merge_layers(self._runtime.defaults, self._layer, call_layer)
        check_package(run_options.package)
        with self._lock:
            if self._state is JobState.PENDING:
                raise GolemUserError(f"job {self.id} is already running")
            if self._state is not JobState.NEW:
                raise GolemUserError(f"job {self.id} has already ended ({self._state}); create a new job")
            # The open check and the state change are one step for close(): it either refuses this
            # job here or sees it pending and cancels it.
            self._runtime.admit(self._become_pending)
            self._run_args = (worker, run_options)
        self._persist()
        self._announcer = threading.get_ident()  # receivers of job_created run here: "own thread"
        try:
            signals.emit(signals.job_created, self)
        finally:
            self._announcer = None
        if self._token.cancelled:  # a job_created receiver (or close()) cancelled it: nothing to run
            self._end_unstarted()
            return
        try:
            self._task = self._runtime.submit(self._run)
        except RuntimeError as exc:  # the pool shut down meanwhile: close() is ending the network
            self._end_unstarted()
            raise GolemUserError("this GolemNetwork is closed; create a new one") from exc

    def _become_pending(self) -> None:
        self._state = JobState.PENDING
        self.future.set_running_or_notify_cancel()

    def cancel(self, timeout: Optional[float] = None) -> None:
        """Cancel the job and return once it has ended and cleaned up.

        On one of golem_sync's own threads (a worker, a signal receiver, a done-callback, a
        transfer progress callback) it only requests the cancellation and returns at once. A job
        still queued behind busy pool threads ends at once, on the calling thread.

        Raises :class:`GolemUserError` if the job is not running, and
        :class:`GolemTimeoutError` if cleanup does not finish within ``timeout`` seconds.
        """
        with self._lock:
            if self._state is not JobState.PENDING:
                raise GolemUserError(f"job {self.id} is not running (state: {self._state})")
        self.request_cancel("cancelled by the user")
        if self._on_own_thread() or threads.owned():
            return  # waiting here could wait for the very thread we run on
        self._wait_done(timeout, "cancel")

    def request_cancel(self, reason: str = "cancelled by the user") -> None:
        """Ask the job to stop and return at once (``cancel()`` also waits for the end).

        A job still queued behind busy pool threads ends here and now, on the calling thread.
        A job not running is left as it is.
        """
        self._token.cancel(reason)
        task = self._task
        if task is not None and task.cancel():
            self._end_unstarted()  # it was still queued: nothing was acquired

    def cancel_if_queued(self, reason: str) -> bool:
        """End the job as cancelled if no thread has taken it yet; True if it was ended so.

        (``Executor``-style cancel: a job already running is left running.)
        """
        with self._lock:
            task = self._task
            if task is None or self._moved or not task.cancel():
                return False
        self._token.cancel(reason)
        self._end_unstarted()
        return True

    def wait_for_result(self, timeout: Optional[float] = None) -> T:
        """Block until the job ends; return its result or raise its error.

        Raises :class:`GolemUserError` for a job never started or when called where the wait could
        never end (the job's own worker or receivers, or a golem_sync thread other than a job's),
        and :class:`GolemTimeoutError` (phase ``"wait"``) when ``timeout`` runs out first.
        """
        if self._state is JobState.NEW:
            raise GolemUserError(f"job {self.id} was never started: call start_work() first")
        ended = self._before_blocking_read(timeout)
        if ended is not None:
            if ended[1] is not None:
                raise ended[1]
            return ended[0]  # type: ignore[no-any-return]
        return self.future.result(0)

    def get_cost(self) -> float:
        """Estimated cost so far: linear pricing × usage of every activity of this job.

        While the job runs this reads the activity's usage from yagna (a REST call), hence a method.
        """
        return self._runtime.costs.job_cost(self.id)

    @property
    def cost(self) -> float:
        """Deprecated: use :meth:`get_cost` (this property makes a REST call while the job runs)."""
        warnings.warn("Job.cost is deprecated; use Job.get_cost() (it reads usage from yagna)",
                      DeprecationWarning, stacklevel=2)
        return self.get_cost()

    # -- Future side -------------------------------------------------------------------------

    def result(self, timeout: Optional[float] = None) -> T:
        """``job.future.result(timeout)``: the result, the job's error, or ``TimeoutError``."""
        return self.future.result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        return self.future.exception(timeout)

    def done(self) -> bool:
        return self.future.done()

    def add_done_callback(self, fn: Callable[["Job[T]"], Any]) -> None:
        """Call ``fn(job)`` when the job has ended (at once if it has)."""
        self.future.add_done_callback(lambda _future: fn(self))

    # -- waiting -----------------------------------------------------------------------------

    def _on_own_thread(self) -> bool:
        ident = threading.get_ident()
        return self._runner == ident or self._announcer == ident

    def _before_blocking_read(self, timeout: Optional[float]) -> Optional[Tuple[Any, Optional[BaseException]]]:
        """Make a blocking read of the outcome safe; wait for the end unless it is on its own thread.

        Returns ``(result, error)`` when the caller is the job's own thread after the job ended
        (a ``job_ended`` receiver: the future completes right after). Otherwise waits (interruptibly
        when called from another job's worker) and returns None; raises GolemUserError where the
        wait could never end and GolemTimeoutError when ``timeout`` runs out.
        """
        if self.future.done():
            return None
        if self._on_own_thread():
            with self._lock:
                if self._state in FINAL:
                    return self.results, self.error
            raise GolemUserError(f"waiting for job {self.id} from its own worker or signal receiver would wait "
                                 "forever; return from the worker instead")
        waiter = _running.job
        if waiter is None and threads.owned():
            raise GolemUserError(f"waiting for job {self.id} on golem_sync's thread {threads.name()!r} (a signal "
                                 "receiver or callback) would block it; wait from your own thread")
        if waiter is not None:
            self._run_elsewhere()  # a child must not need the pool thread its parent holds
        self._wait_done(timeout, "wait", token=waiter._token if waiter is not None else None)
        return None

    def _wait_done(self, timeout: Optional[float], what: str, token: Optional[CancelToken] = None) -> None:
        """Wait until the future is complete (no callback is left behind); ``token`` interrupts it."""
        deadline = Deadline(timeout)
        remove = token.on_cancel(self._wake) if token is not None else None
        try:
            with self._ended:
                while not self.future.done():
                    if token is not None:
                        token.raise_if_cancelled()
                    left = deadline.remaining()
                    if left == 0.0:
                        raise GolemTimeoutError(f"job {self.id} did not end within {timeout:g}s ({what})", phase=what)
                    self._ended.wait(left)
        finally:
            if remove is not None:
                remove()

    def _wake(self) -> None:
        with self._ended:
            self._ended.notify_all()

    # -- the run (pool thread) ---------------------------------------------------------------

    def _run_elsewhere(self) -> None:
        """Still queued: take the task back from the pool and run it on a thread of its own."""
        with self._lock:
            task = self._task
            moved = task is not None and not self._moved and task.cancel()
            self._moved = self._moved or moved
        if moved:
            self._runtime.spawn(self._run)

    def _claim(self) -> bool:
        """Take the job for a run or a direct end; exactly one caller ever gets True."""
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def _run(self) -> None:
        if not self._claim():
            return  # ended while queued, or already run on a thread of its own
        assert self._run_args is not None
        worker, options = self._run_args
        self._runner = threading.get_ident()
        _running.job = self
        timer = None
        try:
            if options.job.timeout_sec is not None:
                timer = threading.Timer(options.job.timeout_sec, self._on_timeout, args=(options.job.timeout_sec,))
                timer.name = f"{threads.PREFIX}job-timer"
                timer.daemon = True
                timer.start()
            try:
                state, result, error = execute(self, worker, options, self._runtime.providers, self._runtime.costs)
            except BaseException as unexpected:  # a bug in golem_sync itself: never leave the job pending
                logger.exception("job %s: internal error", self.id)
                state, result, error = JobState.REJECTED, None, unexpected
            if timer is not None:
                timer.cancel()
            self._finish(state, result, error)
        finally:
            if timer is not None:
                timer.cancel()
            self._runner = None
            _running.job = None

    def _on_timeout(self, seconds: float) -> None:
        self._timed_out = True
        self._token.cancel(f"job timeout of {seconds:g}s")

    # -- for the run (golem_sync._run), like Future's methods "for Executor implementations" --

    @property
    def cancel_token(self) -> CancelToken:
        """The job's cancellation token; the run's waits observe it (and children of it)."""
        return self._token

    @property
    def timed_out(self) -> bool:
        """True once ``job.timeout_sec`` ran out (the token's cancel then means a timeout)."""
        return self._timed_out

    def mark_started(self, agreement_id: str, provider: ProviderInfo) -> None:
        """A provider is signed: record it and send ``job_started`` (once per job)."""
        self.provider = provider
        self.agreement_id = agreement_id
        if not self._started_emitted:
            self._started_emitted = True
            signals.emit(signals.job_started, self, agreement_id=agreement_id, provider=provider)

    def report_progress(self, fraction: Optional[float] = None, message: Optional[str] = None,
                        **data: Any) -> Optional[Progress]:
        """What ``ctx.report_progress`` does: validate, set ``job.progress``, send ``job_progress``.

        Every call updates ``job.progress`` and sends the signal; the job store (through the
        signal) writes at most one value every 0.2 s per job, the latest always. Returns the
        Progress; a report after the job ended is validated, then dropped (None): the progress
        recorded with the end stays the job's last.
        """
        with self._lock:
            seq = self.progress.seq + 1 if self.progress is not None else 1
            progress = Progress.create(fraction, message, data, seq=seq)
            if self._state in FINAL:
                logger.debug("job %s: progress reported after the end ignored", self.id)
                return None
            self.progress = progress
        signals.emit(signals.job_progress, self, progress=progress)
        return progress

    def mark_activity(self, activity_id: str) -> None:
        """The run works on this activity now."""
        self.activity_id = activity_id

    def _end_unstarted(self) -> None:
        """End a job that never ran (cancelled while queued, or before it was submitted)."""
        if not self._claim():
            return
        error = GolemCancelledError(self._token.reason or "cancelled")
        signals.emit(signals.job_cancelled, self, reason=self._token.reason)
        self._finish(JobState.CANCELLED, None, error)

    def _finish(self, state: JobState, result: Optional[T], error: Optional[BaseException]) -> None:
        """Record the end, tell the store and the receivers, complete the future. Never raises."""
        with self._lock:
            self._state = state
            self.results = result
            self.error = error
        try:
            self._runtime.job_finished(self)
        except Exception:
            logger.exception("job %s: recording its end failed", self.id)
        previous, self._runner = self._runner, threading.get_ident()  # job_ended receivers: "own thread"
        try:
            signals.emit(signals.job_ended, self)
        finally:
            self._runner = previous
        if error is None:
            self.future.set_result(result)  # type: ignore[arg-type]
        else:
            self.future.set_exception(error)
        self._wake()

    def _persist(self) -> None:
        """Record a state change in the network's job store (a no-op without one)."""
        self._runtime.persist(self)
