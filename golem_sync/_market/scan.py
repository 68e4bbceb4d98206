"""A market scan: every offer the market shows now, and why this configuration would take it or not.

:func:`scan_market` asks yagna's market scan (``POST /market-api/v1/scan``, then
``GET /scan/{id}/events`` until the time is up, and ``DELETE /scan/{id}`` on every path) for the
offers on the subnet; a yagna without the scan API (404, 405 or 501) is asked through a temporary
demand instead (published by :func:`~golem_sync._market.publish.publish_demand`, so a lost answer
leaves no duplicate; its offer proposals collected and never answered; unsubscribed on every path).
Each offer is judged by :func:`~golem_sync._market.proposals.proposal_problems`, the rules a job
negotiates by, plus the package's constraints, which are checked here rather than sent to yagna
so that an offer that fails them is listed with the clause it fails instead of never showing up.
Nothing is signed, nothing is paid, no allocation is made.

Threads: runs on the caller's thread and holds no lock; a ``proposal_filter`` runs there too. A
temporary demand is held, while it lives, in the network's
:class:`~golem_sync._market.publish.HeldDemands` (shared with its negotiators).
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

from .._cancel import CancelToken, Deadline
from .._options import MarketOptions, PackageOptions
from .._package import Decorations, package_constraints
from ..errors import GolemConfigError, YagnaError, YagnaNotFoundError, YagnaRequestError, YagnaServerError
from ..yagna.client import YagnaClient
from ..yagna.models import ProposalEvent
from .demand import build_demand, join_constraints
from .proposals import ProposalView, proposal_problems
from .publish import HeldDemands, publish_demand
from .report import describe_offers

__all__ = ["MarketScan", "ScannedOffer", "scan_market", "check_seconds"]

logger = logging.getLogger("golem_sync.market")

#: What a yagna without the market scan API answers to ``POST /scan``.
_NO_SCAN_API = (404, 405, 501)
_MAX_EVENTS = 100
_DEMAND_POLL_SEC = 5.0  # a fallback demand's event polls, each capped by what is left of the scan


@attrs.frozen
class ScannedOffer:
    """One offer as a scan saw it, and why this configuration would reject it.

    ``prices`` are per usage counter (e.g. ``"golem.usage.cpu_sec"``, ``"golem.usage.duration_sec"``)
    plus ``"start"``, in tokens; empty when the offer's linear pricing is missing or inconsistent.
    ``reasons`` name the option that rejects it (e.g. ``"cpu price 0.0001/s above max_cpu_per_sec
    0.00001"``); empty when it is acceptable. Each reason is a ``str`` that also carries ``rule`` and
    ``group`` (see :class:`~golem_sync._market.proposals.Reason`).
    """

    offer_id: str
    provider_id: str
    provider_name: str
    runtime: str
    cpu_threads: int
    mem_gib: float
    storage_gib: float
    prices: Mapping[str, float]
    platforms: Tuple[str, ...]
    reasons: List[str]
    properties: Mapping[str, Any] = attrs.field(repr=False)
    proposal: ProposalView = attrs.field(repr=False, eq=False)

    @property
    def acceptable(self) -> bool:
        return not self.reasons

    def estimated_cost(self, seconds: float) -> float:
        """Start price + ``seconds`` × (duration price + cpu price × cpu threads): every thread busy."""
        return self.proposal.estimated_cost(seconds)

    @classmethod
    def of(cls, proposal: ProposalView, reasons: List[str]) -> "ScannedOffer":
        props = proposal.properties
        pricing = proposal.pricing()
        prices: Dict[str, float] = {}
        if pricing is not None:
            prices = {**pricing.coefficients, "start": pricing.start}
        return cls(offer_id=proposal.proposal_id, provider_id=proposal.issuer_id,
                   provider_name=proposal.provider_name, runtime=str(props.get("golem.runtime.name", "")),
                   cpu_threads=proposal.cpu_threads, mem_gib=_float(props.get("golem.inf.mem.gib")),
                   storage_gib=_float(props.get("golem.inf.storage.gib")), prices=prices,
                   platforms=tuple(proposal.platforms()), reasons=list(reasons), properties=props,
                   proposal=proposal)


@attrs.frozen
class MarketScan:
    """What :meth:`golem_sync.GolemNetwork.scan_market` saw.

    Attributes:
        offers: every offer seen, in the order they came (an offer published again counts once).
        duration_sec: how long the scan took.
        method: ``"scan"`` (yagna's market scan) or ``"demand"`` (a temporary demand, on a yagna
            without the scan API).
        platform: the payment platform the configuration pays on.
        subnet: the subnet scanned.
    """

    offers: List[ScannedOffer]
    duration_sec: float
    method: str
    platform: str
    subnet: str

    @property
    def acceptable(self) -> List[ScannedOffer]:
        """The offers this configuration would accept."""
        return [offer for offer in self.offers if offer.acceptable]

    @property
    def providers(self) -> int:
        """How many distinct providers made the offers."""
        return len({offer.provider_id for offer in self.offers})

    def rejection_counts(self) -> "Counter[str]":
        """How many offers each kind of reason rejects, e.g. ``{"above max_cpu_per_sec=0.00001": 9,
        "denied by name": 3}`` (an offer rejected for several reasons counts under each)."""
        counts: "Counter[str]" = Counter()
        for offer in self.offers:
            counts.update(dict.fromkeys((getattr(reason, "group", reason) for reason in offer.reasons), 1))
        return counts

    def summary(self) -> str:
        """One line, e.g. "14 offers seen from 12 providers, 2 acceptable, 9 above max_cpu_per_sec=0.0001"."""
        return describe_offers(len(self.offers), self.providers, len(self.acceptable), self.rejection_counts())


def check_seconds(name: str, value: Any) -> float:
    """``value`` as a positive finite number of seconds, or GolemConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise GolemConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def scan_market(client: YagnaClient, package: PackageOptions, market: MarketOptions, platform: str,
                timeout: float, *, held: Optional[HeldDemands] = None) -> MarketScan:
    """Collect the offers on the market for ``timeout`` seconds and judge each (see the module doc).

    ``held``: the network's demands, so a temporary demand is never taken for a sibling's.
    """
    seconds = check_seconds("timeout", timeout)
    started = time.monotonic()
    deadline = Deadline(seconds)
    demand = build_demand(Decorations(), Decorations(), market, platform)  # subnet + linear pricing only
    try:
        found, method = _by_scan(client, demand.constraints, seconds, deadline), "scan"
    except _NoScanApi as exc:
        logger.info("yagna has no market scan (%s); scanning through a temporary demand", exc.cause)
        held = held if held is not None else HeldDemands()
        found, method = _by_demand(client, demand.body(), deadline, held), "demand"
    offers: Dict[Tuple[str, str], ProposalView] = {}
    for view in found:  # the same offer published again (a new id, the same terms) counts once
        offers[view.offer_key()] = view
    constraints = join_constraints(package_constraints(package))
    judged = [ScannedOffer.of(view, list(proposal_problems(view, market, platform, constraints=constraints)))
              for view in offers.values()]
    scan = MarketScan(judged, time.monotonic() - started, method, platform, market.resolved_subnet())
    logger.info("market scan (%s, %.1f s): %s", method, scan.duration_sec, scan.summary())
    return scan


class _NoScanApi(Exception):
    def __init__(self, cause: YagnaError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _by_scan(client: YagnaClient, constraints: str, seconds: float, deadline: Deadline) -> List[ProposalView]:
    try:
        scan_id = client.market.begin_scan(constraints, idle_timeout=max(30, math.ceil(seconds) + 10))
    except (YagnaNotFoundError, YagnaRequestError, YagnaServerError) as exc:
        if exc.status in _NO_SCAN_API:
            raise _NoScanApi(exc) from exc
        raise

    def poll(left: float) -> List[ProposalView]:
        return [ProposalView(offer.offer_id, offer.provider_id, "Initial", dict(offer.properties), offer)
                for offer in client.market.collect_scan(scan_id, timeout=left, max_events=_MAX_EVENTS)]

    return _collect(f"market scan {scan_id}", poll, lambda: client.market.end_scan(scan_id), deadline)


def _by_demand(client: YagnaClient, body: Mapping[str, Any], deadline: Deadline,
               held: HeldDemands) -> List[ProposalView]:
    demand_id = publish_demand(client.market, body, held, CancelToken(), deadline)  # nothing cancels a scan

    def poll(left: float) -> List[ProposalView]:
        events = client.market.collect_demand_events(demand_id, timeout=min(left, _DEMAND_POLL_SEC),
                                                     max_events=_MAX_EVENTS)
        return [ProposalView.of(event.proposal) for event in events
                if isinstance(event, ProposalEvent) and event.proposal.state == "Initial"]

    def end() -> None:
        try:
            client.market.unsubscribe_demand(demand_id)
        finally:
            held.release(demand_id)

    return _collect(f"scan demand {demand_id}", poll, end, deadline)


def _collect(what: str, poll: Callable[[float], List[ProposalView]], end: Callable[[], None],
             deadline: Deadline) -> List[ProposalView]:
    """Poll until the deadline, de-duplicated by id; ``end`` runs on every path (its errors are
    logged, never raised). When yagna no longer knows the scan (404) what came so far is kept."""
    found: Dict[str, ProposalView] = {}
    try:
        while True:
            left = deadline.remaining() or 0.0
            if left < 0.05:
                break
            try:
                batch = poll(left)
            except YagnaNotFoundError as exc:
                logger.warning("%s ended early (%s); keeping the %d offers seen", what, exc, len(found))
                break
            for view in batch:
                found[view.proposal_id] = view
    finally:
        _quietly(f"ending {what}", end)
    return list(found.values())


def _quietly(what: str, fn: Callable[[], None]) -> None:
    """A cleanup call: 404 (already gone) is fine, other errors are logged, never raised."""
    try:
        fn()
    except YagnaNotFoundError:
        pass
    except YagnaError as exc:
        logger.warning("%s failed: %s (yagna drops it by itself later)", what, exc)


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
