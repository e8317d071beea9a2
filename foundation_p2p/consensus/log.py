"""The Raft log as the core sees it: stable entries in a ``LogStorage`` plus unstable ones.

``RaftLog`` joins two parts (etcd raft's ``raftLog`` and ``unstable``):

- the *stable* part, read through :class:`~foundation_p2p.consensus.storage.LogStorage`
  (what the driver has persisted), and
- the *unstable* part: entries (and possibly an incoming snapshot) the core has accepted
  but the driver has not yet persisted; :class:`~foundation_p2p.consensus.raft.Ready`
  hands them out and ``advance()`` marks them stable.

``committed`` and ``applied`` are the commit index and the index of the last entry handed
to the state machine. Unstable entries are bounded by the driver: each ``Ready`` drains
them, and a leader refuses proposals past ``max_uncommitted_bytes``.
"""

from __future__ import annotations

from foundation_p2p.consensus.storage import LogCompacted, LogStorage, LogUnavailable
from foundation_p2p.consensus.types import Entry, SnapshotMeta


class Unstable:
    """Entries (from ``offset``) and a snapshot not yet persisted by the driver."""

    __slots__ = ("entries", "offset", "snapshot", "snapshot_data")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.entries: list[Entry] = []
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data = b""

    def maybe_first_index(self) -> int | None:
        return self.snapshot.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.index
        return None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.index == index:
                return self.snapshot.term
            return None
        last = self.maybe_last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        t = self.maybe_term(index)
        if t is None or t != term or index < self.offset:
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.index == index:
            self.snapshot = None
            self.snapshot_data = b""

    def restore(self, meta: SnapshotMeta, data: bytes) -> None:
        self.offset = meta.index + 1
        self.entries = []
        self.snapshot = meta
        self.snapshot_data = data

    def truncate_and_append(self, entries: list[Entry]) -> None:
        after = entries[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif after <= self.offset:
            # Replace everything unstable (the stable part past ``after`` is overwritten
            # when the driver persists these, as a WAL overwrite).
            self.offset = after
            self.entries = list(entries)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(entries)


class RaftLog:
    """The log: storage plus unstable entries, with the commit and apply indexes."""

    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1

    # -- indexes and terms ----------------------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, index: int) -> int | None:
        """The term of ``index``; ``None`` if compacted away or past the end."""
        dummy = self.first_index() - 1
        if index < dummy or index > self.last_index():
            return None
        t = self.unstable.maybe_term(index)
        if t is not None:
            return t
        try:
            return self.storage.term(index)
        except (LogCompacted, LogUnavailable):
            return None

    def term_or_zero(self, index: int) -> int:
        t = self.term(index)
        return 0 if t is None else t

    def last_term(self) -> int:
        return self.term_or_zero(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        t = self.term(index)
        return t is not None and t == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Raft 5.4.1: a candidate's log is at least as up-to-date as ours."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    # -- appending ------------------------------------------------------------------------

    def find_conflict(self, entries: list[Entry]) -> int:
        """The first index of ``entries`` whose term differs from ours (0 if none);
        an entry past our last index counts as a conflict (it is new)."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index at or below ``index`` whose term is at most ``term``, and
        its term (etcd's fast log backtracking)."""
        while index > 0:
            t = self.term(index)
            if t is None:
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: list[Entry]
    ) -> int | None:
        """AppendEntries receiver rules 2-5; the new last index, or ``None`` on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise RuntimeError(
                    f"entry {conflict} conflicts with the committed log (committed "
                    f"{self.committed}): a safety violation elsewhere"
                )
            self.append(entries[conflict - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: list[Entry]) -> int:
        if not entries:
            return self.last_index()
        if entries[0].index - 1 < self.committed:
            raise RuntimeError(
                f"append after {entries[0].index - 1} is below the commit index {self.committed}"
            )
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    # -- reading --------------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``; with ``max_bytes``, at least one. ``LogCompacted`` below
        the first index."""
        if lo >= hi:
            return []
        first = self.first_index()
        if lo < first:
            raise LogCompacted(lo, first)
        if hi > self.last_index() + 1:
            raise LogUnavailable(hi - 1, self.last_index())
        out: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            out = self.storage.entries(lo, min(hi, offset), max_bytes)
            if len(out) < min(hi, offset) - lo:
                return out  # stopped by max_bytes
        if hi > offset:
            out = out + self.unstable.entries[max(lo, offset) - offset : hi - offset]
        if max_bytes is not None:
            size = 0
            for n, e in enumerate(out):
                size += len(e.data)
                if size > max_bytes and n > 0:
                    return out[:n]
        return out

    def next_committed(self, max_bytes: int | None) -> list[Entry]:
        """Committed entries not yet applied (bounded by ``max_bytes``, at least one)."""
        lo = max(self.applied + 1, self.first_index())
        hi = self.committed + 1
        if lo >= hi:
            return []
        return self.slice(lo, hi, max_bytes)

    def has_next_committed(self) -> bool:
        return self.committed > max(self.applied, self.first_index() - 1)

    # -- indexes moving -------------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise RuntimeError(
                    f"commit index {index} is past the last index {self.last_index()}"
                )
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Raft 5.4.2: commit up to ``index`` only if that entry is of ``term``."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise RuntimeError(
                f"applied index {index} is outside [{self.applied}, {self.committed}]"
            )
        self.applied = index

    def restore(self, meta: SnapshotMeta, data: bytes) -> None:
        """Replace the whole log by a snapshot (the follower side of InstallSnapshot)."""
        self.committed = meta.index
        self.unstable.restore(meta, data)
