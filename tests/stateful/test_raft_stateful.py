"""Hypothesis stateful test of the Raft core: a small cluster under message delivery,
drop, duplication, partitions, crash/restart and ticks, against Raft's safety invariants
and a reference list of the commands that committed.

The cluster is :class:`raft_harness.Network` (RawNodes over MemoryStorage, messages
through the wire codec); here Hypothesis, not a seeded RNG, picks every step: which
queued message is delivered, dropped or duplicated, which node ticks, proposes, crashes
or restarts, which partition is in force. After every step:

- election safety: at most one leader per term, ever;
- log matching: two logs holding an entry of the same index and term agree on every
  entry up to it;
- committed entries are never lost: every entry any node ever reported committed is at
  its index, unchanged, in every log that still holds that index and whose commit index
  covers it; and every leader's log holds all of them (leader completeness);
- state machine safety: each node's applied entries are a prefix of one reference list
  (the entries in commit order); the reference holds each proposed command at most once
  and nothing that was not proposed.

At the end (``teardown``) the network is healed, every node restarted and ticked until
a leader commits a last command: liveness after the faults, and the same reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)
from stateful_run import run_machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "consensus"))
from raft_harness import Network, nid, wire

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.messages import MessageType
from foundation_p2p.consensus.raft import ProposalDropped, StateRole
from foundation_p2p.consensus.types import Entry, EntryKind

NODES = [nid(n) for n in (1, 2, 3)]
MAX_QUEUE = 200
"""The harness's queue is bounded here: past it, a rule that would send drops instead
(a lossy network), so a long run cannot grow without bound."""


class RaftCluster(RuleBasedStateMachine):
    """Three Raft nodes; Hypothesis is the network, the clock and the nemesis."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Network([1, 2, 3], election_tick=5, heartbeat_tick=1)
        self.leaders: dict[int, NodeId] = {}
        self.committed: dict[int, Entry] = {}
        self.reference: list[Entry] = []
        self.proposed: set[bytes] = set()
        self.duplicated: set[bytes] = set()
        """Commands whose forwarded proposal the network duplicated (Raft appends each
        copy: exactly-once is the client session's job, not the log's)."""
        self.must_have: dict[tuple[int, NodeId], dict[int, Entry]] = {}
        """(term, leader) -> the entries committed when it was first seen leading: its log
        must hold them all while it leads (leader completeness)."""
        self.counter = 0
        # Start from an elected leader (most runs then exercise replication and
        # re-election under faults rather than the first election only).
        self.net.campaign(NODES[0])
        self._record()

    # -- helpers ---------------------------------------------------------------------

    def _ready_all(self) -> None:
        """Process every node's Ready (persist, send, apply), until none has one."""
        for _ in range(50):
            moved = False
            for node in NODES:
                moved |= self.net.process_ready(node)
            if not moved:
                break
        if len(self.net.queue) > MAX_QUEUE:
            del self.net.queue[MAX_QUEUE:]

    def _record(self) -> None:
        for node in NODES:
            if node in self.net.down:
                continue
            r = self.net.raft(node)
            if r.role is StateRole.LEADER:
                seen = self.leaders.setdefault(r.term, node)
                assert seen == node, f"election safety: two leaders in term {r.term}"
                self.must_have.setdefault((r.term, node), dict(self.committed))
            log = r.log
            lo = max(log.first_index(), 1)
            for e in log.slice(lo, log.committed + 1) if lo <= log.committed else []:
                prior = self.committed.setdefault(e.index, e)
                assert prior == e, f"committed entry {e.index} changed: {prior} then {e}"
        # the reference: the committed entries in index order, from 1 without gaps
        while len(self.reference) + 1 in self.committed:
            e = self.committed[len(self.reference) + 1]
            self.reference.append(e)

    def _step(self) -> None:
        self._ready_all()
        self._record()

    # -- rules ------------------------------------------------------------------------

    @rule(node=st.sampled_from(NODES), n=st.integers(1, 6))
    def tick(self, node: NodeId, n: int) -> None:
        if node in self.net.down:
            return
        for _ in range(n):
            self.net.nodes[node].tick()
            self._step()

    @rule(n=st.integers(1, 12))
    def tick_all(self, n: int) -> None:
        for _ in range(n):
            for node in NODES:
                if node not in self.net.down:
                    self.net.nodes[node].tick()
            self._step()

    @precondition(lambda self: bool(self.net.queue))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.net.queue) - 1), label="message")
        m = self.net.queue.pop(i)
        if m.to not in self.net.down and (m.sender, m.to) not in self.net.cut:
            self.net.nodes[m.to].step(m)
        self._step()

    @precondition(lambda self: bool(self.net.queue))
    @rule(n=st.integers(1, 40))
    def deliver_in_order(self, n: int) -> None:
        for _ in range(n):
            if not self.net.queue:
                break
            m = self.net.queue.pop(0)
            if m.to not in self.net.down and (m.sender, m.to) not in self.net.cut:
                self.net.nodes[m.to].step(m)
            self._step()

    @rule()
    def deliver_all(self) -> None:
        """Deliver in order until the queue is empty (what is cut or down is lost)."""
        for _ in range(MAX_QUEUE * 4):
            if not self.net.queue:
                break
            m = self.net.queue.pop(0)
            if m.to not in self.net.down and (m.sender, m.to) not in self.net.cut:
                self.net.nodes[m.to].step(m)
            self._step()

    @precondition(lambda self: bool(self.net.queue))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.net.queue) - 1), label="message")
        self.net.queue.pop(i)

    @precondition(lambda self: bool(self.net.queue) and len(self.net.queue) < MAX_QUEUE)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.net.queue) - 1), label="message")
        m = self.net.queue[i]
        if m.type is MessageType.PROP:
            self.duplicated.update(e.data for e in m.entries)
        self.net.queue.append(wire(m))

    @rule(node=st.sampled_from(NODES))
    def propose(self, node: NodeId) -> None:
        if node in self.net.down:
            return
        self.counter += 1
        command = b"cmd-%d" % self.counter
        try:
            self.net.nodes[node].propose(command)
        except ProposalDropped:
            return
        self.proposed.add(command)
        self._step()

    @rule(node=st.sampled_from(NODES), n=st.integers(1, 3))
    def propose_and_settle(self, node: NodeId, n: int) -> None:
        """A client burst: ``n`` proposals at ``node``, then the network delivers all."""
        for _ in range(n):
            self.propose(node)
        self.deliver_all()

    @rule(node=st.sampled_from(NODES))
    def campaign(self, node: NodeId) -> None:
        if node not in self.net.down:
            self.net.nodes[node].campaign()
            self._step()

    @rule(alone=st.sampled_from(NODES))
    def partition(self, alone: NodeId) -> None:
        self.net.heal()
        self.net.isolate(alone)

    @rule(a=st.sampled_from(NODES), b=st.sampled_from(NODES))
    def cut_link(self, a: NodeId, b: NodeId) -> None:
        if a != b:
            self.net.cut.add((a, b))

    @rule()
    def heal(self) -> None:
        self.net.heal()

    @precondition(lambda self: len(self.net.down) < 1)
    @rule(node=st.sampled_from(NODES))
    def crash(self, node: NodeId) -> None:
        self.net.crash(node)

    @precondition(lambda self: bool(self.net.down))
    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        node = data.draw(st.sampled_from(sorted(self.net.down)), label="node")
        self.net.restart(node)
        self._step()

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def log_matching(self) -> None:
        logs = {}
        for node in NODES:
            log = self.net.raft(node).log
            logs[node] = {
                i: log.term(i) for i in range(log.first_index(), log.last_index() + 1)
            }
        for a in NODES:
            for b in NODES:
                if a >= b:
                    continue
                common = sorted(set(logs[a]) & set(logs[b]))
                last_match = max(
                    (i for i in common if logs[a][i] == logs[b][i]), default=None
                )
                if last_match is None:
                    continue
                for i in common:
                    if i <= last_match:
                        assert logs[a][i] == logs[b][i], (
                            f"log matching: index {last_match} agrees but {i} differs"
                        )

    @invariant()
    def committed_never_lost(self) -> None:
        for node in NODES:
            r = self.net.raft(node)
            log = r.log
            covered = range(log.first_index(), min(log.last_index(), log.committed) + 1)
            for i in covered:
                if i in self.committed:
                    got = log.slice(i, i + 1)[0]
                    assert got == self.committed[i], f"{node.hex()[:4]} lost committed {i}"
            if r.role is StateRole.LEADER and node not in self.net.down:
                for i, e in self.must_have.get((r.term, node), {}).items():
                    if i >= log.first_index():
                        assert i <= log.last_index() and log.slice(i, i + 1)[0] == e, (
                            f"leader completeness: leader of term {r.term} lacks entry {i}"
                        )

    @invariant()
    def state_machine_safety(self) -> None:
        for node in NODES:
            applied = self.net.applied[node].entries
            for e in applied:
                if e.index <= len(self.reference):
                    assert self.reference[e.index - 1] == e, (
                        f"state machine safety: {node.hex()[:4]} applied {e} at {e.index}"
                    )
                else:
                    raise AssertionError(f"{node.hex()[:4]} applied {e.index} not committed")
        commands = [e.data for e in self.reference if e.kind is EntryKind.NORMAL and e.data]
        once = [c for c in commands if c not in self.duplicated]
        assert len(once) == len(set(once)), "a command committed twice"
        assert set(commands) <= self.proposed, "a command nobody proposed committed"

    def teardown(self) -> None:
        # Liveness after the faults: heal, restart everyone; within a bounded number of
        # elections a leader commits a last command and every node applies it.
        net = self.net
        net.heal()
        for node in sorted(net.down):
            net.restart(node)
        self._step()
        final = None
        for attempt in range(20):
            leader = None
            for _ in range(100):
                net.tick()
                self._record()
                leader = net.leader()
                if leader is not None:
                    break
            assert leader is not None, "no leader within 100 ticks after healing"
            command = b"final-%d" % attempt
            try:
                net.nodes[leader].propose(command)
            except ProposalDropped:
                continue
            self.proposed.add(command)
            for _ in range(10):
                net.tick()
                self._record()
            if any(e.data == command for e in self.reference):
                final = command
                break
        assert final is not None, "no command committed after healing"
        self.state_machine_safety()
        for node in NODES:
            assert net.applied[node].entries[-1].index == self.reference[-1].index, (
                f"{node.hex()[:4]} applied up to {net.applied[node].entries[-1].index}, "
                f"the cluster committed {self.reference[-1].index}"
            )


def test_raft_cluster() -> None:
    run_machine(RaftCluster, 60, 40)


@pytest.mark.soak
def test_raft_cluster_soak() -> None:
    run_machine(RaftCluster, 1000, 100, soak=True)
