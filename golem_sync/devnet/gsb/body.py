"""GSB call bodies: Rust-serde flexbuffers, through the core's one codec (:mod:`golem_sync._flex`).

yagna's services read and write serde structs as flexbuffer maps by field name; bodies may be
zlib-compressed (a ya-service-bus option, not seen by default). Service results are serde
``Result`` values, ``{"Ok": value}`` / ``{"Err": error}`` (see :func:`ok_value`). Pure functions.
"""
from __future__ import annotations

import zlib
from typing import Any

from ... import _flex as flex
from ...errors import YagnaProtocolError
from ..errors import GsbError, GsbServiceError

__all__ = ["encode_body", "decode_body", "ok_value"]


def encode_body(value: Any) -> bytes:
    """Encode a value the way Rust serde + flexbuffers would read it."""
    return flex.dumps(value)


def decode_body(data: bytes) -> Any:
    """Decode a flexbuffers body; zlib-compressed bodies (ya-service-bus option) are tolerated.

    An empty body decodes to ``None``; blobs decode to ``bytes``. Raises :class:`GsbError` for
    undecodable bytes.
    """
    if not data:
        return None
    raw = data
    if data[:1] == b"\x78":  # zlib header; a flexbuffer may start with 0x78 too, so fall back
        try:
            raw = zlib.decompress(data)
        except zlib.error:
            raw = data
    try:
        return _plain(flex.loads(raw))
    except YagnaProtocolError as exc:
        if raw is not data:
            try:
                return _plain(flex.loads(data))
            except YagnaProtocolError:
                pass
        raise GsbError(f"undecodable GSB body ({len(data)} bytes): {exc.__cause__ or exc}") from exc


def _plain(value: Any) -> Any:
    """bytearray blobs -> bytes, so decoded bodies are hashable/comparable plain values."""
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def ok_value(decoded: Any) -> Any:
    """Unwrap a serde ``Result``: return ``v`` of ``{"Ok": v}``; raise on ``{"Err": e}``."""
    if isinstance(decoded, dict) and len(decoded) == 1:
        if "Ok" in decoded:
            return decoded["Ok"]
        if "Err" in decoded:
            raise GsbServiceError(f"service error: {decoded['Err']!r}", error=decoded["Err"])
    raise GsbError(f"not a Result body: {decoded!r:.200}")
