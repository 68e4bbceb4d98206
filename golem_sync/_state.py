"""The states a job goes through, shared by the live job and its stored record."""
from __future__ import annotations

import enum

__all__ = ["JobState", "FINAL"]


class JobState(str, enum.Enum):
    """Where a job is. ``pending`` covers finding a provider and running the worker."""

    NEW = "new"
    PENDING = "pending"
    DONE = "done"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


#: The states a job never leaves.
FINAL = frozenset({JobState.DONE, JobState.REJECTED, JobState.CANCELLED})
