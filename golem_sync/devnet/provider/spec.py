"""What a devnet provider offers (:class:`ProviderSpec`) and how it misbehaves (:class:`ProviderFaults`).

Also the pure functions that turn a spec into an offer, answer a demand with a counter-offer and
price usage. They hold no state and start no threads.
"""
from __future__ import annotations

import math
import platform
from decimal import Decimal
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import attrs

from ..errors import DevnetConfigError
from ..exeunit import ExeUnitFaults
from .rules import DEFAULT_IDLE_AGREEMENT_TIMEOUT, MULTI_ACTIVITY

__all__ = [
    "ProviderFaults",
    "ProviderSpec",
    "USAGE_VECTOR",
    "DEBIT_NOTE_INTERVAL",
    "PAYMENT_TIMEOUT",
    "DEBIT_NOTE_ACCEPT_TIMEOUT",
    "build_offer",
    "counter_properties",
    "demand_problem",
    "price",
    "format_amount",
    "overcharged",
]

#: The usage counters the offer advertises, in the order ExeUnit.usage() reports them.
USAGE_VECTOR: Tuple[str, ...] = ("golem.usage.duration_sec", "golem.usage.cpu_sec")

DEBIT_NOTE_INTERVAL = "golem.com.scheme.payu.debit-note.interval-sec?"
PAYMENT_TIMEOUT = "golem.com.scheme.payu.payment-timeout-sec?"
DEBIT_NOTE_ACCEPT_TIMEOUT = "golem.com.payment.debit-notes.accept-timeout?"

#: Negotiable properties the provider echoes from the requestor's proposal.
_ECHOED = (DEBIT_NOTE_ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, PAYMENT_TIMEOUT)
#: Mid-agreement-payment properties: dropped from the counter when the requestor left them out
#: (a requestor that did not ask for mid-agreement payments must not get them imposed).
_MID_AGREEMENT = (DEBIT_NOTE_INTERVAL, PAYMENT_TIMEOUT)

_RUNTIME_VERSION = "0.4.2"
_TRANSFER_PROTOCOLS = ["gftp", "http", "https"]


def _number(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DevnetConfigError(f"{attribute.name} must be a finite number, got {value!r}")


def _non_negative(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    _number(inst, attribute, value)
    if value < 0:
        raise DevnetConfigError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    _number(inst, attribute, value)
    if value <= 0:
        raise DevnetConfigError(f"{attribute.name} must be > 0, got {value!r}")


def _optional_factor(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None:
        _number(inst, attribute, value)
        if value < 1:
            raise DevnetConfigError(f"{attribute.name} must be a factor >= 1, got {value!r}")


def _optional_positive(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None:
        _positive(inst, attribute, value)


def _positive_int(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DevnetConfigError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _bool(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, bool):
        raise DevnetConfigError(f"{attribute.name} must be True or False, got {value!r}")


def _non_empty_str(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise DevnetConfigError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _exeunit_faults(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and not isinstance(value, ExeUnitFaults):
        raise DevnetConfigError(f"{attribute.name} must be an ExeUnitFaults or None, got {value!r}")


def _to_tuple(value: Any) -> Tuple[Any, ...]:
    if isinstance(value, str):  # tuple("vpn") would silently become ("v", "p", "n")
        raise DevnetConfigError(f"capabilities must be a sequence of strings, got the string {value!r}")
    return tuple(value)


def _capabilities(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not all(isinstance(c, str) and c for c in value):
        raise DevnetConfigError(f"{attribute.name} must be non-empty strings, got {value!r}")


@attrs.frozen(kw_only=True)
class ProviderFaults:
    """Ways a devnet provider misbehaves, each as a real provider would show it. All off by default.

    Attributes:
        reject_proposals: reject every requestor proposal, with a reason.
        never_approve: never answer agreement proposals (the requestor's wait times out).
        terminate_agreement_after: seconds after an activity starts; then the provider terminates
            the agreement itself (and invoices it).
        debit_note_interval: send debit notes this often (seconds), whatever was negotiated
            (shorter than negotiated = the "too many debit notes" fault).
        exeunit: faults passed to every exe-unit of this provider (heartbeat stop, crash, slow results).
        overcharge: bill this factor (>= 1) times the agreed price of the usage, in every debit note
            and the invoice (the notes' usage vectors stay honest).
    """

    reject_proposals: bool = attrs.field(default=False, validator=_bool)
    never_approve: bool = attrs.field(default=False, validator=_bool)
    terminate_agreement_after: Optional[float] = attrs.field(default=None, validator=_optional_positive)
    debit_note_interval: Optional[float] = attrs.field(default=None, validator=_optional_positive)
    exeunit: Optional[ExeUnitFaults] = attrs.field(default=None, validator=_exeunit_faults)
    overcharge: Optional[float] = attrs.field(default=None, validator=_optional_factor)


@attrs.frozen(kw_only=True)
class ProviderSpec:
    """What one devnet provider offers: node name, resources, runtime, prices, faults.

    Prices are in tokens: per second of CPU, per second of activity duration, and once per activity.
    ``debit_note_interval_sec`` is advertised in the offer; a requestor that negotiates another
    interval gets that one.

    The agreement rules follow ya-provider (see :mod:`.rules`): one activity at a time per agreement;
    ``multi_activity`` is what the offer advertises as ``golem.srv.caps.multi-activity`` (with False,
    or a demand without it, the provider terminates the agreement after its first activity);
    ``idle_agreement_timeout`` (seconds, ya-provider's ``--idle-agreement-timeout``) is how long an
    approved agreement may have no activity before the provider breaks it ("NoActivity").
    """

    name: str = attrs.field(default="devnet-provider", validator=_non_empty_str)
    cpu_threads: int = attrs.field(default=2, validator=_positive_int)
    cpu_cores: int = attrs.field(default=1, validator=_positive_int)
    mem_gib: float = attrs.field(default=4.0, validator=_positive)
    storage_gib: float = attrs.field(default=20.0, validator=_positive)
    runtime: str = attrs.field(default="vm", validator=_non_empty_str)
    capabilities: Tuple[str, ...] = attrs.field(default=("vpn",), converter=_to_tuple, validator=_capabilities)
    price_per_cpu_sec: float = attrs.field(default=0.0001, validator=_non_negative)
    price_per_duration_sec: float = attrs.field(default=0.00005, validator=_non_negative)
    start_price: float = attrs.field(default=0.0, validator=_non_negative)
    debit_note_interval_sec: int = attrs.field(default=120, validator=_positive_int)
    multi_activity: bool = attrs.field(default=True, validator=_bool)
    idle_agreement_timeout: float = attrs.field(default=DEFAULT_IDLE_AGREEMENT_TIMEOUT, validator=_positive)
    faults: ProviderFaults = attrs.field(factory=ProviderFaults)

    @faults.validator
    def _check_faults(self, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        if not isinstance(value, ProviderFaults):
            raise DevnetConfigError(f"faults must be a ProviderFaults, got {value!r}")

    @property
    def coeffs(self) -> Tuple[float, ...]:
        """Linear pricing coefficients in :data:`USAGE_VECTOR` order, then the fixed start price."""
        return (float(self.price_per_duration_sec), float(self.price_per_cpu_sec), float(self.start_price))


def _cpu_architecture() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine or "x86_64")


def build_offer(spec: ProviderSpec, *, node_id: str, subnet: str, payment_platform: str) -> Dict[str, Any]:
    """The offer body for ``POST /market-api/v1/offers``: ``{"properties": ..., "constraints": ...}``.

    Every property here was found necessary (or useful) for yapapi and golem-js requestors:
    payment protocol version "3" (yagna's demand decorations constrain it), linear coeffs as
    floats of length len(vector)+1, cores/threads/mem/storage, the subnet, the runtime name.
    No debit-note accept timeout is advertised (golem-js rejects one below its own minimum);
    the requestor's value is echoed in the counter-offer instead.
    """
    properties: Dict[str, Any] = {
        "golem.activity.caps.transfer.protocol": list(_TRANSFER_PROTOCOLS),
        "golem.com.payment.protocol.version": "3",
        f"golem.com.payment.platform.{payment_platform}.address": node_id,
        "golem.com.pricing.model": "linear",
        "golem.com.pricing.model.linear.coeffs": list(spec.coeffs),
        "golem.com.scheme": "payu",
        DEBIT_NOTE_INTERVAL: spec.debit_note_interval_sec,
        "golem.com.usage.vector": list(USAGE_VECTOR),
        "golem.inf.cpu.architecture": _cpu_architecture(),
        "golem.inf.cpu.cores": spec.cpu_cores,
        "golem.inf.cpu.threads": spec.cpu_threads,
        "golem.inf.mem.gib": float(spec.mem_gib),
        "golem.inf.storage.gib": float(spec.storage_gib),
        "golem.node.debug.subnet": subnet,
        "golem.node.id.name": spec.name,
        "golem.runtime.capabilities": list(spec.capabilities),
        "golem.runtime.name": spec.runtime,
        "golem.runtime.version": _RUNTIME_VERSION,
        MULTI_ACTIVITY: spec.multi_activity,
    }
    # Like ya-provider: only requestors on our subnet match this offer.
    constraints = f"(golem.node.debug.subnet={subnet})"
    return {"properties": properties, "constraints": constraints}


def counter_properties(offer_properties: Mapping[str, Any], demand_properties: Mapping[str, Any]) -> Dict[str, Any]:
    """The properties of the counter-offer answering one requestor proposal.

    Echoes the negotiable properties the requestor sent (SDKs sign only a proposal that agrees
    with theirs) and drops the mid-agreement-payment ones it left out.
    """
    properties = dict(offer_properties)
    for key in _MID_AGREEMENT:
        if key not in demand_properties:
            properties.pop(key, None)
    for key in _ECHOED:
        if key in demand_properties:
            properties[key] = demand_properties[key]
    return properties


def demand_problem(demand_properties: Mapping[str, Any], payment_platform: str) -> Optional[str]:
    """Why a requestor proposal cannot be served (the rejection reason), or None if it can.

    A requestor that chose another payment platform could never pay this provider's invoices:
    a real provider rejects it, so the devnet does too (the requestor sees the reason).
    """
    chosen = demand_properties.get("golem.com.payment.chosen-platform")
    if chosen is not None and chosen != payment_platform:
        return f"No common payment platform: the requestor chose {chosen!r}, this provider takes {payment_platform!r}"
    return None


def price(coeffs: Sequence[float], usage: Sequence[float]) -> Decimal:
    """The linear price of one activity: sum(coeff_i * usage_i) + the fixed last coefficient."""
    if len(coeffs) != len(usage) + 1:
        raise ValueError(f"{len(coeffs)} pricing coefficients for a usage vector of {len(usage)}")
    total = Decimal(repr(float(coeffs[-1])))
    for coeff, used in zip(coeffs, usage):
        total += Decimal(repr(float(coeff))) * Decimal(repr(max(0.0, float(used))))
    return total


_QUANTUM = Decimal("1e-18")  # the token's 18 decimals: yagna rejects finer amounts


def overcharged(amount: Decimal, faults: ProviderFaults) -> Decimal:
    """What the provider bills for ``amount`` (the honest price): ``amount`` × the ``overcharge`` factor, if any."""
    return amount if faults.overcharge is None else amount * Decimal(repr(float(faults.overcharge)))


def format_amount(amount: Decimal) -> str:
    """An amount as yagna's decimal string (at most 18 decimals, no exponent)."""
    text = format(amount.quantize(_QUANTUM), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
