"""The devnet provider ends, over REST, an activity whose exe-unit lost its bus to yagna.

A real exe-unit process reports Terminated to yagna itself; when its bus connection died with a
yagna restart it cannot, and ya-provider marks the activity Terminated when the process is gone.
The devnet's emulated exe-unit stays in memory, so the agent must do that reporting: both when it
reaps lost exe-units after the restart and when a DestroyActivity event gets there first. Also:
destroys run concurrently, as ya-provider's do. No daemon: the agent is built but not started, its REST client replaced by a recorder.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from golem_sync.devnet.provider import ProviderSpec
from golem_sync.devnet.provider.activity import DESTROY_THREADS, ActivityWatcher
from golem_sync.devnet.provider.agent import ProviderAgent
from golem_sync.devnet.provider.state import ActivityRecord


class RecordingRest:
    def __init__(self) -> None:
        self.calls: List[Tuple[str, str, str, Any]] = []

    def call(self, method: str, api: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((method, api, path, kwargs.get("json")))
        return None


class Connection:
    def __init__(self, closed: bool) -> None:
        self.closed = closed


class ExeUnit:
    def __init__(self, connection_closed: bool) -> None:
        self.connection = Connection(connection_closed)
        self.stopped_with: List[str] = []

    def usage(self) -> List[float]:
        return [0.0, 1.0]

    def stop(self, reason: str, timeout: float = 5.0) -> None:
        self.stopped_with.append(reason)  # over a dead bus, nothing reaches yagna


def agent_with_activity(tmp_path: Path, *, connection_closed: bool) -> Tuple[ProviderAgent, RecordingRest, ExeUnit]:
    agent = ProviderAgent(spec=ProviderSpec(name="p"), api_url="http://127.0.0.1:9", app_key="k",
                          node_id="0x" + "1" * 40, gsb_url="tcp://127.0.0.1:9", subnet="s", work_root=tmp_path)
    rest = RecordingRest()
    agent._rest = rest  # type: ignore[assignment]
    unit = ExeUnit(connection_closed)
    record = ActivityRecord("act-1", "agr-1", tmp_path, unit)
    record.state = "Running"
    agent._activities["act-1"] = record
    return agent, rest, unit


def terminated_puts(rest: RecordingRest) -> List[Any]:
    return [body for method, _, path, body in rest.calls
            if method == "PUT" and path == "/activity/act-1/state" and body["state"][0] == "Terminated"]


@pytest.mark.parametrize("end", ["destroy event", "reap after restart"])
def test_an_activity_whose_exeunit_lost_yagna_is_marked_terminated_over_rest(tmp_path: Path, end: str) -> None:
    agent, rest, unit = agent_with_activity(tmp_path, connection_closed=True)
    if end == "destroy event":
        agent._on_destroy("act-1", "agr-1")
    else:
        assert agent.reap_lost_exeunits() == ["act-1"]
    assert unit.stopped_with
    assert len(terminated_puts(rest)) == 1


def test_the_destroy_event_then_the_reap_mark_it_terminated_once(tmp_path: Path) -> None:
    agent, rest, _ = agent_with_activity(tmp_path, connection_closed=True)
    agent._on_destroy("act-1", "agr-1")
    assert agent.reap_lost_exeunits() == []
    assert len(terminated_puts(rest)) == 1


def test_a_live_exeunit_reports_its_own_end(tmp_path: Path) -> None:
    agent, rest, unit = agent_with_activity(tmp_path, connection_closed=False)
    agent._on_destroy("act-1", "agr-1")
    assert unit.stopped_with == ["activity destroyed by the requestor"]
    assert terminated_puts(rest) == []  # the exe-unit itself tells yagna over its bus


# -- destroys run on threads of their own ------------------------------------------------------

class EventRest:
    """Hands out ``events`` on the first poll, then sets ``stop`` (the agent stopping) and has none."""

    def __init__(self, events: List[Dict[str, Any]], stop: threading.Event) -> None:
        self._events, self._stop = events, stop

    def poll(self, api: str, path: str, *, timeout: float, params: Any) -> List[Dict[str, Any]]:
        events, self._events = self._events, []
        if not events:
            self._stop.set()
        return events


def destroy_events(n: int) -> List[Dict[str, Any]]:
    return [{"eventType": "DestroyActivity", "activityId": f"act-{i}", "agreementId": f"agr-{i}",
             "eventDate": "2026-12-02T10:00:00Z"} for i in range(n)]


def test_destroys_run_at_once_and_the_ones_not_begun_when_the_agent_stops_are_dropped() -> None:
    stop, release = threading.Event(), threading.Event()
    begun: List[str] = []
    lock = threading.Lock()

    def on_destroy(activity_id: str, agreement_id: str) -> None:
        with lock:
            begun.append(activity_id)
        release.wait(10)  # an exe-unit slow to shut down

    n = DESTROY_THREADS + 4
    watcher = ActivityWatcher(EventRest(destroy_events(n), stop), stop=stop, on_create=lambda a, b: None,  # type: ignore[arg-type]
                              on_destroy=on_destroy, poll_timeout=0.1, label="p")
    thread = threading.Thread(target=watcher.run)
    thread.start()
    assert stop.wait(10)
    deadline = time.monotonic() + 10
    while len(begun) < DESTROY_THREADS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(begun) == DESTROY_THREADS  # concurrently, not one after the other
    thread.join(1.0)
    assert thread.is_alive()  # the stopped watcher waits for the destroys in progress
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    # The agent stops every exe-unit itself: destroys still queued at its stop are not run.
    assert len(begun) == DESTROY_THREADS
