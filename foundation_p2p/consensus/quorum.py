"""Majority arithmetic over a configuration, simple or joint (Raft section 6).

A decision of a joint configuration (``voters_outgoing`` not empty) needs a majority of
``voters`` and a majority of ``voters_outgoing``; an empty voter set agrees to anything,
so the same code serves both shapes (etcd raft's ``JointConfig``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.types import ConfState

UNBOUNDED_INDEX = (1 << 64) - 1
"""What an empty voter set "commits": everything, so ``min`` picks the other half."""


class VoteResult(Enum):
    """The outcome of an election (or pre-vote) so far."""

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority_index(voters: frozenset[NodeId], acked: Mapping[NodeId, int]) -> int:
    """The largest index that a majority of ``voters`` has acknowledged (missing = 0)."""
    if not voters:
        return UNBOUNDED_INDEX
    values = sorted((acked.get(v, 0) for v in voters), reverse=True)
    return values[len(values) // 2]


def committed_index(conf: ConfState, acked: Mapping[NodeId, int]) -> int:
    """The largest index acknowledged by a quorum of ``conf`` (both halves when joint)."""
    return min(
        majority_index(conf.voters, acked), majority_index(conf.voters_outgoing, acked)
    )


def majority_vote(voters: frozenset[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Won once a majority of ``voters`` granted, lost once a majority can no longer."""
    if not voters:
        return VoteResult.WON
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    need = len(voters) // 2 + 1
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def vote_result(conf: ConfState, votes: Mapping[NodeId, bool]) -> VoteResult:
    """The election's result under ``conf``: won only if every half is won."""
    first = majority_vote(conf.voters, votes)
    second = majority_vote(conf.voters_outgoing, votes)
    if first is VoteResult.LOST or second is VoteResult.LOST:
        return VoteResult.LOST
    if first is VoteResult.WON and second is VoteResult.WON:
        return VoteResult.WON
    return VoteResult.PENDING


def all_voters(conf: ConfState) -> frozenset[NodeId]:
    """Every node whose vote or acknowledgement counts under ``conf``."""
    return conf.voters | conf.voters_outgoing
