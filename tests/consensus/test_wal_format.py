"""The WAL record format (spec/consensus-wal.md): round trips, and every bad input refused
with the project's own errors."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation_p2p.consensus import wal_format as fmt
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta
from foundation_p2p.errors import LimitError, MalformedError, WireError

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
NODE = st.binary(min_size=16, max_size=16)
IDS = st.frozensets(NODE, max_size=6)
CONF = st.builds(ConfState, voters=IDS, learners=IDS, voters_outgoing=IDS)
ENTRY = st.builds(
    Entry,
    term=U64,
    index=st.integers(min_value=1, max_value=(1 << 64) - 1),
    kind=st.sampled_from(EntryKind),
    data=st.binary(max_size=300),
)
HARD = st.builds(HardState, term=U64, vote=st.none() | NODE, commit=U64)
MARKER = st.builds(
    fmt.SnapshotMarker,
    meta=st.builds(SnapshotMeta, index=U64, term=U64, conf=CONF),
    mode=st.sampled_from(fmt.SnapshotMode),
)
SNAP_HEAD = struct.pack(">QQB", 1, 1, 0)
RECORD = st.one_of(
    ENTRY,
    HARD,
    MARKER,
    st.builds(fmt.SegmentHeader, segment=U64, first_index=U64),
    st.builds(fmt.SnapshotData, index=U64, term=U64, data=st.binary(max_size=200)),
)


@given(RECORD)
def test_every_record_round_trips(record: fmt.Record) -> None:
    data = fmt.encode_record(record)
    assert fmt.decode_record(data) == record
    assert fmt.encode_record(fmt.decode_record(data)) == data


@given(st.lists(ENTRY, max_size=8))
def test_encode_entries_is_the_concatenation_of_single_records(entries: list[Entry]) -> None:
    data = fmt.encode_entries(entries)
    assert data == b"".join(fmt.encode_entry(e) for e in entries)
    assert [r for _, r in fmt.decode_records(data)] == entries


@given(RECORD, st.data())
def test_any_single_bit_flip_is_refused(record: fmt.Record, data: st.DataObject) -> None:
    raw = bytearray(fmt.encode_record(record))
    bit = data.draw(st.integers(min_value=0, max_value=len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(WireError):
        fmt.decode_record(bytes(raw))


@given(RECORD, st.data())
def test_every_proper_prefix_is_a_truncated_record(record: fmt.Record, data: st.DataObject) -> None:
    raw = fmt.encode_record(record)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(fmt.TruncatedRecord):
        fmt.read_record(raw[:cut])


def test_header_layout_is_length_type_crc_of_all_three() -> None:
    e = Entry(term=2, index=7, kind=EntryKind.NORMAL, data=b"hello")
    raw = fmt.encode_entry(e)
    body = struct.pack(">QQB", 2, 7, 0) + b"hello"
    head = struct.pack(">IB", len(body), 2)
    assert raw == head + zlib.crc32(head + body).to_bytes(4, "big") + body
    assert len(raw) == fmt.HEADER_BYTES + 17 + 5


def test_crc_mismatch_names_the_offset_and_both_values() -> None:
    raw = bytearray(fmt.encode_entry(Entry(1, 1, data=b"abc")) * 2)
    raw[-1] ^= 0xFF
    with pytest.raises(MalformedError, match=r"record at offset 29: CRC mismatch \(stored"):
        fmt.decode_records(bytes(raw))


def test_length_over_the_limit_is_a_limit_error() -> None:
    raw = fmt.encode_entry(Entry(1, 1, data=b"x" * 100))
    with pytest.raises(LimitError, match="exceeds the limit of 50"):
        fmt.read_record(raw, max_record_bytes=50)


@pytest.mark.parametrize(
    ("rtype", "body", "problem"),
    [
        (2, b"\x00" * 16, "shorter than 17"),
        (2, struct.pack(">QQB", 1, 1, 9), "unknown entry kind 9"),
        (2, struct.pack(">QQB", 1, 0, 0), "index 0"),
        (3, struct.pack(">QQB", 1, 1, 2), "has_vote is 2"),
        (3, struct.pack(">QQB", 1, 1, 1) + b"\x01" * 15, "expected 33"),
        (3, struct.pack(">QQB", 1, 1, 0) + b"\x01", "expected 17"),
        (1, struct.pack(">8sBQQ", b"not-wal!", 1, 0, 1), "magic"),
        (1, struct.pack(">8sBQQ", b"fp2p-wal", 2, 0, 1), "unsupported version 2"),
        (4, struct.pack(">QQB", 1, 1, 5) + bytes.fromhex("83808080"), "unknown mode 5"),
        (4, struct.pack(">QQB", 1, 1, 0) + b"\xff", "not well-formed CBOR"),
        (4, SNAP_HEAD + bytes.fromhex("828080"), "not an array of 3"),
        (4, SNAP_HEAD + bytes.fromhex("83814100" + "8080"), "non-node-id"),
        (
            4,
            SNAP_HEAD + bytes.fromhex("8382" + "50" + "01" * 16 + "50" + "00" * 16 + "8080"),
            "not sorted",
        ),
        (5, b"", "unknown record type 5"),
        (6, b"\x00" * 15, "shorter than 16"),
        (99, b"", "unknown record type 99"),
    ],
)
def test_bad_bodies_are_refused_naming_the_problem(rtype: int, body: bytes, problem: str) -> None:
    head = struct.pack(">IB", len(body), rtype)
    raw = head + zlib.crc32(head + body).to_bytes(4, "big") + body
    with pytest.raises(MalformedError, match=problem):
        fmt.decode_record(raw)


def test_bytes_after_the_record_are_refused() -> None:
    raw = fmt.encode_hard_state(HardState(1, None, 0)) + b"\x00"
    with pytest.raises(MalformedError, match="1 bytes after the record"):
        fmt.decode_record(raw)


def test_encoding_refuses_values_outside_the_format() -> None:
    with pytest.raises(MalformedError, match="not an unsigned 64-bit"):
        fmt.encode_hard_state(HardState(term=-1))
    with pytest.raises(MalformedError, match="16-byte node id"):
        fmt.encode_hard_state(HardState(term=1, vote=b"short"))
    with pytest.raises(MalformedError, match="not unsigned 64-bit"):
        fmt.encode_entries([Entry(term=1 << 64, index=1)])
    with pytest.raises(MalformedError, match="16-byte node id"):
        meta = SnapshotMeta(1, 1, ConfState(voters=frozenset({b"x"})))
        fmt.encode_snapshot_marker(fmt.SnapshotMarker(meta, fmt.SnapshotMode.COMPACT))
