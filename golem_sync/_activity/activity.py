"""One activity on one agreement.

Threads: an :class:`Activity` is owned by its job's thread. ``destroy`` is idempotent and is the
one call made on every exit path (success, worker error, cancellation, timeout).
"""
from __future__ import annotations

import logging
from typing import Any, Iterator, List, Optional, Sequence

from .. import signals
from .._abandonable import AbandonableCalls
from .._cancel import CancelToken, Deadline
from ..errors import (GolemActivityError, GolemTimeoutError, YagnaError, YagnaLostError,
                      YagnaResponseTooLargeError, YagnaTimeoutError, YagnaUnreachableError)
from .._options import ActivityOptions
from ..yagna.activity import BatchStream
from ..yagna.client import YagnaClient
from ..yagna.models import Command, ExeScriptCommandResult
from .destroy import destroy_activity

__all__ = ["Activity"]

logger = logging.getLogger("golem_sync.activity")


class Activity:
    """An activity: executes batches and is destroyed exactly once."""

    def __init__(self, client: YagnaClient, blocking: AbandonableCalls, activity_id: str, agreement_id: str,
                 options: ActivityOptions, sender: Any) -> None:
        self._client = client
        self._blocking = blocking
        self.activity_id = activity_id
        self.agreement_id = agreement_id
        self._options = options
        self._sender = sender
        self.destroyed = False

    @property
    def client(self) -> YagnaClient:
        """The yagna client this activity talks through (for services beside it: transfers, VPN, polls)."""
        return self._client

    @property
    def options(self) -> ActivityOptions:
        """The activity options it was created with (execute timeout, result poll)."""
        return self._options

    @property
    def sender(self) -> Any:
        """The sender of this activity's signals (its job, or the pool that keeps it)."""
        return self._sender

    def lend(self, sender: Any) -> None:
        """Send this activity's signals as ``sender`` from now (a pool lends its activity to a job)."""
        self._sender = sender

    @classmethod
    def create(cls, client: YagnaClient, blocking: AbandonableCalls, agreement_id: str, options: ActivityOptions,
               sender: Any, token: Optional[CancelToken] = None) -> "Activity":
        """Create an activity.

        yagna's create blocks until the provider's exe-unit is up (0.76-1.5 s on the devnet). With a
        ``token``, a cancel ends the wait at once; the activity that yagna creates afterwards is then
        destroyed as soon as its id arrives, so it never outlives the cancelled job.
        """

        def destroy_late(activity_id: str) -> None:
            logger.debug("destroying activity %s created after its job gave up", activity_id)
            destroy_activity(client, activity_id, options.destroy_timeout_sec)
            signals.emit(signals.activity_destroyed, sender, activity_id=activity_id)

        try:
            if token is None:
                activity_id = client.activity.create_activity(agreement_id, timeout=options.create_timeout_sec)
            else:
                activity_id = blocking.call(token, client.activity.create_activity, agreement_id,
                                            timeout=options.create_timeout_sec, on_abandon=destroy_late)
        except YagnaError as exc:
            raise activity_error(f"could not create an activity on agreement {agreement_id}: {exc}", exc) from exc
        signals.emit(signals.activity_created, sender, activity_id=activity_id, agreement_id=agreement_id)
        return cls(client, blocking, activity_id, agreement_id, options, sender)

    def execute(self, commands: Sequence[Command], token: CancelToken,
                timeout: Optional[float] = None, *, max_body: Optional[int] = None) -> List[ExeScriptCommandResult]:
        """Run a batch and wait for all its results (or the first error, which ends the batch).

        ``max_body`` bounds each result poll's answer in bytes (see :meth:`iter_results`)."""
        batch_id = self.send(commands, token)
        try:
            results = self.collect(batch_id, len(commands), token, timeout, max_body=max_body)
        except BaseException as exc:
            signals.emit(signals.batch_failed, self._sender, activity_id=self.activity_id, batch_id=batch_id,
                         error=exc)
            raise
        signals.emit(signals.batch_finished, self._sender, activity_id=self.activity_id, batch_id=batch_id,
                     results=results)
        return results

    def collect(self, batch_id: str, size: int, token: CancelToken,
                timeout: Optional[float] = None, *, max_body: Optional[int] = None) -> List[ExeScriptCommandResult]:
        """Every result of the batch, once it has finished (or ended at its first error)."""
        return list(self.iter_results(batch_id, size, token, timeout, max_body=max_body))

    # -- streams, partial results and usage (work-stream) -----------------------------------

    def send(self, commands: Sequence[Command], token: CancelToken) -> str:
        """Send a batch without waiting; returns its batch id (``batch_sent`` is emitted)."""
        if not commands:
            raise GolemActivityError("an ExeScript batch needs at least one command")
        token.raise_if_cancelled()
        try:
            batch_id = self._client.activity.exec(self.activity_id, list(commands))
        except YagnaError as exc:
            raise activity_error(f"activity {self.activity_id} refused the batch: {exc}", exc) from exc
        signals.emit(signals.batch_sent, self._sender, activity_id=self.activity_id, batch_id=batch_id,
                     commands=list(commands))
        return batch_id

    def iter_results(self, batch_id: str, size: int, token: CancelToken,
                     timeout: Optional[float] = None, *,
                     max_body: Optional[int] = None) -> Iterator[ExeScriptCommandResult]:
        """Yield each command's result as soon as it is finished (long polls on the cumulative list).

        Ends after the last result or the first one that ends the batch (an error). Raises
        GolemTimeoutError (phase ``"batch"``) when the batch is not done within ``timeout``, and
        GolemActivityError when the provider's answer breaks the protocol: a result whose index is
        not its command's (out of range, duplicated, out of order), more results than commands, or
        a poll's answer larger than ``max_body`` bytes (read no further).
        """
        limit = timeout if timeout is not None else self._options.execute_timeout_sec
        deadline = Deadline(limit)
        seen = 0
        # The polls run on the caller's thread through a lent abortable client: a cancel aborts
        # the HTTP request itself, so the wait ends at once without a helper thread per poll.
        with self._blocking.reads(self._client, token) as reads:
            while True:
                token.raise_if_cancelled()
                if deadline.expired:
                    raise GolemTimeoutError(
                        f"batch {batch_id} on activity {self.activity_id} did not finish within {limit:g}s",
                        phase="batch")
                try:
                    results = reads.activity.get_batch_results(
                        self.activity_id, batch_id, timeout=max(0.1, deadline.cap(self._options.result_poll_sec)),
                        command_index=seen, max_body=max_body)
                except YagnaTimeoutError:
                    continue  # yagna's 408: command ``seen`` is not finished yet
                except YagnaResponseTooLargeError as exc:
                    raise GolemActivityError(
                        f"the results of batch {batch_id} on activity {self.activity_id} are larger than "
                        f"{exc.limit} bytes: the provider sent more output than the cap asked for "
                        f"(work.max_output_bytes); not read further") from exc
                except YagnaError as exc:
                    token.raise_if_cancelled()  # the cancel aborted the poll
                    if isinstance(exc, YagnaUnreachableError):
                        raise activity_error(f"yagna became unreachable while batch {batch_id} ran on activity "
                                             f"{self.activity_id}: {exc}", exc) from exc
                    raise GolemActivityError(
                        f"reading results of batch {batch_id} on activity {self.activity_id} failed: "
                        f"{exc}{self._state_hint()}") from exc
                _check_indices(results, seen, size, f"batch {batch_id} on activity {self.activity_id}")
                for result in results[seen:]:
                    seen += 1
                    yield result
                    if result.is_batch_finished or seen >= size:
                        return

    def stream(self, batch_id: str, read_timeout: float) -> BatchStream:
        """Open the batch's SSE event stream (the caller must close it)."""
        try:
            return self._client.activity.stream_batch(self.activity_id, batch_id, read_timeout=read_timeout)
        except YagnaError as exc:
            raise activity_error(
                f"could not open the event stream of batch {batch_id} on activity {self.activity_id}: {exc}", exc
            ) from exc

    def usage(self) -> Optional[List[float]]:
        """The last usage vector the provider reported (``None`` before the first report)."""
        try:
            return self._client.activity.get_usage(self.activity_id).current_usage
        except YagnaError as exc:
            raise GolemActivityError(f"could not read the usage of activity {self.activity_id}: {exc}") from exc

    def final_usage(self, timeout: float) -> Optional[List[float]]:
        """The usage read once more before the activity is destroyed, waiting at most about ``timeout`` s.

        The read runs on the helper pool through a lent abortable client, so a hanging yagna
        cannot hold the caller (cleanup) longer and the abandoned request is aborted. Raises
        GolemActivityError when yagna fails, GolemTimeoutError when it is too slow.
        """
        with self._blocking.reads(self._client, CancelToken()) as reads:
            return self._blocking.call(CancelToken(), self._read_usage, reads, timeout, wait_limit=timeout,
                                       phase="final usage")

    def _read_usage(self, client: YagnaClient, timeout: float) -> Optional[List[float]]:
        try:
            return client.activity.get_usage(self.activity_id, timeout=timeout).current_usage
        except YagnaError as exc:
            raise GolemActivityError(f"could not read the usage of activity {self.activity_id}: {exc}") from exc

    def successor(self, token: Optional[CancelToken] = None) -> "Activity":
        """A new activity on the same agreement (to replace this one after a command timeout)."""
        return Activity.create(self._client, self._blocking, self.agreement_id, self._options, self._sender,
                               token)

    def state(self) -> str:
        """The activity's current state name (``Ready``, ``Deployed``, ``Terminated``...)."""
        return str(self._client.activity.get_state(self.activity_id).state)

    def destroy(self) -> None:
        """Destroy the activity; safe to call more than once, never raises."""
        if self.destroyed:
            return
        self.destroyed = True
        destroy_activity(self._client, self.activity_id, self._options.destroy_timeout_sec)
        signals.emit(signals.activity_destroyed, self._sender, activity_id=self.activity_id)

    def _state_hint(self) -> str:
        try:
            state = self._client.activity.get_state(self.activity_id)
        except YagnaError:
            return ""
        extra = f" ({state.reason or state.error_message})" if (state.reason or state.error_message) else ""
        return f"; the activity is {state.state}{extra}"


def activity_error(message: str, cause: YagnaError) -> GolemActivityError:
    """The error for a failed activity call: :class:`YagnaLostError` when yagna could not be
    reached at all (the activity's work is lost with it), else a plain GolemActivityError."""
    if isinstance(cause, YagnaUnreachableError):
        return YagnaLostError(message, status=cause.status, method=cause.method, path=cause.path,
                              detail=cause.detail)
    return GolemActivityError(message)


def _check_indices(results: Sequence[ExeScriptCommandResult], seen: int, size: int, where: str) -> None:
    """Refuse results that break the protocol: yagna's list is cumulative, so result ``i`` is command ``i``."""
    for position in range(seen, len(results)):
        index = results[position].index
        if position >= size:
            raise GolemActivityError(f"the provider answered {where} with {len(results)} results for "
                                     f"{size} command{'s' if size != 1 else ''} (one for command index {index})")
        if index != position:
            kind = ("does not exist" if not 0 <= index < size
                    else "is duplicated" if index < position else "is out of order")
            raise GolemActivityError(
                f"the provider answered {where} with a result for command index {index} where command "
                f"{position} was due: index {index} {kind} (the batch has {size} command{'s' if size != 1 else ''})")
