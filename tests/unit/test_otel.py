"""OpenTelemetry (issue 14 part 3): the span tree, statuses and metrics of jobs on the fake yagna,
read back through the SDK's in-memory span exporter and metric reader (without the extra:
``test_otel_absent``).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import attrs
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel tests need opentelemetry-sdk (the test extra)")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from golem_sync import GolemCancelledError, GolemTimeoutError, GolemWorkError, otel  # noqa: E402
from golem_sync.yagna.activity import ActivityApi  # noqa: E402
from golem_sync._work import transfers  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class Telemetry:
    """An SDK tracer and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, golem: Any) -> Any:
        return otel.instrument(golem, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def spans(self, name: Optional[str] = None) -> List[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.spans(name)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def metrics(self) -> Dict[str, List[Any]]:
        """Metric name -> its data points."""
        out: Dict[str, List[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def total(self, name: str, **attributes: Any) -> float:
        return sum(p.value for p in self.metrics().get(name, [])
                   if all(p.attributes.get(k) == v for k, v in attributes.items()))

    def count(self, name: str) -> int:
        return sum(p.count for p in self.metrics().get(name, []))


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    yield made
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


def parent_of(span: ReadableSpan) -> Optional[int]:
    return span.parent.span_id if span.parent is not None else None


def ended(job: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.done()


# -- transfers without a GSB API: the fake yagna answers every transfer command Ok ---------------

class FakePublication:
    """Stands in for the GSB service of an upload: reports the whole payload as served."""

    def __init__(self, client: Any, name: str, source: Any, progress: Any) -> None:
        self.source, self.progress = source, progress
        self.service = type("S", (), {"error": None})()

    def open(self) -> None:
        size = int(self.source.size)
        self.progress(size, size)

    def close(self) -> None:
        self.source.close()


class FakeReceipt:
    """Stands in for the GSB service of a download: ``payload`` arrives, hash verified."""

    payload = b'{"answer": 42}'

    def __init__(self, client: Any, name: str, *, part_path: Any, progress: Any, max_size: Any) -> None:
        self.progress = progress
        self.verified_hash: Optional[str] = None
        self.service = type("S", (), {"error": None})()

    def open(self) -> None:
        self.progress(len(self.payload), len(self.payload))
        self.verified_hash = "ok"

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass

    def data(self) -> bytes:
        return self.payload


@pytest.fixture
def fake_transfers(monkeypatch: Any) -> None:
    monkeypatch.setattr(transfers, "Publication", FakePublication)
    monkeypatch.setattr(transfers, "Receipt", FakeReceipt)


# -- the span tree ---------------------------------------------------------------------------

def test_a_job_with_a_batch_and_transfers_gives_the_span_tree_with_its_attributes(
        golem, fake_yagna, telemetry, fake_transfers):
    g = golem()
    telemetry.instrument(g)
    outer = telemetry.tracer_provider.get_tracer("app").start_span("request")
    job = g.create_job()

    def worker(ctx: Any) -> Any:
        ctx.upload_data(b"12345", "/golem/input/in.bin")
        out = ctx.run("echo hi").stdout
        return out, ctx.download_json("/golem/output/r.json")

    with trace.use_span(outer, end_on_exit=True):  # the caller's span is the job span's parent
        job.start_work(worker)
    assert job.wait_for_result(timeout=20) == ("out\n", {"answer": 42})
    ended(job)
    agreement_id = job.agreement_id
    fake_yagna.push_invoice("inv-1", agreement_id, amount="0.25")
    g.close()  # waits for the invoice; the payment span ends when it is accepted

    root = telemetry.one("golem.job")
    assert parent_of(root) == outer.get_span_context().span_id
    assert root.attributes["golem.job.id"] == job.id
    assert root.attributes["golem.job.state"] == "done"
    assert root.attributes["golem.agreement.id"] == agreement_id
    assert root.attributes["golem.provider.id"] == "0xprov"
    assert root.attributes["golem.provider.name"] == "prov-1"
    assert root.attributes["golem.activity.id"] == job.activity_id
    assert root.attributes["golem.cost.estimate"] == pytest.approx(job.get_cost())
    assert root.status.status_code is StatusCode.UNSET

    negotiation = telemetry.one("golem.negotiation")
    agreement = telemetry.one("golem.agreement")
    activity = telemetry.one("golem.activity")
    payment = telemetry.one("golem.payment")
    assert parent_of(negotiation) == parent_of(agreement) == root.context.span_id
    assert negotiation.attributes["golem.proposals.received"] >= 1
    assert negotiation.attributes["golem.agreement.id"] == agreement_id
    assert agreement.attributes["golem.agreement.id"] == agreement_id
    assert agreement.attributes["golem.provider.id"] == "0xprov"
    assert [e.name for e in agreement.events] == ["approved"]
    assert parent_of(activity) == agreement.context.span_id
    assert activity.attributes["golem.activity.id"] == job.activity_id
    assert [e.name for e in activity.events] == ["created", "ready"]

    batches = telemetry.spans("golem.batch")
    assert [list(b.attributes["golem.batch.commands"]) for b in sorted(batches, key=lambda s: s.start_time)] == [
        ["deploy", "start"], ["transfer"], ["run"], ["transfer"]]
    assert all(parent_of(b) == activity.context.span_id for b in batches)
    assert all(b.status.status_code is StatusCode.UNSET for b in batches)

    uploads = [t for t in telemetry.spans("golem.transfer") if t.attributes["golem.transfer.direction"] == "upload"]
    downloads = [t for t in telemetry.spans("golem.transfer")
                 if t.attributes["golem.transfer.direction"] == "download"]
    assert len(uploads) == len(downloads) == 1
    assert uploads[0].attributes["golem.transfer.remote_path"] == "/golem/input/in.bin"
    assert uploads[0].attributes["golem.transfer.bytes"] == 5
    assert downloads[0].attributes["golem.transfer.bytes"] == len(FakeReceipt.payload)
    assert all(parent_of(t) == activity.context.span_id for t in uploads + downloads)

    assert parent_of(payment) == agreement.context.span_id
    assert payment.attributes["golem.cost.accepted"] == pytest.approx(0.25)
    assert payment.attributes["golem.invoice.id"] == "inv-1"
    assert payment.attributes["golem.job.id"] == job.id
    assert payment.end_time > root.end_time  # the invoice is accepted after the job ended

    # every span of the job belongs to one trace, the caller's
    assert {s.context.trace_id for s in telemetry.spans()} == {outer.get_span_context().trace_id}
    # and the activity span contains its batches, the job span everything but the payment
    for child in batches:
        assert activity.start_time <= child.start_time <= child.end_time <= activity.end_time
    for child in (negotiation, agreement, activity):
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time


def test_a_failing_job_has_error_status_with_its_exception_recorded(golem, fake_yagna, telemetry):
    g = golem()
    telemetry.instrument(g)
    job = g.create_job()

    def worker(ctx: Any) -> None:
        raise ValueError("the worker broke")

    job.start_work(worker)
    with pytest.raises(ValueError):
        job.wait_for_result(timeout=20)
    ended(job)
    root = telemetry.one("golem.job")
    assert root.status.status_code is StatusCode.ERROR
    assert "the worker broke" in (root.status.description or "")
    assert root.attributes["golem.job.state"] == "rejected"
    assert root.attributes["error.type"] == "ValueError"
    [event] = [e for e in root.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "the worker broke"
    # the phases that went well stay OK
    assert telemetry.one("golem.negotiation").status.status_code is StatusCode.UNSET
    assert telemetry.one("golem.activity").status.status_code is StatusCode.UNSET


def test_a_failing_command_and_a_batch_timeout_mark_their_batch_spans(golem, fake_yagna, telemetry, monkeypatch):
    g = golem()
    telemetry.instrument(g)
    job = g.create_job()

    def worker(ctx: Any) -> str:
        fake_yagna.batch_delay = 5.0
        try:
            ctx.run("sleep 5", timeout=0.3)
        except GolemTimeoutError:
            pass
        fake_yagna.batch_delay = 0.0
        return "after"

    job.start_work(worker)
    assert job.wait_for_result(timeout=20) == "after"
    ended(job)
    batches = sorted(telemetry.spans("golem.batch"), key=lambda s: s.start_time)
    timed_out = [b for b in batches if list(b.attributes["golem.batch.commands"]) == ["run"]]
    assert len(timed_out) == 1
    assert timed_out[0].status.status_code is StatusCode.ERROR
    assert timed_out[0].attributes["error.type"] == "golem_sync.errors.GolemTimeoutError"
    assert timed_out[0].end_time - timed_out[0].start_time < 3e9  # ended at the timeout, not at the job's end
    # the timed-out activity was retired; nothing was run after, so one activity only
    assert telemetry.one("golem.job").status.status_code is StatusCode.UNSET
    points = telemetry.metrics()["golem.batch.duration"]
    assert {p.attributes["golem.batch.ok"] for p in points} == {True, False}


def test_a_command_that_fails_gives_an_error_batch_span(golem, fake_yagna, telemetry, monkeypatch):
    failing = threading.Event()
    real = ActivityApi.get_batch_results

    def results(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = real(self, *args, **kwargs)
        if failing.is_set():
            return [attrs.evolve(r, result="Error", message="exit code 3", is_batch_finished=True) for r in answer]
        return answer

    monkeypatch.setattr(ActivityApi, "get_batch_results", results)
    g = golem(work={"raise_on_command_error": True})
    telemetry.instrument(g)
    job = g.create_job()

    def worker(ctx: Any) -> None:
        failing.set()  # the provider answers the next command with an error
        ctx.run("false")

    job.start_work(worker)
    with pytest.raises(GolemWorkError):
        job.wait_for_result(timeout=20)
    ended(job)
    run = [b for b in telemetry.spans("golem.batch") if list(b.attributes["golem.batch.commands"]) == ["run"]]
    assert len(run) == 1 and run[0].status.status_code is StatusCode.ERROR
    assert "exit code 3" in (run[0].status.description or "")
    assert run[0].attributes["golem.batch.failed_command"] == 0
    assert telemetry.one("golem.job").attributes["error.type"] == "golem_sync.errors.GolemWorkError"


def test_a_cancelled_job_has_error_status_and_its_open_phase_records_the_cancel(golem, fake_yagna, telemetry):
    fake_yagna.approve = False  # negotiation never ends: the cancel lands there
    g = golem()
    telemetry.instrument(g)
    job = g.create_job()
    job.start_work(lambda ctx: None)
    time.sleep(0.3)
    job.cancel(timeout=10)
    root = telemetry.one("golem.job")
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description.startswith("cancelled")
    assert root.attributes["golem.job.state"] == "cancelled"
    assert [e.attributes["exception.type"] for e in root.events if e.name == "exception"] == [
        "golem_sync.errors.GolemCancelledError"]
    negotiation = telemetry.one("golem.negotiation")
    assert negotiation.status.status_code is StatusCode.ERROR
    for span in telemetry.spans("golem.agreement"):  # signed, never approved
        assert span.status.status_code is StatusCode.ERROR
    assert telemetry.total("golem.jobs.ended", **{"golem.job.state": "cancelled"}) == 1
    assert isinstance(job.error, GolemCancelledError)


def test_a_job_cancelled_while_its_worker_runs_ends_every_span(golem, fake_yagna, telemetry):
    g = golem()
    telemetry.instrument(g)
    job = g.create_job()
    running = threading.Event()

    def worker(ctx: Any) -> None:
        fake_yagna.batch_delay = 30.0
        running.set()
        ctx.run("sleep 30")

    job.start_work(worker)
    assert running.wait(10)
    time.sleep(0.2)
    job.cancel(timeout=10)
    names = sorted(s.name for s in telemetry.spans())
    assert names.count("golem.job") == 1 and names.count("golem.activity") == 1
    run = [b for b in telemetry.spans("golem.batch") if list(b.attributes["golem.batch.commands"]) == ["run"]]
    assert run and run[0].status.status_code is StatusCode.ERROR
    assert run[0].attributes["error.type"] == "golem_sync.errors.GolemCancelledError"
    assert telemetry.one("golem.job").status.status_code is StatusCode.ERROR


def test_a_provider_that_terminates_gives_an_error_agreement_span_and_the_retry_its_own_spans(
        golem, fake_yagna, telemetry):
    fake_yagna.providers = ["0xp1", "0xp2"]
    g = golem()
    telemetry.instrument(g)
    agreements: List[str] = []

    def worker(ctx: Any) -> str:
        agreements.append(ctx.agreement_id)
        if len(agreements) == 1:
            fake_yagna.push_terminated(ctx.agreement_id, "provider going away")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ctx.run("echo still here")
        return str(ctx.provider.id)

    job = g.create_job(job={"max_retries": 1})
    job.start_work(worker)
    job.wait_for_result(timeout=20)
    ended(job)
    root = telemetry.one("golem.job")
    assert root.status.status_code is StatusCode.UNSET
    assert root.attributes["golem.agreement.id"] == agreements[1]  # the provider that did the work
    assert len(telemetry.spans("golem.negotiation")) == 2
    spans = {s.attributes["golem.agreement.id"]: s for s in telemetry.spans("golem.agreement")}
    assert sorted(spans) == sorted(agreements)
    first, second = spans[agreements[0]], spans[agreements[1]]
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["golem.agreement.reason"] == "provider going away"
    assert second.status.status_code is StatusCode.UNSET
    assert first.end_time <= second.start_time
    assert first.attributes["golem.provider.id"] != second.attributes["golem.provider.id"]
    activities = telemetry.spans("golem.activity")
    assert sorted(parent_of(a) for a in activities) == sorted([first.context.span_id, second.context.span_id])


def test_a_pool_jobs_batches_are_children_of_its_job_span(golem, fake_yagna, telemetry):
    fake_yagna.offer_props["golem.srv.caps.multi-activity"] = True
    g = golem()
    telemetry.instrument(g)
    with g.create_pool(size=1) as pool:
        assert pool.submit(lambda ctx: ctx.run("echo hi").stdout).result(timeout=20) == "out\n"
        future = pool.submit(lambda ctx: ctx.run("echo again").stdout)
        assert future.result(timeout=20) == "out\n"
        ended(future.job)
    jobs = telemetry.spans("golem.job")
    assert len(jobs) == 2 and all(j.attributes["golem.job.state"] == "done" for j in jobs)
    assert all(j.attributes["golem.provider.id"] == "0xprov" for j in jobs)
    runs = [b for b in telemetry.spans("golem.batch") if list(b.attributes["golem.batch.commands"]) == ["run"]]
    assert sorted(parent_of(b) for b in runs) == sorted(j.context.span_id for j in jobs)
    # the first job waited for the lease's negotiation, made on its behalf; the second found it warm
    first = min(jobs, key=lambda j: j.start_time)
    assert [parent_of(s) for s in telemetry.spans("golem.negotiation")] == [first.context.span_id]
    assert [parent_of(s) for s in telemetry.spans("golem.agreement")] == [first.context.span_id]
    assert telemetry.spans("golem.activity") == []  # the lease's activity is the pool's


def test_uninstrument_ends_the_open_spans_and_the_job_still_ends(golem, fake_yagna, telemetry):
    fake_yagna.approve = False
    g = golem()
    instrumentation = telemetry.instrument(g)
    job = g.create_job()
    job.start_work(lambda ctx: None)
    time.sleep(0.3)
    instrumentation.uninstrument()
    assert {s.name for s in telemetry.spans()} >= {"golem.job", "golem.negotiation"}
    assert telemetry.one("golem.negotiation").status.status_code is StatusCode.UNSET
    job.cancel(timeout=10)
    assert len(telemetry.spans("golem.job")) == 1  # nothing more once uninstrumented
    assert otel.instrumentation_of(g) is None


# -- metrics ---------------------------------------------------------------------------------

def test_metrics_count_jobs_by_final_state_time_the_phases_and_sum_glm_accepted(golem, fake_yagna, telemetry):
    g = golem()
    telemetry.instrument(g)
    ok = [g.create_job() for _ in range(2)]
    for job in ok:
        job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    bad = g.create_job()
    bad.start_work(lambda ctx: 1 / 0)
    for job in ok:
        job.wait_for_result(timeout=20)
        ended(job)
    with pytest.raises(ZeroDivisionError):
        bad.wait_for_result(timeout=20)
    ended(bad)
    # amounts are cumulative: a debit note of 0.3 adds 0.3, the invoice of 0.4 after it 0.1 more
    fake_yagna.push_debit_note("dn-1", ok[0].agreement_id, amount="0.3")
    deadline = time.monotonic() + 10
    while telemetry.total("golem.payment.accepted") < 0.3 - 1e-9 and time.monotonic() < deadline:
        time.sleep(0.02)
    for job, amount in zip(ok + [bad], ("0.4", "0.2", "0.05")):
        fake_yagna.push_invoice(f"inv-{job.id}", job.agreement_id, amount=amount)
    g.close()

    assert telemetry.total("golem.jobs.started") == 3
    assert telemetry.total("golem.jobs.ended", **{"golem.job.state": "done"}) == 2
    assert telemetry.total("golem.jobs.ended", **{"golem.job.state": "rejected"}) == 1
    rejected = [p for p in telemetry.metrics()["golem.jobs.ended"] if p.attributes["golem.job.state"] == "rejected"]
    assert rejected[0].attributes["error.type"] == "ZeroDivisionError"
    assert telemetry.count("golem.negotiation.duration") == 3
    assert telemetry.count("golem.activity.create.duration") == 3
    assert telemetry.count("golem.activity.deploy.duration") == 3
    assert telemetry.count("golem.batch.duration") == 3 + 2  # deploy+start of each, two echo batches
    assert telemetry.count("golem.job.duration") == 3
    assert telemetry.total("golem.payment.accepted") == pytest.approx(0.4 + 0.2 + 0.05)
    assert float(g.cost_summary().accepted_total) == pytest.approx(0.65)
    payment = [s for s in telemetry.spans("golem.payment") if s.attributes["golem.agreement.id"] == ok[0].agreement_id]
    assert payment[0].attributes["golem.debit_notes.accepted"] == 1


def test_another_network_is_not_traced_and_uninstrument_stops_tracing(golem, fake_yagna, telemetry):
    traced, other = golem(), golem()
    instrumentation = telemetry.instrument(traced)
    assert otel.instrument(traced) is instrumentation  # once per network
    job = other.create_job()
    job.start_work(lambda ctx: "x")
    job.wait_for_result(timeout=20)
    ended(job)
    assert telemetry.spans() == []
    otel.uninstrument(traced)
    job = traced.create_job()
    job.start_work(lambda ctx: "y")
    job.wait_for_result(timeout=20)
    ended(job)
    assert telemetry.spans() == []
    assert otel.instrumentation_of(traced) is None


def test_telemetry_true_uses_the_global_providers_and_stops_at_close(tmp_path):
    """In a subprocess: the global providers can be set once per process."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests' / 'unit')!r}]
        import responses, re
        from opentelemetry import trace, metrics
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider(); provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        from fakeyagna import FakeYagna, PACKAGE, API, client
        from golem_sync import GolemNetwork, otel
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            rsps.add_passthru(re.compile(rf"^(?!{{re.escape(API)}}/)"))
            FakeYagna(rsps, poll_sleep=0.02)
            golem = GolemNetwork(client=client(), package=PACKAGE, payment={{"invoice_wait_sec": 0.2}},
                                 telemetry=True).init()
            job = golem.create_job(); job.start_work(lambda ctx: "ok"); job.wait_for_result(timeout=20)
            while not job.done(): time.sleep(0.01)
            golem.close()
            assert otel.instrumentation_of(golem) is None, "close() uninstruments"
        print(sorted(s.name for s in exporter.get_finished_spans()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(sorted(
        ["golem.job", "golem.negotiation", "golem.agreement", "golem.activity", "golem.batch"]))
