"""The write-ahead log's record format (``spec/consensus-wal.md``): pure encode and decode.

Every record is a 9-byte header then a body::

    length : u32 big-endian   (body bytes, not counting the header)
    type   : u8               (RecordType)
    crc    : u32 big-endian   (CRC-32 of the length, type and body bytes)
    body   : length bytes

The checksum is CRC-32 (ISO-HDLC, the polynomial of zlib, Ethernet and gzip) computed by
``zlib.crc32``: it is in the standard library and runs in C, so checking every record on
recovery costs little. CRC-32C (Castagnoli, used by etcd and ext4) detects slightly more
error patterns at some lengths and has a CPU instruction, but Python has no C
implementation of it in the standard library and a pure-Python one is ~100x slower; for
the errors a WAL meets (a torn tail, a flipped bit, a zeroed block) both detect every
burst up to 32 bits and, otherwise, all but 1 in 2^32 corruptions.

The checksum covers the length and the type as well as the body, so a flipped bit in a
header is caught like one in a body.

Bodies (all integers big-endian):

- ``SEGMENT_HEADER``: ``magic "fp2p-wal"`` (8 bytes), ``version u8`` (1),
  ``segment u64`` (its sequence number), ``first_index u64`` (the index the next entry
  appended after it will have).
- ``ENTRY``: ``term u64``, ``index u64``, ``kind u8`` (EntryKind), then the data.
- ``HARD_STATE``: ``term u64``, ``commit u64``, ``has_vote u8`` (0 or 1), then the 16-byte
  vote when ``has_vote`` is 1.
- ``SNAPSHOT``: ``index u64``, ``term u64``, ``mode u8`` (0 = compact: entries after the
  index are kept, 1 = install: every entry is dropped), then the configuration as
  deterministic CBOR ``[voters, learners, voters_outgoing]``, each a sorted array of
  16-byte node ids.
- ``SNAPSHOT_DATA`` (only in snapshot files): ``index u64``, ``term u64``, then the state
  machine's bytes.

Decoders raise :class:`~foundation_p2p.errors.MalformedError` naming the problem, or
:class:`~foundation_p2p.errors.LimitError` for a length over the limit; a short buffer is
:class:`TruncatedRecord` (a ``MalformedError``) so the log can tell a torn tail apart from
corruption. They never raise anything else.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import cbor2

from foundation_p2p.consensus.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta
from foundation_p2p.errors import LimitError, MalformedError, WireError

HEADER_BYTES = 9
"""Bytes of a record header: length (4), type (1), CRC (4)."""
MAGIC = b"fp2p-wal"
"""The first 8 bytes of every segment header body."""
VERSION = 1
"""The record format version written in segment headers."""
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Largest record body accepted by default (64 MiB): a length above it is corruption."""
NODE_ID_BYTES = 16
MAX_CONF_MEMBERS = 4096
"""Most node ids in one set of a stored configuration."""

_HEADER = struct.Struct(">IBI")
_LEN_TYPE = struct.Struct(">IB")
_ENTRY = struct.Struct(">QQB")
_HARD = struct.Struct(">QQB")
_SEGMENT = struct.Struct(">8sBQQ")
_SNAP = struct.Struct(">QQB")
_SNAP_DATA = struct.Struct(">QQ")
_MAX_U64 = (1 << 64) - 1


class RecordType(IntEnum):
    """The type byte of a record."""

    SEGMENT_HEADER = 1
    ENTRY = 2
    HARD_STATE = 3
    SNAPSHOT = 4
    # 5 is reserved (a configuration record in drafts of this format; never written).
    SNAPSHOT_DATA = 6


_T_ENTRY = int(RecordType.ENTRY)
_T_HARD_STATE = int(RecordType.HARD_STATE)
_ENTRY_KINDS = {int(k): k for k in EntryKind}

RECORD_HEADER = _HEADER
"""The header as a ``struct``: length (u32), type (u8), CRC (u32), big-endian."""
ENTRY_HEADER = _ENTRY
"""The fixed part of an entry body: term (u64), index (u64), kind (u8)."""
ENTRY_KINDS = _ENTRY_KINDS
"""Entry kind number -> :class:`EntryKind` (for decoders' fast paths)."""


class SnapshotMode(IntEnum):
    """What a snapshot marker does to the entries held."""

    COMPACT = 0
    """A local snapshot: entries up to its index are dropped, later ones kept."""
    INSTALL = 1
    """A snapshot received from the leader: every entry held is dropped."""


class TruncatedRecord(MalformedError):
    """The buffer ends inside a record (its header or its body)."""


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The first record of a segment file."""

    segment: int
    """The segment's sequence number (also in its file name)."""
    first_index: int
    """The index the first entry appended to this segment was expected to have."""


@dataclass(frozen=True, slots=True)
class SnapshotMarker:
    """A snapshot record: the snapshot ``meta`` is durable and the log may drop entries."""

    meta: SnapshotMeta
    mode: SnapshotMode


@dataclass(frozen=True, slots=True)
class SnapshotData:
    """The contents of a snapshot file."""

    index: int
    term: int
    data: bytes


Record = SegmentHeader | Entry | HardState | SnapshotMarker | SnapshotData
"""A decoded record body."""


def _u64(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_U64:
        raise MalformedError(f"{what} {value!r} is not an unsigned 64-bit integer")
    return value


def frame(rtype: RecordType, body: bytes) -> bytes:
    """One record: the header (length, type, CRC) then ``body``."""
    head = _LEN_TYPE.pack(len(body), rtype)
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + crc.to_bytes(4, "big") + body


# -- bodies ---------------------------------------------------------------------------


def _encode_conf(conf: ConfState) -> bytes:
    sets = []
    for what, ids in (
        ("voters", conf.voters),
        ("learners", conf.learners),
        ("voters_outgoing", conf.voters_outgoing),
    ):
        for node in ids:
            if not isinstance(node, bytes) or len(node) != NODE_ID_BYTES:
                raise MalformedError(f"configuration {what}: {node!r} is not a 16-byte node id")
        sets.append(sorted(ids))
    return cbor2.dumps(sets, canonical=True)


def _decode_conf(body: bytes, what: str) -> ConfState:
    try:
        value = cbor2.loads(body, max_depth=4, allow_indefinite=False)
    except Exception as exc:  # cbor2 raises several types; every one means "not CBOR"
        raise MalformedError(f"{what}: configuration is not well-formed CBOR: {exc}") from None
    if not (isinstance(value, list) and len(value) == 3):
        raise MalformedError(f"{what}: configuration is not an array of 3 node-id sets")
    sets: list[frozenset[bytes]] = []
    for name, ids in zip(("voters", "learners", "voters_outgoing"), value, strict=True):
        if not isinstance(ids, list):
            raise MalformedError(f"{what}: configuration {name} is not an array")
        if len(ids) > MAX_CONF_MEMBERS:
            raise LimitError(f"{what}: configuration {name} has over {MAX_CONF_MEMBERS} ids")
        for node in ids:
            if not isinstance(node, bytes) or len(node) != NODE_ID_BYTES:
                raise MalformedError(f"{what}: configuration {name} holds a non-node-id")
        if ids != sorted(set(ids)):
            raise MalformedError(f"{what}: configuration {name} is not sorted and unique")
        sets.append(frozenset(ids))
    conf = ConfState(voters=sets[0], learners=sets[1], voters_outgoing=sets[2])
    if _encode_conf(conf) != body:
        raise MalformedError(f"{what}: configuration is not deterministic CBOR")
    return conf


def encode_segment_header(header: SegmentHeader) -> bytes:
    """A ``SEGMENT_HEADER`` record."""
    body = _SEGMENT.pack(
        MAGIC, VERSION, _u64(header.segment, "segment"), _u64(header.first_index, "first index")
    )
    return frame(RecordType.SEGMENT_HEADER, body)


def encode_entry(entry: Entry) -> bytes:
    """An ``ENTRY`` record."""
    body = _ENTRY.pack(_u64(entry.term, "entry term"), _u64(entry.index, "entry index"), entry.kind)
    return frame(RecordType.ENTRY, body + entry.data)


def encode_entries(entries: list[Entry]) -> bytes:
    """Consecutive ``ENTRY`` records (one buffer, written with one call)."""
    out = bytearray()
    pack_head = _LEN_TYPE.pack
    pack_entry = _ENTRY.pack
    crc32 = zlib.crc32
    etype = RecordType.ENTRY
    for e in entries:
        if not 0 <= e.term <= _MAX_U64 or not 0 <= e.index <= _MAX_U64:
            raise MalformedError(f"entry {e.index} term {e.term}: not unsigned 64-bit integers")
        body = pack_entry(e.term, e.index, e.kind) + e.data
        head = pack_head(len(body), etype)
        out += head
        out += crc32(body, crc32(head)).to_bytes(4, "big")
        out += body
    return bytes(out)


def encode_hard_state(state: HardState) -> bytes:
    """A ``HARD_STATE`` record."""
    vote = state.vote
    if vote is not None and (not isinstance(vote, bytes) or len(vote) != NODE_ID_BYTES):
        raise MalformedError(f"hard state vote {vote!r} is not a 16-byte node id")
    body = _HARD.pack(
        _u64(state.term, "hard state term"),
        _u64(state.commit, "hard state commit"),
        vote is not None,
    )
    return frame(RecordType.HARD_STATE, body + (vote or b""))


def encode_snapshot_marker(marker: SnapshotMarker) -> bytes:
    """A ``SNAPSHOT`` record."""
    meta = marker.meta
    head = _SNAP.pack(
        _u64(meta.index, "snapshot index"), _u64(meta.term, "snapshot term"), marker.mode
    )
    return frame(RecordType.SNAPSHOT, head + _encode_conf(meta.conf))


def encode_snapshot_data(snap: SnapshotData) -> bytes:
    """A ``SNAPSHOT_DATA`` record (the whole of a snapshot file)."""
    head = _SNAP_DATA.pack(_u64(snap.index, "snapshot index"), _u64(snap.term, "snapshot term"))
    return frame(RecordType.SNAPSHOT_DATA, head + snap.data)


def encode_record(record: Record) -> bytes:
    """The record for any decoded body (the inverse of :func:`decode_record`)."""
    if isinstance(record, Entry):
        return encode_entry(record)
    if isinstance(record, HardState):
        return encode_hard_state(record)
    if isinstance(record, SegmentHeader):
        return encode_segment_header(record)
    if isinstance(record, SnapshotMarker):
        return encode_snapshot_marker(record)
    if isinstance(record, SnapshotData):
        return encode_snapshot_data(record)
    raise MalformedError(f"not a WAL record: {type(record).__name__}")


def decode_body(rtype: int, body: bytes) -> Record:
    """The value of a record body of type ``rtype`` (already checksummed)."""
    n = len(body)
    if rtype == _T_ENTRY:  # the hot path: plain ints, no enum construction
        if n < 17:
            raise MalformedError(f"entry record: body of {n} bytes is shorter than 17")
        term, index, kind = _ENTRY.unpack_from(body)
        ekind = _ENTRY_KINDS.get(kind)
        if ekind is None:
            raise MalformedError(f"entry record: unknown entry kind {kind}")
        if index == 0:
            raise MalformedError("entry record: index 0 (indexes start at 1)")
        return Entry(term=term, index=index, kind=ekind, data=body[_ENTRY.size :])
    if rtype == _T_HARD_STATE:
        if n < _HARD.size:
            raise MalformedError(f"hard state record: body of {n} bytes is shorter than 17")
        term, commit, has_vote = _HARD.unpack_from(body)
        if has_vote not in (0, 1):
            raise MalformedError(f"hard state record: has_vote is {has_vote}, not 0 or 1")
        want = _HARD.size + (NODE_ID_BYTES if has_vote else 0)
        if n != want:
            raise MalformedError(f"hard state record: body of {n} bytes, expected {want}")
        vote = body[_HARD.size :] if has_vote else None
        return HardState(term=term, vote=vote, commit=commit)
    if rtype == RecordType.SEGMENT_HEADER:
        if n != _SEGMENT.size:
            raise MalformedError(f"segment header record: body of {n} bytes, expected 25")
        magic, version, segment, first_index = _SEGMENT.unpack(body)
        if magic != MAGIC:
            raise MalformedError(f"segment header record: magic {magic!r} is not {MAGIC!r}")
        if version != VERSION:
            raise MalformedError(f"segment header record: unsupported version {version}")
        return SegmentHeader(segment=segment, first_index=first_index)
    if rtype == RecordType.SNAPSHOT:
        if n < _SNAP.size:
            raise MalformedError(f"snapshot record: body of {n} bytes is shorter than 17")
        index, term, mode = _SNAP.unpack_from(body)
        try:
            smode = SnapshotMode(mode)
        except ValueError:
            raise MalformedError(f"snapshot record: unknown mode {mode}") from None
        conf = _decode_conf(body[_SNAP.size :], "snapshot record")
        return SnapshotMarker(SnapshotMeta(index=index, term=term, conf=conf), smode)
    if rtype == RecordType.SNAPSHOT_DATA:
        if n < _SNAP_DATA.size:
            raise MalformedError(f"snapshot data record: body of {n} bytes is shorter than 16")
        index, term = _SNAP_DATA.unpack_from(body)
        return SnapshotData(index=index, term=term, data=body[_SNAP_DATA.size :])
    raise MalformedError(f"unknown record type {rtype}")


def read_record(
    buf: bytes | memoryview,
    offset: int = 0,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> tuple[int, bytes, int]:
    """Check the record at ``offset``: ``(type, body, offset after it)``.

    :class:`TruncatedRecord` if ``buf`` ends inside it, :class:`LimitError` if its length
    exceeds ``max_record_bytes``, :class:`MalformedError` if the CRC does not match. The
    body is not decoded (see :func:`decode_body`).
    """
    end = len(buf)
    if end - offset < HEADER_BYTES:
        raise TruncatedRecord(
            f"record at offset {offset}: {end - offset} bytes left, a header takes {HEADER_BYTES}"
        )
    length, rtype, crc = _HEADER.unpack_from(buf, offset)
    if length > max_record_bytes:
        raise LimitError(
            f"record at offset {offset}: length {length} exceeds the limit of {max_record_bytes}"
        )
    body_start = offset + HEADER_BYTES
    body_end = body_start + length
    if body_end > end:
        raise TruncatedRecord(
            f"record at offset {offset}: body of {length} bytes but only {end - body_start} left"
        )
    body = bytes(buf[body_start:body_end])
    got = zlib.crc32(body, zlib.crc32(buf[offset : offset + 5]))
    if got != crc:
        raise MalformedError(
            f"record at offset {offset}: CRC mismatch (stored {crc:08x}, computed {got:08x})"
        )
    return rtype, body, body_end


def decode_record(data: bytes, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Record:
    """Decode exactly one record filling ``data`` (a ``WireError`` names any problem)."""
    rtype, body, end = read_record(data, 0, max_record_bytes=max_record_bytes)
    if end != len(data):
        raise MalformedError(f"{len(data) - end} bytes after the record")
    return decode_body(rtype, body)


def decode_records(
    data: bytes, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> list[tuple[int, Record]]:
    """Every record of ``data`` as ``(offset, value)``; the first bad one raises."""
    out: list[tuple[int, Record]] = []
    offset = 0
    while offset < len(data):
        rtype, body, end = read_record(data, offset, max_record_bytes=max_record_bytes)
        try:
            out.append((offset, decode_body(rtype, body)))
        except WireError as exc:
            raise type(exc)(f"record at offset {offset}: {exc}") from None
        offset = end
    return out


def describe(record: Any) -> str:
    """A one-line human description of a decoded record (for logs and the spec's vectors)."""
    if isinstance(record, Entry):
        return f"entry {record.index} term {record.term} {record.kind.name} {len(record.data)} B"
    return repr(record)
