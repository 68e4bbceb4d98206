"""Job latency on the devnet: golem_sync phase by phase against the raw REST sequence.

    python bench/job_latency.py [--runs 5] [--concurrent 50]

Prints medians of: (1) one `echo` job done with plain `requests` (the floor: yagna's own work),
(2) the same job through golem_sync, phase by phase from its signals, (3) N concurrent jobs: wall time,
threads, CPU seconds of this process while it only waited, peak RSS, and (4) cancel -> ended latency in
each phase. Everything runs against a fresh devnet on loopback; nothing here is a test.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import threading
import time
from typing import Any, Dict, List

import requests

from golem_sync import GolemNetwork, signals
from golem_sync.devnet.launcher import Devnet


def raw_job(info: Any, execs: int = 1) -> Dict[str, float]:
    """The echo job with plain requests (``execs`` echo batches on its one activity); seconds per phase."""
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {info.app_key}"
    api = info.api_url
    phases: Dict[str, float] = {}
    t = time.monotonic()

    def mark(name: str) -> None:
        nonlocal t
        now = time.monotonic()
        phases[name] = now - t
        t = now

    started = time.monotonic()
    platform = info.payment_platform
    alloc = s.post(f"{api}/payment-api/v1/allocations", json={
        "address": info.requestor_id, "paymentPlatform": platform, "totalAmount": "1",
        "makeDeposit": False}).json()
    deco = s.get(f"{api}/payment-api/v1/demandDecorations", params={"allocationIds": alloc["allocationId"]}).json()
    mark("allocation")
    reg = requests.get(f"{info.registry_url}/v1/image/info", params={"tag": "golem/alpine:latest", "count": "true"}).json()
    props = {p["key"]: p["value"] for p in deco["properties"]}
    props.update({"golem.srv.comp.task_package": f"hash:sha3:{reg['sha3']}:{reg['http']}",
                  "golem.srv.comp.vm.package_format": "gvmkit-squash",
                  "golem.srv.comp.expiration": int((time.time() + 1800) * 1000),
                  "golem.node.debug.subnet": info.subnet, "golem.srv.caps.multi-activity": True})
    cons = "(&" + "".join(f"\n\t{c}" for c in [*deco["constraints"], f"(golem.node.debug.subnet={info.subnet})"]) + ")"
    demand = {"properties": props, "constraints": cons}
    demand_id = s.post(f"{api}/market-api/v1/demands", json=demand).json()
    draft = None
    countered = False
    while draft is None:
        for ev in s.get(f"{api}/market-api/v1/demands/{demand_id}/events", params={"timeout": 5, "maxEvents": 10}).json():
            p = ev.get("proposal")
            if not p:
                continue
            if p["state"] == "Initial" and not countered:
                if "proposal" not in phases:
                    mark("proposal")
                counter = dict(demand, properties=dict(props, **{"golem.com.payment.chosen-platform": platform}))
                s.post(f"{api}/market-api/v1/demands/{demand_id}/proposals/{p['proposalId']}", json=counter)
                countered = True
            elif p["state"] == "Draft":
                draft = p
                break
    valid_to = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    agreement_id = s.post(f"{api}/market-api/v1/agreements", json={"proposalId": draft["proposalId"], "validTo": valid_to}).json()
    s.post(f"{api}/market-api/v1/agreements/{agreement_id}/confirm")
    s.post(f"{api}/market-api/v1/agreements/{agreement_id}/wait", params={"timeout": 10})
    s.delete(f"{api}/market-api/v1/demands/{demand_id}")
    mark("agreement")
    created = s.post(f"{api}/activity-api/v1/activity", json={"agreementId": agreement_id}, params={"timeout": 30}).json()
    activity_id = created if isinstance(created, str) else created["activityId"]
    mark("activity")

    def run(script: List[Any]) -> Any:
        batch = s.post(f"{api}/activity-api/v1/activity/{activity_id}/exec", json={"text": json.dumps(script)}).json()
        while True:
            r = s.get(f"{api}/activity-api/v1/activity/{activity_id}/exec/{batch}", params={"timeout": 5})
            if r.status_code == 200 and r.json() and r.json()[-1]["isBatchFinished"]:
                return r.json()

    run([{"deploy": {}}, {"start": {}}])
    mark("deploy")
    for _ in range(execs):
        run([{"run": {"entry_point": "/bin/sh", "args": ["-c", "echo hi"],
                      "capture": {"stdout": {"atEnd": {"format": "str"}}}}}])
    mark("exec")
    s.delete(f"{api}/activity-api/v1/activity/{activity_id}", params={"timeout": 10})
    mark("destroy")
    s.post(f"{api}/market-api/v1/agreements/{agreement_id}/terminate",
           json={"message": "Finished", "golem.requestor.code": "Success"})
    mark("terminate")
    phases["job"] = time.monotonic() - started
    after = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    while True:
        events = s.get(f"{api}/payment-api/v1/invoiceEvents", params={"timeout": 5, "afterTimestamp": after}).json()
        mine = [e for e in events if e.get("eventType") == "InvoiceReceivedEvent"]
        invoices = [s.get(f"{api}/payment-api/v1/invoices/{e['invoiceId']}").json() for e in mine]
        invoice = next((i for i in invoices if i["agreementId"] == agreement_id), None)
        if invoice:
            s.post(f"{api}/payment-api/v1/invoices/{invoice['invoiceId']}/accept",
                   json={"totalAmountAccepted": invoice["amount"], "allocationId": alloc["allocationId"]})
            break
    mark("invoice")
    s.delete(f"{api}/payment-api/v1/allocations/{alloc['allocationId']}")
    mark("release")
    phases["total"] = time.monotonic() - started
    return phases


def network_for(info: Any, **kw: Any) -> GolemNetwork:
    return GolemNetwork(yagna={"api_url": info.api_url, "app_key": info.app_key},
                        payment={"network": info.payment_network}, market={"subnet_tag": info.subnet},
                        package={"image_tag": "golem/alpine:latest", "registry_url": info.registry_url}, **kw)


def golem_job(info: Any) -> Dict[str, float]:
    """The same job through golem_sync; phase ends are read from signals."""
    stamps: Dict[str, float] = {}
    order = [("allocation", signals.allocation_created), ("proposal", signals.proposal_received),
             ("agreement", signals.agreement_approved), ("activity", signals.activity_created),
             ("deploy", signals.activity_ready), ("exec", signals.job_succeeded),
             ("destroy", signals.activity_destroyed), ("terminate", signals.job_ended)]
    receivers = []
    for name, sig in order:
        def rec(sender: Any, _n: str = name, **kw: Any) -> None:
            stamps.setdefault(_n, time.monotonic())
        sig.connect(rec, weak=False)
        receivers.append((sig, rec))
    try:
        start = time.monotonic()
        net = network_for(info).init()
        job = net.create_job()
        job.start_work(lambda ctx: ctx.run("echo hi").stdout)
        job.wait_for_result(timeout=60)
        job_end = time.monotonic()
        net.close()
        end = time.monotonic()
    finally:
        for sig, rec in receivers:
            sig.disconnect(rec)
    phases: Dict[str, float] = {}
    previous = start
    for name, _ in order:
        phases[name] = stamps[name] - previous
        previous = stamps[name]
    phases["job"] = job_end - start
    phases["close"] = end - job_end
    phases["total"] = end - start
    return phases


def concurrent_jobs(info: Any, n: int) -> Dict[str, float]:
    net = network_for(info, max_workers=n).init()
    release = threading.Event()
    started = threading.Semaphore(0)

    def worker(ctx: Any) -> str:
        started.release()
        release.wait(60)  # hold every job's provider while we measure the idle cost
        return ctx.run("echo hi").stdout

    t0 = time.monotonic()
    jobs = [net.create_job() for _ in range(n)]
    for job in jobs:
        job.start_work(worker)
    for _ in range(n):
        started.acquire(timeout=120)
    ready = time.monotonic() - t0
    threads = threading.active_count()
    cpu0 = time.process_time()
    time.sleep(5.0)
    idle_cpu = time.process_time() - cpu0
    release.set()
    for job in jobs:
        job.wait_for_result(timeout=120)
    wall = time.monotonic() - t0
    net.close()
    return {"jobs": n, "all_started_s": ready, "wall_s": wall, "threads": threads,
            "cpu_s_per_5s_idle": idle_cpu, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cancel_latency(info: Any) -> Dict[str, float]:
    out: Dict[str, float] = {}
    net = network_for(info).init()
    try:
        job = net.create_job(market={"denied_name_regex": ".*"})
        job.start_work(lambda ctx: None)
        time.sleep(1)
        t = time.monotonic()
        job.cancel(timeout=30)
        out["waiting_for_offers"] = time.monotonic() - t
        running = threading.Event()
        job = net.create_job()
        job.start_work(lambda ctx: (running.set(), ctx.run("sleep 30")))
        running.wait(60)
        time.sleep(0.5)
        t = time.monotonic()
        job.cancel(timeout=30)
        out["inside_batch(incl. destroy)"] = time.monotonic() - t
    finally:
        net.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args()
    with Devnet(providers=2) as devnet:
        info = devnet.info
        raw = [raw_job(info) for _ in range(args.runs)]
        ours = [golem_job(info) for _ in range(args.runs)]
        print(f"{'phase':<12}{'raw (s)':>10}{'golem_sync (s)':>16}")
        for key in ["allocation", "proposal", "agreement", "activity", "deploy", "exec", "destroy",
                    "terminate", "job", "invoice", "close", "release", "total"]:
            rv = statistics.median([p[key] for p in raw]) if all(key in p for p in raw) else float("nan")
            ov = statistics.median([p[key] for p in ours]) if all(key in p for p in ours) else float("nan")
            print(f"{key:<12}{rv:>10.3f}{ov:>16.3f}")
        print("cancel -> ended:", {k: round(v, 3) for k, v in cancel_latency(info).items()})
        print("concurrent:", {k: round(v, 3) for k, v in concurrent_jobs(info, args.concurrent).items()})


if __name__ == "__main__":
    main()
