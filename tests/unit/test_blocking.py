"""AbandonableCalls: cancelled calls never run late, close() does not wait out abandoned read-only calls
(audit #12), and an abortable_reads client frees the abandoned call's thread at once."""
from __future__ import annotations

import threading
import time

import pytest

from golem_sync._abandonable import AbandonableCalls
from golem_sync._cancel import CancelToken
from golem_sync.errors import GolemCancelledError, YagnaUnreachableError
from golem_sync.yagna import YagnaClient, YagnaConfig


def test_a_queued_call_withdrawn_by_cancel_never_runs():
    blocking = AbandonableCalls(1)
    gate = threading.Event()
    ran = []
    busy = threading.Thread(target=blocking.call, args=(CancelToken(), gate.wait, 10))
    busy.start()  # occupies the only worker
    time.sleep(0.1)
    token = CancelToken()
    threading.Timer(0.1, token.cancel).start()
    with pytest.raises(GolemCancelledError):
        blocking.call(token, ran.append, "late")
    gate.set()
    busy.join(5)
    blocking.shutdown()
    time.sleep(0.1)
    assert ran == []


def test_shutdown_does_not_wait_for_an_abandoned_read_only_call():
    blocking = AbandonableCalls(2)
    release = threading.Event()
    token = CancelToken()
    threading.Timer(0.1, token.cancel).start()
    with pytest.raises(GolemCancelledError):
        blocking.call(token, release.wait, 10)  # a long poll nobody can abort
    started = time.monotonic()
    blocking.shutdown(wait=True)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 1.0, f"shutdown waited {elapsed:.1f}s for an abandoned read-only call"


def test_shutdown_waits_for_the_cleanup_of_an_abandoned_call_that_creates_something():
    blocking = AbandonableCalls(2)
    cleaned = []
    token = CancelToken()

    def create() -> str:
        time.sleep(0.5)
        return "act-1"

    threading.Timer(0.1, token.cancel).start()
    with pytest.raises(GolemCancelledError):
        blocking.call(token, create, on_abandon=cleaned.append)
    assert blocking.shutdown(wait=True, cleanup_timeout=10)
    assert cleaned == ["act-1"]


def test_shutdown_calls_abort_and_bounds_the_cleanup_wait():
    aborted = []
    blocking = AbandonableCalls(2, abort=lambda: aborted.append(True))
    gate = threading.Event()
    token = CancelToken()
    threading.Timer(0.1, token.cancel).start()
    with pytest.raises(GolemCancelledError):
        blocking.call(token, gate.wait, 10, on_abandon=lambda _: None)
    started = time.monotonic()
    assert blocking.shutdown(wait=True, cleanup_timeout=0.3) is False
    assert time.monotonic() - started < 3.0
    assert aborted == [True]
    gate.set()


def test_cancel_aborts_a_long_poll_made_through_abortable_reads(server):
    from golem_sync._abandonable import abortable_reads

    server.script((0, None))  # yagna holds the approval wait and never answers
    client = YagnaClient(YagnaConfig(app_key="k", api_url=server.url, retries=0))
    blocking = AbandonableCalls(2)
    token = CancelToken()
    calls = []
    ended = threading.Event()

    def wait_for_approval(reads: YagnaClient) -> str:
        started = time.monotonic()
        try:
            return reads.market.wait_for_approval("agr-1", 30)
        except Exception as exc:  # noqa: BLE001 - the type is asserted below
            calls.append(exc)
            raise
        finally:
            calls.append(time.monotonic() - started)
            ended.set()

    with abortable_reads(client, token) as reads:
        threading.Timer(0.3, token.cancel).start()
        with pytest.raises(GolemCancelledError):
            blocking.call(token, wait_for_approval, reads)
    assert blocking.shutdown(wait=True)
    assert ended.wait(5), "the abandoned approval wait still holds its pool thread"
    assert isinstance(calls[0], YagnaUnreachableError)
    assert calls[1] < 3.0, f"the abandoned approval wait held its thread {calls[1]:.1f}s"
    client.close()


def test_a_wait_limit_that_runs_out_raises_golem_timeout_error_naming_the_phase():
    from golem_sync.errors import GolemError, GolemTimeoutError

    blocking = AbandonableCalls(1)
    gate = threading.Event()
    try:
        with pytest.raises(GolemTimeoutError) as info:
            blocking.call(CancelToken(), gate.wait, 10, wait_limit=0.05, phase="approval")
        assert info.value.phase == "approval"
        assert isinstance(info.value, (GolemError, TimeoutError))
        with pytest.raises(GolemTimeoutError) as unnamed:
            blocking.call(CancelToken(), gate.wait, 10, wait_limit=0.05)
        assert unnamed.value.phase == "wait"  # the function's name when no phase is given
    finally:
        gate.set()
        blocking.shutdown()


# -- read clients lent to job threads (AbandonableCalls.reads) ------------------------------------

def _state_reply():
    return (200, {"state": ["Ready", None]})


def test_a_read_client_lent_for_a_clean_block_is_lent_again_on_the_same_connection(server):
    server.script(_state_reply(), _state_reply())
    client = YagnaClient(YagnaConfig(app_key="k", api_url=server.url, retries=0))
    blocking = AbandonableCalls(1)
    try:
        with blocking.reads(client, CancelToken()) as first:
            first.activity.get_state("act-1")
        with blocking.reads(client, CancelToken()) as second:
            second.activity.get_state("act-1")
        assert second is first
        assert server.requests[0]["peer"] == server.requests[1]["peer"], "a new connection per block"
    finally:
        blocking.shutdown()
        client.close()


def test_a_cancelled_or_failed_block_does_not_lend_its_client_again(server):
    server.script(_state_reply(), _state_reply(), _state_reply())
    client = YagnaClient(YagnaConfig(app_key="k", api_url=server.url, retries=0))
    blocking = AbandonableCalls(1)
    try:
        token = CancelToken()
        with blocking.reads(client, token) as cancelled:
            cancelled.activity.get_state("act-1")
            token.cancel()
        assert cancelled.transport.aborted
        with pytest.raises(RuntimeError):
            with blocking.reads(client, CancelToken()) as failed:
                failed.activity.get_state("act-1")
                raise RuntimeError("the caller's own error")
        assert failed is not cancelled and failed.transport.aborted
        with blocking.reads(client, CancelToken()) as fresh:
            fresh.activity.get_state("act-1")
        assert fresh is not failed and fresh is not cancelled
    finally:
        blocking.shutdown()
        client.close()


def test_shutdown_closes_idle_read_clients_and_keeps_none_lent_afterwards(server):
    server.script(_state_reply(), _state_reply())
    client = YagnaClient(YagnaConfig(app_key="k", api_url=server.url, retries=0))
    blocking = AbandonableCalls(1)
    with blocking.reads(client, CancelToken()) as idle:
        idle.activity.get_state("act-1")
    blocking.shutdown()
    assert idle.transport.aborted
    with blocking.reads(client, CancelToken()) as late:  # still works after shutdown, but is not kept
        late.activity.get_state("act-1")
    assert late is not idle and late.transport.aborted
    client.close()


def test_cancel_ends_an_approval_wait_at_once_without_a_helper_thread(server):
    from golem_sync._market.proposals import ProposalView
    from golem_sync._market.signing import sign
    from golem_sync._options import AgreementOptions

    server.script((201, "agr-1"), (204, None), (0, None),  # create, confirm, a wait yagna never answers
                  (404, {"message": "gone"}))  # release: the agreement is already over
    client = YagnaClient(YagnaConfig(app_key="k", api_url=server.url, retries=0))
    blocking = AbandonableCalls(2)
    token = CancelToken()
    proposal = ProposalView("prop-1", "0xprov", "Draft", {"golem.node.id.name": "p1"})
    threading.Timer(0.3, token.cancel).start()
    started = time.monotonic()
    try:
        with pytest.raises(GolemCancelledError):
            sign(client, blocking, token, proposal, AgreementOptions(approval_timeout_sec=30), "s", None)
        assert time.monotonic() - started < 3.0
        assert not [t for t in threading.enumerate() if t.name.startswith("golem-io")], \
            "the approval wait used a helper thread"
        assert [r["path"].split("?")[0] for r in server.requests][:3] == [
            "/market-api/v1/agreements", "/market-api/v1/agreements/agr-1/confirm",
            "/market-api/v1/agreements/agr-1/wait"]
    finally:
        server.release.set()
        blocking.shutdown()
        client.close()


def _io_threads():
    return [t for t in threading.enumerate() if t.name.startswith("golem-io")]


def test_no_io_thread_is_kept_once_the_calls_are_done():
    blocking = AbandonableCalls(4)
    gate = threading.Barrier(5)
    try:
        callers = [threading.Thread(target=blocking.call, args=(CancelToken(), gate.wait, 5)) for _ in range(4)]
        for caller in callers:
            caller.start()
        gate.wait(5)  # all four calls run at once, each on its own thread
        for caller in callers:
            caller.join(5)
        deadline = time.monotonic() + 2
        while _io_threads() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _io_threads() == [], "idle golem-io threads were kept after the calls ended"
    finally:
        blocking.shutdown()


def test_calls_beyond_max_workers_wait_in_order_and_all_run():
    blocking = AbandonableCalls(2)
    running, most = [0], [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i

    results = []
    callers = [threading.Thread(target=lambda i=i: results.append(blocking.call(CancelToken(), work, i)))
               for i in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(5)
    blocking.shutdown()
    assert sorted(results) == list(range(6))
    assert most[0] == 2
