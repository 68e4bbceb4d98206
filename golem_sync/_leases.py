"""Fresh agreements: the :class:`~golem_sync._runtime.ProviderSource` every job uses today.

For each run: publish the demand, negotiate, sign, watch the agreement and account for its notes,
create the activity; at the end destroy the activity, end the agreement and expect its invoice.

Threads: ``acquire`` and ``release`` run on the job's thread.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Set, Tuple

from ._activity import Activity
from ._agreement import AgreementLease
from ._market.signing import release
from ._cancel import CancelToken, Deadline
from ._market.negotiation import Negotiator
from ._options import RunOptions
from ._payment.budget import JobBudget
from ._payment.prices import AgreedPrices
from ._runtime import ProviderSource, Rental, RunHandle, isolated
from ._services import SharedServices
from ._work import ProviderInfo

__all__ = ["FreshAgreements", "sign_agreement", "end_agreement"]

logger = logging.getLogger("golem_sync.job")


class FreshAgreements(ProviderSource):
    """Negotiates a new agreement (and creates its activity) for every run.

    ``services(token)`` gives the network's shared services, creating them if needed (a cancel
    ends the wait); ``existing()`` gives them only if they exist (release must never create them).
    """

    def __init__(self, services: Callable[[CancelToken], SharedServices],
                 existing: Callable[[], Optional[SharedServices]]) -> None:
        self._services = services
        self._existing = existing

    def acquire(self, rental: Rental, job: RunHandle, options: RunOptions, startup: Deadline,
                excluded: Set[str], on_signed: Callable[[str, ProviderInfo], None]) -> None:
        token = rental.token
        token.raise_if_cancelled()
        services = self._services(token)
        rental.client, rental.requestor_id = services.client, services.requestor_id
        cap = options.job.max_cost  # reserved against payment.budget once per job, until it ends
        budget = services.budgets.reserve(job.id, cap) if cap is not None else None
        rental.lease, rental.provider = sign_agreement(services, options, job, token, startup, excluded,
                                                       lease_token=token, sender=job, budget=budget)
        rental.proposal = rental.lease.proposal
        token.raise_if_cancelled()
        on_signed(rental.lease.agreement_id, rental.provider)
        rental.activity = Activity.create(services.client, services.blocking, rental.lease.agreement_id,
                                          options.activity, job, token)

    def release(self, rental: Rental, *, success: bool, reason: str) -> None:
        services = self._existing()
        if rental.activity is not None:
            isolated("destroying the activity", rental.activity.destroy)
        if rental.lease is not None and services is not None:
            end_agreement(services, rental.lease, reason, success=success)


def sign_agreement(services: SharedServices, options: RunOptions, handle: Any, token: CancelToken,
                   startup: Deadline, excluded: Set[str], *, lease_token: CancelToken,
                   sender: Any, budget: Optional[JobBudget] = None) -> Tuple[AgreementLease, ProviderInfo]:
    """Negotiate and sign one agreement, watched and accounted for from then on.

    ``token`` ends the negotiation; ``lease_token`` is cancelled when the provider terminates the
    agreement or breaks its terms, or when ``budget`` (the job's cost cap) stops it; ``sender``
    sends the agreement's and its notes' signals.
    """
    demand = services.demand_for(options)
    negotiator = Negotiator(services.client, services.blocking, demand, options.market, options.agreement,
                            services.app_session_id, handle, excluded_providers=excluded, held=services.demands)
    signed = negotiator.agree(token, startup)
    lease = AgreementLease(signed.agreement_id, signed.proposal, lease_token)
    services.watcher.watch(lease, sender)
    interval = _debit_note_interval(signed.proposal, options)
    services.payments.register(signed.agreement_id, sender, on_violation=lease.broken,
                               debit_note_interval=interval, budget=budget, on_over_budget=lease.over_budget,
                               prices=AgreedPrices.of(signed.proposal, interval), on_overcharge=lease.over_budget)
    provider = ProviderInfo(signed.proposal.issuer_id, signed.proposal.provider_name,
                            signed.proposal.wallet(demand.platform))
    return lease, provider


def end_agreement(services: SharedServices, lease: AgreementLease, reason: str, *, success: bool) -> None:
    """End the agreement (if still live), stop watching it and expect its invoice. Never raises."""
    lease.released = True
    budget = str(lease.budget_error) if lease.budget_error is not None else None
    outcome = isolated("ending the agreement", release, services.client, lease.agreement_id,
                       reason if success else (lease.violation or budget or reason), success=success)
    isolated("forgetting the agreement", services.watcher.forget, lease.agreement_id)
    # "failed": still live after retries (release logged it; yagna ends it at its validTo) and
    # "cancelled": never approved. Either way no invoice can come, so close() must not wait.
    isolated("closing the agreement's account", services.payments.agreement_ended, lease.agreement_id,
             invoice_expected=outcome not in ("failed", "cancelled"))


def _debit_note_interval(proposal: Any, options: RunOptions) -> float:
    """The debit-note interval both sides agreed on: the provider's echo, else what we demanded."""
    value = proposal.properties.get("golem.com.scheme.payu.debit-note.interval-sec?")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return float(options.market.debit_note_interval_sec)
