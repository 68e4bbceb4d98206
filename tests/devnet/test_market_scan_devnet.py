"""Market scans, startup-timeout reports and cost estimates against the real yagna on a devnet whose
providers differ in price, name, memory and manners.

Every test ends with the audit of ``audited_network`` (nothing Approved, activities destroyed,
invoices accepted, the allocation released, no golem_sync thread left) and, for scans, no scan
iterator or demand left in yagna.
"""
from __future__ import annotations

from typing import Any, Dict, List

import pytest

from golem_sync import GolemNoProposalError, GolemTimeoutError, PaymentOptions
from golem_sync.errors import GolemMarketError, YagnaNotFoundError

from hygiene import YagnaProbe
from test_job_api import make_network
from test_pool_devnet import audited_network, devnet_of

pytestmark = pytest.mark.devnet

REFUSAL = "devnet provider rejects every proposal (fault reject_proposals)"


def specs() -> List[Any]:
    from golem_sync.devnet.provider import ProviderFaults, ProviderSpec

    return [
        ProviderSpec(name="cheap", price_per_cpu_sec=0.0001, price_per_duration_sec=0.00005),
        ProviderSpec(name="dear", price_per_cpu_sec=0.01),
        ProviderSpec(name="banned", price_per_cpu_sec=0.0002, price_per_duration_sec=0.0001, start_price=0.01),
        ProviderSpec(name="small", mem_gib=1.0, cpu_threads=4, price_per_cpu_sec=0.0003),
        ProviderSpec(name="refuser", price_per_cpu_sec=0.0004, faults=ProviderFaults(reject_proposals=True)),
    ]


SPECS = {spec.name: spec for spec in specs()}


@pytest.fixture(scope="module")
def market_devnet():
    yield from devnet_of(*specs())


@pytest.fixture
def market(market_devnet):
    yield from audited_network(market_devnet)


class ScanSpy:
    """Records the scan ids the network's client begins (the calls themselves go to yagna)."""

    def __init__(self, network: Any) -> None:
        self.ids: List[str] = []
        begin = network.client.market.begin_scan

        def recording(*args: Any, **kwargs: Any) -> str:
            scan_id = begin(*args, **kwargs)
            self.ids.append(scan_id)
            return scan_id

        network.client.market.begin_scan = recording


def assert_nothing_left(info: Any, scan_ids: List[str]) -> None:
    probe = YagnaProbe(info.api_url, info.app_key)
    for scan_id in scan_ids:
        assert probe.get(f"/market-api/v1/scan/{scan_id}/events", timeout=0.1).status_code == 404, scan_id
    demands = probe.get("/market-api/v1/demands")
    assert demands.status_code == 200 and demands.json() == []


SCAN_OPTIONS: Dict[str, Any] = dict(market={"max_cpu_per_sec": 0.001, "denied_provider_names": ["banned"]},
                                    package={"min_mem_gib": 2})
EXPECTED_REASONS = {
    "cheap": [],
    "dear": ["cpu price 0.01/s above max_cpu_per_sec 0.001"],
    "banned": ["provider name in denied_provider_names"],
    "small": ["constraint not met: (golem.inf.mem.gib>=2)"],
    "refuser": [],
}


def test_scan_returns_every_offer_of_the_devnet_with_the_right_reasons(market, market_devnet):
    network, _ = market
    spy = ScanSpy(network)
    scan = network.scan_market(timeout=3.0, **SCAN_OPTIONS)
    assert scan.method == "scan" and 2.9 <= scan.duration_sec < 10
    by_name = {offer.provider_name: offer for offer in scan.offers}
    assert sorted(o.provider_name for o in scan.offers) == sorted(SPECS)  # each offer once
    assert {name: offer.reasons for name, offer in by_name.items()} == EXPECTED_REASONS
    assert sorted(o.provider_name for o in scan.acceptable) == ["cheap", "refuser"]
    for name, offer in by_name.items():
        spec = SPECS[name]
        assert offer.prices == {"golem.usage.duration_sec": spec.price_per_duration_sec,
                                "golem.usage.cpu_sec": spec.price_per_cpu_sec, "start": spec.start_price}
        assert (offer.runtime, offer.cpu_threads, offer.mem_gib, offer.storage_gib) == \
            (spec.runtime, spec.cpu_threads, spec.mem_gib, spec.storage_gib)
        assert offer.platforms == (market_devnet.payment_platform,)
    assert {p.node_id.lower() for p in market_devnet.providers} == {o.provider_id.lower() for o in scan.offers}
    assert scan.rejection_counts() == {"above max_cpu_per_sec=0.001": 1, "denied by name": 1,
                                       "not meeting (golem.inf.mem.gib>=2)": 1}
    assert scan.summary() == ("5 offers seen, 2 acceptable, 1 above max_cpu_per_sec=0.001, 1 denied by name, "
                              "1 not meeting (golem.inf.mem.gib>=2)")
    assert len(spy.ids) == 1
    assert_nothing_left(market_devnet, spy.ids)


def test_the_temporary_demand_of_an_older_yagna_finds_the_same_offers(market, market_devnet):
    network, _ = market

    def no_scan_api(*args: Any, **kwargs: Any) -> str:
        raise YagnaNotFoundError("yagna: not found (404) on POST /scan", status=404, method="POST", path="/scan")

    network.client.market.begin_scan = no_scan_api
    scan = network.scan_market(timeout=3.0, **SCAN_OPTIONS)
    assert scan.method == "demand"
    assert {offer.provider_name: offer.reasons for offer in scan.offers} == EXPECTED_REASONS
    assert_nothing_left(market_devnet, [])


def test_offers_on_another_payment_platform_are_named(market_devnet):
    other = "polygon" if market_devnet.payment_network != "polygon" else "mainnet"
    pays_on = PaymentOptions(network=other).platform()
    network = make_network(market_devnet, payment={"network": other}).init()
    try:
        scan = network.scan_market(timeout=2.0)
    finally:
        network.close()
    assert scan.platform == pays_on and scan.acceptable == []
    offered = market_devnet.payment_platform
    assert {tuple(o.reasons) for o in scan.offers} == {
        (f"no common payment platform: offers {offered}, this job pays on {pays_on}",)}
    assert scan.rejection_counts() == {f"only on {offered} (this job pays on {pays_on})": len(SPECS)}


def test_a_startup_timeout_reports_what_the_devnet_offered(market, market_devnet):
    network, _ = market
    job = network.create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 3.0}, market={"max_cpu_per_sec": 0.00001})
    with pytest.raises(GolemNoProposalError) as caught:
        job.result(timeout=60)
    error = caught.value
    report = error.market_report
    assert report is not None and error.phase == "agreement"
    assert (report.offers_seen, report.providers_seen, report.acceptable) == (5, 5, 0)
    assert report.rejection_counts() == {"above max_cpu_per_sec=0.00001": 5}
    assert report.platform == market_devnet.payment_platform and report.provider_rejections == ()
    assert str(error) == ("no provider accepted in 3 s: 5 offers seen, 5 above max_cpu_per_sec=0.00001; "
                          "no provider rejected our proposals")


def test_a_startup_timeout_reports_the_providers_refusals(market, market_devnet):
    network, _ = market
    job = network.create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 3.0},
                   market={"allowed_provider_names": ["refuser"]})
    error = job.exception(timeout=60)
    assert isinstance(error, GolemTimeoutError) and not isinstance(error, GolemMarketError), error
    assert error.phase == "agreement"
    report = error.market_report
    assert (report.offers_seen, report.acceptable) == (5, 1)
    assert report.rejection_counts() == {"not in allowed_provider_names": 4}
    refuser = next(p.node_id for p in market_devnet.providers if p.name == "refuser")
    assert [(r.provider_id.lower(), r.provider_name, r.reason, r.stage) for r in report.provider_rejections] == \
        [(refuser.lower(), "refuser", REFUSAL, "proposal")]
    assert f"providers rejected 1 of our proposals (refuser: {REFUSAL})" in str(error)


def test_estimate_cost_matches_the_providers_prices(market, market_devnet):
    network, _ = market
    spy = ScanSpy(network)
    estimate = network.estimate_cost(market=SCAN_OPTIONS["market"], duration_sec=600, timeout=2.0)
    expected = {name: SPECS[name].start_price + 600 * (SPECS[name].price_per_duration_sec
                                                       + SPECS[name].price_per_cpu_sec * SPECS[name].cpu_threads)
                for name in ("cheap", "small", "refuser")}  # acceptable: not dear, not banned
    assert {row.provider_name: row.cost for row in estimate.per_provider} == pytest.approx(expected)
    assert [row.provider_name for row in estimate.per_provider] == sorted(expected, key=expected.__getitem__)
    assert estimate.worst == pytest.approx(max(expected.values()))
    assert estimate.best == pytest.approx(min(expected.values()))
    assert estimate.offers_considered == 3 and estimate.duration_sec == 600
    with pytest.raises(GolemMarketError, match="no acceptable offer"):
        network.estimate_cost(market={"max_cpu_per_sec": 0.00001}, duration_sec=60, timeout=1.0)
    assert_nothing_left(market_devnet, spy.ids)
