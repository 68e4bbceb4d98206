"""What the jobs of one network share: the allocation, the payment and agreement pollers, demands.

Created once per network, by the first job that needs them (see ``GolemNetwork``), and torn
down by ``close``. Threads: ``demand_for`` is called from job threads (its cache is guarded by a
lock); the pollers and the allocation keeper own their threads.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, Optional

import attrs
import requests

from . import signals
from ._agreement import AgreementWatcher, release
from ._abandonable import AbandonableCalls
from ._market.demand import DemandSpec, build_demand
from ._market.publish import HeldDemands
from ._options import PaymentOptions, RunOptions
from ._package import Decorations, resolve_package
from ._payment import AllocationKeeper, PaymentProcessor
from ._payment.budget import BudgetGuard
from ._payment.prices import AmountGuard
from ._pollers import OutageLog
from ._work.costs import CostLedger
from .yagna.client import YagnaClient
from .yagna.transport import Transport

__all__ = ["SharedServices"]

logger = logging.getLogger("golem_sync.payment.budget")


class SharedServices:
    """What jobs share: created once per network on first use, torn down by ``close``.

    Built by one job thread, outside the network's lock; if any step fails, what the earlier
    steps made (the allocation, started pollers) is released before the error propagates.
    """

    def __init__(self, client: YagnaClient, blocking: AbandonableCalls, app_session_id: str, requestor_id: str,
                 payment: PaymentOptions, signal_sender: Any, *, ledger: Optional[CostLedger] = None,
                 demands: Optional[HeldDemands] = None) -> None:
        """``signal_sender`` is the sender of the allocation and network-wide payment signals;
        ``ledger`` (the network's costs) gives the running estimates the jobs' cost caps check;
        ``demands`` holds the ids of the network's published demands (shared by its negotiators)."""
        network = signal_sender
        self.client = client
        self.blocking = blocking
        self.app_session_id = app_session_id
        self.requestor_id = requestor_id
        self.platform = payment.platform()
        self.demands = demands if demands is not None else HeldDemands()
        self._packages: Dict[Any, Decorations] = {}
        self._lock = threading.Lock()
        self._registry_session = requests.Session()
        # Jobs' cost caps (job.max_cost): reservations against payment.budget, stops, estimate checks.
        self.budgets = BudgetGuard(payment.budget, self._terminate_at_cap, estimate=(
            None if ledger is None else lambda job_id, refresh: ledger.job_cost(job_id, refresh=refresh)))
        self._unlisten: Callable[[], None] = lambda: None
        # Debit notes and invoices checked against the agreed prices; an overcharging agreement is ended.
        self.amounts = AmountGuard(self._terminate_overcharging,
                                   usage_of=None if ledger is None else ledger.activity_usage)
        self.keeper = AllocationKeeper(self.client, payment, self.requestor_id,
                                       on_replaced=lambda allocation: signals.emit(
                                           signals.allocation_created, network, allocation=allocation))
        self.allocation = self.keeper.open()
        try:
            if ledger is not None:
                self._unlisten = ledger.add_usage_listener(self.budgets.usage_recorded)
            signals.emit(signals.allocation_created, network, allocation=self.allocation)
            # The pollers read through their own abortable transport, so close() ends their long polls
            # at once instead of waiting them out; no retries there, the poll loop backs off by itself.
            self.poll_client = YagnaClient(transport=Transport(
                attrs.evolve(self.client.config, retries=0, pool_size=4), abortable=True))
            self.payments = PaymentProcessor(self.client, payment, lambda: self.keeper.allocation_id,
                                             self.app_session_id, network, poll_client=self.poll_client,
                                             on_allocation_error=self.keeper.replace_soon, amounts=self.amounts)
            self.watcher = AgreementWatcher(self.poll_client, self.app_session_id, poll_sec=payment.event_poll_sec)
            # Providers bill per activity: each activity after an agreement's first allows one more note.
            signals.activity_created.connect(self._on_activity_created, weak=False)
            # One warning when yagna goes away and one info when it is back, for all three pollers.
            self.outages = OutageLog(f"yagna at {self.client.config.api_url}")
            for poller in (*self.payments.pollers, self.watcher.poller):
                poller.outages = self.outages
            self.payments.start()
            self.watcher.start()
        except BaseException:
            if hasattr(self, "watcher"):
                self.stop_pollers()
            else:
                self._unlisten()
            self.keeper.close()
            self._registry_session.close()
            raise

    @property
    def allocation_id(self) -> str:
        return self.keeper.allocation_id

    def _terminate_at_cap(self, agreement_id: str, message: str) -> None:
        """A job's cost cap stopped it: end its agreement now, with the reason (never raises)."""
        outcome = release(self.client, agreement_id, message, success=False)
        logger.info("agreement %s at its job's cost cap: %s (%s)", agreement_id, outcome, message)

    def _terminate_overcharging(self, agreement_id: str, message: str) -> None:
        """A provider billed more than its prices allow: end the agreement now, with the reason (never raises)."""
        outcome = release(self.client, agreement_id, message, success=False)
        logger.info("overcharging agreement %s: %s (%s)", agreement_id, outcome, message)

    def _on_activity_created(self, sender: Any, agreement_id: Optional[str] = None, **_: Any) -> None:
        if agreement_id is not None:
            self.payments.activity_started(agreement_id)  # agreements of other networks are ignored

    def demand_for(self, options: RunOptions) -> DemandSpec:
        """The demand for a run (package resolutions are cached: one registry call per image)."""
        with self._lock:
            package = self._packages.get(options.package)
        if package is None:
            package = resolve_package(options.package, session=self._registry_session)
            with self._lock:
                self._packages[options.package] = package
        return build_demand(package, self.keeper.decorations, options.market, self.platform)

    def stop_pollers(self) -> None:
        """Stop the three pollers together: each may be inside one long poll, so join them in parallel."""
        signals.activity_created.disconnect(self._on_activity_created)
        pollers = [*self.payments.pollers, self.watcher.poller]
        for poller in pollers:
            poller.request_stop()
        self.poll_client.transport.abort()
        for poller in pollers:
            poller.join()
        self.payments.close()
        self.amounts.close()
        self._unlisten()
        self.budgets.close()
        self.poll_client.close()
        self._registry_session.close()
