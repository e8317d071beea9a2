"""The Raft write-ahead log: segment files of CRC-checked records, group commit, recovery.

:class:`WalStorage` keeps a Raft node's log, hard state and snapshot in one directory,
reached through a small file-system interface (:class:`Vfs`) with two backends:
:class:`foundation_p2p.runtime.vfs.OsVfs` (the real disk) and
:class:`simulator.vfs.MemoryVfs` (in memory; what was not synced is lost on a crash). The
record format is :mod:`foundation_p2p.consensus.wal_format` (``spec/consensus-wal.md``).

Writing (the driver of the Raft core's Ready loop):

- :meth:`WalStorage.save` takes one batch: a snapshot to install, entries to append (an
  entry whose index is already held replaces it and every later one: a follower truncating
  a conflicting suffix), a hard state, a configuration. It encodes the records and buffers
  them; nothing is durable yet.
- :meth:`WalStorage.sync` writes the buffered records and makes them durable with one
  ``fsync`` (group commit: many saves, one fsync). The driver releases the messages that
  depend on the batch only after ``sync`` returns.
- :meth:`WalStorage.create_snapshot` records a local snapshot of the state machine and
  removes the segment files that hold only entries it covers.

It also answers ``MemoryStorage``'s writing names (``append``, ``set_hard_state``,
``apply_snapshot``, ``create_snapshot``, ``compact``), so a driver written against the
in-memory storage works on it unchanged, adding ``sync()`` before it sends messages.

Files: segments ``<seq:016x>.wal`` (a segment header, then a prelude restating the hard
state, the configuration and the snapshot marker, then records), rolled over when one
passes ``segment_bytes``; snapshot files ``snap-<index:016x>-<term:016x>.snap`` (one
``SNAPSHOT_DATA`` record, written to a temporary name, synced, renamed, the directory
synced). Every segment restates the state older segments hold, so old segments can be
removed as a prefix.

Recovery (:meth:`WalStorage.open`) reads every segment in order and replays it. A bad
record (short, CRC mismatch, zeroed header) in the *last* segment, followed by nothing but
zero bytes or running past the end of the file, is a torn tail: the crash interrupted an
unsynced write. The tail is cut off (the file truncated, durably), counted in
``wal.torn_tails`` / ``wal.torn_tail_bytes`` and logged. Any other bad record (in an
earlier segment, or with valid data after it, or a length over the limit) is corruption:
:class:`~foundation_p2p.errors.StorageError` naming the file and the offset, and nothing is
repaired.

Reads (:class:`~foundation_p2p.consensus.storage.LogStorage`): the term, segment and
offset of every held entry are kept in compact arrays (24 bytes per entry, bounded by the
number of entries since the last snapshot, so by the compaction policy); the entries
themselves are cached for the newest suffix of the log only, up to ``max_cache_bytes`` of
data (oldest dropped first, counted in ``wal.cache_evictions``); older entries are read
back from their segment (one read per run of adjacent records) and CRC-checked again.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from foundation_p2p.consensus import wal_format as fmt
from foundation_p2p.consensus.storage import LogCompacted, LogUnavailable
from foundation_p2p.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, LimitError, StorageError, WireError

log = logging.getLogger("foundation_p2p.consensus.wal")

_SEGMENT_RE = re.compile(r"([0-9a-f]{16})\.wal\Z")
_SNAP_RE = re.compile(r"snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap\Z")
TMP_PREFIX = ".tmp-"
"""Names starting with this are temporary files; recovery removes them."""
_ENTRY_OVERHEAD_BYTES = 64
"""What one cached entry costs beyond its data, for the cache bound."""


# -- the file-system interface --------------------------------------------------------


class VfsFile(Protocol):
    """A file open for appending."""

    def write(self, data: bytes) -> None:
        """Append ``data`` (visible to reads at once, durable only after :meth:`sync`)."""
        ...

    def sync(self) -> None:
        """Make every byte written so far durable (``fdatasync``)."""
        ...

    def close(self) -> None:
        """Close the file (without syncing it)."""
        ...


class Vfs(Protocol):
    """The few file operations the WAL needs, in one flat directory.

    Names are plain file names (no separators). Creating, renaming and removing a file
    change the directory, which is durable only after :meth:`sync_dir`. Every failure is a
    :class:`~foundation_p2p.errors.StorageError` naming the file.
    """

    def list(self) -> list[str]:
        """The names of the files in the directory, sorted."""
        ...

    def open_append(self, name: str, *, create: bool = False) -> VfsFile:
        """Open ``name`` for appending; with ``create``, create it (empty) first."""
        ...

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes of ``name`` from ``offset`` (to the end if ``None``)."""
        ...

    def truncate(self, name: str, size: int) -> None:
        """Cut ``name`` to ``size`` bytes, durably (the file is synced before returning)."""
        ...

    def remove(self, name: str) -> None:
        """Remove ``name``."""
        ...

    def rename(self, old: str, new: str) -> None:
        """Rename ``old`` to ``new``, replacing ``new`` if it exists."""
        ...

    def sync_dir(self) -> None:
        """Make the directory's entries (creations, renames, removals) durable."""
        ...


# -- options --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalOptions:
    """Bounds of one write-ahead log."""

    segment_bytes: int = 16 * 1024 * 1024
    """A segment is closed and a new one started once it holds this many bytes."""
    max_record_bytes: int = fmt.DEFAULT_MAX_RECORD_BYTES
    """Largest record accepted when writing or reading (an entry's data plus 26 bytes)."""
    max_snapshot_bytes: int = 1 << 30
    """Largest snapshot accepted (the state machine's bytes)."""
    max_cache_bytes: int = 32 * 1024 * 1024
    """Entry data kept in memory for the newest entries; older entries are read back."""
    write_buffer_bytes: int = 1024 * 1024
    """Saved records are written to the file once this many are buffered (and at sync)."""

    def __post_init__(self) -> None:
        for name in (
            "segment_bytes",
            "max_record_bytes",
            "max_snapshot_bytes",
            "max_cache_bytes",
            "write_buffer_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"WalOptions.{name}: must be a positive integer, got {value!r}")
        if self.segment_bytes < 4096:
            raise ConfigError(f"WalOptions.segment_bytes: {self.segment_bytes} is below 4096")


def segment_name(seq: int) -> str:
    """The file name of segment ``seq``."""
    return f"{seq:016x}.wal"


def snapshot_name(index: int, term: int) -> str:
    """The file name of the snapshot at ``index``/``term``."""
    return f"snap-{index:016x}-{term:016x}.snap"


@dataclass
class _Segment:
    seq: int
    name: str
    size: int = 0
    """Bytes written or buffered."""
    max_index: int = 0
    """The highest entry index recorded in it."""


@dataclass
class RecoveryReport:
    """What :meth:`WalStorage.open` found."""

    segments: int = 0
    records: int = 0
    torn_tail_bytes: int = 0
    """Bytes cut from the end of the last segment (0 if it ended cleanly)."""
    torn_file: str | None = None
    removed_files: list[str] = field(default_factory=list)
    """Temporary files, stale snapshot files and empty torn segments removed."""


# -- the log --------------------------------------------------------------------------


class WalStorage:
    """A Raft log on a :class:`Vfs`: write with ``save``/``sync``, read as a ``LogStorage``.

    Not thread-safe: one driver calls it. The one exception is the blocking part
    :meth:`sync_start` returns (the ``fdatasync`` calls), which may run in a worker thread
    while the driver's thread reads the log (the runtime does this).
    """

    def __init__(self, vfs: Vfs, options: WalOptions, counters: Counters) -> None:
        """Use :meth:`open` (which recovers); this makes an empty, unopened log."""
        self.vfs = vfs
        self.options = options
        self.counters = counters
        self.report = RecoveryReport()
        self._hard = HardState()
        self._written_hard = HardState()
        self._snap = SnapshotMeta(0, 0)
        self._install_seq = -1
        """The segment holding the newest INSTALL marker (older segments are superseded)."""
        # The held entries [base, base + len(terms)): term, segment, record offset, size.
        self._base = 1
        self._terms: array[int] = array("Q")
        self._segs: array[int] = array("Q")
        self._offs: array[int] = array("Q")
        self._sizes: array[int] = array("Q")
        # The newest entries' values: [cache_start, last].
        self._cache: list[Entry] = []
        self._cache_start = 1
        self._cache_bytes = 0
        self._segments: list[_Segment] = []
        self._file: VfsFile | None = None
        self._pending = bytearray()
        self._unsynced = False
        self._stale_snapshots: list[str] = []
        self._dir_dirty = False
        """A file was created, renamed or removed since the directory was last synced."""
        self._synced_parts = 0
        """fsyncs the last blocking part of :meth:`sync_start` made (for the counter)."""
        self._failed: str | None = None
        """Why a disk operation failed; every later write is refused (fsync errors are not
        retried: after one, what the kernel kept of the unsynced pages is unknown)."""
        self._closed = False

    # -- opening and recovery ---------------------------------------------------------

    @classmethod
    def open(
        cls, vfs: Vfs, options: WalOptions | None = None, counters: Counters | None = None
    ) -> WalStorage:
        """Recover the log in ``vfs`` (or start an empty one) and open it for writing.

        A torn tail of the last segment is cut off and counted; any other damage raises
        :class:`StorageError` naming the file and the offset.
        """
        wal = cls(vfs, options or WalOptions(), counters if counters is not None else Counters())
        wal._recover()
        return wal

    def _recover(self) -> None:
        names = self.vfs.list()
        segments: list[tuple[int, str]] = []
        snapshots: list[str] = []
        for name in names:
            if name.startswith(TMP_PREFIX):
                self.vfs.remove(name)
                self.report.removed_files.append(name)
                continue
            m = _SEGMENT_RE.match(name)
            if m:
                segments.append((int(m.group(1), 16), name))
            elif _SNAP_RE.match(name):
                snapshots.append(name)
        segments.sort()
        for (a, name_a), (b, _) in itertools.pairwise(segments):
            if b != a + 1:
                raise StorageError(
                    f"{self.vfs_label()}: segment {name_a} is followed by segment {b:016x}: "
                    f"{b - a - 1} segment file(s) missing"
                )
        for i, (seq, name) in enumerate(segments):
            last = i == len(segments) - 1
            self._replay_segment(seq, name, last=last)
        self.report.segments = len(self._segments)
        # After replay the held log must start right after the snapshot.
        if self._terms and self._base != self._snap.index + 1:
            raise StorageError(
                f"{self.vfs_label()}: entries {self._snap.index + 1}..{self._base - 1} are "
                f"missing (the snapshot is at {self._snap.index}, the first entry held is "
                f"{self._base})"
            )
        if not self._terms:
            self._base = self._snap.index + 1
            self._cache_start = self._base
        self._written_hard = self._hard
        wanted = snapshot_name(self._snap.index, self._snap.term) if self._snap.index else None
        for name in snapshots:
            if name != wanted:
                self.vfs.remove(name)
                self.report.removed_files.append(name)
        if wanted is not None and wanted not in snapshots:
            raise StorageError(
                f"{self.vfs_label()}: the log's snapshot marker names {wanted}, which is missing"
            )
        if self.report.removed_files:
            self.vfs.sync_dir()
        if self._segments:
            seg = self._segments[-1]
            self._file = self.vfs.open_append(seg.name)
        else:
            self._new_segment(first_index=self._base)
            self.sync()
        log.debug(
            "wal opened: %d segments, %d records, entries %d..%d, snapshot %d, hard state %s",
            self.report.segments,
            self.report.records,
            self.first_index(),
            self.last_index(),
            self._snap.index,
            self._hard,
        )

    def vfs_label(self) -> str:
        """How error messages name the log's directory."""
        return str(getattr(self.vfs, "path", "wal"))

    def _replay_segment(self, seq: int, name: str, *, last: bool) -> None:
        data = self.vfs.read(name)
        label = f"{self.vfs_label()}/{name}"
        offset = 0
        seg = _Segment(seq=seq, name=name)
        first = True
        n = len(data)
        max_body = self._max_body()
        unpack_header = fmt.RECORD_HEADER.unpack_from
        unpack_entry = fmt.ENTRY_HEADER.unpack_from
        kinds = fmt.ENTRY_KINDS
        crc32 = zlib.crc32
        entry_type = int(fmt.RecordType.ENTRY)
        while offset < n:
            # The fast path checks a whole record inline; anything else goes through
            # read_record, which raises the precise error.
            rtype = -1
            end = offset
            body = b""
            if n - offset >= fmt.HEADER_BYTES:
                length, head_type, crc = unpack_header(data, offset)
                end = offset + fmt.HEADER_BYTES + length
                if length <= max_body and end <= n:
                    body = data[offset + fmt.HEADER_BYTES : end]
                    if crc32(body, crc32(data[offset : offset + 5])) == crc:
                        rtype = head_type
            if rtype < 0:
                try:
                    rtype, body, end = fmt.read_record(data, offset, max_record_bytes=max_body)
                except WireError as exc:
                    if last and self._is_torn_tail(data, offset, exc):
                        self._cut_torn_tail(name, seg, offset, n, str(exc))
                        if offset == 0:
                            return  # the whole segment was torn: it was removed
                        break
                    raise StorageError(f"{label}: corrupt at offset {offset}: {exc}") from None
            if rtype == entry_type and not first and len(body) >= 17:
                term, index, kind = unpack_entry(body)
                ekind = kinds.get(kind)
                if ekind is not None and index:
                    entry = Entry(term, index, ekind, body[17:])
                    try:
                        self._hold_entry(entry, seg, offset, end - offset, replay=True)
                    except StorageError as exc:
                        raise StorageError(f"{label}: at offset {offset}: {exc}") from None
                    self.report.records += 1
                    offset = end
                    continue
            try:
                # A record whose CRC matches was written whole: a body it cannot decode is
                # never a torn write.
                record = fmt.decode_body(rtype, body)
            except WireError as exc:
                raise StorageError(f"{label}: corrupt at offset {offset}: {exc}") from None
            if first:
                if not isinstance(record, fmt.SegmentHeader):
                    raise StorageError(
                        f"{label}: corrupt at offset 0: the first record is not a segment header"
                    )
                if record.segment != seq:
                    raise StorageError(
                        f"{label}: corrupt at offset 0: the header says segment "
                        f"{record.segment:016x}"
                    )
                first = False
                self._segments.append(seg)
            else:
                try:
                    self._apply_record(record, seg, offset, end - offset, replay=True)
                except StorageError as exc:
                    raise StorageError(f"{label}: at offset {offset}: {exc}") from None
            self.report.records += 1
            offset = end
        seg.size = offset
        if first:  # an empty file: a crash right after creating it
            if not last:
                raise StorageError(f"{label}: corrupt at offset 0: empty segment before the last")
            self.vfs.remove(name)
            self.report.removed_files.append(name)

    def _max_body(self) -> int:
        return max(self.options.max_record_bytes, 64)

    @staticmethod
    def _is_torn_tail(data: bytes, offset: int, exc: WireError) -> bool:
        """A bad record at ``offset`` of the last segment is a torn tail if it runs past
        the end of the file or only zero bytes follow it (zero-filled blocks)."""
        if isinstance(exc, fmt.TruncatedRecord):
            return True
        if isinstance(exc, LimitError):
            # A whole header with an impossible length is not what an interrupted append
            # leaves (it writes the length before the body), unless the header is zeros.
            return not any(data[offset:])
        if len(data) - offset < fmt.HEADER_BYTES:
            return True
        length = int.from_bytes(data[offset : offset + 4], "big")
        end = offset + fmt.HEADER_BYTES + length
        return end >= len(data) or not any(data[end:]) or not any(data[offset:])

    def _cut_torn_tail(self, name: str, seg: _Segment, offset: int, size: int, why: str) -> None:
        dropped = size - offset
        self.counters.inc("wal.torn_tails")
        self.counters.inc("wal.torn_tail_bytes", dropped)
        self.report.torn_tail_bytes = dropped
        self.report.torn_file = name
        log.warning(
            "wal %s: dropped a torn tail of %d bytes at offset %d (%s)", name, dropped, offset, why
        )
        if offset == 0:
            self.vfs.remove(name)
            self.report.removed_files.append(name)
        else:
            self.vfs.truncate(name, offset)
        seg.size = offset

    # -- the in-memory state, shared by replay and save -------------------------------

    def _apply_record(
        self, record: fmt.Record, seg: _Segment, offset: int, size: int, *, replay: bool
    ) -> None:
        if isinstance(record, Entry):
            self._hold_entry(record, seg, offset, size, replay=replay)
        elif isinstance(record, HardState):
            self._hard = record
        elif isinstance(record, fmt.SnapshotMarker):
            self._apply_marker(record, seg)
        else:
            raise StorageError(f"unexpected {type(record).__name__} record in a segment")

    def _last(self) -> int:
        return self._base + len(self._terms) - 1

    def _hold_entry(self, e: Entry, seg: _Segment, offset: int, size: int, *, replay: bool) -> None:
        if e.index <= self._snap.index:
            return  # covered by the snapshot (etcd raft's storage ignores these too)
        last = self._last()
        if e.index == last + 1 and self._terms:
            pass  # the common case: the next entry
        elif not self._terms:
            if replay or e.index == self._snap.index + 1:
                self._base = e.index
                self._cache_start = e.index
            else:
                raise ConfigError(
                    f"entry {e.index} does not follow the snapshot at {self._snap.index}"
                )
        elif e.index <= last:
            if e.index < self._base:
                if not replay:  # pragma: no cover - the snapshot check above prevents it
                    raise ConfigError(f"entry {e.index} is below the held log")
                self._drop_all_entries()
                self._base = e.index
                self._cache_start = e.index
            else:
                self._truncate_from(e.index)
        elif e.index != last + 1:
            if replay:
                raise StorageError(f"entry {e.index} follows entry {last}: a gap in the log")
            raise ConfigError(f"entry {e.index} would leave a gap after the last entry {last}")
        self._terms.append(e.term)
        self._segs.append(seg.seq)
        self._offs.append(offset)
        self._sizes.append(size)
        self._cache.append(e)
        self._cache_bytes += len(e.data) + _ENTRY_OVERHEAD_BYTES
        if e.index > seg.max_index:
            seg.max_index = e.index
        self._trim_cache()

    def _truncate_from(self, index: int) -> None:
        keep = index - self._base
        del self._terms[keep:]
        del self._segs[keep:]
        del self._offs[keep:]
        del self._sizes[keep:]
        if index <= self._cache_start:
            self._cache = []
            self._cache_bytes = 0
            self._cache_start = index
        else:
            for e in self._cache[index - self._cache_start :]:
                self._cache_bytes -= len(e.data) + _ENTRY_OVERHEAD_BYTES
            del self._cache[index - self._cache_start :]
        self.counters.inc("wal.truncations")

    def _drop_all_entries(self) -> None:
        self._terms = array("Q")
        self._segs = array("Q")
        self._offs = array("Q")
        self._sizes = array("Q")
        self._cache = []
        self._cache_bytes = 0

    def _drop_through(self, index: int) -> None:
        """Forget entries up to ``index`` (covered by a snapshot)."""
        if index < self._base:
            return
        n = min(index - self._base + 1, len(self._terms))
        del self._terms[:n]
        del self._segs[:n]
        del self._offs[:n]
        del self._sizes[:n]
        self._base = index + 1
        if self._cache_start <= index:
            k = min(index - self._cache_start + 1, len(self._cache))
            for e in self._cache[:k]:
                self._cache_bytes -= len(e.data) + _ENTRY_OVERHEAD_BYTES
            del self._cache[:k]
            self._cache_start = index + 1

    def _trim_cache(self) -> None:
        limit = self.options.max_cache_bytes
        if self._cache_bytes <= limit:
            return
        k = 0
        # Keep at least the newest entry so the tail is always served from memory.
        while self._cache_bytes > limit and k < len(self._cache) - 1:
            self._cache_bytes -= len(self._cache[k].data) + _ENTRY_OVERHEAD_BYTES
            k += 1
        if k:
            del self._cache[:k]
            self._cache_start += k
            self.counters.inc("wal.cache_evictions", k)

    def _apply_marker(self, marker: fmt.SnapshotMarker, seg: _Segment) -> None:
        meta = marker.meta
        if meta.index < self._snap.index:
            raise StorageError(
                f"snapshot marker at {meta.index} is older than the snapshot at {self._snap.index}"
            )
        if marker.mode == fmt.SnapshotMode.INSTALL:
            self._drop_all_entries()
            self._base = meta.index + 1
            self._cache_start = self._base
            self._install_seq = seg.seq
        else:
            self._drop_through(meta.index)
        self._snap = meta

    # -- writing ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{self.vfs_label()}: the write-ahead log is closed")
        if self._failed is not None:
            raise StorageError(
                f"{self.vfs_label()}: the write-ahead log failed earlier ({self._failed}); "
                "reopen it to recover what is durable"
            )

    def _write_records(self, data: bytes) -> int:
        """Buffer ``data`` at the end of the current segment; returns its offset."""
        seg = self._segments[-1]
        offset = seg.size
        self._pending += data
        seg.size += len(data)
        self._unsynced = True
        if len(self._pending) >= self.options.write_buffer_bytes:
            self._flush()
        return offset

    def _flush(self) -> None:
        if self._pending:
            assert self._file is not None
            self._file.write(bytes(self._pending))
            self.counters.inc("wal.writes")
            self.counters.inc("wal.bytes_written", len(self._pending))
            self._pending.clear()

    def _new_segment(self, first_index: int) -> None:
        seq = self._segments[-1].seq + 1 if self._segments else 0
        if self._file is not None:
            # The old segment is made whole before the new one exists, so that only the
            # last segment can ever have a torn tail.
            self._flush()
            if self._unsynced:
                self._file.sync()
                self.counters.inc("wal.fsyncs")
            self._file.close()
        seg = _Segment(seq=seq, name=segment_name(seq))
        self._file = self.vfs.open_append(seg.name, create=True)
        self._segments.append(seg)
        self.counters.inc("wal.segments_created")
        prelude = [fmt.encode_segment_header(fmt.SegmentHeader(seq, first_index))]
        prelude.append(fmt.encode_hard_state(self._hard))
        if self._snap.index:
            prelude.append(
                fmt.encode_snapshot_marker(fmt.SnapshotMarker(self._snap, fmt.SnapshotMode.COMPACT))
            )
        self._write_records(b"".join(prelude))
        self._written_hard = self._hard
        self._dir_dirty = True

    def save(
        self,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: tuple[SnapshotMeta, bytes] | None = None,
    ) -> None:
        """Record one batch (one Raft ``Ready``): install ``snapshot``, append ``entries``
        (replacing any held entry at or after the first one's index), then ``hard_state``.

        Nothing is durable until :meth:`sync`. Entries must be consecutive and follow the
        held log (or overlap it); those at or below the snapshot are ignored. The snapshot
        is written to its own file and synced at once (it is rare and large). The whole
        batch is checked and encoded before anything changes: a :class:`ConfigError`
        leaves the log as it was. A :class:`StorageError` (the disk failed) leaves the
        log unusable until it is reopened, since what reached the disk is then unknown.
        """
        self._check_open()
        try:
            records = self._encode_batch(hard_state, entries, snapshot)
        except WireError as exc:
            raise ConfigError(f"write-ahead log save: {exc}") from None
        entry_bytes, tail = records
        try:
            if self._segments[-1].size >= self.options.segment_bytes:
                first = entries[0].index if entries else self._last() + 1
                self._new_segment(first_index=first)
            if snapshot is not None:
                self._install_snapshot(snapshot[0], snapshot[1])
            if entries:
                self._save_entries(entries, entry_bytes)
            if tail:
                self._write_records(tail)
        except StorageError as exc:
            self._failed = str(exc)
            raise
        if hard_state is not None:
            self._hard = self._written_hard = hard_state
        self.counters.inc("wal.saves")

    def _encode_batch(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: tuple[SnapshotMeta, bytes] | None,
    ) -> tuple[bytes, bytes]:
        """Check a batch and encode its entries and its trailing records."""
        for a, b in itertools.pairwise(entries):
            if b.index != a.index + 1:
                raise ConfigError(f"entries not consecutive: {a.index} then {b.index}")
        last = self._last() if self._terms else self._snap.index
        if snapshot is not None:
            meta, data = snapshot
            if meta.index < self._snap.index:
                raise ConfigError(
                    f"snapshot at {meta.index} is older than the held snapshot at "
                    f"{self._snap.index}"
                )
            if len(data) > self.options.max_snapshot_bytes:
                raise ConfigError(
                    f"snapshot of {len(data)} bytes exceeds max_snapshot_bytes "
                    f"({self.options.max_snapshot_bytes})"
                )
            fmt.encode_snapshot_marker(fmt.SnapshotMarker(meta, fmt.SnapshotMode.INSTALL))
            last = meta.index
        entry_bytes = b""
        if entries:
            if entries[0].index > last + 1:
                raise ConfigError(
                    f"entry {entries[0].index} would leave a gap after the last entry {last}"
                )
            limit = self.options.max_record_bytes
            for e in entries:
                if len(e.data) + 17 > limit:
                    raise ConfigError(
                        f"entry {e.index}: {len(e.data)} bytes of data exceed max_record_bytes"
                    )
            entry_bytes = fmt.encode_entries(list(entries))
        tail = b""
        if hard_state is not None and hard_state != self._written_hard:
            tail += fmt.encode_hard_state(hard_state)
        return entry_bytes, tail

    def _save_entries(self, entries: Sequence[Entry], data: bytes) -> None:
        seg = self._segments[-1]
        offset = self._write_records(data)
        for e in entries:
            size = fmt.HEADER_BYTES + 17 + len(e.data)
            self._hold_entry(e, seg, offset, size, replay=False)
            offset += size
        self.counters.inc("wal.entries_written", len(entries))

    def _install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        self._write_snapshot_file(meta, data)
        marker = fmt.SnapshotMarker(meta, fmt.SnapshotMode.INSTALL)
        seg = self._segments[-1]
        self._write_records(fmt.encode_snapshot_marker(marker))
        self._apply_marker(marker, seg)
        self.counters.inc("wal.snapshots_installed")

    def _write_snapshot_file(self, meta: SnapshotMeta, data: bytes) -> None:
        old = snapshot_name(self._snap.index, self._snap.term) if self._snap.index else None
        name = snapshot_name(meta.index, meta.term)
        tmp = TMP_PREFIX + name
        f = self.vfs.open_append(tmp, create=True)
        try:
            f.write(fmt.encode_snapshot_data(fmt.SnapshotData(meta.index, meta.term, data)))
            f.sync()
        finally:
            f.close()
        self.vfs.rename(tmp, name)
        self.vfs.sync_dir()
        self.counters.inc("wal.fsyncs", 2)
        if old is not None and old != name:
            self._stale_snapshots.append(old)

    def sync(self) -> None:
        """Make everything saved so far durable: one write and one ``fsync`` of the
        current segment (plus the directory if a segment was created), then remove what
        a durable snapshot marker made stale. Same as :meth:`sync_start`, calling what it
        returns, then :meth:`sync_finish`."""
        blocking = self.sync_start()
        if blocking is not None:
            blocking()
        self.sync_finish()

    def sync_start(self) -> Callable[[], None] | None:
        """The first part of :meth:`sync`, for a driver that waits for the disk in another
        thread while its own thread goes on reading the log: write the buffered records
        (here), and return the blocking part (``fdatasync`` of the segment, and of the
        directory if a segment was created; ``None``: nothing to sync). Run it anywhere,
        then call :meth:`sync_finish` here. No :meth:`save` may come in between (the
        records it writes would not be covered); reads may."""
        self._check_open()
        file = self._file if self._unsynced else None
        sync_dir = self._dir_dirty
        if file is None and not sync_dir:
            return None
        try:
            self._flush()
        except StorageError as exc:
            self._failed = str(exc)
            raise

        def blocking() -> None:
            try:
                if file is not None:
                    file.sync()
                if sync_dir:
                    self.vfs.sync_dir()
            except StorageError as exc:
                self._failed = str(exc)
                raise
            self._synced_parts = int(file is not None) + int(sync_dir)

        self._synced_parts = 0
        return blocking

    def sync_finish(self) -> None:
        """The last part of :meth:`sync`, once the blocking part returned: record what is
        durable now and remove what a durable snapshot marker made stale."""
        self._check_open()
        if self._synced_parts:
            self.counters.inc("wal.fsyncs", self._synced_parts)
            self._unsynced = False
            self._dir_dirty = False
            self._synced_parts = 0
        try:
            self._remove_stale()
        except StorageError as exc:
            self._failed = str(exc)
            raise

    def _remove_stale(self) -> None:
        removed = False
        for name in self._stale_snapshots:
            self.vfs.remove(name)
            removed = True
        self._stale_snapshots.clear()
        current = self._segments[-1].seq
        while len(self._segments) > 1 and self._segments[0].seq < current:
            seg = self._segments[0]
            if seg.max_index > self._snap.index and seg.seq >= self._install_seq:
                break
            self.vfs.remove(seg.name)
            self._segments.pop(0)
            self.counters.inc("wal.segments_removed")
            removed = True
        if removed:
            self._dir_dirty = True

    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> SnapshotMeta:
        """Record the state machine's snapshot as of applied ``index`` (with ``conf``, the
        configuration at that index) and drop the entries it covers: the snapshot file is
        written and synced, a compact marker is appended and synced, then the snapshot
        files and segment files it made stale are removed. Entries after ``index`` stay.

        Equivalent lower-level steps: write the snapshot file, append a ``SNAPSHOT``
        record, :meth:`sync` (section 6 of ``spec/consensus-wal.md``). Unlike
        ``MemoryStorage``, this compacts too: :meth:`compact` has nothing left to do.
        """
        self._check_open()
        if index <= self._snap.index:
            raise ConfigError(
                f"create_snapshot at {index}: the snapshot is already at {self._snap.index}"
            )
        if index > self.last_index():
            raise ConfigError(
                f"create_snapshot at {index}: past the last index {self.last_index()}"
            )
        if len(data) > self.options.max_snapshot_bytes:
            raise ConfigError(
                f"snapshot of {len(data)} bytes exceeds max_snapshot_bytes "
                f"({self.options.max_snapshot_bytes})"
            )
        meta = SnapshotMeta(index, self.term(index), conf)
        marker = fmt.SnapshotMarker(meta, fmt.SnapshotMode.COMPACT)
        try:
            record = fmt.encode_snapshot_marker(marker)
        except WireError as exc:
            raise ConfigError(f"create_snapshot at {index}: {exc}") from None
        try:
            self._write_snapshot_file(meta, data)
            self._write_records(record)
        except StorageError as exc:
            self._failed = str(exc)
            raise
        self._apply_marker(marker, self._segments[-1])
        self.counters.inc("wal.compactions")
        self.sync()
        return meta

    def compact(self, index: int) -> None:
        """Check that the entries up to ``index`` are gone (``MemoryStorage``'s second
        compaction step): :meth:`create_snapshot` already dropped them, so this only
        refuses an ``index`` past the snapshot with :class:`ConfigError`."""
        if index > self._snap.index:
            raise ConfigError(
                f"compact at {index}: past the snapshot at {self._snap.index} "
                "(create_snapshot first)"
            )

    # -- MemoryStorage's writing names, for drivers written against it ------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """``save(entries=entries)`` (not durable until :meth:`sync`)."""
        self.save(entries=entries)

    def set_hard_state(self, hard: HardState) -> None:
        """``save(hard_state=hard)`` (not durable until :meth:`sync`)."""
        self.save(hard_state=hard)

    def apply_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """``save(snapshot=(meta, data))``: replace the log by a received snapshot."""
        self.save(snapshot=(meta, data))

    def close(self) -> None:
        """Sync what is saved and close the current segment."""
        if self._closed:
            return
        self.sync()
        if self._file is not None:
            self._file.close()
            self._file = None
        self._closed = True

    # -- reading (LogStorage) ---------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state last saved and the configuration at the snapshot's index (the
        core re-applies the configuration changes of the entries after it).

        The commit index is at least the snapshot's: a snapshot covers only committed
        entries, so its index is known committed even when a crash kept an install marker
        but lost the hard state saved after it."""
        return self.hard_state, self._snap.conf

    def first_index(self) -> int:
        """The first index held as an entry (the snapshot's index + 1)."""
        return self._snap.index + 1

    def last_index(self) -> int:
        """The last index held (the snapshot's index if no entry follows it)."""
        return self._last() if self._terms else self._snap.index

    def term(self, index: int) -> int:
        """The term of entry ``index`` (the snapshot's term at its index)."""
        if index == self._snap.index:
            return self._snap.term
        if index < self._snap.index:
            raise LogCompacted(index, self.first_index())
        if index > self.last_index():
            raise LogUnavailable(index, self.last_index())
        return self._terms[index - self._base]

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, from the cache or read back from their segments."""
        if lo <= self._snap.index:
            raise LogCompacted(lo, self.first_index())
        if hi - 1 > self.last_index():
            raise LogUnavailable(hi - 1, self.last_index())
        if lo > hi:
            raise ConfigError(f"entries({lo}, {hi}): lo is after hi")
        if lo == hi:
            return []
        if max_bytes is not None:
            total = 0
            stop = lo
            sizes = self._sizes
            base = self._base
            while stop < hi:
                total += sizes[stop - base] - fmt.HEADER_BYTES - 17
                if total > max_bytes and stop > lo:
                    break
                stop += 1
            hi = stop
        out: list[Entry] = []
        if lo < self._cache_start:
            out = self._read_back(lo, min(hi, self._cache_start))
            lo = self._cache_start
        if lo < hi:
            out += self._cache[lo - self._cache_start : hi - self._cache_start]
        return out

    def _read_back(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``[lo, hi)`` read from the segment files, one read per run of
        adjacent records."""
        self._flush()
        out: list[Entry] = []
        names = {s.seq: s.name for s in self._segments}
        i = lo - self._base
        end = hi - self._base
        while i < end:
            seq, start = self._segs[i], self._offs[i]
            j = i + 1
            stop = start + self._sizes[i]
            while j < end and self._segs[j] == seq and self._offs[j] == stop:
                stop += self._sizes[j]
                j += 1
            name = names[seq]
            data = self.vfs.read(name, start, stop - start)
            self.counters.inc("wal.disk_reads")
            offset = 0
            for k in range(i, j):
                try:
                    rtype, body, after = fmt.read_record(
                        data, offset, max_record_bytes=self._max_body()
                    )
                    e = fmt.decode_body(rtype, body)
                except WireError as exc:
                    raise StorageError(
                        f"{self.vfs_label()}/{name}: corrupt at offset {start + offset}: {exc}"
                    ) from None
                if not isinstance(e, Entry) or e.index != self._base + k:
                    raise StorageError(
                        f"{self.vfs_label()}/{name}: at offset {start + offset}: expected "
                        f"entry {self._base + k}, found {fmt.describe(e)}"
                    )
                out.append(e)
                offset = after
            i = j
        return out

    def snapshot(self) -> tuple[SnapshotMeta, bytes]:
        """The latest snapshot and its bytes (read back from its file, CRC-checked)."""
        if self._snap.index == 0:
            return self._snap, b""
        name = snapshot_name(self._snap.index, self._snap.term)
        data = self.vfs.read(name)
        try:
            record = fmt.decode_record(data, max_record_bytes=self.options.max_snapshot_bytes + 16)
        except WireError as exc:
            raise StorageError(f"{self.vfs_label()}/{name}: corrupt: {exc}") from None
        if (
            not isinstance(record, fmt.SnapshotData)
            or record.index != self._snap.index
            or record.term != self._snap.term
        ):
            raise StorageError(f"{self.vfs_label()}/{name}: does not hold the snapshot it names")
        return self._snap, record.data

    # -- introspection ----------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        """The hard state last saved, its commit raised to the snapshot's index if lower."""
        if self._hard.commit < self._snap.index:
            return dataclasses.replace(self._hard, commit=self._snap.index)
        return self._hard

    @property
    def segment_names(self) -> list[str]:
        """The segment files in use, oldest first."""
        return [s.name for s in self._segments]

    @property
    def cached_entries(self) -> int:
        """How many entries are held in memory."""
        return len(self._cache)
