"""Forming a Raft group once: who the initial voters are, and when a node may bootstrap.

The rule (issue 7, item 4; in the shape of Consul's ``bootstrap_expect``):

- A node that holds **any** persisted Raft state (a term, a vote, an entry, a snapshot)
  never bootstraps: it restarts the group it belongs to. A node that has seen the group
  (a Raft message from a member) never bootstraps either: it joins with an empty log and
  receives entry 1 from the leader like any later member.
- Otherwise, once ``expect`` eligible members (this node included) are alive in its view,
  it *proposes* the initial voter set: the ``expect`` smallest node ids among them
  (:func:`initial_voters`). The choice is a pure function of the set it sees, so nodes
  with the same view compute the same voters, in any order of arrival.
- Views can differ (a member seen by one node and not yet by another), so a proposal is
  **confirmed** before anything is written: the node sends it to the other proposed
  voters and bootstraps only when every one of them proposed the same set
  (:class:`BootstrapState`). A node keeps its first proposal for the rest of its boot and
  adopts a peer's proposal instead of computing its own when that proposal names it and
  names only members it sees alive: the first proposal spreads, and two nodes can never
  bootstrap two different sets that share a member (each member proposed one set only).
  Different views at the same instant may leave the proposals in conflict; the nodes
  then wait (counted ``raft.bootstrap.conflicts``) rather than risk two groups.

Bootstrapping writes the same first entry on every founding voter
(``confchange.bootstrap_entry``: index 1, term 1, the voters) with hard state term 1,
commit 1, durably, before the Raft node starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from foundation_p2p.addresses import NodeId
from foundation_p2p.errors import ConfigError


def initial_voters(candidates: Iterable[NodeId], expect: int) -> frozenset[NodeId] | None:
    """The ``expect`` smallest node ids among ``candidates`` (bytewise order), or ``None``
    while there are fewer than ``expect``."""
    if type(expect) is not int or expect < 1:
        raise ConfigError(f"bootstrap_expect: must be a positive integer, got {expect!r}")
    ids = sorted(set(candidates))
    if len(ids) < expect:
        return None
    return frozenset(ids[:expect])


@dataclass(slots=True)
class BootstrapState:
    """One node's progress toward bootstrapping (see the module docstring).

    Inputs: :meth:`set_candidates` (the eligible alive members, this node included),
    :meth:`peer_proposed` (a peer's proposal arrived). Output: :meth:`ready` is the voter
    set once every proposed voter proposed it; :attr:`proposal` is what to send to the
    other voters meanwhile.
    """

    node_id: NodeId
    expect: int
    proposal: frozenset[NodeId] | None = None
    """This node's proposal, fixed for the boot once made."""
    confirmed: set[NodeId] = field(default_factory=set)
    """Proposed voters (not this node) that proposed the same set."""
    conflicts: int = 0
    """Peer proposals that named another set after ours was fixed."""
    _candidates: frozenset[NodeId] = frozenset()
    _heard: dict[NodeId, frozenset[NodeId]] = field(default_factory=dict)

    def set_candidates(self, candidates: Iterable[NodeId]) -> None:
        """The eligible alive members as seen now (this node is added if missing)."""
        self._candidates = frozenset(candidates) | {self.node_id}
        if self.proposal is None:
            for proposal in sorted(self._heard.values(), key=sorted):
                if self._adoptable(proposal):
                    self._fix(proposal)
                    return
            voters = initial_voters(self._candidates, self.expect)
            if voters is not None and self.node_id in voters:
                self._fix(voters)

    def peer_proposed(self, peer: NodeId, voters: frozenset[NodeId]) -> None:
        """``peer`` proposed ``voters``; adopt it if we have not proposed yet and it fits."""
        if peer not in voters or len(voters) != self.expect:
            self.conflicts += 1
            return
        self._heard[peer] = voters
        if self.proposal is None:
            if self._adoptable(voters):
                self._fix(voters)
            return
        if voters == self.proposal:
            self.confirmed.add(peer)
        else:
            self.conflicts += 1

    def _adoptable(self, voters: frozenset[NodeId]) -> bool:
        return (
            len(voters) == self.expect
            and self.node_id in voters
            and voters <= self._candidates
        )

    def _fix(self, voters: frozenset[NodeId]) -> None:
        self.proposal = voters
        self.confirmed = {p for p, v in self._heard.items() if v == voters and p in voters}

    def ready(self) -> frozenset[NodeId] | None:
        """The voter set to bootstrap with, once all the other proposed voters agree."""
        p = self.proposal
        if p is None:
            return None
        if self.confirmed >= p - {self.node_id}:
            return p
        return None
