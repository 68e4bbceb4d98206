"""Market API models: demands, offers, proposals, agreements and their events."""
from __future__ import annotations

import datetime as _dt
import enum
from typing import Any, Dict, List, Mapping, Optional

import attrs

from ._parse import Reader, event_type_of

__all__ = [
    "DemandOfferBase",
    "Demand",
    "Offer",
    "Proposal",
    "ProposalState",
    "MarketEvent",
    "ProposalEvent",
    "ProposalRejectedEvent",
    "PropertyQueryEvent",
    "NewAgreementEvent",
    "UnknownEvent",
    "parse_market_event",
    "AgreementState",
    "Agreement",
    "AgreementEvent",
    "AgreementApprovedEvent",
    "AgreementRejectedEvent",
    "AgreementCancelledEvent",
    "AgreementTerminatedEvent",
    "parse_agreement_event",
]


@attrs.frozen
class DemandOfferBase:
    """What a demand, an offer or a counter-proposal sends: flat properties and a constraint string."""

    properties: Dict[str, Any] = attrs.field(factory=dict)
    constraints: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DemandOfferBase":
        r = Reader("DemandOfferBase", data)
        return cls(properties=r.obj("properties"), constraints=r.text("constraints"))

    def to_json(self) -> Dict[str, Any]:
        return {"properties": dict(self.properties), "constraints": self.constraints}


@attrs.frozen
class Demand:
    """A demand as stored in an agreement."""

    demand_id: str
    requestor_id: str
    properties: Dict[str, Any]
    constraints: str
    timestamp: _dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Demand":
        r = Reader("Demand", data)
        return cls(
            demand_id=r.text("demandId"),
            requestor_id=r.text("requestorId"),
            properties=r.obj("properties"),
            constraints=r.text("constraints"),
            timestamp=r.date("timestamp"),
        )


@attrs.frozen
class Offer:
    """An offer as stored in an agreement."""

    offer_id: str
    provider_id: str
    properties: Dict[str, Any]
    constraints: str
    timestamp: _dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Offer":
        r = Reader("Offer", data)
        return cls(
            offer_id=r.text("offerId"),
            provider_id=r.text("providerId"),
            properties=r.obj("properties"),
            constraints=r.text("constraints"),
            timestamp=r.date("timestamp"),
        )


class ProposalState(str, enum.Enum):
    """The states yagna gives a proposal (compare with ``proposal.state``)."""

    INITIAL = "Initial"
    DRAFT = "Draft"
    REJECTED = "Rejected"
    ACCEPTED = "Accepted"
    EXPIRED = "Expired"


@attrs.frozen
class Proposal:
    """A proposal from the other side (``state`` is one of :class:`ProposalState`'s values)."""

    proposal_id: str
    issuer_id: str
    state: str
    timestamp: _dt.datetime
    properties: Dict[str, Any]
    constraints: str
    prev_proposal_id: Optional[str] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Proposal":
        r = Reader("Proposal", data)
        return cls(
            proposal_id=r.text("proposalId"),
            issuer_id=r.text("issuerId"),
            state=r.text("state"),
            timestamp=r.date("timestamp"),
            properties=r.obj("properties"),
            constraints=r.text("constraints"),
            prev_proposal_id=r.opt_text("prevProposalId"),
        )

    @property
    def is_draft(self) -> bool:
        """A Draft is a proposal that answers our counter-proposal: the only kind one can sign."""
        return self.state == ProposalState.DRAFT.value


@attrs.frozen
class MarketEvent:
    """Base of the events on ``/demands/{id}/events`` and ``/offers/{id}/events``."""

    event_date: _dt.datetime


@attrs.frozen
class ProposalEvent(MarketEvent):
    """A new proposal (initial, or a counter to ours)."""

    proposal: Proposal


@attrs.frozen
class ProposalRejectedEvent(MarketEvent):
    """The other side rejected our proposal ``proposal_id``."""

    proposal_id: str
    reason: Optional[Dict[str, Any]] = None

    @property
    def message(self) -> Optional[str]:
        msg = (self.reason or {}).get("message")
        return msg if isinstance(msg, str) else None


@attrs.frozen
class PropertyQueryEvent(MarketEvent):
    """The other side asks for property values (rarely used)."""

    queried_properties: List[str]
    query_id: Optional[str] = None
    issuer_properties: Optional[Dict[str, Any]] = None


@attrs.frozen
class UnknownEvent:
    """An event whose type golem_sync does not know; kept whole so nothing is lost."""

    event_type: Optional[str]
    data: Dict[str, Any]


def _event_date(r: Reader) -> _dt.datetime:
    return r.date("eventDate")


def parse_market_event(data: Mapping[str, Any]) -> "MarketEvent | UnknownEvent":
    """Turn one market event into its model; unknown types become :class:`UnknownEvent`."""
    tag = event_type_of(data) if isinstance(data, Mapping) else None
    if tag == "ProposalEvent":
        r = Reader("ProposalEvent", data)
        return ProposalEvent(event_date=_event_date(r), proposal=Proposal.from_json(r.obj("proposal")))
    if tag == "ProposalRejectedEvent":
        r = Reader("ProposalRejectedEvent", data)
        return ProposalRejectedEvent(
            event_date=_event_date(r), proposal_id=r.text("proposalId"), reason=r.opt_obj("reason")
        )
    if tag == "PropertyQueryEvent":
        r = Reader("PropertyQueryEvent", data)
        q = Reader("PropertyQueryEvent.propertyQuery", r.obj("propertyQuery"))
        return PropertyQueryEvent(
            event_date=_event_date(r),
            queried_properties=q.str_list("queriedProperties", required=True),
            query_id=q.opt_text("queryId"),
            issuer_properties=q.opt_obj("issuerProperties"),
        )
    if tag == "AgreementEvent":
        r = Reader("AgreementEvent", data)
        return NewAgreementEvent(event_date=_event_date(r), agreement=Agreement.from_json(r.obj("agreement")))
    Reader("MarketEvent", data)  # still insist on an object
    return UnknownEvent(event_type=tag, data=dict(data))


class AgreementState(str, enum.Enum):
    """The states of an agreement (compare with ``agreement.state``)."""

    PROPOSAL = "Proposal"
    PENDING = "Pending"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    APPROVED = "Approved"
    EXPIRED = "Expired"
    TERMINATED = "Terminated"


@attrs.frozen
class Agreement:
    """``GET /agreements/{id}``. ``state`` is one of :class:`AgreementState`'s values."""

    agreement_id: str
    demand: Demand
    offer: Offer
    valid_to: _dt.datetime
    state: str
    timestamp: _dt.datetime
    approved_date: Optional[_dt.datetime] = None
    app_session_id: Optional[str] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Agreement":
        r = Reader("Agreement", data)
        return cls(
            agreement_id=r.text("agreementId"),
            demand=Demand.from_json(r.obj("demand")),
            offer=Offer.from_json(r.obj("offer")),
            valid_to=r.date("validTo"),
            state=r.text("state"),
            timestamp=r.date("timestamp"),
            approved_date=r.opt_date("approvedDate"),
            app_session_id=r.opt_text("appSessionId"),
        )

    @property
    def provider_id(self) -> str:
        return self.offer.provider_id


@attrs.frozen
class NewAgreementEvent(MarketEvent):
    """Provider side: the requestor proposed ``agreement`` (yagna's ``AgreementEvent`` on
    ``/offers/{id}/events``); approve or reject it."""

    agreement: Agreement


@attrs.frozen
class AgreementEvent:
    """Base of the events on ``/agreementEvents``."""

    event_date: _dt.datetime
    agreement_id: str


@attrs.frozen
class AgreementApprovedEvent(AgreementEvent):
    """The provider approved the agreement."""


@attrs.frozen
class AgreementRejectedEvent(AgreementEvent):
    """The provider rejected the agreement."""

    reason: Optional[Dict[str, Any]] = None


@attrs.frozen
class AgreementCancelledEvent(AgreementEvent):
    """The requestor cancelled the agreement before approval."""

    reason: Optional[Dict[str, Any]] = None


@attrs.frozen
class AgreementTerminatedEvent(AgreementEvent):
    """One side terminated the agreement; ``terminator`` is ``"Requestor"`` or ``"Provider"``."""

    terminator: str = ""
    reason: Optional[Dict[str, Any]] = None
    signature: Optional[str] = None

    @property
    def message(self) -> Optional[str]:
        msg = (self.reason or {}).get("message")
        return msg if isinstance(msg, str) else None


def parse_agreement_event(data: Mapping[str, Any]) -> "AgreementEvent | UnknownEvent":
    """Turn one agreement event into its model; accepts both ``eventtype`` and ``eventType``."""
    tag = event_type_of(data) if isinstance(data, Mapping) else None
    if tag == "AgreementApprovedEvent":
        r = Reader(tag, data)
        return AgreementApprovedEvent(event_date=_event_date(r), agreement_id=r.text("agreementId"))
    if tag == "AgreementRejectedEvent":
        r = Reader(tag, data)
        return AgreementRejectedEvent(
            event_date=_event_date(r), agreement_id=r.text("agreementId"), reason=r.opt_obj("reason")
        )
    if tag == "AgreementCancelledEvent":
        r = Reader(tag, data)
        return AgreementCancelledEvent(
            event_date=_event_date(r), agreement_id=r.text("agreementId"), reason=r.opt_obj("reason")
        )
    if tag == "AgreementTerminatedEvent":
        r = Reader(tag, data)
        return AgreementTerminatedEvent(
            event_date=_event_date(r),
            agreement_id=r.text("agreementId"),
            terminator=r.text("terminator"),
            reason=r.opt_obj("reason"),
            signature=r.opt_text("signature"),
        )
    Reader("AgreementEvent", data)
    return UnknownEvent(event_type=tag, data=dict(data))
