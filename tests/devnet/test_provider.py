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
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from golem_sync.errors import GolemConfigError
from golem_sync.devnet.exeunit import ExeUnitFaults
from golem_sync.devnet.provider import ProviderAgent, ProviderFaults, ProviderSpec
from golem_sync.devnet.provider_spec import (
    DEBIT_NOTE_ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    PAYMENT_TIMEOUT,
    build_offer,
    counter_properties,
    format_amount,
    price,
)

PLATFORM = "erc20-holesky-tglm"


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
    {"debit_note_interval_sec": 1.5}, {"faults": "none"},
])
def test_spec_validation(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(GolemConfigError):
        ProviderSpec(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"terminate_agreement_after": 0}, {"debit_note_interval": -1.0}, {"reject_proposals": 1},
    {"exeunit": object()},
])
def test_faults_validation(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(GolemConfigError):
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

    def make(**spec_kwargs: Any) -> Tuple[ProviderAgent, str]:
        info = devnet.info
        prov = info.providers[0]
        subnet = f"t{next(_subnets)}-{uuid.uuid4().hex[:6]}"
        agent = ProviderAgent(
            spec=ProviderSpec(name="test-provider", **spec_kwargs), api_url=info.api_url,
            app_key=prov.app_key, node_id=prov.node_id, gsb_url=info.gsb_url, subnet=subnet,
            payment_platform=PLATFORM, work_root=tmp_path / f"agent{len(agents)}",
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
    wait_until(lambda: requestor.activity_state(activity_id)[0] == "Terminated", 5,
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
    wait_until(lambda: requestor.activity_state(activity_id)[0] == "Terminated", 5,
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
