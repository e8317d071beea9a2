"""The read side of a Raft log storage: what the Raft core asks of whoever keeps the log.

The core (:mod:`foundation_p2p.consensus.raft`) never writes storage itself: it hands the
entries and hard state to persist to its driver (etcd raft's Ready), and reads back through
:class:`LogStorage`. Implementations: an in-memory one for tests and the simulator's
messages mode, and the write-ahead log (:mod:`foundation_p2p.consensus.wal`) on a real or
virtual disk. Index ranges are half-open, ``[lo, hi)``, as in etcd raft.
"""

from __future__ import annotations

from typing import Protocol

from foundation_p2p.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from foundation_p2p.errors import FoundationError


class LogCompacted(FoundationError):
    """The asked-for index is at or below the snapshot: those entries are gone."""

    def __init__(self, index: int, first_index: int) -> None:
        super().__init__(
            f"log index {index} is compacted (the first index still held is {first_index})"
        )
        self.index = index
        self.first_index = first_index


class LogUnavailable(FoundationError):
    """The asked-for index is past the end of the log."""

    def __init__(self, index: int, last_index: int) -> None:
        super().__init__(f"log index {index} is not in the log (the last index is {last_index})")
        self.index = index
        self.last_index = last_index


class LogStorage(Protocol):
    """What the Raft core reads. Every method answers from what is already stored."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the configuration as of the last entry stored."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``; with ``max_bytes``, stop before the total ``data`` size
        passes it, but always return at least one entry. ``LogCompacted`` if ``lo`` is at
        or below the snapshot, ``LogUnavailable`` if ``hi - 1`` is past the last index."""
        ...

    def term(self, index: int) -> int:
        """The term of entry ``index`` (the snapshot's index gives the snapshot's term);
        ``LogCompacted`` below that, ``LogUnavailable`` past the last index."""
        ...

    def first_index(self) -> int:
        """The first index held as an entry (the snapshot's index + 1)."""
        ...

    def last_index(self) -> int:
        """The last index held (the snapshot's index if no entry follows it)."""
        ...

    def snapshot(self) -> tuple[SnapshotMeta, bytes]:
        """The latest snapshot: its metadata and the state machine's bytes (empty before
        the first snapshot, with index 0 and term 0)."""
        ...
