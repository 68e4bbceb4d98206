"""The lease keeper: a warm pool's :class:`~golem_sync._runtime.ProviderSource`.

It holds up to ``size`` leases (an agreement plus a deployed, started and set-up activity), lends
an idle one to each job that asks, negotiates a new one when none is idle and there is room, and
otherwise queues the job (first come, first served, cancellably, within its startup timeout).
When a job gives a lease back:

- success: the lease is idle again, same activity (or, with ``fresh_activity``, a new activity
  is made for it in the background at once);
- the worker raised, a command timed out, the job was cancelled or timed out: the activity's
  state is unknown, so it is destroyed and the agreement gets a new one in the background;
- the provider failed (terminated the agreement, broke its terms): the whole lease is retired
  (the job is retried on another lease by the run, per ``job.max_retries``).

In the background the keeper keeps ``min_size`` leases warm, releases leases idle longer than
``idle_timeout_sec`` (down to ``min_size``) and leases whose agreement is about to expire, and
quietly drops idle leases whose provider ended the agreement. An agreement is never left without
an activity for longer than it takes to make the next one (providers break idle agreements).

Threads: ``acquire``/``release`` run on the borrowing job's thread. One keeper thread
(``golem-pool-keeper``) decides what to do in the background and hands the slow work (create,
activate, retire: REST calls and user setup/teardown) to a small executor
(``golem-pool-lease``). One lock (with one condition) guards the lease table, the waiting queue and
the counters; no REST call, signal or user code runs under it.
"""
from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple, Union

import attrs

from .. import signals, _threads as threads
from .._activity import Activity
from .._cancel import CancelToken, Deadline
from ..errors import GolemCancelledError, GolemError, GolemTimeoutError, YagnaError, YagnaTimeoutError
from .._leases import end_agreement, sign_agreement
from .._options import RunOptions, WorkOptions
from .._runtime import ProviderSource, Rental, RunHandle, isolated
from .._services import SharedServices
from .._work import ProviderInfo, WorkContext
from .._work.costs import CostLedger
from .lease import LeaseState, PoolLease

__all__ = ["LeaseKeeper", "KeeperCounts", "Hooks"]

logger = logging.getLogger("golem_sync.pool")

#: Tried again after this long when making a warm lease failed (doubling up to the maximum).
RETRY_FIRST_SEC = 2.0
RETRY_MAX_SEC = 60.0
#: A lease is not lent when its agreement expires within this (or a quarter of its lifetime, if less).
EXPIRY_MARGIN_SEC = 120.0
#: How long the keeper thread sleeps at most when nothing is due (it is woken by every change).
IDLE_WAKE_SEC = 30.0
#: How long the liveness probe of an idle lease after an outage waits for its exe-unit (at most the
#: job's startup time left); no answer by then counts as a lost activity.
LIVENESS_PROBE_SEC = 5.0
#: Retirements that end the activity gracefully (the pool's teardown runs first).
_GRACEFUL = frozenset({"idle_timeout", "expiring", "shutdown", "fresh_activity", "make_room"})

_CREATE = "create"  # a waiter's grant: negotiate a new lease yourself


@attrs.define(eq=False)
class _Waiter:
    excluded: Set[str]
    grant: "Union[PoolLease, str, None]" = None


@attrs.frozen
class KeeperCounts:
    """The keeper's counters (see :class:`~golem_sync._pool.pool.PoolStats`)."""

    idle: int
    busy: int
    starting: int
    retiring: int
    waiting: int
    leases_created: int
    leases_retired: int
    retired: Dict[str, int]
    activities_created: int
    jobs_run: int
    last_error: Optional[str]


@attrs.frozen
class Hooks:
    """What the keeper needs from its pool and network (a small contract; see ``ProviderPool``)."""

    sender: Any  #: the pool: sender of its signals, owner of its cost rows (``sender.id``)
    services: Callable[[CancelToken], SharedServices]
    existing: Callable[[], Optional[SharedServices]]
    jobs_left: Callable[[], int]  #: pool jobs not yet ended (the keeper drains once it is 0 after close)
    on_closed: Callable[[], None]  #: called on the keeper thread once everything is released


class LeaseKeeper(ProviderSource):
    """Leases of one pool; see the module doc."""

    def __init__(self, hooks: Hooks, options: RunOptions, costs: CostLedger, *, size: int, min_size: int,
                 idle_timeout_sec: Optional[float], fresh_activity: bool,
                 setup: Tuple[Callable[[Any], Any], ...], teardown: Tuple[Callable[[Any], Any], ...]) -> None:
        self._hooks = hooks
        self._pool = hooks.sender
        self._options = options
        self._costs = costs
        self._size = size
        self._min_size = min_size
        self._idle_timeout = idle_timeout_sec
        self._fresh = fresh_activity
        self._setup = setup
        # The pool's own context on an activity: deploy with the pool's env, run its teardown at the end.
        self._lease_work = WorkOptions(preparing_timeout_sec=options.work.preparing_timeout_sec,
                                       env=dict(options.work.env),
                                       teardown=teardown)  # type: ignore[arg-type]  # (attrs converter typing)
        lifetime = float(options.market.expiration_sec)
        self._lifetime = lifetime
        self._margin = min(EXPIRY_MARGIN_SEC, lifetime / 4)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._leases: Dict[str, PoolLease] = {}
        self._by_agreement: Dict[str, PoolLease] = {}
        self._creating = 0  # lease slots reserved for negotiations under way
        self._waiters: Deque[_Waiter] = collections.deque()
        self._doomed: List[Tuple[PoolLease, str, str]] = []  # to retire in the background: lease, key, detail
        self._pending = 0  # background tasks not finished
        self._closing = False
        self._drained = False
        self._token = CancelToken()  # the pool's: cancelled when it drains (ends background negotiations)
        self._next_id = 0
        self._created = 0
        self._activities = 0
        self._jobs_run = 0
        self._retired: Dict[str, int] = {}
        self._retry_at = 0.0
        self._retry_sec = RETRY_FIRST_SEC
        self._last_error: Optional[str] = None
        self._work = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{threads.PREFIX}pool-lease")
        self._thread = threading.Thread(target=self._loop, name=f"{threads.PREFIX}pool-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- the job's side (ProviderSource) -----------------------------------------------------

    def acquire(self, rental: Rental, job: RunHandle, options: RunOptions, startup: Deadline,
                excluded: Set[str], on_signed: Callable[[str, ProviderInfo], None]) -> None:
        token = rental.token
        token.raise_if_cancelled()
        services = self._hooks.services(token)
        rental.client, rental.requestor_id = services.client, services.requestor_id
        grant = self._wait_for_grant(token, startup, excluded)
        while isinstance(grant, PoolLease) and not self._still_alive(grant, services, token, startup):
            self._hand_back(grant, LeaseState.STARTING, functools.partial(
                self._renew_activity, grant, "activity_lost", graceful=False), count=False)
            grant = self._wait_for_grant(token, startup, excluded)
        if isinstance(grant, PoolLease):
            lease = grant
        else:
            lease = self._new_lease(services, token, startup, excluded, handle=job, rental=rental)
            with self._cond:
                lease.state = LeaseState.BUSY
        self._lend(lease, rental, job, services)
        on_signed(lease.agreement_id, lease.provider)

    def release(self, rental: Rental, *, success: bool, reason: str) -> None:
        agreement = rental.lease
        with self._cond:
            lease = self._by_agreement.get(agreement.agreement_id) if agreement is not None else None
        if lease is None or lease.state is not LeaseState.BUSY:
            return  # nothing was lent (the negotiation or activation failed and cleaned up after itself)
        if lease.unlink is not None:
            lease.unlink()
            lease.unlink = None
        if rental.activity is not None and rental.activity is not lease.activity:
            isolated("adopting the replacement activity", self._adopt, lease, rental.activity)
        if lease.activity is not None:
            lease.activity.lend(self._pool)
        services = self._hooks.existing()
        if services is not None:
            self._send_as(lease, services, self._pool)
        if lease.token.cancelled or rental.provider_failed:
            if lease.token.cancelled:
                key = "provider_violation" if lease.agreement.violation else "provider_terminated"
                detail = lease.agreement.violation or lease.agreement.provider_reason or lease.token.reason
            else:  # e.g. the activity was lost: the provider failed, not the job
                key, detail = "provider_failed", "the job failed because of the provider"
            self._hand_back(lease, LeaseState.RETIRING, lambda: self._retire_lease(lease, key, detail))
        elif not success or lease.activity is None or lease.activity.destroyed:
            why = reason.lower() if reason in ("Failed", "Cancelled") else "failed"
            self._hand_back(lease, LeaseState.STARTING,
                            lambda: self._renew_activity(lease, f"job_{why}", graceful=False))
        elif self._fresh:
            self._hand_back(lease, LeaseState.STARTING,
                            lambda: self._renew_activity(lease, "fresh_activity", graceful=True))
        else:
            self._hand_back(lease, LeaseState.IDLE, None)
        signals.emit(signals.lease_released, self._pool, lease=lease.info(), success=success)

    def _hand_back(self, lease: PoolLease, state: LeaseState, work: Optional[Callable[[], None]], *,
                   count: bool = True) -> None:
        with self._cond:
            lease.state = state
            if count:
                lease.jobs_run += 1
                self._jobs_run += 1
            if state is LeaseState.IDLE:
                lease.idle_since = time.monotonic()
                lease.outages_seen = self._outages_began()
            self._dispatch_locked()
        if work is not None:
            self._background(work)

    def _outages_began(self) -> int:
        services = self._hooks.existing()
        return services.outages.began if services is not None else 0

    def _still_alive(self, lease: PoolLease, services: SharedServices, token: CancelToken,
                     startup: Deadline) -> bool:
        """Whether an idle lease's activity still answers, asked only when yagna went away since the
        lease went idle: a restarted yagna has lost every running exe-unit, and the provider may not
        have noticed yet. One ``GET /activity/{id}/command``, which reaches the exe-unit itself.

        The probe runs through a lent abortable client on the helper pool, bounded by
        ``LIVENESS_PROBE_SEC`` (and the startup time left): no answer by then counts as a lost
        activity. A cancel of the job (``job.cancel()``, ``pool.close()``) ends it at once with
        GolemCancelledError, and a probe cut short by the startup deadline raises GolemTimeoutError
        (phase ``"lease"``); either way the lease goes back idle, unprobed, for the next job to ask.
        """
        if lease.activity is None or services.outages.began == lease.outages_seen:
            return True
        activity_id = lease.activity.activity_id
        limit = max(0.1, startup.cap(LIVENESS_PROBE_SEC))
        try:
            with services.blocking.reads(services.client, token) as reads:
                services.blocking.call(token, reads.activity.get_running_command, activity_id, timeout=limit,
                                       wait_limit=limit, phase="liveness probe")
        except GolemCancelledError:
            self._give_back_unprobed(lease)
            raise
        except (YagnaError, GolemTimeoutError) as exc:
            if token.cancelled or (isinstance(exc, (GolemTimeoutError, YagnaTimeoutError)) and startup.expired):
                self._give_back_unprobed(lease)
                token.raise_if_cancelled()
                raise GolemTimeoutError(f"the activity of pool lease {lease.lease_id} did not answer within the "
                                        f"startup timeout of {startup.seconds:g}s", phase="lease") from exc
            logger.info("pool lease %s on %s: its activity %s no longer answers after yagna went away (%s); "
                        "making a new one", lease.lease_id, lease.provider.name or lease.provider.id,
                        activity_id, exc)
            return False
        with self._cond:
            lease.outages_seen = services.outages.began
        return True

    def _wait_for_grant(self, token: CancelToken, startup: Deadline, excluded: Set[str]) -> Union[PoolLease, str]:
        waiter = _Waiter(set(excluded))
        remove = token.on_cancel(self._poke)
        try:
            with self._cond:
                if self._drained:
                    raise GolemCancelledError("the pool is shut down")
                self._waiters.append(waiter)
                self._dispatch_locked()
                while waiter.grant is None and not token.cancelled:
                    left = startup.remaining()
                    if left == 0.0:
                        break
                    self._cond.wait(left)
                grant = waiter.grant
                if grant is None:
                    self._waiters.remove(waiter)
                elif token.cancelled:  # granted as the cancel landed: give it to the next job
                    self._give_back_locked(grant)
                    grant = None
        finally:
            remove()
        if grant is None:
            token.raise_if_cancelled()
            raise GolemTimeoutError(f"no lease of the pool was free within {startup.seconds:g}s "
                                    f"(size {self._size}, all busy or starting)", phase="lease")
        return grant

    def _give_back_unprobed(self, lease: PoolLease) -> None:
        """The job gave up before its liveness probe answered: the lease is idle again, still to ask."""
        with self._cond:
            self._give_back_locked(lease)

    def _give_back_locked(self, grant: Union[PoolLease, str]) -> None:
        if isinstance(grant, PoolLease):
            grant.state = LeaseState.IDLE
        else:
            self._creating -= 1
        self._dispatch_locked()

    def _dispatch_locked(self) -> None:
        """Grant idle leases (most recently used first) and free slots to waiters, in order."""
        if self._waiters:
            now = time.monotonic()
            idle = sorted((lease for lease in self._leases.values()
                           if lease.state is LeaseState.IDLE and now < lease.usable_until),
                          key=lambda lease: -lease.idle_since)
            for waiter in list(self._waiters):
                lease = next((x for x in idle if x.provider.id not in waiter.excluded), None)
                if lease is not None:
                    idle.remove(lease)
                    lease.state = LeaseState.BUSY
                    waiter.grant = lease
                elif len(self._leases) + self._creating < self._size:
                    self._creating += 1
                    waiter.grant = _CREATE
                else:
                    spare = next((x for x in idle if x.provider.id in waiter.excluded), None)
                    if spare is not None:  # full of providers this job must avoid: make room
                        idle.remove(spare)
                        spare.state = LeaseState.RETIRING
                        self._doomed.append((spare, "make_room", "a job had to avoid its provider"))
                    continue
                self._waiters.remove(waiter)
        self._cond.notify_all()

    def _poke(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _lend(self, lease: PoolLease, rental: Rental, job: RunHandle, services: SharedServices) -> None:
        assert lease.activity is not None
        rental.lease, rental.provider, rental.proposal = lease.agreement, lease.provider, lease.agreement.proposal
        rental.activity, rental.warm, rental.activity_setup = lease.activity, True, self._setup
        lease.activity.lend(job)
        self._send_as(lease, services, job)
        attempt = rental.token

        def stop_attempt() -> None:
            attempt.cancel(lease.token.reason)

        lease.unlink = lease.token.on_cancel(stop_attempt)
        signals.emit(signals.lease_acquired, self._pool, lease=lease.info(), job=job)

    @staticmethod
    def _send_as(lease: PoolLease, services: SharedServices, sender: Any) -> None:
        """The agreement's signals (its termination, its notes) come from ``sender`` from now."""
        services.watcher.watch(lease.agreement, sender)
        services.payments.set_sender(lease.agreement_id, sender)

    # -- making, renewing and retiring leases ------------------------------------------------

    def _new_lease(self, services: SharedServices, token: CancelToken, startup: Deadline, excluded: Set[str], *,
                   handle: Any, rental: Optional[Rental] = None) -> PoolLease:
        """Negotiate a lease and make its activity (on the caller's thread; it holds a reserved slot)."""
        converted = False
        try:
            usable_until = time.monotonic() + self._lifetime - self._margin
            lease_token = CancelToken()
            agreement, provider = sign_agreement(services, self._options, handle, token, startup, excluded,
                                                 lease_token=lease_token, sender=self._pool)
            multi = agreement.proposal.properties.get("golem.srv.caps.multi-activity") is True
            with self._cond:
                self._next_id += 1
                lease = PoolLease(f"lease-{self._next_id}", agreement, provider, lease_token, usable_until, multi)
                self._creating -= 1
                converted = True
                self._leases[lease.lease_id] = lease
                self._by_agreement[agreement.agreement_id] = lease
                self._created += 1
        except BaseException:
            if not converted:
                with self._cond:
                    self._creating -= 1
                    self._dispatch_locked()
            raise
        if rental is not None:
            rental.lease, rental.provider = agreement, provider  # a retry then avoids this provider
        lease_token.on_cancel(lambda: self._lost(lease))
        try:
            self._activate(lease, services, token)
        except BaseException:
            self._retire_lease(lease, "no_activity", "its first activity did not start")
            raise
        signals.emit(signals.lease_created, self._pool, lease=lease.info())
        return lease

    def _activate(self, lease: PoolLease, services: SharedServices, token: CancelToken) -> None:
        """Create, deploy and start a new activity on the lease and run the pool's setup."""
        activity_token = lease.token.child()

        def stop_activation() -> None:
            activity_token.cancel(token.reason)

        unlink = token.on_cancel(stop_activation)
        try:
            activity = Activity.create(services.client, services.blocking, lease.agreement_id,
                                       self._options.activity, self._pool, activity_token)
            with self._cond:
                self._activities += 1
            context = self._context(lease, activity, activity_token, services, prepared=False)
            context.__enter__()  # deploy, start, pool setup (it closes itself if that fails)
            # Recorded as the baseline of the first job's share (short jobs do not read it themselves).
            try:
                context.get_usage()
            except GolemError as exc:  # no baseline: the first job's share counts from zero
                logger.debug("usage of new activity %s: %s", activity.activity_id, exc)
        finally:
            unlink()

    def _context(self, lease: PoolLease, activity: Activity, activity_token: CancelToken,
                 services: SharedServices, *, prepared: bool) -> WorkContext:
        def replaced(new: Activity) -> None:
            lease.activity = new

        context = WorkContext(activity, lease.provider, activity_token, self._lease_work, job=self._pool,
                              requestor_id=services.requestor_id, proposal=lease.agreement.proposal,
                              ledger=self._costs, prepared=prepared, activity_setup=self._setup,
                              on_activity=replaced)
        lease.activity, lease.context, lease.activity_token = activity, context, activity_token
        return context

    def _adopt(self, lease: PoolLease, activity: Activity) -> None:
        """The job replaced the lease's activity (after a command timeout): the pool keeps the new one."""
        services = self._hooks.existing()
        with self._cond:
            self._activities += 1  # the job made it (on the lease's agreement)
        old = lease.context
        if old is not None and lease.activity_token is not None:
            lease.activity_token.cancel("replaced")
            old.__exit__(None, None, None)  # the old activity is destroyed already; no teardown
        lease.activity = lease.context = None
        if services is not None and not activity.destroyed:
            self._context(lease, activity, lease.token.child(), services, prepared=True).__enter__()

    def _end_activity(self, lease: PoolLease, graceful: bool) -> None:
        context, token = lease.context, lease.activity_token
        if context is not None:
            if not graceful and token is not None:
                token.cancel("retired")  # its state is unknown: no teardown
            isolated("closing the lease's activity", context.__exit__, None, None, None)
        elif lease.activity is not None:
            isolated("destroying the lease's activity", lease.activity.destroy)
        lease.activity = lease.context = lease.activity_token = None

    def _renew_activity(self, lease: PoolLease, key: str, *, graceful: bool) -> None:
        """Destroy the lease's activity and make a new one; retire the lease if that cannot be done."""
        services = self._hooks.existing()
        if (services is None or not lease.multi_activity or lease.token.cancelled or self._drained
                or time.monotonic() >= lease.usable_until):
            detail = "the agreement allows one activity" if not lease.multi_activity else key
            self._retire_lease(lease, key if lease.multi_activity else "single_activity", detail, graceful=graceful)
            return
        self._end_activity(lease, graceful)
        try:
            self._activate(lease, services, self._token)
        except BaseException as exc:
            logger.warning("pool lease %s on %s: no new activity (%s); retiring it", lease.lease_id,
                           lease.provider.name or lease.provider.id, exc)
            self._retire_lease(lease, "no_activity", str(exc))
            return
        with self._cond:
            lease.state = LeaseState.IDLE
            lease.idle_since = time.monotonic()
            lease.outages_seen = self._outages_began()
            self._dispatch_locked()

    def _retire_lease(self, lease: PoolLease, key: str, detail: str, *, graceful: Optional[bool] = None) -> None:
        """End the lease: its activity (teardown first when graceful), its agreement. Never raises."""
        if graceful is None:
            graceful = key in _GRACEFUL
        with self._cond:
            lease.state = LeaseState.RETIRING
        # From here on the agreement's end is ours, even when the provider gets there first (a
        # single-activity provider closes it as soon as its activity is destroyed).
        lease.agreement.released = True
        self._end_activity(lease, graceful=graceful and not lease.token.cancelled)
        services = self._hooks.existing()
        if services is not None:
            end_agreement(services, lease.agreement, f"pool: {key.replace('_', ' ')}",
                          success=lease.agreement.violation is None)
        isolated("closing the lease's cost row", self._costs.agreement_finished, lease.agreement_id)
        with self._cond:
            self._leases.pop(lease.lease_id, None)
            self._by_agreement.pop(lease.agreement_id, None)
            self._retired[key] = self._retired.get(key, 0) + 1
            self._dispatch_locked()
        logger.info("pool lease %s (agreement %s on %s) retired: %s", lease.lease_id, lease.agreement_id,
                    lease.provider.name or lease.provider.id, detail)
        signals.emit(signals.lease_retired, self._pool, lease=lease.info(), reason=key, detail=detail)

    def _lost(self, lease: PoolLease) -> None:
        """The provider ended the agreement or broke its terms (a poller's thread: be quick)."""
        with self._cond:
            if lease.state is LeaseState.IDLE:  # a busy lease is handled when its job gives it back
                lease.state = LeaseState.RETIRING
                key = "provider_violation" if lease.agreement.violation else "provider_terminated"
                self._doomed.append((lease, key, lease.token.reason))
            self._cond.notify_all()

    def _create_warm(self) -> None:
        """Make one warm lease in the background (a slot is reserved)."""
        try:
            try:
                services = self._hooks.services(self._token)
            except BaseException:
                with self._cond:
                    self._creating -= 1  # _new_lease returns the slot itself on failure
                raise
            startup = Deadline(self._options.job.startup_timeout_sec)
            lease = self._new_lease(services, self._token, startup, set(), handle=self._pool)
        except BaseException as exc:
            with self._cond:
                if not self._drained:
                    self._last_error = str(exc) or type(exc).__name__
                    self._retry_at = time.monotonic() + self._retry_sec
                    logger.warning("pool: making a warm lease failed (%s); trying again in %.0fs",
                                   self._last_error, self._retry_sec)
                    self._retry_sec = min(RETRY_MAX_SEC, self._retry_sec * 2)
                self._cond.notify_all()
            if not isinstance(exc, Exception):
                raise
            return
        with self._cond:
            self._retry_sec = RETRY_FIRST_SEC
            lease.state = LeaseState.IDLE
            lease.idle_since = time.monotonic()
            lease.outages_seen = self._outages_began()
            self._dispatch_locked()

    def _background(self, work: Callable[[], None]) -> None:
        with self._cond:
            self._pending += 1

        def run() -> None:
            try:
                work()
            except Exception:
                logger.exception("pool: background work failed")
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

        try:
            self._work.submit(run)
        except RuntimeError:  # shut down (only after the keeper drained): run it here
            run()

    # -- the keeper thread -------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    retire, create, done = self._plan_locked()
                    if done:
                        break
                    if not retire and not create:
                        self._cond.wait(self._next_wake_locked())
                        continue
                for lease, key, detail in retire:
                    self._background(lambda lease=lease, key=key, detail=detail:  # type: ignore[misc]
                                     self._retire_lease(lease, key, detail))
                for _ in range(create):
                    self._background(self._create_warm)
        finally:
            self._work.shutdown(wait=True)
            isolated("closing the pool", self._hooks.on_closed)

    def _plan_locked(self) -> Tuple[List[Tuple[PoolLease, str, str]], int, bool]:
        now = time.monotonic()
        retire, self._doomed = self._doomed, []
        if self._closing and not self._drained and self._hooks.jobs_left() == 0:
            self._drained = True
            self._token.cancel("the pool is shut down")
        if self._drained:
            for lease in self._leases.values():
                if lease.state is LeaseState.IDLE:
                    lease.state = LeaseState.RETIRING
                    retire.append((lease, "shutdown", "the pool shut down"))
            done = not retire and not self._leases and self._creating == 0 and self._pending == 0
            return retire, 0, done
        count = len(self._leases) - sum(1 for lease in self._leases.values() if lease.state is LeaseState.RETIRING)
        count += self._creating
        for lease in sorted(self._leases.values(), key=lambda lease: lease.idle_since):
            if lease.state is not LeaseState.IDLE:
                continue
            if now >= lease.usable_until:
                lease.state = LeaseState.RETIRING
                retire.append((lease, "expiring", "its agreement expires soon"))
                count -= 1
            elif self._idle_timeout is not None and now - lease.idle_since >= self._idle_timeout \
                    and count > self._min_size:
                lease.state = LeaseState.RETIRING
                retire.append((lease, "idle_timeout", f"idle for {self._idle_timeout:g}s"))
                count -= 1
        create = 0
        if not self._closing and now >= self._retry_at:
            create = max(0, min(self._min_size, self._size) - count)
            create = min(create, self._size - len(self._leases) - self._creating)
            self._creating += max(0, create)
        return retire, max(0, create), False

    def _next_wake_locked(self) -> float:
        now = time.monotonic()
        wake = now + IDLE_WAKE_SEC
        for lease in self._leases.values():
            if lease.state is LeaseState.IDLE:
                wake = min(wake, lease.usable_until)
                if self._idle_timeout is not None:
                    wake = min(wake, lease.idle_since + self._idle_timeout)
        if self._retry_at > now:
            wake = min(wake, self._retry_at)
        return max(0.01, wake - now)

    # -- the pool's side ---------------------------------------------------------------------

    def close(self) -> None:
        """Take no new work; release every lease once the pool's last job has ended."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def poke(self) -> None:
        """Something the keeper waits for changed (a pool job ended)."""
        self._poke()

    def join(self, timeout: Optional[float]) -> bool:
        """Wait until everything is released; False if ``timeout`` ran out first."""
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def ready(self, count: int, timeout: Optional[float]) -> bool:
        """Wait until ``count`` leases are warm (idle or busy); False on timeout or close."""
        deadline = Deadline(timeout)
        with self._cond:
            while True:
                warm = sum(1 for lease in self._leases.values()
                           if lease.state in (LeaseState.IDLE, LeaseState.BUSY))
                if warm >= count:
                    return True
                left = deadline.remaining()
                if left == 0.0 or self._closing:
                    return False
                self._cond.wait(left)

    @property
    def last_error(self) -> Optional[str]:
        return self._last_error

    def counts(self) -> KeeperCounts:
        with self._cond:
            states = collections.Counter(lease.state for lease in self._leases.values())
            return KeeperCounts(
                idle=states[LeaseState.IDLE], busy=states[LeaseState.BUSY],
                starting=states[LeaseState.STARTING] + self._creating, retiring=states[LeaseState.RETIRING],
                waiting=len(self._waiters), leases_created=self._created,
                leases_retired=sum(self._retired.values()), retired=dict(self._retired),
                activities_created=self._activities, jobs_run=self._jobs_run, last_error=self._last_error)
