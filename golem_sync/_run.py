"""The run of a job: attempts on providers, retries, and what an error stands for.

:func:`execute` is called by :meth:`Job._run <golem_sync._job.Job>` on the job's thread with the
runtime's :class:`~golem_sync._runtime.ProviderSource`. Each :class:`Attempt` rents one provider,
runs the worker in a :class:`~golem_sync._work.WorkContext` and gives everything back in
:meth:`Attempt.cleanup`, which never raises. A provider failure (activity or agreement lost) is
retried on another provider up to ``job.max_retries``; the worker's own errors never are.
"""
from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Set, Tuple

from . import signals
from ._cancel import CancelToken, Deadline
from .errors import GolemActivityError, GolemAgreementError, GolemCancelledError, GolemTimeoutError, has_transient_cause
from ._options import RunOptions
from ._runtime import ProviderSource, Rental, RunHandle, isolated
from ._state import JobState
from ._work import WorkContext

if TYPE_CHECKING:
    from ._activity import Activity
    from ._work.costs import CostLedger

__all__ = ["Attempt", "execute", "Outcome"]

logger = logging.getLogger("golem_sync.job")

#: How a run ended: the state, the result (for ``done``) and the error (otherwise).
Outcome = Tuple[JobState, Any, Optional[BaseException]]


class Attempt:
    """One try on one provider; owns the rental and the work context until ``cleanup``."""

    def __init__(self, job: RunHandle, options: RunOptions, source: ProviderSource, ledger: "CostLedger") -> None:
        self.job = job
        self.options = options
        self.source = source
        self.ledger = ledger
        self.token: CancelToken = job.cancel_token.child()
        self.rental = Rental(self.token)
        self.ctx: Optional[WorkContext] = None
        self._context = contextlib.ExitStack()  # holds the entered work context until cleanup

    def run(self, worker: Callable[[WorkContext], Any], startup: Deadline, excluded: Set[str]) -> Any:
        rental = self.rental
        self.source.acquire(rental, self.job, self.options, startup, excluded, on_signed=self.job.mark_started)
        assert rental.activity is not None and rental.provider is not None
        self.job.mark_activity(rental.activity.activity_id)
        self.ctx = WorkContext(rental.activity, rental.provider, self.token, self.options.work, job=self.job,
                               vpn=self.options.vpn, requestor_id=rental.requestor_id, proposal=rental.proposal,
                               ledger=self.ledger,  # costs bookkeeping, opt-in VPN
                               prepared=rental.warm, keep=rental.warm, activity_setup=rental.activity_setup,
                               on_activity=self._replaced)
        # Entering deploys and runs work.setup; leaving (in cleanup, after the job_succeeded/failed/
        # cancelled signal, as documented) runs work.teardown (not once cancelled), closes streams,
        # reads the final usage, destroys its (possibly replaced) activity and removes the VPN.
        self._context.enter_context(self.ctx)
        return worker(self.ctx)

    def _replaced(self, activity: Activity) -> None:
        """The work context replaced a retired activity (after a command timeout)."""
        self.rental.activity = activity
        self.job.mark_activity(activity.activity_id)

    @property
    def provider_id(self) -> Optional[str]:
        return self.rental.provider_id

    def raise_if_over_budget(self) -> None:
        """The job's cost cap stopped it while the worker ran: fail even if the worker returned."""
        lease = self.rental.lease
        if lease is not None and lease.budget_error is not None:
            raise lease.budget_error

    def cleanup(self, success: bool) -> None:
        """Close the work context, give the provider back. Never raises, never creates anything."""
        isolated("closing the work context", self._context.close)
        reason = "Finished" if success else ("Cancelled" if self.job.cancel_token.cancelled else "Failed")
        isolated("releasing the provider", self.source.release, self.rental, success=success, reason=reason)


def execute(job: RunHandle, worker: Callable[[WorkContext], Any], options: RunOptions,
            source: ProviderSource, ledger: "CostLedger") -> Outcome:
    """Attempts until one succeeds, fails for good or is cancelled; each is cleaned up."""
    startup = Deadline(options.job.startup_timeout_sec)
    excluded: Set[str] = set()
    tries = 0
    while True:
        attempt = Attempt(job, options, source, ledger)
        try:
            result = attempt.run(worker, startup, excluded)
            attempt.raise_if_over_budget()
        except BaseException as raw:
            error = classify(job, raw, attempt, options)
            attempt.rental.provider_failed = _provider_failure(error)
            if _provider_failure(error) and tries < options.job.max_retries and not job.cancel_token.cancelled:
                tries += 1
                logger.info("job %s: provider failed (%s); retry %d of %d on another provider",
                            job.id, error, tries, options.job.max_retries)
                attempt.cleanup(success=False)
                if attempt.provider_id and not has_transient_cause(error):
                    excluded.add(attempt.provider_id)
                startup = Deadline(options.job.startup_timeout_sec)
                continue
            if isinstance(error, GolemCancelledError):
                signals.emit(signals.job_cancelled, job, reason=job.cancel_token.reason)
                attempt.cleanup(success=False)
                return JobState.CANCELLED, None, error
            signals.emit(signals.job_failed, job, error=error)
            attempt.cleanup(success=False)
            return JobState.REJECTED, None, error
        signals.emit(signals.job_succeeded, job, result=result)
        attempt.cleanup(success=True)
        return JobState.DONE, result, None


def classify(job: RunHandle, raw: BaseException, attempt: Attempt, options: RunOptions) -> BaseException:
    """Turn a cancelled wait into the error it stands for (user cancel, job timeout, provider gone).

    Once the job's cost cap stopped the attempt, whatever the worker saw of that (a cancelled
    wait, a lost activity, its own error) stands for the GolemBudgetError, unless the job itself
    was cancelled or timed out.
    """
    lease = attempt.rental.lease
    if lease is not None and lease.budget_error is not None and not job.cancel_token.cancelled:
        return lease.budget_error
    if not isinstance(raw, GolemCancelledError):
        return raw
    if job.cancel_token.cancelled:
        if job.timed_out:
            return GolemTimeoutError(f"job {job.id} did not finish within {options.job.timeout_sec:g}s", phase="job")
        return raw
    if lease is not None and lease.violation is not None:
        who = lease.provider_name or lease.provider_id
        return GolemAgreementError(f"provider {who} broke agreement {lease.agreement_id}: {lease.violation}")
    if lease is not None and lease.provider_reason is not None:
        who = lease.provider_name or lease.provider_id
        return GolemAgreementError(f"provider {who} terminated agreement {lease.agreement_id}: "
                                   f"{lease.provider_reason}")
    return raw


def _provider_failure(error: BaseException) -> bool:
    """Failures of the provider (retryable on another one), as opposed to the worker's own errors."""
    return isinstance(error, (GolemActivityError, GolemAgreementError)) and not isinstance(error, GolemTimeoutError)
