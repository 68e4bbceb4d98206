"""Hard cost caps per job (``job.max_cost``), and the network budget against the running jobs' caps.

A capped job gets a :class:`JobBudget` when it starts (:meth:`BudgetGuard.reserve`): the sum of
the caps of the jobs running at once may not exceed ``payment.budget`` (else the job fails at
once with :class:`~golem_sync.errors.GolemBudgetError`; it does not wait for a running job to
end). The payment processor asks the job's budget before it accepts one of its agreements'
documents:

- a debit note is accepted only if the job's total stays within the cap (also after a stop: a
  note the provider issued before it is still paid if it fits). Debit notes are
  cumulative per activity (``totalAmountDue`` of one activity so far), so the job's total is, per
  agreement, its invoice or else the sum over its activities of the highest note accepted (or
  being accepted: an amount counts from the moment it is promised, whatever the accept call does
  later, so the cap holds even while a call is retried);
- an invoice is accepted only if the job's total with it stays within the cap, and once the cap
  stopped the job, only if it asks no more than the agreement's notes accepted before.

What crosses the cap *stops* the job: a debit note that would take it over, or the running
estimate (the agreed linear prices × the usage yagna reports, from the network's
:class:`~golem_sync._work.costs.CostLedger`) going over it between notes. The estimate is checked
when a job reads its usage (``ctx.get_usage()``/``get_cost()``, the final usage of an activity)
and every :data:`ESTIMATE_CHECK_SEC` seconds by the guard's watch thread (one usage GET per live
activity of a capped job; no thread without a capped job). Stopping calls the agreement's
``on_over`` hook (the job's lease: it records the error and cancels the attempt, so the job fails
with it) and terminates the agreement at once with a reason naming the cap, on a short-lived
thread: a worker busy in its own code does not keep the provider billing. A failed or slow
terminate only delays that; the job's cleanup ends the agreement again, and the notes the
provider sends meanwhile are refused as soon as they go over the cap.

Threads: ``reserve``/``job_finished`` run on job threads, the document checks on the payment
processor's threads, the estimate checks on the watch thread (``golem-budget-watch``) and on
whichever thread reads usage; terminations run on ``golem-budget-stop`` threads. One lock guards
the tables; it is never held while a hook, a REST call or a termination runs.
"""
from __future__ import annotations

import logging
import threading
from decimal import Decimal
from typing import Callable, Dict, List, Optional, Tuple

import attrs

from ..errors import GolemBudgetError
from .stopper import AgreementStopper, Terminate

__all__ = ["BudgetGuard", "JobBudget", "ESTIMATE_CHECK_SEC"]

logger = logging.getLogger("golem_sync.payment.budget")

#: Seconds between two checks of a capped job's running estimate (one usage GET per live activity).
ESTIMATE_CHECK_SEC = 2.0
#: How long :meth:`BudgetGuard.close` waits for terminations still running.
STOP_JOIN_SEC = 10.0

#: The agreement's holder hears that the cap stopped it; True if it still held the agreement
#: (then it is terminated), False if it had already let it go.
OverBudget = Callable[[GolemBudgetError], bool]


def _decimal(value: float) -> Decimal:
    return Decimal(repr(float(value)))


@attrs.define(eq=False)
class _Agreement:
    """What one agreement of a capped job has committed to (accepted, or being accepted)."""

    on_over: Optional[OverBudget]
    notes: Dict[str, Decimal] = attrs.Factory(dict)  # activity id -> highest note amount promised
    invoice: Optional[Decimal] = None  # the invoice amount promised
    ended: bool = False

    @property
    def notes_total(self) -> Decimal:
        return sum(self.notes.values(), Decimal(0))

    @property
    def committed(self) -> Decimal:
        return self.invoice if self.invoice is not None else self.notes_total


class JobBudget:
    """One job's cap, what its agreements committed to, and whether the cap stopped it.

    Made by :meth:`BudgetGuard.reserve`; the payment processor calls :meth:`debit_note` and
    :meth:`invoice` for the documents of the job's agreements (any thread).
    """

    def __init__(self, guard: "BudgetGuard", job_id: str, max_cost: float) -> None:
        self.job_id = job_id
        self.max_cost = float(max_cost)
        self.cap = _decimal(max_cost)
        self._guard = guard
        self._agreements: Dict[str, _Agreement] = {}
        #: Set once the cap stopped the job (guarded by the guard's lock; read freely).
        self.error: Optional[GolemBudgetError] = None
        self.running = True  # the job has not ended (its cap counts against the network budget)

    def __repr__(self) -> str:
        return f"<JobBudget {self.job_id} max_cost={self.max_cost:g} committed={self.committed()}>"

    # -- bookkeeping -------------------------------------------------------------------------

    def add_agreement(self, agreement_id: str, on_over: Optional[OverBudget] = None) -> None:
        """The job signed ``agreement_id``; ``on_over`` is told if the cap stops it (see module doc).

        If the cap stopped the job already (a retry signed meanwhile), the agreement is stopped at once.
        """
        with self._guard._lock:
            self._agreements.setdefault(agreement_id, _Agreement(on_over))
            error = self.error
        if error is not None:
            self._guard._stop(self, [(agreement_id, on_over)], error)

    def agreement_ended(self, agreement_id: str) -> None:
        """The job let the agreement go (it no longer needs stopping; its documents still count)."""
        with self._guard._lock:
            entry = self._agreements.get(agreement_id)
            if entry is not None:
                entry.ended = True

    def committed(self) -> Decimal:
        """What the job's agreements committed to so far (accepted or being accepted)."""
        with self._guard._lock:
            return self._committed_locked()

    def _committed_locked(self, agreement_id: Optional[str] = None, instead: Optional[Decimal] = None) -> Decimal:
        """The job's total; with ``agreement_id``, that agreement's part replaced by ``instead``."""
        total = Decimal(0)
        for aid, entry in self._agreements.items():
            total += instead if aid == agreement_id and instead is not None else entry.committed
        return total

    # -- the payment processor's questions ---------------------------------------------------

    def debit_note(self, agreement_id: str, activity_id: str, amount: Decimal, note_id: str) -> Optional[str]:
        """Why the note must not be accepted (the job is then stopped), or None: accept it (promised).

        The rule is the same after a stop: a note issued before it and within the cap is still paid.
        """
        with self._guard._lock:
            entry = self._agreements.setdefault(agreement_id, _Agreement(None))
            notes = dict(entry.notes)
            notes[activity_id] = max(notes.get(activity_id, Decimal(0)), amount)
            total = self._committed_locked(agreement_id, sum(notes.values(), Decimal(0)))
            if total <= self.cap:
                entry.notes = notes
                return None
        reason = (f"job {self.job_id} would be billed {total} (debit note {note_id} asks {amount} for activity "
                  f"{activity_id}), over its max_cost {self.max_cost:g}")
        self._guard._trip(self, total, reason, "the note was not accepted and the agreement terminated")
        return reason

    def invoice(self, agreement_id: str, amount: Decimal, invoice_id: str) -> Optional[str]:
        """Why the invoice must not be accepted, or None: accept it (promised)."""
        with self._guard._lock:
            entry = self._agreements.setdefault(agreement_id, _Agreement(None))
            before = entry.notes_total
            stopped = self.error is not None
            total = self._committed_locked(agreement_id, amount)
            if (amount <= before) if stopped else (total <= self.cap):
                entry.invoice = amount
                return None
        if stopped:
            return (f"invoice {invoice_id} asks {amount}, more than the {before} accepted on debit notes before "
                    f"job {self.job_id}'s max_cost {self.max_cost:g} stopped it")
        return (f"invoice {invoice_id} asks {amount}: job {self.job_id} would be billed {total}, over its "
                f"max_cost {self.max_cost:g}")

    def accepted_instead(self, agreement_id: str) -> Decimal:
        """What the job stands by on this agreement (its notes promised), for a rejection's total."""
        with self._guard._lock:
            entry = self._agreements.get(agreement_id)
            return entry.notes_total if entry is not None else Decimal(0)

    def check_estimate(self, estimate: float) -> bool:
        """Stop the job if ``estimate`` (or what it committed) is over the cap; True if it was stopped now."""
        with self._guard._lock:
            if self.error is not None:
                return False
            billed = max(_decimal(estimate), self._committed_locked())
        if billed <= self.cap:
            return False
        return self._guard._trip(self, billed, f"job {self.job_id}'s estimated cost {billed:.6f} (agreed prices "
                                               f"× reported usage) is over its max_cost {self.max_cost:g}",
                                 "the agreement was terminated")


class BudgetGuard:
    """The caps of one network's jobs: reservations against ``budget``, stops, the estimate watch.

    Args:
        budget: the network's ``payment.budget``.
        terminate: ends an agreement with a reason (it must not raise; it may take a few seconds).
        estimate: ``estimate(job_id, refresh)`` gives a job's running estimate (``refresh``: read live
            usage first, a REST call per live activity); ``None`` turns the estimate checks off.
        check_sec: seconds between the watch thread's estimate checks.
    """

    def __init__(self, budget: float, terminate: Terminate, *,
                 estimate: Optional[Callable[[str, bool], float]] = None,
                 check_sec: Optional[float] = None) -> None:
        self._budget = _decimal(budget)
        self._stopper = AgreementStopper(terminate, thread_name="golem-budget-stop", why="at its cost cap")
        self._estimate = estimate
        self._check_sec = ESTIMATE_CHECK_SEC if check_sec is None else check_sec
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._running: Dict[str, JobBudget] = {}  # job id -> budget, while the job runs
        self._watcher: Optional[threading.Thread] = None
        self._closed = False

    # -- jobs (job threads) ------------------------------------------------------------------

    def reserve(self, job_id: str, max_cost: float) -> JobBudget:
        """The budget of a starting job (the same one for each of its attempts).

        Raises GolemBudgetError when its cap with the caps of the running jobs exceeds the budget.
        """
        with self._lock:
            existing = self._running.get(job_id)
            if existing is not None:
                return existing
            cap = _decimal(max_cost)
            others = sum((b.cap for b in self._running.values()), Decimal(0))
            total = others + cap
            if total > self._budget:
                count = len(self._running)
                with_others = (f" with the caps of the {count} running job(s) with a max_cost ({others}) is {total},"
                               if count else " is")
                raise GolemBudgetError(
                    f"job {job_id} cannot start: its max_cost {max_cost:g}{with_others} over payment.budget "
                    f"{self._budget}; raise payment.budget, lower job.max_cost"
                    f"{', or start it when a running job has ended' if count else ''}",
                    max_cost=float(max_cost), amount=total)
            budget = JobBudget(self, job_id, max_cost)
            self._running[job_id] = budget
            if self._estimate is not None and self._watcher is None and not self._closed:
                self._watcher = threading.Thread(target=self._watch, name="golem-budget-watch", daemon=True)
                self._watcher.start()
            return budget

    def job_finished(self, job_id: str) -> None:
        """The job has ended: its cap no longer counts against the budget (its documents still do)."""
        with self._lock:
            budget = self._running.pop(job_id, None)
            if budget is not None:
                budget.running = False

    def reserved(self) -> Decimal:
        """The sum of the caps of the running jobs."""
        with self._lock:
            return sum((b.cap for b in self._running.values()), Decimal(0))

    def usage_recorded(self, job_id: str) -> None:
        """A job's usage was just read: check its estimate (no REST call)."""
        estimate = self._estimate
        with self._lock:
            budget = self._running.get(job_id)
        if budget is None or estimate is None or budget.error is not None:
            return
        try:
            budget.check_estimate(estimate(job_id, False))
        except Exception:
            logger.exception("checking the estimate of job %s failed", job_id)

    def close(self, timeout: float = STOP_JOIN_SEC) -> None:
        """Stop the watch thread and wait (bounded) for terminations still running. Idempotent."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            watcher = [] if self._watcher is None else [self._watcher]
        self._stopper.join(timeout, also=watcher)

    # -- stopping ----------------------------------------------------------------------------

    def _trip(self, budget: JobBudget, amount: Decimal, reason: str, consequence: str) -> bool:
        """The cap stops the job (once): tell every live agreement's holder and terminate it."""
        with self._lock:
            if budget.error is not None:
                return False
            error = GolemBudgetError(f"{reason}: {consequence}", max_cost=budget.max_cost, amount=amount)
            budget.error = error
            targets = [(aid, entry.on_over) for aid, entry in budget._agreements.items() if not entry.ended]
            running = budget.running
        logger.warning("%s; stopping the job%s", reason, "" if running else " (it has already ended)")
        self._stop(budget, targets, error)
        return True

    def _stop(self, budget: JobBudget, targets: List[Tuple[str, Optional[OverBudget]]],
              error: GolemBudgetError) -> None:
        message = f"Requestor's cost cap reached: job.max_cost {budget.max_cost:g}, billed {error.amount}"
        for agreement_id, on_over in targets:
            live = True
            if on_over is not None:
                try:
                    live = on_over(error)
                except Exception:
                    logger.exception("telling agreement %s's holder about its cap failed", agreement_id)
            if live:
                self._stopper.stop(agreement_id, message)

    # -- the watch thread --------------------------------------------------------------------

    def _watch(self) -> None:
        """Check every running capped job's estimate every ``check_sec``; end when none is left."""
        estimate = self._estimate
        assert estimate is not None
        me = threading.current_thread()
        while True:
            with self._lock:
                if not self._closed and self._running:
                    self._wake.wait(self._check_sec)
                if self._closed or not self._running:
                    if self._watcher is me:
                        self._watcher = None
                    return
                budgets = [b for b in self._running.values() if b.error is None]
            for budget in budgets:  # REST calls (usage reads), outside the lock
                try:
                    budget.check_estimate(estimate(budget.job_id, True))
                except Exception:
                    logger.exception("checking the estimate of job %s failed", budget.job_id)
