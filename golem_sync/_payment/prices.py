"""Amounts checked against the agreement: what the agreed linear prices allow a provider to bill.

The rule (:meth:`AgreedPrices.allowed`): an activity may be billed at most its agreement's
linear price (:meth:`~golem_sync._market.proposals.Pricing.cost`: start price + the sum of each
``golem.com.usage.vector`` counter × its ``golem.com.pricing.model.linear.coeffs`` coefficient) of
a *bounded* usage, counter by counter:

- the usage reported for it (a debit note's own ``usageCounterVector``; for an invoice, the
  highest of its notes' vectors and the usage golem_sync read from yagna), plus, when that report
  may be older than the bill (an invoice), one debit-note interval of slack (``interval`` s of
  ``golem.usage.duration_sec``, ``interval × cpu threads`` s of ``golem.usage.cpu_sec``);
- but never more than time allows: ``duration_sec ≤ elapsed + interval`` and ``cpu_sec ≤ (elapsed
  + interval) × cpu threads``, ``elapsed`` being the seconds since the agreement was approved;
- with no report for a counter, only the time bound; a counter with neither (not a time counter,
  never reported) cannot be bounded, so the document is not checked if its coefficient is not 0.

A document is over when it asks more than ``allowed + max(relative × allowed, absolute)`` (the
:class:`PriceTolerance`, by default 1% and 1e-6): a debit note for its activity (notes are
cumulative per activity), an invoice for all the agreement's activities (each one's start price
counted once).

What follows (in :class:`PaymentProcessor <golem_sync._payment.processor.PaymentProcessor>`):
the document is rejected with the reason (yagna 0.17 answers 501 to a debit-note reject: the note
stays unaccepted); for a debit note the agreement's holder is told (the job then fails with
:class:`~golem_sync.errors.GolemOverchargeError`) and the agreement is terminated at once, on a
short-lived ``golem-overcharge-stop`` thread, with a reason naming the overcharge. An invoice over
the allowed amount is rejected with ``totalAmountAccepted`` = the notes accepted before (the rule
the cost caps use too).

Threads: the checks run on the payment processor's threads; one lock per :class:`AmountGuard`
guards the per-agreement state; terminations run on their own threads, joined (bounded) by
:meth:`AmountGuard.close`. No lock is held while a hook or a termination runs.
"""
from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import attrs

from .._market.proposals import CPU, DURATION, Pricing, ProposalView
from .._work.costs import Usage, usage_by_name
from ..errors import GolemOverchargeError, GolemPaymentError
from .stopper import AgreementStopper, Terminate

__all__ = ["PriceTolerance", "AgreedPrices", "PriceCheck", "AmountGuard", "STOP_JOIN_SEC"]

logger = logging.getLogger("golem_sync.payment.prices")

#: How long :meth:`AmountGuard.close` waits for terminations still running.
STOP_JOIN_SEC = 10.0

#: The agreement's holder hears of the overcharge; True if it still held the agreement (it is
#: then terminated), False if it had let it go already.
OnOvercharge = Callable[[GolemPaymentError], bool]
#: ``usage_of(agreement_id)``: the usage golem_sync read for each of the agreement's activities.
UsageOf = Callable[[str], Mapping[str, Usage]]


def _decimal(value: float) -> Decimal:
    return Decimal(repr(float(value)))


@attrs.frozen
class PriceTolerance:
    """How much over the allowed amount a bill may be: the greater of ``relative`` × allowed and ``absolute``."""

    relative: float = 0.01
    absolute: float = 1e-6

    def limit(self, allowed: Decimal) -> Decimal:
        """The most a bill may ask when ``allowed`` is what the prices allow."""
        return allowed + max(allowed * _decimal(self.relative), _decimal(self.absolute))


@attrs.frozen
class AgreedPrices:
    """One agreement's linear prices and what bounds its usage: the usage vector, cpu threads, note interval."""

    pricing: Pricing
    vector: Tuple[str, ...]
    threads: int = 1
    interval: float = 0.0  # the debit-note interval (s): the slack of reports and of the time bound
    tolerance: PriceTolerance = PriceTolerance()

    @classmethod
    def of(cls, proposal: ProposalView, interval: float,
           tolerance: PriceTolerance = PriceTolerance()) -> Optional["AgreedPrices"]:
        """The agreed prices of a signed proposal, or None if it has no consistent linear pricing."""
        pricing = proposal.pricing()
        if pricing is None:
            return None
        vector = tuple(str(name) for name in proposal.properties.get("golem.com.usage.vector") or ())
        return cls(pricing, vector, max(1, proposal.cpu_threads), max(0.0, float(interval)), tolerance)

    def usage_of(self, values: Any) -> Optional[Usage]:
        """A reported ``usageCounterVector`` by counter name; None when it is missing or malformed."""
        if (not isinstance(values, (list, tuple)) or len(values) != len(self.vector)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            return None
        return usage_by_name(self.vector, values)

    def _bound(self, name: str, reported: Optional[float], elapsed: float, lag: float) -> Optional[float]:
        """The most of counter ``name`` an activity may be billed for (None: no bound known)."""
        rate = 1.0 if name == DURATION else float(self.threads) if name == CPU else None
        physical = None if rate is None else (max(0.0, elapsed) + self.interval) * rate
        if reported is None:
            return physical
        bound = max(0.0, reported) + (lag * rate if rate is not None else 0.0)
        return bound if physical is None else min(bound, physical)

    def allowed(self, usages: Sequence[Optional[Mapping[str, float]]], elapsed: float,
                lag: float = 0.0) -> Optional[Decimal]:
        """The most these activities may be billed in total (before the tolerance; see the module doc).

        ``usages`` has one entry per activity (None: nothing reported for it); ``elapsed`` is the
        seconds since the agreement's approval; ``lag`` how much older than the bill the reports
        may be. None when a priced counter cannot be bounded.
        """
        total = Decimal(0)
        for usage in usages:
            bounded: Dict[str, float] = {}
            for name in self.vector:
                coefficient = self.pricing.coefficients.get(name, 0.0)
                bound = self._bound(name, None if usage is None else usage.get(name), elapsed, lag)
                if bound is None:
                    if coefficient:
                        return None
                    continue
                bounded[name] = bound
            # 12 significant digits: float sums' last-bit noise off, far below the tolerance.
            total += Decimal(format(self.pricing.cost(bounded), ".12g"))
        return total


def _merge(a: Optional[Mapping[str, float]], b: Optional[Mapping[str, float]]) -> Optional[Usage]:
    """Counter by counter, the higher of two reports (usage only grows)."""
    if a is None:
        return None if b is None else dict(b)
    merged = dict(a)
    for name, value in (b or {}).items():
        merged[name] = max(merged.get(name, value), value)
    return merged


@attrs.define(eq=False)
class PriceCheck:
    """One agreement's prices and what was reported on it; made by :meth:`AmountGuard.agreement`."""

    agreement_id: str
    prices: AgreedPrices
    on_over: Optional[OnOvercharge] = None
    started: float = attrs.field(factory=time.monotonic)  # just after the agreement's approval
    reported: Dict[str, Usage] = attrs.Factory(dict)  # activity id -> the highest usage its notes reported
    error: Optional[GolemOverchargeError] = None  # set once an overcharging debit note stopped it


class AmountGuard:
    """Checks debit notes and invoices against their agreement's prices; stops an overcharging agreement.

    Args:
        terminate: ends an agreement with a reason (must not raise; may take a few seconds).
        usage_of: the usage golem_sync read for an agreement's activities (the cost ledger's),
            used to bound invoices; None: only the notes' reports and time.
    """

    def __init__(self, terminate: Optional[Terminate] = None, *, usage_of: Optional[UsageOf] = None) -> None:
        self._stopper = (None if terminate is None else
                         AgreementStopper(terminate, thread_name="golem-overcharge-stop", why="for overcharging"))
        self._usage_of = usage_of
        self._lock = threading.Lock()

    def agreement(self, agreement_id: str, prices: AgreedPrices,
                  on_over: Optional[OnOvercharge] = None) -> PriceCheck:
        """Start checking an agreement's documents (call it once it is approved)."""
        return PriceCheck(agreement_id, prices, on_over)

    def debit_note(self, check: PriceCheck, note: Any, amount: Decimal) -> Optional[str]:
        """Why the note must not be accepted (the agreement is then stopped), or None."""
        prices = check.prices
        activity = str(getattr(note, "activity_id", "") or "")
        own = prices.usage_of(getattr(note, "usage_counter_vector", None))
        with self._lock:
            if own is not None:
                check.reported[activity] = _merge(check.reported.get(activity), own) or own
        lag = 0.0
        if own is None:  # the note says nothing of its usage: what we read, a report older than the note
            own, lag = self._read(check.agreement_id).get(activity), prices.interval
        elapsed = time.monotonic() - check.started
        allowed = prices.allowed([own], elapsed, lag)
        if allowed is None or amount <= prices.tolerance.limit(allowed):
            return None
        note_id = str(getattr(note, "debit_note_id", ""))
        reason = self._reason(f"debit note {note_id}", amount, allowed, prices, elapsed)
        self._trip(check, GolemOverchargeError(
            f"provider overcharged on agreement {check.agreement_id}: {reason}; the note was not accepted and "
            f"the agreement terminated", amount=amount, allowed=prices.tolerance.limit(allowed),
            agreement_id=check.agreement_id, document_id=note_id))
        return reason

    def invoice(self, check: PriceCheck, invoice: Any, amount: Decimal) -> Optional[str]:
        """Why the invoice must not be accepted, or None."""
        prices = check.prices
        read = self._read(check.agreement_id)
        with self._lock:
            reported = dict(check.reported)
        activities = list(dict.fromkeys([*(str(a) for a in getattr(invoice, "activity_ids", None) or ()),
                                         *reported, *read]))
        usages = [_merge(reported.get(a), read.get(a)) for a in activities] or [None]
        elapsed = time.monotonic() - check.started
        allowed = prices.allowed(usages, elapsed, prices.interval)
        if allowed is None or amount <= prices.tolerance.limit(allowed):
            return None
        invoice_id = str(getattr(invoice, "invoice_id", ""))
        reason = self._reason(f"invoice {invoice_id}", amount, allowed, prices, elapsed,
                              activities=len(usages))
        logger.warning("provider overcharged on agreement %s: %s", check.agreement_id, reason)
        return reason

    def close(self, timeout: float = STOP_JOIN_SEC) -> None:
        """Wait (bounded) for terminations still running."""
        if self._stopper is not None:
            self._stopper.join(timeout)

    # -- internals ---------------------------------------------------------------------------

    def _read(self, agreement_id: str) -> Mapping[str, Usage]:
        if self._usage_of is None:
            return {}
        try:
            return self._usage_of(agreement_id)
        except Exception:
            logger.exception("reading the usage of agreement %s failed", agreement_id)
            return {}

    @staticmethod
    def _reason(what: str, amount: Decimal, allowed: Decimal, prices: AgreedPrices, elapsed: float,
                activities: int = 1) -> str:
        tolerance = prices.tolerance
        return (f"{what} asks {amount}, over the {prices.tolerance.limit(allowed)} the agreed prices allow "
                f"({allowed} for {activities} activit{'y' if activities == 1 else 'ies'} in {elapsed:.1f}s, "
                f"+ max({tolerance.relative:.0%}, {tolerance.absolute:g}))")

    def _trip(self, check: PriceCheck, error: GolemOverchargeError) -> None:
        """Stop the agreement (once): tell its holder, terminate it with the reason."""
        with self._lock:
            if check.error is not None:
                return
            check.error = error
        logger.warning("%s", error)
        live = True
        if check.on_over is not None:
            try:
                live = check.on_over(error)
            except Exception:
                logger.exception("telling agreement %s's holder about its overcharge failed", check.agreement_id)
        if live and self._stopper is not None:
            self._stopper.stop(check.agreement_id, f"Provider overcharged: {error.document_id} asks "
                                                   f"{error.amount}, the agreed prices allow {error.allowed}")
