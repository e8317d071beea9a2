"""Raft's safety properties (Figure 3) checked over a :class:`Network` after every step.

Cheap checks run after every Ready of every node (election safety, the newly committed and
newly applied entries); the checks that read every node's whole log (log matching, leader
completeness, and committed entries again from the start) run every ``full_every`` calls
and whenever a new leader appears.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raft_harness import Network

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.types import Entry


@dataclass
class SafetyChecker:
    """Election safety, log matching, leader completeness, state machine safety."""

    full_every: int = 10
    leaders: dict[int, NodeId] = field(default_factory=dict)
    """term -> the leader seen in it."""
    committed: dict[int, Entry] = field(default_factory=dict)
    """index -> the entry ever reported committed there (by any node)."""
    commit_term: dict[int, int] = field(default_factory=dict)
    """index -> the lowest term of a node seen holding it committed (the entry was
    committed in that term or earlier)."""
    applied: dict[int, Entry] = field(default_factory=dict)
    """index -> the entry any state machine applied there."""
    checked_commit: dict[NodeId, int] = field(default_factory=dict)
    checked_applied: dict[NodeId, int] = field(default_factory=dict)
    checks: int = 0
    full_checks: int = 0

    def __call__(self, net: Network) -> None:
        self.checks += 1
        new_leader = False
        for node, rn in net.nodes.items():
            r = rn.raft
            if r.role is StateRole.LEADER:
                if r.term not in self.leaders:
                    new_leader = True
                seen = self.leaders.setdefault(r.term, node)
                assert seen == node, f"election safety: two leaders in term {r.term}"
            rl = r.log
            lo = max(rl.first_index(), self.checked_commit.get(node, 0) + 1)
            if lo <= rl.committed:
                self._record_committed(rl.slice(lo, rl.committed + 1), r.term)
            self.checked_commit[node] = rl.committed
        for node, ap in net.applied.items():
            start = self.checked_applied.get(node, 0)
            if start > len(ap.entries):
                start = 0  # the list was rebuilt (restart or snapshot)
            for e in ap.entries[start:]:
                prior = self.applied.setdefault(e.index, e)
                assert prior == e, f"state machine safety: index {e.index} applied differently"
            self.checked_applied[node] = len(ap.entries)
        if new_leader or self.checks % self.full_every == 0:
            self.full(net)

    def _record_committed(self, entries: list[Entry], term: int) -> None:
        for e in entries:
            prior = self.committed.setdefault(e.index, e)
            assert prior == e, f"committed entry {e.index} changed: {prior} vs {e}"
            self.commit_term[e.index] = min(self.commit_term.get(e.index, term), term)

    def full(self, net: Network) -> None:
        """The whole-log checks."""
        self.full_checks += 1
        logs: dict[NodeId, dict[int, Entry]] = {}
        for node, rn in net.nodes.items():
            rl = rn.raft.log
            first = rl.first_index()
            entries = rl.slice(first, rl.last_index() + 1) if rl.last_index() >= first else []
            logs[node] = {e.index: e for e in entries}
            self._record_committed([e for e in entries if e.index <= rl.committed], rn.raft.term)
        # Log matching: "if two logs contain an entry with the same index and term, then the
        # logs are identical in all entries up through the given index" (on the range both
        # nodes still hold).
        nodes = list(logs)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                la, lb = logs[a], logs[b]
                matched = False
                for idx in sorted(set(la) & set(lb), reverse=True):
                    if matched:
                        assert la[idx] == lb[idx], f"log matching broken at {idx}"
                    elif la[idx].term == lb[idx].term:
                        assert la[idx] == lb[idx], f"same index/term, different entry at {idx}"
                        matched = True
        # Leader completeness: "if a log entry is committed in a given term, then that
        # entry will be present in the logs of the leaders for all higher-numbered terms"
        # (those still in the range its log holds; below is its snapshot).
        for node, rn in net.nodes.items():
            r = rn.raft
            if r.role is not StateRole.LEADER or node in net.down:
                continue
            first = r.log.first_index()
            for idx, e in self.committed.items():
                if idx >= first and self.commit_term[idx] < r.term:
                    assert logs[node].get(idx) == e, (
                        f"leader completeness: leader of term {r.term} lacks committed {idx}"
                    )
