"""The command runner under WorkContext and Batch: its lifecycle (setup, teardown, close) and the
replacement of an activity retired by a command timeout. A scripted Activity stands in for yagna;
the last tests run whole jobs on the fake yagna to check the job drives the lifecycle."""
from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, List, Optional

import pytest

from golem_sync import GolemActivityError, GolemCancelledError, GolemTimeoutError, signals
from golem_sync._cancel import CancelToken
from golem_sync._options import WorkOptions
from golem_sync._work import Batch, ProviderInfo, WorkContext
from golem_sync._work.runner import CommandRunner


def ok(commands: Any) -> List[Any]:
    return [SimpleNamespace(index=i, result="Ok", stdout="out", stderr=None, message=None, event_date=None,
                            is_batch_finished=i == len(commands) - 1) for i in range(len(commands))]


class ScriptedActivity:
    """An Activity whose batches succeed unless the test queued an error for the next one."""

    agreement_id = "agr"

    def __init__(self, log: List[str], name: str = "act-1", errors: Optional[List[BaseException]] = None) -> None:
        self.activity_id = name
        self.log = log
        self.errors = errors if errors is not None else []
        self.destroyed = False
        self.options = SimpleNamespace(execute_timeout_sec=30.0, result_poll_sec=0.05)
        self.sender = None

    def execute(self, commands: Any, token: CancelToken, timeout: Any, **kw: Any) -> List[Any]:
        kinds = "+".join(type(c).__name__.lower() for c in commands)
        self.log.append(f"{self.activity_id}: {kinds}")
        if self.errors:
            raise self.errors.pop(0)
        return ok(commands)

    def usage(self) -> List[float]:
        return [1.0]

    def final_usage(self, timeout: float) -> List[float]:
        return self.usage()

    def destroy(self) -> None:
        if not self.destroyed:
            self.destroyed = True
            self.log.append(f"{self.activity_id}: destroyed")

    def successor(self, token: Any = None) -> "ScriptedActivity":
        self.log.append(f"{self.activity_id}: successor")
        return ScriptedActivity(self.log, "act-2", self.errors)


def make(log: List[str], token: Optional[CancelToken] = None, errors: Optional[List[BaseException]] = None,
         job: Any = None, **runner: Any) -> WorkContext:
    options = WorkOptions(setup=[lambda ctx: log.append(f"setup on {ctx.activity_id}")],
                          teardown=[lambda ctx: log.append(f"teardown on {ctx.activity_id}")])
    activity = ScriptedActivity(log, errors=errors)
    return WorkContext(activity, ProviderInfo("p", "prov"), token or CancelToken(), options,  # type: ignore[arg-type]
                       job=job, **runner)


def test_entering_deploys_and_runs_setup_leaving_tears_down_and_destroys():
    log: List[str] = []
    with make(log) as ctx:
        log.append("worker")
        ctx.run("echo hi")
    assert log == ["act-1: deploy+start", "setup on act-1", "worker", "act-1: run",
                   "teardown on act-1", "act-1: destroyed"]


def test_teardown_runs_after_a_worker_error_but_not_once_cancelled():
    log: List[str] = []
    with pytest.raises(ValueError):
        with make(log):
            raise ValueError("worker bug")
    assert log[-2:] == ["teardown on act-1", "act-1: destroyed"]

    log.clear()
    token = CancelToken()
    with pytest.raises(GolemCancelledError):
        with make(log, token):
            token.cancel("user")
            token.raise_if_cancelled()
    assert log == ["act-1: deploy+start", "setup on act-1", "act-1: destroyed"]


def test_a_failed_deploy_closes_the_context_before_the_error_propagates():
    log: List[str] = []
    ctx = make(log, errors=[GolemActivityError("exe-unit crashed")])
    with pytest.raises(GolemActivityError, match="deploying on prov failed: exe-unit crashed"):
        ctx.__enter__()
    assert log == ["act-1: deploy+start", "teardown on act-1", "act-1: destroyed"]
    ctx.__exit__(None, None, None)  # closing again does nothing
    assert log[-1] == "act-1: destroyed" and log.count("teardown on act-1") == 1


def test_a_failing_teardown_is_logged_and_the_activity_is_still_destroyed(caplog):
    log: List[str] = []

    def broken(ctx: Any) -> None:
        raise RuntimeError("teardown bug")

    activity = ScriptedActivity(log)
    runner = CommandRunner(activity, ProviderInfo("p", "prov"), CancelToken(),  # type: ignore[arg-type]
                           WorkOptions(teardown=[broken]))
    with caplog.at_level("ERROR", logger="golem_sync.work"):
        with runner:
            pass
    assert activity.destroyed
    assert any("teardown" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


def test_a_command_timeout_retires_the_activity_and_the_next_command_gets_a_prepared_one():
    log: List[str] = []
    job = SimpleNamespace(id="job-1", activity_id="act-1")
    with make(log, job=job, on_activity=lambda a: setattr(job, "activity_id", a.activity_id)) as ctx:
        ctx._runner.activity.errors.append(GolemTimeoutError("too slow", phase="batch"))
        with pytest.raises(GolemTimeoutError):
            ctx.run("sleep 100")
        assert ctx.activity_id == "act-1"  # replaced lazily, on the next command
        log.clear()
        results = ctx.begin_batch().run("echo a").run("echo b").end()  # a batch shares the runner
        assert [r.ok for r in results] == [True, True]
        assert ctx.activity_id == "act-2" and job.activity_id == "act-2"
    assert log == ["act-1: destroyed", "act-1: successor", "act-2: deploy+start", "setup on act-2",
                   "act-2: run+run", "teardown on act-2", "act-2: destroyed"]


def test_a_batch_runs_through_the_runner_it_was_given():
    log: List[str] = []
    runner = CommandRunner(ScriptedActivity(log), ProviderInfo("p", "prov"), CancelToken(),  # type: ignore[arg-type]
                           WorkOptions())
    assert len(Batch(runner).run("a").transfer("container:/a", "container:/b").end()) == 2
    assert log == ["act-1: run+transfer"]


# -- the job drives the lifecycle (fake yagna) ---------------------------------------------------

def test_a_job_runs_setup_and_teardown_around_the_worker_with_the_workers_context(golem):
    seen: List[Any] = []
    g = golem()
    job = g.create_job()
    job.start_work(lambda ctx: seen.append(("worker", ctx)) or "done",
                   work={"setup": [lambda ctx: seen.append(("setup", ctx))],
                         "teardown": [lambda ctx: seen.append(("teardown", ctx))]})
    assert job.wait_for_result(timeout=10) == "done"
    assert [what for what, _ in seen] == ["setup", "worker", "teardown"]
    assert len({id(ctx) for _, ctx in seen}) == 1


def test_a_cancelled_job_skips_teardown_and_still_destroys_its_activity(golem, fake_yagna):
    started = threading.Event()
    teardowns: List[Any] = []
    g = golem()
    job = g.create_job()

    def worker(ctx: Any) -> None:
        started.set()
        while True:
            ctx.run("echo wait")

    destroyed: List[str] = []
    signals.activity_destroyed.connect(lambda sender, **kw: destroyed.append(kw["activity_id"]), sender=job,
                                       weak=False)
    job.start_work(worker, work={"teardown": [teardowns.append]})
    assert started.wait(10)
    job.cancel(timeout=10)
    assert job.state.value == "cancelled"
    assert teardowns == []
    assert destroyed and all(not alive for alive in fake_yagna.activities.values())
