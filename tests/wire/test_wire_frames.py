"""Unit tests of frames, the frame registry and the frame list (``foundation_p2p.wire.frames``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from foundation_p2p.errors import LimitError, MalformedError
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import (
    FRAME_TYPES,
    Ack,
    Ping,
    decode_frames,
    encode_frames,
    expect_bytes,
    expect_shape,
    expect_text,
    expect_uint,
    register_frame,
)
from foundation_p2p.wire.limits import WireLimits

MAX_U64 = (1 << 64) - 1


def test_ping_and_ack_have_the_spec_type_numbers() -> None:
    assert (Ping.TYPE, Ack.TYPE) == (1, 2)
    assert FRAME_TYPES[1] is Ping and FRAME_TYPES[2] is Ack


@pytest.mark.parametrize("seq", [0, 1, 23, 24, 255, 65_536, MAX_U64])
def test_ping_and_ack_round_trip(seq: int) -> None:
    for frame in (Ping(seq), Ack(seq)):
        data = frame.encode()
        assert data == cbor.encode([frame.TYPE, seq])
        assert type(frame).decode(data) == frame


def test_a_frame_decoder_refuses_another_frame_type() -> None:
    with pytest.raises(MalformedError, match="ping: frame type must be 1"):
        Ping.decode(Ack(5).encode())
    with pytest.raises(MalformedError, match="ack: frame type must be 2"):
        Ack.decode(Ping(5).encode())


@pytest.mark.parametrize("seq", [-1, MAX_U64 + 1, "1", 1.0, None, True, b"\x01"])
def test_seq_must_be_a_uint64(seq: Any) -> None:
    with pytest.raises(MalformedError, match=r"ping\.seq"):
        Ping.from_cbor([1, seq], WireLimits())


def test_frame_list_round_trip_in_order() -> None:
    frames = [Ack(7), Ping(8), Ping(9), Ack(MAX_U64)]
    decoded = decode_frames(encode_frames(frames))
    assert decoded.frames == frames
    assert decoded.unknown == 0


def test_unknown_frame_types_are_skipped_and_counted() -> None:
    data = cbor.encode([[1, 1], [50, "later"], [3], [2, 2], [MAX_U64, {"x": [1, 2]}]])
    decoded = decode_frames(data)
    assert decoded.frames == [Ping(1), Ack(2)]
    assert decoded.unknown == 3


def test_a_malformed_known_frame_rejects_the_whole_list() -> None:
    data = cbor.encode([[1, 1], [2, -5]])
    with pytest.raises(MalformedError, match=r"ack\.seq"):
        decode_frames(data)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (5, "expected an array of frames"),
        ([5], "non-empty array"),
        ([[]], "non-empty array"),
        ([["x", 1]], "unsigned integer"),
        ([[-3, 1]], "unsigned integer"),
        ([[False, 1]], "unsigned integer"),
    ],
)
def test_frame_list_shape_errors_name_the_problem(value: Any, problem: str) -> None:
    with pytest.raises(MalformedError, match=problem):
        decode_frames(cbor.encode(value))


def test_frame_count_limit_counts_unknown_frames_too() -> None:
    limits = WireLimits(max_frames=3)
    decode_frames(cbor.encode([[1, 1], [9], [9]]), limits)
    with pytest.raises(LimitError, match="4 frames exceeds the limit of 3"):
        decode_frames(cbor.encode([[1, 1], [9], [9], [9]]), limits)


def test_default_frame_limit_is_64() -> None:
    decode_frames(encode_frames([Ping(i) for i in range(64)]))
    with pytest.raises(LimitError):
        decode_frames(encode_frames([Ping(i) for i in range(65)]))


@dataclass(frozen=True, slots=True)
class _Note:
    TYPE: ClassVar[int] = 250
    text: str

    def to_cbor(self) -> list[Any]:
        return [250, self.text]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> _Note:
        expect_shape(items, "note", 2, 2)
        return cls(expect_text(items[1], "note.text", 8))


@pytest.fixture
def note_registered() -> Iterator[None]:
    register_frame(_Note)
    try:
        yield
    finally:
        del FRAME_TYPES[_Note.TYPE]


def test_a_registered_frame_type_is_decoded(note_registered: None) -> None:
    decoded = decode_frames(cbor.encode([[250, "hello"], [1, 3]]))
    assert decoded.frames == [_Note("hello"), Ping(3)]
    with pytest.raises(LimitError, match=r"note\.text"):
        decode_frames(cbor.encode([[250, "much too long"]]))


def test_registering_a_type_twice_is_refused(note_registered: None) -> None:
    with pytest.raises(ValueError, match="frame type 250 registered twice"):
        register_frame(_Note)


def test_field_helpers_name_the_field() -> None:
    assert expect_uint(5, "f") == 5
    with pytest.raises(MalformedError, match="f: expected an unsigned integer, got bool"):
        expect_uint(True, "f")
    assert expect_bytes(b"ab", "b", size=2) == b"ab"
    with pytest.raises(MalformedError, match="b: expected 3 bytes, got 2"):
        expect_bytes(b"ab", "b", size=3)
    with pytest.raises(LimitError, match="b: 2 bytes exceeds 1"):
        expect_bytes(b"ab", "b", limit=1)
    with pytest.raises(MalformedError, match="b: expected a byte string, got str"):
        expect_bytes("ab", "b")
    with pytest.raises(LimitError, match="t: longer than 3 bytes"):
        expect_text("\u00e9\u00e9", "t", 3)
    with pytest.raises(MalformedError, match=r"s: expected 1\.\.2 elements, got 3"):
        expect_shape([1, 2, 3], "s", 1, 2)
