"""Warm pools on the devnet: many short jobs through ``golem.create_pool`` against the raw REST floor.

    python bench/pool.py [--rounds 5] [--jobs 50] [--soak 1000] [--devnet process|inline]

In one run, on a fresh devnet with 2 providers, medians over alternating rounds of:

1. **warm job**: ``pool.submit(lambda ctx: ctx.run("echo hi").stdout).result()`` on an idle lease;
2. **N short jobs**: ``pool.map`` over N items with ``size=2``, from ``create_pool`` (on a fresh
   network) to the results and ``shutdown`` -- against the raw-REST sequence that runs N echo
   batches on ONE activity (allocation, negotiation, agreement, activity, deploy, N execs, destroy,
   terminate; ``bench/job_latency.py``'s floor), measured in the same rounds;
3. **cancel** of a pool job in the middle of a command: seconds to ``ended``;
4. **soak**: ``--soak`` short jobs through a pool of 4: RSS growth after the first 100 jobs,
   the most golem_sync threads alive at once (``golem-*``, sampled every 2 ms from the start and
   again after the first 100 jobs; the devnet's own threads run in this process too and are not
   counted), and what yagna still holds after ``close()``.

The devnet runs in its own process by default (``python -m golem_sync.devnet up`` in a temp state
dir), as providers do on the real network: with ``--devnet inline`` its providers and exe-units run
in the benchmark's process and compete with the requestor for the GIL, which slows the pool's
parallel jobs more than the one-flow raw sequence.

Nothing here is a test; the figures go to the README ("Many short jobs: pools").
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import requests

from golem_sync.devnet.daemon import read_info
from golem_sync.devnet.launcher import Devnet, DevnetInfo
from golem_sync.store import Retention
from job_latency import network_for, raw_job


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def golem_threads() -> int:
    """Threads golem_sync started (the devnet's providers run in this process too)."""
    return sum(1 for t in threading.enumerate() if t.name.startswith("golem-") and not t.name.startswith("golem-devnet"))


def echo(ctx: Any, *_: Any) -> str:
    return str(ctx.run("echo hi").stdout)


def warm_jobs(info: Any, n: int = 20) -> List[float]:
    net = network_for(info).init()
    try:
        with net.create_pool(size=1, min_size=1) as pool:
            pool.ready(timeout=60)
            pool.submit(echo).result(timeout=60)  # the first read of a new lease's usage
            took = []
            for _ in range(n):
                t = time.monotonic()
                pool.submit(echo).result(timeout=60)
                took.append(time.monotonic() - t)
            return took
    finally:
        net.close()


def many_jobs(info: Any, n: int) -> float:
    net = network_for(info).init()
    try:
        t = time.monotonic()
        pool = net.create_pool(size=2)
        results = list(pool.map(echo, range(n), timeout=300))
        pool.shutdown(wait=True)
        took = time.monotonic() - t
        assert results == ["hi\n"] * n
        return took
    finally:
        net.close()


def cancel_in_command(info: Any, n: int = 5) -> List[float]:
    net = network_for(info).init()
    took = []
    try:
        with net.create_pool(size=1, min_size=1) as pool:
            pool.ready(timeout=60)
            for _ in range(n):
                started = threading.Event()

                def worker(ctx: Any) -> Any:
                    proc = ctx.spawn("echo go; sleep 60")
                    next(iter(proc.stdout))
                    started.set()
                    return proc.wait()

                job = pool.create_job()
                job.start_work(worker)
                started.wait(60)
                t = time.monotonic()
                job.cancel(timeout=30)
                took.append(time.monotonic() - t)
                pool.ready(timeout=60)
    finally:
        net.close()
    return took


class ThreadSampler:
    """Samples :func:`golem_threads` every few milliseconds on its own thread; keeps the peaks."""

    def __init__(self) -> None:
        self.peak = 0  # since start
        self.peak_warm = 0  # since mark_warm()
        self._warm = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def mark_warm(self) -> None:
        self._warm = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            count = golem_threads()
            self.peak = max(self.peak, count)
            if self._warm:
                self.peak_warm = max(self.peak_warm, count)


def soak(info: Any, n: int) -> Dict[str, Any]:
    # A long-lived network keeps every finished job unless told otherwise (as golem-js does).
    net = network_for(info, retention=Retention(max_finished=100)).init()
    rss: Dict[int, float] = {}
    sampler = ThreadSampler()
    try:
        with net.create_pool(size=4) as pool:
            done = 0
            for start in range(0, n, 100):
                futures = [pool.submit(echo) for _ in range(min(100, n - start))]
                for future in futures:
                    future.result(timeout=300)
                    done += 1
                rss[done] = rss_mib()
                sampler.mark_warm()  # the four leases are made during the first 100 jobs
            stats = pool.stats()
    finally:
        net.close()
        sampler.stop()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {info.app_key}"
    agreements = s.get(f"{info.api_url}/market-api/v1/agreements").json()
    approved = [a for a in agreements if a.get("state") == "Approved"]
    return {"jobs": n, "rss_after_100_mib": round(rss[min(rss)], 1), "rss_end_mib": round(rss[max(rss)], 1),
            "rss_growth_mib": round(rss[max(rss)] - rss[min(rss)], 1), "peak_threads": sampler.peak,
            "peak_threads_after_100": sampler.peak_warm,
            "golem_threads_after_close": golem_threads(), "leases_created": stats.leases_created,
            "retired": dict(stats.retired), "approved_agreements_left": len(approved)}


@contextlib.contextmanager
def devnet_info(mode: str, providers: int = 2) -> Iterator[Any]:
    """A fresh devnet's info: in a process of its own (``process``) or in this one (``inline``)."""
    if mode == "inline":
        with Devnet(providers=providers) as devnet:
            yield devnet.info
        return
    with tempfile.TemporaryDirectory(prefix="bench-devnet-") as state:
        cli = [sys.executable, "-m", "golem_sync.devnet"]
        subprocess.run([*cli, "up", "--providers", str(providers), "--state-dir", state], check=True,
                       stdout=subprocess.DEVNULL)
        try:
            data = read_info(Path(state))
            assert data is not None, "devnet up wrote no info.json"
            yield DevnetInfo.from_dict(data)
        finally:
            subprocess.run([*cli, "down", "--state-dir", state], check=False, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--soak", type=int, default=1000)
    parser.add_argument("--devnet", choices=("process", "inline"), default="process")
    args = parser.parse_args()
    with devnet_info(args.devnet) as info:
        raw, pooled, warm = [], [], []
        for _ in range(args.rounds):  # alternate, so drift on the machine hits both sides alike
            raw.append(raw_job(info, execs=args.jobs)["job"])
            pooled.append(many_jobs(info, args.jobs))
            warm.extend(warm_jobs(info))
        r, p = statistics.median(raw), statistics.median(pooled)
        print(f"warm job: median {statistics.median(warm) * 1000:.1f} ms, p90 "
              f"{sorted(warm)[int(len(warm) * 0.9)] * 1000:.1f} ms ({len(warm)} jobs)")
        print(f"{args.jobs} short jobs, pool size 2: {p:.2f} s; raw REST, {args.jobs} batches on one activity: "
              f"{r:.2f} s; ratio {p / r:.2f}x  (rounds: pool {[round(x, 2) for x in pooled]}, "
              f"raw {[round(x, 2) for x in raw]})")
        cancels = cancel_in_command(info)
        print(f"cancel in a command -> ended: median {statistics.median(cancels):.3f} s, max {max(cancels):.3f} s")
        if args.soak:
            print("soak:", soak(info, args.soak))


if __name__ == "__main__":
    main()
