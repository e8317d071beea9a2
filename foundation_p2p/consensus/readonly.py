"""Linearizable reads: the leader's pending ReadIndex requests (Raft section 6.4).

ReadIndex: the leader records its commit index as the request's *read index*, then
confirms it is still the leader by a round of heartbeats carrying the request's context;
once a quorum has answered, every request queued up to that context may be served as
soon as the state machine has applied the read index.

Lease-based reads skip the heartbeat round: the leader answers at once with its commit
index while its lease holds (``Raft.lease_valid``). Each heartbeat carries the tick it
was sent at; once a quorum has acknowledged a heartbeat sent at tick ``t``, each of those
followers restarted its election timer after ``t`` and, under check-quorum, refuses to
vote for another candidate for ``election_tick`` ticks (the "in lease" rule of
``Raft.step``); any new leader needs one of those votes. So the lease runs until
``t + election_tick - 2`` (two ticks of margin for timer granularity). Clock assumption:
every node's ticks run at the same rate (bounded clock *rate* drift, no synchronized
clocks); a node whose clock runs slow enough to stretch its timeout beyond the margin
breaks it. ReadIndex does not depend on it. A read arriving when the lease has lapsed
goes through the ReadIndex round instead (``raft.read_index.lease_fallback``). A leader
that sent TimeoutNow (leader transfer) forfeits its lease for the rest of its term: the
transferee's election bypasses the followers' leases. And in this mode a node refuses
votes during its first election timeout after starting: it may have acknowledged a
heartbeat just before it crashed, and it cannot remember that promise.

(Check-quorum's step-down alone is not enough for leases: the leader checks its quorum
once per election timeout, so it may still believe it leads for up to two timeouts after
losing its quorum, while the others elect a new leader after one.)

The queue is bounded by ``max_pending``: a request beyond it is refused (counted as
``raft.read_index.dropped.full``), and the client retries.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.messages import Message


@dataclass(slots=True)
class ReadIndexStatus:
    """One pending request: who asked, its read index, and who confirmed it."""

    request: Message
    index: int
    acks: set[NodeId] = field(default_factory=set)


class ReadOnly:
    """The leader's queue of ReadIndex requests waiting for a quorum of heartbeat acks."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.pending: OrderedDict[bytes, ReadIndexStatus] = OrderedDict()

    def __len__(self) -> int:
        return len(self.pending)

    def add_request(self, index: int, request: Message) -> bool:
        """Queue ``request`` at read index ``index``; False if full or a duplicate context."""
        ctx = request.context
        if ctx in self.pending or len(self.pending) >= self.max_pending:
            return False
        self.pending[ctx] = ReadIndexStatus(request, index)
        return True

    def recv_ack(self, node: NodeId, ctx: bytes) -> set[NodeId] | None:
        """Record that ``node`` answered the heartbeat carrying ``ctx``; the acks so far."""
        status = self.pending.get(ctx)
        if status is None:
            return None
        status.acks.add(node)
        return status.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Remove and return every request queued up to and including ``ctx``."""
        if ctx not in self.pending:
            return []
        out: list[ReadIndexStatus] = []
        while self.pending:
            key, status = self.pending.popitem(last=False)
            out.append(status)
            if key == ctx:
                break
        return out

    def last_pending_context(self) -> bytes | None:
        """The newest request's context (the one heartbeats carry)."""
        if not self.pending:
            return None
        return next(reversed(self.pending))

    def reset(self) -> None:
        """Drop every pending request (on losing leadership)."""
        self.pending.clear()
