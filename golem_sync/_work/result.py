"""The result of one command, as the worker sees it, and the cap on the output it holds.

Output cap (``work.max_output_bytes``, default :data:`MAX_OUTPUT_BYTES`, 4 MiB): a provider
decides how much output it sends, so golem_sync bounds what it holds in three places.

1. It asks for less: every ``run`` captures only the last ``cap + 1`` bytes of stdout and of
   stderr (:func:`capped_capture`; the extra byte tells a cut from an output of exactly ``cap``).
2. It keeps less: :meth:`Result.of` cuts each stream to its last ``cap`` bytes (UTF-8 bytes for
   text, cut at a character boundary) and sets :attr:`Result.truncated`.
3. It reads less: a result poll whose answer is larger than :func:`results_body_limit` allows
   (a provider that ignored the capture limit) is refused after at most that many bytes with
   GolemActivityError, and the job ends like any other provider failure.

Output that is not valid UTF-8 stays as the provider sent it: text arrives already decoded (a
provider decodes with replacement characters), bytes (``Bin`` output) stay bytes;
:attr:`Result.stdout_text` / :attr:`Result.stderr_text` decode either with replacement.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import attrs

from ..errors import GolemWorkError
from ..yagna.models import Capture, CaptureAtEnd, CaptureStream, Command, Run

__all__ = ["Result", "MAX_OUTPUT_BYTES", "capped_capture", "capped_commands", "results_body_limit"]

Output = Union[str, bytes, None]

#: Default of ``work.max_output_bytes``: output kept per stream of each command.
MAX_OUTPUT_BYTES = 4 * 1024 * 1024

#: How much larger than the output itself yagna's JSON may be: ``\\u0001`` is 6 bytes for one byte
#: of output, the worst case (bytes as ``[255,...]`` take 4, a replacement character 3).
JSON_EXPANSION = 6
#: Room for the other fields of one result (index, dates, message) and the list around them.
RESULT_OVERHEAD = 64 * 1024


@attrs.frozen
class Result:
    """One command's outcome. ``result`` is ``"Ok"`` or ``"Error"`` (yagna's words).

    ``truncated`` is True when stdout or stderr was longer than ``work.max_output_bytes`` and
    holds only its last ``max_output_bytes`` (see the module doc).
    """

    index: int
    result: str
    stdout: Output = None
    stderr: Output = None
    message: Optional[str] = None
    event_date: Optional[dt.datetime] = None
    is_batch_finished: bool = False
    data: Any = None
    truncated: bool = False

    @classmethod
    def of(cls, raw: Any, data: Any = None, max_output: Optional[int] = None) -> "Result":
        """The Result of a wire result; with ``max_output``, each stream cut to its last that many bytes."""
        stdout, cut_out = _tail(raw.stdout, max_output)
        stderr, cut_err = _tail(raw.stderr, max_output)
        return cls(index=raw.index, result=str(raw.result), stdout=stdout, stderr=stderr,
                   message=raw.message, event_date=raw.event_date, is_batch_finished=raw.is_batch_finished,
                   data=data, truncated=cut_out or cut_err)

    @property
    def ok(self) -> bool:
        return self.result == "Ok"

    @property
    def stdout_text(self) -> str:
        """stdout as text (bytes decoded as UTF-8 with replacement characters; ``""`` if none)."""
        return _text(self.stdout)

    @property
    def stderr_text(self) -> str:
        """stderr as text (bytes decoded as UTF-8 with replacement characters; ``""`` if none)."""
        return _text(self.stderr)

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
            cut = " (it was truncated to work.max_output_bytes)" if self.truncated else ""
            raise GolemWorkError(f"stdout of command {self.index} is not JSON{cut}: {exc}") from exc


def capped_capture(capture: Optional[Capture], cap: int) -> Optional[Capture]:
    """``capture`` asking for at most the last ``cap + 1`` bytes of each stream.

    Limits the caller set itself (``head``, ``tail``, ``head_tail``, a stream ``limit``) are kept
    when smaller; ``None`` (nothing captured) stays ``None``.
    """
    if capture is None:
        return None
    return Capture(stdout=_capped_mode(capture.stdout, cap + 1), stderr=_capped_mode(capture.stderr, cap + 1))


def capped_commands(commands: Sequence[Command], cap: int) -> Tuple[Command, ...]:
    """``commands`` with every ``run``'s capture capped (see :func:`capped_capture`)."""
    return tuple(attrs.evolve(c, capture=capped_capture(c.capture, cap)) if isinstance(c, Run) else c
                 for c in commands)


def results_body_limit(commands: int, cap: int) -> int:
    """The most bytes a result poll of a batch of ``commands`` may answer with output capped at ``cap``."""
    return max(1, commands) * (2 * JSON_EXPANSION * (cap + 1) + RESULT_OVERHEAD) + RESULT_OVERHEAD


def _capped_mode(mode: Any, limit: int) -> Any:
    if isinstance(mode, CaptureAtEnd):
        if mode.head is None and mode.tail is None and mode.head_tail is None:
            return attrs.evolve(mode, tail=limit)
        for name in ("head", "tail", "head_tail"):
            value = getattr(mode, name)
            if value is not None and value > limit:
                changes: Dict[str, Any] = {name: limit}
                return attrs.evolve(mode, **changes)
        return mode
    if isinstance(mode, CaptureStream) and (mode.limit is None or mode.limit > limit):
        return attrs.evolve(mode, limit=limit)
    return mode


def _tail(value: Output, cap: Optional[int]) -> Tuple[Output, bool]:
    """``value`` cut to its last ``cap`` bytes (UTF-8 for text, at a character boundary), and whether it was."""
    if value is None or cap is None:
        return value, False
    if isinstance(value, bytes):
        return (value[-cap:], True) if len(value) > cap else (value, False)
    if len(value) * 4 <= cap:  # UTF-8 takes at most 4 bytes a character: surely within the cap
        return value, False
    encoded = value.encode("utf-8", "surrogatepass")
    if len(encoded) <= cap:
        return value, False
    # A cut inside a character leaves continuation bytes first: "ignore" drops that partial character.
    return encoded[-cap:].decode("utf-8", "ignore"), True


def _text(value: Output) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
