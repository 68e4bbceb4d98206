"""Signing an agreement on a provider's draft, and ending one on every path.

This is the market side of an agreement (yagna's Market API: create, confirm, wait for
approval, cancel, terminate); :mod:`golem_sync._agreement` holds an approved agreement for a job
(:class:`~golem_sync._agreement.AgreementLease`) and hears when the provider ends it.

:func:`release` reports what it did (:data:`ReleaseOutcome`); ``failed`` means the agreement may
still be live, so nobody should wait for its invoice.

Threads: :func:`sign` and :func:`release` run on the job's thread and hold no lock; so does the
approval wait, through an abortable read client that a cancel aborts (no helper thread).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, List, Literal, Optional

from .. import signals
from .._abandonable import AbandonableCalls
from .._cancel import CancelToken, Deadline
from ..errors import (GolemAgreementError, GolemTimeoutError, YagnaAuthError, YagnaError, YagnaNotFoundError,
                      YagnaProtocolError, YagnaRequestError, YagnaServerError, YagnaTimeoutError,
                      YagnaUnreachableError, is_transient)
from .._options import AgreementOptions
from ..yagna.client import YagnaClient
from .proposals import ProposalView

__all__ = ["sign", "release", "ReleaseOutcome"]

# The name it had in golem_sync._agreement, so logging configured by logger name keeps working.
logger = logging.getLogger("golem_sync.agreement")


def sign(client: YagnaClient, blocking: AbandonableCalls, token: CancelToken, proposal: ProposalView,
         options: AgreementOptions, app_session_id: str, sender: Any, *,
         startup: Optional[Deadline] = None, reads: Optional[YagnaClient] = None,
         demand_id: Optional[str] = None) -> str:
    """Create, confirm and wait for approval of an agreement on ``proposal``; return its id.

    The approval wait lasts up to ``options.approval_timeout_sec``, cut short by ``startup`` (the
    job's startup deadline): then GolemTimeoutError (phase ``"agreement"``) is raised. On any
    failure (rejection, timeout, cancellation) the half-made agreement is cancelled or terminated
    before the error propagates, so nothing is left pending at the provider. When the create POST
    fails without an answer (timeout, 5xx, connection lost) the agreement yagna may have made
    anyway is looked up (ListAgreements since our start, matched by ``demand_id``, the demand
    the proposal answers, and the provider) and cancelled; without ``demand_id`` it is not. The
    window that remains: yagna commits it only after that lookup, or the lookup fails too; such an
    agreement was never confirmed, so the provider never saw it, and it expires at ``validTo``
    (``options.valid_sec``). A confirm that times out needs no lookup: its id is known and it is
    released like any other failure. ``reads`` (default
    ``client``) carries the approval wait: pass an :func:`~golem_sync._abandonable.abortable_reads`
    client so a cancel also ends the abandoned wait.
    """
    started = dt.datetime.now(dt.timezone.utc)
    valid_to = started + dt.timedelta(seconds=options.valid_sec)
    try:
        agreement_id = client.market.create_agreement(proposal.proposal_id, valid_to)
    except (YagnaTimeoutError, YagnaServerError, YagnaUnreachableError, YagnaProtocolError):
        if demand_id is not None:  # yagna may have created it and only the answer was lost
            _release_lost(client, proposal, demand_id, started)
        raise
    signals.emit(signals.agreement_created, sender, agreement_id=agreement_id, provider=proposal.provider_name)
    try:
        client.market.confirm_agreement(agreement_id, app_session_id=app_session_id)
        signals.emit(signals.agreement_confirmed, sender, agreement_id=agreement_id)
        if reads is None:
            with blocking.reads(client, token) as lent:
                _await_approval(lent, token, proposal, agreement_id, options.approval_timeout_sec,
                                startup or Deadline(None))
        else:
            _await_approval(reads, token, proposal, agreement_id, options.approval_timeout_sec,
                            startup or Deadline(None))
    except BaseException:
        release(client, agreement_id, "Agreement not approved in time" if not token.cancelled else "Cancelled")
        raise
    signals.emit(signals.agreement_approved, sender, agreement_id=agreement_id, provider=proposal.provider_name)
    return agreement_id


def _await_approval(reads: YagnaClient, token: CancelToken, proposal: ProposalView, agreement_id: str,
                    limit: float, startup: Deadline) -> None:
    """Wait until the provider approves, refuses, or a limit runs out (a cancel aborts ``reads``).

    ``limit`` is the approval timeout (GolemAgreementError when it runs out); ``startup`` the job's
    startup deadline (GolemTimeoutError, phase ``"agreement"``, when it runs out first).
    """
    who = proposal.provider_name or proposal.issuer_id
    deadline = Deadline(limit)
    while True:
        if startup.expired:
            raise GolemTimeoutError(f"startup timeout ({startup.seconds:g}s) reached while waiting for {who} to "
                                    f"approve agreement {agreement_id}", phase="agreement")
        token.raise_if_cancelled()
        try:
            state = reads.market.wait_for_approval(agreement_id, max(0.1, startup.cap(deadline.cap(limit))))
        except YagnaError as exc:
            token.raise_if_cancelled()  # the cancel aborted the wait
            if is_transient(exc) and not deadline.expired and not startup.expired:
                # Our own yagna failed the (idempotent) wait, not the provider: wait again.
                logger.debug("waiting for %s to approve agreement %s: %s; waiting again", who, agreement_id, exc)
                token.sleep(_WAIT_RETRY_SEC)
                continue
            raise GolemAgreementError(f"waiting for {who} to approve agreement {agreement_id} failed: {exc}") from exc
        if state == "Approved":
            return
        if state != "Pending":
            raise GolemAgreementError(f"provider {who} did not approve agreement {agreement_id}: {state}")
        if deadline.expired:
            raise GolemAgreementError(f"provider {who} did not approve agreement {agreement_id} within {limit:g}s")


_WAIT_RETRY_SEC = 0.25  # pause before waiting again for an approval after yagna failed the wait
_LOOKUP_SLACK_SEC = 5.0  # yagna's clock may lag ours a little: look a bit further back


def _release_lost(client: YagnaClient, proposal: ProposalView, demand_id: str, since: dt.datetime) -> List[str]:
    """End the agreements with ``proposal``'s provider on ``demand_id`` created since ``since``.

    For a create POST whose answer was lost; returns the ids found. ListAgreements filters by
    creation date only and an agreement names its demand and provider, not the proposal, so only
    agreements on this negotiation's own demand with this provider are touched (a negotiation signs
    one at a time). Errors are logged, not raised.
    """
    after = since - dt.timedelta(seconds=_LOOKUP_SLACK_SEC)
    found: List[str] = []
    try:
        for agreement_id in client.market.list_agreements(after_date=after):
            agreement = client.market.get_agreement(agreement_id)
            if agreement.demand.demand_id == demand_id and agreement.provider_id == proposal.issuer_id:
                found.append(agreement_id)
    except YagnaError as exc:
        logger.warning("could not look for an agreement with %s after its create call failed: %s; if yagna "
                       "made one it expires unconfirmed at its validTo", proposal.issuer_id, exc)
    for agreement_id in found:
        logger.info("agreement %s with %s was created although its create call failed; ending it",
                    agreement_id, proposal.issuer_id)
        release(client, agreement_id, "Agreement creation failed")
    return found


#: What :func:`release` did. ``failed`` means the agreement could not be ended and may still be, or
#: become, live at the provider (logged: an ERROR if it was approved or its state is unknown, a
#: WARNING if it was never approved): the caller must not wait for an invoice on it.
ReleaseOutcome = Literal["terminated", "cancelled", "nothing", "failed"]

_RELEASE_ATTEMPTS = 5  # reads+actions; with the backoff below about 3 s of sleeping at most
_RELEASE_BACKOFF_SEC = 0.2  # doubled after each transient failure
_RELEASE_BUDGET_SEC = 8.0  # no new attempt after this; each call is bounded by the client's timeouts


def release(client: YagnaClient, agreement_id: str, message: str, *, success: bool = True) -> ReleaseOutcome:
    """End an agreement whatever its state; return what was done (see :data:`ReleaseOutcome`).

    Approved → terminate; Proposal/Pending → cancel; anything else (or 404/410) is already over:
    ``nothing``. After a failed cancel or terminate (409 because the provider approved meanwhile,
    5xx, timeout, yagna unreachable) the state is read again and the fitting action retried, up to
    5 attempts with a short backoff and no new attempt after about 8 s. When the agreement still
    cannot be ended ``failed`` is returned and it is logged: an ERROR when it may be live at the
    provider (last seen Approved, or its state never read), a WARNING when it was never approved
    (last seen Proposal or Pending: it expires at its validTo). Never raises a YagnaError: release
    runs on cleanup paths that must not fail. No lock is held; runs on the caller's thread.
    """
    deadline = Deadline(_RELEASE_BUDGET_SEC)
    delay = _RELEASE_BACKOFF_SEC
    last: Optional[BaseException] = None
    state = "unknown"
    for attempt in range(1, _RELEASE_ATTEMPTS + 1):
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
        except YagnaNotFoundError as exc:
            if state == "unknown" or exc.method == "GET":
                return "nothing"  # gone already (410/404): ended by the other side meanwhile
            last = exc  # cancel/terminate said Gone: read the final state to be sure
        except YagnaAuthError as exc:
            last = exc
            break  # a rejected app key does not get better by retrying
        except YagnaError as exc:
            last = exc
            if isinstance(exc, YagnaRequestError) and exc.status == 409:
                # The state moved under us (typically: approved while we cancelled): re-read at once.
                logger.debug("ending agreement %s: %s; reading its state again", agreement_id, exc)
                continue
        if attempt == _RELEASE_ATTEMPTS or deadline.expired:
            break
        logger.debug("ending agreement %s failed (%s); retrying in %.1fs", agreement_id, last, delay)
        time.sleep(deadline.cap(delay))  # short, bounded backoff on a cleanup path (no token to wait on)
        delay *= 2
    if state == "Proposal":  # created, never confirmed: the provider never received it
        logger.warning("could not end agreement %s (last seen Proposal: never confirmed, so the provider never "
                       "saw it): %s; it was never approved and expires unconfirmed at its validTo",
                       agreement_id, last)
    elif state == "Pending":  # confirmed, waiting for the provider's approval
        logger.warning("could not end agreement %s (last seen Pending: not approved by the provider): %s; it "
                       "expires at its validTo unless the provider approves it first (then it stays live "
                       "until it expires or the provider ends it)", agreement_id, last)
    else:  # Approved, or its state could not be read
        logger.error("could not end agreement %s (last seen %s): %s; it stays live at the provider until "
                     "it expires or the provider ends it", agreement_id, state, last)
    return "failed"
