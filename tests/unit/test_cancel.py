"""Cancellation wakes every wait at once, without polling."""
import threading
import time

import pytest

from golem_sync import GolemCancelledError, GolemTimeoutError
from golem_sync._abandonable import AbandonableCalls
from golem_sync._cancel import CancelToken, Inbox


def _cancel_later(token, delay=0.05):
    threading.Timer(delay, token.cancel, args=("stop",)).start()


def test_inbox_get_wakes_on_cancel():
    token, inbox = CancelToken(), Inbox()
    _cancel_later(token)
    started = time.monotonic()
    with pytest.raises(GolemCancelledError, match="stop"):
        inbox.get(token, timeout=10)
    assert time.monotonic() - started < 1.0


def test_inbox_times_out_naming_the_phase():
    with pytest.raises(GolemTimeoutError) as info:
        Inbox().get(CancelToken(), timeout=0.05, phase="proposal")
    assert info.value.phase == "proposal"


def test_inbox_delivers_in_order():
    token, inbox = CancelToken(), Inbox()
    inbox.put(1)
    inbox.put(2)
    assert [inbox.get(token, 1), inbox.get(token, 1)] == [1, 2]


def test_child_token_follows_parent_but_not_the_reverse():
    parent = CancelToken()
    child = parent.child()
    other = parent.child()
    other.cancel("only me")
    assert not parent.cancelled and not child.cancelled
    parent.cancel("all")
    assert child.cancelled and child.reason == "all"


def test_blocking_call_returns_result_or_stops_waiting_on_cancel():
    pool = AbandonableCalls(2)
    try:
        token = CancelToken()
        assert pool.call(token, lambda x: x * 2, 21) == 42
        release = threading.Event()
        _cancel_later(token)
        started = time.monotonic()
        with pytest.raises(GolemCancelledError):
            pool.call(token, release.wait, 10)
        assert time.monotonic() - started < 1.0
        release.set()
    finally:
        pool.shutdown()


def test_callbacks_run_once_and_late_registration_runs_at_once():
    token = CancelToken()
    calls = []
    token.on_cancel(lambda: calls.append("a"))
    assert token.cancel() is True
    assert token.cancel() is False
    token.on_cancel(lambda: calls.append("late"))
    assert calls == ["a", "late"]


def test_an_abandoned_call_hands_what_it_created_to_its_cleanup():
    pool = AbandonableCalls(2)
    try:
        token = CancelToken()
        release = threading.Event()
        cleaned = []
        _cancel_later(token)
        with pytest.raises(GolemCancelledError):
            pool.call(token, lambda: (release.wait(5), "activity-1")[1], on_abandon=cleaned.append)
        assert cleaned == []  # not created yet
        release.set()
    finally:
        pool.shutdown(wait=True)  # waits for the abandoned call and its cleanup
    assert cleaned == ["activity-1"]


def test_an_abandoned_call_that_fails_needs_no_cleanup():
    pool = AbandonableCalls(2)
    token = CancelToken()
    release = threading.Event()
    cleaned = []

    def fails():
        release.wait(5)
        raise RuntimeError("create refused")

    _cancel_later(token)
    with pytest.raises(GolemCancelledError):
        pool.call(token, fails, on_abandon=cleaned.append)
    release.set()
    pool.shutdown(wait=True)
    assert cleaned == []


def test_a_bounded_inbox_drops_the_oldest_items_and_counts_them():
    token, inbox = CancelToken(), Inbox(limit=10, weight=len)
    for word in ("aaaa", "bbbb", "cccc", "dd"):
        inbox.put(word)
    # 4+4+4 > 10: "aaaa" went; the newest items are kept in order.
    assert (inbox.dropped, inbox.dropped_weight, inbox.weight) == (1, 4, 10)
    assert [inbox.get(token, 1) for _ in range(3)] == ["bbbb", "cccc", "dd"]
    assert inbox.weight == 0
    inbox.put("x" * 50)  # a single item above the limit is still delivered
    assert inbox.get(token, 1) == "x" * 50 and inbox.dropped == 1
