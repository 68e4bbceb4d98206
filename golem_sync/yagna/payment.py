"""The payment API: allocations, debit notes, invoices and their events."""
from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from ..errors import GolemConfigError
from ._base import ApiBase, seg
from .models import (
    Acceptance,
    Account,
    Allocation,
    DebitNote,
    DebitNoteEvent,
    DriverStatusProperty,
    Invoice,
    InvoiceEvent,
    MarketDecoration,
    NewAllocation,
    Rejection,
    format_datetime,
    format_decimal,
)

__all__ = ["PaymentApi"]

Amount = Union[Decimal, str, int]
T = TypeVar("T")


def _amount(value: Amount, name: str) -> Decimal:
    # float is refused: binary floats cannot hold most decimal amounts exactly.
    if isinstance(value, (bool, float)) or not isinstance(value, (Decimal, str, int)):
        raise GolemConfigError(f"{name} must be a Decimal, str or int, got {type(value).__name__}")
    try:
        result = Decimal(value)
    except ArithmeticError:
        raise GolemConfigError(f"{name} is not a decimal number: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise GolemConfigError(f"{name} must be a finite, non-negative amount, got {value!r}")
    return result


class PaymentApi(ApiBase):
    """Calls under ``/payment-api/v1``. Requestor calls first, then the provider-side ones."""

    _api = "payment"

    # -- allocations -------------------------------------------------------------------------

    def create_allocation(
        self,
        total_amount: Amount,
        *,
        payment_platform: Optional[str] = None,
        address: Optional[str] = None,
        timeout: Optional[_dt.datetime] = None,
        make_deposit: bool = False,
    ) -> Allocation:
        """Reserve ``total_amount`` on ``payment_platform`` (e.g. ``"erc20-hoodi-tglm"``)."""
        new = NewAllocation(total_amount=_amount(total_amount, "total_amount"),
                            payment_platform=payment_platform, address=address, timeout=timeout,
                            make_deposit=make_deposit)
        path = "/allocations"
        return self._obj(self._call("POST", path, json=new.to_json()), Allocation.from_json, "POST", path)

    def list_requestor_accounts(self) -> List[Account]:
        """The accounts yagna can pay from (``GET /requestorAccounts``; ``yagna payment init --sender``
        adds one)."""
        path = "/requestorAccounts"
        return self._list(self._call("GET", path), Account.from_json, "GET", path)

    def driver_status(self, *, network: Optional[str] = None, driver: Optional[str] = None
                      ) -> List[DriverStatusProperty]:
        """The payment driver's problems on ``network`` (``GET /payments/status``): empty when all is well.

        yagna answers 404 (:class:`~golem_sync.errors.YagnaNotFoundError`) for a network its driver
        does not serve.
        """
        path = "/payments/status"
        params = {k: v for k, v in (("network", network), ("driver", driver)) if v is not None}
        return self._list(self._call("GET", path, params=params), DriverStatusProperty.from_json, "GET", path)

    def get_allocation(self, allocation_id: str) -> Allocation:
        path = f"/allocations/{seg(allocation_id)}"
        return self._obj(self._call("GET", path), Allocation.from_json, "GET", path)

    def list_allocations(self) -> List[Allocation]:
        path = "/allocations"
        return self._list(self._call("GET", path), Allocation.from_json, "GET", path)

    def amend_allocation(self, allocation_id: str, *, timeout: Optional[_dt.datetime] = None,
                         total_amount: Optional[Amount] = None) -> Allocation:
        """Change an allocation's expiry and/or total (``PUT /allocations/{id}``; yagna ≥ 0.16)."""
        body: Dict[str, Any] = {}
        if timeout is not None:
            body["timeout"] = format_datetime(timeout)
        if total_amount is not None:
            body["totalAmount"] = format_decimal(_amount(total_amount, "total_amount"))
        if not body:
            raise GolemConfigError("amend_allocation needs a timeout or a total_amount")
        path = f"/allocations/{seg(allocation_id)}"
        return self._obj(self._call("PUT", path, json=body), Allocation.from_json, "PUT", path)

    def release_allocation(self, allocation_id: str) -> None:
        """Give the allocation's unspent budget back."""
        self._call("DELETE", f"/allocations/{seg(allocation_id)}")

    def get_demand_decorations(self, allocation_ids: Sequence[str]) -> Tuple[Dict[str, Any], List[str]]:
        """The properties and constraints a demand must carry to be paid from these allocations."""
        if isinstance(allocation_ids, str) or not allocation_ids:
            raise GolemConfigError("allocation_ids must be a non-empty list of allocation ids")
        path = "/demandDecorations"
        body = self._call("GET", path, params={"allocationIds": list(allocation_ids)})
        return self._obj(body, MarketDecoration.from_json, "GET", path).as_tuple()

    # -- events ------------------------------------------------------------------------------

    def collect_debit_note_events(
        self,
        timeout: float = 5.0,
        after_timestamp: Optional[_dt.datetime] = None,
        max_events: int = 10,
        app_session_id: Optional[str] = None,
    ) -> List[DebitNoteEvent]:
        """Long-poll debit note events; ``[]`` when none came."""
        return self._events("/debitNoteEvents", DebitNoteEvent.from_json, timeout, after_timestamp,
                            max_events, app_session_id)

    def collect_invoice_events(
        self,
        timeout: float = 5.0,
        after_timestamp: Optional[_dt.datetime] = None,
        max_events: int = 10,
        app_session_id: Optional[str] = None,
    ) -> List[InvoiceEvent]:
        """Long-poll invoice events; ``[]`` when none came."""
        return self._events("/invoiceEvents", InvoiceEvent.from_json, timeout, after_timestamp,
                            max_events, app_session_id)

    def _events(self, path: str, parse: Callable[[Any], T], timeout: float,
                after: Optional[_dt.datetime], max_events: int, app_session_id: Optional[str]) -> List[T]:
        params = {"timeout": timeout, "afterTimestamp": format_datetime(after) if after else None,
                  "maxEvents": max_events, "appSessionId": app_session_id}
        return self._list(self._call("GET", path, params=params, long_poll=timeout), parse, "GET", path)

    # -- debit notes and invoices (requestor) ------------------------------------------------

    def get_debit_note(self, debit_note_id: str) -> DebitNote:
        path = f"/debitNotes/{seg(debit_note_id)}"
        return self._obj(self._call("GET", path), DebitNote.from_json, "GET", path)

    def accept_debit_note(self, debit_note_id: str, total_amount_accepted: Amount, allocation_id: str,
                          timeout: Optional[float] = None) -> None:
        """Accept a debit note, paying from ``allocation_id``."""
        body = Acceptance(_amount(total_amount_accepted, "total_amount_accepted"), allocation_id)
        self._call("POST", f"/debitNotes/{seg(debit_note_id)}/accept", params={"timeout": timeout},
                   json=body.to_json(), timeout=self._margin(timeout))

    def reject_debit_note(self, debit_note_id: str, rejection: Rejection,
                          timeout: Optional[float] = None) -> None:
        self._call("POST", f"/debitNotes/{seg(debit_note_id)}/reject", params={"timeout": timeout},
                   json=rejection.to_json(), timeout=self._margin(timeout))

    def get_invoice(self, invoice_id: str) -> Invoice:
        path = f"/invoices/{seg(invoice_id)}"
        return self._obj(self._call("GET", path), Invoice.from_json, "GET", path)

    def accept_invoice(self, invoice_id: str, total_amount_accepted: Amount, allocation_id: str,
                       timeout: Optional[float] = None) -> None:
        """Accept an invoice, paying from ``allocation_id``."""
        body = Acceptance(_amount(total_amount_accepted, "total_amount_accepted"), allocation_id)
        self._call("POST", f"/invoices/{seg(invoice_id)}/accept", params={"timeout": timeout},
                   json=body.to_json(), timeout=self._margin(timeout))

    def reject_invoice(self, invoice_id: str, rejection: Rejection, timeout: Optional[float] = None) -> None:
        self._call("POST", f"/invoices/{seg(invoice_id)}/reject", params={"timeout": timeout},
                   json=rejection.to_json(), timeout=self._margin(timeout))

    def trigger_batch_cycle(self, platform: str) -> None:
        """Make yagna send pending payments for ``platform`` now instead of at its next batch cycle.

        ``POST /batchCycle/{platform}/now``: not in the published spec; verified on yagna 0.17.6.
        """
        self._call("POST", f"/batchCycle/{seg(platform)}/now")

    # -- provider side -----------------------------------------------------------------------

    def issue_debit_note(
        self,
        agreement_id: str,
        activity_id: str,
        total_amount_due: Amount,
        usage_counter_vector: Optional[Any] = None,
        payment_due_date: Optional[_dt.datetime] = None,
    ) -> DebitNote:
        """Provider: create a debit note (send it with :meth:`send_debit_note`)."""
        body: Dict[str, Any] = {"agreementId": agreement_id, "activityId": activity_id,
                                "totalAmountDue": format_decimal(_amount(total_amount_due, "total_amount_due"))}
        if usage_counter_vector is not None:
            body["usageCounterVector"] = usage_counter_vector
        if payment_due_date is not None:
            body["paymentDueDate"] = format_datetime(payment_due_date)
        path = "/debitNotes"
        return self._obj(self._call("POST", path, json=body), DebitNote.from_json, "POST", path)

    def send_debit_note(self, debit_note_id: str, timeout: Optional[float] = None) -> None:
        self._call("POST", f"/debitNotes/{seg(debit_note_id)}/send", params={"timeout": timeout},
                   timeout=self._margin(timeout))

    def issue_invoice(
        self,
        agreement_id: str,
        activity_ids: Sequence[str],
        amount: Amount,
        payment_due_date: _dt.datetime,
    ) -> Invoice:
        """Provider: create an invoice (send it with :meth:`send_invoice`)."""
        body = {"agreementId": agreement_id, "activityIds": list(activity_ids),
                "amount": format_decimal(_amount(amount, "amount")),
                "paymentDueDate": format_datetime(payment_due_date)}
        path = "/invoices"
        return self._obj(self._call("POST", path, json=body), Invoice.from_json, "POST", path)

    def send_invoice(self, invoice_id: str, timeout: Optional[float] = None) -> None:
        self._call("POST", f"/invoices/{seg(invoice_id)}/send", params={"timeout": timeout},
                   timeout=self._margin(timeout))
