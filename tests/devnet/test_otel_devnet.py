"""OpenTelemetry on the devnet (issue 14 part 3): a real job's span tree, with the real provider,
agreement and activity ids, its transfers, and the payment span carrying the accepted invoice."""
from __future__ import annotations

import os
from decimal import Decimal

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel tests need opentelemetry-sdk (the test extra)")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from golem_sync import otel  # noqa: E402

from test_job_api import make_network, probe, recorder, requestor_threads  # noqa: E402,F401

pytestmark = pytest.mark.devnet

SIZE = 300_000


def metric_points(reader: InMemoryMetricReader, name: str) -> list:
    data = reader.get_metrics_data()
    return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
            for p in m.data.data_points]


def test_a_real_job_with_run_upload_and_download_gives_the_span_tree_and_the_payment(
        golem_devnet, probe, recorder, tmp_path):  # noqa: F811
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(SIZE))

    def worker(ctx):
        ctx.upload_file(source, "/golem/input/in.bin")
        ctx.run("wc -c < /golem/input/in.bin > /golem/output/size.txt").raise_for_error()
        return ctx.download_file("/golem/output/size.txt", tmp_path / "size.txt").ok

    network = make_network(golem_devnet).init()
    try:
        otel.instrument(network, tracer_provider=tracer_provider, meter_provider=meter_provider)
        job = network.create_job()
        job.start_work(worker)
        assert job.wait_for_result(timeout=120) is True
    finally:
        network.close()  # waits for the invoice and accepts it: the payment span ends
        otel.uninstrument(network)
    approved = recorder.ids("agreement-approved", "agreement_id")
    activities = {*recorder.ids("activity-created", "activity_id"), *recorder.ids("activity-destroyed", "activity_id")}
    probe.assert_clean(recorder.ids("agreement-created", "agreement_id"), activities, network.allocation_id,
                       invoiced=approved)
    assert requestor_threads() == []
    assert (tmp_path / "size.txt").read_text().strip() == str(SIZE)

    spans = exporter.get_finished_spans()
    by_name = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    print(sorted((s.name, (s.end_time - s.start_time) / 1e9) for s in spans))
    [root] = by_name["golem.job"]
    [negotiation] = by_name["golem.negotiation"]
    [agreement] = by_name["golem.agreement"]
    [activity] = by_name["golem.activity"]
    [payment] = by_name["golem.payment"]
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans), [(s.name, s.status) for s in spans]
    assert root.parent is None and {s.context.trace_id for s in spans} == {root.context.trace_id}

    assert root.attributes["golem.job.id"] == job.id and root.attributes["golem.job.state"] == "done"
    assert root.attributes["golem.provider.id"] == job.provider.id and job.provider.id.startswith("0x")
    assert root.attributes["golem.provider.name"] == job.provider.name
    assert root.attributes["golem.agreement.id"] == job.agreement_id
    assert root.attributes["golem.activity.id"] == job.activity_id
    assert root.attributes["golem.cost.estimate"] > 0

    assert negotiation.parent.span_id == agreement.parent.span_id == root.context.span_id
    assert negotiation.attributes["golem.agreement.id"] == job.agreement_id
    assert agreement.attributes["golem.agreement.id"] == job.agreement_id
    assert agreement.attributes["golem.provider.id"] == job.provider.id
    assert activity.parent.span_id == agreement.context.span_id
    assert activity.attributes["golem.activity.id"] == job.activity_id
    created = next(e for e in activity.events if e.name == "created")
    assert (created.timestamp - activity.start_time) / 1e9 > 0.5  # yagna's create (0.76 or 1.52 s) is inside

    batches = sorted(by_name["golem.batch"], key=lambda s: s.start_time)
    assert [list(b.attributes["golem.batch.commands"]) for b in batches] == [
        ["deploy", "start"], ["transfer"], ["run"], ["transfer"]]
    assert all(b.parent.span_id == activity.context.span_id for b in batches)
    transfers = sorted(by_name["golem.transfer"], key=lambda s: s.start_time)
    assert [t.attributes["golem.transfer.direction"] for t in transfers] == ["upload", "download"]
    assert transfers[0].attributes["golem.transfer.bytes"] == SIZE
    assert transfers[1].attributes["golem.transfer.bytes"] == len(f"{SIZE}\n")
    assert all(t.parent.span_id == activity.context.span_id for t in transfers)

    [row] = [r for r in network.cost_summary().rows if r.agreement_id == job.agreement_id]
    assert row.accepted is not None and row.accepted > Decimal(0)
    assert payment.parent.span_id == agreement.context.span_id
    assert payment.attributes["golem.agreement.id"] == job.agreement_id
    assert payment.attributes["golem.provider.id"] == job.provider.id
    assert Decimal(str(payment.attributes["golem.cost.accepted"])) == row.accepted
    assert payment.attributes["golem.cost.estimate"] == pytest.approx(row.estimated)

    accepted = sum(p.value for p in metric_points(reader, "golem.payment.accepted"))
    assert accepted == pytest.approx(float(row.accepted))
    assert [p.attributes["golem.job.state"] for p in metric_points(reader, "golem.jobs.ended")] == ["done"]
    for name in ("golem.negotiation.duration", "golem.activity.create.duration", "golem.activity.deploy.duration"):
        [point] = metric_points(reader, name)
        assert point.count == 1 and point.sum > 0, name
    [create] = metric_points(reader, "golem.activity.create.duration")
    assert create.sum > 0.5  # yagna's activity create
    tracer_provider.shutdown()
    meter_provider.shutdown()
