"""The opt-in per-job VPN on the devnet, checked through yagna's net API with plain REST.

What the devnet cannot carry: traffic through the VPN (the devnet's exe-unit emulator has no
network stack, so nothing answers on the provider's VPN address). These tests therefore check the
VPN's lifecycle at the REST level only — created, provider node added, handed to the provider in
deploy, removed at the end — and the WebSocket URL's shape, not a connection through it.
"""
from __future__ import annotations

import ipaddress

import pytest

from golem_sync import GolemConfigError

from test_job_api import golem, probe, recorder  # noqa: F401  (fixtures)

pytestmark = pytest.mark.devnet


def test_vpn_lifecycle_through_yagna_net_api(golem, probe, recorder, golem_devnet):
    def worker(ctx):
        vpn = ctx.vpn
        network = probe.get(f"/net-api/v1/net/{vpn.network_id}")
        nodes = probe.get(f"/net-api/v1/net/{vpn.network_id}/nodes")
        addresses = probe.get(f"/net-api/v1/net/{vpn.network_id}/addresses")
        return (vpn.network_id, ctx.get_ip(), ctx.get_websocket_uri(8080), network.status_code, network.json(),
                nodes.json(), addresses.json(), ctx.run("echo inside").stdout)

    job = golem.create_job(vpn={"enabled": True, "ip": "10.20.0.0/24"})
    job.start_work(worker)
    network_id, ip, uri, status, network, nodes, addresses, out = job.wait_for_result(timeout=60)
    assert out == "inside\n"
    assert status == 200 and network["ip"].startswith("10.20.0.0")
    requestor_ip = addresses[0]["ip"].split("/")[0]
    assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("10.20.0.0/24") and ip != requestor_ip
    assert {"id": job.provider.id, "ip": ip} in nodes
    assert uri == f"{golem_devnet.api_url.replace('http://', 'ws://')}/net-api/v1/net/{network_id}/tcp/{ip}/8080"
    # The provider got the VPN in deploy: network, its own address, and every node's address.
    deploy = [kw["commands"][0].to_json()["deploy"] for n, s, kw in recorder.events
              if n == "batch-sent" and s is job and "deploy" in kw["commands"][0].to_json()][0]
    assert deploy["net"] == [{"id": network_id, "ip": "10.20.0.0", "mask": "255.255.255.0", "nodeIp": ip,
                              "nodes": {requestor_ip: golem.requestor_id, ip: job.provider.id}}]
    # Removed at the end of the job.
    assert probe.get(f"/net-api/v1/net/{network_id}").status_code == 404
    assert all(n["id"] != network_id for n in probe.get("/net-api/v1/net").json())


def test_a_job_without_vpn_creates_no_network_and_says_so(golem, probe):
    before = probe.get("/net-api/v1/net").json()

    def worker(ctx):
        with pytest.raises(GolemConfigError, match="no VPN"):
            ctx.get_ip()
        with pytest.raises(GolemConfigError, match="no VPN"):
            ctx.get_websocket_uri(80)
        return ctx.vpn, probe.get("/net-api/v1/net").json()

    job = golem.create_job()
    job.start_work(worker)
    vpn, during = job.wait_for_result(timeout=60)
    assert vpn is None and during == before


def test_vpn_is_removed_when_the_job_is_cancelled(golem, probe):
    import threading

    ready = threading.Event()
    seen = {}

    def worker(ctx):
        seen["id"] = ctx.vpn.network_id
        ready.set()
        ctx.run("sleep 30")

    job = golem.create_job(vpn={"enabled": True})
    job.start_work(worker)
    assert ready.wait(60)
    assert probe.get(f"/net-api/v1/net/{seen['id']}").status_code == 200
    job.cancel(timeout=10)
    assert probe.get(f"/net-api/v1/net/{seen['id']}").status_code == 404


def test_bad_vpn_options_are_rejected_up_front(golem):
    with pytest.raises(GolemConfigError, match="vpn.ip"):
        golem.create_job(vpn={"enabled": True, "ip": "10.0.0.1/24"})  # host bits set
    with pytest.raises(GolemConfigError, match="vpn.enabled"):
        golem.create_job(vpn={"enabled": "yes"})
