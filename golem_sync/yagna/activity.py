"""The activity API: create activities, run ExeScripts, read results (polling or SSE)."""
from __future__ import annotations

import datetime as _dt
from typing import Any, List, Mapping, Optional, Sequence, Union

from ._base import ApiBase, seg
from .models import (
    ActivityEvent,
    ActivityState,
    ActivityUsage,
    Command,
    CreateActivityResult,
    ExeScriptCommandResult,
    ExeScriptCommandState,
    RuntimeEvent,
    exe_script_request,
    format_datetime,
)
from .sse import EventStream

__all__ = ["ActivityApi", "BatchStream"]

#: The SSE stream of one batch: iterate for :class:`RuntimeEvent`; close from any thread.
BatchStream = EventStream[RuntimeEvent]


class ActivityApi(ApiBase):
    """Calls under ``/activity-api/v1``. Requestor calls first, then the provider-side ones."""

    _api = "activity"

    def create_activity(self, agreement_id: str, timeout: Optional[float] = None) -> str:
        """Create an activity on an approved agreement; returns its id.

        yagna blocks until the provider's exe-unit reports Initialized (up to ``timeout`` s,
        yagna's default 5 s); a 408 then raises :class:`~golem_sync.YagnaTimeoutError`.
        Never retried: a second POST would create a second activity.
        """
        path = "/activity"
        body = self._call("POST", path, params={"timeout": timeout}, json={"agreementId": agreement_id},
                          timeout=self._margin(timeout if timeout is not None else 5.0))
        return self._obj(body, CreateActivityResult.from_json, "POST", path).activity_id

    def exec(self, activity_id: str, script: Sequence[Union[Command, Mapping[str, Any]]]) -> str:
        """Send an ExeScript (commands or ready command dicts); returns the batch id."""
        path = f"/activity/{seg(activity_id)}/exec"
        body = self._call("POST", path, json=exe_script_request(script))
        return self._string(body, "a batch id", "POST", path)

    def get_batch_results(
        self,
        activity_id: str,
        batch_id: str,
        timeout: float = 5.0,
        command_index: Optional[int] = None,
        max_body: Optional[int] = None,
    ) -> List[ExeScriptCommandResult]:
        """The batch's finished commands so far (cumulative). Waits up to ``timeout`` s for
        ``command_index`` (or any progress); ``[]`` when yagna answers 408. A body larger than
        ``max_body`` bytes (the provider decides how much output it holds) raises
        :class:`~golem_sync.YagnaResponseTooLargeError` without being read further."""
        path = f"/activity/{seg(activity_id)}/exec/{seg(batch_id)}"
        body = self._call("GET", path, params={"timeout": timeout, "commandIndex": command_index},
                          long_poll=timeout, max_body=max_body)
        return self._list(body, ExeScriptCommandResult.from_json, "GET", path)

    def stream_batch(self, activity_id: str, batch_id: str, read_timeout: float = 60.0) -> BatchStream:
        """Open the batch's event stream (``Accept: text/event-stream``).

        yagna never ends this stream (it sends ``:ping`` every 15 s), so close it after the last
        command's ``finished`` event. ``read_timeout`` bounds each wait for bytes. Use it as a
        context manager; :meth:`EventStream.close` unblocks a reader from another thread.
        """
        path = f"/activity/{seg(activity_id)}/exec/{seg(batch_id)}"
        response = self._transport.stream("GET", self._api, path,
                                           headers={"Accept": "text/event-stream"},
                                           read_timeout=read_timeout)
        return EventStream(response, RuntimeEvent.from_json, event_name="runtime",
                           where=f"batch {batch_id} of activity {activity_id}")

    def get_state(self, activity_id: str) -> ActivityState:
        """The activity's state pair, reason and error message."""
        path = f"/activity/{seg(activity_id)}/state"
        return self._obj(self._call("GET", path), ActivityState.from_json, "GET", path)

    def get_usage(self, activity_id: str, timeout: Optional[float] = None) -> ActivityUsage:
        """The last usage vector the provider reported (``timeout``: the client's read timeout)."""
        path = f"/activity/{seg(activity_id)}/usage"
        return self._obj(self._call("GET", path, timeout=timeout), ActivityUsage.from_json, "GET", path)

    def get_running_command(self, activity_id: str, timeout: Optional[float] = None) -> List[ExeScriptCommandState]:
        """The commands running now (``timeout``: the client's read timeout)."""
        path = f"/activity/{seg(activity_id)}/command"
        return self._list(self._call("GET", path, timeout=timeout), ExeScriptCommandState.from_json, "GET", path)

    def get_agreement_id(self, activity_id: str) -> str:
        """The agreement the activity belongs to."""
        path = f"/activity/{seg(activity_id)}/agreement"
        return self._string(self._call("GET", path), "an agreement id", "GET", path)

    def destroy_activity(self, activity_id: str, timeout: Optional[float] = None) -> None:
        """Destroy the activity; yagna waits up to ``timeout`` s (default 5) for the provider."""
        self._call("DELETE", f"/activity/{seg(activity_id)}", params={"timeout": timeout},
                   timeout=self._margin(timeout if timeout is not None else 5.0))

    # -- provider side -----------------------------------------------------------------------

    def set_state(self, activity_id: str, state: ActivityState) -> None:
        """Provider: set the activity's state (e.g. ``ActivityState("Initialized")``)."""
        self._call("PUT", f"/activity/{seg(activity_id)}/state", json=state.to_json())

    def collect_activity_events(
        self,
        after_timestamp: _dt.datetime,
        timeout: float = 5.0,
        max_events: int = 10,
        app_session_id: Optional[str] = None,
    ) -> List[ActivityEvent]:
        """Provider: long-poll CreateActivity/DestroyActivity events after ``after_timestamp``
        (yagna requires it); ``[]`` when none came."""
        path = "/events"
        params = {"afterTimestamp": format_datetime(after_timestamp), "timeout": timeout,
                  "maxEvents": max_events, "appSessionId": app_session_id}
        body = self._call("GET", path, params=params, long_poll=timeout)
        return self._list(body, ActivityEvent.from_json, "GET", path)
