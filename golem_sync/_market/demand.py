"""The demand golem_sync publishes: package + allocation decorations + market options."""
from __future__ import annotations

import time
from typing import Dict, List, Mapping, Sequence

import attrs

from .._options import MarketOptions
from .._package import Decorations

__all__ = ["DemandSpec", "build_demand"]

CHOSEN_PLATFORM = "golem.com.payment.chosen-platform"


@attrs.frozen
class DemandSpec:
    """A demand ready to publish: flat properties and the constraint expression."""

    properties: Mapping[str, object]
    constraints: str
    platform: str

    def body(self) -> Dict[str, object]:
        return {"properties": dict(self.properties), "constraints": self.constraints}

    def counter_body(self) -> Dict[str, object]:
        """The counter-proposal: the demand plus the payment platform we chose."""
        properties = dict(self.properties)
        properties[CHOSEN_PLATFORM] = self.platform
        return {"properties": properties, "constraints": self.constraints}


def build_demand(
    package: Decorations,
    allocation: Decorations,
    market: MarketOptions,
    platform: str,
    *,
    now: float | None = None,
) -> DemandSpec:
    """Combine decorations into one demand (properties de-duplicated by key, later sources win)."""
    now = time.time() if now is None else now
    subnet = market.resolved_subnet()
    properties: Dict[str, object] = {}
    properties.update(package.properties)
    properties.update(allocation.properties)
    properties.update({
        "golem.srv.caps.multi-activity": True,
        "golem.srv.comp.expiration": int((now + market.expiration_sec) * 1000),
        "golem.node.debug.subnet": subnet,
        "golem.com.payment.debit-notes.accept-timeout?": market.debit_note_accept_timeout_sec,
        "golem.com.scheme.payu.debit-note.interval-sec?": market.debit_note_interval_sec,
        "golem.com.scheme.payu.payment-timeout-sec?": market.payment_due_sec,
    })
    constraints: List[str] = [*package.constraints, *allocation.constraints,
                              "(golem.com.pricing.model=linear)", f"(golem.node.debug.subnet={subnet})"]
    return DemandSpec(properties, join_constraints(constraints), platform)


def join_constraints(clauses: Sequence[str]) -> str:
    """``(&c1\\n\\tc2...)``; yagna's own clauses are kept as raw strings, never re-parsed."""
    unique = list(dict.fromkeys(c.strip() for c in clauses if c and c.strip()))
    if not unique:
        return "(&)"
    if len(unique) == 1:
        return unique[0]
    return "(&" + "".join(f"\n\t{c}" for c in unique) + ")"
