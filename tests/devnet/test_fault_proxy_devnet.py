"""Real golem_sync jobs through the devnet's fault proxy, with faults on the requestor's own yagna calls.

Every test ends with the yagna audit (read from yagna directly, not through the proxy): nothing
Approved, no activity alive, every invoice accepted, the allocation released, no requestor thread.
"""
from __future__ import annotations

import time

import pytest

from golem_sync import JobState

from hygiene import YagnaProbe
from test_job_api import Recorder, make_network
from test_pool_devnet import audit

pytestmark = pytest.mark.devnet

#: Matches every call and never acts: its ``matched`` counter counts the calls through the proxy.
COUNT_ALL = dict(path="*", status=599, nth=10**9)


@pytest.fixture
def faulty(golem_devnet, golem_devnet_proxy):
    """(proxy rule API, a network through the proxy, recorder); audited through yagna at the end.

    Rules stay on while the network closes (invoices are accepted then); the fixture clears them after.
    """
    recorder = Recorder()
    network = make_network(golem_devnet.via_proxy()).init()
    try:
        yield golem_devnet_proxy, network, recorder
        audit(network, recorder, YagnaProbe(golem_devnet.api_url, golem_devnet.app_key))
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
        audit(network, recorder, YagnaProbe(golem_devnet.api_url, golem_devnet.app_key))
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


def test_a_dropped_answer_to_an_invoice_accept(faulty):
    # yagna accepted the invoice, but golem_sync never hears it (the audit checks it is ACCEPTED).
    proxy, network, recorder = faulty
    rule = proxy.add_rule(method="POST", path=r"/payment-api/v1/invoices/[^/]+/accept", regex=True,
                          drop_response=True, nth=1)
    _, result = run_one(network)
    assert result == "through the proxy"
    network.close()  # waits for the invoice
    assert proxy.hits[rule] == 1
