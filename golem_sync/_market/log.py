"""What one negotiation saw of the market, for the report of a startup timeout.

Threads: a :class:`MarketLog` belongs to the negotiator's thread (no lock).
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from .proposals import ProposalView
from .report import MarketReport, ProviderRejection

__all__ = ["MarketLog"]


class MarketLog:
    """Records what one negotiation saw, for :class:`MarketReport`. Owned by the negotiator's thread."""

    def __init__(self) -> None:
        self._offers: Dict[Tuple[str, str], List[str]] = {}  # offer -> the group of each reason (latest)
        self._sent: Dict[str, ProposalView] = {}  # our counter-proposal id -> the offer it answered
        self._rejections: List[ProviderRejection] = []

    def offer(self, view: ProposalView, reasons: Sequence[str]) -> None:
        """An initial proposal (an offer) and why we would not take it (``[]``: acceptable)."""
        self._offers[view.offer_key()] = [getattr(reason, "group", reason) for reason in reasons]

    def countered(self, counter_id: str, view: ProposalView) -> None:
        self._sent[counter_id] = view

    def provider_rejected(self, proposal_id: str, reason: Optional[str]) -> None:
        view = self._sent.get(proposal_id)
        self._rejections.append(ProviderRejection(view.issuer_id if view else "", view.provider_name if view else "",
                                                  reason or "no reason given", "proposal"))

    def agreement_failed(self, view: ProposalView, reason: str) -> None:
        self._rejections.append(ProviderRejection(view.issuer_id, view.provider_name, reason, "agreement"))

    def report(self, waited_sec: Optional[float], platform: str) -> MarketReport:
        counts: "Counter[str]" = Counter()
        for groups in self._offers.values():
            counts.update(dict.fromkeys(groups, 1))
        return MarketReport(
            waited_sec=waited_sec, platform=platform, offers_seen=len(self._offers),
            providers_seen=len({provider for provider, _ in self._offers}),
            acceptable=sum(1 for groups in self._offers.values() if not groups),
            reasons=dict(counts), provider_rejections=tuple(self._rejections))
