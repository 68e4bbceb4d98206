"""A second process for the cross-process store tests: ``python child.py KIND LOCATION TABLE ACTION [JOB_ID]``.

Actions (each prints one line per step, flushed, so the test can follow along):
- ``hold``: create a pending job owned by this process, print its id, then block until killed.
- ``wait``: print ``waiting``, then wait for the job's result through a StoredJob and print it.
- ``run-until-cancelled``: own a pending job; on a cancel request (store notification) mark it
  cancelled, as a GolemNetwork does; print ``cancelled <seconds from request to reaction>``.
"""
from __future__ import annotations

import json
import sys
import threading
import time

from golem_sync.store import SQLiteJobStore, StoredJob


def open_store(kind: str, location: str, table: str):  # type: ignore[no-untyped-def]
    if kind == "sqlite":
        return SQLiteJobStore(location, table=table)
    from golem_sync.store import PostgresJobStore

    return PostgresJobStore(location, table=table)


def main() -> None:
    kind, location, table, action = sys.argv[1:5]
    store = open_store(kind, location, table)
    if action == "hold":
        record = store.create(sys.argv[5], state="pending")
        print(record.job_id, flush=True)
        threading.Event().wait(120)
    elif action == "wait":
        handle = StoredJob(store, sys.argv[5])
        print("waiting", flush=True)
        started = time.monotonic()
        try:
            result = handle.wait_for_result(timeout=30)
            print(json.dumps({"result": result, "waited": time.monotonic() - started}), flush=True)
        except Exception as exc:
            print(json.dumps({"error": type(exc).__name__, "text": str(exc)}), flush=True)
    elif action == "run-until-cancelled":
        job_id = sys.argv[5]
        store.create(job_id, state="pending")
        done = threading.Event()

        def on_change(changed: str) -> None:
            record = store.get(changed)
            if changed == job_id and record is not None and record.cancel_reason and not done.is_set():
                store.update(job_id, state="cancelled", error_type="GolemCancelledError", error=record.cancel_reason)
                done.set()

        store.add_listener(on_change)
        print("running", flush=True)
        print("cancelled" if done.wait(30) else "timeout", flush=True)
    store.close()


if __name__ == "__main__":
    main()
