"""The requestor's yagna restarts under a live GolemNetwork (real yagna 0.17.6, real providers).

What yagna keeps across a restart (same data dir, ports, app key), as seen here: identities, the
allocation, agreements (still Approved) and their invoices; it loses every market subscription
(a demand's events answer 404 "Subscription not found"), the payment driver's initialised
accounts (``/payment-api/v1/accounts`` is empty, payments still work) and every running exe-unit
(their bus connection dies with yagna: the activity turns Unresponsive until the provider marks
it Terminated, and a requestor's destroy meanwhile answers 408).

Each test restarts the session devnet's yagna through ``golem_devnet_control`` and, where the
network closed with yagna up, ends with the yagna audit (nothing Approved, every activity
Terminated, every invoice accepted, the allocation released, no golem_sync thread left).
"""
from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any, List

import pytest

from golem_sync import GolemActivityError, JobState, YagnaLostError, YagnaUnreachableError

from hygiene import YagnaProbe
from test_job_api import Recorder, make_network, probe, recorder, requestor_threads  # noqa: F401 (fixtures)
from test_pool_devnet import audit

pytestmark = pytest.mark.devnet


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sdk_records(caplog, level: int) -> List[logging.LogRecord]:
    """golem_sync's own records at ``level`` (the devnet's provider agents log under golem_sync.devnet)."""
    return [r for r in caplog.records if r.levelno == level and r.name.startswith("golem_sync")
            and not r.name.startswith("golem_sync.devnet")]


@pytest.fixture
def devnet(golem_devnet_control):
    yield golem_devnet_control
    golem_devnet_control.start_requestor()  # a failed test must not leave yagna down for the next


def echo(ctx) -> str:
    return ctx.run("echo restarted").stdout


def test_restart_while_idle_the_next_job_succeeds_on_the_same_network(devnet, golem_devnet, probe, recorder):
    network = make_network(golem_devnet).init()
    job = network.create_job()
    job.start_work(echo)
    assert job.result(timeout=60) == "restarted\n"
    allocation = network.allocation_id

    devnet.restart_requestor(down_sec=2.0)
    started = time.monotonic()
    again = network.create_job()
    again.start_work(echo)
    assert again.result(timeout=60) == "restarted\n"
    assert time.monotonic() - started < 15
    assert network.allocation_id == allocation  # yagna kept the allocation
    audit(network, recorder, probe)


@pytest.mark.parametrize("max_retries", [0, 1])
def test_restart_during_a_running_job_ends_it_typed_or_retries_and_leaves_nothing(
        devnet, golem_devnet, probe, recorder, max_retries):
    network = make_network(golem_devnet).init()
    warm = network.create_job()
    warm.start_work(echo)
    assert warm.result(timeout=60) == "restarted\n"

    job = network.create_job(job={"max_retries": max_retries})
    job.start_work(lambda ctx: ctx.run("sleep 15; echo late", timeout=60).stdout)
    wait_until(lambda: len(recorder.ids("activity-ready", "activity_id")) >= 2, 30, "the job's activity")
    time.sleep(0.5)  # the command runs
    devnet.restart_requestor(down_sec=3.0)
    started = time.monotonic()
    if max_retries == 0:
        with pytest.raises(YagnaLostError) as caught:
            job.result(timeout=60)
        error = caught.value
        assert isinstance(error, GolemActivityError) and isinstance(error, YagnaUnreachableError)
        assert "yagna became unreachable" in str(error)
    else:
        # yagna lost the exe-unit, so the work is lost too; the retry runs it again on a fresh agreement.
        assert job.result(timeout=60) == "late\n"
    assert time.monotonic() - started < 45  # nothing hangs

    after = network.create_job()
    after.start_work(echo)
    assert after.result(timeout=60) == "restarted\n"
    audit(network, recorder, probe)  # agreements terminated, activities ended, invoices accepted


def test_close_while_yagna_is_down_returns_within_its_bound_and_says_what_it_left(
        devnet, golem_devnet, probe, recorder, caplog):
    caplog.set_level(logging.INFO, logger="golem_sync")
    network = make_network(golem_devnet).init()
    job = network.create_job()
    job.start_work(echo)
    assert job.result(timeout=60) == "restarted\n"
    busy = network.create_job()
    busy.start_work(lambda ctx: ctx.run("sleep 30").stdout)
    wait_until(lambda: len(recorder.ids("activity-ready", "activity_id")) >= 2, 30, "the busy job's activity")
    allocation = network.allocation_id
    agreements = recorder.ids("agreement-approved", "agreement_id")

    devnet.stop_requestor()
    try:
        started = time.monotonic()
        network.close()
        elapsed = time.monotonic() - started
    finally:
        devnet.start_requestor()
    # close()'s bound: 120 s for the jobs' cleanup, then payment.invoice_wait_sec (20 s here).
    assert elapsed < 60, elapsed
    # Two correct ends race here: close() cancels the busy job, or yagna's exit reaches the job
    # first and ends it with an activity error (max_retries is 0): YagnaLostError when yagna drops
    # the batch's long poll, or yagna's own 500 "exeunit ... unavailable" to an exec sent while
    # its bus was already down.
    if busy.state != JobState.CANCELLED:
        assert busy.state == JobState.REJECTED, busy.state
        assert isinstance(busy.error, GolemActivityError), repr(busy.error)
    assert requestor_threads() == []
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"could not release allocation {allocation}" in m for m in messages), messages
    assert any("could not end agreement" in m for m in messages), messages
    assert any("close: yagna at" in m and "did not answer" in m for m in messages), messages

    # Back up, what close() could not do is still in yagna: end it by hand so the devnet stays clean.
    left = [a for a in agreements if probe.agreement_state(a) == "Approved"]
    assert left, "the busy job's agreement should have outlived close()"
    tidy_up(probe, golem_devnet, left, allocation)
    probe.assert_clean(agreements, recorder.ids("activity-created", "activity_id"), allocation, invoiced=agreements)


def test_a_ten_second_outage_logs_a_bounded_number_of_lines(devnet, golem_devnet, probe, recorder, caplog):
    network = make_network(golem_devnet, payment={"network": golem_devnet.payment_network,
                                                  "invoice_wait_sec": 20, "event_poll_sec": 1.0}).init()
    job = network.create_job()
    job.start_work(echo)
    assert job.result(timeout=60) == "restarted\n"  # the three pollers run
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="golem_sync")

    devnet.restart_requestor(down_sec=10.0)
    again = network.create_job()
    again.start_work(echo)
    assert again.result(timeout=60) == "restarted\n"
    wait_until(lambda: any("answers again" in r.getMessage() for r in sdk_records(caplog, logging.INFO)), 15,
               "the pollers' all-clear")

    warnings = sdk_records(caplog, logging.WARNING)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "is unreachable or failing" in warnings[0].getMessage()
    infos = [r for r in sdk_records(caplog, logging.INFO) if "answers again" in r.getMessage()]
    assert len(infos) == 1
    assert sdk_records(caplog, logging.ERROR) == []
    # Three pollers backing off to 5 s: a handful of failed polls each, not one per poll_sec.
    failed_polls = [r for r in sdk_records(caplog, logging.DEBUG) if "retrying in" in r.getMessage()]
    assert len(failed_polls) <= 30, len(failed_polls)
    audit(network, recorder, probe)


# -- helpers ---------------------------------------------------------------------------------

def tidy_up(probe: YagnaProbe, info: Any, agreements: List[str], allocation: str) -> None:
    """Terminate ``agreements``, accept their invoices from ``allocation``, release it (plain REST)."""
    session, root = probe.session, probe.api_url
    for agreement_id in agreements:
        session.post(f"{root}/market-api/v1/agreements/{agreement_id}/terminate",
                     json={"message": "test cleanup", "golem.requestor.code": "Cancelled"}, timeout=10)

    def invoices() -> List[dict]:
        return [i for i in probe.invoices_for(agreements) if i["status"] == "RECEIVED"]

    wait_until(lambda: len(invoices()) == len(agreements), 30, "the providers' invoices")
    for invoice in invoices():
        response = session.post(f"{root}/payment-api/v1/invoices/{invoice['invoiceId']}/accept",
                                json={"totalAmountAccepted": str(Decimal(invoice["amount"])),
                                      "allocationId": allocation}, timeout=30)
        assert response.status_code < 300, response.text
    session.delete(f"{root}/payment-api/v1/allocations/{allocation}", timeout=10)


def test_a_warm_pool_survives_a_restart_its_lost_lease_is_replaced(devnet, golem_devnet, probe, recorder):
    network = make_network(golem_devnet).init()
    with network.create_pool(size=1, min_size=1) as pool:
        pool.ready(timeout=60)
        before = pool.submit(lambda ctx: (ctx.run("echo warm").stdout, ctx.activity_id)).result(timeout=60)
        assert before[0] == "warm\n"

        devnet.restart_requestor(down_sec=2.0)  # the idle lease's exe-unit dies with yagna
        # The next job is not handed the dead activity: the pool asks it first and makes a new one.
        after = pool.submit(lambda ctx: (ctx.run("echo after").stdout, ctx.activity_id)).result(timeout=90)
        assert after[0] == "after\n"
        assert after[1] != before[1]  # yagna lost the exe-unit: the lease got a new activity
        pool.ready(timeout=60)  # min_size is kept warm again
    audit(network, recorder, probe)
