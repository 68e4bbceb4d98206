"""A job attempt's VPN: created over yagna's net API, joined by the provider at deploy, removed at the end.

yagna assigns the requestor the first address of the range when the network is created; providers
get the next free ones. The provider joins through the ``net`` argument of ``deploy``; the requestor
reaches a port inside the VPN through yagna's WebSocket tunnel (:meth:`Vpn.websocket_uri`, auth with
the ``Authorization: Bearer <app key>`` header).

Threads: owned by the job's thread (created in the attempt, removed in its cleanup). ``remove`` is
idempotent and never raises.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Dict, Optional

from .errors import GolemActivityError, YagnaError, YagnaNotFoundError
from ._options import VpnOptions
from .yagna.client import YagnaClient
from .yagna.models import DeployNetwork, Network

__all__ = ["Vpn"]

logger = logging.getLogger("golem_sync.vpn")


class Vpn:
    """One VPN: its yagna network, the requestor's address and the nodes added to it."""

    def __init__(self, client: YagnaClient, network: Network, requestor_id: str, requestor_ip: str) -> None:
        self._client = client
        self.network = network
        self.network_id = network.id
        self.requestor_id = requestor_id
        self.requestor_ip = requestor_ip
        self._range = ipaddress.IPv4Network(network.ip, strict=False)
        self._lock = threading.Lock()
        #: VPN IP -> node id, the requestor included.
        self.nodes: Dict[str, str] = {requestor_ip: requestor_id}
        self.removed = False

    def __repr__(self) -> str:
        return f"<Vpn {self.network_id} {self._range} nodes={len(self.nodes)}>"

    @classmethod
    def create(cls, client: YagnaClient, options: VpnOptions, requestor_id: str) -> "Vpn":
        """Create the network (``POST /net``) and find the requestor's address in it."""
        wanted = ipaddress.IPv4Network(options.ip)
        try:
            network = client.net.create_network(str(wanted.network_address), str(wanted.netmask))
        except YagnaError as exc:
            raise GolemActivityError(f"could not create a VPN {wanted}: {exc}") from exc
        try:
            addresses = client.net.list_addresses(network.id)
            if addresses:
                requestor_ip = addresses[0].ip.split("/")[0]
            else:  # older yagna: give the requestor the first host address ourselves
                requestor_ip = str(next(wanted.hosts()))
                client.net.add_address(network.id, requestor_ip)
        except YagnaError as exc:
            _remove(client, network.id)
            raise GolemActivityError(f"could not set the requestor's address in VPN {network.id}: {exc}") from exc
        logger.info("created VPN %s (%s), requestor at %s", network.id, network.ip, requestor_ip)
        return cls(client, network, requestor_id, requestor_ip)

    def add_node(self, node_id: str) -> str:
        """Add a provider node at the next free address (``POST /net/{id}/nodes``); returns its IP."""
        with self._lock:
            taken = set(self.nodes) | {self.network.gateway.split("/")[0]}
            ip = next((str(h) for h in self._range.hosts() if str(h) not in taken), None)
            if ip is None:
                raise GolemActivityError(f"VPN {self.network_id} ({self._range}) has no free address left")
            self.nodes[ip] = node_id
        try:
            self._client.net.add_node(self.network_id, node_id, ip)
        except YagnaError as exc:
            with self._lock:
                self.nodes.pop(ip, None)
            raise GolemActivityError(f"could not add node {node_id} to VPN {self.network_id}: {exc}") from exc
        return ip

    def ip_of(self, node_id: str) -> Optional[str]:
        with self._lock:
            return next((ip for ip, nid in self.nodes.items() if nid == node_id), None)

    def deploy_config(self, node_ip: str) -> DeployNetwork:
        """The ``net`` entry of ``deploy`` for the node at ``node_ip``."""
        with self._lock:
            nodes = dict(self.nodes)
        return DeployNetwork(id=self.network_id, ip=str(self._range.network_address), node_ip=node_ip,
                             mask=str(self._range.netmask), nodes=nodes)

    def websocket_uri(self, ip: str, port: int) -> str:
        """``ws://.../net-api/v1/net/{id}/tcp/{ip}/{port}``: a TCP tunnel to ``ip:port`` in the VPN."""
        return self._client.net.websocket_uri(self.network_id, ip, port)

    def remove(self) -> None:
        """Remove the network from yagna (its nodes go with it). Idempotent; never raises."""
        with self._lock:
            if self.removed:
                return
            self.removed = True
        _remove(self._client, self.network_id)


def _remove(client: YagnaClient, network_id: str) -> None:
    try:
        client.net.remove_network(network_id)
        logger.info("removed VPN %s", network_id)
    except YagnaNotFoundError:
        pass
    except YagnaError as exc:
        logger.warning("could not remove VPN %s: %s", network_id, exc)
