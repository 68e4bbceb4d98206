"""StoredJob: a job seen through a store, from any process (the one running it or another).

Every attribute is read from the store when asked for, so it is always current; waits are woken by
the store's notifications.

Threads: safe from any thread; a handle holds nothing but the store and the job id.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from .._cancel import Deadline
from .._progress import Progress
from ..errors import GolemTimeoutError, GolemUserError
from .._state import JobState
from .base import RECHECK_SEC, GolemInterruptedError, GolemStoreError, JobRecord, JobStore, rebuild_error

__all__ = ["StoredJob"]


class StoredJob:
    """The read side of the Job API for a job recorded in a :class:`JobStore`.

    ``state``, ``results``, ``error``, ``wait_for_result`` and ``cancel`` behave like
    :class:`golem_sync.Job`'s; ``cancel`` asks the running process, which cancels the job promptly.
    """

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.id = job_id
        self._seen = 0  # seq of the newest progress this handle has returned

    def __repr__(self) -> str:
        record = self.store.get(self.id)
        return f"<StoredJob {self.id} {record.state if record else 'evicted'}>"

    def record(self) -> JobRecord:
        """The job's current record; raises :class:`GolemStoreError` if it was evicted meanwhile."""
        record = self.store.get(self.id)
        if record is None:
            raise GolemStoreError(f"job {self.id} is no longer in the store (evicted)")
        return record

    @property
    def state(self) -> JobState:
        return JobState(self.record().state)

    def is_running(self) -> bool:
        return self.record().state == JobState.PENDING.value

    def done(self) -> bool:
        return self.record().ended

    @property
    def results(self) -> Any:
        """The result of a ``done`` job (else ``None``); raises if the running process could not store it."""
        return self._result_of(self.record())

    @property
    def error(self) -> Optional[BaseException]:
        """The error of a rejected or cancelled job, rebuilt from its recorded type and text."""
        return rebuild_error(self.record())

    @property
    def agreement_id(self) -> Optional[str]:
        return self.record().agreement_id

    @property
    def activity_id(self) -> Optional[str]:
        return self.record().activity_id

    @property
    def provider(self) -> Optional[str]:
        """The provider's name (a :class:`golem_sync.Job` has a ``ProviderInfo`` here)."""
        return self.record().provider

    @property
    def progress(self) -> Optional[Progress]:
        """The latest progress the worker reported (as written to the store: at most every 0.2 s,
        the last value always), or None before the first report. Readable while the job runs."""
        progress = self.record().read_progress()
        if progress is not None:
            self._seen = max(self._seen, progress.seq)
        return progress

    def wait_for_progress(self, timeout: Optional[float] = None) -> Optional[Progress]:
        """Block until the job has a progress newer than the last one this handle returned (from
        ``progress``, ``wait_for_progress`` or ``follow_progress``) and return it.

        Returns None when ``timeout`` runs out first, or when the job ends (or its process is
        gone) with nothing newer: ``done()`` tells them apart. Woken by the store's notifications.
        """
        deadline = Deadline(timeout)
        seen = self._seen

        def newer(record: JobRecord) -> bool:
            progress = record.read_progress()
            return (progress is not None and progress.seq > seen) or record.ended or not self._owner_alive(record)

        while True:
            record = self.store.wait_until(self.id, newer, deadline.remaining())
            if record is None:
                raise GolemStoreError(f"job {self.id} is no longer in the store (evicted)")
            progress = record.read_progress()
            if progress is not None and progress.seq > seen:
                self._seen = progress.seq
                return progress
            if record.ended or not self._owner_alive(record) or deadline.expired or self.store._closed:
                return None

    def follow_progress(self, timeout: Optional[float] = None) -> Iterator[Progress]:
        """Yield each new progress (coalesced as stored) until the job ends, the last one included.

        Starts with the current progress if this handle has not returned it yet. Raises
        :class:`GolemTimeoutError` (phase ``"progress"``) if the job has not ended within
        ``timeout`` seconds, and :class:`GolemInterruptedError` if its process is gone.
        """
        deadline = Deadline(timeout)
        while True:
            progress = self.wait_for_progress(deadline.remaining())
            if progress is not None:
                yield progress
                continue
            record = self.record()
            if record.ended:
                return
            if not self._owner_alive(record):
                raise GolemInterruptedError(f"the process running job {self.id} ({record.owner}) is gone")
            if self.store._closed:
                raise GolemStoreError(f"the job store was closed while following job {self.id}")
            if deadline.expired:
                raise GolemTimeoutError(f"job {self.id} did not end within {timeout:g}s (progress)",
                                        phase="progress")

    def wait_for_result(self, timeout: Optional[float] = None) -> Any:
        """Block until the job ends; return its result or raise its error.

        Raises :class:`GolemUserError` for a job never started and :class:`GolemTimeoutError`
        (phase ``"wait"``) when ``timeout`` runs out first.
        """
        record = self.record()
        if record.state == JobState.NEW.value:
            raise GolemUserError(f"job {self.id} was never started: call start_work() first")
        record = self.wait_ended(timeout)
        error = rebuild_error(record)
        if error is not None:
            raise error
        return self._result_of(record)

    def result(self, timeout: Optional[float] = None) -> Any:
        return self.wait_for_result(timeout)

    def cancel(self, timeout: Optional[float] = None) -> None:
        """Ask the process running the job to cancel it; return once it has ended and cleaned up."""
        if not self.store.request_cancel(self.id, "cancelled by the user (from another process)"):
            raise GolemUserError(f"job {self.id} is not running (state: {self.record().state})")
        self.wait_ended(timeout, cancelling=True)

    def wait_ended(self, timeout: Optional[float] = None, *, cancelling: bool = False) -> JobRecord:
        """Block until the job ends, however it ends; return its final record.

        Raises :class:`GolemTimeoutError` (phase ``"wait"``, or ``"cancel"`` with ``cancelling``)
        when ``timeout`` runs out, :class:`GolemInterruptedError` when the process running the job
        is gone and :class:`GolemStoreError` when the job was evicted. With ``cancelling`` the
        cancel request is repeated to the owning process while waiting.
        """
        what = "cancel" if cancelling else "wait"
        # A dead process sends no more notifications: its job would look pending for ever, so the
        # wait also ends when the owner is gone (seen at the latest on the store's safety re-read).
        deadline = Deadline(timeout)
        while True:
            left = deadline.remaining()
            # While cancelling, wake every RECHECK_SEC to repeat the notification: one lost on the
            # way (a full socket queue) must not leave the running process unaware of the request.
            step = left if what != "cancel" else (RECHECK_SEC if left is None else min(left, RECHECK_SEC))
            record = self.store.wait_until(self.id, lambda r: r.ended or not self._owner_alive(r), step)
            if record is None:
                raise GolemStoreError(f"job {self.id} is no longer in the store (evicted)")
            if record.ended:
                return record
            if not self._owner_alive(record):
                raise GolemInterruptedError(
                    f"the process running job {self.id} ({record.owner}) is gone; the job will be recorded "
                    f"as rejected and its agreement ended when a GolemNetwork using this store starts")
            if deadline.expired:
                raise GolemTimeoutError(f"job {self.id} did not end within {timeout:g}s ({what})", phase=what)
            self.store.notify(self.id)  # again, in case the owner missed the first

    def _owner_alive(self, record: JobRecord) -> bool:
        return record.owner is None or self.store.owner_alive(record.owner)

    def _result_of(self, record: JobRecord) -> Any:
        if record.result_error is not None:
            raise GolemStoreError(f"job {self.id} succeeded but its result could not be stored: {record.result_error}")
        if record.result is None:
            return None
        return self.store.serializer.loads(record.result)
