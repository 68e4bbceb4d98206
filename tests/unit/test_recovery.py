"""Paying for recovered agreements: the invoice of a dead process's agreement is accepted, retries included."""
from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from types import SimpleNamespace

from golem_sync._options import PaymentOptions
from golem_sync._recovery import RecoveredPayments
from golem_sync.errors import YagnaRequestError, YagnaServerError


class FakePayment:
    """Serves one invoice event; the accept fails ``fail`` times first."""

    def __init__(self, fail, error):
        self.fail, self.error = fail, error
        self.accepts = []
        self.released = []
        self.served = threading.Event()

    def collect_invoice_events(self, timeout, after_timestamp, max_events):
        if self.served.is_set():
            threading.Event().wait(min(timeout, 0.05))
            return []
        self.served.set()
        return [SimpleNamespace(event_type="InvoiceReceivedEvent", invoice_id="inv-1",
                                event_date=dt.datetime.now(dt.timezone.utc))]

    def get_invoice(self, invoice_id):
        return SimpleNamespace(invoice_id=invoice_id, agreement_id="agr-1", status="RECEIVED", amount=Decimal("0.2"))

    def create_allocation(self, **kw):
        return SimpleNamespace(allocation_id="al-r")

    def accept_invoice(self, invoice_id, amount, allocation_id):
        self.accepts.append(allocation_id)
        if self.fail:
            self.fail -= 1
            raise self.error

    def release_allocation(self, allocation_id):
        self.released.append(allocation_id)


def settle(payment, wait=8.0):
    client = SimpleNamespace(payment=payment)
    payer = RecoveredPayments(client, PaymentOptions(invoice_wait_sec=10), "0xreq", ["agr-1"],
                              dt.datetime.now(dt.timezone.utc)).start()
    done = payer.wait(wait)
    payer.stop()
    return payer, done


def test_a_transient_accept_failure_is_retried_and_the_invoice_paid():
    payment = FakePayment(2, YagnaServerError("payment driver busy", status=503))
    payer, done = settle(payment)
    assert done and payer.accepted == {"agr-1"}
    assert payment.accepts == ["al-r", "al-r", "al-r"]
    assert payment.released == ["al-r"]  # the payer's own allocation is given back


def test_a_refused_accept_is_not_retried():
    payment = FakePayment(5, YagnaRequestError("bad amount", status=400))
    payer, done = settle(payment, wait=1.0)
    assert not done and payer.accepted == set()
    assert len(payment.accepts) == 1
    assert payment.released == ["al-r"]
