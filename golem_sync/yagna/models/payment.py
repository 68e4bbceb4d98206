"""Payment API models. Amounts are ``decimal.Decimal`` (yagna sends decimal strings)."""
from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any, Dict, List, Mapping, Optional, Tuple

import attrs

from ._parse import Reader, event_type_of, format_datetime, format_decimal

__all__ = [
    "NewAllocation",
    "Allocation",
    "DebitNote",
    "Invoice",
    "InvoiceStatus",
    "Acceptance",
    "Rejection",
    "DebitNoteEvent",
    "InvoiceEvent",
    "MarketDecoration",
    "Account",
    "DriverStatusProperty",
]


class InvoiceStatus:
    """Status strings of debit notes and invoices."""

    ISSUED = "ISSUED"
    RECEIVED = "RECEIVED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    SETTLED = "SETTLED"
    CANCELLED = "CANCELLED"


def _platform(r: Reader) -> Optional[str]:
    """``paymentPlatform`` is a name, or ``{driver, network, token}`` in newer yagna."""
    value = r.raw("paymentPlatform")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        parts = [value.get(k) for k in ("driver", "network", "token")]
        return "-".join(str(p) for p in parts if p)
    raise r.error("paymentPlatform", f"must be a string or an object, got {type(value).__name__}")


@attrs.frozen
class NewAllocation:
    """The body of ``POST /allocations``."""

    total_amount: Decimal
    payment_platform: Optional[str] = None
    address: Optional[str] = None
    timeout: Optional[_dt.datetime] = None
    make_deposit: bool = False

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"totalAmount": format_decimal(Decimal(self.total_amount)),
                                "makeDeposit": self.make_deposit}
        if self.payment_platform is not None:
            body["paymentPlatform"] = self.payment_platform
        if self.address is not None:
            body["address"] = self.address
        if self.timeout is not None:
            body["timeout"] = format_datetime(self.timeout)
        return body


@attrs.frozen
class Allocation:
    """A budget reserved on the requestor's account for paying providers."""

    allocation_id: str
    total_amount: Decimal
    spent_amount: Decimal
    remaining_amount: Decimal
    timestamp: _dt.datetime
    address: Optional[str] = None
    payment_platform: Optional[str] = None
    timeout: Optional[_dt.datetime] = None
    make_deposit: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Allocation":
        r = Reader("Allocation", data)
        return cls(
            allocation_id=r.text("allocationId"),
            total_amount=r.decimal("totalAmount"),
            spent_amount=r.decimal("spentAmount"),
            remaining_amount=r.decimal("remainingAmount"),
            timestamp=r.date("timestamp"),
            address=r.opt_text("address"),
            payment_platform=_platform(r),
            timeout=r.opt_date("timeout"),
            make_deposit=bool(r.opt_bool("makeDeposit")),
        )


@attrs.frozen
class Account:
    """``GET /requestorAccounts``: one payment account (wallet) and what it is set up for."""

    platform: str
    address: str
    driver: str
    network: str
    token: str
    send: bool
    receive: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Account":
        r = Reader("Account", data)
        return cls(platform=r.text("platform"), address=r.text("address"), driver=r.text("driver"),
                   network=r.text("network"), token=r.text("token"), send=bool(r.opt_bool("send")),
                   receive=bool(r.opt_bool("receive")))


@attrs.frozen
class DriverStatusProperty:
    """``GET /payments/status``: one problem the payment driver has (no problems: an empty list).

    ``kind`` is ``InsufficientGas`` (``needed_gas_est``), ``InsufficientToken``
    (``needed_token_est``), ``InvalidChainId`` (``chain_id``), ``CantSign``, ``TxStuck`` or ``RpcError``.
    """

    kind: str
    driver: str
    network: Optional[str] = None
    address: Optional[str] = None
    needed_gas_est: Optional[str] = None
    needed_token_est: Optional[str] = None
    chain_id: Optional[int] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DriverStatusProperty":
        r = Reader("DriverStatusProperty", data)
        return cls(kind=r.text("kind"), driver=r.text("driver"), network=r.opt_text("network"),
                   address=r.opt_text("address"), needed_gas_est=r.opt_text("neededGasEst"),
                   needed_token_est=r.opt_text("neededTokenEst"), chain_id=r.opt_integer("chainId"))


@attrs.frozen
class DebitNote:
    """A provider's running bill for one activity."""

    debit_note_id: str
    issuer_id: str
    recipient_id: str
    payee_addr: str
    payer_addr: str
    payment_platform: str
    timestamp: _dt.datetime
    agreement_id: str
    activity_id: str
    total_amount_due: Decimal
    status: str
    usage_counter_vector: Any = None
    payment_due_date: Optional[_dt.datetime] = None
    previous_debit_note_id: Optional[str] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DebitNote":
        r = Reader("DebitNote", data)
        return cls(
            debit_note_id=r.text("debitNoteId"),
            issuer_id=r.text("issuerId"),
            recipient_id=r.text("recipientId"),
            payee_addr=r.text("payeeAddr"),
            payer_addr=r.text("payerAddr"),
            payment_platform=_platform(r) or r.text("paymentPlatform"),
            timestamp=r.date("timestamp"),
            agreement_id=r.text("agreementId"),
            activity_id=r.text("activityId"),
            total_amount_due=r.decimal("totalAmountDue"),
            status=r.text("status"),
            usage_counter_vector=r.raw("usageCounterVector"),
            payment_due_date=r.opt_date("paymentDueDate"),
            previous_debit_note_id=r.opt_text("previousDebitNoteId"),
        )


@attrs.frozen
class Invoice:
    """A provider's final bill for one agreement."""

    invoice_id: str
    issuer_id: str
    recipient_id: str
    payee_addr: str
    payer_addr: str
    payment_platform: str
    timestamp: _dt.datetime
    agreement_id: str
    amount: Decimal
    payment_due_date: _dt.datetime
    status: str
    activity_ids: List[str] = attrs.field(factory=list)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Invoice":
        r = Reader("Invoice", data)
        return cls(
            invoice_id=r.text("invoiceId"),
            issuer_id=r.text("issuerId"),
            recipient_id=r.text("recipientId"),
            payee_addr=r.text("payeeAddr"),
            payer_addr=r.text("payerAddr"),
            payment_platform=_platform(r) or r.text("paymentPlatform"),
            timestamp=r.date("timestamp"),
            agreement_id=r.text("agreementId"),
            amount=r.decimal("amount"),
            payment_due_date=r.date("paymentDueDate"),
            status=r.text("status"),
            activity_ids=r.str_list("activityIds"),
        )


@attrs.frozen
class Acceptance:
    """The body of ``POST /debitNotes|invoices/{id}/accept``."""

    total_amount_accepted: Decimal
    allocation_id: str

    def to_json(self) -> Dict[str, Any]:
        return {"totalAmountAccepted": format_decimal(Decimal(self.total_amount_accepted)),
                "allocationId": self.allocation_id}


@attrs.frozen
class Rejection:
    """The body of a reject call; ``reason`` is ``UNSOLICITED_SERVICE``, ``BAD_SERVICE`` or
    ``INCORRECT_AMOUNT``."""

    reason: str
    total_amount_accepted: Decimal = Decimal(0)
    message: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "rejectionReason": self.reason,
            "totalAmountAccepted": format_decimal(Decimal(self.total_amount_accepted)),
        }
        if self.message is not None:
            body["message"] = self.message
        return body


def _short_kind(event_type: str, prefix: str) -> str:
    kind = event_type[len(prefix):] if event_type.startswith(prefix) else event_type
    return kind[: -len("Event")] if kind.endswith("Event") else kind


@attrs.frozen
class DebitNoteEvent:
    """``/debitNoteEvents``: ``event_type`` like ``DebitNoteReceivedEvent``; ``kind`` is ``Received``,
    ``Accepted``, ``Rejected``, ``Cancelled``, ``Settled``, ``Failed``, ``PaymentStatus``, ``PaymentOk``."""

    event_type: str
    event_date: _dt.datetime
    debit_note_id: str
    rejection: Optional[Dict[str, Any]] = None
    payment_status: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DebitNoteEvent":
        r = Reader("DebitNoteEvent", data)
        tag = event_type_of(r.data)
        if tag is None:
            raise r.error("eventType", "is missing")
        return cls(event_type=tag, event_date=r.date("eventDate"), debit_note_id=r.text("debitNoteId"),
                   rejection=r.opt_obj("rejection"), payment_status=r.opt_obj("property"))

    @property
    def kind(self) -> str:
        return _short_kind(self.event_type, "DebitNote")


@attrs.frozen
class InvoiceEvent:
    """``/invoiceEvents``: ``event_type`` like ``InvoiceReceivedEvent``; ``kind`` is ``Received``, ...
    (see :class:`DebitNoteEvent`)."""

    event_type: str
    event_date: _dt.datetime
    invoice_id: str
    rejection: Optional[Dict[str, Any]] = None
    payment_status: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "InvoiceEvent":
        r = Reader("InvoiceEvent", data)
        tag = event_type_of(r.data)
        if tag is None:
            raise r.error("eventType", "is missing")
        return cls(event_type=tag, event_date=r.date("eventDate"), invoice_id=r.text("invoiceId"),
                   rejection=r.opt_obj("rejection"), payment_status=r.opt_obj("property"))

    @property
    def kind(self) -> str:
        return _short_kind(self.event_type, "Invoice")


@attrs.frozen
class MarketDecoration:
    """``GET /demandDecorations``: properties and constraints the allocations add to a demand."""

    properties: Dict[str, Any]
    constraints: List[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MarketDecoration":
        r = Reader("MarketDecoration", data)
        props: Dict[str, Any] = {}
        for i, item in enumerate(r.array("properties")):
            p = Reader(f"MarketDecoration.properties[{i}]", item)
            props[p.text("key")] = p.raw("value", required=True)
        return cls(properties=props, constraints=r.str_list("constraints", required=True))

    def as_tuple(self) -> Tuple[Dict[str, Any], List[str]]:
        return dict(self.properties), list(self.constraints)
