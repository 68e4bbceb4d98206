"""One real ``yagna`` daemon for the devnet: its own data dir, ports and central-net hub.

The node plays the requestor (the identity made from ``requestor_secret``, reachable with
``app_key``) and, after :meth:`YagnaNode.add_identity` + :meth:`YagnaNode.restart`, any number of
provider identities. See /work/shared/reference/devnet.md ("yagna process") for why each
environment variable is set.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Dict, List, Mapping, Optional

import attrs
import requests

from .errors import DevnetConfigError, DevnetTimeoutError, YagnaNodeError
from .ports import free_port, free_short_port

__all__ = ["YagnaNode", "NodeIdentity", "YagnaNodeError", "find_yagna"]

logger = logging.getLogger("golem_sync.devnet.yagna")

_HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")

# Variables from the caller's environment that would point the daemon (or its CLI) at another
# node; they are dropped so a devnet node never touches the user's real yagna.
# RUST_LOG too: start() reads the INFO line that says the net is bound.
_INHERITED_PREFIXES = ("YAGNA_", "GSB_", "CENTRAL_NET_", "YA_NET_", "PAYMENT_CYCLE_", "RUST_LOG")


@attrs.frozen
class NodeIdentity:
    """An identity living on a :class:`YagnaNode` and the app key that acts as it."""

    alias: str
    node_id: str
    app_key: str = attrs.field(repr=False)


def find_yagna() -> str:
    """Path of the ``yagna`` binary: next to this Python (golem-node wheel), else on PATH."""
    # The wheel installs yagna into the interpreter's scripts dir; using it directly skips
    # shims (pyenv) and guarantees the version pinned by the `devnet` extra.
    candidate = Path(sys.executable).parent / "yagna"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("yagna")
    if found:
        return found
    raise DevnetConfigError(
        "the `yagna` binary was not found: install the devnet extra (pip install 'golem_sync[devnet]', "
        "which brings PyPI golem-node) or put yagna on PATH"
    )


def _normalize_secret(secret: str, what: str) -> str:
    if not isinstance(secret, str) or not _HEX64.match(secret):
        raise DevnetConfigError(f"{what} must be 64 hex digits (an Ethereum private key)")
    return secret[2:] if secret.startswith("0x") else secret


class YagnaNode:
    """One ``yagna service run`` process in a fresh data dir, on free loopback ports.

    Threads: no background threads. The object is owned by the thread that calls
    :meth:`start`, :meth:`add_identity`, :meth:`restart` and :meth:`stop`; do not call them
    concurrently. The daemon's stdout/stderr go to :attr:`log_path`.

    Attributes:
        data_dir: the daemon's ``YAGNA_DATADIR``.
        api_url: root of the REST API (``http://127.0.0.1:PORT``).
        gsb_url: the service bus (``tcp://127.0.0.1:PORT``, 4-digit port; also the central-net hub).
        app_key: the requestor's app key.
        requestor_id: the requestor's node id (known after :meth:`start`).
        pid: the daemon's pid while it runs, else ``None``.
        log_path: file receiving the daemon's output.
        identities: identities added with :meth:`add_identity`, by alias.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        requestor_secret: str,
        app_key: str = "try_golem",
        env: Optional[Mapping[str, str]] = None,
        payments_toml: Optional[str] = None,
        api_port: Optional[int] = None,
        gsb_port: Optional[int] = None,
        yagna_binary: Optional[str] = None,
    ) -> None:
        if not app_key or not isinstance(app_key, str):
            raise DevnetConfigError("app_key must be a non-empty string")
        if gsb_port is not None and not (1 <= gsb_port <= 9999):
            raise DevnetConfigError("gsb_port must have at most 4 digits (yagna's central-net parser)")
        self.data_dir = Path(data_dir)
        self.app_key = app_key
        self._secret = _normalize_secret(requestor_secret, "requestor_secret")
        self._extra_env: Dict[str, str] = dict(env or {})
        self._payments_toml = payments_toml
        self._fixed_ports = api_port is not None or gsb_port is not None
        self._api_port = api_port if api_port is not None else free_port()
        self._gsb_port = gsb_port if gsb_port is not None else free_short_port()
        self._binary = yagna_binary or find_yagna()
        self._proc: Optional["subprocess.Popen[bytes]"] = None
        self._log_file: Optional[IO[bytes]] = None
        self.log_path = self.data_dir / "yagna.log"
        self._log_offset = 0
        self.requestor_id: Optional[str] = None
        self.identities: Dict[str, NodeIdentity] = {}

    # -- addresses ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._api_port}"

    @property
    def gsb_url(self) -> str:
        return f"tcp://127.0.0.1:{self._gsb_port}"

    @property
    def pid(self) -> Optional[int]:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def __repr__(self) -> str:
        return f"YagnaNode(data_dir={str(self.data_dir)!r}, api_url={self.api_url!r}, pid={self.pid})"

    # -- environment -------------------------------------------------------------------------

    def environment(self) -> Dict[str, str]:
        """The environment the daemon and its CLI run with (contains secrets: do not log it)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
        env.update(
            {
                "YAGNA_DATADIR": str(self.data_dir),
                "YAGNA_API_URL": self.api_url,
                "GSB_URL": self.gsb_url,
                # Hybrid net needs an internet relay; central net with the node's own router as hub
                # routes between local identities.
                "YA_NET_TYPE": "central",
                "CENTRAL_NET_HOST": f"127.0.0.1:{self._gsb_port}",
                # An unreachable literal address avoids a blocking DNS SRV lookup for the relay.
                "YA_NET_RELAY_HOST": "127.0.0.1:1",
                "YAGNA_AUTOCONF_APPKEY": self.app_key,
                "YAGNA_AUTOCONF_ID_SECRET": self._secret,
                # Testnet default is a 5 min payment batch; tests want settlement in seconds.
                "PAYMENT_CYCLE_DEFAULT_INTERVAL": "10s",
                "PAYMENT_CYCLE_DEFAULT_EXTRA_PAY_TIME": "5s",
            }
        )
        env.update(self._extra_env)
        return env

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start the daemon and wait until ``/me`` answers with the requestor key.

        Raises :class:`YagnaNodeError` (with the log tail) if it exits or does not answer in time.
        When the ports were picked automatically and the daemon dies early (e.g. a port got taken
        in between), it is retried on fresh ports.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise YagnaNodeError(f"yagna already runs (pid {self._proc.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._payments_toml is not None:
            # yagna reads this file at start, "overwriting default config" of the erc20 driver.
            (self.data_dir / "config-payments.toml").write_text(self._payments_toml, encoding="utf-8")
        attempts = 1 if self._fixed_ports else 3
        deadline = time.monotonic() + timeout
        for attempt in range(attempts):
            try:
                self._spawn_and_wait(deadline)
                return
            except _EarlyExit as exc:
                if attempt + 1 >= attempts:
                    raise YagnaNodeError(str(exc)) from None
                logger.warning("yagna exited during start-up, retrying on fresh ports")
                self._api_port = free_port()
                self._gsb_port = free_short_port()

    def _spawn_and_wait(self, deadline: float) -> None:
        self._log_file = open(self.log_path, "ab")
        # Where this run's output starts: start-up checks must not match a previous run's lines.
        self._log_offset = self._log_file.tell()
        self._proc = subprocess.Popen(
            [self._binary, "service", "run", "--disable-metrics-push"],
            env=self.environment(),
            cwd=str(self.data_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches only us, so we can stop the
            # provider agents before the daemon instead of racing its shutdown.
            start_new_session=True,
        )
        logger.info("started yagna pid %s (api %s, gsb %s)", self._proc.pid, self.api_url, self.gsb_url)
        try:
            self.requestor_id = self._wait_ready(deadline)
            self._wait_net_bound(deadline)
        except _EarlyExit:
            self._close_log()
            self._proc = None
            raise
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline: float) -> str:
        proc = self._proc
        assert proc is not None
        session = requests.Session()
        try:
            while True:
                try:
                    resp = session.get(
                        self.api_url + "/me",
                        headers={"Authorization": f"Bearer {self.app_key}"},
                        timeout=(0.5, 2.0),
                    )
                    if resp.status_code == 200:
                        identity = resp.json().get("identity")
                        if isinstance(identity, str) and identity:
                            return identity
                except (requests.ConnectionError, requests.Timeout, ValueError):
                    pass  # not listening yet
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DevnetTimeoutError(
                        f"yagna did not answer /me within the start timeout; log tail:\n{self.log_tail()}",
                        phase="yagna start",
                    )
                # Waiting on the process (not a bare sleep) returns at once if it dies.
                try:
                    proc.wait(timeout=min(0.1, remaining))
                except subprocess.TimeoutExpired:
                    continue
                raise _EarlyExit(
                    f"yagna exited with code {proc.returncode} during start-up; log tail:\n{self.log_tail()}"
                )
        finally:
            session.close()

    def _wait_net_bound(self, deadline: float) -> None:
        """Wait until the central net has bound every identity (the log says so), bounded.

        ``/me`` can answer before the net is bound; an offer or a GSB call routed to an unbound
        identity would then fail, so start() returns only once all are reachable.
        """
        proc = self._proc
        assert proc is not None
        if "RUST_LOG" in self._extra_env:
            return  # the caller chose the log level; the INFO line may never come
        wanted = {i.lower() for i in [self.requestor_id or "", *(x.node_id for x in self.identities.values())] if i}
        while True:
            text = self._log_since_start()
            bound = {m.lower() for m in re.findall(r"network service bound at under: /net/(0x[0-9a-fA-F]{40})", text)}
            if wanted <= bound:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DevnetTimeoutError(
                    f"yagna did not bind {sorted(wanted - bound)} to the net in time; log tail:\n{self.log_tail()}",
                    phase="yagna start",
                )
            try:
                proc.wait(timeout=min(0.05, remaining))
            except subprocess.TimeoutExpired:
                continue
            raise _EarlyExit(f"yagna exited with code {proc.returncode} during start-up; log tail:\n{self.log_tail()}")

    def _log_since_start(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start the daemon (same data dir and ports), e.g. to bind new identities to the net."""
        self.stop()
        self._fixed_ports = True  # other parties already know these addresses
        self.start(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the daemon, SIGKILL it after ``timeout`` seconds; by pid. Idempotent."""
        proc = self._proc
        self._proc = None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("yagna pid %s ignored SIGTERM for %.1f s, killing it", proc.pid, timeout)
                proc.kill()
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
            logger.info("stopped yagna pid %s", proc.pid)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "YagnaNode":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- identities --------------------------------------------------------------------------

    def add_identity(self, alias: str, private_key_hex: str, app_key: Optional[str] = None) -> NodeIdentity:
        """Create an identity from a private key plus an app key for it; return both.

        ``app_key`` is the app key's NAME (default: ``alias``); yagna generates the key itself,
        returned as ``NodeIdentity.app_key``. The daemon must run. Call :meth:`restart` after the
        last identity: the central net binds identities only at start.
        """
        if self.pid is None:
            raise YagnaNodeError("add_identity needs the yagna daemon running; call start() first")
        secret = _normalize_secret(private_key_hex, "private_key_hex")
        created = self._cli(["id", "create", alias, "--from-private-key", secret, "--no-password", "--json"])
        node_id = _find_node_id(created)
        if node_id is None:
            raise YagnaNodeError(f"`yagna id create` gave no node id: {created!r}")
        key_out = self._cli(["app-key", "create", "--id", alias, app_key or alias, "--json"])
        key = key_out if isinstance(key_out, str) else None
        if not key:
            raise YagnaNodeError("`yagna app-key create` gave no key")
        ident = NodeIdentity(alias=alias, node_id=node_id, app_key=key)
        self.identities[alias] = ident
        logger.info("added identity %s (%s)", alias, node_id)
        return ident

    def _cli(self, args: List[str], timeout: float = 30.0) -> object:
        """Run one ``yagna`` CLI command against this node; return its decoded ``--json`` output."""
        cmd = [self._binary, *args]
        try:
            done = subprocess.run(
                cmd, env=self.environment(), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise YagnaNodeError(f"`yagna {args[0]} {args[1]}` did not finish in {timeout} s") from None
        if done.returncode != 0:
            # The command line holds a private key: name only the subcommand in the error.
            raise YagnaNodeError(
                f"`yagna {args[0]} {args[1]}` failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace').strip()[-2000:]}"
            )
        text = done.stdout.decode(errors="replace").strip()
        try:
            return json.loads(text)
        except ValueError:
            return text

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the daemon's output (for error messages)."""
        try:
            data = self.log_path.read_bytes()[-20000:]
        except OSError:
            return "(no log)"
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


class _EarlyExit(Exception):
    """The daemon died before it answered /me."""


def _find_node_id(value: object) -> Optional[str]:
    """Dig the node id out of `yagna id create --json` output (shape varies between versions)."""
    if isinstance(value, dict):
        for key in ("nodeId", "node_id", "Ok"):
            if key in value:
                found = _find_node_id(value[key])
                if found:
                    return found
        for inner in value.values():
            found = _find_node_id(inner)
            if found:
                return found
    if isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        return value.lower()
    return None
