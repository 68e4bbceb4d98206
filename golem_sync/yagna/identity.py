"""``GET /me``: who the app key belongs to."""
from __future__ import annotations

from ._base import ApiBase
from .models import Identity

__all__ = ["IdentityApi"]


class IdentityApi(ApiBase):
    """The identity API (at the API root)."""

    _api = "root"

    def me(self) -> Identity:
        """The node id, alias and role of the app key in use."""
        return self._obj(self._call("GET", "/me"), Identity.from_json, "GET", "/me")
