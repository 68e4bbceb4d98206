"""Real golem_sync jobs through the devnet's fault proxy, with faults on the requestor's own yagna calls.

Every test ends with the yagna audit (read from yagna directly, not through the proxy): nothing
Approved, no activity alive, every invoice accepted, the allocation released, no requestor thread.
One allowance: an agreement whose confirm never reached yagna stays a ``Proposal`` there. yagna
0.17 cannot cancel it (the provider never saw it, so the cancel fails with "not found") and lets it
expire; it binds nobody, so the audit accepts it (``audit_through_faults``).
"""
from __future__ import annotations

import time

import pytest

from golem_sync import JobState

from hygiene import YagnaProbe
from test_job_api import Recorder, make_network, requestor_threads

pytestmark = pytest.mark.devnet

#: Matches every call and never acts: its ``matched`` counter counts the calls through the proxy.
COUNT_ALL = dict(path="*", status=599, nth=10**9)


def audit_through_faults(network, recorder, probe: YagnaProbe) -> list:
    """Close ``network`` and audit yagna; return the never-confirmed agreements it left as Proposals."""
    network.close()
    created = recorder.ids("agreement-created", "agreement_id")
    unconfirmed = [a for a in created if probe.agreement_state(a) == "Proposal"]
    activities = {*recorder.ids("activity-created", "activity_id"), *recorder.ids("activity-destroyed", "activity_id")}
    probe.assert_clean([a for a in created if a not in unconfirmed], activities, network.allocation_id,
                       invoiced=[a for a in recorder.ids("agreement-approved", "agreement_id") if a not in unconfirmed])
    assert requestor_threads() == []
    return unconfirmed


@pytest.fixture
def faulty(golem_devnet, golem_devnet_proxy):
    """(proxy rule API, a network through the proxy, recorder); audited through yagna at the end.

    Rules stay on while the network closes (invoices are accepted then); the fixture clears them after.
    """
    recorder = Recorder()
    network = make_network(golem_devnet.via_proxy()).init()
    try:
        yield golem_devnet_proxy, network, recorder
        unconfirmed = audit_through_faults(network, recorder, YagnaProbe(golem_devnet.api_url, golem_devnet.app_key))
        assert len(unconfirmed) <= sum(r.fired for r in golem_devnet_proxy.rules() if "confirm" in r.rule.path
                                       or r.rule.path == "*"), unconfirmed
    finally:
        network.close()
        recorder.close()


def echo(ctx):
    return ctx.run("echo through the proxy").stdout.strip()


def run_one(network, work=echo, timeout=90, **job_options):
    job = network.create_job(**job_options)
    job.start_work(work)
    result = job.wait_for_result(timeout=timeout)
    assert job.state is JobState.DONE
    return job, result


def test_a_job_passes_through_the_proxy_unchanged(faulty):
    proxy, network, recorder = faulty
    counter = proxy.add_rule(**COUNT_ALL)
    _, result = run_one(network)
    assert result == "through the proxy"
    [stats] = proxy.rules()
    assert stats.id == counter and stats.matched > 10 and stats.fired == 0


def test_a_500_on_the_first_activity_create_moves_on(faulty):
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path="/activity-api/v1/activity", status=500, nth=1)
    _, result = run_one(network, job={"max_retries": 1})
    assert result == "through the proxy"
    assert proxy.hits[rule] == 1


def test_a_delay_on_exec_only_slows_the_job(faulty):
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path=r"/activity-api/v1/activity/[^/]+/exec", regex=True, delay=3)
    t0 = time.monotonic()
    _, result = run_one(network)
    assert result == "through the proxy" and time.monotonic() - t0 >= 3
    assert proxy.hits[rule] >= 1


def test_a_reset_on_a_debit_note_accept(golem_devnet, golem_devnet_proxy):
    # Debit notes every 2 s: the first accept is reset, later (cumulative) ones go through.
    proxy = golem_devnet_proxy
    recorder = Recorder()
    network = make_network(golem_devnet.via_proxy(), market={"subnet_tag": golem_devnet.subnet,
                                                              "debit_note_interval_sec": 2}).init()
    try:
        rule = proxy.add_rule(method="POST", path=r"/payment-api/v1/debitNotes/[^/]+/accept", regex=True,
                              reset=True, nth=1)
        _, result = run_one(network, work=lambda ctx: ctx.run("sleep 7; echo slept").stdout.strip())
        assert result == "slept"
        assert proxy.hits[rule] == 1
        assert recorder.ids("debit-note-accepted", "amount")
        assert audit_through_faults(network, recorder, YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)) == []
    finally:
        network.close()
        recorder.close()


def test_a_dropped_answer_to_an_agreement_confirm(faulty):
    # yagna confirmed (and the provider approves), but golem_sync never hears it.
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path=r"/market-api/v1/agreements/[^/]+/confirm", regex=True,
                          drop_response=True, nth=1)
    _, result = run_one(network, job={"max_retries": 1})
    assert result == "through the proxy"
    assert proxy.hits[rule] == 1


def test_a_500_on_the_first_agreement_confirm(golem_devnet, golem_devnet_proxy):
    # yagna never saw the confirm: the job moves on to another agreement; the first one stays a
    # Proposal in yagna (the provider never saw it), which golem_sync tried, and failed, to cancel.
    proxy = golem_devnet_proxy
    recorder = Recorder()
    network = make_network(golem_devnet.via_proxy()).init()
    try:
        rule = proxy.add_rule(method="POST", path=r"/market-api/v1/agreements/[^/]+/confirm", regex=True,
                              status=500, nth=1)
        _, result = run_one(network, job={"max_retries": 1})
        assert result == "through the proxy"
        assert proxy.hits[rule] == 1
        unconfirmed = audit_through_faults(network, recorder, YagnaProbe(golem_devnet.api_url, golem_devnet.app_key))
        assert len(unconfirmed) == 1 and len(recorder.ids("agreement-approved", "agreement_id")) == 1
    finally:
        network.close()
        recorder.close()


def test_a_dropped_answer_to_an_invoice_accept(faulty):
    # yagna accepted the invoice, but golem_sync never hears it (the audit checks it is ACCEPTED).
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path=r"/payment-api/v1/invoices/[^/]+/accept", regex=True,
                          drop_response=True, nth=1)
    _, result = run_one(network)
    assert result == "through the proxy"
    network.close()  # waits for the invoice
    assert proxy.hits[rule] == 1


def test_a_500_on_the_first_agreement_terminate(faulty):
    # The agreement must still end Terminated (the audit), not stay Approved.
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path=r"/market-api/v1/agreements/[^/]+/terminate", regex=True,
                          status=500, nth=1)
    run_one(network)
    network.close()
    assert proxy.hits[rule] == 1


def test_a_500_on_the_first_invoice_accept(faulty):
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path=r"/payment-api/v1/invoices/[^/]+/accept", regex=True,
                          status=500, nth=1)
    run_one(network)
    network.close()
    assert proxy.hits[rule] == 1


def test_a_dropped_answer_to_an_activity_create(faulty):
    # yagna created the activity, golem_sync never learns its id: the agreement's end must take it down.
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path="/activity-api/v1/activity", drop_response=True, nth=1)
    _, result = run_one(network, job={"max_retries": 1})
    assert result == "through the proxy"
    assert proxy.hits[rule] == 1


def test_a_dropped_answer_to_the_demand_leaves_no_duplicate(faulty, golem_devnet):
    # yagna created the demand, golem_sync never hears it: the demand is adopted, not posted again,
    # so nothing of ours stays on the market until its expiration.
    proxy, network, recorder = faulty
    probe = YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)
    before = {d["demandId"] for d in probe.get("/market-api/v1/demands").json()}
    rule = proxy.add_rule(method="POST", path="/market-api/v1/demands", drop_response=True, nth=1)
    _, result = run_one(network)
    assert result == "through the proxy"
    assert proxy.hits[rule] == 1
    [adopted] = recorder.ids("demand-subscribed", "demand_id")
    assert recorder.ids("demand-unsubscribed", "demand_id") == [adopted]
    response = probe.get("/market-api/v1/demands")
    response.raise_for_status()
    assert [d["demandId"] for d in response.json() if d["demandId"] not in before] == []


def test_jobs_under_a_fault_rate_on_every_call(faulty):
    # What the soak benchmark does, small: 3% of yagna calls answer 500, 3% are reset.
    proxy, network, recorder = faulty
    proxy.add_rule(path="*", status=500, probability=0.03, seed=11)
    proxy.add_rule(path="*", reset=True, probability=0.03, seed=12)
    # A job excludes each provider it failed on (a yagna fault on exec counts as the provider's), so
    # with the devnet's 2 providers one retry is all a job can use; more would wait for a third provider.
    jobs = [network.create_job(job={"max_retries": 1, "startup_timeout_sec": 60}) for _ in range(4)]
    for job in jobs:
        job.start_work(echo)
    for job in jobs:
        try:
            job.wait_for_result(timeout=120)
        except Exception as exc:  # a typed error is a fair end under faults; hanging is not
            assert type(exc).__module__.startswith("golem_sync"), repr(exc)
        assert job.state in (JobState.DONE, JobState.REJECTED), job.state
    assert sum(proxy.hits.values()) > 0


def test_a_reset_on_the_first_exec_results_read(faulty):
    # The results stream/poll of the batch is cut once: the job still gets its output.
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="GET", path=r"/activity-api/v1/activity/[^/]+/exec/[^/]+", regex=True,
                          reset=True, nth=1)
    _, result = run_one(network, job={"max_retries": 1})
    assert result == "through the proxy"
    assert proxy.hits[rule] == 1


def test_a_dropped_answer_to_an_exec(faulty):
    # yagna started the batch but golem_sync never learns its id: the job fails over or fails typed.
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path=r"/activity-api/v1/activity/[^/]+/exec", regex=True,
                          drop_response=True, nth=1)
    _, result = run_one(network, job={"max_retries": 1})
    assert result == "through the proxy"
    assert proxy.hits[rule] == 1
