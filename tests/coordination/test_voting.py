"""VoteMachine: every rule, early decisions, deadlines, typed errors, signatures, retries."""

from __future__ import annotations

import pytest
from coord_helpers import AG, IDS, aid, bind_agents, voters

from foundation_p2p.coordination.commitments import sign_vote
from foundation_p2p.coordination.voting import (
    ConsensusTimeout,
    QuorumNotMet,
    VoteMachine,
    VoteOutcome,
)
from foundation_p2p.coordination.wire import (
    ABSTAIN,
    MAJORITY,
    NO,
    QUORUM,
    SUPERMAJORITY,
    UNANIMOUS,
    WEIGHTED,
    YES,
    CastVote,
    CloseVote,
    Propose,
    Voter,
    encode_command,
)
from foundation_p2p.errors import WireError
from foundation_p2p.wire import cbor

P = aid(7)


class Votes:
    def __init__(self, rule: int, n: int = 5, quorum: int = 0, deadline: int = 100,
                 weights: list[int] | None = None) -> None:
        self.m = VoteMachine()
        bind_agents(self.m.bindings)
        self.index = 0
        eligible = voters(list(range(n)), weights)
        assert all(isinstance(v, Voter) for v in eligible)
        self.out = self.run(encode_command(
            Propose(P, "deploy v2", rule, quorum, eligible, deadline)))  # type: ignore[arg-type]
        assert self.out[0] == 0

    def run(self, command: bytes) -> list[object]:
        self.index += 1
        out = cbor.decode(self.m.apply(self.index, command))
        assert isinstance(out, list)
        return out

    def vote(self, i: int, choice: int, pid: bytes = P) -> list[object]:
        sig = sign_vote(IDS[i], AG[i], pid, choice)
        return self.run(encode_command(CastVote(pid, AG[i], IDS[i].node_id, choice, sig)))

    def close(self) -> list[object]:
        return self.run(encode_command(CloseVote(P)))


def test_majority_accepts_when_more_than_half_say_yes() -> None:
    v = Votes(MAJORITY)
    assert v.vote(0, YES)[1] is None and v.vote(1, YES)[1] is None
    out = v.vote(2, YES)
    assert VoteOutcome.from_wire(out[1]).status == "accepted"
    assert v.m.decision(P) is True


def test_majority_rejects_once_yes_can_no_longer_win() -> None:
    v = Votes(MAJORITY, n=4)
    v.vote(0, NO)
    assert v.m.decision(P) is None
    v.vote(1, ABSTAIN)  # 2 of 4 not yes: at most 2 yes, which is not > 2
    assert v.m.decision(P) is False


def test_supermajority_needs_two_thirds() -> None:
    v = Votes(SUPERMAJORITY, n=6)
    for i in range(3):
        v.vote(i, YES)
    assert v.m.decision(P) is None  # 3 of 6 < 2/3
    v.vote(3, YES)
    assert v.m.decision(P) is True
    w = Votes(SUPERMAJORITY, n=6)
    w.vote(0, NO)
    w.vote(1, NO)
    assert w.m.decision(P) is None  # 4 yes still possible: 12 >= 12
    w.vote(2, NO)
    assert w.m.decision(P) is False


def test_unanimous_needs_everyone_and_fails_at_the_first_no() -> None:
    v = Votes(UNANIMOUS, n=3)
    v.vote(0, YES)
    v.vote(1, YES)
    assert v.m.decision(P) is None
    v.vote(2, YES)
    assert v.m.decision(P) is True
    w = Votes(UNANIMOUS, n=3)
    w.vote(0, YES)
    w.vote(1, ABSTAIN)
    assert w.m.decision(P) is False


def test_weighted_counts_weights() -> None:
    v = Votes(WEIGHTED, n=3, weights=[5, 1, 1])
    heavy = max(range(3), key=lambda i: {IDS[j].node_id: w for j, w in
                                         zip(range(3), [5, 1, 1], strict=True)}[IDS[i].node_id])
    v.vote(heavy, YES)
    out = v.m.outcome(P)
    assert out is not None and out.status == "accepted" and out.yes == 5


def test_quorum_decides_among_the_votes_cast_once_n_voted() -> None:
    v = Votes(QUORUM, n=5, quorum=3)
    v.vote(0, YES)
    v.vote(1, YES)
    assert v.m.decision(P) is None
    v.vote(2, NO)
    assert v.m.decision(P) is None  # 2-1 with two votes missing could turn
    out = v.close()
    assert VoteOutcome.from_wire(out[1]).status == "accepted"


def test_quorum_not_met_is_a_typed_error() -> None:
    v = Votes(QUORUM, n=5, quorum=3)
    v.vote(0, YES)
    v.close()
    with pytest.raises(QuorumNotMet) as err:
        v.m.decision(P)
    assert err.value.quorum == 3 and err.value.outcome.voters == 1


def test_the_deadline_times_out_an_undecided_proposal() -> None:
    v = Votes(MAJORITY, n=5, deadline=3)
    v.vote(0, YES)  # index 2
    v.vote(1, YES)  # index 3
    v.vote(4, NO)   # index 4 = the deadline (1 + 3): still counts
    assert v.m.decision(P) is None
    out = v.vote(2, YES)  # index 5: after the deadline
    assert out[1] == "late"
    with pytest.raises(ConsensusTimeout) as err:
        v.m.decision(P)
    assert err.value.outcome.yes == 2 and err.value.outcome.decided_at == 4


def test_any_later_entry_closes_an_expired_proposal() -> None:
    v = Votes(MAJORITY, n=3, deadline=1)
    v.run(b"\x80")  # index 2 = the deadline
    assert v.m.outcome(P) is None
    v.run(b"\x80")  # index 3: an unrelated (malformed) entry after it
    assert v.m.outcome(P) is not None
    with pytest.raises(ConsensusTimeout):
        v.m.decision(P)


def test_votes_after_a_decision_are_refused_but_retries_are_duplicates() -> None:
    v = Votes(MAJORITY, n=3)
    v.vote(0, YES)
    v.vote(1, YES)
    assert v.m.decision(P) is True
    assert v.vote(1, YES)[0] == 1
    assert v.vote(2, NO)[1] == "closed"


def test_a_changed_vote_is_refused() -> None:
    v = Votes(MAJORITY, n=5)
    v.vote(0, YES)
    assert v.vote(0, NO)[1] == "conflict"
    assert v.m.proposals[P].votes[IDS[0].node_id].choice == YES


def test_forged_and_replayed_votes_are_refused() -> None:
    v = Votes(MAJORITY, n=3)
    sig = sign_vote(IDS[0], AG[0], aid(8), YES)  # signed for another proposal
    out = v.run(encode_command(CastVote(P, AG[0], IDS[0].node_id, YES, sig)))
    assert out[1] == "bad_signature"
    sig = sign_vote(IDS[0], AG[0], P, NO)  # signed no, claimed yes
    out = v.run(encode_command(CastVote(P, AG[0], IDS[0].node_id, YES, sig)))
    assert out[1] == "bad_signature"
    assert v.vote(9, YES)[1] == "not_eligible"
    assert v.m.proposals[P].votes == {}


def test_snapshot_restore_midway_gives_the_same_outcome() -> None:
    v = Votes(MAJORITY, n=5, deadline=4)
    v.vote(0, YES)
    w = VoteMachine()
    bind_agents(w.bindings)  # a standalone machine's snapshot holds no bindings
    w.restore(v.m.snapshot())
    assert w.snapshot() == v.m.snapshot()
    v.vote(1, YES)
    sig = sign_vote(IDS[1], AG[1], P, YES)
    w.apply(3, encode_command(CastVote(P, AG[1], IDS[1].node_id, YES, sig)))
    for m in (v.m, w):
        m.apply(10, b"\x80")
    assert v.m.snapshot() == w.snapshot()
    assert v.m.outcome(P) == w.outcome(P) and w.outcome(P) is not None


def test_the_deadline_heap_stays_bounded_when_proposals_decide_early() -> None:
    m = VoteMachine(max_active=4, max_results=8)
    bind_agents(m.bindings)
    one = voters([0])
    index = 0
    for n in range(200):
        pid = aid(1000 + n)
        index += 1
        m.apply(index, encode_command(
            Propose(pid, "x", MAJORITY, 0, one, 10**9)))  # type: ignore[arg-type]
        index += 1
        sig = sign_vote(IDS[0], AG[0], pid, YES)
        vote = CastVote(pid, AG[0], IDS[0].node_id, YES, sig)
        out = cbor.decode(m.apply(index, encode_command(vote)))
        assert out[0] == 0 and VoteOutcome.from_wire(out[1]).status == "accepted"
        assert len(m._deadlines) <= 2 * 4 + 16
    assert len(m.proposals) == 8 and m.counters["coordination.vote.results_evicted"] == 192


def test_a_bad_snapshot_leaves_the_state_unchanged() -> None:
    v = Votes(MAJORITY, n=3)
    v.vote(0, YES)
    before = v.m.snapshot()
    for bad in (b"", before[:-1], before + b"\x00", cbor.encode([1, 2, 3, [], [b"x"]])):
        with pytest.raises(WireError):
            v.m.restore(bad)
        assert v.m.snapshot() == before
