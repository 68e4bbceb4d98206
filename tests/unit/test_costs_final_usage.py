"""The final usage read at cleanup and the activity's own duration: the estimate tracks the bill.

A provider bills an activity's duration from its start to its end, while the usage it reports
lags (a short job may see only the report made at its start, duration 0). On the fake yagna:
the final read happens right before the destroy; when the report has less duration than the
activity lived, the ledger counts the time from its creation to its destroy; a failing or
hanging final read never blocks or fails cleanup.
"""
from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any, Dict, List

import pytest

from golem_sync._work import runner as runner_mod
from golem_sync._work.costs import CostLedger, CostSummary, AgreementCost

DUR, CPU = "golem.usage.duration_sec", "golem.usage.cpu_sec"
PER_DUR_SEC = 0.01  # fakeyagna.OFFER_PROPS: vector [cpu, duration], coeffs [0.1, 0.01, 0.0]


class Reported(dict):  # type: ignore[type-arg]
    """Every activity reports this usage vector ([cpu, duration])."""

    def __init__(self, vector: List[float]) -> None:
        super().__init__()
        self.vector = vector

    def get(self, key: Any, default: Any = None) -> Any:
        return self.vector


def run_sleeping_job(g: Any, seconds: float) -> Any:
    job = g.create_job()
    job.start_work(lambda ctx: time.sleep(seconds) or "done")
    assert job.wait_for_result(timeout=20) == "done"
    return job


def test_a_short_job_whose_provider_reported_no_duration_is_estimated_for_the_time_its_activity_lived(
        golem, fake_yagna):
    fake_yagna.usage = Reported([0.0, 0.0])  # only the report at the activity's start
    g = golem()
    job = run_sleeping_job(g, 0.4)
    paths = [path for method, path in fake_yagna.log if "/activity/" in path]
    reads = [i for i, (m, p) in enumerate(fake_yagna.log) if m == "GET" and p.endswith("/usage")]
    destroys = [i for i, (m, p) in enumerate(fake_yagna.log) if m == "DELETE" and "/activity/" in p]
    assert reads and destroys and max(reads) < min(destroys), paths  # read right before the destroy
    row = g.cost_summary().rows[0]
    assert row.usage[DUR] >= 0.4
    assert row.usage[CPU] == 0.0
    assert row.estimated == pytest.approx(row.usage[DUR] * PER_DUR_SEC)
    assert job.get_cost() == pytest.approx(row.estimated)


def test_a_reported_duration_longer_than_the_clock_is_kept(golem, fake_yagna):
    fake_yagna.usage = Reported([0.5, 30.0])
    g = golem()
    run_sleeping_job(g, 0.0)
    row = g.cost_summary().rows[0]
    assert row.usage == {CPU: 0.5, DUR: 30.0}
    assert row.estimated == pytest.approx(0.5 * 0.1 + 30.0 * PER_DUR_SEC)


def test_a_hanging_final_read_is_bounded_and_the_activity_is_still_destroyed(golem, fake_yagna, monkeypatch,
                                                                               caplog):
    monkeypatch.setattr(runner_mod, "FINAL_USAGE_TIMEOUT_SEC", 0.3)
    caplog.set_level("DEBUG", logger="golem_sync.work")
    fake_yagna.usage = Reported([0.0, 0.0])
    g = golem()
    job = g.create_job()
    hang = threading.Event()

    def worker(ctx: Any) -> str:
        ctx.get_usage()  # a last known figure
        fake_yagna.usage_hang = hang  # yagna stops answering usage reads
        return "done"

    started = time.monotonic()
    job.start_work(worker)
    assert job.wait_for_result(timeout=20) == "done"
    took = time.monotonic() - started
    assert took < 1.4, f"cleanup waited {took:.2f}s for the final usage"
    assert all(not alive for alive in fake_yagna.activities.values())
    assert any("final usage" in r.getMessage() for r in caplog.records if r.levelname == "DEBUG")
    assert not [r for r in caplog.records if r.levelno >= 40]  # nothing logged as an error
    row = g.cost_summary().rows[0]
    assert row.usage[DUR] > 0.0  # the activity's own lifetime, the read having failed
    hang.set()  # the mock cannot be aborted like a real socket: let its late answer go


def test_a_failing_final_read_keeps_the_last_known_usage(golem, fake_yagna, caplog):
    caplog.set_level("DEBUG", logger="golem_sync.work")
    fake_yagna.usage = Reported([0.25, 0.0])
    g = golem()
    job = g.create_job()

    def worker(ctx: Any) -> str:
        ctx.get_usage()
        fake_yagna.fail_next("GET", "/usage", status=404, times=10, message="gone")
        return "done"

    job.start_work(worker)
    assert job.wait_for_result(timeout=20) == "done"
    assert all(not alive for alive in fake_yagna.activities.values())
    assert any("final usage" in r.getMessage() for r in caplog.records if r.levelname == "DEBUG")
    row = g.cost_summary().rows[0]
    assert row.usage[CPU] == 0.25 and row.usage[DUR] > 0.0


def test_the_ledger_counts_an_ended_activitys_lifetime_as_its_duration_floor():
    ledger = CostLedger()
    from golem_sync._market.proposals import Pricing
    pricing = Pricing(start=0.0, cpu_per_sec=0.0, env_per_sec=1.0, coefficients={DUR: 1.0, CPU: 0.0})
    ledger.agreement("ag", job_id="j", provider_id="p", provider_name="n", pricing=pricing, vector=[DUR, CPU])
    ledger.activity("ag", "a", None)
    ledger.usage("ag", "a", {DUR: 0.0, CPU: 0.0}, final=True)
    assert ledger.job_cost("j") == 0.0  # still alive: the reports are what it has
    time.sleep(0.2)
    ledger.activity_ended("ag", "a")
    cost = ledger.job_cost("j")
    assert cost >= 0.2
    time.sleep(0.1)
    assert ledger.job_cost("j") == cost  # ended: the figure stays
    ledger.activity_ended("ag", "a")  # a second end changes nothing
    assert ledger.job_cost("j") == cost


def test_the_summary_shows_estimate_accepted_and_their_difference_per_agreement_and_in_total():
    rows = [AgreementCost("agreement-one-0123", "j1", "p1", "prov-1", 1, {DUR: 1.0}, 0.000050, Decimal("0.000051")),
            AgreementCost("agreement-two-0123", "j2", "p2", "prov-2", 1, {DUR: 2.0}, 0.000100, None)]
    summary = CostSummary(rows)
    text = str(summary)
    header, first, second, total = text.splitlines()
    assert "estimated" in header and "accepted" in header and "difference" in header
    assert "0.000050" in first and "0.000051" in first and "+0.000001" in first
    assert first.split()[-1] == "+0.000001" and second.split()[-1] == "-"
    assert rows[0].difference == pytest.approx(0.000001) and rows[1].difference is None
    assert "estimated 0.000150" in total and "accepted 0.000051" in total
    assert summary.difference == pytest.approx(0.000001)  # over the agreements with an accepted amount
    assert "difference +0.000001" in total
