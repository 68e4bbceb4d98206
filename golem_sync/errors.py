"""One exception hierarchy for everything golem_sync raises.

``GolemError`` is the root. Catch it to handle any failure of the library;
catch a subclass to handle one kind. Every error carries a message that says
what happened and where; errors from yagna also carry the HTTP method, the
path and yagna's own message. No error ever contains the app key.

``GolemNoProposalError`` is both a ``GolemTimeoutError`` (the startup deadline ran
out) and a ``GolemMarketError`` (the market had no acceptable proposal by then).
"""
from __future__ import annotations

from concurrent.futures import CancelledError
from decimal import Decimal
from typing import TYPE_CHECKING, Mapping, Optional

if TYPE_CHECKING:
    from ._market.report import MarketReport

__all__ = [
    "GolemError",
    "GolemStoreError",
    "GolemInterruptedError",
    "GolemRemoteJobError",
    "GolemConfigError",
    "GolemUserError",
    "GolemTimeoutError",
    "GolemCancelledError",
    "GolemWorkError",
    "GolemMarketError",
    "GolemNoProposalError",
    "GolemAgreementError",
    "GolemActivityError",
    "GolemPaymentError",
    "GolemBudgetError",
    "GolemOverchargeError",
    "YagnaError",
    "YagnaUnreachableError",
    "YagnaLostError",
    "YagnaAuthError",
    "YagnaNotFoundError",
    "YagnaRequestError",
    "YagnaTimeoutError",
    "YagnaServerError",
    "YagnaProtocolError",
    "YagnaResponseTooLargeError",
]


class GolemError(Exception):
    """Root of every error golem_sync raises."""


class GolemConfigError(GolemError, ValueError):
    """An option or argument is invalid. The message names the option."""


class GolemUserError(GolemError):
    """The API was used in a way it does not allow (e.g. waiting on a job never started)."""


class GolemTimeoutError(GolemError, TimeoutError):
    """A time limit set by the caller (or a default) ran out.

    ``phase`` names what was being waited for (e.g. ``"proposal"``, ``"agreement"``, ``"batch"``).
    ``market_report``: on a startup timeout (phase ``"proposal"`` or ``"agreement"``), what the
    market showed meanwhile (a :class:`~golem_sync.MarketReport`: offers seen, why they were
    rejected, the providers' refusals); ``None`` otherwise.
    """

    market_report: "Optional[MarketReport]" = None

    def __init__(self, message: str, *, phase: Optional[str] = None) -> None:
        super().__init__(message)
        self.phase = phase


class GolemCancelledError(GolemError, CancelledError):
    """The operation was cancelled through its cancellation token (e.g. ``job.cancel()``).

    It is also a ``concurrent.futures.CancelledError``, so code written for futures sees a
    cancelled job's error as a cancellation.
    """


class GolemWorkError(GolemError):
    """Work on a provider failed (deployment, a command, a transfer)."""


class GolemMarketError(GolemError):
    """The market could not produce a usable proposal (no proposal came, every one was rejected)."""


class GolemNoProposalError(GolemTimeoutError, GolemMarketError):
    """The startup deadline ran out before any acceptable proposal came.

    ``phase`` is ``"proposal"`` when no proposal came at all, ``"agreement"`` when proposals came
    but golem_sync rejected every one (the phases are those of the plain timeout raised before).
    ``proposals_seen`` counts the proposals received; ``rejections`` counts them by the reason
    they were rejected (e.g. ``{"rejected by proposal_filter": 3}``).
    """

    def __init__(self, message: str, *, phase: Optional[str] = None, proposals_seen: int = 0,
                 rejections: Optional[Mapping[str, int]] = None) -> None:
        super().__init__(message, phase=phase)
        self.proposals_seen = proposals_seen
        self.rejections = dict(rejections or {})


class GolemAgreementError(GolemError):
    """An agreement could not be made, or the provider ended it."""


class GolemActivityError(GolemWorkError):
    """An activity could not be created, used or destroyed."""


class GolemPaymentError(GolemError):
    """The allocation, a debit note or an invoice could not be handled."""


class GolemBudgetError(GolemPaymentError):
    """A job would cost more than its ``job.max_cost``, or its cap does not fit in ``payment.budget``.

    ``max_cost`` is the job's cap; ``amount`` what it would have been billed in total (or, at
    start, the sum of the running jobs' caps with this one), in the payment token (GLM/tGLM).
    """

    def __init__(self, message: str, *, max_cost: Optional[float] = None,
                 amount: Optional[Decimal] = None) -> None:
        super().__init__(message)
        self.max_cost = max_cost
        self.amount = amount


class GolemOverchargeError(GolemPaymentError):
    """A provider billed more than the agreed prices allow for the usage and time (see ``golem_sync._payment.prices``).

    ``amount`` is what the debit note or invoice asked, ``allowed`` the most the agreement allows
    with the tolerance (both in the payment token); ``agreement_id`` and ``document_id`` name them.
    """

    def __init__(self, message: str, *, amount: Decimal, allowed: Decimal, agreement_id: str = "",
                 document_id: str = "") -> None:
        super().__init__(message)
        self.amount = amount
        self.allowed = allowed
        self.agreement_id = agreement_id
        self.document_id = document_id


class YagnaError(GolemError):
    """yagna answered with an error, or could not be talked to.

    Attributes:
        status: the HTTP status code, or ``None`` when no answer arrived.
        method: the HTTP method of the failed call.
        path: the path of the failed call, relative to the yagna API root.
        detail: yagna's own message (from its ``{"message": ...}`` body), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        method: Optional[str] = None,
        path: Optional[str] = None,
        detail: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path
        self.detail = detail


class YagnaUnreachableError(YagnaError):
    """No connection to yagna (not running, wrong URL, connection reset)."""


class YagnaLostError(YagnaUnreachableError, GolemActivityError):
    """yagna became unreachable while a job's activity was in use (stopped, restarting, the
    connection broke): the work in flight is lost, as the provider's exe-unit ends with yagna.

    It is also a :class:`GolemActivityError`, so ``job.max_retries`` retries the job on a fresh
    agreement (negotiating waits for yagna to answer again, within the startup timeout).
    """


class YagnaAuthError(YagnaError):
    """yagna rejected the app key (HTTP 401 or 403)."""


class YagnaNotFoundError(YagnaError):
    """yagna does not know the resource (HTTP 404 or 410)."""


class YagnaRequestError(YagnaError):
    """yagna rejected the request as invalid (HTTP 400, 409 or another 4xx)."""


class YagnaTimeoutError(YagnaError, TimeoutError):
    """yagna did not answer in time (HTTP 408 outside long polls, or a client-side timeout)."""


class YagnaServerError(YagnaError):
    """yagna failed internally (HTTP 5xx) and retries, where allowed, did not help."""


class YagnaProtocolError(YagnaError):
    """yagna answered with a body golem_sync cannot understand (malformed JSON, wrong shape)."""


class YagnaResponseTooLargeError(YagnaProtocolError):
    """yagna's answer was larger than the call allows (``limit`` bytes), e.g. a provider's output
    beyond ``work.max_output_bytes``; it was not read past the limit."""

    def __init__(self, message: str, *, limit: int, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.limit = limit


class GolemStoreError(GolemError):
    """The job store failed, or a stored value cannot be used (e.g. a result that could not be saved)."""


class GolemInterruptedError(GolemError):
    """The process running the job ended before the job did; the job was recovered as ``rejected``."""


class GolemRemoteJobError(GolemError):
    """A job run by another process failed with an error this process cannot rebuild.

    ``type_name`` is the original exception's class name; the message is its text.
    """

    def __init__(self, message: str, *, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name


def is_transient(error: BaseException) -> bool:
    """Whether trying the same yagna call again may succeed: a 5xx, a timeout or no connection.

    ``501 Not Implemented`` is not transient: that yagna will never do it.
    """
    if isinstance(error, YagnaServerError):
        return error.status != 501
    return isinstance(error, (YagnaTimeoutError, YagnaUnreachableError))


def has_transient_cause(error: BaseException) -> bool:
    """Whether ``error`` is, or was caused by (``__cause__``/``__context__``, 10 levels), a transient
    yagna failure (:func:`is_transient`): the requestor's own yagna failed, which says nothing
    against the provider on the other side."""
    cause: Optional[BaseException] = error
    for _ in range(10):
        if cause is None:
            return False
        if is_transient(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
