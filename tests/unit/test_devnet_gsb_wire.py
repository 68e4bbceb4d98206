"""The devnet's GSB codecs, offline: protobuf frames (``gsb.wire``) and flexbuffers bodies (``gsb.body``)."""
from __future__ import annotations

import struct
import zlib

import pytest

from golem_sync.devnet.errors import GsbError, GsbServiceError
from golem_sync.devnet.gsb import decode_body, encode_body, ok_value, wire


def _roundtrip(message: wire.Message) -> wire.Message:
    frame = wire.encode_frame(message)
    length = wire.frame_length(frame[:wire.HEADER_SIZE])
    assert length == len(frame) - wire.HEADER_SIZE
    (decoded,) = wire.decode_packet(frame[wire.HEADER_SIZE:])
    return decoded


@pytest.mark.parametrize("message", [
    wire.Hello("exeunit-1", "0.1.0", b"\x01" * 16),
    wire.RegisterRequest("/public/exeunit/a1"),
    wire.RegisterReply(0, ""),
    wire.RegisterReply(409, "already registered"),
    wire.UnregisterRequest("/public/exeunit/a1"),
    wire.UnregisterReply(0),
    wire.CallRequest("local", "/public/exeunit/a1/Exec", "r-1", b"\x00body", no_reply=True),
    wire.CallReply("r-1", 500, wire.PARTIAL, b"x"),
    wire.CallReply("r-2", 0),
    wire.Ping(),
    wire.Pong(),
])
def test_every_modelled_message_roundtrips(message: wire.Message) -> None:
    assert _roundtrip(message) == message


def test_frames_match_the_proto_field_numbers() -> None:
    # CallReply{request_id="r", code=500, reply_type=PARTIAL, data=b"x"} inside Packet field 7.
    frame = wire.encode_frame(wire.CallReply("r", 500, wire.PARTIAL, b"x"))
    body = b"\x0a\x01r" + b"\x10\xf4\x03" + b"\x18\x01" + b"\x22\x01x"
    assert frame == struct.pack(">I", len(body) + 2) + b"\x3a" + bytes([len(body)]) + body
    # Empty messages (Ping/Pong) are still sent as a present oneof member.
    assert wire.encode_frame(wire.Pong()) == b"\x00\x00\x00\x02\x7a\x00"
    assert wire.encode_frame(wire.Ping()) == b"\x00\x00\x00\x02\x72\x00"
    # proto3 defaults are not sent: an all-default CallReply carries no fields.
    assert wire.encode_packet(wire.CallReply("", 0)) == b"\x3a\x00"


def test_negative_codes_use_ten_byte_twos_complement() -> None:
    packet = wire.encode_packet(wire.CallReply("r", -1))
    assert b"\x10" + b"\xff" * 9 + b"\x01" in packet
    assert wire.decode_packet(packet) == [wire.CallReply("r", -1)]


def test_unknown_kinds_and_foreign_fields_are_tolerated() -> None:
    # Packet field 9 (not modelled), then a CallRequest carrying an extra fixed64 field 9.
    unknown = b"\x4a\x01\x00"
    call = wire.encode_packet(wire.CallRequest("c", "/a", "1"))
    extra = b"\x49" + b"\x00" * 8
    call = call[:1] + bytes([call[1] + len(extra)]) + call[2:] + extra
    assert wire.decode_packet(unknown + call) == [wire.UnknownPacket(9), wire.CallRequest("c", "/a", "1")]


@pytest.mark.parametrize("garbage", [b"\x3a\x05ab", b"\x3a\xff", b"\x0b", b"\xff" * 11])
def test_malformed_packets_raise_gsb_error(garbage: bytes) -> None:
    with pytest.raises(GsbError):
        wire.decode_packet(garbage)


def test_frame_length_guards_the_header() -> None:
    assert wire.frame_length(b"\x00\x00\x01\x00") == 256
    with pytest.raises(GsbError, match="too big"):
        wire.frame_length(struct.pack(">I", wire.MAX_FRAME + 1))
    with pytest.raises(GsbError):
        wire.frame_length(b"\x00\x01")


def test_encoding_an_unknown_message_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        wire.encode_packet(wire.UnknownPacket(9))


def test_body_roundtrip_and_zlib_bodies_are_tolerated() -> None:
    value = {"activityId": "a1", "usage": {"currentUsage": [1.5, 0.0], "timestamp": 17},
             "blob": b"\x00\xff", "none": None, "flag": True, "list": ["x", -3]}
    assert decode_body(encode_body(value)) == value
    assert decode_body(zlib.compress(encode_body(value))) == value
    assert decode_body(b"") is None
    assert isinstance(decode_body(encode_body({"b": b"\x01"}))["b"], bytes)
    with pytest.raises(GsbError):
        decode_body(b"\x01\x02\x03garbage")


def test_the_body_codec_is_the_cores_flexbuffers_codec() -> None:
    from golem_sync import _flex as flex

    value = {"id": "1", "payload": {"offset": 0, "content": b"abc"}}
    assert encode_body(value) == flex.dumps(value)
    assert decode_body(flex.dumps(value)) == value


def test_ok_value_unwraps_serde_results() -> None:
    assert ok_value({"Ok": [1, 2]}) == [1, 2]
    assert ok_value({"Ok": None}) is None
    with pytest.raises(GsbServiceError) as err:
        ok_value({"Err": {"notFound": "batch"}})
    assert err.value.error == {"notFound": "batch"}
    with pytest.raises(GsbError):
        ok_value({"something": 1})
