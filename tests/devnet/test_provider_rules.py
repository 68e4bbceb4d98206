"""The devnet provider's agreement rules against the real yagna daemon, as a requestor sees them over REST.

They are ya-provider's (agent/provider/src/tasks/task_manager.rs in golemfactory/yagna), and warm
provider pools in a requestor depend on them: one activity at a time per agreement; without
``golem.srv.caps.multi-activity`` the provider closes the agreement after its first activity; an
approved agreement with no activity for ``idle_agreement_timeout`` is broken ("NoActivity"), the
clock re-armed after each destroyed activity; and the agreement is broken at its expiration.

The requestor is the plain-``requests`` one of test_provider.py (no golem_sync requestor code), and
so are its fixtures: one devnet for this module, one provider agent per test on its own subnet.
"""
from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any, Dict, List

import pytest

from golem_sync.devnet.provider.rules import MULTI_ACTIVITY, chrono_utc

# tests/devnet is on sys.path (pytest's rootdir-relative import); the fixtures are re-used as they are.
from test_provider import (  # noqa: F401  (devnet, make_agent, requestor are fixtures)
    ECHO,
    Requestor,
    _iso,
    devnet,
    make_agent,
    requestor,
    wait_until,
)

pytestmark = pytest.mark.devnet


def create_activity_response(requestor: Requestor, agreement_id: str) -> Any:
    return requestor.status("POST", "/activity-api/v1/activity", json={"agreementId": agreement_id},
                            params={"timeout": 10}, timeout=20)


def destroy(requestor: Requestor, activity_id: str) -> None:
    requestor.call("DELETE", f"/activity-api/v1/activity/{activity_id}", params={"timeout": 10}, timeout=20)


def agreement_state(requestor: Requestor, agreement_id: str) -> str:
    return str(requestor.call("GET", f"/market-api/v1/agreements/{agreement_id}")["state"])


def terminated_event(requestor: Requestor, agreement_id: str, since: dt.datetime, timeout: float) -> Dict[str, Any]:
    """The requestor's AgreementTerminatedEvent of one agreement (long-polled, bounded)."""
    after = _iso(since)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no AgreementTerminatedEvent for {agreement_id} within {timeout}s")
        events = requestor.call("GET", "/market-api/v1/agreementEvents",
                                params={"afterTimestamp": after, "timeout": min(1.0, left), "maxEvents": 100},
                                timeout=15) or []
        for event in events:
            if event["eventType"] == "AgreementTerminatedEvent" and event["agreementId"] == agreement_id:
                return dict(event)
            after = max(after, event["eventDate"])


def invoice_of(requestor: Requestor, agreement_id: str, since: dt.datetime, timeout: float = 10) -> Dict[str, Any]:
    """The invoice the requestor received for one agreement."""
    found: List[str] = []

    def received(events: List[Dict[str, Any]]) -> bool:
        for event in events:
            if event["eventType"] == "InvoiceReceivedEvent" and event["invoiceId"] not in found:
                invoice = requestor.call("GET", f"/payment-api/v1/invoices/{event['invoiceId']}")
                if invoice["agreementId"] == agreement_id:
                    found.append(event["invoiceId"])
        return bool(found)

    requestor.payment_events("invoiceEvents", since, received, timeout=timeout)
    return dict(requestor.call("GET", f"/payment-api/v1/invoices/{found[0]}"))


def test_a_second_activity_is_refused_while_one_lives_and_allowed_after_destroy(
        make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent()
    since = dt.datetime.now(dt.timezone.utc)
    agreement_id, draft = requestor.agreement(requestor.demand(subnet))
    assert draft["properties"][MULTI_ACTIVITY] is True
    first = requestor.create_activity(agreement_id)

    started = time.monotonic()
    resp = create_activity_response(requestor, agreement_id)
    # What ya-provider does: the new activity is set Terminated with this reason, so yagna fails the
    # create call ("Activity <id> was abruptly terminated. Reason: ..., message: ...").
    assert resp.status_code == 500, (resp.status_code, resp.text)
    assert "abruptly terminated" in resp.text
    assert "Only single Activity allowed" in resp.text and "Can't create 2 simultaneous Activities." in resp.text
    assert time.monotonic() - started < 5  # refused at once, not the 10 s create timeout
    refused = [a.activity_id for a in agent.activities() if a.state == "Refused"]
    assert len(refused) == 1 and refused[0] in resp.text
    wait_until(lambda: requestor.activity_state(refused[0])[0] == "Terminated", 5, "refused activity Terminated")

    # The live activity is untouched.
    assert requestor.activity_state(first)[0] == "Initialized"
    assert requestor.exec(first, ECHO)[-1]["stdout"].strip() == "hi devnet"
    assert requestor.activity_state(first)[0] == "Ready"
    assert {a.activity_id: a.state for a in agent.activities()}[first] == "Running"

    # Once it is destroyed the agreement takes the next one (multi-activity: it is not closed).
    destroy(requestor, first)
    second = requestor.create_activity(agreement_id)
    assert requestor.exec(second, ECHO)[-1]["stdout"].strip() == "hi devnet"
    assert agreement_state(requestor, agreement_id) == "Approved"
    requestor.terminate(agreement_id)
    invoice = invoice_of(requestor, agreement_id, since)
    # Both served activities (yagna does not keep their order); the refused one is never billed.
    assert sorted(invoice["activityIds"]) == sorted([first, second]), invoice


@pytest.mark.parametrize("side", ["offer", "demand"])
def test_without_multi_activity_the_provider_closes_the_agreement_after_its_first_activity(
        make_agent: Any, requestor: Requestor, side: str) -> None:
    agent, subnet = make_agent(multi_activity=(side != "offer"))
    since = dt.datetime.now(dt.timezone.utc)
    body = requestor.demand(subnet)
    if side == "demand":
        del body["properties"][MULTI_ACTIVITY]  # ya-provider: absent on the demand = single activity
    agreement_id, draft = requestor.agreement(body)
    assert draft["properties"][MULTI_ACTIVITY] is (side != "offer")
    activity_id = requestor.create_activity(agreement_id)
    assert requestor.exec(activity_id, ECHO)[-1]["stdout"].strip() == "hi devnet"
    assert agreement_state(requestor, agreement_id) == "Approved"  # not closed while the activity lives

    destroy(requestor, activity_id)
    event = terminated_event(requestor, agreement_id, since, timeout=5)
    assert event["reason"]["message"] == "Finished with success."
    assert event["reason"]["golem.provider.code"] == "Success"
    assert agreement_state(requestor, agreement_id) == "Terminated"
    assert [a.terminated_by for a in agent.agreements()] == ["Provider"]
    invoice = invoice_of(requestor, agreement_id, since)
    assert invoice["activityIds"] == [activity_id]
    assert Decimal(invoice["amount"]) >= max((d.amount for d in agent.debit_notes()), default=Decimal(0))


def test_idle_timeout_breaks_an_agreement_that_never_gets_an_activity(
        make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent(idle_agreement_timeout=2)
    since = dt.datetime.now(dt.timezone.utc)
    agreement_id, _ = requestor.agreement(requestor.demand(subnet))
    approved = time.monotonic()
    event = terminated_event(requestor, agreement_id, since, timeout=8)
    took = time.monotonic() - approved
    assert event["reason"] == {"message": "No activity created within 2s", "golem.provider.code": "NoActivity"}
    assert 1.5 <= took <= 5, took
    assert agreement_state(requestor, agreement_id) == "Terminated"
    # Invoiced as ya-provider does for every finished agreement: nothing used, nothing owed.
    invoice = invoice_of(requestor, agreement_id, since)
    assert Decimal(invoice["amount"]) == 0 and not invoice.get("activityIds")


def test_idle_timeout_spares_a_live_activity_and_re_arms_after_destroy(
        make_agent: Any, requestor: Requestor) -> None:
    timeout = 3.0
    agent, subnet = make_agent(idle_agreement_timeout=timeout)
    since = dt.datetime.now(dt.timezone.utc)
    agreement_id, _ = requestor.agreement(requestor.demand(subnet))
    activity_id = requestor.create_activity(agreement_id)  # ~1 s: within the idle timeout
    # A live activity stops the idle clock: well past the timeout the agreement still stands.
    time.sleep(timeout + 1.5)
    assert agreement_state(requestor, agreement_id) == "Approved"
    assert requestor.exec(activity_id, ECHO)[-1]["stdout"].strip() == "hi devnet"

    # The clock restarts once the provider has stopped the exe-unit, which is before yagna answers the
    # DELETE (it polls its DB every 750 ms): measure from the request.
    destroying = time.monotonic()
    destroy(requestor, activity_id)
    event = terminated_event(requestor, agreement_id, since, timeout=timeout + 5)
    took = time.monotonic() - destroying
    assert event["reason"] == {"message": "No activity created within 3s", "golem.provider.code": "NoActivity"}
    assert timeout - 0.2 <= took <= timeout + 3, took
    invoice = invoice_of(requestor, agreement_id, since)
    assert invoice["activityIds"] == [activity_id]


def test_idle_timeout_re_armed_after_destroy_is_stopped_by_the_next_activity(
        make_agent: Any, requestor: Requestor) -> None:
    timeout = 3.0
    agent, subnet = make_agent(idle_agreement_timeout=timeout)
    agreement_id, _ = requestor.agreement(requestor.demand(subnet))
    first = requestor.create_activity(agreement_id)
    destroy(requestor, first)
    second = requestor.create_activity(agreement_id)  # within the re-armed idle period
    time.sleep(timeout + 1.0)
    assert agreement_state(requestor, agreement_id) == "Approved"
    assert requestor.exec(second, ECHO)[-1]["stdout"].strip() == "hi devnet"
    requestor.terminate(agreement_id)
    assert agent.wait_for(lambda: len(agent.invoices()) == 1, 10)


def test_the_agreement_is_broken_at_its_expiration_stopping_its_activity(
        make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent()
    since = dt.datetime.now(dt.timezone.utc)
    expiration_ms = int(time.time() * 1000) + 5000
    agreement_id, _ = requestor.agreement(requestor.demand(subnet, {"golem.srv.comp.expiration": expiration_ms}))
    activity_id = requestor.create_activity(agreement_id)
    assert requestor.exec(activity_id, ECHO)[-1]["stdout"].strip() == "hi devnet"
    assert agreement_state(requestor, agreement_id) == "Approved"

    event = terminated_event(requestor, agreement_id, since, timeout=10)
    assert time.time() * 1000 >= expiration_ms - 100  # not before the expiration (clock jitter aside)
    expiration = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=expiration_ms)
    assert event["reason"] == {"message": f"Agreement expired @ {chrono_utc(expiration)}",
                               "golem.provider.code": "Expired"}
    wait_until(lambda: requestor.activity_state(activity_id)[0] == "Terminated", 5,
               "activity Terminated at the agreement's expiration")
    invoice = invoice_of(requestor, agreement_id, since)
    assert invoice["activityIds"] == [activity_id]
    assert [a.state for a in agent.activities()] == ["Stopped"]


def test_an_agreement_already_expired_when_approved_is_broken_at_once(
        make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent()
    since = dt.datetime.now(dt.timezone.utc)
    expiration_ms = int(time.time() * 1000) - 1000
    agreement_id, _ = requestor.agreement(requestor.demand(subnet, {"golem.srv.comp.expiration": expiration_ms}))
    event = terminated_event(requestor, agreement_id, since, timeout=5)
    assert event["reason"]["golem.provider.code"] == "InitializationError"
    assert "Agreement expired before start" in event["reason"]["message"]
    invoice = invoice_of(requestor, agreement_id, since)
    assert Decimal(invoice["amount"]) == 0
