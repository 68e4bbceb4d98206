"""gftp over the GSB API: serve a file or bytes to a provider, or receive one from it.

A provider's exe-unit fetches ``gftp://<requestorNodeId>/<name>`` by calling, through yagna's
net, ``/public/gftp/<name>/GetMetadata`` (-> ``{fileSize}``) and ``GetChunk {offset, size}``
(-> ``{offset, content}``); it pushes with ``UploadChunk {chunk: {offset, content}}`` and then
``UploadFinished {hash}`` (sha3-256 hex of the whole file). See yagna ``core/model/src/gftp.rs``.

Threads: :class:`Publication` and :class:`Receipt` are opened and closed by the worker's thread;
their ``handle`` methods run on the service's reader thread (see :mod:`.service`). A Receipt's
state is written by that thread only until ``UploadFinished``; the worker reads it after the
provider's transfer command has finished, which happens after the reply to ``UploadFinished``.
The served file (Publication) and the part file's descriptor (Receipt) are closed by the
service's ``on_stopped`` hook: on the closing thread, or on the reader thread once a slow
progress callback it was running returns, never while the reader may still use them.
"""
from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .. import _flex as flex
from ..errors import GolemWorkError
from ..yagna.client import YagnaClient
from .service import GsbService, ServiceFailure

__all__ = ["CHUNK_SIZE", "MAX_CHUNK", "MAX_MEMORY_DOWNLOAD", "REORDER_WINDOW", "Progress", "FileSource",
           "BytesSource", "Publication", "Receipt", "new_name", "gftp_url"]

#: gftp's own chunk size.
CHUNK_SIZE = 40 * 1024
#: yagna caps GSB API WebSocket frames at 64 KiB and a bigger frame kills the socket, so a
#: chunk reply never carries more than this (a provider asking for more gets a short chunk).
MAX_CHUNK = 60 * 1024

#: Default ``max_size`` of a download received into memory (``download_data``/``download_json``):
#: the provider must not choose how much the requestor allocates.
MAX_MEMORY_DOWNLOAD = 64 * 1024 * 1024
#: How far past the highest byte received so far a chunk may start (providers may send a few
#: chunks out of order); a chunk further out is refused before anything is allocated or written.
REORDER_WINDOW = 1024 * 1024

#: ``progress(bytes_done, bytes_total_or_None)``
Progress = Callable[[int, Optional[int]], None]


def new_name() -> str:
    """A fresh, unguessable gftp name: ``/public/gftp/<name>`` is reachable by any node."""
    return uuid.uuid4().hex


def gftp_url(node_id: str, name: str) -> str:
    return f"gftp://{node_id.lower()}/{name}"


class FileSource:
    """A local file to publish; opened at once, so a missing file fails before anything is sent."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BytesSource:
    """Bytes to publish."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(bytes(data))
        self.size = len(self._data)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self._data[offset:offset + size])

    def close(self) -> None:
        pass


Source = Union[FileSource, BytesSource]


class Publication:
    """Serves one source as ``/public/gftp/<name>`` (GetMetadata, GetChunk) until closed."""

    def __init__(self, client: YagnaClient, name: str, source: Source, progress: Optional[Progress] = None) -> None:
        self.name = name
        self.source = source
        self._progress = progress
        self.served = 0  # highest byte offset handed out
        # The source is closed once the service is closed and its reader gone (on whichever thread
        # comes last): never under a reader still using it, and never leaked.
        self.service = GsbService(client, f"/public/gftp/{name}", ["GetMetadata", "GetChunk"], self.handle,
                                  on_stopped=source.close)

    def open(self) -> "Publication":
        self.service.open()
        return self

    def close(self) -> None:
        """Unbind and close; the source is closed now, or by the reader when a slow callback returns."""
        self.service.close()

    def handle(self, component: str, payload: Any) -> Any:
        if component == "GetMetadata":
            return {"fileSize": self.source.size}
        if component == "GetChunk":
            if not isinstance(payload, dict):
                raise ServiceFailure(f"GetChunk without offset and size: {payload!r:.100}")
            offset, size = _count(payload.get("offset")), _count(payload.get("size"))
            if offset is None or size is None or offset > self.source.size:
                raise ServiceFailure(f"bad GetChunk range {payload!r:.100}")
            content = self.source.read(offset, min(size, MAX_CHUNK, self.source.size - offset))
            end = offset + len(content)
            if end > self.served:
                self.served = end
                if self._progress is not None:
                    self._progress(end, self.source.size)
            return {"offset": offset, "content": content}
        raise ServiceFailure(f"unknown gftp message {component!r}")


class Receipt:
    """Receives one upload from a provider (UploadChunk, UploadFinished) into a file or memory.

    Into a file: chunks go to ``part_path`` (created exclusively by the caller's directory
    choice) and only :meth:`commit` moves it to its final place. The sha3-256 hash the provider
    sends in ``UploadFinished`` is checked against the bytes received; a mismatch is answered with
    an error, so the provider's transfer command fails too.

    Chunks are refused (answered with an error, so the provider's transfer fails, and kept in
    ``service.error`` as a :class:`GolemWorkError`) when they reach beyond ``max_size`` or start
    more than :data:`REORDER_WINDOW` bytes past the highest byte received so far; nothing is
    allocated or written for them.

    Args:
        max_size: refuse chunks reaching beyond this many bytes (protects memory and disk). For a
            download into memory ``None`` means :data:`MAX_MEMORY_DOWNLOAD` (64 MiB); into a file,
            no limit.
    """

    def __init__(self, client: YagnaClient, name: str, *, part_path: Optional[Path] = None,
                 progress: Optional[Progress] = None, max_size: Optional[int] = None) -> None:
        self.name = name
        self.part_path = part_path
        self._progress = progress
        self._max_size = max_size if max_size is not None or part_path is not None else MAX_MEMORY_DOWNLOAD
        self._fd = -1
        self._buffer = bytearray()
        if part_path is not None:
            # O_EXCL: never write through a file or link that was already there.
            self._fd = os.open(part_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        self._hasher = hashlib.sha3_256()
        self._hashed = 0  # the hash covers bytes [0, _hashed) while chunks arrive in order
        self._in_order = True
        self.size = 0
        self.received = 0
        self.finished = threading.Event()
        self.verified_hash: Optional[str] = None
        # The part file's descriptor is closed once the service is closed and its reader gone.
        self.service = GsbService(client, f"/public/gftp/{name}", ["UploadChunk", "UploadFinished"], self.handle,
                                  on_stopped=self._close_fd)

    def open(self) -> "Receipt":
        try:
            self.service.open()
        except BaseException:
            self.discard()
            raise
        return self

    def close(self) -> None:
        """Unbind and close the socket; the received bytes stay until commit/discard.

        The part file's descriptor is closed now, or by the reader thread once a slow progress
        callback returns (never under a reader that may still write to it).
        """
        self.service.close()

    def handle(self, component: str, payload: Any) -> Any:
        if self.verified_hash is not None:
            raise ServiceFailure(f"gftp {component} after UploadFinished")
        if component == "UploadChunk":
            chunk = payload.get("chunk") if isinstance(payload, dict) else None
            if not isinstance(chunk, dict):
                raise ServiceFailure(f"UploadChunk without a chunk: {payload!r:.100}")
            offset = _count(chunk.get("offset"))
            try:
                content = flex.as_bytes(chunk.get("content"))
            except (TypeError, ValueError) as exc:
                raise ServiceFailure(f"UploadChunk content: {exc}") from exc
            if offset is None:
                raise ServiceFailure(f"bad UploadChunk offset {chunk.get('offset')!r:.40}")
            end = offset + len(content)
            if self._max_size is not None and end > self._max_size:
                raise GolemWorkError(f"gftp {self.name}: refused a chunk at offset {offset} (+{len(content)} bytes): "
                                     f"the download would exceed max_size of {self._max_size} bytes")
            if offset > self.size + REORDER_WINDOW:
                raise GolemWorkError(f"gftp {self.name}: refused a chunk at offset {offset}: it starts more than "
                                     f"{REORDER_WINDOW} bytes past the {self.size} bytes received so far")
            self._write(offset, content)
            self.size = max(self.size, end)
            self.received += len(content)
            if self._progress is not None:
                self._progress(self.received, None)
            return None
        if component == "UploadFinished":
            expected = payload.get("hash") if isinstance(payload, dict) else None
            if not isinstance(expected, str) or not expected:
                raise ServiceFailure("UploadFinished without a hash: the download cannot be verified")
            actual = self._digest()
            if actual != expected.lower():
                raise ServiceFailure(f"sha3-256 mismatch: provider says {expected}, received bytes hash to {actual}")
            self.verified_hash = actual
            self.finished.set()
            return None
        raise ServiceFailure(f"unknown gftp message {component!r}")

    def data(self) -> bytes:
        """The received bytes (memory receipts)."""
        return bytes(self._buffer)

    def commit(self, target: Path) -> None:
        """Move the verified file to ``target`` (atomic within its directory)."""
        if self.verified_hash is None or self.part_path is None:
            raise GolemWorkError(f"gftp {self.name}: nothing verified to save as {target}")
        os.replace(self.part_path, target)
        self.part_path = None

    def discard(self) -> None:
        """Close the service and remove a partial file; safe to call at any time, from any thread."""
        self.service.close()  # idempotent; the descriptor follows the reader (see close())
        if self.part_path is not None:
            try:
                self.part_path.unlink()
            except FileNotFoundError:
                pass
            self.part_path = None

    # -- internals ---------------------------------------------------------------------------

    def _close_fd(self) -> None:
        """The service's on_stopped: runs once, when no reader can write any more."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self, offset: int, content: bytes) -> None:
        if self._fd >= 0:
            os.pwrite(self._fd, content, offset)
        else:
            end = offset + len(content)
            if len(self._buffer) < end:
                self._buffer.extend(bytes(end - len(self._buffer)))
            self._buffer[offset:end] = content
        if self._in_order and offset == self._hashed:
            self._hasher.update(content)
            self._hashed += len(content)
        else:
            self._in_order = False  # hash the whole result at the end instead

    def _digest(self) -> str:
        if self._in_order and self._hashed == self.size:
            return self._hasher.hexdigest()
        hasher = hashlib.sha3_256()
        if self._fd >= 0:
            offset = 0
            while offset < self.size:
                block = os.pread(self._fd, min(1 << 20, self.size - offset), offset)
                if not block:
                    break
                hasher.update(block)
                offset += len(block)
        else:
            hasher.update(self._buffer)
        return hasher.hexdigest()


def _count(value: Any) -> Optional[int]:
    """``value`` if it is a non-negative int, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
