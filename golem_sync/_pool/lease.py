"""One lease of a warm pool: an agreement plus its current, deployed and set-up activity.

Threads: a :class:`PoolLease` is a record of :class:`~golem_sync._pool.keeper.LeaseKeeper`; its
``state`` and ``idle_since`` change only under the keeper's lock. The activity fields are written
by whichever thread holds the lease at the time (the job that borrowed it, or the keeper's
background thread that activates or retires it), never by two at once.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Callable, Optional

import attrs

from .._agreement import AgreementLease
from .._cancel import CancelToken
from .._work import ProviderInfo

if TYPE_CHECKING:
    from .._activity import Activity
    from .._work import WorkContext

__all__ = ["LeaseState", "PoolLease", "LeaseInfo"]


class LeaseState(enum.Enum):
    """Where a lease is in its life."""

    STARTING = "starting"  # its activity is being created, deployed and set up
    IDLE = "idle"  # warm, waiting for a job
    BUSY = "busy"  # lent to a job
    RETIRING = "retiring"  # being released (activity destroyed, agreement terminated)


@attrs.frozen
class LeaseInfo:
    """What signals and stats tell about a lease (an immutable snapshot)."""

    lease_id: str
    agreement_id: str
    provider: ProviderInfo
    activity_id: Optional[str]
    jobs_run: int


@attrs.define(eq=False)
class PoolLease:
    """An agreement held by a pool and the activity it runs now."""

    lease_id: str
    agreement: AgreementLease
    provider: ProviderInfo
    #: Cancelled when the provider terminates the agreement or breaks its terms (``agreement.token``).
    token: CancelToken
    #: ``time.monotonic()`` after which the agreement is too close to its expiration to lend.
    usable_until: float
    multi_activity: bool
    state: LeaseState = LeaseState.STARTING
    activity: "Optional[Activity]" = None
    context: "Optional[WorkContext]" = None  # the pool's context on ``activity`` (deploy, setup, teardown)
    activity_token: Optional[CancelToken] = None  # the current activity's (a child of ``token``)
    idle_since: float = 0.0
    outages_seen: int = 0  # the network's ``OutageLog.began`` when the lease last went idle
    jobs_run: int = 0
    unlink: Optional[Callable[[], None]] = None  # ends the link of ``token`` to the borrowing job's token

    @property
    def agreement_id(self) -> str:
        return self.agreement.agreement_id

    def info(self) -> LeaseInfo:
        activity = self.activity
        return LeaseInfo(self.lease_id, self.agreement_id, self.provider,
                         activity.activity_id if activity is not None else None, self.jobs_run)
