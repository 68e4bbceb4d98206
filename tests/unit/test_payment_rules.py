"""The payment processor's acceptance rules, with a recording stand-in for yagna's payment API."""
import datetime as dt
import threading
from decimal import Decimal
from types import SimpleNamespace

import pytest

from golem_sync import signals
from golem_sync._options import PaymentOptions
from golem_sync._payment.processor import PaymentProcessor
from golem_sync.yagna.models import DebitNoteEvent, InvoiceEvent


class FakePayment:
    def __init__(self):
        self.docs = {}
        self.calls = []

    def get_debit_note(self, doc_id):
        return self.docs[doc_id]

    get_invoice = get_debit_note

    def accept_debit_note(self, doc_id, amount, allocation_id):
        self.calls.append(("accept", doc_id, amount, allocation_id))

    accept_invoice = accept_debit_note

    def reject_debit_note(self, doc_id, rejection):
        self.calls.append(("reject", doc_id, rejection.reason, rejection.message))

    reject_invoice = reject_debit_note

    def collect_debit_note_events(self, **kw):
        return []

    collect_invoice_events = collect_debit_note_events


def note(doc_id, agreement, amount):
    return SimpleNamespace(debit_note_id=doc_id, agreement_id=agreement, total_amount_due=Decimal(amount))


def invoice(doc_id, agreement, amount):
    return SimpleNamespace(invoice_id=doc_id, agreement_id=agreement, amount=Decimal(amount))


def event(kind, doc_id, what="Received"):
    model, field = (DebitNoteEvent, "debit_note_id") if kind == "DebitNote" else (InvoiceEvent, "invoice_id")
    return model(event_type=f"{kind}{what}Event", event_date=dt.datetime.now(dt.timezone.utc), **{field: doc_id})


@pytest.fixture
def setup():
    payment = FakePayment()
    client = SimpleNamespace(payment=payment)

    def make(**options):
        return PaymentProcessor(client, PaymentOptions(**options), "alloc-1", "session", "network")

    return payment, make


def deliver(processor, payment, doc):
    payment.docs[getattr(doc, "debit_note_id", None) or doc.invoice_id] = doc
    if hasattr(doc, "debit_note_id"):
        processor._on_debit_note_event(event("DebitNote", doc.debit_note_id))
    else:
        processor._on_invoice_event(event("Invoice", doc.invoice_id))


def test_known_agreement_notes_and_invoice_are_accepted_from_the_allocation(setup):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    deliver(processor, payment, note("d1", "a1", "0.5"))
    deliver(processor, payment, invoice("i1", "a1", "0.7"))
    assert payment.calls == [("accept", "d1", Decimal("0.5"), "alloc-1"), ("accept", "i1", Decimal("0.7"), "alloc-1")]
    assert processor.account_totals() == {"a1": Decimal("0.7")}


def test_unknown_agreement_is_rejected_as_unsolicited(setup):
    payment, make = setup
    processor = make()
    deliver(processor, payment, note("d1", "stranger", "1"))
    assert payment.calls == [("reject", "d1", "UNSOLICITED_SERVICE", "unknown agreement stranger")]


def test_debit_note_after_the_invoice_is_rejected(setup):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    deliver(processor, payment, invoice("i1", "a1", "1"))
    deliver(processor, payment, note("d2", "a1", "1"))
    assert payment.calls[-1][:3] == ("reject", "d2", "INCORRECT_AMOUNT")


def test_limits_and_filters_reject_and_signal(setup):
    payment, make = setup
    rejected = []
    receiver = lambda sender, **kw: rejected.append((sender, kw["reason"]))
    signals.invoice_rejected.connect(receiver)
    try:
        processor = make(max_debit_note_amount=1, invoice_filter=lambda inv: False)
        processor.register("a1", sender="job")
        deliver(processor, payment, note("d1", "a1", "2"))
        deliver(processor, payment, invoice("i1", "a1", "0.1"))
    finally:
        signals.invoice_rejected.disconnect(receiver)
    assert payment.calls[0][:2] == ("reject", "d1") and "max_debit_note_amount" in payment.calls[0][3]
    assert rejected == [("job", "rejected by invoice_filter")]


def test_wait_for_invoices_returns_when_the_invoice_is_handled(setup):
    payment, make = setup
    processor = make()
    processor.register("a1", sender="job")
    processor.agreement_ended("a1")
    assert processor.wait_for_invoices(0.05) is False
    assert processor.outstanding() == 1
    threading.Timer(0.1, deliver, args=(processor, payment, invoice("i1", "a1", "1"))).start()
    assert processor.wait_for_invoices(5) is True


def test_a_provider_billing_faster_than_agreed_is_reported_once_and_its_notes_rejected(setup):
    payment, make = setup
    processor = make()
    violations = []
    processor.register("a1", sender="job", debit_note_interval=120, on_violation=violations.append)
    deliver(processor, payment, note("d1", "a1", "0.1"))  # the first note may come at any time
    deliver(processor, payment, note("d2", "a1", "0.2"))  # a second one within seconds: too many
    deliver(processor, payment, note("d3", "a1", "0.3"))
    assert [c[:2] for c in payment.calls] == [("accept", "d1"), ("reject", "d2"), ("reject", "d3")]
    assert len(violations) == 1 and "more often than the agreed interval of 120s" in violations[0]


def test_notes_at_the_agreed_pace_are_accepted(setup, monkeypatch):
    payment, make = setup
    processor = make()
    violations = []
    processor.register("a1", sender="job", debit_note_interval=10, on_violation=violations.append)
    clock = [processor._accounts["a1"].started]
    monkeypatch.setattr("golem_sync._payment.processor.time.monotonic", lambda: clock[0])
    for n in range(5):  # one note every 9.5 s: within the 10 s interval and its grace
        clock[0] += 9.5
        deliver(processor, payment, note(f"d{n}", "a1", str(n + 1)))
    assert violations == [] and all(c[0] == "accept" for c in payment.calls)


def test_each_kind_calls_its_own_api_methods_and_only_received_events_start_one():
    class Recording(FakePayment):
        def get_invoice(self, doc_id):
            self.calls.append(("get_invoice", doc_id))
            return self.docs[doc_id]

        def get_debit_note(self, doc_id):
            self.calls.append(("get_debit_note", doc_id))
            return self.docs[doc_id]

        def accept_invoice(self, doc_id, amount, allocation_id):
            self.calls.append(("accept_invoice", doc_id))

        def accept_debit_note(self, doc_id, amount, allocation_id):
            self.calls.append(("accept_debit_note", doc_id))

        def reject_invoice(self, doc_id, rejection):
            self.calls.append(("reject_invoice", doc_id))

    payment = Recording()
    processor = PaymentProcessor(SimpleNamespace(payment=payment), PaymentOptions(), "alloc-1", "session", "net")
    processor.register("a1", sender="job")
    payment.docs.update(d1=note("d1", "a1", "0.1"), i1=invoice("i1", "a1", "0.2"), i2=invoice("i2", "zz", "1"))
    processor._on_debit_note_event(event("DebitNote", "d1", what="Accepted"))  # not a new document
    processor._on_invoice_event(event("Invoice", "i1", what="Settled"))
    assert payment.calls == []
    processor._on_debit_note_event(event("DebitNote", "d1"))
    processor._on_invoice_event(event("Invoice", "i1"))
    processor._on_invoice_event(event("Invoice", "i2"))
    assert payment.calls == [("get_debit_note", "d1"), ("accept_debit_note", "d1"), ("get_invoice", "i1"),
                             ("accept_invoice", "i1"), ("get_invoice", "i2"), ("reject_invoice", "i2")]
