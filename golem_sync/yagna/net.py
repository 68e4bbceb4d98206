"""The net API: VPNs between the requestor and its providers."""
from __future__ import annotations

from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit, urlunsplit

from ._base import ApiBase, seg
from .models import Address, Network, Node

__all__ = ["NetApi", "to_websocket_url"]


def to_websocket_url(http_url: str) -> str:
    """``http(s)://`` → ``ws(s)://`` for the same host and path."""
    parts = urlsplit(http_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


class NetApi(ApiBase):
    """Calls under ``/net-api/v1``."""

    _api = "net"

    def create_network(self, ip: str, mask: Optional[str] = None, gateway: Optional[str] = None) -> Network:
        """Create a VPN with address range ``ip``/``mask`` (e.g. ``"192.168.0.0"``, ``"255.255.255.0"``)."""
        body: Dict[str, Any] = {"ip": ip}
        if mask is not None:
            body["mask"] = mask
        if gateway is not None:
            body["gateway"] = gateway
        return self._obj(self._call("POST", "/net", json=body), Network.from_json, "POST", "/net")

    def get_network(self, network_id: str) -> Network:
        path = f"/net/{seg(network_id)}"
        return self._obj(self._call("GET", path), Network.from_json, "GET", path)

    def list_networks(self) -> List[Network]:
        return self._list(self._call("GET", "/net"), Network.from_json, "GET", "/net")

    def remove_network(self, network_id: str) -> None:
        self._call("DELETE", f"/net/{seg(network_id)}")

    def add_node(self, network_id: str, node_id: str, ip: str) -> None:
        """Add a provider node with its VPN IP."""
        self._call("POST", f"/net/{seg(network_id)}/nodes", json=Node(id=node_id, ip=ip).to_json())

    def list_nodes(self, network_id: str) -> List[Node]:
        path = f"/net/{seg(network_id)}/nodes"
        return self._list(self._call("GET", path), Node.from_json, "GET", path)

    def remove_node(self, network_id: str, node_id: str) -> None:
        self._call("DELETE", f"/net/{seg(network_id)}/nodes/{seg(node_id)}")

    def add_address(self, network_id: str, ip: str) -> None:
        """Give the requestor an address in the VPN."""
        self._call("POST", f"/net/{seg(network_id)}/addresses", json={"ip": ip})

    def list_addresses(self, network_id: str) -> List[Address]:
        path = f"/net/{seg(network_id)}/addresses"
        return self._list(self._call("GET", path), Address.from_json, "GET", path)

    def websocket_uri(self, network_id: str, ip: str, port: int) -> str:
        """The WebSocket URL that tunnels TCP to ``ip:port`` inside the VPN (auth: Bearer header)."""
        base = self._transport.url(self._api, f"/net/{seg(network_id)}/tcp/{seg(ip)}/{int(port)}")
        return to_websocket_url(base)
