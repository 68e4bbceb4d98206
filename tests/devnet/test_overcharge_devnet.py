"""Amounts checked against the agreement on the devnet: real yagna, an honest and a greedy provider.

Both providers price the same (a start price, per second of duration and of cpu) and send a
cumulative debit note every second (the interval the requestor negotiates); the greedy one bills
three times the agreed price of the usage it reports (``ProviderFaults(overcharge=3.0)``). Each test
ends with the yagna audit: every agreement terminated, every activity gone, the allocation
released, no golem_sync thread left, and no invoice of the test left RECEIVED (a rejected invoice
is the end state of an overcharging agreement: it was answered, with the notes accepted before).
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, List

import pytest

from golem_sync import GolemOverchargeError, JobState

from test_cost_caps_devnet import Audit
from test_job_api import Recorder, make_network, requestor_threads

pytestmark = pytest.mark.devnet

START, PER_SEC, PER_CPU_SEC = 0.01, 0.001, 0.001
NOTE_EVERY_SEC = 1


@pytest.fixture(scope="module")
def billing_devnet():
    from golem_sync.devnet.launcher import Devnet
    from golem_sync.devnet.provider import ProviderFaults, ProviderSpec

    prices = dict(start_price=START, price_per_duration_sec=PER_SEC, price_per_cpu_sec=PER_CPU_SEC,
                  debit_note_interval_sec=NOTE_EVERY_SEC)
    devnet = Devnet(providers=[ProviderSpec(name="honest", **prices),
                               ProviderSpec(name="greedy", faults=ProviderFaults(overcharge=3.0), **prices)])
    try:
        info = devnet.up()
        yield devnet, info
    finally:
        devnet.down()


@pytest.fixture
def billed(billing_devnet):
    """``billed(provider_name)`` → a network that signs only with that provider; closed and audited."""
    devnet, info = billing_devnet
    made: List[Any] = []
    recorder = Recorder()
    audit = Audit(info)

    def make(provider: str) -> Any:
        network = make_network(info, market={
            "subnet_tag": info.subnet, "debit_note_interval_sec": NOTE_EVERY_SEC,
            "proposal_filter": lambda p: p.provider_name == provider}).init()
        made.append(network)
        return network

    yield make, recorder, audit, devnet
    try:
        for network in made:
            network.close()
            agreements = recorder.ids("agreement-created", "agreement_id")
            activities = {*recorder.ids("activity-created", "activity_id"),
                          *recorder.ids("activity-destroyed", "activity_id")}
            audit.probe.assert_clean(agreements, activities, network.allocation_id)
            for agreement_id in agreements:
                for inv in audit.documents("invoices", agreement_id):
                    assert inv["status"] in ("ACCEPTED", "SETTLED", "REJECTED"), inv
        assert requestor_threads() == []
    finally:
        recorder.close()


def agent(devnet: Any, name: str) -> Any:
    return next(a for a in devnet.agents if a.spec.name == name)


def allowed_for(usage: Any, threads: int = 2, slack_sec: float = NOTE_EVERY_SEC) -> Decimal:
    """The most one activity with this reported (duration, cpu) may be billed, with one interval of slack."""
    duration, cpu = usage
    return (Decimal(repr(START)) + Decimal(repr(PER_SEC)) * Decimal(repr(duration + slack_sec))
            + Decimal(repr(PER_CPU_SEC)) * Decimal(repr(cpu + slack_sec * threads)))


def test_an_honest_providers_notes_and_invoice_are_all_accepted(billed):
    make, recorder, audit, devnet = billed
    golem = make("honest")
    job = golem.create_job()
    job.start_work(lambda ctx: ctx.run("sleep 5").stdout)
    job.wait_for_result(timeout=60)
    assert job.state is JobState.DONE, job.error
    agreement = job.agreement_id
    golem.close()
    notes = [n for n in agent(devnet, "honest").debit_notes() if n.agreement_id == agreement]
    assert len(notes) >= 3, notes  # a note about every second over ~5 s
    assert recorder.ids("debit-note-rejected", "reason") == []
    assert recorder.ids("invoice-rejected", "reason") == []
    statuses = {doc["status"] for doc in audit.documents("debitNotes", agreement)}
    assert statuses <= {"ACCEPTED", "SETTLED"}, statuses
    [invoice] = audit.documents("invoices", agreement)
    assert invoice["status"] in ("ACCEPTED", "SETTLED"), invoice
    # what was accepted stays within the agreed price of the usage the provider reported (+ one interval)
    assert audit.accepted_total(agreement) <= allowed_for(notes[-1].usage)


def test_an_overcharging_providers_note_is_refused_the_agreement_ended_and_the_job_fails(billed):
    make, recorder, audit, devnet = billed
    golem = make("greedy")
    job = golem.create_job()
    started = time.monotonic()
    job.start_work(lambda ctx: ctx.run("sleep 60"))
    with pytest.raises(GolemOverchargeError) as caught:
        job.wait_for_result(timeout=60)
    took = time.monotonic() - started
    error = caught.value
    assert job.state is JobState.REJECTED and took < 30, took
    assert error.amount is not None and error.allowed is not None and error.amount > error.allowed
    assert error.agreement_id == job.agreement_id and "overcharged" in str(error)
    agreement = job.agreement_id
    golem.close()
    assert audit.probe.agreement_state(agreement) == "Terminated"
    message = audit.termination_message(agreement)
    assert "overcharged" in message and error.document_id in message, message
    # nothing the greedy provider asked was accepted (each of its notes is 3x the price of its usage)
    assert recorder.ids("debit-note-accepted", "amount") == []
    assert recorder.ids("debit-note-rejected", "reason"), "the overcharging note was not refused"
    for note in audit.documents("debitNotes", agreement):
        assert note["status"] in ("RECEIVED", "REJECTED"), note  # yagna 0.17.6: reject is 501, it stays
    [invoice] = audit.documents("invoices", agreement)
    assert invoice["status"] == "REJECTED", invoice
    assert audit.accepted_total(agreement) == 0
    [provider_invoice] = [i for i in agent(devnet, "greedy").invoices() if i.agreement_id == agreement]
    [reason] = recorder.ids("invoice-rejected", "reason")
    assert f"asks {provider_invoice.amount}" in reason, reason


def test_a_pool_lease_with_an_overcharging_provider_is_ended_and_its_job_fails(billed):
    make, recorder, audit, devnet = billed
    golem = make("greedy")
    with golem.create_pool(size=1) as pool:
        future = pool.submit(lambda ctx: ctx.run("sleep 60"))
        with pytest.raises(GolemOverchargeError) as caught:
            future.result(timeout=60)
        agreement = caught.value.agreement_id
    golem.close()
    assert audit.probe.agreement_state(agreement) == "Terminated"
    assert "overcharged" in audit.termination_message(agreement)
    assert recorder.ids("debit-note-accepted", "amount") == []
    assert audit.accepted_total(agreement) == 0


def test_honest_pool_jobs_on_one_lease_are_all_accepted(billed):
    make, recorder, audit, devnet = billed
    golem = make("honest")
    with golem.create_pool(size=1) as pool:
        for _ in range(3):
            pool.submit(lambda ctx: ctx.run("sleep 1.5")).result(timeout=60)
    golem.close()
    assert recorder.ids("debit-note-rejected", "reason") == [] and recorder.ids("invoice-rejected", "reason") == []
    assert recorder.ids("debit-note-accepted", "amount"), "no debit note came"
    [agreement] = set(recorder.ids("agreement-approved", "agreement_id"))
    [invoice] = audit.documents("invoices", agreement)
    assert invoice["status"] in ("ACCEPTED", "SETTLED"), invoice
