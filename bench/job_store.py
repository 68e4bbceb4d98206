"""Benchmark: job store overhead per job state change, and memory over many finished jobs.

    PYTHONPATH=. python bench/job_store.py [--jobs 10000] [--listeners 4] [--postgres CONNINFO]

1. Per state change: the time of ``store.update`` (commit + notification to every process sharing
   the store) for a job's real sequence of writes, with ``--listeners`` other processes holding the
   same SQLite store open (each gets every notification).
2. Memory: ``--jobs`` jobs go through a GolemNetwork (stub yagna client, no provider) with the exact
   hook sequence of a real run (created, pending, agreement, activity, finished) under a retention
   of 1,000 finished jobs; RSS, traced Python memory, rows and file sizes are sampled as it goes.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
from typing import Any, List

from golem_sync import GolemNetwork, JobState, signals
from golem_sync.store import JobStore, Retention, SQLiteJobStore


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class StubClient:
    def __init__(self) -> None:
        self.version = types.SimpleNamespace(
            get=lambda: types.SimpleNamespace(current=types.SimpleNamespace(version="0.17.6")))
        self.identity = types.SimpleNamespace(me=lambda: types.SimpleNamespace(identity="0xbench"))

    def close(self) -> None:
        pass


HOLDER = "import sys, threading; from golem_sync.store import SQLiteJobStore; s = SQLiteJobStore(sys.argv[1]); " \
         "print('ok', flush=True); sys.stdin.read(); s.close()"


def per_change(store: JobStore, n_jobs: int, prefix: str) -> List[float]:
    """Milliseconds per update, over a real job's writes."""
    times: List[float] = []
    for i in range(n_jobs):
        job_id = f"{prefix}-{i}"
        store.create(job_id)
        steps: List[dict] = [dict(state="pending"), dict(agreement_id="a" * 64, provider="provider-1",
                                                             allocation_id="alloc"),
                             dict(activity_id="b" * 32), dict(state="done", result='"hello\\n"')]
        for fields in steps:
            started = time.perf_counter()
            store.update(job_id, **fields)
            times.append((time.perf_counter() - started) * 1000)
    return times


def report(label: str, times: List[float]) -> None:
    times = sorted(times)
    print(f"{label}: n={len(times)} mean={statistics.mean(times):.3f} ms  p50={times[len(times) // 2]:.3f} ms  "
          f"p99={times[int(len(times) * 0.99)]:.3f} ms  max={times[-1]:.3f} ms")


def memory_run(store: JobStore, n_jobs: int, path: str) -> None:
    network = GolemNetwork(client=StubClient(), job_store=store, max_workers=1).init()  # type: ignore[arg-type]
    tracemalloc.start()
    print(f"{'jobs':>7} {'rss MB':>8} {'traced KB':>10} {'rows':>6} {'db KB':>7} {'wal KB':>7} {'us/job':>7}")
    started = time.perf_counter()
    for i in range(1, n_jobs + 1):
        job = network.create_job()
        job._state = JobState.PENDING
        job._persist()
        signals.emit(signals.agreement_created, job, agreement_id=f"agr-{i}", provider="provider-1")
        signals.emit(signals.activity_created, job, activity_id=f"act-{i}", agreement_id=f"agr-{i}")
        job._finish(JobState.DONE, {"stdout": "hello\n", "i": i}, None)
        del job
        if i % (n_jobs // 10) == 0:
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] / 1024
            rows = store.count() if hasattr(store, "count") else -1
            db = os.path.getsize(path) / 1024
            wal = os.path.getsize(path + "-wal") / 1024 if os.path.exists(path + "-wal") else 0
            per_job = (time.perf_counter() - started) / i * 1e6
            print(f"{i:>7} {rss_mb():>8.1f} {traced:>10.1f} {rows:>6} {db:>7.0f} {wal:>7.0f} {per_job:>7.0f}")
    network.close()
    tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--listeners", type=int, default=4)
    parser.add_argument("--changes-jobs", type=int, default=500)
    parser.add_argument("--postgres", default=None, help="also measure a PostgreSQL store (conninfo)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "jobs.db")
        with SQLiteJobStore(path) as store:
            report("SQLite, no other process", per_change(store, args.changes_jobs, "alone"))
            holders = [subprocess.Popen([sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True) for _ in range(args.listeners)]
            try:
                for h in holders:
                    h.stdout.readline()
                report(f"SQLite, {args.listeners} other processes listening", per_change(store, args.changes_jobs, "shared"))
            finally:
                for h in holders:
                    h.stdin.close()
                    h.wait(10)
        if args.postgres:
            from golem_sync.store import PostgresJobStore

            with PostgresJobStore(args.postgres, table=f"bench_{os.getpid()}") as pg:
                report("PostgreSQL", per_change(pg, args.changes_jobs, "pg"))
                pg._run(f"DROP TABLE {pg.table}")
        path = os.path.join(tmp, "memory.db")
        print(f"\nmemory over {args.jobs} finished jobs (retention: 1,000 finished):")
        with SQLiteJobStore(path, retention=Retention(max_age_sec=None, max_finished=1000, every_sec=0.5)) as store:
            memory_run(store, args.jobs, path)


if __name__ == "__main__":
    main()
