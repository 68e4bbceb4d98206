"""Where transfers may read and write on the requestor's machine.

Every check here runs before anything is sent to yagna, and every error names the path. A
download writes only where the caller said: when the caller names a directory, the file name
comes from the remote side and is accepted only as one plain name inside that directory.
"""
from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Union

from ..errors import GolemConfigError

__all__ = ["source_file", "download_target", "safe_name", "inside", "part_path"]

PathLike = Union[str, "os.PathLike[str]"]


def source_file(path: PathLike, what: str) -> Path:
    """The local file an upload reads; raises GolemConfigError naming it if it is not a file."""
    local = Path(os.fspath(path))
    if not local.exists():
        raise GolemConfigError(f"{what}: local file {str(local)!r} does not exist")
    if not local.is_file():
        raise GolemConfigError(f"{what}: local path {str(local)!r} is not a regular file")
    return local


def download_target(local: PathLike, remote_path: str, what: str) -> Path:
    """The local file a download writes.

    ``local`` is the file to write; if it is an existing directory, the file is written inside it
    under the base name of ``remote_path``. The directory must exist (it is never created).
    """
    target = Path(os.fspath(local))
    if target.is_dir():
        return inside(target, posixpath.basename(remote_path.rstrip("/")), what)
    parent = target.parent
    if not parent.is_dir():
        raise GolemConfigError(f"{what}: local directory {str(parent)!r} does not exist (for {str(target)!r})")
    if not target.name or target.name in (".", ".."):
        raise GolemConfigError(f"{what}: {str(target)!r} does not name a file")
    return target


def safe_name(name: str, what: str) -> str:
    """``name`` if it is one plain file name; never a path, ``.``/``..``, empty or with NUL."""
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if (not isinstance(name, str) or not name or name in (".", "..") or "\0" in name
            or any(sep in name for sep in seps)):
        raise GolemConfigError(f"{what}: refusing file name {name!r} from the remote side "
                               "(not a plain name inside the chosen directory)")
    return name


def inside(directory: Path, name: str, what: str) -> Path:
    """``directory/name`` for a plain ``name``, checked to stay inside ``directory``."""
    target = directory / safe_name(name, what)
    # Belt and braces: even a name that passed the checks must stay in the directory. The last
    # component is not resolved: os.replace swaps a symlink there for the file, never writes through it.
    base = directory.resolve()
    if Path(os.path.normpath(base / name)).parent != base:
        raise GolemConfigError(f"{what}: {name!r} would land outside {str(directory)!r}")
    return target


def part_path(target: Path, token: str) -> Path:
    """A hidden sibling of ``target`` for the bytes still arriving (same directory: atomic rename)."""
    return target.with_name(f".{target.name}.{token}.part")
