"""ExeScript commands, serialised exactly as yagna's serde model expects them.

Variant names are camelCase (``deploy``, ``run``, ...), their fields snake_case
(``entry_point``); capture parts (``head``/``tail``/``headTail``) sit flat next to ``format``.
Optional fields that are not set are left out, so yagna applies its own defaults.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import attrs

from ...errors import GolemConfigError

__all__ = [
    "CaptureAtEnd",
    "CaptureStream",
    "Capture",
    "ProgressArgs",
    "DeployNetwork",
    "Command",
    "Deploy",
    "Start",
    "Run",
    "Transfer",
    "Terminate",
    "exe_script_request",
]

_FORMATS = ("str", "bin", "string", "binary")


def _check_format(inst: Any, attribute: "attrs.Attribute[Any]", value: Optional[str]) -> None:
    if value is not None and value not in _FORMATS:
        raise GolemConfigError(f"capture format must be one of {', '.join(_FORMATS)}, got {value!r}")


def _check_count(value: Optional[int], name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise GolemConfigError(f"capture {name} must be a non-negative integer, got {value!r}")


@attrs.frozen
class CaptureAtEnd:
    """Capture the whole output (or its ``head``/``tail``/``head_tail`` bytes) when the command ends."""

    format: Optional[str] = attrs.field(default="str", validator=_check_format)
    head: Optional[int] = None
    tail: Optional[int] = None
    head_tail: Optional[int] = None

    def __attrs_post_init__(self) -> None:
        parts = [n for n in ("head", "tail", "head_tail") if getattr(self, n) is not None]
        if len(parts) > 1:
            raise GolemConfigError(f"capture: give at most one of head, tail, head_tail (got {parts})")
        for n in parts:
            _check_count(getattr(self, n), n)

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {}
        if self.head is not None:
            body["head"] = self.head
        if self.tail is not None:
            body["tail"] = self.tail
        if self.head_tail is not None:
            body["headTail"] = self.head_tail
        if self.format is not None:
            body["format"] = self.format
        return {"atEnd": body}


@attrs.frozen
class CaptureStream:
    """Stream the output as it is produced (readable over the SSE batch stream)."""

    limit: Optional[int] = None
    format: Optional[str] = attrs.field(default="str", validator=_check_format)

    def __attrs_post_init__(self) -> None:
        _check_count(self.limit, "limit")

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {}
        if self.limit is not None:
            body["limit"] = self.limit
        if self.format is not None:
            body["format"] = self.format
        return {"stream": body}


CaptureMode = Union[CaptureAtEnd, CaptureStream]


@attrs.frozen
class Capture:
    """How ``run`` captures stdout and stderr (``None`` = not captured)."""

    stdout: Optional[CaptureMode] = None
    stderr: Optional[CaptureMode] = None

    @classmethod
    def at_end(cls, format: str = "str") -> "Capture":
        """Both streams whole, at the end (golem-js's default)."""
        return cls(stdout=CaptureAtEnd(format=format), stderr=CaptureAtEnd(format=format))

    @classmethod
    def stream(cls, format: str = "str") -> "Capture":
        """Both streams as they are produced."""
        return cls(stdout=CaptureStream(format=format), stderr=CaptureStream(format=format))

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {}
        if self.stdout is not None:
            body["stdout"] = self.stdout.to_json()
        if self.stderr is not None:
            body["stderr"] = self.stderr.to_json()
        return body


@attrs.frozen
class ProgressArgs:
    """Ask the exe-unit for progress events (``update_interval`` like ``"1s"``, ``update_step`` in bytes)."""

    update_interval: Optional[str] = None
    update_step: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {}
        if self.update_interval is not None:
            body["update-interval"] = self.update_interval
        if self.update_step is not None:
            body["update-step"] = self.update_step
        return body


@attrs.frozen
class DeployNetwork:
    """A VPN the activity joins at deploy: network ``id``/``ip``/``mask``, this node's ``node_ip``,
    and ``nodes`` mapping every IP to its node id."""

    id: str
    ip: str
    node_ip: str
    mask: Optional[str] = None
    gateway: Optional[str] = None
    nodes: Mapping[str, str] = attrs.field(factory=dict)

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"id": self.id, "ip": self.ip, "nodeIp": self.node_ip,
                                "nodes": dict(self.nodes)}
        if self.mask is not None:
            body["mask"] = self.mask
        if self.gateway is not None:
            body["gateway"] = self.gateway
        return body


class Command:
    """Base of every ExeScript command."""

    def to_json(self) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


def _str_list(value: Sequence[str]) -> List[str]:
    if isinstance(value, str):
        # A bare string would serialise as a list of characters; fail loudly instead.
        raise GolemConfigError(f"expected a list of strings, got the string {value!r}")
    return [str(v) for v in value]


@attrs.frozen
class Deploy(Command):
    """``deploy``: prepare the runtime (image, VPN, volumes)."""

    env: Optional[Mapping[str, str]] = None
    net: Optional[Sequence[DeployNetwork]] = None
    hosts: Optional[Mapping[str, str]] = None
    hostname: Optional[str] = None
    volumes: Optional[Any] = None
    progress: Optional[ProgressArgs] = None

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {}
        if self.env is not None:
            body["env"] = dict(self.env)
        if self.net is not None:
            body["net"] = [n.to_json() for n in self.net]
        if self.hosts is not None:
            body["hosts"] = dict(self.hosts)
        if self.hostname is not None:
            body["hostname"] = self.hostname
        if self.volumes is not None:
            body["volumes"] = self.volumes
        if self.progress is not None:
            body["progress"] = self.progress.to_json()
        return {"deploy": body}


@attrs.frozen
class Start(Command):
    """``start``: start the deployed runtime."""

    args: Sequence[str] = attrs.field(factory=list, converter=_str_list)

    def to_json(self) -> Dict[str, Any]:
        return {"start": {"args": list(self.args)}}


@attrs.frozen
class Run(Command):
    """``run``: execute ``entry_point`` with ``args``. ``capture=None`` leaves capture to yagna."""

    entry_point: str
    args: Sequence[str] = attrs.field(factory=list, converter=_str_list)
    capture: Optional[Capture] = None

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"entry_point": self.entry_point, "args": list(self.args)}
        if self.capture is not None:
            body["capture"] = self.capture.to_json()
        return {"run": body}


@attrs.frozen
class Transfer(Command):
    """``transfer``: copy ``from_`` to ``to`` (``container:``, ``gftp://``, ``http(s)://`` URLs)."""

    from_: str
    to: str
    format: Optional[str] = None
    depth: Optional[int] = None
    fileset: Optional[Any] = None
    progress: Optional[ProgressArgs] = None

    def to_json(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"from": self.from_, "to": self.to}
        if self.format is not None:
            body["format"] = self.format
        if self.depth is not None:
            body["depth"] = self.depth
        if self.fileset is not None:
            body["fileset"] = self.fileset
        if self.progress is not None:
            body["progress"] = self.progress.to_json()
        return {"transfer": body}


@attrs.frozen
class Terminate(Command):
    """``terminate``: stop the runtime."""

    def to_json(self) -> Dict[str, Any]:
        return {"terminate": {}}


def exe_script_request(commands: Sequence[Union[Command, Mapping[str, Any]]]) -> Dict[str, str]:
    """The body of ``POST /activity/{id}/exec``: ``{"text": "<JSON array of commands>"}``.

    Items may be :class:`Command` objects or already-built command dicts.
    """
    items = [c.to_json() if isinstance(c, Command) else dict(c) for c in commands]
    if not items:
        raise GolemConfigError("an ExeScript needs at least one command")
    return {"text": json.dumps(items)}
