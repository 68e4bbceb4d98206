"""Agreements held by jobs: the lease of an approved agreement, and hearing when the provider ends it.

Signing and ending agreements (:func:`sign`, :func:`release`, :data:`ReleaseOutcome`) live in
:mod:`golem_sync._market.signing` (the market sits below this module); they are re-exported here
so ``from golem_sync._agreement import release`` keeps working.

Threads: :class:`AgreementWatcher` owns one poller thread per network that reads agreement events
for the network's app session and tells the :class:`AgreementLease` of a provider-side termination (which cancels the lease's token, so
whatever the job is waiting on wakes up at once).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Dict, Optional

import attrs

from . import signals
from ._cancel import CancelToken
from ._market.proposals import ProposalView
from ._market.signing import ReleaseOutcome, release, sign
from ._pollers import EventPoller
from .errors import GolemPaymentError
from .yagna.client import YagnaClient
from .yagna.models import AgreementTerminatedEvent

__all__ = ["AgreementLease", "sign", "release", "ReleaseOutcome", "AgreementWatcher"]

logger = logging.getLogger("golem_sync.agreement")


@attrs.define(eq=False)
class AgreementLease:
    """An approved agreement held by one job attempt.

    ``token`` is the attempt's cancellation token; the watcher cancels it when the provider
    terminates, and ``provider_reason`` then says why.
    """

    agreement_id: str
    proposal: ProposalView
    token: CancelToken
    provider_reason: Optional[str] = None  # the provider terminated the agreement, and why
    violation: Optional[str] = None  # the provider broke the agreement's terms (we end it), and how
    # The job's cost cap stopped it (GolemBudgetError), or the provider overcharged (GolemOverchargeError); we end it.
    budget_error: Optional[GolemPaymentError] = None
    released: bool = False

    def broken(self, violation: str) -> None:
        """The provider broke the terms: stop the attempt (safe from any thread)."""
        if self.violation is None:
            self.violation = violation
            logger.warning("agreement %s with %s: %s", self.agreement_id, self.provider_name or self.provider_id,
                           violation)
            self.token.cancel(f"provider broke agreement {self.agreement_id}: {violation}")

    def over_budget(self, error: GolemPaymentError) -> bool:
        """The job's cost cap (or an overcharge) stopped the agreement: stop the attempt (safe from any thread).

        Returns True if the job still held the agreement (the caller then terminates it; its
        termination event is our own from now), False if it was already let go.
        """
        if self.budget_error is None:
            self.budget_error = error
        if self.released:
            return False
        self.released = True
        self.token.cancel(str(error))
        return True

    @property
    def provider_id(self) -> str:
        return self.proposal.issuer_id

    @property
    def provider_name(self) -> str:
        return self.proposal.provider_name


class AgreementWatcher:
    """Reads agreement events for one app session and reports provider terminations to leases.

    ``client`` is used only to read events (the network passes its abortable poll client).
    """

    def __init__(self, client: YagnaClient, app_session_id: str, *, poll_sec: float) -> None:
        self._client = client
        self._app_session_id = app_session_id
        self._lock = threading.Lock()
        self._leases: Dict[str, "tuple[AgreementLease, Any]"] = {}
        self._poller = EventPoller("agreement-events", self._fetch, self._handle, poll_sec=poll_sec,
                                   after=dt.datetime.now(dt.timezone.utc))

    def start(self) -> None:
        self._poller.start()

    @property
    def poller(self) -> EventPoller:
        return self._poller

    def watch(self, lease: AgreementLease, sender: Any) -> None:
        with self._lock:
            self._leases[lease.agreement_id] = (lease, sender)

    def forget(self, agreement_id: str) -> None:
        with self._lock:
            self._leases.pop(agreement_id, None)

    def _fetch(self, after: Optional[dt.datetime], timeout: float) -> Any:
        return self._client.market.collect_agreement_events(
            timeout=timeout, after_timestamp=after, max_events=100, app_session_id=self._app_session_id)

    def _handle(self, event: Any) -> None:
        if not isinstance(event, AgreementTerminatedEvent):
            return
        with self._lock:
            entry = self._leases.get(event.agreement_id)
        by = str(event.terminator or "")
        reason = event.reason.get("message") if isinstance(event.reason, dict) else None
        if entry is None:
            return
        lease, sender = entry
        if lease.released:
            return  # our own termination, echoed back
        lease.provider_reason = reason or "no reason given"
        logger.info("provider terminated agreement %s: %s", event.agreement_id, lease.provider_reason)
        signals.emit(signals.agreement_terminated, sender, agreement_id=event.agreement_id,
                     by=by or "Provider", reason=lease.provider_reason)
        lease.token.cancel(f"provider terminated agreement {event.agreement_id}: {lease.provider_reason}")
