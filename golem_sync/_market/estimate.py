"""What a job of a given length would cost on the offers the market shows now (from a market scan).

Each acceptable offer is priced by its linear pricing with every cpu thread busy for the whole
duration (:meth:`~golem_sync._market.proposals.ProposalView.estimated_cost`: start price +
duration × (duration price + cpu price × cpu threads)); the worst of them is what a caller sizes a
budget by, the best is what the default scorer (cheapest first) picks. Debit notes, invoices and
taxes of the payment driver are not included.
"""
from __future__ import annotations

import statistics
from typing import Tuple

import attrs

from ..errors import GolemMarketError
from .scan import MarketScan

__all__ = ["CostEstimate", "ProviderCost", "estimate_cost"]


@attrs.frozen
class ProviderCost:
    """One acceptable offer's price for the duration."""

    provider_id: str
    provider_name: str
    offer_id: str
    cost: float


@attrs.frozen
class CostEstimate:
    """What :meth:`golem_sync.GolemNetwork.estimate_cost` found (amounts in the payment token).

    Attributes:
        duration_sec: the job length priced.
        worst, best, median: over the acceptable offers.
        offers_considered: how many acceptable offers were priced.
        per_provider: every acceptable offer's figure, cheapest first.
        scan: the market scan it comes from.
    """

    duration_sec: float
    worst: float
    best: float
    median: float
    offers_considered: int
    per_provider: Tuple[ProviderCost, ...]
    scan: MarketScan = attrs.field(repr=False, eq=False)


def estimate_cost(scan: MarketScan, duration_sec: float) -> CostEstimate:
    """Price ``duration_sec`` seconds on every acceptable offer of ``scan``.

    Raises :class:`GolemMarketError` when no offer is acceptable (the message says why).
    """
    costs = sorted((ProviderCost(offer.provider_id, offer.provider_name, offer.offer_id,
                                 offer.estimated_cost(duration_sec)) for offer in scan.acceptable),
                   key=lambda row: row.cost)
    if not costs:
        raise GolemMarketError(f"no acceptable offer to estimate the cost from after a {scan.duration_sec:.0f} s "
                               f"market scan on subnet {scan.subnet!r}: {scan.summary()}")
    figures = [row.cost for row in costs]
    return CostEstimate(duration_sec=duration_sec, worst=figures[-1], best=figures[0],
                        median=statistics.median(figures), offers_considered=len(costs),
                        per_provider=tuple(costs), scan=scan)
