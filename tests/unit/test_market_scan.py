"""Market scans, the reasons an offer is rejected, startup-timeout reports and cost estimates.

The rules are unit-tested on ProposalViews; scans and negotiations run on the stateful fake yagna
(``fake_yagna``/``golem`` fixtures) with the scan routes added here. The real yagna's scan is
exercised in ``tests/devnet/test_market_scan.py``.
"""
from __future__ import annotations

import json
import pickle
import time
from typing import Any, Dict, List, Sequence, Tuple

import pytest

from fakeyagna import now
from golem_sync import CostEstimate, MarketReport, MarketScan, ScannedOffer
from golem_sync._market.constraints import ConstraintSyntaxError, unmet_clauses
from golem_sync._market.proposals import ProposalView, Reason, proposal_problems
from golem_sync._market.log import MarketLog
from golem_sync._options import MarketOptions, PaymentOptions
from golem_sync.errors import (GolemConfigError, GolemMarketError, GolemNoProposalError, GolemTimeoutError,
                               YagnaServerError)

PLATFORM = PaymentOptions().platform()  # what the test networks pay on (the default network)
OTHER = "erc20-polygon-glm" if PLATFORM != "erc20-polygon-glm" else "erc20-mainnet-glm"


def props(name: str = "p1", issuer: str = "0xp1", cpu: float = 0.0001, env: float = 0.00005, start: float = 0.0,
          platform: str = PLATFORM, threads: int = 2, mem: float = 4.0, **extra: Any) -> Dict[str, Any]:
    values = {
        "golem.node.id.name": name,
        f"golem.com.payment.platform.{platform}.address": issuer,
        "golem.com.pricing.model": "linear",
        "golem.com.usage.vector": ["golem.usage.duration_sec", "golem.usage.cpu_sec"],
        "golem.com.pricing.model.linear.coeffs": [env, cpu, start],
        "golem.inf.cpu.threads": threads, "golem.inf.cpu.cores": 1,
        "golem.inf.mem.gib": mem, "golem.inf.storage.gib": 20.0,
        "golem.runtime.name": "vm", "golem.runtime.capabilities": ["vpn"],
        "golem.node.debug.subnet": "public",
    }
    values.update(extra)
    return values


def view(**kwargs: Any) -> ProposalView:
    p = props(**kwargs)
    return ProposalView("o-" + p["golem.node.id.name"], str(kwargs.get("issuer", "0xp1")), "Initial", p)


# -- the rules: every reason, each naming its option ----------------------------------------------

def test_every_reason_of_an_offer_is_collected_and_names_its_option():
    market = MarketOptions(max_cpu_per_sec=0.00001, max_env_per_sec=0.00001, max_start_price=0.1,
                           denied_provider_names=["bad"], proposal_filter=lambda p: pytest.fail("asked"))
    reasons = proposal_problems(view(name="bad", platform=OTHER, start=0.5), market, PLATFORM)
    assert reasons == [
        f"no common payment platform: offers {OTHER}, this job pays on {PLATFORM}",
        "provider name in denied_provider_names",
        "start price 0.5 above max_start_price 0.1",
        "cpu price 0.0001/s above max_cpu_per_sec 0.00001",
        "env price 0.00005/s above max_env_per_sec 0.00001",
    ]
    assert [r.rule for r in reasons] == ["payment.network", "denied_provider_names", "max_start_price",
                                         "max_cpu_per_sec", "max_env_per_sec"]
    assert reasons[0].group == f"only on {OTHER} (this job pays on {PLATFORM})"
    assert reasons[3].group == "above max_cpu_per_sec=0.00001"


@pytest.mark.parametrize("market, offer, reason", [
    (dict(allowed_provider_ids=["0xother"]), {}, "provider id not in allowed_provider_ids"),
    (dict(denied_provider_ids=["0xp1"]), {}, "provider id in denied_provider_ids"),
    (dict(allowed_provider_names=["x"]), {}, "provider name not in allowed_provider_names"),
    (dict(denied_provider_names=["p1"]), {}, "provider name in denied_provider_names"),
    (dict(allowed_name_regex="^good"), {}, "provider name does not match allowed_name_regex"),
    (dict(denied_name_regex="^p"), {}, "provider name matches denied_name_regex"),
    (dict(max_cpu_per_sec=0.00001), {}, "cpu price 0.0001/s above max_cpu_per_sec 0.00001"),
    (dict(max_env_per_sec=0), {}, "env price 0.00005/s above max_env_per_sec 0"),
    (dict(max_start_price=0.1), dict(start=0.25), "start price 0.25 above max_start_price 0.1"),
    (dict(debit_note_accept_timeout_sec=120), {"golem.com.payment.debit-notes.accept-timeout?": 30},
     "debit-note accept timeout 30 s below debit_note_accept_timeout_sec 120"),
    (dict(), {"golem.com.pricing.model": "fixed"}, "pricing model 'fixed' is not linear"),
    (dict(), {"golem.com.pricing.model.linear.coeffs": [0.1]},
     "usage vector and linear coefficients are missing or inconsistent"),
    (dict(), dict(platform=OTHER), f"no common payment platform: offers {OTHER}, this job pays on {PLATFORM}"),
    (dict(proposal_filter=lambda p: False), {}, "rejected by proposal_filter"),
])
def test_each_rule_gives_its_reason(market, offer, reason):
    named = {k: v for k, v in offer.items() if k in ("start", "platform")}
    raw = {k: v for k, v in offer.items() if k not in named}
    assert proposal_problems(view(**named, **raw), MarketOptions(**market), PLATFORM) == [reason]


def test_an_acceptable_offer_has_no_reason_and_the_filter_sees_only_those():
    asked: List[str] = []
    market = MarketOptions(max_cpu_per_sec=0.001, proposal_filter=lambda p: asked.append(p.provider_name) or True)
    assert proposal_problems(view(name="fine"), market, PLATFORM) == []
    assert proposal_problems(view(name="dear", cpu=0.01), market, PLATFORM) != []
    assert asked == ["fine"]


def test_a_provider_without_any_payment_platform():
    offer = ProposalView("o", "0xp", "Initial", {k: v for k, v in props().items() if "platform" not in k})
    (reason,) = proposal_problems(offer, MarketOptions(), PLATFORM)
    assert reason == f"no common payment platform: offers none, this job pays on {PLATFORM}"
    assert reason.group == "without a payment platform"


def test_constraints_are_checked_only_when_given():
    clauses = "(&(golem.inf.mem.gib>=8)\n\t(golem.runtime.name=vm)\n\t(golem.inf.cpu.threads>=1))"
    small = view(mem=2.0)
    assert proposal_problems(small, MarketOptions(), PLATFORM) == []
    (reason,) = proposal_problems(small, MarketOptions(), PLATFORM, constraints=clauses)
    assert reason == "constraint not met: (golem.inf.mem.gib>=8)"
    assert reason.rule == "constraints" and reason.group == "not meeting (golem.inf.mem.gib>=8)"


def test_a_reason_is_a_plain_string_that_pickles_with_its_rule():
    reason = Reason("provider name in denied_provider_names", rule="denied_provider_names", group="denied by name")
    again = pickle.loads(pickle.dumps(reason))
    assert again == "provider name in denied_provider_names" and again.group == "denied by name"
    assert json.loads(json.dumps([reason])) == [str(reason)]


# -- the constraint checker ------------------------------------------------------------------------

@pytest.mark.parametrize("clause, met", [
    ("(golem.inf.mem.gib>=4)", True), ("(golem.inf.mem.gib>4)", False), ("(golem.inf.mem.gib<=4)", True),
    ("(golem.inf.mem.gib<4)", False), ("(golem.inf.mem.gib=4)", True),
    ("(golem.runtime.name=vm)", True), ("(golem.runtime.name=wasm*)", False), ("(golem.runtime.name=v*)", True),
    ("(golem.runtime.capabilities=vpn)", True), ("(golem.runtime.capabilities=gpu)", False),
    ("(golem.srv.caps.multi-activity=true)", True), ("(golem.absent=*)", False), ("(golem.runtime.name=*)", True),
    ("(golem.absent>=1)", False), ("(!(golem.runtime.name=vm))", False), ("(|(golem.runtime.name=x)(golem.inf.mem.gib>=1))", True),
    ("(golem.runtime.version>=0.4.0)", True), ("(golem.runtime.version>=0.5)", False),
])
def test_clauses_are_judged_like_yagna(clause, met):
    properties = props(**{"golem.srv.caps.multi-activity": True, "golem.runtime.version": "0.4.2"})
    assert unmet_clauses(clause, properties) == ([] if met else [clause])


def test_only_the_failing_top_level_clauses_are_reported_and_undecided_ones_never():
    expr = "(&\n\t(golem.inf.mem.gib>=8)\n\t(golem.runtime.name=vm)\n\t(golem.node.id.name>=3)\n\t(golem.inf.cpu.threads>=4))"
    assert unmet_clauses(expr, props()) == ["(golem.inf.mem.gib>=8)", "(golem.inf.cpu.threads>=4)"]
    assert unmet_clauses("(&)", props()) == [] and unmet_clauses("", props()) == []
    for bad in ("(golem.a=1", "golem.a=1", "(&(a=1))x", "(!(a=1)(b=2))"):
        with pytest.raises(ConstraintSyntaxError):
            unmet_clauses(bad, {})


# -- scans on the fake yagna -----------------------------------------------------------------------

def add_scan(fake: Any, offers: Sequence[Tuple[str, str, Dict[str, Any]]], *, begin_status: int = 201,
             vanish_after: int = 0) -> Dict[str, Any]:
    """yagna's market scan on the fake: POST /scan answers ``begin_status``; the first poll returns
    ``offers`` (offer id, provider id, properties), later ones nothing (after a short wait, capped by
    the poll's timeout), or 404 after ``vanish_after`` polls. Returns what the routes saw."""
    state: Dict[str, Any] = {"begin": [], "deleted": [], "polls": 0}

    def begin(request: Any) -> Any:
        state["begin"].append(json.loads(request.body))
        if begin_status != 201:
            return begin_status, {"message": "no such endpoint"}
        return 201, "scan-1"

    def events(request: Any, scan_id: str) -> Any:
        state["polls"] += 1
        if vanish_after and state["polls"] > vanish_after:
            return 404, {"message": f"Iterator with id \"{scan_id}\" not found"}
        if state["polls"] == 1:
            return [{"offerId": oid, "providerId": pid, "properties": p, "constraints": "()", "timestamp": now()}
                    for oid, pid, p in offers]
        timeout = float(request.params.get("timeout", 1))
        time.sleep(min(timeout, 0.05))
        return []

    def end(request: Any, scan_id: str) -> Any:
        state["deleted"].append(scan_id)
        return (204, None) if vanish_after == 0 else (404, {"message": "gone"})

    fake._add("POST", r"/market-api/v1/scan", begin)
    fake._add("GET", r"/market-api/v1/scan/([^/?]+)/events", events)
    fake._add("DELETE", r"/market-api/v1/scan/([^/?]+)", end)
    return state


OFFERS = [
    ("o1", "0xa", props("cheap", "0xa")),
    ("o2", "0xb", props("dear", "0xb", cpu=0.01)),
    ("o3", "0xc", props("banned", "0xc")),
    ("o4", "0xd", props("elsewhere", "0xd", platform=OTHER)),
    ("o5", "0xe", props("tiny", "0xe", mem=0.25)),
]


def test_scan_lists_every_offer_with_its_reasons(fake_yagna, golem):
    scan_state = add_scan(fake_yagna, OFFERS)
    network = golem(market={"subnet_tag": "public"})
    scan = network.scan_market(market={"max_cpu_per_sec": 0.001, "denied_provider_names": ["banned"]}, timeout=0.3)
    assert isinstance(scan, MarketScan) and scan.method == "scan" and scan.platform == PLATFORM
    by_name = {offer.provider_name: offer for offer in scan.offers}
    assert list(by_name) == ["cheap", "dear", "banned", "elsewhere", "tiny"]
    assert by_name["cheap"].acceptable and by_name["cheap"].reasons == []
    assert by_name["dear"].reasons == ["cpu price 0.01/s above max_cpu_per_sec 0.001"]
    assert by_name["banned"].reasons == ["provider name in denied_provider_names"]
    assert by_name["elsewhere"].reasons == [f"no common payment platform: offers {OTHER}, this job pays on {PLATFORM}"]
    assert by_name["tiny"].reasons == ["constraint not met: (golem.inf.mem.gib>=0.5)"]
    assert [o.provider_name for o in scan.acceptable] == ["cheap"]
    cheap = by_name["cheap"]
    assert isinstance(cheap, ScannedOffer)
    assert (cheap.offer_id, cheap.provider_id, cheap.runtime, cheap.cpu_threads, cheap.mem_gib, cheap.storage_gib) == \
        ("o1", "0xa", "vm", 2, 4.0, 20.0)
    assert cheap.prices == {"golem.usage.duration_sec": 0.00005, "golem.usage.cpu_sec": 0.0001, "start": 0.0}
    assert cheap.platforms == (PLATFORM,)
    assert scan.rejection_counts() == {"above max_cpu_per_sec=0.001": 1, "denied by name": 1,
                                       f"only on {OTHER} (this job pays on {PLATFORM})": 1,
                                       "not meeting (golem.inf.mem.gib>=0.5)": 1}
    assert scan.summary().startswith("5 offers seen, 1 acceptable, ")
    # what was asked of yagna: the subnet and linear pricing (the package's clauses are checked here)
    assert scan_state["begin"] == [{"type": "offer", "timeout": 30,
                                    "constraints": "(&\n\t(golem.com.pricing.model=linear)\n\t"
                                                   "(golem.node.debug.subnet=public))"}]
    assert scan_state["deleted"] == ["scan-1"]
    assert 0.25 <= scan.duration_sec < 2.0
    assert not fake_yagna.calls("POST", "/demands")


def test_the_same_offer_seen_twice_or_published_again_counts_once(fake_yagna, golem):
    again = props("cheap", "0xa")
    add_scan(fake_yagna, [OFFERS[0], OFFERS[0], ("o1-republished", "0xa", again), OFFERS[1]])
    scan = golem().scan_market(timeout=0.2)
    assert [o.offer_id for o in scan.offers] == ["o1-republished", "o2"]
    assert scan.providers == 2


@pytest.mark.parametrize("status", [404, 405, 501])
def test_a_yagna_without_the_scan_api_is_scanned_through_a_temporary_demand(fake_yagna, golem, status):
    add_scan(fake_yagna, [], begin_status=status)
    fake_yagna.providers, fake_yagna.offer_props = ["0xp1", "0xp2"], props("p", "0xprov")
    scan = golem().scan_market(market={"denied_provider_ids": ["0xp2"]}, timeout=0.3)
    assert scan.method == "demand"
    assert sorted(o.provider_id for o in scan.offers) == ["0xp1", "0xp2"]
    assert [o.provider_id for o in scan.acceptable] == ["0xp1"]
    assert len(fake_yagna.calls("POST", "/demands")) == 1
    assert len(fake_yagna.calls("DELETE", "/demands/")) == 1
    assert not [p for p in fake_yagna.calls("POST", "/proposals/")]  # nothing countered or rejected


def test_the_scan_is_deleted_when_collecting_fails(fake_yagna, golem):
    state = add_scan(fake_yagna, OFFERS)
    fake_yagna.fail_next("GET", "/scan/", status=500, times=5)
    with pytest.raises(YagnaServerError):
        golem().scan_market(timeout=1.0)
    assert state["deleted"] == ["scan-1"]


def test_the_scan_is_deleted_on_an_interrupt(fake_yagna, golem):
    state = add_scan(fake_yagna, OFFERS)
    network = golem()

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    network.client.market.collect_scan = interrupted
    with pytest.raises(KeyboardInterrupt):
        network.scan_market(timeout=1.0)
    assert state["deleted"] == ["scan-1"]


def test_the_fallback_demand_is_unsubscribed_when_collecting_fails(fake_yagna, golem):
    add_scan(fake_yagna, [], begin_status=404)
    fake_yagna.fail_next("GET", "/demands/", status=500, times=5)
    with pytest.raises(YagnaServerError):
        golem().scan_market(timeout=1.0)
    assert len(fake_yagna.calls("DELETE", "/demands/")) == 1


def test_a_scan_that_yagna_drops_keeps_what_it_saw(fake_yagna, golem):
    state = add_scan(fake_yagna, OFFERS[:2], vanish_after=1)
    scan = golem().scan_market(timeout=1.0)
    assert [o.offer_id for o in scan.offers] == ["o1", "o2"] and scan.duration_sec < 1.0
    assert state["deleted"] == ["scan-1"]  # tried anyway; its 404 is fine


@pytest.mark.parametrize("kwargs, message", [
    (dict(timeout=0), "timeout must be a positive number"),
    (dict(timeout="5"), "timeout must be a positive number"),
    (dict(package={"min_mem_gb": 1}), "did you mean package.min_mem_gib"),
    (dict(market={"max_cpu_per_sec": -1}), "market.max_cpu_per_sec"),
    (dict(market="cheap"), "market options must be a dict or MarketOptions"),
])
def test_bad_scan_options_are_config_errors(fake_yagna, golem, kwargs, message):
    with pytest.raises(GolemConfigError, match=message):
        golem().scan_market(**kwargs)
    assert not fake_yagna.calls("POST", "/scan")


def test_the_options_layer_over_the_networks_and_attrs_sections_work(fake_yagna, golem):
    add_scan(fake_yagna, OFFERS)
    from golem_sync import MarketOptions as PublicMarketOptions, PackageOptions

    network = golem(market={"denied_provider_names": ["banned"]}, package={"image_tag": "x", "min_mem_gib": 0.1})
    scan = network.scan_market(package=PackageOptions(min_cpu_threads=4), market=PublicMarketOptions(max_cpu_per_sec=1),
                               timeout=0.2)
    reasons = {o.provider_name: o.reasons for o in scan.offers}
    assert reasons["banned"] == ["provider name in denied_provider_names",
                                 "constraint not met: (golem.inf.cpu.threads>=4)"]
    assert reasons["tiny"] == ["constraint not met: (golem.inf.cpu.threads>=4)"]  # min_mem_gib 0.1 from the network


def test_a_closed_network_does_not_scan(fake_yagna, golem):
    from golem_sync.errors import GolemUserError

    network = golem()
    network.close()
    with pytest.raises(GolemUserError, match="closed"):
        network.scan_market(timeout=0.1)


# -- cost estimates ------------------------------------------------------------------------------

def test_estimate_prices_the_acceptable_offers_with_every_thread_busy(fake_yagna, golem):
    add_scan(fake_yagna, [("a", "0xa", props("a", "0xa", cpu=0.001, env=0.0001, start=0.5, threads=4)),
                          ("b", "0xb", props("b", "0xb", cpu=0.002, env=0.0, threads=1)),
                          ("c", "0xc", props("c", "0xc", cpu=0.003, env=0.0, threads=1)),
                          ("d", "0xd", props("d", "0xd", cpu=1.0))])
    estimate = golem().estimate_cost(market={"max_cpu_per_sec": 0.01}, duration_sec=100, timeout=0.2)
    assert isinstance(estimate, CostEstimate)
    expected = {"a": 0.5 + 100 * (0.0001 + 0.001 * 4), "b": 0.2, "c": 0.3}
    assert estimate.offers_considered == 3 and estimate.duration_sec == 100
    assert [(row.provider_name, row.cost) for row in estimate.per_provider] == \
        [(name, pytest.approx(cost)) for name, cost in sorted(expected.items(), key=lambda kv: kv[1])]
    assert estimate.worst == pytest.approx(0.91) and estimate.best == pytest.approx(0.2)
    assert estimate.median == pytest.approx(0.3)
    assert len(estimate.scan.offers) == 4


def test_estimate_without_an_acceptable_offer_is_a_market_error(fake_yagna, golem):
    add_scan(fake_yagna, OFFERS[1:2])
    with pytest.raises(GolemMarketError, match=r"no acceptable offer .*1 offer seen, 1 above max_cpu_per_sec=0\.001"):
        golem().estimate_cost(market={"max_cpu_per_sec": 0.001}, duration_sec=60, timeout=0.2)


@pytest.mark.parametrize("duration", [0, -1, "60", float("inf"), True])
def test_estimate_needs_a_positive_duration(fake_yagna, golem, duration):
    with pytest.raises(GolemConfigError, match="duration_sec"):
        golem().estimate_cost(duration_sec=duration, timeout=0.1)
    assert not fake_yagna.calls("POST", "/scan")


# -- startup timeouts explain themselves ---------------------------------------------------------

def test_a_startup_timeout_reports_what_the_market_offered(fake_yagna, golem):
    fake_yagna.providers = ["0xp1", "0xp2", "0xp3"]
    fake_yagna.offer_props = props("dear", "0xprov", cpu=0.01)
    job = golem().create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 0.5}, market={"max_cpu_per_sec": 0.0001})
    with pytest.raises(GolemNoProposalError) as caught:
        job.result(timeout=30)
    error = caught.value
    report = error.market_report
    assert isinstance(report, MarketReport)
    assert (report.offers_seen, report.providers_seen, report.acceptable) == (3, 3, 0)
    assert report.rejection_counts() == {"above max_cpu_per_sec=0.0001": 3}
    assert report.platform == PLATFORM and report.waited_sec == 0.5 and report.provider_rejections == ()
    assert str(error) == ("no provider accepted in 0.5 s: 3 offers seen, 3 above max_cpu_per_sec=0.0001; "
                          "no provider rejected our proposals")
    assert error.rejections == {"cpu price 0.01/s above max_cpu_per_sec 0.0001": error.proposals_seen}


def test_a_startup_timeout_without_any_offer_has_an_empty_report(fake_yagna, golem):
    fake_yagna.providers = []
    job = golem().create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 0.3})
    error = job.exception(timeout=30)
    assert isinstance(error, GolemNoProposalError) and error.phase == "proposal"
    assert error.market_report is not None and error.market_report.offers_seen == 0
    assert "no provider accepted in 0.3 s: no proposal from any provider (check the subnet" in str(error)


def test_a_startup_timeout_reports_the_providers_rejections(fake_yagna, golem):
    plain_proposal = fake_yagna.proposal

    def provider_rejects_our_counter(pid, state, issuer="0xprov", props=None):
        if state != "Draft":
            return plain_proposal(pid, state, issuer=issuer, props=props)
        demand_id = pid[len("draft-"):].rsplit("-", 1)[0]
        return {"eventType": "ProposalRejectedEvent", "eventDate": now(),
                "proposalId": f"counter-init-{demand_id}-{issuer}", "reason": {"message": "busy right now"}}

    fake_yagna.proposal = provider_rejects_our_counter
    fake_yagna.providers, fake_yagna.offer_props = ["0xp1", "0xp2"], props("prov-1", "0xprov")
    job = golem().create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 0.5})
    error = job.exception(timeout=30)
    assert isinstance(error, GolemTimeoutError) and not isinstance(error, GolemMarketError)
    assert error.phase == "agreement"
    report = error.market_report
    assert report is not None and report.acceptable == 2
    assert sorted((r.provider_id, r.reason, r.stage) for r in report.provider_rejections) == \
        [("0xp1", "busy right now", "proposal"), ("0xp2", "busy right now", "proposal")]
    assert "2 offers seen, 2 acceptable; providers rejected 2 of our proposals (prov-1: busy right now)" in str(error)


def test_a_provider_that_does_not_approve_is_in_the_report(fake_yagna, golem):
    fake_yagna.providers, fake_yagna.offer_props = ["0xp1"], props("prov-1", "0xprov")
    fake_yagna.approve, fake_yagna.max_wait = False, 0.2
    job = golem().create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 1.0}, agreement={"approval_timeout_sec": 0.3})
    error = job.exception(timeout=30)
    assert isinstance(error, GolemTimeoutError) and error.phase == "agreement"
    rejections = error.market_report.provider_rejections
    assert rejections and rejections[0].stage == "agreement" and "did not approve" in rejections[0].reason
    assert "agreement not approved" in str(error) or "agreements not approved" in str(error)


def test_the_market_log_counts_offers_once_and_names_unknown_rejections():
    log = MarketLog()
    cheap, dear = view(name="cheap", issuer="0xa"), view(name="dear", issuer="0xb", cpu=1.0)
    reason = proposal_problems(dear, MarketOptions(max_cpu_per_sec=0.1), PLATFORM)
    log.offer(cheap, [])
    log.offer(dear, reason)
    log.offer(dear, reason)  # the same offer again (the demand was published again)
    log.countered("c1", cheap)
    log.provider_rejected("c1", "no")
    log.provider_rejected("c-unknown", None)
    report = log.report(10.0, PLATFORM)
    assert (report.offers_seen, report.providers_seen, report.acceptable) == (2, 2, 1)
    assert report.rejection_counts() == {"above max_cpu_per_sec=0.1": 1}
    assert [str(r) for r in report.provider_rejections] == ["cheap: no", "a provider: no reason given"]
    assert report.summary() == ("2 offers seen, 1 acceptable, 1 above max_cpu_per_sec=0.1; providers rejected 2 of "
                                "our proposals (cheap: no; a provider: no reason given)")


def test_other_timeouts_carry_no_market_report():
    assert GolemTimeoutError("batch ran out", phase="batch").market_report is None


def test_a_raising_proposal_filter_fails_the_scan_and_the_scan_is_deleted(fake_yagna, golem):
    state = add_scan(fake_yagna, OFFERS)

    def broken(proposal: Any) -> bool:
        raise ZeroDivisionError("the user's filter")

    network = golem()
    with pytest.raises(ZeroDivisionError):
        network.scan_market(market={"proposal_filter": broken}, timeout=0.3)
    assert state["deleted"] == ["scan-1"]
    assert isinstance(network.scan_market(timeout=0.3), MarketScan)  # the network still scans afterwards
    assert state["deleted"] == ["scan-1", "scan-1"]
