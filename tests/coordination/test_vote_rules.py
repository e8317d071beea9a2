"""Vote rules against brute force: an early decision holds for every way the missing votes
could go, and a timeout happens only when the missing votes could still change the result."""

from __future__ import annotations

import itertools

from coord_helpers import AG, IDS, voters
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.coordination.voting import Proposal, decide
from foundation_p2p.coordination.wire import QUORUM, CastVote, Propose, Voter

N = 4


def proposal(rule: int, quorum: int, weights: list[int], votes: dict[int, int]) -> Proposal:
    eligible = voters(list(range(N)), weights)
    assert all(isinstance(v, Voter) for v in eligible)
    p = Proposal(Propose(b"p" * 16, "", rule, quorum, eligible, 5), 1)  # type: ignore[arg-type]
    for i, c in votes.items():
        p.votes[IDS[i].node_id] = CastVote(b"p" * 16, AG[i], IDS[i].node_id, c, bytes(64))
    return p


def completions(votes: dict[int, int]) -> list[dict[int, int]]:
    missing = [i for i in range(N) if i not in votes]
    return [votes | dict(zip(missing, choice, strict=True))
            for choice in itertools.product((0, 1, 2), repeat=len(missing))]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.integers(1, N), st.lists(st.integers(1, 4), min_size=N, max_size=N),
       st.dictionaries(st.integers(0, N - 1), st.integers(0, 2), max_size=N))
def test_early_decisions_are_final_and_timeouts_are_real(
    rule: int, q: int, weights: list[int], votes: dict[int, int]
) -> None:
    quorum = q if rule == QUORUM else 0
    early = decide(proposal(rule, quorum, weights, votes), 9, final=False)
    full = {decide(proposal(rule, quorum, weights, c), 9, final=False).status  # type: ignore[union-attr]
            for c in completions(votes)}
    if early is not None:
        assert full == {early.status}
    elif rule != QUORUM:
        assert len(full) > 1  # undecided only if the missing votes matter
        out = decide(proposal(rule, quorum, weights, votes), 9, final=True)
        assert out is not None and out.status == "timeout"
    if len(votes) == N:
        assert early is not None
