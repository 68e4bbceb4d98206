"""Wire models: tolerant of unknown fields, strict about required ones, exact ExeScript JSON."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, Dict

import pytest

from golem_sync.errors import GolemConfigError, YagnaProtocolError
from golem_sync.yagna.models import (
    ActivityEvent,
    ActivityState,
    ActivityUsage,
    Agreement,
    AgreementApprovedEvent,
    AgreementCancelledEvent,
    AgreementRejectedEvent,
    AgreementTerminatedEvent,
    Allocation,
    Capture,
    CaptureAtEnd,
    CaptureStream,
    CreateActivityResult,
    DebitNote,
    DebitNoteEvent,
    Deploy,
    DeployNetwork,
    ExeScriptCommandResult,
    Identity,
    Invoice,
    InvoiceEvent,
    MarketDecoration,
    ProgressArgs,
    PropertyQueryEvent,
    Proposal,
    ProposalEvent,
    ProposalRejectedEvent,
    Run,
    RuntimeEvent,
    Start,
    Terminate,
    Transfer,
    UnknownEvent,
    YagnaVersion,
    exe_script_request,
    format_datetime,
    parse_agreement_event,
    parse_datetime,
    parse_market_event,
)

UTC = dt.timezone.utc


def proposal_json(**extra: Any) -> Dict[str, Any]:
    data = {
        "proposalId": "P1", "issuerId": "0xprov", "state": "Draft",
        "timestamp": "2024-05-01T10:00:00.123456789Z", "prevProposalId": "P0",
        "properties": {"golem.inf.cpu.threads": 4}, "constraints": "(golem.x=1)",
    }
    data.update(extra)
    return data


# -- dates ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("2024-05-01T10:00:00Z", dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)),
    ("2024-05-01T10:00:00.123456789Z", dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2024-05-01T12:00:00.5+02:00", dt.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
    ("2024-05-01T10:00:00.25", dt.datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)),  # naive = UTC
])
def test_parse_datetime_is_aware_and_exact(text: str, expected: dt.datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed.tzinfo is not None
    assert parsed == expected


def test_format_datetime_round_trips_in_utc() -> None:
    value = dt.datetime(2024, 5, 1, 12, 0, 0, 42, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    text = format_datetime(value)
    assert text == "2024-05-01T10:00:00.000042Z"
    assert parse_datetime(text) == value


def test_format_datetime_refuses_naive() -> None:
    with pytest.raises(GolemConfigError, match="timezone"):
        format_datetime(dt.datetime(2024, 1, 1))


def test_bad_date_names_model_and_field() -> None:
    with pytest.raises(YagnaProtocolError, match=r"Proposal: field 'timestamp'"):
        Proposal.from_json(proposal_json(timestamp="yesterday"))


# -- tolerant / strict parsing ----------------------------------------------------------------

def test_unknown_fields_are_ignored() -> None:
    p = Proposal.from_json(proposal_json(brandNewField={"x": 1}, anotherOne=[1, 2]))
    assert p.proposal_id == "P1" and p.is_draft and p.prev_proposal_id == "P0"
    assert p.properties == {"golem.inf.cpu.threads": 4}


@pytest.mark.parametrize("field", ["proposalId", "issuerId", "state", "timestamp", "properties", "constraints"])
def test_missing_required_field_names_it(field: str) -> None:
    data = proposal_json()
    del data[field]
    with pytest.raises(YagnaProtocolError) as info:
        Proposal.from_json(data)
    assert "Proposal" in str(info.value) and repr(field) in str(info.value)


def test_wrong_type_names_field_and_type() -> None:
    with pytest.raises(YagnaProtocolError, match=r"Proposal: field 'issuerId' must be a string, got int"):
        Proposal.from_json(proposal_json(issuerId=7))


def test_bool_is_not_an_integer() -> None:
    with pytest.raises(YagnaProtocolError, match="'index'"):
        ExeScriptCommandResult.from_json({"index": True, "eventDate": "2024-01-01T00:00:00Z", "result": "Ok"})


def test_non_object_is_refused() -> None:
    with pytest.raises(YagnaProtocolError, match="Identity: expected a JSON object"):
        Identity.from_json(["not", "an", "object"])  # type: ignore[arg-type]


def test_identity_and_version() -> None:
    me = Identity.from_json({"identity": "0xabc", "name": "default", "role": "manager", "extra": 1})
    assert (me.identity, me.name, me.role) == ("0xabc", "default", "manager")
    v = YagnaVersion.from_json({"current": {"version": "0.17.6", "name": "x", "seen": True,
                                            "releaseTs": "2015-10-13T15:43:00"}, "pending": None})
    assert v.current.version == "0.17.6" and v.pending is None


# -- market events ----------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["eventType", "eventtype"])
def test_market_events_accept_both_tags(tag: str) -> None:
    ev = parse_market_event({tag: "ProposalEvent", "eventDate": "2024-05-01T10:00:00Z",
                             "proposal": proposal_json()})
    assert isinstance(ev, ProposalEvent) and ev.proposal.proposal_id == "P1"
    rej = parse_market_event({tag: "ProposalRejectedEvent", "eventDate": "2024-05-01T10:00:00Z",
                              "proposalId": "P9", "reason": {"message": "too expensive", "x": 1}})
    assert isinstance(rej, ProposalRejectedEvent) and rej.proposal_id == "P9" and rej.message == "too expensive"


def test_property_query_and_unknown_market_events() -> None:
    q = parse_market_event({"eventType": "PropertyQueryEvent", "eventDate": "2024-05-01T10:00:00Z",
                            "propertyQuery": {"queryId": "q", "queriedProperties": ["a.b"]}})
    assert isinstance(q, PropertyQueryEvent) and q.queried_properties == ["a.b"] and q.query_id == "q"
    unknown = parse_market_event({"eventType": "SomethingNewEvent", "eventDate": "x", "payload": 1})
    assert isinstance(unknown, UnknownEvent) and unknown.event_type == "SomethingNewEvent"
    assert unknown.data["payload"] == 1


def test_proposal_event_with_broken_proposal_names_the_field() -> None:
    with pytest.raises(YagnaProtocolError, match="Proposal: field 'proposalId' is missing"):
        parse_market_event({"eventType": "ProposalEvent", "eventDate": "2024-05-01T10:00:00Z",
                            "proposal": {k: v for k, v in proposal_json().items() if k != "proposalId"}})


@pytest.mark.parametrize("tag", ["eventType", "eventtype"])
def test_agreement_events_accept_both_tags(tag: str) -> None:
    base = {"eventDate": "2024-05-01T10:00:00.1Z", "agreementId": "A1"}
    assert isinstance(parse_agreement_event({tag: "AgreementApprovedEvent", **base}), AgreementApprovedEvent)
    rej = parse_agreement_event({tag: "AgreementRejectedEvent", **base, "reason": {"message": "no"}})
    assert isinstance(rej, AgreementRejectedEvent) and rej.reason == {"message": "no"}
    can = parse_agreement_event({tag: "AgreementCancelledEvent", **base})
    assert isinstance(can, AgreementCancelledEvent) and can.reason is None
    term = parse_agreement_event({tag: "AgreementTerminatedEvent", **base, "terminator": "Provider",
                                  "signature": "s", "reason": {"message": "bye", "golem.provider.code": "X"}})
    assert isinstance(term, AgreementTerminatedEvent)
    assert (term.agreement_id, term.terminator, term.message) == ("A1", "Provider", "bye")
    assert term.event_date == dt.datetime(2024, 5, 1, 10, 0, 0, 100000, tzinfo=UTC)


def test_terminated_event_without_terminator_is_an_error() -> None:
    with pytest.raises(YagnaProtocolError, match="AgreementTerminatedEvent: field 'terminator' is missing"):
        parse_agreement_event({"eventType": "AgreementTerminatedEvent", "eventDate": "2024-05-01T10:00:00Z",
                               "agreementId": "A1"})


def test_agreement_model() -> None:
    side = {"properties": {}, "constraints": "", "timestamp": "2024-05-01T10:00:00Z"}
    a = Agreement.from_json({
        "agreementId": "A1", "state": "Approved", "validTo": "2024-05-01T11:00:00Z",
        "timestamp": "2024-05-01T10:00:00Z", "approvedDate": "2024-05-01T10:00:01Z",
        "demand": {**side, "demandId": "D", "requestorId": "0xreq"},
        "offer": {**side, "offerId": "O", "providerId": "0xprov"},
    })
    assert a.state == "Approved" and a.provider_id == "0xprov" and a.approved_date is not None


# -- activity ---------------------------------------------------------------------------------

def test_activity_state_pair_and_back() -> None:
    s = ActivityState.from_json({"state": ["Deployed", "Ready"], "reason": None, "errorMessage": "e"})
    assert (s.state, s.next_state, s.error_message) == ("Deployed", "Ready", "e")
    assert ActivityState("Initialized").to_json() == {"state": ["Initialized", None]}
    with pytest.raises(YagnaProtocolError, match="'state'"):
        ActivityState.from_json({"state": []})


def test_usage_and_create_activity_result() -> None:
    u = ActivityUsage.from_json({"currentUsage": [1, 2.5], "timestamp": 1700000000})
    assert u.current_usage == [1.0, 2.5]
    assert CreateActivityResult.from_json("act-1").activity_id == "act-1"
    assert CreateActivityResult.from_json({"activityId": "act-2"}).activity_id == "act-2"
    with pytest.raises(YagnaProtocolError, match="activityId"):
        CreateActivityResult.from_json({"id": "x"})


def test_command_result_outputs() -> None:
    r = ExeScriptCommandResult.from_json({"index": 0, "eventDate": "2024-05-01T10:00:00Z", "result": "Error",
                                          "stdout": "hi\n", "stderr": [104, 105], "message": "exit 1",
                                          "isBatchFinished": True})
    assert not r.ok and r.stdout == "hi\n" and r.stderr == b"hi" and r.is_batch_finished


@pytest.mark.parametrize("kind,check", [
    ({"started": {"command": {"run": {"entry_point": "/bin/echo"}}}},
     lambda e: e.kind == "started" and e.command == {"run": {"entry_point": "/bin/echo"}}),
    ({"stdout": "chunk"}, lambda e: e.kind == "stdout" and e.output == "chunk"),
    ({"stderr": {"str": "err"}}, lambda e: e.kind == "stderr" and e.output == "err"),
    ({"stdout": {"bin": [0, 255]}}, lambda e: e.output == b"\x00\xff"),
    ({"finished": {"return_code": 3, "message": "boom"}},
     lambda e: e.kind == "finished" and e.return_code == 3 and e.message == "boom"),
    ({"finished": {"returnCode": 0}}, lambda e: e.return_code == 0 and e.message is None),
    ({"progress": {"step": [1, 2], "message": "m"}}, lambda e: e.kind == "progress" and e.progress["step"] == [1, 2]),
])
def test_runtime_event_kinds(kind: Dict[str, Any], check: Any) -> None:
    ev = RuntimeEvent.from_json({"batch_id": "b", "index": 1, "timestamp": "2024-05-01T10:00:00.5", "kind": kind})
    assert ev.batch_id == "b" and ev.index == 1 and ev.timestamp.tzinfo is not None
    assert check(ev)


def test_runtime_event_camel_case_and_missing_return_code() -> None:
    ev = RuntimeEvent.from_json({"batchId": "b", "index": 0, "timestamp": "2024-05-01T10:00:00Z",
                                 "kind": {"stdout": "x"}})
    assert ev.batch_id == "b"
    with pytest.raises(YagnaProtocolError, match="return_code"):
        RuntimeEvent.from_json({"batch_id": "b", "index": 0, "timestamp": "2024-05-01T10:00:00Z",
                                "kind": {"finished": {}}})


def test_provider_activity_event_type_as_object() -> None:
    ev = ActivityEvent.from_json({"eventType": {"CreateActivity": {"requestorPubKey": None}},
                                  "eventDate": "2024-05-01T10:00:00Z", "activityId": "a", "agreementId": "g"})
    assert ev.event_type == "CreateActivity"
    ev2 = ActivityEvent.from_json({"eventType": "DestroyActivity", "eventDate": "2024-05-01T10:00:00Z",
                                   "activityId": "a", "agreementId": "g"})
    assert ev2.event_type == "DestroyActivity"


# -- ExeScript --------------------------------------------------------------------------------

def test_exescript_exact_json() -> None:
    net = DeployNetwork(id="net1", ip="192.168.0.0", mask="255.255.255.0", node_ip="192.168.0.2",
                        nodes={"192.168.0.1": "0xreq", "192.168.0.2": "0xprov"})
    script = [
        Deploy(env={"A": "1"}, net=[net], hosts={"db": "192.168.0.3"}, hostname="w1",
               progress=ProgressArgs(update_interval="1s", update_step=1)),
        Start(),
        Run("/bin/sh", ["-c", "echo hi"], capture=Capture(stdout=CaptureAtEnd(head=1024),
                                                          stderr=CaptureStream(limit=10, format="bin"))),
        Run("/bin/true"),
        Transfer(from_="http://x/a.zip", to="container:/golem/in/", format="zip", depth=0),
        Terminate(),
    ]
    request = exe_script_request(script)
    assert set(request) == {"text"}
    assert json.loads(request["text"]) == [
        {"deploy": {"env": {"A": "1"},
                    "net": [{"id": "net1", "ip": "192.168.0.0", "mask": "255.255.255.0", "nodeIp": "192.168.0.2",
                             "nodes": {"192.168.0.1": "0xreq", "192.168.0.2": "0xprov"}}],
                    "hosts": {"db": "192.168.0.3"}, "hostname": "w1",
                    "progress": {"update-interval": "1s", "update-step": 1}}},
        {"start": {"args": []}},
        {"run": {"entry_point": "/bin/sh", "args": ["-c", "echo hi"],
                 "capture": {"stdout": {"atEnd": {"head": 1024, "format": "str"}},
                             "stderr": {"stream": {"limit": 10, "format": "bin"}}}}},
        {"run": {"entry_point": "/bin/true", "args": []}},
        {"transfer": {"from": "http://x/a.zip", "to": "container:/golem/in/", "format": "zip", "depth": 0}},
        {"terminate": {}},
    ]


def test_capture_parts_are_flat_and_exclusive() -> None:
    assert CaptureAtEnd(head_tail=5).to_json() == {"atEnd": {"headTail": 5, "format": "str"}}
    assert CaptureAtEnd(tail=7, format=None).to_json() == {"atEnd": {"tail": 7}}
    assert Capture.at_end().to_json() == {"stdout": {"atEnd": {"format": "str"}},
                                          "stderr": {"atEnd": {"format": "str"}}}
    with pytest.raises(GolemConfigError, match="at most one"):
        CaptureAtEnd(head=1, tail=2)
    with pytest.raises(GolemConfigError, match="format"):
        CaptureStream(format="utf8")


def test_exescript_refuses_misuse() -> None:
    with pytest.raises(GolemConfigError):
        exe_script_request([])
    with pytest.raises(GolemConfigError, match="list of strings"):
        Run("/bin/echo", "hello")  # type: ignore[arg-type]
    # raw dicts pass through untouched
    assert json.loads(exe_script_request([{"sign": {}}])["text"]) == [{"sign": {}}]


# -- payment ----------------------------------------------------------------------------------

def test_amounts_are_decimals() -> None:
    a = Allocation.from_json({"allocationId": "al", "totalAmount": "10.000000000000000001", "spentAmount": "0",
                              "remainingAmount": "10.000000000000000001", "timestamp": "2024-05-01T10:00:00Z",
                              "paymentPlatform": {"driver": "erc20", "network": "hoodi", "token": "tglm"}})
    assert a.total_amount == Decimal("10.000000000000000001")
    assert a.payment_platform == "erc20-hoodi-tglm"
    with pytest.raises(YagnaProtocolError, match="Allocation: field 'spentAmount' is not a decimal"):
        Allocation.from_json({"allocationId": "al", "totalAmount": "1", "spentAmount": "lots",
                              "remainingAmount": "1", "timestamp": "2024-05-01T10:00:00Z"})


def _doc(**extra: Any) -> Dict[str, Any]:
    data = {"issuerId": "0xp", "recipientId": "0xr", "payeeAddr": "0xp", "payerAddr": "0xr",
            "paymentPlatform": "erc20-hoodi-tglm", "timestamp": "2024-05-01T10:00:00Z",
            "agreementId": "A", "status": "RECEIVED"}
    data.update(extra)
    return data


def test_debit_note_and_invoice() -> None:
    dn = DebitNote.from_json(_doc(debitNoteId="dn", activityId="act", totalAmountDue="0.5",
                                  usageCounterVector=[1.0, 2.0]))
    assert dn.total_amount_due == Decimal("0.5") and dn.usage_counter_vector == [1.0, 2.0]
    inv = Invoice.from_json(_doc(invoiceId="inv", amount="1.25", paymentDueDate="2024-05-02T10:00:00Z",
                                 activityIds=["act"]))
    assert inv.amount == Decimal("1.25") and inv.activity_ids == ["act"]
    with pytest.raises(YagnaProtocolError, match="Invoice: field 'amount' is missing"):
        Invoice.from_json(_doc(invoiceId="inv", paymentDueDate="2024-05-02T10:00:00Z"))


@pytest.mark.parametrize("tag", ["eventType", "eventtype"])
def test_payment_events(tag: str) -> None:
    ev = InvoiceEvent.from_json({tag: "InvoiceSettledEvent", "eventDate": "2024-05-01T10:00:00Z", "invoiceId": "i"})
    assert ev.kind == "Settled" and ev.invoice_id == "i"
    dn = DebitNoteEvent.from_json({tag: "DebitNoteRejectedEvent", "eventDate": "2024-05-01T10:00:00Z",
                                   "debitNoteId": "d", "rejection": {"rejectionReason": "BAD_SERVICE"}})
    assert dn.kind == "Rejected" and dn.rejection == {"rejectionReason": "BAD_SERVICE"}
    with pytest.raises(YagnaProtocolError, match="InvoiceEvent: field 'invoiceId' is missing"):
        InvoiceEvent.from_json({tag: "InvoiceReceivedEvent", "eventDate": "2024-05-01T10:00:00Z"})


def test_market_decoration() -> None:
    d = MarketDecoration.from_json({"properties": [{"key": "golem.com.payment.protocol.version", "value": "3"}],
                                    "constraints": ["(golem.com.payment.protocol.version>1)"]})
    assert d.as_tuple() == ({"golem.com.payment.protocol.version": "3"},
                            ["(golem.com.payment.protocol.version>1)"])


def test_provider_side_agreement_event() -> None:
    from golem_sync.yagna.models import NewAgreementEvent

    side = {"properties": {}, "constraints": "", "timestamp": TS_}
    ev = parse_market_event({"eventType": "AgreementEvent", "eventDate": TS_, "agreement": {
        "agreementId": "A1", "state": "Pending", "validTo": TS_, "timestamp": TS_,
        "demand": {**side, "demandId": "D", "requestorId": "0xreq"},
        "offer": {**side, "offerId": "O", "providerId": "0xprov"}}})
    assert isinstance(ev, NewAgreementEvent) and ev.agreement.agreement_id == "A1"
    with pytest.raises(YagnaProtocolError, match="Agreement: field 'demand' is missing"):
        parse_market_event({"eventType": "AgreementEvent", "eventDate": TS_, "agreement": {"agreementId": "A1"}})


TS_ = "2024-05-01T10:00:00Z"
