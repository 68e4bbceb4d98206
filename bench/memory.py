"""Python memory over many jobs: ``tracemalloc`` snapshots of one long-lived network.

    python bench/memory.py [--warm 1100] [--step 400] [--steps 2] [--in-flight 16]

On a fresh devnet (in its own process, as ``bench/pool.py``): ``--warm`` ``echo`` jobs through one
``GolemNetwork`` (``Retention(max_finished=100)``), ``--in-flight`` at a time, then ``--steps``
more rounds of ``--step`` jobs, with a snapshot after each. Prints the traced memory after each
round and, between the last two snapshots, the golem_sync source lines whose allocations grew
most. RSS over a longer mixed run is ``bench/soak.py``'s; this finds what grows, if anything.
tracemalloc slows the requestor about threefold: a 1,900-job run takes ~20 minutes.
"""
from __future__ import annotations

import argparse
import gc
import threading
import tracemalloc
from concurrent.futures import Future, wait
from typing import Any, List

from golem_sync.store import Retention
from pool import devnet_info  # bench/ is on sys.path (the script's own dir)
from soak import network_for


def run(golem: Any, n: int, in_flight: int) -> int:
    """``n`` echo jobs, at most ``in_flight`` at once; returns how many failed."""
    slots = threading.BoundedSemaphore(in_flight)
    futures: List["Future[Any]"] = []
    for _ in range(n):
        slots.acquire()
        job = golem.create_job()
        job.future.add_done_callback(lambda _f: slots.release())
        job.start_work(lambda ctx: ctx.run("echo hi").stdout)
        futures.append(job.future)
    wait(futures)
    return sum(1 for f in futures if f.exception() is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=1100)
    parser.add_argument("--step", type=int, default=400)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    tracemalloc.start(25)
    with devnet_info("process") as info:
        golem = network_for(info, info.api_url, max_workers=args.in_flight,
                            retention=Retention(max_finished=100)).init()
        snapshots = []
        done = 0
        try:
            for n in [args.warm] + [args.step] * args.steps:
                failed = run(golem, n, args.in_flight)
                done += n
                gc.collect()
                snapshots.append(tracemalloc.take_snapshot())
                print(f"after {done} jobs ({failed} failed): traced {tracemalloc.get_traced_memory()[0] / 1e6:.2f} MB",
                      flush=True)
        finally:
            golem.close()
    only_ours = [tracemalloc.Filter(True, "*/golem_sync/*")]
    before, after = (s.filter_traces(only_ours) for s in snapshots[-2:])
    print("grew most between the last two snapshots (golem_sync lines):")
    for stat in after.compare_to(before, "lineno")[:10]:
        print(f"  {stat.size_diff:+8d} B {stat.count_diff:+6d} blocks  {stat.traceback[0]}")


if __name__ == "__main__":
    main()
