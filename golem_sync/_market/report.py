"""What the market showed while a job looked for a provider, for errors that explain themselves.

When the startup deadline runs out, a :class:`MarketReport` (built by
:class:`~golem_sync._market.log.MarketLog`) goes on the error (``error.market_report``) and its
:meth:`~MarketReport.summary` into the message: "14 offers seen, 9 above max_cpu_per_sec=0.0001,
3 denied by name, ...". A leaf module (``golem_sync.errors`` names its type): it imports no other
golem_sync module. A MarketReport is immutable.
"""
from __future__ import annotations

from collections import Counter
from typing import List, Mapping, Optional, Sequence, Tuple

import attrs

__all__ = ["MarketReport", "ProviderRejection", "describe_offers", "describe_rejections"]


@attrs.frozen
class ProviderRejection:
    """A provider said no: to our proposal (``stage="proposal"``, with the provider's reason) or to
    the agreement we sent (``stage="agreement"``: rejected, or not approved in time)."""

    provider_id: str
    provider_name: str
    reason: str
    stage: str = "proposal"

    def __str__(self) -> str:
        who = self.provider_name or self.provider_id or "a provider"
        return f"{who}: {self.reason}"


@attrs.frozen
class MarketReport:
    """What one job saw of the market before its startup deadline ran out.

    Attributes:
        waited_sec: the startup limit that ran out.
        platform: the payment platform the job pays on.
        offers_seen: distinct offers received (a provider's offer published again counts once).
        providers_seen: distinct providers among them.
        acceptable: offers every rule of this configuration accepted.
        reasons: how many offers each kind of reason rejected (keys as in
            :meth:`golem_sync.MarketScan.rejection_counts`; an offer may count under several).
        provider_rejections: the providers' refusals of our proposals and agreements.
    """

    waited_sec: Optional[float]
    platform: str
    offers_seen: int = 0
    providers_seen: int = 0
    acceptable: int = 0
    reasons: Mapping[str, int] = attrs.field(factory=dict)
    provider_rejections: Tuple[ProviderRejection, ...] = ()

    def rejection_counts(self) -> "Counter[str]":
        """Offers rejected, per kind of reason (a copy)."""
        return Counter(self.reasons)

    def summary(self) -> str:
        """One line: what was seen, why we rejected it, and whether the providers rejected us."""
        seen = describe_offers(self.offers_seen, self.providers_seen, self.acceptable, self.reasons)
        return f"{seen}; {describe_rejections(self.provider_rejections)}"


def describe_offers(offers: int, providers: int, acceptable: int, reasons: Mapping[str, int]) -> str:
    """"14 offers seen, 9 above max_cpu_per_sec=0.0001, 3 denied by name" (most common first)."""
    if offers == 0:
        return "no offer seen"
    parts = [f"{offers} offer{'s' if offers != 1 else ''} seen"
             + (f" from {providers} provider{'s' if providers != 1 else ''}" if providers != offers else "")]
    if acceptable:
        parts.append(f"{acceptable} acceptable")
    parts += [f"{count} {group}" for group, count in Counter(reasons).most_common()]
    return ", ".join(parts)


def describe_rejections(rejections: Sequence[ProviderRejection]) -> str:
    proposals = [r for r in rejections if r.stage == "proposal"]
    agreements = [r for r in rejections if r.stage != "proposal"]
    if not rejections:
        return "no provider rejected our proposals"
    parts = []
    if proposals:
        parts.append(f"providers rejected {len(proposals)} of our proposals ("
                     + "; ".join(_distinct(proposals)) + ")")
    else:
        parts.append("no provider rejected our proposals")
    if agreements:
        parts.append(f"{len(agreements)} agreement{'s' if len(agreements) != 1 else ''} not approved ("
                     + "; ".join(_distinct(agreements)) + ")")
    return ", ".join(parts)


def _distinct(rejections: Sequence[ProviderRejection], limit: int = 5) -> List[str]:
    texts = list(dict.fromkeys(str(r) for r in rejections))
    return texts[:limit] + ([f"{len(texts) - limit} more"] if len(texts) > limit else [])
