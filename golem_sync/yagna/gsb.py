"""The GSB API: publish services on yagna's bus and serve them over a WebSocket."""
from __future__ import annotations

from typing import Sequence
from urllib.parse import urlencode

from ..errors import GolemConfigError
from ._base import ApiBase, seg
from .models import GsbServices
from .net import to_websocket_url

__all__ = ["GsbApi"]


class GsbApi(ApiBase):
    """Calls under ``/gsb-api/v1``."""

    _api = "gsb"

    def bind_services(self, address: str, components: Sequence[str]) -> str:
        """Bind ``components`` (e.g. ``["GetMetadata", "GetChunk"]``) at ``address``
        (e.g. ``"/public/gftp/<id>"``); returns the services id for the WebSocket."""
        if isinstance(components, str) or not components:
            raise GolemConfigError("components must be a non-empty list of names")
        path = "/services"
        body = self._call("POST", path, json={"listen": {"on": address, "components": list(components)}})
        return self._obj(body, GsbServices.from_json, "POST", path).services_id

    def unbind_services(self, services_id: str) -> None:
        """Unbind; yagna then closes the services' WebSocket."""
        self._call("DELETE", f"/services/{seg(services_id)}")

    def websocket_url(self, services_id: str) -> str:
        """The WebSocket URL for the bound services. It CONTAINS THE APP KEY (yagna takes it in the
        ``authToken`` query parameter): never log or print it."""
        base = self._transport.url(self._api, f"/services/{seg(services_id)}")
        return to_websocket_url(base) + "?" + urlencode({"authToken": self._transport.config.app_key})
