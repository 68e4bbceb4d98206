"""A local ``anvil`` chain standing in for Hoodi, and the devnet's test ERC-20 on it.

anvil runs with chain id 560048 (the id yagna uses for hoodi, Golem's testnet) and automine. Its well-known
development accounts are pre-funded with ETH and unlocked, so transactions are sent with
``eth_sendTransaction`` and no signing library is needed. The token's bytecode and ABI are
committed in ``contracts/Token.json`` (rebuild with ``contracts/build_token.js``).
"""
from __future__ import annotations

import itertools
import json
import logging
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Tuple

import attrs
import requests

from .errors import ChainError, DevnetTimeoutError
from .ports import free_port
from .tools import ensure_anvil

__all__ = ["AnvilChain", "ChainError", "DevAccount", "DEV_ACCOUNTS", "HOODI_CHAIN_ID", "load_token_artifact"]

logger = logging.getLogger("golem_sync.devnet.chain")

#: The chain id yagna 0.17.6 configures for hoodi (``[chain.hoodi]``).
HOODI_CHAIN_ID = 560048
_TOKEN_JSON = Path(__file__).parent / "contracts" / "Token.json"


@attrs.frozen
class DevAccount:
    """One of anvil's pre-funded development accounts (public, well-known test keys)."""

    address: str
    private_key: str = attrs.field(repr=False)


# anvil's default mnemonic ("test test ... junk") accounts #0..#9. These keys are public
# knowledge; they are only ever used on a local chain.
DEV_ACCOUNTS: Tuple[DevAccount, ...] = tuple(
    DevAccount(address=a.lower(), private_key=k)
    for a, k in [
        ("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
        ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
        ("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
        ("0x90F79bf6EB2c4f870365E785982E1f101E93b906", "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
        ("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65", "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"),
        ("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc", "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"),
        ("0x976EA74026E726554dB657fA54763abd0C3a0aa9", "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"),
        ("0x14dC79964da2C08b23698B3D3cc7Ca32193d9955", "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"),
        ("0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f", "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97"),
        ("0xa0Ee7A142d267C1f36714E4a8F75612F20a79720", "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"),
    ]
)


def load_token_artifact() -> Dict[str, Any]:
    """The committed compiler output of ``contracts/Token.sol`` (abi, bytecode, methodIdentifiers)."""
    data: Dict[str, Any] = json.loads(_TOKEN_JSON.read_text(encoding="utf-8"))
    return data


def _word(value: int) -> str:
    return format(value, "064x")


def _address_word(address: str) -> str:
    raw = address.lower()
    raw = raw[2:] if raw.startswith("0x") else raw
    if len(raw) != 40:
        raise ChainError(f"not an address: {address!r}")
    return raw.rjust(64, "0")


class AnvilChain:
    """One ``anvil`` process on a free loopback port, plus a minimal JSON-RPC client.

    Threads: no background threads; anvil's output goes to ``log_path`` (or nowhere).
    Owned by the thread that calls :meth:`start`/:meth:`stop`; :meth:`rpc` and the helpers
    built on it may be called from any thread (each call is one HTTP request).
    """

    def __init__(
        self,
        *,
        port: Optional[int] = None,
        chain_id: int = HOODI_CHAIN_ID,
        log_path: Optional[Path] = None,
        anvil_path: Optional[Path] = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.chain_id = chain_id
        self.log_path = log_path
        self._anvil_path = anvil_path
        self._proc: Optional["subprocess.Popen[bytes]"] = None
        self._log: Optional[IO[bytes]] = None
        self._ids = itertools.count(1)
        self._session = requests.Session()

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def __repr__(self) -> str:
        return f"AnvilChain(rpc_url={self.rpc_url!r}, pid={self.pid})"

    def start(self, timeout: float = 15.0) -> None:
        """Start anvil and wait until it answers ``eth_chainId`` (installs anvil on first use)."""
        anvil = self._anvil_path or ensure_anvil()
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")
            out = self._log
        self._proc = subprocess.Popen(
            [str(anvil), "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(self.chain_id), "--silent"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Next to its log: tools (and tests) can tell which devnet a process belongs to.
            cwd=str(self.log_path.parent) if self.log_path is not None else None,
            start_new_session=True,  # see YagnaNode: we stop it ourselves, in order
        )
        logger.info("started anvil pid %s on %s", self._proc.pid, self.rpc_url)
        deadline = time.monotonic() + timeout
        proc = self._proc
        while True:
            try:
                chain_id: Optional[int] = int(self.rpc("eth_chainId", [], timeout=1.0), 16)
            except ChainError:
                chain_id = None  # not listening yet
            if chain_id is not None:
                if chain_id != self.chain_id:
                    self.stop()
                    raise ChainError(f"anvil answered chain id {chain_id}, expected {self.chain_id}")
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise DevnetTimeoutError(f"anvil did not answer on {self.rpc_url} within {timeout} s", phase="anvil start")
            try:
                proc.wait(timeout=min(0.05, remaining))  # returns at once if anvil died
            except subprocess.TimeoutExpired:
                continue
            self.stop()
            raise ChainError(f"anvil exited with code {proc.returncode} during start-up (port {self.port} taken?)")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM anvil by pid, SIGKILL after ``timeout``. Idempotent."""
        proc = self._proc
        self._proc = None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            logger.info("stopped anvil pid %s", proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._session.close()

    def __enter__(self) -> "AnvilChain":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- JSON-RPC ---------------------------------------------------------------------------

    def rpc(self, method: str, params: List[Any], *, timeout: float = 10.0) -> Any:
        """One JSON-RPC call; returns ``result`` or raises :class:`ChainError`."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            resp = self._session.post(self.rpc_url, json=body, timeout=(1.0, timeout))
            data = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise ChainError(f"{method} on {self.rpc_url} failed: {exc}") from None
        if not isinstance(data, dict):
            raise ChainError(f"{method}: malformed JSON-RPC answer")
        if data.get("error") is not None:
            raise ChainError(f"{method} failed: {data['error']}")
        return data.get("result")

    def send_transaction(self, tx: Dict[str, Any], *, timeout: float = 10.0) -> Dict[str, Any]:
        """Send from an unlocked dev account, wait for the receipt, raise if it reverted."""
        tx_hash = self.rpc("eth_sendTransaction", [tx])
        receipt = self.wait_receipt(str(tx_hash), timeout=timeout)
        if int(receipt.get("status", "0x0"), 16) != 1:
            raise ChainError(f"transaction {tx_hash} reverted")
        return receipt

    def wait_receipt(self, tx_hash: str, *, timeout: float = 10.0) -> Dict[str, Any]:
        """The receipt of ``tx_hash``; anvil automines, so it is normally there at once."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            receipt = self.rpc("eth_getTransactionReceipt", [tx_hash])
            if isinstance(receipt, dict):
                return receipt
            if time.monotonic() + delay > deadline:
                raise DevnetTimeoutError(f"no receipt for {tx_hash} within {timeout} s", phase="transaction")
            time.sleep(delay)  # a remote chain offers no event to wait on; back off, bounded
            delay = min(delay * 2, 0.5)

    def call(self, to: str, data: str) -> str:
        """``eth_call`` at the latest block; returns the hex result."""
        return str(self.rpc("eth_call", [{"to": to, "data": data}, "latest"]))

    def eth_balance(self, address: str) -> int:
        """Balance of ``address`` in wei."""
        return int(self.rpc("eth_getBalance", [address, "latest"]), 16)

    # -- the test token ---------------------------------------------------------------------

    def deploy_token(self, deployer: str = DEV_ACCOUNTS[0].address) -> str:
        """Deploy the committed ERC-20 from ``deployer``; return its address (lower-case)."""
        art = load_token_artifact()
        receipt = self.send_transaction({"from": deployer, "data": art["bytecode"], "gas": hex(3_000_000)})
        address = receipt.get("contractAddress")
        if not isinstance(address, str):
            raise ChainError("token deployment gave no contract address")
        logger.info("deployed test token at %s", address)
        return address.lower()

    def mint(self, token: str, to: str, amount_wei: int, *, sender: str = DEV_ACCOUNTS[0].address) -> None:
        """Mint ``amount_wei`` (18 decimals) of the test token to ``to``."""
        selector = load_token_artifact()["methodIdentifiers"]["mint(address,uint256)"]
        data = "0x" + selector + _address_word(to) + _word(amount_wei)
        self.send_transaction({"from": sender, "to": token, "data": data, "gas": hex(200_000)})

    def token_balance(self, token: str, address: str) -> int:
        """Test-token balance of ``address`` in its smallest unit (wei, 18 decimals)."""
        selector = load_token_artifact()["methodIdentifiers"]["balanceOf(address)"]
        result = self.call(token, "0x" + selector + _address_word(address))
        return int(result, 16) if result not in ("0x", "") else 0
