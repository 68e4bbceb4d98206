"""Agreements: sign one from a provider's draft, end it on every path, hear when the provider ends it.

Threads: :func:`sign` and :func:`release` run on the job's thread. :class:`AgreementWatcher` owns one
poller thread per network that reads agreement events for the network's app session and tells the
:class:`AgreementLease` of a provider-side termination (which cancels the lease's token, so
whatever the job is waiting on wakes up at once).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Dict, Optional

import attrs

from . import signals
from .blocking import Blocking
from .cancel import CancelToken, Deadline
from .errors import GolemAgreementError, YagnaError, YagnaNotFoundError
from .market.proposals import ProposalView
from .options import AgreementOptions
from .pollers import EventPoller
from .yagna.client import YagnaClient

__all__ = ["AgreementLease", "sign", "release", "AgreementWatcher"]

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
    released: bool = False

    def broken(self, violation: str) -> None:
        """The provider broke the terms: stop the attempt (safe from any thread)."""
        if self.violation is None:
            self.violation = violation
            logger.warning("agreement %s with %s: %s", self.agreement_id, self.provider_name or self.provider_id,
                           violation)
            self.token.cancel(f"provider broke agreement {self.agreement_id}: {violation}")

    @property
    def provider_id(self) -> str:
        return self.proposal.issuer_id

    @property
    def provider_name(self) -> str:
        return self.proposal.provider_name


def sign(client: YagnaClient, blocking: Blocking, token: CancelToken, proposal: ProposalView,
         options: AgreementOptions, app_session_id: str, sender: Any) -> str:
    """Create, confirm and wait for approval of an agreement on ``proposal``; return its id.

    On any failure (rejection, timeout, cancellation) the half-made agreement is cancelled or
    terminated before the error propagates, so nothing is left pending at the provider.
    """
    valid_to = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=options.valid_sec)
    agreement_id = client.market.create_agreement(proposal.proposal_id, valid_to)
    signals.emit(signals.agreement_created, sender, agreement_id=agreement_id, provider=proposal.provider_name)
    try:
        client.market.confirm_agreement(agreement_id, app_session_id=app_session_id)
        signals.emit(signals.agreement_confirmed, sender, agreement_id=agreement_id)
        _await_approval(client, blocking, token, proposal, agreement_id, options.approval_timeout_sec)
    except BaseException:
        release(client, agreement_id, "Agreement not approved in time" if not token.cancelled else "Cancelled")
        raise
    signals.emit(signals.agreement_approved, sender, agreement_id=agreement_id, provider=proposal.provider_name)
    return agreement_id


def _await_approval(client: YagnaClient, blocking: Blocking, token: CancelToken, proposal: ProposalView,
                    agreement_id: str, limit: float) -> None:
    """Wait (in slices, so a cancel is heard) until the provider approves, refuses, or ``limit`` runs out."""
    who = proposal.provider_name or proposal.issuer_id
    deadline = Deadline(limit)
    while True:
        try:
            state = blocking.call(token, client.market.wait_for_approval, agreement_id,
                                  max(0.1, deadline.cap(limit)))
        except YagnaError as exc:
            raise GolemAgreementError(f"waiting for {who} to approve agreement {agreement_id} failed: {exc}") from exc
        if state == "Approved":
            return
        if state != "Pending":
            raise GolemAgreementError(f"provider {who} did not approve agreement {agreement_id}: {state}")
        if deadline.expired:
            raise GolemAgreementError(f"provider {who} did not approve agreement {agreement_id} within {limit:g}s")


def release(client: YagnaClient, agreement_id: str, message: str, *, success: bool = True) -> str:
    """End an agreement whatever its state; return what was done (``terminated``, ``cancelled``, ``nothing``).

    Approved → terminate; Proposal/Pending → cancel; anything else is already over. Errors are
    logged, not raised: release runs on cleanup paths that must not fail.
    """
    try:
        state = str(client.market.get_agreement(agreement_id).state)
        if state == "Approved":
            reason = {"message": message, "golem.requestor.code": "Success" if success else "Error"}
            client.market.terminate_agreement(agreement_id, reason)
            return "terminated"
        if state in ("Proposal", "Pending"):
            client.market.cancel_agreement(agreement_id, {"message": message})
            return "cancelled"
        return "nothing"
    except YagnaNotFoundError:
        return "nothing"  # gone already (410/404): terminated by the other side meanwhile
    except YagnaError as exc:
        logger.warning("could not end agreement %s: %s", agreement_id, exc)
        return "failed"


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
        if type(event).__name__ != "AgreementTerminatedEvent":
            return
        with self._lock:
            entry = self._leases.get(event.agreement_id)
        by = str(getattr(event, "terminator", "") or "")
        reason = (getattr(event, "reason", None) or {}).get("message") if isinstance(
            getattr(event, "reason", None), dict) else None
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
