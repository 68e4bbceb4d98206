"""A small client for yagna's GSB (Golem Service Bus) over TCP, for the devnet.

Three rooms, bottom up:

- :mod:`.wire`: the pure protobuf codec of ``gsb_api.proto`` frames (Hello, Register, Call, Ping...);
- :mod:`.body`: call bodies, Rust-serde flexbuffers through the core's :mod:`golem_sync._flex`,
  and serde ``Result`` unwrapping (:func:`ok_value`);
- :mod:`.connection`: :class:`GsbConnection` (socket, reader thread, worker pool) and the
  incoming :class:`GsbRequest`.

The errors live in :mod:`golem_sync.devnet.errors` and are re-exported here.
"""
from __future__ import annotations

from ..errors import GsbCallError, GsbClosedError, GsbError, GsbServiceError, GsbTimeoutError
from .body import decode_body, encode_body, ok_value
from .connection import REPLY_BAD_REQUEST, REPLY_OK, REPLY_SERVICE_FAILURE, GsbConnection, GsbRequest, Handler

__all__ = [
    "GsbError",
    "GsbClosedError",
    "GsbCallError",
    "GsbServiceError",
    "GsbTimeoutError",
    "GsbRequest",
    "GsbConnection",
    "Handler",
    "encode_body",
    "decode_body",
    "ok_value",
    "REPLY_OK",
    "REPLY_BAD_REQUEST",
    "REPLY_SERVICE_FAILURE",
]
