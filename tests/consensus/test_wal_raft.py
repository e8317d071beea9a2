"""The WAL under the Raft core: a 3-node group whose nodes persist every Ready in a
WalStorage on their own MemoryVfs, apply to a KVStore, compact, and crash (losing what was
not synced, sometimes with a torn tail, sometimes between save and sync) and restart from
the disk alone.

Checked throughout: at most one leader per term, every index applied with the same entry
on every node (state machine safety), every command a node applied is still applied
after crashes (committed entries survive), and at the end, after healing, every store
holds the same state. A WAL that acknowledged without making durable would break these.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus import kv
from foundation_p2p.consensus.confchange import bootstrap_entry
from foundation_p2p.consensus.messages import Message, decode_message, encode_message
from foundation_p2p.consensus.raft import ProposalDropped, RaftConfig, StateRole
from foundation_p2p.consensus.rawnode import RawNode
from foundation_p2p.consensus.types import ConfState, EntryKind, HardState
from foundation_p2p.consensus.wal import WalOptions, WalStorage
from simulator.vfs import MemoryVfs

IDS = [bytes([n]) * 16 for n in (1, 2, 3)]
OPTIONS = WalOptions(segment_bytes=4096, max_cache_bytes=2048)


class Node:
    """One member: its disk survives crashes, everything else is rebuilt from it."""

    def __init__(self, node_id: NodeId, rng: random.Random) -> None:
        self.id = node_id
        self.rng = rng
        self.vfs = MemoryVfs(path=f"node-{node_id[0]}")
        wal = WalStorage.open(self.vfs, OPTIONS)
        wal.save(HardState(1, None, 1), [bootstrap_entry(ConfState(voters=frozenset(IDS)))])
        wal.sync()
        wal.close()
        self.start()

    def start(self) -> None:
        self.wal = WalStorage.open(self.vfs, OPTIONS)
        self.raw = RawNode(RaftConfig(id=self.id), self.wal, random.Random(self.rng.random()))
        self.kv = kv.KVStore()
        meta, data = self.wal.snapshot()
        if meta.index:
            self.kv.restore(data)
        self.applied = meta.index


class Cluster:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nodes = {i: Node(i, self.rng) for i in IDS}
        self.down: set[NodeId] = set()
        self.queue: list[Message] = []
        self.leaders: dict[int, NodeId] = {}
        self.log: dict[int, tuple[int, EntryKind, bytes]] = {}
        """Every index applied anywhere: the entry applied there."""
        self.applied_commands: set[bytes] = set()
        self.crashes = {"clean": 0, "torn": 0, "before_sync": 0}
        self.snapshots_sent = 0
        self.faults = True

    def crash(self, node: NodeId, mode: str) -> None:
        n = self.nodes[node]
        n.vfs.crash(self.rng, torn=mode != "clean", zero_tail=self.rng.random() < 0.3)
        self.crashes[mode] += 1
        self.down.add(node)
        self.queue = [m for m in self.queue if m.to != node]

    def restart(self, node: NodeId) -> None:
        self.down.discard(node)
        self.nodes[node].start()

    def process(self, node: NodeId) -> None:
        n = self.nodes[node]
        if node in self.down or not n.raw.has_ready():
            return
        rd = n.raw.ready()
        n.wal.save(rd.hard_state, rd.entries, rd.snapshot)
        if self.faults and not self.down and self.rng.random() < 0.01:
            self.crash(node, "before_sync")  # nothing of this Ready may be relied on
            return
        n.wal.sync()
        self.queue.extend(decode_message(encode_message(m)) for m in rd.messages)
        if rd.snapshot is not None:
            meta, data = rd.snapshot
            n.kv.restore(data)
            n.applied = max(n.applied, meta.index)
            self.snapshots_sent += 1
        for e in rd.committed_entries:
            if e.index <= n.applied:
                continue
            seen = self.log.setdefault(e.index, (e.term, e.kind, e.data))
            assert seen == (e.term, e.kind, e.data), f"index {e.index} applied differently"
            if e.kind is EntryKind.NORMAL:
                n.kv.apply(e.index, e.data)
                self.applied_commands.add(e.data)
            n.applied = e.index
        n.raw.advance(rd)
        status = n.raw.status()
        if status.role is StateRole.LEADER:
            other = self.leaders.setdefault(status.term, node)
            assert other == node, f"two leaders in term {status.term}"

    def leader(self) -> NodeId | None:
        for node, n in self.nodes.items():
            if node not in self.down and n.raw.status().role is StateRole.LEADER:
                return node
        return None

    def step(self, i: int) -> None:
        roll = self.rng.random()
        up = [n for n in IDS if n not in self.down]
        if roll < 0.3:
            for node in up:
                self.nodes[node].raw.tick()
        elif roll < 0.55:
            leader = self.leader()
            if leader is not None:
                cmd = kv.encode_put(b"k%d" % (i % 50), b"v%d" % i)
                with contextlib.suppress(ProposalDropped):
                    self.nodes[leader].raw.propose(cmd)
        elif roll < 0.57 and len(self.down) < 1:
            self.crash(self.rng.choice(up), self.rng.choice(["clean", "torn"]))
        elif roll < 0.62 and self.down:
            self.restart(self.rng.choice(sorted(self.down)))
        elif roll < 0.64:
            node = self.rng.choice(up)
            n = self.nodes[node]
            if n.applied > n.wal.snapshot()[0].index + 5:
                n.wal.create_snapshot(n.applied, n.raw.conf_state, n.kv.snapshot())
        for _ in range(self.rng.randint(1, 6)):
            if not self.queue:
                break
            m = self.queue.pop(self.rng.randrange(len(self.queue)))
            if m.to not in self.down and self.rng.random() > 0.05:
                self.nodes[m.to].raw.step(m)
        for node in IDS:
            self.process(node)

    def settle(self) -> None:
        self.faults = False
        for node in sorted(self.down):
            self.restart(node)
        for _ in range(3000):
            for n in self.nodes.values():
                n.raw.tick()
            while self.queue:
                m = self.queue.pop(0)
                self.nodes[m.to].raw.step(m)
                for node in IDS:
                    self.process(node)
            for node in IDS:
                self.process(node)
            applied = {n.applied for n in self.nodes.values()}
            if len(applied) == 1 and self.leader() is not None:
                leader = self.nodes[self.leader()]  # type: ignore[index]
                if leader.raw.status().commit == leader.applied:
                    break


@pytest.mark.parametrize("seed", range(6))
def test_a_group_on_the_wal_survives_crashes_that_lose_unsynced_writes(seed: int) -> None:
    cluster = Cluster(seed)
    for i in range(2500):
        cluster.step(i)
    cluster.settle()
    snapshots = {n.kv.snapshot()[2:] for n in cluster.nodes.values()}  # the applied index aside
    stores = [n.kv.items() for n in cluster.nodes.values()]
    assert stores[0] == stores[1] == stores[2], "the stores disagree after healing"
    assert len(snapshots) >= 1
    final = dict(stores[0])
    # Every command applied anywhere (so committed) is reflected: its key holds its value
    # or a later one (values are v<step>, keys reused every 50 steps).
    for cmd in cluster.applied_commands:
        op = kv.KVStore()._parse(cmd)
        key, value = op.args
        assert key in final and int(final[key][1:]) >= int(value[1:]), (key, value, final[key])
    assert sum(cluster.crashes.values()) >= 5, cluster.crashes
    assert len(cluster.applied_commands) > 100
