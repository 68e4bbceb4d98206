"""The WorkContext handed to ``worker(ctx)``: run commands on the provider the job signed."""
from __future__ import annotations

import logging
from typing import Any, List, Mapping, Optional, Sequence, Union

import attrs

from .. import signals
from ..activity import Activity
from ..cancel import CancelToken
from ..errors import GolemActivityError, GolemConfigError, GolemWorkError
from ..options import WorkOptions
from ..yagna.models import Command, Deploy, Start
from .batch import Batch
from .commands import build_run
from .result import Result

# transfers (kept apart from the imports above to keep merges clean)
from ..storage.paths import PathLike  # noqa: E402
from ..yagna.models import Transfer  # noqa: E402
from .transfers import DownloadStep, Progress, TransferEnv, TransferStep, UploadStep, json_bytes  # noqa: E402

__all__ = ["WorkContext", "ProviderInfo"]

logger = logging.getLogger("golem_sync.work")


@attrs.frozen
class ProviderInfo:
    """Who runs the work."""

    id: str
    name: str
    wallet: Optional[str] = None


class WorkContext:
    """The worker's handle on one activity.

    Threads: used from the worker's thread (the job's pool thread). The job may cancel it from
    another thread through its token; every blocking call here then raises GolemCancelledError.
    """

    _transfer_env: Optional[TransferEnv] = None  # built on the first transfer

    def __init__(self, activity: Activity, provider: ProviderInfo, token: CancelToken, options: WorkOptions,
                 *, job: Any = None) -> None:
        self._activity = activity
        self.provider = provider
        self._token = token
        self._options = options
        self.job = job

    @property
    def activity_id(self) -> str:
        return self._activity.activity_id

    @property
    def agreement_id(self) -> str:
        return self._activity.agreement_id

    @property
    def provider_id(self) -> str:
        return self.provider.id

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def run(self, command: Union[str, Sequence[str]], args: Optional[Sequence[str]] = None, *,
            timeout: Optional[float] = None, env: Optional[Mapping[str, str]] = None) -> Result:
        """Run one command: ``ctx.run("echo hi")`` (shell) or ``ctx.run("/bin/echo", ["hi"])``.

        A failing command returns a Result with ``result == "Error"`` (as golem-js) unless
        ``work.raise_on_command_error`` is set, which raises :class:`GolemWorkError` instead.
        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise GolemConfigError(f"run: timeout must be a positive number of seconds, got {timeout!r}")
        return self._execute([build_run(command, args, env=env)], timeout)[0]

    def begin_batch(self) -> Batch:
        """Start a batch: ``ctx.begin_batch().run("a").run("b").end()``."""
        return Batch(self)

    def get_state(self) -> str:
        """The activity's state name (``Ready`` while the worker runs)."""
        return self._activity.state()

    # -- transfers (yagna's GSB API; no gftp binary) -------------------------------------------
    # Each helper runs one transfer command and raises GolemWorkError if it fails (the data would
    # not be trustworthy); in a batch the same steps give Error results like ``run``.

    def upload_file(self, local_path: PathLike, remote_path: str, *,
                    progress: Optional[Progress] = None, timeout: Optional[float] = None) -> Result:
        """Copy a local file to ``remote_path`` on the provider (e.g. ``/golem/input/a.bin``).

        ``progress(bytes_done, bytes_total)`` is called as chunks go out (on the socket thread).
        A missing local file raises GolemConfigError naming it, before anything is sent.
        """
        return self._run_step(UploadStep(self._transfers(), remote_path, path=local_path, progress=progress,
                                         what="upload_file"), timeout).raise_for_error()

    def upload_data(self, data: bytes, remote_path: str, *, progress: Optional[Progress] = None,
                    timeout: Optional[float] = None) -> Result:
        """Write ``data`` to ``remote_path`` on the provider."""
        return self._run_step(UploadStep(self._transfers(), remote_path, data=data, progress=progress,
                                         what="upload_data"), timeout).raise_for_error()

    def upload_json(self, value: Any, remote_path: str, *, timeout: Optional[float] = None) -> Result:
        """Write ``value`` as UTF-8 JSON to ``remote_path`` on the provider."""
        return self._run_step(UploadStep(self._transfers(), remote_path, data=json_bytes(value, "upload_json"),
                                         what="upload_json"), timeout).raise_for_error()

    def download_file(self, remote_path: str, local_path: PathLike, *,
                      progress: Optional[Progress] = None, timeout: Optional[float] = None,
                      max_size: Optional[int] = None) -> Result:
        """Copy ``remote_path`` from the provider to ``local_path`` (sha3-256 verified).

        ``local_path`` is the file to write, or an existing directory to write into under the
        remote file's base name. Its directory must exist (GolemConfigError, before anything is
        sent). The file appears only complete and verified; ``Result.data`` is its Path.
        ``progress(bytes_done, None)`` is called as chunks arrive; ``max_size`` caps the bytes accepted.
        """
        return self._run_step(DownloadStep(self._transfers(), remote_path, into="file", local=local_path,
                                           progress=progress, max_size=max_size, what="download_file"),
                              timeout).raise_for_error()

    def download_data(self, remote_path: str, *, progress: Optional[Progress] = None,
                      timeout: Optional[float] = None, max_size: Optional[int] = None) -> bytes:
        """The bytes of ``remote_path`` on the provider (sha3-256 verified)."""
        result = self._run_step(DownloadStep(self._transfers(), remote_path, into="bytes", progress=progress,
                                             max_size=max_size, what="download_data"), timeout)
        return bytes(result.raise_for_error().data)

    def download_json(self, remote_path: str, *, timeout: Optional[float] = None,
                      max_size: Optional[int] = None) -> Any:
        """``remote_path`` on the provider, parsed as JSON."""
        result = self._run_step(DownloadStep(self._transfers(), remote_path, into="json", max_size=max_size,
                                             what="download_json"), timeout)
        return result.raise_for_error().data

    def transfer(self, source: str, destination: str, *, timeout: Optional[float] = None) -> Result:
        """A raw ExeScript transfer between URLs (``container:``, ``http(s)://``, ``gftp://``)."""
        if not isinstance(source, str) or not isinstance(destination, str) or not source or not destination:
            raise GolemConfigError(f"transfer: source and destination must be URLs, got {source!r}, {destination!r}")
        return self._execute([Transfer(from_=source, to=destination)], timeout)[0]

    def _transfers(self) -> TransferEnv:
        """Built on first use: the requestor's node id is the host of every gftp URL."""
        if self._transfer_env is None:
            client = self._activity._client
            self._transfer_env = TransferEnv(client=client, node_id=client.identity.me().identity,
                                             activity_id=self.activity_id, sender=self.job)
        return self._transfer_env

    def _run_step(self, step: TransferStep, timeout: Optional[float]) -> Result:
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise GolemConfigError(f"{step.what}: timeout must be a positive number of seconds, got {timeout!r}")
        return self._execute_steps([step.command], {0: step}, timeout)[0]

    def _execute_steps(self, commands: Sequence[Command], steps: Mapping[int, TransferStep],
                       timeout: Optional[float]) -> List[Result]:
        """Serve every step, run the batch through ``_execute``, close every service whatever happens."""
        opened: List[TransferStep] = []
        try:
            for index in sorted(steps):
                self._token.raise_if_cancelled()
                opened.append(steps[index])
                steps[index].open()
            ran = self._execute(commands, timeout)
            results = [steps[r.index].finish(r) if r.index in steps else r for r in ran]
        finally:
            for step in opened:
                try:
                    step.close()
                except Exception:
                    logger.exception("closing %s %s failed", step.what, step.remote_path)
        for before, after in zip(ran, results):
            if before.ok and not after.ok:  # the provider said Ok, the requestor side did not
                logger.warning("command %d on %s failed: %s", after.index, self.provider.name, after.message)
                if self._options.raise_on_command_error:
                    after.raise_for_error()
        return results

    # -- internals -----------------------------------------------------------------------------

    def _execute(self, commands: Sequence[Command], timeout: Optional[float]) -> List[Result]:
        raw = self._activity.execute(commands, self._token, timeout)
        results = [Result.of(r) for r in raw]
        for result in results:
            if not result.ok:
                logger.warning("command %d on %s failed: %s", result.index, self.provider.name, result.message)
                if self._options.raise_on_command_error:
                    result.raise_for_error()
        return results

    def _prepare(self) -> None:
        """Deploy and start the activity, then run the user's setup functions."""
        try:
            results = self._activity.execute([Deploy(), Start()], self._token, self._options.preparing_timeout_sec)
        except GolemActivityError as exc:
            raise GolemActivityError(f"deploying on {self.provider.name or self.provider.id} failed: {exc}") from exc
        failed = [r for r in results if str(r.result) != "Ok"]
        if failed:
            raise GolemActivityError(
                f"deploying on {self.provider.name or self.provider.id} failed: {failed[0].message}")
        signals.emit(signals.activity_ready, self.job, activity_id=self.activity_id)
        for setup in self._options.setup:
            setup(self)

    def _teardown(self) -> None:
        for teardown in self._options.teardown:
            try:
                teardown(self)
            except Exception:
                logger.exception("teardown %r failed", teardown)
