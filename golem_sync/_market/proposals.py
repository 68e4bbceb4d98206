"""A provider's proposal as golem_sync judges it: provider, pricing, validity, score."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from decimal import Decimal
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import attrs

from .._options import MarketOptions
from .constraints import ConstraintSyntaxError, unmet_clauses

__all__ = ["ProposalView", "Pricing", "Reason", "proposal_problems", "default_scorer"]

logger = logging.getLogger("golem_sync.market")

DURATION = "golem.usage.duration_sec"
CPU = "golem.usage.cpu_sec"


class Reason(str):
    """One reason golem_sync would not accept an offer: the message itself (it *is* the string,
    e.g. ``"cpu price 0.0001/s above max_cpu_per_sec 0.00001"``), plus

    - ``rule``: the option or check it comes from (``"max_cpu_per_sec"``, ``"payment.network"``,
      ``"constraints"``, ``"proposal_filter"``, ...);
    - ``group``: the phrase a summary counts it under, the same for every offer the rule rejects
      the same way (``"above max_cpu_per_sec=0.00001"``, ``"denied by name"``).
    """

    rule: str
    group: str

    def __new__(cls, message: str, *, rule: str, group: str) -> "Reason":
        self = super().__new__(cls, message)
        self.rule = rule
        self.group = group
        return self

    def __reduce__(self) -> Any:
        return (_reason, (str(self), self.rule, self.group))


def _reason(message: str, rule: str, group: str) -> Reason:
    return Reason(message, rule=rule, group=group)


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

    def offer_key(self) -> Tuple[str, str]:
        """Identifies the offer across demands and re-publications: its provider and its terms."""
        text = json.dumps(dict(self.properties), sort_keys=True, default=str)
        return self.issuer_id, hashlib.sha1(text.encode()).hexdigest()

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


def proposal_problems(proposal: ProposalView, market: MarketOptions, platform: str, *,
                      constraints: Optional[str] = None) -> List[Reason]:
    """Every reason this configuration cannot accept the proposal; ``[]`` if it can.

    The one place golem_sync's rules live: negotiation rejects a proposal with any reason, a market
    scan lists them all. ``constraints`` (a scan's package constraints) are checked too when given;
    negotiation leaves them out (yagna matched them). ``market.proposal_filter`` is asked last and
    only about a proposal every other rule accepts, so it never sees one golem_sync could not take.
    """
    reasons: List[Reason] = []
    offered = list(proposal.platforms())
    if platform not in offered:
        listed = ", ".join(offered) or "none"
        reasons.append(Reason(f"no common payment platform: offers {listed}, this job pays on {platform}",
                              rule="payment.network",
                              group=(f"only on {listed} (this job pays on {platform})" if offered
                                     else "without a payment platform")))
    timeout = proposal.properties.get("golem.com.payment.debit-notes.accept-timeout?")
    ours = market.debit_note_accept_timeout_sec
    if isinstance(timeout, (int, float)) and timeout < ours:
        reasons.append(Reason(f"debit-note accept timeout {_num(timeout)} s below debit_note_accept_timeout_sec "
                              f"{ours}", rule="debit_note_accept_timeout_sec",
                              group=f"with a debit-note accept timeout below debit_note_accept_timeout_sec={ours}"))
    model = proposal.properties.get("golem.com.pricing.model", "linear")
    pricing = proposal.pricing()
    if model != "linear":
        reasons.append(Reason(f"pricing model {model!r} is not linear", rule="pricing", group="not linearly priced"))
    elif pricing is None:
        reasons.append(Reason("usage vector and linear coefficients are missing or inconsistent", rule="pricing",
                              group="with missing or inconsistent pricing"))
    reasons.extend(_provider_problems(proposal, market))
    if pricing is not None:
        for limit, value, what, option, unit in (
                (market.max_start_price, pricing.start, "start price", "max_start_price", ""),
                (market.max_cpu_per_sec, pricing.cpu_per_sec, "cpu price", "max_cpu_per_sec", "/s"),
                (market.max_env_per_sec, pricing.env_per_sec, "env price", "max_env_per_sec", "/s")):
            if limit is not None and value > float(limit):
                reasons.append(Reason(f"{what} {_num(value)}{unit} above {option} {_num(limit)}", rule=option,
                                      group=f"above {option}={_num(limit)}"))
    if constraints:
        reasons.extend(_constraint_problems(constraints, proposal.properties))
    if not reasons and market.proposal_filter is not None and not market.proposal_filter(proposal):
        reasons.append(Reason("rejected by proposal_filter", rule="proposal_filter", group="rejected by proposal_filter"))
    return reasons


def _provider_problems(proposal: ProposalView, market: MarketOptions) -> List[Reason]:
    """The allow and deny lists of provider ids and names."""
    name, pid = proposal.provider_name, proposal.issuer_id
    found: List[Reason] = []

    def add(failed: bool, message: str, rule: str, group: str) -> None:
        if failed:
            found.append(Reason(message, rule=rule, group=group))

    add(bool(market.allowed_provider_ids) and pid not in market.allowed_provider_ids,
        "provider id not in allowed_provider_ids", "allowed_provider_ids", "not in allowed_provider_ids")
    add(pid in market.denied_provider_ids, "provider id in denied_provider_ids", "denied_provider_ids",
        "denied by id")
    add(bool(market.allowed_provider_names) and name not in market.allowed_provider_names,
        "provider name not in allowed_provider_names", "allowed_provider_names", "not in allowed_provider_names")
    add(name in market.denied_provider_names, "provider name in denied_provider_names", "denied_provider_names",
        "denied by name")
    add(bool(market.allowed_name_regex) and not re.search(market.allowed_name_regex or "", name),
        "provider name does not match allowed_name_regex", "allowed_name_regex", "not matching allowed_name_regex")
    add(bool(market.denied_name_regex) and bool(re.search(market.denied_name_regex or "", name)),
        "provider name matches denied_name_regex", "denied_name_regex", "matching denied_name_regex")
    return found


def _constraint_problems(constraints: str, properties: Mapping[str, Any]) -> List[Reason]:
    try:
        unmet = unmet_clauses(constraints, properties)
    except ConstraintSyntaxError as exc:
        logger.debug("cannot check the constraints %r locally: %s", constraints, exc)
        return []
    return [Reason(f"constraint not met: {clause}", rule="constraints", group=f"not meeting {clause}")
            for clause in unmet]


def _num(value: Any) -> str:
    """A number as plain decimal text (0.00001, not 1e-05)."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
