"""Spans and metrics made from golem_sync's signals, for one network (see :mod:`golem_sync.otel`).

The span tree of one job::

    golem.job                               start_work → job_ended
    ├── golem.negotiation                   first demand of an attempt → agreement approved
    └── golem.agreement                     agreement created → ended (provider, next attempt, job end)
        ├── golem.activity                  create begins → destroyed
        │   ├── golem.batch                 batch_sent → batch_finished | batch_failed
        │   └── golem.transfer              transfer_started → transfer_ended
        └── golem.payment                   invoice received → accepted | rejected

A pool job's agreement and activity belong to its pool's lease: its batches and transfers are
children of the job span itself. The activity span starts when its creation begins (the
agreement's approval, or the previous activity's destroy on the same agreement), so its
``created`` event marks what yagna's create took.

Threads: receivers run on whatever thread sends the signal. ``_lock`` guards the tables only: a
span is taken out of its table under the lock by the one receiver that ends it, and every span
is started and ended outside the lock (a span processor may export, i.e. do I/O, on end).
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from .. import __version__, signals

__all__ = ["Instrumentation", "SCOPE"]

logger = logging.getLogger("golem_sync.otel")

#: The instrumentation scope's name (tracer and meter).
SCOPE = "golem_sync"

#: How many ended agreements are remembered for their invoice (payment span, GLM accepted).
AGREEMENTS_KEPT = 1_000


def _now_ns() -> int:
    return time.time_ns()


def error_type(error: BaseException) -> str:
    """``error.type`` as the semantic conventions want it: the exception's full type name."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _fail(span: Span, error: Optional[BaseException], description: Optional[str] = None) -> None:
    """Mark ``span`` failed, recording ``error`` (an exception event) when there is one."""
    if error is not None:
        span.record_exception(error)
        span.set_attribute("error.type", error_type(error))
    span.set_status(Status(StatusCode.ERROR, description or (str(error) if error is not None else None)))


def _glm(amount: Any) -> float:
    return float(Decimal(str(amount)))


@attrs.define(eq=False)
class _Timed:
    span: Span
    started: float  # time.monotonic()


@attrs.define(eq=False)
class _Agreement:
    """An agreement of a traced job; outlives the job until its invoice is answered."""

    agreement_id: str
    job_id: str
    span: Span
    ctx: Context
    approved: bool = False
    open: bool = True
    provider_name: str = ""
    provider_id: str = ""
    create_from: Optional[Tuple[float, int]] = None  # (monotonic, ns) the next activity's create began
    accepted: Decimal = Decimal(0)  # the highest amount accepted so far (notes are cumulative)
    debit_notes: int = 0
    payment: Optional[Span] = None


@attrs.define(eq=False)
class _Activity:
    span: Span
    ctx: Context
    created: float
    agreement_id: str


@attrs.define(eq=False)
class _Trace:
    """One traced job."""

    job: Any
    span: Span
    ctx: Context
    started: float
    negotiation: Optional[_Timed] = None
    proposals: int = 0
    agreements: List[str] = attrs.field(factory=list)  # ids, oldest first
    activities: Dict[str, _Activity] = attrs.field(factory=dict)
    batches: Dict[Tuple[str, str], _Timed] = attrs.field(factory=dict)
    transfers: Dict[str, Tuple[str, Span]] = attrs.field(factory=dict)  # transfer id -> (activity id, span)


class Instrumentation:
    """Receivers for the signals of one network's jobs; made by :func:`golem_sync.otel.instrument`."""

    def __init__(self, golem: Any, *, tracer_provider: Any = None, meter_provider: Any = None,
                 on_stop: Optional[Callable[[], None]] = None) -> None:
        self._golem = weakref.ref(golem)
        self._on_stop = on_stop
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self.jobs_started = meter.create_counter("golem.jobs.started", unit="{job}",
                                                 description="Jobs started (start_work)")
        self.jobs_ended = meter.create_counter("golem.jobs.ended", unit="{job}",
                                               description="Jobs ended, by golem.job.state")
        self.job_duration = meter.create_histogram("golem.job.duration", unit="s",
                                                   description="start_work to the job's end, cleanup included")
        self.negotiation_duration = meter.create_histogram(
            "golem.negotiation.duration", unit="s", description="First demand of an attempt to an approved agreement")
        self.create_duration = meter.create_histogram(
            "golem.activity.create.duration", unit="s", description="Creating an activity (yagna's create call)")
        self.deploy_duration = meter.create_histogram(
            "golem.activity.deploy.duration", unit="s", description="Deploying and starting a created activity")
        self.batch_duration = meter.create_histogram("golem.batch.duration", unit="s",
                                                     description="An ExeScript batch, sent to its end")
        self.glm_accepted = meter.create_counter("golem.payment.accepted", unit="{GLM}",
                                                 description="GLM accepted (debit notes and invoices)")
        self._lock = threading.Lock()
        self._traces: Dict[str, _Trace] = {}  # job id -> its trace, while the job runs
        self._agreements: "OrderedDict[str, _Agreement]" = OrderedDict()
        self._accepted_elsewhere: "OrderedDict[str, Decimal]" = OrderedDict()  # pool leases' agreements
        self._pools: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._connected: List[Tuple[Any, Callable[..., None]]] = []
        self.active = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect the receivers (weakly: the instrumentation lives as long as its network's registry)."""
        table: Sequence[Tuple[Any, Callable[..., None]]] = (
            (signals.job_created, self._job_created), (signals.job_started, self._job_started),
            (signals.job_failed, self._job_failed), (signals.job_cancelled, self._job_cancelled),
            (signals.job_ended, self._job_ended),
            (signals.demand_subscribed, self._demand_subscribed), (signals.proposal_received, self._proposal),
            (signals.agreement_created, self._agreement_created),
            (signals.agreement_approved, self._agreement_approved),
            (signals.agreement_terminated, self._agreement_terminated),
            (signals.activity_created, self._activity_created), (signals.activity_ready, self._activity_ready),
            (signals.activity_destroyed, self._activity_destroyed),
            (signals.batch_sent, self._batch_sent), (signals.batch_finished, self._batch_finished),
            (signals.batch_failed, self._batch_failed),
            (signals.transfer_started, self._transfer_started), (signals.transfer_ended, self._transfer_ended),
            (signals.debit_note_accepted, self._debit_note_accepted),
            (signals.invoice_received, self._invoice_received), (signals.invoice_accepted, self._invoice_accepted),
            (signals.invoice_rejected, self._invoice_rejected),
            (signals.lease_created, self._lease_created),
        )
        for signal, receiver in table:
            signal.connect(receiver, weak=True)
        self._connected = list(table)
        self.active = True

    def uninstrument(self) -> None:
        """Disconnect every receiver and end the spans still open (their status left unset)."""
        if not self.active:
            return
        self.active = False
        for signal, receiver in self._connected:
            signal.disconnect(receiver)
        self._connected = []
        with self._lock:
            traces, self._traces = list(self._traces.values()), {}
            agreements, self._agreements = list(self._agreements.values()), OrderedDict()
        for record in traces:
            self._end_children(record, None, failed=False)
            record.span.end()
        for agreement in agreements:
            if agreement.open:
                agreement.span.end()
            if agreement.payment is not None:
                agreement.payment.end()
        if self._on_stop is not None:
            self._on_stop()

    # -- whose signal is it ------------------------------------------------------------------

    def _trace(self, sender: Any) -> Optional[_Trace]:
        """The trace of ``sender`` if it is one of this network's running jobs (lock held)."""
        record = self._traces.get(getattr(sender, "id", None))  # type: ignore[arg-type]
        return record if record is not None and record.job is sender else None

    # -- jobs --------------------------------------------------------------------------------

    def _job_created(self, job: Any, **_: Any) -> None:
        golem = self._golem()
        job_id = getattr(job, "id", None)
        if golem is None or not isinstance(job_id, str) or golem.get_job_by_id(job_id) is not job:
            return  # another network's job
        # The parent is what is current on the caller's thread (say, a web request's span).
        span = self.tracer.start_span("golem.job", context=otel_context.get_current(),
                                      attributes={"golem.job.id": job_id})
        record = _Trace(job, span, trace.set_span_in_context(span), time.monotonic())
        with self._lock:
            self._traces[job_id] = record
        self.jobs_started.add(1)

    def _job_started(self, job: Any, *, agreement_id: str, provider: Any, **_: Any) -> None:
        with self._lock:
            record = self._trace(job)
        if record is not None:
            record.span.set_attributes(_provider_attributes(agreement_id, provider))

    def _job_failed(self, job: Any, *, error: BaseException, **_: Any) -> None:
        self._phase_failed(job, error)

    def _job_cancelled(self, job: Any, **_: Any) -> None:
        self._phase_failed(job, None)

    def _phase_failed(self, job: Any, error: Optional[BaseException]) -> None:
        """The job failed or was cancelled: a negotiation still going on is where it stopped."""
        with self._lock:
            record = self._trace(job)
            negotiation = record.negotiation if record is not None else None
            if record is not None:
                record.negotiation = None
        if negotiation is not None:
            _fail(negotiation.span, error, None if error is not None else "cancelled")
            negotiation.span.end()
            self.negotiation_duration.record(time.monotonic() - negotiation.started, {"golem.outcome": "error"})

    def _job_ended(self, job: Any, **_: Any) -> None:
        with self._lock:
            record = self._trace(job)
            if record is None:
                return
            del self._traces[job.id]
        state = str(getattr(job, "state", ""))
        error = getattr(job, "error", None)
        span = record.span
        self._end_children(record, error)
        attributes: Dict[str, Any] = {"golem.job.state": state}
        provider = getattr(job, "provider", None)
        if provider is not None and getattr(job, "agreement_id", None):
            attributes.update(_provider_attributes(job.agreement_id, provider))
        if getattr(job, "activity_id", None):
            attributes["golem.activity.id"] = job.activity_id
        golem = self._golem()
        if golem is not None:
            try:  # no REST call: the job's activities are gone, their usage recorded
                attributes["golem.cost.estimate"] = float(golem.costs.job_cost(job.id, refresh=False))
            except Exception:
                logger.debug("no cost estimate for job %s", job.id, exc_info=True)
        span.set_attributes(attributes)
        metric: Dict[str, Any] = {"golem.job.state": state}
        if state == "cancelled":
            _fail(span, error, f"cancelled: {error}" if error is not None else "cancelled")
        elif error is not None:
            _fail(span, error)
            metric["error.type"] = error_type(error)
            phase = getattr(error, "phase", None)
            if isinstance(phase, str):
                span.set_attribute("golem.error.phase", phase)
        span.end()
        self.jobs_ended.add(1, metric)
        self.job_duration.record(time.monotonic() - record.started, {"golem.job.state": state})

    def _end_children(self, record: _Trace, error: Optional[BaseException], *, failed: bool = True) -> None:
        """End whatever of ``record`` is still open (at the job's end; the tables are the caller's).

        A negotiation still open failed (``error``, or the job ended without one) unless not ``failed``.
        """
        if record.negotiation is not None:
            if failed:
                _fail(record.negotiation.span, error, None if error is not None else "the job ended")
            record.negotiation.span.end()
            record.negotiation = None
        for _key, batch in record.batches.items():
            batch.span.end()  # a spawned process's batch: no result signal, it ended with its job
        for _tid, (_aid, span) in record.transfers.items():
            span.end()
        for activity in record.activities.values():
            activity.span.end()
        record.batches, record.transfers, record.activities = {}, {}, {}
        with self._lock:
            agreements = [self._agreements[a] for a in record.agreements if a in self._agreements]
            ending = [a for a in agreements if a.open]
            for agreement in ending:
                agreement.open = False
            for agreement in agreements:
                if not agreement.approved:  # never approved: no invoice will come
                    self._agreements.pop(agreement.agreement_id, None)
        for agreement in ending:
            if not agreement.approved:
                _fail(agreement.span, None, "not approved")
            agreement.span.end()

    # -- negotiation and agreements ----------------------------------------------------------

    def _demand_subscribed(self, sender: Any, *, demand_id: str, **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            if record is None:
                return
            going_on = record.negotiation
            if going_on is None:
                record.proposals = 0
                previous = self._take_open_agreements(record)  # a new attempt: the last one's agreements are over
        if going_on is not None:  # the same negotiation published its demand again
            going_on.span.add_event("demand republished", {"golem.demand.id": demand_id})
            return
        for agreement in previous:
            agreement.span.end()
        span = self.tracer.start_span("golem.negotiation", context=record.ctx,
                                      attributes={"golem.demand.id": demand_id})
        with self._lock:
            record.negotiation = _Timed(span, time.monotonic())

    def _take_open_agreements(self, record: _Trace, unapproved_only: bool = False) -> List[_Agreement]:
        """Mark the job's open agreements closed and return them for ending (lock held)."""
        taken = []
        for agreement_id in record.agreements:
            agreement = self._agreements.get(agreement_id)
            if agreement is not None and agreement.open and not (unapproved_only and agreement.approved):
                agreement.open = False
                taken.append(agreement)
                if not agreement.approved:
                    self._agreements.pop(agreement_id, None)
        return taken

    def _proposal(self, sender: Any, **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            if record is not None:
                record.proposals += 1

    def _agreement_created(self, sender: Any, *, agreement_id: str, provider: Any = None, **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            if record is None:
                return
            failed = self._take_open_agreements(record, unapproved_only=True)  # the draft signed before failed
        for agreement in failed:
            _fail(agreement.span, None, "not approved")
            agreement.span.end()
        name = str(provider or "")
        span = self.tracer.start_span("golem.agreement", context=record.ctx,
                                      attributes={"golem.agreement.id": agreement_id, "golem.provider.name": name})
        entry = _Agreement(agreement_id, record.job.id, span, trace.set_span_in_context(span), provider_name=name)
        with self._lock:
            record.agreements.append(agreement_id)
            self._agreements[agreement_id] = entry
            self._agreements.move_to_end(agreement_id)
            while len(self._agreements) > AGREEMENTS_KEPT:
                self._agreements.popitem(last=False)

    def _agreement_approved(self, sender: Any, *, agreement_id: str, provider: Any = None, **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            agreement = self._agreements.get(agreement_id)
            if record is None or agreement is None:
                return
            agreement.approved = True
            agreement.create_from = (time.monotonic(), _now_ns())
            negotiation, record.negotiation = record.negotiation, None
            proposals = record.proposals
        agreement.span.add_event("approved")
        if negotiation is not None:
            negotiation.span.set_attributes({"golem.agreement.id": agreement_id,
                                             "golem.provider.name": str(provider or ""),
                                             "golem.proposals.received": proposals})
            negotiation.span.end()
            self.negotiation_duration.record(time.monotonic() - negotiation.started, {"golem.outcome": "ok"})

    def _agreement_terminated(self, sender: Any, *, agreement_id: str, by: Any = None, reason: Any = None,
                              **_: Any) -> None:
        with self._lock:
            agreement = self._agreements.get(agreement_id)
            if agreement is None or not agreement.open or self._trace(sender) is None:
                return
            agreement.open = False
        agreement.span.set_attributes({"golem.agreement.terminated_by": str(by or ""),
                                       "golem.agreement.reason": str(reason or "")})
        _fail(agreement.span, None, f"terminated by the provider: {reason}")
        agreement.span.end()

    # -- activities --------------------------------------------------------------------------

    def _activity_created(self, sender: Any, *, activity_id: str, agreement_id: str, **_: Any) -> None:
        now = time.monotonic()
        with self._lock:
            record = self._trace(sender)
            if record is None:
                return
            agreement = self._agreements.get(agreement_id)
            began = agreement.create_from if agreement is not None else None
            if agreement is not None:
                agreement.create_from = None
        parent = agreement.ctx if agreement is not None else record.ctx
        provider = getattr(record.job, "provider", None)
        if agreement is not None and provider is not None and getattr(record.job, "agreement_id", None) == agreement_id:
            agreement.provider_id = str(provider.id)
            agreement.provider_name = str(provider.name)
            agreement.span.set_attributes({"golem.provider.id": agreement.provider_id,
                                           "golem.provider.name": agreement.provider_name})
        span = self.tracer.start_span("golem.activity", context=parent, start_time=began[1] if began else None,
                                      attributes={"golem.activity.id": activity_id,
                                                  "golem.agreement.id": agreement_id})
        span.add_event("created")
        if began is not None:
            self.create_duration.record(now - began[0])
        with self._lock:
            record.activities[activity_id] = _Activity(span, trace.set_span_in_context(span), now, agreement_id)

    def _activity_ready(self, sender: Any, *, activity_id: str, **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            activity = record.activities.get(activity_id) if record is not None else None
        if activity is not None:
            activity.span.add_event("ready")
            self.deploy_duration.record(time.monotonic() - activity.created)

    def _activity_destroyed(self, sender: Any, *, activity_id: str, **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            activity = record.activities.pop(activity_id, None) if record is not None else None
            if record is None or activity is None:
                return
            batches = [record.batches.pop(key) for key in [k for k in record.batches if k[0] == activity_id]]
            transfers = [record.transfers.pop(t)[1] for t in [t for t, (a, _s) in record.transfers.items()
                                                               if a == activity_id]]
            agreement = self._agreements.get(activity.agreement_id)
            if agreement is not None and agreement.open:  # a successor's create begins now
                agreement.create_from = (time.monotonic(), _now_ns())
        for batch in batches:
            batch.span.end()  # a spawned process's batch ends with its activity
        for span in transfers:
            span.end()
        activity.span.end()

    # -- batches and transfers ---------------------------------------------------------------

    def _parent(self, record: _Trace, activity_id: str) -> Context:
        activity = record.activities.get(activity_id)
        return activity.ctx if activity is not None else record.ctx

    def _batch_sent(self, sender: Any, *, activity_id: str, batch_id: str, commands: Any = (), **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            if record is None:
                return
            parent = self._parent(record, activity_id)
        names = [type(command).__name__.lower() for command in commands or ()]
        span = self.tracer.start_span("golem.batch", context=parent,
                                      attributes={"golem.batch.id": batch_id, "golem.activity.id": activity_id,
                                                  "golem.batch.commands": names})
        with self._lock:
            record.batches[(activity_id, batch_id)] = _Timed(span, time.monotonic())

    def _batch_finished(self, sender: Any, *, activity_id: str, batch_id: str, results: Any = (), **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            batch = record.batches.pop((activity_id, batch_id), None) if record is not None else None
        if batch is None:
            return
        results = list(results or ())
        failed = [r for r in results if str(getattr(r, "result", "Ok")) != "Ok"]
        batch.span.set_attribute("golem.batch.results", len(results))
        if failed:
            first = failed[0]
            batch.span.set_attribute("golem.batch.failed_command", int(getattr(first, "index", -1)))
            _fail(batch.span, None, f"command {getattr(first, 'index', '?')} failed: "
                                    f"{getattr(first, 'message', None) or 'no message'}")
        batch.span.end()
        self.batch_duration.record(time.monotonic() - batch.started, {"golem.batch.ok": not failed})

    def _batch_failed(self, sender: Any, *, activity_id: str, batch_id: str, error: BaseException,
                      **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            batch = record.batches.pop((activity_id, batch_id), None) if record is not None else None
        if batch is None:
            return
        _fail(batch.span, error)
        batch.span.end()
        self.batch_duration.record(time.monotonic() - batch.started, {"golem.batch.ok": False})

    def _transfer_started(self, sender: Any, *, activity_id: str, transfer_id: str, direction: str,
                          remote_path: str, **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            if record is None:
                return
            parent = self._parent(record, activity_id)
        span = self.tracer.start_span("golem.transfer", context=parent,
                                      attributes={"golem.transfer.direction": direction,
                                                  "golem.transfer.remote_path": remote_path,
                                                  "golem.activity.id": activity_id})
        with self._lock:
            record.transfers[transfer_id] = (activity_id, span)

    def _transfer_ended(self, sender: Any, *, transfer_id: str, bytes_done: Any = 0, bytes_total: Any = None,
                        ok: bool = False, error: Any = None, **_: Any) -> None:
        with self._lock:
            record = self._trace(sender)
            entry = record.transfers.pop(transfer_id, None) if record is not None else None
        if entry is None:
            return
        span = entry[1]
        span.set_attribute("golem.transfer.bytes", int(bytes_done or 0))
        if bytes_total is not None:
            span.set_attribute("golem.transfer.bytes_total", int(bytes_total))
        if not ok:
            if isinstance(error, BaseException):
                _fail(span, error)
            else:
                _fail(span, None, str(error or "failed"))
        span.end()

    # -- payments ----------------------------------------------------------------------------

    def _lease_created(self, pool: Any, **_: Any) -> None:
        golem = self._golem()
        if golem is not None and pool in golem.pools():
            self._pools.add(pool)

    def _count_accepted(self, agreement_id: str, amount: Any, sender: Any) -> Optional[_Agreement]:
        """Add what this acceptance adds to the agreement's total to the GLM counter."""
        value = Decimal(str(amount))
        with self._lock:
            agreement = self._agreements.get(agreement_id)
            if agreement is not None:
                added, agreement.accepted = value - agreement.accepted, max(value, agreement.accepted)
            elif agreement_id in self._accepted_elsewhere or self._ours_locked(sender):
                before = self._accepted_elsewhere.pop(agreement_id, Decimal(0))
                added = value - before
                self._accepted_elsewhere[agreement_id] = max(value, before)
                while len(self._accepted_elsewhere) > AGREEMENTS_KEPT:
                    self._accepted_elsewhere.popitem(last=False)
            else:
                return None
        if added > 0:
            self.glm_accepted.add(float(added))
        return agreement

    def _ours_locked(self, sender: Any) -> bool:
        """A payment signal of this network: its own, a traced job's, or one of its pools' (lock held)."""
        return sender is self._golem() or sender in self._pools or self._trace(sender) is not None

    def _debit_note_accepted(self, sender: Any, *, debit_note: Any, amount: Any, **_: Any) -> None:
        agreement = self._count_accepted(str(debit_note.agreement_id), amount, sender)
        if agreement is not None:
            with self._lock:
                agreement.debit_notes += 1

    def _invoice_received(self, sender: Any, *, invoice: Any, **_: Any) -> None:
        with self._lock:
            agreement = self._agreements.get(str(invoice.agreement_id))
            if agreement is None or agreement.payment is not None:
                return
        attributes: Dict[str, Any] = {"golem.agreement.id": agreement.agreement_id, "golem.job.id": agreement.job_id,
                                      "golem.invoice.id": str(getattr(invoice, "invoice_id", "")),
                                      "golem.provider.name": agreement.provider_name,
                                      "golem.cost.due": _glm(invoice.amount)}
        if agreement.provider_id:
            attributes["golem.provider.id"] = agreement.provider_id
        span = self.tracer.start_span("golem.payment", context=agreement.ctx, attributes=attributes)
        with self._lock:
            first = agreement.payment is None
            if first:
                agreement.payment = span
        if not first:  # another thread started one meanwhile
            span.end()

    def _invoice_accepted(self, sender: Any, *, invoice: Any, amount: Any, **_: Any) -> None:
        agreement_id = str(invoice.agreement_id)
        agreement = self._count_accepted(agreement_id, amount, sender)
        if agreement is None:
            return
        with self._lock:
            span, agreement.payment = agreement.payment, None
            self._agreements.pop(agreement_id, None)
            debit_notes = agreement.debit_notes
        if span is None:
            return
        attributes: Dict[str, Any] = {"golem.cost.accepted": _glm(amount), "golem.debit_notes.accepted": debit_notes}
        golem = self._golem()
        if golem is not None:
            try:
                attributes["golem.cost.estimate"] = float(golem.costs.agreement_cost(agreement_id, refresh=False))
            except Exception:
                logger.debug("no cost estimate for agreement %s", agreement_id, exc_info=True)
        span.set_attributes(attributes)
        span.end()

    def _invoice_rejected(self, sender: Any, *, invoice: Any, reason: Any = None, **_: Any) -> None:
        agreement_id = str(invoice.agreement_id)
        with self._lock:
            agreement = self._agreements.pop(agreement_id, None)
            span = agreement.payment if agreement is not None else None
            if agreement is not None:
                agreement.payment = None
        if span is not None:
            _fail(span, None, f"invoice rejected: {reason}")
            span.end()


def _provider_attributes(agreement_id: str, provider: Any) -> Dict[str, Any]:
    return {"golem.agreement.id": str(agreement_id), "golem.provider.id": str(getattr(provider, "id", "")),
            "golem.provider.name": str(getattr(provider, "name", ""))}
