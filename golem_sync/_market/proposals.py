"""A provider's proposal as golem_sync judges it: provider, pricing, validity, score."""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Sequence

import attrs

from .._options import MarketOptions

__all__ = ["ProposalView", "Pricing", "proposal_problem", "default_scorer"]

DURATION = "golem.usage.duration_sec"
CPU = "golem.usage.cpu_sec"


@attrs.frozen
class Pricing:
    """Linear pricing: ``start + cpu_per_sec * cpu_sec + env_per_sec * duration_sec``."""

    start: float
    cpu_per_sec: float
    env_per_sec: float
    coefficients: Mapping[str, float] = attrs.field(factory=dict)

    def cost(self, usage: Mapping[str, float]) -> float:
        """The price of a usage vector (by usage counter name)."""
        return self.start + sum(self.coefficients.get(name, 0.0) * value for name, value in usage.items())


@attrs.frozen
class ProposalView:
    """Read-only facts about one offer proposal. ``raw`` is the yagna model it came from."""

    proposal_id: str
    issuer_id: str
    state: str
    properties: Mapping[str, Any]
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def of(cls, proposal: Any) -> "ProposalView":
        return cls(proposal.proposal_id, proposal.issuer_id, str(proposal.state),
                   dict(proposal.properties or {}), proposal)

    @property
    def provider_name(self) -> str:
        return str(self.properties.get("golem.node.id.name", ""))

    @property
    def cpu_threads(self) -> int:
        value = self.properties.get("golem.inf.cpu.threads", 1)
        return int(value) if isinstance(value, (int, float)) else 1

    def platforms(self) -> Sequence[str]:
        prefix = "golem.com.payment.platform."
        return sorted({key[len(prefix):].rsplit(".", 1)[0] for key in self.properties
                       if key.startswith(prefix) and key.endswith(".address")})

    def wallet(self, platform: str) -> Optional[str]:
        value = self.properties.get(f"golem.com.payment.platform.{platform}.address")
        return str(value) if value is not None else None

    def pricing(self) -> Optional[Pricing]:
        """The linear pricing, or ``None`` when the vectors are missing or inconsistent."""
        vector = self.properties.get("golem.com.usage.vector")
        coeffs = self.properties.get("golem.com.pricing.model.linear.coeffs")
        if not isinstance(vector, list) or not isinstance(coeffs, list) or len(coeffs) != len(vector) + 1:
            return None
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coeffs):
            return None
        by_name = {str(name): float(c) for name, c in zip(vector, coeffs)}
        return Pricing(start=float(coeffs[-1]), cpu_per_sec=by_name.get(CPU, 0.0),
                       env_per_sec=by_name.get(DURATION, 0.0), coefficients=by_name)

    def estimated_cost(self, seconds: float = 60.0) -> float:
        """The price of ``seconds`` of wall time with every thread busy (infinite if unpriced)."""
        pricing = self.pricing()
        if pricing is None:
            return float("inf")
        return pricing.start + seconds * (pricing.env_per_sec + pricing.cpu_per_sec * self.cpu_threads)


def default_scorer(proposal: ProposalView) -> float:
    """Cheapest linear price first: the score is the negated estimated cost of a minute."""
    return -proposal.estimated_cost()


def proposal_problem(proposal: ProposalView, market: MarketOptions, platform: str) -> Optional[str]:
    """Why the proposal cannot be accepted, or ``None`` if it can. Filters run last."""
    if platform not in proposal.platforms():
        return f"no common payment platform (we pay with {platform})"
    timeout = proposal.properties.get("golem.com.payment.debit-notes.accept-timeout?")
    if isinstance(timeout, (int, float)) and timeout < market.debit_note_accept_timeout_sec:
        return f"debit-note accept timeout {timeout}s is below ours ({market.debit_note_accept_timeout_sec}s)"
    if proposal.properties.get("golem.com.pricing.model", "linear") != "linear":
        return "pricing model is not linear"
    pricing = proposal.pricing()
    if pricing is None:
        return "usage vector and linear coefficients are missing or inconsistent"
    name, pid = proposal.provider_name, proposal.issuer_id
    if market.allowed_provider_ids and pid not in market.allowed_provider_ids:
        return "provider id not in allowed_provider_ids"
    if pid in market.denied_provider_ids:
        return "provider id in denied_provider_ids"
    if market.allowed_provider_names and name not in market.allowed_provider_names:
        return "provider name not in allowed_provider_names"
    if name in market.denied_provider_names:
        return "provider name in denied_provider_names"
    if market.allowed_name_regex and not re.search(market.allowed_name_regex, name):
        return "provider name does not match allowed_name_regex"
    if market.denied_name_regex and re.search(market.denied_name_regex, name):
        return "provider name matches denied_name_regex"
    for limit, value, what in ((market.max_start_price, pricing.start, "start price"),
                               (market.max_cpu_per_sec, pricing.cpu_per_sec, "cpu price per second"),
                               (market.max_env_per_sec, pricing.env_per_sec, "env price per second")):
        if limit is not None and value > float(limit):
            return f"{what} {value:g} exceeds the limit {float(limit):g}"
    if market.proposal_filter is not None and not market.proposal_filter(proposal):
        return "rejected by proposal_filter"
    return None
