"""Find a provider and sign an agreement: publish the demand, answer proposals, pick the best draft.

Collection is continuous: every proposal that arrives while no agreement is signed is answered
(unlike golem-js, whose batch reads proposals only once). An expired or vanished demand is
published again.

Threads: a :class:`Negotiator` lives on one job's thread for one attempt. Its long polls (demand events,
approval waits) run on that thread through an abortable client lent by
:meth:`~golem_sync._abandonable.AbandonableCalls.reads`, so a cancel ends the wait AND the HTTP
request at once; the startup deadline bounds the whole
negotiation, signing included. The drafts not chosen are rejected once an agreement is signed, and
the demand is always unsubscribed before :meth:`Negotiator.agree` returns or raises. The demand is
published by :func:`~golem_sync._market.publish.publish_demand` (a transient failure looks for the
demand yagna may have created before posting again) into the network's
:class:`~golem_sync._market.publish.HeldDemands`, shared by its negotiators' threads.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Set

from .. import signals
from .._abandonable import AbandonableCalls
from .._cancel import CancelToken, Deadline
from ..errors import (GolemAgreementError, GolemNoProposalError, GolemTimeoutError, YagnaError, YagnaNotFoundError,
                      YagnaUnreachableError, has_transient_cause, is_transient)
from .._options import AgreementOptions, MarketOptions
from .._pollers import Backoff
from ..yagna.client import YagnaClient
from ..yagna.models import ProposalEvent, ProposalRejectedEvent
from .demand import DemandSpec
from .proposals import ProposalView, Reason, default_scorer, proposal_problems
from .log import MarketLog
from .publish import HeldDemands, publish_demand
from .signing import sign

__all__ = ["Negotiator", "Signed"]

logger = logging.getLogger("golem_sync.market")

#: Tries of a counter-proposal when our yagna fails it transiently, with a short pause between
#: (0.1 s, then 0.2 s: at most 0.3 s on the negotiating thread; a cancel ends the pause at once).
_COUNTER_TRIES = 3
_COUNTER_RETRY_SEC = 0.1


class Signed:
    """The outcome of a negotiation: an approved agreement and the proposal it was made from."""

    def __init__(self, agreement_id: str, proposal: ProposalView) -> None:
        self.agreement_id = agreement_id
        self.proposal = proposal


class Negotiator:
    """One negotiation on behalf of one job attempt."""

    _LEFTOVER_BUDGET_SEC = 2.0  # how long rejecting the drafts not chosen may delay agree()

    def __init__(self, client: YagnaClient, blocking: AbandonableCalls, demand: DemandSpec, market: MarketOptions,
                 agreement: AgreementOptions, app_session_id: str, sender: Any,
                 excluded_providers: Optional[Set[str]] = None, held: Optional[HeldDemands] = None) -> None:
        """``held``: the demands the network holds, shared by its negotiators (default: this one's own)."""
        self._client = client
        self._held = held if held is not None else HeldDemands()
        self._blocking = blocking
        self._demand = demand
        self._market = market
        self._agreement = agreement
        self._app_session_id = app_session_id
        self._sender = sender
        self._excluded = set(excluded_providers or ())
        self._scorer: Callable[[ProposalView], float] = market.proposal_scorer or default_scorer
        self._drafts: Dict[str, ProposalView] = {}  # provider id -> its latest acceptable draft
        self.proposals_seen = 0
        self._acceptable = 0  # proposals that passed our rules (countered, or kept as drafts)
        self._rejections: "Counter[str]" = Counter()  # why the others were rejected
        self._log = MarketLog()  # what the market showed, for the report of a startup timeout

    def agree(self, token: CancelToken, deadline: Deadline) -> Signed:
        """Block until an agreement is approved; raise GolemTimeoutError naming the phase on timeout.

        The long polls (demand events, approval waits) run on the caller's thread through an
        abortable client lent by ``blocking.reads``, so a cancel ends them at once.
        """
        outage = _Outage(token, deadline)
        demand_id = self._subscribe(token, deadline)
        try:
            with self._blocking.reads(self._client, token) as reads:
                while True:
                    token.raise_if_cancelled()
                    if deadline.expired:
                        raise self._timeout(deadline)
                    try:  # on this thread: a cancel aborts the poll (no helper thread per poll)
                        events = reads.market.collect_demand_events(
                            demand_id, timeout=deadline.cap(self._market.offer_poll_sec),
                            max_events=self._market.max_offer_events)
                    except YagnaNotFoundError:
                        token.raise_if_cancelled()
                        # yagna expired it, or restarted (subscriptions do not survive a restart).
                        logger.info("demand %s expired or vanished; publishing it again", demand_id)
                        self._held.release(demand_id)
                        demand_id = self._subscribe(token, deadline)
                        continue
                    except YagnaUnreachableError as exc:
                        token.raise_if_cancelled()  # the cancel aborted the poll
                        outage.wait(exc)  # yagna restarting: poll again (the demand is re-published on 404)
                        continue
                    except YagnaError:
                        token.raise_if_cancelled()  # the cancel aborted the poll
                        raise
                    outage.over()
                    for event in events:
                        self._on_event(token, demand_id, event)
                    signed, failures = self._try_drafts(token, deadline, reads, demand_id)
                    if signed is not None:
                        self._reject_leftovers(demand_id)
                        return signed
                    if failures and not self._drafts:
                        # Every candidate failed, and the others may have been rejected already (by a
                        # filter, or for being worse): publish the demand anew so every provider but
                        # the failed ones gets a fresh chance.
                        self._unsubscribe(demand_id)
                        demand_id = self._subscribe(token, deadline)
        finally:
            self._unsubscribe(demand_id)

    # -- steps ------------------------------------------------------------------------------

    def _subscribe(self, token: CancelToken, deadline: Deadline) -> str:
        demand_id = publish_demand(self._client.market, self._demand.body(), self._held, token, deadline)
        signals.emit(signals.demand_subscribed, self._sender, demand_id=demand_id)
        logger.debug("demand %s published", demand_id)
        return demand_id

    def _unsubscribe(self, demand_id: str) -> None:
        try:
            self._client.market.unsubscribe_demand(demand_id)
        except YagnaNotFoundError:
            pass
        except YagnaError as exc:
            logger.warning("could not unsubscribe demand %s: %s", demand_id, exc)
        self._held.release(demand_id)
        signals.emit(signals.demand_unsubscribed, self._sender, demand_id=demand_id)

    def _on_event(self, token: CancelToken, demand_id: str, event: Any) -> None:
        if isinstance(event, ProposalRejectedEvent):
            reason = (event.reason or {}).get("message") if isinstance(event.reason, dict) else None
            self._log.provider_rejected(event.proposal_id, reason)
            signals.emit(signals.proposal_rejected, self._sender, proposal_id=event.proposal_id,
                         reason=reason, by="provider")
            return
        if not isinstance(event, ProposalEvent):
            return
        proposal = ProposalView.of(event.proposal)
        self.proposals_seen += 1
        signals.emit(signals.proposal_received, self._sender, proposal=proposal)
        problems = self._problems(proposal)
        self._rejections.update(problems)
        if not problems:
            self._acceptable += 1
        problem = "; ".join(problems)
        if proposal.state == "Initial":
            self._log.offer(proposal, problems)
            if problem:
                self._reject(demand_id, proposal, problem)
            else:
                self._counter(token, demand_id, proposal)
        elif proposal.state == "Draft":
            # Re-check the provider's answer: its terms may differ from the offer we countered.
            if problem:
                self._reject(demand_id, proposal, problem)
            else:
                self._drafts[proposal.issuer_id] = proposal

    def _problems(self, proposal: ProposalView) -> List[str]:
        if proposal.issuer_id in self._excluded:
            return [Reason("provider failed this job before", rule="max_retries", group="failed this job before")]
        return list(proposal_problems(proposal, self._market, self._demand.platform))

    def _counter(self, token: CancelToken, demand_id: str, proposal: ProposalView) -> None:
        """Counter an offer; a transient failure of our yagna is tried again (else that provider
        would never draft: it answers only a counter). The pause between tries is ``token.sleep``:
        a cancel ends it at once with GolemCancelledError, and nothing is tried after it."""
        for attempt in range(1, _COUNTER_TRIES + 1):
            try:
                counter_id = self._client.market.counter_proposal(demand_id, proposal.proposal_id,
                                                                  self._demand.counter_body())
                break
            except YagnaError as exc:
                if attempt < _COUNTER_TRIES and is_transient(exc):
                    logger.debug("countering proposal %s failed (%s); trying again", proposal.proposal_id, exc)
                    token.sleep(_COUNTER_RETRY_SEC * attempt)
                    continue
                logger.info("countering proposal %s from %s failed: %s", proposal.proposal_id,
                            proposal.provider_name or proposal.issuer_id, exc)
                return
        self._log.countered(counter_id, proposal)
        signals.emit(signals.proposal_responded, self._sender, proposal=proposal, counter_id=counter_id)

    def _reject(self, demand_id: str, proposal: ProposalView, reason: str) -> None:
        logger.debug("rejecting proposal %s from %s: %s", proposal.proposal_id,
                     proposal.provider_name or proposal.issuer_id, reason)
        try:
            self._client.market.reject_proposal(demand_id, proposal.proposal_id, {"message": reason})
        except YagnaError as exc:
            logger.debug("rejecting proposal %s failed: %s", proposal.proposal_id, exc)
        signals.emit(signals.proposal_rejected, self._sender, proposal_id=proposal.proposal_id,
                     reason=reason, by="requestor")

    def _reject_leftovers(self, demand_id: str) -> None:
        """Answer the drafts not chosen (every proposal is answered). After signing, so the signed
        agreement does not wait for them; errors are logged; stops after a couple of seconds (the
        demand is unsubscribed next, which ends the rest in yagna)."""
        budget = Deadline(self._LEFTOVER_BUDGET_SEC)
        leftovers, self._drafts = list(self._drafts.values()), {}
        for index, proposal in enumerate(leftovers):
            if budget.expired:
                logger.debug("%d draft(s) left unanswered: out of time", len(leftovers) - index)
                return
            self._reject(demand_id, proposal, "another provider was chosen")

    def _try_drafts(self, token: CancelToken, deadline: Deadline, reads: YagnaClient,
                    demand_id: str) -> "tuple[Optional[Signed], int]":
        """Try the drafts best score first; a provider that fails to approve is excluded from now on.

        Returns the signed agreement (or None) and how many providers failed. Stops once the startup
        ``deadline`` has expired: each approval wait is capped by it, and GolemTimeoutError (phase
        ``"agreement"``) is raised when it cut one short.
        """
        failures = 0
        while self._drafts and not deadline.expired:
            ranked: List[ProposalView] = sorted(self._drafts.values(), key=self._scorer, reverse=True)
            best = ranked[0]
            del self._drafts[best.issuer_id]
            try:
                agreement_id = sign(self._client, self._blocking, token, best, self._agreement,
                                    self._app_session_id, self._sender, startup=deadline, reads=reads,
                                    demand_id=demand_id)
            except GolemTimeoutError as exc:
                logger.info("agreement with %s: %s", best.provider_name or best.issuer_id, exc)
                raise self._timeout(deadline, exc) from exc  # the startup deadline, not the provider's fault
            except (GolemAgreementError, YagnaError) as exc:
                logger.info("agreement with %s failed: %s", best.provider_name or best.issuer_id, exc)
                self._log.agreement_failed(best, str(exc))
                if not has_transient_cause(exc):  # our yagna failing says nothing against the provider
                    self._excluded.add(best.issuer_id)
                failures += 1
                continue
            return Signed(agreement_id, best), failures
        return None, failures

    def _timeout(self, deadline: Deadline, cause: Optional[BaseException] = None) -> GolemTimeoutError:
        """The startup deadline ran out: GolemNoProposalError (also a GolemMarketError) when no
        proposal came or every one was rejected, else a plain GolemTimeoutError. Each carries the
        :class:`~golem_sync._market.report.MarketReport` of what was seen as ``market_report``."""
        report = self._log.report(deadline.seconds, self._demand.platform)
        head = f"no provider accepted in {deadline.seconds or 0:g} s"
        error: GolemTimeoutError
        if self.proposals_seen == 0:
            error = GolemNoProposalError(
                f"{head}: no proposal from any provider (check the subnet {self._market.resolved_subnet()!r}, the payment "
                f"platform {self._demand.platform!r} and the package constraints)", phase="proposal")
        elif self._acceptable == 0:
            error = GolemNoProposalError(f"{head}: {report.summary()}", phase="agreement",
                                         proposals_seen=self.proposals_seen, rejections=self._rejections)
        else:
            last = f" (last: {cause})" if cause is not None else ""
            error = GolemTimeoutError(f"{head}: {report.summary()}{last}", phase="agreement")
        error.market_report = report
        return error


class _Outage:
    """Rides out yagna being unreachable while negotiating: waits with :class:`Backoff` (the
    cancel token ends the wait) until yagna answers or the startup deadline has no time left,
    then re-raises the YagnaUnreachableError. One info line per outage, debug otherwise."""

    def __init__(self, token: CancelToken, deadline: Deadline, backoff: Optional[Backoff] = None) -> None:
        self._token = token
        self._deadline = deadline
        self._backoff = backoff or Backoff()
        self._failures = 0

    def wait(self, exc: YagnaUnreachableError) -> None:
        self._failures += 1
        delay = self._backoff.delay(self._failures)
        left = self._deadline.remaining()
        if left is not None and left <= delay:
            raise exc
        if self._failures == 1:
            logger.info("yagna is unreachable while negotiating (%s); waiting for it", exc)
        else:
            logger.debug("yagna still unreachable (%s); retrying in %.1fs", exc, delay)
        self._token.sleep(delay)

    def over(self) -> None:
        if self._failures:
            logger.info("yagna answers again after %d failed calls; negotiating on", self._failures)
            self._failures = 0
