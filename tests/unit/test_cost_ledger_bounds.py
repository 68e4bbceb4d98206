"""The cost ledger's memory is bounded by what is live, while its totals stay right."""
from decimal import Decimal

import pytest

from golem_sync._market.proposals import Pricing
from golem_sync._work.costs import CostLedger

DUR, CPU = "golem.usage.duration_sec", "golem.usage.cpu_sec"
PRICING = Pricing(start=0.5, cpu_per_sec=0.1, env_per_sec=0.01, coefficients={DUR: 0.01, CPU: 0.1})
ONE = 0.5 + 0.01 * 10 + 0.1 * 2  # one activity of 10 s, 2 cpu s


def run_job(ledger, n, provider="p"):
    ledger.agreement(f"ag{n}", job_id=f"j{n}", provider_id=f"0x{provider}", provider_name=provider,
                     pricing=PRICING, vector=[DUR, CPU])
    ledger.activity(f"ag{n}", f"act{n}", None)
    ledger.usage(f"ag{n}", f"act{n}", {DUR: 10.0, CPU: 2.0}, final=True)


def test_rows_of_finished_jobs_are_bounded_and_totals_stay_right():
    ledger = CostLedger(keep_finished=3)
    run_job(ledger, 0, provider="live")  # a live job, started first
    for n in range(1, 11):
        run_job(ledger, n, provider="a" if n % 2 else "b")
        ledger.job_finished(f"j{n}")
    summary = ledger.summary({f"ag{n}": Decimal("0.1") for n in range(8, 11)}, accepted_total=Decimal("1.1"))
    assert sorted(row.agreement_id for row in summary.rows) == ["ag0", "ag10", "ag8", "ag9"]
    assert summary.agreements == 11
    assert summary.estimated_total == pytest.approx(11 * ONE)
    assert summary.by_provider() == {"live": pytest.approx(ONE), "a": pytest.approx(5 * ONE),
                                     "b": pytest.approx(5 * ONE)}
    assert summary.accepted_total == Decimal("1.1")
    assert "11 agreement(s)" in str(summary) and "7 earlier" in str(summary)
    assert ledger.job_cost("j0") == pytest.approx(ONE)   # the live job is never dropped
    assert ledger.job_cost("j10") == pytest.approx(ONE)  # a recently finished one is still there


def test_a_live_job_keeps_its_rows_however_many_jobs_finish():
    ledger = CostLedger(keep_finished=1)
    run_job(ledger, 0)
    ledger.agreement("ag0b", job_id="j0", provider_id="0xq", provider_name="q", pricing=PRICING, vector=[DUR, CPU])
    ledger.activity("ag0b", "act0b", lambda: {DUR: 10.0, CPU: 2.0})
    for n in range(1, 6):
        run_job(ledger, n)
        ledger.job_finished(f"j{n}")
    assert ledger.job_cost("j0") == pytest.approx(2 * ONE)


def test_finishing_a_job_stops_reading_its_live_usage():
    ledger = CostLedger()
    reads = []
    ledger.agreement("ag", job_id="j", provider_id="p", provider_name="", pricing=PRICING, vector=[DUR])
    ledger.activity("ag", "a", lambda: reads.append(1) or {DUR: 10.0})
    ledger.job_cost("j")
    ledger.job_finished("j")
    ledger.job_cost("j")
    ledger.summary()
    assert reads == [1] and ledger.job_cost("j") == pytest.approx(0.5 + 0.1)


def test_without_a_bound_given_summaries_are_unchanged():
    ledger = CostLedger()
    run_job(ledger, 1)
    summary = ledger.summary({"ag1": Decimal("0.3")})
    assert summary.accepted_total == Decimal("0.3") and summary.agreements == 1
    assert "earlier" not in str(summary)
