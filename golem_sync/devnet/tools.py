"""External tools the devnet needs and installs once per user: ``anvil`` (from npm).

anvil comes from npm's per-platform package ``@foundry-rs/anvil-<os>-<arch>``; the binary sits
under its ``bin/``. It is installed into ``$XDG_CACHE_HOME/golem_sync/tools/anvil-<version>/``
(default ``~/.cache/...``), guarded by a lock file so parallel test sessions install it once.
Set ``GOLEM_DEVNET_ANVIL`` to the path of an anvil binary to skip the install.
"""
from __future__ import annotations

import fcntl
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from .errors import DevnetConfigError, ToolInstallError

__all__ = ["ANVIL_VERSION", "ToolInstallError", "anvil_package", "cache_dir", "ensure_anvil"]

logger = logging.getLogger("golem_sync.devnet.tools")

ANVIL_VERSION = "1.7.1"
_INSTALL_TIMEOUT = 600.0
_LOCK_TIMEOUT = 900.0

Progress = Callable[[str], None]


def cache_dir() -> Path:
    """Per-user cache root of golem_sync's tools."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "golem_sync" / "tools"


def anvil_package(system: Optional[str] = None, machine: Optional[str] = None) -> str:
    """The npm package holding anvil for this platform (e.g. ``@foundry-rs/anvil-linux-amd64``)."""
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    os_name = {"linux": "linux", "darwin": "darwin"}.get(system)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if os_name is None or arch is None:
        raise DevnetConfigError(
            f"no anvil build for {system}/{machine}; set GOLEM_DEVNET_ANVIL to an anvil binary"
        )
    return f"@foundry-rs/anvil-{os_name}-{arch}"


def _anvil_in(prefix: Path, package: str) -> Path:
    return prefix / "node_modules" / package / "bin" / "anvil"


def ensure_anvil(progress: Optional[Progress] = None, version: str = ANVIL_VERSION) -> Path:
    """Path of a working anvil binary, installing it from npm on first use.

    ``progress`` receives one-line messages (only when something slow happens).
    Raises :class:`ToolInstallError` when npm is missing or the install fails.
    """
    override = os.environ.get("GOLEM_DEVNET_ANVIL")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DevnetConfigError(f"GOLEM_DEVNET_ANVIL={override!r} is not an executable file")
        return path
    package = anvil_package()
    root = cache_dir()
    target = root / f"anvil-{version}"
    binary = _anvil_in(target, package)
    if _usable(binary):
        return binary
    root.mkdir(parents=True, exist_ok=True)
    with _FileLock(root / f".anvil-{version}.lock", progress):
        if _usable(binary):  # another process installed it while we waited
            return binary
        _npm_install(root, target, f"{package}@{version}", progress)
    if not _usable(binary):
        raise ToolInstallError(f"npm installed {package}@{version} but {binary} is not executable")
    return binary


def _usable(binary: Path) -> bool:
    return binary.is_file() and os.access(binary, os.X_OK)


def _npm_install(root: Path, target: Path, spec: str, progress: Optional[Progress]) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ToolInstallError(
            "the devnet needs `anvil`, installed with `npm`, but npm is not on PATH: install Node.js/npm, "
            "or set GOLEM_DEVNET_ANVIL to an anvil binary"
        )
    if progress:
        progress(f"installing {spec} from npm into {target} (first run only)")
    logger.info("installing %s into %s", spec, target)
    # Install into a scratch dir and rename it into place: a crash mid-install never leaves a
    # half-populated target that later runs would trust.
    scratch = Path(tempfile.mkdtemp(prefix=".install-", dir=root))
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(scratch), "--no-save", "--no-audit", "--no-fund", spec],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_INSTALL_TIMEOUT,
        )
        if done.returncode != 0:
            raise ToolInstallError(
                f"`npm install {spec}` failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace').strip()[-2000:]}"
            )
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    except subprocess.TimeoutExpired:
        raise ToolInstallError(f"`npm install {spec}` did not finish in {_INSTALL_TIMEOUT:.0f} s") from None
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


class _FileLock:
    """An exclusive ``fcntl`` lock on a file, held for a ``with`` block (bounded wait)."""

    def __init__(self, path: Path, progress: Optional[Progress]) -> None:
        self._path = path
        self._progress = progress
        self._fd: Optional[int] = None

    def __enter__(self) -> "_FileLock":
        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self._progress:
                self._progress("waiting for another process installing the same tool")
            self._wait_locked(fd)
        self._fd = fd
        return self

    def _wait_locked(self, fd: int) -> None:
        # flock() has no timeout and no Event exists across processes: retry the non-blocking
        # lock at a slow pace, bounded, so a stuck peer gives an error instead of a hang.
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            time.sleep(0.25)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise ToolInstallError(
                        f"another process held {self._path} for over {_LOCK_TIMEOUT:.0f} s"
                    ) from None

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
