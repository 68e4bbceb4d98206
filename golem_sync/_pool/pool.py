"""ProviderPool: jobs on providers kept warm, and a ``concurrent.futures.Executor`` over them.

``golem.create_pool(...)`` makes one. Its jobs are ordinary :class:`~golem_sync.Job` objects (id,
state, signals, cancel, timeouts, job store) whose provider comes from the pool's
:class:`~golem_sync._pool.keeper.LeaseKeeper` instead of a fresh negotiation, and whose threads
are the pool's own: at most ``size`` jobs run at once and the rest wait in a queue that holds no
thread. ``submit``/``map``/``shutdown`` follow ``ThreadPoolExecutor``.

The seam to the network is :class:`PoolHost` (what a pool needs from the network that owns it);
to its jobs, :class:`_PoolRuntime` (a :class:`~golem_sync._runtime.JobRuntime`).

Threads: every public method is safe from any thread. ``shutdown(wait=True)`` and ``close()``
refuse golem_sync's own threads (they would wait for themselves). A small lock guards admission
(closing is atomic with admitting a job); the keeper has its own.
"""
from __future__ import annotations

import logging
import threading
import uuid
import weakref
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Sequence, Tuple, Union

import attrs

from .. import signals, _threads as threads
from .._cancel import CancelToken
from ..errors import GolemCancelledError, GolemConfigError, GolemTimeoutError, GolemUserError
from .._job import Job
from .._options import OptionLayer, RunOptions, merge_layers
from .._package import check_package
from .._runtime import JobRuntime, ProviderSource
from .._services import SharedServices
from .._work.costs import CostLedger
from .keeper import Hooks, LeaseKeeper

__all__ = ["ProviderPool", "PoolStats", "PoolFuture", "PoolHost"]

logger = logging.getLogger("golem_sync.pool")

#: The option sections a pool job may set itself (the rest belong to the pool's leases).
JOB_SECTIONS = ("work", "job")
#: Why a pool job cannot have a cost cap (the debit notes are the lease's, not the job's).
_NO_MAX_COST = ("is not supported for pool jobs: a lease's debit notes and invoice cover every job it runs "
                "and its idle time, so no note can be refused for one job without ending the lease for the "
                "others; run capped jobs with golem.create_job()")
#: How long ``close()`` waits by default for the pool's jobs and leases to end.
CLOSE_TIMEOUT_SEC = 120.0


class PoolHost(Protocol):
    """What a pool needs from the network that owns it (``GolemNetwork`` implements it)."""

    @property
    def runtime(self) -> JobRuntime:
        """The network's runtime: option defaults, costs, admission, persistence."""

    def services(self, token: CancelToken) -> SharedServices:
        """The network's shared services, created if needed (a cancel ends the wait)."""

    def services_if_created(self) -> Optional[SharedServices]:
        """The shared services if they exist (cleanup never creates them)."""

    def new_job(self, runtime: JobRuntime, layer: OptionLayer) -> "Job[Any]":
        """A new job of the network (registered, stored) that runs through ``runtime``."""

    def pool_closed(self, pool: "ProviderPool") -> None:
        """The pool released everything; the network forgets it."""


@attrs.frozen
class PoolStats:
    """A snapshot of a pool (``pool.stats()``).

    ``idle``/``busy``/``starting``/``retiring`` count leases (``starting`` includes negotiations
    under way); ``waiting`` are jobs on a thread waiting for a lease, ``pending`` every started
    pool job not yet ended (queued or running). ``retired`` counts retired leases by reason
    (``idle_timeout``, ``expiring``, ``shutdown``, ``provider_terminated``, ``provider_violation``, ``provider_failed``,
    ``no_activity``, ``single_activity``, ``job_failed``, ``job_cancelled``, ``make_room``...).
    ``activities_created`` counts every activity on the pool's agreements, those a job made to replace
    one after a command timeout included.
    """

    size: int
    min_size: int
    idle: int
    busy: int
    starting: int
    retiring: int
    waiting: int
    pending: int
    jobs_run: int
    leases_created: int
    leases_retired: int
    retired: Mapping[str, int]
    activities_created: int
    last_error: Optional[str]


class PoolFuture(Future):  # type: ignore[type-arg]
    """What ``pool.submit`` returns: a Future of the job's result; ``future.job`` is the Job.

    ``cancel()`` works as ``ThreadPoolExecutor``'s: a job still queued is cancelled (it ends
    ``CANCELLED`` and the future is cancelled); a running one is left running (use
    ``future.job.cancel()`` to stop it). ``running()`` is true once the worker has a lease.
    """

    def __init__(self, job: "Job[Any]") -> None:
        super().__init__()
        self.job = job
        self._cancelling: Optional[int] = None  # the thread whose cancel() is ending the queued job
        self._marked_running = False  # written only by the job's thread (its worker runs one at a time)

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        self._cancelling = threading.get_ident()
        try:
            if not self.job.cancel_if_queued("cancelled through its future"):
                return False
        finally:
            self._cancelling = None
        cancelled = super().cancel()
        if cancelled:  # as an executor must: tell wait()/as_completed() waiters it is over
            self.set_running_or_notify_cancel()
        return cancelled

    def _mark_running(self) -> None:
        """The worker starts (on the job's thread); a retry on another lease starts it again."""
        if self._marked_running:
            return
        self._marked_running = True
        if not self.set_running_or_notify_cancel():
            raise GolemCancelledError("the future was cancelled before its worker started")

    def _settle(self, job: "Job[Any]") -> None:
        if self._cancelling == threading.get_ident() or self.done():
            return  # our own cancel() ends the job: the future becomes cancelled instead
        if job.error is None:
            self.set_result(job.results)
        else:
            self.set_exception(job.error)


def _stack(lower: OptionLayer, upper: OptionLayer) -> OptionLayer:
    sections: Dict[str, Dict[str, Any]] = {}
    for layer in (lower, upper):
        for name, values in layer.sections.items():
            sections.setdefault(name, {}).update(values)
    return OptionLayer(sections)


def _hooks(value: Any, name: str) -> Tuple[Callable[[Any], Any], ...]:
    if value is None:
        return ()
    items = (value,) if callable(value) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not all(callable(f) for f in items):
        raise GolemConfigError(f"{name} must be a function taking a WorkContext (or a list of them), got {value!r}")
    return tuple(items)


def _check_settings(size: Any, min_size: Any, idle_timeout_sec: Any, fresh_activity: Any) -> None:
    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not integer(size) or size < 1:
        raise GolemConfigError(f"size must be an integer >= 1 (the most agreements the pool holds), got {size!r}")
    if not integer(min_size) or not 0 <= min_size <= size:
        raise GolemConfigError(f"min_size must be an integer from 0 to size ({size}), got {min_size!r}")
    if idle_timeout_sec is not None and (isinstance(idle_timeout_sec, bool) or
                                         not isinstance(idle_timeout_sec, (int, float)) or idle_timeout_sec <= 0):
        raise GolemConfigError(f"idle_timeout_sec must be a positive number of seconds or None, got {idle_timeout_sec!r}")
    if not isinstance(fresh_activity, bool):
        raise GolemConfigError(f"fresh_activity must be True or False, got {fresh_activity!r}")


class ProviderPool(Executor):
    """Warm leases on providers, and an Executor whose calls run as jobs on them.

    Create it with :meth:`GolemNetwork.create_pool`. A lease is one agreement and its current
    activity, deployed, started and ``setup(ctx)`` done; it stays warm between jobs, so **files a
    job leaves on the provider are still there for the next job on that lease** (pass
    ``fresh_activity=True`` for a new activity per job: a clean file system, no new negotiation).
    """

    def __init__(self, host: PoolHost, layer: OptionLayer, *, size: int = 4, min_size: int = 0,
                 idle_timeout_sec: Optional[float] = 60.0, setup: Any = None, teardown: Any = None,
                 fresh_activity: bool = False, name: Optional[str] = None) -> None:
        _check_settings(size, min_size, idle_timeout_sec, fresh_activity)
        if "vpn" in layer.sections and layer.sections["vpn"].get("enabled"):
            raise GolemConfigError("pools do not support vpn yet: run VPN jobs with golem.create_job()")
        self.id = f"pool-{uuid.uuid4().hex[:12]}"
        self.name = name or self.id
        self.size = size
        self.min_size = min_size
        self._host = host
        self._layer = _stack(host.runtime.defaults, layer)
        options: RunOptions = merge_layers(self._layer)
        check_package(options.package)
        if options.job.max_cost is not None:
            raise GolemConfigError(f"create_pool: job.max_cost ({options.job.max_cost:g}) {_NO_MAX_COST}; "
                                   "if it is a GolemNetwork default, pass job={'max_cost': None} to create_pool")
        self._lock = threading.Lock()  # admission and closing
        self._closing = False
        self._jobs: "weakref.WeakSet[Job[Any]]" = weakref.WeakSet()  # created, not yet ended
        self._futures: "weakref.WeakKeyDictionary[Job[Any], PoolFuture]" = weakref.WeakKeyDictionary()
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"{threads.PREFIX}pool-job")
        self._closed = threading.Event()
        self._runtime = _PoolRuntime(self, host.runtime)
        self._keeper = LeaseKeeper(
            Hooks(sender=self, services=host.services, existing=host.services_if_created,
                  jobs_left=self._jobs_left, on_closed=self._on_closed),
            options, host.runtime.costs, size=size, min_size=min_size, idle_timeout_sec=idle_timeout_sec,
            fresh_activity=fresh_activity, setup=_hooks(setup, "setup"), teardown=_hooks(teardown, "teardown"))
        self._keeper.start()

    def __repr__(self) -> str:
        return f"<ProviderPool {self.name} size={self.size}>"

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, **options: Any) -> "Job[Any]":
        """A new job that runs on this pool's leases; options may set only ``work`` and ``job``."""
        layer = OptionLayer.parse(options, where="create_job")
        self._runtime.check_layer(layer, "create_job")
        with self._lock:
            if self._closing:
                raise GolemUserError(f"pool {self.name} is shut down; create a new one")
        job = self._host.new_job(self._runtime, layer)
        with self._lock:
            self._jobs.add(job)
        return job

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> PoolFuture:
        """Run ``fn(ctx, *args, **kwargs)`` as a job on a lease; returns its future (``future.job``)."""
        if not callable(fn):
            raise TypeError(f"fn must be callable (a function taking a WorkContext), got {type(fn).__name__}")
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
        job = self.create_job()
        future = PoolFuture(job)
        job.add_done_callback(future._settle)
        with self._lock:
            self._futures[job] = future

        def worker(ctx: Any) -> Any:
            future._mark_running()  # it has a lease: from here on, as a ThreadPoolExecutor future
            return fn(ctx, *args, **kwargs)

        try:
            job.start_work(worker)
        except GolemUserError as exc:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown") from exc
            raise
        return future

    def ready(self, timeout: Optional[float] = None) -> None:
        """Block until ``min_size`` leases are warm; :class:`GolemTimeoutError` (phase ``lease``) if not in time."""
        if self._keeper.ready(self.min_size, timeout):
            return
        if self._closing:
            raise GolemUserError(f"pool {self.name} is shut down")
        counts = self._keeper.counts()
        error = f"; last error: {counts.last_error}" if counts.last_error else ""
        raise GolemTimeoutError(f"pool {self.name}: {counts.idle + counts.busy} of {self.min_size} leases warm "
                                f"after {timeout:g}s{error}", phase="lease")

    def stats(self) -> PoolStats:
        """Leases idle/busy/starting, jobs run, leases created and retired (and why)."""
        counts = self._keeper.counts()
        return PoolStats(self.size, self.min_size, counts.idle, counts.busy, counts.starting, counts.retiring,
                         counts.waiting, self._jobs_left(), counts.jobs_run, counts.leases_created,
                         counts.leases_retired, counts.retired, counts.activities_created, counts.last_error)

    # -- closing -----------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``ThreadPoolExecutor.shutdown``, then release every lease (agreements terminated).

        No new job is accepted. ``cancel_futures`` cancels the jobs still queued; running ones
        finish. ``wait`` blocks until they have and every lease is released.
        """
        if wait and threads.owned():
            raise GolemUserError(f"pool.shutdown(wait=True) on golem_sync's thread {threads.name()!r} would wait "
                                 "for itself; shut the pool down from your own thread")
        with self._lock:
            first = not self._closing
            self._closing = True
            jobs = [(job, self._futures.get(job)) for job in self._jobs]
        if cancel_futures:  # as ThreadPoolExecutor: queued submissions end cancelled, futures too
            for job, future in jobs:
                if future is not None:
                    future.cancel()
                else:
                    job.cancel_if_queued("the pool is shutting down")
        if first:
            self._keeper.close()
            self._executor.shutdown(wait=False)
        if wait:
            self._keeper.join(None)
            self._executor.shutdown(wait=True)

    def close(self, timeout: Optional[float] = CLOSE_TIMEOUT_SEC) -> bool:
        """Cancel every job of the pool (queued or running) and release every lease.

        Returns False (and logs) if that did not finish within ``timeout`` seconds.
        """
        if threads.owned():
            raise GolemUserError(f"pool.close() on golem_sync's thread {threads.name()!r} would wait for itself")
        self.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            jobs = [job for job in self._jobs if job.is_running()]  # a job never started has nothing to end
        for job in jobs:
            job.request_cancel(f"pool {self.name} is closing")
        futures_wait([job.future for job in jobs], timeout=timeout)
        if not self._keeper.join(timeout):
            logger.error("pool %s: leases not released within %ss of close()", self.name, timeout)
            return False
        self._executor.shutdown(wait=True)
        return True

    @property
    def closed(self) -> bool:
        """True once every lease is released after shutdown."""
        return self._closed.is_set()

    def _jobs_left(self) -> int:
        with self._lock:
            return sum(1 for job in self._jobs if job.is_running())

    def _on_closed(self) -> None:
        self._closed.set()
        signals.emit(signals.pool_closed, self, stats=self.stats())
        self._host.pool_closed(self)

    # -- for _PoolRuntime --------------------------------------------------------------------

    def _admit(self, base: JobRuntime, become_pending: Callable[[], None]) -> None:
        with self._lock:
            if self._closing:
                raise GolemUserError(f"pool {self.name} is shut down; create a new one")
            base.admit(become_pending)

    def _submit(self, fn: Callable[[], None]) -> "Future[None]":
        return self._executor.submit(fn)

    def _job_ended(self, job: "Job[Any]") -> None:
        with self._lock:
            self._jobs.discard(job)
        self._keeper.poke()


class _PoolRuntime(JobRuntime):
    """What a pool gives its jobs: the network's runtime, with the pool's leases, threads and options."""

    def __init__(self, pool: ProviderPool, base: JobRuntime) -> None:
        self._pool = pool
        self._base = base

    @property
    def defaults(self) -> OptionLayer:
        return self._pool._layer

    @property
    def costs(self) -> CostLedger:
        return self._base.costs

    @property
    def providers(self) -> ProviderSource:
        return self._pool._keeper

    def check_layer(self, layer: OptionLayer, where: str) -> None:
        for section in layer.sections:
            if section not in JOB_SECTIONS:
                raise GolemConfigError(
                    f"{where}: a pool job cannot set {section!r} options (they belong to the pool's leases; "
                    f"create another pool for other {section} options); it may set: {', '.join(JOB_SECTIONS)}")
        if layer.sections.get("job", {}).get("max_cost") is not None:
            raise GolemConfigError(f"{where}: job.max_cost {_NO_MAX_COST}")
        if "env" in layer.sections.get("work", {}):
            raise GolemConfigError(f"{where}: work.env of a pool job cannot change its warm activity's environment "
                                   "(set it on the pool, or pass env= to ctx.run)")

    def admit(self, become_pending: Callable[[], None]) -> None:
        self._pool._admit(self._base, become_pending)

    def submit(self, fn: Callable[[], None]) -> "Future[None]":
        return self._pool._submit(fn)

    def spawn(self, fn: Callable[[], None]) -> None:
        self._base.spawn(fn)

    def persist(self, job: Any) -> None:
        self._base.persist(job)

    def job_finished(self, job: Any) -> None:
        try:
            self._base.job_finished(job)
        finally:
            self._pool._job_ended(job)
