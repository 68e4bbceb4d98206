"""MarketApi: every call's method, path, query and body, and how answers are parsed."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import responses

from golem_sync.errors import YagnaNotFoundError, YagnaProtocolError, YagnaTimeoutError
from golem_sync.yagna import YagnaClient
from golem_sync.yagna.models import (
    AgreementTerminatedEvent,
    DemandOfferBase,
    ProposalEvent,
    ProposalRejectedEvent,
    UnknownEvent,
)

M = "http://127.0.0.1:7465/market-api/v1"
TS = "2024-05-01T10:00:00Z"
PROPOSAL = {"proposalId": "P2", "issuerId": "0xprov", "state": "Initial", "timestamp": TS,
            "properties": {"a": 1}, "constraints": "()"}
DEMAND = DemandOfferBase(properties={"golem.x": 1}, constraints="(golem.y=2)")


def test_subscribe_and_unsubscribe_demand(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.post(f"{M}/demands", json="D1", status=201)
    mocked.delete(f"{M}/demands/D1", status=204)
    assert client.market.subscribe_demand(DEMAND) == "D1"
    assert sent(0) == ("POST", "/market-api/v1/demands", {}, {"properties": {"golem.x": 1}, "constraints": "(golem.y=2)"})
    client.market.unsubscribe_demand("D1")
    assert sent(1)[:2] == ("DELETE", "/market-api/v1/demands/D1")


def test_list_demands_as_yagna_0_17_6_answers(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.get(f"{M}/demands", json=[{"demandId": "D1", "requestorId": "0xreq", "timestamp": "2026-12-02T17:30:59.273385155Z",
                                      "properties": {"golem.x.nested.a": 1, "golem.srv.comp.expiration": 1796233259269},
                                      "constraints": "(&\n\t(golem.y=2))"}])
    [demand] = client.market.list_demands()
    assert sent() == ("GET", "/market-api/v1/demands", {}, None)
    assert (demand.demand_id, demand.requestor_id, demand.constraints) == ("D1", "0xreq", "(&\n\t(golem.y=2))")
    assert demand.properties == {"golem.x.nested.a": 1, "golem.srv.comp.expiration": 1796233259269}


def test_subscribe_demand_with_a_non_string_answer(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.post(f"{M}/demands", json={"id": "D1"}, status=201)
    with pytest.raises(YagnaProtocolError, match="demand id"):
        client.market.subscribe_demand({"properties": {}, "constraints": ""})


def test_collect_demand_events(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.get(f"{M}/demands/D1/events", json=[
        {"eventType": "ProposalEvent", "eventDate": TS, "proposal": PROPOSAL},
        {"eventType": "ProposalRejectedEvent", "eventDate": TS, "proposalId": "P1", "reason": {"message": "no"}},
        {"eventType": "FutureEvent", "eventDate": TS},
    ])
    events = client.market.collect_demand_events("D1", timeout=3.0, max_events=7)
    assert sent() == ("GET", "/market-api/v1/demands/D1/events", {"timeout": "3.0", "maxEvents": "7"}, None)
    assert [type(e) for e in events] == [ProposalEvent, ProposalRejectedEvent, UnknownEvent]
    assert isinstance(events[0], ProposalEvent) and events[0].proposal.proposal_id == "P2"


def test_collect_demand_events_408_is_empty(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{M}/demands/D1/events", status=408, json={"message": "timeout"})
    assert client.market.collect_demand_events("D1", timeout=0.1) == []


def test_collect_demand_events_on_unknown_demand(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{M}/demands/D9/events", status=404, json={"message": "Subscription [D9] not found"})
    with pytest.raises(YagnaNotFoundError) as info:
        client.market.collect_demand_events("D9")
    assert info.value.status == 404 and "D9" in (info.value.detail or "")


def test_proposal_calls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.post(f"{M}/demands/D1/proposals/P2", json="P3", status=201)
    mocked.post(f"{M}/demands/D1/proposals/P4/reject", status=204)
    mocked.post(f"{M}/demands/D1/proposals/P5/reject", status=204)
    mocked.get(f"{M}/demands/D1/proposals/P2", json=PROPOSAL)
    assert client.market.counter_proposal("D1", "P2", DEMAND) == "P3"
    assert sent(0)[3] == DEMAND.to_json()
    client.market.reject_proposal("D1", "P4", "too expensive")
    assert sent(1) == ("POST", "/market-api/v1/demands/D1/proposals/P4/reject", {}, {"message": "too expensive"})
    client.market.reject_proposal("D1", "P5", {"message": "m", "golem.requestor.code": "X"})
    assert sent(2)[3] == {"message": "m", "golem.requestor.code": "X"}
    assert client.market.get_proposal("D1", "P2").issuer_id == "0xprov"


def test_ids_are_escaped_in_paths(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.delete(f"{M}/demands/a%2Fb%3Fc", status=204)
    client.market.unsubscribe_demand("a/b?c")
    assert sent()[1] == "/market-api/v1/demands/a%2Fb%3Fc"


def test_agreement_calls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    valid_to = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    mocked.post(f"{M}/agreements", json="A1", status=201)
    mocked.post(f"{M}/agreements/A1/confirm", status=204)
    mocked.post(f"{M}/agreements/A1/cancel", status=204)
    mocked.post(f"{M}/agreements/A1/terminate", status=204)
    assert client.market.create_agreement("P3", valid_to) == "A1"
    assert sent(0)[3] == {"proposalId": "P3", "validTo": "2024-05-01T12:00:00.000000Z"}
    client.market.confirm_agreement("A1", app_session_id="sess")
    assert sent(1) == ("POST", "/market-api/v1/agreements/A1/confirm", {"appSessionId": "sess"}, None)
    client.market.cancel_agreement("A1", "changed my mind")
    assert sent(2)[3] == {"message": "changed my mind"}
    client.market.terminate_agreement("A1", {"message": "done", "golem.requestor.code": "Success"})
    assert sent(3)[3] == {"message": "done", "golem.requestor.code": "Success"}


def test_create_agreement_needs_aware_valid_to(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    from golem_sync.errors import GolemConfigError

    with pytest.raises(GolemConfigError):
        client.market.create_agreement("P3", dt.datetime(2024, 5, 1, 12, 0))


@pytest.mark.parametrize("status,body,expected", [
    (204, None, "Approved"),
    (408, {"message": "Timeout while waiting for approval"}, "Pending"),
    (410, {"message": "Agreement [A1] rejected by Provider"}, "Rejected"),
    (410, {"message": "Agreement [A1] cancelled"}, "Cancelled"),
    (410, {"message": "Agreement [A1] expired"}, "Expired"),
])
def test_wait_for_approval(client: YagnaClient, mocked: responses.RequestsMock, sent: Any,
                           status: int, body: Any, expected: str) -> None:
    mocked.post(f"{M}/agreements/A1/wait", status=status, json=body)
    assert client.market.wait_for_approval("A1", timeout=2.5) == expected
    assert sent(0)[2] == {"timeout": "2.5"}


def test_wait_for_approval_410_without_a_hint_reads_the_state(
        client: YagnaClient, mocked: responses.RequestsMock) -> None:
    side = {"properties": {}, "constraints": "", "timestamp": TS}
    mocked.post(f"{M}/agreements/A1/wait", status=410, json={"message": "gone"})
    mocked.get(f"{M}/agreements/A1", json={
        "agreementId": "A1", "state": "Terminated", "validTo": TS, "timestamp": TS,
        "demand": {**side, "demandId": "D", "requestorId": "r"},
        "offer": {**side, "offerId": "O", "providerId": "p"}})
    assert client.market.wait_for_approval("A1") == "Terminated"


def test_wait_for_approval_on_unknown_agreement(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.post(f"{M}/agreements/A9/wait", status=404, json={"message": "not found"})
    with pytest.raises(YagnaNotFoundError):
        client.market.wait_for_approval("A9")


def test_collect_agreement_events(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    after = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc)
    mocked.get(f"{M}/agreementEvents", json=[
        {"eventtype": "AgreementTerminatedEvent", "eventDate": TS, "agreementId": "A1",
         "terminator": "Provider", "signature": "", "reason": {"message": "bye"}}])
    mocked.get(f"{M}/agreementEvents", status=408)
    events = client.market.collect_agreement_events(timeout=2.0, after_timestamp=after, max_events=100,
                                                    app_session_id="s")
    assert sent(0)[2] == {"timeout": "2.0", "afterTimestamp": "2024-05-01T10:00:00.000000Z",
                          "maxEvents": "100", "appSessionId": "s"}
    assert isinstance(events[0], AgreementTerminatedEvent) and events[0].message == "bye"
    assert client.market.collect_agreement_events(timeout=0.1) == []
    assert sent(1)[2] == {"timeout": "0.1", "maxEvents": "10"}


def test_provider_calls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.post(f"{M}/offers", json="O1", status=201)
    mocked.get(f"{M}/offers/O1/events", json=[{"eventType": "ProposalEvent", "eventDate": TS, "proposal": PROPOSAL}])
    mocked.post(f"{M}/offers/O1/proposals/P2", json="P6", status=201)
    mocked.post(f"{M}/offers/O1/proposals/P7/reject", status=204)
    mocked.post(f"{M}/agreements/A1/approve", status=204)
    mocked.post(f"{M}/agreements/A2/approve", status=408, json={"message": "timeout"})
    mocked.post(f"{M}/agreements/A3/reject", status=204)
    mocked.delete(f"{M}/offers/O1", status=204)
    assert client.market.subscribe_offer(DEMAND) == "O1"
    assert sent(0)[:2] == ("POST", "/market-api/v1/offers")
    assert isinstance(client.market.collect_offer_events("O1", timeout=1.0)[0], ProposalEvent)
    assert sent(1)[2] == {"timeout": "1.0", "maxEvents": "10"}
    assert client.market.counter_offer_proposal("O1", "P2", DEMAND) == "P6"
    client.market.reject_offer_proposal("O1", "P7", "no")
    assert client.market.approve_agreement("A1", timeout=4.0, app_session_id="s") is True
    assert sent(4)[2] == {"timeout": "4.0", "appSessionId": "s"}
    assert client.market.approve_agreement("A2", timeout=0.5) is False
    client.market.reject_agreement("A3", "busy")
    assert sent(6)[3] == {"message": "busy"}
    client.market.unsubscribe_offer("O1")


def test_408_outside_long_polls_is_a_timeout_error(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{M}/demands/D1/proposals/P1", status=408, json={"message": "slow"})
    with pytest.raises(YagnaTimeoutError) as info:
        client.market.get_proposal("D1", "P1")
    assert info.value.status == 408
