"""A batch of commands sent to the provider as one ExeScript."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from ..errors import GolemUserError
from .._transfer.paths import PathLike
from ..yagna.models import Command, Transfer
from .commands import build_run
from .result import Result
from .runner import CommandRunner
from .transfers import Progress, TransferStep

__all__ = ["Batch"]


class Batch:
    """Collects commands; ``end()`` runs them and returns every result.

    Get one from ``ctx.begin_batch()``. Built and ended on the worker's thread.
    """

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner
        self._commands: List[Command] = []
        self._steps: Dict[int, TransferStep] = {}  # command index -> its transfer step

    def __len__(self) -> int:
        return len(self._commands)

    # -- commands ----------------------------------------------------------------------------

    def run(self, command: Union[str, Sequence[str]], args: Optional[Sequence[str]] = None, *,
            env: Optional[Mapping[str, str]] = None) -> "Batch":
        """Add a command, as ``WorkContext.run`` takes it."""
        self._commands.append(build_run(command, args, env=env))
        return self

    def transfer(self, source: str, destination: str) -> "Batch":
        """A raw transfer between URLs (``container:``, ``http(s)://``, ``gftp://``)."""
        self._commands.append(Transfer(from_=source, to=destination))
        return self

    # -- transfer steps (yagna's GSB API); see WorkContext.upload_file and friends -----------
    # A failed step gives an Error result and ends the batch like a failed ``run``; a download's
    # ``Result.data`` is the written Path, the bytes or the parsed JSON.

    def upload_file(self, local_path: PathLike, remote_path: str, *,
                    progress: Optional[Progress] = None) -> "Batch":
        return self._add_step(self._runner.steps.upload_file(local_path, remote_path, progress))

    def upload_data(self, data: bytes, remote_path: str, *, progress: Optional[Progress] = None) -> "Batch":
        return self._add_step(self._runner.steps.upload_data(data, remote_path, progress))

    def upload_json(self, value: Any, remote_path: str) -> "Batch":
        return self._add_step(self._runner.steps.upload_json(value, remote_path))

    def download_file(self, remote_path: str, local_path: PathLike, *,
                      progress: Optional[Progress] = None, max_size: Optional[int] = None) -> "Batch":
        return self._add_step(self._runner.steps.download_file(remote_path, local_path, progress, max_size))

    def download_data(self, remote_path: str, *, progress: Optional[Progress] = None,
                      max_size: Optional[int] = None) -> "Batch":
        return self._add_step(self._runner.steps.download_data(remote_path, progress, max_size))

    def download_json(self, remote_path: str, *, max_size: Optional[int] = None) -> "Batch":
        return self._add_step(self._runner.steps.download_json(remote_path, max_size))

    # -- running -----------------------------------------------------------------------------

    def end(self, timeout: Optional[float] = None) -> List[Result]:
        """Execute the batch; a failing command ends it with an Error result (see ``raise_on_command_error``)."""
        if self._steps:  # transfer steps need their services around the batch
            return self._runner.execute_steps(self._commands, self._steps, timeout)
        return self._runner.execute(self._commands, timeout)

    def end_stream(self, timeout: Optional[float] = None) -> Iterator[Result]:
        """Send the batch now and yield each result as soon as its command finishes.

        Raises :class:`GolemWorkError` on the first failing command (the batch stops there) and
        GolemTimeoutError when the batch is not done within ``timeout`` seconds (default
        ``activity.execute_timeout_sec``; the activity is then replaced on the next command).
        """
        if self._steps:  # their services live only around end(); a stream would leave them open
            raise GolemUserError("end_stream: a batch with upload/download steps runs with end()")
        return self._runner.execute_stream(self._commands, timeout)

    def _add_step(self, step: TransferStep) -> "Batch":
        self._steps[len(self._commands)] = step
        self._commands.append(step.command)
        return self
