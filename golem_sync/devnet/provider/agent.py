"""The devnet provider agent: one provider identity on the devnet's yagna node.

It does what ya-provider does, over REST with the provider's own app key (plain ``requests``, never
golem_sync's requestor client, so the devnet stays an independent check of that client):
publishes an offer, negotiates, approves agreements, starts an exe-unit emulator per activity,
sends debit notes and an invoice, and can misbehave on purpose (:class:`ProviderFaults`).
Agreements follow ya-provider's rules (:mod:`.rules`): one activity at a time, single-activity
agreements closed after their activity, idle agreements broken after ``idle_agreement_timeout``,
and every agreement broken at its expiration.

Exe-units run commands on the host, unsandboxed: this is a test network.
"""
from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ..exeunit import ExeUnit
from .activity import ActivityWatcher
from .market import ProviderAgreementWatcher, OfferNegotiator
from .payments import issue_debit_note, issue_invoice, send_invoice
from .rest import ProviderApiError, ProviderRest, utcnow
from .rules import (
    SECOND_ACTIVITY_MESSAGE,
    SECOND_ACTIVITY_REASON,
    agreement_expiration,
    expired_before_start_reason,
    expired_reason,
    is_multi_activity,
    no_activity_reason,
    single_activity_closed_reason,
)
from .scheduler import Scheduler
from .state import (
    ActivityInfo,
    ActivityRecord,
    AgreementInfo,
    AgreementRecord,
    DebitNoteInfo,
    InvoiceInfo,
    seconds,
)
from .spec import (
    DEBIT_NOTE_ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    PAYMENT_TIMEOUT,
    USAGE_VECTOR,
    ProviderFaults,
    ProviderSpec,
    build_offer,
    format_amount,
    overcharged,
    price,
)

__all__ = [
    "ProviderAgent",
    "ProviderSpec",
    "ProviderFaults",
    "AgreementInfo",
    "ActivityInfo",
    "DebitNoteInfo",
    "InvoiceInfo",
]

logger = logging.getLogger("golem_sync.devnet.provider")

#: Shortest debit-note period the agent uses unless a fault asks for less (protects yagna and logs).
MIN_DEBIT_NOTE_INTERVAL = 1.0
#: How often an invoice that got no answer (yagna down) is sent again, backing off to 5 s (~1 min).
INVOICE_TRIES = 15


class ProviderAgent:
    """A provider agent for one provider identity of the devnet's yagna node.

    Threads (all daemon threads, started by :meth:`start`, joined by :meth:`stop`):
        - ``<name>-market``: offer events; counters proposals; spawns ``<name>-approve-*`` threads.
        - ``<name>-agreements``: agreement events; on termination stops that agreement's exe-units.
        - ``<name>-activity``: activity events; creates and stops exe-units.
        - ``<name>-payments``: debit notes, invoices, provider-side terminations (one at a time),
          and the agreement clocks (idle timeout, expiration) as scheduled jobs.
    Agent state (agreements, activities, documents) is guarded by one lock; the read-only
    introspection methods and :meth:`wait_for` are safe from any thread.

    Args:
        spec: what to offer and which faults to show.
        api_url, app_key, node_id: yagna's REST root, and the provider identity's app key and id.
        gsb_url: the node's GSB URL, for the exe-unit emulators.
        subnet: the subnet tag to advertise (``golem.node.debug.subnet``); only demands on it match.
        payment_platform: where the offer accepts payments.
        work_root: one directory per activity is created below it.
        poll_timeout: server-side wait of the event long polls; :meth:`stop` returns within about that.
        exeunit_factory: builds the exe-unit of an activity (default :class:`~.exeunit.ExeUnit`).
    """

    def __init__(
        self,
        *,
        spec: ProviderSpec,
        api_url: str,
        app_key: str,
        node_id: str,
        gsb_url: str,
        subnet: str,
        payment_platform: str = "erc20-hoodi-tglm",
        work_root: Path,
        poll_timeout: float = 1.0,
        exeunit_factory: Optional[Callable[..., Any]] = None,
    ) -> None:
        if not isinstance(spec, ProviderSpec):
            raise TypeError(f"spec must be a ProviderSpec, got {spec!r}")
        self.spec = spec
        self.node_id = node_id.lower()
        self.subnet = subnet
        self.payment_platform = payment_platform
        self.work_root = Path(work_root)
        self._gsb_url = gsb_url
        self._poll_timeout = poll_timeout
        self._exeunit_factory: Callable[..., Any] = exeunit_factory or ExeUnit
        self._rest = ProviderRest(api_url, app_key)
        self._label = spec.name
        self._stop = threading.Event()
        self._cond = threading.Condition(threading.RLock())
        self._agreements: Dict[str, AgreementRecord] = {}
        self._activities: Dict[str, ActivityRecord] = {}
        self._debit_notes: List[DebitNoteInfo] = []
        self._invoices: List[InvoiceInfo] = []
        self._unsent_invoices: Dict[str, str] = {}  # agreement id -> invoice issued but not sent (payments thread)
        self._threads: List[threading.Thread] = []
        self._started = False
        self.offer = build_offer(spec, node_id=self.node_id, subnet=subnet, payment_platform=payment_platform)
        self._scheduler = Scheduler(self._label)
        self._negotiator = OfferNegotiator(
            self._rest, offer=self.offer, node_id=self.node_id, payment_platform=payment_platform,
            faults=spec.faults, stop=self._stop,
            on_agreement=self._on_agreement, on_approved=self._on_approved,
            poll_timeout=poll_timeout, label=self._label, on_published=self._on_published,
        )
        self._agreement_watcher = ProviderAgreementWatcher(
            self._rest, stop=self._stop, is_ours=self._is_ours, on_terminated=self._on_terminated,
            poll_timeout=poll_timeout, label=self._label,
        )
        self._activity_watcher = ActivityWatcher(
            self._rest, stop=self._stop, on_create=self._on_create, on_destroy=self._on_destroy,
            poll_timeout=poll_timeout, label=self._label,
        )

    def __repr__(self) -> str:
        return f"ProviderAgent(name={self.spec.name!r}, node_id={self.node_id!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Publish the offer and start the agent's threads. Call once."""
        if self._started:
            raise RuntimeError(f"{self!r} was already started")
        self._started = True
        self.work_root.mkdir(parents=True, exist_ok=True)
        # Watchers start before the offer exists so no event of the first agreement is missed.
        for name, target in (("agreements", self._agreement_watcher.run),
                             ("activity", self._activity_watcher.run),
                             ("payments", self._scheduler.run)):
            self._spawn(name, target)
        try:
            self._negotiator.subscribe()
        except Exception:
            self.stop()
            raise
        self._spawn("market", self._negotiator.run)

    def stop(self, timeout: float = 10.0) -> None:
        """Withdraw the offer, stop every exe-unit and join the threads (within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._negotiator.unsubscribe()
        self._scheduler.stop()
        with self._cond:
            running = [a for a in self._activities.values() if a.state == "Running"]

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        for activity in running:
            # Each stop tells yagna "Terminated" over GSB; bound it so many activities fit the budget.
            self._stop_exeunit(activity, "provider agent stopped", timeout=min(2.0, left()))

        for thread in self._threads:
            thread.join(left())
        self._negotiator.join_approvers(left)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            logger.warning("%s: threads still running after stop: %s", self._label, ", ".join(alive))
        self._rest.close()
        with self._cond:
            self._cond.notify_all()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"{self._label}-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- introspection (any thread) ------------------------------------------------------------

    @property
    def offer_id(self) -> Optional[str]:
        """The offer's subscription id while it is published."""
        return self._negotiator.subscription_id

    def agreements(self) -> List[AgreementInfo]:
        with self._cond:
            return [
                AgreementInfo(a.agreement_id, a.state, a.requestor_id, a.terminated_by,
                              tuple(a.activity_ids), a.invoice_id, dict(a.properties))
                for a in self._agreements.values()
            ]

    def activities(self) -> List[ActivityInfo]:
        with self._cond:
            return [
                ActivityInfo(a.activity_id, a.agreement_id, a.state, a.work_dir, tuple(a.debit_note_ids))
                for a in self._activities.values()
            ]

    def debit_notes(self) -> List[DebitNoteInfo]:
        with self._cond:
            return list(self._debit_notes)

    def invoices(self) -> List[InvoiceInfo]:
        with self._cond:
            return list(self._invoices)

    def exeunit(self, activity_id: str) -> Any:
        """The exe-unit emulator serving one activity (``None`` if unknown)."""
        with self._cond:
            activity = self._activities.get(activity_id)
            return activity.exeunit if activity else None

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` is true (re-checked on every state change); False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # -- market callbacks ----------------------------------------------------------------------

    def _on_published(self, offer_id: str) -> None:
        with self._cond:
            self._cond.notify_all()  # wait_for() callers may watch offer_id

    def _is_ours(self, agreement_id: str) -> bool:
        with self._cond:
            return agreement_id in self._agreements

    def _on_agreement(self, agreement: Mapping[str, Any]) -> None:
        offer = agreement.get("offer") or {}
        demand = agreement.get("demand") or {}
        offer_properties = offer.get("properties") or self.offer["properties"]
        demand_properties = demand.get("properties") or {}
        record = AgreementRecord(
            str(agreement["agreementId"]),
            str(demand.get("requestorId", "")),
            offer_properties,
            multi_activity=is_multi_activity(demand_properties, offer_properties),
            expiration=agreement_expiration(demand_properties),
        )
        with self._cond:
            self._agreements.setdefault(record.agreement_id, record)
            self._cond.notify_all()

    def _on_approved(self, agreement_id: str) -> None:
        """Approved: start the agreement's clocks (expiration, and the idle timeout unless an activity lives)."""
        with self._cond:
            agreement = self._agreements.get(agreement_id)
            if agreement is not None and agreement.state == "Pending":
                agreement.state = "Approved"
            self._cond.notify_all()
            if agreement is None or agreement.state != "Approved" or self._stop.is_set():
                return
            idle_token = self._arm_idle(agreement) if agreement.current_activity is None else None
            expiration = agreement.expiration
        if idle_token is not None:
            self._schedule_idle_check(agreement_id, idle_token)
        if expiration is not None:
            left = (expiration - utcnow()).total_seconds()
            if left <= 0:  # like ya-provider: an agreement expired before it started is broken at once
                self._scheduler.schedule(0.0, lambda: self._terminate_agreement(
                    agreement_id, expired_before_start_reason(expiration)))
            else:
                self._scheduler.schedule(left, lambda: self._check_expiration(agreement_id, expiration))

    def _on_terminated(self, agreement_id: str, reason: Optional[Mapping[str, Any]], terminator: str) -> None:
        """Agreement over (either side): stop its exe-units (golem-js never destroys them), invoice it."""
        with self._cond:
            agreement = self._agreements.get(agreement_id)
            if agreement is None or agreement.state == "Terminated":
                return
            agreement.state = "Terminated"
            agreement.terminated_by = terminator or None
            running = [self._activities[i] for i in agreement.activity_ids
                       if self._activities[i].state == "Running"]
            self._cond.notify_all()
        message = (reason or {}).get("message") or "agreement terminated"
        for activity in running:
            self._stop_exeunit(activity, f"agreement terminated: {message}")
        self._scheduler.schedule(0.0, lambda: self._send_invoice(agreement_id))

    # -- activity callbacks --------------------------------------------------------------------

    def _on_create(self, activity_id: str, agreement_id: str) -> None:
        with self._cond:
            agreement = self._agreements.get(agreement_id)
            # "Pending" is fine: the requestor may hear the approval before our approve call returns.
            if agreement is None or agreement.state == "Terminated" or self._stop.is_set():
                logger.debug("%s: CreateActivity %s for a foreign or ended agreement %s", self._label,
                             activity_id, agreement_id)
                return
            if activity_id in self._activities:
                return
            work_dir = self.work_root / activity_id
            activity = ActivityRecord(activity_id, agreement_id, work_dir, None)
            self._activities[activity_id] = activity
            holder = agreement.current_activity
            refuse = holder is not None
            if refuse:
                activity.state = "Refused"
                self._cond.notify_all()
            else:
                agreement.current_activity = activity_id
                agreement.idle_token += 1  # a created activity stops the idle clock
                agreement.activity_ids.append(activity_id)
            schedule_terminate = (not refuse and self.spec.faults.terminate_agreement_after is not None
                                  and not agreement.terminate_scheduled)
            agreement.terminate_scheduled = agreement.terminate_scheduled or schedule_terminate
        if refuse:
            # ya-provider allows one activity at a time: it marks the new one Terminated (yagna then
            # fails the requestor's create call with this reason) and leaves the live one alone.
            logger.info("%s: refusing activity %s: agreement %s already has activity %s", self._label,
                        activity_id, agreement_id, holder)
            self._set_terminated_over_rest(activity_id, SECOND_ACTIVITY_MESSAGE, reason=SECOND_ACTIVITY_REASON)
            return
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
            activity.exeunit = self._exeunit_factory(
                gsb_url=self._gsb_url, activity_id=activity_id, agreement_id=agreement_id,
                work_dir=work_dir, usage_vector=list(USAGE_VECTOR), faults=self.spec.faults.exeunit,
            )
            activity.exeunit.start()
        except Exception as exc:
            logger.exception("%s: exe-unit for activity %s failed to start", self._label, activity_id)
            with self._cond:
                activity.state = "Failed"
                self._cond.notify_all()
            # Tell yagna at once: the requestor's create call would otherwise wait for its timeout.
            self._set_terminated_over_rest(activity_id, f"exe-unit failed to start: {exc}")
            self._activity_ended(activity)
            return
        with self._cond:
            # The agreement may have ended (or the agent stopped) while the exe-unit started; those
            # paths only stop "Running" activities, so this one is ours to stop.
            abort = agreement.state == "Terminated" or self._stop.is_set()
            activity.state = "Running"
            self._cond.notify_all()
        if abort:
            self._stop_exeunit(activity, "agreement ended while the exe-unit started")
            return
        logger.info("%s: activity %s started (agreement %s)", self._label, activity_id, agreement_id)
        self._scheduler.schedule(self._debit_note_interval(agreement), lambda: self._send_debit_note(activity_id))
        after = self.spec.faults.terminate_agreement_after
        if schedule_terminate and after is not None:
            self._scheduler.schedule(after, lambda: self._terminate_agreement(agreement_id))

    def _on_destroy(self, activity_id: str, agreement_id: str) -> None:
        with self._cond:
            activity = self._activities.get(activity_id)
        if activity is None:
            return
        self._stop_exeunit(activity, "activity destroyed by the requestor")
        logger.info("%s: activity %s destroyed", self._label, activity_id)
        self._activity_ended(activity)

    def reap_lost_exeunits(self) -> List[str]:
        """After the devnet restarted yagna: end the activities whose exe-unit lost its bus.

        A real exe-unit exits when its GSB connection to yagna breaks, and ya-provider then marks
        its activity Terminated; the emulators here stay in memory, so the devnet calls this once
        yagna is back. Returns the activity ids ended (each is set Terminated over REST).
        """
        with self._cond:
            lost = [a for a in self._activities.values() if a.state == "Running" and self._bus_lost(a)]
        for activity in lost:
            self._stop_exeunit(activity, "yagna restarted: the exe-unit lost its bus connection", timeout=1.0)
            logger.info("%s: activity %s ended: its exe-unit lost yagna", self._label, activity.activity_id)
            self._activity_ended(activity)
        return [a.activity_id for a in lost]

    def _activity_ended(self, activity: ActivityRecord) -> None:
        """The agreement's live activity is over (destroyed, or its exe-unit failed to start).

        Like ya-provider: the agreement is idle again, so the idle clock restarts; a single-activity
        agreement is closed by the provider ("Finished with success."). A refused activity ends
        nothing: it never held the agreement.
        """
        agreement_id = activity.agreement_id
        with self._cond:
            agreement = self._agreements.get(agreement_id)
            if agreement is None or agreement.current_activity != activity.activity_id:
                return
            agreement.current_activity = None
            self._cond.notify_all()
            if agreement.state == "Terminated" or self._stop.is_set():
                return
            idle_token = self._arm_idle(agreement)
            close = not agreement.multi_activity
        self._schedule_idle_check(agreement_id, idle_token)
        if close:
            logger.info("%s: first activity of single-activity agreement %s is over: closing it", self._label,
                        agreement_id)
            self._scheduler.schedule(0.0, lambda: self._terminate_agreement(
                agreement_id, single_activity_closed_reason()))

    # -- agreement clocks (jobs on the payments thread) ----------------------------------------

    @staticmethod
    def _arm_idle(agreement: AgreementRecord) -> int:
        """Start a new idle period (under the lock); returns the token its check must still see."""
        agreement.idle_token += 1
        return agreement.idle_token

    def _schedule_idle_check(self, agreement_id: str, token: int) -> None:
        timeout = float(self.spec.idle_agreement_timeout)
        self._scheduler.schedule(timeout, lambda: self._check_idle(agreement_id, token, timeout))

    def _check_idle(self, agreement_id: str, token: int, timeout: float) -> None:
        """ya-provider's idle-agreement timeout: no activity since the clock started breaks the agreement."""
        with self._cond:
            agreement = self._agreements[agreement_id]
            if (agreement.state == "Terminated" or agreement.idle_token != token
                    or agreement.current_activity is not None or self._stop.is_set()):
                return
        logger.info("%s: agreement %s had no activity for %.1f s", self._label, agreement_id, timeout)
        self._terminate_agreement(agreement_id, no_activity_reason(timeout))

    def _check_expiration(self, agreement_id: str, expiration: _dt.datetime) -> None:
        """ya-provider breaks an agreement at its ``golem.srv.comp.expiration`` (stopping its activity)."""
        left = (expiration - utcnow()).total_seconds()
        if left > 0:  # the monotonic and wall clocks disagree a little: come back when it is due
            self._scheduler.schedule(left, lambda: self._check_expiration(agreement_id, expiration))
            return
        with self._cond:
            if self._agreements[agreement_id].state == "Terminated" or self._stop.is_set():
                return
        logger.info("%s: agreement %s expired", self._label, agreement_id)
        self._terminate_agreement(agreement_id, expired_reason(expiration))

    def _stop_exeunit(self, activity: ActivityRecord, reason: str, timeout: float = 5.0) -> None:
        """Record the final usage and stop the exe-unit (sets the activity Terminated in yagna).

        An exe-unit whose bus connection died with yagna cannot report its end; as ya-provider
        does when an exe-unit process is gone, the agent then marks the activity Terminated over
        REST, whichever comes first: a DestroyActivity event or the reap after a restart.
        """
        with self._cond:
            if activity.state != "Running":
                return
            activity.state = "Stopped"
        lost = self._bus_lost(activity)
        try:
            activity.final_usage = [float(u) for u in activity.exeunit.usage()]
        except Exception:
            logger.exception("%s: reading the usage of %s failed", self._label, activity.activity_id)
        try:
            activity.exeunit.stop(reason, timeout=timeout)
        except Exception:
            logger.exception("%s: stopping the exe-unit of %s failed", self._label, activity.activity_id)
        if lost:
            self._set_terminated_over_rest(activity.activity_id, "exe-unit lost its connection to yagna",
                                           reason="yagna restarted")
        with self._cond:
            self._cond.notify_all()

    @staticmethod
    def _bus_lost(activity: ActivityRecord) -> bool:
        return bool(getattr(getattr(activity.exeunit, "connection", None), "closed", False))

    def _set_terminated_over_rest(self, activity_id: str, message: str, reason: str = "exe-unit failure") -> None:
        body = {"state": ["Terminated", None], "reason": reason, "errorMessage": message}
        try:
            self._rest.call("PUT", "activity", f"/activity/{activity_id}/state", json=body)
        except ProviderApiError as exc:
            logger.warning("%s: marking activity %s Terminated failed: %s", self._label, activity_id, exc)

    # -- payments thread -----------------------------------------------------------------------

    def _coeffs(self, agreement: AgreementRecord) -> Sequence[float]:
        coeffs = agreement.properties.get("golem.com.pricing.model.linear.coeffs")
        if isinstance(coeffs, list) and len(coeffs) == len(USAGE_VECTOR) + 1:
            return [float(c) for c in coeffs]
        return self.spec.coeffs

    def _debit_note_interval(self, agreement: AgreementRecord) -> float:
        forced = self.spec.faults.debit_note_interval
        if forced is not None:
            return forced
        negotiated = agreement.properties.get(DEBIT_NOTE_INTERVAL)
        if isinstance(negotiated, (int, float)) and not isinstance(negotiated, bool):
            return max(MIN_DEBIT_NOTE_INTERVAL, float(negotiated))
        return float(self.spec.debit_note_interval_sec)

    @staticmethod
    def _exeunit_dead(activity: ActivityRecord) -> bool:
        # A crashed (fault) or self-terminated exe-unit reports no usage any more: stop billing it.
        if getattr(activity.exeunit, "stopped", False):
            return True
        return str(getattr(activity.exeunit, "state", "")) == "Terminated"

    def _send_debit_note(self, activity_id: str) -> None:
        with self._cond:
            activity = self._activities.get(activity_id)
            if activity is None or activity.state != "Running" or self._stop.is_set():
                return
            agreement = self._agreements[activity.agreement_id]
            if agreement.state == "Terminated" or self._exeunit_dead(activity):
                return
            interval = self._debit_note_interval(agreement)
            coeffs = self._coeffs(agreement)
            timeout = agreement.properties.get(PAYMENT_TIMEOUT)
            accept_timeout = seconds(agreement.properties.get(DEBIT_NOTE_ACCEPT_TIMEOUT))
        try:
            usage = [float(u) for u in activity.exeunit.usage()]
            # What yagna records (18 decimals), so the invoice compares against the same value.
            amount = Decimal(format_amount(max(overcharged(price(coeffs, usage), self.spec.faults),
                                               activity.last_amount)))
            due_in = seconds(timeout)
            note_id = issue_debit_note(
                self._rest, agreement_id=activity.agreement_id, activity_id=activity_id,
                amount=amount, usage=usage, payment_due_in=due_in,
            )
        except ProviderApiError as exc:
            logger.warning("%s: debit note for %s failed: %s", self._label, activity_id, exc)
        else:
            info = DebitNoteInfo(note_id, activity.agreement_id, activity_id, amount, tuple(usage), time.monotonic())
            with self._cond:
                activity.last_amount = amount
                activity.debit_note_ids.append(note_id)
                self._debit_notes.append(info)
                self._cond.notify_all()
            logger.debug("%s: debit note %s for %s: %s", self._label, note_id, activity_id, amount)
            if accept_timeout is not None:
                self._scheduler.schedule(
                    accept_timeout, lambda: self._check_debit_note_accepted(activity.agreement_id, note_id))
        self._scheduler.schedule(interval, lambda: self._send_debit_note(activity_id))

    def _send_invoice(self, agreement_id: str, tries: int = 0) -> None:
        with self._cond:
            agreement = self._agreements[agreement_id]
            if agreement.invoice_id is not None or self._stop.is_set():
                return
            coeffs = self._coeffs(agreement)
            activities = [self._activities[i] for i in agreement.activity_ids]
        amount = Decimal(0)
        for activity in activities:
            cost = activity.last_amount
            if activity.final_usage is not None:
                cost = max(cost, overcharged(price(coeffs, activity.final_usage), self.spec.faults))
            amount += cost
        amount = Decimal(format_amount(amount))
        activity_ids = [a.activity_id for a in activities]
        issued = self._unsent_invoices.get(agreement_id)
        try:
            if issued is not None:
                send_invoice(self._rest, issued)
                invoice_id = issued
            else:
                invoice_id = issue_invoice(self._rest, agreement_id=agreement_id, activity_ids=activity_ids,
                                           amount=amount,
                                           on_issued=lambda i: self._unsent_invoices.update({agreement_id: i}))
        except ProviderApiError as exc:
            retry = exc.status is None or (issued is not None or agreement_id in self._unsent_invoices)
            if retry and tries < INVOICE_TRIES:
                # No answer, or the send failed (yagna restarting: its bus not up yet): like
                # ya-provider, send it again once yagna is back.
                logger.info("%s: invoice for agreement %s not sent (%s); trying again", self._label, agreement_id, exc)
                self._scheduler.schedule(min(5.0, 0.5 * 2 ** tries), lambda: self._send_invoice(agreement_id, tries + 1))
                return
            logger.warning("%s: invoice for agreement %s failed: %s", self._label, agreement_id, exc)
            return
        self._unsent_invoices.pop(agreement_id, None)
        with self._cond:
            agreement.invoice_id = invoice_id
            self._invoices.append(InvoiceInfo(invoice_id, agreement_id, tuple(activity_ids), amount))
            self._cond.notify_all()
        logger.info("%s: invoice %s for agreement %s: %s", self._label, invoice_id, agreement_id, amount)

    def _check_debit_note_accepted(self, agreement_id: str, note_id: str) -> None:
        """Like ya-provider: a debit note not accepted within the negotiated timeout ends the agreement."""
        with self._cond:
            if self._agreements[agreement_id].state == "Terminated" or self._stop.is_set():
                return
        try:
            note = self._rest.call("GET", "payment", f"/debitNotes/{note_id}")
        except ProviderApiError as exc:
            logger.warning("%s: reading debit note %s failed: %s", self._label, note_id, exc)
            return
        status = note.get("status") if isinstance(note, dict) else None
        if status in ("ACCEPTED", "SETTLED"):
            return
        logger.info("%s: debit note %s still %s after the accept timeout", self._label, note_id, status)
        self._terminate_agreement(agreement_id, {
            "message": f"Requestor isn't accepting DebitNotes in time (debit note {note_id} is {status})",
            "golem.provider.code": "DebitNotesDeadline",
        })

    def _terminate_agreement(self, agreement_id: str, reason: Optional[Mapping[str, Any]] = None) -> None:
        """The provider ends the agreement (a fault, a payment deadline, or one of the agreement rules)."""
        with self._cond:
            if self._agreements[agreement_id].state == "Terminated":
                return
        if reason is None:
            reason = {"message": "devnet provider terminates the agreement (fault terminate_agreement_after)",
                      "golem.provider.code": "Interrupted"}
        try:
            self._rest.call("POST", "market", f"/agreements/{agreement_id}/terminate", json=dict(reason))
        except ProviderApiError as exc:
            logger.warning("%s: terminating agreement %s failed: %s", self._label, agreement_id, exc)
            return
        logger.info("%s: terminated agreement %s: %s", self._label, agreement_id, reason.get("message"))
        self._on_terminated(agreement_id, reason, "Provider")
