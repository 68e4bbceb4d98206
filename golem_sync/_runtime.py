"""The seam between a :class:`~golem_sync._job.Job` and what runs it.

A job is a handle (state, future, cancel, wait, signals); it knows nothing of the network that
runs it but this contract, the way ``concurrent.futures.Future`` knows its executor only through
the methods documented "for Executor implementations". :class:`JobRuntime` is what a job needs
from whatever runs it; :class:`ProviderSource` is where one run gets its provider from: a freshly
negotiated agreement today (:class:`golem_sync._leases.FreshAgreements`), a warm pool's lease
tomorrow. A second implementation of either plugs in without touching the handle.

Threads: every method may be called from any thread unless it says otherwise; none holds a lock
while it calls user code or yagna.
"""
from __future__ import annotations

import abc
import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Set, Tuple

import attrs

if TYPE_CHECKING:
    from ._activity import Activity
    from ._agreement import AgreementLease
    from ._cancel import CancelToken, Deadline
    from ._market.proposals import ProposalView
    from ._options import OptionLayer, RunOptions
    from ._work import ProviderInfo
    from ._work.costs import CostLedger
    from .yagna.client import YagnaClient

__all__ = ["JobRuntime", "ProviderSource", "Rental", "RunHandle", "isolated"]

logger = logging.getLogger("golem_sync.job")


class RunHandle(Protocol):
    """The job as its run sees it: :class:`~golem_sync._job.Job`'s methods "for the run"."""

    id: str

    @property
    def cancel_token(self) -> "CancelToken": ...

    @property
    def timed_out(self) -> bool: ...

    def mark_started(self, agreement_id: str, provider: "ProviderInfo") -> None: ...

    def mark_activity(self, activity_id: str) -> None: ...


@attrs.define(eq=False)
class Rental:
    """One run's hold on a provider, filled in by :meth:`ProviderSource.acquire` as it goes.

    Whatever is set when ``acquire`` raises is handed back to :meth:`ProviderSource.release`
    all the same, so a half-made rental is never leaked.
    """

    token: "CancelToken"
    lease: "Optional[AgreementLease]" = None
    activity: "Optional[Activity]" = None
    provider: "Optional[ProviderInfo]" = None
    proposal: "Optional[ProposalView]" = None
    client: "Optional[YagnaClient]" = None
    requestor_id: str = ""
    #: The activity is warm (a pool's): deployed, started and set up already, and it outlives the
    #: run (the work context hands it back instead of destroying it).
    warm: bool = False
    #: Run on every replacement activity the work context makes, before ``work.setup`` (a pool's setup).
    activity_setup: "Tuple[Callable[[Any], Any], ...]" = ()
    #: Set by the run before ``release`` when the attempt failed because of the provider (its
    #: activity or agreement was lost): what it holds must not be reused.
    provider_failed: bool = False

    @property
    def provider_id(self) -> Optional[str]:
        return self.lease.provider_id if self.lease is not None else None


class ProviderSource(abc.ABC):
    """Where a run gets its provider: an approved agreement with a started activity."""

    @abc.abstractmethod
    def acquire(self, rental: Rental, job: RunHandle, options: "RunOptions", startup: "Deadline",
                excluded: Set[str], on_signed: Callable[[str, "ProviderInfo"], None]) -> None:
        """Fill ``rental`` (on the job's thread); ``on_signed(agreement_id, provider)`` once signed.

        Raises what stopped it (a cancel, a timeout naming its phase, a provider failure); what it
        had already acquired stays in ``rental`` for :meth:`release`.
        """

    @abc.abstractmethod
    def release(self, rental: Rental, *, success: bool, reason: str) -> None:
        """Give back what ``rental`` holds (on the job's thread). Never raises, never creates anything."""


class JobRuntime(abc.ABC):
    """What a job needs from whatever runs it (a :class:`~golem_sync.GolemNetwork`)."""

    @property
    @abc.abstractmethod
    def defaults(self) -> "OptionLayer":
        """The option layer under every job's own options."""

    @property
    @abc.abstractmethod
    def costs(self) -> "CostLedger":
        """Where runs record usage and cost."""

    @property
    @abc.abstractmethod
    def providers(self) -> ProviderSource:
        """Where this runtime's runs get their providers."""

    @abc.abstractmethod
    def admit(self, become_pending: Callable[[], None]) -> None:
        """Call ``become_pending()`` if the runtime accepts new work, atomically with its closing.

        Raises :class:`~golem_sync.errors.GolemUserError` when it is closed or not initialised.
        """

    @abc.abstractmethod
    def submit(self, fn: Callable[[], None]) -> "Future[None]":
        """Queue ``fn`` to run on a thread of the runtime (``RuntimeError`` once it shut down)."""

    @abc.abstractmethod
    def spawn(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at once on a thread of its own, joined by the runtime when it closes.

        For a queued job another job's worker waits for: it must not need a pool thread.
        """

    def check_layer(self, layer: "OptionLayer", where: str) -> None:
        """Refuse options this runtime cannot honour for one job (``GolemConfigError``); all by default."""

    @abc.abstractmethod
    def persist(self, job: Any) -> None:
        """Record a state change of ``job`` (a :class:`~golem_sync._job.Job`; never raises)."""

    @abc.abstractmethod
    def job_finished(self, job: Any) -> None:
        """``job`` (a :class:`~golem_sync._job.Job`) has ended: record it; the runtime may now forget it."""


def isolated(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one cleanup step; log and swallow what it raises, so cleanup reaches its end."""
    try:
        return fn(*args, **kwargs)
    except Exception:
        logger.exception("cleanup: %s failed", what)
        return None
