"""Debit notes and invoices: one poller per stream for the whole network, dispatched by agreement.

Acceptance rules, in order: a note for an agreement this network does not know is rejected; a
debit note after the agreement's invoice is rejected; a provider that sends debit notes more often
than the negotiated interval allows has its extra notes rejected and the agreement reported as
broken (yapapi does the same; golem-js accepts them all); a configured amount limit or filter may
reject; a document asking more than the agreed prices allow for the usage and time (see
:mod:`.prices`) is rejected, and for a debit note the agreement is stopped; a job's cost cap
(``job.max_cost``, see :mod:`.budget`) may refuse a document that would take the job over it;
everything else is accepted from the network's allocation (read at every accept, so the network
may renew or replace it). Debit notes are cumulative per activity, so an
agreement's accepted total is the sum over its activities of the highest note accepted.

Failed calls: a GET, accept or reject that fails with a transient :class:`YagnaError` (5xx, timeout,
no connection) is retried with bounded exponential backoff (:class:`PaymentRetry`) on the
processor's retry thread; an answer saying the document is already settled counts as done; an
answer saying the allocation is gone calls ``on_allocation_error`` and retries with the then
current allocation id; anything else, or running out of tries, is logged as an ERROR naming the
document.

Threads: the two poller threads own the event positions, call the handlers and make each
document's first attempt. The retry thread (``golem-payment-retry``, at most one, started when a
retry is first needed and ended when none is left or by :meth:`PaymentProcessor.close`) makes the
later attempts; it waits on a condition with a timeout, never in a sleeping loop. ``register``,
``agreement_ended``, ``outstanding``, ``wait_for_invoices``, ``account_totals`` and ``close`` are
safe from any thread. One lock guards the agreement table and the retry queue; no lock is held
while user code (signals, filters, hooks, the allocation callable) or network I/O runs.
"""
from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict
from decimal import Decimal
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Set, Tuple, Union

import attrs

from .. import signals
from ..errors import YagnaError, YagnaRequestError, is_transient
from .._options import PaymentOptions
from .._pollers import EventPoller
from .budget import JobBudget, OverBudget
from .prices import AgreedPrices, AmountGuard, OnOvercharge, PriceCheck
from ..yagna.client import YagnaClient
from ..yagna.models import DebitNoteEvent, InvoiceEvent, Rejection
from ..yagna.payment import PaymentApi

__all__ = ["PaymentProcessor", "PaymentRetry"]

logger = logging.getLogger("golem_sync.payment")

#: How many documents of unknown agreements are remembered (so re-deliveries are not answered twice).
UNKNOWN_DOCUMENTS_KEPT = 1000

#: How many settled agreements keep their row in ``account_totals()`` (older ones only count in
#: ``accepted_total()``).
SETTLED_AGREEMENTS_KEPT = 1000

#: The allocation to accept from: its id, or a zero-argument callable returning the current id.
AllocationSource = Union[str, Callable[[], str]]


@attrs.frozen
class PaymentRetry:
    """How a failed GET/accept/reject of one document is retried: bounded exponential backoff.

    The n-th failure waits ``min(max_delay, first_delay * factor ** (n - 1))`` seconds;
    ``max_tries`` counts every call, the first one included. The defaults give up after about a
    minute (0.5 + 1 + 2 + 4 + 8 + 16 + 30 s), within a provider's usual 120 s accept timeout.
    """

    first_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    max_tries: int = 8

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed call (1-based)."""
        return float(min(self.max_delay, self.first_delay * self.factor ** max(0, failures - 1)))


_ALREADY_SETTLED = re.compile(r"already\s+(accepted|rejected|settled|paid)", re.IGNORECASE)
_ALLOCATION_GONE = re.compile(
    r"allocation\b.*\b(not\s+found|expired|released|does\s*n[o']t\s+exist|no\s+longer\s+exists|unknown)"
    r"|(not\s+found|unknown|expired)\b.*\ballocation", re.IGNORECASE)


def _error_text(exc: YagnaError) -> str:
    return f"{exc.detail or ''} {exc}"


def is_already_settled(exc: YagnaError) -> bool:
    """yagna says the document was already accepted or rejected (409, or "already accepted")."""
    if isinstance(exc, YagnaRequestError) and exc.status == 409:
        return True
    return exc.status is not None and bool(_ALREADY_SETTLED.search(_error_text(exc)))


def is_allocation_gone(exc: YagnaError) -> bool:
    """yagna says the allocation is gone (e.g. 400/404 "Allocation ... not found", "expired")."""
    return exc.status is not None and bool(_ALLOCATION_GONE.search(_error_text(exc)))


def _hold(sender: Any) -> Callable[[], Any]:
    """A weak reference to ``sender`` when it allows one (a Job), else a strong one."""
    try:
        return weakref.ref(sender)
    except TypeError:
        return lambda: sender


@attrs.define
class _AgreementAccount:
    """A live agreement's bookkeeping; it holds its job only weakly (a finished job may go)."""

    sender_ref: Callable[[], Any]
    debit_note_interval: Optional[float] = None
    on_violation: Optional[Callable[[str], None]] = None
    started: float = attrs.field(factory=time.monotonic)
    debit_notes: int = 0
    activities: int = 0
    ended: bool = False
    invoiced: bool = False
    accepted_notes: Dict[str, Decimal] = attrs.Factory(dict)  # activity id -> highest note accepted
    invoice_amount: Optional[Decimal] = None
    budget: Optional[JobBudget] = None  # the job's cost cap, if it has one
    prices: Optional[PriceCheck] = None  # the agreed prices its documents are checked against
    # (kind, id) of every document seen for this agreement: re-delivered events are ignored.
    documents: Set[Tuple[str, str]] = attrs.Factory(set)

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
        # Notes come per activity: each activity after the first may add its own final note.
        allowed = 1 + int((elapsed + max(5.0, 0.1 * interval)) / interval) + max(0, self.activities - 1)
        if self.debit_notes <= allowed:
            return None
        return (f"debit notes arrive more often than the agreed interval of {interval:g}s "
                f"({self.debit_notes} in {elapsed:.1f}s)")

    @property
    def accepted_debit(self) -> Decimal:
        """What the accepted debit notes add up to (each activity's latest: notes are cumulative)."""
        return sum(self.accepted_notes.values(), Decimal(0))

    @property
    def total(self) -> Decimal:
        return self.invoice_amount if self.invoice_amount is not None else self.accepted_debit


@attrs.frozen
class _Settled:
    """What stays of an ended and invoiced agreement: its total and the documents it had."""

    total: Decimal
    documents: FrozenSet[Tuple[str, str]]


@attrs.define(eq=False)
class _Task:
    """One document on its way to an answer; owned by whichever thread is attempting it."""

    kind: "_Kind"
    doc_id: str
    doc: Any = None                      # the fetched document (None until the GET succeeds)
    decided: bool = False                # rules applied and ``received`` emitted
    duplicate: bool = False              # already seen: nothing to answer
    reason: Optional[str] = None         # why to reject; None: accept
    accept_instead: Decimal = Decimal(0)  # the rejection's totalAmountAccepted
    unknown: bool = False                # rejected because the agreement is unknown
    sender: Any = None
    failures: int = 0
    allocation_error: Optional[YagnaError] = None  # tell the hook before the next try
    allocation_used: Optional[str] = None          # the allocation of the last accept attempt

    @property
    def key(self) -> Tuple[str, str]:
        return self.kind.name, self.doc_id

    @property
    def agreement_id(self) -> Optional[str]:
        return None if self.doc is None else str(self.doc.agreement_id)

    @property
    def step(self) -> str:
        if self.doc is None:
            return "get"
        return "reject" if self.reason is not None else "accept"


class PaymentProcessor:
    """Accepts or rejects the network's debit notes and invoices, retrying failed calls.

    Memory: an agreement's account lives from ``register`` until it is ended and its invoice
    settled (accepted, rejected or given up); it holds its job only through a weak reference.
    What stays after that is bounded: the totals and document ids of the ``keep_settled`` most
    recently settled agreements (for ``account_totals``), a running total of older ones (for
    ``accepted_total``), and the ids of the last ``UNKNOWN_DOCUMENTS_KEPT`` documents of
    unknown agreements.

    Args:
        client: handles the notes (GET, accept, reject).
        options: the network's payment options (limits, filters, poll length).
        allocation_id: the allocation to accept from, or a zero-argument callable returning the
            current one; it is read at every accept attempt.
        app_session_id: the event streams' session.
        network_sender: the sender of signals for notes whose job is unknown or gone.
        poll_client: reads the event streams (default ``client``).
        on_allocation_error: called with the error, on the retry thread and holding no lock, when
            an accept fails because the allocation is gone; the retry then reads the allocation
            id again. It may block (e.g. to create a new allocation). It is not called for a
            failure whose allocation id is no longer the current one (already replaced), so
            several documents failing together call it once. An exception from it is logged.
        retry: the backoff of failed calls.
        keep_settled: how many settled agreements keep their row in ``account_totals``.
        amounts: checks documents against their agreement's prices (see :mod:`.prices`); None:
            unchecked.
    """

    def __init__(self, client: YagnaClient, options: PaymentOptions, allocation_id: AllocationSource,
                 app_session_id: str, network_sender: Any, *, poll_client: Optional[YagnaClient] = None,
                 on_allocation_error: Optional[Callable[[YagnaError], None]] = None,
                 retry: PaymentRetry = PaymentRetry(), keep_settled: int = SETTLED_AGREEMENTS_KEPT,
                 amounts: Optional[AmountGuard] = None) -> None:
        self._amounts = amounts
        self._client = client
        poller_client = poll_client or client
        self._options = options
        self._allocation = allocation_id
        self._on_allocation_error = on_allocation_error
        self._retry = retry
        self._app_session_id = app_session_id
        self._network = network_sender
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)        # announces settled invoices
        self._retry_cond = threading.Condition(self._lock)  # wakes the retry thread
        self._accounts: Dict[str, _AgreementAccount] = {}
        self._unknown_documents: "OrderedDict[Tuple[str, str], None]" = OrderedDict()  # LRU
        self._settled: "OrderedDict[str, _Settled]" = OrderedDict()  # the most recent keep_settled
        self._keep_settled = keep_settled
        self._earlier_total = Decimal(0)  # accepted on settled agreements dropped from _settled
        # Documents between their event and their answer, and the retry queue (due, seq, task).
        self._in_flight: Dict[Tuple[str, str], _Task] = {}
        self._queue: List[Tuple[float, int, _Task]] = []
        self._seq = itertools.count()
        self._retry_thread: Optional[threading.Thread] = None
        self._retry_threads: List[threading.Thread] = []
        self._closed = False
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
        """Start the two event pollers."""
        for poller in self._pollers:
            poller.start()

    @property
    def pollers(self) -> List[EventPoller]:
        return list(self._pollers)

    def close(self, timeout: Optional[float] = 5.0) -> None:
        """Stop retrying: end and join the retry thread (call it after stopping the pollers).

        Pending retries are abandoned and logged. Returns within ``timeout`` even if the thread
        is inside a call to yagna (it then ends when that call returns). Idempotent.
        """
        with self._lock:
            self._closed = True
            abandoned = [task for _, _, task in self._queue]
            self._queue.clear()
            for task in abandoned:
                self._in_flight.pop(task.key, None)
            threads = list(self._retry_threads)
            self._retry_cond.notify_all()
            self._cond.notify_all()
        for task in abandoned:
            logger.warning("closing: abandoning the retries of %s %s (%d failed tries)",
                           task.kind.label, task.doc_id, task.failures)
        end = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(None if end is None else max(0.0, end - time.monotonic()))

    # -- bookkeeping (any thread) --------------------------------------------------------------

    def register(self, agreement_id: str, sender: Any, *, debit_note_interval: Optional[float] = None,
                 on_violation: Optional[Callable[[str], None]] = None, budget: Optional[JobBudget] = None,
                 on_over_budget: Optional[OverBudget] = None, prices: Optional[AgreedPrices] = None,
                 on_overcharge: Optional[OnOvercharge] = None) -> None:
        """Start accounting for an agreement.

        ``on_violation(reason)`` is called once, on a poller or the retry thread, when the
        provider breaks the negotiated ``debit_note_interval`` (seconds); it must be quick (e.g.
        cancel a token). ``budget`` is the cost cap of the agreement's job; ``on_over_budget``
        is told when the cap stops it (see :meth:`JobBudget.add_agreement`; it must be quick too).
        ``prices`` are the agreed prices its documents are checked against (with the processor's
        ``amounts`` guard); ``on_overcharge`` is told when a debit note asks more (quick, too).
        """
        check = (self._amounts.agreement(agreement_id, prices, on_overcharge)
                 if self._amounts is not None and prices is not None else None)
        with self._lock:
            self._accounts[agreement_id] = _AgreementAccount(_hold(sender), debit_note_interval, on_violation,
                                                             budget=budget, prices=check)
        if budget is not None:
            budget.add_agreement(agreement_id, on_over_budget)

    def set_sender(self, agreement_id: str, sender: Any) -> None:
        """Send this agreement's note signals as ``sender`` from now (a pool lends it to a job)."""
        with self._lock:
            account = self._accounts.get(agreement_id)
            if account is not None:
                account.sender_ref = _hold(sender)

    def activity_started(self, agreement_id: str) -> None:
        """An activity started on the agreement; each one after the first allows one extra note.

        (Providers bill per activity: a replaced activity may send its final note on top of the
        agreed pace.)
        """
        with self._lock:
            account = self._accounts.get(agreement_id)
            if account is not None:
                account.activities += 1

    def agreement_ended(self, agreement_id: str, *, invoice_expected: bool = True) -> None:
        """The agreement is over; its invoice is now expected.

        ``invoice_expected=False`` (it was never approved, or could not be ended) closes the
        account without waiting for an invoice; one that comes later is still answered.
        """
        with self._lock:
            account = self._accounts.get(agreement_id)
            budget = account.budget if account is not None else None
            if account is not None:
                account.ended = True
                if not invoice_expected:
                    account.invoiced = True
                self._settle_locked(agreement_id)
            self._cond.notify_all()
        if budget is not None:
            budget.agreement_ended(agreement_id)

    def outstanding(self) -> int:
        """How many agreements still wait for their invoice to be settled.

        That is the ended agreements without a settled invoice, plus every invoice whose answer
        is still being retried.
        """
        with self._lock:
            return self._outstanding_locked()

    def _outstanding_locked(self) -> int:
        waiting: Set[str] = {aid for aid, a in self._accounts.items() if a.ended and not a.invoiced}
        for task in self._in_flight.values():
            if task.kind is _INVOICE:
                waiting.add(task.agreement_id or f"invoice:{task.doc_id}")
        return len(waiting)

    def wait_for_invoices(self, timeout: float) -> bool:
        """Wait until every ended agreement's invoice and every retried invoice is settled.

        False if time ran out first.
        """
        end = time.monotonic() + timeout
        with self._lock:
            while self._outstanding_locked():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def account_totals(self) -> Dict[str, Decimal]:
        """Accepted amounts by agreement (invoice amount where invoiced, else accepted debit notes).

        Live agreements and the ``keep_settled`` most recently settled ones.
        """
        with self._lock:
            totals = {aid: s.total for aid, s in self._settled.items()}
            totals.update((aid, a.total) for aid, a in self._accounts.items())
            return totals

    def accepted_total(self) -> Decimal:
        """Everything accepted over the processor's life, every agreement included."""
        with self._lock:
            return (self._earlier_total + sum((s.total for s in self._settled.values()), Decimal(0))
                    + sum((a.total for a in self._accounts.values()), Decimal(0)))

    def _settle_locked(self, agreement_id: str) -> None:
        """Drop an ended, invoiced agreement without a pending document; keep its bounded summary."""
        account = self._accounts.get(agreement_id)
        if account is None or not (account.ended and account.invoiced):
            return
        if any(task.agreement_id == agreement_id for task in self._in_flight.values()):
            return  # _finish settles it
        del self._accounts[agreement_id]
        self._settled[agreement_id] = _Settled(account.total, frozenset(account.documents))
        while len(self._settled) > self._keep_settled:
            self._earlier_total += self._settled.popitem(last=False)[1].total

    # -- handlers (poller threads) -------------------------------------------------------------

    def _on_debit_note_event(self, event: DebitNoteEvent) -> None:
        if event.kind == _RECEIVED:
            self._begin(_DEBIT_NOTE, str(event.debit_note_id))

    def _on_invoice_event(self, event: InvoiceEvent) -> None:
        if event.kind == _RECEIVED:
            self._begin(_INVOICE, str(event.invoice_id))

    def _begin(self, kind: "_Kind", doc_id: str) -> None:
        """First attempt at a newly announced document (on the poller thread)."""
        task = _Task(kind, doc_id)
        with self._lock:
            if task.key in self._in_flight:
                logger.debug("%s %s is already being handled", kind.label, doc_id)
                return
            self._in_flight[task.key] = task
        self._attempt(task)

    # -- attempts (poller threads for the first, the retry thread for the rest) --------------------

    def _attempt(self, task: _Task) -> None:
        """Take the task as far as it goes: done, or scheduled for a retry, or given up."""
        try:
            self._advance(task)
        except YagnaError as exc:
            self._failed(task, exc)
            return
        except Exception:  # a bug or a raising hook: answer nothing more, but never stay in flight
            logger.exception("handling %s %s failed", task.kind.label, task.doc_id)
            self._give_up(task)
            return
        self._finish(task)

    def _advance(self, task: _Task) -> None:
        """GET, decide, answer; raises the YagnaError of the step that failed."""
        if task.allocation_error is not None:
            error, task.allocation_error = task.allocation_error, None
            if self._allocation_id() == task.allocation_used:  # not replaced since: say so
                self._tell_allocation_error(error)
        if task.doc is None:
            task.doc = task.kind.get(self._client.payment, task.doc_id)
        if not task.decided:
            self._decide(task)
        if task.duplicate:
            return
        if task.reason is not None:
            self._reject(task)
        else:
            self._accept(task)

    def _decide(self, task: _Task) -> None:
        """Apply the rules to a fetched document and announce it (once per document)."""
        kind, doc = task.kind, task.doc
        with self._lock:
            account = self._accounts.get(doc.agreement_id)
            settled = self._settled.get(doc.agreement_id) if account is None else None
            if settled is not None:
                task.duplicate = task.key in settled.documents
            else:
                task.duplicate = self._seen_locked(task.key, account)
        if task.duplicate:
            logger.debug("%s %s was already handled; ignoring the repeated event", kind.label, task.doc_id)
            task.decided = True
            return
        sender = account.sender_ref() if account is not None else None
        task.sender = self._network if sender is None else sender
        amount = kind.amount(doc)
        signals.emit(kind.received, task.sender, **{kind.name: doc})
        if settled is not None:
            task.reason = "the agreement is already invoiced"
        else:
            task.reason = self._problem(kind, doc, amount, account)
            task.unknown = account is None
            if task.reason and kind is _INVOICE and account is not None:
                task.accept_instead = self._accept_instead(str(doc.agreement_id), account)
        task.decided = True
        if task.reason:
            logger.info("rejecting %s %s: %s", kind.label, task.doc_id, task.reason)

    def _seen_locked(self, key: Tuple[str, str], account: Optional[_AgreementAccount]) -> bool:
        """Whether this document was seen before; remember it either way."""
        if account is not None:
            seen = key in account.documents
            account.documents.add(key)
            return seen
        seen = key in self._unknown_documents
        self._unknown_documents[key] = None
        self._unknown_documents.move_to_end(key)
        while len(self._unknown_documents) > UNKNOWN_DOCUMENTS_KEPT:
            self._unknown_documents.popitem(last=False)
        return seen

    def _accept(self, task: _Task) -> None:
        kind, doc = task.kind, task.doc
        amount = kind.amount(doc)
        task.allocation_used = allocation = self._allocation_id()
        try:
            kind.accept(self._client.payment, task.doc_id, amount, allocation)
        except YagnaError as exc:
            if not is_already_settled(exc):
                raise
            logger.info("%s %s was already settled: %s", kind.label, task.doc_id, exc)
        self._record(doc.agreement_id, amount, invoiced=kind is _INVOICE, activity_id=_activity_of(doc))
        signals.emit(kind.accepted, task.sender, amount=amount, **{kind.name: doc})

    def _reject(self, task: _Task) -> None:
        kind, doc = task.kind, task.doc
        code = "UNSOLICITED_SERVICE" if task.unknown else "INCORRECT_AMOUNT"
        assert task.reason is not None
        rejection = Rejection(reason=code, message=task.reason, total_amount_accepted=task.accept_instead)
        try:
            kind.reject(self._client.payment, task.doc_id, rejection)
        except YagnaError as exc:
            if exc.status == 501:  # yagna (0.17) cannot reject debit notes: the note stays unanswered
                logger.info("yagna cannot reject %s %s (%s); leaving it unaccepted: %s", kind.label, task.doc_id,
                            exc, task.reason)
            elif not is_already_settled(exc):
                raise
            else:
                logger.info("%s %s was already settled: %s", kind.label, task.doc_id, exc)
        if kind is _INVOICE:
            self._record(doc.agreement_id, None, invoiced=True)
        signals.emit(kind.rejected, task.sender, reason=task.reason, **{kind.name: doc})

    def _allocation_id(self) -> str:
        source = self._allocation
        return source if isinstance(source, str) else source()

    def _tell_allocation_error(self, error: YagnaError) -> None:
        hook = self._on_allocation_error
        if hook is None:
            return
        try:
            hook(error)
        except Exception:
            logger.exception("on_allocation_error raised")

    def _failed(self, task: _Task, exc: YagnaError) -> None:
        """Schedule the next try of a failed step, or give up on the document."""
        step = task.step
        task.failures += 1
        allocation_gone = step == "accept" and is_allocation_gone(exc)
        if not (allocation_gone or is_transient(exc)):
            logger.error("%s of %s %s failed and is not retried: %s", step, task.kind.label, task.doc_id, exc)
            self._give_up(task)
            return
        if task.failures >= self._retry.max_tries:
            logger.error("giving up on %s %s: %s failed %d times, last: %s", task.kind.label, task.doc_id,
                         step, task.failures, exc)
            self._give_up(task)
            return
        if allocation_gone:
            task.allocation_error = exc
            delay = 0.0 if task.failures == 1 else self._retry.delay(task.failures - 1)
        else:
            delay = self._retry.delay(task.failures)
        logger.warning("%s of %s %s failed (%s); retry %d in %.1fs", step, task.kind.label, task.doc_id, exc,
                       task.failures, delay)
        self._schedule(task, delay)

    def _schedule(self, task: _Task, delay: float) -> None:
        with self._lock:
            if not self._closed:
                heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), task))
                if self._retry_thread is None:
                    self._retry_threads = [t for t in self._retry_threads if t.is_alive()]
                    thread = threading.Thread(target=self._retry_loop, name="golem-payment-retry", daemon=True)
                    self._retry_thread = thread
                    self._retry_threads.append(thread)
                    thread.start()
                self._retry_cond.notify_all()
                return
        logger.error("closed: %s %s is left unanswered after %d failed tries", task.kind.label, task.doc_id,
                     task.failures)
        self._give_up(task)

    def _give_up(self, task: _Task) -> None:
        """No more tries: a given-up invoice still ends its agreement's wait (nothing more comes)."""
        if task.kind is _INVOICE and task.agreement_id is not None:
            self._record(task.agreement_id, None, invoiced=True)
        self._finish(task)

    def _finish(self, task: _Task) -> None:
        with self._lock:
            self._in_flight.pop(task.key, None)
            if task.agreement_id is not None:
                self._settle_locked(task.agreement_id)
            self._cond.notify_all()

    def _retry_loop(self) -> None:
        """The retry thread: run due tasks in order; end when none is left or on close."""
        me = threading.current_thread()
        while True:
            with self._lock:
                while True:
                    if self._closed or not self._queue:
                        if self._retry_thread is me:
                            self._retry_thread = None
                        return
                    left = self._queue[0][0] - time.monotonic()
                    if left <= 0:
                        task = heapq.heappop(self._queue)[2]
                        break
                    self._retry_cond.wait(left)
            self._attempt(task)  # never raises

    # -- rules ---------------------------------------------------------------------------------

    def _problem(self, kind: "_Kind", doc: Any, amount: Decimal,
                 account: Optional[_AgreementAccount]) -> Optional[str]:
        if account is None:
            return f"unknown agreement {doc.agreement_id}"
        if account.invoiced:
            return "the agreement is already invoiced"
        if kind is _DEBIT_NOTE:
            report = None
            with self._lock:
                violation = account.too_many_debit_notes(time.monotonic())
                if violation:
                    report, account.on_violation = account.on_violation, None  # report once
            if violation:
                if report is not None:
                    report(violation)
                return violation
        limit = kind.max_amount(self._options)
        if limit is not None and amount > Decimal(str(limit)):
            return f"amount {amount} exceeds max_{kind.name}_amount {limit}"
        accept_filter = kind.accept_filter(self._options)
        if accept_filter is not None:
            try:
                accepted = accept_filter(doc)
            except Exception as exc:  # user code: answer the document anyway
                logger.exception("%s_filter raised on %s %s", kind.name, kind.label, kind.doc_id(doc))
                return f"{kind.name}_filter raised {type(exc).__name__}: {exc}"
            if not accepted:
                return f"rejected by {kind.name}_filter"
        return self._overcharged(kind, doc, amount, account) or self._over_budget(kind, doc, amount, account)

    def _accept_instead(self, agreement_id: str, account: _AgreementAccount) -> Decimal:
        """What a rejected invoice's ``totalAmountAccepted`` stands by: the notes accepted (promised) before."""
        if account.budget is not None:
            return account.budget.accepted_instead(agreement_id)
        with self._lock:
            return account.accepted_debit

    def _overcharged(self, kind: "_Kind", doc: Any, amount: Decimal, account: _AgreementAccount) -> Optional[str]:
        """The agreed prices: None to accept, else why the document asks too much (see :mod:`.prices`)."""
        if self._amounts is None or account.prices is None:
            return None
        if kind is _DEBIT_NOTE:
            return self._amounts.debit_note(account.prices, doc, amount)
        return self._amounts.invoice(account.prices, doc, amount)

    @staticmethod
    def _over_budget(kind: "_Kind", doc: Any, amount: Decimal, account: _AgreementAccount) -> Optional[str]:
        """The job's cost cap: None to accept (the amount is then promised), else why not."""
        budget = account.budget
        if budget is None:
            return None
        if kind is _DEBIT_NOTE:
            return budget.debit_note(str(doc.agreement_id), _activity_of(doc), amount, kind.doc_id(doc))
        return budget.invoice(str(doc.agreement_id), amount, kind.doc_id(doc))

    def _record(self, agreement_id: str, amount: Optional[Decimal], *, invoiced: bool, activity_id: str = "") -> None:
        """Book an accepted amount; an invoice (accepted or rejected) closes the account."""
        with self._lock:
            account = self._accounts.get(agreement_id)
            if account is not None:
                if invoiced:
                    account.invoiced = True
                    account.invoice_amount = amount
                elif amount is not None:
                    notes = account.accepted_notes
                    notes[activity_id] = max(notes.get(activity_id, Decimal(0)), amount)
                self._settle_locked(agreement_id)
            self._cond.notify_all()


def _activity_of(doc: Any) -> str:
    """A debit note's activity id ("" for an invoice, or a note without one)."""
    return str(getattr(doc, "activity_id", "") or "")


#: ``DebitNoteEvent.kind`` / ``InvoiceEvent.kind`` of a newly issued document.
_RECEIVED = "Received"


@attrs.frozen
class _Kind:
    """What differs between debit notes and invoices: names, signals, and each kind's own API calls
    and options (the subclasses spell them out, so every caller of e.g. ``accept_invoice`` is found)."""

    name: str  # the signals' keyword for the document, and the options' prefix in messages
    label: str
    received: Any
    accepted: Any
    rejected: Any

    def doc_id(self, doc: Any) -> str:
        raise NotImplementedError

    def amount(self, doc: Any) -> Decimal:
        raise NotImplementedError

    def max_amount(self, options: PaymentOptions) -> Optional[float]:
        raise NotImplementedError

    def accept_filter(self, options: PaymentOptions) -> Optional[Callable[[Any], bool]]:
        raise NotImplementedError

    def get(self, api: PaymentApi, doc_id: str) -> Any:
        raise NotImplementedError

    def accept(self, api: PaymentApi, doc_id: str, amount: Decimal, allocation_id: str) -> None:
        raise NotImplementedError

    def reject(self, api: PaymentApi, doc_id: str, rejection: Rejection) -> None:
        raise NotImplementedError


@attrs.frozen
class _DebitNotes(_Kind):
    def doc_id(self, doc: Any) -> str:
        return str(doc.debit_note_id)

    def amount(self, doc: Any) -> Decimal:
        amount: Decimal = doc.total_amount_due
        return amount

    def max_amount(self, options: PaymentOptions) -> Optional[float]:
        return options.max_debit_note_amount

    def accept_filter(self, options: PaymentOptions) -> Optional[Callable[[Any], bool]]:
        return options.debit_note_filter

    def get(self, api: PaymentApi, doc_id: str) -> Any:
        return api.get_debit_note(doc_id)

    def accept(self, api: PaymentApi, doc_id: str, amount: Decimal, allocation_id: str) -> None:
        api.accept_debit_note(doc_id, amount, allocation_id)

    def reject(self, api: PaymentApi, doc_id: str, rejection: Rejection) -> None:
        api.reject_debit_note(doc_id, rejection)


@attrs.frozen
class _Invoices(_Kind):
    def doc_id(self, doc: Any) -> str:
        return str(doc.invoice_id)

    def amount(self, doc: Any) -> Decimal:
        amount: Decimal = doc.amount
        return amount

    def max_amount(self, options: PaymentOptions) -> Optional[float]:
        return options.max_invoice_amount

    def accept_filter(self, options: PaymentOptions) -> Optional[Callable[[Any], bool]]:
        return options.invoice_filter

    def get(self, api: PaymentApi, doc_id: str) -> Any:
        return api.get_invoice(doc_id)

    def accept(self, api: PaymentApi, doc_id: str, amount: Decimal, allocation_id: str) -> None:
        api.accept_invoice(doc_id, amount, allocation_id)

    def reject(self, api: PaymentApi, doc_id: str, rejection: Rejection) -> None:
        api.reject_invoice(doc_id, rejection)


_DEBIT_NOTE: _Kind = _DebitNotes("debit_note", "debit note", signals.debit_note_received,
                                 signals.debit_note_accepted, signals.debit_note_rejected)
_INVOICE: _Kind = _Invoices("invoice", "invoice", signals.invoice_received, signals.invoice_accepted,
                            signals.invoice_rejected)
