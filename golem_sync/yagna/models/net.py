"""Net API (VPN) and GSB API models."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import attrs

from ._parse import Reader

__all__ = ["Network", "Node", "Address", "GsbServices"]


@attrs.frozen
class Network:
    """A VPN yagna manages for the requestor (yagna 0.17.6 gives ``ip`` in CIDR form, ``"10.0.0.0/24"``)."""

    id: str
    ip: str
    mask: str
    gateway: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Network":
        r = Reader("Network", data)
        return cls(id=r.text("id"), ip=r.text("ip"), mask=r.text("mask"), gateway=r.text("gateway"))


@attrs.frozen
class Node:
    """A node (provider or requestor) in a VPN, by node id and VPN IP."""

    id: str
    ip: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Node":
        r = Reader("Node", data)
        return cls(id=r.text("id"), ip=r.text("ip"))

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.id, "ip": self.ip}


@attrs.frozen
class Address:
    """One of the requestor's own addresses in a VPN (yagna 0.17.6 lists them as CIDR, ``"10.0.0.2/24"``)."""

    ip: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Address":
        return cls(ip=Reader("Address", data).text("ip"))


@attrs.frozen
class GsbServices:
    """``POST /gsb-api/v1/services``: the id of the bound services, the address and components."""

    services_id: str
    on: Optional[str] = None
    components: List[str] = attrs.field(factory=list)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "GsbServices":
        r = Reader("GsbServices", data)
        listen = r.opt_obj("listen") or {}
        lr = Reader("GsbServices.listen", listen)
        return cls(services_id=r.text("servicesId"), on=lr.opt_text("on"), components=lr.str_list("components"))
