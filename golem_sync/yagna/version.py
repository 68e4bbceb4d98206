"""``GET /version/get``: which yagna is running."""
from __future__ import annotations

from ._base import ApiBase
from .models import YagnaVersion

__all__ = ["VersionApi"]


class VersionApi(ApiBase):
    """The version API (at the API root)."""

    _api = "root"

    def get(self) -> YagnaVersion:
        """The running version (``.current.version``, e.g. ``"0.17.6"``) and any pending upgrade."""
        path = "/version/get"
        return self._obj(self._call("GET", path), YagnaVersion.from_json, "GET", path)
