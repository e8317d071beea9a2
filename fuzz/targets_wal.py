"""Fuzz targets of the write-ahead log and the KV state machine, in the shape of
``fuzz/targets.py``: each takes arbitrary bytes; the only allowed outcomes are "decoded"
(with the target's property) or the project's own error for that input.

- ``wal-record``: ``decode_record``; a decoded record re-encodes to exactly the input,
  and ``decode_records`` of the same bytes gives the same record.
- ``wal-segment``: the bytes as the only segment file of a log directory, recovered by
  ``WalStorage.open``: a ``StorageError`` (corruption), or a log whose reads agree with
  its bounds and whose second recovery (after the first one cut any torn tail) finds
  exactly the same state and nothing more to cut.
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
from foundation_p2p.consensus.wal import WalOptions, WalStorage, segment_name
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


def _state(wal: WalStorage) -> tuple[object, ...]:
    first, last = wal.first_index(), wal.last_index()
    assert first == wal.snapshot()[0].index + 1
    assert last >= first - 1
    entries = wal.entries(first, last + 1)
    assert [e.index for e in entries] == list(range(first, last + 1))
    assert all(wal.term(e.index) == e.term for e in entries)
    return (first, last, tuple(entries), wal.initial_state())


def fuzz_wal_segment(data: bytes) -> None:
    """``WalStorage.open`` of the bytes as segment 0: refused, or recovered idempotently."""
    vfs = MemoryVfs()
    f = vfs.open_append(segment_name(0), create=True)
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
    "wal-segment": fuzz_wal_segment,
    "kv-apply": fuzz_kv_apply,
}
