"""Root-level models: the identity behind the app key (``/me``) and yagna's version."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import attrs

from ._parse import Reader

__all__ = ["Identity", "VersionInfo", "YagnaVersion"]


@attrs.frozen
class Identity:
    """``GET /me``: the node id (``0x…``), its alias and the app key's role."""

    identity: str
    name: str
    role: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Identity":
        r = Reader("Identity", data)
        return cls(identity=r.text("identity"), name=r.text("name"), role=r.text("role"))


@attrs.frozen
class VersionInfo:
    """One release of yagna as ``/version/get`` describes it."""

    version: str
    name: str
    seen: bool
    release_ts: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "VersionInfo":
        r = Reader("VersionInfo", data)
        return cls(
            version=r.text("version"),
            name=r.text("name"),
            seen=bool(r.opt_bool("seen")),
            # Kept as text: yagna writes it as a naive local date-time, not RFC 3339.
            release_ts=r.opt_text("releaseTs") or "",
        )


@attrs.frozen
class YagnaVersion:
    """``GET /version/get``: the running version and a pending upgrade, if any."""

    current: VersionInfo
    pending: Optional[VersionInfo] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "YagnaVersion":
        r = Reader("YagnaVersion", data)
        pending = r.opt_obj("pending")
        return cls(
            current=VersionInfo.from_json(r.obj("current")),
            pending=VersionInfo.from_json(pending) if pending is not None else None,
        )
