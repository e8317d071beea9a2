"""Replicas applying the same command log agree, with snapshot/restore midway (Hypothesis).

Each auction and proposal gets a well-formed script (open, commits, close, reveals —
right, wrong or missing — a late commit, finalize; propose then votes) and the scripts are
interleaved at random with retries, stray reveals and junk, so most entries do something.
"""

from __future__ import annotations

import random

from coord_helpers import (
    AG,
    IDS,
    aid,
    bind_cmd,
    close_cmd,
    commit_cmd,
    final_cmd,
    open_cmd,
    reveal_cmd,
    voters,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.coordination.auction import AuctionResult
from foundation_p2p.coordination.commitments import Reveal, seal_bid, sign_vote
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.wire import CastVote, CloseVote, Propose, encode_command
from foundation_p2p.wire import cbor

AGENTS = 6

bid = st.tuples(st.integers(0, 8), st.sampled_from(["right", "right", "wrong", "none", "late"]))
auction = st.tuples(
    st.integers(1, 3), st.integers(0, 4),
    st.dictionaries(st.integers(0, AGENTS - 1), bid, max_size=AGENTS),
)
proposal = st.tuples(
    st.integers(1, 5), st.integers(1, 40), st.booleans(),
    st.dictionaries(st.integers(0, AGENTS - 1), st.integers(0, 2), max_size=AGENTS),
)


def auction_script(n: int, plan: tuple[int, int, dict[int, tuple[int, str]]],
                   rng: random.Random) -> list[bytes]:
    rule, reserve, bids = plan
    a = aid(n)
    out = [open_cmd(a, rule, reserve, units=2 if rule == 3 else 1)]
    sealed = {i: seal_bid(IDS[i], AG[i], a, amount, rng.randbytes)
              for i, (amount, _) in bids.items()}
    out += [commit_cmd(sealed[i][0]) for i, (_, how) in bids.items() if how != "late"]
    out.append(close_cmd(a))
    for i, (_, how) in bids.items():
        s, r = sealed[i]
        if how == "late":
            out.append(commit_cmd(s))
        elif how == "right":
            out.append(reveal_cmd(r))
        elif how == "wrong":
            out.append(reveal_cmd(Reveal(a, r.bidder, r.amount + 1, r.nonce)))
    out.append(final_cmd(a))
    return out


def vote_script(n: int, plan: tuple[int, int, bool, dict[int, int]]) -> list[bytes]:
    rule, deadline, close, votes = plan
    pid = aid(1000 + n)
    out = [encode_command(Propose(
        pid, "p", rule, 2 if rule == 4 else 0,
        voters(list(range(AGENTS)), [1, 2, 3, 1, 2, 3]), deadline))]  # type: ignore[arg-type]
    out += [encode_command(CastVote(pid, AG[i], IDS[i].node_id, c,
                                    sign_vote(IDS[i], AG[i], pid, c)))
            for i, c in votes.items()]
    if close:
        out.append(encode_command(CloseVote(pid)))
    return out


def interleave(scripts: list[list[bytes]], rng: random.Random) -> list[bytes]:
    log: list[bytes] = []
    pos = [0] * len(scripts)
    while True:
        live = [k for k, s in enumerate(scripts) if pos[k] < len(s)]
        if not live:
            return log
        k = rng.choice(live)
        log.append(scripts[k][pos[k]])
        if rng.random() < 0.1:
            log.append(scripts[k][pos[k]])  # a retried submission
        if rng.random() < 0.05:
            log.append(rng.randbytes(rng.randrange(0, 12)))
        pos[k] += 1


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.lists(auction, max_size=4), st.lists(proposal, max_size=3),
       st.integers(0, 80), st.integers(0, 80))
def test_three_replicas_agree_with_snapshots_midway(
    seed: int, auctions: list[tuple[int, int, dict[int, tuple[int, str]]]],
    proposals: list[tuple[int, int, bool, dict[int, int]]], cut1: int, cut2: int,
) -> None:
    rng = random.Random(seed)
    scripts = [auction_script(n, plan, rng) for n, plan in enumerate(auctions)]
    scripts += [vote_script(n, plan) for n, plan in enumerate(proposals)]
    # the agents are bound to their nodes through the log first (the snapshots carry it)
    log = [bind_cmd(i, i) for i in range(AGENTS)] + interleave(scripts, rng)
    replicas = [CoordinationMachine() for _ in range(3)]
    results: list[list[bytes]] = [[], [], []]
    for index, cmd in enumerate(log, 1):
        for r, (m, cut) in enumerate(zip(replicas, (None, cut1, cut2), strict=True)):
            if cut is not None and index == cut:
                fresh = CoordinationMachine()
                fresh.restore(m.snapshot())
                assert fresh.snapshot() == m.snapshot()
                replicas[r] = m = fresh
            results[r].append(m.apply(index, cmd))
    assert results[0] == results[1] == results[2]
    assert replicas[0].snapshot() == replicas[1].snapshot() == replicas[2].snapshot()
    # every auction was finalized once, with the result its plan implies
    for n, (rule, reserve, bids) in enumerate(auctions):
        res = replicas[0].auctions.result(aid(n))
        assert res is not None
        assert set(res.unrevealed) == {IDS[i].node_id for i, b in bids.items() if b[1] == "none"}
        assert set(res.mismatched) == {IDS[i].node_id for i, b in bids.items() if b[1] == "wrong"}
        assert set(res.late) == {IDS[i].node_id for i, b in bids.items() if b[1] == "late"}
        valid = sorted((b[0] for b in bids.values() if b[1] == "right"), reverse=True)
        eligible = [v for v in valid if v >= reserve]
        k = 2 if rule == 3 else 1
        assert [w[1] for w in res.winners] == eligible[:k]
        if eligible:
            expected = eligible[0] if rule == 1 else (
                eligible[k] if len(eligible) > k else reserve)
            assert res.price == expected
    # auction.deadline: no commit accepted after its auction's commit phase closed
    closed: set[bytes] = set()
    for cmd, res_bytes in zip(log, results[0], strict=True):
        try:
            value = cbor.decode(cmd)
        except Exception:
            continue
        ok = cbor.decode(res_bytes)[0] == 0
        if isinstance(value, list) and value and value[0] == 3 and ok:
            closed.add(value[1])
        if isinstance(value, list) and value and value[0] == 2 and ok:
            assert value[1] not in closed
    for res_bytes in results[0]:
        out = cbor.decode(res_bytes)
        if out[0] == 0 and isinstance(out[1], list) and len(out[1]) == 8:
            AuctionResult.from_wire(out[1])
