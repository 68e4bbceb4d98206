"""The devnet CLI's daemon supervision: the state dir, pid files, signals, the detached server.

``up`` starts :func:`serve` in a detached process (its own session, so it survives the shell and
its Ctrl-C); the server writes progress lines, then ``READY`` or ``FAILED <reason>``, on a status
pipe, and its pid and connection settings into the state dir. ``down`` stops it by pid (checking
the pid still belongs to a devnet process) and, if it died hard, the yagna/anvil it left behind.
The argument parsing and the printing live in :mod:`.cli`.

Threads: everything here runs on the main thread of its process; :func:`serve` turns SIGTERM,
SIGHUP and SIGINT into ``SystemExit`` so its ``finally`` brings the devnet down.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Dict, Iterator, List, Optional, Tuple

__all__ = [
    "PID_FILE", "INFO_FILE", "LOG_FILE", "MARKER", "READY", "FAILED",
    "default_state_dir", "pid_alive", "cmdline_has", "read_pid", "read_info", "write_private",
    "terminate", "leftover_daemons", "install_signal_handlers", "spawn_server", "status_lines", "serve",
]

PID_FILE = "devnet.pid"
INFO_FILE = "info.json"
LOG_FILE = "devnet.log"
MARKER = ".golem-devnet"  # `down` deletes only directories that carry it
READY = "READY"
FAILED = "FAILED "


def default_state_dir() -> Path:
    """Per-user state dir of the CLI's devnet."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "golem_sync" / "devnet"


def pid_alive(pid: Optional[int]) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True


def cmdline_has(pid: int, word: str) -> bool:
    """True if ``pid``'s command line mentions ``word`` (guards against pid reuse); True if unknown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return word.encode() in fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (macOS): trust the pid file


def read_pid(state: Path) -> Optional[int]:
    try:
        return int((state / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def read_info(state: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads((state / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid`` (not our child), wait up to ``timeout`` for it to go, then SIGKILL. True if gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    # Not our child, so no wait(); poll its existence at a slow pace, bounded.
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    time.sleep(0.2)
    return not pid_alive(pid)


def leftover_daemons(state: Path) -> List[str]:
    """yagna/anvil processes recorded in ``state``'s info.json that still run."""
    info = read_info(state) or {}
    found = []
    for key, word in (("yagna_pid", "yagna"), ("anvil_pid", "anvil")):
        pid = info.get(key)
        if isinstance(pid, int) and pid_alive(pid) and cmdline_has(pid, word):
            found.append(f"{word} pid {pid}")
    return found


def _raise_exit(signum: int, frame: Optional[FrameType]) -> None:
    # Turn SIGTERM/SIGHUP into SystemExit on the main thread so `finally` blocks bring the devnet down.
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


def spawn_server(state: Path, providers: int) -> Tuple["subprocess.Popen[bytes]", int]:
    """Start :func:`serve` detached (``python -m golem_sync.devnet _serve``), logging to the state
    dir; return the process and the read end of its status pipe (the caller closes it)."""
    read_fd, write_fd = os.pipe()
    log = open(state / LOG_FILE, "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "golem_sync.devnet", "_serve", "--state-dir", str(state),
             "--providers", str(providers), "--status-fd", str(write_fd)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,  # detached: survives this shell and its Ctrl-C
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
        log.close()
    return proc, read_fd


def status_lines(fd: int, deadline: float) -> Iterator[str]:
    """Lines from the server's status pipe until EOF or ``deadline`` (select-bounded reads)."""
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode(errors="replace")


def serve(state: Path, providers: int, status_fd: Optional[int]) -> int:
    """The detached devnet process: up, report ready, wait for a signal, down."""
    from .launcher import Devnet

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    status = os.fdopen(status_fd, "w", buffering=1) if status_fd is not None else None

    def report(line: str) -> None:
        nonlocal status
        if status is None:
            return
        try:
            status.write(line.replace("\n", " ") + "\n")
        except OSError:  # the `up` command went away; keep serving
            status = None

    install_signal_handlers()
    signal.signal(signal.SIGINT, _raise_exit)
    write_private(state / PID_FILE, f"{os.getpid()}\n")
    net = Devnet(providers=providers, state_dir=state, proxy=True)
    atexit.register(net.down)  # safety net; down() is idempotent
    stop = threading.Event()
    try:
        try:
            info = net.up(progress=report)
            write_private(state / INFO_FILE, json.dumps(info.to_dict(), indent=2))
        except Exception as exc:
            logging.getLogger("golem_sync.devnet").exception("devnet failed to start")
            report(f"{FAILED}{exc}")
            return 1
        report(f"up in {net.timings.get('total', 0):.2f} s")
        report(READY)
        if status is not None:
            status.close()
            status = None
        while not stop.wait(3600):  # until a signal raises SystemExit
            pass
        return 0
    finally:
        net.down()
        for name in (PID_FILE, INFO_FILE):
            try:
                (state / name).unlink()
            except OSError:
                pass
