"""PaymentApi: request shapes, decimal amounts and parsing."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict

import pytest
import responses

from golem_sync.errors import GolemConfigError, YagnaServerError
from golem_sync.yagna import YagnaClient
from golem_sync.yagna.models import Rejection

P = "http://127.0.0.1:7465/payment-api/v1"
TS = "2024-05-01T10:00:00Z"
ALLOC = {"allocationId": "al-1", "address": "0xreq", "paymentPlatform": "erc20-hoodi-tglm",
         "totalAmount": "5", "spentAmount": "0", "remainingAmount": "5", "timestamp": TS, "makeDeposit": False}


def _doc(**extra: Any) -> Dict[str, Any]:
    data = {"issuerId": "0xp", "recipientId": "0xr", "payeeAddr": "0xp", "payerAddr": "0xr",
            "paymentPlatform": "erc20-hoodi-tglm", "timestamp": TS, "agreementId": "agr", "status": "ISSUED"}
    data.update(extra)
    return data


def test_allocation_calls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.post(f"{P}/allocations", json=ALLOC, status=201)
    mocked.get(f"{P}/allocations/al-1", json=ALLOC)
    mocked.get(f"{P}/allocations", json=[ALLOC])
    mocked.delete(f"{P}/allocations/al-1", status=200)
    expires = dt.datetime(2024, 5, 2, tzinfo=dt.timezone.utc)
    alloc = client.payment.create_allocation(Decimal("5"), payment_platform="erc20-hoodi-tglm",
                                             address="0xreq", timeout=expires)
    assert sent(0)[3] == {"totalAmount": "5", "makeDeposit": False, "paymentPlatform": "erc20-hoodi-tglm",
                          "address": "0xreq", "timeout": "2024-05-02T00:00:00.000000Z"}
    assert alloc.allocation_id == "al-1" and alloc.remaining_amount == Decimal(5)
    assert client.payment.get_allocation("al-1").total_amount == Decimal(5)
    assert [a.allocation_id for a in client.payment.list_allocations()] == ["al-1"]
    client.payment.release_allocation("al-1")
    assert sent(3)[:2] == ("DELETE", "/payment-api/v1/allocations/al-1")


def test_amounts_never_go_out_in_scientific_notation(client: YagnaClient, mocked: responses.RequestsMock,
                                                      sent: Any) -> None:
    mocked.post(f"{P}/allocations", json=ALLOC, status=201)
    client.payment.create_allocation(Decimal("1E+1"))
    assert sent()[3]["totalAmount"] == "10"


@pytest.mark.parametrize("bad", [1.5, -1, "abc", "NaN"])
def test_bad_amounts_are_refused_before_sending(client: YagnaClient, mocked: responses.RequestsMock,
                                                bad: Any, calls: Any) -> None:
    with pytest.raises(GolemConfigError, match="total_amount"):
        client.payment.create_allocation(bad)
    assert len(calls()) == 0


def test_allocation_create_500_is_not_retried(client: YagnaClient, mocked: responses.RequestsMock, calls: Any) -> None:
    mocked.post(f"{P}/allocations", status=500, json={"message": "driver down"})
    with pytest.raises(YagnaServerError, match="driver down"):
        client.payment.create_allocation("1")
    assert len(calls()) == 1


def test_demand_decorations(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.get(f"{P}/demandDecorations", json={
        "properties": [{"key": "golem.com.payment.platform.erc20-hoodi-tglm.address", "value": "0xreq"},
                       {"key": "golem.com.payment.protocol.version", "value": "3"}],
        "constraints": ["(golem.com.payment.platform.erc20-hoodi-tglm.address=*)"]})
    props, constraints = client.payment.get_demand_decorations(["al-1", "al-2"])
    assert sent()[2] == {"allocationIds": "al-1,al-2"}
    assert props == {"golem.com.payment.platform.erc20-hoodi-tglm.address": "0xreq",
                     "golem.com.payment.protocol.version": "3"}
    assert constraints == ["(golem.com.payment.platform.erc20-hoodi-tglm.address=*)"]
    with pytest.raises(GolemConfigError):
        client.payment.get_demand_decorations("al-1")


def test_event_polls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    after = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    mocked.get(f"{P}/debitNoteEvents", json=[{"eventType": "DebitNoteReceivedEvent", "eventDate": TS,
                                              "debitNoteId": "dn-1"}])
    mocked.get(f"{P}/invoiceEvents", json=[{"eventType": "InvoiceReceivedEvent", "eventDate": TS,
                                            "invoiceId": "inv-1"}])
    mocked.get(f"{P}/invoiceEvents", status=408)
    dn = client.payment.collect_debit_note_events(timeout=2.0, after_timestamp=after, max_events=50,
                                                  app_session_id="s")
    assert sent(0)[2] == {"timeout": "2.0", "afterTimestamp": "2024-05-01T00:00:00.000000Z",
                          "maxEvents": "50", "appSessionId": "s"}
    assert dn[0].kind == "Received" and dn[0].debit_note_id == "dn-1"
    inv = client.payment.collect_invoice_events(timeout=1.0)
    assert inv[0].kind == "Received" and inv[0].invoice_id == "inv-1"
    assert client.payment.collect_invoice_events(timeout=0.1) == []


def test_debit_note_and_invoice_requestor_calls(client: YagnaClient, mocked: responses.RequestsMock,
                                                sent: Any) -> None:
    mocked.get(f"{P}/debitNotes/dn-1", json=_doc(debitNoteId="dn-1", activityId="act", totalAmountDue="0.01"))
    mocked.post(f"{P}/debitNotes/dn-1/accept", status=200)
    mocked.post(f"{P}/debitNotes/dn-1/reject", status=200)
    mocked.get(f"{P}/invoices/inv-1", json=_doc(invoiceId="inv-1", amount="0.02", paymentDueDate=TS))
    mocked.post(f"{P}/invoices/inv-1/accept", status=200)
    mocked.post(f"{P}/invoices/inv-1/reject", status=200)
    assert client.payment.get_debit_note("dn-1").total_amount_due == Decimal("0.01")
    client.payment.accept_debit_note("dn-1", Decimal("0.01"), "al-1", timeout=5.0)
    assert sent(1) == ("POST", "/payment-api/v1/debitNotes/dn-1/accept", {"timeout": "5.0"},
                       {"totalAmountAccepted": "0.01", "allocationId": "al-1"})
    client.payment.reject_debit_note("dn-1", Rejection("BAD_SERVICE", message="broken"))
    assert sent(2)[3] == {"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0", "message": "broken"}
    assert client.payment.get_invoice("inv-1").amount == Decimal("0.02")
    client.payment.accept_invoice("inv-1", "0.02", "al-1")
    assert sent(4)[3] == {"totalAmountAccepted": "0.02", "allocationId": "al-1"}
    client.payment.reject_invoice("inv-1", Rejection("INCORRECT_AMOUNT", Decimal("0.01")))
    assert sent(5)[3] == {"rejectionReason": "INCORRECT_AMOUNT", "totalAmountAccepted": "0.01"}


def test_trigger_batch_cycle(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.post(f"{P}/batchCycle/erc20-hoodi-tglm/now", status=200)
    client.payment.trigger_batch_cycle("erc20-hoodi-tglm")
    assert sent() == ("POST", "/payment-api/v1/batchCycle/erc20-hoodi-tglm/now", {}, None)


def test_provider_side_calls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    due = dt.datetime(2024, 5, 2, tzinfo=dt.timezone.utc)
    mocked.post(f"{P}/debitNotes", json=_doc(debitNoteId="dn-1", activityId="act", totalAmountDue="0.5"), status=201)
    mocked.post(f"{P}/debitNotes/dn-1/send", status=200)
    mocked.post(f"{P}/invoices", json=_doc(invoiceId="inv-1", amount="1", paymentDueDate=TS), status=201)
    mocked.post(f"{P}/invoices/inv-1/send", status=200)
    dn = client.payment.issue_debit_note("agr", "act", Decimal("0.5"), usage_counter_vector=[1.0, 2.0])
    assert sent(0)[3] == {"agreementId": "agr", "activityId": "act", "totalAmountDue": "0.5",
                          "usageCounterVector": [1.0, 2.0]}
    client.payment.send_debit_note(dn.debit_note_id, timeout=3.0)
    assert sent(1)[2] == {"timeout": "3.0"}
    inv = client.payment.issue_invoice("agr", ["act"], "1", due)
    assert sent(2)[3] == {"agreementId": "agr", "activityIds": ["act"], "amount": "1",
                          "paymentDueDate": "2024-05-02T00:00:00.000000Z"}
    client.payment.send_invoice(inv.invoice_id)
    assert sent(3)[:2] == ("POST", "/payment-api/v1/invoices/inv-1/send")
