"""The devnet provider ends, over REST, an activity whose exe-unit lost its bus to yagna.

A real exe-unit process reports Terminated to yagna itself; when its bus connection died with a
yagna restart it cannot, and ya-provider marks the activity Terminated when the process is gone.
The devnet's emulated exe-unit stays in memory, so the agent must do that reporting: both when it
reaps lost exe-units after the restart and when a DestroyActivity event gets there first.
No daemon: the agent is built but not started, its REST client replaced by a recorder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import pytest

from golem_sync.devnet.provider import ProviderSpec
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
