"""``python -m golem_sync jobs`` against real SQLite and PostgreSQL stores, run as a subprocess (real
exit codes), with a second process owning the jobs where one must run (``child.py``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any, List, Tuple

import pytest

from golem_sync.jobs_cli import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_STORE, EXIT_TIMEOUT, EXIT_USAGE
from golem_sync.store import Progress, StoredJob

from test_store_contract import running

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args: str, store: Any = None, timeout: float = 60, env: Any = None) -> Tuple[int, str, str]:
    command = [sys.executable, "-m", "golem_sync", "jobs"]
    if store is not None:
        command += ["--store", store.location, "--table", store.table]
    environment = dict(os.environ if env is None else env,
                       PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command + list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=environment)
    return done.returncode, done.stdout, done.stderr


def new_id() -> str:
    return str(uuid.uuid4())


def _jobs(store: Any) -> List[str]:
    """Three jobs: done (with a result and progress), rejected, pending (owned by this test: alive)."""
    done, rejected, pending = new_id(), new_id(), new_id()
    for job_id in (done, rejected, pending):
        store.create(job_id, state="pending")
        time.sleep(0.01)
    store.update(done, state="done", result=store.serializer.dumps({"answer": 42}), provider="prov-1",
                 progress=Progress.create(1.0, "all done", {"frames": 10}, seq=3).to_json())
    store.update(rejected, state="rejected", error_type="GolemWorkError", error="exit code 1")
    store.update(pending, progress=Progress.create(0.5, "halfway", seq=1).to_json())
    return [done, rejected, pending]


def test_list_show_and_progress(shared_store):
    store = shared_store()
    code, out, _ = cli("list", store=shared_store)
    assert (code, out.strip()) == (EXIT_OK, "no jobs")
    done, rejected, pending = _jobs(store)

    code, out, err = cli("list", store=shared_store)
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "AGE", "PROVIDER", "PROGRESS"]
    assert [line.split()[0] for line in lines[1:]] == [pending, rejected, done]  # newest first
    assert "50% halfway" in lines[1] and '100% all done (frames=10)' in lines[3] and "prov-1" in lines[3]

    code, out, _ = cli("list", "--state", "done", "--state", "rejected", "--json", store=shared_store)
    listed = json.loads(out)
    assert code == EXIT_OK and [j["job_id"] for j in listed] == [rejected, done]
    assert listed[1]["progress"]["message"] == "all done" and "result" not in listed[1]
    code, out, _ = cli("list", "--limit", "1", "--json", store=shared_store)
    assert [j["job_id"] for j in json.loads(out)] == [pending]

    code, out, _ = cli("show", done, "--json", store=shared_store)
    shown = json.loads(out)
    assert code == EXIT_OK and shown["state"] == "done" and shown["result"] == {"answer": 42}
    assert shown["progress"]["data"] == {"frames": 10} and shown["progress"]["seq"] == 3
    code, out, _ = cli("show", rejected, store=shared_store)
    assert code == EXIT_OK and "state: rejected" in out and "error: exit code 1" in out

    code, out, _ = cli("progress", pending, store=shared_store)
    assert (code, out.strip()) == (EXIT_OK, "50% halfway")
    code, out, _ = cli("progress", pending, "--json", store=shared_store)
    assert json.loads(out)["fraction"] == 0.5
    code, out, _ = cli("progress", rejected, store=shared_store)
    assert (code, out.strip()) == (EXIT_OK, "no progress reported yet")


def test_wait_exit_codes(shared_store):
    store = shared_store()
    done, rejected, pending = _jobs(store)
    code, out, _ = cli("wait", done, store=shared_store)
    assert (code, out.strip()) == (EXIT_OK, f"{done}: done")
    code, out, _ = cli("wait", rejected, "--json", store=shared_store)
    assert code == EXIT_FAILED and json.loads(out)["error_type"] == "GolemWorkError"
    code, out, _ = cli("wait", rejected, store=shared_store)
    assert code == EXIT_FAILED and "rejected: GolemWorkError: exit code 1" in out
    started = time.monotonic()
    code, _, err = cli("wait", pending, "--timeout", "0.5", store=shared_store)  # its owner (this test) lives
    assert code == EXIT_TIMEOUT and "did not end within 0.5s" in err
    assert time.monotonic() - started < 15


def test_not_found_usage_and_store_errors(shared_store, tmp_path):
    store = shared_store()
    _jobs(store)
    for action in (["show"], ["wait"], ["cancel"], ["progress"], ["progress", "--follow"]):
        code, _, err = cli(*action[:1], "no-such-job", *action[1:], store=shared_store)
        assert code == EXIT_NOT_FOUND and "no job 'no-such-job'" in err, (action, err)
    env = {k: v for k, v in os.environ.items() if k != "GOLEM_JOB_STORE"}
    assert cli("list", env=env)[0] == EXIT_USAGE  # no --store, no $GOLEM_JOB_STORE
    assert cli("list", "--state", "finished", store=shared_store)[0] == EXIT_USAGE
    assert cli("wait", "x", "--timeout", "-1", store=shared_store)[0] == EXIT_USAGE
    assert cli("frobnicate", store=shared_store)[0] == EXIT_USAGE
    env["GOLEM_JOB_STORE"] = shared_store.location  # the default store (its default table is empty)
    assert cli("--table", shared_store.table, "list", "--json", env=env)[0] == EXIT_OK

    missing = str(tmp_path / "typo.db")
    code, _, err = cli("--store", missing, "list")
    assert code == EXIT_STORE and "no job store at" in err and not os.path.exists(missing)  # not created


def test_a_postgres_password_is_never_printed(pg_server):
    secret = "s3cret-" + uuid.uuid4().hex[:8]
    port = pg_server.conninfo.rsplit(":", 1)[1].split("/")[0]
    for url in (f"postgresql://golem:{secret}@127.0.0.1:1/postgres",  # nothing listens on port 1
                f"postgresql://nobody:{secret}@127.0.0.1:{port}/postgres",  # a role that does not exist
                f"host=127.0.0.1 port=1 user=golem password={secret} dbname=postgres"):
        code, out, err = cli("--store", url, "list")
        assert code == EXIT_STORE, (url, err)
        assert secret not in out + err and "***" in err, err


def test_cancel_through_the_store_is_done_by_the_owning_process(shared_store):
    store = shared_store()
    job_id = new_id()
    with running(shared_store, "progress-until-cancelled", job_id) as child:
        assert child.stdout.readline().strip() == "running"
        handle = StoredJob(store, job_id)
        assert handle.wait_for_progress(timeout=10) is not None  # it runs and reports
        code, out, _ = cli("list", "--state", "pending", store=shared_store)
        assert code == EXIT_OK and job_id in out and "tick" in out
        started = time.monotonic()
        code, out, err = cli("cancel", job_id, "--timeout", "20", store=shared_store)
        took = time.monotonic() - started
        assert code == EXIT_OK, err
        assert f"{job_id}: cancelled" in out and "command line" in out
        assert child.stdout.readline().strip() == "cancelled"
        assert child.wait(10) == 0
    assert took < 10
    assert handle.state.value == "cancelled" and handle.progress.message.startswith("cancelled at tick")
    code, _, err = cli("cancel", job_id, store=shared_store)
    assert code == EXIT_FAILED and "not running (state: cancelled)" in err
    code, out, _ = cli("wait", job_id, store=shared_store)
    assert code == EXIT_FAILED and "cancelled: GolemCancelledError" in out


def test_progress_follow_prints_each_value_until_the_job_ends(shared_store):
    shared_store()
    job_id = new_id()
    command = [sys.executable, "-m", "golem_sync", "jobs", "--store", shared_store.location, "--table",
               shared_store.table, "progress", job_id, "--follow", "--json", "--timeout", "30"]
    with running(shared_store, "report-progress", job_id) as child:
        assert child.stdout.readline().strip() == "running"
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=ROOT)) as follower:
            try:
                seqs = []
                while not seqs or seqs[-1] < 5:
                    line = follower.stdout.readline()
                    assert line, follower.stderr.read()
                    seqs.append(json.loads(line)["seq"])
                child.stdin.write("go\n")
                child.stdin.flush()
                out, err = follower.communicate(timeout=30)
            finally:
                if follower.poll() is None:
                    follower.kill()
        assert follower.returncode == EXIT_OK, err
        assert child.wait(10) == 0
    assert seqs == sorted(seqs) and seqs[-1] == 5 and len(set(seqs)) == len(seqs)
    assert [json.loads(line)["message"] for line in out.splitlines()] == ["finished"]


def test_progress_follow_times_out_with_status_4(shared_store):
    store = shared_store()
    _, _, pending = _jobs(store)
    code, out, err = cli("progress", pending, "--follow", "--timeout", "0.5", store=shared_store)
    assert code == EXIT_TIMEOUT and "halfway" in out and "did not end within 0.5s" in err


@pytest.mark.parametrize("argv", [["jobs", "--help"], ["jobs", "list", "--help"]])
def test_help_documents_the_exit_codes(argv):
    done = subprocess.run([sys.executable, "-m", "golem_sync", *argv], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0
    if argv[-2:] == ["jobs", "--help"]:
        assert "3 no such job, 4 timeout" in " ".join(done.stdout.split())
