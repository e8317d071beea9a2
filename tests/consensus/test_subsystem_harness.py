"""An in-memory cluster of :class:`ConsensusSubsystem` instances (no test here: a helper).

Each node has a :class:`MemoryVfs`-backed :class:`WalStorage`; the harness is the driver:
it takes each node's log writes, saves them and syncs once (``persist``), then tells the
node they are durable. Messages between nodes go through a CBOR round trip into one queue,
delivered in a seeded shuffled order. A crash drops the node's messages and loses what its
virtual disk did not sync; a restart reopens the WAL. Membership is simulated: every up,
eligible node is alive to everyone (``set_alive``), unless a test overrides the view.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from foundation_p2p.addresses import NodeId
from foundation_p2p.clock import Now
from foundation_p2p.consensus import kv
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.subsystem import (
    ConsensusConfig,
    ConsensusSubsystem,
    Outcome,
    persist,
    save_writes,
)
from foundation_p2p.consensus.wal import WalStorage
from foundation_p2p.counters import Counters
from simulator.vfs import MemoryVfs


def nid(n: int) -> NodeId:
    """The test node id number ``n`` (16 bytes)."""
    return bytes([n]) * 16


class FakeMessenger:
    """The messenger's ``register``/``send`` over the cluster's queue."""

    def __init__(self, cluster: Cluster, node: NodeId) -> None:
        self.cluster = cluster
        self.node = node
        self.handlers: dict[int, tuple[Callable[[Now, NodeId, Any], None], Any]] = {}
        self.sent: list[tuple[NodeId, Any]] = []

    def register(
        self,
        service: int,
        on_message: Callable[[Now, NodeId, Any], None],
        on_peer_lost: Callable[[NodeId], None] | None = None,
    ) -> None:
        assert service not in self.handlers
        self.handlers[service] = (on_message, on_peer_lost)

    def send(self, now: Now, node_id: NodeId, service: int, message: Any) -> bool:
        assert node_id != self.node
        data = cbor2.dumps(message, canonical=True)
        self.sent.append((node_id, message))
        self.cluster.queue.append((self.node, node_id, service, data))
        return True


@dataclass
class Member:
    """One node of the cluster."""

    id: NodeId
    vfs: MemoryVfs
    storage: WalStorage
    sub: ConsensusSubsystem
    messenger: FakeMessenger
    up: bool = True
    eligible: bool = True
    results: list[Outcome] = field(default_factory=list)
    hold_writes: bool = False
    """While True the harness does not persist this node's writes (a slow disk)."""
    unsynced: list[int] = field(default_factory=list)
    """Writes saved but not yet synced (``Cluster.delayed_sync``): a crash loses them."""


class Cluster:
    """Nodes, a clock, a message queue; see the module docstring."""

    def __init__(
        self,
        n: int,
        *,
        seed: int = 1,
        config: ConsensusConfig | None = None,
        eligible: Iterable[int] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.t = 0.0
        self.config = config or ConsensusConfig(
            bootstrap_expect=3, stabilization_s=1.0, request_timeout_s=2.0
        )
        self.queue: list[tuple[NodeId, NodeId, int, bytes]] = []
        self.members: dict[NodeId, Member] = {}
        self.cut: set[frozenset[NodeId]] = set()
        """Links that drop every message."""
        self.observers: dict[NodeId, FakeMessenger] = {}
        elig = set(eligible) if eligible is not None else set(range(1, n + 1))
        for i in range(1, n + 1):
            self._add(nid(i), MemoryVfs(f"n{i}"), i in elig)
        self.view_override: dict[NodeId, frozenset[NodeId]] = {}
        self.loss = 0.0
        """Probability that a message is dropped."""
        self.duplication = 0.0
        """Probability that a message is delivered twice."""
        self.delayed_sync = False
        """Save writes at one step, sync and confirm them at the next (a crash between the
        two loses them, with whatever else the disk had not synced)."""

    def _add(self, node: NodeId, vfs: MemoryVfs, eligible: bool) -> Member:
        storage = WalStorage.open(vfs)
        m = FakeMessenger(self, node)
        sub = ConsensusSubsystem(
            node,
            messenger=m,
            storage=storage,
            config=self.config,
            counters=Counters(),
            rng=random.Random(self.rng.getrandbits(32)),
            eligible=eligible,
        )
        member = Member(node, vfs, storage, sub, m, eligible=eligible)
        self.members[node] = member
        return member

    def add_observer(self, node: NodeId) -> FakeMessenger:
        """A messenger for a node outside the group (a client)."""
        m = FakeMessenger(self, node)
        self.observers[node] = m
        return m

    @property
    def now(self) -> Now:
        return Now(self.t, 1_700_000_000.0 + self.t)

    def node(self, i: int) -> Member:
        return self.members[nid(i)]

    # -- faults ----------------------------------------------------------------------------

    def crash(self, node: NodeId, *, torn: bool = False) -> None:
        """The node stops; its disk loses what was not synced (``torn``: the last file
        written may keep a random part of its unsynced tail)."""
        m = self.members[node]
        m.up = False
        m.vfs.crash(self.rng, torn=torn)
        self.queue = [q for q in self.queue if q[1] != node and q[0] != node]

    def restart(self, node: NodeId) -> Member:
        """Reopen the node's WAL and start a new subsystem on it."""
        old = self.members[node]
        assert not old.up
        return self._add(node, old.vfs, old.eligible)

    def isolate(self, node: NodeId) -> None:
        for other in self.members:
            if other != node:
                self.cut.add(frozenset((node, other)))

    def heal(self) -> None:
        self.cut.clear()

    # -- driving ---------------------------------------------------------------------------

    def alive_view(self, node: NodeId) -> frozenset[NodeId]:
        if node in self.view_override:
            return self.view_override[node]
        return frozenset(
            m.id
            for m in self.members.values()
            if m.up and m.eligible and frozenset((node, m.id)) not in self.cut
        )

    def step(self) -> None:
        """Deliver the queued messages, persist writes, run timers; advance 10 ms."""
        now = self.now
        batch, self.queue = self.queue, []
        if self.duplication:
            batch += [q for q in batch if self.rng.random() < self.duplication]
        self.rng.shuffle(batch)
        for src, dst, service, data in batch:
            if frozenset((src, dst)) in self.cut:
                continue
            if self.loss and self.rng.random() < self.loss:
                continue
            message = cbor2.loads(data)
            target = self.members.get(dst)
            handler: Callable[[Now, NodeId, Any], None]
            if target is not None:
                if not target.up:
                    continue
                handler = target.messenger.handlers[service][0]
            elif dst in self.observers:
                handler = self.observers[dst].handlers[service][0]
            else:
                continue
            handler(now, src, message)
        for m in list(self.members.values()):
            if not m.up:
                continue
            m.sub.set_alive(now, self.alive_view(m.id))
            m.sub.handle_timer(now)
            self.flush(m)
            m.results.extend(m.sub.take_results())
        self.t = round(self.t + 0.01, 6)

    def flush(self, m: Member) -> None:
        """Persist the node's pending writes (one sync) and report them durable."""
        if m.hold_writes:
            return
        if self.delayed_sync:
            if m.unsynced:
                m.storage.sync()
                ids, m.unsynced = m.unsynced, []
                m.sub.log_writes_done(self.now, ids)
            writes = m.sub.take_log_writes()
            if writes:
                save_writes(m.storage, writes)
                m.unsynced = [w.id for w in writes]
            return
        for _ in range(100):
            writes = m.sub.take_log_writes()
            if not writes:
                return
            persist(m.storage, writes)
            m.sub.log_writes_done(self.now, [w.id for w in writes])

    def run(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            self.step()

    def run_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        end = self.t + timeout
        while not cond():
            assert self.t < end, "condition not reached in time"
            self.step()

    # -- queries ---------------------------------------------------------------------------

    def leaders(self) -> list[Member]:
        return [
            m
            for m in self.members.values()
            if m.up and m.sub.raw is not None and m.sub.raw.raft.role is StateRole.LEADER
        ]

    def leader(self) -> Member | None:
        """The leader of the highest term among up nodes, if any."""
        best = None
        for m in self.leaders():
            assert m.sub.raw is not None
            if best is None or m.sub.raw.raft.term > best.sub.raw.raft.term:  # type: ignore[union-attr]
                best = m
        return best

    def wait_leader(self, timeout: float = 10.0) -> Member:
        self.run_until(lambda: self.leader() is not None, timeout)
        leader = self.leader()
        assert leader is not None
        return leader

    def put(self, m: Member, key: bytes, value: bytes, timeout: float = 5.0) -> Outcome:
        """Propose a put on ``m`` and run until its outcome."""
        ticket = m.sub.propose(self.now, kv.encode_put(key, value))
        return self.wait_outcome(m, ticket, timeout)

    def wait_outcome(self, m: Member, ticket: int, timeout: float = 5.0) -> Outcome:
        def found() -> Outcome | None:
            m.results.extend(m.sub.take_results())
            for o in m.results:
                if o.ticket == ticket:
                    return o
            return None

        self.run_until(lambda: found() is not None, timeout)
        out = found()
        assert out is not None
        m.results.remove(out)
        return out

    def kv_of(self, m: Member) -> dict[bytes, bytes]:
        sm = m.sub.state_machine
        assert isinstance(sm, kv.KVStore)
        return dict(sm.items())
