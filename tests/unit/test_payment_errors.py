"""Error paths of the payment processor: failed calls retried off the poller threads, a changing
allocation, re-delivered events, raising filters, and memory bounded by what is live."""
import datetime as dt
import gc
import logging
import threading
import time
import weakref
from decimal import Decimal
from types import SimpleNamespace

import pytest

from golem_sync import signals
from golem_sync.errors import (YagnaNotFoundError, YagnaRequestError, YagnaServerError, YagnaTimeoutError,
                               YagnaUnreachableError)
from golem_sync._options import PaymentOptions
from golem_sync._payment.processor import PaymentProcessor, PaymentRetry
from golem_sync.yagna.models import DebitNoteEvent, InvoiceEvent

FAST = PaymentRetry(first_delay=0.01, factor=2.0, max_delay=0.05, max_tries=6)


class ScriptedPayment:
    """A stand-in for ``client.payment``: records calls (with the calling thread's name) and raises
    the errors queued in ``fail[(call, doc_id)]`` (or from ``failing(call, doc_id, allocation)``)."""

    def __init__(self):
        self.docs = {}
        self.calls = []
        self.fail = {}
        self.failing = None
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)

    def _call(self, name, doc_id, *rest):
        with self.lock:
            self.calls.append((name, doc_id, *rest, threading.current_thread().name))
            self.changed.notify_all()
            queued = self.fail.get((name, doc_id))
            error = queued.pop(0) if queued else None
        if error is None and self.failing is not None:
            error = self.failing(name, doc_id, *rest)
        if error is not None:
            raise error

    def get_debit_note(self, doc_id):
        self._call("get", doc_id)
        return self.docs[doc_id]

    get_invoice = get_debit_note

    def accept_debit_note(self, doc_id, amount, allocation_id):
        self._call("accept", doc_id, amount, allocation_id)

    accept_invoice = accept_debit_note

    def reject_debit_note(self, doc_id, rejection):
        self._call("reject", doc_id, rejection.message)

    reject_invoice = reject_debit_note

    def collect_debit_note_events(self, **kw):
        return []

    collect_invoice_events = collect_debit_note_events

    def of(self, name, doc_id):
        with self.lock:
            return [c for c in self.calls if c[0] == name and c[1] == doc_id]

    def wait_for(self, predicate, timeout=5.0):
        end = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = end - time.monotonic()
                assert left > 0, f"condition not met; calls: {self.calls}"
                self.changed.wait(left)


def server_error(path="/x"):
    return YagnaServerError("yagna failed (500): payment driver busy", status=500, method="POST", path=path,
                            detail="payment driver busy")


def note(doc_id, agreement, amount="0.1"):
    return SimpleNamespace(debit_note_id=doc_id, agreement_id=agreement, total_amount_due=Decimal(amount))


def invoice(doc_id, agreement, amount="0.2"):
    return SimpleNamespace(invoice_id=doc_id, agreement_id=agreement, amount=Decimal(amount))


def event(doc):
    kind, model, field = (("DebitNote", DebitNoteEvent, "debit_note_id") if hasattr(doc, "debit_note_id")
                          else ("Invoice", InvoiceEvent, "invoice_id"))
    return model(event_type=f"{kind}ReceivedEvent", event_date=dt.datetime.now(dt.timezone.utc),
                 **{field: getattr(doc, field)})


def deliver(processor, payment, doc):
    """What a poller thread does with one event (here on the test's thread)."""
    payment.docs[getattr(doc, "debit_note_id", None) or doc.invoice_id] = doc
    if hasattr(doc, "debit_note_id"):
        processor._on_debit_note_event(event(doc))
    else:
        processor._on_invoice_event(event(doc))


@pytest.fixture
def setup():
    payment = ScriptedPayment()
    made = []

    def make(allocation="alloc-1", retry=FAST, **kw):
        options = kw.pop("options", {})
        processor = PaymentProcessor(SimpleNamespace(payment=payment), PaymentOptions(**options), allocation,
                                     "session", "network", retry=retry, **kw)
        made.append(processor)
        return processor

    yield payment, make
    for processor in made:
        processor.close(5)
    assert not [t for t in threading.enumerate() if t.name == "golem-payment-retry" and t.is_alive()]


def retry_threads():
    return [t for t in threading.enumerate() if t.name == "golem-payment-retry" and t.is_alive()]


# -- 1. failed calls are retried, off the poller thread ---------------------------------------------


@pytest.mark.parametrize("error", [server_error(), YagnaTimeoutError("no answer in 5s", method="POST"),
                                   YagnaUnreachableError("connection reset", method="POST")],
                         ids=["5xx", "timeout", "unreachable"])
def test_a_failed_debit_note_accept_is_retried_on_the_retry_thread(setup, error):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    payment.fail[("accept", "d1")] = [error, server_error()]
    deliver(processor, payment, note("d1", "a1", "0.5"))
    payment.wait_for(lambda: len(payment.of("accept", "d1")) == 3)
    first, *retries = payment.of("accept", "d1")
    assert first[-1] == threading.current_thread().name  # the first try is the poller's
    assert [c[-1] for c in retries] == ["golem-payment-retry"] * 2
    processor.close(5)
    assert processor.account_totals() == {"a1": Decimal("0.5")}


def test_a_failed_get_and_a_failed_reject_are_retried(setup):
    payment, make = setup
    processor = make()
    payment.fail[("get", "d1")] = [server_error("/debitNotes/d1")]
    payment.fail[("reject", "d1")] = [server_error()]
    deliver(processor, payment, note("d1", "stranger"))  # unknown agreement: rejected
    payment.wait_for(lambda: len(payment.of("reject", "d1")) == 2)
    assert len(payment.of("get", "d1")) == 2
    assert payment.of("accept", "d1") == []


def test_the_poller_thread_is_not_blocked_by_the_backoff(setup):
    payment, make = setup
    processor = make(retry=PaymentRetry(first_delay=60.0, max_tries=3))
    processor.register("a1", sender="job")
    payment.fail[("accept", "d1")] = [server_error()]
    started = time.monotonic()
    deliver(processor, payment, note("d1", "a1"))
    deliver(processor, payment, note("d2", "a1"))
    assert time.monotonic() - started < 5.0
    assert len(payment.of("accept", "d2")) == 1  # the next event was handled at once


def test_retries_are_bounded_and_giving_up_is_logged_as_an_error_naming_the_document(setup, caplog):
    payment, make = setup
    processor = make(retry=PaymentRetry(first_delay=0.001, max_delay=0.004, max_tries=4))
    processor.register("a1", sender="job")
    processor.agreement_ended("a1")
    payment.failing = lambda name, doc_id, *rest: server_error() if name == "accept" else None
    with caplog.at_level(logging.ERROR, logger="golem_sync.payment"):
        deliver(processor, payment, invoice("inv-7", "a1"))
        assert processor.wait_for_invoices(5) is True  # given up: nothing left to wait for
    assert len(payment.of("accept", "inv-7")) == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "inv-7" in errors[-1].getMessage() and "4" in errors[-1].getMessage()


@pytest.mark.parametrize("error", [
    YagnaRequestError("conflict", status=409, method="POST", detail="Invoice already accepted"),
    YagnaRequestError("bad", status=400, method="POST", detail="invoice inv-1 is already accepted"),
], ids=["409", "400-already-accepted"])
def test_an_already_settled_answer_counts_as_done(setup, error):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    processor.agreement_ended("a1")
    payment.fail[("accept", "inv-1")] = [error]
    deliver(processor, payment, invoice("inv-1", "a1", "0.3"))
    assert processor.wait_for_invoices(5) is True
    assert len(payment.of("accept", "inv-1")) == 1
    assert processor.account_totals() == {"a1": Decimal("0.3")}


def test_a_permanent_client_error_is_not_retried(setup, caplog):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    payment.fail[("accept", "d1")] = [YagnaRequestError("bad request", status=400, method="POST",
                                                        detail="totalAmountAccepted is not a number")]
    with caplog.at_level(logging.ERROR, logger="golem_sync.payment"):
        deliver(processor, payment, note("d1", "a1"))
        processor.close(5)
    assert len(payment.of("accept", "d1")) == 1
    assert any("d1" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_wait_for_invoices_counts_a_pending_invoice_retry_and_wakes_when_it_succeeds(setup):
    payment, make = setup
    processor = make(retry=PaymentRetry(first_delay=0.01, max_delay=0.05, max_tries=1000))
    processor.register("a1", sender="job")  # not ended yet: only the pending retry is outstanding
    broken = threading.Event()
    broken.set()
    payment.failing = lambda name, doc_id, *rest: server_error() if name == "accept" and broken.is_set() else None
    deliver(processor, payment, invoice("i1", "a1"))
    assert processor.outstanding() == 1
    assert processor.wait_for_invoices(0.1) is False
    broken.clear()
    assert processor.wait_for_invoices(5) is True
    assert processor.outstanding() == 0 and processor.account_totals() == {"a1": Decimal("0.2")}


def test_close_stops_the_retry_thread_promptly_and_names_what_it_abandons(setup, caplog):
    payment, make = setup
    processor = make(retry=PaymentRetry(first_delay=60.0, max_tries=3))
    processor.register("a1", sender="job")
    payment.fail[("accept", "d9")] = [server_error()]
    deliver(processor, payment, note("d9", "a1"))
    assert retry_threads()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="golem_sync.payment"):
        processor.close(5)
    assert time.monotonic() - started < 2.0
    assert not retry_threads()
    assert any("d9" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert len(payment.of("accept", "d9")) == 1


def test_no_retry_thread_runs_while_nothing_needs_a_retry(setup):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    deliver(processor, payment, note("d1", "a1"))
    assert not retry_threads()


# -- 2. the allocation may change ----------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    YagnaRequestError("bad", status=400, method="POST", detail="Allocation al-1 not found"),
    YagnaNotFoundError("gone", status=404, method="POST", detail="allocation [al-1] not found"),
    YagnaRequestError("bad", status=400, method="POST", detail="Allocation al-1 has expired"),
], ids=["400-not-found", "404-not-found", "expired"])
def test_an_allocation_error_calls_the_hook_then_retries_with_the_current_allocation(setup, error):
    payment, make = setup
    current = ["al-1"]
    seen = []

    def renew(exc):
        lock_free = processor._lock.acquire(timeout=2)  # would time out if the caller held it
        if lock_free:
            processor._lock.release()
        seen.append((exc, threading.current_thread().name, lock_free))
        current[0] = "al-2"

    payment.failing = lambda name, doc_id, *rest: error if name == "accept" and rest[-1] == "al-1" else None
    processor = make(allocation=lambda: current[0], on_allocation_error=renew)
    processor.register("a1", sender="job")
    processor.agreement_ended("a1")
    deliver(processor, payment, invoice("i1", "a1", "0.4"))
    assert processor.wait_for_invoices(5) is True
    assert [c[3] for c in payment.of("accept", "i1")] == ["al-1", "al-2"]
    assert seen == [(error, "golem-payment-retry", True)]


def test_the_allocation_id_is_read_at_every_accept(setup):
    payment, make = setup
    current = ["al-1"]
    processor = make(allocation=lambda: current[0])
    processor.register("a1", sender="job")
    deliver(processor, payment, note("d1", "a1", "0.1"))
    current[0] = "al-9"
    deliver(processor, payment, note("d2", "a1", "0.2"))
    assert [c[3] for c in payment.calls if c[0] == "accept"] == ["al-1", "al-9"]


# -- 3. re-delivered events are handled once ----------------------------------------------------------


def test_a_redelivered_debit_note_is_accepted_once_and_counted_once(setup):
    payment, make = setup
    processor = make()
    violations = []
    processor.register("a1", sender="job", debit_note_interval=120, on_violation=violations.append)
    deliver(processor, payment, note("d1", "a1", "0.1"))
    deliver(processor, payment, note("d1", "a1", "0.1"))  # the same event, seen again
    assert [c[:2] for c in payment.calls if c[0] != "get"] == [("accept", "d1")]
    assert violations == []


def test_an_event_redelivered_while_its_document_is_retried_is_ignored(setup):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    processor.agreement_ended("a1")
    payment.fail[("accept", "i1")] = [server_error()]
    deliver(processor, payment, invoice("i1", "a1"))
    deliver(processor, payment, invoice("i1", "a1"))
    assert processor.wait_for_invoices(5) is True
    deliver(processor, payment, invoice("i1", "a1"))  # and once it is settled
    processor.close(5)
    assert len(payment.of("accept", "i1")) == 2 and payment.of("reject", "i1") == []


def test_a_redelivered_note_of_an_unknown_agreement_is_rejected_once(setup):
    payment, make = setup
    processor = make()
    for _ in range(3):
        deliver(processor, payment, note("d1", "stranger"))
    assert len(payment.of("reject", "d1")) == 1


# -- 4. a raising filter is isolated ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["debit_note", "invoice"])
def test_a_raising_filter_rejects_the_document_naming_the_filter_and_the_error(setup, caplog, kind):
    payment, make = setup

    def broken_filter(doc):
        raise KeyError("golem.com.usage.vector")

    processor = make(options={f"{kind}_filter": broken_filter})
    processor.register("a1", sender="job")
    doc = note("x1", "a1") if kind == "debit_note" else invoice("x1", "a1")
    with caplog.at_level(logging.ERROR, logger="golem_sync.payment"):
        deliver(processor, payment, doc)
    (call,) = payment.of("reject", "x1")
    assert f"{kind}_filter" in call[2] and "KeyError" in call[2] and "golem.com.usage.vector" in call[2]
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)
    if kind == "invoice":
        processor.agreement_ended("a1")
        assert processor.outstanding() == 0  # the rejected invoice settles the agreement


# -- 5. memory is bounded by what is live ---------------------------------------------------------------


class FakeJob:
    """Stands for a Job holding a big result."""

    def __init__(self):
        self.results = "x" * 1000


def test_an_account_does_not_keep_its_job_alive_and_falls_back_to_the_network_as_sender(setup):
    payment, make = setup
    processor = make()
    job = FakeJob()
    ref = weakref.ref(job)
    processor.register("a1", sender=job)
    del job
    gc.collect()
    assert ref() is None
    senders = []
    receiver = lambda sender, **kw: senders.append(sender)
    signals.debit_note_accepted.connect(receiver)
    try:
        deliver(processor, payment, note("d1", "a1"))
    finally:
        signals.debit_note_accepted.disconnect(receiver)
    assert senders == ["network"]


def test_an_ended_and_invoiced_agreement_leaves_the_table_and_only_bounded_totals_stay(setup):
    payment, make = setup
    processor = make(keep_settled=2)
    for n in range(5):
        processor.register(f"a{n}", sender=FakeJob())
        deliver(processor, payment, note(f"d{n}", f"a{n}", "0.1"))
        if n % 2:
            processor.agreement_ended(f"a{n}")  # ended first, then invoiced
            deliver(processor, payment, invoice(f"i{n}", f"a{n}", "1"))
        else:
            deliver(processor, payment, invoice(f"i{n}", f"a{n}", "1"))
            processor.agreement_ended(f"a{n}")  # invoiced first, then ended
    assert processor._accounts == {}
    assert processor.account_totals() == {"a3": Decimal("1"), "a4": Decimal("1")}
    assert processor.accepted_total() == Decimal("5")
    assert processor.wait_for_invoices(0) is True


def test_documents_of_a_settled_agreement_are_not_answered_as_unknown(setup):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    processor.agreement_ended("a1")
    deliver(processor, payment, invoice("i1", "a1", "1"))
    deliver(processor, payment, invoice("i1", "a1", "1"))   # re-delivered: ignored
    deliver(processor, payment, note("d5", "a1", "0.1"))    # a late note: rejected, not as unsolicited
    assert len(payment.of("accept", "i1")) == 1 and payment.of("reject", "i1") == []
    assert [c[2] for c in payment.of("reject", "d5")] == ["the agreement is already invoiced"]


def test_an_agreement_with_a_live_retry_is_kept_until_it_is_settled(setup):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    processor.agreement_ended("a1")
    payment.fail[("accept", "i1")] = [server_error()]
    deliver(processor, payment, invoice("i1", "a1", "1"))
    assert "a1" in processor._accounts
    assert processor.wait_for_invoices(5) is True
    assert processor._accounts == {} and processor.account_totals() == {"a1": Decimal("1")}


# -- 6. S5: notes come per activity ---------------------------------------------------------------------


def test_each_extra_activity_on_an_agreement_allows_one_extra_debit_note(setup):
    payment, make = setup
    processor = make()
    violations = []
    processor.register("a1", sender="job", debit_note_interval=120, on_violation=violations.append)
    processor.activity_started("a1")
    processor.activity_started("a1")  # the first activity was replaced: its final note may come too
    deliver(processor, payment, note("d1", "a1"))
    deliver(processor, payment, note("d2", "a1"))
    assert violations == [] and len(payment.of("accept", "d2")) == 1
    deliver(processor, payment, note("d3", "a1"))
    assert len(violations) == 1 and len(payment.of("reject", "d3")) == 1


# -- whole jobs against the fake yagna -------------------------------------------------------------


def _stop(network):
    """Close the network, then the payment processor (what the network's close() is to call)."""
    services = network._services_obj
    network.close()
    if services is not None and hasattr(services.payments, "close"):
        services.payments.close(5)


def test_a_job_survives_one_failed_debit_note_accept_and_its_invoice_is_paid_before_close(golem, fake_yagna):
    fake_yagna.batch_delay = 1.5
    network = golem(payment={"invoice_wait_sec": 20})

    def worker(ctx):
        fake_yagna.accept_fail["dn-1"] = 1
        fake_yagna.push_debit_note("dn-1", ctx.agreement_id)
        ctx.run("sleep 1")
        return ctx.agreement_id

    job = network.create_job()
    job.start_work(worker)
    agreement = job.result(timeout=20)
    fake_yagna.accept_fail["inv-1"] = 1
    fake_yagna.push_invoice("inv-1", agreement)
    started = time.monotonic()
    _stop(network)
    took = time.monotonic() - started
    assert len(fake_yagna.calls("POST", "/debitNotes/dn-1/accept")) == 2
    assert len(fake_yagna.calls("POST", "/invoices/inv-1/accept")) == 2
    assert took < 10.0  # the invoice was paid by a retry, not given up on at invoice_wait_sec


def test_finished_invoiced_jobs_leave_the_payment_tables_and_memory(golem, fake_yagna):
    from golem_sync.store import MemoryJobStore, Retention

    network = golem(job_store=MemoryJobStore(retention=Retention(max_finished=2, every_sec=0)))
    refs = []
    for n in range(8):
        job = network.create_job()
        job.start_work(lambda ctx: ("x" * 100_000, ctx.agreement_id))
        _, agreement = job.result(timeout=20)
        fake_yagna.push_invoice(f"inv-{n}", agreement, amount="0.5")
        refs.append(weakref.ref(job))
        del job
    payments = network._services_obj.payments
    assert payments.wait_for_invoices(10) is True
    gc.collect()
    assert len(payments._accounts) == 0
    assert sum(r() is not None for r in refs) == 0
    assert payments.accepted_total() == Decimal("4.0")
    _stop(network)


def test_documents_failing_on_the_same_gone_allocation_ask_for_a_new_one_once(setup):
    payment, make = setup
    current = ["al-1"]
    renewals = []
    gone = YagnaRequestError("bad", status=400, method="POST", detail="Allocation al-1 not found")
    payment.failing = lambda name, doc_id, *rest: gone if name == "accept" and rest[-1] == "al-1" else None

    release = threading.Event()

    def renew(exc):
        assert release.wait(5)  # the renewal takes a while: every document fails on al-1 meanwhile
        renewals.append(exc)
        current[0] = f"al-{len(renewals) + 1}"

    processor = make(allocation=lambda: current[0], on_allocation_error=renew)
    for n in range(3):
        processor.register(f"a{n}", sender="job")
        processor.agreement_ended(f"a{n}")
        deliver(processor, payment, invoice(f"i{n}", f"a{n}"))
    assert [c[3] for c in payment.calls if c[0] == "accept"] == ["al-1"] * 3
    release.set()
    assert processor.wait_for_invoices(5) is True
    assert len(renewals) == 1
    assert sorted(c[1] for c in payment.calls if c[0] == "accept" and c[3] == "al-2") == ["i0", "i1", "i2"]


def test_a_reject_yagna_does_not_implement_is_not_retried(golem, fake_yagna):
    """yagna 0.17.6 answers 501 to a debit-note reject: that is final, not a transient failure."""
    from golem_sync._cancel import CancelToken

    fake_yagna.fail_next("POST", "/reject", status=501, times=10, message="not implemented")
    rejected = []
    receiver = lambda sender, **kw: rejected.append(kw["reason"])  # noqa: E731
    signals.debit_note_rejected.connect(receiver, weak=False)
    try:
        g = golem()
        g._services(CancelToken())  # the pollers start with the shared services
        fake_yagna.push_debit_note("dn-x", "agr-unknown")
        deadline = time.monotonic() + 5
        while not rejected and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        signals.debit_note_rejected.disconnect(receiver)
    assert rejected and "unknown agreement" in rejected[0]
    assert len(fake_yagna.calls("POST", "/debitNotes/dn-x/reject")) == 1
