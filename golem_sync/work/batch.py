"""A batch of commands sent to the provider as one ExeScript."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, List, Mapping, Optional, Sequence, Union

from ..yagna.models import Command, Transfer
from .commands import build_run
from .result import Result

if TYPE_CHECKING:
    from .context import WorkContext

__all__ = ["Batch"]


class Batch:
    """Collects commands; ``end()`` runs them and returns every result.

    Built and ended on the worker's thread.
    """

    def __init__(self, ctx: "WorkContext") -> None:
        self._ctx = ctx
        self._commands: List[Command] = []

    def run(self, command: Union[str, Sequence[str]], args: Optional[Sequence[str]] = None, *,
            env: Optional[Mapping[str, str]] = None) -> "Batch":
        self._commands.append(build_run(command, args, env=env))
        return self

    def transfer(self, source: str, destination: str) -> "Batch":
        """A raw transfer between URLs (``container:``, ``http(s)://``, ``gftp://``)."""
        self._commands.append(Transfer(from_=source, to=destination))
        return self

    def end(self, timeout: Optional[float] = None) -> List[Result]:
        """Execute the batch; a failing command ends it with an Error result (see ``raise_on_command_error``)."""
        return self._ctx._execute(self._commands, timeout)

    def __len__(self) -> int:
        return len(self._commands)

    # -- streaming results (work-stream) ----------------------------------------------------

    def end_stream(self, timeout: Optional[float] = None) -> Iterator[Result]:
        """Send the batch now and yield each result as soon as its command finishes.

        Raises :class:`GolemWorkError` on the first failing command (the batch stops there) and
        GolemTimeoutError when the batch is not done within ``timeout`` seconds (default
        ``activity.execute_timeout_sec``; the activity is then replaced on the next command).
        """
        return self._ctx._execute_stream(self._commands, timeout)
