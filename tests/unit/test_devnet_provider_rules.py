"""The devnet provider's agreement rules (pure parts): ya-provider's reasons, multi-activity, expiration,
and the spec knobs that set them. No daemon."""
from __future__ import annotations

import datetime as dt
from typing import Any, Dict

import pytest

from golem_sync.devnet.errors import DevnetConfigError
from golem_sync.devnet.provider import ProviderSpec
from golem_sync.devnet.provider.rules import (
    DEFAULT_IDLE_AGREEMENT_TIMEOUT,
    EXPIRATION,
    MULTI_ACTIVITY,
    agreement_expiration,
    agreement_property,
    chrono_utc,
    expired_before_start_reason,
    expired_reason,
    is_multi_activity,
    no_activity_reason,
    rust_duration,
    single_activity_closed_reason,
)
from golem_sync.devnet.provider.spec import build_offer

UTC = dt.timezone.utc


@pytest.mark.parametrize("seconds, text", [
    (90, "90s"), (2, "2s"), (2.5, "2.5s"), (0.5, "500ms"), (1.25, "1.25s"), (0.0015, "1.5ms"),
    (0.000002, "2µs"), (0, "0ns"), (3600, "3600s"),
])
def test_durations_read_as_rust_debug_prints_them(seconds: float, text: str) -> None:
    assert rust_duration(seconds) == text


def test_times_read_as_chrono_prints_them() -> None:
    assert chrono_utc(dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)) == "2024-05-01 10:00:00 UTC"
    assert chrono_utc(dt.datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)) == "2024-05-01 10:00:00.250 UTC"
    assert chrono_utc(dt.datetime(2024, 5, 1, 10, 0, 0, 250001, tzinfo=UTC)) == "2024-05-01 10:00:00.250001 UTC"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert chrono_utc(dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=plus2)) == "2024-05-01 10:00:00 UTC"


def test_break_reasons_carry_ya_providers_messages_and_codes() -> None:
    assert no_activity_reason(90) == {"message": "No activity created within 90s",
                                      "golem.provider.code": "NoActivity"}
    when = dt.datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert expired_reason(when) == {"message": "Agreement expired @ 2024-05-01 10:00:00.123 UTC",
                                    "golem.provider.code": "Expired"}
    early = expired_before_start_reason(when)
    assert early["golem.provider.code"] == "InitializationError"
    assert early["message"] == ("Failed to initialize. Error: Agreement expired before start. "
                                "Expiration 2024-05-01T10:00:00.123Z")
    assert single_activity_closed_reason() == {"message": "Finished with success.", "golem.provider.code": "Success"}


def test_properties_are_read_flat_or_nested() -> None:
    assert agreement_property({"golem.srv.comp.expiration": 5}, EXPIRATION) == 5
    assert agreement_property({"golem": {"srv": {"comp": {"expiration": 6}}}}, EXPIRATION) == 6
    assert agreement_property({"golem": {"srv": 1}}, EXPIRATION) is None
    assert agreement_property({}, EXPIRATION) is None


@pytest.mark.parametrize("demand, offer, multi", [
    ({MULTI_ACTIVITY: True}, {MULTI_ACTIVITY: True}, True),
    ({}, {MULTI_ACTIVITY: True}, False),  # ya-provider: absent on the demand = single activity
    ({MULTI_ACTIVITY: False}, {MULTI_ACTIVITY: True}, False),
    ({MULTI_ACTIVITY: True}, {MULTI_ACTIVITY: False}, False),  # a provider that does not advertise it
    ({MULTI_ACTIVITY: "true"}, {MULTI_ACTIVITY: True}, False),  # ya-provider reads a bool only
    ({"golem": {"srv": {"caps": {"multi-activity": True}}}}, {MULTI_ACTIVITY: True}, True),
])
def test_multi_activity_needs_both_sides(demand: Dict[str, Any], offer: Dict[str, Any], multi: bool) -> None:
    assert is_multi_activity(demand, offer) is multi


def test_expiration_is_milliseconds_since_the_epoch_on_the_demand() -> None:
    when = agreement_expiration({EXPIRATION: 1714557600250})
    assert when == dt.datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert agreement_expiration({}) is None
    assert agreement_expiration({EXPIRATION: "1714557600250"}) is None
    assert agreement_expiration({EXPIRATION: True}) is None
    assert agreement_expiration({EXPIRATION: 10 ** 30}) is None


def test_spec_defaults_advertise_multi_activity_and_ya_providers_idle_timeout() -> None:
    spec = ProviderSpec()
    assert spec.multi_activity is True
    assert spec.idle_agreement_timeout == DEFAULT_IDLE_AGREEMENT_TIMEOUT == 90.0
    offer = build_offer(spec, node_id="0xabc", subnet="s", payment_platform="erc20-hoodi-tglm")
    assert offer["properties"][MULTI_ACTIVITY] is True
    single = build_offer(ProviderSpec(multi_activity=False, idle_agreement_timeout=2.5), node_id="0xabc",
                         subnet="s", payment_platform="erc20-hoodi-tglm")
    assert single["properties"][MULTI_ACTIVITY] is False  # like ya-provider: stated, not left out


@pytest.mark.parametrize("kwargs, field", [
    ({"multi_activity": 1}, "multi_activity"),
    ({"multi_activity": "yes"}, "multi_activity"),
    ({"idle_agreement_timeout": 0}, "idle_agreement_timeout"),
    ({"idle_agreement_timeout": -1.0}, "idle_agreement_timeout"),
    ({"idle_agreement_timeout": float("inf")}, "idle_agreement_timeout"),
    ({"idle_agreement_timeout": True}, "idle_agreement_timeout"),
    ({"idle_agreement_timeout": "90s"}, "idle_agreement_timeout"),
])
def test_spec_rejects_bad_rule_knobs_naming_the_field(kwargs: Dict[str, Any], field: str) -> None:
    with pytest.raises(DevnetConfigError, match=field):
        ProviderSpec(**kwargs)
