"""One job against a hostile provider, in a process of its own (for test_hostile_output_devnet.py).

The devnet's providers and exe-units run in the test process, so the requestor's memory is
measured here, alone: ``python hostile_child.py '<json config>'`` runs ``scenario`` on
``provider`` and prints one JSON line: the worker's value or the job's error (type and message),
the growth of this process's peak RSS while the job ran (``peak_growth_mb``; the peak is reset
through ``/proc/self/clear_refs`` first), and the ids the parent needs for the yagna audit.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List

from golem_sync import GolemNetwork, signals

#: A line without an end: 100 kB pieces, ~10 MB/s, until the command timeout.
ENDLESS_LINE = "while :; do printf '%0100000d' 0; sleep 0.01; done"
#: Names a provider's "result file list" may hold to reach outside the chosen directory.
TRICKY_NAMES = ["../evil", "/abs/evil", "..", ".", "sub\\..\\..\\evil", "C:\\evil", "link", "ok.txt"]


def _kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS


def head_flood(ctx: Any) -> Dict[str, Any]:
    r = ctx.run("head -c 100000000 /dev/zero | tr '\\0' a; echo END")
    return {"truncated": r.truncated, "len": len(r.stdout), "tail": r.stdout[-5:]}


def run_true(ctx: Any) -> Dict[str, Any]:
    r = ctx.run("true")
    return {"truncated": r.truncated, "len": len(r.stdout_text)}


def spawn_true(ctx: Any) -> Dict[str, Any]:
    proc = ctx.spawn("true")
    return {"code": proc.wait(60)}


def endless_line_spawn(ctx: Any) -> Dict[str, Any]:
    proc = ctx.spawn(ENDLESS_LINE, timeout=6)
    pieces = 0
    longest = 0
    try:
        for line in proc.stdout:
            pieces += 1
            longest = max(longest, len(line))
    except Exception as exc:
        return {"error": type(exc).__name__, "pieces": pieces, "longest": longest,
                "split": proc.stdout.split_lines, "max_line": proc.stdout.max_line}
    return {"pieces": pieces}


def endless_line_run(ctx: Any) -> Dict[str, Any]:
    ctx.run(ENDLESS_LINE, timeout=5)
    return {}


def invalid_utf8(ctx: Any) -> Dict[str, Any]:
    r = ctx.run("printf 'ok\\377\\376'")
    lines = list(ctx.spawn("printf 'ok\\377\\376\\n'").stdout)
    return {"stdout": r.stdout if isinstance(r.stdout, str) else list(r.stdout), "text": r.stdout_text,
            "bytes": isinstance(r.stdout, bytes), "stream": lines}


def echo(ctx: Any) -> Dict[str, Any]:
    return {"stdout": ctx.run("echo hi").stdout}


def result_file_list(ctx: Any, out_dir: str) -> Dict[str, Any]:
    """Download every name a provider lists into ``out_dir``, as a user building paths from stdout would."""
    from golem_sync import GolemConfigError, GolemWorkError

    listed = ctx.run("cd /golem/output && echo fine > ok.txt && ln -sf /etc/hostname link && printf '%s\\n' "
                     + " ".join("'" + n.replace("'", "'\\''") + "'" for n in TRICKY_NAMES)).stdout.splitlines()
    outcome: Dict[str, str] = {}
    for name in listed:
        try:
            written = ctx.download_file(f"/golem/output/{name}", out_dir).data
            outcome[name] = f"written {Path(written).relative_to(out_dir)}"
        except GolemConfigError as exc:
            outcome[name] = f"refused: {exc}"
        except GolemWorkError as exc:
            outcome[name] = f"failed: {exc}"
    return outcome


SCENARIOS: Dict[str, Callable[..., Any]] = {
    "head_flood": head_flood, "run_true": run_true, "spawn_true": spawn_true,
    "endless_line_spawn": endless_line_spawn, "endless_line_run": endless_line_run,
    "invalid_utf8": invalid_utf8, "echo": echo, "result_file_list": result_file_list,
}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    ids: Dict[str, List[str]] = {"agreement_created": [], "agreement_approved": [], "activity_created": [],
                                 "activity_destroyed": []}
    lock = threading.Lock()
    keys = {"agreement_created": "agreement_id", "agreement_approved": "agreement_id",
            "activity_created": "activity_id", "activity_destroyed": "activity_id"}
    receivers = []
    for name, key in keys.items():
        def receiver(sender: Any, _name: str = name, _key: str = key, **kw: Any) -> None:
            with lock:
                ids[_name].append(kw[_key])
        getattr(signals, name).connect(receiver, weak=False)
        receivers.append(receiver)
    golem = GolemNetwork(
        yagna={"api_url": cfg["api_url"], "app_key": cfg["app_key"]},
        payment={"network": cfg["payment_network"], "invoice_wait_sec": 20},
        market={"subnet_tag": cfg["subnet"], "allowed_provider_names": [cfg["provider"]]},
        package={"image_tag": "golem/alpine:latest", "registry_url": cfg["registry_url"]},
        work=cfg.get("work", {}),
    ).init()
    out: Dict[str, Any] = {}
    try:
        worker = SCENARIOS[cfg["scenario"]]
        args = cfg.get("args", [])
        baseline = _kb("VmRSS")
        _reset_peak()
        job = golem.create_job()
        job.start_work(lambda ctx: worker(ctx, *args))
        try:
            out["value"] = job.wait_for_result(timeout=cfg.get("timeout", 120))
        except Exception as exc:
            out["error"] = type(exc).__name__
            out["message"] = str(exc)[:2000]
        out["state"] = job.state.value
        out["peak_growth_mb"] = (_kb("VmHWM") - baseline) / 1024
    finally:
        golem.close()
    out["threads"] = [t.name for t in threading.enumerate() if t.name.startswith("golem-")]
    out["ids"] = ids
    out["allocation_id"] = golem.allocation_id
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)  # nothing of golem_sync's is left to finish (close() returned)


if __name__ == "__main__":
    main()
