"""Job: one unit of work run by ``worker(ctx)`` on a provider, in the background.

A job is both a golem-js style Job (``state``, ``results``, ``error``, ``cancel()``,
``wait_for_result()``, lifecycle signals) and a ``concurrent.futures`` citizen: ``job.future`` is a
real :class:`~concurrent.futures.Future`, so ``concurrent.futures.wait`` and ``as_completed`` work
on jobs' futures, and ``job.result(timeout)`` / ``job.exception(timeout)`` delegate to it.

Threads: ``start_work``, ``cancel``, ``wait_for_result`` and the properties are safe from any thread
(state changes happen under one lock). The run itself owns one thread of the network's pool from
start to end; cleanup (activity destroyed, agreement ended) happens on that thread, before the
``job_ended`` signal and before the future completes.
"""
from __future__ import annotations

import enum
import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, Set, TypeVar

from . import signals
from .activity import Activity
from .agreement import AgreementLease, release
from .cancel import CancelToken, Deadline
from .errors import (GolemActivityError, GolemAgreementError, GolemCancelledError, GolemError,
                     GolemTimeoutError, GolemUserError)
from .market.negotiation import Negotiator
from .options import OptionLayer, RunOptions, merge_layers
from .package import check_package
from .work import ProviderInfo, WorkContext

if TYPE_CHECKING:
    from .network import GolemNetwork

__all__ = ["Job", "JobState"]

logger = logging.getLogger("golem_sync.job")

T = TypeVar("T")


class JobState(str, enum.Enum):
    """Where a job is. ``pending`` covers finding a provider and running the worker."""

    NEW = "new"
    PENDING = "pending"
    DONE = "done"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class _Attempt:
    """One try on one provider; owns the lease and the activity until ``cleanup``."""

    def __init__(self, job: "Job[Any]", options: RunOptions, token: CancelToken) -> None:
        self.job = job
        self.options = options
        self.token = token
        self.lease: Optional[AgreementLease] = None
        self.activity: Optional[Activity] = None
        self.ctx: Optional[WorkContext] = None

    def run(self, worker: Callable[[WorkContext], Any], startup: Deadline, excluded: Set[str]) -> Any:
        self.token.raise_if_cancelled()
        services = self.job._network._services()
        demand = services.demand_for(self.options)
        negotiator = Negotiator(services.client, services.blocking, demand, self.options.market,
                                self.options.agreement, services.app_session_id, self.job,
                                excluded_providers=excluded)
        signed = negotiator.agree(self.token, startup)
        self.lease = AgreementLease(signed.agreement_id, signed.proposal, self.token)
        services.watcher.watch(self.lease, self.job)
        services.payments.register(signed.agreement_id, self.job, on_violation=self.lease.broken,
                                   debit_note_interval=_debit_note_interval(signed.proposal, self.options))
        self.token.raise_if_cancelled()
        provider = ProviderInfo(signed.proposal.issuer_id, signed.proposal.provider_name,
                                signed.proposal.wallet(demand.platform))
        self.job.provider = provider
        self.job.agreement_id = signed.agreement_id
        self.job._emit_started(signed.agreement_id, provider)
        self.activity = Activity.create(services.client, services.blocking, signed.agreement_id,
                                        self.options.activity, self.job, self.token)
        self.job.activity_id = self.activity.activity_id
        self.ctx = WorkContext(self.activity, provider, self.token, self.options.work, job=self.job)
        self.ctx._attach(self.options, requestor_id=services.requestor_id, proposal=signed.proposal,
                         ledger=self.job._network.costs)  # costs bookkeeping, opt-in VPN
        self.ctx._prepare()
        return worker(self.ctx)

    @property
    def provider_id(self) -> Optional[str]:
        return self.lease.provider_id if self.lease else None

    def cleanup(self, success: bool) -> None:
        """Teardown, destroy the activity, end the agreement. Never raises."""
        services = self.job._network._services()
        if self.ctx is not None and self.activity is not None and not self.token.cancelled:
            self.ctx._teardown()
        if self.ctx is not None:
            self.ctx._close()  # streams closed, final usage read, its (possibly replaced) activity destroyed, VPN removed
        if self.activity is not None:
            self.activity.destroy()
        if self.lease is not None:
            self.lease.released = True
            message = ("Finished" if success else self.lease.violation
                       or ("Cancelled" if self.job._token.cancelled else "Failed"))
            release(services.client, self.lease.agreement_id, message, success=success)
            services.watcher.forget(self.lease.agreement_id)
            services.payments.agreement_ended(self.lease.agreement_id)


class Job(Generic[T]):
    """A unit of work; create it with :meth:`GolemNetwork.create_job`."""

    def __init__(self, network: "GolemNetwork", job_id: str, layer: OptionLayer) -> None:
        self.id = job_id
        self._network = network
        self._layer = layer
        self._lock = threading.Lock()
        self._state = JobState.NEW
        self._token = CancelToken()
        self.future: "Future[T]" = Future()
        self.results: Optional[T] = None
        self.error: Optional[BaseException] = None
        self.provider: Optional[ProviderInfo] = None
        self.agreement_id: Optional[str] = None
        self.activity_id: Optional[str] = None
        self._started_emitted = False
        self._runner: Optional[int] = None  # ident of the pool thread running this job

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
        run_options = merge_layers(self._network._layer, self._layer, OptionLayer.parse(options, where="start_work"))
        check_package(run_options.package)
        with self._lock:
            if self._state is JobState.PENDING:
                raise GolemUserError(f"job {self.id} is already running")
            if self._state is not JobState.NEW:
                raise GolemUserError(f"job {self.id} has already ended ({self._state}); create a new job")
            self._network._ensure_open()
            self._state = JobState.PENDING
            self.future.set_running_or_notify_cancel()
        self._persist()
        signals.emit(signals.job_created, self)
        try:
            self._network._submit(self._run, worker, run_options)
        except BaseException as exc:  # the pool is shut down: end the job rather than leave it pending
            self._finish(JobState.REJECTED, None, exc)
            raise

    def cancel(self, timeout: Optional[float] = None) -> None:
        """Cancel the job and return once it has ended and cleaned up.

        Called from the job's own thread (its worker or a signal receiver), it only requests the
        cancellation and returns at once.

        Raises :class:`GolemUserError` if the job is not running, and
        :class:`GolemTimeoutError` if cleanup does not finish within ``timeout`` seconds.
        """
        with self._lock:
            if self._state is not JobState.PENDING:
                raise GolemUserError(f"job {self.id} is not running (state: {self._state})")
        self._token.cancel("cancelled by the user")
        if self._on_own_thread():
            return  # called from the worker or a signal receiver: waiting here would wait for ourselves
        self._wait_done(timeout, "cancel")

    def wait_for_result(self, timeout: Optional[float] = None) -> T:
        """Block until the job ends; return its result or raise its error.

        Raises :class:`GolemUserError` for a job never started and :class:`GolemTimeoutError`
        (phase ``"wait"``) when ``timeout`` runs out first.
        """
        if self._state is JobState.NEW:
            raise GolemUserError(f"job {self.id} was never started: call start_work() first")
        if self._on_own_thread() and not self.future.done():
            raise GolemUserError(f"wait_for_result() on job {self.id} from its own worker or signal "
                                 "receiver would wait forever; return from the worker instead")
        self._wait_done(timeout, "wait")
        return self.future.result()

    @property
    def cost(self) -> float:
        """Estimated cost so far: linear pricing × usage of every activity of this job (a REST read while running)."""
        return self._network.costs.job_cost(self.id)

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

    # -- the run (pool thread) ---------------------------------------------------------------

    def _on_own_thread(self) -> bool:
        return self._runner == threading.get_ident()

    def _run(self, worker: Callable[[WorkContext], T], options: RunOptions) -> None:
        self._runner = threading.get_ident()
        timer = None
        if options.job.timeout_sec is not None:
            timer = threading.Timer(options.job.timeout_sec, self._token.cancel,
                                    args=(f"job timeout of {options.job.timeout_sec:g}s",))
            timer.daemon = True
            timer.start()
        startup = Deadline(options.job.startup_timeout_sec)
        excluded: Set[str] = set()
        tries = 0
        attempt: Optional[_Attempt] = None
        try:
            while True:
                attempt = _Attempt(self, options, self._token.child())
                try:
                    result = attempt.run(worker, startup, excluded)
                except BaseException as raw:
                    error = self._classify(raw, attempt, options)
                    if (_provider_failure(error) and tries < options.job.max_retries
                            and not self._token.cancelled):
                        tries += 1
                        logger.info("job %s: provider failed (%s); retry %d of %d on another provider",
                                    self.id, error, tries, options.job.max_retries)
                        attempt.cleanup(success=False)
                        if attempt.provider_id:
                            excluded.add(attempt.provider_id)
                        startup = Deadline(options.job.startup_timeout_sec)
                        continue
                    self._end_failed(error, attempt)
                    return
                self._end_succeeded(result, attempt)
                return
        except BaseException as unexpected:  # a bug in golem_sync itself: never leave the job pending
            logger.exception("job %s: internal error", self.id)
            if not self.future.done():
                if attempt is not None:
                    attempt.cleanup(success=False)
                self._finish(JobState.REJECTED, None, unexpected)
        finally:
            self._runner = None
            if timer is not None:
                timer.cancel()

    def _classify(self, raw: BaseException, attempt: _Attempt, options: RunOptions) -> BaseException:
        """Turn a cancelled wait into the error it stands for (user cancel, job timeout, provider gone)."""
        if not isinstance(raw, GolemCancelledError):
            return raw
        if self._token.cancelled:
            if self._token.reason.startswith("job timeout"):
                return GolemTimeoutError(f"job {self.id} did not finish within {options.job.timeout_sec:g}s",
                                         phase="job")
            return raw
        if attempt.lease is not None and attempt.lease.violation is not None:
            who = attempt.lease.provider_name or attempt.lease.provider_id
            return GolemAgreementError(f"provider {who} broke agreement {attempt.lease.agreement_id}: "
                                       f"{attempt.lease.violation}")
        if attempt.lease is not None and attempt.lease.provider_reason is not None:
            who = attempt.lease.provider_name or attempt.lease.provider_id
            return GolemAgreementError(f"provider {who} terminated agreement {attempt.lease.agreement_id}: "
                                       f"{attempt.lease.provider_reason}")
        return raw

    def _emit_started(self, agreement_id: str, provider: ProviderInfo) -> None:
        if not self._started_emitted:
            self._started_emitted = True
            signals.emit(signals.job_started, self, agreement_id=agreement_id, provider=provider)

    def _end_succeeded(self, result: T, attempt: _Attempt) -> None:
        signals.emit(signals.job_succeeded, self, result=result)
        attempt.cleanup(success=True)
        self._finish(JobState.DONE, result, None)

    def _end_failed(self, error: BaseException, attempt: _Attempt) -> None:
        if isinstance(error, GolemCancelledError):
            signals.emit(signals.job_cancelled, self, reason=self._token.reason)
            attempt.cleanup(success=False)
            self._finish(JobState.CANCELLED, None, error)
            return
        signals.emit(signals.job_failed, self, error=error)
        attempt.cleanup(success=False)
        self._finish(JobState.REJECTED, None, error)

    def _finish(self, state: JobState, result: Optional[T], error: Optional[BaseException]) -> None:
        with self._lock:
            self._state = state
            self.results = result
            self.error = error
        signals.emit(signals.job_ended, self)
        self._network._job_finished(self)
        if error is None:
            self.future.set_result(result)  # type: ignore[arg-type]
        else:
            self.future.set_exception(error)

    def _persist(self) -> None:
        """Record a state change in the network's job store (a no-op without one)."""
        self._network._persist_job(self)

    def _wait_done(self, timeout: Optional[float], what: str) -> None:
        done = threading.Event()
        self.future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise GolemTimeoutError(f"job {self.id} did not end within {timeout:g}s ({what})", phase=what)


def _debit_note_interval(proposal: Any, options: RunOptions) -> float:
    """The debit-note interval both sides agreed on: the provider's echo, else what we demanded."""
    value = proposal.properties.get("golem.com.scheme.payu.debit-note.interval-sec?")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return float(options.market.debit_note_interval_sec)


def _provider_failure(error: BaseException) -> bool:
    """Failures of the provider (retryable on another one), as opposed to the worker's own errors."""
    return isinstance(error, (GolemActivityError, GolemAgreementError)) and not isinstance(error, GolemTimeoutError)

