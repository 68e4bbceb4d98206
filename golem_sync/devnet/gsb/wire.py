"""The GSB wire codec: yagna's ``gsb_api.proto`` packets to and from bytes. Pure: no I/O, no threads.

A frame on the socket is a 4-byte big-endian length and a protobuf ``Packet``, a oneof of Hello,
Register/Unregister request/reply, CallRequest/Reply, Ping/Pong, ... (field numbers below). Only
the messages an exe-unit needs are modelled, each as a frozen value; encoding them by hand keeps
the devnet free of a protobuf dependency. Call bodies (``data``) are opaque bytes here; see
:mod:`.body` for their flexbuffers encoding.

    frame = encode_frame(CallRequest(caller="local", address="/x/Y", request_id="1", data=b""))
    length = frame_length(frame[:4]); messages = decode_packet(frame[4:4 + length])
"""
from __future__ import annotations

import struct
from typing import Dict, List, Union

import attrs

from ..errors import GsbError

__all__ = [
    "FULL",
    "PARTIAL",
    "MAX_FRAME",
    "HEADER_SIZE",
    "Hello",
    "RegisterRequest",
    "RegisterReply",
    "UnregisterRequest",
    "UnregisterReply",
    "CallRequest",
    "CallReply",
    "Ping",
    "Pong",
    "UnknownPacket",
    "Message",
    "encode_frame",
    "encode_packet",
    "decode_packet",
    "frame_length",
]

#: CallReply.reply_type: the final reply / one streamed part.
FULL = 0
PARTIAL = 1

#: The router refuses nothing below this, but a frame above it is surely garbage.
MAX_FRAME = 256 * 1024 * 1024
HEADER_SIZE = 4

# Packet oneof field numbers (gsb_api.proto).
_HELLO = 1
_REGISTER_REQUEST = 2
_REGISTER_REPLY = 3
_UNREGISTER_REQUEST = 4
_UNREGISTER_REPLY = 5
_CALL_REQUEST = 6
_CALL_REPLY = 7
_PING = 14
_PONG = 15

_Fields = Dict[int, Union[int, bytes]]


@attrs.frozen
class Hello:
    name: str
    version: str
    instance_id: bytes = b""


@attrs.frozen
class RegisterRequest:
    address: str


@attrs.frozen
class RegisterReply:
    code: int
    message: str = ""


@attrs.frozen
class UnregisterRequest:
    address: str


@attrs.frozen
class UnregisterReply:
    code: int
    message: str = ""


@attrs.frozen
class CallRequest:
    caller: str
    address: str
    request_id: str
    data: bytes = b""
    no_reply: bool = False


@attrs.frozen
class CallReply:
    request_id: str
    code: int
    reply_type: int = FULL
    data: bytes = b""


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Pong:
    pass


@attrs.frozen
class UnknownPacket:
    """A packet kind this codec does not model (the connection logs and ignores it)."""

    kind: int


Message = Union[Hello, RegisterRequest, RegisterReply, UnregisterRequest, UnregisterReply, CallRequest,
                CallReply, Ping, Pong, UnknownPacket]


# -- encoding --------------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1  # proto3 negative int32/enum: 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, value: Union[bytes, str]) -> bytes:
    data = value.encode() if isinstance(value, str) else bytes(value)
    if not data:
        return b""  # proto3: default values are not sent
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _field_varint(number: int, value: int) -> bytes:
    if not value:
        return b""
    return _varint(number << 3) + _varint(value)


def _encode_body(message: Message) -> bytes:
    if isinstance(message, Hello):
        return (_field_bytes(1, message.name) + _field_bytes(2, message.version)
                + _field_bytes(3, message.instance_id))
    if isinstance(message, (RegisterRequest, UnregisterRequest)):
        return _field_bytes(1, message.address)
    if isinstance(message, (RegisterReply, UnregisterReply)):
        return _field_varint(1, message.code) + _field_bytes(2, message.message)
    if isinstance(message, CallRequest):
        return (_field_bytes(1, message.caller) + _field_bytes(2, message.address)
                + _field_bytes(3, message.request_id) + _field_bytes(4, message.data)
                + _field_varint(5, int(message.no_reply)))
    if isinstance(message, CallReply):
        return (_field_bytes(1, message.request_id) + _field_varint(2, message.code)
                + _field_varint(3, message.reply_type) + _field_bytes(4, message.data))
    if isinstance(message, (Ping, Pong)):
        return b""
    raise TypeError(f"cannot encode {message!r}")


_KINDS = {Hello: _HELLO, RegisterRequest: _REGISTER_REQUEST, RegisterReply: _REGISTER_REPLY,
          UnregisterRequest: _UNREGISTER_REQUEST, UnregisterReply: _UNREGISTER_REPLY,
          CallRequest: _CALL_REQUEST, CallReply: _CALL_REPLY, Ping: _PING, Pong: _PONG}


def encode_packet(message: Message) -> bytes:
    """The protobuf ``Packet`` holding ``message`` (without the length prefix)."""
    kind = _KINDS.get(type(message))
    if kind is None:
        raise TypeError(f"cannot encode {message!r}")
    body = _encode_body(message)
    # A oneof member is always sent, even when empty (Ping/Pong carry no fields).
    return _varint(kind << 3 | 2) + _varint(len(body)) + body


def encode_frame(message: Message) -> bytes:
    """``message`` as it goes on the socket: the 4-byte big-endian length, then the packet."""
    packet = encode_packet(message)
    return struct.pack(">I", len(packet)) + packet


# -- decoding --------------------------------------------------------------------------------

def frame_length(header: bytes) -> int:
    """The packet length announced by a 4-byte frame header; GsbError above :data:`MAX_FRAME`."""
    if len(header) != HEADER_SIZE:
        raise GsbError(f"a GSB frame header is {HEADER_SIZE} bytes, got {len(header)}")
    (length,) = struct.unpack(">I", header)
    if length > MAX_FRAME:
        raise GsbError(f"GSB frame too big ({length} bytes)")
    return int(length)


def _read_varint(buf: bytes, pos: int) -> "tuple[int, int]":
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise GsbError("truncated varint in GSB packet")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise GsbError("varint too long in GSB packet")


def _parse_fields(buf: bytes) -> _Fields:
    """Decode one protobuf message into ``{field number: value}`` (last occurrence wins)."""
    fields: _Fields = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            if value >= 1 << 63:
                value -= 1 << 64
            fields[number] = value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise GsbError("truncated field in GSB packet")
            fields[number] = bytes(buf[pos:pos + length])
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise GsbError(f"unsupported protobuf wire type {wire}")
    return fields


def _int(fields: _Fields, number: int) -> int:
    value = fields.get(number, 0)
    return value if isinstance(value, int) else 0


def _bytes(fields: _Fields, number: int) -> bytes:
    value = fields.get(number, b"")
    return value if isinstance(value, bytes) else b""


def _str(fields: _Fields, number: int) -> str:
    return _bytes(fields, number).decode("utf-8", "replace")


def _decode_member(kind: int, body: bytes) -> Message:
    if kind not in _KINDS.values():
        return UnknownPacket(kind)
    f = _parse_fields(body)
    if kind == _HELLO:
        return Hello(_str(f, 1), _str(f, 2), _bytes(f, 3))
    if kind == _REGISTER_REQUEST:
        return RegisterRequest(_str(f, 1))
    if kind == _REGISTER_REPLY:
        return RegisterReply(_int(f, 1), _str(f, 2))
    if kind == _UNREGISTER_REQUEST:
        return UnregisterRequest(_str(f, 1))
    if kind == _UNREGISTER_REPLY:
        return UnregisterReply(_int(f, 1), _str(f, 2))
    if kind == _CALL_REQUEST:
        return CallRequest(caller=_str(f, 1), address=_str(f, 2), request_id=_str(f, 3), data=_bytes(f, 4),
                           no_reply=bool(_int(f, 5)))
    if kind == _CALL_REPLY:
        return CallReply(request_id=_str(f, 1), code=_int(f, 2), reply_type=_int(f, 3), data=_bytes(f, 4))
    if kind == _PING:
        return Ping()
    return Pong()


def decode_packet(packet: bytes) -> List[Message]:
    """The messages of one ``Packet`` (the frame without its length prefix), in field order.

    A well-formed packet holds one oneof member; should several arrive, the last of each kind wins
    (protobuf's rule). Raises :class:`GsbError` for malformed bytes.
    """
    return [_decode_member(kind, value if isinstance(value, bytes) else b"")
            for kind, value in _parse_fields(packet).items()]
