"""attrs models of what crosses the wire to and from yagna.

Every model has ``from_json`` (unknown fields ignored; a missing or mistyped required field raises
:class:`~golem_sync.YagnaProtocolError` naming the model and the field) and, where golem_sync sends
it, ``to_json``. Dates are aware ``datetime`` objects, amounts ``decimal.Decimal``.
"""
from ._parse import event_type_of, format_datetime, format_decimal, parse_datetime
from .activity import (
    ActivityEvent,
    ActivityState,
    ActivityStateName,
    ActivityUsage,
    CreateActivityResult,
    ExeScriptCommandResult,
    ExeScriptCommandState,
    RuntimeEvent,
)
from .common import Identity, VersionInfo, YagnaVersion
from .exescript import (
    Capture,
    CaptureAtEnd,
    CaptureStream,
    Command,
    Deploy,
    DeployNetwork,
    ProgressArgs,
    Run,
    Start,
    Terminate,
    Transfer,
    exe_script_request,
)
from .market import (
    Agreement,
    AgreementApprovedEvent,
    AgreementCancelledEvent,
    AgreementEvent,
    AgreementRejectedEvent,
    AgreementState,
    AgreementTerminatedEvent,
    Demand,
    DemandOfferBase,
    MarketEvent,
    NewAgreementEvent,
    Offer,
    PropertyQueryEvent,
    Proposal,
    ProposalEvent,
    ProposalRejectedEvent,
    ProposalState,
    UnknownEvent,
    parse_agreement_event,
    parse_market_event,
)
from .net import Address, GsbServices, Network, Node
from .payment import (
    Acceptance,
    Account,
    Allocation,
    DebitNote,
    DebitNoteEvent,
    DriverStatusProperty,
    Invoice,
    InvoiceEvent,
    InvoiceStatus,
    MarketDecoration,
    NewAllocation,
    Rejection,
)

__all__ = [
    "parse_datetime", "format_datetime", "format_decimal", "event_type_of",
    "Identity", "VersionInfo", "YagnaVersion",
    "DemandOfferBase", "Demand", "Offer", "Proposal", "ProposalState",
    "MarketEvent", "ProposalEvent", "NewAgreementEvent", "ProposalRejectedEvent", "PropertyQueryEvent", "UnknownEvent",
    "parse_market_event",
    "AgreementState", "Agreement", "AgreementEvent", "AgreementApprovedEvent", "AgreementRejectedEvent",
    "AgreementCancelledEvent", "AgreementTerminatedEvent", "parse_agreement_event",
    "ActivityStateName", "ActivityState", "ActivityUsage", "ExeScriptCommandResult",
    "ExeScriptCommandState", "RuntimeEvent", "ActivityEvent", "CreateActivityResult",
    "Capture", "CaptureAtEnd", "CaptureStream", "ProgressArgs", "DeployNetwork", "Command",
    "Deploy", "Start", "Run", "Transfer", "Terminate", "exe_script_request",
    "NewAllocation", "Allocation", "DebitNote", "Invoice", "InvoiceStatus", "Acceptance", "Rejection",
    "DebitNoteEvent", "InvoiceEvent", "MarketDecoration", "Account", "DriverStatusProperty",
    "Network", "Node", "Address", "GsbServices",
]
