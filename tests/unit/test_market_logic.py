"""Demand building, proposal judging and scoring."""
import attrs

from golem_sync._market.demand import build_demand, join_constraints
from golem_sync._market.proposals import ProposalView, default_scorer, proposal_problems
from golem_sync._options import MarketOptions, PackageOptions
from golem_sync._package import Decorations, resolve_package

PLATFORM = "erc20-hoodi-tglm"


def offer(name="p1", issuer="0xp1", coeffs=(0.0001, 0.0002, 0.0), threads=2, extra=None, state="Initial"):
    props = {
        "golem.node.id.name": name,
        f"golem.com.payment.platform.{PLATFORM}.address": issuer,
        "golem.com.pricing.model": "linear",
        "golem.com.usage.vector": ["golem.usage.duration_sec", "golem.usage.cpu_sec"],
        "golem.com.pricing.model.linear.coeffs": list(coeffs),
        "golem.inf.cpu.threads": threads,
    }
    props.update(extra or {})
    return ProposalView("prop-" + name, issuer, state, props)


def test_pricing_maps_coefficients_by_usage_name_and_start_is_last():
    pricing = offer(coeffs=(0.5, 2.0, 7.0)).pricing()
    assert (pricing.env_per_sec, pricing.cpu_per_sec, pricing.start) == (0.5, 2.0, 7.0)
    assert pricing.cost({"golem.usage.duration_sec": 10, "golem.usage.cpu_sec": 1}) == 7.0 + 5.0 + 2.0


def proposal_problem(proposal, market, platform):
    """The reasons as one string (None if none), as the negotiation sends them to yagna."""
    return "; ".join(proposal_problems(proposal, market, platform)) or None


def test_inconsistent_vectors_make_a_proposal_invalid():
    bad = offer(coeffs=(0.1,))
    assert bad.pricing() is None
    assert "inconsistent" in proposal_problem(bad, MarketOptions(), PLATFORM)


def test_scorer_prefers_the_cheapest():
    cheap, dear = offer("cheap", coeffs=(0.0, 0.0001, 0.0)), offer("dear", coeffs=(0.0, 0.01, 0.0))
    assert max([dear, cheap], key=default_scorer) is cheap


def test_problems_cover_platform_timeouts_filters_and_prices():
    market = MarketOptions()
    assert proposal_problem(offer(), market, PLATFORM) is None
    assert "payment platform" in proposal_problem(offer(), market, "erc20-polygon-glm")
    short = offer(extra={"golem.com.payment.debit-notes.accept-timeout?": 30})
    assert "accept timeout" in proposal_problem(short, market, PLATFORM)
    assert "allowed_provider_names" in proposal_problem(offer("x"), MarketOptions(allowed_provider_names=["y"]), PLATFORM)
    assert "denied_name_regex" in proposal_problem(offer("bad-1"), MarketOptions(denied_name_regex="^bad"), PLATFORM)
    assert "cpu price" in proposal_problem(offer(coeffs=(0, 1.0, 0)), MarketOptions(max_cpu_per_sec=0.5), PLATFORM)
    assert "proposal_filter" in proposal_problem(offer(), MarketOptions(proposal_filter=lambda p: False), PLATFORM)


def test_demand_contains_base_properties_and_constraints_in_order():
    package = resolve_package(PackageOptions(image_hash="abc", image_url="http://x/abc", capabilities=["vpn"]))
    allocation = Decorations({f"golem.com.payment.platform.{PLATFORM}.address": "0xme"},
                             [f"(golem.com.payment.platform.{PLATFORM}.address=*)"])
    demand = build_demand(package, allocation, MarketOptions(subnet_tag="devnet"), PLATFORM, now=1000.0)
    props = demand.properties
    assert props["golem.srv.comp.task_package"] == "hash:sha3:abc:http://x/abc"
    assert props["golem.srv.comp.expiration"] == (1000 + 1800) * 1000
    assert props["golem.node.debug.subnet"] == "devnet"
    assert props["golem.com.payment.debit-notes.accept-timeout?"] == 120
    lines = demand.constraints.split("\n\t")
    assert lines[1:4] == ["(golem.inf.mem.gib>=0.5)", "(golem.inf.storage.gib>=2)", "(golem.runtime.name=vm)"]
    assert "(golem.runtime.capabilities=vpn)" in demand.constraints
    assert demand.constraints.endswith("(golem.node.debug.subnet=devnet))")
    assert demand.counter_body()["properties"]["golem.com.payment.chosen-platform"] == PLATFORM
    assert "golem.com.payment.chosen-platform" not in demand.body()["properties"]


def test_constraints_join():
    assert join_constraints([]) == "(&)"
    assert join_constraints(["(a=1)"]) == "(a=1)"
    assert join_constraints(["(a=1)", "(b=2)", "(a=1)"]) == "(&\n\t(a=1)\n\t(b=2))"
