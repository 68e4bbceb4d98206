"""Every event golem_sync announces, as `blinker` signals, documented in one place.

Connect a receiver to a signal, optionally for one sender::

    from golem_sync import signals

    @signals.job_succeeded.connect_via(job)
    def on_success(job, result): ...

Job lifecycle signals have the :class:`~golem_sync.Job` as sender and fire in the order of the
golem-js Job API:

- success: ``job_created`` → ``job_started`` → ``job_succeeded`` → ``job_ended``
- failure: ``job_created`` → [``job_started``] → ``job_failed`` → ``job_ended``
- cancel:  ``job_created`` → [``job_started``] → ``job_cancelled`` → ``job_ended``

Lower-level signals also have the job as sender when the resource belongs to a job, and the
:class:`~golem_sync.GolemNetwork` otherwise (the allocation, notes for unknown agreements).

Receivers run on golem_sync's worker or poller threads, synchronously: keep them short. A receiver
that raises is logged under ``golem_sync.signals`` and never breaks the job or the other receivers.
"""
from __future__ import annotations

import logging
from typing import Any

import blinker

__all__ = [
    "namespace", "emit",
    "job_created", "job_started", "job_succeeded", "job_failed", "job_cancelled", "job_ended",
    "demand_subscribed", "demand_unsubscribed", "proposal_received", "proposal_responded",
    "proposal_rejected", "agreement_created", "agreement_confirmed", "agreement_approved",
    "agreement_terminated", "activity_created", "activity_ready", "activity_destroyed",
    "batch_sent", "batch_finished", "batch_failed", "debit_note_received", "debit_note_accepted",
    "debit_note_rejected", "invoice_received", "invoice_accepted", "invoice_rejected",
    "allocation_created", "allocation_released",
    "transfer_progress", "transfer_started", "transfer_ended", "job_progress",
    "lease_created", "lease_acquired", "lease_released", "lease_retired", "pool_closed",
]

logger = logging.getLogger("golem_sync.signals")

namespace = blinker.Namespace()

# -- job lifecycle (sender: the Job) ---------------------------------------------------------
job_created = namespace.signal("job-created", doc="The job was started; initialisation begins.")
job_started = namespace.signal("job-started", doc="A provider was signed and work begins. kwargs: agreement_id, provider")
job_succeeded = namespace.signal("job-succeeded", doc="The worker returned; cleanup begins. kwargs: result")
job_failed = namespace.signal("job-failed", doc="The job failed; cleanup begins. kwargs: error")
job_cancelled = namespace.signal("job-cancelled", doc="The job was cancelled; cleanup begins. kwargs: reason")
job_ended = namespace.signal("job-ended", doc="Cleanup finished after success, failure or cancellation.")

# -- market ----------------------------------------------------------------------------------
demand_subscribed = namespace.signal("demand-subscribed", doc="kwargs: demand_id")
demand_unsubscribed = namespace.signal("demand-unsubscribed", doc="kwargs: demand_id")
proposal_received = namespace.signal("proposal-received", doc="kwargs: proposal (yagna model)")
proposal_responded = namespace.signal("proposal-responded", doc="kwargs: proposal, counter_id")
proposal_rejected = namespace.signal("proposal-rejected", doc="kwargs: proposal_id, reason, by ('requestor'|'provider')")

# -- agreement -------------------------------------------------------------------------------
agreement_created = namespace.signal("agreement-created", doc="kwargs: agreement_id, provider")
agreement_confirmed = namespace.signal("agreement-confirmed", doc="kwargs: agreement_id")
agreement_approved = namespace.signal("agreement-approved", doc="kwargs: agreement_id, provider")
agreement_terminated = namespace.signal("agreement-terminated", doc="kwargs: agreement_id, by, reason")

# -- activity --------------------------------------------------------------------------------
activity_created = namespace.signal("activity-created", doc="kwargs: activity_id, agreement_id")
activity_ready = namespace.signal("activity-ready", doc="Deployed and started. kwargs: activity_id")
activity_destroyed = namespace.signal("activity-destroyed", doc="kwargs: activity_id")
batch_sent = namespace.signal("batch-sent", doc="kwargs: activity_id, batch_id, commands")
batch_finished = namespace.signal("batch-finished", doc="kwargs: activity_id, batch_id, results")
batch_failed = namespace.signal(
    "batch-failed",
    doc="A batch ended with an error before all its results arrived (a timeout, a cancel, a lost "
        "activity); sent on the thread that waited for it, before the error propagates. A streamed "
        "batch (end_stream) also sends batch_finished with the results so far. "
        "kwargs: activity_id, batch_id, error")

# -- payment ---------------------------------------------------------------------------------
allocation_created = namespace.signal("allocation-created", doc="Sender: the network. kwargs: allocation")
allocation_released = namespace.signal("allocation-released", doc="Sender: the network. kwargs: allocation_id")
debit_note_received = namespace.signal("debit-note-received", doc="kwargs: debit_note")
debit_note_accepted = namespace.signal("debit-note-accepted", doc="kwargs: debit_note, amount")
debit_note_rejected = namespace.signal("debit-note-rejected", doc="kwargs: debit_note, reason")
invoice_received = namespace.signal("invoice-received", doc="kwargs: invoice")
invoice_accepted = namespace.signal("invoice-accepted", doc="kwargs: invoice, amount")
invoice_rejected = namespace.signal("invoice-rejected", doc="kwargs: invoice, reason")

# -- transfers -------------------------------------------------------------------------------
transfer_progress = namespace.signal(
    "transfer-progress",
    doc="A long transfer moved on: sent at most once a second while bytes flow (so short transfers "
        "send none) and once more when it ends. Runs on the transfer's socket thread (the last one on "
        "the worker's thread). kwargs: "
        "activity_id, direction ('upload'|'download'), remote_path, bytes_done, bytes_total (None if unknown)")

transfer_started = namespace.signal(
    "transfer-started",
    doc="A transfer step's requestor-side service is open, right before its batch is sent. Runs on "
        "the worker's thread. kwargs: activity_id, transfer_id (unique per transfer), direction "
        "('upload'|'download'), remote_path")
transfer_ended = namespace.signal(
    "transfer-ended",
    doc="A started transfer step is over and its service closed (after success, failure, "
        "cancellation or a batch that never reached it). Runs on the worker's thread. kwargs: "
        "activity_id, transfer_id, direction, remote_path, bytes_done, bytes_total (None if unknown), "
        "ok (True only if the step's command ran and its Result is Ok), error (the exception that "
        "ended the batch, or the failed Result's message, or None)")
# -- worker progress (sender: the Job) -------------------------------------------------------
job_progress = namespace.signal(
    "job-progress",
    doc="The worker called ctx.report_progress(): sent on every call (not rate-limited; only the job "
        "store's writes are), on the worker's thread. kwargs: progress (golem_sync.Progress: fraction, "
        "message, data, timestamp, seq)")

# -- warm pools (sender: the ProviderPool) ---------------------------------------------------
# A pool's agreements, activities and their notes also have the pool as sender while no job holds
# them; a lease's activity sends its batch and activity signals as the job that borrowed it.
lease_created = namespace.signal("lease-created", doc="A new lease is warm. kwargs: lease (LeaseInfo)")
lease_acquired = namespace.signal("lease-acquired", doc="A job got a lease. kwargs: lease, job")
lease_released = namespace.signal("lease-released", doc="A job gave its lease back. kwargs: lease, success")
lease_retired = namespace.signal(
    "lease-retired", doc="A lease was released (activity destroyed, agreement ended). kwargs: lease, reason "
                         "(a key: idle_timeout, expiring, shutdown, provider_terminated, ...), detail")
pool_closed = namespace.signal("pool-closed", doc="The pool shut down and released every lease. kwargs: stats")


def emit(signal: blinker.NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal``, isolating receivers: one that raises is logged and the others still run."""
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            logger.exception("receiver %r of signal %r raised; ignored", receiver, signal.name)
