"""The devnet exe-unit's ``transfer`` command: moving files between the activity and URLs.

Sources and targets are ``container:<path>`` (inside the activity's directory, through the
exe-unit's path mapping, so a path can never escape it), ``gftp://<node>/<hash>`` (the requestor's
files over GSB, 40 KiB chunks), ``http(s)://`` and ``file:``. A file written into the container
appears only when complete (written to ``.part``, then renamed).

Threads: one :class:`Transfers` serves one command on the batch thread; ``cancelled`` is polled
between chunks so a stopping exe-unit ends a transfer promptly.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, Optional

import requests

from .errors import TransferError
from .gftp import CHUNK_SIZE, gftp_fetch, gftp_push
from .gsb import GsbConnection

__all__ = ["Transfers", "TransferError"]


class Transfers:
    """Carries out transfer commands for one activity."""

    def __init__(self, conn: GsbConnection, container_path: Callable[[str], Path], work_dir: Path,
                 cancelled: Callable[[], bool]) -> None:
        self._conn = conn
        self.container_path = container_path
        self.work_dir = work_dir
        self._cancelled = cancelled

    def run(self, source: str, target: str, args: Dict[str, Any]) -> None:
        """Execute one transfer command; raises TransferError with the reason when it fails."""
        if args.get("format") or args.get("fileset"):
            raise TransferError("transfer with format/fileset (archives) is not supported")
        conn = self._conn
        assert conn is not None
        tmp_target: Optional[Path] = None
        if target.startswith("container:"):
            dest = self.container_path(target[len("container:"):])
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp_target = dest.with_name(dest.name + ".part")
        if source.startswith("container:"):
            src = self.container_path(source[len("container:"):])
            if not src.is_file():
                raise TransferError(f"transfer source {source} does not exist")
            with open(src, "rb") as fh:
                self._write_to(target, fh, tmp_target)
        elif source.startswith("gftp://"):
            self._sink(target, tmp_target, lambda out: gftp_fetch(
                conn, source, out, cancelled=self._cancelled))
        elif source.startswith(("http://", "https://")):
            def fetch_http(out: IO[bytes]) -> None:
                with requests.get(source, stream=True, timeout=30) as resp:
                    if resp.status_code != 200:
                        raise TransferError(f"GET {source} answered {resp.status_code}")
                    for chunk in resp.iter_content(CHUNK_SIZE):
                        if self._cancelled():
                            raise TransferError("transfer cancelled")
                        out.write(chunk)
            self._sink(target, tmp_target, fetch_http)
        elif source.startswith("file:"):
            path = _file_url_path(source)
            with open(path, "rb") as fh:
                self._write_to(target, fh, tmp_target)
        else:
            raise TransferError(f"unsupported transfer source {source!r}")

    def _sink(self, target: str, tmp_target: Optional[Path], fill: Any) -> None:
        """Let ``fill(fileobj)`` produce the data, then deliver it to ``target``."""
        if tmp_target is not None:
            self._fill_file(tmp_target, fill)
            return
        # Non-container targets get the data through a temp file in the activity dir.
        spool = self.work_dir / f".spool-{uuid.uuid4().hex}"
        try:
            with open(spool, "wb") as out:
                fill(out)
            with open(spool, "rb") as fh:
                self._write_to(target, fh, None)
        finally:
            spool.unlink(missing_ok=True)

    def _fill_file(self, tmp_target: Path, fill: Any) -> None:
        final = tmp_target.with_name(tmp_target.name[: -len(".part")])
        try:
            with open(tmp_target, "wb") as out:
                fill(out)
            os.replace(tmp_target, final)  # readers never see a half-written file
        finally:
            tmp_target.unlink(missing_ok=True)

    def _write_to(self, target: str, source: IO[bytes], tmp_target: Optional[Path]) -> None:
        conn = self._conn
        assert conn is not None
        if tmp_target is not None:
            self._fill_file(tmp_target, lambda out: shutil.copyfileobj(source, out, CHUNK_SIZE))
        elif target.startswith("gftp://"):
            gftp_push(conn, target, source, cancelled=self._cancelled)
        elif target.startswith(("http://", "https://")):
            resp = requests.put(target, data=_chunks(source), timeout=30)
            if resp.status_code >= 300:
                raise TransferError(f"PUT {target} answered {resp.status_code}")
        elif target.startswith("file:"):
            path = _file_url_path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK_SIZE)
        else:
            raise TransferError(f"unsupported transfer target {target!r}")


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    while True:
        data = source.read(CHUNK_SIZE)
        if not data:
            return
        yield data


def _file_url_path(url: str) -> Path:
    rest = url[len("file:"):]
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):  # file://host/path: only the local host exists here
            rest = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return Path(rest)
