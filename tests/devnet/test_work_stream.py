"""WorkContext on the devnet (real yagna): streaming processes, end_stream, env, command timeouts, costs."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from golem_sync import GolemCancelledError, GolemTimeoutError, GolemWorkError, JobState
from golem_sync.yagna.sse import _socket_of

from hygiene import YagnaProbe  # noqa: F401  (tests/devnet is on sys.path)
from test_job_api import golem, make_network, probe, recorder, requestor_threads  # noqa: F401  (fixtures)

pytestmark = pytest.mark.devnet


def process_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("golem-process-")]


@pytest.fixture(autouse=True)
def no_process_thread_outlives_its_test():
    yield
    assert process_threads() == []  # checked after the network fixtures are closed


def test_streamed_lines_arrive_while_the_command_runs(golem):
    def worker(ctx):
        started = time.monotonic()
        proc = ctx.spawn("for i in 1 2 3 4; do echo line$i; sleep 1; done; echo oops >&2; exit 0")
        seen = []
        for line in proc.stdout:
            seen.append((line, time.monotonic() - started))
        code = proc.wait(timeout=30)
        ended = time.monotonic() - started
        return seen, proc.stderr.read_all(timeout=5), code, ended, proc.join(5)

    job = golem.create_job()
    job.start_work(worker)
    seen, errors, code, ended, joined = job.wait_for_result(timeout=90)
    assert [line for line, _ in seen] == ["line1", "line2", "line3", "line4"]
    assert errors == ["oops"] and code == 0 and joined
    first_at = seen[0][1]
    print(f"first line after {first_at:.2f}s, exit after {ended:.2f}s")
    assert ended >= 3.0
    assert first_at < 1.5 and ended - first_at > 2.5  # the first line came ~3 s before the end
    assert process_threads() == []


def test_spawn_reports_a_non_zero_exit_code_and_stderr(golem):
    def worker(ctx):
        with ctx.run_and_stream("echo partial; echo 'bad thing' >&2; exit 3") as proc:
            code = proc.wait(timeout=30)
            return code, proc.result.ok, list(proc.stdout), list(proc.stderr)

    job = golem.create_job()
    job.start_work(worker)
    assert job.wait_for_result(timeout=60) == (3, False, ["partial"], ["bad thing"])


def test_cancel_closes_the_stream_connection_and_its_threads(golem):
    holder = {}
    streaming = threading.Event()

    def worker(ctx):
        proc = ctx.spawn("echo ready; sleep 60")
        holder["proc"] = proc
        holder["sock"] = _socket_of(proc._stream._response)
        for line in proc.stdout:
            if line == "ready":
                streaming.set()
        return "not reached"

    job = golem.create_job()
    job.start_work(worker)
    assert streaming.wait(60)
    assert holder["sock"] is not None and holder["sock"].fileno() != -1  # the SSE connection is open
    started = time.monotonic()
    job.cancel(timeout=10)
    elapsed = time.monotonic() - started
    assert job.state is JobState.CANCELLED and isinstance(job.error, GolemCancelledError)
    print(f"cancel with an open stream took {elapsed:.2f}s")
    assert elapsed < 2.5, elapsed
    proc = holder["proc"]
    assert proc.done and proc._stream.closed
    assert holder["sock"].fileno() == -1  # the socket under the stream is closed, not pooled
    assert proc.join(2)
    assert process_threads() == []
    with pytest.raises(GolemCancelledError):
        proc.wait(1)


def test_end_stream_yields_results_as_they_finish_and_raises_on_the_failing_command(golem):
    def worker(ctx):
        started = time.monotonic()
        got = []
        batch = ctx.begin_batch().run("echo a").run("sleep 2; echo b").run("exit 4").run("echo never")
        with pytest.raises(GolemWorkError, match="code 4"):
            for result in batch.end_stream(timeout=30):
                got.append((result.stdout, time.monotonic() - started))
        after = ctx.run("echo still usable").stdout
        return got, time.monotonic() - started, after

    job = golem.create_job()
    job.start_work(worker)
    got, total, after = job.wait_for_result(timeout=90)
    assert [out for out, _ in got] == ["a\n", "b\n"]
    assert got[0][1] < 1.5 and got[1][1] >= 2.0  # the first result did not wait for the sleeping one
    assert after == "still usable\n"


def test_end_stream_of_a_good_batch_gives_every_result(golem):
    job = golem.create_job()
    job.start_work(lambda ctx: [r.stdout for r in ctx.begin_batch().run("echo 1").run("echo 2").end_stream()])
    assert job.wait_for_result(timeout=60) == ["1\n", "2\n"]


def test_job_env_reaches_run_and_spawn_and_per_command_env_adds_to_it(golem):
    def worker(ctx):
        plain = ctx.run("echo $GREETING-$WHO").stdout
        per_command = ctx.run("echo $GREETING-$WHO", env={"WHO": "command"}).stdout
        streamed = ctx.spawn("echo $GREETING").stdout.read_all(timeout=30)
        return plain, per_command, streamed

    job = golem.create_job(work={"env": {"GREETING": "hello", "WHO": "job"}})
    job.start_work(worker)
    assert job.wait_for_result(timeout=60) == ("hello-job\n", "hello-command\n", ["hello"])


def test_job_env_is_sent_in_deploy(golem, recorder):
    job = golem.create_job(work={"env": {"A": "1"}})
    job.start_work(lambda ctx: ctx.run("true"))
    job.wait_for_result(timeout=60)
    deploys = [kw["commands"][0] for n, s, kw in recorder.events
               if n == "batch-sent" and s is job and type(kw["commands"][0]).__name__ == "Deploy"]
    assert deploys[0].to_json() == {"deploy": {"env": {"A": "1"}}}


def test_a_command_timeout_retires_the_activity_and_the_next_command_gets_a_new_one(golem, probe):
    def worker(ctx):
        first = ctx.activity_id
        started = time.monotonic()
        with pytest.raises(GolemTimeoutError) as info:
            ctx.run("sleep 30", timeout=1)
        timed_out_after = time.monotonic() - started
        assert info.value.phase == "batch"
        out = ctx.run("echo fresh").stdout
        second = ctx.activity_id
        proc = ctx.spawn("sleep 30", timeout=1)
        with pytest.raises(GolemTimeoutError) as info2:
            proc.wait(10)
        assert info2.value.phase == "command"
        third_out = ctx.run("echo again").stdout
        return first, second, ctx.activity_id, out, third_out, timed_out_after, probe.activity_state(first)

    job = golem.create_job()
    job.start_work(worker)
    first, second, third, out, third_out, timed_out_after, first_state = job.wait_for_result(timeout=120)
    assert out == "fresh\n" and third_out == "again\n"
    assert len({first, second, third}) == 3
    assert first_state in ("Terminated", "Gone")
    assert timed_out_after < 3.0
    assert job.activity_id == third
    assert probe.activity_state(third) in ("Terminated", "Gone")


def test_usage_cost_and_the_network_cost_summary(golem_devnet, recorder, caplog):
    caplog.set_level("INFO", logger="golem_sync.network")
    network = make_network(golem_devnet).init()
    try:
        def worker(ctx):
            ctx.run("sleep 1.5")
            usage = ctx.get_usage()
            return usage, ctx.get_cost(), ctx.job.get_cost(), ctx.get_state()

        job = network.create_job()
        job.start_work(worker)
        usage, cost, job_cost_live, state = job.wait_for_result(timeout=60)
        assert state == "Ready"
        assert usage["golem.usage.duration_sec"] >= 1.0
        assert set(usage) == {"golem.usage.duration_sec", "golem.usage.cpu_sec"}
        assert cost > 0 and job_cost_live >= cost * 0.99
        assert job.get_cost() >= cost  # the final usage was read at cleanup
    finally:
        network.close()
    summary = network.cost_summary()
    assert [row.agreement_id for row in summary.rows] == [job.agreement_id]
    row = summary.rows[0]
    assert row.job_id == job.id and row.activities == 1 and row.estimated == job.get_cost()
    assert row.accepted is not None and row.accepted > Decimal(0)
    # The provider invoices linear pricing × its final usage, read when it stops the exe-unit: after
    # our last read (before the 0.76 s destroy), so the invoice may exceed the estimate by that time.
    # The estimate counts the activity's lifetime (create to destroy, as seen here) as its duration
    # at least, whose ends may each be up to one 750 ms yagna poll off the provider's: it may exceed
    # the invoice by that much (see test_costs_match_bill.py).
    slack = float(row.accepted) - row.estimated
    per_sec = row.pricing.env_per_sec + row.pricing.cpu_per_sec
    print(f"estimated {row.estimated:.9f}, accepted {row.accepted}, difference {slack / per_sec:.2f} s of pricing")
    assert -0.75 * row.pricing.env_per_sec - 1e-12 <= slack <= 2.5 * per_sec
    assert "accepted" in str(summary)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cost summary")]
    assert len(logged) == 1 and job.agreement_id[:12] in logged[0]
