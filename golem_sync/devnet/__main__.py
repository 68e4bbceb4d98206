"""Command line for the offline Golem devnet: ``python -m golem_sync.devnet COMMAND``.

Commands:
  up [--providers N] [--state-dir D]   start a devnet in a detached background process; returns when ready
  status [--state-dir D]               show what runs (pids alive?) and where
  env [--shell] [--state-dir D]        print the requestor settings (K=V; --shell: export K='V')
  down [--state-dir D]                 stop what `up` started and remove its state dir
  run [--providers N] -- CMD...        bring a devnet up in-process, run CMD with its env, bring it
                                       down, exit with CMD's exit code

WARNING: the devnet runs on this host, unsandboxed. Its providers execute whatever a requestor
sends them as the current user, with no VM or container. It is a test network: use it only for
code you trust.

The default state dir is $XDG_STATE_HOME/golem_sync/devnet (~/.local/state/golem_sync/devnet);
it holds the pid file, info.json (connection settings incl. app keys, mode 0600) and logs.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, Dict, Iterator, List, Optional, Sequence

__all__ = ["main", "default_state_dir"]

_PID_FILE = "devnet.pid"
_INFO_FILE = "info.json"
_LOG_FILE = "devnet.log"
_MARKER = ".golem-devnet"  # `down` deletes only directories that carry it
_READY = "READY"
_FAILED = "FAILED "

_WARNING = (
    "The devnet runs on this host, UNSANDBOXED: its providers execute requestors' commands as the "
    "current user. It is a test network."
)


def default_state_dir() -> Path:
    """Per-user state dir of the CLI's devnet."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "golem_sync" / "devnet"


def _pid_alive(pid: Optional[int]) -> bool:
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


def _cmdline_has(pid: int, word: str) -> bool:
    """True if ``pid``'s command line mentions ``word`` (guards against pid reuse); True if unknown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return word.encode() in fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (macOS): trust the pid file


def _read_pid(state: Path) -> Optional[int]:
    try:
        return int((state / _PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _read_info(state: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads((state / _INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid`` (not our child), wait up to ``timeout`` for it to go, then SIGKILL. True if gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    # Not our child, so no wait(); poll its existence at a slow pace, bounded.
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    time.sleep(0.2)
    return not _pid_alive(pid)


def _leftover_daemons(state: Path) -> List[str]:
    """yagna/anvil processes recorded in ``state``'s info.json that still run."""
    info = _read_info(state) or {}
    found = []
    for key, word in (("yagna_pid", "yagna"), ("anvil_pid", "anvil")):
        pid = info.get(key)
        if isinstance(pid, int) and _pid_alive(pid) and _cmdline_has(pid, word):
            found.append(f"{word} pid {pid}")
    return found


def _raise_exit(signum: int, frame: Optional[FrameType]) -> None:
    # Turn SIGTERM/SIGHUP into SystemExit on the main thread so `finally` blocks bring the devnet down.
    raise SystemExit(128 + signum)


def _install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


# -- up / _serve -----------------------------------------------------------------------------


def _cmd_up(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    pid = _read_pid(state)
    if _pid_alive(pid):
        print(f"a devnet already runs from {state} (pid {pid}); `down` it first", file=sys.stderr)
        return 1
    leftovers = _leftover_daemons(state)
    if leftovers:
        print(f"processes of an earlier devnet in {state} still run ({', '.join(leftovers)}); "
              "run `down` first", file=sys.stderr)
        return 1
    if state.exists() and any(state.iterdir()) and not (state / _MARKER).exists():
        print(f"{state} exists and is not a devnet state dir; choose another --state-dir", file=sys.stderr)
        return 2
    state.mkdir(parents=True, exist_ok=True)
    (state / _MARKER).touch()
    print(_WARNING, file=sys.stderr)
    read_fd, write_fd = os.pipe()
    log = open(state / _LOG_FILE, "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "golem_sync.devnet", "_serve", "--state-dir", str(state),
             "--providers", str(args.providers), "--status-fd", str(write_fd)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,  # detached: survives this shell and its Ctrl-C
        )
    finally:
        os.close(write_fd)
        log.close()
    # The server reports progress lines, then READY or FAILED, on the pipe; EOF means it died.
    ok = False
    deadline = time.monotonic() + args.timeout
    try:
        for line in _status_lines(read_fd, deadline):
            if line == _READY:
                ok = True
                break
            if line.startswith(_FAILED):
                print(f"devnet failed to start: {line[len(_FAILED):]}", file=sys.stderr)
                break
            print(f"  {line}", file=sys.stderr)
        else:
            timed_out = time.monotonic() >= deadline
            print(f"devnet did not report ready within {args.timeout:.0f} s" if timed_out
                  else "devnet process ended before it was ready", file=sys.stderr)
    finally:
        os.close(read_fd)
    if not ok:
        if proc.poll() is None:
            _terminate(proc.pid, 15)
        proc.wait(timeout=5)
        print(f"see {state / _LOG_FILE}", file=sys.stderr)
        return 1
    info = _read_info(state) or {}
    print(f"devnet up (pid {proc.pid}): yagna {info.get('api_url')}, {len(info.get('providers', []))} provider(s)")
    print(f"use it with: eval \"$(python -m golem_sync.devnet env --shell --state-dir {shlex.quote(str(state))})\"")
    return 0


def _status_lines(fd: int, deadline: float) -> Iterator[str]:
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


def _cmd_serve(args: argparse.Namespace) -> int:
    """The detached devnet process: up, report ready, wait for a signal, down."""
    import logging
    import threading

    from .launcher import Devnet

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state: Path = args.state_dir
    status = os.fdopen(args.status_fd, "w", buffering=1) if args.status_fd is not None else None

    def report(line: str) -> None:
        nonlocal status
        if status is None:
            return
        try:
            status.write(line.replace("\n", " ") + "\n")
        except OSError:  # the `up` command went away; keep serving
            status = None

    _install_signal_handlers()
    signal.signal(signal.SIGINT, _raise_exit)
    _write_private(state / _PID_FILE, f"{os.getpid()}\n")
    net = Devnet(providers=args.providers, state_dir=state)
    atexit.register(net.down)  # safety net; down() is idempotent
    stop = threading.Event()
    try:
        try:
            info = net.up(progress=report)
            _write_private(state / _INFO_FILE, json.dumps(info.to_dict(), indent=2))
        except Exception as exc:
            logging.getLogger("golem_sync.devnet").exception("devnet failed to start")
            report(f"{_FAILED}{exc}")
            return 1
        report(f"up in {net.timings.get('total', 0):.2f} s")
        report(_READY)
        if status is not None:
            status.close()
            status = None
        while not stop.wait(3600):  # until a signal raises SystemExit
            pass
        return 0
    finally:
        net.down()
        for name in (_PID_FILE, _INFO_FILE):
            try:
                (state / name).unlink()
            except OSError:
                pass


# -- status / env / down ---------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    pid = _read_pid(state)
    info = _read_info(state)
    if pid is None and info is None:
        print(f"no devnet in {state}")
        return 1
    alive = _pid_alive(pid)
    print(f"devnet process: pid {pid} {'running' if alive else 'NOT running'}")
    if info:
        for what, key in (("yagna", "yagna_pid"), ("anvil", "anvil_pid")):
            p = info.get(key)
            print(f"{what}: pid {p} {'running' if _pid_alive(p) else 'NOT running'}")
        print(f"yagna api: {info.get('api_url')}  gsb: {info.get('gsb_url')}")
        print(f"requestor: {info.get('requestor_id')}  subnet: {info.get('subnet')}")
        print(f"chain: {info.get('chain_rpc_url')}  token: {info.get('token_address')}")
        print(f"registry: {info.get('registry_url')}")
        for prov in info.get("providers", []):
            print(f"provider {prov.get('name')}: {prov.get('node_id')}")
    return 0 if alive else 1


def _cmd_env(args: argparse.Namespace) -> int:
    from .launcher import DevnetInfo

    info = _read_info(args.state_dir)
    if info is None or not _pid_alive(_read_pid(args.state_dir)):
        print(f"no running devnet in {args.state_dir}: run `python -m golem_sync.devnet up`", file=sys.stderr)
        return 1
    for key, value in DevnetInfo.from_dict(info).env().items():
        print(f"export {key}={shlex.quote(value)}" if args.shell else f"{key}={value}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    if not (state / _MARKER).exists():
        print(f"no devnet state in {state}")
        return 0
    pid = _read_pid(state)
    info = _read_info(state) or {}
    ok = True
    if _pid_alive(pid) and pid is not None and _cmdline_has(pid, "golem_sync.devnet"):
        print(f"stopping devnet process {pid}")
        ok = _terminate(pid, args.timeout)
    # If the devnet process died hard, its daemons (own sessions) may still run: stop them by pid.
    for key, word in (("yagna_pid", "yagna"), ("anvil_pid", "anvil")):
        p = info.get(key)
        if isinstance(p, int) and _pid_alive(p) and _cmdline_has(p, word):
            print(f"stopping leftover {word} pid {p}")
            ok = _terminate(p, 10) and ok
    shutil.rmtree(state, ignore_errors=True)
    print("devnet down" if ok else "devnet down, but some process did not stop")
    return 0 if ok else 1


# -- run -------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    import logging

    from .launcher import Devnet

    command: List[str] = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("run: give a command after --, e.g. `run -- python my_job.py`", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="devnet: %(levelname)s %(name)s: %(message)s")
    print(_WARNING, file=sys.stderr)
    _install_signal_handlers()
    net = Devnet(providers=args.providers, state_dir=args.state_dir_run)
    atexit.register(net.down)
    child: Optional["subprocess.Popen[bytes]"] = None
    try:
        info = net.up(progress=lambda msg: print(f"devnet: {msg}", file=sys.stderr))
        print(f"devnet: up in {net.timings.get('total', 0):.2f} s", file=sys.stderr)
        env = dict(os.environ)
        env.update(info.env())
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as exc:
            print(f"run: cannot start {command[0]!r}: {exc}", file=sys.stderr)
            return 127
        try:
            return child.wait()
        except KeyboardInterrupt:
            # The terminal sent SIGINT to the whole foreground group: CMD got it too.
            try:
                return child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)
                return 130
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)
        net.down()


# -- argument parsing ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m golem_sync.devnet",
        description="An offline Golem network on the real yagna daemon (anvil chain, test token, "
        "provider agents). " + _WARNING,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m golem_sync.devnet run -- python my_job.py\n"
        "  python -m golem_sync.devnet up --providers 2 && eval \"$(python -m golem_sync.devnet env --shell)\"",
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="{up,status,env,down,run}")

    def state_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", type=Path, default=default_state_dir(),
                       help="where the devnet keeps pid files, info and logs (default: %(default)s)")

    p = sub.add_parser("up", help="start a devnet in the background; returns when it is ready")
    p.add_argument("--providers", type=int, default=2, help="number of providers (default 2, max 9)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness (default 300)")
    state_opt(p)
    p.set_defaults(func=_cmd_up)

    p = sub.add_parser("status", help="show what runs")
    state_opt(p)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("env", help="print the settings a requestor needs")
    p.add_argument("--shell", action="store_true", help="print `export K='V'` lines for eval")
    state_opt(p)
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("down", help="stop what `up` started and remove its state dir")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait before SIGKILL (default 30)")
    state_opt(p)
    p.set_defaults(func=_cmd_down)

    p = sub.add_parser("run", help="run a command against a fresh in-process devnet, then stop it")
    p.add_argument("--providers", type=int, default=2, help="number of providers (default 2, max 9)")
    p.add_argument("--state-dir", dest="state_dir_run", type=Path, default=None,
                   help="keep data and logs here (default: a temp dir, deleted afterwards)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("_serve")  # internal: the detached devnet process
    p.add_argument("--providers", type=int, default=2)
    p.add_argument("--status-fd", type=int, default=None)
    state_opt(p)
    p.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
