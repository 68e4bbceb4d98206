"""Command line for the offline Golem devnet: ``python -m golem_sync.devnet COMMAND``.

Commands:
  up [--providers N] [--state-dir D]   start a devnet in a detached background process; returns when ready
  status [--state-dir D]               show what runs (pids alive?) and where
  env [--shell] [--via-proxy]          print the requestor settings (K=V; --shell: export K='V';
                                       --via-proxy: YAGNA_API_URL is the fault proxy's)
  fault add|list|remove ID|clear       fault rules of the proxy in front of the `up` devnet's yagna
  down [--state-dir D]                 stop what `up` started and remove its state dir
  run [--providers N] -- CMD...        bring a devnet up in-process, run CMD with its env, bring it
                                       down, exit with CMD's exit code

WARNING: the devnet runs on this host, unsandboxed. Its providers execute whatever a requestor
sends them as the current user, with no VM or container. It is a test network: use it only for
code you trust.

The default state dir is $XDG_STATE_HOME/golem_sync/devnet (~/.local/state/golem_sync/devnet);
it holds the pid file, info.json (connection settings incl. app keys, mode 0600) and logs.

The `up` devnet runs a fault-injecting proxy (:mod:`.proxy`) in front of its yagna; `fault`
talks to it over its control endpoint (``/_fault-proxy/rules`` on the proxy's loopback port,
guarded by a token kept in info.json). Rules act only on requestors pointed at the proxy
(`env --via-proxy`). Example: ``fault add --path '/payment-api/*' --status 500 --nth 1``.

This module parses arguments and prints; the daemon supervision (state dir, pid files, signals,
the detached server) lives in :mod:`.daemon`.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from . import daemon
from .daemon import default_state_dir
from .errors import DevnetConfigError, DevnetError, DevnetUserError

if TYPE_CHECKING:
    from .proxy import FaultProxyClient

__all__ = ["main", "default_state_dir"]

_WARNING = (
    "The devnet runs on this host, UNSANDBOXED: its providers execute requestors' commands as the "
    "current user. It is a test network."
)


# -- up / _serve -----------------------------------------------------------------------------


def _cmd_up(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    pid = daemon.read_pid(state)
    if daemon.pid_alive(pid):
        print(f"a devnet already runs from {state} (pid {pid}); `down` it first", file=sys.stderr)
        return 1
    leftovers = daemon.leftover_daemons(state)
    if leftovers:
        print(f"processes of an earlier devnet in {state} still run ({', '.join(leftovers)}); "
              "run `down` first", file=sys.stderr)
        return 1
    if state.exists() and any(state.iterdir()) and not (state / daemon.MARKER).exists():
        print(f"{state} exists and is not a devnet state dir; choose another --state-dir", file=sys.stderr)
        return 2
    state.mkdir(parents=True, exist_ok=True)
    (state / daemon.MARKER).touch()
    print(_WARNING, file=sys.stderr)
    proc, read_fd = daemon.spawn_server(state, args.providers)
    # The server reports progress lines, then READY or FAILED, on the pipe; EOF means it died.
    ok = False
    deadline = time.monotonic() + args.timeout
    try:
        for line in daemon.status_lines(read_fd, deadline):
            if line == daemon.READY:
                ok = True
                break
            if line.startswith(daemon.FAILED):
                print(f"devnet failed to start: {line[len(daemon.FAILED):]}", file=sys.stderr)
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
            daemon.terminate(proc.pid, 15)
        proc.wait(timeout=5)
        print(f"see {state / daemon.LOG_FILE}", file=sys.stderr)
        return 1
    info = daemon.read_info(state) or {}
    print(f"devnet up (pid {proc.pid}): yagna {info.get('api_url')}, {len(info.get('providers', []))} provider(s)")
    print(f"use it with: eval \"$(python -m golem_sync.devnet env --shell --state-dir {shlex.quote(str(state))})\"")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """The detached devnet process (see :func:`.daemon.serve`)."""
    return daemon.serve(args.state_dir, args.providers, args.status_fd)


# -- status / env / down ---------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    pid = daemon.read_pid(state)
    info = daemon.read_info(state)
    if pid is None and info is None:
        print(f"no devnet in {state}")
        return 1
    alive = daemon.pid_alive(pid)
    print(f"devnet process: pid {pid} {'running' if alive else 'NOT running'}")
    if info:
        for what, key in (("yagna", "yagna_pid"), ("anvil", "anvil_pid")):
            p = info.get(key)
            print(f"{what}: pid {p} {'running' if daemon.pid_alive(p) else 'NOT running'}")
        print(f"yagna api: {info.get('api_url')}  gsb: {info.get('gsb_url')}")
        print(f"requestor: {info.get('requestor_id')}  subnet: {info.get('subnet')}")
        print(f"chain: {info.get('chain_rpc_url')}  token: {info.get('token_address')}")
        print(f"registry: {info.get('registry_url')}")
        for prov in info.get("providers", []):
            print(f"provider {prov.get('name')}: {prov.get('node_id')}")
        if info.get("proxy_url"):
            print(f"fault proxy: {info['proxy_url']}  (env --via-proxy)")
            if alive:
                _print_rules(info)
    return 0 if alive else 1


def _cmd_env(args: argparse.Namespace) -> int:
    from .launcher import DevnetInfo

    info = daemon.read_info(args.state_dir)
    if info is None or not daemon.pid_alive(daemon.read_pid(args.state_dir)):
        print(f"no running devnet in {args.state_dir}: run `python -m golem_sync.devnet up`", file=sys.stderr)
        return 1
    try:
        env = DevnetInfo.from_dict(info).env(via_proxy=args.via_proxy)
    except DevnetError as exc:
        print(f"env: {exc}", file=sys.stderr)
        return 1
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}" if args.shell else f"{key}={value}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    if not (state / daemon.MARKER).exists():
        print(f"no devnet state in {state}")
        return 0
    pid = daemon.read_pid(state)
    info = daemon.read_info(state) or {}
    ok = True
    if daemon.pid_alive(pid) and pid is not None and daemon.cmdline_has(pid, "golem_sync.devnet"):
        print(f"stopping devnet process {pid}")
        ok = daemon.terminate(pid, args.timeout)
    # If the devnet process died hard, its daemons (own sessions) may still run: stop them by pid.
    for key, word in (("yagna_pid", "yagna"), ("anvil_pid", "anvil")):
        p = info.get(key)
        if isinstance(p, int) and daemon.pid_alive(p) and daemon.cmdline_has(p, word):
            print(f"stopping leftover {word} pid {p}")
            ok = daemon.terminate(p, 10) and ok
    shutil.rmtree(state, ignore_errors=True)
    print("devnet down" if ok else "devnet down, but some process did not stop")
    return 0 if ok else 1


# -- fault -----------------------------------------------------------------------------------


def _proxy_client(state: Path) -> "FaultProxyClient":
    from .launcher import DevnetInfo

    info = daemon.read_info(state)
    if info is None or not daemon.pid_alive(daemon.read_pid(state)):
        raise DevnetUserError(f"no running devnet in {state}: run `python -m golem_sync.devnet up`")
    return DevnetInfo.from_dict(info).proxy


def _print_rules(info: Dict[str, Any]) -> None:
    from .launcher import DevnetInfo

    try:
        rules = DevnetInfo.from_dict(info).proxy.rules()
    except DevnetError as exc:
        print(f"fault rules: unavailable ({exc})")
        return
    if not rules:
        print("fault rules: none")
    for stats in rules:
        print(f"fault rule {stats.id}: {stats.rule.describe()}  [matched {stats.matched}, acted {stats.fired}]")


def _cmd_fault(args: argparse.Namespace) -> int:
    from .proxy import FaultRule

    try:
        client = _proxy_client(args.state_dir)
        if args.fault_cmd == "add":
            extra = {"message": args.message} if args.message is not None else {}
            rule = FaultRule(path=args.path, method=args.method, regex=args.regex, status=args.status,
                             delay=args.delay, reset=args.reset, drop_response=args.drop_response,
                             nth=args.nth, every=args.every, probability=args.probability, seed=args.seed,
                             times=args.times, **extra)
            rule_id = client.add_rule(rule)
            print(f"{rule_id}: {rule.describe()}")
        elif args.fault_cmd == "remove":
            client.remove_rule(args.id)
            print(f"removed {args.id}")
        elif args.fault_cmd == "clear":
            client.clear()
            print("fault rules cleared")
        else:
            rules = client.rules()
            for stats in rules:
                print(f"{stats.id}: {stats.rule.describe()}  [matched {stats.matched}, acted {stats.fired}]")
            if not rules:
                print("no fault rules")
    except DevnetError as exc:
        print(f"fault {args.fault_cmd}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, DevnetConfigError) else 1
    return 0


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
    daemon.install_signal_handlers()
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
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="{up,status,env,fault,down,run}")

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
    p.add_argument("--via-proxy", action="store_true", help="YAGNA_API_URL is the fault proxy's, not yagna's")
    state_opt(p)
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("fault", help="add, list, remove or clear fault rules of the proxy in front of yagna")
    fault = p.add_subparsers(dest="fault_cmd", required=True, metavar="{add,list,remove,clear}")
    q = fault.add_parser("add", help="add a rule (prints its id)",
                         description="Rules act on calls through the proxy (env --via-proxy), first match wins.")
    q.add_argument("--path", required=True, help="glob on the path without query (`*` spans `/`), or a regex with --regex")
    q.add_argument("--regex", action="store_true", help="--path is a regular expression matching the whole path")
    q.add_argument("--method", default=None, help="only this HTTP method (default: any)")
    q.add_argument("--status", type=int, default=None, help="answer this status with a JSON {\"message\"} body")
    q.add_argument("--message", default=None, help="the message of --status answers")
    q.add_argument("--delay", type=float, default=0.0, help="wait this many seconds first (alone: then forward)")
    q.add_argument("--reset", action="store_true", help="reset the connection before forwarding")
    q.add_argument("--drop-response", action="store_true", help="forward, read yagna's answer, then reset")
    q.add_argument("--nth", type=int, default=None, help="act only on the Nth matching call")
    q.add_argument("--every", type=int, default=None, help="act on every Nth matching call")
    q.add_argument("--probability", type=float, default=None, help="act with this probability (0 < P <= 1)")
    q.add_argument("--seed", type=int, default=None, help="seed of --probability's RNG")
    q.add_argument("--times", type=int, default=None, help="act at most this many times")
    state_opt(q)
    q = fault.add_parser("list", help="list the rules with their counters")
    state_opt(q)
    q = fault.add_parser("remove", help="remove one rule")
    q.add_argument("id", help="the rule id (from add or list)")
    state_opt(q)
    q = fault.add_parser("clear", help="remove every rule")
    state_opt(q)
    p.set_defaults(func=_cmd_fault)

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
