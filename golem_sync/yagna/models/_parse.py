"""Strict-but-tolerant readers for yagna's JSON: unknown fields are ignored, missing or
mistyped required fields raise :class:`YagnaProtocolError` naming the model and the field."""
from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ...errors import GolemConfigError, YagnaProtocolError

__all__ = ["Reader", "parse_datetime", "format_datetime", "format_decimal", "event_type_of"]

_MISSING = object()

# RFC 3339 as yagna writes it: up to nanoseconds, "Z" or an offset. RuntimeEvent timestamps come
# without an offset (chrono NaiveDateTime in UTC), so a missing offset means UTC.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


def parse_datetime(text: str) -> _dt.datetime:
    """Parse an RFC 3339 timestamp into an aware ``datetime`` (no offset → UTC).

    Fractions beyond microseconds (yagna sends nanoseconds) are truncated.
    Raises ``ValueError`` on anything else.
    """
    m = _RFC3339.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    if m.group(9):
        offset = _dt.timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        tz = _dt.timezone(-offset if m.group(9) == "-" else offset)
    else:
        tz = _dt.timezone.utc
    # A leap second (":60") is clamped: datetime cannot represent it.
    return _dt.datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)


def format_datetime(value: _dt.datetime) -> str:
    """Format an aware ``datetime`` as RFC 3339 in UTC with a ``Z`` (what yagna parses)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise GolemConfigError(
            f"datetime {value!r} has no timezone; pass an aware datetime "
            "(e.g. datetime.now(timezone.utc))"
        )
    utc = value.astimezone(_dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}Z"


def format_decimal(value: Decimal) -> str:
    """A decimal amount as yagna wants it: a plain string, never scientific notation."""
    return format(value, "f")


def event_type_of(data: Mapping[str, Any]) -> Optional[str]:
    """The event tag: yagna wrote ``eventtype`` before 2024-03 and ``eventType`` since; accept both."""
    tag = data.get("eventType", data.get("eventtype"))
    return tag if isinstance(tag, str) else None


class Reader:
    """Reads typed fields out of one JSON object on behalf of a named model."""

    def __init__(self, model: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise YagnaProtocolError(
                f"{model}: expected a JSON object, got {type(data).__name__}: {_short(data)}"
            )
        self.model = model
        self.data: Mapping[str, Any] = data

    def error(self, field: str, problem: str) -> YagnaProtocolError:
        return YagnaProtocolError(f"{self.model}: field {field!r} {problem}")

    def _get(self, field: str, required: bool) -> Any:
        value = self.data.get(field, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise self.error(field, "is missing")
            return None
        return value

    def _typed(self, field: str, required: bool, types: Tuple[type, ...], what: str) -> Any:
        value = self._get(field, required)
        if value is None:
            return None
        # bool is an int in Python but never a number in JSON terms.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise self.error(field, f"must be {what}, got {type(value).__name__}: {_short(value)}")
        return value

    def text(self, field: str) -> str:
        return self._typed(field, True, (str,), "a string")  # type: ignore[no-any-return]

    def opt_text(self, field: str) -> Optional[str]:
        return self._typed(field, False, (str,), "a string")  # type: ignore[no-any-return]

    def integer(self, field: str) -> int:
        return self._typed(field, True, (int,), "an integer")  # type: ignore[no-any-return]

    def opt_integer(self, field: str) -> Optional[int]:
        return self._typed(field, False, (int,), "an integer")  # type: ignore[no-any-return]

    def opt_bool(self, field: str) -> Optional[bool]:
        return self._typed(field, False, (bool,), "a boolean")  # type: ignore[no-any-return]

    def obj(self, field: str) -> Dict[str, Any]:
        return dict(self._typed(field, True, (dict,), "an object"))

    def opt_obj(self, field: str) -> Optional[Dict[str, Any]]:
        value = self._typed(field, False, (dict,), "an object")
        return None if value is None else dict(value)

    def array(self, field: str) -> List[Any]:
        return list(self._typed(field, True, (list,), "an array"))

    def opt_array(self, field: str) -> Optional[List[Any]]:
        value = self._typed(field, False, (list,), "an array")
        return None if value is None else list(value)

    def str_list(self, field: str, required: bool = False) -> List[str]:
        value = self._typed(field, required, (list,), "an array")
        items = list(value or [])
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(field, f"item {i} must be a string, got {type(item).__name__}")
        return items

    def raw(self, field: str, required: bool = False) -> Any:
        return self._get(field, required)

    def date(self, field: str) -> _dt.datetime:
        return self._to_datetime(field, self.text(field))

    def opt_date(self, field: str) -> Optional[_dt.datetime]:
        text = self.opt_text(field)
        return None if text is None else self._to_datetime(field, text)

    def decimal(self, field: str) -> Decimal:
        return self._to_decimal(field, self._get(field, True))

    def opt_decimal(self, field: str) -> Optional[Decimal]:
        value = self._get(field, False)
        return None if value is None else self._to_decimal(field, value)

    def _to_datetime(self, field: str, text: str) -> _dt.datetime:
        try:
            return parse_datetime(text)
        except ValueError:
            raise self.error(field, f"is not an RFC 3339 timestamp: {text!r}") from None

    def _to_decimal(self, field: str, value: Any) -> Decimal:
        # Amounts are decimal strings; a JSON number is accepted via its text to avoid float error.
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(field, f"must be a decimal string, got {type(value).__name__}")
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            raise self.error(field, f"is not a decimal number: {_short(value)}") from None
        if not result.is_finite():
            raise self.error(field, f"is not a finite decimal: {_short(value)}")
        return result


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
