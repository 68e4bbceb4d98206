"""Transfer steps of a batch: upload/download files, bytes and JSON through yagna's GSB API.

Each step is one ExeScript ``transfer`` command between ``container:<remote_path>`` and a
``gftp://<requestor node>/<random name>`` URL that the step serves while the batch runs (see
:mod:`golem_sync._transfer`). Local paths are checked when the step is built and the local file
is opened when the batch starts, both before anything is sent. Whatever happens (success,
failure, cancellation, timeout) every service is unbound and its socket closed when the batch
ends, and a partial download is removed; a download is moved into place only once its sha3-256
hash was verified and the provider reported success.

Threads: steps are built, opened, finished and closed on the worker's thread; progress callbacks
and ``transfer_progress`` signals run on the step's socket thread (the last signal of a transfer
on the worker's thread).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import attrs

from .. import signals
from ..errors import GolemConfigError
from .._transfer.gftp import BytesSource, FileSource, Progress, Publication, Receipt, gftp_url, new_name
from .._transfer.paths import PathLike, download_target, part_path, source_file
from ..yagna.client import YagnaClient
from ..yagna.models import Transfer
from .result import Result

__all__ = ["TransferEnv", "TransferStep", "UploadStep", "DownloadStep", "StepBuilder", "Progress", "json_bytes"]

logger = logging.getLogger("golem_sync.work.transfers")

#: Seconds between two ``transfer_progress`` signals of one transfer.
SIGNAL_INTERVAL = 1.0


@attrs.frozen
class TransferEnv:
    """What steps need from their WorkContext."""

    client: YagnaClient
    node_id: str
    activity_id: str
    sender: Any


class _Reporter:
    """Feeds the user's callback every chunk and the signal at most once per interval."""

    def __init__(self, env: TransferEnv, direction: str, remote_path: str, callback: Optional[Progress]) -> None:
        self._env = env
        self._direction = direction
        self._remote_path = remote_path
        self._callback = callback
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._signalled = False
        self.done = 0
        self.total: Optional[int] = None

    def __call__(self, done: int, total: Optional[int]) -> None:
        self.done, self.total = done, total
        if self._callback is not None:
            try:
                self._callback(done, total)
            except Exception:  # a broken callback must not break the transfer
                logger.exception("progress callback for %s failed", self._remote_path)
        now = time.monotonic()
        if now - self._last >= SIGNAL_INTERVAL:
            self._last = now
            self._signalled = True
            self._signal()

    def end(self) -> None:
        if self._signalled:
            self._signal()

    def _signal(self) -> None:
        signals.emit(signals.transfer_progress, self._env.sender, activity_id=self._env.activity_id,
                     direction=self._direction, remote_path=self._remote_path, bytes_done=self.done,
                     bytes_total=self.total)


class TransferStep:
    """One transfer command plus the requestor-side service it needs while it runs."""

    direction = ""

    def __init__(self, env: TransferEnv, remote_path: str, progress: Optional[Progress], what: str) -> None:
        if not isinstance(remote_path, str) or not remote_path.strip():
            raise GolemConfigError(f"{what}: the remote path must be a non-empty string, got {remote_path!r}")
        if progress is not None and not callable(progress):
            raise GolemConfigError(f"{what}: progress must be callable(bytes_done, bytes_total)")
        self.env = env
        self.what = what
        self.remote_path = remote_path
        self.name = new_name()
        self.url = gftp_url(env.node_id, self.name)
        self.reporter = _Reporter(env, self.direction, remote_path, progress)
        self.command: Transfer

    def open(self) -> None:
        """Start serving (before the batch is sent)."""
        raise NotImplementedError

    def announce_start(self) -> None:
        """Send ``transfer_started`` (the step is open; its batch is about to be sent)."""
        signals.emit(signals.transfer_started, self.env.sender, activity_id=self.env.activity_id,
                     transfer_id=self.name, direction=self.direction, remote_path=self.remote_path)

    def announce_end(self, result: Optional[Result], error: Optional[BaseException]) -> None:
        """Send ``transfer_ended``: ``result`` is the step's Result (None if its command never ran)."""
        ok = error is None and result is not None and result.ok
        problem: Optional[Union[BaseException, str]] = error
        if problem is None and not ok:
            problem = (result.message or "failed") if result is not None else "the batch ended before it ran"
        signals.emit(signals.transfer_ended, self.env.sender, activity_id=self.env.activity_id,
                     transfer_id=self.name, direction=self.direction, remote_path=self.remote_path,
                     bytes_done=self.reporter.done, bytes_total=self.reporter.total, ok=ok, error=problem)

    def finish(self, ran: Result) -> Result:
        """The step's Result once its command ran."""
        raise NotImplementedError

    def close(self) -> None:
        """Unbind, close, drop partial data. Never raises."""
        raise NotImplementedError

    def _service_error(self) -> Optional[BaseException]:
        raise NotImplementedError

    def _failed(self, ran: Result, message: Optional[str] = None) -> Result:
        local = message or (str(self._service_error()) if self._service_error() else None)
        text = f"{self.what} {self.remote_path}: {ran.message or 'failed'}"
        if local:
            text += f" (requestor side: {local})"
        return attrs.evolve(ran, result="Error", message=text)


class UploadStep(TransferStep):
    """Serve a local file or bytes; the provider copies them to ``container:<remote_path>``."""

    direction = "upload"

    def __init__(self, env: TransferEnv, remote_path: str, *, path: Optional[PathLike] = None,
                 data: Optional[bytes] = None, progress: Optional[Progress] = None, what: str = "upload") -> None:
        super().__init__(env, remote_path, progress, what)
        if (path is None) == (data is None):
            raise GolemConfigError(f"{what}: give a local path or data, not both")
        self.path = source_file(path, what) if path is not None else None
        if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
            raise GolemConfigError(f"{what}: data must be bytes, got {type(data).__name__}")
        self._data = bytes(data) if data is not None else None
        self.command = Transfer(from_=self.url, to=f"container:{remote_path}")
        self.publication: Optional[Publication] = None

    def open(self) -> None:
        if self.path is not None:
            try:
                source: Union[FileSource, BytesSource] = FileSource(self.path)
            except OSError as exc:  # vanished or unreadable since the step was built
                raise GolemConfigError(f"{self.what}: cannot read local file {str(self.path)!r}: {exc}") from exc
        else:
            assert self._data is not None
            source = BytesSource(self._data)
        self.publication = Publication(self.env.client, self.name, source, self.reporter)
        try:
            self.publication.open()
        except BaseException:
            source.close()
            self.publication = None
            raise

    def finish(self, ran: Result) -> Result:
        self.reporter.end()
        if not ran.ok:
            return self._failed(ran)
        return ran

    def close(self) -> None:
        if self.publication is not None:
            self.publication.close()

    def _service_error(self) -> Optional[BaseException]:
        return self.publication.service.error if self.publication is not None else None


class DownloadStep(TransferStep):
    """Receive ``container:<remote_path>`` into a local file, bytes or a JSON value.

    ``into`` is ``"file"`` (``local`` required; Result.data is the written Path), ``"bytes"`` or
    ``"json"`` (Result.data is the bytes or the parsed value).
    """

    direction = "download"

    def __init__(self, env: TransferEnv, remote_path: str, *, into: str, local: Optional[PathLike] = None,
                 progress: Optional[Progress] = None, max_size: Optional[int] = None,
                 what: str = "download") -> None:
        super().__init__(env, remote_path, progress, what)
        if into not in ("file", "bytes", "json"):
            raise GolemConfigError(f"{what}: unknown destination kind {into!r}")
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0):
            raise GolemConfigError(f"{what}: max_size must be a non-negative integer, got {max_size!r}")
        self.into = into
        self.max_size = max_size
        self.target: Optional[Path] = None
        if into == "file":
            if local is None:
                raise GolemConfigError(f"{what}: a local path is needed")
            self.target = download_target(local, remote_path, what)
        self.command = Transfer(from_=f"container:{remote_path}", to=self.url)
        self.receipt: Optional[Receipt] = None

    def open(self) -> None:
        part = None
        if self.target is not None:
            if not self.target.parent.is_dir():  # removed since the step was built
                raise GolemConfigError(f"{self.what}: local directory {str(self.target.parent)!r} does not exist")
            part = part_path(self.target, self.name[:12])
        try:
            self.receipt = Receipt(self.env.client, self.name, part_path=part, progress=self.reporter,
                                   max_size=self.max_size)
        except OSError as exc:
            raise GolemConfigError(f"{self.what}: cannot write into {str(part)!r}: {exc}") from exc
        self.receipt.open()

    def finish(self, ran: Result) -> Result:
        self.reporter.end()
        receipt = self.receipt
        assert receipt is not None
        if not ran.ok:
            return self._failed(ran)
        if receipt.verified_hash is None:
            return self._failed(ran, "the provider reported success but never finished the upload")
        receipt.close()  # no more writes: the file can be moved
        if self.into == "file":
            assert self.target is not None
            try:
                receipt.commit(self.target)
            except OSError as exc:
                return self._failed(ran, f"could not save {str(self.target)!r}: {exc}")
            return attrs.evolve(ran, data=self.target)
        data = receipt.data()
        if self.into == "json":
            try:
                return attrs.evolve(ran, data=json.loads(data.decode("utf-8")))
            except ValueError as exc:
                return self._failed(ran, f"not JSON: {exc}")
        return attrs.evolve(ran, data=data)

    def close(self) -> None:
        if self.receipt is not None:
            self.receipt.close()
            self.receipt.discard()

    def _service_error(self) -> Optional[BaseException]:
        return self.receipt.service.error if self.receipt is not None else None


class StepBuilder:
    """Builds the six transfer steps of ``WorkContext`` and ``Batch`` (each written once, here).

    ``env`` is called for every step: the command runner builds its environment on first use.
    Each step is named after the method that asked for it (``what``), for its error messages.
    """

    def __init__(self, env: Callable[[], TransferEnv]) -> None:
        self._env = env

    def upload_file(self, local_path: PathLike, remote_path: str, progress: Optional[Progress]) -> UploadStep:
        return UploadStep(self._env(), remote_path, path=local_path, progress=progress, what="upload_file")

    def upload_data(self, data: bytes, remote_path: str, progress: Optional[Progress]) -> UploadStep:
        return UploadStep(self._env(), remote_path, data=data, progress=progress, what="upload_data")

    def upload_json(self, value: Any, remote_path: str) -> UploadStep:
        return UploadStep(self._env(), remote_path, data=json_bytes(value, "upload_json"), what="upload_json")

    def download_file(self, remote_path: str, local_path: PathLike, progress: Optional[Progress],
                      max_size: Optional[int]) -> DownloadStep:
        return DownloadStep(self._env(), remote_path, into="file", local=local_path, progress=progress,
                            max_size=max_size, what="download_file")

    def download_data(self, remote_path: str, progress: Optional[Progress], max_size: Optional[int]) -> DownloadStep:
        return DownloadStep(self._env(), remote_path, into="bytes", progress=progress, max_size=max_size,
                            what="download_data")

    def download_json(self, remote_path: str, max_size: Optional[int]) -> DownloadStep:
        return DownloadStep(self._env(), remote_path, into="json", max_size=max_size, what="download_json")


def json_bytes(value: Any, what: str) -> bytes:
    """``value`` as UTF-8 JSON; GolemConfigError naming ``what`` if it is not serialisable."""
    try:
        return json.dumps(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise GolemConfigError(f"{what}: the value is not JSON-serialisable: {exc}") from exc
