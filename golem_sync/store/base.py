"""The job store interface: what every store records, and the waiting/notification logic they share.

A store holds one :class:`JobRecord` per job. Writers (the process running a job) call
:meth:`JobStore.create` and :meth:`JobStore.update`; every write *notifies* every process sharing
the store (how is the concrete store's business: unix datagram sockets for SQLite, LISTEN/NOTIFY
for PostgreSQL, direct calls in memory). A notification carries only a job id: receivers re-read the
record, so a lost or duplicated notification can never make a reader see a wrong state.

Threads: every public method is safe from any thread. The concrete store owns one *listener*
thread that receives notifications and calls :meth:`JobStore._changed`, which wakes the waiters of
:meth:`JobStore.wait_until` (a ``threading.Condition``) and runs the registered listener callbacks
on that thread (they must be quick).
"""
from __future__ import annotations

import abc
import json
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, TypeVar

import attrs

from .._cancel import Deadline
from .._progress import Progress
from .throttle import PROGRESS_INTERVAL_SEC, ProgressThrottle  # noqa: F401 (documented above)
from ..errors import (GolemConfigError, GolemInterruptedError, GolemRemoteJobError,  # noqa: F401 (re-exported)
                      GolemStoreError, GolemUserError)

__all__ = ["JobRecord", "JobStore", "Retention", "Serializer", "JsonSerializer", "GolemStoreError",
           "GolemInterruptedError", "GolemRemoteJobError", "ACTIVE_STATES", "FINAL_STATES", "ALL_STATES",
           "Progress"]

logger = logging.getLogger("golem_sync.store")

_S = TypeVar("_S", bound="JobStore")

# Plain strings, equal to golem_sync.JobState values (JobState is a str enum), so the store layer
# does not import the job layer.
ACTIVE_STATES = ("new", "pending")
FINAL_STATES = ("done", "rejected", "cancelled")

# A safety net, not the wake-up mechanism: a waiter re-reads the record this often even without a
# notification, so a notification lost to a full socket buffer or a dropped database connection
# delays a reader by seconds instead of hanging it. Every normal wake-up is a notification.
RECHECK_SEC = 5.0

FIELDS = ("job_id", "state", "owner", "created_at", "updated_at", "ended_at", "error", "error_type",
          "result", "result_error", "agreement_id", "activity_id", "allocation_id", "provider",
          "cancel_reason", "progress")
ALL_STATES = ACTIVE_STATES + FINAL_STATES


@attrs.frozen
class JobRecord:
    """What a store knows about one job. Times are Unix timestamps (seconds)."""

    job_id: str
    state: str
    owner: Optional[str] = None
    created_at: float = 0.0
    updated_at: float = 0.0
    ended_at: Optional[float] = None
    error: Optional[str] = None
    error_type: Optional[str] = None
    result: Optional[str] = None  # serialized by the store's Serializer
    result_error: Optional[str] = None  # why the result could not be serialized
    agreement_id: Optional[str] = None
    activity_id: Optional[str] = None
    allocation_id: Optional[str] = None
    provider: Optional[str] = None
    cancel_reason: Optional[str] = None  # set by request_cancel; the running process acts on it
    progress: Optional[str] = None  # the latest reported Progress, as its JSON text

    def read_progress(self) -> Optional[Progress]:
        """The job's latest progress (None before the worker reported any)."""
        return Progress.from_json(self.progress)

    @property
    def ended(self) -> bool:
        return self.state in FINAL_STATES

    def as_row(self) -> Dict[str, Any]:
        return attrs.asdict(self)


class Serializer(Protocol):
    """Turns a job's result into text and back. ``dumps`` raises TypeError/ValueError when it cannot."""

    def dumps(self, value: Any) -> str: ...

    def loads(self, text: str) -> Any: ...


class JsonSerializer:
    """The default: JSON (``str``, numbers, ``bool``, ``None``, lists and dicts of them)."""

    def dumps(self, value: Any) -> str:
        return json.dumps(value, allow_nan=False)

    def loads(self, text: str) -> Any:
        return json.loads(text)


@attrs.frozen
class Retention:
    """When finished jobs are evicted: older than ``max_age_sec`` or beyond the newest ``max_finished``.

    ``None`` disables a limit. Running jobs are never evicted. Eviction runs at most every
    ``every_sec`` seconds, after a job ends and when a network starts.
    """

    max_age_sec: Optional[float] = 24 * 3600.0
    max_finished: Optional[int] = 10_000
    every_sec: float = 1.0

    def __attrs_post_init__(self) -> None:
        if self.max_age_sec is not None and self.max_age_sec < 0:
            raise GolemConfigError(f"Retention.max_age_sec must be >= 0, got {self.max_age_sec!r}")
        if self.max_finished is not None and self.max_finished < 0:
            raise GolemConfigError(f"Retention.max_finished must be >= 0, got {self.max_finished!r}")


class JobStore(abc.ABC):
    """A place where jobs' records live, shared by every process that opens the same store.

    Subclasses implement the storage primitives (``_insert``, ``_update``, ``get``, ``_select``,
    ``_delete_finished``), process liveness (``owner``, ``owner_alive``) and delivery of
    notifications (``_notify``, calling ``_changed`` in every process on arrival).
    """

    def __init__(self, *, serializer: Optional[Serializer] = None, retention: Optional[Retention] = None) -> None:
        self.serializer: Serializer = serializer or JsonSerializer()
        self.retention = retention if retention is not None else Retention()
        self._pid = os.getpid()
        self._cond = threading.Condition()
        # job id -> [waiters, generation], only for jobs someone waits on: bounded by the waiters.
        self._watched: Dict[str, List[int]] = {}
        self._listeners: List[Callable[[str], None]] = []
        self._last_evict = 0.0
        self._closed = False
        self._progress = ProgressThrottle(self._write_progress)

    # -- primitives -------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def owner(self) -> str:
        """This process's identity in the store (recorded on the jobs it runs)."""

    @abc.abstractmethod
    def owner_alive(self, owner: str) -> bool:
        """Whether the process ``owner`` still runs (and so still owns its jobs)."""

    @abc.abstractmethod
    def get(self, job_id: str) -> Optional[JobRecord]:
        """The record of ``job_id``, or ``None``."""

    @abc.abstractmethod
    def _insert(self, record: JobRecord) -> None: ...

    @abc.abstractmethod
    def _update(self, job_id: str, fields: Mapping[str, Any], states: Optional[Sequence[str]],
                owner: Optional[str]) -> bool:
        """Set ``fields`` if the job exists (and is in ``states`` / owned by ``owner`` when given)."""

    @abc.abstractmethod
    def _select(self, states: Sequence[str]) -> List[JobRecord]: ...

    @abc.abstractmethod
    def _delete_finished(self, ended_before: Optional[float], keep: Optional[int]) -> int: ...

    @abc.abstractmethod
    def _notify(self, job_id: str) -> None:
        """Tell every process sharing the store (this one included) that ``job_id`` changed."""

    def close(self) -> None:
        """Write pending progress, stop the listener and close connections. Idempotent."""
        self._progress.close()
        self._closed = True
        with self._cond:
            self._cond.notify_all()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------

    def create(self, job_id: str, *, state: str = "new", **fields: Any) -> JobRecord:
        """Record a new job owned by this process."""
        now = time.time()
        record = JobRecord(job_id=job_id, state=state, owner=self.owner, created_at=now, updated_at=now, **fields)
        self._insert(record)
        self._notify(job_id)
        return record

    def update(self, job_id: str, *, expect_states: Optional[Sequence[str]] = None,
               expect_owner: Optional[str] = None, **fields: Any) -> bool:
        """Change fields of a job and notify; with ``expect_*``, only if it still matches.

        Returns whether the record was changed (the conditional form is how a process claims a job
        atomically, e.g. in recovery).
        """
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise GolemUserError(f"unknown job record field(s): {sorted(unknown)}")
        if "progress" in fields:
            self._progress.forget(job_id)  # this write carries the latest value: no trailing write
        fields = dict(fields, updated_at=time.time())
        if fields.get("state") in FINAL_STATES and "ended_at" not in fields:
            fields["ended_at"] = fields["updated_at"]
        changed = self._update(job_id, fields, expect_states, expect_owner)
        if changed:
            self._notify(job_id)
        return changed

    def set_progress(self, job_id: str, progress: Progress) -> None:
        """Record a running job's latest progress, rate-limited; returns at once (never blocks on I/O).

        At most one write (and notification) per job every :data:`PROGRESS_INTERVAL_SEC` (0.2 s):
        a value reported sooner replaces the one waiting, which is written when the interval is
        up, so the latest value is always written. Only a ``pending`` job owned by this process is
        written (a value arriving after the job ended is dropped: its end write carries the final
        progress, see ``update(progress=...)``). Failures are logged, never raised.
        """
        self._progress.submit(job_id, progress.to_json())

    def _write_progress(self, job_id: str, text: str) -> None:
        # Straight to the primitives: update() would forget() the next value waiting.
        if self._update(job_id, {"progress": text, "updated_at": time.time()}, ("pending",), self.owner):
            self._notify(job_id)

    def list_jobs(self, states: Optional[Sequence[str]] = None, limit: Optional[int] = None) -> List[JobRecord]:
        """Every job in the store (or those in ``states``), newest first, with its latest progress.

        One query for SQL stores (the progress is a column of the job's row): cheap enough for a
        page that lists jobs live.
        """
        if limit is not None and limit < 0:
            raise GolemUserError(f"limit must be >= 0, got {limit!r}")
        return self._list(tuple(states) if states is not None else ALL_STATES, limit)

    def _list(self, states: Sequence[str], limit: Optional[int]) -> List[JobRecord]:
        records = sorted(self._select(states), key=lambda r: r.created_at, reverse=True)
        return records if limit is None else records[:limit]

    def notify(self, job_id: str) -> None:
        """Tell every process sharing the store that ``job_id``'s record may have changed."""
        self._notify(job_id)

    def request_cancel(self, job_id: str, reason: str = "cancelled by the user") -> bool:
        """Ask the process running ``job_id`` to cancel it. False if the job is not running."""
        return self.update(job_id, expect_states=("pending",), cancel_reason=reason)

    def running(self) -> List[JobRecord]:
        """Every job recorded as ``new`` or ``pending``, by any process."""
        return self._select(ACTIVE_STATES)

    def evict(self, *, force: bool = False) -> int:
        """Delete finished jobs past the retention limits; returns how many (throttled unless ``force``)."""
        now = time.time()
        with self._cond:
            if not force and now - self._last_evict < self.retention.every_sec:
                return 0
            self._last_evict = now
        r = self.retention
        if r.max_age_sec is None and r.max_finished is None:
            return 0
        ended_before = None if r.max_age_sec is None else now - r.max_age_sec
        return self._delete_finished(ended_before, r.max_finished)

    # -- reads and waits --------------------------------------------------------------------

    def wait_until(self, job_id: str, predicate: Callable[[JobRecord], bool],
                   timeout: Optional[float]) -> Optional[JobRecord]:
        """Block until the job's record satisfies ``predicate`` (returned) or it vanishes (``None``).

        Woken by notifications, not by polling (a re-read every ``RECHECK_SEC`` is only a safety
        net). When ``timeout`` runs out the last record read is returned: the caller checks the
        predicate again to tell a timeout from success.
        """
        deadline = Deadline(timeout)
        with self._cond:
            watch = self._watched.setdefault(job_id, [0, 0])
            watch[0] += 1
        try:
            while True:
                with self._cond:
                    seen = watch[1]
                record = self.get(job_id)
                if record is None or predicate(record) or self._closed:
                    return record
                left = deadline.remaining()
                if left == 0.0:
                    return record
                with self._cond:
                    # Re-check the generation under the lock: a notification that arrived between
                    # the read above and here must not be slept through.
                    if watch[1] == seen and not self._closed:
                        self._cond.wait(RECHECK_SEC if left is None else min(left, RECHECK_SEC))
        finally:
            with self._cond:
                watch[0] -= 1
                if watch[0] == 0:
                    self._watched.pop(job_id, None)

    def add_listener(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(job_id)`` on the listener thread for every change; returns a remover."""
        with self._cond:
            self._listeners.append(callback)

        def remove() -> None:
            with self._cond:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return remove

    def _changed(self, job_id: str) -> None:
        """A notification for ``job_id`` arrived: wake waiters, run listeners."""
        with self._cond:
            watch = self._watched.get(job_id)
            if watch is not None:
                watch[1] += 1
                self._cond.notify_all()
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback(job_id)
            except Exception:
                logger.exception("job store listener %r failed", callback)

    def _check_pid(self) -> None:
        # A store opened before fork() would share its owner identity and sockets with the child.
        if os.getpid() != self._pid:
            raise GolemStoreError("this job store was opened in a parent process before fork(); "
                                  "open the store in each worker process (e.g. in a post-fork hook)")


def describe_error(error: BaseException) -> "tuple[str, str]":
    """(type name, text) of an exception, for the record."""
    return type(error).__name__, str(error) or type(error).__name__


def rebuild_error(record: JobRecord) -> Optional[BaseException]:
    """The exception a reader in another process sees for a failed or cancelled job."""
    if record.error is None and record.error_type is None:
        return None
    from .. import errors

    name = record.error_type or ""
    text = record.error or name
    if name == "GolemInterruptedError":
        return GolemInterruptedError(text)
    cls = getattr(errors, name, None) if name in errors.__all__ else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(text)
        except Exception:
            pass
    return GolemRemoteJobError(f"{name}: {text}" if name else text, type_name=name)
