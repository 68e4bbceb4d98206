"""Publishing a demand after a transient failure of POST /demands: look first, adopt or post again.

On the stateful fake yagna, which lists its subscribed demands (``GET /demands``) as yagna 0.17.6
does (properties flattened to dotted keys) and can lose the answer to a POST after creating the
demand (``demand_answer_lost``). The real yagna's case is in ``tests/devnet/test_fault_proxy_devnet.py``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List

import pytest

from fakeyagna import PACKAGE, client as fake_client
from golem_sync import signals
from golem_sync._cancel import CancelToken, Deadline
from golem_sync._market.publish import HeldDemands, demand_key, publish_demand
from golem_sync._pollers import Backoff
from golem_sync.errors import GolemCancelledError, YagnaRequestError, YagnaServerError, YagnaUnreachableError

BODY: Dict[str, Any] = {"properties": {"golem.srv.comp.expiration": 1796233259269, "golem.node.debug.subnet": "t",
                                       "golem.srv.caps.multi-activity": True,
                                       "golem.com.payment.debit-notes.accept-timeout?": 240},
                        "constraints": "(&\n\t(golem.com.pricing.model=linear)\n\t(golem.node.debug.subnet=t))"}
FAST = Backoff(first_delay=0.01, jitter=0.0)


@pytest.fixture
def market(fake_yagna: Any) -> Any:
    with fake_client() as client:
        yield client.market


def publish(market: Any, held: Any = None, token: Any = None, deadline: Any = None, backoff: Backoff = FAST) -> str:
    return publish_demand(market, BODY, held if held is not None else HeldDemands(), token or CancelToken(),
                          deadline or Deadline(10.0), backoff=backoff)


def foreign(fake: Any, demand_id: str) -> None:
    """A demand identical to BODY that yagna holds and we never posted."""
    fake.demands[demand_id] = {"demandId": demand_id, "requestorId": "0xreq", "timestamp": "2026-01-01T00:00:00Z",
                               "properties": dict(BODY["properties"]), "constraints": BODY["constraints"]}


def posts(fake: Any) -> int:
    """How many POST /demands (not the counter-proposals under it) the fake got."""
    return len([path for path in fake.calls("POST") if path.endswith("/market-api/v1/demands")])


def messages(caplog: Any, level: int) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == "golem_sync.market"]


def test_the_demand_is_posted_once_and_held(fake_yagna, market):
    held = HeldDemands()
    demand_id = publish(market, held)
    assert demand_id in held and list(fake_yagna.demands) == [demand_id]
    assert fake_yagna.calls("GET", "/market-api/v1/demands") == []  # nothing failed: no look


def test_an_answer_lost_after_yagna_created_the_demand_adopts_it(fake_yagna, market, caplog):
    caplog.set_level(logging.INFO, logger="golem_sync.market")
    fake_yagna.demand_answer_lost = 1
    held = HeldDemands()
    demand_id = publish(market, held)
    assert list(fake_yagna.demands) == [demand_id] and demand_id in held  # exactly one subscription
    assert posts(fake_yagna) == 1  # no second POST
    assert [m for m in messages(caplog, logging.INFO) if "adopted" in m] == [
        f"demand {demand_id} adopted: yagna created it, its answer to POST /demands was lost"]


def test_a_500_before_yagna_acted_posts_again(fake_yagna, market):
    fake_yagna.fail_next("POST", "/demands", status=500)
    demand_id = publish(market)
    assert list(fake_yagna.demands) == [demand_id]
    assert posts(fake_yagna) == 2 and len(fake_yagna.calls("GET", "/market-api/v1/demands")) == 1


def test_a_408_or_a_timeout_is_transient_too(fake_yagna, market):
    fake_yagna.fail_next("POST", "/demands", status=408)
    demand_id = publish(market)
    assert list(fake_yagna.demands) == [demand_id]


def test_several_matches_are_ambiguous_posted_again_and_named_in_a_warning(fake_yagna, market, caplog):
    foreign(fake_yagna, "dem-other")  # e.g. another process's identical demand
    fake_yagna.demand_answer_lost = 1
    demand_id = publish(market)
    assert posts(fake_yagna) == 2
    assert demand_id not in ("dem-other", "dem-1") and set(fake_yagna.demands) == {"dem-other", "dem-1", demand_id}
    [warning] = messages(caplog, logging.WARNING)
    assert "dem-other" in warning and "dem-1" in warning and "left to expire at 2026-" in warning


def test_a_demand_another_negotiator_of_the_network_holds_is_never_adopted(fake_yagna, market):
    held = HeldDemands()
    foreign(fake_yagna, "dem-sibling")
    held.add("dem-sibling")  # identical (same expiration ms): a sibling negotiator's
    fake_yagna.demand_answer_lost = 1
    demand_id = publish(market, held)
    assert demand_id == "dem-1" and posts(fake_yagna) == 1


def test_a_match_that_may_be_a_sibling_s_demand_still_being_posted_is_not_adopted(fake_yagna, market, caplog):
    held = HeldDemands()
    fake_yagna.fail_next("POST", "/demands", status=500)  # ours never reached yagna
    foreign(fake_yagna, "dem-sibling")  # a sibling's POST created it; its answer has not come back yet
    with held.posting(demand_key(BODY["properties"], BODY["constraints"])):
        demand_id = publish(market, held)
    assert demand_id != "dem-sibling" and posts(fake_yagna) == 2
    assert "dem-sibling" in messages(caplog, logging.WARNING)[0]


def test_a_4xx_is_raised_at_once_without_a_look(fake_yagna, market):
    fake_yagna.fail_next("POST", "/demands", status=400, message="bad constraints")
    with pytest.raises(YagnaRequestError, match="bad constraints"):
        publish(market)
    assert posts(fake_yagna) == 1 and fake_yagna.calls("GET") == []


def test_a_look_that_fails_transiently_counts_as_a_failed_try(fake_yagna, market):
    fake_yagna.demand_answer_lost = 1
    fake_yagna.fail_next("GET", "/market-api/v1/demands", status=503)
    demand_id = publish(market)
    assert list(fake_yagna.demands) == [demand_id]
    assert posts(fake_yagna) == 1 and len(fake_yagna.calls("GET", "/market-api/v1/demands")) == 2


def test_a_look_that_fails_otherwise_posts_again(fake_yagna, market, caplog):
    fake_yagna.fail_next("POST", "/demands", status=502)
    fake_yagna.fail_next("GET", "/market-api/v1/demands", status=400)
    publish(market)
    assert posts(fake_yagna) == 2
    assert "could not look" in messages(caplog, logging.WARNING)[0]


def test_5xx_are_tried_a_few_times_only(fake_yagna, market):
    fake_yagna.fail_next("POST", "/demands", status=500, times=20)
    with pytest.raises(YagnaServerError):
        publish(market)
    assert posts(fake_yagna) == 4


def test_the_deadline_bounds_the_tries(fake_yagna, market):
    fake_yagna.down.set()  # no connection at all: waited out, but only within the deadline
    started = time.monotonic()
    with pytest.raises(YagnaUnreachableError):
        publish(market, deadline=Deadline(0.6), backoff=Backoff(first_delay=0.2, factor=1.0, jitter=0.0))
    assert 0.35 <= time.monotonic() - started < 0.8  # no pause past the deadline


def test_a_cancel_during_the_pause_ends_it_at_once(fake_yagna, market):
    fake_yagna.fail_next("POST", "/demands", status=500)
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(GolemCancelledError):
        publish(market, token=token, backoff=Backoff(first_delay=30.0, jitter=0.0))
    assert time.monotonic() - started < 1.0
    assert posts(fake_yagna) == 1  # nothing tried after the cancel


def test_both_sides_are_normalised_alike():
    flat = demand_key({"a.b": 2, "a.c": [1, "x"], "d": True}, "(&\n\t(x=1)\n\t(y=2))")
    assert demand_key({"a": {"b": 2.0, "c": [1.0, "x"]}, "d": True}, "(& (x=1) (y=2))") == flat
    assert demand_key({"a.b": 2, "a.c": [1, "x"], "d": 1}, "(&(x=1)(y=2))") != flat  # a bool is no number
    assert demand_key({"a.b": 3, "a.c": [1, "x"], "d": True}, "(&(x=1)(y=2))") != flat


# -- whole jobs and scans on the fake ---------------------------------------------------------------

def test_a_job_whose_demand_answer_was_lost_adopts_it_and_leaves_no_demand(fake_yagna, golem):
    network = golem()
    fake_yagna.demand_answer_lost = 1
    subscribed: List[str] = []

    def on_subscribed(sender: Any, demand_id: str, **_: Any) -> None:
        subscribed.append(demand_id)

    signals.demand_subscribed.connect(on_subscribed)
    try:
        job = network.create_job()
        job.start_work(lambda ctx: ctx.run("echo hi").stdout)
        assert job.result(timeout=20) == "out\n"
    finally:
        signals.demand_subscribed.disconnect(on_subscribed)
    assert posts(fake_yagna) == 1
    assert len(subscribed) == 1
    assert fake_yagna.demands == {}  # the adopted demand was withdrawn: nothing left to expire
    assert subscribed[0] not in network._demands


def test_a_scan_whose_temporary_demand_answer_was_lost_leaves_no_demand(fake_yagna, golem):
    fake_yagna._add("POST", r"/market-api/v1/scan", lambda r: (404, {"message": "no scan api"}))
    network = golem()
    fake_yagna.demand_answer_lost = 1
    scan = network.scan_market(timeout=2.0)  # the pause before the look (about 0.25 s) is part of it
    assert scan.method == "demand" and [o.provider_id for o in scan.offers] == ["0xprov"]
    assert posts(fake_yagna) == 1 and fake_yagna.demands == {}


def test_concurrent_jobs_with_identical_demands_never_share_one(fake_yagna, golem, monkeypatch, caplog):
    """The same expiration for all (one frozen clock): only the registry tells the demands apart."""
    import golem_sync._market.demand as demand_module

    monkeypatch.setattr(demand_module.time, "time", lambda: 1_700_000_000.0)
    network = golem(max_workers=4)
    fake_yagna.providers = ["0xp1", "0xp2", "0xp3", "0xp4"]
    fake_yagna.demand_answer_lost = 1
    subscribed: List[Any] = []

    def on_subscribed(sender: Any, demand_id: str, **_: Any) -> None:
        subscribed.append((sender, demand_id))

    signals.demand_subscribed.connect(on_subscribed)
    try:
        jobs = [network.create_job() for _ in range(4)]
        for job in jobs:
            job.start_work(lambda ctx: ctx.run("echo hi").stdout)
        assert [job.result(timeout=30) for job in jobs] == ["out\n"] * 4
    finally:
        signals.demand_subscribed.disconnect(on_subscribed)
    ids = [demand_id for _, demand_id in subscribed]
    assert len(ids) == len(set(ids)) >= 4  # none shared (a job may publish anew, never reuse one)
    warned = " ".join(messages(caplog, logging.WARNING))
    assert all(demand_id in warned for demand_id in fake_yagna.demands)  # a leftover only if named


def test_cancelling_a_job_while_its_demand_is_tried_again_ends_it_at_once(fake_yagna, golem):
    network = golem()
    fake_yagna.fail_next("POST", "/demands", status=503, times=20)  # pauses of about 0.25, 0.5, 1 s
    job = network.create_job()
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    deadline = time.monotonic() + 5
    while not posts(fake_yagna) and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    job.cancel(timeout=5)
    assert time.monotonic() - started < 0.5 and job.state.value == "cancelled"
    tried = posts(fake_yagna)
    time.sleep(0.5)
    assert posts(fake_yagna) == tried  # nothing tried after the cancel


def test_a_4xx_on_the_demand_fails_the_job_without_a_second_post(fake_yagna, golem):
    from golem_sync import GolemError

    network = golem(package=PACKAGE)
    fake_yagna.fail_next("POST", "/demands", status=400, message="invalid demand")
    job = network.create_job()
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    with pytest.raises(GolemError, match="invalid demand"):
        job.result(timeout=20)
    assert posts(fake_yagna) == 1

