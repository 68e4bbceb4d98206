"""The result of one command, as the worker sees it."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Optional, Union

import attrs

from ..errors import GolemWorkError

__all__ = ["Result"]

Output = Union[str, bytes, None]


@attrs.frozen
class Result:
    """One command's outcome. ``result`` is ``"Ok"`` or ``"Error"`` (yagna's words)."""

    index: int
    result: str
    stdout: Output = None
    stderr: Output = None
    message: Optional[str] = None
    event_date: Optional[dt.datetime] = None
    is_batch_finished: bool = False
    data: Any = None

    @classmethod
    def of(cls, raw: Any, data: Any = None) -> "Result":
        return cls(index=raw.index, result=str(raw.result), stdout=raw.stdout, stderr=raw.stderr,
                   message=raw.message, event_date=raw.event_date, is_batch_finished=raw.is_batch_finished,
                   data=data)

    @property
    def ok(self) -> bool:
        return self.result == "Ok"

    def raise_for_error(self) -> "Result":
        """Return self if Ok, else raise :class:`GolemWorkError` with the message and stderr."""
        if not self.ok:
            raise GolemWorkError(f"command {self.index} failed: {self.message or 'no message'}"
                                 + (f"; stderr: {_text(self.stderr)[-500:]}" if self.stderr else ""))
        return self

    def json(self) -> Any:
        """stdout parsed as JSON."""
        try:
            return json.loads(_text(self.stdout))
        except ValueError as exc:
            raise GolemWorkError(f"stdout of command {self.index} is not JSON: {exc}") from exc


def _text(value: Output) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
