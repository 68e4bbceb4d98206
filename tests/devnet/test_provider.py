"""The devnet provider agent against the real yagna daemon, driven by a plain-``requests`` requestor.

No golem_sync requestor code is used here: the provider must stand on its own.
One devnet (anvil + token + yagna with one provider identity) serves the whole module; each test
starts its own :class:`ProviderAgent` on that identity, with its own faults and its own subnet
(so no offer of another test can match).
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import subprocess
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from golem_sync.devnet.errors import DevnetConfigError
from golem_sync.devnet.exeunit import ExeUnitFaults
from golem_sync.devnet.provider import ProviderAgent, ProviderFaults, ProviderSpec
from golem_sync.devnet.provider.spec import (
    DEBIT_NOTE_ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    PAYMENT_TIMEOUT,
    build_offer,
    counter_properties,
    format_amount,
    price,
    demand_problem,
)

PLATFORM = "erc20-hoodi-tglm"


# -- pure parts (no daemon) ----------------------------------------------------------------------

def test_offer_has_what_requestor_sdks_need() -> None:
    spec = ProviderSpec(price_per_cpu_sec=0.2, price_per_duration_sec=0.1, start_price=0.5)
    offer = build_offer(spec, node_id="0xabc", subnet="sub1", payment_platform=PLATFORM)
    props = offer["properties"]
    assert props["golem.com.payment.protocol.version"] == "3"
    assert props[f"golem.com.payment.platform.{PLATFORM}.address"] == "0xabc"
    vector = props["golem.com.usage.vector"]
    coeffs = props["golem.com.pricing.model.linear.coeffs"]
    assert len(coeffs) == len(vector) + 1 and all(type(c) is float for c in coeffs)
    assert coeffs[vector.index("golem.usage.cpu_sec")] == 0.2
    assert coeffs[vector.index("golem.usage.duration_sec")] == 0.1
    assert coeffs[-1] == 0.5
    assert props["golem.node.debug.subnet"] == "sub1"
    assert props["golem.runtime.name"] == "vm"
    assert props["golem.inf.cpu.cores"] >= 1 and props["golem.inf.cpu.threads"] >= 1
    assert props["golem.inf.mem.gib"] >= 0.5 and props["golem.inf.storage.gib"] >= 2
    assert props.get(DEBIT_NOTE_ACCEPT_TIMEOUT, 120) >= 120
    assert "sub1" in offer["constraints"]
    json.dumps(offer)  # it is sent as JSON


def test_counter_echoes_negotiable_and_drops_mid_agreement_properties_left_out() -> None:
    offer = build_offer(ProviderSpec(), node_id="0xabc", subnet="s", payment_platform=PLATFORM)["properties"]
    full = counter_properties(offer, {DEBIT_NOTE_ACCEPT_TIMEOUT: 240, DEBIT_NOTE_INTERVAL: 7, PAYMENT_TIMEOUT: 150})
    assert (full[DEBIT_NOTE_ACCEPT_TIMEOUT], full[DEBIT_NOTE_INTERVAL], full[PAYMENT_TIMEOUT]) == (240, 7, 150)
    bare = counter_properties(offer, {DEBIT_NOTE_ACCEPT_TIMEOUT: 300})
    assert bare[DEBIT_NOTE_ACCEPT_TIMEOUT] == 300
    assert DEBIT_NOTE_INTERVAL not in bare and PAYMENT_TIMEOUT not in bare
    assert bare["golem.com.payment.protocol.version"] == "3"


def test_demand_problem_names_a_payment_platform_mismatch() -> None:
    assert demand_problem({"golem.com.payment.chosen-platform": PLATFORM}, PLATFORM) is None
    assert demand_problem({}, PLATFORM) is None
    problem = demand_problem({"golem.com.payment.chosen-platform": "erc20-polygon-glm"}, PLATFORM)
    assert problem is not None and "erc20-polygon-glm" in problem


def test_price_and_amount_format() -> None:
    assert price([0.1, 0.2, 0.5], [10.0, 2.0]) == Decimal("1.9")
    assert format_amount(Decimal("1.90")) == "1.9"
    assert format_amount(Decimal("0")) == "0"
    assert format_amount(Decimal("1e-20")) == "0"  # below the token's 18 decimals
    assert "e" not in format_amount(price([0.00005, 0.0001, 0.0], [0.3, 0.01])).lower()
    with pytest.raises(ValueError):
        price([0.1, 0.2], [1.0, 2.0])


@pytest.mark.parametrize("kwargs", [
    {"cpu_threads": 0}, {"mem_gib": -1.0}, {"price_per_cpu_sec": float("nan")}, {"name": ""},
    {"debit_note_interval_sec": 1.5}, {"faults": "none"}, {"capabilities": "vpn"}, {"capabilities": ("",)},
])
def test_spec_validation(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(DevnetConfigError):
        ProviderSpec(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"terminate_agreement_after": 0}, {"debit_note_interval": -1.0}, {"reject_proposals": 1},
    {"exeunit": object()},
])
def test_faults_validation(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(DevnetConfigError):
        ProviderFaults(**kwargs)


# -- against the real daemon ---------------------------------------------------------------------

def wait_until(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll a REST-observable condition (yagna offers the requestor no event for these), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(interval)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Requestor:
    """The requestor side of a test, in plain ``requests`` (independent of golem_sync)."""

    def __init__(self, api_url: str, app_key: str, node_id: str) -> None:
        self.api = api_url.rstrip("/")
        self.node_id = node_id
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {app_key}"

    def call(self, method: str, path: str, *, expect: Tuple[int, ...] = (200, 201, 204), **kw: Any) -> Any:
        kw.setdefault("timeout", 30)
        resp = self.session.request(method, self.api + path, **kw)
        if resp.status_code not in expect:
            raise AssertionError(f"{method} {path} -> {resp.status_code}: {resp.text[:300]}")
        return resp.json() if resp.content.strip() else None

    def status(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.api + path, **kw)

    def demand(self, subnet: str, extra: Optional[Dict[str, Any]] = None,
               decorations: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        props: Dict[str, Any] = {
            "golem.node.debug.subnet": subnet,
            "golem.srv.comp.expiration": int(time.time() * 1000) + 30 * 60 * 1000,
            "golem.com.payment.chosen-platform": PLATFORM,
            f"golem.com.payment.platform.{PLATFORM}.address": self.node_id,
            DEBIT_NOTE_ACCEPT_TIMEOUT: 240,
            "golem.srv.caps.multi-activity": True,
        }
        props.update(extra or {})
        constraints = [f"(golem.node.debug.subnet={subnet})", "(golem.runtime.name=vm)",
                       "(golem.com.pricing.model=linear)"]
        if decorations:
            props.update(decorations.get("properties", {}))
            constraints += [c if c.startswith("(") else f"({c})" for c in decorations.get("constraints", [])]
        return {"properties": props, "constraints": "(&" + "".join(constraints) + ")"}

    def negotiate(self, body: Dict[str, Any], timeout: float = 15.0) -> Iterator[Tuple[str, Any]]:
        """Yields ("rejected", event) / ("draft", proposal) / ("agreement", id); stops after an agreement."""
        demand_id = self.call("POST", "/market-api/v1/demands", json=body)
        deadline = time.monotonic() + timeout
        seen = set()
        try:
            while time.monotonic() < deadline:
                events = self.call("GET", f"/market-api/v1/demands/{demand_id}/events",
                                   params={"timeout": 1, "maxEvents": 20}, timeout=10) or []
                for event in events:
                    if event["eventType"] == "ProposalRejectedEvent":
                        yield "rejected", event
                        continue
                    if event["eventType"] != "ProposalEvent":
                        continue
                    proposal = event["proposal"]
                    if proposal["proposalId"] in seen:
                        continue
                    seen.add(proposal["proposalId"])
                    if proposal["state"] == "Initial":
                        self.call("POST", f"/market-api/v1/demands/{demand_id}/proposals/{proposal['proposalId']}",
                                  json=body)
                    elif proposal["state"] == "Draft":
                        yield "draft", proposal
                        valid_to = _iso(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5))
                        agreement_id = self.call("POST", "/market-api/v1/agreements",
                                                 json={"proposalId": proposal["proposalId"], "validTo": valid_to})
                        self.call("POST", f"/market-api/v1/agreements/{agreement_id}/confirm")
                        yield "agreement", agreement_id
                        return
        finally:
            self.call("DELETE", f"/market-api/v1/demands/{demand_id}")

    def agreement(self, body: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        """Negotiate to an approved agreement; returns its id and the provider's last (Draft) proposal."""
        draft: Dict[str, Any] = {}
        for kind, value in self.negotiate(body):
            if kind == "draft":
                draft = value
            elif kind == "agreement":
                self.call("POST", f"/market-api/v1/agreements/{value}/wait", params={"timeout": 10}, timeout=20)
                return str(value), draft
        raise AssertionError("no agreement within the negotiation timeout")

    def create_activity(self, agreement_id: str) -> str:
        body = self.call("POST", "/activity-api/v1/activity", json={"agreementId": agreement_id},
                         params={"timeout": 10}, timeout=20)
        return str(body["activityId"] if isinstance(body, dict) else body)

    def activity_state(self, activity_id: str) -> List[Optional[str]]:
        return list(self.call("GET", f"/activity-api/v1/activity/{activity_id}/state")["state"])

    def exec(self, activity_id: str, script: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        batch = self.call("POST", f"/activity-api/v1/activity/{activity_id}/exec", json={"text": json.dumps(script)})
        results = self.call("GET", f"/activity-api/v1/activity/{activity_id}/exec/{batch}",
                            params={"timeout": 10, "commandIndex": len(script) - 1}, timeout=20)
        return list(results)

    def terminate(self, agreement_id: str) -> None:
        self.call("POST", f"/market-api/v1/agreements/{agreement_id}/terminate",
                  json={"message": "work done", "golem.requestor.code": "Success"})

    def payment_events(self, kind: str, since: dt.datetime, want: Any, timeout: float) -> List[Dict[str, Any]]:
        """Long-poll ``/debitNoteEvents`` or ``/invoiceEvents`` until ``want(events)`` is true."""
        events: List[Dict[str, Any]] = []
        after = _iso(since)
        deadline = time.monotonic() + timeout
        while not want(events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{kind}: condition not met in {timeout}s; got {events}")
            batch = self.call("GET", f"/payment-api/v1/{kind}",
                              params={"timeout": min(2.0, left), "afterTimestamp": after, "maxEvents": 100},
                              timeout=15) or []
            for event in batch:
                events.append(event)
                after = max(after, event["eventDate"])
        return events


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from golem_sync.devnet.launcher import Devnet

    net = Devnet(providers=[ProviderSpec(name="test-provider")], state_dir=tmp_path_factory.mktemp("devnet"))
    net.up()
    # The launcher's own agent steps aside: every test runs its own agent on this identity.
    for agent in net.agents:
        agent.stop()
    try:
        yield net
    finally:
        net.down()


_subnets = itertools.count(1)


@pytest.fixture
def requestor(devnet: Any) -> Requestor:
    info = devnet.info
    return Requestor(info.api_url, info.app_key, info.requestor_id)


@pytest.fixture
def make_agent(devnet: Any, tmp_path: Path) -> Iterator[Any]:
    """Start a provider agent on the devnet's provider identity, on a subnet of its own."""
    agents: List[ProviderAgent] = []

    def make(exeunit_factory: Any = None, **spec_kwargs: Any) -> Tuple[ProviderAgent, str]:
        info = devnet.info
        prov = info.providers[0]
        subnet = f"t{next(_subnets)}-{uuid.uuid4().hex[:6]}"
        agent = ProviderAgent(
            spec=ProviderSpec(name="test-provider", **spec_kwargs), api_url=info.api_url,
            app_key=prov.app_key, node_id=prov.node_id, gsb_url=info.gsb_url, subnet=subnet,
            payment_platform=PLATFORM, work_root=tmp_path / f"agent{len(agents)}",
            exeunit_factory=exeunit_factory,
        )
        agents.append(agent)
        agent.start()
        return agent, subnet

    yield make
    for agent in agents:
        agent.stop()


ECHO = [
    {"deploy": {"env": {"GREETING": "hi"}, "hostname": "h1", "hosts": {}, "net": []}},
    {"start": {"args": []}},
    {"run": {"entry_point": "/bin/sh", "args": ["-c", "echo $GREETING devnet"],
             "capture": {"stdout": {"atEnd": {}}, "stderr": {"atEnd": {}}}}},
]


@pytest.mark.devnet
def test_negotiation_echoes_requestor_terms_and_reaches_approved(make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent()
    started = time.monotonic()
    agreement_id, draft = requestor.agreement(requestor.demand(
        subnet, {DEBIT_NOTE_INTERVAL: 30, PAYMENT_TIMEOUT: 150, DEBIT_NOTE_ACCEPT_TIMEOUT: 180}))
    took = time.monotonic() - started
    props = draft["properties"]
    assert (props[DEBIT_NOTE_INTERVAL], props[PAYMENT_TIMEOUT], props[DEBIT_NOTE_ACCEPT_TIMEOUT]) == (30, 150, 180)
    assert requestor.call("GET", f"/market-api/v1/agreements/{agreement_id}")["state"] == "Approved"
    assert agent.wait_for(lambda: [a.state for a in agent.agreements()] == ["Approved"], 5)
    # A requestor that does not ask for mid-agreement payments does not get them.
    second_id, second = requestor.agreement(requestor.demand(subnet))
    assert DEBIT_NOTE_INTERVAL not in second["properties"] and PAYMENT_TIMEOUT not in second["properties"]
    assert second_id != agreement_id
    assert agent.wait_for(lambda: sorted(a.state for a in agent.agreements()) == ["Approved", "Approved"], 5)
    assert took < 5.0, f"negotiation to Approved took {took:.2f}s"
    for aid in (agreement_id, second_id):
        requestor.terminate(aid)


@pytest.mark.devnet
def test_activity_runs_and_agreement_termination_stops_it_and_invoice_settles(
        make_agent: Any, requestor: Requestor, devnet: Any) -> None:
    agent, subnet = make_agent(start_price=0.25)
    since = dt.datetime.now(dt.timezone.utc)
    allocation = requestor.call("POST", "/payment-api/v1/allocations", json={
        "address": requestor.node_id, "paymentPlatform": PLATFORM, "totalAmount": "5", "makeDeposit": False})
    allocation_id = allocation["allocationId"]
    decorations = requestor.call("GET", "/payment-api/v1/demandDecorations",
                                 params={"allocationIds": allocation_id})
    agreement_id, _ = requestor.agreement(requestor.demand(subnet, decorations=decorations))
    activity_id = requestor.create_activity(agreement_id)
    assert agent.wait_for(lambda: [a.state for a in agent.activities()] == ["Running"], 5)
    results = requestor.exec(activity_id, ECHO)
    assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"]
    assert results[2]["stdout"].strip() == "hi devnet"
    assert requestor.activity_state(activity_id)[0] == "Ready"

    # golem-js style: no DestroyActivity, only the agreement ends; the provider ends the activity.
    requestor.terminate(agreement_id)
    assert agent.wait_for(lambda: [a.state for a in agent.activities()] == ["Stopped"], 5)
    wait_until(lambda: requestor.activity_state(activity_id)[0] == "Terminated", 15,
               "activity Terminated after the agreement ended")

    events = requestor.payment_events("invoiceEvents", since, lambda evs: any(
        e["eventType"] == "InvoiceReceivedEvent" for e in evs), timeout=10)
    invoice_id = next(e["invoiceId"] for e in events if e["eventType"] == "InvoiceReceivedEvent")
    invoice = requestor.call("GET", f"/payment-api/v1/invoices/{invoice_id}")
    assert invoice["agreementId"] == agreement_id and invoice["activityIds"] == [activity_id]
    assert Decimal(invoice["amount"]) >= Decimal("0.25")  # the start price at least
    assert [i.invoice_id for i in agent.invoices()] == [invoice_id]

    requestor.call("POST", f"/payment-api/v1/invoices/{invoice_id}/accept",
                   json={"totalAmountAccepted": invoice["amount"], "allocationId": allocation_id})
    requestor.call("POST", f"/payment-api/v1/batchCycle/{PLATFORM}/now")
    wait_until(lambda: requestor.call("GET", f"/payment-api/v1/invoices/{invoice_id}")["status"] == "SETTLED",
               15, "invoice SETTLED")
    token = devnet.chain.token_balance(devnet.info.token_address, devnet.info.providers[0].node_id)
    assert token >= int(Decimal(invoice["amount"]) * 10**18)


@pytest.mark.devnet
def test_debit_notes_follow_the_negotiated_interval(make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent()
    since = dt.datetime.now(dt.timezone.utc)
    agreement_id, _ = requestor.agreement(requestor.demand(subnet, {DEBIT_NOTE_INTERVAL: 2, PAYMENT_TIMEOUT: 120}))
    activity_id = requestor.create_activity(agreement_id)
    events = requestor.payment_events("debitNoteEvents", since, lambda evs: sum(
        e["eventType"] == "DebitNoteReceivedEvent" for e in evs) >= 3, timeout=12)
    notes = [requestor.call("GET", f"/payment-api/v1/debitNotes/{e['debitNoteId']}")
             for e in events if e["eventType"] == "DebitNoteReceivedEvent"]
    assert {n["activityId"] for n in notes} == {activity_id}
    amounts = [Decimal(n["totalAmountDue"]) for n in notes]
    assert amounts == sorted(amounts) and amounts[-1] > 0
    assert all(n.get("paymentDueDate") for n in notes)  # payable: a payment timeout was negotiated
    sent = [d.sent_at for d in agent.debit_notes()]
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert gaps and all(1.8 <= g <= 3.5 for g in gaps), gaps
    requestor.terminate(agreement_id)
    invoices = requestor.payment_events("invoiceEvents", since, lambda evs: any(
        e["eventType"] == "InvoiceReceivedEvent" for e in evs), timeout=10)
    invoice_id = next(e["invoiceId"] for e in invoices if e["eventType"] == "InvoiceReceivedEvent")
    invoice = requestor.call("GET", f"/payment-api/v1/invoices/{invoice_id}")
    assert Decimal(invoice["amount"]) >= max(Decimal(d.amount) for d in agent.debit_notes())


@pytest.mark.devnet
def test_fault_reject_proposals(make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent(faults=ProviderFaults(reject_proposals=True))
    outcomes = list(itertools.islice(
        ((k, v) for k, v in requestor.negotiate(requestor.demand(subnet), timeout=6) if k != "draft"), 1))
    assert outcomes and outcomes[0][0] == "rejected"
    assert "reject" in outcomes[0][1]["reason"]["message"]
    assert agent.agreements() == []


@pytest.mark.devnet
def test_proposal_with_another_payment_platform_is_rejected_with_a_reason(
        make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent()
    other = "erc20-polygon-glm"
    body = requestor.demand(subnet, {"golem.com.payment.chosen-platform": other,
                                     f"golem.com.payment.platform.{other}.address": requestor.node_id})
    outcomes = [(k, v) for k, v in requestor.negotiate(body, timeout=2.5)]
    assert [k for k, _ in outcomes] == ["rejected"]
    assert "payment platform" in outcomes[0][1]["reason"]["message"]
    assert agent.agreements() == []


@pytest.mark.devnet
def test_fault_never_approve_makes_the_requestor_wait_time_out(make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent(faults=ProviderFaults(never_approve=True))
    agreement_id = next(v for k, v in requestor.negotiate(requestor.demand(subnet)) if k == "agreement")
    started = time.monotonic()
    resp = requestor.status("POST", f"/market-api/v1/agreements/{agreement_id}/wait", params={"timeout": 2})
    assert resp.status_code == 408
    assert time.monotonic() - started >= 1.5
    assert requestor.call("GET", f"/market-api/v1/agreements/{agreement_id}")["state"] == "Pending"
    assert [a.state for a in agent.agreements()] == ["Pending"]


@pytest.mark.devnet
def test_fault_provider_terminates_the_agreement_mid_activity(make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent(faults=ProviderFaults(terminate_agreement_after=1.5))
    since = dt.datetime.now(dt.timezone.utc)
    agreement_id, _ = requestor.agreement(requestor.demand(subnet))
    activity_id = requestor.create_activity(agreement_id)
    assert requestor.exec(activity_id, ECHO[:2])[-1]["result"] == "Ok"
    assert agent.wait_for(lambda: [a.state for a in agent.agreements()] == ["Terminated"], 6)
    agreement = requestor.call("GET", f"/market-api/v1/agreements/{agreement_id}")
    assert agreement["state"] == "Terminated"
    events = requestor.call("GET", "/market-api/v1/agreementEvents",
                            params={"afterTimestamp": _iso(since), "timeout": 0, "maxEvents": 100})
    terminated = [e for e in events if e["eventType"] == "AgreementTerminatedEvent"
                  and e["agreementId"] == agreement_id]
    assert terminated and "terminate_agreement_after" in terminated[0]["reason"]["message"]
    wait_until(lambda: requestor.activity_state(activity_id)[0] == "Terminated", 15,
               "activity Terminated after the provider ended the agreement")
    requestor.payment_events("invoiceEvents", since, lambda evs: any(
        e["eventType"] == "InvoiceReceivedEvent" for e in evs), timeout=10)


@pytest.mark.devnet
def test_fault_exeunit_crash_makes_the_activity_unresponsive(make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent(faults=ProviderFaults(exeunit=ExeUnitFaults(crash_after=0.5)))
    agreement_id, _ = requestor.agreement(requestor.demand(subnet))
    activity_id = requestor.create_activity(agreement_id)
    wait_until(lambda: requestor.activity_state(activity_id)[0] in ("Unresponsive", "Terminated"), 12,
               "activity Unresponsive/Terminated after the exe-unit crashed")
    resp = requestor.status("POST", f"/activity-api/v1/activity/{activity_id}/exec",
                            json={"text": json.dumps(ECHO[:1])})
    assert resp.status_code >= 400
    requestor.terminate(agreement_id)


@pytest.mark.devnet
def test_fault_too_frequent_debit_notes(make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent(faults=ProviderFaults(debit_note_interval=0.5))
    since = dt.datetime.now(dt.timezone.utc)
    agreement_id, draft = requestor.agreement(requestor.demand(subnet, {DEBIT_NOTE_INTERVAL: 60, PAYMENT_TIMEOUT: 120}))
    assert draft["properties"][DEBIT_NOTE_INTERVAL] == 60  # the agreement says 60 s ...
    activity_id = requestor.create_activity(agreement_id)
    started = time.monotonic()
    requestor.payment_events("debitNoteEvents", since, lambda evs: sum(
        e["eventType"] == "DebitNoteReceivedEvent" for e in evs) >= 3, timeout=6)
    assert time.monotonic() - started < 5  # ... yet three arrive within seconds
    assert {d.activity_id for d in agent.debit_notes()} == {activity_id}
    requestor.terminate(agreement_id)


@pytest.mark.devnet
def test_stop_withdraws_the_offer_and_joins_every_thread(devnet: Any, tmp_path: Path) -> None:
    info = devnet.info
    prov = info.providers[0]
    before = set(threading.enumerate())
    agent = ProviderAgent(spec=ProviderSpec(name="stopper"), api_url=info.api_url, app_key=prov.app_key,
                          node_id=prov.node_id, gsb_url=info.gsb_url, subnet="stop-test", work_root=tmp_path)
    agent.start()
    offer_id = agent.offer_id
    headers = {"Authorization": f"Bearer {prov.app_key}"}
    offers = requests.get(info.api_url + "/market-api/v1/offers", headers=headers, timeout=10).json()
    assert offer_id in [o["offerId"] for o in offers]
    started = time.monotonic()
    agent.stop(timeout=10)
    assert time.monotonic() - started < 5
    offers = requests.get(info.api_url + "/market-api/v1/offers", headers=headers, timeout=10).json()
    assert offer_id not in [o["offerId"] for o in offers]
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


@pytest.mark.devnet
def test_one_offer_serves_concurrent_agreements_and_destroy_stops_only_that_activity(
        make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent()
    first, _ = requestor.agreement(requestor.demand(subnet))
    second, _ = requestor.agreement(requestor.demand(subnet))
    activities: Dict[str, str] = {}

    def create(agreement_id: str) -> None:
        activities[agreement_id] = requestor.create_activity(agreement_id)

    creators = [threading.Thread(target=create, args=(a,)) for a in (first, second)]
    for thread in creators:
        thread.start()
    for thread in creators:
        thread.join(20)
    assert set(activities) == {first, second}
    assert len({a.agreement_id for a in agent.agreements()}) == 2
    for activity_id in activities.values():
        assert requestor.exec(activity_id, ECHO)[-1]["stdout"].strip() == "hi devnet"
    # yapapi style: the requestor destroys its activity; only that exe-unit stops.
    requestor.call("DELETE", f"/activity-api/v1/activity/{activities[first]}", params={"timeout": 10}, timeout=20)
    assert agent.wait_for(lambda: {a.activity_id: a.state for a in agent.activities()} == {
        activities[first]: "Stopped", activities[second]: "Running"}, 5)
    assert agent.exeunit(activities[first]).stopped and not agent.exeunit(activities[second]).stopped
    assert requestor.exec(activities[second], ECHO[2:])[-1]["result"] == "Ok"
    for agreement_id in (first, second):
        requestor.terminate(agreement_id)
    assert agent.wait_for(lambda: len(agent.invoices()) == 2, 10)


@pytest.mark.devnet
def test_unaccepted_debit_notes_make_the_provider_terminate(make_agent: Any, requestor: Requestor) -> None:
    agent, subnet = make_agent()
    since = dt.datetime.now(dt.timezone.utc)
    agreement_id, _ = requestor.agreement(requestor.demand(
        subnet, {DEBIT_NOTE_INTERVAL: 1, PAYMENT_TIMEOUT: 120, DEBIT_NOTE_ACCEPT_TIMEOUT: 2}))
    activity_id = requestor.create_activity(agreement_id)
    # The requestor never accepts: like ya-provider, the provider ends the agreement.
    assert agent.wait_for(lambda: [a.state for a in agent.agreements()] == ["Terminated"], 10)
    events = requestor.call("GET", "/market-api/v1/agreementEvents",
                            params={"afterTimestamp": _iso(since), "timeout": 0, "maxEvents": 100})
    reasons = [e.get("reason") or {} for e in events
               if e["eventType"] == "AgreementTerminatedEvent" and e["agreementId"] == agreement_id]
    assert reasons and reasons[0].get("golem.provider.code") == "DebitNotesDeadline"
    wait_until(lambda: requestor.activity_state(activity_id)[0] == "Terminated", 15, "activity Terminated")


@pytest.mark.devnet
def test_offer_is_published_again_when_yagna_expires_it(tmp_path: Path) -> None:
    from golem_sync.devnet.chain import DEV_ACCOUNTS
    from golem_sync.devnet.yagna import YagnaNode

    # A node whose market expires subscriptions after 2 s instead of yagna's default hour.
    node = YagnaNode(tmp_path / "yagna", requestor_secret=DEV_ACCOUNTS[0].private_key,
                     env={"DEFAULT_SUBSCRIPTION_TTL": "2s"})
    node.start()
    try:
        prov = node.add_identity("prov", DEV_ACCOUNTS[1].private_key)
        node.restart()
        agent = ProviderAgent(spec=ProviderSpec(), api_url=node.api_url, app_key=prov.app_key,
                              node_id=prov.node_id, gsb_url=node.gsb_url, subnet="ttl", work_root=tmp_path / "w")
        agent.start()
        try:
            first = agent.offer_id
            assert agent.wait_for(lambda: agent.offer_id not in (None, first), 8), "offer not published again"
            assert node.requestor_id is not None
            requestor = Requestor(node.api_url, node.app_key, node.requestor_id)
            agreement_id, _ = requestor.agreement(requestor.demand("ttl"))
            assert requestor.call("GET", f"/market-api/v1/agreements/{agreement_id}")["state"] == "Approved"
        finally:
            agent.stop()
    finally:
        node.stop()


@pytest.mark.devnet
def test_exeunit_that_cannot_start_fails_the_create_call_at_once(make_agent: Any, requestor: Requestor) -> None:
    def broken_exeunit(**kwargs: Any) -> Any:
        raise RuntimeError("runtime binary missing")

    agent, subnet = make_agent(exeunit_factory=broken_exeunit)
    agreement_id, _ = requestor.agreement(requestor.demand(subnet))
    started = time.monotonic()
    resp = requestor.status("POST", "/activity-api/v1/activity", json={"agreementId": agreement_id},
                            params={"timeout": 10}, timeout=20)
    assert resp.status_code >= 400 and "runtime binary missing" in resp.text
    assert time.monotonic() - started < 5  # not the 10 s create timeout
    assert [a.state for a in agent.activities()] == ["Failed"]
    requestor.terminate(agreement_id)


# -- unmodified requestor SDKs (opt-in: they are not dependencies of golem_sync) -------------------

#: yapapi and golem-js spawn `gftp server` at start even when a job transfers no files. This stand-in
#: answers the JSON-RPC calls they make at start and stop; jobs with gftp transfers need more.
GFTP_STANDIN = """#!/usr/bin/env python3
import json, sys
for line in sys.stdin:
    if not line.strip():
        continue
    req = json.loads(line)
    result = {"version": "0.14.0", "close": True}.get(req.get("method"))
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "result": result}) + "\\n")
    sys.stdout.flush()
    if req.get("method") == "shutdown":
        break
"""

YAPAPI_JOB = """
import asyncio, os
from datetime import timedelta
from yapapi import Golem, Task
from yapapi.payload import vm

async def worker(ctx, tasks):
    async for task in tasks:
        script = ctx.new_script()
        future = script.run("/bin/sh", "-c", f"echo task {task.data} ok")
        yield script
        task.accept_result(result=(await future).stdout)

async def main():
    package = await vm.repo(image_tag="golem/alpine:latest", repository_url=os.environ["GOLEM_REGISTRY_URL"])
    async with Golem(budget=1.0, subnet_tag=os.environ["YAGNA_SUBNET"]) as golem:
        async for task in golem.execute_tasks(worker, [Task(data=i) for i in range(3)], payload=package,
                                              timeout=timedelta(minutes=2)):
            print("RESULT", task.result.strip(), flush=True)

asyncio.run(main())
"""

GOLEM_JS_JOB = """
import { TaskExecutor } from "@golem-sdk/golem-js";
const executor = await TaskExecutor.create({
  package: "golem/alpine:latest",
  yagnaOptions: { apiKey: process.env.YAGNA_APPKEY, basePath: process.env.YAGNA_API_URL },
  subnetTag: process.env.YAGNA_SUBNET,
  payment: { network: process.env.YAGNA_PAYMENT_NETWORK, driver: "erc20" },
});
try {
  const out = await Promise.all([0, 1].map((i) => executor.run(async (ctx) => (await ctx.run(`echo task ${i} ok`)).stdout)));
  for (const line of out) console.log("RESULT", line.trim());
} finally {
  await executor.shutdown();
}
"""


def _run_sdk_job(devnet: Any, subnet: str, tmp_path: Path, argv: List[str], cwd: Optional[str] = None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gftp").write_text(GFTP_STANDIN)
    (bin_dir / "gftp").chmod(0o755)
    env = dict(os.environ)
    env.update(devnet.info.env())
    env["YAGNA_SUBNET"] = subnet
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    # subprocess.run kills the job (by pid) if it overruns.
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.devnet
@pytest.mark.skipif(not os.environ.get("GOLEM_TEST_YAPAPI_PYTHON"),
                    reason="set GOLEM_TEST_YAPAPI_PYTHON to a python with yapapi==0.13.1 installed")
def test_unmodified_yapapi_runs_a_job(make_agent: Any, devnet: Any, tmp_path: Path) -> None:
    agent, subnet = make_agent()
    job = tmp_path / "job.py"
    job.write_text(YAPAPI_JOB)
    out = _run_sdk_job(devnet, subnet, tmp_path, [os.environ["GOLEM_TEST_YAPAPI_PYTHON"], str(job)])
    assert sorted(line for line in out.splitlines() if line.startswith("RESULT")) == [
        "RESULT task 0 ok", "RESULT task 1 ok", "RESULT task 2 ok"]
    assert agent.invoices() and all(a.state == "Terminated" for a in agent.agreements())


@pytest.mark.devnet
@pytest.mark.skipif(not os.environ.get("GOLEM_TEST_GOLEM_JS_DIR"),
                    reason="set GOLEM_TEST_GOLEM_JS_DIR to a dir with node_modules/@golem-sdk/golem-js 2.x")
def test_unmodified_golem_js_runs_a_job(make_agent: Any, devnet: Any, tmp_path: Path) -> None:
    agent, subnet = make_agent()
    js_dir = os.environ["GOLEM_TEST_GOLEM_JS_DIR"]
    job = Path(js_dir) / f"golem-sync-devnet-job-{uuid.uuid4().hex[:8]}.mjs"  # resolves its node_modules
    job.write_text(GOLEM_JS_JOB)
    try:
        out = _run_sdk_job(devnet, subnet, tmp_path, ["node", str(job)], cwd=js_dir)
    finally:
        job.unlink()
    assert sorted(line for line in out.splitlines() if line.startswith("RESULT")) == [
        "RESULT task 0 ok", "RESULT task 1 ok"]
    assert agent.wait_for(lambda: len(agent.invoices()) >= 1, 10)
