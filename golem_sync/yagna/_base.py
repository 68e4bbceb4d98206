"""What every API class shares: the transport, path building and answer checks."""
from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, TypeVar, Union
from urllib.parse import quote

from ..errors import YagnaProtocolError
from .transport import Transport

T = TypeVar("T")

Reason = Union[str, Mapping[str, Any], None]


def seg(value: str) -> str:
    """One path segment, escaped so an id can never change the path."""
    return quote(str(value), safe="")


def reason_body(reason: Reason) -> Optional[Mapping[str, Any]]:
    """A ``Reason`` body: a plain string becomes ``{"message": ...}``."""
    if reason is None:
        return None
    if isinstance(reason, str):
        return {"message": reason}
    return dict(reason)


class ApiBase:
    """Base of the per-API classes: they hold a :class:`Transport` and keep no other state,
    so one instance may be used from any number of threads."""

    _api = "root"

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._transport!r})"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._transport.request(method, self._api, path, **kwargs)

    def _margin(self, timeout: Optional[float]) -> Optional[float]:
        """Client read timeout for a call that waits ``timeout`` seconds inside yagna."""
        if timeout is None:
            return None
        return max(timeout, 0.0) + self._transport.config.long_poll_margin

    def _string(self, value: Any, what: str, method: str, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise YagnaProtocolError(
                f"yagna answered {method} {path} with {value!r} where {what} (a string) was expected",
                method=method, path=path,
            )
        return value

    def _list(self, value: Any, parse: Callable[[Any], T], method: str, path: str) -> List[T]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise YagnaProtocolError(
                f"yagna answered {method} {path} with {type(value).__name__} where a list was expected",
                method=method, path=path,
            )
        return [parse(item) for item in value]

    def _obj(self, value: Any, parse: Callable[[Any], T], method: str, path: str) -> T:
        if value is None:
            raise YagnaProtocolError(f"yagna answered {method} {path} with an empty body",
                                     method=method, path=path)
        return parse(value)
