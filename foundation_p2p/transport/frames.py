"""Connection frames: what a 1-RTT packet carries, one CBOR array per frame.

A packet's plaintext is a CBOR *sequence* (RFC 8742) of frames, each an array whose first
element is the frame type (``spec/transport.md`` section 4, ``spec/transport.cddl``)::

    PADDING             [0, padding: bstr]
    PING                [1]
    ACK                 [2, largest, ack-delay-us, first-range, (gap, range)*]
    RESET_STREAM        [4, stream-id, error-code, final-size]
    STOP_SENDING        [5, stream-id, error-code]
    STREAM              [8, stream-id, offset, fin: bool, data: bstr]
    MAX_DATA            [16, maximum]
    MAX_STREAM_DATA     [17, stream-id, maximum]
    MAX_STREAMS         [18, uni: bool, maximum]
    DATA_BLOCKED        [20, limit]
    STREAM_DATA_BLOCKED [21, stream-id, limit]
    CONNECTION_CLOSE    [28, error-code, frame-type / null, reason: tstr]
    HANDSHAKE_DONE      [30]
    DATAGRAM            [48, data: bstr]
    PARAMETERS          [64, max-data, max-stream-data, max-streams-bidi, max-streams-uni]

Encoding and decoding are written by hand (no ``cbor2`` on the hot path) and produce and
accept exactly deterministic CBOR: shortest integer and length heads, definite lengths,
only the element types listed. The decoder is strict and bounded; it raises only
:class:`~foundation_p2p.errors.MalformedError` or :class:`~foundation_p2p.errors.LimitError`.
``tests/transport/test_frames.py`` checks every encoder against ``cbor2`` canonical output.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from foundation_p2p.errors import LimitError, MalformedError

MAX_VARINT = (1 << 62) - 1
"""Largest stream id, offset, limit or error code (RFC 9000's variable-length integer)."""
MAX_FRAMES_PER_PACKET = 256
"""Most frames one packet may carry."""
MAX_ACK_RANGES = 1000
"""Most ranges (first range included) one ACK frame may carry."""
MAX_REASON_BYTES = 1024
"""Longest CONNECTION_CLOSE reason, in UTF-8 bytes; longer reasons are truncated on send."""
MAX_FRAME_BYTES = 65_507
"""No frame's byte string is longer than a UDP payload."""


class FrameType(IntEnum):
    """Frame types of connection packets (a numbering space separate from gossip frames)."""

    PADDING = 0
    PING = 1
    ACK = 2
    RESET_STREAM = 4
    STOP_SENDING = 5
    STREAM = 8
    MAX_DATA = 16
    MAX_STREAM_DATA = 17
    MAX_STREAMS = 18
    DATA_BLOCKED = 20
    STREAM_DATA_BLOCKED = 21
    CONNECTION_CLOSE = 28
    HANDSHAKE_DONE = 30
    DATAGRAM = 48
    PARAMETERS = 64


# --- encoding helpers -------------------------------------------------------------------


def uint_bytes(value: int) -> bytes:
    """The shortest CBOR encoding of an unsigned integer below 2^64."""
    if value < 24:
        return bytes((value,))
    if value < 0x100:
        return bytes((0x18, value))
    if value < 0x10000:
        return b"\x19" + value.to_bytes(2, "big")
    if value < 0x100000000:
        return b"\x1a" + value.to_bytes(4, "big")
    return b"\x1b" + value.to_bytes(8, "big")


def _head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes((major | length,))
    if length < 0x100:
        return bytes((major | 24, length))
    if length < 0x10000:
        return bytes((major | 25,)) + length.to_bytes(2, "big")
    if length < 0x100000000:
        return bytes((major | 26,)) + length.to_bytes(4, "big")
    return bytes((major | 27,)) + length.to_bytes(8, "big")


def bstr_head(length: int) -> bytes:
    """The CBOR head of a byte string of ``length`` bytes."""
    return _head(0x40, length)


def array_head(count: int) -> bytes:
    """The CBOR head of an array of ``count`` elements."""
    return _head(0x80, count)


def _tstr(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _head(0x60, len(raw)) + raw


# --- frames -----------------------------------------------------------------------------


@dataclass(slots=True)
class Padding:
    """PADDING: zero bytes that make a packet a given size (path MTU probes).

    Not ack-eliciting. The filler must be zeros (another byte is malformed), so that the
    frame has one encoding, like every other frame."""

    length: int
    """How many filler bytes the frame's byte string holds."""

    def encode(self) -> bytes:
        """``[0, padding]`` with ``length`` zero bytes."""
        return b"\x82\x00" + bstr_head(self.length) + bytes(self.length)


@dataclass(slots=True)
class Ping:
    """PING: asks for an acknowledgement (keep-alive, probes)."""

    def encode(self) -> bytes:
        """``[1]``."""
        return b"\x81\x01"


@dataclass(slots=True)
class HandshakeDone:
    """HANDSHAKE_DONE: the server confirms it holds the 1-RTT keys (client stops resending)."""

    def encode(self) -> bytes:
        """``[30]``."""
        return b"\x81\x18\x1e"


@dataclass(slots=True)
class AckFrame:
    """ACK: the packet numbers received, as inclusive ranges, newest first."""

    ranges: list[tuple[int, int]]
    """``(low, high)`` inclusive, descending by ``high``, disjoint and not adjacent."""
    ack_delay_us: int
    """Microseconds between receiving the largest packet and sending this ACK."""

    @property
    def largest(self) -> int:
        """The largest packet number acknowledged."""
        return self.ranges[0][1]

    def encode(self) -> bytes:
        """``[2, largest, ack-delay-us, first-range, (gap, range)*]`` (RFC 9000 19.3.1)."""
        ranges = self.ranges
        low, high = ranges[0]
        parts = [
            array_head(2 + 2 * len(ranges)),
            b"\x02",
            uint_bytes(high),
            uint_bytes(self.ack_delay_us),
            uint_bytes(high - low),
        ]
        prev_low = low
        for low, high in ranges[1:]:
            parts.append(uint_bytes(prev_low - high - 2))
            parts.append(uint_bytes(high - low))
            prev_low = low
        return b"".join(parts)


@dataclass(slots=True)
class StreamFrame:
    """STREAM: ``data`` at ``offset`` of stream ``stream_id``; ``fin`` marks its end."""

    stream_id: int
    offset: int
    fin: bool
    data: bytes

    def encode(self) -> bytes:
        """``[8, stream-id, offset, fin, data]``."""
        return encode_stream(self.stream_id, self.offset, self.fin, self.data)


def encode_stream(stream_id: int, offset: int, fin: bool, data: bytes) -> bytes:
    """The STREAM frame bytes without building a frame object (the send hot path)."""
    return b"".join(
        (
            b"\x85\x08",
            uint_bytes(stream_id),
            uint_bytes(offset),
            b"\xf5" if fin else b"\xf4",
            bstr_head(len(data)),
            data,
        )
    )


def stream_overhead(stream_id: int, offset: int, length: int) -> int:
    """Bytes a STREAM frame adds around ``length`` bytes of data (an upper bound)."""
    return 3 + len(uint_bytes(stream_id)) + len(uint_bytes(offset)) + len(bstr_head(length))


@dataclass(slots=True)
class ResetStream:
    """RESET_STREAM: the sender abandons the stream at ``final_size`` bytes."""

    stream_id: int
    error_code: int
    final_size: int

    def encode(self) -> bytes:
        """``[4, stream-id, error-code, final-size]``."""
        return (
            b"\x84\x04"
            + uint_bytes(self.stream_id)
            + uint_bytes(self.error_code)
            + uint_bytes(self.final_size)
        )


@dataclass(slots=True)
class StopSending:
    """STOP_SENDING: the receiver no longer wants the stream's data."""

    stream_id: int
    error_code: int

    def encode(self) -> bytes:
        """``[5, stream-id, error-code]``."""
        return b"\x83\x05" + uint_bytes(self.stream_id) + uint_bytes(self.error_code)


@dataclass(slots=True)
class MaxData:
    """MAX_DATA: the connection-level limit on stream bytes the peer may send."""

    maximum: int

    def encode(self) -> bytes:
        """``[16, maximum]``."""
        return b"\x82\x10" + uint_bytes(self.maximum)


@dataclass(slots=True)
class MaxStreamData:
    """MAX_STREAM_DATA: the limit on one stream's offset."""

    stream_id: int
    maximum: int

    def encode(self) -> bytes:
        """``[17, stream-id, maximum]``."""
        return b"\x83\x11" + uint_bytes(self.stream_id) + uint_bytes(self.maximum)


@dataclass(slots=True)
class MaxStreams:
    """MAX_STREAMS: how many streams of one direction the peer may open in total."""

    uni: bool
    maximum: int

    def encode(self) -> bytes:
        """``[18, uni, maximum]``."""
        return b"\x83\x12" + (b"\xf5" if self.uni else b"\xf4") + uint_bytes(self.maximum)


@dataclass(slots=True)
class DataBlocked:
    """DATA_BLOCKED: the sender has data but reached the connection limit ``limit``."""

    limit: int

    def encode(self) -> bytes:
        """``[20, limit]``."""
        return b"\x82\x14" + uint_bytes(self.limit)


@dataclass(slots=True)
class StreamDataBlocked:
    """STREAM_DATA_BLOCKED: the sender reached the stream limit ``limit``."""

    stream_id: int
    limit: int

    def encode(self) -> bytes:
        """``[21, stream-id, limit]``."""
        return b"\x83\x15" + uint_bytes(self.stream_id) + uint_bytes(self.limit)


@dataclass(slots=True)
class ConnectionClose:
    """CONNECTION_CLOSE: the sender closes the connection with ``error_code``."""

    error_code: int
    frame_type: int | None
    """The frame type that triggered the error, if any."""
    reason: str
    """Human-readable, at most ``MAX_REASON_BYTES`` UTF-8 bytes."""

    def encode(self) -> bytes:
        """``[28, error-code, frame-type / null, reason]``."""
        ft = b"\xf6" if self.frame_type is None else uint_bytes(self.frame_type)
        return b"\x84\x18\x1c" + uint_bytes(self.error_code) + ft + _tstr(self.reason)


@dataclass(slots=True)
class DatagramFrame:
    """DATAGRAM: an unreliable application message (RFC 9221): never retransmitted."""

    data: bytes

    def encode(self) -> bytes:
        """``[48, data]``."""
        return b"\x82\x18\x30" + bstr_head(len(self.data)) + self.data


@dataclass(slots=True)
class Parameters:
    """PARAMETERS: the sender's initial receive limits (sent once, in its first packets).

    Until it arrives, the peer uses the protocol floor (``spec/transport.md`` section 6).
    Every value is at least the floor; they only ever raise limits.
    """

    max_data: int
    max_stream_data: int
    max_streams_bidi: int
    max_streams_uni: int

    def encode(self) -> bytes:
        """``[64, max-data, max-stream-data, max-streams-bidi, max-streams-uni]``."""
        return (
            b"\x85\x18\x40"
            + uint_bytes(self.max_data)
            + uint_bytes(self.max_stream_data)
            + uint_bytes(self.max_streams_bidi)
            + uint_bytes(self.max_streams_uni)
        )


Frame = (
    Padding
    | Ping
    | HandshakeDone
    | AckFrame
    | StreamFrame
    | ResetStream
    | StopSending
    | MaxData
    | MaxStreamData
    | MaxStreams
    | DataBlocked
    | StreamDataBlocked
    | ConnectionClose
    | DatagramFrame
    | Parameters
)

ACK_ELICITING_EXEMPT = (AckFrame, ConnectionClose, Padding)
"""Frames that do not by themselves ask for an acknowledgement (RFC 9000 section 13.2)."""


def encode_frames(frames: list[Frame]) -> bytes:
    """A packet payload: the frames' encodings concatenated (a CBOR sequence)."""
    return b"".join(f.encode() for f in frames)


# --- decoding ---------------------------------------------------------------------------


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    """The shortest-form unsigned integer at ``pos`` and the position after it."""
    head = data[pos]
    if head < 24:
        return head, pos + 1
    if head == 0x18:
        value = data[pos + 1]
        if value < 24:
            raise MalformedError("frame: integer not in shortest form")
        return value, pos + 2
    if head == 0x19:
        end = pos + 3
        value = int.from_bytes(data[pos + 1 : end], "big")
        if value < 0x100 or end > len(data):
            raise MalformedError("frame: integer not in shortest form or truncated")
        return value, end
    if head == 0x1A:
        end = pos + 5
        value = int.from_bytes(data[pos + 1 : end], "big")
        if value < 0x10000 or end > len(data):
            raise MalformedError("frame: integer not in shortest form or truncated")
        return value, end
    if head == 0x1B:
        end = pos + 9
        value = int.from_bytes(data[pos + 1 : end], "big")
        if value < 0x100000000 or end > len(data):
            raise MalformedError("frame: integer not in shortest form or truncated")
        return value, end
    raise MalformedError(f"frame: expected an unsigned integer, got CBOR head {head:#04x}")


def _length(data: bytes, pos: int, major: int) -> tuple[int, int]:
    """The length argument of a string/array head of ``major`` type at ``pos``."""
    head = data[pos]
    if head & 0xE0 != major:
        raise MalformedError(f"frame: unexpected CBOR head {head:#04x}")
    info = head & 0x1F
    if info < 24:
        return info, pos + 1
    if info > 27:
        raise MalformedError("frame: indefinite or reserved length")
    # same shortest-form rules as an integer, read with the major type masked off
    fake = bytes((info,)) + data[pos + 1 : pos + 9]
    value, used = _uint(fake, 0)
    return value, pos + used


def _bstr(data: bytes, pos: int) -> tuple[bytes, int]:
    length, start = _length(data, pos, 0x40)
    end = start + length
    if end > len(data):
        raise MalformedError("frame: byte string runs past the packet")
    return data[start:end], end


def _bool(data: bytes, pos: int) -> tuple[bool, int]:
    head = data[pos]
    if head == 0xF5:
        return True, pos + 1
    if head == 0xF4:
        return False, pos + 1
    raise MalformedError(f"frame: expected a boolean, got CBOR head {head:#04x}")


def _varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    value, pos = _uint(data, pos)
    if value > MAX_VARINT:
        raise MalformedError(f"frame: {what} {value} exceeds 2^62-1")
    return value, pos


def _decode_ack(data: bytes, pos: int, count: int) -> tuple[AckFrame, int]:
    if count < 4 or count % 2:
        raise MalformedError(f"ACK frame: bad element count {count}")
    if (count - 2) // 2 > MAX_ACK_RANGES:
        raise LimitError(f"ACK frame: more than {MAX_ACK_RANGES} ranges")
    largest, pos = _varint(data, pos, "largest")
    delay, pos = _varint(data, pos, "ack delay")
    first, pos = _uint(data, pos)
    low = largest - first
    if low < 0:
        raise MalformedError("ACK frame: first range below packet number 0")
    ranges = [(low, largest)]
    for _ in range((count - 4) // 2):
        gap, pos = _uint(data, pos)
        length, pos = _uint(data, pos)
        high = low - gap - 2
        low = high - length
        if low < 0:
            raise MalformedError("ACK frame: range below packet number 0")
        ranges.append((low, high))
    return AckFrame(ranges, delay), pos


def _decode_stream(data: bytes, pos: int, count: int) -> tuple[StreamFrame, int]:
    if count != 5:
        raise MalformedError(f"STREAM frame: expected 5 elements, got {count}")
    sid, pos = _varint(data, pos, "stream id")
    offset, pos = _varint(data, pos, "offset")
    head = data[pos]
    if head == 0xF4:
        fin = False
    elif head == 0xF5:
        fin = True
    else:
        raise MalformedError("STREAM frame: fin must be a boolean")
    payload, pos = _bstr(data, pos + 1)
    if offset + len(payload) > MAX_VARINT:
        raise MalformedError("STREAM frame: offset + length exceeds 2^62-1")
    return StreamFrame(sid, offset, fin, payload), pos


def _decode_other(ftype: int, data: bytes, pos: int, count: int) -> tuple[Frame, int]:
    expected = _COUNTS.get(ftype)
    if expected is None:
        raise MalformedError(f"frame: unknown frame type {ftype}")
    if count != expected:
        raise MalformedError(
            f"{FrameType(ftype).name} frame: expected {expected} elements, got {count}"
        )
    frame: Frame
    if ftype == FrameType.PING:
        frame = Ping()
    elif ftype == FrameType.PADDING:
        length, start = _length(data, pos, 0x40)
        pos = start + length
        if pos > len(data):
            raise MalformedError("PADDING frame: byte string runs past the packet")
        if data.count(0, start, pos) != length:
            # zeros only, so the frame has one encoding (decode then encode is exact)
            raise MalformedError("PADDING frame: a filler byte is not zero")
        frame = Padding(length)
    elif ftype == FrameType.HANDSHAKE_DONE:
        frame = HandshakeDone()
    elif ftype == FrameType.RESET_STREAM:
        sid, pos = _varint(data, pos, "stream id")
        code, pos = _varint(data, pos, "error code")
        size, pos = _varint(data, pos, "final size")
        frame = ResetStream(sid, code, size)
    elif ftype == FrameType.STOP_SENDING:
        sid, pos = _varint(data, pos, "stream id")
        code, pos = _varint(data, pos, "error code")
        frame = StopSending(sid, code)
    elif ftype == FrameType.MAX_DATA:
        value, pos = _varint(data, pos, "maximum")
        frame = MaxData(value)
    elif ftype == FrameType.MAX_STREAM_DATA:
        sid, pos = _varint(data, pos, "stream id")
        value, pos = _varint(data, pos, "maximum")
        frame = MaxStreamData(sid, value)
    elif ftype == FrameType.MAX_STREAMS:
        uni, pos = _bool(data, pos)
        value, pos = _varint(data, pos, "maximum")
        if value > 1 << 60:
            raise MalformedError("MAX_STREAMS frame: maximum exceeds 2^60")
        frame = MaxStreams(uni, value)
    elif ftype == FrameType.DATA_BLOCKED:
        value, pos = _varint(data, pos, "limit")
        frame = DataBlocked(value)
    elif ftype == FrameType.STREAM_DATA_BLOCKED:
        sid, pos = _varint(data, pos, "stream id")
        value, pos = _varint(data, pos, "limit")
        frame = StreamDataBlocked(sid, value)
    elif ftype == FrameType.CONNECTION_CLOSE:
        code, pos = _varint(data, pos, "error code")
        if data[pos] == 0xF6:
            trigger: int | None = None
            pos += 1
        else:
            trigger, pos = _varint(data, pos, "frame type")
        length, start = _length(data, pos, 0x60)
        if length > MAX_REASON_BYTES:
            raise LimitError(f"CONNECTION_CLOSE frame: reason longer than {MAX_REASON_BYTES}")
        end = start + length
        if end > len(data):
            raise MalformedError("CONNECTION_CLOSE frame: reason runs past the packet")
        try:
            reason = data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError("CONNECTION_CLOSE frame: reason is not UTF-8") from None
        frame, pos = ConnectionClose(code, trigger, reason), end
    elif ftype == FrameType.DATAGRAM:
        payload, pos = _bstr(data, pos)
        frame = DatagramFrame(payload)
    else:  # PARAMETERS
        values = []
        for what in ("max data", "max stream data", "max streams bidi", "max streams uni"):
            value, pos = _varint(data, pos, what)
            values.append(value)
        if values[2] > 1 << 60 or values[3] > 1 << 60:
            raise MalformedError("PARAMETERS frame: max streams exceeds 2^60")
        frame = Parameters(*values)
    return frame, pos


_COUNTS: dict[int, int] = {
    FrameType.PADDING: 2,
    FrameType.PING: 1,
    FrameType.HANDSHAKE_DONE: 1,
    FrameType.RESET_STREAM: 4,
    FrameType.STOP_SENDING: 3,
    FrameType.MAX_DATA: 2,
    FrameType.MAX_STREAM_DATA: 3,
    FrameType.MAX_STREAMS: 3,
    FrameType.DATA_BLOCKED: 2,
    FrameType.STREAM_DATA_BLOCKED: 3,
    FrameType.CONNECTION_CLOSE: 4,
    FrameType.DATAGRAM: 2,
    FrameType.PARAMETERS: 5,
}


def decode_frames(payload: bytes) -> list[Frame]:
    """Decode a packet's plaintext into its frames, strictly.

    Raises :class:`MalformedError` for anything that is not a sequence of well-formed
    frames of known types in deterministic CBOR (including an empty payload), and
    :class:`LimitError` beyond ``MAX_FRAMES_PER_PACKET`` frames or ``MAX_ACK_RANGES``.
    """
    if not payload:
        raise MalformedError("packet payload: no frames")
    frames: list[Frame] = []
    frame: Frame
    pos = 0
    end = len(payload)
    try:
        while pos < end:
            if len(frames) >= MAX_FRAMES_PER_PACKET:
                raise LimitError(f"packet payload: more than {MAX_FRAMES_PER_PACKET} frames")
            head = payload[pos]
            if 0x81 <= head <= 0x97:
                count = head - 0x80
                pos += 1
            else:
                count, pos = _length(payload, pos, 0x80)
                if count == 0:
                    raise MalformedError("frame: empty array")
            ftype = payload[pos]
            if ftype == 8:
                frame, pos = _decode_stream(payload, pos + 1, count)
            elif ftype == 2:
                frame, pos = _decode_ack(payload, pos + 1, count)
            else:
                ftype, pos = _uint(payload, pos)
                frame, pos = _decode_other(ftype, payload, pos, count)
            frames.append(frame)
    except IndexError:
        raise MalformedError("packet payload: truncated frame") from None
    return frames


def is_ack_eliciting(frames: list[Frame]) -> bool:
    """True if any frame asks for an acknowledgement (all but ACK and CONNECTION_CLOSE)."""
    return any(not isinstance(f, ACK_ELICITING_EXEMPT) for f in frames)
