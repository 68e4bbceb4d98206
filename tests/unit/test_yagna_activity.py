"""ActivityApi: request shapes and parsing (the SSE stream has its own test module)."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import responses

from golem_sync.errors import YagnaNotFoundError, YagnaProtocolError, YagnaRequestError, YagnaTimeoutError
from golem_sync.yagna import YagnaClient
from golem_sync.yagna.models import ActivityState, Capture, Deploy, Run, Start

A = "http://127.0.0.1:7465/activity-api/v1"
TS = "2024-05-01T10:00:00.000000001Z"


@pytest.mark.parametrize("answer", ["act-1", {"activityId": "act-1", "credentials": None}])
def test_create_activity_accepts_both_answer_shapes(client: YagnaClient, mocked: responses.RequestsMock,
                                                    sent: Any, answer: Any) -> None:
    mocked.post(f"{A}/activity", json=answer, status=201)
    assert client.activity.create_activity("agr-1", timeout=3.0) == "act-1"
    assert sent() == ("POST", "/activity-api/v1/activity", {"timeout": "3.0"}, {"agreementId": "agr-1"})


def test_create_activity_408_is_a_timeout(client: YagnaClient, mocked: responses.RequestsMock, calls: Any) -> None:
    mocked.post(f"{A}/activity", status=408, json={"message": "no provider"})
    with pytest.raises(YagnaTimeoutError):
        client.activity.create_activity("agr-1")
    assert len(calls()) == 1  # a POST that may have created something is never repeated


def test_exec_sends_the_script_as_text(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.post(f"{A}/activity/act-1/exec", json="batch-1")
    script = [Deploy(), Start(), Run("/bin/echo", ["hi"], capture=Capture.at_end())]
    assert client.activity.exec("act-1", script) == "batch-1"
    method, path, query, body = sent()
    assert (method, path, query) == ("POST", "/activity-api/v1/activity/act-1/exec", {})
    assert list(body) == ["text"]
    assert json.loads(body["text"]) == [
        {"deploy": {}}, {"start": {"args": []}},
        {"run": {"entry_point": "/bin/echo", "args": ["hi"],
                 "capture": {"stdout": {"atEnd": {"format": "str"}}, "stderr": {"atEnd": {"format": "str"}}}}}]


def test_exec_rejected_by_yagna(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.post(f"{A}/activity/act-1/exec", status=400, json={"message": "unknown variant `entryPoint`"})
    with pytest.raises(YagnaRequestError, match="entryPoint"):
        client.activity.exec("act-1", [{"run": {"entryPoint": "/bin/true"}}])


def test_get_batch_results(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.get(f"{A}/activity/act-1/exec/b1", json=[
        {"index": 0, "eventDate": TS, "result": "Ok", "stdout": "hi\n", "stderr": None, "message": None,
         "isBatchFinished": False},
        {"index": 1, "eventDate": TS, "result": "Error", "message": "exit 2", "isBatchFinished": True}])
    mocked.get(f"{A}/activity/act-1/exec/b1", status=408, json={"message": "timeout"})
    results = client.activity.get_batch_results("act-1", "b1", timeout=2.0, command_index=1)
    assert sent(0)[2] == {"timeout": "2.0", "commandIndex": "1"}
    assert [r.index for r in results] == [0, 1]
    assert results[0].ok and results[0].stdout == "hi\n"
    assert not results[1].ok and results[1].is_batch_finished and results[1].message == "exit 2"
    assert client.activity.get_batch_results("act-1", "b1", timeout=0.1) == []
    assert sent(1)[2] == {"timeout": "0.1"}


def test_batch_results_with_a_broken_item(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{A}/activity/act-1/exec/b1", json=[{"index": 0, "result": "Ok"}])
    with pytest.raises(YagnaProtocolError, match="ExeScriptCommandResult: field 'eventDate' is missing"):
        client.activity.get_batch_results("act-1", "b1")


def test_state_usage_command_agreement(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{A}/activity/act-1/state", json={"state": ["Ready", None]})
    mocked.get(f"{A}/activity/act-1/usage", json={"currentUsage": [0.5, 1], "timestamp": 1714557600})
    mocked.get(f"{A}/activity/act-1/command", json=[{"batchId": "b1", "command": "Run", "params": ["/bin/sh"]}])
    mocked.get(f"{A}/activity/act-1/agreement", json="agr-1")
    assert client.activity.get_state("act-1").state == "Ready"
    assert client.activity.get_usage("act-1").current_usage == [0.5, 1.0]
    cmds = client.activity.get_running_command("act-1")
    assert cmds[0].command == "Run" and cmds[0].params == ["/bin/sh"]
    assert client.activity.get_agreement_id("act-1") == "agr-1"


def test_destroy(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.delete(f"{A}/activity/act-1", status=200)
    mocked.delete(f"{A}/activity/act-2", status=404, json={"message": "Activity [act-2] not found"})
    client.activity.destroy_activity("act-1", timeout=10.0)
    assert sent(0) == ("DELETE", "/activity-api/v1/activity/act-1", {"timeout": "10.0"}, None)
    with pytest.raises(YagnaNotFoundError):
        client.activity.destroy_activity("act-2")


def test_provider_calls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.put(f"{A}/activity/act-1/state", status=200)
    mocked.get(f"{A}/events", json=[{"eventType": {"CreateActivity": {}}, "eventDate": TS,
                                     "activityId": "act-1", "agreementId": "agr-1"}])
    client.activity.set_state("act-1", ActivityState("Initialized"))
    assert sent(0) == ("PUT", "/activity-api/v1/activity/act-1/state", {}, {"state": ["Initialized", None]})
    after = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    events = client.activity.collect_activity_events(after, timeout=1.5, max_events=5)
    assert sent(1)[2] == {"afterTimestamp": "2024-05-01T00:00:00.000000Z", "timeout": "1.5", "maxEvents": "5"}
    assert events[0].event_type == "CreateActivity" and events[0].agreement_id == "agr-1"


def test_stream_batch_over_responses(client: YagnaClient, mocked: responses.RequestsMock, calls: Any) -> None:
    body = (b":ping\n\n"
            b"event: runtime\ndata: {\"batch_id\": \"b1\", \"index\": 0, \"timestamp\": \"2024-05-01T10:00:00.1\","
            b" \"kind\": {\"stdout\": \"hello\\n\"}}\n\n"
            b"event: runtime\r\ndata: {\"batch_id\": \"b1\", \"index\": 0, \"timestamp\": \"2024-05-01T10:00:00.2\","
            b" \"kind\": {\"finished\": {\"return_code\": 0, \"message\": null}}}\r\n\r\n")
    mocked.get(f"{A}/activity/act-1/exec/b1", body=body, content_type="text/event-stream")
    with client.activity.stream_batch("act-1", "b1") as stream:
        events = list(stream)
    assert calls()[0].request.headers["Accept"] == "text/event-stream"
    assert [(e.kind, e.output, e.return_code) for e in events] == [("stdout", "hello\n", None), ("finished", None, 0)]
    assert stream.closed


def test_stream_batch_bad_json_is_a_protocol_error(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{A}/activity/act-1/exec/b1", body=b"event: runtime\ndata: {not json\n\n",
               content_type="text/event-stream")
    with client.activity.stream_batch("act-1", "b1") as stream:
        with pytest.raises(YagnaProtocolError, match="not JSON"):
            next(iter(stream))


def test_stream_batch_on_unknown_batch(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{A}/activity/act-1/exec/nope", status=404, json={"message": "batch not found"})
    with pytest.raises(YagnaNotFoundError):
        client.activity.stream_batch("act-1", "nope")
