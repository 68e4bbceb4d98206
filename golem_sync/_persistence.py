"""How a GolemNetwork uses its job store: record its jobs, hear cancel requests, recover orphans.

This is the glue above :mod:`golem_sync.store` (which only persists, and imports neither the job
layer nor the yagna client).

- Records: a job's row is created with the job; its state, agreement, activity and allocation are
  written as they change (agreement and activity ids as soon as yagna returns them, through the
  ``agreement_created``/``activity_created`` signals, so a crash right after never loses them), and
  its end state, error text and serialized result when it ends (after cleanup).
- Progress: each ``job_progress`` goes to ``store.set_progress`` (rate-limited there); the final
  progress is written with the job's end.
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
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Union

from . import signals
from .errors import GolemError
from ._job import Job, JobState
from ._recovery import POLL_SEC, RecoveredPayments, recover
from .store.base import JobStore, describe_error
from .store.handle import StoredJob

if TYPE_CHECKING:
    from ._options import PaymentOptions
    from .yagna.client import YagnaClient

__all__ = ["StoreBinding", "StoreSpec"]

logger = logging.getLogger("golem_sync.store")

StoreSpec = Union[JobStore, str, "os.PathLike[str]", None]


class StoreHost(Protocol):
    """What the binding reads of the network it serves."""

    @property
    def allocation_id(self) -> Optional[str]: ...

    def jobs(self, state: Optional[JobState] = None) -> List[Job[Any]]: ...


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

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, client: "YagnaClient", payment: "PaymentOptions", requestor_id: Optional[str]) -> List[str]:
        """Connect the hooks, recover orphaned jobs, evict old ones; returns the recovered job ids."""
        for signal, handler in ((signals.agreement_created, self._on_agreement),
                                (signals.activity_created, self._on_activity),
                                (signals.job_progress, self._on_progress)):
            signal.connect(handler, weak=False)
            self._receivers.append((signal, handler))
        self._remove_listener = self.store.add_listener(self._on_store_change)
        self._payment_wait = payment.invoice_wait_sec
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

    def _on_store_change(self, job_id: str) -> None:
        job = next((j for j in self.network.jobs(JobState.PENDING) if j.id == job_id), None)
        if job is None or not job.is_running():
            return
        record = self.store.get(job_id)
        if record is not None and record.cancel_reason:
            logger.info("job %s: cancel requested through the job store: %s", job_id, record.cancel_reason)
            job.request_cancel(record.cancel_reason)  # a job still queued ends at once

def _known(job: Job[Any]) -> Dict[str, Any]:
    """The job's resource ids that are set: a ``None`` must not erase what the signals recorded."""
    fields = dict(agreement_id=job.agreement_id, activity_id=job.activity_id,
                  provider=job.provider.name if job.provider else None)
    return {name: value for name, value in fields.items() if value is not None}
