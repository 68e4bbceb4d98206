"""Hard cost caps per job (``job.max_cost``): the acceptance rules, the stops and their error paths.

The rules run on the payment processor with a recording stand-in for yagna's payment API (as in
``test_payment_rules``); whole jobs run on the stateful fake yagna (``fakeyagna``). The same
behaviour against the real yagna is in ``tests/devnet/test_cost_caps.py``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, List, Optional, Tuple

import pytest

from golem_sync import JobOptions, signals
from golem_sync._options import PaymentOptions
from golem_sync._payment import budget as budget_module
from golem_sync._payment.budget import BudgetGuard
from golem_sync._payment.processor import PaymentProcessor
from golem_sync.errors import (GolemAgreementError, GolemBudgetError, GolemConfigError, GolemPaymentError,
                               YagnaServerError)
from golem_sync.store.base import JobRecord, rebuild_error
from golem_sync.yagna.models import DebitNoteEvent, InvoiceEvent

from test_pool import wait_until  # a short bounded poll, for states no signal announces

WAIT = 10.0


# -- the rules, on the processor ----------------------------------------------------------------

class FakePayment:
    def __init__(self, reject_status: Optional[int] = None) -> None:
        self.docs: dict = {}
        self.calls: List[tuple] = []
        self.reject_status = reject_status

    def get_debit_note(self, doc_id):
        return self.docs[doc_id]

    get_invoice = get_debit_note

    def accept_debit_note(self, doc_id, amount, allocation_id):
        self.calls.append(("accept", doc_id, amount))

    accept_invoice = accept_debit_note

    def reject_debit_note(self, doc_id, rejection):
        self.calls.append(("reject", doc_id, rejection.message, rejection.total_amount_accepted))
        if self.reject_status is not None:
            raise YagnaServerError("not implemented", status=self.reject_status, method="POST",
                                   path=f"/debitNotes/{doc_id}/reject")

    def reject_invoice(self, doc_id, rejection):
        self.calls.append(("reject", doc_id, rejection.message, rejection.total_amount_accepted))
        if self.reject_status is not None:
            raise YagnaServerError("not implemented", status=self.reject_status, method="POST",
                                   path=f"/invoices/{doc_id}/reject")

    def collect_debit_note_events(self, **kw):
        return []

    collect_invoice_events = collect_debit_note_events


def note(doc_id: str, agreement: str, amount: str, activity: str = "act-1") -> Any:
    return SimpleNamespace(debit_note_id=doc_id, agreement_id=agreement, activity_id=activity,
                           total_amount_due=Decimal(amount))


def invoice(doc_id: str, agreement: str, amount: str) -> Any:
    return SimpleNamespace(invoice_id=doc_id, agreement_id=agreement, amount=Decimal(amount))


def deliver(processor: PaymentProcessor, payment: FakePayment, doc: Any) -> None:
    if hasattr(doc, "debit_note_id"):
        payment.docs[doc.debit_note_id] = doc
        processor._on_debit_note_event(DebitNoteEvent(event_type="DebitNoteReceivedEvent",
                                                      event_date=dt.datetime.now(dt.timezone.utc),
                                                      debit_note_id=doc.debit_note_id))
    else:
        payment.docs[doc.invoice_id] = doc
        processor._on_invoice_event(InvoiceEvent(event_type="InvoiceReceivedEvent",
                                                 event_date=dt.datetime.now(dt.timezone.utc),
                                                 invoice_id=doc.invoice_id))


class Holder:
    """Stands in for the job's lease: records what the cap told it."""

    def __init__(self, live: bool = True) -> None:
        self.errors: List[GolemBudgetError] = []
        self.live = live

    def __call__(self, error: GolemBudgetError) -> bool:
        self.errors.append(error)
        return self.live


class Terminations:
    """A recording ``terminate``; ``gate`` (an Event) makes it block until set, ``fail`` makes it raise."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, str]] = []
        self.done = threading.Event()
        self.gate: Optional[threading.Event] = None
        self.fail = False

    def __call__(self, agreement_id: str, message: str) -> None:
        self.calls.append((agreement_id, message))
        if self.gate is not None:
            self.gate.wait(WAIT)
        self.done.set()
        if self.fail:
            raise RuntimeError("yagna is gone")


@pytest.fixture
def rig():
    payment = FakePayment()
    terminations = Terminations()
    guard = BudgetGuard(10.0, terminations)
    processor = PaymentProcessor(SimpleNamespace(payment=payment), PaymentOptions(), "alloc-1", "session", "net")
    yield SimpleNamespace(payment=payment, terminations=terminations, guard=guard, processor=processor)
    guard.close(timeout=1.0)


def capped(rig, agreement: str = "a1", max_cost: float = 0.5, job: str = "job-1", holder: Any = None) -> Any:
    budget = rig.guard.reserve(job, max_cost)
    rig.processor.register(agreement, sender=job, budget=budget, on_over_budget=holder)
    return budget


def test_notes_within_the_cap_are_accepted_and_the_note_that_would_cross_it_is_not(rig):
    holder = Holder()
    capped(rig, holder=holder)
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.2"))
    deliver(rig.processor, rig.payment, note("d2", "a1", "0.45"))  # cumulative: the job is at 0.45
    deliver(rig.processor, rig.payment, note("d3", "a1", "0.7"))
    assert [c[:2] for c in rig.payment.calls] == [("accept", "d1"), ("accept", "d2"), ("reject", "d3")]
    reason = rig.payment.calls[-1][2]
    assert "max_cost 0.5" in reason and "0.7" in reason and "d3" in reason
    assert len(holder.errors) == 1
    error = holder.errors[0]
    assert isinstance(error, GolemBudgetError) and isinstance(error, GolemPaymentError)
    assert error.max_cost == 0.5 and error.amount == Decimal("0.7")
    assert "max_cost 0.5" in str(error) and "0.7" in str(error) and "terminated" in str(error)
    assert rig.terminations.done.wait(WAIT)
    (agreement, message), = rig.terminations.calls
    assert agreement == "a1" and "max_cost 0.5" in message
    assert rig.processor.account_totals() == {"a1": Decimal("0.45")}


def test_notes_are_cumulative_per_activity_and_the_job_total_sums_its_activities(rig):
    capped(rig, holder=Holder())
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.3", activity="act-1"))
    deliver(rig.processor, rig.payment, note("d2", "a1", "0.1", activity="act-2"))  # 0.4 in all
    deliver(rig.processor, rig.payment, note("d3", "a1", "0.25", activity="act-2"))  # 0.55: over
    assert [c[:2] for c in rig.payment.calls] == [("accept", "d1"), ("accept", "d2"), ("reject", "d3")]
    assert rig.processor.account_totals() == {"a1": Decimal("0.4")}


def test_after_the_stop_notes_over_the_cap_are_refused_and_the_agreement_terminated_once(rig):
    holder = Holder()
    capped(rig, holder=holder)
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.6"))
    deliver(rig.processor, rig.payment, note("d2", "a1", "0.61"))
    deliver(rig.processor, rig.payment, note("d0", "a1", "0.3", activity="act-0"))  # issued before: it fits
    assert [c[:2] for c in rig.payment.calls] == [("reject", "d1"), ("reject", "d2"), ("accept", "d0")]
    assert "over its max_cost 0.5" in rig.payment.calls[1][2]
    assert rig.terminations.done.wait(WAIT)
    time.sleep(0.05)
    assert len(rig.terminations.calls) == 1 and len(holder.errors) == 1


def test_after_the_stop_the_invoice_is_accepted_only_up_to_the_notes_accepted_before(rig):
    capped(rig, holder=Holder())
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.4"))
    deliver(rig.processor, rig.payment, note("d2", "a1", "0.8"))  # stops the job
    rig.processor.agreement_ended("a1")
    deliver(rig.processor, rig.payment, invoice("i1", "a1", "0.9"))
    assert rig.payment.calls[-1][:2] == ("reject", "i1")
    _, _, reason, instead = rig.payment.calls[-1]
    assert "more than the 0.4 accepted" in reason and "max_cost 0.5" in reason
    assert instead == Decimal("0.4")  # the rejection says what the requestor stands by
    assert rig.processor.outstanding() == 0  # the rejected invoice settles the account: close() does not wait


def test_an_invoice_within_the_cap_is_accepted_and_one_over_it_is_rejected(rig):
    capped(rig, agreement="a1", job="job-1", holder=Holder())
    capped(rig, agreement="a2", job="job-2", holder=Holder())
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.3"))
    deliver(rig.processor, rig.payment, invoice("i1", "a1", "0.45"))
    deliver(rig.processor, rig.payment, invoice("i2", "a2", "0.51"))
    assert [c[:2] for c in rig.payment.calls] == [("accept", "d1"), ("accept", "i1"), ("reject", "i2")]
    assert "would be billed 0.51, over its max_cost 0.5" in rig.payment.calls[-1][2]


def test_a_job_s_cap_covers_all_its_agreements(rig):
    """A retry on another provider signs a second agreement: both count against the one cap."""
    budget = capped(rig, agreement="a1", holder=Holder())
    rig.processor.register("a2", sender="job-1", budget=budget, on_over_budget=Holder())
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.3"))
    rig.processor.agreement_ended("a1")
    deliver(rig.processor, rig.payment, invoice("i1", "a1", "0.35"))
    deliver(rig.processor, rig.payment, note("d2", "a2", "0.2"))  # 0.35 + 0.2 > 0.5
    assert [c[:2] for c in rig.payment.calls] == [("accept", "d1"), ("accept", "i1"), ("reject", "d2")]
    assert budget.committed() == Decimal("0.35")


def test_a_note_over_the_cap_after_the_agreement_ended_is_refused_without_a_second_termination(rig):
    holder = Holder()
    budget = capped(rig, holder=holder)
    rig.processor.agreement_ended("a1")  # the job finished and let the agreement go
    rig.guard.job_finished("job-1")
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.9"))
    assert rig.payment.calls[-1][:2] == ("reject", "d1")
    assert budget.error is not None and holder.errors == []  # nothing to stop: nobody holds it
    time.sleep(0.05)
    assert rig.terminations.calls == []


def test_a_note_while_the_job_is_ending_asks_the_holder_which_knows_it_let_go(rig):
    holder = Holder(live=False)  # the lease was released a moment ago; the processor has not heard yet
    capped(rig, holder=holder)
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.9"))
    assert rig.payment.calls[-1][:2] == ("reject", "d1") and len(holder.errors) == 1
    time.sleep(0.05)
    assert rig.terminations.calls == []  # the job's own cleanup ends it


def test_yagna_that_cannot_reject_debit_notes_leaves_the_note_unaccepted_and_logs_why(caplog):
    payment = FakePayment(reject_status=501)
    guard = BudgetGuard(10.0, Terminations())
    processor = PaymentProcessor(SimpleNamespace(payment=payment), PaymentOptions(), "alloc-1", "session", "net")
    processor.register("a1", sender="job", budget=guard.reserve("job", 0.5), on_over_budget=Holder())
    with caplog.at_level(logging.INFO, logger="golem_sync.payment"):
        deliver(processor, payment, note("d1", "a1", "0.9"))
    assert [c[:2] for c in payment.calls] == [("reject", "d1")]  # never accepted
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "yagna cannot reject debit note d1" in text and "max_cost 0.5" in text
    assert "stopping the job" in text
    guard.close(timeout=1.0)


def test_yagna_that_cannot_reject_the_invoice_leaves_it_unaccepted_and_close_does_not_wait(caplog):
    payment = FakePayment(reject_status=501)
    guard = BudgetGuard(10.0, Terminations())
    processor = PaymentProcessor(SimpleNamespace(payment=payment), PaymentOptions(), "alloc-1", "session", "net")
    processor.register("a1", sender="job", budget=guard.reserve("job", 0.5), on_over_budget=Holder())
    processor.agreement_ended("a1")
    assert processor.outstanding() == 1
    with caplog.at_level(logging.INFO, logger="golem_sync.payment"):
        deliver(processor, payment, invoice("i1", "a1", "0.9"))
    assert [c[:2] for c in payment.calls] == [("reject", "i1")]
    assert "yagna cannot reject invoice i1" in caplog.text and "over its max_cost 0.5" in caplog.text
    assert processor.outstanding() == 0
    t0 = time.monotonic()
    assert processor.wait_for_invoices(5.0) is True and time.monotonic() - t0 < 0.5
    guard.close(timeout=1.0)


def test_a_failing_terminate_is_logged_and_a_hanging_one_does_not_hold_anything_up(rig, caplog):
    holder = Holder()
    capped(rig, holder=holder)
    rig.terminations.gate = threading.Event()
    rig.terminations.fail = True
    started = time.monotonic()
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.9"))
    deliver(rig.processor, rig.payment, note("d2", "a1", "1.0"))
    assert time.monotonic() - started < 1.0  # the poller thread never waits for the termination
    assert len(holder.errors) == 1  # the job was told at once
    with caplog.at_level(logging.WARNING, logger="golem_sync.payment.budget"):
        t0 = time.monotonic()
        rig.guard.close(timeout=0.2)  # bounded although the termination still hangs
        assert time.monotonic() - t0 < 1.0
    assert "still ending an agreement" in caplog.text
    with caplog.at_level(logging.ERROR, logger="golem_sync.payment.budget"):
        rig.terminations.gate.set()
        assert rig.terminations.done.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while "terminating agreement a1 at its cost cap failed" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "terminating agreement a1 at its cost cap failed" in caplog.text


def test_a_holder_that_raises_is_logged_and_the_agreement_still_terminated(rig, caplog):
    def broken(error):
        raise RuntimeError("bug")

    capped(rig, holder=broken)
    with caplog.at_level(logging.ERROR, logger="golem_sync.payment.budget"):
        deliver(rig.processor, rig.payment, note("d1", "a1", "0.9"))
    assert "telling agreement a1's holder" in caplog.text
    assert rig.terminations.done.wait(WAIT)


def test_an_agreement_signed_after_the_stop_is_stopped_at_once(rig):
    budget = capped(rig, holder=Holder())
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.9"))
    late = Holder()
    rig.processor.register("a2", sender="job-1", budget=budget, on_over_budget=late)
    assert len(late.errors) == 1
    deadline = time.monotonic() + WAIT
    while len(rig.terminations.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(a for a, _ in rig.terminations.calls) == ["a1", "a2"]


def test_a_filter_rejection_does_not_count_against_the_cap(rig):
    rig.processor = PaymentProcessor(SimpleNamespace(payment=rig.payment),
                                     PaymentOptions(debit_note_filter=lambda doc: doc.debit_note_id != "d1"),
                                     "alloc-1", "session", "net")
    budget = capped(rig, holder=Holder())
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.45"))  # rejected by the filter
    assert budget.committed() == 0 and budget.error is None


# -- the running estimate -----------------------------------------------------------------------

def test_the_estimate_over_the_cap_stops_the_job_between_notes(rig):
    holder = Holder()
    budget = capped(rig, holder=holder)
    assert budget.check_estimate(0.49) is False and budget.error is None
    assert budget.check_estimate(0.51) is True
    assert budget.check_estimate(0.9) is False  # once
    (error,) = holder.errors
    assert error.amount == Decimal("0.51") and "estimated cost" in str(error) and "max_cost 0.5" in str(error)
    assert rig.terminations.done.wait(WAIT)
    deliver(rig.processor, rig.payment, note("d1", "a1", "0.3"))  # issued before the stop, within the cap
    deliver(rig.processor, rig.payment, invoice("i1", "a1", "0.55"))
    assert [c[:2] for c in rig.payment.calls] == [("accept", "d1"), ("reject", "i1")]


def test_the_watch_thread_checks_estimates_periodically_and_ends_with_the_last_capped_job():
    readings: List[Tuple[str, bool]] = []
    value = [0.1]

    def estimate(job_id: str, refresh: bool) -> float:
        readings.append((job_id, refresh))
        return value[0]

    terminations = Terminations()
    guard = BudgetGuard(10.0, terminations, estimate=estimate, check_sec=0.05)
    budget = guard.reserve("job-1", 0.5)
    budget.add_agreement("a1", Holder())
    watcher = [t for t in threading.enumerate() if t.name == "golem-budget-watch"]
    assert len(watcher) == 1
    time.sleep(0.3)
    assert budget.error is None and len(readings) >= 2 and all(r == ("job-1", True) for r in readings)
    value[0] = 0.6
    assert terminations.done.wait(WAIT) and budget.error is not None
    guard.job_finished("job-1")
    watcher[0].join(WAIT)
    assert not watcher[0].is_alive()  # no capped job left: no thread
    guard.reserve("job-2", 0.5)  # a new capped job starts a new watcher
    assert any(t.name == "golem-budget-watch" for t in threading.enumerate())
    guard.close(timeout=WAIT)
    assert not any(t.name == "golem-budget-watch" for t in threading.enumerate())


def test_reading_usage_checks_the_estimate_without_a_rest_call():
    readings: List[bool] = []
    guard = BudgetGuard(10.0, Terminations(), estimate=lambda job_id, refresh: readings.append(refresh) or 0.9,
                        check_sec=3600)
    budget = guard.reserve("job-1", 0.5)
    budget.add_agreement("a1", Holder())
    guard.usage_recorded("other-job")
    assert readings == [] and budget.error is None
    guard.usage_recorded("job-1")
    assert readings == [False] and budget.error is not None
    guard.close(timeout=WAIT)


# -- the network budget against the sum of running caps ----------------------------------------

def test_a_cap_that_would_take_the_running_caps_over_the_budget_fails_at_once():
    guard = BudgetGuard(1.0, Terminations())
    first = guard.reserve("job-1", 0.6)
    assert guard.reserve("job-1", 0.6) is first  # a retry keeps its reservation
    with pytest.raises(GolemBudgetError) as caught:
        guard.reserve("job-2", 0.5)
    error = caught.value
    assert error.max_cost == 0.5 and error.amount == Decimal("1.1")
    assert "payment.budget 1.0" in str(error) and "max_cost 0.5" in str(error) and "1 running job" in str(error)
    guard.reserve("job-3", 0.4)  # exactly the budget
    assert guard.reserved() == Decimal("1.0")
    guard.job_finished("job-1")
    guard.reserve("job-2", 0.5)
    with pytest.raises(GolemBudgetError, match="over payment.budget 1.0"):
        guard.reserve("job-4", 1.5)
    guard.close()


# -- options and errors ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -0.1, "0.5", True, float("nan"), float("inf")])
def test_max_cost_must_be_a_positive_finite_number(value):
    with pytest.raises(GolemConfigError, match=r"job\.max_cost"):
        JobOptions(max_cost=value)


def test_a_budget_error_read_back_from_a_job_store_keeps_its_type():
    rebuilt = rebuild_error(JobRecord(job_id="j", state="rejected", error="job j would be billed 0.7",
                                      error_type="GolemBudgetError"))
    assert isinstance(rebuilt, GolemBudgetError) and rebuilt.max_cost is None and "0.7" in str(rebuilt)


# -- whole jobs on the fake yagna ---------------------------------------------------------------

def terminate_bodies(fake_yagna: Any, agreement_id: str) -> List[dict]:
    return [json.loads(call.request.body) for call in list(fake_yagna.rsps.calls)
            if call.request.method == "POST" and call.request.url.split("?")[0].endswith(
                f"/agreements/{agreement_id}/terminate")]


def test_a_note_over_the_cap_stops_the_job_inside_its_command(golem, fake_yagna):
    g = golem(payment={"invoice_wait_sec": 5})
    seen: dict = {}

    def worker(ctx):
        seen["agreement"] = ctx.agreement_id
        fake_yagna.batch_delay = 30.0
        fake_yagna.push_debit_note("dn-over", ctx.agreement_id, amount="0.7")
        return ctx.run("sleep 30")

    job = g.create_job(job={"max_cost": 0.5})
    job.start_work(worker)
    with pytest.raises(GolemBudgetError) as caught:
        job.wait_for_result(timeout=WAIT)
    assert caught.value.max_cost == 0.5 and caught.value.amount == Decimal("0.7")
    assert job.state.value == "rejected"
    agreement = seen["agreement"]
    assert "dn-over" not in fake_yagna.accepted
    assert fake_yagna.calls("POST", "/debitNotes/dn-over/reject")
    assert fake_yagna.agreements[agreement] == "Terminated"
    bodies = terminate_bodies(fake_yagna, agreement)
    assert bodies and "max_cost 0.5" in bodies[0]["message"]
    fake_yagna.batch_delay = 0.0
    fake_yagna.push_invoice("inv-over", agreement, amount="0.8")
    assert wait_until(lambda: bool(fake_yagna.calls("POST", "/invoices/inv-over/reject")))
    assert "inv-over" not in fake_yagna.accepted


def test_a_worker_busy_in_its_own_code_is_failed_and_its_agreement_terminated_at_once(golem, fake_yagna):
    g = golem()
    terminated = threading.Event()
    release = threading.Event()
    seen: dict = {}

    def worker(ctx):
        fake_yagna.push_debit_note("dn-over", ctx.agreement_id, amount="2")
        seen["terminated"] = wait_until(lambda: fake_yagna.agreements[ctx.agreement_id] == "Terminated")
        terminated.set()
        release.wait(WAIT)
        return "done anyway"  # never calls golem_sync again: the cap still fails it

    job = g.create_job(job={"max_cost": 0.5})
    job.start_work(worker)
    assert terminated.wait(WAIT) and seen["terminated"]  # while the worker still runs
    release.set()
    with pytest.raises(GolemBudgetError, match="max_cost 0.5"):
        job.wait_for_result(timeout=WAIT)


def test_reading_usage_over_the_cap_stops_the_job(golem, fake_yagna):
    """Offer coeffs 0.1/cpu-s + 0.01/s: usage [10 cpu-s, 10 s] is 1.1, over 0.5."""
    g = golem()

    def worker(ctx):
        fake_yagna.usage[ctx.activity_id] = [10.0, 10.0]
        ctx.get_usage()
        return ctx.run("echo never")

    job = g.create_job(job={"max_cost": 0.5})
    job.start_work(worker)
    with pytest.raises(GolemBudgetError, match="estimated cost 1.1") as caught:
        job.wait_for_result(timeout=WAIT)
    assert caught.value.amount == Decimal("1.1")
    assert fake_yagna.agreements[job.agreement_id] == "Terminated"


def test_the_watch_thread_stops_a_job_whose_estimate_crosses_the_cap(golem, fake_yagna, monkeypatch):
    monkeypatch.setattr(budget_module, "ESTIMATE_CHECK_SEC", 0.05)
    g = golem()

    def worker(ctx):
        fake_yagna.batch_delay = 30.0
        fake_yagna.usage[ctx.activity_id] = [10.0, 10.0]
        return ctx.run("sleep 30")

    job = g.create_job(job={"max_cost": 0.5})
    job.start_work(worker)
    with pytest.raises(GolemBudgetError, match="estimated cost"):
        job.wait_for_result(timeout=WAIT)
    fake_yagna.batch_delay = 0.0


def test_a_job_under_its_cap_is_unaffected(golem, fake_yagna):
    g = golem(payment={"invoice_wait_sec": 5})

    def worker(ctx):
        fake_yagna.push_debit_note("dn-ok", ctx.agreement_id, amount="0.1")
        wait_until(lambda: "dn-ok" in fake_yagna.accepted)
        return ctx.run("echo hi").stdout

    job = g.create_job(job={"max_cost": 0.5})
    job.start_work(worker)
    job.result(timeout=WAIT)
    assert job.state.value == "done" and "dn-ok" in fake_yagna.accepted
    fake_yagna.push_invoice("inv-ok", job.agreement_id, amount="0.3")
    assert wait_until(lambda: "inv-ok" in fake_yagna.accepted)
    assert fake_yagna.agreements[job.agreement_id] == "Terminated"
    assert all("max_cost" not in body.get("message", "") for body in terminate_bodies(fake_yagna, job.agreement_id))


def test_a_failing_terminate_still_fails_the_job_and_close_is_bounded(golem, fake_yagna, monkeypatch):
    from golem_sync._market import signing

    monkeypatch.setattr(signing, "_RELEASE_BUDGET_SEC", 0.3)
    monkeypatch.setattr(signing, "_RELEASE_BACKOFF_SEC", 0.01)
    g = golem()
    fake_yagna.fail_next("POST", "/terminate", status=500, times=100, message="market is down")

    def worker(ctx):
        fake_yagna.batch_delay = 30.0
        fake_yagna.push_debit_note("dn-over", ctx.agreement_id, amount="0.9")
        return ctx.run("sleep 30")

    job = g.create_job(job={"max_cost": 0.5})
    job.start_work(worker)
    with pytest.raises(GolemBudgetError):
        job.wait_for_result(timeout=WAIT)
    fake_yagna.batch_delay = 0.0
    assert fake_yagna.agreements[job.agreement_id] == "Approved"  # could not be ended...
    t0 = time.monotonic()
    g.close()  # ...so no invoice is waited for, and the stop threads are joined within bounds
    assert time.monotonic() - t0 < 5.0


def test_a_job_whose_cap_does_not_fit_the_budget_fails_at_start(golem, fake_yagna):
    g = golem(payment={"invoice_wait_sec": 0.2, "budget": 1.0})
    hold = threading.Event()
    first = g.create_job(job={"max_cost": 0.6})
    first.start_work(lambda ctx: hold.wait(WAIT))
    assert wait_until(lambda: first.agreement_id is not None)
    second = g.create_job(job={"max_cost": 0.5})
    second.start_work(lambda ctx: "never")
    with pytest.raises(GolemBudgetError, match="payment.budget 1") as caught:
        second.wait_for_result(timeout=WAIT)
    assert caught.value.max_cost == 0.5 and second.agreement_id is None  # failed before negotiating
    uncapped = g.create_job()
    uncapped.start_work(lambda ctx: "fine")
    assert uncapped.result(timeout=WAIT) == "fine"
    hold.set()
    first.result(timeout=WAIT)
    third = g.create_job(job={"max_cost": 0.9})  # the first one's cap was given back when it ended
    third.start_work(lambda ctx: "ok")
    assert third.result(timeout=WAIT) == "ok"
    alone = g.create_job(job={"max_cost": 2.0})
    alone.start_work(lambda ctx: "never")
    with pytest.raises(GolemBudgetError, match="over payment.budget"):
        alone.wait_for_result(timeout=WAIT)


def test_max_cost_is_refused_for_pool_jobs(golem, fake_yagna):
    g = golem()
    with pytest.raises(GolemConfigError, match="not supported for pool jobs"):
        g.create_pool(size=1, job={"max_cost": 0.5})
    with g.create_pool(size=1) as pool:
        with pytest.raises(GolemConfigError, match="job.max_cost is not supported for pool jobs"):
            pool.create_job(job={"max_cost": 0.5})
        job = pool.create_job()
        with pytest.raises(GolemConfigError, match="not supported for pool jobs"):
            job.start_work(lambda ctx: None, job={"max_cost": 0.5})
    capped_network = golem(job={"max_cost": 0.5})
    with pytest.raises(GolemConfigError, match=r"job=\{'max_cost': None\}"):
        capped_network.create_pool(size=1)
    capped_network.create_pool(size=1, job={"max_cost": None}).shutdown()
