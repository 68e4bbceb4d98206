"""Another requestor process on the devnet sharing a job store (SQLite or PostgreSQL) with the test.

``python devnet_child.py KIND LOCATION TABLE ACTION`` (KIND ``sqlite`` or ``postgres``) with the
devnet's settings as JSON in ``GOLEM_TEST_DEVNET``.
Prints, flushed: the job id, ``working`` once the worker runs on the provider, then the outcome as
JSON. Actions: ``echo`` (a job that waits for a go-ahead on stdin, then echoes), ``sleep``
(a job that sleeps 120 s: to be cancelled from the test, or killed) and ``progress`` (a job that
reports progress in a tight loop of 500 calls, then once per 0.5 s step on the provider for 120
steps: to be cancelled from the test).
"""
from __future__ import annotations

import json
import os
import sys
import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "devnet"))
sys.path.insert(0, os.path.dirname(__file__))

from test_job_api import make_network  # noqa: E402

from child import open_store  # noqa: E402


def main() -> None:
    kind, location, table, action = sys.argv[1:5]
    info = types.SimpleNamespace(**json.loads(os.environ["GOLEM_TEST_DEVNET"]))
    store = open_store(kind, location, table)
    network = make_network(info, job_store=store, max_workers=2).init()
    try:
        job = network.create_job()
        print(job.id, flush=True)

        def worker(ctx):  # type: ignore[no-untyped-def]
            ctx.run("true")
            print("working", flush=True)
            if action == "progress":
                for i in range(500):  # a tight loop: the store sees a handful of writes, not 500
                    ctx.report_progress(None, "warming up", i=i)
                for step in range(1, 121):
                    ctx.report_progress(step / 120, f"step {step}", step=step, on=ctx.provider_name)
                    ctx.run("sleep 0.5")
                return "all steps"
            if action == "echo":
                sys.stdin.readline()  # the test reads the job's state from its side meanwhile
                return ctx.run("echo from-the-other-process").stdout
            return ctx.run("sleep 120").stdout

        job.start_work(worker)
        try:
            print(json.dumps({"result": job.wait_for_result(timeout=180), "state": str(job.state)}), flush=True)
        except Exception as exc:
            print(json.dumps({"error": type(exc).__name__, "text": str(exc), "state": str(job.state)}), flush=True)
    finally:
        network.close()
        store.close()


if __name__ == "__main__":
    main()
