"""Destroying an activity on every cleanup path: transient yagna failures are tried again, a
refusal or a gone activity is not, and none of it raises (the job's, the late create's and the
recovery's destroys share one function)."""
from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, List

import pytest

from golem_sync._activity.destroy import DESTROY_TRIES, destroy_activity
from golem_sync._recovery import recover
from golem_sync._options import PaymentOptions
from golem_sync.errors import YagnaNotFoundError, YagnaRequestError, YagnaServerError, YagnaTimeoutError


class FakeActivityApi:
    """Answers DELETE /activity with the given errors first, then success."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: List[Any] = []

    def destroy_activity(self, activity_id: str, timeout: Any = None) -> None:
        self.calls.append((activity_id, timeout))
        if self.errors:
            raise self.errors.pop(0)


def client_with(api: FakeActivityApi) -> Any:
    return SimpleNamespace(activity=api)


def test_a_transient_failure_is_tried_again_with_the_given_timeout():
    api = FakeActivityApi(YagnaTimeoutError("slow", status=408), YagnaServerError("busy", status=503))
    pauses: List[float] = []
    assert destroy_activity(client_with(api), "act-1", 7.0, sleep=pauses.append) is True
    assert api.calls == [("act-1", 7.0)] * 3
    assert pauses == [0.5, 1.0]


def test_it_gives_up_after_its_tries_and_says_so(caplog):
    api = FakeActivityApi(*[YagnaTimeoutError("slow", status=408)] * (DESTROY_TRIES + 2))
    with caplog.at_level(logging.ERROR, logger="golem_sync.activity"):
        assert destroy_activity(client_with(api), "act-1", 1.0, sleep=lambda s: None) is False
    assert len(api.calls) == DESTROY_TRIES
    assert f"could not destroy activity act-1 after {DESTROY_TRIES} tries" in caplog.text


@pytest.mark.parametrize("error, done", [(YagnaNotFoundError("gone", status=404), True),
                                         (YagnaRequestError("refused", status=400), False)])
def test_a_gone_activity_or_a_refusal_is_not_tried_again(error, done):
    api = FakeActivityApi(error)
    assert destroy_activity(client_with(api), "act-1", 1.0, sleep=lambda s: None) is done
    assert len(api.calls) == 1


class DeadOwnerStore:
    """One running job of a process that is gone, holding an activity (no agreement, no allocation)."""

    owner = "me"

    def __init__(self) -> None:
        self.record = SimpleNamespace(job_id="job-1", owner="dead", activity_id="act-9", agreement_id=None,
                                      allocation_id=None)

    def running(self) -> List[Any]:
        return [self.record]

    def owner_alive(self, owner: str) -> bool:
        return False

    def update(self, job_id: str, **changes: Any) -> bool:
        return True


def test_recovery_tries_a_timed_out_destroy_again(monkeypatch):
    """Before, the recovery of a dead process's job gave up on the first timeout and left its
    activity alive in yagna."""
    monkeypatch.setattr("golem_sync._activity.destroy.time.sleep", lambda s: None)
    api = FakeActivityApi(YagnaTimeoutError("slow", status=408))
    recovered, settler = recover(DeadOwnerStore(), client_with(api), PaymentOptions(), None)  # type: ignore[arg-type]
    assert recovered == ["job-1"] and settler is None
    assert [c[0] for c in api.calls] == ["act-9", "act-9"]
