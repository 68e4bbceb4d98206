"""Error paths against the real yagna: an unfunded account, an allocation that outlives its expiry.

The fake-yagna tests (tests/unit/test_job_error_paths.py) cover every branch; these prove the
two that depend on what real yagna does: how it refuses an allocation it cannot fund, and what it
does to an allocation whose timeout passes while the network still pays from it.
"""
from __future__ import annotations

import time

import pytest

from golem_sync import GolemPaymentError, JobState

from hygiene import YagnaProbe
from test_job_api import Recorder, echo, make_network, requestor_threads

pytestmark = pytest.mark.devnet


@pytest.fixture
def probe(golem_devnet) -> YagnaProbe:
    return YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)


def test_an_unfunded_budget_fails_the_job_at_once_and_close_is_prompt(golem_devnet, probe):
    """Issue #9 defect 1: the most common first-run mistake ends the job with a clear payment error."""
    before = {a["allocationId"] for a in probe.get("/payment-api/v1/allocations").json()}
    network = make_network(golem_devnet, payment={"network": golem_devnet.payment_network, "budget": 10 ** 9,
                                                  "payment_timeout_sec": 5}).init()
    try:
        job = network.create_job()
        job.start_work(echo)
        with pytest.raises(GolemPaymentError, match="could not create an allocation"):
            job.wait_for_result(timeout=30)
        assert job.state is JobState.REJECTED and job.future.done()
    finally:
        t0 = time.monotonic()
        network.close()
        took = time.monotonic() - t0
    assert took < 5.0
    after = {a["allocationId"] for a in probe.get("/payment-api/v1/allocations").json()}
    assert after <= before, "an allocation was left behind"
    assert requestor_threads() == []


def test_jobs_are_paid_after_the_allocation_s_first_expiry(golem_devnet, probe):
    """Rule 4: a network living past allocation_expiration_sec keeps accepting debit notes and invoices."""
    recorder = Recorder()
    expiry = 12
    network = make_network(golem_devnet, payment={"network": golem_devnet.payment_network,
                                                  "allocation_expiration_sec": expiry,
                                                  "payment_timeout_sec": 20}).init()
    try:
        before = network.create_job()
        before.start_work(echo)
        assert before.wait_for_result(timeout=60) == "Hello, Golem!\n"
        first_allocation = network.allocation_id
        time.sleep(expiry + 3)  # past the first allocation's own timeout
        after = network.create_job()
        after.start_work(echo)
        assert after.wait_for_result(timeout=60) == "Hello, Golem!\n"
        keeper = network._services_obj.keeper
        assert keeper.renewals + keeper.replacements >= 1
    finally:
        t0 = time.monotonic()
        network.close()
        took = time.monotonic() - t0
        recorder.close()
    approved = recorder.ids("agreement-approved", "agreement_id")
    assert len(approved) == 2
    probe.assert_clean(recorder.ids("agreement-created", "agreement_id"),
                       recorder.ids("activity-created", "activity_id"), network.allocation_id, invoiced=approved)
    assert not probe.allocation_exists(first_allocation)
    assert took < 25.0
    assert requestor_threads() == []
