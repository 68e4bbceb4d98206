"""A Flask backend on the Job API: POST starts a job, GET reads its state, GET .../result waits.

    pip install flask
    python -m golem_sync.devnet run -- flask --app examples/flask_app.py run

    curl -X POST localhost:5000/jobs -d 'cmd=echo hi'        -> {"id": "..."}
    curl localhost:5000/jobs/<id>                             -> {"id": ..., "state": "pending"}
    curl 'localhost:5000/jobs/<id>/result?timeout=30'         -> {"state": "done", "result": "hi\\n"}
"""
import atexit

from flask import Flask, abort, jsonify, request

from golem_sync import GolemNetwork

app = Flask(__name__)
golem = GolemNetwork(package={"image_tag": "golem/alpine:latest"}).init()
atexit.register(golem.close)


def _job_or_404(job_id):
    job = golem.get_job_by_id(job_id)
    if job is None:
        abort(404, description=f"no job {job_id}")
    return job


@app.post("/jobs")
def start_job():
    cmd = request.form.get("cmd", "echo 'Hello, Golem!'")
    job = golem.create_job()
    job.start_work(lambda ctx: ctx.run(cmd).stdout)
    return jsonify(id=job.id), 202


@app.get("/jobs/<job_id>")
def job_state(job_id):
    job = _job_or_404(job_id)
    return jsonify(id=job.id, state=str(job.state), error=str(job.error) if job.error else None)


@app.get("/jobs/<job_id>/result")
def job_result(job_id):
    job = _job_or_404(job_id)
    timeout = min(float(request.args.get("timeout", 30)), 300)
    try:
        result = job.wait_for_result(timeout=timeout)
    except Exception as exc:
        if not job.done():  # our wait ran out; the job goes on
            return jsonify(id=job.id, state=str(job.state)), 202
        return jsonify(id=job.id, state=str(job.state), error=str(exc)), 200
    return jsonify(id=job.id, state=str(job.state), result=result)
