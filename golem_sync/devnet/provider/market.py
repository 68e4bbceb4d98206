"""The provider's market side: one offer, negotiation, agreement approval, agreement events.

Threads:
    - :meth:`OfferNegotiator.run` runs on the agent's *market* thread: it long-polls the offer's
      events, counters (or rejects) every requestor proposal inline, publishes the offer again
      when yagna expires it, and hands agreement proposals to one short-lived *approve* thread
      each (``approve`` blocks until the requestor hears it).
    - :meth:`ProviderAgreementWatcher.run` runs on the agent's *agreements* thread: it long-polls
      ``/agreementEvents`` and reports terminations of our agreements.
    Both loops end within one poll timeout after the shared stop event is set.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from .rest import ProviderApiError, ProviderRest, collect_events
from .spec import ProviderFaults, counter_properties, demand_problem

__all__ = ["OfferNegotiator", "ProviderAgreementWatcher"]

logger = logging.getLogger("golem_sync.devnet.provider")

#: How long one ``approve`` call may wait for the requestor's acknowledgement (yagna's ackTimeout).
APPROVE_TIMEOUT = 15.0


class OfferNegotiator:
    """Publishes one offer and negotiates every demand that matches it.

    One offer serves many concurrent agreements: nothing here is per-requestor state except the
    dedupe sets. ``on_agreement`` is called (on the market thread) for every new agreement
    proposal, ``on_approved`` (on its approve thread) once the agreement is approved.
    """

    def __init__(
        self,
        rest: ProviderRest,
        *,
        offer: Mapping[str, Any],
        node_id: str,
        payment_platform: str,
        faults: ProviderFaults,
        stop: threading.Event,
        on_agreement: Callable[[Dict[str, Any]], None],
        on_approved: Callable[[str], None],
        poll_timeout: float,
        label: str,
        on_published: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._rest = rest
        self._on_published = on_published
        self._offer = dict(offer)
        self._node_id = node_id.lower()
        self._payment_platform = payment_platform
        self._faults = faults
        self._stop = stop
        self._on_agreement = on_agreement
        self._on_approved = on_approved
        self._poll_timeout = poll_timeout
        self._label = label
        self.subscription_id: Optional[str] = None
        self._seen_proposals: Set[str] = set()
        self._seen_agreements: Set[str] = set()
        self._approvers: List[threading.Thread] = []
        # Guards _approvers (appended on the market thread, joined by stop) and subscription_id
        # (replaced on the market thread when yagna expires the offer, cleared by stop).
        self._lock = threading.Lock()

    def subscribe(self) -> str:
        """Publish the offer; returns its subscription id."""
        sub = self._rest.call("POST", "market", "/offers", json=self._offer)
        if not isinstance(sub, str) or not sub:
            raise ProviderApiError(f"subscribeOffer answered {sub!r}, not a subscription id")
        with self._lock:
            # stop() sets the stop event before it unsubscribes: an offer published after that
            # would outlive the agent, so withdraw it at once.
            stopped = self._stop.is_set()
            if not stopped:
                self.subscription_id = sub
        if stopped:
            self._delete(sub)
            raise ProviderApiError("the provider agent is stopping")
        logger.info("%s: offer %s published", self._label, sub)
        if self._on_published is not None:
            self._on_published(sub)
        return sub

    def unsubscribe(self) -> None:
        """Withdraw the offer (also ends a pending event poll on it). Errors are logged, not raised."""
        with self._lock:
            sub, self.subscription_id = self.subscription_id, None
        if sub is not None:
            self._delete(sub)

    def _delete(self, sub: str) -> None:
        try:
            self._rest.call("DELETE", "market", f"/offers/{sub}", timeout=10.0)
        except ProviderApiError as exc:
            logger.debug("%s: unsubscribing offer %s: %s", self._label, sub, exc)

    def join_approvers(self, deadline_left: Callable[[], float]) -> None:
        with self._lock:
            approvers = list(self._approvers)
        for thread in approvers:
            thread.join(max(0.0, deadline_left()))

    def run(self) -> None:
        """The market thread: collect offer events until stopped."""
        while not self._stop.is_set():
            sub = self.subscription_id
            if sub is None:
                return
            try:
                events = self._rest.poll(
                    "market", f"/offers/{sub}/events",
                    timeout=self._poll_timeout, params={"maxEvents": 100},
                )
            except ProviderApiError as exc:
                if self._stop.is_set():
                    return
                if exc.status in (404, 410):
                    # yagna expires subscriptions (DEFAULT_SUBSCRIPTION_TTL, 1 h by default):
                    # publish the offer again, as ya-provider does, so a long-lived devnet keeps serving.
                    logger.info("%s: offer %s is gone (%s); publishing it again", self._label, sub, exc)
                    try:
                        self.subscribe()
                    except ProviderApiError as again:
                        logger.warning("%s: publishing the offer again failed: %s", self._label, again)
                        self._stop.wait(1.0)
                    continue
                logger.warning("%s: collecting offer events failed: %s", self._label, exc)
                self._stop.wait(1.0)  # yagna hiccup: back off a little instead of spinning
                continue
            for event in events:
                if self._stop.is_set():
                    return
                try:
                    self._handle(sub, event)
                except ProviderApiError as exc:
                    logger.warning("%s: handling %s failed: %s", self._label, event.get("eventType"), exc)
                except Exception:  # a bug here must not kill the market thread
                    logger.exception("%s: handling offer event %r failed", self._label, event)

    def _handle(self, sub: str, event: Mapping[str, Any]) -> None:
        kind = event.get("eventType")
        if kind == "ProposalEvent":
            self._on_proposal(sub, event.get("proposal") or {})
        elif kind == "AgreementEvent":
            self._on_agreement_event(event.get("agreement") or {})
        elif kind == "ProposalRejectedEvent":
            logger.info("%s: requestor rejected proposal %s: %s", self._label,
                        event.get("proposalId"), (event.get("reason") or {}).get("message"))
        else:
            logger.debug("%s: ignoring offer event %s", self._label, kind)

    def _on_proposal(self, sub: str, proposal: Mapping[str, Any]) -> None:
        proposal_id = proposal.get("proposalId")
        if not isinstance(proposal_id, str) or proposal_id in self._seen_proposals:
            return
        self._seen_proposals.add(proposal_id)
        if str(proposal.get("issuerId", "")).lower() == self._node_id:
            return  # our own counter-offer echoed back: nothing to answer
        demand_props = proposal.get("properties") or {}
        problem = demand_problem(demand_props, self._payment_platform)
        if problem is None and self._faults.reject_proposals:
            problem = "devnet provider rejects every proposal (fault reject_proposals)"
        if problem is not None:
            reason = {"message": problem, "golem.proposal.code": "Rejected"}
            self._rest.call("POST", "market", f"/offers/{sub}/proposals/{proposal_id}/reject", json=reason)
            logger.info("%s: rejected proposal %s: %s", self._label, proposal_id, problem)
            return
        body = {
            "properties": counter_properties(self._offer["properties"], demand_props),
            "constraints": self._offer["constraints"],
        }
        counter_id = self._rest.call("POST", "market", f"/offers/{sub}/proposals/{proposal_id}", json=body)
        if isinstance(counter_id, str):
            self._seen_proposals.add(counter_id)
        logger.debug("%s: countered proposal %s with %s", self._label, proposal_id, counter_id)

    def _on_agreement_event(self, agreement: Dict[str, Any]) -> None:
        agreement_id = agreement.get("agreementId")
        # On a single node the provider may see one agreement proposal more than once.
        if not isinstance(agreement_id, str) or agreement_id in self._seen_agreements:
            return
        self._seen_agreements.add(agreement_id)
        self._on_agreement(agreement)
        if self._faults.never_approve:
            logger.info("%s: leaving agreement %s unanswered (fault never_approve)", self._label, agreement_id)
            return
        thread = threading.Thread(
            target=self._approve, args=(agreement_id,),
            name=f"{self._label}-approve-{agreement_id[:8]}", daemon=True,
        )
        with self._lock:
            self._approvers = [t for t in self._approvers if t.is_alive()]
            self._approvers.append(thread)
        thread.start()

    def _approve(self, agreement_id: str) -> None:
        """An approve thread: approve blocks until the requestor hears it, so it runs off the market thread."""
        try:
            self._rest.call(
                "POST", "market", f"/agreements/{agreement_id}/approve",
                params={"timeout": APPROVE_TIMEOUT}, timeout=APPROVE_TIMEOUT + 10.0,
            )
        except ProviderApiError as exc:
            logger.warning("%s: approving agreement %s failed: %s", self._label, agreement_id, exc)
            return
        logger.info("%s: agreement %s approved", self._label, agreement_id)
        self._on_approved(agreement_id)


class ProviderAgreementWatcher:
    """Long-polls agreement events and reports terminations of the agreements ``is_ours`` accepts."""

    def __init__(
        self,
        rest: ProviderRest,
        *,
        stop: threading.Event,
        is_ours: Callable[[str], bool],
        on_terminated: Callable[[str, Optional[Mapping[str, Any]], str], None],
        poll_timeout: float,
        label: str,
    ) -> None:
        self._rest = rest
        self._stop = stop
        self._is_ours = is_ours
        self._on_terminated = on_terminated
        self._poll_timeout = poll_timeout
        self._label = label
        self._seen: Set[Tuple[str, str]] = set()

    def run(self) -> None:
        """The agreements thread: collect agreement events until stopped."""
        collect_events(self._rest, self._stop, "market", "/agreementEvents", poll_timeout=self._poll_timeout,
                       handle=self._handle, label=self._label, what="agreement")

    def _handle(self, event: Mapping[str, Any]) -> None:
        agreement_id = event.get("agreementId")
        kind = str(event.get("eventType", ""))
        if not isinstance(agreement_id, str) or (agreement_id, kind) in self._seen:
            return  # on a single node every agreement event shows up twice
        self._seen.add((agreement_id, kind))
        if kind == "AgreementTerminatedEvent" and self._is_ours(agreement_id):
            reason = event.get("reason")
            terminator = str(event.get("terminator", ""))
            logger.info("%s: agreement %s terminated (%s): %s", self._label, agreement_id, terminator,
                        (reason or {}).get("message") if isinstance(reason, Mapping) else reason)
            self._on_terminated(agreement_id, reason if isinstance(reason, Mapping) else None, terminator)
