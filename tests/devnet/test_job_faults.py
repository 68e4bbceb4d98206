"""Jobs against misbehaving providers: terminated agreements, unapproved agreements, retries."""
from __future__ import annotations

import threading

import pytest

from golem_sync import GolemAgreementError, JobState, signals

from hygiene import YagnaProbe
from test_job_api import Recorder, make_network, requestor_threads

pytestmark = pytest.mark.devnet


@pytest.fixture(scope="module")
def faulty_devnet():
    from golem_sync.devnet.launcher import Devnet
    from golem_sync.devnet.provider import ProviderFaults, ProviderSpec

    specs = [
        ProviderSpec(name="quitter", faults=ProviderFaults(terminate_agreement_after=1.5)),
        ProviderSpec(name="stubborn", faults=ProviderFaults(never_approve=True)),
        ProviderSpec(name="steady"),
        ProviderSpec(name="biller", faults=ProviderFaults(debit_note_interval=0.5)),
    ]
    devnet = Devnet(providers=specs)
    try:
        yield devnet.up()
    finally:
        devnet.down()


@pytest.fixture
def faulty(faulty_devnet):
    recorder = Recorder()
    network = make_network(faulty_devnet).init()
    yield network, recorder
    network.close()
    recorder.close()
    YagnaProbe(faulty_devnet.api_url, faulty_devnet.app_key).assert_clean(
        recorder.ids("agreement-created", "agreement_id"), recorder.ids("activity-created", "activity_id"),
        network.allocation_id, invoiced=recorder.ids("agreement-approved", "agreement_id"))
    assert requestor_threads() == []


def only(*names):
    return {"allowed_provider_names": list(names)}


def test_provider_terminating_mid_job_fails_it_with_a_clear_error(faulty):
    network, recorder = faulty
    job = network.create_job(market=only("quitter"))
    job.start_work(lambda ctx: ctx.run("sleep 20"))
    with pytest.raises(GolemAgreementError, match="provider quitter terminated agreement"):
        job.wait_for_result(timeout=60)
    assert job.state is JobState.REJECTED
    assert recorder.names_for(job) == ["job-created", "job-started", "job-failed", "job-ended"]
    assert [kw["by"] for n, _, kw in recorder.events if n == "agreement-terminated"] == ["Provider"]


def test_retry_moves_the_job_to_another_provider(faulty):
    network, recorder = faulty
    quitter_gone = threading.Event()
    signals.agreement_terminated.connect(lambda sender, **kw: quitter_gone.set(), weak=False)
    # Deterministic order: the quitter first; the steady provider only once the quitter has failed.
    allow = lambda p: p.provider_name == "quitter" or (p.provider_name == "steady" and quitter_gone.is_set())
    job = network.create_job(market={"proposal_filter": allow}, job={"max_retries": 1})
    job.start_work(lambda ctx: (ctx.run("sleep 3"), ctx.provider_name)[1])
    assert job.wait_for_result(timeout=90) == "steady"
    assert job.state is JobState.DONE
    assert len(recorder.ids("agreement-approved", "agreement_id")) == 2
    # started fires once, however many providers the job needed
    assert recorder.names_for(job) == ["job-created", "job-started", "job-succeeded", "job-ended"]


def test_a_provider_that_never_approves_is_skipped(faulty):
    network, recorder = faulty
    tried = threading.Event()

    def allow(p):
        return p.provider_name == "stubborn" or (p.provider_name == "steady" and tried.is_set())

    signals.agreement_created.connect(lambda sender, **kw: tried.set(), weak=False)
    job = network.create_job(market={"proposal_filter": allow}, agreement={"approval_timeout_sec": 2})
    job.start_work(lambda ctx: ctx.provider_name)
    assert job.wait_for_result(timeout=60) == "steady"
    created = recorder.ids("agreement-created", "agreement_id")
    approved = recorder.ids("agreement-approved", "agreement_id")
    assert len(created) == 2 and len(approved) == 1


def test_a_provider_billing_too_often_fails_the_job_and_loses_the_agreement(faulty):
    network, recorder = faulty
    job = network.create_job(market=only("biller"))
    job.start_work(lambda ctx: ctx.run("sleep 20"))
    with pytest.raises(GolemAgreementError, match="more often than the agreed interval"):
        job.wait_for_result(timeout=60)
    assert job.state is JobState.REJECTED
    assert recorder.ids("debit-note-rejected", "reason")
