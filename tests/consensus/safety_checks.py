"""Raft's safety properties (Figure 3) checked over a :class:`Network` after every step."""

from __future__ import annotations

from dataclasses import dataclass, field

from raft_harness import Network

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.types import Entry


@dataclass
class SafetyChecker:
    """Election safety, log matching, leader completeness, state machine safety."""

    leaders: dict[int, NodeId] = field(default_factory=dict)
    """term -> the leader seen in it."""
    committed: dict[int, Entry] = field(default_factory=dict)
    """index -> the entry ever reported committed there (by any node)."""
    commit_term: dict[int, int] = field(default_factory=dict)
    """index -> the lowest term of a node seen holding it committed (the entry was
    committed in that term or earlier)."""
    applied: dict[int, Entry] = field(default_factory=dict)
    """index -> the entry any state machine applied there."""
    checks: int = 0

    def __call__(self, net: Network) -> None:
        self.checks += 1
        logs: dict[NodeId, dict[int, Entry]] = {}
        for node, rn in net.nodes.items():
            r = rn.raft
            if r.role is StateRole.LEADER:
                seen = self.leaders.setdefault(r.term, node)
                assert seen == node, f"election safety: two leaders in term {r.term}"
            rl = r.log
            first = rl.first_index()
            entries = rl.slice(first, rl.last_index() + 1) if rl.last_index() >= first else []
            logs[node] = {e.index: e for e in entries}
            for e in entries:
                if e.index <= rl.committed:
                    prior = self.committed.setdefault(e.index, e)
                    assert prior == e, f"committed entry {e.index} changed: {prior} vs {e}"
                    seen = self.commit_term.get(e.index, r.term)
                    self.commit_term[e.index] = min(seen, r.term)
        # Log matching: same index and term -> identical up to there (checked pairwise on
        # the overlapping ranges both nodes hold).
        nodes = list(logs)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb), reverse=True)
                matched = False
                for idx in common:
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
        # State machine safety: no two state machines apply different entries at an index.
        for ap in net.applied.values():
            for e in ap.entries:
                prior = self.applied.setdefault(e.index, e)
                assert prior == e, f"state machine safety: index {e.index} applied differently"
