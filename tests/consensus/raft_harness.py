"""Helpers for the Raft core tests: node ids, a node factory, and an in-memory network.

``Network`` drives several :class:`RawNode` instances the way a real driver would:
each Ready is persisted into the node's :class:`MemoryStorage`, its messages go through
the wire codec (encode, then decode) into a queue, committed entries are applied to a
list per node. Faults are data: dropped links, a drop probability, duplication and
reordering from a seeded ``random.Random``, crash-restart from what was persisted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.memory_storage import MemoryStorage
from foundation_p2p.consensus.messages import Message, MessageType, decode_message, encode_message
from foundation_p2p.consensus.raft import Raft, RaftConfig, ReadState, StateRole
from foundation_p2p.consensus.rawnode import RawNode, Ready
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind

M = MessageType


def nid(n: int) -> NodeId:
    """The test node id number ``n`` (16 bytes)."""
    return bytes([n]) * 16


def ids(*numbers: int) -> list[NodeId]:
    return [nid(n) for n in numbers]


def make_raft(
    n: int,
    voters: Iterable[int],
    *,
    learners: Iterable[int] = (),
    storage: MemoryStorage | None = None,
    seed: int = 0,
    **overrides: object,
) -> Raft:
    """A bare :class:`Raft` (no RawNode) over a bootstrapped memory storage."""
    if storage is None:
        storage = MemoryStorage(
            ConfState(voters=frozenset(ids(*voters)), learners=frozenset(ids(*learners)))
        )
    config = RaftConfig(id=nid(n), **overrides)  # type: ignore[arg-type]
    return Raft(config, storage, random.Random(seed))


def take(r: Raft) -> list[Message]:
    """The messages ``r`` queued, removed from its outbox (sorted by receiver)."""
    out, r.msgs = r.msgs, []
    return out


def wire(m: Message) -> Message:
    """``m`` after a round trip through the wire codec."""
    return decode_message(encode_message(m))


@dataclass
class Applied:
    """What one node's state machine received, in order."""

    entries: list[Entry] = field(default_factory=list)
    snapshot_index: int = 0
    snapshot_data: bytes = b""

    def commands(self) -> list[bytes]:
        return [e.data for e in self.entries if e.kind is EntryKind.NORMAL]


class Network:
    """Several RawNodes and the messages between them (a test double for a cluster)."""

    def __init__(
        self,
        voters: Iterable[int],
        *,
        learners: Iterable[int] = (),
        seed: int = 0,
        **overrides: object,
    ) -> None:
        self.rng = random.Random(seed)
        self.overrides = overrides
        self.conf = ConfState(voters=frozenset(ids(*voters)), learners=frozenset(ids(*learners)))
        self.nodes: dict[NodeId, RawNode] = {}
        self.storage: dict[NodeId, MemoryStorage] = {}
        self.applied: dict[NodeId, Applied] = {}
        self.queue: list[Message] = []
        self.cut: set[tuple[NodeId, NodeId]] = set()
        self.down: set[NodeId] = set()
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.reorder = False
        self.msg_filter: Callable[[Message], bool] | None = None
        self.observers: list[Callable[[Network], None]] = []
        self.crash_in_ready: set[NodeId] = set()
        """Nodes that crash at their next Ready, before persisting it."""
        self.read_states: list[tuple[NodeId, ReadState]] = []
        """Every read state any node's Ready carried, in order."""
        for node in sorted(self.conf.voters | self.conf.learners):
            storage = MemoryStorage()
            storage.bootstrap(self.conf)
            self.add_node(node, storage)
        self.flush()  # apply the bootstrap entry

    # -- membership of the harness --------------------------------------------------------

    def add_node(self, node: NodeId, storage: MemoryStorage | None = None) -> None:
        """Start ``node``; without ``storage``, empty (a node joining the group)."""
        if storage is None:
            storage = MemoryStorage()
        self.storage[node] = storage
        self.applied.setdefault(node, Applied())
        config = RaftConfig(id=node, **self.overrides)  # type: ignore[arg-type]
        self.nodes[node] = RawNode(config, storage, random.Random(self.rng.random()))

    def crash(self, node: NodeId) -> None:
        """Lose everything but the storage (which holds only what Ready said to persist)."""
        self.down.add(node)
        self.queue = [m for m in self.queue if m.to != node and m.sender != node]

    def restart(self, node: NodeId) -> None:
        """Start ``node`` again from its storage; its state machine replays from the
        snapshot (the applied list is rebuilt as a real restart would)."""
        self.down.discard(node)
        st = self.storage[node]
        config = RaftConfig(id=node, **self.overrides)  # type: ignore[arg-type]
        self.nodes[node] = RawNode(config, st, random.Random(self.rng.random()))
        old = self.applied[node]
        keep = [e for e in old.entries if e.index <= st.snap_meta.index]
        self.applied[node] = Applied(keep, old.snapshot_index, old.snapshot_data)

    def isolate(self, node: NodeId) -> None:
        for other in self.nodes:
            if other != node:
                self.cut.add((node, other))
                self.cut.add((other, node))

    def partition(self, *groups: Iterable[NodeId]) -> None:
        sets = [set(g) for g in groups]
        for a in self.nodes:
            for b in self.nodes:
                if a != b and not any(a in s and b in s for s in sets):
                    self.cut.add((a, b))

    def heal(self) -> None:
        self.cut.clear()

    # -- driving ------------------------------------------------------------------------

    def process_ready(self, node: NodeId) -> bool:
        rn = self.nodes[node]
        if node in self.down or not rn.has_ready():
            return False
        rd = rn.ready()
        if node in self.crash_in_ready:
            # The process dies with this Ready in hand: nothing of it is persisted, sent or
            # applied (an unsynced write lost).
            self.crash_in_ready.discard(node)
            self.crash(node)
            return True
        self.persist(node, rd)
        for m in rd.messages:
            self.send(wire(m))
        self.apply(node, rd)
        rn.advance(rd)
        for observer in self.observers:
            observer(self)
        return True

    def persist(self, node: NodeId, rd: Ready) -> None:
        st = self.storage[node]
        if rd.snapshot is not None:
            st.apply_snapshot(*rd.snapshot)
        st.append(rd.entries)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)

    def apply(self, node: NodeId, rd: Ready) -> None:
        self.read_states.extend((node, rs) for rs in rd.read_states)
        ap = self.applied[node]
        if rd.snapshot is not None:
            meta, data = rd.snapshot
            ap.snapshot_index, ap.snapshot_data = meta.index, data
            ap.entries = [e for e in ap.entries if e.index <= meta.index]
        for e in rd.committed_entries:
            if ap.entries and e.index <= ap.entries[-1].index:
                continue
            ap.entries.append(e)

    def send(self, m: Message) -> None:
        if (m.sender, m.to) in self.cut or m.to in self.down or m.to not in self.nodes:
            return
        if self.msg_filter is not None and not self.msg_filter(m):
            return
        if self.drop_rate and self.rng.random() < self.drop_rate:
            return
        self.queue.append(m)
        if self.dup_rate and self.rng.random() < self.dup_rate:
            self.queue.append(wire(m))

    def deliver_one(self) -> bool:
        if not self.queue:
            return False
        i = self.rng.randrange(len(self.queue)) if self.reorder else 0
        m = self.queue.pop(i)
        if m.to in self.down or (m.sender, m.to) in self.cut:
            return True
        self.nodes[m.to].step(m)
        return True

    def flush(self) -> None:
        for node in list(self.nodes):
            self.process_ready(node)

    def stabilize(self, limit: int = 100_000) -> None:
        """Deliver messages and process Readys until nothing moves."""
        for _ in range(limit):
            moved = False
            for node in list(self.nodes):
                moved |= self.process_ready(node)
            while self.deliver_one():
                moved = True
                for node in list(self.nodes):
                    self.process_ready(node)
            if not moved:
                return
        raise AssertionError("network did not stabilize")

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            for node, rn in self.nodes.items():
                if node not in self.down:
                    rn.tick()
            self.stabilize()

    def tick_until_leader(self, max_ticks: int = 1000) -> NodeId:
        for _ in range(max_ticks):
            leader = self.leader()
            if leader is not None:
                return leader
            self.tick()
        raise AssertionError("no leader elected")

    def leader(self) -> NodeId | None:
        """The leader of the highest term among nodes that are up."""
        best: tuple[int, NodeId] | None = None
        for node, rn in self.nodes.items():
            r = rn.raft
            leads = node not in self.down and r.role is StateRole.LEADER
            if leads and (best is None or r.term > best[0]):
                best = (r.term, node)
        return best[1] if best else None

    def campaign(self, node: NodeId) -> None:
        self.nodes[node].campaign()
        self.stabilize()

    def raft(self, node: NodeId) -> Raft:
        return self.nodes[node].raft
