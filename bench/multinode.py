"""An experiment, not the devnet's layout: each provider on a yagna node and in a process of its own.

    python bench/multinode.py [--rounds 5] [--jobs 50] [--cancel 300] [--inline]

The devnet normally runs one yagna node for the requestor and every provider, and one Python
process for all provider agents and exe-units. Here each provider gets its own yagna node (central
net, the requestor node's GSB router as the hub; its identity is that node's default one) and,
unless ``--inline``, its agent runs in a process of its own. Then, as ``bench/pool.py`` and
``bench/soak.py`` do on the usual devnet: ``--rounds`` alternating rounds of the raw-REST sequence
(``--jobs`` echo batches on one activity) against ``--jobs`` jobs through pools of one and of two
leases (after one unmeasured job: the first negotiation waits for the offers to cross the hub),
and ``--cancel`` jobs cancelled at once. Nothing here is a test; the figures are in the
README ("Many short jobs: pools").
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import attrs

from golem_sync.devnet.chain import DEV_ACCOUNTS, AnvilChain
from golem_sync.devnet.launcher import PAYMENT_PLATFORM, REQUESTOR_TOKENS, DevnetInfo, DevnetProviderInfo, payments_toml
from golem_sync.devnet.registry import RegistryStandIn
from golem_sync.devnet.tools import ensure_anvil
from golem_sync.devnet.yagna import YagnaNode

SUBNET = "devnet"


def run_agent(settings: Dict[str, Any], stop: Any, ready: Any) -> None:
    """A provider agent in a process of its own, until ``stop`` is set."""
    from golem_sync.devnet.provider import ProviderAgent, ProviderSpec

    spec = attrs.evolve(ProviderSpec(), name=settings.pop("name"))
    agent = ProviderAgent(spec=spec, work_root=Path(settings.pop("work_root")), **settings)
    agent.start()
    ready.set()
    stop.wait()
    agent.stop()


def many(info: Any, n: int, size: int) -> float:
    from pool import echo
    from job_latency import network_for

    net = network_for(info).init()
    try:
        started = time.monotonic()
        pool = net.create_pool(size=size)
        list(pool.map(echo, range(n), timeout=300))
        pool.shutdown(wait=True)
        return time.monotonic() - started
    finally:
        net.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--cancel", type=int, default=300)
    parser.add_argument("--inline", action="store_true", help="provider agents in this process")
    args = parser.parse_args()
    from job_latency import raw_job
    from soak import cancel_under_load

    state = Path(tempfile.mkdtemp(prefix="bench-multinode-"))
    chain = AnvilChain(log_path=state / "anvil.log", anvil_path=ensure_anvil())
    chain.start(timeout=30)
    nodes: List[YagnaNode] = []
    stops: List[Any] = []
    processes: List[Any] = []
    agents: List[Any] = []
    registry = RegistryStandIn()
    try:
        token = chain.deploy_token()
        chain.mint(token, DEV_ACCOUNTS[0].address, REQUESTOR_TOKENS * 10**18)
        toml = payments_toml(token_address=token, rpc_url=chain.rpc_url)
        requestor = YagnaNode(state / "yagna", requestor_secret=DEV_ACCOUNTS[0].private_key,
                              app_key=secrets.token_hex(16), payments_toml=toml)
        nodes.append(requestor)
        requestor.start(timeout=30)
        registry.start()
        hub = requestor.gsb_url.replace("tcp://", "")
        providers = []
        spawn = multiprocessing.get_context("spawn")
        for i in range(2):
            node = YagnaNode(state / f"provider-{i + 1}", requestor_secret=DEV_ACCOUNTS[i + 1].private_key,
                             app_key=secrets.token_hex(16), payments_toml=toml, env={"CENTRAL_NET_HOST": hub})
            nodes.append(node)
            node.start(timeout=30)
            assert node.requestor_id is not None
            name = f"devnet-provider-{i + 1}"
            providers.append(DevnetProviderInfo(name=name, node_id=node.requestor_id, app_key=node.app_key))
            work = state / "providers" / str(i + 1)
            work.mkdir(parents=True)
            settings = dict(api_url=node.api_url, app_key=node.app_key, node_id=node.requestor_id,
                            gsb_url=node.gsb_url, subnet=SUBNET, payment_platform=PAYMENT_PLATFORM,
                            work_root=str(work), name=name)
            if args.inline:
                from golem_sync.devnet.provider import ProviderAgent, ProviderSpec

                agent = ProviderAgent(spec=attrs.evolve(ProviderSpec(), name=settings.pop("name")),
                                      work_root=Path(settings.pop("work_root")), **settings)
                agents.append(agent)
                agent.start()
            else:
                stop, ready = spawn.Event(), spawn.Event()
                process = spawn.Process(target=run_agent, args=(settings, stop, ready), name=name)
                process.start()
                stops.append(stop)
                processes.append(process)
                if not ready.wait(60):
                    raise RuntimeError(f"{name} did not start")
        assert requestor.requestor_id is not None
        info = DevnetInfo(api_url=requestor.api_url, app_key=requestor.app_key, gsb_url=requestor.gsb_url,
                          requestor_id=requestor.requestor_id, subnet=SUBNET, registry_url=registry.url,
                          chain_rpc_url=chain.rpc_url, token_address=token, providers=tuple(providers),
                          state_dir=str(state), yagna_pid=requestor.pid, anvil_pid=chain.pid)
        raw_job(info, execs=1)  # not measured: the first negotiation waits for the offers to reach the hub
        rounds: Dict[str, List[float]] = {"raw": [], "pool of one": [], "pool of two": []}
        for _ in range(args.rounds):  # alternate, so drift on the machine hits every side alike
            rounds["raw"].append(raw_job(info, execs=args.jobs)["job"])
            rounds["pool of one"].append(many(info, args.jobs, 1))
            rounds["pool of two"].append(many(info, args.jobs, 2))
        raw = statistics.median(rounds["raw"])
        for what, took in rounds.items():
            print(f"{args.jobs} jobs, {what}: median {statistics.median(took):.2f} s "
                  f"({statistics.median(took) / raw:.3f}x raw; rounds {[round(t, 2) for t in took]})")
        if args.cancel:
            print("cancel under load:", json.dumps(cancel_under_load(info, in_flight=args.cancel)))
    finally:
        for agent in agents:
            agent.stop()
        for stop in stops:
            stop.set()
        for process in processes:
            process.join(30)
        for node in reversed(nodes):
            node.stop()
        registry.stop()
        chain.stop()


if __name__ == "__main__":
    main()
