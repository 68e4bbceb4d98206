"""Debit notes and invoices: one poller per stream for the whole network, dispatched by agreement.

Acceptance rules, in order: a note for an agreement this network does not know is rejected; a
debit note after the agreement's invoice is rejected; a provider that sends debit notes more often
than the negotiated interval allows has its extra notes rejected and the agreement reported as
broken (yapapi does the same; golem-js accepts them all); a configured amount limit or filter may
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
    debit_note_interval: Optional[float] = None
    on_violation: Optional[Callable[[str], None]] = None
    started: float = attrs.field(factory=time.monotonic)
    debit_notes: int = 0
    ended: bool = False
    invoiced: bool = False
    accepted_debit: Decimal = Decimal(0)
    invoice_amount: Optional[Decimal] = None

    def too_many_debit_notes(self, now: float) -> Optional[str]:
        """Count one more debit note; say why if the provider bills more often than agreed.

        One note may come at any time; after that, one per interval, with a grace of 10% of the
        interval (at least 5 s) for clocks and the provider's own scheduling.
        """
        self.debit_notes += 1
        interval = self.debit_note_interval
        if not interval:
            return None
        elapsed = now - self.started
        allowed = 1 + int((elapsed + max(5.0, 0.1 * interval)) / interval)
        if self.debit_notes <= allowed:
            return None
        return (f"debit notes arrive more often than the agreed interval of {interval:g}s "
                f"({self.debit_notes} in {elapsed:.1f}s)")


class PaymentProcessor:
    """Accepts or rejects the network's debit notes and invoices."""

    def __init__(self, client: YagnaClient, options: PaymentOptions, allocation_id: Any, app_session_id: str,
                 network_sender: Any, *, poll_client: Optional[YagnaClient] = None,
                 on_allocation_error: Optional[Callable[[YagnaError], None]] = None) -> None:
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

    def register(self, agreement_id: str, sender: Any, *, debit_note_interval: Optional[float] = None,
                 on_violation: Optional[Callable[[str], None]] = None) -> None:
        """Start accounting for an agreement.

        ``on_violation(reason)`` is called once, on a poller thread, when the provider breaks the
        negotiated ``debit_note_interval`` (seconds); it must be quick (e.g. cancel a token).
        """
        with self._cond:
            self._accounts[agreement_id] = _AgreementAccount(sender, debit_note_interval, on_violation)

    def agreement_ended(self, agreement_id: str, *, invoice_expected: bool = True) -> None:
        """The agreement is over; its invoice is now expected (unless it could not be ended)."""
        with self._cond:
            account = self._accounts.get(agreement_id)
            if account is not None:
                account.ended = True
                if not invoice_expected:
                    account.invoiced = True
            self._cond.notify_all()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop background work (none yet)."""

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
        if "Received" in str(event.event_type):
            self._handle(_DEBIT_NOTE, self._client.payment.get_debit_note(event.debit_note_id))

    def _on_invoice_event(self, event: Any) -> None:
        if "Received" in str(event.event_type):
            self._handle(_INVOICE, self._client.payment.get_invoice(event.invoice_id))

    def _handle(self, kind: "_Kind", doc: Any) -> None:
        """Accept or reject one debit note or invoice, and tell its job."""
        with self._cond:
            account = self._accounts.get(doc.agreement_id)
        sender = account.sender if account else self._network
        amount: Decimal = getattr(doc, kind.amount_field)
        signals.emit(kind.received, sender, **{kind.name: doc})
        reason = self._problem(kind, doc, amount, account)
        if reason:
            self._reject(kind, getattr(doc, kind.id_field), reason, unknown=account is None)
            signals.emit(kind.rejected, sender, reason=reason, **{kind.name: doc})
            if kind is _INVOICE:
                self._record(doc.agreement_id, None, invoiced=True)
            return
        accept = getattr(self._client.payment, f"accept_{kind.name}")
        try:
            accept(getattr(doc, kind.id_field), amount,
                   self._allocation_id() if callable(self._allocation_id) else self._allocation_id)
        except YagnaError as exc:
            logger.warning("accepting %s %s failed: %s", kind.label, getattr(doc, kind.id_field), exc)
            return
        self._record(doc.agreement_id, amount, invoiced=kind is _INVOICE)
        signals.emit(kind.accepted, sender, amount=amount, **{kind.name: doc})

    def _problem(self, kind: "_Kind", doc: Any, amount: Decimal,
                 account: Optional[_AgreementAccount]) -> Optional[str]:
        if account is None:
            return f"unknown agreement {doc.agreement_id}"
        if account.invoiced:
            return "the agreement is already invoiced"
        if kind is _DEBIT_NOTE:
            report = None
            with self._cond:
                violation = account.too_many_debit_notes(time.monotonic())
                if violation:
                    report, account.on_violation = account.on_violation, None  # report once
            if violation:
                if report is not None:
                    report(violation)
                return violation
        limit = getattr(self._options, f"max_{kind.name}_amount")
        if limit is not None and amount > Decimal(str(limit)):
            return f"amount {amount} exceeds max_{kind.name}_amount {limit}"
        accept_filter = getattr(self._options, f"{kind.name}_filter")
        if accept_filter is not None and not accept_filter(doc):
            return f"rejected by {kind.name}_filter"
        return None

    def _record(self, agreement_id: str, amount: Optional[Decimal], *, invoiced: bool) -> None:
        """Book an accepted amount; an invoice (accepted or rejected) closes the account."""
        with self._cond:
            account = self._accounts.get(agreement_id)
            if account is not None:
                if invoiced:
                    account.invoiced = True
                    account.invoice_amount = amount
                elif amount is not None:
                    account.accepted_debit = max(account.accepted_debit, amount)
            self._cond.notify_all()

    def _reject(self, kind: "_Kind", doc_id: str, reason: str, *, unknown: bool) -> None:
        logger.info("rejecting %s %s: %s", kind.label, doc_id, reason)
        code = "UNSOLICITED_SERVICE" if unknown else "INCORRECT_AMOUNT"
        try:
            getattr(self._client.payment, f"reject_{kind.name}")(doc_id, Rejection(reason=code, message=reason))
        except YagnaError as exc:
            logger.warning("rejecting %s %s failed: %s", kind.label, doc_id, exc)


@attrs.frozen
class _Kind:
    """What differs between debit notes and invoices: names, fields and signals."""

    name: str  # also the client's method suffix and the option prefix
    label: str
    id_field: str
    amount_field: str
    received: Any
    accepted: Any
    rejected: Any


_DEBIT_NOTE = _Kind("debit_note", "debit note", "debit_note_id", "total_amount_due", signals.debit_note_received,
                    signals.debit_note_accepted, signals.debit_note_rejected)
_INVOICE = _Kind("invoice", "invoice", "invoice_id", "amount", signals.invoice_received,
                 signals.invoice_accepted, signals.invoice_rejected)
