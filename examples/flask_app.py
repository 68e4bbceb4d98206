"""A Flask backend on the Job API with a durable job store, ready for several gunicorn workers,
and a small live page of the store's jobs at ``/``.

Every worker process opens the same SQLite job store, so any worker can report on, wait for or
cancel a job another worker started, and a restarted server still knows its jobs (those that were
running when a worker died are recovered as ``rejected``/interrupted, their agreements ended).

    pip install flask gunicorn
    python -m golem_sync.devnet run -- \\
        gunicorn -w 4 --timeout 120 -b 127.0.0.1:5000 --chdir examples flask_app:app

    open http://127.0.0.1:5000/                               -> the live job page
    curl -X POST localhost:5000/jobs -d 'cmd=echo hi'        -> {"id": "...", "worker": 1234}
    curl -X POST localhost:5000/jobs -d 'kind=demo'          -> a 10-step job that reports progress
    curl localhost:5000/jobs/<id>                             -> {"id": ..., "state": "pending", ...}
    curl 'localhost:5000/jobs/<id>/result?timeout=30'         -> {"state": "done", "result": "hi\\n", ...}
    curl -X POST localhost:5000/jobs/<id>/cancel              -> {"state": "cancelled", ...}
    curl localhost:5000/api/jobs                              -> every job in the store, for the page

The page (``templates/jobs.html``: plain HTML and a little JavaScript, no build step) polls
``/api/jobs`` once a second rather than holding a server-sent-events stream open: gunicorn's sync
workers serve one request at a time, so each open page's stream would take a worker for as long as
the page is open (four tabs would stall a four-worker server, and ``--timeout`` kills a worker whose
request runs on). A poll is one short store query that any worker answers, since the state and
progress of every job are in the shared store (progress is written at most every 0.2 s anyway).

Costs are not in the store: the worker that ran a job knows its estimate and the amount it accepted
(``golem.cost_summary()``); another worker's answer has none, and the page keeps the last it saw.

An example, not a product: it has no authentication, and anyone who reaches it runs commands on
providers at your expense. Keep it on loopback.

``GOLEM_JOB_STORE`` names the SQLite file (default ``jobs.db``), or is a ``postgresql://`` URL for
workers on several machines (``pip install 'psycopg[binary]'``).
"""
import atexit
import json
import os
import threading

from flask import Flask, abort, jsonify, render_template, request

from golem_sync import GolemError, GolemNetwork, GolemTimeoutError, GolemUserError
from golem_sync.store import open_store

app = Flask(__name__)

POLL_MS = 1000  # how often the page asks for the job list
LISTED = 50  # the newest jobs the page shows
SHOWN_CHARS = 2000  # of a job's result or error

_lock = threading.Lock()
_golem = None
_store = None


def golem():
    """This worker process's network (and its store), created on first use: after gunicorn forked the worker."""
    global _golem, _store
    with _lock:
        if _golem is None:
            _store = open_store(os.environ.get("GOLEM_JOB_STORE", "jobs.db"))
            atexit.register(_store.close)  # atexit runs last-registered first: the network closes first
            _golem = GolemNetwork(job_store=_store, package={"image_tag": "golem/alpine:latest"}).init()
            atexit.register(_golem.close)  # gunicorn workers exit normally on SIGTERM
        return _golem


def store():
    golem()
    return _store


def _job_or_404(job_id):
    job = golem().get_job_by_id(job_id)
    if job is None:
        abort(404, description=f"no job {job_id}")
    return job


def _describe(job, **extra):
    error = job.error
    return jsonify(id=job.id, state=str(job.state), error=str(error) if error else None, worker=os.getpid(),
                   **extra)


def demo(ctx, steps=10):
    """A job that shows its progress: ``steps`` one-second steps, each reported before it runs."""
    for i in range(steps):
        ctx.report_progress(i / steps, f"step {i + 1} of {steps}", step=i + 1, of=steps)
        ctx.run("sleep 1")
    ctx.report_progress(1.0, "finished", step=steps, of=steps)
    return f"{steps} steps done"


@app.post("/jobs")
def start_job():
    job = golem().create_job()
    if request.form.get("kind") == "demo":
        steps = min(max(int(request.form.get("steps", 10)), 1), 100)
        job.start_work(lambda ctx: demo(ctx, steps))
    else:
        cmd = request.form.get("cmd", "echo 'Hello, Golem!'")
        job.start_work(lambda ctx: ctx.run(cmd).stdout)  # a str: JSON-serialisable, so the store keeps it
    return jsonify(id=job.id, worker=os.getpid()), 202


@app.get("/jobs/<job_id>")
def job_state(job_id):
    return _describe(_job_or_404(job_id))


@app.get("/jobs/<job_id>/result")
def job_result(job_id):
    job = _job_or_404(job_id)
    timeout = min(float(request.args.get("timeout", 30)), 100)  # below gunicorn's worker timeout
    try:
        result = job.wait_for_result(timeout=timeout)
    except GolemTimeoutError as exc:
        if exc.phase == "wait":
            return _describe(job), 202  # our wait ran out; the job goes on
        return _describe(job), 200  # the job's own time limit: it failed
    except GolemUserError as exc:
        return jsonify(id=job.id, state=str(job.state), error=str(exc), worker=os.getpid()), 409
    except Exception:
        return _describe(job), 200  # the job failed or was cancelled: its error is in the answer
    return _describe(job, result=result)


@app.post("/jobs/<job_id>/cancel")
def cancel_job(job_id):
    job = _job_or_404(job_id)
    try:
        job.cancel(timeout=60)
    except GolemUserError as exc:  # not running (any more)
        return jsonify(id=job.id, state=str(job.state), error=str(exc), worker=os.getpid()), 409
    except GolemError as exc:
        return jsonify(id=job.id, state=str(job.state), error=str(exc), worker=os.getpid()), 500
    return _describe(job)


# -- the live page ---------------------------------------------------------------------------------


@app.get("/")
def page():
    return render_template("jobs.html", poll_ms=POLL_MS)


def _costs():
    """job id -> {"estimated", "accepted"} for the jobs this worker ran (the store has no costs)."""
    costs = {}
    for row in golem().cost_summary().rows:
        cost = costs.setdefault(row.job_id, {"estimated": 0.0, "accepted": None})
        cost["estimated"] += row.estimated
        if row.accepted is not None:
            cost["accepted"] = (cost["accepted"] or 0.0) + float(row.accepted)
    return costs


def _shown(text):
    return text if text is None or len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _result_text(record):
    if record.state != "done" or record.result is None:
        return None
    try:
        value = store().serializer.loads(record.result)
    except Exception:  # written by a serializer this worker lacks
        return record.result
    return value if isinstance(value, str) else json.dumps(value)


@app.get("/api/jobs")
def list_jobs():
    """The newest jobs in the store with state, progress, provider and (where this worker knows it) cost."""
    costs = _costs()
    jobs = []
    for record in store().list_jobs(limit=LISTED):
        progress = record.read_progress()
        jobs.append({
            "id": record.job_id, "state": record.state, "provider": record.provider,
            "created_at": record.created_at, "ended_at": record.ended_at,
            "owner": record.owner,
            "progress": progress.as_dict() if progress is not None else None,
            "cost": costs.get(record.job_id),  # None: run by another process, or no agreement yet
            "error": _shown(record.error), "result": _shown(_result_text(record)),
        })
    return jsonify(jobs=jobs, worker=os.getpid())
