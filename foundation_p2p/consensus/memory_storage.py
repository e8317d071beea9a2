"""An in-memory :class:`~foundation_p2p.consensus.storage.LogStorage` (tests, simulator).

Holds a snapshot (metadata and bytes), the entries after it, and the hard state. The
driver writes to it what each ``Ready`` says to persist (:meth:`MemoryStorage.append`,
:meth:`set_hard_state`, :meth:`apply_snapshot`) and compacts it through
:meth:`create_snapshot` and :meth:`compact` (the log-compaction hook: after the state
machine has applied index ``i``, snapshot it there and drop the entries up to it).

Nothing survives the process; the entries are bounded only by compaction, which is the
driver's job (the WAL is the durable, bounded counterpart).
"""

from __future__ import annotations

from foundation_p2p.consensus.confchange import bootstrap_entry
from foundation_p2p.consensus.storage import LogCompacted, LogUnavailable
from foundation_p2p.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from foundation_p2p.errors import ConfigError


class MemoryStorage:
    """A log kept in a Python list; ``entries[0]`` is a dummy at the snapshot's index."""

    def __init__(self, conf: ConfState | None = None) -> None:
        """An empty log; ``conf`` is the bootstrap configuration (snapshot at index 0)."""
        self.hard = HardState()
        self.snap_meta = SnapshotMeta(0, 0, conf if conf is not None else ConfState())
        self.snap_data = b""
        # The dummy entry at the snapshot's index carries its term.
        self._ents: list[Entry] = [Entry(0, 0)]

    # -- LogStorage -----------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state and the configuration of the snapshot (the core re-applies the
        configuration changes of the entries after it)."""
        return self.hard, self.snap_meta.conf

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise LogCompacted(index, offset + 1)
        if index > self.last_index():
            raise LogUnavailable(index, self.last_index())
        return self._ents[index - offset].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise LogCompacted(lo, offset + 1)
        if hi - 1 > self.last_index():
            raise LogUnavailable(hi - 1, self.last_index())
        out = self._ents[lo - offset : hi - offset]
        if max_bytes is not None and out:
            size = 0
            for n, e in enumerate(out):
                size += len(e.data)
                if size > max_bytes and n > 0:
                    return out[:n]
        return out

    def snapshot(self) -> tuple[SnapshotMeta, bytes]:
        return self.snap_meta, self.snap_data

    # -- writes (the driver's) ------------------------------------------------------------

    def bootstrap(self, conf: ConfState) -> None:
        """Store a new group's first entry (:func:`bootstrap_entry`) as committed; only on
        an empty log."""
        if self.last_index() != 0 or self.hard != HardState():
            raise ConfigError("MemoryStorage.bootstrap: the log is not empty")
        self.append([bootstrap_entry(conf)])
        self.hard = HardState(term=1, vote=None, commit=1)

    def set_hard_state(self, hard: HardState) -> None:
        """Persist the hard state."""
        self.hard = hard

    def append(self, entries: list[Entry]) -> None:
        """Persist entries; a suffix from ``entries[0].index`` on is replaced."""
        if not entries:
            return
        first = self.first_index()
        if entries[-1].index < first:
            return  # all compacted already
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise ConfigError(
                f"MemoryStorage.append: entry {entries[0].index} leaves a gap after "
                f"{self.last_index()}"
            )
        del self._ents[offset:]
        self._ents.extend(entries)

    def apply_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Replace the whole log by a received snapshot."""
        if meta.index < self.snap_meta.index:
            raise ConfigError(
                f"MemoryStorage.apply_snapshot: snapshot {meta.index} is older than "
                f"{self.snap_meta.index}"
            )
        self.snap_meta = meta
        self.snap_data = data
        self._ents = [Entry(meta.term, meta.index)]

    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> SnapshotMeta:
        """Record the state machine's snapshot as of applied index ``index``."""
        if index <= self.snap_meta.index:
            raise ConfigError(
                f"MemoryStorage.create_snapshot: index {index} is not after the "
                f"snapshot at {self.snap_meta.index}"
            )
        if index > self.last_index():
            raise ConfigError(
                f"MemoryStorage.create_snapshot: index {index} is past the last index "
                f"{self.last_index()}"
            )
        self.snap_meta = SnapshotMeta(index, self.term(index), conf)
        self.snap_data = data
        return self.snap_meta

    def compact(self, index: int) -> None:
        """Drop the entries up to ``index`` (at most the snapshot's index)."""
        offset = self._ents[0].index
        if index <= offset:
            return
        if index > self.snap_meta.index:
            raise ConfigError(
                f"MemoryStorage.compact: index {index} is past the snapshot at "
                f"{self.snap_meta.index} (snapshot first)"
            )
        term = self.term(index)
        self._ents = [Entry(term, index), *self._ents[index - offset + 1:]]
