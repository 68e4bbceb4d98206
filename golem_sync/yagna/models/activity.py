"""Activity API models: state, usage, batch results and the streamed runtime events."""
from __future__ import annotations

import datetime as _dt
import enum
from typing import Any, Dict, List, Mapping, Optional, Union

import attrs

from ...errors import YagnaProtocolError
from ._parse import Reader, event_type_of

__all__ = [
    "ActivityStateName",
    "ActivityState",
    "ActivityUsage",
    "ExeScriptCommandResult",
    "ExeScriptCommandState",
    "RuntimeEvent",
    "ActivityEvent",
    "CreateActivityResult",
]

Output = Union[str, bytes, None]


class ActivityStateName(str, enum.Enum):
    """The state names in an activity's state pair."""

    NEW = "New"
    INITIALIZED = "Initialized"
    DEPLOYED = "Deployed"
    READY = "Ready"
    UNRESPONSIVE = "Unresponsive"
    TERMINATED = "Terminated"


@attrs.frozen
class ActivityState:
    """``{"state": [current, next-or-null], "reason"?, "errorMessage"?}``."""

    state: str
    next_state: Optional[str] = None
    reason: Optional[str] = None
    error_message: Optional[str] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ActivityState":
        r = Reader("ActivityState", data)
        pair = r.array("state")
        if not pair or not isinstance(pair[0], str) or (len(pair) > 1 and not isinstance(pair[1], (str, type(None)))):
            raise r.error("state", f"must be a [state, next-state|null] pair, got {pair!r}")
        return cls(
            state=pair[0],
            next_state=pair[1] if len(pair) > 1 else None,
            reason=r.opt_text("reason"),
            error_message=r.opt_text("errorMessage"),
        )

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"state": [self.state, self.next_state]}
        if self.reason is not None:
            body["reason"] = self.reason
        if self.error_message is not None:
            body["errorMessage"] = self.error_message
        return body

    @property
    def is_terminated(self) -> bool:
        return self.state == ActivityStateName.TERMINATED.value


@attrs.frozen
class ActivityUsage:
    """``GET /activity/{id}/usage``: the usage vector and a Unix timestamp (seconds)."""

    current_usage: Optional[List[float]]
    timestamp: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ActivityUsage":
        r = Reader("ActivityUsage", data)
        usage = r.opt_array("currentUsage")
        if usage is not None:
            for i, v in enumerate(usage):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise r.error("currentUsage", f"item {i} must be a number, got {v!r}")
            usage = [float(v) for v in usage]
        return cls(current_usage=usage, timestamp=r.integer("timestamp"))


def _output(r: Reader, field: str) -> Output:
    """Command output: a string, ``{"str": s}``, or bytes as ``[ints]`` / ``{"bin": [ints]}``."""
    value = r.raw(field)
    if isinstance(value, Mapping):
        value = value.get("str", value.get("bin"))
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    raise r.error(field, f"must be a string or a list of bytes, got {type(value).__name__}")


@attrs.frozen
class ExeScriptCommandResult:
    """One finished command of a batch (``GET /activity/{id}/exec/{batch}``)."""

    index: int
    event_date: _dt.datetime
    result: str  # "Ok" or "Error"
    stdout: Output = None
    stderr: Output = None
    message: Optional[str] = None
    is_batch_finished: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ExeScriptCommandResult":
        r = Reader("ExeScriptCommandResult", data)
        return cls(
            index=r.integer("index"),
            event_date=r.date("eventDate"),
            result=r.text("result"),
            stdout=_output(r, "stdout"),
            stderr=_output(r, "stderr"),
            message=r.opt_text("message"),
            is_batch_finished=bool(r.opt_bool("isBatchFinished")),
        )

    @property
    def ok(self) -> bool:
        return self.result == "Ok"


@attrs.frozen
class ExeScriptCommandState:
    """``GET /activity/{id}/command``: a command now running."""

    command: str
    batch_id: Optional[str] = None
    progress: Optional[str] = None
    params: Optional[List[str]] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ExeScriptCommandState":
        r = Reader("ExeScriptCommandState", data)
        params = r.opt_array("params")
        return cls(
            command=r.text("command"),
            batch_id=r.opt_text("batchId"),
            progress=r.opt_text("progress"),
            params=r.str_list("params") if params is not None else None,
        )


@attrs.frozen
class RuntimeEvent:
    """One event of the SSE batch stream.

    ``kind`` is ``"started"``, ``"stdout"``, ``"stderr"``, ``"finished"``, ``"progress"`` or, for
    anything newer, the raw kind name. ``output`` holds a stdout/stderr chunk, ``return_code`` and
    ``message`` a finished command's outcome, ``command`` a started command, ``progress`` the body
    of a progress event.
    """

    batch_id: str
    index: int
    timestamp: _dt.datetime
    kind: str
    output: Output = None
    return_code: Optional[int] = None
    message: Optional[str] = None
    command: Optional[Dict[str, Any]] = None
    progress: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RuntimeEvent":
        r = Reader("RuntimeEvent", data)
        # yagna writes snake_case on the wire; the spec says camelCase: accept both.
        batch_field = "batch_id" if "batch_id" in r.data else "batchId"
        kind_raw = r.raw("kind", required=True)
        if isinstance(kind_raw, str):
            kind_raw = {kind_raw: None}
        if not isinstance(kind_raw, Mapping) or len(kind_raw) != 1:
            raise r.error("kind", f"must be a one-key object, got {kind_raw!r}")
        (kind, body), = kind_raw.items()
        kr = Reader(f"RuntimeEvent.kind.{kind}", body if isinstance(body, Mapping) else {})
        fields: Dict[str, Any] = {}
        if kind in ("stdout", "stderr"):
            fields["output"] = _output(Reader("RuntimeEvent.kind", kind_raw), kind)
        elif kind == "finished":
            if not isinstance(body, Mapping):
                raise r.error("kind", f"finished must be an object, got {body!r}")
            code_field = "returnCode" if "returnCode" in body else "return_code"
            fields["return_code"] = kr.integer(code_field)
            fields["message"] = kr.opt_text("message")
        elif kind == "started":
            cmd = kr.raw("command")
            fields["command"] = dict(cmd) if isinstance(cmd, Mapping) else None
        elif kind == "progress":
            fields["progress"] = dict(body) if isinstance(body, Mapping) else None
            fields["message"] = kr.opt_text("message")
        return cls(
            batch_id=r.text(batch_field),
            index=r.integer("index"),
            timestamp=r.date("timestamp"),
            kind=kind,
            **fields,
        )


@attrs.frozen
class ActivityEvent:
    """Provider side ``GET /events``: ``event_type`` is ``CreateActivity`` or ``DestroyActivity``."""

    event_type: str
    event_date: _dt.datetime
    activity_id: str
    agreement_id: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ActivityEvent":
        r = Reader("ActivityEvent", data)
        tag: Any = r.raw("eventType") if "eventType" in r.data else r.raw("eventtype")
        # yagna sends the type as a one-key object ({"CreateActivity": {...}}); the spec, a string.
        if isinstance(tag, Mapping) and len(tag) == 1:
            tag = next(iter(tag))
        if not isinstance(tag, str):
            tag = event_type_of(r.data)
        if not isinstance(tag, str):
            raise r.error("eventType", "is missing")
        return cls(
            event_type=tag,
            event_date=r.date("eventDate"),
            activity_id=r.text("activityId"),
            agreement_id=r.text("agreementId"),
        )


@attrs.frozen
class CreateActivityResult:
    """``POST /activity``: yagna answers a bare id or ``{"activityId", "credentials"?}``."""

    activity_id: str
    credentials: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, data: Any) -> "CreateActivityResult":
        if isinstance(data, str):
            if not data:
                raise YagnaProtocolError("CreateActivityResult: empty activity id")
            return cls(activity_id=data)
        r = Reader("CreateActivityResult", data)
        return cls(activity_id=r.text("activityId"), credentials=r.opt_obj("credentials"))


