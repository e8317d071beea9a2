"""Fuzz targets of the write-ahead log and the KV state machine, in the shape of
``fuzz/targets.py``: each takes arbitrary bytes; the only allowed outcomes are "decoded"
(with the target's property) or the project's own error for that input.

- ``wal-record``: ``decode_record``; a decoded record re-encodes to exactly the input,
  and ``decode_records`` of the same bytes gives the same record.
- ``wal-segment``: the bytes as the only segment file of a log directory, recovered by
  ``WalStorage.open``: a ``StorageError`` (corruption), or a log whose reads agree with
  its bounds and whose second recovery (after the first one cut any torn tail) finds
  exactly the same state and nothing more to cut.
- ``wal-body``: the first byte as a record type and the rest as its body, framed with a
  correct CRC (so mutations reach the body decoders rather than the checksum), then as
  ``wal-record``.
- ``wal-replay``: the bytes cut into records (type u8, length u16, body), each framed with
  a correct CRC, after a valid segment header, with a snapshot file for each snapshot
  marker: replay of arbitrary record sequences (gaps, overwrites, snapshot markers in any
  order) must refuse with ``StorageError`` or recover as ``wal-segment`` requires.
- ``kv-apply``: ``KVStore.apply`` of the bytes as a command never raises and its result
  always decodes; ``KVStore.restore`` of the bytes is a ``WireError`` that leaves the
  state unchanged, or a state whose snapshot is exactly the input.

``fuzz/targets.py`` lists these in its ``TARGETS`` (from :data:`WAL_TARGETS`); seeds come
from ``spec/vectors/wal.json`` like every other ``hex`` field.
"""

from __future__ import annotations

from collections.abc import Callable

from foundation_p2p.consensus import kv
from foundation_p2p.consensus import wal_format as fmt
from foundation_p2p.consensus.wal import WalOptions, WalStorage, segment_name, snapshot_name
from foundation_p2p.errors import StorageError, WireError
from simulator.vfs import MemoryVfs

# Small bounds keep an iteration cheap; the parsing paths are the same.
_OPTIONS = WalOptions(max_record_bytes=1 << 20, max_cache_bytes=4096)


def fuzz_wal_record(data: bytes) -> None:
    """``decode_record``: a decoded record re-encodes byte-exact."""
    try:
        record = fmt.decode_record(data)
    except WireError:
        return
    assert fmt.encode_record(record) == data, "a WAL record does not re-encode byte-exact"
    assert fmt.decode_records(data) == [(0, record)]


def fuzz_wal_body(data: bytes) -> None:
    """A record framed from the input (type byte, body) with a correct CRC."""
    if not data:
        return
    fuzz_wal_record(fmt.frame(data[0], data[1:]))  # type: ignore[arg-type]


def _state(wal: WalStorage) -> tuple[object, ...]:
    first, last = wal.first_index(), wal.last_index()
    assert first == wal.snapshot()[0].index + 1
    assert last >= first - 1
    entries = wal.entries(first, last + 1)
    assert [e.index for e in entries] == list(range(first, last + 1))
    assert all(wal.term(e.index) == e.term for e in entries)
    return (first, last, tuple(entries), wal.initial_state())


def _recover(files: dict[str, bytes]) -> None:
    vfs = MemoryVfs()
    for name, data in files.items():
        f = vfs.open_append(name, create=True)
        f.write(data)
        f.sync()
    vfs.sync_dir()
    try:
        wal = WalStorage.open(vfs, _OPTIONS)
    except StorageError:
        return
    first = _state(wal)
    wal.close()
    again = WalStorage.open(vfs, _OPTIONS)
    assert again.counters["wal.torn_tails"] == 0, "a second recovery cut more"
    assert _state(again) == first, "recovery is not idempotent"


def fuzz_wal_segment(data: bytes) -> None:
    """``WalStorage.open`` of the bytes as segment 0: refused, or recovered idempotently."""
    _recover({segment_name(0): data})


def fuzz_wal_replay(data: bytes) -> None:
    """Records framed from the input after a valid header, recovered as ``wal-segment``;
    each snapshot marker that decodes gets its snapshot file."""
    files: dict[str, bytes] = {}
    out = [fmt.encode_segment_header(fmt.SegmentHeader(0, 1))]
    pos = 0
    while pos + 3 <= len(data):
        rtype = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 3], "big")
        body = data[pos + 3 : pos + 3 + length]
        pos += 3 + length
        record = fmt.frame(rtype, body)  # type: ignore[arg-type]
        out.append(record)
        if rtype == fmt.RecordType.SNAPSHOT:
            try:
                marker = fmt.decode_record(record)
            except WireError:
                continue
            assert isinstance(marker, fmt.SnapshotMarker)
            meta = marker.meta
            snap = fmt.SnapshotData(meta.index, meta.term, b"fuzz")
            files[snapshot_name(meta.index, meta.term)] = fmt.encode_snapshot_data(snap)
    files[segment_name(0)] = b"".join(out)
    _recover(files)


def fuzz_kv_apply(data: bytes) -> None:
    """``KVStore.apply`` never raises; ``restore`` refuses or round-trips exactly."""
    store = kv.KVStore()
    store.apply(1, kv.encode_put(b"k", b"v"))
    result = kv.decode_result(store.apply(2, data))
    if result.ok:
        again = kv.KVStore()
        again.restore(store.snapshot())
        assert again.snapshot() == store.snapshot()
    before = store.snapshot()
    try:
        store.restore(data)
    except WireError:
        assert store.snapshot() == before, "a refused restore changed the state"
        return
    assert store.snapshot() == data, "a restored snapshot does not re-encode byte-exact"


WAL_TARGETS: dict[str, Callable[[bytes], None]] = {
    "wal-record": fuzz_wal_record,
    "wal-body": fuzz_wal_body,
    "wal-segment": fuzz_wal_segment,
    "wal-replay": fuzz_wal_replay,
    "kv-apply": fuzz_kv_apply,
}
