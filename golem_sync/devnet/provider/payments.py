"""Issue and send the provider's payment documents: debit notes and invoices.

Plain functions over :class:`ProviderRest`; the agent calls them on its payments thread.
"""
from __future__ import annotations

import datetime as _dt
import logging
from decimal import Decimal
from typing import Callable, Optional, Sequence

from .rest import ProviderApiError, ProviderRest, rfc3339, utcnow
from .spec import format_amount

__all__ = ["issue_debit_note", "issue_invoice", "send_invoice", "SEND_TIMEOUT"]

logger = logging.getLogger("golem_sync.devnet.provider")

#: yagna's ackTimeout for ``/send``: the call returns once the requestor's node acknowledged it.
SEND_TIMEOUT = 10.0

#: Invoices are due at once: on the devnet nothing is gained by letting the payment wait.
_INVOICE_DUE_IN = _dt.timedelta(seconds=0)


def _document_id(body: object, key: str, what: str) -> str:
    if isinstance(body, dict) and isinstance(body.get(key), str):
        return str(body[key])
    raise ProviderApiError(f"issuing the {what} answered {body!r}, without {key}")


def _send(rest: ProviderRest, path: str) -> None:
    rest.call("POST", "payment", path, params={"timeout": SEND_TIMEOUT}, timeout=SEND_TIMEOUT + 10.0)


def issue_debit_note(
    rest: ProviderRest,
    *,
    agreement_id: str,
    activity_id: str,
    amount: Decimal,
    usage: Sequence[float],
    payment_due_in: Optional[float],
) -> str:
    """Issue a debit note for one activity and send it; returns its id.

    ``payment_due_in`` (seconds, the negotiated payment timeout) makes the note payable
    (mid-agreement payments); ``None`` leaves it informational, as without that negotiation.
    """
    body = {
        "agreementId": agreement_id,
        "activityId": activity_id,
        "totalAmountDue": format_amount(amount),
        "usageCounterVector": [float(u) for u in usage],
    }
    if payment_due_in is not None:
        body["paymentDueDate"] = rfc3339(utcnow() + _dt.timedelta(seconds=payment_due_in))
    note_id = _document_id(rest.call("POST", "payment", "/debitNotes", json=body), "debitNoteId", "debit note")
    _send(rest, f"/debitNotes/{note_id}/send")
    return note_id


def issue_invoice(
    rest: ProviderRest,
    *,
    agreement_id: str,
    activity_ids: Sequence[str],
    amount: Decimal,
    on_issued: Optional[Callable[[str], None]] = None,
) -> str:
    """Issue the invoice of a finished agreement and send it; returns its id.

    yagna answers 400 when the amount is below what the agreement's debit notes already asked.
    ``on_issued`` gets the id once it is issued, before the send (which may fail: then
    :func:`send_invoice` sends it again).
    """
    body = {
        "agreementId": agreement_id,
        "activityIds": list(activity_ids),
        "amount": format_amount(amount),
        "paymentDueDate": rfc3339(utcnow() + _INVOICE_DUE_IN),
    }
    invoice_id = _document_id(rest.call("POST", "payment", "/invoices", json=body), "invoiceId", "invoice")
    if on_issued is not None:
        on_issued(invoice_id)
    send_invoice(rest, invoice_id)
    return invoice_id


def send_invoice(rest: ProviderRest, invoice_id: str) -> None:
    """Send an issued invoice to the requestor (again, after a failed send)."""
    _send(rest, f"/invoices/{invoice_id}/send")
