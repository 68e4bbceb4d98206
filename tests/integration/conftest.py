"""A real yagna daemon for the REST client's integration tests (marker ``yagna``).

One daemon per module: a fresh temp data dir, free loopback ports (the GSB port below 10000),
the requestor identity plus a second "provider" identity with its own app key, restarted so the
central net binds both. It is stopped by pid at the end. No chain: payment calls that need one
are not exercised here.
"""
from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from golem_sync.devnet.yagna import NodeIdentity, YagnaNode
from golem_sync.yagna import YagnaClient
from golem_sync.yagna.models import DemandOfferBase, NewAgreementEvent, Proposal, ProposalEvent

# anvil's well-known dev keys #0 and #1: deterministic, public, test-only identities.
REQUESTOR_SECRET = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PROVIDER_SECRET = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.yagna)


def _need_yagna() -> None:
    if shutil.which("yagna") is None:
        pytest.skip("the yagna binary is not installed (pip install golem-node)")


@pytest.fixture(scope="module")
def yagna_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[YagnaNode]:
    """A running node with the requestor and a ``prov`` identity, both bound to the net."""
    _need_yagna()
    node = YagnaNode(Path(tmp_path_factory.mktemp("yagna")), requestor_secret=REQUESTOR_SECRET,
                     app_key="golem-sync-test-requestor-key")
    node.start()
    try:
        node.add_identity("prov", PROVIDER_SECRET)
        node.restart()
        yield node
    finally:
        node.stop()


@pytest.fixture
def provider_identity(yagna_node: YagnaNode) -> NodeIdentity:
    return yagna_node.identities["prov"]


@pytest.fixture
def requestor(yagna_node: YagnaNode) -> Iterator[YagnaClient]:
    with YagnaClient(app_key=yagna_node.app_key, api_url=yagna_node.api_url, retries=1) as client:
        yield client


@pytest.fixture
def provider(yagna_node: YagnaNode, provider_identity: NodeIdentity) -> Iterator[YagnaClient]:
    with YagnaClient(app_key=provider_identity.app_key, api_url=yagna_node.api_url, retries=1) as client:
        yield client


@pytest.fixture
def lone_node(tmp_path: Path) -> Iterator[YagnaNode]:
    """A separate running node (requestor identity only) that a test may stop itself."""
    _need_yagna()
    node = YagnaNode(tmp_path / "lone-yagna", requestor_secret=REQUESTOR_SECRET, app_key="lone-node-test-key")
    node.start()
    try:
        yield node
    finally:
        node.stop()


USAGE_VECTOR = ["golem.usage.duration_sec", "golem.usage.cpu_sec"]


class Negotiator:
    """Makes approved agreements between the requestor and the ``prov`` identity with the client.

    Threads: used by one test thread; :meth:`agreement` runs the provider's blocking approve in
    a helper thread that it joins before returning.
    """

    def __init__(self, requestor: YagnaClient, provider: YagnaClient) -> None:
        self.requestor = requestor
        self.provider = provider
        self.nonce = f"n{time.time_ns()}"
        self.offer = DemandOfferBase(
            properties={"golem.test.nonce": self.nonce, "golem.runtime.name": "test-runtime",
                        "golem.com.usage.vector": USAGE_VECTOR, "golem.srv.caps.multi-activity": True},
            constraints="(golem.srv.comp.expiration>0)")
        self.demand = DemandOfferBase(
            properties={"golem.srv.comp.expiration": int((time.time() + 600) * 1000),
                        "golem.test.nonce": self.nonce},
            constraints=f"(&(golem.runtime.name=test-runtime)(golem.test.nonce={self.nonce}))")
        self.offer_id = provider.market.subscribe_offer(self.offer)
        self.demand_id = requestor.market.subscribe_demand(self.demand)

    def _proposal(self, collect: Any, sub_id: str, state: Optional[str] = None) -> Proposal:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for ev in collect(sub_id, timeout=1.0):
                if isinstance(ev, ProposalEvent) and (state is None or ev.proposal.state == state):
                    return ev.proposal
        raise AssertionError(f"no proposal on {sub_id}")

    def _new_agreement(self, agreement_id: str) -> NewAgreementEvent:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for ev in self.provider.market.collect_offer_events(self.offer_id, timeout=1.0):
                if isinstance(ev, NewAgreementEvent) and ev.agreement.agreement_id == agreement_id:
                    assert ev.agreement.demand.demand_id == self.demand_id
                    return ev
        raise AssertionError(f"the provider never saw agreement {agreement_id}")

    def agreement(self) -> str:
        initial = self._proposal(self.requestor.market.collect_demand_events, self.demand_id, "Initial")
        self.requestor.market.counter_proposal(self.demand_id, initial.proposal_id, self.demand)
        theirs = self._proposal(self.provider.market.collect_offer_events, self.offer_id)
        self.provider.market.counter_offer_proposal(self.offer_id, theirs.proposal_id, self.offer)
        draft = self._proposal(self.requestor.market.collect_demand_events, self.demand_id, "Draft")
        agreement_id = self.requestor.market.create_agreement(
            draft.proposal_id, dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10))
        self.requestor.market.confirm_agreement(agreement_id)
        # As a real provider does: learn of the agreement from the offer's events, then approve.
        self._new_agreement(agreement_id)
        approver = threading.Thread(target=self.provider.market.approve_agreement, args=(agreement_id, 10.0))
        approver.start()
        state = self.requestor.market.wait_for_approval(agreement_id, timeout=10.0)
        approver.join(timeout=15)
        assert state == "Approved", state
        return agreement_id

    def close(self) -> None:
        self.requestor.market.unsubscribe_demand(self.demand_id)
        self.provider.market.unsubscribe_offer(self.offer_id)


@pytest.fixture
def negotiator(requestor: YagnaClient, provider: YagnaClient) -> Iterator[Negotiator]:
    n = Negotiator(requestor, provider)
    try:
        yield n
    finally:
        n.close()
