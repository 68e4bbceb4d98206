"""The flexbuffers codec of yagna's GSB API WebSocket (subprotocol ``gsb+flexbuffers``).

yagna's GSB services speak Rust-serde flexbuffers: structs are maps by field name, ``()`` is
null, ``Vec<u8>`` arrives either as a blob or (without ``serde_bytes``) as a vector of small
integers. This module wraps ``flatbuffers.flexbuffers`` so the rest of the core never touches it.
"""
from __future__ import annotations

from typing import Any

from flatbuffers import flexbuffers

from .errors import YagnaProtocolError

__all__ = ["dumps", "loads", "as_bytes"]


def dumps(value: Any) -> bytes:
    """Encode ``value`` (dicts, lists, str, int, float, bool, None, bytes) as a flexbuffer."""
    return bytes(flexbuffers.Dumps(value))


def loads(data: bytes) -> Any:
    """Decode a flexbuffer; raises :class:`YagnaProtocolError` for bytes that are not one."""
    if not data:
        raise YagnaProtocolError("empty flexbuffers message on the GSB API WebSocket")
    try:
        return flexbuffers.Loads(data)
    except Exception as exc:  # the decoder raises assorted errors on garbage
        raise YagnaProtocolError(f"undecodable flexbuffers message ({len(data)} bytes): {exc}") from exc


def as_bytes(value: Any) -> bytes:
    """A serde ``Vec<u8>``, whichever way it was encoded, as ``bytes``; raises TypeError otherwise."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, list):
        return bytes(value)  # ValueError for ints outside 0..255
    raise TypeError(f"expected bytes, got {type(value).__name__}")
