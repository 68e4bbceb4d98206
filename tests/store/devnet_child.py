"""Another requestor process on the devnet sharing a SQLite job store with the test.

``python devnet_child.py DB ACTION`` with the devnet's settings as JSON in ``GOLEM_TEST_DEVNET``.
Prints, flushed: the job id, ``working`` once the worker runs on the provider, then the outcome as
JSON. Actions: ``echo`` (a job that waits for a go-ahead on stdin, then echoes) and ``sleep``
(a job that sleeps 120 s: to be cancelled from the test, or killed).
"""
from __future__ import annotations

import json
import os
import sys
import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "devnet"))

from test_job_api import make_network  # noqa: E402

from golem_sync.store import SQLiteJobStore  # noqa: E402


def main() -> None:
    db, action = sys.argv[1:3]
    info = types.SimpleNamespace(**json.loads(os.environ["GOLEM_TEST_DEVNET"]))
    store = SQLiteJobStore(db)
    network = make_network(info, job_store=store, max_workers=2).init()
    try:
        job = network.create_job()
        print(job.id, flush=True)

        def worker(ctx):  # type: ignore[no-untyped-def]
            ctx.run("true")
            print("working", flush=True)
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
