"""The soak benchmark's own code at a small size: mixed jobs through one long-lived network.

``bench/soak.py`` runs 1,000 jobs and 300 cancels under load for the README's figures; here 100
mixed jobs (ok / worker raises / failing command / cancel mid-run / cancel in the market / command
timeout) and 20 cancels under load must each end in the state their kind expects, and afterwards
yagna holds nothing open or unpaid and no golem_sync thread is left. No timing is asserted.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak import MIX, cancel_under_load, faults, soak  # noqa: E402

NOTHING_LEFT = {"agreements_approved": 0, "allocations": 0, "invoices_received": 0, "debit_notes_received": 0}


def test_a_hundred_mixed_jobs_each_end_as_their_kind_expects(golem_devnet, tmp_path):
    report = soak(golem_devnet, jobs=100, in_flight=8, seed=7, store_dir=tmp_path, allocation_sec=30)

    assert report["unexpected"] == []
    assert {kind: sum(counts.values()) for kind, counts in report["outcomes"].items()} == {
        kind: round(100 * share) for kind, share in MIX.items()}
    assert all(counts == {"expected": sum(counts.values())} for counts in report["outcomes"].values())
    assert report["left_in_yagna"] == NOTHING_LEFT
    assert report["threads_after_close"] == 0
    assert report["allocation_renewals"] >= 1  # the run crossed a renewal (30 s allocation)


def test_a_hundred_mixed_jobs_with_two_percent_of_yagna_calls_failing_end_and_leave_nothing(
        golem_devnet, tmp_path):
    # 1% of the calls answer 500 and 1% have their connection reset, through the fault proxy: a job
    # may then fail with the yagna error (counted as fault_failed), but none hangs or ends otherwise.
    with faults(golem_devnet, 0.02, seed=11) as url:
        report = soak(golem_devnet, jobs=100, in_flight=8, seed=11, api_url=url, store_dir=tmp_path)

    assert report["unexpected"] == []
    outcomes = report["outcomes"]
    assert {kind: sum(counts.values()) for kind, counts in outcomes.items()} == {
        kind: round(100 * share) for kind, share in MIX.items()}
    assert all(set(counts) <= {"expected", "fault_failed"} for counts in outcomes.values())
    assert report["left_in_yagna"] == NOTHING_LEFT
    assert report["threads_after_close"] == 0


def test_twenty_jobs_cancelled_at_once_all_end_cancelled(golem_devnet):
    report = cancel_under_load(golem_devnet, in_flight=20)

    assert report["running_when_cancelled"] == 20
    assert report["states"] == {"cancelled": 20}
    assert report["left_in_yagna"] == NOTHING_LEFT
