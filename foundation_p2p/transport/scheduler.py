"""The stream scheduler: which ready stream sends the next chunk (RFC 9218 priorities).

Each stream has an *urgency* from 0 (most urgent) to 7 (default 3) and an *incremental*
flag (RFC 9218 section 4). The connection calls :meth:`StreamScheduler.next` once per
STREAM chunk it is about to build and marks streams ready or not as they get data or run
dry (:meth:`StreamScheduler.set_ready`).

Selection rule (a *priority pick*):

1. the lowest urgency that has a ready stream wins;
2. at that urgency, incremental streams share round-robin, one chunk per turn; the
   non-incremental streams are served one at a time in stream-id order (the lowest ready
   id until it is done or not ready), and as a group they take one turn in the same
   round-robin, so neither kind shuts the other out at equal urgency.

Anti-starvation rule: every ``fair_share``-th pick (default 16) is a *fair pick* instead:
the ready stream that has waited longest since it was last served (or since it became
ready) is served, whatever its urgency. A ready stream is therefore served within
``fair_share * R`` picks, R being the number of ready streams: each fair pick serves the
longest waiter, and every stream served moves behind it, so it is the longest waiter
after at most R - 1 fair picks. Urgent traffic keeps ``(fair_share - 1) / fair_share`` of
the picks when everything is busy; a stream alone at its level loses nothing.

Everything is O(1) per pick except the round-robin removal of a stream that stops being
ready (a deque removal, O(streams at that urgency)). The number of streams is bounded by
the connection's stream limits; the scheduler holds only their ids.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict, deque

from foundation_p2p.errors import ConfigError

__all__ = ["DEFAULT_URGENCY", "StreamScheduler"]

#: RFC 9218 section 4.1: urgency 0..7, default 3.
DEFAULT_URGENCY = 3
MAX_URGENCY = 7
#: The token standing for "the non-incremental group" in an urgency's round-robin.
_GROUP = -1


class _Entry:
    __slots__ = ("incremental", "ready", "urgency")

    def __init__(self, urgency: int, incremental: bool) -> None:
        self.urgency = urgency
        self.incremental = incremental
        self.ready = False


class StreamScheduler:
    """Pick the next stream to send a chunk from: RFC 9218 urgency, round-robin, fair share.

    ``picks`` counts calls of :meth:`next` that returned a stream, ``fair_picks`` those
    that the anti-starvation rule decided (and ``fair_overrides`` those of them that chose a
    different stream than the priority pick would have).
    """

    __slots__ = (
        "_entries",
        "_rr",
        "_seq",
        "_since",
        "_waiting",
        "fair_overrides",
        "fair_picks",
        "fair_share",
        "picks",
    )

    def __init__(self, *, fair_share: int = 16) -> None:
        if fair_share < 2:
            raise ConfigError(f"fair_share must be >= 2, got {fair_share}")
        self.fair_share = fair_share
        self._entries: dict[int, _Entry] = {}
        # Per urgency: round-robin of ready incremental ids (+ _GROUP when the
        # non-incremental group has a ready stream), and the sorted ready non-incremental ids.
        self._rr: list[deque[int]] = [deque() for _ in range(MAX_URGENCY + 1)]
        self._seq: list[list[int]] = [[] for _ in range(MAX_URGENCY + 1)]
        # Ready streams, longest-waiting first.
        self._waiting: OrderedDict[int, None] = OrderedDict()
        self._since = 0  # picks since the last fair pick
        self.picks = 0
        self.fair_picks = 0
        self.fair_overrides = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._entries

    def add(self, stream_id: int, urgency: int = DEFAULT_URGENCY, incremental: bool = True) -> None:
        """Register a stream (not ready yet); on a known stream, change its priority.

        A priority change (RFC 9218 PRIORITY_UPDATE) keeps the stream's readiness. The
        default here is incremental (RFC 9218's default is not): our streams carry channels
        of independent messages, which round-robin suits.
        """
        if not 0 <= urgency <= MAX_URGENCY:
            raise ConfigError(f"urgency must be 0..7, got {urgency}")
        entry = self._entries.get(stream_id)
        if entry is None:
            self._entries[stream_id] = _Entry(urgency, incremental)
            return
        if entry.urgency == urgency and entry.incremental == incremental:
            return
        was_ready = entry.ready
        if was_ready:
            self._unqueue(stream_id, entry)
        entry.urgency = urgency
        entry.incremental = incremental
        if was_ready:
            self._enqueue(stream_id, entry)

    def remove(self, stream_id: int) -> None:
        """Forget a stream (closed); unknown ids are ignored."""
        entry = self._entries.pop(stream_id, None)
        if entry is not None and entry.ready:
            self._unqueue(stream_id, entry)
            del self._waiting[stream_id]

    def set_ready(self, stream_id: int, ready: bool) -> None:
        """Mark a stream as having (or no longer having) something to send."""
        entry = self._entries.get(stream_id)
        if entry is None:
            raise ConfigError(f"stream {stream_id} is not registered with the scheduler")
        if entry.ready == ready:
            return
        entry.ready = ready
        if ready:
            self._enqueue(stream_id, entry)
            self._waiting[stream_id] = None
        else:
            self._unqueue(stream_id, entry)
            del self._waiting[stream_id]

    def is_ready(self, stream_id: int) -> bool:
        """Return True when the stream is registered and marked ready."""
        entry = self._entries.get(stream_id)
        return entry is not None and entry.ready

    def urgency_of(self, stream_id: int) -> int:
        """Return a registered stream's urgency."""
        return self._entries[stream_id].urgency

    def _enqueue(self, stream_id: int, entry: _Entry) -> None:
        u = entry.urgency
        if entry.incremental:
            self._rr[u].append(stream_id)
        else:
            seq = self._seq[u]
            if not seq:
                self._rr[u].append(_GROUP)
            insort(seq, stream_id)

    def _unqueue(self, stream_id: int, entry: _Entry) -> None:
        u = entry.urgency
        if entry.incremental:
            self._rr[u].remove(stream_id)
        else:
            seq = self._seq[u]
            del seq[bisect_left(seq, stream_id)]
            if not seq:
                self._rr[u].remove(_GROUP)

    def _priority_pick(self) -> int | None:
        for u in range(MAX_URGENCY + 1):
            rr = self._rr[u]
            if rr:
                head = rr[0]
                if len(rr) > 1:
                    rr.rotate(-1)
                if head == _GROUP:
                    return self._seq[u][0]
                return head
        return None

    def next(self) -> int | None:
        """Return the stream that sends the next chunk, or None when no stream is ready."""
        waiting = self._waiting
        if not waiting:
            return None
        self._since += 1
        if self._since >= self.fair_share:
            self._since = 0
            stream_id = next(iter(waiting))
            self.fair_picks += 1
            entry = self._entries[stream_id]
            if not self._would_pick(stream_id, entry):
                self.fair_overrides += 1
                # The stream keeps its place in its level's round-robin.
            else:
                self._priority_pick()
        else:
            picked = self._priority_pick()
            assert picked is not None
            stream_id = picked
        waiting.move_to_end(stream_id)
        self.picks += 1
        return stream_id

    def _would_pick(self, stream_id: int, entry: _Entry) -> bool:
        """Return True when the priority pick would choose ``stream_id`` now."""
        for u in range(entry.urgency):
            if self._rr[u]:
                return False
        rr = self._rr[entry.urgency]
        head = rr[0]
        if head == _GROUP:
            return self._seq[entry.urgency][0] == stream_id
        return head == stream_id
