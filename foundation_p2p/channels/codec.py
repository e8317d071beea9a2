"""Channel records: one message, length-delimited, on its channel's stream.

A record (``spec/channels.md`` section 4) is a 14-byte header, the topic, and the body::

    body_length  u32   bytes of body on the stream (after compression)
    flags        u8    0x01 COMPRESSED (zlib, RFC 1950), 0x02 BINARY; other bits 0
    seq          u64   the publisher's sequence number on this stream (0, 1, 2, ...)
    topic_length u8    1..64
    topic        topic_length bytes, a topic name (ASCII, spec section 2)
    body         body_length bytes

all integers big-endian. The body, once decompressed if COMPRESSED, is the message: with
BINARY, its raw bytes (the message is a byte string, carried without a CBOR head, so a
large binary payload costs no per-byte work on either side); without, the deterministic
CBOR encoding of the message (``foundation_p2p.wire.cbor``), which must not be a byte
string (those always travel BINARY, so every message has one uncompressed encoding).

Bounds (:class:`ChannelLimits`): a body is at most ``max_message_bytes`` on the stream and
after decompression; a longer ``body_length`` is refused from the header alone, and a
zlib stream that inflates beyond the bound is refused after inflating one byte more
(zip bombs cost at most the bound). Decoded values obey ``max_depth`` and
``max_collection_items``. Every failure raises a :class:`~foundation_p2p.errors.WireError`.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import cbor2

from foundation_p2p.channels.names import MAX_TOPIC_BYTES, check_topic, topic_problem
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import WireLimits

HEADER = struct.Struct("!IBQB")
"""The fixed header: body_length, flags, seq, topic_length."""
HEADER_BYTES = HEADER.size  # 14

COMPRESSED = 0x01
"""Flag: the body is a zlib stream."""
BINARY = 0x02
"""Flag: the (decompressed) body is the message's bytes, not CBOR."""
KNOWN_FLAGS = COMPRESSED | BINARY

MAX_SEQ = 2**64 - 1
"""Largest sequence number (u64)."""

_SMALL_CBOR_BYTES = 65_507  # cbor.decode's own size cap (WireLimits.max_packet_bytes)

# Initial bytes of the CBOR items that are not plain data: tags (major type 6) and simple
# values other than false/true/null/floats (0xe0..0xf3, undefined 0xf7, 0xf8); and of
# arrays and maps (0x80..0xbf).
_NOT_PLAIN_HEADS = bytes([*range(0xC0, 0xDC), *range(0xE0, 0xF4), 0xF7, 0xF8])
_CONTAINER_HEADS = bytes(range(0x80, 0xC0))
_UNREMARKABLE = bytes(b for b in range(256) if b not in _NOT_PLAIN_HEADS + _CONTAINER_HEADS)

_TOPIC_CACHE: dict[bytes, str] = {}
_TOPIC_CACHE_MAX = 1024  # entries; cleared when full (a bound, not an LRU)
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """Bounds on channel messages, enforced when encoding and when decoding."""

    max_message_bytes: int = 64 * 1024 * 1024
    """Largest body, on the stream and after decompression (bytes)."""
    max_depth: int = 16
    """Deepest container nesting in a CBOR message."""
    max_collection_items: int = 65_536
    """Most elements in any array or map of a CBOR message."""
    value_limits: WireLimits = field(init=False, repr=False, compare=False)
    """The same bounds as a ``WireLimits`` (for ``cbor.check_plain``)."""

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_depth", "max_collection_items"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(f"ChannelLimits.{name}: must be a positive integer")
        if self.max_message_bytes > 0xFFFFFFFF:
            raise ConfigError("ChannelLimits.max_message_bytes: at most 2**32 - 1 (u32 length)")
        object.__setattr__(
            self,
            "value_limits",
            WireLimits(
                max_depth=self.max_depth,
                max_collection_items=self.max_collection_items,
                max_text_bytes=self.max_message_bytes,
                max_bytes_bytes=self.max_message_bytes,
            ),
        )


DEFAULT_CHANNEL_LIMITS = ChannelLimits()


@dataclass(slots=True)
class ChannelMessage:
    """One decoded record."""

    topic: str
    """The topic it was published on."""
    seq: int
    """The publisher's sequence number on this stream."""
    value: Any
    """The message: plain CBOR data (``bytes`` for a BINARY record)."""
    flags: int
    """The record's flags (``COMPRESSED``, ``BINARY``)."""
    record_bytes: int
    """The record's size on the stream (header + topic + body)."""


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """A message encoded once, ready to be framed for any number of streams."""

    flags: int
    """``BINARY`` and/or ``COMPRESSED``."""
    body: bytes
    """The body as it goes on the stream."""
    message_bytes: int
    """The body's size before compression."""


def encode_body(
    value: Any, *, compress: bool = False, limits: ChannelLimits = DEFAULT_CHANNEL_LIMITS
) -> EncodedBody:
    """Encode ``value`` as a record body (the part shared by every recipient).

    A ``bytes`` value travels BINARY (no copy, no CBOR head); anything else must be
    plain CBOR data within ``limits`` and is encoded deterministically. With
    ``compress``, the body is zlib-compressed (level 6) *if that makes it smaller*;
    otherwise it is sent uncompressed and the COMPRESSED flag is not set. Raises
    ``LimitError`` if the body exceeds ``limits.max_message_bytes`` and the error of
    :func:`cbor.check_plain` for a value that is not plain data.
    """
    if type(value) is bytes:
        flags, body = BINARY, value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        flags, body = BINARY, bytes(value)
    else:
        cbor.check_plain(value, limits.value_limits, what="message")
        flags, body = 0, cbor.encode(value)
    size = len(body)
    if size > limits.max_message_bytes:
        raise LimitError(
            f"message: {size} bytes exceeds max_message_bytes {limits.max_message_bytes}"
        )
    if compress and size:
        packed = zlib.compress(body, 6)
        if len(packed) < size:
            flags |= COMPRESSED
            body = packed
    return EncodedBody(flags, body, size)


def record_header(topic: str, seq: int, body: EncodedBody) -> bytes:
    """The header and topic that precede ``body`` on a stream (``topic`` already checked)."""
    raw = topic.encode("ascii")
    return _pack_header(len(body.body), body.flags, seq, len(raw)) + raw


def encode_record(
    topic: str,
    seq: int,
    value: Any,
    *,
    compress: bool = False,
    limits: ChannelLimits = DEFAULT_CHANNEL_LIMITS,
) -> bytes:
    """One whole record: ``record_header(topic, seq, encode_body(value, ...))`` + body."""
    check_topic(topic)
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise ConfigError(f"seq {seq!r}: must be an integer in 0..2**64-1")
    body = encode_body(value, compress=compress, limits=limits)
    return record_header(topic, seq, body) + body.body


def _inflate(body: memoryview, limit: int) -> bytes:
    """Decompress a zlib stream of at most ``limit`` bytes; refuse bombs and trailing bytes."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedError(f"record body: not a zlib stream: {exc}") from None
    if len(out) > limit:
        raise LimitError(f"record body: inflates beyond max_message_bytes {limit}")
    if not inflater.eof:
        raise MalformedError("record body: zlib stream truncated")
    if inflater.unused_data:
        raise MalformedError(
            f"record body: {len(inflater.unused_data)} bytes after the zlib stream"
        )
    return out


def _decode_large_cbor(data: bytes, limits: ChannelLimits) -> Any:
    """Strict deterministic decoding of a CBOR body longer than ``cbor.decode`` takes.

    Same rules as :func:`cbor.decode`: no indefinite lengths, no duplicate keys, bounded
    nesting, nothing after the item, and the canonical re-encoding must equal the input
    (which also refuses unsorted map keys and non-shortest numbers).
    """
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(
            stream,
            max_depth=limits.max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        ).decode()
    except cbor2.CBORDecodeError as exc:
        if "depth" in str(exc):
            raise LimitError(f"message: nesting deeper than {limits.max_depth}") from None
        raise MalformedError(f"message: not well-formed CBOR: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError, KeyError) as exc:
        raise MalformedError(f"message: not decodable CBOR: {type(exc).__name__}") from None
    if stream.tell() != len(data):
        raise MalformedError(f"message: {len(data) - stream.tell()} bytes after the CBOR item")
    try:
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:
        raise MalformedError(f"message: {type(value).__name__} is not plain CBOR") from exc
    if again != data:
        raise MalformedError("message: not deterministic CBOR (RFC 8949 section 4.2)")
    return value


def decode_body(flags: int, body: memoryview | bytes, limits: ChannelLimits) -> Any:
    """The message a record body carries (see the module docstring)."""
    view = body if isinstance(body, memoryview) else memoryview(body)
    if flags & COMPRESSED:
        data: bytes = _inflate(view, limits.max_message_bytes)
    else:
        data = bytes(view)
    if flags & BINARY:
        return data
    if len(data) <= _SMALL_CBOR_BYTES:
        try:
            value = cbor.decode(data, limits.value_limits)
        except LimitError as exc:
            if "nesting" in str(exc):  # name the bound the caller set, not the decoder's
                raise LimitError(f"message: nesting deeper than {limits.max_depth}") from None
            raise
    else:
        value = _decode_large_cbor(data, limits)
    if type(value) is bytes:
        raise MalformedError("message: a byte string must travel with the BINARY flag")
    # The decoder bounds nesting only to max_depth + 1 empty containers, and lets tags
    # and simple values through, so check_plain walks the value, unless the bytes prove
    # the walk would pass: a body of n bytes holds no collection of more than n elements,
    # nests at most as deep as it has array/map heads, and holds no tag or simple value
    # if none of their initial bytes appears anywhere (string contents can only make
    # this test more cautious, never less).
    if len(data) > limits.max_collection_items:
        cbor.check_plain(value, limits.value_limits, what="message")
    else:
        remarkable = data.translate(None, _UNREMARKABLE)
        if len(remarkable) > limits.max_depth or remarkable.translate(None, _CONTAINER_HEADS):
            cbor.check_plain(value, limits.value_limits, what="message")
    return value


def decode_record(data: bytes, limits: ChannelLimits = DEFAULT_CHANNEL_LIMITS) -> ChannelMessage:
    """Decode exactly one record filling ``data``."""
    decoder = RecordDecoder(limits)
    messages = decoder.feed(data)
    if len(messages) != 1 or not decoder.at_boundary:
        if not messages:
            raise MalformedError(f"record truncated: {len(data)} bytes")
        raise MalformedError("bytes after the end of the record")
    return messages[0]


class RecordDecoder:
    """Incremental decoder of one stream's records: ``feed(bytes) -> [ChannelMessage]``.

    It holds at most one record: the 14-byte header, then at most ``64 + max_message_bytes``
    bytes of topic and body; a header announcing a longer body is refused before any of
    the body is buffered. A record that arrives whole inside one ``feed`` is decoded from
    the caller's buffer without copying it first. After an error the stream is broken
    (framing is lost): every later ``feed`` raises ``MalformedError``; the caller resets
    the stream.
    """

    __slots__ = ("_broken", "_buf", "_flags", "_head", "_rest", "_seq", "_topic_len", "limits")

    def __init__(self, limits: ChannelLimits = DEFAULT_CHANNEL_LIMITS) -> None:
        self.limits = limits
        self._head = bytearray()
        self._rest = 0  # bytes of topic + body still expected; 0 while reading a header
        self._buf = bytearray()
        self._flags = 0
        self._seq = 0
        self._topic_len = 0
        self._broken: str | None = None

    @property
    def at_boundary(self) -> bool:
        """True between records (nothing partial buffered): the stream may end here."""
        return not self._head and self._rest == 0

    @property
    def broken(self) -> bool:
        """True once a record failed to decode (framing is lost; the stream must be reset)."""
        return self._broken is not None

    @property
    def buffered_bytes(self) -> int:
        """Bytes of a partial record held now."""
        return len(self._head) + len(self._buf)

    def end_of_stream(self) -> None:
        """The stream ended (FIN): ``MalformedError`` if it ended inside a record."""
        if not self.at_boundary:
            raise MalformedError(
                f"stream ended inside a record ({self.buffered_bytes} bytes buffered)"
            )

    def feed(self, data: bytes | bytearray | memoryview) -> list[ChannelMessage]:
        """Take the next bytes of the stream; return the records they complete, in order."""
        if self._broken is not None:
            raise MalformedError(f"stream broken by an earlier record: {self._broken}")
        try:
            return self._feed(memoryview(data))
        except WireError as exc:
            self._broken = str(exc)
            self._head.clear()
            self._buf = bytearray()
            raise

    def _feed(self, view: memoryview) -> list[ChannelMessage]:
        out: list[ChannelMessage] = []
        pos = 0
        n = len(view)
        head = self._head
        while pos < n:
            if self._rest == 0:
                if not head and n - pos >= HEADER_BYTES:
                    body_len, flags, seq, topic_len = _unpack_header(view, pos)
                    pos += HEADER_BYTES
                else:
                    take = min(HEADER_BYTES - len(head), n - pos)
                    head += view[pos : pos + take]
                    pos += take
                    if len(head) < HEADER_BYTES:
                        break
                    body_len, flags, seq, topic_len = _unpack_header(head)
                    head.clear()
                self._start(body_len, flags, seq, topic_len)
                continue
            need = self._rest - len(self._buf)
            if not self._buf and n - pos >= need:
                whole = view[pos : pos + need]
                pos += need
            else:
                take = min(need, n - pos)
                self._buf += view[pos : pos + take]
                pos += take
                if len(self._buf) < self._rest:
                    break
                whole = memoryview(self._buf)
            try:
                out.append(self._finish(whole))
            finally:
                whole.release()
            self._buf = bytearray()
            self._rest = 0
        return out

    def _start(self, body_len: int, flags: int, seq: int, topic_len: int) -> None:
        if flags & ~KNOWN_FLAGS:
            raise MalformedError(f"record header: unknown flags 0x{flags:02x}")
        if not 1 <= topic_len <= MAX_TOPIC_BYTES:
            raise MalformedError(f"record header: topic length {topic_len} not in 1..64")
        if body_len > self.limits.max_message_bytes:
            raise LimitError(
                f"record header: body of {body_len} bytes exceeds max_message_bytes "
                f"{self.limits.max_message_bytes}"
            )
        self._flags = flags
        self._seq = seq
        self._topic_len = topic_len
        self._rest = topic_len + body_len

    def _finish(self, whole: memoryview) -> ChannelMessage:
        tl = self._topic_len
        raw_topic = bytes(whole[:tl])
        topic = _TOPIC_CACHE.get(raw_topic)
        if topic is None:
            try:
                topic = raw_topic.decode("ascii")
            except UnicodeDecodeError:
                raise MalformedError("record topic: non-ASCII byte") from None
            problem = topic_problem(topic)
            if problem is not None:
                raise MalformedError(f"record topic {topic!r}: {problem}")
            if len(_TOPIC_CACHE) >= _TOPIC_CACHE_MAX:
                _TOPIC_CACHE.clear()
            _TOPIC_CACHE[raw_topic] = topic
        body = whole[tl:]
        try:
            value = decode_body(self._flags, body, self.limits)
        finally:
            body.release()
        return ChannelMessage(topic, self._seq, value, self._flags, HEADER_BYTES + len(whole))
