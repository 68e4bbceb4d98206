"""GolemNetwork: the client every job runs through.

It owns, for its whole life: one yagna client (one pooled HTTP session), a thread pool for jobs, a
pool for abandonable long polls, one allocation, ONE debit-note poller, ONE invoice poller and ONE
agreement-event poller (dispatching by agreement id), and the registry of jobs.

Threads: construct and ``init()`` on any thread; ``create_job``, ``get_job_by_id``, ``jobs`` and
``close`` are safe from any thread (``close`` refuses golem_sync's own threads, where it would wait
for itself). The network's lock guards only its registry and flags and is never held during a REST
call, a signal or user code. Shared services are created once, lazily, by the first job that
needs them (so ``init()`` costs two cheap calls and no allocation); other jobs wait for that
creation, interruptibly, and a failure (say, an unfunded account) fails them all promptly.
"""
from __future__ import annotations

import copy
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple, Union

import attrs

from . import signals, _threads as threads
from ._abandonable import AbandonableCalls
from ._cancel import CancelToken
from .errors import (GolemCancelledError, GolemConfigError, GolemError, GolemTimeoutError, GolemUserError)
from ._job import Job, JobState
from ._leases import FreshAgreements
from ._pool import ProviderPool
from ._market.estimate import CostEstimate, estimate_cost
from ._market.publish import HeldDemands
from ._market.scan import MarketScan, check_seconds, scan_market
from ._options import MarketOptions, OptionLayer, PackageOptions, PaymentOptions, merge_layers, parse_section
from ._runtime import JobRuntime, ProviderSource
from ._services import SharedServices
from .store.base import Retention
from ._persistence import StoreBinding, StoreSpec
from .store.handle import StoredJob
from ._work.costs import CostLedger, CostSummary
from .yagna.client import YagnaClient
from .yagna.config import YagnaConfig

__all__ = ["GolemNetwork", "MIN_YAGNA_VERSION"]

logger = logging.getLogger("golem_sync.network")

MIN_YAGNA_VERSION = (0, 13, 2)


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
        retention: without a store, the in-memory registry keeps every job (as golem-js does)
            unless a :class:`golem_sync.store.Retention` says when finished jobs leave it.
        telemetry: ``True`` traces and measures this network's jobs with OpenTelemetry until
            ``close()`` (:func:`golem_sync.otel.instrument`; needs the ``otel`` extra).
    """

    def __init__(self, yagna: Union[YagnaConfig, Mapping[str, Any], None] = None, *,
                 payment: Any = None, max_workers: int = 16, client: Optional[YagnaClient] = None,
                 job_store: StoreSpec = None, retention: Optional[Retention] = None,
                 telemetry: bool = False, **job_defaults: Any) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise GolemConfigError(f"max_workers must be a positive integer, got {max_workers!r}")
        if retention is not None and not isinstance(retention, Retention):
            raise GolemConfigError(f"retention must be a golem_sync.store.Retention, got {type(retention).__name__}")
        if not isinstance(telemetry, bool):
            raise GolemConfigError(f"telemetry must be True or False, got {telemetry!r}")
        if telemetry:
            from .otel import require
            require()  # GolemConfigError before anything is made when the otel extra is missing
        self._layer = OptionLayer.parse(job_defaults, where="GolemNetwork")
        self._payment = parse_section(PaymentOptions, payment)
        self._payment.platform()  # an unknown payment network (option or environment) fails here, not at a job
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
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{threads.PREFIX}job")
        self._blocking = AbandonableCalls(max_workers * 2 + 2)
        # _lock guards the registry and the lifecycle flags only: it is never held during a REST
        # call, a signal or user code. _init_lock and _close_lock serialise init() and close().
        self._lock = threading.RLock()
        self._init_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._jobs: Dict[str, Job[Any]] = {}
        self._retention = retention
        self._finished: "OrderedDict[str, float]" = OrderedDict()  # without a store: end times, oldest first
        self._services_obj: Optional[SharedServices] = None
        self._services_pending: "Optional[Future[SharedServices]]" = None
        self._services_failure: Optional[Tuple[BaseException, float]] = None
        self._side_threads: List[threading.Thread] = []  # jobs run off the pool (a waiting parent's child)
        self._initialized = False
        self._closing = False  # no new job is admitted
        self._closed = False  # every close step has run
        self._close_done: Set[str] = set()
        #: Usage and estimated cost of every agreement of this network's jobs (see cost_summary()).
        self.costs = CostLedger()
        #: The demands this network's negotiators and market scans hold now (see HeldDemands).
        self._demands = HeldDemands()
        self._runtime = _NetworkRuntime(self)
        self._pools: List[ProviderPool] = []
        self._pool_host = _PoolHost(self)
        self._store = StoreBinding(self, job_store) if job_store is not None else None
        self._telemetry: Any = None
        if telemetry:
            from .otel import instrument
            self._telemetry = instrument(self)

    # -- lifecycle ---------------------------------------------------------------------------

    def init(self) -> "GolemNetwork":
        """Check yagna's version and read the requestor identity. Idempotent."""
        with self._init_lock:
            with self._lock:
                if self._closing:
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
                self._store.start(self.client, self._payment, self.requestor_id)
            with self._lock:
                self._initialized = True
            logger.info("connected to yagna %s as %s", self.yagna_version, self.requestor_id)
            return self

    def is_initialized(self) -> bool:
        return self._initialized

    def close(self, timeout: Optional[float] = None) -> None:
        """Cancel running jobs, settle payments, release the allocation, stop every thread.

        ``timeout`` bounds the wait for outstanding invoices (default ``payment.invoice_wait_sec``).
        Idempotent, and resumable: if it is interrupted (Ctrl-C while it waits for invoices), the
        next call carries on where it stopped. A second thread calling it waits for the first.

        Raises :class:`GolemUserError` on one of golem_sync's own threads (a worker, a signal
        receiver, a done-callback), where it would wait for itself; nothing is closed then.
        """
        if threads.owned():
            raise GolemUserError(f"close() on golem_sync's thread {threads.name()!r} (a worker, signal receiver "
                                 "or callback) would wait for itself; close the network from your own thread")
        with self._close_lock:
            if self._closed:
                return
            with self._lock:
                self._closing = True
            self._close_step("jobs", self._end_jobs)
            self._close_step("pools", self._close_pools)
            self._close_step("pool", self._stop_pool)
            services = self._services_obj
            if services is not None:
                wait = self._payment.invoice_wait_sec if timeout is None else timeout
                self._close_step("invoices", self._wait_for_invoices, services, wait)
                self._close_step("pollers", services.stop_pollers)
                self._close_step("cost summary", self._log_cost_summary)
                self._close_step("allocation", self._release_allocations, services)
                if services.outages.down:
                    logger.warning("close: yagna at %s did not answer; what could not be cleaned up (logged above) "
                                   "stays in yagna: agreements until they expire, the allocation until its timeout",
                                   self.client.config.api_url)
            if self._telemetry is not None:  # after the invoices: their payment spans are ended
                self._close_step("telemetry", self._telemetry.uninstrument)
            self._close_step("helper pool", self._blocking.shutdown, True)
            if self._store is not None:
                self._close_step("store", self._store.close)
            self._close_step("client", self.client.close)
            self._closed = True

    def _close_step(self, name: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run one step of close() once; a failure is logged (close never raises for yagna)."""
        if name in self._close_done:
            return
        try:
            fn(*args)
        except Exception:
            logger.exception("close: %s failed", name)
        self._close_done.add(name)  # not reached on KeyboardInterrupt: the next close() runs it again

    def _end_jobs(self) -> None:
        with self._lock:
            running = [job for job in self._jobs.values() if job.is_running()]
        for job in running:
            job.request_cancel("the network is closing")
        _, late = futures_wait([job.future for job in running], timeout=JOB_END_GRACE_SEC)
        for job in running:
            if job.future in late:
                logger.error("job %s did not end within %.0fs of close(); leaving it", job.id, JOB_END_GRACE_SEC)

    def _close_pools(self) -> None:
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            pool.close(JOB_END_GRACE_SEC)

    def _stop_pool(self) -> None:
        with self._lock:
            still = any(job.is_running() for job in self._jobs.values())
            side = list(self._side_threads)
        self._executor.shutdown(wait=not still, cancel_futures=True)
        for thread in side:
            thread.join(JOB_END_GRACE_SEC if not still else 0.1)

    def _wait_for_invoices(self, services: SharedServices, wait: float) -> None:
        if not services.payments.wait_for_invoices(wait):
            logger.warning("%d agreement(s) still without an invoice after %.0fs",
                           services.payments.outstanding(), wait)

    def _release_allocations(self, services: SharedServices) -> None:
        for allocation_id in services.keeper.close():
            signals.emit(signals.allocation_released, self, allocation_id=allocation_id)

    def __enter__(self) -> "GolemNetwork":
        return self.init()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, **options: Any) -> Job[Any]:
        """A new job with these default options (sections as in ``GolemNetwork``); not started."""
        return self._new_job(self._runtime, OptionLayer.parse(options, where="create_job"))

    def _new_job(self, runtime: JobRuntime, layer: OptionLayer) -> Job[Any]:
        with self._lock:
            self._ensure_open()
            job: Job[Any] = Job(runtime, str(uuid.uuid4()), layer)
            self._jobs[job.id] = job
        if self._store is not None:
            self._store.job_created(job)
        return job

    def create_pool(self, *, size: int = 4, min_size: int = 0, idle_timeout_sec: Optional[float] = 60.0,
                    setup: Any = None, teardown: Any = None, fresh_activity: bool = False,
                    name: Optional[str] = None, **options: Any) -> ProviderPool:
        """A pool of up to ``size`` warm leases (agreement + deployed activity) that jobs borrow.

        ``options`` are job option sections (``package``, ``market``, ``agreement``, ``activity``,
        ``work``, ``job``) for the pool's leases and jobs. ``min_size`` leases are kept warm (made at
        once; see ``pool.ready()``); a lease idle longer than ``idle_timeout_sec`` is released, down
        to ``min_size``. ``setup(ctx)``/``teardown(ctx)`` run once per activity. ``fresh_activity``
        gives each job a new activity on the same agreement. ``golem.close()`` closes pools first.
        See :class:`~golem_sync.ProviderPool`.
        """
        layer = OptionLayer.parse(options, where="create_pool")
        with self._lock:
            self._ensure_open()
        pool = ProviderPool(self._pool_host, layer, size=size, min_size=min_size, idle_timeout_sec=idle_timeout_sec,
                            setup=setup, teardown=teardown, fresh_activity=fresh_activity, name=name)
        with self._lock:
            closing = self._closing
            if not closing:
                self._pools.append(pool)
        if closing:  # close() began meanwhile: it did not see this pool
            pool.close()
            raise GolemUserError("this GolemNetwork is closed; create a new one")
        return pool

    def pools(self) -> List[ProviderPool]:
        """The pools of this network not yet closed."""
        with self._lock:
            return list(self._pools)

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
        """Every job of this network (see ``retention``), optionally only those in ``state``."""
        with self._lock:
            return [j for j in self._jobs.values() if state is None or j.state is state]

    @property
    def allocation_id(self) -> Optional[str]:
        """The allocation jobs are paid from now (it changes when yagna's allocation is replaced)."""
        services = self._services_obj
        if services is None:
            return None
        allocation = services.keeper.allocation
        return allocation.allocation_id if allocation is not None else None

    def cost_summary(self) -> CostSummary:
        """Per-agreement usage, estimated cost (linear pricing × usage) and accepted amounts."""
        services = self._services_obj
        if services is None:
            return self.costs.summary({}, refresh=not self._closing)
        return self.costs.summary(services.payments.account_totals(), refresh=not self._closing,
                                  accepted_total=services.payments.accepted_total())

    # -- the market, before paying for anything ---------------------------------------------

    def scan_market(self, *, package: Any = None, market: Any = None, timeout: float = 10.0) -> MarketScan:
        """Every offer the market shows within ``timeout`` seconds, each with the reasons these options
        would reject it (see :class:`~golem_sync.MarketScan`). Signs and pays nothing.

        ``package`` and ``market`` (dicts or the options classes) are layered over the network's own,
        as for a job; the payment platform is the network's. Blocks the calling thread.
        """
        package_options, market_options = self._scan_options(package, market)
        return scan_market(self.client, package_options, market_options, self._payment.platform(), timeout,
                           held=self._demands)

    def estimate_cost(self, *, package: Any = None, market: Any = None, duration_sec: float,
                      timeout: float = 10.0) -> CostEstimate:
        """What ``duration_sec`` seconds of a job would cost on the offers a market scan finds
        acceptable now: worst, best and median (see :class:`~golem_sync.CostEstimate`).

        Raises :class:`GolemMarketError` when no offer is acceptable.
        """
        seconds = check_seconds("duration_sec", duration_sec)
        package_options, market_options = self._scan_options(package, market)
        scan = scan_market(self.client, package_options, market_options, self._payment.platform(), timeout,
                           held=self._demands)
        return estimate_cost(scan, seconds)

    def _scan_options(self, package: Any, market: Any) -> Tuple[PackageOptions, MarketOptions]:
        with self._lock:
            if self._closing:
                raise GolemUserError("this GolemNetwork is closed; create a new one")
        options = merge_layers(self._layer, OptionLayer.parse({"package": package, "market": market},
                                                              where="scan_market"))
        return options.package, options.market

    def _log_cost_summary(self) -> None:
        summary = self.cost_summary()
        if summary.rows:
            logger.info("cost summary:\n%s", summary)

    # -- for Job -----------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closing:
            raise GolemUserError("this GolemNetwork is closed; create a new one")
        if not self._initialized:
            raise GolemUserError("GolemNetwork is not initialized: call init() or use it as a context manager")

    def _services(self, token: CancelToken) -> SharedServices:
        """The shared services, created by the first job that needs them (outside the lock).

        Jobs arriving while another creates them wait for it (a cancel ends the wait). A failure is
        given to every waiting job and to jobs arriving within ``SERVICES_RETRY_SEC``, then retried.
        """
        with self._lock:
            if self._services_obj is not None:
                return self._services_obj
            if self._closing:
                raise GolemCancelledError("the network is closing")
            failure = self._services_failure
            if failure is not None and time.monotonic() < failure[1]:
                raise _again(failure[0])
            pending = self._services_pending
            creator = pending is None
            if pending is None:
                pending = self._services_pending = Future()
        if creator:
            try:
                services = SharedServices(self.client, self._blocking, self.app_session_id, self.requestor_id or "",
                                          self._payment, self, ledger=self.costs, demands=self._demands)
            except BaseException as exc:
                with self._lock:
                    self._services_pending = None
                    self._services_failure = (exc, time.monotonic() + SERVICES_RETRY_SEC)
                pending.set_exception(exc)
                raise
            with self._lock:
                self._services_obj, self._services_pending, self._services_failure = services, None, None
            pending.set_result(services)
            return services
        arrived = threading.Event()
        pending.add_done_callback(lambda _f: arrived.set())
        remove = token.on_cancel(arrived.set)
        try:
            arrived.wait(self.client.config.request_timeout * 4 + 10.0)
        finally:
            remove()
        token.raise_if_cancelled()
        if not pending.done():
            raise GolemTimeoutError("the network's allocation was not ready in time", phase="allocation")
        try:
            return pending.result(0)
        except BaseException as exc:
            raise _again(exc) from None

    def _services_if_created(self) -> Optional[SharedServices]:
        """The shared services if they exist (cleanup must never create them)."""
        return self._services_obj

    def _job_finished(self, job: Job[Any]) -> None:
        """A finished job leaves memory with a store or a retention."""
        self.costs.job_finished(job.id)  # its cost rows may now age out (see CostLedger)
        if self._services_obj is not None:  # its cost cap no longer counts against payment.budget
            self._services_obj.budgets.job_finished(job.id)
        if self._store is not None:
            self._store.job_finished(job)
            with self._lock:  # the store has it now: memory stays flat however many jobs end
                self._jobs.pop(job.id, None)
            return
        if self._retention is not None:
            with self._lock:
                self._finished[job.id] = time.monotonic()
                self._evict_finished()

    def _evict_finished(self) -> None:
        """Drop finished jobs past the retention limits from the registry (lock held)."""
        assert self._retention is not None
        limit, age = self._retention.max_finished, self._retention.max_age_sec
        now = time.monotonic()
        while self._finished:
            job_id, ended = next(iter(self._finished.items()))
            if (limit is not None and len(self._finished) > limit) or (age is not None and now - ended > age):
                del self._finished[job_id]
                self._jobs.pop(job_id, None)
            else:
                break


class _NetworkRuntime(JobRuntime):
    """What a network gives its jobs (see :mod:`golem_sync._runtime`); a separate object, so the
    runtime-side methods stay off the network's public surface."""

    def __init__(self, network: GolemNetwork) -> None:
        self._network = network
        self._providers = FreshAgreements(network._services, network._services_if_created)

    @property
    def defaults(self) -> OptionLayer:
        return self._network._layer

    @property
    def costs(self) -> CostLedger:
        return self._network.costs

    @property
    def providers(self) -> ProviderSource:
        return self._providers

    def admit(self, become_pending: Callable[[], None]) -> None:
        network = self._network
        with network._lock:
            network._ensure_open()
            become_pending()

    def submit(self, fn: Callable[[], None]) -> "Future[None]":
        return self._network._executor.submit(fn)

    def spawn(self, fn: Callable[[], None]) -> None:
        network = self._network
        thread = threading.Thread(target=fn, name=f"{threads.PREFIX}job-nested", daemon=True)
        with network._lock:
            network._side_threads = [t for t in network._side_threads if t.is_alive()]
            network._side_threads.append(thread)
        thread.start()

    def persist(self, job: Job[Any]) -> None:
        if self._network._store is not None:
            self._network._store.persist(job)

    def job_finished(self, job: Job[Any]) -> None:
        self._network._job_finished(job)


class _PoolHost:
    """What the network gives its pools (:class:`golem_sync._pool.pool.PoolHost`)."""

    def __init__(self, network: GolemNetwork) -> None:
        self._network = network

    @property
    def runtime(self) -> JobRuntime:
        return self._network._runtime

    def services(self, token: CancelToken) -> SharedServices:
        return self._network._services(token)

    def services_if_created(self) -> Optional[SharedServices]:
        return self._network._services_if_created()

    def new_job(self, runtime: JobRuntime, layer: OptionLayer) -> Job[Any]:
        return self._network._new_job(runtime, layer)

    def pool_closed(self, pool: ProviderPool) -> None:
        network = self._network
        with network._lock:
            if pool in network._pools:
                network._pools.remove(pool)


#: How long close() waits for running jobs to end after cancelling them (their cleanup is bounded).
JOB_END_GRACE_SEC = 120.0
#: A failed creation of the shared services (e.g. an unfunded account) is reported to new jobs for
#: this long before it is tried again, so a burst of jobs does not hammer yagna.
SERVICES_RETRY_SEC = 5.0


def _again(exc: BaseException) -> BaseException:
    """A copy of a stored error to raise in another thread (one exception object per raise)."""
    try:
        twin = copy.copy(exc)
    except Exception:
        return exc
    twin.__cause__, twin.__traceback__ = exc.__cause__, None
    return twin


def _with_pool(config: YagnaConfig, max_workers: int) -> YagnaConfig:
    """Size the HTTP pool for the job threads and the long-poll threads."""
    wanted = max_workers * 3 + 8
    return config if config.pool_size >= wanted else attrs.evolve(config, pool_size=wanted)


def _version_tuple(text: str) -> tuple:  # type: ignore[type-arg]
    numbers = re.findall(r"\d+", text or "")
    return tuple(int(n) for n in numbers[:3]) if numbers else (0,)
