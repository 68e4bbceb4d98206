"""The provider side of gftp over GSB: fetch a file a requestor published, or push one to it.

A requestor publishes a file (or an upload slot) under ``/public/gftp/<hash>`` on its node and
hands the provider ``gftp://<nodeId>/<hash>``; the provider reaches it through yagna's net as
``/net/<nodeId>/gftp/<hash>/<Message>``. Messages (yagna ``core/model/src/gftp.rs``):
``GetMetadata`` (unit) -> ``{fileSize}``; ``GetChunk {offset, size}`` -> ``{offset, content}``;
``UploadChunk {chunk: {offset, content}}`` -> unit; ``UploadFinished {hash}`` (sha3-256 hex) -> unit.
Every reply is a serde ``Result`` (``{"Ok": ...}`` / ``{"Err": ...}``).

Threads: the functions block the calling thread; each call waits at most ``timeout`` s.
"""
from __future__ import annotations

import hashlib
from typing import IO, Any, Callable, Optional, Tuple
from urllib.parse import urlparse

from .errors import GftpError, GsbError
from .gsb import GsbConnection, ok_value

__all__ = ["CHUNK_SIZE", "GftpError", "parse_gftp_url", "gftp_fetch", "gftp_push"]

#: gftp's own chunk size; yagna's GSB-API WebSocket caps frames at 64 KiB, so bigger chunks
#: would kill a requestor's socket.
CHUNK_SIZE = 40 * 1024


def parse_gftp_url(url: str) -> Tuple[str, str]:
    """``gftp://<nodeId>/<hash>`` -> ``(nodeId, hash)``."""
    parsed = urlparse(url)
    name = parsed.path.strip("/")
    if parsed.scheme != "gftp" or not parsed.netloc or not name or "/" in name:
        raise GftpError(f"not a gftp URL: {url!r} (want gftp://<nodeId>/<hash>)")
    return parsed.netloc.lower(), name


def _address(url: str) -> str:
    node_id, name = parse_gftp_url(url)
    return f"/net/{node_id}/gftp/{name}"


def _checked(conn: GsbConnection, address: str, body: object, timeout: float) -> Any:
    try:
        return ok_value(conn.call(address, body, timeout))
    except GftpError:
        raise
    except GsbError as exc:
        raise GftpError(f"gftp {address}: {exc}") from exc


def gftp_fetch(conn: GsbConnection, url: str, sink: IO[bytes], *, timeout: float = 30.0,
               chunk_size: int = CHUNK_SIZE,
               cancelled: Optional[Callable[[], bool]] = None) -> int:
    """Download the file behind ``url`` into ``sink``; return its size in bytes."""
    address = _address(url)
    meta = _checked(conn, f"{address}/GetMetadata", None, timeout)
    if not isinstance(meta, dict) or not isinstance(meta.get("fileSize"), int):
        raise GftpError(f"gftp {address}: bad metadata {meta!r:.200}")
    size = int(meta["fileSize"])
    offset = 0
    while offset < size:
        if cancelled is not None and cancelled():
            raise GftpError(f"gftp {address}: cancelled")
        want = min(chunk_size, size - offset)
        chunk = _checked(conn, f"{address}/GetChunk", {"offset": offset, "size": want}, timeout)
        content = chunk.get("content") if isinstance(chunk, dict) else None
        if isinstance(content, list):  # a serde Vec<u8> sent as a plain vector
            content = bytes(content)
        if not isinstance(content, (bytes, bytearray)) or not content:
            raise GftpError(f"gftp {address}: empty or bad chunk at offset {offset}")
        if chunk.get("offset", offset) != offset:
            raise GftpError(f"gftp {address}: chunk for offset {chunk.get('offset')}, wanted {offset}")
        sink.write(content)
        offset += len(content)
    return size


def gftp_push(conn: GsbConnection, url: str, source: IO[bytes], *, timeout: float = 30.0,
              chunk_size: int = CHUNK_SIZE,
              cancelled: Optional[Callable[[], bool]] = None) -> Tuple[int, str]:
    """Upload ``source`` to the slot behind ``url``; return ``(size, sha3-256 hex)``."""
    address = _address(url)
    digest = hashlib.sha3_256()
    offset = 0
    while True:
        if cancelled is not None and cancelled():
            raise GftpError(f"gftp {address}: cancelled")
        content = source.read(chunk_size)
        if not content:
            break
        digest.update(content)
        _checked(conn, f"{address}/UploadChunk",
                 {"chunk": {"offset": offset, "content": bytes(content)}}, timeout)
        offset += len(content)
    hexdigest = digest.hexdigest()
    _checked(conn, f"{address}/UploadFinished", {"hash": hexdigest}, timeout)
    return offset, hexdigest
