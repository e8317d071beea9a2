"""Connection frames (``foundation_p2p.transport.frames``): encodings, strict decoding."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation_p2p.errors import LimitError, MalformedError, WireError
from foundation_p2p.transport.frames import (
    MAX_ACK_RANGES,
    MAX_FRAMES_PER_PACKET,
    MAX_VARINT,
    AckFrame,
    ConnectionClose,
    DataBlocked,
    DatagramFrame,
    Frame,
    HandshakeDone,
    MaxData,
    MaxStreamData,
    MaxStreams,
    Parameters,
    Ping,
    ResetStream,
    StopSending,
    StreamDataBlocked,
    StreamFrame,
    decode_frames,
    encode_frames,
    encode_stream,
    is_ack_eliciting,
    stream_overhead,
)


def _canonical(value: object) -> bytes:
    return cbor2.dumps(value, canonical=True)


def _as_list(frame: Frame) -> list[object]:
    """The frame as the CBOR array the spec gives, built independently of the encoders."""
    if isinstance(frame, Ping):
        return [1]
    if isinstance(frame, HandshakeDone):
        return [30]
    if isinstance(frame, AckFrame):
        out: list[object] = [2, frame.largest, frame.ack_delay_us]
        low, high = frame.ranges[0]
        out.append(high - low)
        prev_low = low
        for low, high in frame.ranges[1:]:
            out += [prev_low - high - 2, high - low]
            prev_low = low
        return out
    if isinstance(frame, StreamFrame):
        return [8, frame.stream_id, frame.offset, frame.fin, frame.data]
    if isinstance(frame, ResetStream):
        return [4, frame.stream_id, frame.error_code, frame.final_size]
    if isinstance(frame, StopSending):
        return [5, frame.stream_id, frame.error_code]
    if isinstance(frame, MaxData):
        return [16, frame.maximum]
    if isinstance(frame, MaxStreamData):
        return [17, frame.stream_id, frame.maximum]
    if isinstance(frame, MaxStreams):
        return [18, frame.uni, frame.maximum]
    if isinstance(frame, DataBlocked):
        return [20, frame.limit]
    if isinstance(frame, StreamDataBlocked):
        return [21, frame.stream_id, frame.limit]
    if isinstance(frame, ConnectionClose):
        return [28, frame.error_code, frame.frame_type, frame.reason]
    if isinstance(frame, DatagramFrame):
        return [48, frame.data]
    assert isinstance(frame, Parameters)
    return [64, frame.max_data, frame.max_stream_data, frame.max_streams_bidi,
            frame.max_streams_uni]


varint = st.integers(0, MAX_VARINT)
small = st.integers(0, 1 << 20)


@st.composite
def ack_frames(draw: st.DrawFn) -> AckFrame:
    largest = draw(st.integers(0, MAX_VARINT))
    n = draw(st.integers(1, 20))
    ranges = []
    high = largest
    for _ in range(n):
        length = draw(st.integers(0, min(300, high)))
        low = high - length
        if low < 0:
            break
        ranges.append((low, high))
        high = low - 2 - draw(st.integers(0, 300))
        if high < 0:
            break
    return AckFrame(ranges, draw(st.integers(0, 1 << 40)))


frames_strategy: st.SearchStrategy[Frame] = st.one_of(
    st.just(Ping()),
    st.just(HandshakeDone()),
    ack_frames(),
    st.builds(
        StreamFrame, st.integers(0, 1 << 40), st.integers(0, 1 << 40), st.booleans(),
        st.binary(max_size=300),
    ),
    st.builds(ResetStream, varint, varint, varint),
    st.builds(StopSending, varint, varint),
    st.builds(MaxData, varint),
    st.builds(MaxStreamData, varint, varint),
    st.builds(MaxStreams, st.booleans(), st.integers(0, 1 << 60)),
    st.builds(DataBlocked, varint),
    st.builds(StreamDataBlocked, varint, varint),
    st.builds(
        ConnectionClose, varint, st.none() | varint, st.text(max_size=50)
    ),
    st.builds(DatagramFrame, st.binary(max_size=300)),
    st.builds(Parameters, varint, varint, st.integers(0, 1 << 60), st.integers(0, 1 << 60)),
)


@given(frames_strategy)
def test_every_encoder_produces_exactly_cbor2_canonical_bytes(frame: Frame) -> None:
    assert frame.encode() == _canonical(_as_list(frame))


@given(st.lists(frames_strategy, min_size=1, max_size=8))
def test_a_frame_sequence_round_trips(frames: list[Frame]) -> None:
    payload = encode_frames(frames)
    assert payload == b"".join(_canonical(_as_list(f)) for f in frames)
    assert decode_frames(payload) == frames


def test_stream_hot_path_encoder_matches_the_frame_object() -> None:
    data = b"x" * 1000
    assert encode_stream(4, 70000, True, data) == StreamFrame(4, 70000, True, data).encode()
    overhead = stream_overhead(4, 70000, len(data))
    assert len(encode_stream(4, 70000, True, data)) == overhead + len(data)


def test_ack_frame_layout_is_largest_delay_first_range_then_gap_length_pairs() -> None:
    frame = AckFrame([(8, 10), (3, 5), (0, 0)], 250)
    # first range 10-8=2; gap = 8-5-2 = 1, length 5-3 = 2; gap = 3-0-2 = 1, length 0
    assert frame.encode() == _canonical([2, 10, 250, 2, 1, 2, 1, 0])
    assert decode_frames(frame.encode()) == [frame]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", MalformedError),
        (b"\x80", MalformedError),  # empty array
        (b"\x01", MalformedError),  # not an array
        (b"\x81\x07", MalformedError),  # unknown frame type
        (b"\x82\x01\x00", MalformedError),  # PING with an extra element
        (b"\x81\x18\x01", MalformedError),  # non-shortest type
        (b"\x85\x08\x00\x00\xf4\x43ab", MalformedError),  # truncated data
        (b"\x85\x08\x00\x00\x01\x40", MalformedError),  # fin not a boolean
        (b"\x85\x08\x00\x18\x05\xf4\x40", MalformedError),  # non-shortest offset
        (b"\x84\x02\x05\x00\x06", MalformedError),  # ACK first range below 0
        (b"\x86\x02\x05\x00\x01\x03\x00", MalformedError),  # ACK later range below 0
        (b"\x85\x02\x05\x00\x01\x00", MalformedError),  # ACK odd element count
        (b"\x84\x18\x1c\x00\xf6\x62\xff\xfe", MalformedError),  # reason not UTF-8
        (b"\x82\x10\x1b\x40\x00\x00\x00\x00\x00\x00\x00", MalformedError),  # > 2^62-1
        (b"\x82\x10\xfb\x00\x00\x00\x00\x00\x00\x00\x00", MalformedError),  # float
        (b"\x82\x18\x30\x5f\x41a\xff", MalformedError),  # indefinite bytes
        (b"\x9f\x01\xff", MalformedError),  # indefinite array
        (b"\x82\x10\x20", MalformedError),  # negative integer
    ],
)
def test_malformed_payloads_are_refused(payload: bytes, error: type[WireError]) -> None:
    with pytest.raises(error):
        decode_frames(payload)


def test_limits_on_frames_and_ack_ranges() -> None:
    with pytest.raises(LimitError):
        decode_frames(b"\x81\x01" * (MAX_FRAMES_PER_PACKET + 1))
    assert len(decode_frames(b"\x81\x01" * MAX_FRAMES_PER_PACKET)) == MAX_FRAMES_PER_PACKET
    many = _canonical([2, 10**9, 0, 0] + [0, 0] * MAX_ACK_RANGES)
    with pytest.raises(LimitError):
        decode_frames(many)
    reason = "r" * 1025
    with pytest.raises(LimitError):
        decode_frames(_canonical([28, 0, None, reason]))


def test_ack_eliciting_is_everything_but_ack_and_close() -> None:
    assert not is_ack_eliciting([AckFrame([(0, 1)], 0), ConnectionClose(0, None, "")])
    assert is_ack_eliciting([AckFrame([(0, 1)], 0), Ping()])
    assert is_ack_eliciting([StreamFrame(0, 0, False, b"a")])


@given(st.binary(max_size=200))
def test_decoder_raises_only_wire_errors(data: bytes) -> None:
    try:
        frames = decode_frames(data)
    except WireError:
        return
    assert encode_frames(frames) == data
