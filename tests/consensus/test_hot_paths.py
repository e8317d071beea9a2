"""The shortcuts of the per-ack and per-step paths agree with the general code they skip."""

from __future__ import annotations

import random

from raft_harness import make_raft, nid

from foundation_p2p.consensus.quorum import committed_index
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.rawnode import RawNode, SoftState
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind


def test_the_simple_configuration_commit_index_is_committed_index() -> None:
    rng = random.Random(2)
    for size in (1, 2, 3, 4, 5, 7):
        r = make_raft(1, range(1, size + 1))
        r.become_candidate()
        r.become_leader()
        r.log.append([Entry(r.term, r.log.last_index() + 1 + i, EntryKind.NORMAL, b"x")
                      for i in range(40)])
        last = r.log.last_index()
        for _ in range(30):
            matches = {n: rng.randrange(last + 1) for n in r.prs}
            for n, pr in r.prs.items():
                pr.match = matches[n]
            expected = committed_index(r.conf, matches)
            before = r.log.committed
            r._maybe_commit()
            # the log commits the quorum's index (never backwards, only in this term)
            if expected > before and r.log.term_or_zero(expected) == r.term:
                assert r.log.committed == expected
            else:
                assert r.log.committed == before


def test_a_joint_configuration_still_takes_the_general_path() -> None:
    r = make_raft(1, (1, 2, 3))
    r.conf = ConfState(voters=frozenset({nid(1), nid(2), nid(3)}),
                       voters_outgoing=frozenset({nid(1), nid(4), nid(5)}))
    r._rebuild_progress()
    r.become_candidate()
    r.become_leader()
    r.log.append([Entry(r.term, r.log.last_index() + 1, EntryKind.NORMAL, b"x")])
    last = r.log.last_index()
    r.prs[nid(1)].match = last
    r.prs[nid(2)].match = last  # a majority of the incoming half only
    r._maybe_commit()
    assert r.log.committed < last
    r.prs[nid(4)].match = last  # now of both halves
    r._maybe_commit()
    assert r.log.committed == last


def test_has_ready_sees_every_hard_and_soft_state_change() -> None:
    node = RawNode.__new__(RawNode)
    r = make_raft(1, (1, 2, 3))
    node.raft = r
    node._outstanding = None
    node._applying_snapshot = None
    node._prev_hard = r.hard_state()
    node._prev_soft = SoftState(r.leader, r.role)
    r.msgs = []
    assert not node.has_ready()
    for change in ("term", "vote", "leader", "role"):
        saved = (r.term, r.vote, r.leader, r.role)
        if change == "term":
            r.term += 1
        elif change == "vote":
            r.vote = nid(2)
        elif change == "leader":
            r.leader = nid(3)
        else:
            r.role = StateRole.PRE_CANDIDATE
        assert node.has_ready(), change
        assert (r.hard_state() != node._prev_hard
                or SoftState(r.leader, r.role) != node._prev_soft)
        r.term, r.vote, r.leader, r.role = saved
        assert not node.has_ready()
