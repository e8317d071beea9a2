"""What a leader knows of each follower's log: etcd raft's ``Progress`` and ``Inflights``.

A follower's progress is in one of three states:

- ``PROBE``: the leader does not know where the follower's log matches; it sends at most
  one append per heartbeat interval and backs ``next`` off on each rejection.
- ``REPLICATE``: the logs match up to ``match``; the leader streams appends optimistically
  (pipelining), bounded by :class:`Inflights` (count and bytes).
- ``SNAPSHOT``: the entries the follower needs are compacted; the leader sends a snapshot
  in chunks and sends no appends until the follower reports it installed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Final


class ProgressState(Enum):
    """How the leader replicates to one follower (see the module docstring)."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class PState:
    """The :class:`ProgressState` members as plain class attributes (``PState.PROBE is
    ProgressState.PROBE``). Reading a member off an enum class goes through the enum
    metaclass's ``__getattr__`` hook on Python 3.11, several times slower; hot paths use
    these."""

    PROBE: Final = ProgressState.PROBE
    REPLICATE: Final = ProgressState.REPLICATE
    SNAPSHOT: Final = ProgressState.SNAPSHOT


class Inflights:
    """The appends sent to one follower and not yet acknowledged, bounded two ways.

    At most ``max_count`` messages and ``max_bytes`` bytes of entry data (0 = no byte
    bound) are in flight; when either is reached the follower's progress is paused (the
    leader sends nothing more until an acknowledgement frees room). No overflow: callers
    check :meth:`full` before :meth:`add`, and :meth:`add` refuses past the bound.
    """

    __slots__ = ("_items", "bytes", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int = 0) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        """True when no further message may be sent."""
        return len(self._items) >= self.max_count or (
            self.max_bytes > 0 and self.bytes >= self.max_bytes
        )

    def add(self, last_index: int, size: int) -> None:
        """Record an append whose last entry is ``last_index`` carrying ``size`` bytes."""
        if self.full():
            raise RuntimeError("Inflights.add while full (the caller must check full())")
        self._items.append((last_index, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        """Forget every append whose last index is at or below ``index``."""
        items = self._items
        while items and items[0][0] <= index:
            self.bytes -= items.popleft()[1]

    def free_first(self) -> None:
        """Forget the oldest append (its answer is presumed lost)."""
        if self._items:
            self.bytes -= self._items.popleft()[1]

    def reset(self) -> None:
        """Forget everything."""
        self._items.clear()
        self.bytes = 0


@dataclass(slots=True)
class Progress:
    """The leader's view of one peer's log."""

    match: int
    """Highest index known to be replicated on the peer."""
    next: int
    """Next index to send."""
    inflights: Inflights
    is_learner: bool = False
    state: ProgressState = PState.PROBE
    pending_snapshot: int = 0
    """In ``SNAPSHOT``: the index of the snapshot being sent."""
    recent_active: bool = False
    """Heard from since the last check-quorum round."""
    probe_sent: bool = False
    """In ``PROBE``: an append was sent since the last heartbeat interval."""
    snap_acked: int = 0
    """In ``SNAPSHOT``: bytes of the snapshot the peer has acknowledged."""
    snap_sent: int = 0
    """In ``SNAPSHOT``: bytes of the snapshot sent (acknowledged or not)."""
    snap_idle_ticks: int = 0
    """In ``SNAPSHOT``: heartbeat intervals without a chunk acknowledgement."""
    snap_started: bool = False
    """In ``SNAPSHOT``: the first chunk went out (an empty snapshot is one empty chunk)."""

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snap_acked = 0
        self.snap_sent = 0
        self.snap_idle_ticks = 0
        self.snap_started = False
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Back to probing: from a snapshot, continue after it; else after ``match``."""
        if self.state is PState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(PState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(PState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        """Stream appends from ``match + 1``."""
        self._reset_state(PState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        """Send the snapshot ending at ``snapshot_index``."""
        self._reset_state(PState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The peer acknowledged up to ``index``; False if that is old news."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int, size: int, count: int) -> None:
        """Account for an append carrying ``count`` entries up to ``last_index``."""
        if self.state is PState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflights.add(last_index, size)
        elif self.state is PState.PROBE:
            self.probe_sent = True

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The peer rejected an append at ``rejected``; back ``next`` off. False if stale."""
        if self.state is PState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def last_index_pending(self, last_index: int) -> bool:
        """True if entries up to ``last_index`` remain to be sent to this peer."""
        return self.next <= last_index

    def is_paused(self) -> bool:
        """True when the leader should send no append to this peer now."""
        if self.state is PState.PROBE:
            return self.probe_sent
        if self.state is PState.REPLICATE:
            return self.inflights.full()
        return True
