"""WalStorage on the simulator's MemoryVfs: group commit, overwrite, compaction, snapshot
install, the bounded cache, the LogStorage reads, and recovery refusing corruption."""

from __future__ import annotations

import random

import pytest

from foundation_p2p.consensus import wal_format as fmt
from foundation_p2p.consensus.storage import LogCompacted, LogStorage, LogUnavailable
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta
from foundation_p2p.consensus.wal import WalOptions, WalStorage, segment_name, snapshot_name
from foundation_p2p.errors import ConfigError, StorageError
from simulator.vfs import MemoryVfs

A = bytes(range(16))
B = bytes(range(1, 17))


def entries(lo: int, hi: int, term: int = 1, size: int = 10) -> list[Entry]:
    return [Entry(term, i, data=(b"%d." % i * size)[:size]) for i in range(lo, hi)]


def reopen(vfs: MemoryVfs, **opts: int) -> WalStorage:
    return WalStorage.open(vfs, WalOptions(**opts))


def test_an_empty_log_starts_at_index_one_and_is_durable_at_once() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    storage: LogStorage = wal
    assert storage.initial_state() == (HardState(), ConfState())
    assert (storage.first_index(), storage.last_index()) == (1, 0)
    assert storage.term(0) == 0
    assert storage.snapshot() == (SnapshotMeta(0, 0), b"")
    assert vfs.durable_bytes(segment_name(0)) is not None


def test_saved_entries_and_hard_state_survive_reopen() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(HardState(3, A, 2), entries(1, 6, term=3))
    wal.sync()
    wal.close()
    again = reopen(vfs)
    assert again.initial_state()[0] == HardState(3, A, 2)
    assert again.entries(1, 6) == entries(1, 6, term=3)
    assert again.term(5) == 3


def test_group_commit_many_saves_share_one_fsync() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    before = (vfs.file_syncs, wal.counters["wal.fsyncs"])
    for i in range(1, 101):
        wal.save(HardState(1, A, i - 1), [Entry(1, i, data=b"cmd")])
    assert vfs.file_syncs == before[0], "save must not fsync"
    wal.sync()
    assert vfs.file_syncs == before[0] + 1
    assert wal.counters["wal.fsyncs"] == before[1] + 1
    assert wal.counters["wal.saves"] == 100
    wal.sync()  # nothing new: no fsync
    assert vfs.file_syncs == before[0] + 1


def test_unsynced_saves_are_lost_by_a_crash_and_synced_ones_kept() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(HardState(1, A, 0), entries(1, 4))
    wal.sync()
    wal.save(HardState(2, B, 3), entries(4, 9, term=2))
    vfs.crash()
    again = reopen(vfs)
    assert again.last_index() == 3
    assert again.initial_state()[0] == HardState(1, A, 0)


def test_a_lower_index_overwrites_the_conflicting_suffix() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(None, entries(1, 11, term=1))
    wal.save(None, [Entry(2, 6, data=b"new6"), Entry(2, 7, data=b"new7")])
    assert wal.last_index() == 7
    assert [wal.term(i) for i in range(4, 8)] == [1, 1, 2, 2]
    wal.sync()
    again = reopen(vfs)
    assert again.last_index() == 7
    assert again.entries(5, 8) == [
        entries(5, 6)[0],
        Entry(2, 6, data=b"new6"),
        Entry(2, 7, data=b"new7"),
    ]
    assert again.counters["wal.truncations"] == 1


def test_overwrite_across_segments_and_cache_eviction() -> None:
    vfs = MemoryVfs()
    opts = {"segment_bytes": 4096, "max_cache_bytes": 1000}
    wal = reopen(vfs, **opts)
    for i in range(1, 301):
        wal.save(HardState(1, None, 0), entries(i, i + 1, size=40))
        wal.sync()
    assert len(wal.segment_names) > 3
    wal.save(None, [Entry(5, 50, data=b"over")])
    wal.sync()
    assert wal.last_index() == 50
    assert wal.entries(48, 51) == [*entries(48, 50, size=40), Entry(5, 50, data=b"over")]
    wal.close()
    again = reopen(vfs, **opts)
    assert again.last_index() == 50
    assert again.entries(1, 51) == [*entries(1, 50, size=40), Entry(5, 50, data=b"over")]
    assert again.counters["wal.disk_reads"] > 0
    assert again.cached_entries * (40 + 64) <= 1000 + 40 + 64


def test_entries_cannot_leave_a_gap_or_skip_within_a_batch() -> None:
    wal = WalStorage.open(MemoryVfs())
    wal.save(None, entries(1, 3))
    with pytest.raises(ConfigError, match="gap"):
        wal.save(None, [Entry(1, 5)])
    with pytest.raises(ConfigError, match="not consecutive"):
        wal.save(None, [Entry(1, 3), Entry(1, 5)])


def test_logstorage_bounds_and_max_bytes() -> None:
    wal = WalStorage.open(MemoryVfs())
    wal.save(None, entries(1, 11, size=100))
    assert wal.entries(3, 3) == []
    assert [e.index for e in wal.entries(1, 11, max_bytes=250)] == [1, 2]
    assert [e.index for e in wal.entries(4, 11, max_bytes=1)] == [4]
    with pytest.raises(LogUnavailable):
        wal.entries(5, 12)
    with pytest.raises(LogUnavailable):
        wal.term(11)
    wal.create_snapshot(4, ConfState(), b"state@4")
    with pytest.raises(LogCompacted):
        wal.entries(4, 6)
    with pytest.raises(LogCompacted):
        wal.term(3)
    assert wal.term(4) == 1
    assert wal.first_index() == 5


def test_compaction_removes_old_segments_and_keeps_later_entries() -> None:
    vfs = MemoryVfs()
    opts = {"segment_bytes": 4096}
    wal = reopen(vfs, **opts)
    for i in range(1, 401):
        wal.save(HardState(1, A, i - 1), entries(i, i + 1, size=30))
    wal.sync()
    segments = wal.segment_names
    assert len(segments) >= 4
    conf = ConfState(voters=frozenset({A, B}))
    wal.create_snapshot(350, conf, b"state@350")
    assert len(wal.segment_names) < len(segments)
    assert wal.counters["wal.segments_removed"] == len(segments) - len(wal.segment_names)
    for name in set(segments) - set(wal.segment_names):
        assert name not in vfs.list()
    assert wal.entries(351, 401) == entries(351, 401, size=30)
    wal.close()
    again = reopen(vfs, **opts)
    assert (again.first_index(), again.last_index()) == (351, 400)
    assert again.snapshot() == (SnapshotMeta(350, 1, conf), b"state@350")
    assert again.initial_state() == (HardState(1, A, 399), conf)
    assert again.entries(351, 401) == entries(351, 401, size=30)


def test_compaction_twice_removes_the_older_snapshot_file() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(None, entries(1, 21))
    wal.create_snapshot(5, ConfState(), b"five")
    wal.create_snapshot(10, ConfState(), b"ten")
    names = vfs.list()
    assert snapshot_name(10, 1) in names and snapshot_name(5, 1) not in names
    with pytest.raises(ConfigError, match="already at 10"):
        wal.create_snapshot(8, ConfState(), b"")
    with pytest.raises(ConfigError, match="past the last index 20"):
        wal.create_snapshot(30, ConfState(), b"")
    wal.compact(10)  # MemoryStorage's second step: nothing left to drop
    with pytest.raises(ConfigError, match="create_snapshot first"):
        wal.compact(11)


def test_installing_a_snapshot_drops_every_entry() -> None:
    vfs = MemoryVfs()
    opts = {"segment_bytes": 4096}
    wal = reopen(vfs, **opts)
    for i in range(1, 200):
        wal.save(None, entries(i, i + 1, size=50))
    wal.sync()
    conf = ConfState(voters=frozenset({A}), learners=frozenset({B}))
    meta = SnapshotMeta(120, 4, conf)
    wal.save(HardState(4, None, 120), [Entry(4, 121, data=b"after")], snapshot=(meta, b"leader's"))
    wal.sync()
    assert (wal.first_index(), wal.last_index()) == (121, 121)
    assert len(wal.segment_names) == 1, "segments before the install are superseded"
    wal.close()
    again = reopen(vfs, **opts)
    assert again.snapshot() == (meta, b"leader's")
    assert again.entries(121, 122) == [Entry(4, 121, data=b"after")]
    assert again.initial_state() == (HardState(4, None, 120), conf)


def test_initial_state_gives_the_snapshots_conf_restated_in_every_segment() -> None:
    """The core takes the configuration at the snapshot's index and re-applies the
    configuration-change entries after it (Rc_to_W.md point 1)."""
    vfs = MemoryVfs()
    opts = {"segment_bytes": 4096}
    wal = reopen(vfs, **opts)
    conf = ConfState(voters=frozenset({A, B}), voters_outgoing=frozenset({A}))
    wal.save(HardState(1, A, 1), [Entry(1, 1, EntryKind.CONF_CHANGE, b"cc")])
    assert wal.initial_state() == (HardState(1, A, 1), ConfState())
    for i in range(2, 300):
        wal.save(HardState(1, A, i), entries(i, i + 1, size=40))
    wal.sync()
    wal.create_snapshot(250, conf, b"s")
    assert segment_name(0) not in vfs.list()
    for i in range(300, 400):  # roll over again: later segments restate the marker
        wal.save(None, entries(i, i + 1, size=40))
    wal.close()
    again = reopen(vfs, **opts)
    assert again.initial_state() == (HardState(1, A, 299), conf)
    assert again.entries(251, 252)[0].index == 251


def test_commit_is_at_least_the_snapshot_index_after_a_lost_hard_state() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(HardState(2, A, 3), entries(1, 5, term=2))
    wal.sync()
    wal.save(None, snapshot=(SnapshotMeta(40, 3), b"from the leader"))
    wal.sync()  # the hard state of the same Ready was lost (say, a torn tail)
    assert reopen(vfs).initial_state()[0] == HardState(2, A, 40)


# -- recovery: torn tails are cut, corruption is refused ------------------------------


def _log_with_records(vfs: MemoryVfs, n: int = 20) -> WalStorage:
    wal = WalStorage.open(vfs)
    for i in range(1, n + 1):
        wal.save(HardState(1, A, i - 1), entries(i, i + 1))
    wal.sync()
    wal.close()
    return wal


def _entry_offsets(vfs: MemoryVfs, name: str) -> list[tuple[int, fmt.Record]]:
    return fmt.decode_records(vfs.read(name))


def test_a_torn_tail_is_cut_counted_and_the_log_stays_usable() -> None:
    vfs = MemoryVfs()
    _log_with_records(vfs)
    name = segment_name(0)
    whole = vfs.read(name)
    last_record = _entry_offsets(vfs, name)[-1][0]  # the hard state saved with entry 20
    vfs.truncate(name, len(whole) - 5)
    wal = WalStorage.open(vfs)
    assert wal.counters["wal.torn_tails"] == 1
    assert wal.report.torn_tail_bytes == len(whole) - 5 - last_record
    assert len(vfs.read(name)) == last_record
    assert wal.initial_state()[0] == HardState(1, A, 18), "the torn hard state is gone"
    assert wal.last_index() == 20
    wal.save(HardState(1, A, 20), entries(21, 22))
    wal.sync()
    wal.close()
    assert reopen(vfs).last_index() == 21


def test_zeroed_tail_after_the_last_record_is_a_torn_tail() -> None:
    vfs = MemoryVfs()
    _log_with_records(vfs)
    name = segment_name(0)
    f = vfs.open_append(name)
    f.write(bytes(100))
    f.sync()
    size = len(vfs.read(name))
    wal = WalStorage.open(vfs)
    assert wal.report.torn_tail_bytes == 100
    assert wal.last_index() == 20
    assert len(vfs.read(name)) == size - 100


def test_corruption_in_the_middle_is_refused_naming_file_and_offset() -> None:
    vfs = MemoryVfs()
    _log_with_records(vfs)
    name = segment_name(0)
    offset = _entry_offsets(vfs, name)[10][0]
    vfs.corrupt(name, offset + fmt.HEADER_BYTES + 3)
    with pytest.raises(StorageError, match=rf"{name}: corrupt at offset {offset}: .*CRC mismatch"):
        WalStorage.open(vfs)
    before = vfs.read(name)
    with pytest.raises(StorageError):
        WalStorage.open(vfs)
    assert vfs.read(name) == before, "nothing is repaired"


def test_a_length_over_the_limit_in_the_middle_is_corruption_not_a_tail() -> None:
    vfs = MemoryVfs()
    _log_with_records(vfs)
    name = segment_name(0)
    offset = _entry_offsets(vfs, name)[5][0]
    vfs.corrupt(name, offset, xor=0x40)  # length += 2^30
    with pytest.raises(StorageError, match=rf"corrupt at offset {offset}: .*exceeds the limit"):
        WalStorage.open(vfs)


def test_a_bad_last_record_of_an_earlier_segment_is_corruption() -> None:
    vfs = MemoryVfs()
    wal = reopen(vfs, segment_bytes=4096)
    for i in range(1, 200):
        wal.save(None, entries(i, i + 1, size=40))
    wal.sync()
    wal.close()
    first = segment_name(0)
    size = len(vfs.read(first))
    vfs.corrupt(first, size - 1)
    with pytest.raises(StorageError, match=rf"{first}: corrupt at offset \d+"):
        reopen(vfs, segment_bytes=4096)


def test_a_record_with_a_good_crc_but_unknown_type_is_never_a_torn_tail() -> None:
    vfs = MemoryVfs()
    _log_with_records(vfs)
    f = vfs.open_append(segment_name(0))
    f.write(fmt.frame(fmt.RecordType.SNAPSHOT_DATA, b"\x00" * 16))
    f.sync()
    with pytest.raises(StorageError, match="unexpected SnapshotData record"):
        WalStorage.open(vfs)


def test_a_missing_segment_is_refused() -> None:
    vfs = MemoryVfs()
    wal = reopen(vfs, segment_bytes=4096)
    for i in range(1, 300):
        wal.save(None, entries(i, i + 1, size=40))
    wal.sync()
    wal.close()
    vfs.remove(segment_name(1))
    with pytest.raises(StorageError, match=r"segment file\(s\) missing"):
        reopen(vfs, segment_bytes=4096)


def test_a_missing_snapshot_file_is_refused() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(None, entries(1, 5))
    wal.create_snapshot(3, ConfState(), b"three")
    wal.close()
    vfs.remove(snapshot_name(3, 1))
    with pytest.raises(StorageError, match=r"names snap-0+3-0+1\.snap, which is missing"):
        WalStorage.open(vfs)


def test_leftover_temporary_and_stale_snapshot_files_are_removed() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(None, entries(1, 5))
    wal.create_snapshot(3, ConfState(), b"three")
    wal.close()
    vfs.open_append(".tmp-snap-x", create=True).write(b"junk")
    vfs.open_append(snapshot_name(9, 9), create=True).write(b"never marked")
    again = WalStorage.open(vfs)
    assert sorted(again.report.removed_files) == [".tmp-snap-x", snapshot_name(9, 9)]
    assert again.snapshot()[1] == b"three"


def test_a_corrupt_entry_read_back_from_disk_is_refused() -> None:
    vfs = MemoryVfs()
    wal = reopen(vfs, max_cache_bytes=200)
    wal.save(None, entries(1, 30, size=20))
    wal.sync()
    offset = _entry_offsets(vfs, segment_name(0))[3][0]
    vfs.corrupt(segment_name(0), offset + 12)
    with pytest.raises(StorageError, match=rf"corrupt at offset {offset}"):
        wal.entries(1, 10)


def test_a_closed_log_refuses_writes() -> None:
    wal = WalStorage.open(MemoryVfs())
    wal.close()
    with pytest.raises(StorageError, match="closed"):
        wal.save(None, entries(1, 2))


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="segment_bytes"):
        WalOptions(segment_bytes=100)
    with pytest.raises(ConfigError, match="max_cache_bytes"):
        WalOptions(max_cache_bytes=0)


def test_random_operations_match_a_model_across_reopens() -> None:
    """Seeded random saves, overwrites, compactions, installs and reopens against a dict
    model of the log."""
    for seed in range(20):
        rng = random.Random(seed)
        vfs = MemoryVfs()
        opts = {"segment_bytes": 4096, "max_cache_bytes": rng.choice([200, 5000, 1 << 20])}
        wal = reopen(vfs, **opts)
        model: dict[int, Entry] = {}
        snap = SnapshotMeta(0, 0)
        snap_data = b""
        hard = HardState()
        conf = ConfState()
        term = 1
        for step in range(300):
            last = max(model) if model else snap.index
            roll = rng.random()
            if roll < 0.6:
                start = last + 1
                if model and rng.random() < 0.2:
                    start = rng.randint(snap.index + 1, last)
                    term += 1
                batch = [
                    Entry(term, i, data=rng.randbytes(rng.randint(0, 120)))
                    for i in range(start, start + rng.randint(1, 5))
                ]
                for i in [i for i in model if i >= start]:
                    del model[i]
                model.update({e.index: e for e in batch})
                hard = HardState(term, A if rng.random() < 0.5 else None, snap.index)
                wal.save(hard, batch)
            elif roll < 0.75:
                wal.sync()
            elif roll < 0.82 and model:
                at = rng.randint(snap.index + 1, last)
                snap = SnapshotMeta(at, model[at].term, ConfState(voters=frozenset({A})))
                snap_data = b"state@%d" % at
                assert wal.create_snapshot(at, snap.conf, snap_data) == snap
                conf = snap.conf
                model = {i: e for i, e in model.items() if i > at}
            elif roll < 0.85:
                at = last + rng.randint(-3, 10)
                if at > snap.index:
                    term += 1
                    snap = SnapshotMeta(at, term, ConfState(learners=frozenset({B})))
                    snap_data = b"installed@%d" % at
                    wal.save(None, snapshot=(snap, snap_data))
                    conf = snap.conf
                    model = {}
            elif roll < 0.95:
                wal.close()
                wal = reopen(vfs, **opts)
            last = max(model) if model else snap.index
            assert (wal.first_index(), wal.last_index()) == (snap.index + 1, last), (seed, step)
            assert wal.entries(snap.index + 1, last + 1) == [model[i] for i in sorted(model)]
            assert wal.snapshot() == (snap, snap_data)
            want_hard = HardState(hard.term, hard.vote, max(hard.commit, snap.index))
            assert wal.initial_state() == (want_hard, conf)


def test_a_failed_fsync_makes_the_log_refuse_writes_until_reopened() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(HardState(1, A, 0), entries(1, 3))
    wal.sync()
    wal.save(None, entries(3, 5))

    def failing_sync() -> None:
        raise StorageError("mem/0000000000000000.wal: fsync failed: Input/output error")

    assert wal._file is not None
    wal._file.sync = failing_sync  # type: ignore[method-assign]
    with pytest.raises(StorageError, match="fsync failed"):
        wal.sync()
    with pytest.raises(StorageError, match=r"failed earlier .*fsync failed.*reopen it"):
        wal.save(None, entries(5, 6))
    with pytest.raises(StorageError, match="failed earlier"):
        wal.sync()
    vfs.crash()
    assert reopen(vfs).last_index() == 2


def test_a_refused_batch_changes_nothing() -> None:
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(HardState(1, A, 0), entries(1, 4))
    wal.create_snapshot(2, ConfState(), b"")
    before = (wal.last_index(), wal.initial_state(), wal.counters["wal.bytes_written"])
    with pytest.raises(ConfigError, match="16-byte node id"):
        wal.save(HardState(2, b"bad vote", 0), entries(4, 6))
    with pytest.raises(ConfigError, match="gap"):
        wal.save(None, entries(5, 6))
    with pytest.raises(ConfigError, match="older than the held snapshot"):
        wal.save(None, snapshot=(SnapshotMeta(1, 1), b""))
    wal.sync()
    assert (wal.last_index(), wal.initial_state(), wal.counters["wal.bytes_written"]) == before
    with pytest.raises(ConfigError, match="gap after the last entry 20"):
        wal.save(None, entries(22, 23), snapshot=(SnapshotMeta(20, 3), b"s"))
    assert wal.snapshot()[0].index == 2, "the refused install wrote nothing"


def test_sync_in_two_parts_reads_go_on_and_only_the_blocking_part_makes_it_durable() -> None:
    """sync_start writes the records and hands back the fdatasync (the runtime runs it in
    a worker thread); the log stays readable meanwhile; durable only once it ran."""
    vfs = MemoryVfs()
    wal = WalStorage.open(vfs)
    wal.save(HardState(1, A, 0), entries(1, 4))
    syncs = vfs.file_syncs
    blocking = wal.sync_start()
    assert blocking is not None and vfs.file_syncs == syncs, "sync_start must not fsync"
    assert wal.entries(1, 4) == entries(1, 4) and wal.last_index() == 3
    blocking()
    assert vfs.file_syncs == syncs + 1
    wal.sync_finish()
    assert wal.counters["wal.fsyncs"] >= 1
    assert wal.sync_start() is None, "nothing new to sync"
    wal.sync_finish()
    wal.save(HardState(2, B, 3), entries(4, 6, term=2))
    lost = wal.sync_start()
    assert lost is not None
    vfs.crash()  # before the blocking part ran: the second batch is not durable
    again = reopen(vfs)
    assert again.last_index() == 3
    assert again.initial_state()[0] == HardState(1, A, 0)
