"""ya-provider's agreement rules, as pure functions: what an agreement allows and how it ends.

A real provider (ya-provider, yagna's ``agent/provider``) runs one activity at a time per agreement,
closes a single-activity agreement after its first activity, breaks an agreement that has had no
activity for ``idle_agreement_timeout`` (90 s by default) and breaks it at its expiration. Warm
provider pools in a requestor depend on exactly these rules, so the devnet provider follows them.
This module only decides and words things (the reasons a requestor reads in
``AgreementTerminatedEvent.reason``); the agent applies them. No state, no threads.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, Mapping, Optional

__all__ = [
    "MULTI_ACTIVITY",
    "EXPIRATION",
    "DEFAULT_IDLE_AGREEMENT_TIMEOUT",
    "SECOND_ACTIVITY_REASON",
    "SECOND_ACTIVITY_MESSAGE",
    "agreement_property",
    "is_multi_activity",
    "agreement_expiration",
    "rust_duration",
    "chrono_utc",
    "no_activity_reason",
    "expired_reason",
    "expired_before_start_reason",
    "single_activity_closed_reason",
]

MULTI_ACTIVITY = "golem.srv.caps.multi-activity"
EXPIRATION = "golem.srv.comp.expiration"

#: ya-provider's ``--idle-agreement-timeout`` default (seconds).
DEFAULT_IDLE_AGREEMENT_TIMEOUT = 90.0

#: What ya-provider sets on a second activity created while the agreement's first one lives (the
#: activity's Terminated ``reason`` and ``errorMessage``); yagna fails the requestor's create call
#: with "Activity <id> was abruptly terminated. Reason: <reason>, message: <message>".
SECOND_ACTIVITY_REASON = "Only single Activity allowed"
SECOND_ACTIVITY_MESSAGE = "Can't create 2 simultaneous Activities."

_PROVIDER_CODE = "golem.provider.code"
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def agreement_property(properties: Mapping[str, Any], key: str) -> Any:
    """One property of an agreement side, flat (``{"a.b": v}``, as yagna sends) or nested; None if absent."""
    if key in properties:
        return properties[key]
    node: Any = properties
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def is_multi_activity(demand_properties: Mapping[str, Any], offer_properties: Mapping[str, Any]) -> bool:
    """Whether the agreement allows more than one activity (one after another).

    ya-provider reads only the demand's ``golem.srv.caps.multi-activity`` (absent = False), because
    its own offer always advertises it. A devnet provider may advertise False; an agreement on such
    an offer is single-activity whatever the requestor asked, so both sides must say True here.
    """
    return (agreement_property(demand_properties, MULTI_ACTIVITY) is True
            and agreement_property(offer_properties, MULTI_ACTIVITY) is True)


def agreement_expiration(demand_properties: Mapping[str, Any]) -> Optional[_dt.datetime]:
    """The agreement's ``golem.srv.comp.expiration`` (ms since the epoch, demand side) as UTC; None if absent."""
    value = agreement_property(demand_properties, EXPIRATION)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return _EPOCH + _dt.timedelta(milliseconds=value)
    except OverflowError:
        return None


def rust_duration(seconds: float) -> str:
    """A duration as Rust's ``Debug`` for ``std::time::Duration`` prints it: ``90s``, ``2.5s``, ``500ms``."""
    nanos = max(0, round(seconds * 1_000_000_000))
    for unit, size in (("s", 1_000_000_000), ("ms", 1_000_000), ("µs", 1_000)):
        if nanos >= size:
            whole, rest = divmod(nanos, size)
            digits = len(str(size)) - 1
            fraction = f"{rest:0{digits}d}".rstrip("0")
            return f"{whole}.{fraction}{unit}" if fraction else f"{whole}{unit}"
    return f"{nanos}ns"


def chrono_utc(when: _dt.datetime) -> str:
    """A UTC time as chrono's ``Display`` for ``DateTime<Utc>`` prints it: ``2024-05-01 10:00:00.250 UTC``."""
    when = when.astimezone(_dt.timezone.utc)
    micros = when.microsecond
    if micros == 0:
        fraction = ""
    elif micros % 1000 == 0:
        fraction = f".{micros // 1000:03d}"
    else:
        fraction = f".{micros:06d}"
    return when.strftime("%Y-%m-%d %H:%M:%S") + fraction + " UTC"


def _chrono_utc_debug(when: _dt.datetime) -> str:
    """chrono's ``Debug`` for ``DateTime<Utc>``: ``2024-05-01T10:00:00.250Z``."""
    text = chrono_utc(when)[: -len(" UTC")]
    return text.replace(" ", "T", 1) + "Z"


def _reason(message: str, code: str) -> Dict[str, Any]:
    return {"message": message, _PROVIDER_CODE: code}


def no_activity_reason(idle_timeout: float) -> Dict[str, Any]:
    """ya-provider's ``BreakReason::NoActivity``: the agreement had no activity for ``idle_timeout`` s."""
    return _reason(f"No activity created within {rust_duration(idle_timeout)}", "NoActivity")


def expired_reason(expiration: _dt.datetime) -> Dict[str, Any]:
    """ya-provider's ``BreakReason::Expired``: the agreement reached its ``golem.srv.comp.expiration``."""
    return _reason(f"Agreement expired @ {chrono_utc(expiration)}", "Expired")


def expired_before_start_reason(expiration: _dt.datetime) -> Dict[str, Any]:
    """ya-provider's ``BreakReason::InitializationError`` for an agreement already expired when approved."""
    return _reason("Failed to initialize. Error: Agreement expired before start. "
                   f"Expiration {_chrono_utc_debug(expiration)}", "InitializationError")


def single_activity_closed_reason() -> Dict[str, Any]:
    """ya-provider's ``GolemReason::success()``: it closes a single-activity agreement after its activity."""
    return _reason("Finished with success.", "Success")
