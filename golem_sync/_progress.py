"""Progress a worker reports (``ctx.report_progress``): the model every layer shares.

A :class:`Progress` is immutable and JSON all the way down: it is validated once, when the worker
reports it, then kept by the job (``job.progress``), sent with the ``job_progress`` signal and
written to the job store as the text of :meth:`Progress.to_json`, which any process reads back
with :meth:`Progress.from_json` (``StoredJob.progress``).

No imports from the job or store layers: both import this.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Dict, Mapping, Optional

import attrs

__all__ = ["Progress", "MAX_PROGRESS_CHARS"]

#: The largest progress accepted, as JSON text: progress is a status line, not a result channel.
MAX_PROGRESS_CHARS = 16 * 1024


@attrs.frozen
class Progress:
    """The latest progress of a job.

    Attributes:
        fraction: how far the job is, in [0, 1], or None if the worker did not say.
        message: a short human-readable status, or None.
        data: any further JSON values the worker reported (``report_progress(step=3, of=10)``).
        timestamp: when the worker reported it (Unix time, seconds, the worker's clock).
        seq: 1 for a job's first report, then 2, 3, ...: "newer" means a larger ``seq``.
    """

    fraction: Optional[float] = None
    message: Optional[str] = None
    data: Mapping[str, Any] = attrs.field(factory=dict)
    timestamp: float = 0.0
    seq: int = 0

    @classmethod
    def create(cls, fraction: Any = None, message: Any = None, data: Optional[Mapping[str, Any]] = None, *,
               seq: int = 1, timestamp: Optional[float] = None) -> "Progress":
        """A validated Progress: raises TypeError/ValueError naming the bad argument or data key."""
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
                raise TypeError(f"report_progress: fraction must be a number in [0, 1] or None, "
                                f"got {type(fraction).__name__}")
            if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
                raise ValueError(f"report_progress: fraction must be in [0, 1], got {fraction!r}")
            fraction = float(fraction)
        if message is not None and not isinstance(message, str):
            raise TypeError(f"report_progress: message must be a str or None, got {type(message).__name__}")
        copied: Dict[str, Any] = {}
        for key, value in (data or {}).items():
            if not isinstance(key, str):
                raise TypeError(f"report_progress: data keys must be str, got {key!r}")
            try:
                # A round trip: checks the value and takes a snapshot the worker cannot change later.
                copied[key] = json.loads(json.dumps(value, allow_nan=False))
            except TypeError as exc:
                raise TypeError(f"report_progress: data {key!r} is not JSON-serialisable ({exc})") from None
            except ValueError as exc:
                raise ValueError(f"report_progress: data {key!r} is not valid JSON ({exc})") from None
        progress = cls(fraction=fraction, message=message, data=copied,
                       timestamp=time.time() if timestamp is None else timestamp, seq=seq)
        size = len(progress.to_json())
        if size > MAX_PROGRESS_CHARS:
            raise ValueError(f"report_progress: the progress is {size} characters as JSON, more than the "
                             f"{MAX_PROGRESS_CHARS} allowed; report a summary (results go in the job's result)")
        return progress

    @property
    def percent(self) -> Optional[float]:
        """``fraction`` × 100, or None."""
        return None if self.fraction is None else self.fraction * 100.0

    def as_dict(self) -> Dict[str, Any]:
        return {"fraction": self.fraction, "message": self.message, "data": dict(self.data),
                "timestamp": self.timestamp, "seq": self.seq}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: Optional[str]) -> Optional["Progress"]:
        """The Progress stored as ``text`` (None for None or for text that is not a progress)."""
        if not text:
            return None
        try:
            value = json.loads(text)
            return cls(fraction=value.get("fraction"), message=value.get("message"), data=value.get("data") or {},
                       timestamp=float(value.get("timestamp") or 0.0), seq=int(value.get("seq") or 0))
        except (ValueError, TypeError, AttributeError):
            return None

    def describe(self) -> str:
        """One line: ``42% copying part 3 (step=3, of=10)``."""
        parts = []
        if self.fraction is not None:
            parts.append(f"{self.fraction * 100:.0f}%")
        if self.message:
            parts.append(self.message)
        if self.data:
            parts.append("(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in self.data.items()) + ")")
        return " ".join(parts) if parts else "-"
