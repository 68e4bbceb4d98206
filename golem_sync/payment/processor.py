"""Debit notes and invoices: one poller per stream for the whole network, dispatched by agreement.

Acceptance rules, in order: a note for an agreement this network does not know is rejected; a
debit note after the agreement's invoice is rejected; a configured amount limit or filter may
reject; everything else is accepted from the network's allocation.

Threads: the two poller threads own the event positions and call the handlers. ``register``,
``agreement_ended``, ``forget`` and ``wait_for_invoices`` are safe from any thread (one lock guards
the agreement table; a condition announces settled invoices).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional

import attrs

from .. import signals
from ..errors import YagnaError
from ..options import PaymentOptions
from ..pollers import EventPoller
from ..yagna.client import YagnaClient
from ..yagna.models import Rejection

__all__ = ["PaymentProcessor"]

logger = logging.getLogger("golem_sync.payment")


@attrs.define
class _AgreementAccount:
    sender: Any
    ended: bool = False
    invoiced: bool = False
    accepted_debit: Decimal = Decimal(0)
    invoice_amount: Optional[Decimal] = None


class PaymentProcessor:
    """Accepts or rejects the network's debit notes and invoices."""

    def __init__(self, client: YagnaClient, options: PaymentOptions, allocation_id: str, app_session_id: str,
                 network_sender: Any, *, poll_client: Optional[YagnaClient] = None) -> None:
        """``poll_client`` (default ``client``) reads the event streams; ``client`` handles the notes."""
        self._client = client
        poller_client = poll_client or client
        self._options = options
        self._allocation_id = allocation_id
        self._app_session_id = app_session_id
        self._network = network_sender
        self._cond = threading.Condition()
        self._accounts: Dict[str, _AgreementAccount] = {}
        start = dt.datetime.now(dt.timezone.utc)
        self._pollers = [
            EventPoller("debit-note-events", self._fetcher(poller_client.payment.collect_debit_note_events),
                        self._on_debit_note_event, poll_sec=options.event_poll_sec, after=start),
            EventPoller("invoice-events", self._fetcher(poller_client.payment.collect_invoice_events),
                        self._on_invoice_event, poll_sec=options.event_poll_sec, after=start),
        ]

    def _fetcher(self, collect: Callable[..., Any]) -> Callable[[Optional[dt.datetime], float], Any]:
        def fetch(after: Optional[dt.datetime], timeout: float) -> Any:
            return collect(timeout=timeout, after_timestamp=after, max_events=100,
                           app_session_id=self._app_session_id)
        return fetch

    def start(self) -> None:
        for poller in self._pollers:
            poller.start()

    @property
    def pollers(self) -> List[EventPoller]:
        return list(self._pollers)

    # -- bookkeeping (any thread) --------------------------------------------------------------

    def register(self, agreement_id: str, sender: Any) -> None:
        with self._cond:
            self._accounts[agreement_id] = _AgreementAccount(sender)

    def agreement_ended(self, agreement_id: str) -> None:
        """The agreement is over; its invoice is now expected."""
        with self._cond:
            account = self._accounts.get(agreement_id)
            if account is not None:
                account.ended = True

    def outstanding(self) -> int:
        """How many ended agreements still wait for their invoice."""
        with self._cond:
            return sum(1 for a in self._accounts.values() if a.ended and not a.invoiced)

    def wait_for_invoices(self, timeout: float) -> bool:
        """Wait until every ended agreement is invoiced and handled; False if time ran out."""
        end = time.monotonic() + timeout
        with self._cond:
            while any(a.ended and not a.invoiced for a in self._accounts.values()):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def account_totals(self) -> Dict[str, Decimal]:
        """Accepted amounts by agreement (invoice amount where invoiced, else accepted debit notes)."""
        with self._cond:
            return {aid: (a.invoice_amount if a.invoice_amount is not None else a.accepted_debit)
                    for aid, a in self._accounts.items()}

    # -- handlers (poller threads) -------------------------------------------------------------

    def _on_debit_note_event(self, event: Any) -> None:
        if "Received" not in str(event.event_type):
            return
        note = self._client.payment.get_debit_note(event.debit_note_id)
        with self._cond:
            account = self._accounts.get(note.agreement_id)
        sender = account.sender if account else self._network
        signals.emit(signals.debit_note_received, sender, debit_note=note)
        reason = self._debit_note_problem(note, account)
        if reason:
            self._reject("debit note", note.debit_note_id, self._client.payment.reject_debit_note, reason,
                         unknown=account is None)
            signals.emit(signals.debit_note_rejected, sender, debit_note=note, reason=reason)
            return
        try:
            self._client.payment.accept_debit_note(note.debit_note_id, note.total_amount_due, self._allocation_id)
        except YagnaError as exc:
            logger.warning("accepting debit note %s failed: %s", note.debit_note_id, exc)
            return
        with self._cond:
            if account is not None:
                account.accepted_debit = max(account.accepted_debit, note.total_amount_due)
        signals.emit(signals.debit_note_accepted, sender, debit_note=note, amount=note.total_amount_due)

    def _debit_note_problem(self, note: Any, account: Optional[_AgreementAccount]) -> Optional[str]:
        if account is None:
            return f"unknown agreement {note.agreement_id}"
        if account.invoiced:
            return "the agreement is already invoiced"
        limit = self._options.max_debit_note_amount
        if limit is not None and note.total_amount_due > Decimal(str(limit)):
            return f"amount {note.total_amount_due} exceeds max_debit_note_amount {limit}"
        if self._options.debit_note_filter is not None and not self._options.debit_note_filter(note):
            return "rejected by debit_note_filter"
        return None

    def _on_invoice_event(self, event: Any) -> None:
        if "Received" not in str(event.event_type):
            return
        invoice = self._client.payment.get_invoice(event.invoice_id)
        with self._cond:
            account = self._accounts.get(invoice.agreement_id)
        sender = account.sender if account else self._network
        signals.emit(signals.invoice_received, sender, invoice=invoice)
        reason = self._invoice_problem(invoice, account)
        if reason:
            self._reject("invoice", invoice.invoice_id, self._client.payment.reject_invoice, reason,
                         unknown=account is None)
            signals.emit(signals.invoice_rejected, sender, invoice=invoice, reason=reason)
            self._settle(invoice.agreement_id, None)
            return
        try:
            self._client.payment.accept_invoice(invoice.invoice_id, invoice.amount, self._allocation_id)
        except YagnaError as exc:
            logger.warning("accepting invoice %s failed: %s", invoice.invoice_id, exc)
            return
        self._settle(invoice.agreement_id, invoice.amount)
        signals.emit(signals.invoice_accepted, sender, invoice=invoice, amount=invoice.amount)

    def _invoice_problem(self, invoice: Any, account: Optional[_AgreementAccount]) -> Optional[str]:
        if account is None:
            return f"unknown agreement {invoice.agreement_id}"
        if account.invoiced:
            return "the agreement is already invoiced"
        limit = self._options.max_invoice_amount
        if limit is not None and invoice.amount > Decimal(str(limit)):
            return f"amount {invoice.amount} exceeds max_invoice_amount {limit}"
        if self._options.invoice_filter is not None and not self._options.invoice_filter(invoice):
            return "rejected by invoice_filter"
        return None

    def _settle(self, agreement_id: str, amount: Optional[Decimal]) -> None:
        with self._cond:
            account = self._accounts.get(agreement_id)
            if account is not None:
                account.invoiced = True
                account.invoice_amount = amount
            self._cond.notify_all()

    @staticmethod
    def _reject(what: str, doc_id: str, reject: Callable[..., Any], reason: str, *, unknown: bool) -> None:
        logger.info("rejecting %s %s: %s", what, doc_id, reason)
        code = "UNSOLICITED_SERVICE" if unknown else "INCORRECT_AMOUNT"
        try:
            reject(doc_id, Rejection(reason=code, message=reason))
        except YagnaError as exc:
            logger.warning("rejecting %s %s failed: %s", what, doc_id, exc)
