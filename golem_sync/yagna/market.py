"""The market API: demands and offers, proposals, agreements and their events."""
from __future__ import annotations

import datetime as _dt
import logging
from typing import Any, Dict, List, Mapping, Optional, Union

from ..errors import YagnaNotFoundError, YagnaTimeoutError
from ._base import ApiBase, Reason, reason_body, seg
from .models import (
    Agreement,
    AgreementEvent,
    AgreementState,
    Demand,
    DemandOfferBase,
    MarketEvent,
    Offer,
    Proposal,
    UnknownEvent,
    format_datetime,
    parse_agreement_event,
    parse_market_event,
)

__all__ = ["MarketApi"]

logger = logging.getLogger("golem_sync.yagna.market")

Body = Union[DemandOfferBase, Mapping[str, Any]]


def _body(value: Body) -> Mapping[str, Any]:
    return value.to_json() if isinstance(value, DemandOfferBase) else dict(value)


class MarketApi(ApiBase):
    """Calls under ``/market-api/v1``. Requestor calls first, then the provider-side ones."""

    _api = "market"

    # -- requestor: demands and proposals ----------------------------------------------------

    def subscribe_demand(self, demand: Body) -> str:
        """Publish a demand; returns its subscription id."""
        path = "/demands"
        return self._string(self._call("POST", path, json=_body(demand)), "a demand id", "POST", path)

    def list_demands(self) -> List[Demand]:
        """This node's active demands (yagna 0.17.6: properties flattened to dotted keys)."""
        path = "/demands"
        return self._list(self._call("GET", path), Demand.from_json, "GET", path)

    def unsubscribe_demand(self, demand_id: str) -> None:
        """Withdraw a demand."""
        self._call("DELETE", f"/demands/{seg(demand_id)}")

    def collect_demand_events(
        self, demand_id: str, timeout: float = 5.0, max_events: int = 10
    ) -> List[Union[MarketEvent, UnknownEvent]]:
        """Long-poll the demand's events for up to ``timeout`` seconds; ``[]`` when none came."""
        path = f"/demands/{seg(demand_id)}/events"
        body = self._call("GET", path, params={"timeout": timeout, "maxEvents": max_events},
                          long_poll=timeout)
        return self._list(body, parse_market_event, "GET", path)

    def counter_proposal(self, demand_id: str, proposal_id: str, demand: Body) -> str:
        """Answer an offer proposal with our (possibly amended) demand; returns the new proposal id."""
        path = f"/demands/{seg(demand_id)}/proposals/{seg(proposal_id)}"
        return self._string(self._call("POST", path, json=_body(demand)), "a proposal id", "POST", path)

    def reject_proposal(self, demand_id: str, proposal_id: str, reason: Reason = None) -> None:
        """Reject an offer proposal; ``reason`` is a message or a ``Reason`` object."""
        path = f"/demands/{seg(demand_id)}/proposals/{seg(proposal_id)}/reject"
        self._call("POST", path, json=reason_body(reason))

    def get_proposal(self, demand_id: str, proposal_id: str) -> Proposal:
        """One offer proposal as the demand sees it."""
        path = f"/demands/{seg(demand_id)}/proposals/{seg(proposal_id)}"
        return self._obj(self._call("GET", path), Proposal.from_json, "GET", path)

    # -- requestor: market scan -------------------------------------------------------------

    def begin_scan(self, constraints: Optional[str] = None, *, scan_type: str = "offer",
                   idle_timeout: Optional[int] = None) -> str:
        """Start iterating the offers (``scan_type="offer"``) yagna knows; returns the scan id.

        ``constraints`` filters the offers by their own properties (the offers' constraints are not
        checked); ``idle_timeout`` is how many seconds yagna keeps an unread scan. yagna before the
        scan API answers 404, 405 or 501.
        """
        path = "/scan"
        body: Dict[str, Any] = {"type": scan_type}
        if constraints is not None:
            body["constraints"] = constraints
        if idle_timeout is not None:
            body["timeout"] = int(idle_timeout)
        return self._string(self._call("POST", path, json=body), "a scan id", "POST", path)

    def collect_scan(self, scan_id: str, timeout: float = 5.0, max_events: int = 100) -> List[Offer]:
        """The next offers of the scan, waiting up to ``timeout`` seconds for new ones; ``[]`` when none came."""
        path = f"/scan/{seg(scan_id)}/events"
        body = self._call("GET", path, params={"timeout": timeout, "maxEvents": max_events}, long_poll=timeout)
        return self._list(body, Offer.from_json, "GET", path)

    def end_scan(self, scan_id: str) -> None:
        """Drop the scan (yagna answers 404 for one it no longer knows)."""
        self._call("DELETE", f"/scan/{seg(scan_id)}")

    # -- requestor: agreements ---------------------------------------------------------------

    def create_agreement(self, proposal_id: str, valid_to: _dt.datetime) -> str:
        """Turn a Draft proposal into an agreement valid until ``valid_to``; returns its id."""
        path = "/agreements"
        body = {"proposalId": proposal_id, "validTo": format_datetime(valid_to)}
        return self._string(self._call("POST", path, json=body), "an agreement id", "POST", path)

    def get_agreement(self, agreement_id: str) -> Agreement:
        """The agreement, with both sides' properties and its state."""
        path = f"/agreements/{seg(agreement_id)}"
        return self._obj(self._call("GET", path), Agreement.from_json, "GET", path)

    def list_agreements(self, *, after_date: Optional[_dt.datetime] = None,
                        before_date: Optional[_dt.datetime] = None, state: Optional[str] = None,
                        app_session_id: Optional[str] = None, role: Optional[str] = "Requestor") -> List[str]:
        """Ids of this node's agreements matching the filters (``role=None``: both sides')."""
        params: Dict[str, str] = {}
        if after_date is not None:
            params["afterDate"] = format_datetime(after_date)
        if before_date is not None:
            params["beforeDate"] = format_datetime(before_date)
        if state is not None:
            params["state"] = state
        if app_session_id is not None:
            params["appSessionId"] = app_session_id
        path = "/agreements"
        rows = self._list(self._call("GET", path, params=params), _list_entry, "GET", path)
        return [agreement_id for agreement_id, entry_role in rows
                if agreement_id and (role is None or entry_role in (None, role))]

    def confirm_agreement(self, agreement_id: str, app_session_id: Optional[str] = None) -> None:
        """Sign the agreement and send it to the provider."""
        self._call("POST", f"/agreements/{seg(agreement_id)}/confirm",
                   params={"appSessionId": app_session_id})

    def wait_for_approval(self, agreement_id: str, timeout: float = 5.0) -> str:
        """Wait up to ``timeout`` seconds for the provider's answer.

        Returns ``"Approved"``; ``"Pending"`` when the time ran out (yagna's 408: still undecided);
        or, when yagna answers 410 Gone, the final state (``"Rejected"``, ``"Cancelled"``,
        ``"Expired"``, ``"Terminated"``) read from the agreement itself.
        """
        path = f"/agreements/{seg(agreement_id)}/wait"
        try:
            if self._timed_out("POST", path, timeout):
                return AgreementState.PENDING.value
        except YagnaNotFoundError as exc:
            if exc.status != 410:
                raise
            logger.debug("agreement %s is gone (410): %s", agreement_id, exc.detail)
            return self._final_state(agreement_id, exc.detail)
        return AgreementState.APPROVED.value

    def _final_state(self, agreement_id: str, detail: Optional[str]) -> str:
        text = (detail or "").lower()
        for word, state in (("reject", AgreementState.REJECTED), ("cancel", AgreementState.CANCELLED),
                            ("expire", AgreementState.EXPIRED), ("terminat", AgreementState.TERMINATED)):
            if word in text:
                return state.value
        return self.get_agreement(agreement_id).state

    def cancel_agreement(self, agreement_id: str, reason: Reason = None) -> None:
        """Withdraw an agreement the provider has not approved yet."""
        self._call("POST", f"/agreements/{seg(agreement_id)}/cancel", json=reason_body(reason))

    def terminate_agreement(self, agreement_id: str, reason: Reason = None) -> None:
        """End an approved agreement. ``reason`` e.g. ``{"message": "Done",
        "golem.requestor.code": "Success"}``."""
        self._call("POST", f"/agreements/{seg(agreement_id)}/terminate", json=reason_body(reason))

    def collect_agreement_events(
        self,
        timeout: float = 5.0,
        after_timestamp: Optional[_dt.datetime] = None,
        max_events: int = 10,
        app_session_id: Optional[str] = None,
    ) -> List[Union[AgreementEvent, UnknownEvent]]:
        """Long-poll agreement events newer than ``after_timestamp``; ``[]`` when none came."""
        path = "/agreementEvents"
        params = {
            "timeout": timeout,
            "afterTimestamp": format_datetime(after_timestamp) if after_timestamp else None,
            "maxEvents": max_events,
            "appSessionId": app_session_id,
        }
        body = self._call("GET", path, params=params, long_poll=timeout)
        return self._list(body, parse_agreement_event, "GET", path)

    # -- provider side -----------------------------------------------------------------------

    def subscribe_offer(self, offer: Body) -> str:
        """Publish an offer; returns its subscription id."""
        path = "/offers"
        return self._string(self._call("POST", path, json=_body(offer)), "an offer id", "POST", path)

    def unsubscribe_offer(self, offer_id: str) -> None:
        """Withdraw an offer."""
        self._call("DELETE", f"/offers/{seg(offer_id)}")

    def collect_offer_events(
        self, offer_id: str, timeout: float = 5.0, max_events: int = 10
    ) -> List[Union[MarketEvent, UnknownEvent]]:
        """Long-poll the offer's events; ``[]`` when none came."""
        path = f"/offers/{seg(offer_id)}/events"
        body = self._call("GET", path, params={"timeout": timeout, "maxEvents": max_events},
                          long_poll=timeout)
        return self._list(body, parse_market_event, "GET", path)

    def counter_offer_proposal(self, offer_id: str, proposal_id: str, offer: Body) -> str:
        """Answer a demand proposal with our offer; returns the new proposal id."""
        path = f"/offers/{seg(offer_id)}/proposals/{seg(proposal_id)}"
        return self._string(self._call("POST", path, json=_body(offer)), "a proposal id", "POST", path)

    def reject_offer_proposal(self, offer_id: str, proposal_id: str, reason: Reason = None) -> None:
        """Reject a demand proposal."""
        path = f"/offers/{seg(offer_id)}/proposals/{seg(proposal_id)}/reject"
        self._call("POST", path, json=reason_body(reason))

    def approve_agreement(
        self, agreement_id: str, timeout: float = 5.0, app_session_id: Optional[str] = None
    ) -> bool:
        """Approve an agreement and wait up to ``timeout`` s for it to take effect.

        Blocks; returns ``False`` if yagna timed out (408) before the approval was confirmed.
        """
        path = f"/agreements/{seg(agreement_id)}/approve"
        return not self._timed_out("POST", path, timeout, appSessionId=app_session_id)

    def reject_agreement(self, agreement_id: str, reason: Reason = None) -> None:
        """Refuse an agreement the requestor proposed."""
        self._call("POST", f"/agreements/{seg(agreement_id)}/reject", json=reason_body(reason))

    def _timed_out(self, method: str, path: str, timeout: float, **params: Any) -> bool:
        """Call a blocking endpoint that answers 204 when done and 408 when ``timeout`` ran out.

        Not a ``long_poll`` call: there a 408 and a 204 would both come back as ``None``.
        """
        try:
            self._call(method, path, params={"timeout": timeout, **params}, timeout=self._margin(timeout))
        except YagnaTimeoutError as exc:
            if exc.status != 408:
                raise
            return True
        return False


def _list_entry(row: Any) -> "tuple[str, Optional[str]]":
    """One row of ListAgreements: (id, role)."""
    if not isinstance(row, Mapping) or not isinstance(row.get("id"), str):
        return "", None
    role = row.get("role")
    return row["id"], role if isinstance(role, str) else None
