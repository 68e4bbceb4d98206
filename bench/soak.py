"""Soak and load on the devnet: many mixed jobs through one long-lived network with a job store.

    python bench/soak.py [--jobs 1000] [--in-flight 16] [--cancel-in-flight 300] [--fault-rate 0.02]
                         [--seed 1] [--allocation-sec 120] [--json]

In one run, on a fresh devnet with 2 providers (in its own process, as ``bench/pool.py``):

1. **mixed jobs**: ``--jobs`` jobs, ``--in-flight`` at a time, through ONE ``GolemNetwork`` with a
   SQLite job store, in a fixed shuffled mix (see :data:`MIX`): ok / worker raises / failing
   command / cancel mid-run / cancel while in the market / command timeout. Every job must end in
   the state its kind expects, with the error type it expects. With ``--fault-rate`` > 0 the
   network talks to yagna through the devnet's fault proxy, which answers 500 or resets the
   connection on that share of calls (seeded); a job that then fails with a yagna error is counted
   as ``fault_failed`` (the fault reached it), never as expected. The allocation lives
   ``--allocation-sec`` so the run crosses renewals.
2. **cancel under load**: ``--cancel-in-flight`` jobs started at once (each runs ``sleep`` or
   waits in the market), then all cancelled: seconds from each ``request_cancel`` to ``ended``.

Reported: jobs per kind and outcome, unexpected outcomes (must be 0), RSS after the first 10% of
jobs and at the end (growth over the rest), the most golem_sync threads alive at once, cancel
p50/p99, allocation renewals, and what yagna still holds after ``close()`` (agreements
Approved, allocations, invoices RECEIVED, debit notes RECEIVED). The exit code is 1 if any job
ended unexpectedly or yagna holds anything afterwards.

Nothing here is a test; ``tests/devnet/test_soak_devnet.py`` runs :func:`soak` at a small size in
CI, and the figures of the full run go to the README ("Reliability").
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import attrs
import requests

from golem_sync import GolemNetwork, JobState, signals
from golem_sync.errors import GolemCancelledError, GolemTimeoutError, GolemWorkError, YagnaError
from pool import devnet_info, golem_threads, rss_mib  # bench/ is on sys.path (the script's own dir)

#: The share of each job kind in the mix (they sum to 1).
MIX: Dict[str, float] = {"ok": 0.5, "raises": 0.1, "command_fails": 0.1, "cancel_running": 0.1,
                         "cancel_market": 0.1, "command_timeout": 0.1}


class SoakWorkerError(Exception):
    """What the ``raises`` kind's worker raises."""


class ThreadPeak:
    """Samples :func:`golem_threads` every 5 ms on its own thread and keeps the peak."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, golem_threads())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def kinds(n: int, seed: int) -> List[str]:
    """``n`` job kinds in the proportions of :data:`MIX`, shuffled with ``seed``."""
    out: List[str] = []
    for kind, share in MIX.items():
        out += [kind] * round(n * share)
    out = (out + ["ok"] * n)[:n]
    random.Random(seed).shuffle(out)
    return out


class RenewalCounter(logging.Handler):
    """Counts the allocation keeper's "extended by" / "replaced by" log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name.startswith("golem_sync") and message.startswith("allocation ") and (
                " extended by " in message or " replaced by " in message):
            self.count += 1


@contextlib.contextmanager
def faults(info: Any, rate: float, seed: int) -> Iterator[str]:
    """The URL to reach yagna at: the devnet's fault proxy answering 500 or resetting on ``rate`` of
    the calls (seeded), or yagna itself when ``rate`` is 0."""
    if not rate:
        yield info.api_url
        return
    from golem_sync.devnet.proxy import FaultProxy

    proxy = FaultProxy(info.api_url)
    proxy.start()
    try:
        proxy.add_rule(path="*", status=500, probability=rate / 2, seed=seed)
        proxy.add_rule(path="*", reset=True, probability=rate / 2, seed=seed + 1)
        yield proxy.url
    finally:
        proxy.stop()


# -- one job of each kind ----------------------------------------------------------------------


@attrs.define
class Canceller:
    """Cancels jobs a little after they reach the point their kind cancels at, on one thread."""

    delay: float = 0.2
    _queue: "collections.deque[Tuple[float, Any]]" = attrs.field(factory=collections.deque)
    _cond: threading.Condition = attrs.field(factory=threading.Condition)
    _stopped: bool = False
    requested: Dict[str, float] = attrs.field(factory=dict)

    def later(self, job: Any) -> None:
        with self._cond:
            self._queue.append((time.monotonic() + self.delay, job))
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._cond.wait(max(0.0, self._queue[0][0] - time.monotonic()) if self._queue else None)
                if self._stopped:
                    return
                _, job = self._queue.popleft()
            self.requested[job.id] = time.monotonic()
            job.request_cancel("soak: cancelled on purpose")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()


def start(golem: GolemNetwork, kind: str, canceller: Canceller) -> Any:
    """Create and start one job of ``kind``; returns the job."""
    if kind == "cancel_market":
        job = golem.create_job(market={"max_cpu_per_sec": 1e-15})  # no offer is acceptable: it waits
        job.start_work(lambda ctx: ctx.run("echo never"))
        canceller.later(job)
        return job
    job = golem.create_job(work={"raise_on_command_error": True}) if kind == "command_fails" else golem.create_job()

    def worker(ctx: Any) -> Any:
        if kind == "ok":
            return ctx.run("echo ok").stdout.strip()
        if kind == "raises":
            raise SoakWorkerError("soak: the worker raises on purpose")
        if kind == "command_fails":
            return ctx.run("exit 3")
        if kind == "command_timeout":
            return ctx.run("sleep 30", timeout=0.5)
        # cancel_running: cancelled while its command runs
        proc = ctx.spawn("echo go; sleep 60")
        next(iter(proc.stdout))
        canceller.later(job)
        return proc.wait()

    job.start_work(worker)
    return job


#: For each kind: the state it must end in and the error type it must end with (None: no error).
EXPECTED: Dict[str, Tuple[JobState, Optional[type]]] = {
    "ok": (JobState.DONE, None),
    "raises": (JobState.REJECTED, SoakWorkerError),
    "command_fails": (JobState.REJECTED, GolemWorkError),
    "command_timeout": (JobState.REJECTED, GolemTimeoutError),
    "cancel_running": (JobState.CANCELLED, GolemCancelledError),
    "cancel_market": (JobState.CANCELLED, GolemCancelledError),
}


def outcome(kind: str, job: Any) -> str:
    """``expected``, ``fault_failed`` (a yagna error the proxy caused) or ``unexpected: ...``."""
    state, error_type = EXPECTED[kind]
    error = job.error
    if job.state is state and (error_type is None and error is None
                               or error_type is not None and isinstance(error, error_type)):
        if kind == "ok" and job.results != "ok":
            return f"unexpected: result {job.results!r}"
        return "expected"
    chain, seen = error, 0
    while chain is not None and seen < 10:
        if isinstance(chain, YagnaError):
            return "fault_failed"
        chain, seen = chain.__cause__ or chain.__context__, seen + 1
    return f"unexpected: {job.state} {type(error).__name__}: {error}"


# -- what yagna still holds ----------------------------------------------------------------------


def leftovers(api_url: str, app_key: str) -> Dict[str, int]:
    """What yagna holds after close: Approved agreements, allocations, RECEIVED invoices/notes."""
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {app_key}"

    def get(path: str) -> List[Any]:
        r = s.get(api_url.rstrip("/") + path, timeout=30)
        r.raise_for_status()
        return list(r.json())

    return {
        "agreements_approved": sum(1 for a in get("/market-api/v1/agreements") if a.get("state") == "Approved"),
        "allocations": len(get("/payment-api/v1/allocations")),
        "invoices_received": sum(1 for i in get("/payment-api/v1/invoices") if i.get("status") == "RECEIVED"),
        "debit_notes_received": sum(1 for d in get("/payment-api/v1/debitNotes") if d.get("status") == "RECEIVED"),
    }


# -- the runs -------------------------------------------------------------------------------------


def network_for(info: Any, api_url: str, **kw: Any) -> GolemNetwork:
    return GolemNetwork(yagna={"api_url": api_url, "app_key": info.app_key},
                        payment={"network": info.payment_network, **kw.pop("payment", {})},
                        market={"subnet_tag": info.subnet},
                        package={"image_tag": "golem/alpine:latest", "registry_url": info.registry_url},
                        job={"startup_timeout_sec": 120.0, "max_retries": 1}, **kw)


def soak(info: Any, *, jobs: int, in_flight: int = 16, seed: int = 1, api_url: Optional[str] = None,
         allocation_sec: int = 120, store_dir: Optional[Path] = None,
         progress: Callable[[str], None] = lambda line: None) -> Dict[str, Any]:
    """Run ``jobs`` mixed jobs ``in_flight`` at a time; returns the figures (see the module doc)."""
    url = api_url or info.api_url
    plan = kinds(jobs, seed)
    counts: Dict[str, collections.Counter] = {kind: collections.Counter() for kind in MIX}
    unexpected: List[str] = []
    rss: List[Tuple[int, float]] = []
    renewals = RenewalCounter()
    allocation_log = logging.getLogger("golem_sync.payment")
    level = allocation_log.level
    allocation_log.setLevel(logging.INFO)  # the keeper says "extended"/"replaced" at INFO
    allocation_log.addHandler(renewals)
    with tempfile.TemporaryDirectory(prefix="soak-store-", dir=store_dir) as tmp:
        sampler = ThreadPeak()
        canceller = Canceller()
        cancel_thread = threading.Thread(target=canceller.run, name="soak-canceller", daemon=True)
        cancel_thread.start()
        golem = network_for(info, url, job_store=str(Path(tmp) / "jobs.sqlite"), max_workers=in_flight,
                            payment={"allocation_expiration_sec": allocation_sec}).init()
        started = time.monotonic()
        try:
            running: "collections.deque[Tuple[str, Any]]" = collections.deque()
            done = 0
            checkpoint = max(1, jobs // 10)
            for kind in plan:
                while len(running) >= in_flight:
                    done += _finish(running.popleft(), counts, unexpected)
                    if done % checkpoint == 0:
                        rss.append((done, rss_mib()))
                        progress(f"{done}/{jobs} jobs, rss {rss[-1][1]:.1f} MiB, threads {golem_threads()}")
                running.append((kind, start(golem, kind, canceller)))
            while running:
                done += _finish(running.popleft(), counts, unexpected)
                if done % checkpoint == 0:
                    rss.append((done, rss_mib()))
            took = time.monotonic() - started
        finally:
            canceller.stop()
            cancel_thread.join()
            t = time.monotonic()
            golem.close()
            close_sec = time.monotonic() - t
            peak = sampler.stop()
            allocation_log.removeHandler(renewals)
            allocation_log.setLevel(level)
    first = rss[0] if rss else (0, rss_mib())
    last = rss[-1] if rss else first
    return {
        "jobs": jobs, "in_flight": in_flight, "seconds": round(took, 1), "jobs_per_sec": round(jobs / took, 2),
        "outcomes": {kind: dict(c) for kind, c in counts.items()}, "unexpected": unexpected,
        "rss_first_mib": round(first[1], 1), "rss_end_mib": round(last[1], 1),
        "rss_growth_mib": round(last[1] - first[1], 1), "rss_measured_from_job": first[0],
        "peak_threads": peak, "threads_after_close": golem_threads(), "close_sec": round(close_sec, 2),
        "allocation_renewals": renewals.count, "left_in_yagna": leftovers(info.api_url, info.app_key),
    }


def _finish(entry: Tuple[str, Any], counts: Dict[str, collections.Counter], unexpected: List[str]) -> int:
    kind, job = entry
    try:
        job.future.exception(timeout=300)
    except Exception as exc:  # the future itself timed out: that is a hang
        unexpected.append(f"{kind} {job.id}: did not end in 300 s ({type(exc).__name__})")
        counts[kind]["hung"] += 1
        return 1
    result = outcome(kind, job)
    counts[kind]["unexpected" if result.startswith("unexpected") else result] += 1
    if result.startswith("unexpected"):
        unexpected.append(f"{kind} {job.id}: {result}")
    return 1


def cancel_under_load(info: Any, *, in_flight: int, api_url: Optional[str] = None) -> Dict[str, Any]:
    """Start ``in_flight`` jobs at once (half run ``sleep``, half wait in the market), cancel them all;
    seconds from each ``request_cancel`` to the job's ``ended``."""
    url = api_url or info.api_url
    ended: Dict[str, float] = {}
    lock = threading.Lock()

    def on_ended(sender: Any, **kw: Any) -> None:
        with lock:
            ended.setdefault(sender.id, time.monotonic())

    signals.job_ended.connect(on_ended)
    golem = network_for(info, url, max_workers=in_flight).init()
    try:
        running = threading.Semaphore(0)
        jobs = []
        for i in range(in_flight):
            if i % 2:
                job = golem.create_job(market={"max_cpu_per_sec": 1e-15})
                job.start_work(lambda ctx: ctx.run("echo never"))
                running.release()
            else:
                job = golem.create_job()

                def worker(ctx: Any) -> Any:
                    proc = ctx.spawn("echo go; sleep 120")
                    next(iter(proc.stdout))
                    running.release()
                    return proc.wait()

                job.start_work(worker)
            jobs.append(job)
        deadline = time.monotonic() + 300
        reached = 0
        while reached < in_flight and running.acquire(timeout=max(0.0, deadline - time.monotonic())):
            reached += 1
        requested: Dict[str, float] = {}
        for job in jobs:
            requested[job.id] = time.monotonic()
            job.request_cancel("soak: cancel under load")
        for job in jobs:
            job.future.exception(timeout=120)
        waits = sorted(ended[j.id] - requested[j.id] for j in jobs if j.id in ended)
        states = collections.Counter(str(j.state) for j in jobs)
    finally:
        golem.close()
        signals.job_ended.disconnect(on_ended)
    return {"in_flight": in_flight, "running_when_cancelled": reached, "states": dict(states),
            "cancel_p50_sec": round(statistics.median(waits), 3),
            "cancel_p99_sec": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 3),
            "cancel_max_sec": round(waits[-1], 3), "left_in_yagna": leftovers(info.api_url, info.app_key)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--cancel-in-flight", type=int, default=300)
    parser.add_argument("--fault-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--allocation-sec", type=int, default=120)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: Dict[str, Any] = {"command": " ".join(["python", "bench/soak.py", *sys.argv[1:]])}
    with devnet_info("process") as info:
        with faults(info, args.fault_rate, args.seed) as url:
            report["soak"] = soak(info, jobs=args.jobs, in_flight=args.in_flight, seed=args.seed, api_url=url,
                                  allocation_sec=args.allocation_sec,
                                  progress=lambda line: print(line, file=sys.stderr, flush=True))
        if args.cancel_in_flight:
            report["cancel"] = cancel_under_load(info, in_flight=args.cancel_in_flight)
    print(json.dumps(report, indent=None if args.json else 2))
    soak_report = report["soak"]
    clean = not any(soak_report["left_in_yagna"].values()) and not any(
        report.get("cancel", {}).get("left_in_yagna", {}).values())
    sys.exit(0 if clean and not soak_report["unexpected"] else 1)


if __name__ == "__main__":
    main()
