"""The Flask and Django examples under gunicorn with two workers on the devnet, on a SQLite store and on
a PostgreSQL one: a job started
through one worker is read and awaited through another; a second job is cancelled through the app."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "devnet"))

from hygiene import YagnaProbe  # noqa: E402

from golem_sync.store import open_store  # noqa: E402

pytestmark = pytest.mark.devnet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APPS = {
    "flask": ("examples", "flask_app:app"),
    "django": ("examples/django_app", "golem_site.wsgi"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gunicorn:
    """gunicorn serving one example with two sync workers; stopped by pid (SIGTERM: workers close)."""

    def __init__(self, app: str, info, store: str, log_path: str) -> None:
        pytest.importorskip("gunicorn")
        pytest.importorskip("flask" if app == "flask" else "django")
        chdir, target = APPS[app]
        self.url = f"http://127.0.0.1:{free_port()}"
        env = dict(os.environ, **info.env(), GOLEM_JOB_STORE=store,
                   PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "--timeout", "120", "--graceful-timeout", "60",
             "-b", self.url[len("http://"):], "--chdir", os.path.join(ROOT, chdir), target],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:  # an external server: nothing to wait on but its port
            try:
                requests.get(self.url + "/jobs/none", timeout=5)
                return
            except requests.ConnectionError:
                assert self.proc.poll() is None, f"gunicorn exited; see {log_path}"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture(params=[(app, kind) for app in sorted(APPS) for kind in ("sqlite", "postgres")],
                ids=lambda p: "-".join(p))
def server(request, golem_devnet, tmp_path):
    app, kind = request.param
    spec = str(tmp_path / "jobs.db") if kind == "sqlite" else request.getfixturevalue("pg_server").conninfo
    gunicorn = Gunicorn(app, golem_devnet, spec, str(tmp_path / "gunicorn.log"))
    gunicorn.spec = spec
    yield gunicorn
    gunicorn.stop()


def test_a_job_started_through_one_worker_is_read_and_awaited_through_another_then_cancelled(server, golem_devnet):
    http = requests.Session()
    started = http.post(server.url + "/jobs", data={"cmd": "sleep 3; echo hi"}, timeout=60)
    assert started.status_code == 202, started.text
    job_id, creator = started.json()["id"], started.json()["worker"]
    assert http.get(server.url + "/jobs/no-such-job", timeout=30).status_code == 404

    # Two sync workers each serve one request at a time: two waits held at once are served by
    # both workers, so one of them is not the worker that started the job.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        waits = [pool.submit(requests.get, f"{server.url}/jobs/{job_id}/result", params={"timeout": 60},
                             timeout=90) for _ in range(2)]
        answers = [w.result().json() for w in waits]
    workers = {a["worker"] for a in answers}
    assert len(workers) == 2 and creator in workers
    for answer in answers:
        assert (answer["state"], answer["result"], answer["error"]) == ("done", "hi\n", None)

    long_job = http.post(server.url + "/jobs", data={"cmd": "sleep 60"}, timeout=60).json()["id"]
    with open_store(server.spec) as store:  # wait until it runs on a provider, woken by the store
        assert store.wait_until(long_job, lambda r: r.activity_id is not None, timeout=60).activity_id
        cancelled = http.post(f"{server.url}/jobs/{long_job}/cancel", timeout=90)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        state = http.get(f"{server.url}/jobs/{long_job}", timeout=30).json()
        assert state["state"] == "cancelled" and "cancel" in state["error"]
        records = [store.get(job_id), store.get(long_job)]

    assert server.stop() == 0
    probe = YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)
    for record in records:
        assert probe.agreement_state(record.agreement_id) == "Terminated"
        assert probe.activity_state(record.activity_id) in ("Terminated", "Gone")
        assert not probe.allocation_exists(record.allocation_id)
