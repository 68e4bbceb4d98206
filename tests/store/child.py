"""A second process for the cross-process store tests: ``python child.py KIND LOCATION TABLE ACTION [JOB_ID]``.

Actions (each prints one line per step, flushed, so the test can follow along):
- ``hold``: create a pending job owned by this process, print its id, then block until killed.
- ``wait``: print ``waiting``, then wait for the job's result through a StoredJob and print it.
- ``run-until-cancelled``: own a pending job; on a cancel request (store notification) mark it
  cancelled, as a GolemNetwork does; print ``cancelled <seconds from request to reaction>``.
- ``report-progress``: own a pending job, report progress 1..5 every 0.3 s (each one written), then
  wait for a line on stdin and end it ``done`` with a final progress 6 (as a GolemNetwork does).
- ``progress-until-cancelled``: own a pending job, report progress every 0.05 s (rate-limited by the
  store) until a cancel request arrives, then end it ``cancelled`` with its last progress.
"""
from __future__ import annotations

import json
import sys
import threading
import time

from golem_sync.store import Progress, SQLiteJobStore, StoredJob


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
    elif action == "report-progress":
        job_id = sys.argv[5]
        store.create(job_id, state="pending")
        print("running", flush=True)
        for seq in range(1, 6):
            store.set_progress(job_id, Progress.create(seq / 6, f"step {seq}", {"seq": seq}, seq=seq))
            time.sleep(0.3)
        sys.stdin.readline()
        final = Progress.create(1.0, "finished", seq=6)
        store.update(job_id, state="done", result=store.serializer.dumps("ok"), progress=final.to_json())
        print("done", flush=True)
    elif action == "progress-until-cancelled":
        job_id = sys.argv[5]
        store.create(job_id, state="pending")
        cancelled = threading.Event()

        def on_cancel(changed: str) -> None:
            record = store.get(changed)
            if changed == job_id and record is not None and record.cancel_reason:
                cancelled.set()

        store.add_listener(on_cancel)
        print("running", flush=True)
        seq = 0
        while not cancelled.wait(0.05) and seq < 1200:
            seq += 1
            store.set_progress(job_id, Progress.create(None, f"tick {seq}", seq=seq))
        record = store.get(job_id)
        store.update(job_id, state="cancelled", error_type="GolemCancelledError",
                     error=record.cancel_reason if record else "?",
                     progress=Progress.create(None, f"cancelled at tick {seq}", seq=seq + 1).to_json())
        print("cancelled", flush=True)
    store.close()


if __name__ == "__main__":
    main()
