"""A job's cost in the job store: written at its end, updated when its invoice is accepted later."""
from __future__ import annotations

import time

from decimal import Decimal

import pytest

from golem_sync.store import JobCost, MemoryJobStore, StoredJob


def _stop(network):
    services = network._services_obj
    network.close()
    if services is not None and hasattr(services.payments, "close"):
        services.payments.close(5)


def _wait_cost(store, job_id, predicate, timeout=10.0):
    record = store.wait_until(job_id, lambda r: predicate(r.read_cost()), timeout)
    return record.read_cost() if record is not None else None


def test_a_finished_jobs_stored_cost_gets_its_invoice_accepted_after_the_end(golem, fake_yagna):
    store = MemoryJobStore()
    network = golem(job_store=store, payment={"invoice_wait_sec": 5})

    def worker(ctx):
        fake_yagna.push_debit_note("dn-1", ctx.agreement_id, amount="0.1")
        deadline = time.monotonic() + 5
        while not network._services_obj.payments.account_totals().get(ctx.agreement_id) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        ctx.run("sleep 1")
        return ctx.agreement_id

    job = network.create_job()
    job.start_work(worker)
    agreement = job.result(timeout=20)
    handle = StoredJob(store, job.id)
    at_end = handle.cost
    estimate = network.cost_summary().rows[0].estimated
    assert at_end is not None and at_end.currency == "tGLM" and at_end.agreements == 1
    assert at_end.estimated == estimate and at_end.estimated > 0
    assert at_end.accepted == Decimal("0.1")  # the debit note accepted while it ran
    fake_yagna.push_invoice("inv-1", agreement, amount="0.25")  # after the end, as providers do
    got = _wait_cost(store, job.id, lambda c: c is not None and c.accepted == Decimal("0.25"))
    assert got == JobCost(estimated=estimate, accepted=Decimal("0.25"), currency="tGLM", agreements=1)
    assert store.get(job.id).state == "done"
    assert network._store._cost_jobs == {} and len(network._store._cost_parts) == 0  # settled: forgotten
    _stop(network)
    store.close()


def test_a_job_without_payments_stores_what_cost_summary_shows(golem, fake_yagna):
    store = MemoryJobStore()
    network = golem(job_store=store)
    job = network.create_job()
    job.start_work(lambda ctx: ctx.run("echo hi") and None)
    job.result(timeout=20)
    cost = StoredJob(store, job.id).cost
    row = network.cost_summary().rows[0]
    assert cost is not None and cost.estimated == row.estimated > 0
    assert cost.accepted == row.accepted == Decimal(0)  # nothing accepted yet, as the summary says
    _stop(network)
    store.close()


def test_pool_jobs_get_their_share_of_the_leases_invoice(golem, fake_yagna):
    # The fake's linear pricing: 0.1 per cpu second, 0.01 per second of duration.
    store = MemoryJobStore()
    network = golem(job_store=store, payment={"invoice_wait_sec": 5})
    pool = network.create_pool(size=1)
    pool.submit(lambda ctx: None).result(timeout=20)  # the lease now reports [cpu 1, duration 2]

    def use(cpu, duration):
        def worker(ctx):
            fake_yagna.usage[ctx.activity_id] = [cpu, duration]
            ctx.get_usage()
            return ctx.agreement_id
        return worker

    first = pool.submit(use(3.0, 12.0))  # adds 0.2 + 0.1
    agreement = first.result(timeout=20)
    second = pool.submit(use(4.0, 14.0))  # adds 0.1 + 0.02
    second.result(timeout=20)
    pool.shutdown(wait=True)
    fake_yagna.push_invoice("inv-pool", agreement, amount="0.54")  # the whole lease: 0.54 estimated
    for future, share in ((first, Decimal("0.3")), (second, Decimal("0.12"))):
        cost = _wait_cost(store, future.job.id, lambda c: c is not None and c.accepted)
        assert cost is not None and float(cost.estimated) == pytest.approx(float(share), rel=1e-6)
        assert abs(cost.accepted - share) < Decimal("1e-9"), cost
    _stop(network)
    store.close()
