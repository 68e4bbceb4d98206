"""Error paths of signing and releasing agreements (audit #10, #11, #12, S4, S8).

``release`` is driven through a scripted market (each call answers from a small state table);
whole-job behaviour runs against the stateful fake yagna (``fake_yagna``/``golem`` fixtures).
"""
from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest

from golem_sync._agreement import release
from golem_sync.errors import (YagnaAuthError, YagnaRequestError, YagnaServerError, YagnaTimeoutError)


class ScriptedMarket:
    """Agreements by id -> state; ``script[name]`` is a list of exceptions to raise (None = act)."""

    def __init__(self, states: Dict[str, str], **script: List[Any]) -> None:
        self.states = states
        self.script = script
        self.calls: List[str] = []
        self.on_cancel = None  # a hook run before a cancel acts (to let the provider "approve" first)

    def _next(self, name: str) -> None:
        self.calls.append(name)
        queue = self.script.get(name) or []
        if queue:
            error = queue.pop(0)
            if error is not None:
                raise error

    def get_agreement(self, aid: str) -> Any:
        self._next("get")
        return SimpleNamespace(state=self.states[aid])

    def cancel_agreement(self, aid: str, reason: Any) -> None:
        if self.on_cancel is not None:
            self.on_cancel(aid)
        self._next("cancel")
        if self.states[aid] == "Approved":
            raise YagnaRequestError("yagna rejected POST /agreements/x/cancel (409)", status=409)
        self.states[aid] = "Cancelled"

    def terminate_agreement(self, aid: str, reason: Any) -> None:
        self._next("terminate")
        self.states[aid] = "Terminated"


def client_of(market: ScriptedMarket) -> Any:
    return SimpleNamespace(market=market)


# -- #10: release() always ends the agreement ------------------------------------------------------

def test_release_terminates_when_the_provider_approves_during_the_cancel():
    market = ScriptedMarket({"a1": "Pending"})

    def approve_first(aid: str) -> None:
        market.states[aid] = "Approved"  # the provider's approval lands between our GET and our cancel
        market.on_cancel = None

    market.on_cancel = approve_first
    assert release(client_of(market), "a1", "Cancelled") == "terminated"
    assert market.states["a1"] == "Terminated"
    assert market.calls == ["get", "cancel", "get", "terminate"]


def test_release_retries_a_failed_terminate():
    market = ScriptedMarket({"a2": "Approved"}, terminate=[
        YagnaServerError("yagna failed (500)", status=500),
        YagnaTimeoutError("yagna did not answer POST /agreements/a2/terminate within 30s")])
    assert release(client_of(market), "a2", "Finished") == "terminated"
    assert market.states["a2"] == "Terminated"
    assert market.calls.count("terminate") == 3


def test_release_retries_a_failed_cancel_and_a_failed_read():
    market = ScriptedMarket({"a3": "Pending"}, get=[YagnaServerError("500", status=500)],
                            cancel=[YagnaServerError("502", status=502)])
    assert release(client_of(market), "a3", "Cancelled") == "cancelled"
    assert market.states["a3"] == "Cancelled"


def test_release_that_cannot_end_the_agreement_says_failed_loudly_and_within_bounds(caplog):
    errors = [YagnaServerError("yagna failed (500)", status=500) for _ in range(50)]
    market = ScriptedMarket({"a4": "Approved"}, terminate=errors)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="golem_sync.agreement"):
        assert release(client_of(market), "a4", "Finished") == "failed"
    assert time.monotonic() - started < 10.0
    assert 2 <= market.calls.count("terminate") <= 10  # retried, but a bounded number of times
    assert any(r.levelno == logging.ERROR and "a4" in r.getMessage() for r in caplog.records)


def test_release_does_not_retry_a_rejected_app_key():
    market = ScriptedMarket({"a5": "Approved"}, terminate=[YagnaAuthError("401", status=401)] * 10)
    assert release(client_of(market), "a5", "Finished") == "failed"
    assert market.calls.count("terminate") == 1


@pytest.mark.parametrize("state,says", [
    ("Proposal", "never confirmed, so the provider never saw it"),
    ("Pending", "not approved by the provider"),
])
def test_a_never_approved_agreement_that_cannot_be_cancelled_is_a_warning_not_live_at_the_provider(
        caplog, state, says):
    market = ScriptedMarket({"a7": state}, cancel=[YagnaAuthError("401", status=401)])
    with caplog.at_level(logging.DEBUG, logger="golem_sync.agreement"):
        assert release(client_of(market), "a7", "Cancelled") == "failed"
    records = [r for r in caplog.records if "a7" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(records) == 1 and records[0].levelno == logging.WARNING, records
    message = records[0].getMessage()
    assert "could not end agreement a7" in message and says in message and "expires" in message
    assert "stays live at the provider" not in message


@pytest.mark.parametrize("failing", ["terminate", "get"])  # "get": its state is never read (unknown)
def test_an_agreement_that_may_be_live_and_cannot_be_ended_is_an_error(caplog, failing):
    market = ScriptedMarket({"a8": "Approved"}, **{failing: [YagnaAuthError("401", status=401)]})
    with caplog.at_level(logging.DEBUG, logger="golem_sync.agreement"):
        assert release(client_of(market), "a8", "Finished") == "failed"
    records = [r for r in caplog.records if "a8" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(records) == 1 and records[0].levelno == logging.ERROR, records
    assert "stays live at the provider" in records[0].getMessage()


def test_release_of_an_ended_agreement_does_nothing():
    market = ScriptedMarket({"a6": "Terminated"})
    assert release(client_of(market), "a6", "Finished") == "nothing"
    assert market.calls == ["get"]


# -- #11: startup_timeout_sec bounds signing -------------------------------------------------------

def test_startup_timeout_bounds_signing_with_providers_that_never_approve(fake_yagna, golem):
    from golem_sync.errors import GolemTimeoutError

    fake_yagna.providers = ["0xp1", "0xp2", "0xp3", "0xp4"]
    fake_yagna.approve, fake_yagna.max_wait = False, 5.0
    job = golem().create_job()
    started = time.monotonic()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 1}, agreement={"approval_timeout_sec": 1.5})
    with pytest.raises(GolemTimeoutError) as caught:
        job.result(timeout=30)
    elapsed = time.monotonic() - started
    assert caught.value.phase == "agreement"
    assert elapsed < 3.0, f"startup took {elapsed:.1f}s against a 1 s startup_timeout_sec (4 x 1.5 s before)"
    # The half-made agreement was released, not left pending.
    assert all(state != "Pending" for state in fake_yagna.agreements.values()), fake_yagna.agreements


# -- S8: every proposal is answered ---------------------------------------------------------------

def test_drafts_not_chosen_are_rejected_once_an_agreement_is_signed(fake_yagna, golem):
    fake_yagna.providers = ["0xp1", "0xp2", "0xp3"]
    job = golem().create_job()
    job.start_work(lambda ctx: job.agreement_id)
    agreement_id = job.result(timeout=30)
    drafts = [p for p in fake_yagna.calls("POST", "/reject") if "/proposals/draft-" in p]
    assert len(drafts) == 2, fake_yagna.calls("POST", "/proposals/")
    assert fake_yagna.agreements[agreement_id] == "Terminated"


# -- #12: close() does not wait out an abandoned approval wait -----------------------------------

def test_close_after_a_cancel_during_approval_does_not_wait_out_the_approval_poll(fake_yagna, golem):
    fake_yagna.approve, fake_yagna.max_wait = False, 5.0  # the provider takes its time
    network = golem()
    job = network.create_job()
    job.start_work(lambda ctx: None, agreement={"approval_timeout_sec": 15})
    time.sleep(0.5)
    assert fake_yagna.calls("POST", "/wait"), "the job should be waiting for approval by now"
    job.cancel()
    started = time.monotonic()
    network.close()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"close() took {elapsed:.1f}s after a cancel (it waited out the 5 s poll before)"
    assert job.state.value == "cancelled"
    assert all(state == "Cancelled" for state in fake_yagna.agreements.values()), fake_yagna.agreements
    # The fake answers in-process (``responses``), so its held poll cannot be aborted like a socket:
    # let that thread finish before the fixture checks that no golem_sync thread survives.
    for thread in threading.enumerate():
        if thread.name.startswith("golem-io"):
            thread.join(10)


# -- S4: an agreement whose create POST timed out is found again and released ---------------------

def test_an_agreement_created_by_a_timed_out_post_is_found_and_cancelled(fake_yagna, golem):
    fake_yagna.providers = ["0xp1", "0xp2"]
    network = golem()
    real_create = network.client.market.create_agreement
    lost: List[str] = []

    def create_then_lose_the_answer(proposal_id: str, valid_to: Any) -> str:
        agreement_id = real_create(proposal_id, valid_to)
        if not lost:  # yagna created it, but the answer never reached us
            lost.append(agreement_id)
            raise YagnaTimeoutError("yagna did not answer POST /agreements within 30s", method="POST",
                                    path="/agreements")
        return agreement_id

    network.client.market.create_agreement = create_then_lose_the_answer
    job = network.create_job()
    job.start_work(lambda ctx: job.agreement_id)
    signed = job.result(timeout=30)
    assert lost and signed != lost[0]
    assert fake_yagna.agreements[lost[0]] == "Cancelled", fake_yagna.agreements


# -- the market could not produce an acceptable proposal: GolemMarketError (and still a timeout) ----

def test_every_proposal_rejected_is_a_market_error_and_still_a_startup_timeout(fake_yagna, golem):
    from golem_sync.errors import GolemMarketError, GolemNoProposalError, GolemTimeoutError

    fake_yagna.providers = ["0xp1", "0xp2"]
    job = golem().create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 0.6},
                   market={"proposal_filter": lambda proposal: False})
    with pytest.raises(GolemMarketError) as caught:
        job.result(timeout=30)
    error = caught.value
    assert isinstance(error, GolemNoProposalError) and isinstance(error, GolemTimeoutError)
    assert error.phase == "agreement"  # as before: proposals were seen, none signed
    assert error.proposals_seen >= 2
    assert error.rejections == {"rejected by proposal_filter": error.proposals_seen}
    assert "rejected by proposal_filter" in str(error)
    assert not fake_yagna.agreements  # nothing was signed


def test_no_proposal_at_all_is_a_market_error_of_phase_proposal(fake_yagna, golem):
    from golem_sync.errors import GolemMarketError, GolemTimeoutError

    fake_yagna.providers = []
    job = golem().create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 0.4})
    with pytest.raises(GolemMarketError) as caught:
        job.result(timeout=30)
    assert isinstance(caught.value, GolemTimeoutError) and caught.value.phase == "proposal"
    assert caught.value.proposals_seen == 0


def test_providers_that_never_approve_are_not_a_market_error(fake_yagna, golem):
    from golem_sync.errors import GolemMarketError, GolemTimeoutError

    fake_yagna.providers = ["0xp1"]
    fake_yagna.approve, fake_yagna.max_wait = False, 5.0
    job = golem().create_job()
    job.start_work(lambda ctx: None, job={"startup_timeout_sec": 0.6}, agreement={"approval_timeout_sec": 5})
    with pytest.raises(GolemTimeoutError) as caught:
        job.result(timeout=30)
    assert not isinstance(caught.value, GolemMarketError)  # an acceptable proposal was found
