"""``Devnet``: bring a whole offline Golem network up and down in-process.

One call to :meth:`Devnet.up` starts, in order: an anvil chain (chain id 560048, standing in for
Hoodi, Golem's testnet) with the test ERC-20 deployed and 1000 tokens minted to the requestor; one
real yagna daemon whose erc20 driver points hoodi at that chain (so a requestor runs with the
settings of a real testnet user: network ``hoodi``, platform ``erc20-hoodi-tglm``); N provider identities on the same node;
a loopback image-registry stand-in; one provider agent (threads) per provider. :meth:`Devnet.down`
stops exactly what ``up`` started, in reverse order.

Everything runs on the host, unsandboxed (provider agents execute commands as the current user):
this is a test network.
"""
from __future__ import annotations

import importlib
import logging
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from .errors import DevnetConfigError, DevnetError, DevnetUserError
from .chain import DEV_ACCOUNTS, HOODI_CHAIN_ID, AnvilChain
from .registry import RegistryStandIn
from .tools import ensure_anvil
from .yagna import YagnaNode

if TYPE_CHECKING:
    from .provider import ProviderAgent, ProviderSpec
    from .proxy import FaultProxy, FaultProxyClient

# The provider agent is imported lazily (it pulls in the GSB/exe-unit stack): a devnet with
# providers=0, and the pytest plugin's import, need none of it.


def _provider_module() -> Any:
    try:
        return importlib.import_module(".provider", __package__)
    except ImportError as exc:
        raise DevnetConfigError(f"the devnet provider agent is not available ({exc}); use providers=0") from exc

__all__ = ["Devnet", "DevnetInfo", "DevnetProviderInfo", "payments_toml", "PAYMENT_NETWORK", "PAYMENT_DRIVER"]

logger = logging.getLogger("golem_sync.devnet.launcher")

PAYMENT_NETWORK = "hoodi"
PAYMENT_DRIVER = "erc20"
PAYMENT_PLATFORM = "erc20-hoodi-tglm"
DEFAULT_SUBNET = "devnet"
#: Tokens (whole tGLM, 18 decimals) minted to the requestor at start.
REQUESTOR_TOKENS = 1000
#: anvil dev account #0 is the requestor; #1.. are providers.
MAX_PROVIDERS = len(DEV_ACCOUNTS) - 1


@attrs.frozen
class DevnetProviderInfo:
    """One devnet provider: its display name, node id and app key (on the devnet's yagna)."""

    name: str
    node_id: str
    app_key: str = attrs.field(repr=False)


@attrs.frozen
class DevnetInfo:
    """Connection settings of a running devnet (what a requestor needs to use it).

    Attributes:
        api_url, app_key, gsb_url: the yagna daemon (app key of the requestor identity).
        requestor_id: the requestor's node id (also its address on the chain).
        payment_network, payment_driver: what to allocate on (``hoodi`` / ``erc20``).
        subnet: the subnet tag the providers advertise (``golem.node.debug.subnet``).
        registry_url: the image-registry stand-in (set ``GOLEM_REGISTRY_URL``).
        chain_rpc_url, token_address: the anvil chain and the test token on it.
        providers: the provider identities.
        state_dir: where the devnet keeps its data and logs.
        yagna_pid, anvil_pid: the daemon processes.
        proxy_url, proxy_token: the fault-injecting proxy in front of yagna (``Devnet(proxy=True)``),
            and the token of its control endpoint; ``None`` without a proxy.
    """

    api_url: str
    app_key: str = attrs.field(repr=False)
    gsb_url: str
    requestor_id: str
    subnet: str
    registry_url: str
    chain_rpc_url: str
    token_address: str
    providers: Tuple[DevnetProviderInfo, ...]
    state_dir: str
    yagna_pid: Optional[int] = None
    anvil_pid: Optional[int] = None
    payment_network: str = PAYMENT_NETWORK
    payment_driver: str = PAYMENT_DRIVER
    proxy_url: Optional[str] = None
    proxy_token: Optional[str] = attrs.field(default=None, repr=False)

    @property
    def payment_platform(self) -> str:
        return f"{self.payment_driver}-{self.payment_network}-tglm"

    @property
    def proxy(self) -> "FaultProxyClient":
        """The fault proxy's rule API (``add_rule``, ``remove_rule``, ``clear``, ``rules``, ``hits``, ``url``)."""
        from .proxy import FaultProxyClient

        if self.proxy_url is None or self.proxy_token is None:
            raise DevnetUserError("this devnet runs no fault proxy: start it with Devnet(proxy=True)")
        return FaultProxyClient(self.proxy_url, self.proxy_token)

    def via_proxy(self) -> "DevnetInfo":
        """These settings with ``api_url`` pointing at the fault proxy instead of yagna."""
        return attrs.evolve(self, api_url=self.proxy.url)

    def env(self, *, via_proxy: bool = False) -> Dict[str, str]:
        """Environment variables pointing a requestor SDK (golem_sync, yapapi, golem-js) at this devnet
        (``via_proxy``: at its fault proxy)."""
        return {
            "YAGNA_API_URL": self.proxy.url if via_proxy else self.api_url,
            "YAGNA_APPKEY": self.app_key,
            "YAGNA_PAYMENT_NETWORK": self.payment_network,
            "YAGNA_PAYMENT_DRIVER": self.payment_driver,
            "YAGNA_SUBNET": self.subnet,
            "GOLEM_REGISTRY_URL": self.registry_url,
        }

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (contains the app keys: keep it in a private file)."""
        return attrs.asdict(self, recurse=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DevnetInfo":
        values = dict(data)
        values["providers"] = tuple(DevnetProviderInfo(**p) for p in values.get("providers", ()))
        return cls(**values)


def payments_toml(*, token_address: str, rpc_url: str) -> str:
    """yagna's ``config-payments.toml``: hoodi's erc20 driver on the local chain, fast cycles.

    The table replaces yagna's built-in ``[chain.hoodi]`` as a whole: only the token points at a
    contract (the devnet's); without multi-payment, wrapper, lock, mint or faucet contracts yagna
    settles invoices as plain ERC-20 transfers.
    """
    # Short engine intervals: on a local automining chain there is nothing to wait for.
    return f"""\
# Generated by golem_sync.devnet: hoodi -> local anvil chain. Test network only.
[engine]
process-interval = 1
process-interval-after-send = 1
process-interval-after-error = 2
process-interval-after-no-gas-or-token-start = 2
process-interval-after-no-gas-or-token-max = 5
process-interval-after-no-gas-or-token-increase = 1.5
report-alive-interval = 5
gather-interval = 2
gather-at-start = true
automatic-recover = false
ignore-deadlines = false

[chain.hoodi]
chain-name = "Hoodi"
chain-id = {HOODI_CHAIN_ID}
currency-symbol = "tETH"
priority-fee = 0.000001
max-fee-per-gas = 20.0
transaction-timeout = 100
token = {{ address = "{token_address}", symbol = "tGLM" }}
confirmation-blocks = 0
block-explorer-url = "http://127.0.0.1/"
external-source-check-interval = 300

[[chain.hoodi.rpc-endpoints]]
names = "devnet-anvil"
endpoints = "{rpc_url}"
priority = 0
max-timeout-ms = 5000
verify-interval-secs = 300
allowed-head-behind-secs = 120
skip-validation = true
"""


def _default_specs(count: int) -> List["ProviderSpec"]:
    spec_cls = _provider_module().ProviderSpec
    return [attrs.evolve(spec_cls(), name=f"devnet-provider-{i + 1}") for i in range(count)]


class Devnet:
    """An offline Golem network: anvil + test token + one real yagna + provider agents.

    Use as a context manager, or call :meth:`up` and :meth:`down` (``down`` is safe to call
    more than once and after a failed ``up``)::

        with Devnet(providers=2) as net:
            run_my_requestor(**net.env())

    Threads: :meth:`up` and :meth:`down` run on the caller's thread and are serialized by a lock
    (``down`` may come from a signal handler or ``atexit`` while ``up`` failed half-way). The
    provider agents own their own threads; the registry stand-in owns one serving thread.

    Args:
        providers: how many default providers, or one :class:`~.provider.ProviderSpec` each
            (at most 9: each provider uses one of anvil's pre-funded dev accounts).
        state_dir: where data and logs go; a fresh temp dir (deleted by ``down``) by default.
            A given dir is kept; its ``yagna`` and ``providers`` subdirs are wiped at ``up``.
        subnet: the subnet tag providers advertise (default ``"devnet"``).
        proxy: also run a :class:`~.proxy.FaultProxy` in front of yagna (``info.proxy_url``);
            requestors reach yagna through it only when pointed at it (``info.via_proxy()``).
    """

    def __init__(
        self,
        providers: Union[Sequence["ProviderSpec"], int] = 2,
        *,
        state_dir: Optional[Path] = None,
        subnet: Optional[str] = None,
        proxy: bool = False,
    ) -> None:
        if isinstance(providers, bool) or not isinstance(providers, (int, Sequence)):
            raise DevnetConfigError("providers must be a count or a sequence of ProviderSpec")
        count = providers if isinstance(providers, int) else len(providers)
        if count < 0 or count > MAX_PROVIDERS:
            raise DevnetConfigError(f"providers must be between 0 and {MAX_PROVIDERS}, got {count}")
        self._provider_arg = providers
        self._given_state_dir = Path(state_dir) if state_dir is not None else None
        self.subnet = subnet or DEFAULT_SUBNET
        self._lock = threading.RLock()
        self._state_dir: Optional[Path] = None
        self._own_state_dir = False
        self._chain: Optional[AnvilChain] = None
        self._node: Optional[YagnaNode] = None
        self._registry: Optional[RegistryStandIn] = None
        self._agents: List["ProviderAgent"] = []
        self._want_proxy = proxy
        self._proxy: Optional["FaultProxy"] = None
        self._info: Optional[DevnetInfo] = None
        #: Seconds spent in each phase of the last :meth:`up` (for reports and tuning).
        self.timings: Dict[str, float] = {}

    # -- public state ------------------------------------------------------------------------

    @property
    def info(self) -> DevnetInfo:
        """Connection settings; raises :class:`DevnetUserError` if the devnet is not up."""
        if self._info is None:
            raise DevnetUserError("the devnet is not up: call up() first (or use it as a context manager)")
        return self._info

    @property
    def is_up(self) -> bool:
        return self._info is not None

    def env(self) -> Dict[str, str]:
        """``YAGNA_API_URL``, ``YAGNA_APPKEY``, ``YAGNA_PAYMENT_NETWORK``, ``YAGNA_PAYMENT_DRIVER``,
        ``YAGNA_SUBNET``, ``GOLEM_REGISTRY_URL`` for this devnet."""
        return self.info.env()

    @property
    def node(self) -> Optional[YagnaNode]:
        """The yagna daemon (for tests and diagnostics)."""
        return self._node

    @property
    def chain(self) -> Optional[AnvilChain]:
        """The anvil chain (for tests: balances, minting)."""
        return self._chain

    @property
    def proxy(self) -> Optional["FaultProxy"]:
        """The fault proxy in front of yagna (``Devnet(proxy=True)``), or None."""
        return self._proxy

    @property
    def agents(self) -> Tuple["ProviderAgent", ...]:
        """The running provider agents, in spec order."""
        return tuple(self._agents)

    def __repr__(self) -> str:
        where = self._info.api_url if self._info else "down"
        return f"Devnet({where}, providers={len(self._agents)})"

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Devnet":
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, *, timeout: float = 60.0, progress: Optional[Callable[[str], None]] = None) -> DevnetInfo:
        """Start everything; return the connection settings. On failure, stop what started and raise.

        ``progress`` receives one-line messages as phases start (the first run installs anvil).
        ``timeout`` bounds the whole bring-up, not counting a first-run tool install.
        """
        with self._lock:
            if self._info is not None:
                raise DevnetUserError("the devnet is already up")
            try:
                return self._up(timeout, progress or (lambda msg: None))
            except BaseException:
                self.down()
                raise

    def _up(self, timeout: float, progress: Callable[[str], None]) -> DevnetInfo:
        specs = self._specs()
        # Before the clock starts: a first-run npm install may take a while.
        anvil = ensure_anvil(progress)
        started = time.monotonic()
        deadline = started + timeout
        mark = [started]
        self.timings = {}

        def phase(name: str) -> None:
            now = time.monotonic()
            self.timings[name] = round(now - mark[0], 3)
            mark[0] = now

        state = self._prepare_state_dir()

        progress(f"starting chain (anvil) in {state}")
        self._chain = AnvilChain(log_path=state / "anvil.log", anvil_path=anvil)
        self._chain.start(timeout=max(1.0, deadline - time.monotonic()))
        requestor = DEV_ACCOUNTS[0]
        token = self._chain.deploy_token()
        self._chain.mint(token, requestor.address, REQUESTOR_TOKENS * 10**18)
        phase("chain")

        progress("starting yagna")
        self._node = YagnaNode(
            state / "yagna",
            requestor_secret=requestor.private_key,
            # A random key per devnet: nothing outside this devnet can be using it by mistake.
            app_key=secrets.token_hex(16),
            payments_toml=payments_toml(token_address=token, rpc_url=self._chain.rpc_url),
        )
        self._node.start(timeout=max(1.0, deadline - time.monotonic()))
        phase("yagna")

        providers: List[DevnetProviderInfo] = []
        if specs:
            progress(f"adding {len(specs)} provider identities, restarting yagna")
        for i, spec in enumerate(specs):
            ident = self._node.add_identity(f"provider-{i + 1}", DEV_ACCOUNTS[i + 1].private_key, f"provider-{i + 1}")
            providers.append(DevnetProviderInfo(name=spec.name, node_id=ident.node_id, app_key=ident.app_key))
        if specs:
            # The central net binds identities only at start.
            self._node.restart(timeout=max(1.0, deadline - time.monotonic()))
        phase("identities")

        self._registry = RegistryStandIn()
        self._registry.start()
        phase("registry")

        if self._want_proxy:
            from .proxy import FaultProxy

            self._proxy = FaultProxy(self._node.api_url, control_token=secrets.token_hex(16)).start()

        if specs:
            progress(f"starting {len(specs)} provider agents")
            agent_cls = _provider_module().ProviderAgent
            for i, (spec, prov) in enumerate(zip(specs, providers)):
                work_root = state / "providers" / f"{i + 1}-{_safe_name(spec.name)}"
                work_root.mkdir(parents=True, exist_ok=True)
                agent = agent_cls(
                    spec=spec,
                    api_url=self._node.api_url,
                    app_key=prov.app_key,
                    node_id=prov.node_id,
                    gsb_url=self._node.gsb_url,
                    subnet=self.subnet,
                    payment_platform=PAYMENT_PLATFORM,
                    work_root=work_root,
                )
                self._agents.append(agent)  # before start(): down() must stop a half-started agent
                agent.start()
        phase("providers")

        assert self._node.requestor_id is not None
        self._info = DevnetInfo(
            api_url=self._node.api_url,
            app_key=self._node.app_key,
            gsb_url=self._node.gsb_url,
            requestor_id=self._node.requestor_id,
            subnet=self.subnet,
            registry_url=self._registry.url,
            chain_rpc_url=self._chain.rpc_url,
            token_address=token,
            providers=tuple(providers),
            state_dir=str(state),
            yagna_pid=self._node.pid,
            anvil_pid=self._chain.pid,
            proxy_url=self._proxy.url if self._proxy else None,
            proxy_token=self._proxy.control_token if self._proxy else None,
        )
        self.timings["total"] = round(time.monotonic() - started, 3)
        logger.info("devnet up in %.2f s (%s)", self.timings["total"], self.timings)
        return self._info

    def down(self, timeout: float = 10.0) -> None:
        """Stop the provider agents, the registry, yagna and anvil (in that order); idempotent.

        Every part is stopped even if another fails; the first failure is raised at the end.
        """
        with self._lock:
            errors: List[BaseException] = []

            def attempt(what: str, fn: Any, *args: Any) -> None:
                try:
                    fn(*args)
                except Exception as exc:  # keep going: the other parts must still stop
                    logger.error("devnet down: stopping %s failed: %s", what, exc)
                    errors.append(exc)

            agents, self._agents = self._agents, []
            t0 = time.monotonic()
            # Agents stop in parallel: each one's stop mostly waits for its long polls to return.
            stoppers = [
                threading.Thread(target=attempt, args=("a provider agent", agent.stop, timeout),
                                 name=f"golem-devnet-stop-{i}", daemon=True)
                for i, agent in enumerate(agents)
            ]
            for thread in stoppers:
                thread.start()
            for thread in stoppers:
                thread.join(timeout + 5)
            if agents:
                logger.debug("provider agents stopped in %.2f s", time.monotonic() - t0)
            if self._proxy is not None:
                attempt("the fault proxy", self._proxy.stop)
                self._proxy = None
            if self._registry is not None:
                attempt("the registry stand-in", self._registry.stop)
                self._registry = None
            if self._node is not None:
                t0 = time.monotonic()
                attempt("yagna", self._node.stop, timeout)
                logger.debug("yagna stopped in %.2f s", time.monotonic() - t0)
                self._node = None
            if self._chain is not None:
                attempt("anvil", self._chain.stop)
                self._chain = None
            was_up = self._info is not None
            self._info = None
            if self._state_dir is not None and self._own_state_dir:
                shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None
            if was_up:
                logger.info("devnet down")
            if errors:
                first = errors[0]
                raise DevnetError(f"devnet down: {len(errors)} part(s) failed to stop; first: {first}") from first

    # -- yagna restarts (for fault tests) ----------------------------------------------------

    @property
    def requestor_running(self) -> bool:
        """Whether the yagna daemon runs (False between :meth:`stop_requestor` and :meth:`start_requestor`)."""
        return self._node is not None and self._node.pid is not None

    def stop_requestor(self, timeout: float = 10.0) -> None:
        """Stop the yagna daemon (SIGTERM, then SIGKILL after ``timeout``); everything else keeps running.

        The requestor and the providers share this one node, so the provider agents lose yagna too:
        they keep running and retry until :meth:`start_requestor` brings it back (same data dir,
        ports and app keys). Idempotent.
        """
        with self._lock:
            if self._node is None or self._info is None:
                raise DevnetUserError("the devnet is not up")
            self._node.stop(timeout)
            self._info = attrs.evolve(self._info, yagna_pid=None)
            logger.info("devnet: yagna stopped (restart test)")

    def start_requestor(self, timeout: float = 30.0) -> None:
        """Start the yagna daemon again after :meth:`stop_requestor`; returns once ``/me`` answers
        and every identity is bound to the net. A no-op when it runs."""
        with self._lock:
            if self._node is None or self._info is None:
                raise DevnetUserError("the devnet is not up")
            if self._node.pid is None:
                self._node.restart(timeout=timeout)  # same data dir and ports (fixed from now on)
                self._info = attrs.evolve(self._info, yagna_pid=self._node.pid)
                logger.info("devnet: yagna started again (pid %s)", self._node.pid)
                # Exe-units die with yagna's bus, as real ones do: their providers end those activities.
                for agent in self._agents:
                    agent.reap_lost_exeunits()

    def restart_requestor(self, down_sec: float = 0.0, *, timeout: float = 30.0) -> None:
        """:meth:`stop_requestor`, stay down ``down_sec`` seconds, then :meth:`start_requestor`."""
        self.stop_requestor()
        if down_sec > 0:
            threading.Event().wait(down_sec)
        self.start_requestor(timeout=timeout)

    # -- helpers -----------------------------------------------------------------------------

    def _specs(self) -> List["ProviderSpec"]:
        arg = self._provider_arg
        if isinstance(arg, int):
            return _default_specs(arg) if arg else []
        return list(arg)

    def _prepare_state_dir(self) -> Path:
        if self._given_state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="golem-devnet-"))
            self._own_state_dir = True
        else:
            self._state_dir = self._given_state_dir
            self._own_state_dir = False
            self._state_dir.mkdir(parents=True, exist_ok=True)
            # yagna needs a fresh data dir (identities are created from fixed keys).
            for sub in ("yagna", "providers"):
                shutil.rmtree(self._state_dir / sub, ignore_errors=True)
        return self._state_dir


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "provider"
