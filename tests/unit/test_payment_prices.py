"""Amounts checked against the agreement: the allowed-amount rule and what the processor does with it."""
import threading
import time
from decimal import Decimal
from types import SimpleNamespace

import pytest

from golem_sync import GolemOverchargeError, GolemPaymentError
from golem_sync._agreement import AgreementLease
from golem_sync._cancel import CancelToken
from golem_sync._market.proposals import Pricing, ProposalView
from golem_sync._options import PaymentOptions
from golem_sync._payment.prices import AgreedPrices, AmountGuard, PriceTolerance
from golem_sync._payment.processor import PaymentProcessor
from golem_sync.devnet.errors import DevnetConfigError
from golem_sync.devnet.provider.spec import ProviderFaults, overcharged
from golem_sync.errors import YagnaRequestError

from test_payment_rules import FakePayment, deliver, invoice

DUR, CPU = "golem.usage.duration_sec", "golem.usage.cpu_sec"
VECTOR = (DUR, CPU)


def prices(dur=0.01, cpu=0.1, start=0.0, threads=2, interval=2.0, **kw):
    pricing = Pricing(start=start, cpu_per_sec=cpu, env_per_sec=dur, coefficients={DUR: dur, CPU: cpu})
    return AgreedPrices(pricing, VECTOR, threads, interval, **kw)


def A(x):
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def D(x):
    return Decimal(repr(float(x)))


# -- the rule ------------------------------------------------------------------------------------

def test_a_note_is_priced_on_its_own_usage_with_the_start_price_once_per_activity():
    p = prices(start=0.5)
    one = {DUR: 10.0, CPU: 3.0}
    assert float(p.allowed([one], elapsed=30.0)) == A(0.5 + 0.1 + 0.3)
    assert float(p.allowed([one, one], elapsed=30.0)) == A(2 * (0.5 + 0.1 + 0.3))


def test_zero_prices_allow_nothing_but_the_absolute_tolerance():
    p = prices(dur=0.0, cpu=0.0)
    allowed = p.allowed([{DUR: 100.0, CPU: 50.0}], elapsed=100.0)
    assert allowed == 0
    assert p.tolerance.limit(allowed) == D(1e-6)


def test_reported_usage_is_bounded_by_the_time_since_approval_plus_one_interval():
    p = prices(threads=2, interval=2.0)
    # a note claiming 1000 s of duration and 1000 s of cpu after 10 s: 12 s and 24 s count
    assert float(p.allowed([{DUR: 1000.0, CPU: 1000.0}], elapsed=10.0)) == A(0.01 * 12 + 0.1 * 24)


def test_missing_usage_falls_back_to_the_time_bound():
    p = prices(threads=4, interval=1.0)
    assert float(p.allowed([None], elapsed=9.0)) == A(0.01 * 10 + 0.1 * 40)
    assert p.usage_of(None) is None and p.usage_of([1.0]) is None and p.usage_of(["1", "2"]) is None
    assert p.usage_of([True, 1.0]) is None
    assert p.usage_of([3, 1.5]) == {DUR: 3.0, CPU: 1.5}


def test_an_older_report_gets_one_interval_of_slack_but_not_beyond_time():
    p = prices(threads=2, interval=2.0)
    assert float(p.allowed([{DUR: 5.0, CPU: 1.0}], elapsed=30.0, lag=2.0)) == A(0.01 * 7 + 0.1 * 5)
    assert float(p.allowed([{DUR: 5.0, CPU: 1.0}], elapsed=3.0, lag=2.0)) == A(0.01 * 5 + 0.1 * 5)  # dur ≤ 3+2


def test_a_priced_counter_that_cannot_be_bounded_turns_the_check_off_and_an_unpriced_one_is_ignored():
    pricing = Pricing(start=0.0, cpu_per_sec=0.0, env_per_sec=0.0, coefficients={DUR: 0.01, "gpu": 1.0})
    p = AgreedPrices(pricing, (DUR, "gpu"), 1, 1.0)
    assert p.allowed([{DUR: 1.0}], elapsed=5.0) is None
    assert float(p.allowed([{DUR: 1.0, "gpu": 2.0}], elapsed=5.0)) == A(0.01 + 2.0)
    free = AgreedPrices(Pricing(0.0, 0.0, 0.0, {DUR: 0.01, "gpu": 0.0}), (DUR, "gpu"), 1, 1.0)
    assert float(free.allowed([{DUR: 1.0}], elapsed=5.0)) == A(0.01)


def test_tolerance_is_the_greater_of_relative_and_absolute():
    t = PriceTolerance()
    assert t.limit(Decimal("1")) == Decimal("1.01")
    assert t.limit(Decimal("0.00001")) == Decimal("0.00001") + D(1e-6)
    assert PriceTolerance(relative=0.0, absolute=0.0).limit(Decimal("2")) == Decimal("2")


def test_agreed_prices_of_a_proposal():
    view = ProposalView("p", "0xprov", "Draft", {
        "golem.com.usage.vector": list(VECTOR), "golem.com.pricing.model.linear.coeffs": [0.01, 0.1, 0.5],
        "golem.inf.cpu.threads": 3})
    p = AgreedPrices.of(view, 5.0)
    assert p is not None and p.vector == VECTOR and p.threads == 3 and p.interval == 5.0 and p.pricing.start == 0.5
    assert AgreedPrices.of(ProposalView("p", "0xprov", "Draft", {}), 5.0) is None


# -- the guard and the processor -----------------------------------------------------------------

def dnote(doc_id, agreement, amount, usage=None, activity="act-1"):
    return SimpleNamespace(debit_note_id=doc_id, agreement_id=agreement, activity_id=activity,
                           total_amount_due=Decimal(amount), usage_counter_vector=usage)


class Setup:
    def __init__(self, usage_of=None):
        self.payment = FakePayment()
        self.terminated = []
        self.done = threading.Event()
        self.told = []

        def terminate(agreement_id, message):
            self.terminated.append((agreement_id, message))
            self.done.set()

        self.guard = AmountGuard(terminate, usage_of=usage_of)
        self.processor = PaymentProcessor(SimpleNamespace(payment=self.payment), PaymentOptions(), "alloc-1",
                                          "session", "network", amounts=self.guard)

    def register(self, agreement="a1", live=True, **kw):
        def on_over(error):
            self.told.append(error)
            return live
        self.processor.register(agreement, sender="job", prices=prices(**kw), on_overcharge=on_over)
        age(self.processor, agreement)


def age(processor, agreement, seconds=100.0):
    """Approved ``seconds`` ago (so the time bound is not what limits the notes)."""
    processor._accounts[agreement].prices.started -= seconds


def test_honest_notes_and_invoice_are_accepted():
    s = Setup()
    s.register()
    deliver(s.processor, s.payment, dnote("d1", "a1", "0.3", [10.0, 2.0]))  # 0.1 + 0.2
    deliver(s.processor, s.payment, invoice("i1", "a1", "0.3"))
    assert [c[0] for c in s.payment.calls] == ["accept", "accept"]
    assert not s.told and not s.terminated


def test_an_overcharging_note_is_rejected_the_holder_told_and_the_agreement_terminated_once():
    s = Setup()
    s.register()
    deliver(s.processor, s.payment, dnote("d1", "a1", "0.3", [10.0, 2.0]))
    deliver(s.processor, s.payment, dnote("d2", "a1", "0.9", [10.0, 2.0]))  # 3x
    deliver(s.processor, s.payment, dnote("d3", "a1", "1.2", [12.0, 2.0]))
    assert s.done.wait(5)
    s.guard.close()
    kinds = [(c[0], c[1], c[2]) for c in s.payment.calls]
    assert kinds == [("accept", "d1", Decimal("0.3")), ("reject", "d2", "INCORRECT_AMOUNT"),
                     ("reject", "d3", "INCORRECT_AMOUNT")]
    assert "debit note d2 asks 0.9, over the 0.303" in s.payment.calls[1][3], s.payment.calls[1][3]
    [error] = s.told
    assert isinstance(error, GolemOverchargeError) and isinstance(error, GolemPaymentError)
    assert error.amount == Decimal("0.9") and error.allowed == Decimal("0.303") and error.document_id == "d2"
    assert error.agreement_id == "a1" and "overcharged" in str(error)
    assert s.terminated == [("a1", "Provider overcharged: d2 asks 0.9, the agreed prices allow 0.303")]
    assert s.processor.account_totals() == {"a1": Decimal("0.3")}


def test_a_note_at_the_tolerance_boundary_is_accepted_and_just_over_it_rejected():
    s = Setup()
    s.register()
    deliver(s.processor, s.payment, dnote("d1", "a1", "0.303", [10.0, 2.0]))
    deliver(s.processor, s.payment, dnote("d2", "a1", "0.303000000000000001", [10.0, 2.0]))
    assert [c[0] for c in s.payment.calls] == ["accept", "reject"]


def test_an_agreement_its_holder_let_go_is_not_terminated_again():
    s = Setup()
    s.register(live=False)
    deliver(s.processor, s.payment, dnote("d1", "a1", "5", [10.0, 2.0]))
    s.guard.close()
    assert len(s.told) == 1 and s.terminated == []


def test_a_note_without_usage_is_bounded_by_what_was_read_or_by_time():
    read = {"act-1": {DUR: 10.0, CPU: 2.0}}
    s = Setup(usage_of=lambda agreement_id: read)
    s.register(interval=2.0)
    # read 10 s / 2 s cpu, + one interval: 12 s, 2 + 2*2 = 6 s cpu → 0.12 + 0.6 = 0.72
    deliver(s.processor, s.payment, dnote("d1", "a1", "0.72"))
    deliver(s.processor, s.payment, dnote("d2", "a1", "0.8"))
    assert [c[0] for c in s.payment.calls] == ["accept", "reject"]


def test_an_overcharging_invoice_is_rejected_standing_by_the_notes_accepted():
    payment = FakePayment()
    rejected = []
    payment.reject_invoice = lambda doc_id, rejection: rejected.append(rejection)
    guard = AmountGuard(lambda a, m: None)
    processor = PaymentProcessor(SimpleNamespace(payment=payment), PaymentOptions(), "alloc-1", "session",
                                 "network", amounts=guard)
    processor.register("a1", sender="job", prices=prices(interval=1.0))
    age(processor, "a1")
    deliver(processor, payment, dnote("d1", "a1", "0.3", [10.0, 2.0]))
    # the last note's usage + one interval of slack: 11 s, 2 + 2 s cpu → 0.11 + 0.4 = 0.51 (+1%)
    deliver(processor, payment, invoice("i1", "a1", "0.6"))
    [rejection] = rejected
    assert rejection.reason == "INCORRECT_AMOUNT" and rejection.total_amount_accepted == Decimal("0.3")
    assert "invoice i1 asks 0.6" in rejection.message
    assert processor.account_totals() == {"a1": Decimal("0.3")}
    processor.register("a2", sender="job", prices=prices(interval=1.0))
    age(processor, "a2")
    deliver(processor, payment, dnote("d2", "a2", "0.3", [10.0, 2.0]))
    deliver(processor, payment, invoice("i2", "a2", "0.51"))
    assert ("accept", "i2", Decimal("0.51"), "alloc-1") in payment.calls


def test_yagna_refusing_to_reject_a_debit_note_leaves_it_unaccepted_and_still_stops_the_agreement():
    s = Setup()

    def refuse(doc_id, rejection):
        raise YagnaRequestError("Not implemented", status=501, method="POST", path=f"/debitNotes/{doc_id}/reject")

    s.payment.reject_debit_note = refuse
    s.register()
    deliver(s.processor, s.payment, dnote("d1", "a1", "0.9", [10.0, 2.0]))
    assert s.done.wait(5)
    assert s.payment.calls == [] and len(s.told) == 1
    assert s.processor.account_totals() == {"a1": Decimal(0)}


def test_without_prices_nothing_is_checked():
    s = Setup()
    s.processor.register("a1", sender="job")
    deliver(s.processor, s.payment, dnote("d1", "a1", "100", [1.0, 1.0]))
    assert [c[0] for c in s.payment.calls] == ["accept"]


def test_the_lease_turns_an_overcharge_into_the_jobs_error():
    lease = AgreementLease("a1", ProposalView("p", "0xprov", "Draft", {}), CancelToken())
    error = GolemOverchargeError("overcharged", amount=Decimal(2), allowed=Decimal(1))
    assert lease.over_budget(error) is True and lease.budget_error is error and lease.token.cancelled
    assert lease.over_budget(error) is False


# -- the devnet knob -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0.5, 0, -1, float("nan"), float("inf"), "3", True])
def test_the_overcharge_knob_is_validated(bad):
    with pytest.raises(DevnetConfigError, match="overcharge"):
        ProviderFaults(overcharge=bad)


def test_the_overcharge_knob_multiplies_the_bill():
    assert overcharged(Decimal("0.5"), ProviderFaults()) == Decimal("0.5")
    assert overcharged(Decimal("0.5"), ProviderFaults(overcharge=3.0)) == Decimal("1.5")
    assert ProviderFaults(overcharge=1).overcharge == 1
