"""Every job ends and every wait is bounded: the error paths of the Job and GolemNetwork layers.

Whole jobs run against the stateful fake yagna (``fakeyagna``); each test names the defect of the
error-path audit it guards (issue #9). Real-yagna behaviour of the same paths is in tests/devnet.
"""
from __future__ import annotations

import threading
import time
from typing import Any, List

import pytest

from golem_sync import signals
from golem_sync.errors import (GolemCancelledError, GolemPaymentError, GolemTimeoutError, GolemUserError)
from golem_sync.store import Retention


def ended(job: Any, timeout: float = 10.0) -> None:
    """Wait until the job's future is complete (without raising its error)."""
    job.future.exception(timeout=timeout)


def timed(fn: Any, *args: Any) -> float:
    t0 = time.monotonic()
    fn(*args)
    return time.monotonic() - t0


# -- rule 1: every job ends ---------------------------------------------------------------------

def test_unfunded_account_fails_the_job_at_once_and_close_is_prompt(golem, fake_yagna):
    """#1: the allocation cannot be made: the job is rejected with the payment error, no retry loop."""
    fake_yagna.fail_next("POST", "/allocations", status=400, times=10,
                         message="Insufficient funds to make allocation")
    g = golem()
    seen: List[str] = []
    job = g.create_job()
    for sig in (signals.job_failed, signals.job_ended):
        sig.connect(lambda sender, _n=sig.name, **kw: seen.append(_n), sender=job, weak=False)
    job.start_work(lambda ctx: "never")
    with pytest.raises(GolemPaymentError, match="Insufficient funds"):
        job.wait_for_result(timeout=5)
    assert job.state.value == "rejected" and job.future.done()
    assert seen == ["job-failed", "job-ended"]
    assert len(fake_yagna.calls("POST", "/allocations")) == 1  # cleanup never creates what it cleans up
    assert timed(g.close) < 2.0


def test_a_burst_of_jobs_shares_one_failed_allocation_attempt(golem, fake_yagna):
    fake_yagna.fail_next("POST", "/allocations", status=400, times=10, message="Insufficient funds")
    g = golem()
    jobs = [g.create_job() for _ in range(6)]
    for job in jobs:
        job.start_work(lambda ctx: None)
    for job in jobs:
        ended(job)
        assert isinstance(job.error, GolemPaymentError)
    assert len(fake_yagna.calls("POST", "/allocations")) == 1


def test_decorations_failure_releases_the_allocation(golem, fake_yagna):
    """#2: the allocation was made, the next step failed: it is released, not leaked."""
    fake_yagna.fail_next("GET", "/demandDecorations", status=500, times=10)
    g = golem()
    job = g.create_job()
    job.start_work(lambda ctx: None)
    ended(job)
    assert job.state.value == "rejected"
    assert fake_yagna.allocations and set(fake_yagna.allocations) == set(fake_yagna.released)
    assert timed(g.close) < 2.0


def test_a_later_job_retries_the_allocation_after_a_failure(golem, fake_yagna, monkeypatch):
    from golem_sync import _network as network_module

    monkeypatch.setattr(network_module, "SERVICES_RETRY_SEC", 0.0)
    fake_yagna.fail_next("POST", "/allocations", status=503, times=1)
    g = golem()
    first = g.create_job()
    first.start_work(lambda ctx: None)
    ended(first)
    assert first.state.value == "rejected"
    second = g.create_job()
    second.start_work(lambda ctx: "ok")
    assert second.result(timeout=10) == "ok"


@pytest.mark.parametrize("method,part", [
    ("POST", "/demands"), ("POST", "/proposals/"), ("POST", "/agreements"), ("POST", "/confirm"),
    ("POST", "/activity"), ("POST", "/exec"), ("GET", "/usage"), ("DELETE", "/activity/"),
    ("GET", "/market-api/v1/agreements/"), ("POST", "/terminate"), ("DELETE", "/demands/"),
    ("POST", "/allocations"), ("GET", "/demandDecorations"),
])
def test_every_job_ends_when_any_endpoint_fails_once(golem, fake_yagna, method, part):
    """Rule 1: a 500 from any one call a job makes still ends the job, and close() is prompt."""
    fake_yagna.fail_next(method, part, status=500, times=1)
    g = golem()
    job = g.create_job()
    job.start_work(lambda ctx: ctx.run("echo hi").stdout, job={"startup_timeout_sec": 3})
    ended(job, timeout=20)
    assert job.state.value in ("done", "rejected")
    assert timed(g.close) < 5.0
    assert not [a for a, alive in fake_yagna.activities.items() if alive], "an activity was left alive"
    assert not [a for a, state in fake_yagna.agreements.items() if state in ("Proposal", "Pending", "Approved")], \
        f"an agreement was left open: {fake_yagna.agreements}"
    assert set(fake_yagna.allocations) <= set(fake_yagna.released)


# -- misuse from receivers and callbacks ---------------------------------------------------------

def test_cancel_in_a_job_created_receiver_ends_the_job(golem, fake_yagna):
    """#5: a quota hook refusing the job from job_created: start_work returns, the job is cancelled."""
    g = golem()
    job = g.create_job()
    ends: List[str] = []
    signals.job_created.connect(lambda j: j.cancel(), sender=job, weak=False)
    signals.job_ended.connect(lambda j: ends.append(j.state.value), sender=job, weak=False)
    runner = threading.Thread(target=job.start_work, args=(lambda ctx: "x",))
    runner.start()
    runner.join(5)
    assert not runner.is_alive()
    assert job.state.value == "cancelled" and isinstance(job.error, GolemCancelledError)
    assert ends == ["cancelled"]
    assert not fake_yagna.calls("POST", "/demands")  # nothing was rented for it


def test_wait_in_a_job_created_receiver_is_refused(golem, fake_yagna):
    g = golem()
    job = g.create_job()
    errors: List[BaseException] = []

    def receiver(j: Any) -> None:
        try:
            j.wait_for_result(timeout=1)
        except BaseException as exc:
            errors.append(exc)

    signals.job_created.connect(receiver, sender=job, weak=False)
    job.start_work(lambda ctx: "x")
    assert job.result(timeout=10) == "x"
    assert len(errors) == 1 and isinstance(errors[0], GolemUserError)


def test_result_in_a_job_ended_receiver_returns_the_result(golem, fake_yagna):
    """#6: reading the outcome through the Future side in job_ended no longer deadlocks."""
    g = golem()
    job = g.create_job()
    got: List[Any] = []
    signals.job_ended.connect(lambda j: got.append((j.result(), j.exception(), j.future.result())),
                              sender=job, weak=False)
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    assert job.result(timeout=10) == "out\n"
    assert got == [("out\n", None, "out\n")]


def test_result_from_the_job_s_own_worker_is_refused(golem, fake_yagna):
    g = golem()
    job = g.create_job()
    job.start_work(lambda ctx: job.result(timeout=1))
    ended(job)
    assert isinstance(job.error, GolemUserError)


@pytest.mark.parametrize("where", ["job_ended", "done_callback"])
def test_close_from_a_receiver_or_callback_is_refused_and_the_network_still_closes(golem, fake_yagna, where):
    """#8: close() on a job thread raises GolemUserError at once; the real close() still works."""
    g = golem()
    job = g.create_job()
    errors: List[BaseException] = []

    def attempt(*_: Any) -> None:
        try:
            g.close()
        except BaseException as exc:
            errors.append(exc)

    if where == "job_ended":
        signals.job_ended.connect(attempt, sender=job, weak=False)
    job.start_work(lambda ctx: "x")
    if where == "done_callback":
        job.add_done_callback(attempt)
    assert job.result(timeout=10) == "x"
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(errors) == 1 and isinstance(errors[0], GolemUserError)
    g.close()
    assert fake_yagna.released == fake_yagna.allocations
    assert not [t for t in threading.enumerate() if t.name.endswith("-events") and t.is_alive()]


def test_wait_for_a_job_from_a_poller_thread_is_refused(golem, fake_yagna):
    g = golem()
    job = g.create_job()
    errors: List[BaseException] = []

    def on_note(sender: Any, **kw: Any) -> None:
        try:
            job.wait_for_result(timeout=5)
        except BaseException as exc:
            errors.append(exc)

    signals.debit_note_received.connect(on_note, weak=False)
    try:
        def worker(ctx: Any) -> None:
            fake_yagna.push_debit_note("dn-1", ctx.agreement_id)
            deadline = time.monotonic() + 5
            while not errors and time.monotonic() < deadline:
                ctx.run("echo wait")
        job.start_work(worker)
        ended(job, timeout=15)
    finally:
        signals.debit_note_received.disconnect(on_note)
    assert len(errors) == 1 and isinstance(errors[0], GolemUserError)


# -- rule 2: every wait is bounded or interruptible ----------------------------------------------

def test_nested_jobs_do_not_deadlock_the_pool(golem, fake_yagna):
    """#7: as many parents as pool threads, each waiting for a child: all finish."""
    g = golem(max_workers=2)

    def parent(ctx: Any) -> Any:
        child = g.create_job()
        child.start_work(lambda c: c.run("echo child").stdout)
        return child.wait_for_result(timeout=20)

    parents = [g.create_job() for _ in range(2)]
    for p in parents:
        p.start_work(parent)
    assert [p.result(timeout=20) for p in parents] == ["out\n", "out\n"]


def test_cancelling_a_parent_ends_its_wait_for_a_child(golem, fake_yagna):
    g = golem(max_workers=2)
    started = threading.Event()

    def parent(ctx: Any) -> Any:
        fake_yagna.batch_delay = 30.0  # the child never gets past its deploy
        child = g.create_job()
        child.start_work(lambda c: c.run("sleep long").stdout)
        started.set()
        return child.wait_for_result()

    p = g.create_job()
    p.start_work(parent)
    assert started.wait(10)
    time.sleep(0.2)
    assert timed(p.cancel, 5) < 3.0
    assert p.state.value == "cancelled"


def test_cancel_of_a_queued_job_returns_at_once(golem, fake_yagna):
    """#9: a job waiting in the pool's queue ends at once when cancelled."""
    fake_yagna.batch_delay = 3.0
    g = golem(max_workers=1)
    busy, queued = g.create_job(), g.create_job()
    busy.start_work(lambda ctx: ctx.run("sleep 3").stdout)
    queued.start_work(lambda ctx: "never")
    time.sleep(0.2)
    assert timed(queued.cancel, 2.0) < 0.5
    assert queued.state.value == "cancelled" and busy.state.value == "pending"
    assert busy.result(timeout=10) == "out\n"


def test_cancel_from_a_job_s_own_thread_only_requests(golem, fake_yagna):
    g = golem()
    job = g.create_job()

    def worker(ctx: Any) -> None:
        job.cancel()  # returns at once
        ctx.run("echo after cancel")

    job.start_work(worker)
    ended(job)
    assert job.state.value == "cancelled"


def test_waits_with_a_timeout_leave_nothing_on_the_future(golem, fake_yagna):
    """#17: polling a long job with short waits does not grow the future's callback list."""
    fake_yagna.batch_delay = 5.0
    g = golem()
    job = g.create_job()
    job.start_work(lambda ctx: ctx.run("long").stdout)
    for _ in range(2000):
        with pytest.raises(GolemTimeoutError):
            job.wait_for_result(timeout=0.0)
    assert len(job.future._done_callbacks) == 0
    job.cancel(timeout=5)


def test_other_threads_are_not_blocked_while_the_allocation_is_made(golem, fake_yagna):
    """#13: the network's lock is not held while yagna reserves the funds."""
    g = golem()
    real = g.client.payment.create_allocation
    entered = threading.Event()

    def slow(*a: Any, **kw: Any) -> Any:
        entered.set()
        time.sleep(2.0)
        return real(*a, **kw)

    g.client.payment.create_allocation = slow
    job = g.create_job()
    job.start_work(lambda ctx: "ok")
    assert entered.wait(5)
    assert timed(g.jobs) < 0.5
    assert timed(g.get_job_by_id, job.id) < 0.5
    assert timed(g.create_job) < 0.5
    assert job.result(timeout=10) == "ok"


def test_close_and_start_work_racing_never_leave_a_raw_error(golem, fake_yagna):
    """#19: a start_work racing close() is refused (GolemUserError) or ends cancelled."""
    for _ in range(10):
        g = golem()
        jobs = [g.create_job() for _ in range(8)]
        raised: List[BaseException] = []
        barrier = threading.Barrier(len(jobs) + 1)

        def start(j: Any) -> None:
            barrier.wait()
            try:
                j.start_work(lambda ctx: ctx.run("echo").stdout)
            except BaseException as exc:
                raised.append(exc)

        starters = [threading.Thread(target=start, args=(j,)) for j in jobs]
        for t in starters:
            t.start()
        barrier.wait()
        g.close()
        for t in starters:
            t.join(10)
        assert all(isinstance(e, GolemUserError) for e in raised), raised
        for j in jobs:
            assert j.state.value in ("new", "done", "cancelled"), j.state
            if j.state.value != "new":
                assert j.future.done()


def test_an_interrupted_close_is_resumed_by_the_next(golem, fake_yagna):
    """A Ctrl-C while close() waits for invoices: the next close() finishes the job."""
    g = golem()
    job = g.create_job()
    job.start_work(lambda ctx: "ok")
    assert job.result(timeout=10) == "ok"
    payments = g._services_obj.payments
    real = payments.wait_for_invoices
    calls: List[float] = []

    def interrupted(timeout: float) -> bool:
        calls.append(timeout)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return bool(real(timeout))

    payments.wait_for_invoices = interrupted
    with pytest.raises(KeyboardInterrupt):
        g.close()
    assert not fake_yagna.released
    g.close()
    assert fake_yagna.released == fake_yagna.allocations
    assert len(calls) == 2


# -- rule 5: memory bounded by what is live ------------------------------------------------------

def test_retention_bounds_the_in_memory_registry(golem, fake_yagna):
    g = golem(retention=Retention(max_finished=3, max_age_sec=None))
    jobs = []
    for n in range(6):
        job = g.create_job()
        job.start_work(lambda ctx, n=n: n)
        assert job.result(timeout=10) == n
        jobs.append(job)
    assert [j.id for j in g.jobs()] == [j.id for j in jobs[-3:]]
    assert g.get_job_by_id(jobs[0].id) is None


def test_without_retention_the_registry_keeps_every_job(golem, fake_yagna):
    g = golem()
    jobs = [g.create_job() for _ in range(3)]
    for job in jobs:
        job.start_work(lambda ctx: 1)
        job.result(timeout=10)
    assert len(g.jobs()) == 3


# -- rule 4: a long-lived network keeps paying ---------------------------------------------------

def test_the_allocation_is_extended_before_it_expires(golem, fake_yagna):
    g = golem(payment={"invoice_wait_sec": 0.2, "allocation_expiration_sec": 2})
    job = g.create_job()
    job.start_work(lambda ctx: ctx.agreement_id)
    job.result(timeout=10)
    first = g.allocation_id
    deadline = time.monotonic() + 5
    while not fake_yagna.amended and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_yagna.amended and fake_yagna.amended[0] == first
    assert g.allocation_id == first  # extended in place: same id, same decorations
    later = g.create_job()
    later.start_work(lambda ctx: "later")
    assert later.result(timeout=10) == "later"
    assert timed(g.close) < 2.0
    assert fake_yagna.released == [first]


def test_the_allocation_is_replaced_where_yagna_cannot_extend_it(golem, fake_yagna):
    fake_yagna.amend_supported = False
    replaced: List[Any] = []
    g = golem(payment={"invoice_wait_sec": 0.2, "allocation_expiration_sec": 2})
    signals.allocation_created.connect(lambda sender, allocation: replaced.append(allocation.allocation_id),
                                       sender=g, weak=False)
    job = g.create_job()
    job.start_work(lambda ctx: ctx.agreement_id)
    job.result(timeout=10)
    first = g.allocation_id
    deadline = time.monotonic() + 5
    while len(fake_yagna.allocations) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake_yagna.allocations) == 2 and g.allocation_id != first
    assert first in fake_yagna.released  # the old one is given back
    later = g.create_job()
    later.start_work(lambda ctx: ctx.agreement_id)
    agreement = later.result(timeout=10)
    fake_yagna.push_invoice("inv-late", agreement)
    g.close()
    assert fake_yagna.accepted.get("inv-late") == fake_yagna.allocations[1]
    assert set(fake_yagna.released) == set(fake_yagna.allocations)


def test_an_allocation_whose_answer_was_lost_is_found_and_used(golem, fake_yagna):
    """S4: POST /allocations acted but its answer timed out: the allocation is found, used, released."""
    fake_yagna.allocation_answer_lost = 1
    g = golem()
    job = g.create_job()
    job.start_work(lambda ctx: "ok")
    assert job.result(timeout=10) == "ok"
    assert len(fake_yagna.allocations) == 1 and g.allocation_id == fake_yagna.allocations[0]
    g.close()
    assert fake_yagna.released == fake_yagna.allocations


def test_job_cost_property_is_deprecated_for_get_cost(golem, fake_yagna):
    g = golem()
    job = g.create_job()
    job.start_work(lambda ctx: "ok")
    job.result(timeout=10)
    with pytest.warns(DeprecationWarning, match="get_cost"):
        assert job.cost == job.get_cost()


def test_an_allocation_yagna_dropped_is_replaced_and_the_invoice_still_paid(golem, fake_yagna):
    """S1 through the hook: an accept answered "Allocation … not found" replaces the allocation and pays."""
    created: List[str] = []
    g = golem(payment={"invoice_wait_sec": 5})
    signals.allocation_created.connect(lambda sender, allocation: created.append(allocation.allocation_id),
                                       sender=g, weak=False)
    job = g.create_job()
    job.start_work(lambda ctx: ctx.agreement_id)
    agreement = job.result(timeout=10)
    first = g.allocation_id
    fake_yagna.released.append(first)  # yagna dropped it behind our back (its timeout passed)
    fake_yagna.push_invoice("inv-after-expiry", agreement)
    assert timed(g.close) < 5.0
    assert len(fake_yagna.allocations) == 2 and fake_yagna.allocations[0] == first
    assert fake_yagna.accepted.get("inv-after-expiry") == fake_yagna.allocations[1]
    assert created == fake_yagna.allocations  # the replacement is announced like the first
    assert set(fake_yagna.released) >= set(fake_yagna.allocations)


def test_extending_the_allocation_is_not_announced_as_a_new_one(golem, fake_yagna):
    created: List[str] = []
    g = golem(payment={"invoice_wait_sec": 0.2, "allocation_expiration_sec": 2})
    signals.allocation_created.connect(lambda sender, allocation: created.append(allocation.allocation_id),
                                       sender=g, weak=False)
    job = g.create_job()
    job.start_work(lambda ctx: "ok")
    job.result(timeout=10)
    deadline = time.monotonic() + 5
    while not fake_yagna.amended and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_yagna.amended
    assert created == [g.allocation_id]


def test_a_retry_after_yagna_s_own_5xx_may_use_the_same_provider(golem, fake_yagna):
    """A 500 from the requestor's yagna on exec says nothing against the provider: with one provider
    on the market, the retry signs with it again instead of waiting out the startup timeout."""
    network = golem()
    assert fake_yagna.providers == ["0xprov"]
    fake_yagna.fail_next("POST", "/exec", status=500, times=1)
    job = network.create_job(job={"max_retries": 1, "startup_timeout_sec": 10})
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    assert job.result(timeout=8) == "out\n"
    assert fake_yagna.calls("POST", "/agreements").count("/market-api/v1/agreements") == 2  # signed again


def test_a_5xx_on_the_approval_wait_waits_again_instead_of_dropping_the_agreement(golem, fake_yagna):
    network = golem()
    fake_yagna.fail_next("POST", "/wait", status=500, times=2)
    job = network.create_job(job={"startup_timeout_sec": 10})
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    assert job.result(timeout=8) == "out\n"
    assert fake_yagna.calls("POST", "/agreements").count("/market-api/v1/agreements") == 1  # the same one


def test_a_5xx_on_confirm_does_not_exclude_the_provider_from_the_negotiation(golem, fake_yagna):
    network = golem()
    fake_yagna.fail_next("POST", "/confirm", status=500, times=1)
    job = network.create_job(job={"startup_timeout_sec": 10})
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    assert job.result(timeout=8) == "out\n"  # signed with the one provider on its next draft
    assert fake_yagna.calls("POST", "/agreements").count("/market-api/v1/agreements") == 2


def test_a_5xx_on_the_counter_proposal_does_not_lose_the_provider(golem, fake_yagna):
    network = golem()
    fake_yagna.fail_next("POST", "/proposals/", status=500, times=1)
    job = network.create_job(job={"startup_timeout_sec": 10})
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    assert job.result(timeout=8) == "out\n"


def test_a_cancel_during_the_counter_proposal_retry_wait_ends_the_job_at_once(golem, fake_yagna, monkeypatch):
    """The pause before countering again is a cancellable wait: a job cancelled in it ends at once
    as cancelled, and the counter-proposal is not sent again."""
    from golem_sync._market import negotiation

    monkeypatch.setattr(negotiation, "_COUNTER_RETRY_SEC", 30.0)  # far longer than the bound below
    network = golem()
    fake_yagna.fail_next("POST", "/proposals/", status=500, times=3)
    job = network.create_job(job={"startup_timeout_sec": 120})
    job.start_work(lambda ctx: "never")
    deadline = time.monotonic() + 10
    while not fake_yagna.calls("POST", "/proposals/") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_yagna.calls("POST", "/proposals/"), "the offer was never countered"
    assert timed(job.cancel, 20.0) < 5.0  # the retry pause alone would be 30 s
    assert job.state.value == "cancelled" and isinstance(job.error, GolemCancelledError)
    assert len(fake_yagna.calls("POST", "/proposals/")) == 1  # no retry after the cancel
