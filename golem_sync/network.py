"""GolemNetwork: the client every job runs through.

It owns, for its whole life: one yagna client (one pooled HTTP session), a thread pool for jobs, a
pool for abandonable long polls, one allocation, ONE debit-note poller, ONE invoice poller and ONE
agreement-event poller (dispatching by agreement id), and the registry of jobs.

Threads: construct and ``init()`` on any thread; ``create_job``, ``get_job_by_id``, ``jobs`` and
``close`` are safe from any thread. Shared services are created once, lazily, under a lock, the
first time a job needs them (so ``init()`` costs two cheap calls and no allocation).
"""
from __future__ import annotations

import logging
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import attrs
import requests

from . import signals
from .agreement import AgreementWatcher
from .blocking import Blocking
from .errors import GolemConfigError, GolemError, GolemUserError, YagnaError
from .job import Job, JobState
from .market.demand import DemandSpec, build_demand
from .options import OptionLayer, PaymentOptions, RunOptions, parse_section
from .package import Decorations, resolve_package
from .payment import PaymentProcessor, create_allocation, demand_decorations
from .store.binding import StoreBinding, StoreSpec
from .store.handle import StoredJob
from .work.costs import CostLedger, CostSummary
from .yagna.client import YagnaClient
from .yagna.config import YagnaConfig
from .yagna.transport import Transport

__all__ = ["GolemNetwork", "MIN_YAGNA_VERSION"]

logger = logging.getLogger("golem_sync.network")

MIN_YAGNA_VERSION = (0, 13, 2)


class _Services:
    """What jobs share: created once per network on first use, torn down by ``close``."""

    def __init__(self, network: "GolemNetwork", payment: PaymentOptions) -> None:
        self.client = network.client
        self.blocking = network._blocking
        self.app_session_id = network.app_session_id
        self.requestor_id = network.requestor_id or ""
        self.platform = payment.platform()
        self.allocation = create_allocation(self.client, payment, self.requestor_id)
        signals.emit(signals.allocation_created, network, allocation=self.allocation)
        self.allocation_decorations = demand_decorations(self.client, self.allocation.allocation_id)
        # The pollers read through their own abortable transport, so close() ends their long polls
        # at once instead of waiting them out; no retries there, the poll loop backs off by itself.
        self.poll_client = YagnaClient(transport=Transport(
            attrs.evolve(self.client.config, retries=0, pool_size=4), abortable=True))
        self.payments = PaymentProcessor(self.client, payment, self.allocation.allocation_id,
                                         self.app_session_id, network, poll_client=self.poll_client)
        self.watcher = AgreementWatcher(self.poll_client, self.app_session_id, poll_sec=payment.event_poll_sec)
        self.payments.start()
        self.watcher.start()
        self._packages: Dict[Any, Decorations] = {}
        self._lock = threading.Lock()
        self._registry_session = requests.Session()

    def demand_for(self, options: RunOptions) -> DemandSpec:
        """The demand for a run (package resolutions are cached: one registry call per image)."""
        with self._lock:
            package = self._packages.get(options.package)
        if package is None:
            package = resolve_package(options.package, session=self._registry_session)
            with self._lock:
                self._packages[options.package] = package
        return build_demand(package, self.allocation_decorations, options.market, self.platform)

    def stop_pollers(self) -> None:
        """Stop the three pollers together: each may be inside one long poll, so join them in parallel."""
        pollers = [*self.payments.pollers, self.watcher.poller]
        for poller in pollers:
            poller.request_stop()
        self.poll_client.transport.abort()
        for poller in pollers:
            poller.join()
        self.poll_client.close()
        self._registry_session.close()


class GolemNetwork:
    """The entry point: connects to yagna and creates jobs.

    Args:
        yagna: a :class:`YagnaConfig`, a dict of its fields, or ``None`` for the environment
            (``YAGNA_APPKEY``, ``YAGNA_API_URL``).
        payment: network-wide payment options (budget, network, filters).
        market, agreement, package, activity, work, job: default options for every job.
        max_workers: how many jobs run at once (more wait in the pool's queue).
        job_store: a :class:`golem_sync.store.JobStore` (or a SQLite file path, or a
            ``postgresql://`` URL) that records every
            job, so that ``get_job_by_id`` works in any process sharing it, other processes can
            cancel jobs, and jobs orphaned by a dead process are recovered at ``init()``. With a
            store, finished jobs leave this network's memory: look them up through the store.
    """

    def __init__(self, yagna: Union[YagnaConfig, Mapping[str, Any], None] = None, *,
                 payment: Any = None, max_workers: int = 16, client: Optional[YagnaClient] = None,
                 job_store: StoreSpec = None, **job_defaults: Any) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise GolemConfigError(f"max_workers must be a positive integer, got {max_workers!r}")
        self._layer = OptionLayer.parse(job_defaults, where="GolemNetwork")
        self._payment = parse_section(PaymentOptions, payment)
        if yagna is not None and not isinstance(yagna, (YagnaConfig, Mapping)):
            raise GolemConfigError(f"yagna must be a YagnaConfig, a dict of its fields or None, "
                                   f"got {type(yagna).__name__}")
        if client is None:
            config = yagna if isinstance(yagna, YagnaConfig) else YagnaConfig.from_env(**dict(yagna or {}))
            config = _with_pool(config, max_workers)
            client = YagnaClient(config)
        self.client = client
        self.max_workers = max_workers
        self.app_session_id = str(uuid.uuid4())
        self.requestor_id: Optional[str] = None
        self.yagna_version: Optional[str] = None
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="golem-job")
        self._blocking = Blocking(max_workers * 2 + 2)
        self._lock = threading.RLock()
        self._jobs: Dict[str, Job[Any]] = {}
        self._services_obj: Optional[_Services] = None
        self._initialized = False
        self._closed = False
        #: Usage and estimated cost of every agreement of this network's jobs (see cost_summary()).
        self.costs = CostLedger()
        self._store = StoreBinding(self, job_store) if job_store is not None else None

    # -- lifecycle ---------------------------------------------------------------------------

    def init(self) -> "GolemNetwork":
        """Check yagna's version and read the requestor identity. Idempotent."""
        with self._lock:
            if self._closed:
                raise GolemUserError("this GolemNetwork is closed; create a new one")
            if self._initialized:
                return self
            version = self.client.version.get()
            self.yagna_version = version.current.version
            if _version_tuple(self.yagna_version) < MIN_YAGNA_VERSION:
                raise GolemError(f"yagna {self.yagna_version} is too old; golem_sync needs "
                                 f"{'.'.join(map(str, MIN_YAGNA_VERSION))} or newer")
            self.requestor_id = self.client.identity.me().identity
            if self._store is not None:
                self._store.start(self.client)
            self._initialized = True
            logger.info("connected to yagna %s as %s", self.yagna_version, self.requestor_id)
            return self

    def is_initialized(self) -> bool:
        return self._initialized

    def close(self, timeout: Optional[float] = None) -> None:
        """Cancel running jobs, settle payments, release the allocation, stop every thread.

        ``timeout`` bounds the wait for outstanding invoices (default ``payment.payment_timeout_sec``).
        Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            running = [job for job in self._jobs.values() if job.is_running()]
            if any(job._on_own_thread() for job in running):
                raise GolemUserError("close() from inside a job's worker would wait for that job forever; "
                                     "close the network from the thread that created it")
            self._closed = True
        for job in running:
            job._token.cancel("the network is closing")
        for job in running:
            try:
                job._wait_done(None, "close")
            except GolemError:
                pass
        self._executor.shutdown(wait=True)
        services = self._services_obj
        if services is not None:
            wait = self._payment.payment_timeout_sec if timeout is None else timeout
            if not services.payments.wait_for_invoices(wait):
                logger.warning("%d agreement(s) still without an invoice after %.0fs",
                               services.payments.outstanding(), wait)
            services.stop_pollers()
            self._log_cost_summary()
            try:
                self.client.payment.release_allocation(services.allocation.allocation_id)
                signals.emit(signals.allocation_released, self, allocation_id=services.allocation.allocation_id)
            except YagnaError as exc:
                logger.warning("could not release allocation %s: %s", services.allocation.allocation_id, exc)
        self._blocking.shutdown(wait=True)
        if self._store is not None:
            self._store.close()
        self.client.close()

    def __enter__(self) -> "GolemNetwork":
        return self.init()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, **options: Any) -> Job[Any]:
        """A new job with these default options (sections as in ``GolemNetwork``); not started."""
        layer = OptionLayer.parse(options, where="create_job")
        with self._lock:
            self._ensure_open()
            job: Job[Any] = Job(self, str(uuid.uuid4()), layer)
            self._jobs[job.id] = job
        if self._store is not None:
            self._store.job_created(job)
        return job

    def get_job_by_id(self, job_id: str) -> Optional[Union[Job[Any], StoredJob]]:
        """The job with this id, or ``None``.

        A job this network runs is returned as its live :class:`Job`; with a ``job_store``, any
        other job in the store (finished here, or run by another process) as a :class:`StoredJob`.
        """
        job = self._local_job(job_id)
        if job is None and self._store is not None:
            return self._store.lookup(job_id)
        return job

    def _local_job(self, job_id: str) -> Optional[Job[Any]]:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, state: Optional[JobState] = None) -> List[Job[Any]]:
        """Every job of this network, optionally only those in ``state``."""
        with self._lock:
            return [j for j in self._jobs.values() if state is None or j.state is state]

    @property
    def allocation_id(self) -> Optional[str]:
        return self._services_obj.allocation.allocation_id if self._services_obj else None

    def cost_summary(self) -> CostSummary:
        """Per-agreement usage, estimated cost (linear pricing × usage) and accepted amounts."""
        services = self._services_obj
        accepted = services.payments.account_totals() if services is not None else {}
        return self.costs.summary(accepted, refresh=not self._closed)

    def _log_cost_summary(self) -> None:
        summary = self.cost_summary()
        if summary.rows:
            logger.info("cost summary:\n%s", summary)

    # -- for Job -----------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed:
            raise GolemUserError("this GolemNetwork is closed; create a new one")
        if not self._initialized:
            raise GolemUserError("GolemNetwork is not initialized: call init() or use it as a context manager")

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._executor.submit(fn, *args)

    def _services(self) -> _Services:
        with self._lock:
            if self._services_obj is None:
                self._services_obj = _Services(self, self._payment)
            return self._services_obj

    def _job_finished(self, job: Job[Any]) -> None:
        """Hook for stores and statistics; without a store the in-memory registry keeps the job."""
        if self._store is not None:
            self._store.job_finished(job)
            with self._lock:  # the store has it now: memory stays flat however many jobs end
                self._jobs.pop(job.id, None)

    def _persist_job(self, job: Job[Any]) -> None:
        """Write a job's state change to the store, if there is one."""
        if self._store is not None:
            self._store.persist(job)


def _with_pool(config: YagnaConfig, max_workers: int) -> YagnaConfig:
    """Size the HTTP pool for the job threads and the long-poll threads."""
    wanted = max_workers * 3 + 8
    return config if config.pool_size >= wanted else attrs.evolve(config, pool_size=wanted)


def _version_tuple(text: str) -> tuple:  # type: ignore[type-arg]
    numbers = re.findall(r"\d+", text or "")
    return tuple(int(n) for n in numbers[:3]) if numbers else (0,)
