"""Recovery of the jobs a dead process left running, and payment for their work.

At ``init`` a network with a job store claims the jobs recorded as new/pending by a process that
is gone (atomically, so two starting processes never both recover one job), marks them
``rejected`` with a :class:`GolemInterruptedError`, and frees what they held in yagna: their
activity destroyed, agreement terminated, allocation released.

A terminated agreement's provider then sends the invoice for the work done. That invoice belongs
to the dead process's app session, which no network's pollers read, so it would stay ``RECEIVED``
(unpaid) for ever. :class:`RecoveredPayments` reads invoice events of every session from just
before the terminations (one :class:`~golem_sync._pollers.EventPoller`), accepts the invoices of
exactly those agreements from an allocation of its own (created only when an invoice comes), and
releases the allocation when done.

Threads: :func:`recover` runs on the thread calling ``init``; :class:`RecoveredPayments` owns one
poller thread, ``golem-store-settle``; ``wait`` and ``stop`` are safe from any thread. It is done
when every agreement is invoiced or at ``invoice_wait_sec``.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Iterable, List, Optional, Sequence, Set, Tuple

from ._activity.destroy import destroy_activity
from ._market.signing import release
from ._cancel import Deadline
from .errors import GolemError, GolemStoreError, YagnaError, YagnaNotFoundError, is_transient
from ._options import PaymentOptions
from ._payment.allocation import create_allocation
from ._pollers import EventPoller
from .store.base import ACTIVE_STATES, JobStore
from .yagna.client import YagnaClient

__all__ = ["recover", "RecoveredPayments", "POLL_SEC"]

logger = logging.getLogger("golem_sync.store")

POLL_SEC = 2.0  # one long poll; bounds how long stop() waits for the poller
_RETRY_TRIES = 5  # GET/allocate/accept of one invoice, on transient yagna failures
_RETRY_FIRST_SEC = 0.5  # doubled after each failure: at most 7.5 s of backoff per invoice


def recover(store: JobStore, client: YagnaClient, payment: PaymentOptions,
            requestor_id: Optional[str]) -> "Tuple[List[str], Optional[RecoveredPayments]]":
    """Reject the jobs of dead processes and free what they held; returns their ids and the payer.

    The payer (``None`` when no agreement was terminated) is already started.
    """
    recovered: List[str] = []
    allocations: Set[str] = set()
    terminated: List[str] = []
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)  # invoices come after this
    for record in store.running():
        if record.owner == store.owner or record.owner is None or store.owner_alive(record.owner):
            continue
        message = (f"interrupted: the process that ran job {record.job_id} ({record.owner}) ended "
                   f"before the job did")
        try:
            claimed = store.update(record.job_id, expect_states=ACTIVE_STATES, expect_owner=record.owner,
                                   owner=store.owner, state="rejected", error=message,
                                   error_type="GolemInterruptedError")
        except GolemStoreError as exc:
            logger.warning("could not recover job %s: %s", record.job_id, exc)
            continue
        if not claimed:
            continue  # another process recovered it first
        logger.warning("job %s: %s; freeing its activity %s and agreement %s", record.job_id, message,
                       record.activity_id, record.agreement_id)
        if record.activity_id:
            destroy_activity(client, record.activity_id, 5.0)
        if record.agreement_id:
            if release(client, record.agreement_id, "Requestor process interrupted", success=False) == "terminated":
                terminated.append(record.agreement_id)
        if record.allocation_id:
            allocations.add(record.allocation_id)
        recovered.append(record.job_id)
    for allocation_id in allocations:
        try:
            client.payment.release_allocation(allocation_id)
        except YagnaNotFoundError:
            pass
        except YagnaError as exc:
            logger.warning("could not release allocation %s: %s", allocation_id, exc)
    settler = None
    if terminated and requestor_id:
        settler = RecoveredPayments(client, payment, requestor_id, terminated, since).start()
    return recovered, settler


class RecoveredPayments:
    """Accepts the invoices of ``agreement_ids`` (terminated by recovery) as they arrive."""

    def __init__(self, client: YagnaClient, payment: PaymentOptions, requestor_id: str,
                 agreement_ids: Iterable[str], since: dt.datetime) -> None:
        self._client = client
        self._payment = payment
        self._requestor_id = requestor_id
        self._lock = threading.Lock()
        self.pending: Set[str] = set(agreement_ids)
        self.accepted: Set[str] = set()
        self._allocation_id: Optional[str] = None
        self._deadline = Deadline(payment.invoice_wait_sec)
        self._done = threading.Event()
        self._stopping = threading.Event()
        self._finished = False
        self._poller = EventPoller("store-settle", self._fetch, self._handle, poll_sec=POLL_SEC, after=since)

    def start(self) -> "RecoveredPayments":
        self._poller.start()
        return self

    def wait(self, timeout: Optional[float]) -> bool:
        """Wait until every agreement is invoiced or time ran out; True if it is done."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Stop reading, release the allocation, report what stayed unpaid. Idempotent."""
        self._stopping.set()
        self._poller.stop(POLL_SEC + 10.0)
        with self._lock:
            if self._finished:
                return
            self._finished = True
            allocation_id, pending = self._allocation_id, sorted(self.pending)
        if allocation_id is not None:
            try:
                self._client.payment.release_allocation(allocation_id)
            except YagnaError as exc:
                logger.warning("could not release allocation %s: %s", allocation_id, exc)
        if pending:
            logger.warning("no invoice accepted for recovered agreement(s) %s", pending)

    @property
    def poller(self) -> EventPoller:
        return self._poller

    # -- the poller's thread -----------------------------------------------------------------

    def _fetch(self, after: Optional[dt.datetime], timeout: float) -> Sequence[Any]:
        with self._lock:
            nothing_left = not self.pending
        if nothing_left or self._deadline.expired:
            self._done.set()
            self._poller.request_stop()
            return []
        return self._client.payment.collect_invoice_events(
            timeout=max(0.1, self._deadline.cap(timeout)), after_timestamp=after, max_events=100)

    def _handle(self, event: Any) -> None:
        if "Received" not in str(event.event_type):
            return
        delay = _RETRY_FIRST_SEC
        for attempt in range(1, _RETRY_TRIES + 1):
            error = self._settle(event.invoice_id)
            if error is None or not is_transient(error) or attempt == _RETRY_TRIES:
                break
            logger.info("invoice %s of a recovered agreement: %s; trying again in %.1fs",
                        event.invoice_id, error, delay)
            if self._stopping.wait(delay):  # stop() ends the backoff at once
                return
            delay *= 2
        if error is not None:
            logger.warning("could not accept invoice %s for a recovered agreement: %s", event.invoice_id, error)

    def _settle(self, invoice_id: str) -> Optional[GolemError]:
        """Accept one invoice if it is for a recovered agreement; the error that stopped it, if any."""
        try:
            invoice = self._client.payment.get_invoice(invoice_id)
            with self._lock:
                if invoice.agreement_id not in self.pending:
                    return None
            if invoice.status != "RECEIVED":  # settled by someone else meanwhile
                self._settled(invoice.agreement_id, accepted=False)
                return None
            if self._allocation_id is None:
                self._allocation_id = create_allocation(self._client, self._payment,
                                                        self._requestor_id).allocation_id
            self._client.payment.accept_invoice(invoice.invoice_id, invoice.amount, self._allocation_id)
            logger.info("accepted invoice %s (%s) for recovered agreement %s", invoice.invoice_id,
                        invoice.amount, invoice.agreement_id)
            self._settled(invoice.agreement_id, accepted=True)
        except GolemError as exc:
            return exc.__cause__ if isinstance(exc.__cause__, GolemError) else exc
        return None

    def _settled(self, agreement_id: str, *, accepted: bool) -> None:
        with self._lock:
            self.pending.discard(agreement_id)
            if accepted:
                self.accepted.add(agreement_id)
            if not self.pending:
                self._done.set()
