"""ActivityApi against the real yagna, with the devnet's exe-unit emulator serving the activity.

The provider side (activity events, exe-unit, destroy handling) is driven from the test thread
with the same client; the requestor's blocking create/destroy calls run in helper threads.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from golem_sync.yagna import YagnaClient
from golem_sync.yagna.models import Capture, CaptureStream, Deploy, Run, Start

pytestmark = pytest.mark.yagna

exeunit_mod = pytest.importorskip("golem_sync.devnet.exeunit")


def _provider_event(provider: YagnaClient, kind: str, after: dt.datetime, activity_id: str = "",
                    timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in provider.activity.collect_activity_events(after, timeout=1.0):
            if ev.event_type == kind and (not activity_id or ev.activity_id == activity_id):
                return ev
            after = max(after, ev.event_date)
    raise AssertionError(f"no {kind} event within {timeout}s")


@pytest.fixture
def activity(requestor: YagnaClient, provider: YagnaClient, negotiator: Any, yagna_node: Any,
             tmp_path: Path) -> Iterator[Dict[str, Any]]:
    """An activity created by the requestor and served by an ExeUnit; destroyed at the end."""
    agreement_id = negotiator.agreement()
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    created: Dict[str, Any] = {}

    def create() -> None:
        started = time.monotonic()
        try:
            created["id"] = requestor.activity.create_activity(agreement_id, timeout=10.0)
        except BaseException as exc:  # reported below
            created["error"] = exc
        created["seconds"] = time.monotonic() - started

    creator = threading.Thread(target=create, name="create-activity")
    creator.start()
    event = _provider_event(provider, "CreateActivity", since)
    unit = exeunit_mod.ExeUnit(gsb_url=yagna_node.gsb_url, activity_id=event.activity_id,
                               agreement_id=agreement_id, work_dir=tmp_path / "act",
                               usage_vector=["golem.usage.duration_sec", "golem.usage.cpu_sec"])
    unit.start()
    try:
        creator.join(timeout=15)
        assert "error" not in created, created.get("error")
        assert created["id"] == event.activity_id
        yield {"id": created["id"], "agreement_id": agreement_id, "unit": unit, "since": since,
               "create_s": created["seconds"]}
    finally:
        unit.stop("test over")
        requestor.market.terminate_agreement(agreement_id, {"message": "test over"})


def test_exec_poll_stream_state_and_destroy(requestor: YagnaClient, provider: YagnaClient,
                                            activity: Dict[str, Any]) -> None:
    act_id = activity["id"]
    api = requestor.activity
    assert api.get_agreement_id(act_id) == activity["agreement_id"]
    assert api.get_state(act_id).state == "Initialized"

    # exec + poll
    t0 = time.monotonic()
    batch = api.exec(act_id, [Deploy(env={"A": "1"}), Start(),
                              Run("/bin/sh", ["-c", "echo hello; echo oops >&2"], capture=Capture.at_end())])
    results: List[Any] = []
    deadline = time.monotonic() + 10
    while not (results and results[-1].is_batch_finished) and time.monotonic() < deadline:
        results = api.get_batch_results(act_id, batch, timeout=2.0)
    poll_s = time.monotonic() - t0
    assert [(r.index, r.result) for r in results] == [(0, "Ok"), (1, "Ok"), (2, "Ok")]
    assert results[2].stdout == "hello\n" and results[2].stderr == "oops\n"
    assert api.get_state(act_id).state == "Ready"

    # a failing command: Error result, message, the batch ends there
    failing = api.exec(act_id, [Run("/bin/sh", ["-c", "exit 3"], capture=Capture.at_end())])
    res = api.get_batch_results(act_id, failing, timeout=5.0, command_index=0)
    assert res[0].result == "Error" and res[0].is_batch_finished

    # exec + SSE stream
    t1 = time.monotonic()
    streamed = api.exec(act_id, [Run("/bin/sh", ["-c", "echo streamed"],
                                     capture=Capture(stdout=CaptureStream(), stderr=CaptureStream()))])
    kinds = []
    out = ""
    with api.stream_batch(act_id, streamed, read_timeout=10.0) as stream:
        for ev in stream:
            assert ev.batch_id == streamed
            kinds.append(ev.kind)
            if ev.kind == "stdout":
                out += ev.output if isinstance(ev.output, str) else ev.output.decode()
            if ev.kind == "finished":
                assert ev.return_code == 0
                break
    sse_s = time.monotonic() - t1
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert out == "streamed\n"
    assert stream.closed

    usage = api.get_usage(act_id)
    assert usage.current_usage is not None and len(usage.current_usage) == 2

    # destroy: yagna answers once the provider side reported Terminated
    done: Dict[str, Any] = {}

    def destroy() -> None:
        try:
            api.destroy_activity(act_id, timeout=10.0)
            done["ok"] = True
        except BaseException as exc:
            done["error"] = exc

    t2 = time.monotonic()
    destroyer = threading.Thread(target=destroy, name="destroy-activity")
    destroyer.start()
    _provider_event(provider, "DestroyActivity", activity["since"], activity_id=act_id)
    activity["unit"].stop("destroyed by requestor")
    destroyer.join(timeout=15)
    assert done == {"ok": True}
    assert api.get_state(act_id).state == "Terminated"
    print(f"activity timings: create {activity['create_s']:.2f}s, deploy+start+run via poll {poll_s:.3f}s, "
          f"run via SSE {sse_s:.3f}s, destroy {time.monotonic() - t2:.2f}s")
