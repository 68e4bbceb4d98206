"""What work costs: usage read from yagna, priced with the agreement's linear pricing.

The estimate is ``start + sum(coefficient × counter)`` per activity (as the provider computes its
debit notes); ``accepted`` is what this network actually accepted (invoice, else debit notes).

A provider bills an activity's duration from its start to its end, while the usage it reports
lags by up to its report interval (a short job may only see the report made at its start, with
duration 0). So once an activity is destroyed (:meth:`CostLedger.activity_ended`), its duration
counter counts at least the time from its creation to its destroy as this process saw them.

Memory: rows stay while their job runs; after ``job_finished`` they stay among the most recent
``keep_finished`` finished agreements (default 1000), and older ones only add to running totals.

Threads: one :class:`CostLedger` per network. Jobs' threads record into it and any thread reads
it; one lock guards its tables. Reading a live activity's usage is a REST call made by the reader,
outside the lock.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from decimal import Decimal
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import attrs

from .._market.proposals import Pricing

__all__ = ["CostLedger", "AgreementCost", "CostSummary", "usage_by_name"]

logger = logging.getLogger("golem_sync.work.costs")

Usage = Dict[str, float]
#: The usage counter of an activity's wall-clock time.
DURATION = "golem.usage.duration_sec"


def usage_by_name(vector: Sequence[str], values: Optional[Sequence[float]]) -> Usage:
    """Pair the offer's ``golem.com.usage.vector`` names with a usage report's values."""
    if not values:
        return {name: 0.0 for name in vector}
    return {name: float(value) for name, value in zip(vector, values)}


@attrs.frozen
class AgreementCost:
    """One agreement's usage and cost (one row of the summary)."""

    agreement_id: str
    job_id: str
    provider_id: str
    provider_name: str
    activities: int
    usage: Mapping[str, float]
    estimated: float
    accepted: Optional[Decimal] = None
    pricing: Optional[Pricing] = None

    @property
    def difference(self) -> Optional[float]:
        """Accepted minus estimated (``None`` while nothing is accepted)."""
        return None if self.accepted is None else float(self.accepted) - self.estimated


@attrs.frozen
class CostSummary:
    """Per-agreement costs of a network, with totals; ``str()`` gives the table logged at close.

    ``rows`` are the live agreements and the most recently finished ones; agreements dropped
    from the ledger (see :class:`CostLedger`) count only in the totals: ``earlier_agreements``,
    ``earlier_estimated`` and ``earlier_by_provider``. ``accepted_overall``, when known (the
    payment processor's running total), is the accepted total over every agreement.
    """

    rows: Sequence[AgreementCost]
    earlier_agreements: int = 0
    earlier_estimated: float = 0.0
    earlier_by_provider: Mapping[str, float] = attrs.Factory(dict)
    accepted_overall: Optional[Decimal] = None

    @property
    def agreements(self) -> int:
        """How many agreements the totals cover (rows and earlier ones)."""
        return len(self.rows) + self.earlier_agreements

    @property
    def estimated_total(self) -> float:
        return self.earlier_estimated + sum(row.estimated for row in self.rows)

    @property
    def accepted_total(self) -> Decimal:
        if self.accepted_overall is not None:
            return self.accepted_overall
        return sum((row.accepted for row in self.rows if row.accepted is not None), Decimal(0))

    @property
    def difference(self) -> Optional[float]:
        """Accepted minus estimated over the rows with an accepted amount (``None`` if none has one)."""
        diffs = [row.difference for row in self.rows if row.difference is not None]
        return sum(diffs) if diffs else None

    def by_provider(self) -> Dict[str, float]:
        """Estimated cost by provider name (id when unnamed)."""
        totals: Dict[str, float] = dict(self.earlier_by_provider)
        for row in self.rows:
            key = row.provider_name or row.provider_id
            totals[key] = totals.get(key, 0.0) + row.estimated
        return totals

    def __str__(self) -> str:
        lines = [f"{'provider':<20} {'agreement':<14} {'duration s':>10} {'cpu s':>8} "
                 f"{'estimated':>12} {'accepted':>12} {'difference':>12}"]
        for row in self.rows:
            accepted = "-" if row.accepted is None else f"{row.accepted:.6f}"
            difference = "-" if row.difference is None else f"{row.difference:+.6f}"
            lines.append(
                f"{(row.provider_name or row.provider_id)[:20]:<20} {row.agreement_id[:12] + '..':<14} "
                f"{row.usage.get(DURATION, 0.0):>10.1f} "
                f"{row.usage.get('golem.usage.cpu_sec', 0.0):>8.2f} {row.estimated:>12.6f} {accepted:>12} "
                f"{difference:>12}")
        if self.earlier_agreements:
            lines.append(f"(+ {self.earlier_agreements} earlier agreement(s), estimated "
                         f"{self.earlier_estimated:.6f})")
        total = f"{self.agreements} agreement(s); estimated {self.estimated_total:.6f}, " \
                f"accepted {self.accepted_total:.6f}"
        if self.difference is not None:
            total += f", difference {self.difference:+.6f} (accepted - estimated, where accepted)"
        lines.append(total)
        return "\n".join(lines)


@attrs.define
class _ActivityEntry:
    usage: Usage
    # Reads the current usage while the activity lives; None once it is over.
    live: Optional[Callable[[], Usage]] = None
    began: Optional[float] = None  # monotonic time it was tracked (just after its creation)
    ended: Optional[float] = None  # monotonic time it was destroyed


def _billed(act: _ActivityEntry, vector: Sequence[str]) -> Usage:
    """The activity's usage as its provider bills it: the duration counter counts at least the
    time the activity lived, once it has ended (see the module doc)."""
    usage = dict(act.usage)
    if act.began is not None and act.ended is not None and (DURATION in vector or not vector):
        usage[DURATION] = max(usage.get(DURATION, 0.0), act.ended - act.began)
    return usage


@attrs.define
class _AgreementEntry:
    job_id: str
    provider_id: str
    provider_name: str
    pricing: Optional[Pricing]
    vector: List[str]
    activities: Dict[str, _ActivityEntry] = attrs.Factory(dict)
    finished: bool = False  # its job has finished (see CostLedger.job_finished)


@attrs.define
class _Share:
    """A job's time on an activity it does not own (a pool lease's): priced as the usage it added."""

    agreement_id: str
    activity_id: str
    pricing: Optional[Pricing]
    start: Optional[Usage]  # the activity's usage when the job got it; None: the activity is all the job's
    end: Optional[Usage] = None  # its usage when the job gave it back; None while the job holds it
    began: float = attrs.field(factory=time.monotonic)
    ended: Optional[float] = None


#: How many agreements of finished jobs keep their row by default.
FINISHED_AGREEMENTS_KEPT = 1000


class CostLedger:
    """Usage and prices of the agreements a network's jobs signed.

    Memory: an agreement's row stays while its job runs, so ``job_cost`` of a live job is exact.
    Once :meth:`job_finished` is called for its job, the row joins the ``keep_finished`` most
    recent finished agreements; older ones are dropped from the rows and only add to the
    summary's totals (count, estimate, and estimate per provider: one number per provider), so
    memory does not grow with the number of jobs. ``job_cost`` of a dropped job is 0.0.
    """

    def __init__(self, *, keep_finished: int = FINISHED_AGREEMENTS_KEPT) -> None:
        self._lock = threading.Lock()
        self._agreements: Dict[str, _AgreementEntry] = {}
        self._keep_finished = keep_finished
        self._finished: "OrderedDict[str, None]" = OrderedDict()  # finished agreement ids, oldest first
        self._earlier_count = 0
        self._earlier_estimated = 0.0
        self._earlier_by_provider: Dict[str, float] = {}
        self._shares: Dict[str, List[_Share]] = {}  # job id -> its shares of pool activities
        self._finished_shares: "OrderedDict[str, None]" = OrderedDict()  # job ids, oldest first
        self._listeners: List[Callable[[str], None]] = []

    def add_usage_listener(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(job_id)`` each time :meth:`usage` records a usage of one of the job's
        agreements (on the recording thread, outside the lock; it must be quick and not raise).

        Returns a function that removes the listener.
        """
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def agreement(self, agreement_id: str, *, job_id: str, provider_id: str, provider_name: str,
                  pricing: Optional[Pricing], vector: Sequence[str]) -> None:
        with self._lock:
            self._agreements.setdefault(agreement_id, _AgreementEntry(
                job_id, provider_id, provider_name, pricing, list(vector)))

    def activity(self, agreement_id: str, activity_id: str, live: Optional[Callable[[], Usage]]) -> None:
        with self._lock:
            entry = self._agreements.get(agreement_id)
            if entry is not None:
                entry.activities.setdefault(activity_id, _ActivityEntry({}, live, began=time.monotonic()))

    def activity_ended(self, agreement_id: str, activity_id: str) -> None:
        """The activity was destroyed now: from here its duration counts at least its lifetime
        (from :meth:`activity` to now). Only the first call counts."""
        with self._lock:
            entry = self._agreements.get(agreement_id)
            act = entry.activities.get(activity_id) if entry is not None else None
            if act is not None and act.ended is None:
                act.ended = time.monotonic()
                act.live = None

    def usage(self, agreement_id: str, activity_id: str, usage: Usage, *, final: bool = False) -> None:
        """Record the latest usage of an activity (``final``: it is over, stop reading it live)."""
        with self._lock:
            entry = self._agreements.get(agreement_id)
            if entry is None:
                return
            act = entry.activities.setdefault(activity_id, _ActivityEntry({}))
            if usage:
                act.usage = dict(usage)
            if final:
                act.live = None
            listeners, job_id = list(self._listeners), entry.job_id
        for listener in listeners:
            try:
                listener(job_id)
            except Exception:
                logger.exception("a usage listener failed")

    def share_begin(self, job_id: str, agreement_id: str, activity_id: str, *, whole: bool = False) -> None:
        """``job_id`` runs on a pool's activity from now; its cost is the usage it adds to the last
        one recorded, its duration at least the time it holds the activity.

        ``whole``: the activity was made for the job, so all of it (start price included) is the job's.
        """
        with self._lock:
            entry = self._agreements.get(agreement_id)
            act = entry.activities.get(activity_id) if entry is not None else None
            start = None if whole else dict(act.usage if act is not None else {})
            self._shares.setdefault(job_id, []).append(_Share(
                agreement_id, activity_id, entry.pricing if entry is not None else None, start))

    def share_held(self, job_id: str, activity_id: str) -> float:
        """Seconds the job has held the activity (0.0 if it holds no share of it)."""
        with self._lock:
            for share in self._shares.get(job_id, ()):
                if share.activity_id == activity_id and share.end is None:
                    return time.monotonic() - share.began
        return 0.0

    def share_end(self, job_id: str, activity_id: str, usage: Mapping[str, float]) -> None:
        """The job gave the activity back with this usage (empty: the last one recorded)."""
        with self._lock:
            for share in self._shares.get(job_id, ()):
                if share.activity_id == activity_id and share.end is None:
                    share.end = dict(usage) or self._last_usage(share)
                    share.ended = time.monotonic()

    def agreement_finished(self, agreement_id: str) -> None:
        """A pool's agreement is over: its row may age out like a finished job's."""
        with self._lock:
            entry = self._agreements.get(agreement_id)
            if entry is not None and not entry.finished:
                self._finish_entry(agreement_id, entry)
            self._age_out()

    def job_finished(self, job_id: str) -> None:
        """The job is over: stop reading its usage live, and let its rows age out (see class doc)."""
        with self._lock:
            for agreement_id, entry in self._agreements.items():
                if entry.job_id == job_id and not entry.finished:
                    self._finish_entry(agreement_id, entry)
            if job_id in self._shares:
                for share in self._shares[job_id]:
                    if share.end is None:
                        share.end = self._last_usage(share)
                        share.ended = time.monotonic()
                self._finished_shares[job_id] = None
                while len(self._finished_shares) > self._keep_finished:
                    old_job, _ = self._finished_shares.popitem(last=False)
                    self._shares.pop(old_job, None)
            self._age_out()

    def _finish_entry(self, agreement_id: str, entry: _AgreementEntry) -> None:
        entry.finished = True
        for act in entry.activities.values():
            act.live = None
        self._finished[agreement_id] = None

    def _last_usage(self, share: _Share) -> Usage:
        entry = self._agreements.get(share.agreement_id)
        act = entry.activities.get(share.activity_id) if entry is not None else None
        return dict(act.usage) if act is not None else dict(share.start or {})

    def _share_cost(self, share: _Share) -> float:
        """The linear price of what the job added to the activity's usage.

        Providers report usage every few seconds, so a short job may see no change: its duration
        counts at least the time it held the activity.
        """
        pricing = share.pricing
        if pricing is None:
            return 0.0
        end = share.end if share.end is not None else self._last_usage(share)
        start = share.start or {}
        added = {name: max(0.0, value - start.get(name, 0.0)) for name, value in end.items()}
        held = (share.ended if share.ended is not None else time.monotonic()) - share.began
        added[DURATION] = max(added.get(DURATION, 0.0), held)
        cost = sum(pricing.coefficients.get(name, 0.0) * value for name, value in added.items())
        return cost + (pricing.start if share.start is None else 0.0)

    def _age_out(self) -> None:
        while len(self._finished) > self._keep_finished:
                old_id, _ = self._finished.popitem(last=False)
                old = self._agreements.pop(old_id, None)
                if old is not None:
                    estimate = _estimate(old)
                    key = old.provider_name or old.provider_id
                    self._earlier_count += 1
                    self._earlier_estimated += estimate
                    self._earlier_by_provider[key] = self._earlier_by_provider.get(key, 0.0) + estimate

    def cost_of(self, agreement_id: str, usage: Mapping[str, float]) -> float:
        """The linear price of one activity's usage on this agreement (0.0 if unpriced)."""
        with self._lock:
            entry = self._agreements.get(agreement_id)
            pricing = entry.pricing if entry else None
        return pricing.cost(usage) if pricing is not None else 0.0

    def activity_usage(self, agreement_id: str) -> Dict[str, Usage]:
        """The last usage recorded for each of an agreement's activities, as billed (no REST call)."""
        with self._lock:
            entry = self._agreements.get(agreement_id)
            if entry is None:
                return {}
            billed = {aid: _billed(act, entry.vector) for aid, act in entry.activities.items()}
        return {aid: usage for aid, usage in billed.items() if usage}

    def job_cost(self, job_id: str, *, refresh: bool = True) -> float:
        """The estimated cost of a job so far, over all its agreements and activities."""
        if refresh:
            with self._lock:
                shared = {s.agreement_id for s in self._shares.get(job_id, ()) if s.end is None}
            self._refresh(lambda e: e.job_id == job_id or any(e is self._agreements.get(a) for a in shared))
        with self._lock:
            own = sum(_estimate(e) for e in self._agreements.values() if e.job_id == job_id)
            return own + sum(self._share_cost(share) for share in self._shares.get(job_id, ()))

    def agreement_cost(self, agreement_id: str, *, refresh: bool = True) -> float:
        """The estimated cost of one agreement so far."""
        if refresh:
            self._refresh(lambda e: e is self._agreements.get(agreement_id))
        with self._lock:
            entry = self._agreements.get(agreement_id)
            return _estimate(entry) if entry is not None else 0.0

    def summary(self, accepted: Optional[Mapping[str, Decimal]] = None, *, refresh: bool = True,
                accepted_total: Optional[Decimal] = None) -> CostSummary:
        """One row per kept agreement, with totals over all of them.

        ``accepted`` are the payment processor's accepted amounts by agreement, and
        ``accepted_total`` its running total over every agreement (rows dropped included).
        """
        if refresh:
            self._refresh(lambda e: True)
        accepted = accepted or {}
        with self._lock:
            rows = []
            for agreement_id, entry in self._agreements.items():
                total: Usage = {}
                for act in entry.activities.values():
                    for name, value in _billed(act, entry.vector).items():
                        total[name] = total.get(name, 0.0) + value
                rows.append(AgreementCost(agreement_id, entry.job_id, entry.provider_id, entry.provider_name,
                                          len(entry.activities), total, _estimate(entry),
                                          accepted.get(agreement_id), entry.pricing))
            return CostSummary(rows, self._earlier_count, self._earlier_estimated,
                               dict(self._earlier_by_provider), accepted_total)

    def _refresh(self, wanted: Callable[[_AgreementEntry], bool]) -> None:
        with self._lock:
            live = [(entry, act, act.live) for entry in self._agreements.values() if wanted(entry)
                    for act in entry.activities.values() if act.live is not None]
        for _entry, act, read in live:  # REST calls outside the lock
            try:
                usage = read()
            except Exception as exc:  # a gone activity keeps its last known usage
                logger.debug("could not refresh usage: %s", exc)
                continue
            with self._lock:
                if act.live is not None and usage:
                    act.usage = dict(usage)


def _estimate(entry: _AgreementEntry) -> float:
    pricing = entry.pricing
    if pricing is None:
        return 0.0
    return float(sum(pricing.cost(_billed(act, entry.vector)) for act in entry.activities.values()))
