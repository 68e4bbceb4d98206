"""How a GolemNetwork uses its job store: record its jobs, hear cancel requests, recover orphans.

This is the glue above :mod:`golem_sync.store` (which only persists, and imports neither the job
layer nor the yagna client).

- Records: a job's row is created with the job; its state, agreement, activity and allocation are
  written as they change (agreement and activity ids as soon as yagna returns them, through the
  ``agreement_created``/``activity_created`` signals, so a crash right after never loses them), and
  its end state, error text and serialized result when it ends (after cleanup).
- Progress: each ``job_progress`` goes to ``store.set_progress`` (rate-limited there); the final
  progress is written with the job's end.
- Cost: a job's estimated and accepted cost (:class:`~golem_sync.store.JobCost`) is written with
  its end, and again each time a debit note or invoice of one of its agreements is accepted
  afterwards (the invoice usually comes after the end): the ``debit_note_accepted`` /
  ``invoice_accepted`` receivers run on the payment thread and only hand the new value to
  ``store.set_cost`` (rate-limited, written by the store's cost thread). A pool job's accepted
  amount is its share of the pool agreement's, in proportion of its estimate to the agreement's.
- Cancel from another process: a store notification for a job this network runs, whose record
  carries a ``cancel_reason``, cancels the job's token (on the store's listener thread: prompt).
- Recovery (at ``init``): jobs of processes that are gone are rejected and what they held in
  yagna freed, and the providers' final invoices paid (:mod:`golem_sync._recovery`).

Threads: signal receivers run on job threads, the cancel listener on the store's listener thread;
everything here is a short store write or read.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Protocol, Set, Tuple, Union

from . import signals
from .errors import GolemError
from ._job import Job, JobState
from ._recovery import POLL_SEC, RecoveredPayments, recover
from .store.base import JobCost, JobStore, describe_error
from .store.handle import StoredJob

if TYPE_CHECKING:
    from ._options import PaymentOptions
    from ._work.costs import CostLedger
    from .yagna.client import YagnaClient

__all__ = ["StoreBinding", "StoreSpec"]

logger = logging.getLogger("golem_sync.store")

StoreSpec = Union[JobStore, str, "os.PathLike[str]", None]


class StoreHost(Protocol):
    """What the binding reads of the network it serves."""

    @property
    def allocation_id(self) -> Optional[str]: ...

    def jobs(self, state: Optional[JobState] = None) -> List[Job[Any]]: ...

    @property
    def costs(self) -> "CostLedger": ...

    def _services_if_created(self) -> Any: ...


#: How many finished jobs keep their cost parts here until their agreements are invoiced.
COST_JOBS_KEPT = 10_000


class StoreBinding:
    """One network's use of one store; ``owns_store`` when the network opened it from a path."""

    def __init__(self, network: StoreHost, spec: StoreSpec) -> None:
        self.network = network
        self._payment_wait = 0.0
        if isinstance(spec, JobStore):
            self.store, self.owns_store = spec, False
        elif isinstance(spec, (str, os.PathLike)):
            from .store import open_store

            self.store, self.owns_store = open_store(spec), True
        else:
            raise TypeError(f"job_store must be a JobStore, a SQLite file path or a postgresql:// URL, "
                            f"got {type(spec).__name__}")
        self._receivers: List[Any] = []
        self._remove_listener: Optional[Callable[[], None]] = None
        self.settler: Optional[RecoveredPayments] = None
        self._currency: Optional[str] = None
        self._cost_lock = threading.Lock()
        # Finished jobs whose agreements may still see payments: job id -> {agreement id: (the
        # job's estimate on it, the agreement's estimate at the job's end)}, oldest first; and
        # agreement id -> those jobs. Entries go when the agreement's invoice is accepted.
        self._cost_parts: "OrderedDict[str, Dict[str, Tuple[float, float]]]" = OrderedDict()
        self._cost_jobs: Dict[str, Set[str]] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, client: "YagnaClient", payment: "PaymentOptions", requestor_id: Optional[str]) -> List[str]:
        """Connect the hooks, recover orphaned jobs, evict old ones; returns the recovered job ids."""
        for signal, handler in ((signals.agreement_created, self._on_agreement),
                                (signals.activity_created, self._on_activity),
                                (signals.job_progress, self._on_progress),
                                (signals.debit_note_accepted, self._on_accepted),
                                (signals.invoice_accepted, self._on_accepted)):
            signal.connect(handler, weak=False)
            self._receivers.append((signal, handler))
        self._remove_listener = self.store.add_listener(self._on_store_change)
        self._payment_wait = payment.invoice_wait_sec
        self._currency = _currency(payment)
        recovered, self.settler = recover(self.store, client, payment, requestor_id)
        self.store.evict(force=True)
        return recovered

    def close(self) -> None:
        # Jobs created but never started end with the network; left "new" they would never be
        # evicted (only finished jobs are) while this process lives.
        for job in self.network.jobs(JobState.NEW):
            try:
                self.store.update(job.id, expect_states=("new",), state="cancelled", error_type="GolemCancelledError",
                                  error="the network was closed before the job was started")
            except GolemError as exc:
                logger.warning("job %s: could not write to the job store: %s", job.id, exc)
        if self.settler is not None:  # give recovered agreements' invoices their time, as close() does
            self.settler.wait(self._payment_wait + POLL_SEC)
            self.settler.stop()
        for signal, handler in self._receivers:
            signal.disconnect(handler)
        self._receivers.clear()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self.owns_store:
            self.store.close()

    # -- records ----------------------------------------------------------------------------

    def job_created(self, job: Job[Any]) -> None:
        self.store.create(job.id, state=job.state.value)

    def persist(self, job: Job[Any]) -> None:
        """Write the job's live state (never raises: a store failure must not break the run)."""
        self._write(job, state=job.state.value, **_known(job))

    def job_finished(self, job: Job[Any]) -> None:
        fields: Dict[str, Any] = dict(state=job.state.value, **_known(job))
        if job.progress is not None:  # the final progress goes with the end: never left behind a trailing write
            fields["progress"] = job.progress.to_json()
        cost = self._track_cost(job.id)
        if cost is not None:
            fields["cost"] = cost.to_json()
        if job.error is not None:
            fields["error_type"], fields["error"] = describe_error(job.error)
        else:
            try:
                fields["result"] = self.store.serializer.dumps(job.results)
            except Exception as exc:  # any serializer's refusal: the job itself succeeded
                fields["result_error"] = (f"a result of type {type(job.results).__name__} cannot be serialized "
                                          f"({exc}); return JSON-serialisable data or give the store a serializer")
                logger.warning("job %s: %s", job.id, fields["result_error"])
        self._write(job, **fields)
        if cost is not None:
            # A note accepted between the cost read above and the write is in neither: write again.
            again = self._job_cost(job.id)
            if again is not None and again != cost:
                self.store.set_cost(job.id, again)
        try:
            self.store.evict()
        except GolemError as exc:
            logger.warning("job store eviction failed: %s", exc)

    def _write(self, job: Job[Any], **fields: Any) -> None:
        try:
            self.store.update(job.id, **fields)
        except GolemError as exc:
            logger.warning("job %s: could not write to the job store: %s", job.id, exc)

    def lookup(self, job_id: str) -> Optional[StoredJob]:
        return StoredJob(self.store, job_id) if self.store.get(job_id) is not None else None

    # -- hooks ------------------------------------------------------------------------------

    def _mine(self, sender: Any) -> bool:
        return isinstance(sender, Job) and any(job is sender for job in self.network.jobs(JobState.PENDING))

    def _on_agreement(self, sender: Any, **kwargs: Any) -> None:
        if self._mine(sender):
            self._write(sender, agreement_id=kwargs.get("agreement_id"), allocation_id=self.network.allocation_id,
                        provider=kwargs.get("provider"))

    def _on_activity(self, sender: Any, **kwargs: Any) -> None:
        if self._mine(sender):
            self._write(sender, activity_id=kwargs.get("activity_id"))

    def _on_progress(self, sender: Any, **kwargs: Any) -> None:
        # Rate-limited and written only for a pending job this store's owner runs (so no _mine()
        # scan per report): set_progress returns at once, the store's progress thread writes.
        progress = kwargs.get("progress")
        if isinstance(sender, Job) and progress is not None:
            self.store.set_progress(sender.id, progress)

    # -- cost -------------------------------------------------------------------------------

    def _track_cost(self, job_id: str) -> Optional[JobCost]:
        """Remember the finished job's agreements (their later payments update its cost); its cost now."""
        try:
            parts = self.network.costs.job_agreements(job_id)
        except Exception:  # never break a job's end over its cost
            logger.exception("job %s: could not read its cost", job_id)
            return None
        with self._cost_lock:
            self._cost_parts[job_id] = parts
            for agreement_id in parts:
                self._cost_jobs.setdefault(agreement_id, set()).add(job_id)
            while len(self._cost_parts) > COST_JOBS_KEPT:
                old, old_parts = self._cost_parts.popitem(last=False)
                self._forget_locked(old, old_parts)
        return self._job_cost(job_id)

    def _forget_locked(self, job_id: str, parts: Mapping[str, Any]) -> None:
        for agreement_id in parts:
            jobs = self._cost_jobs.get(agreement_id)
            if jobs is not None:
                jobs.discard(job_id)
                if not jobs:
                    del self._cost_jobs[agreement_id]

    def _job_cost(self, job_id: str) -> Optional[JobCost]:
        """The tracked job's cost: its estimate and its part of what was accepted for its agreements."""
        with self._cost_lock:
            parts = self._cost_parts.get(job_id)
        if parts is None:
            return None
        services = self.network._services_if_created()
        totals: Mapping[str, Decimal] = services.payments.account_totals() if services is not None else {}
        estimated, accepted = 0.0, None
        for agreement_id, (own, whole) in parts.items():
            estimated += own
            amount = totals.get(agreement_id)
            if amount is None:
                continue
            # A pool agreement's estimate grows with the jobs after this one: its share shrinks.
            whole = max(whole, self.network.costs.agreement_cost(agreement_id, refresh=False))
            share = Decimal(1) if own >= whole else Decimal(repr(own / whole)) if whole > 0 else Decimal(0)
            part = amount if share == 1 else (amount * share).quantize(Decimal("1e-18"))
            accepted = part if accepted is None else accepted + part
        return JobCost(estimated=estimated, accepted=accepted, currency=self._currency, agreements=len(parts))

    def _on_accepted(self, sender: Any, **kwargs: Any) -> None:
        # The payment thread: a dict look-up, the totals, and a hand-off to the store's cost writer.
        invoice = kwargs.get("invoice")
        doc = invoice if invoice is not None else kwargs.get("debit_note")
        agreement_id = str(getattr(doc, "agreement_id", "") or "")
        with self._cost_lock:
            job_ids = sorted(self._cost_jobs.get(agreement_id, ()))
        for job_id in job_ids:
            try:
                cost = self._job_cost(job_id)
            except Exception:
                logger.exception("job %s: could not read its cost", job_id)
                continue
            if cost is not None:
                self.store.set_cost(job_id, cost)
        if invoice is not None and job_ids:  # the agreement is settled: nothing more will come
            with self._cost_lock:
                self._cost_jobs.pop(agreement_id, None)
                for job_id in job_ids:
                    parts = self._cost_parts.get(job_id)
                    if parts is not None and not any(a in self._cost_jobs for a in parts):
                        del self._cost_parts[job_id]

    def _on_store_change(self, job_id: str) -> None:
        job = next((j for j in self.network.jobs(JobState.PENDING) if j.id == job_id), None)
        if job is None or not job.is_running():
            return
        record = self.store.get(job_id)
        if record is not None and record.cancel_reason:
            logger.info("job %s: cancel requested through the job store: %s", job_id, record.cancel_reason)
            job.request_cancel(record.cancel_reason)  # a job still queued ends at once

def _currency(payment: "PaymentOptions") -> Optional[str]:
    """The token's display name: ``tGLM`` on the testnets, ``GLM`` on the mainnets."""
    try:
        token = payment.resolved_token()
    except Exception:
        return None
    return "tGLM" if token.lower() == "tglm" else token.upper()


def _known(job: Job[Any]) -> Dict[str, Any]:
    """The job's resource ids that are set: a ``None`` must not erase what the signals recorded."""
    fields = dict(agreement_id=job.agreement_id, activity_id=job.activity_id,
                  provider=job.provider.name if job.provider else None)
    return {name: value for name, value in fields.items() if value is not None}
