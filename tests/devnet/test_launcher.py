"""The devnet launcher against the real yagna and anvil: processes start, answer, and leave nothing behind."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
import requests

from golem_sync.devnet.chain import DEV_ACCOUNTS, AnvilChain
from golem_sync.devnet.launcher import Devnet, payments_toml
from golem_sync.devnet.registry import RegistryStandIn, image_hash_for_tag
from golem_sync.devnet.tools import ToolInstallError, anvil_package, ensure_anvil
from golem_sync.devnet.yagna import YagnaNode, YagnaNodeError
from golem_sync.devnet.errors import DevnetConfigError, DevnetUserError


pytestmark = pytest.mark.devnet

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = 10**18


def _me(api_url: str, app_key: str) -> requests.Response:
    return requests.get(api_url + "/me", headers={"Authorization": f"Bearer {app_key}"}, timeout=5)


def _allocate(api_url: str, app_key: str, address: str, amount: str) -> requests.Response:
    return requests.post(
        api_url + "/payment-api/v1/allocations",
        headers={"Authorization": f"Bearer {app_key}"},
        json={"address": address, "paymentPlatform": "erc20-hoodi-tglm", "totalAmount": amount, "makeDeposit": False},
        timeout=10,
    )


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "golem_sync.devnet", *args],
        env=_cli_env(), capture_output=True, text=True, timeout=timeout,
    )


def procs_with_cwd_under(root: Path) -> list:
    """Pids of live processes whose working directory is inside ``root``."""
    found = []
    root = root.resolve()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if (cwd == root or root in cwd.parents) and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def json_url_port(stdout: str) -> int:
    line = next(l for l in stdout.splitlines() if l.startswith("api "))
    return int(line.rsplit(":", 1)[1])


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def provider_module_available() -> bool:
    """True once golem_sync.devnet.provider (the provider agent) exists in this checkout."""
    try:
        return importlib.util.find_spec("golem_sync.devnet.provider") is not None
    except ImportError:
        return False


#: Providers per devnet in these tests: 2 once the provider agent exists, else 0.
N_PROVIDERS = 2 if provider_module_available() else 0


def pid_alive(pid: Optional[int]) -> bool:
    """True if ``pid`` is a live (non-zombie) process."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return False


def wait_gone(pid: Optional[int], timeout: float = 10.0) -> bool:
    """Wait (bounded) until ``pid`` is gone; True if it is."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- YagnaNode -----------------------------------------------------------------------------


def test_yagna_node_identities_and_clean_stop(tmp_path):
    node = YagnaNode(tmp_path / "y", requestor_secret=DEV_ACCOUNTS[0].private_key, app_key="req-key")
    try:
        node.start()
        pid = node.pid
        assert pid_alive(pid)
        assert node.requestor_id == DEV_ACCOUNTS[0].address
        assert _me(node.api_url, "req-key").json()["identity"] == DEV_ACCOUNTS[0].address
        assert _me(node.api_url, "wrong-key").status_code == 401
        assert len(node.gsb_url.rsplit(":", 1)[1]) <= 4  # central-net parser limit

        prov = node.add_identity("prov", "0x" + DEV_ACCOUNTS[1].private_key, "prov-key-name")
        assert prov.node_id == DEV_ACCOUNTS[1].address
        assert prov.app_key and prov.app_key not in repr(prov)
        node.restart()
        assert node.pid != pid and not pid_alive(pid)
        assert _me(node.api_url, prov.app_key).json()["identity"] == DEV_ACCOUNTS[1].address
        # both identities are bound to the central net after the restart
        log = node.log_path.read_text(errors="replace")
        assert f"/net/{DEV_ACCOUNTS[1].address}" in log
        pid = node.pid
    finally:
        node.stop()
    assert node.pid is None
    assert wait_gone(pid, 1)


def test_yagna_node_start_failure_names_cause(tmp_path):
    # Hold the REST port: yagna cannot bind it and must fail fast with its own log in the error.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        node = YagnaNode(tmp_path / "y", requestor_secret=DEV_ACCOUNTS[0].private_key, api_port=port)
        started = time.monotonic()
        with pytest.raises(YagnaNodeError) as err:
            node.start(timeout=20)
        assert time.monotonic() - started < 15
    assert "log tail" in str(err.value)
    assert node.pid is None


def test_yagna_node_rejects_bad_arguments(tmp_path):
    with pytest.raises(DevnetConfigError):
        YagnaNode(tmp_path, requestor_secret="not-a-key")
    with pytest.raises(DevnetConfigError):
        YagnaNode(tmp_path, requestor_secret=DEV_ACCOUNTS[0].private_key, gsb_port=12345)


# -- anvil, token, tools -------------------------------------------------------------------


def test_anvil_token_deploy_mint_and_balance(tmp_path):
    chain = AnvilChain(log_path=tmp_path / "anvil.log")
    try:
        chain.start()
        pid = chain.pid
        token = chain.deploy_token()
        holder, other = DEV_ACCOUNTS[2].address, DEV_ACCOUNTS[3].address
        assert chain.token_balance(token, holder) == 0
        chain.mint(token, holder, 5 * TOKEN)
        chain.mint(token, holder, 2 * TOKEN)
        assert chain.token_balance(token, holder) == 7 * TOKEN
        assert chain.token_balance(token, other) == 0
        assert chain.eth_balance(other) > 0  # dev accounts come pre-funded with ETH
    finally:
        chain.stop()
    assert chain.pid is None
    assert wait_gone(pid, 1)


def test_anvil_package_per_platform():
    assert anvil_package("Linux", "x86_64") == "@foundry-rs/anvil-linux-amd64"
    assert anvil_package("Linux", "aarch64") == "@foundry-rs/anvil-linux-arm64"
    assert anvil_package("Darwin", "arm64") == "@foundry-rs/anvil-darwin-arm64"
    with pytest.raises(DevnetConfigError):
        anvil_package("Windows", "AMD64")


def test_missing_npm_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("GOLEM_DEVNET_ANVIL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing installed here
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ToolInstallError, match="npm"):
        ensure_anvil()


def test_concurrent_first_installs_run_npm_once(tmp_path, monkeypatch):
    # Two sessions starting at once on a fresh machine: one installs, the other waits and reuses it.
    monkeypatch.delenv("GOLEM_DEVNET_ANVIL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    messages: list = []
    results: list = []

    def install() -> None:
        results.append(ensure_anvil(messages.append))

    threads = [threading.Thread(target=install) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2 and results[0] == results[1]
    assert sum(m.startswith("installing") for m in messages) == 1, messages
    assert subprocess.run([str(results[0]), "--version"], capture_output=True, timeout=10).returncode == 0
    leftovers = [p.name for p in (tmp_path / "cache" / "golem_sync" / "tools").iterdir() if p.name.startswith(".install-")]
    assert leftovers == []


def test_payments_toml_points_hoodi_at_the_chain():
    text = payments_toml(token_address="0xabc", rpc_url="http://127.0.0.1:1234")
    assert "[chain.hoodi]" in text and "[[chain.hoodi.rpc-endpoints]]" in text and "chain-id = 560048" in text
    assert "holesky" not in text
    # Only the token points at a contract: yagna's built-in hoodi contracts do not exist on anvil.
    assert "multi-contract" not in text and "wrapper-contract" not in text and "lock-contract" not in text
    assert 'address = "0xabc"' in text and 'endpoints = "http://127.0.0.1:1234"' in text
    assert "skip-validation = true" in text


# -- registry stand-in ---------------------------------------------------------------------


def test_registry_resolves_tags_and_hashes():
    with RegistryStandIn() as reg:
        url = reg.url + "/v1/image/info"
        by_tag = requests.get(url, params={"tag": "golem/alpine:latest", "count": "true"}, timeout=5)
        assert by_tag.status_code == 200
        info = by_tag.json()
        assert info["sha3"] == hashlib.sha3_256(b"golem/alpine:latest").hexdigest() == image_hash_for_tag(
            "golem/alpine:latest"
        )
        image = requests.get(info["http"], timeout=5)
        assert image.status_code == 200 and len(image.content) == info["size"]
        assert info["https"].endswith(info["sha3"])

        by_hash = requests.get(url, params={"hash": info["sha3"], "dev": "true"}, timeout=5).json()
        assert by_hash["sha3"] == info["sha3"] and by_hash["tag"] == "golem/alpine:latest"

        for bad in ({}, {"tag": ""}, {"hash": "xyz"}, {"tag": "a", "hash": info["sha3"]}):
            resp = requests.get(url, params=bad, timeout=5)
            assert resp.status_code == 404, bad
            assert "error" in resp.json()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


# -- Devnet --------------------------------------------------------------------------------


def test_devnet_up_env_down(tmp_path):
    net = Devnet(providers=N_PROVIDERS)
    with pytest.raises(DevnetUserError):
        net.info
    started = time.monotonic()
    info = net.up()
    elapsed = time.monotonic() - started
    try:
        print(f"\ndevnet up with {N_PROVIDERS} providers in {elapsed:.2f} s: {net.timings}")
        env = net.env()
        assert set(env) == {
            "YAGNA_API_URL", "YAGNA_APPKEY", "YAGNA_PAYMENT_NETWORK", "YAGNA_PAYMENT_DRIVER",
            "YAGNA_SUBNET", "GOLEM_REGISTRY_URL",
        }
        assert (env["YAGNA_PAYMENT_NETWORK"], env["YAGNA_PAYMENT_DRIVER"]) == ("hoodi", "erc20")
        assert info.payment_platform == "erc20-hoodi-tglm"
        assert net.chain is not None and int(net.chain.rpc("eth_chainId", []), 16) == 560048  # hoodi's id
        assert _me(env["YAGNA_API_URL"], env["YAGNA_APPKEY"]).json()["identity"] == info.requestor_id
        assert info.app_key not in repr(info)
        assert requests.get(env["GOLEM_REGISTRY_URL"] + "/v1/image/info?tag=x:1", timeout=5).status_code == 200
        # The requestor holds exactly the minted 1000 test GLM, as yagna sees them through the chain.
        assert _allocate(info.api_url, info.app_key, info.requestor_id, "1001").status_code == 400
        assert _allocate(info.api_url, info.app_key, info.requestor_id, "1000").status_code == 201
        assert len(info.providers) == N_PROVIDERS
        for prov in info.providers:
            assert _me(info.api_url, prov.app_key).json()["identity"] == prov.node_id
        pids = [info.yagna_pid, info.anvil_pid]
        state = Path(info.state_dir)
        assert all(pid_alive(p) for p in pids) and state.is_dir()
    finally:
        net.down()
    assert not any(pid_alive(p) for p in pids)
    assert not state.exists()  # a temp state dir is removed
    net.down()  # idempotent
    assert elapsed < 10


def test_devnet_failed_up_cleans_up(tmp_path, monkeypatch):
    # yagna cannot start (binary missing): anvil, already started, must be stopped again.
    import golem_sync.devnet.yagna as yagna_mod

    started = {}
    real_start = AnvilChain.start

    def spy_start(self, timeout=15.0):
        real_start(self, timeout)
        started["pid"] = self.pid

    monkeypatch.setattr(AnvilChain, "start", spy_start)
    monkeypatch.setattr(yagna_mod, "find_yagna", lambda: str(tmp_path / "no-yagna"))
    net = Devnet(providers=0, state_dir=tmp_path / "st")
    with pytest.raises(OSError):
        net.up()
    assert started["pid"] and wait_gone(started["pid"], 5)
    assert not net.is_up
    assert (tmp_path / "st").is_dir()  # a given state dir is kept (logs stay for diagnosis)


def test_two_devnets_side_by_side():
    a, b = Devnet(providers=0), Devnet(providers=0, subnet="other")
    try:
        ia, ib = a.up(), b.up()
        assert len({ia.api_url, ib.api_url}) == 2 and len({ia.gsb_url, ib.gsb_url}) == 2
        assert ia.chain_rpc_url != ib.chain_rpc_url and ia.state_dir != ib.state_dir
        assert _me(ia.api_url, ia.app_key).status_code == 200
        assert _me(ib.api_url, ib.app_key).status_code == 200
        assert _me(ia.api_url, ib.app_key).status_code == 401  # separate daemons, separate keys
        assert ib.env()["YAGNA_SUBNET"] == "other"
    finally:
        a.down()
        b.down()
    assert not any(pid_alive(p) for p in (ia.yagna_pid, ia.anvil_pid, ib.yagna_pid, ib.anvil_pid))


def test_devnet_rejects_too_many_providers():
    with pytest.raises(DevnetConfigError):
        Devnet(providers=10)
    with pytest.raises(DevnetConfigError):
        Devnet(providers=-1)


# -- CLI -----------------------------------------------------------------------------------


def test_cli_up_status_env_down(isolated_state):
    state = isolated_state / "golem_sync" / "devnet"  # the default, under the test's XDG_STATE_HOME
    up = _cli("up", "--providers", str(N_PROVIDERS))
    try:
        assert up.returncode == 0, up.stderr
        assert "UNSANDBOXED" in up.stderr
        server_pid = int((state / "devnet.pid").read_text())
        info = json.loads((state / "info.json").read_text())
        assert oct((state / "info.json").stat().st_mode & 0o777) == "0o600"  # holds app keys
        pids = [server_pid, info["yagna_pid"], info["anvil_pid"]]
        assert all(pid_alive(p) for p in pids)

        status = _cli("status")
        assert status.returncode == 0 and "NOT running" not in status.stdout
        assert info["api_url"] in status.stdout

        env = _cli("env", "--shell")
        assert env.returncode == 0
        exported = dict(
            line[len("export "):].split("=", 1) for line in env.stdout.splitlines() if line.startswith("export ")
        )
        assert exported["YAGNA_API_URL"] == info["api_url"]
        assert _me(info["api_url"], exported["YAGNA_APPKEY"]).json()["identity"] == info["requestor_id"]

        again = _cli("up")
        assert again.returncode == 1 and "already runs" in again.stderr
    finally:
        down = _cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(wait_gone(p, 5) for p in pids)
    assert not state.exists()
    assert _cli("status").returncode == 1
    assert _cli("env").returncode == 1


def test_cli_down_after_server_was_killed(isolated_state):
    # If the devnet process dies hard, `down` still stops its yagna and anvil by pid.
    state = isolated_state / "golem_sync" / "devnet"
    up = _cli("up", "--providers", "0")
    assert up.returncode == 0, up.stderr
    info = json.loads((state / "info.json").read_text())
    server_pid = int((state / "devnet.pid").read_text())
    os.kill(server_pid, 9)
    assert wait_gone(server_pid, 5)
    assert pid_alive(info["yagna_pid"]) and pid_alive(info["anvil_pid"])
    refused = _cli("up", "--providers", "0")  # must not start a second yagna on the same data dir
    assert refused.returncode == 1 and "down" in refused.stderr
    down = _cli("down")
    assert down.returncode == 0, down.stdout
    assert wait_gone(info["yagna_pid"], 5) and wait_gone(info["anvil_pid"], 5)


def test_cli_run_passes_env_and_exit_code(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import os, sys, requests
        me = requests.get(os.environ["YAGNA_API_URL"] + "/me",
                          headers={"Authorization": "Bearer " + os.environ["YAGNA_APPKEY"]}, timeout=5).json()
        print("identity", me["identity"], os.environ["YAGNA_SUBNET"])
        print("api", os.environ["YAGNA_API_URL"])
        sys.exit(7)
    """))
    run = _cli("run", "--providers", "0", "--state-dir", str(tmp_path / "st"), "--", sys.executable, str(script))
    assert run.returncode == 7, run.stderr
    assert f"identity {DEV_ACCOUNTS[0].address} devnet" in run.stdout
    # Nothing the run started is left: yagna and anvil run with their cwd in the state dir.
    assert procs_with_cwd_under(tmp_path / "st") == []
    assert _port_closed(json_url_port(run.stdout))


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_cli_run_interrupted_leaves_nothing(tmp_path, how):
    script = tmp_path / "job.py"
    script.write_text("import os, time\nprint('ready', os.getpid(), flush=True)\ntime.sleep(60)\n")
    state = tmp_path / "st"
    proc = subprocess.Popen(
        [sys.executable, "-m", "golem_sync.devnet", "run", "--providers", str(N_PROVIDERS),
         "--state-dir", str(state), "--", sys.executable, str(script)],
        env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, like a shell job
    )
    try:
        assert proc.stdout is not None
        word, job_pid = proc.stdout.readline().split()
        assert word == "ready"  # the devnet is up and CMD runs
        assert procs_with_cwd_under(state)  # yagna and anvil are running
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the foreground job
        else:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode != 0
    assert procs_with_cwd_under(state) == []
    assert wait_gone(int(job_pid), 5)


def test_cli_run_without_command_is_usage_error():
    run = _cli("run", "--providers", "0")
    assert run.returncode == 2 and "--" in run.stderr


# -- pytest plugin -------------------------------------------------------------------------


def test_pytest_plugin_fixture(tmp_path):
    (tmp_path / "test_uses_devnet.py").write_text(textwrap.dedent("""
        import requests

        def test_one(golem_devnet):
            me = requests.get(golem_devnet.api_url + "/me",
                              headers={"Authorization": "Bearer " + golem_devnet.app_key}, timeout=5)
            assert me.json()["identity"] == golem_devnet.requestor_id
            assert len(golem_devnet.providers) == 0
            open("pids.txt", "w").write(f"{golem_devnet.yagna_pid} {golem_devnet.anvil_pid}")

        def test_same_devnet(golem_devnet):
            assert open("pids.txt").read() == f"{golem_devnet.yagna_pid} {golem_devnet.anvil_pid}"
    """))
    env = _cli_env()
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # load the plugin exactly once, explicitly
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "golem_sync.devnet.pytest_plugin",
         "--golem-devnet-providers", "0", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed" in res.stdout
    yagna_pid, anvil_pid = map(int, (tmp_path / "pids.txt").read_text().split())
    assert not pid_alive(yagna_pid) and not pid_alive(anvil_pid)  # brought down at session end


def test_pytest_plugin_import_is_cheap():
    code = "import sys, golem_sync.devnet.pytest_plugin; print('golem_sync.devnet.launcher' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], env=_cli_env(), capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "False", res.stderr


@pytest.mark.skipif(N_PROVIDERS == 0, reason="needs the provider agent (golem_sync.devnet.provider)")
def test_devnet_providers_answer_a_demand_on_the_subnet():
    # The launcher wires each agent to its own identity, the subnet and the payment platform:
    # a plain REST demand on that subnet gets one proposal from every provider identity.
    with Devnet(providers=2, subnet="wiring-check") as net:
        info = net.info
        headers = {"Authorization": f"Bearer {info.app_key}"}
        market = info.api_url + "/market-api/v1"
        allocation = _allocate(info.api_url, info.app_key, info.requestor_id, "10").json()
        decorations = requests.get(
            info.api_url + "/payment-api/v1/demandDecorations",
            params={"allocationIds": allocation["allocationId"]}, headers=headers, timeout=10,
        ).json()
        properties = {
            "golem.node.debug.subnet": info.subnet,
            "golem.srv.comp.expiration": int((time.time() + 600) * 1000),
        }
        for prop in decorations.get("properties", []):
            properties[prop["key"]] = prop["value"]
        constraints = "(&" + f"(golem.node.debug.subnet={info.subnet})(golem.runtime.name=vm)" + "".join(
            decorations.get("constraints", [])
        ) + ")"
        demand_id = requests.post(
            market + "/demands", json={"properties": properties, "constraints": constraints}, headers=headers, timeout=10
        ).json()
        try:
            issuers = set()
            deadline = time.monotonic() + 15
            while len(issuers) < 2 and time.monotonic() < deadline:
                events = requests.get(
                    f"{market}/demands/{demand_id}/events", params={"timeout": 3, "maxEvents": 10},
                    headers=headers, timeout=10,
                ).json()
                issuers |= {e["proposal"]["issuerId"] for e in events if e.get("eventType") == "ProposalEvent"}
        finally:
            requests.delete(f"{market}/demands/{demand_id}", headers=headers, timeout=10)
        assert issuers == {p.node_id for p in info.providers}
