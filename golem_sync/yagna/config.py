"""Where yagna is and how to talk to it: URLs, the app key, timeouts, retries."""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

import attrs

from ..errors import GolemConfigError

__all__ = ["YagnaConfig", "API_PREFIXES", "DEFAULT_API_URL"]

DEFAULT_API_URL = "http://127.0.0.1:7465"

#: The path each yagna REST API lives under, relative to the API root URL.
#: Identity (``/me``) and version (``/version/get``) live at the root itself.
API_PREFIXES: Mapping[str, str] = {
    "root": "",
    "market": "/market-api/v1",
    "activity": "/activity-api/v1",
    "payment": "/payment-api/v1",
    "net": "/net-api/v1",
    "gsb": "/gsb-api/v1",
}


def _check_url(inst: Any, attribute: "attrs.Attribute[Any]", value: Optional[str]) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise GolemConfigError(f"{attribute.name} must be a URL string, got {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GolemConfigError(f"{attribute.name} must be an http(s) URL with a host, got {value!r}")


def _check_positive(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GolemConfigError(f"{attribute.name} must be a number, got {type(value).__name__}")
    if value <= 0:
        raise GolemConfigError(f"{attribute.name} must be positive, got {value!r}")


def _check_non_negative_int(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GolemConfigError(f"{attribute.name} must be a non-negative integer, got {value!r}")


def _strip_slash(value: Optional[str]) -> Optional[str]:
    return value.rstrip("/") if isinstance(value, str) else value


@attrs.frozen(kw_only=True)
class YagnaConfig:
    """Connection settings for one yagna daemon.

    Build it with :meth:`from_env` to honour ``YAGNA_APPKEY`` and ``YAGNA_API_URL``
    (explicit arguments win over the environment).

    Attributes:
        app_key: the requestor's app key, sent as ``Authorization: Bearer``. Never printed.
        api_url: the root of yagna's REST API.
        market_url, activity_url, payment_url, net_url, gsb_url: per-API overrides
            (full URLs including the ``/xxx-api/v1`` prefix), for setups that proxy one API elsewhere.
        connect_timeout: seconds to wait for a TCP connection.
        request_timeout: seconds to wait for an answer to an ordinary (non-long-poll) call.
        long_poll_margin: seconds added to a long poll's server-side timeout for the client-side read timeout.
        retries: how many times idempotent calls are retried on connection errors and 5xx answers.
        backoff: base of the exponential backoff between those retries, in seconds.
        pool_size: connections kept per host; size it to the number of threads that call yagna.
    """

    app_key: str = attrs.field(repr=False)
    api_url: str = attrs.field(default=DEFAULT_API_URL, converter=_strip_slash, validator=_check_url)
    market_url: Optional[str] = attrs.field(default=None, converter=_strip_slash, validator=_check_url)
    activity_url: Optional[str] = attrs.field(default=None, converter=_strip_slash, validator=_check_url)
    payment_url: Optional[str] = attrs.field(default=None, converter=_strip_slash, validator=_check_url)
    net_url: Optional[str] = attrs.field(default=None, converter=_strip_slash, validator=_check_url)
    gsb_url: Optional[str] = attrs.field(default=None, converter=_strip_slash, validator=_check_url)
    connect_timeout: float = attrs.field(default=5.0, validator=_check_positive)
    request_timeout: float = attrs.field(default=30.0, validator=_check_positive)
    long_poll_margin: float = attrs.field(default=5.0, validator=_check_positive)
    retries: int = attrs.field(default=3, validator=_check_non_negative_int)
    backoff: float = attrs.field(default=0.2, validator=_check_positive)
    pool_size: int = attrs.field(default=32, validator=_check_positive)

    @app_key.validator
    def _check_app_key(self, attribute: "attrs.Attribute[str]", value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise GolemConfigError(
                "app_key is missing: pass app_key=... or set YAGNA_APPKEY "
                "(create one with `yagna app-key create requestor`)"
            )

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, **overrides: Any) -> "YagnaConfig":
        """Build a config from ``YAGNA_APPKEY`` / ``YAGNA_API_URL``; keyword arguments win.

        Overrides that are ``None`` are ignored, so ``from_env(app_key=None)`` falls back to the env.
        """
        env = os.environ if env is None else env
        values = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(values) - {f.name for f in attrs.fields(cls)}
        if unknown:
            raise GolemConfigError(f"unknown yagna option(s): {', '.join(sorted(unknown))}")
        values.setdefault("app_key", env.get("YAGNA_APPKEY", ""))
        if env.get("YAGNA_API_URL"):
            values.setdefault("api_url", env["YAGNA_API_URL"])
        for api in ("market", "activity", "payment", "net", "gsb"):
            var = f"YAGNA_{api.upper()}_URL"
            if env.get(var):
                values.setdefault(f"{api}_url", env[var])
        return cls(**values)

    def base_url(self, api: str) -> str:
        """The URL prefix of one API (``"market"``, ``"activity"``, ..., or ``"root"``)."""
        if api not in API_PREFIXES:
            raise GolemConfigError(f"unknown yagna API {api!r}; known: {', '.join(API_PREFIXES)}")
        override = getattr(self, f"{api}_url", None) if api != "root" else None
        return override or self.api_url + API_PREFIXES[api]
