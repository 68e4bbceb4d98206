"""Cost ledger arithmetic, VPN address handling and the new options (work.env, vpn)."""
from __future__ import annotations

import ipaddress
from decimal import Decimal
from types import SimpleNamespace

import pytest

from golem_sync import GolemConfigError
from golem_sync._market.proposals import Pricing
from golem_sync._options import OptionLayer, VpnOptions, WorkOptions, merge_layers
from golem_sync._vpn import Vpn
from golem_sync._work.costs import CostLedger, usage_by_name
from golem_sync.yagna.models import Address, Deploy, Network

DUR, CPU = "golem.usage.duration_sec", "golem.usage.cpu_sec"
PRICING = Pricing(start=0.5, cpu_per_sec=0.1, env_per_sec=0.01, coefficients={DUR: 0.01, CPU: 0.1})


def test_usage_by_name_pairs_vector_and_values():
    assert usage_by_name([DUR, CPU], [10.0, 2.0]) == {DUR: 10.0, CPU: 2.0}
    assert usage_by_name([DUR, CPU], None) == {DUR: 0.0, CPU: 0.0}


def test_ledger_prices_each_activity_and_sums_per_job_and_agreement():
    ledger = CostLedger()
    ledger.agreement("ag1", job_id="j1", provider_id="0xp", provider_name="p", pricing=PRICING, vector=[DUR, CPU])
    ledger.activity("ag1", "a1", None)
    ledger.activity("ag1", "a2", lambda: {DUR: 20.0, CPU: 1.0})  # still live: read on refresh
    ledger.usage("ag1", "a1", {DUR: 10.0, CPU: 2.0}, final=True)
    first = 0.5 + 0.01 * 10 + 0.1 * 2
    second = 0.5 + 0.01 * 20 + 0.1 * 1
    assert ledger.job_cost("j1") == pytest.approx(first + second)
    assert ledger.agreement_cost("ag1") == pytest.approx(first + second)
    assert ledger.job_cost("other") == 0.0
    summary = ledger.summary({"ag1": Decimal("1.5")})
    (row,) = summary.rows
    assert row.activities == 2 and row.usage == {DUR: 30.0, CPU: 3.0}
    assert row.accepted == Decimal("1.5") and summary.accepted_total == Decimal("1.5")
    assert summary.by_provider() == {"p": pytest.approx(first + second)}
    assert "1 agreement(s)" in str(summary)


def test_a_failing_live_read_keeps_the_last_known_usage():
    ledger = CostLedger()
    ledger.agreement("ag", job_id="j", provider_id="p", provider_name="", pricing=PRICING, vector=[DUR])

    def gone():
        raise RuntimeError("activity destroyed")

    ledger.activity("ag", "a", gone)
    ledger.usage("ag", "a", {DUR: 100.0})
    assert ledger.job_cost("j") == pytest.approx(0.5 + 1.0)


class FakeNet:
    def __init__(self, requestor_ip="10.0.0.1/24"):
        self.nodes = []
        self.removed = []
        self.requestor_ip = requestor_ip

    def create_network(self, ip, mask):
        prefix = ipaddress.IPv4Network(f"{ip}/{mask}").prefixlen
        return Network(id="n1", ip=f"{ip}/{prefix}", mask=mask, gateway="10.0.0.1")

    def list_addresses(self, network_id):
        return [Address(ip=self.requestor_ip)]

    def add_node(self, network_id, node_id, ip):
        self.nodes.append((node_id, ip))

    def remove_network(self, network_id):
        self.removed.append(network_id)

    def websocket_uri(self, network_id, ip, port):
        return f"ws://h/net-api/v1/net/{network_id}/tcp/{ip}/{port}"


def test_vpn_gives_providers_free_addresses_and_builds_the_deploy_net():
    net = FakeNet()
    vpn = Vpn.create(SimpleNamespace(net=net), VpnOptions(enabled=True, ip="10.0.0.0/24"), "0xreq")
    assert vpn.requestor_ip == "10.0.0.1"
    assert vpn.add_node("0xp1") == "10.0.0.2" and vpn.add_node("0xp2") == "10.0.0.3"
    assert net.nodes == [("0xp1", "10.0.0.2"), ("0xp2", "10.0.0.3")]
    assert Deploy(net=[vpn.deploy_config("10.0.0.2")]).to_json() == {"deploy": {"net": [{
        "id": "n1", "ip": "10.0.0.0", "mask": "255.255.255.0", "nodeIp": "10.0.0.2",
        "nodes": {"10.0.0.1": "0xreq", "10.0.0.2": "0xp1", "10.0.0.3": "0xp2"}}]}}
    vpn.remove()
    vpn.remove()
    assert net.removed == ["n1"]


def test_a_full_vpn_says_so():
    vpn = Vpn.create(SimpleNamespace(net=FakeNet("10.0.0.1/30")), VpnOptions(enabled=True, ip="10.0.0.0/30"), "r")
    vpn.add_node("p1")  # /30 has two hosts: .1 (requestor and gateway) and .2
    with pytest.raises(Exception, match="no free address"):
        vpn.add_node("p2")


def test_work_env_is_validated_and_later_layers_replace_it():
    with pytest.raises(GolemConfigError, match="work.env"):
        WorkOptions(env={"BAD-NAME": "x"})
    with pytest.raises(GolemConfigError, match="work.env"):
        WorkOptions(env={"A": 1})
    merged = merge_layers(OptionLayer.parse({"work": {"env": {"A": "1"}}}, where="net"),
                          OptionLayer.parse({"work": {"raise_on_command_error": True}}, where="job"))
    assert merged.work.env == {"A": "1"} and merged.work.raise_on_command_error


def test_vpn_options_default_off_and_validate_the_range():
    assert merge_layers().vpn.enabled is False
    assert merge_layers(OptionLayer.parse({"vpn": {"enabled": True}}, where="job")).vpn.ip == "192.168.0.0/24"
    for bad in ("10.0.0.1/24", "nonsense", "10.0.0.0/31"):
        with pytest.raises(GolemConfigError, match="vpn.ip"):
            VpnOptions(ip=bad)
