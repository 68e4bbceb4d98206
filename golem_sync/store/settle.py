"""Paying for the work of agreements recovered from a dead process.

A recovered agreement is terminated by the process that recovers it; its provider then sends the
invoice for the work done. That invoice belongs to the dead process's app session, which no
network's pollers read, so it would stay ``RECEIVED`` (unpaid) for ever. :class:`RecoveredPayments`
long-polls invoice events of every session from just before the terminations, accepts the invoices
of exactly those agreements from an allocation of its own (created only when an invoice comes),
and releases the allocation when done.

Threads: owns one daemon thread, ``golem-store-settle``; ``wait`` and ``stop`` are safe from any
thread. It ends when every agreement is invoiced, at ``payment_timeout_sec``, or on ``stop``.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Iterable, Optional, Set

from ..cancel import Deadline
from ..errors import GolemError, YagnaError
from ..options import PaymentOptions
from ..payment.allocation import create_allocation
from ..yagna.client import YagnaClient

__all__ = ["RecoveredPayments"]

logger = logging.getLogger("golem_sync.store.settle")

POLL_SEC = 2.0  # one long poll; bounds how long stop() waits for the thread


class RecoveredPayments:
    """Accepts the invoices of ``agreement_ids`` (terminated by recovery) as they arrive."""

    def __init__(self, client: YagnaClient, payment: PaymentOptions, requestor_id: str,
                 agreement_ids: Iterable[str], since: dt.datetime) -> None:
        self._client = client
        self._payment = payment
        self._requestor_id = requestor_id
        self.pending: Set[str] = set(agreement_ids)
        self.accepted: Set[str] = set()
        self._after = since
        self._stop = threading.Event()
        self._allocation_id: Optional[str] = None
        self._thread = threading.Thread(target=self._run, name="golem-store-settle", daemon=True)

    def start(self) -> "RecoveredPayments":
        self._thread.start()
        return self

    def wait(self, timeout: Optional[float]) -> bool:
        """Wait for the thread to finish; True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(POLL_SEC + 10.0)

    def _run(self) -> None:
        deadline = Deadline(self._payment.payment_timeout_sec)
        try:
            while self.pending and not self._stop.is_set() and not deadline.expired:
                try:
                    events = self._client.payment.collect_invoice_events(
                        timeout=max(0.1, deadline.cap(POLL_SEC)), after_timestamp=self._after, max_events=100)
                except YagnaError as exc:
                    logger.warning("reading invoice events failed: %s", exc)
                    self._stop.wait(1.0)
                    continue
                for event in events:
                    if event.event_date > self._after:
                        self._after = event.event_date
                    if "Received" in str(event.event_type):
                        self._handle(event.invoice_id)
        finally:
            if self._allocation_id is not None:
                try:
                    self._client.payment.release_allocation(self._allocation_id)
                except YagnaError as exc:
                    logger.warning("could not release allocation %s: %s", self._allocation_id, exc)
            if self.pending:
                logger.warning("no invoice accepted for recovered agreement(s) %s", sorted(self.pending))

    def _handle(self, invoice_id: str) -> None:
        try:
            invoice = self._client.payment.get_invoice(invoice_id)
            if invoice.agreement_id not in self.pending:
                return
            if invoice.status != "RECEIVED":  # settled by someone else meanwhile
                self.pending.discard(invoice.agreement_id)
                return
            if self._allocation_id is None:
                self._allocation_id = create_allocation(self._client, self._payment,
                                                        self._requestor_id).allocation_id
            self._client.payment.accept_invoice(invoice.invoice_id, invoice.amount, self._allocation_id)
            logger.info("accepted invoice %s (%s) for recovered agreement %s", invoice.invoice_id,
                        invoice.amount, invoice.agreement_id)
            self.pending.discard(invoice.agreement_id)
            self.accepted.add(invoice.agreement_id)
        except GolemError as exc:
            logger.warning("could not accept invoice %s for a recovered agreement: %s", invoice_id, exc)

    @property
    def thread(self) -> Any:
        return self._thread
