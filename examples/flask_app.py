"""A Flask backend on the Job API with a durable job store, ready for several gunicorn workers.

Every worker process opens the same SQLite job store, so any worker can report on, wait for or
cancel a job another worker started, and a restarted server still knows its jobs (those that were
running when a worker died are recovered as ``rejected``/interrupted, their agreements ended).

    pip install flask gunicorn
    python -m golem_sync.devnet run -- \\
        gunicorn -w 4 --timeout 120 -b 127.0.0.1:5000 --chdir examples flask_app:app

    curl -X POST localhost:5000/jobs -d 'cmd=echo hi'        -> {"id": "...", "worker": 1234}
    curl localhost:5000/jobs/<id>                             -> {"id": ..., "state": "pending", ...}
    curl 'localhost:5000/jobs/<id>/result?timeout=30'         -> {"state": "done", "result": "hi\\n", ...}
    curl -X POST localhost:5000/jobs/<id>/cancel              -> {"state": "cancelled", ...}

``GOLEM_JOB_STORE`` names the SQLite file (default ``jobs.db``), or is a ``postgresql://`` URL for
workers on several machines (``pip install 'psycopg[binary]'``).
"""
import atexit
import os
import threading

from flask import Flask, abort, jsonify, request

from golem_sync import GolemError, GolemNetwork, GolemTimeoutError, GolemUserError

app = Flask(__name__)

_lock = threading.Lock()
_golem = None


def golem():
    """This worker process's network, created on first use: after gunicorn forked the worker."""
    global _golem
    with _lock:
        if _golem is None:
            _golem = GolemNetwork(job_store=os.environ.get("GOLEM_JOB_STORE", "jobs.db"),
                                  package={"image_tag": "golem/alpine:latest"}).init()
            atexit.register(_golem.close)  # gunicorn workers exit normally on SIGTERM
        return _golem


def _job_or_404(job_id):
    job = golem().get_job_by_id(job_id)
    if job is None:
        abort(404, description=f"no job {job_id}")
    return job


def _describe(job, **extra):
    error = job.error
    return jsonify(id=job.id, state=str(job.state), error=str(error) if error else None, worker=os.getpid(),
                   **extra)


@app.post("/jobs")
def start_job():
    cmd = request.form.get("cmd", "echo 'Hello, Golem!'")
    job = golem().create_job()
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
