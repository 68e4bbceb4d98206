"""An in-memory job store: one process, nothing survives it. For tests and single-process scripts.

Threads: safe from any thread (one lock); notifications run listeners on the writer's thread, since
there is no other process to hear from.
"""
from __future__ import annotations

import os
import threading
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence

import attrs

from .base import FINAL_STATES, JobRecord, JobStore, Retention, Serializer

__all__ = ["MemoryJobStore"]


class MemoryJobStore(JobStore):
    """Records in a dict; every owner other than this process counts as gone."""

    def __init__(self, *, serializer: Optional[Serializer] = None, retention: Optional[Retention] = None) -> None:
        super().__init__(serializer=serializer, retention=retention)
        self._lock = threading.Lock()
        self._records: Dict[str, JobRecord] = {}
        self._owner = f"memory/{os.getpid()}/{uuid.uuid4().hex[:12]}"

    @property
    def owner(self) -> str:
        return self._owner

    def owner_alive(self, owner: str) -> bool:
        return owner == self._owner

    def get(self, job_id: str) -> Optional[JobRecord]:
        with self._lock:
            return self._records.get(job_id)

    def _insert(self, record: JobRecord) -> None:
        with self._lock:
            self._records[record.job_id] = record

    def _update(self, job_id: str, fields: Mapping[str, Any], states: Optional[Sequence[str]],
                owner: Optional[str]) -> bool:
        with self._lock:
            record = self._records.get(job_id)
            if record is None or (states is not None and record.state not in states):
                return False
            if owner is not None and record.owner != owner:
                return False
            self._records[job_id] = attrs.evolve(record, **fields)
            return True

    def _select(self, states: Sequence[str]) -> List[JobRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.state in states]

    def _delete_finished(self, ended_before: Optional[float], keep: Optional[int]) -> int:
        with self._lock:
            finished = sorted((r for r in self._records.values() if r.state in FINAL_STATES),
                              key=lambda r: r.ended_at or 0.0, reverse=True)
            doomed = [r.job_id for i, r in enumerate(finished)
                      if (keep is not None and i >= keep)
                      or (ended_before is not None and (r.ended_at or 0.0) < ended_before)]
            for job_id in doomed:
                del self._records[job_id]
            return len(doomed)

    def _notify(self, job_id: str) -> None:
        self._changed(job_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
