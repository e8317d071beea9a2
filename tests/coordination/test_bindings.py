"""Agent bindings (spec/coordination.md 2.1): only the node an agent is bound to at a
commit's or vote's log position can sign for it; binds are ordered by epoch, bounded,
snapshotted with the machine."""

from __future__ import annotations

import random

import pytest
from coord_helpers import (
    AG,
    IDS,
    aid,
    bind,
    bind_cmd,
    close_cmd,
    commit_cmd,
    final_cmd,
    open_cmd,
    reveal_cmd,
    voters,
)

from foundation_p2p.coordination.auction import AuctionResult
from foundation_p2p.coordination.bindings import BindingTable
from foundation_p2p.coordination.commitments import SealedBid, seal_bid, sign_vote
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.wire import CastVote, Propose, encode_command
from foundation_p2p.errors import WireError
from foundation_p2p.wire import cbor


class Log:
    """A ``CoordinationMachine`` fed entries 1, 2, ...; ``run`` gives the decoded result
    and ``code`` the status (0, 1) or the refusal code."""

    def __init__(self) -> None:
        self.m = CoordinationMachine()
        self.index = 0

    def run(self, command: bytes) -> list[object]:
        self.index += 1
        out = cbor.decode(self.m.apply(self.index, command))
        assert isinstance(out, list)
        return out

    def code(self, command: bytes) -> object:
        out = self.run(command)
        return out[0] if out[0] in (0, 1) else out[1]


def commit(node: int, agent: int, a: bytes, amount: int, seed: int = 0) -> tuple[bytes, object]:
    bid, reveal = seal_bid(IDS[node], AG[agent], a, amount, random.Random(seed).randbytes)
    return commit_cmd(bid), reveal


def vote(node: int, agent: int, pid: bytes, choice: int = 1) -> bytes:
    return encode_command(CastVote(pid, AG[agent], IDS[node].node_id, choice,
                                   sign_vote(IDS[node], AG[agent], pid, choice)))


def test_a_bind_is_checked_ordered_by_epoch_and_deduplicated() -> None:
    t = BindingTable(max_agents=2)
    decode = cbor.decode
    wrong_id = bind(0, 0)
    wrong_id = type(wrong_id)(wrong_id.agent_id, IDS[1].node_id, wrong_id.public_key,
                              wrong_id.epoch, wrong_id.signature)
    assert decode(t.apply(1, wrong_id))[1] == "bad_key"
    good = bind(0, 0)
    forged = type(good)(good.agent_id, good.node_id, good.public_key, 2, good.signature)
    assert decode(t.apply(2, forged))[1] == "bad_signature", "the epoch is signed"
    assert decode(t.apply(3, good)) == [0, 1]
    assert decode(t.apply(4, good)) == [1, 1], "a retried bind"
    assert decode(t.apply(5, bind(0, 1, 1)))[1] == "stale", "same epoch, another node"
    assert decode(t.apply(6, bind(0, 1, 5))) == [0, 5]
    assert t.epoch(AG[0]) == 5 and t.get(AG[0]).node_id == IDS[1].node_id  # type: ignore[union-attr]
    assert t.get(AG[0]).bound_at == 6  # type: ignore[union-attr]
    assert decode(t.apply(7, bind(0, 0, 1)))[1] == "stale", "an old bind replayed"
    assert t.get(AG[0]).node_id == IDS[1].node_id  # type: ignore[union-attr]
    assert decode(t.apply(8, bind(1, 1)))[0] == 0
    assert decode(t.apply(9, bind(2, 2)))[1] == "full"
    assert decode(t.apply(10, bind(1, 3, 2)))[0] == 0, "a bound agent can always move"
    assert t.counters["coordination.binding.moved"] == 2
    for code in ("bad_key", "bad_signature", "stale", "full"):
        assert t.counters[f"coordination.binding.refused.{code}"] >= 1
    assert t.epoch(AG[7]) == 0 and t.get(AG[7]) is None


def test_a_node_cannot_bid_for_an_agent_bound_to_another_node() -> None:
    log = Log()
    a = aid(1)
    log.run(bind_cmd(0, 0))
    log.run(open_cmd(a))
    forged, _ = commit(1, 0, a, 99)  # node 1 signs, properly, a bid of agent 0 as its host
    assert log.code(forged) == "not_host"
    unbound, _ = commit(5, 5, a, 99)  # agent 5 was never bound
    assert log.code(unbound) == "not_bound"
    # node 1 names node 0 as the signer: the bound key does not verify its signature
    b1, _ = seal_bid(IDS[1], AG[0], a, 99, random.Random(1).randbytes)
    posing = SealedBid(a, AG[0], IDS[0].node_id, b1.commitment, b1.signature)
    assert log.code(commit_cmd(posing)) == "bad_signature"
    # a forged signature
    b0, _ = seal_bid(IDS[0], AG[0], a, 40, random.Random(2).randbytes)
    flipped = SealedBid(a, AG[0], b0.node_id, b0.commitment,
                        b0.signature[:-1] + bytes([b0.signature[-1] ^ 1]))
    assert log.code(commit_cmd(flipped)) == "bad_signature"
    assert log.m.auctions.auctions[a].commits == {}, "no refused commit recorded"
    assert log.code(commit_cmd(b0)) == 0
    c = log.m.auctions.counters
    assert c["coordination.auction.refused.not_host"] == 1
    assert c["coordination.auction.refused.not_bound"] == 1
    assert c["coordination.auction.refused.bad_signature"] == 2


def test_after_a_move_the_old_host_is_refused_and_the_new_one_accepted() -> None:
    log = Log()
    a, b = aid(1), aid(2)
    log.run(bind_cmd(0, 0))
    log.run(open_cmd(a, rule=1))
    log.run(open_cmd(b, rule=1))
    before, reveal_a = commit(0, 0, a, 30, seed=1)
    assert log.code(before) == 0, "taken while agent 0 is bound to node 0"
    assert log.code(bind_cmd(0, 4, 2)) == 0, "agent 0 moves to node 4"
    old_host, _ = commit(0, 0, b, 31, seed=2)
    assert log.code(old_host) == "not_host"
    assert log.code(before) == 1, "the commit taken before the move: a retry is a duplicate"
    new_host, reveal_b = commit(4, 0, b, 32, seed=3)
    assert log.code(new_host) == 0
    # a late commit by a node the agent is not bound to is not even listed as late
    log.run(close_cmd(b))
    late, _ = commit(0, 0, b, 33, seed=4)
    assert log.code(late) == "not_host"
    assert log.m.auctions.auctions[b].late == set()
    log.run(close_cmd(a))
    for r, x in ((reveal_a, a), (reveal_b, b)):
        assert log.code(reveal_cmd(r)) == 0  # type: ignore[arg-type]
        res = AuctionResult.from_wire(log.run(final_cmd(x))[1])
        assert len(res.winners) == 1 and res.winners[0][0] == AG[0]
    # moving back needs a higher epoch: the old bind replayed is stale
    assert log.code(bind_cmd(0, 0, 1)) == "stale"
    assert log.m.bindings.get(AG[0]).node_id == IDS[4].node_id  # type: ignore[union-attr]


def test_a_commitment_replayed_from_another_auction_is_refused_even_by_its_host() -> None:
    log = Log()
    a, b = aid(1), aid(2)
    log.run(bind_cmd(0, 0))
    log.run(open_cmd(a))
    log.run(open_cmd(b))
    bid, _ = seal_bid(IDS[0], AG[0], a, 40, random.Random(4).randbytes)
    assert log.code(commit_cmd(bid)) == 0
    replay = SealedBid(b, bid.bidder, bid.node_id, bid.commitment, bid.signature)
    assert log.code(commit_cmd(replay)) == "bad_signature"


def test_votes_only_from_the_node_the_voter_is_bound_to() -> None:
    log = Log()
    p1, p2 = aid(7), aid(8)
    for i in range(3):
        log.run(bind_cmd(i, i))
    eligible = voters([0, 1, 2])
    log.run(encode_command(Propose(p1, "s", 1, 0, eligible, 100)))  # type: ignore[arg-type]
    log.run(encode_command(Propose(p2, "t", 1, 0, eligible, 100)))  # type: ignore[arg-type]
    assert log.code(vote(1, 0, p1)) == "not_host"
    assert log.code(vote(3, 3, p1)) == "not_eligible"
    assert log.code(vote(0, 0, p1)) == 0
    assert log.code(vote(0, 0, p1)) == 1, "a retry"
    flipped = CastVote(p1, AG[1], IDS[1].node_id, 1,
                       bytes(64))
    assert log.code(encode_command(flipped)) == "bad_signature"
    replayed = CastVote(p2, AG[1], IDS[1].node_id, 1, sign_vote(IDS[1], AG[1], p1, 1))
    assert log.code(encode_command(replayed)) == "bad_signature", "signed for p1"
    assert log.code(bind_cmd(1, 5, 2)) == 0, "agent 1 moves to node 5"
    assert log.code(vote(1, 1, p1)) == "not_host"
    assert log.code(vote(5, 1, p1)) == 0
    out = log.m.votes.outcome(p1)
    assert out is not None and out.status == "accepted" and out.yes == 2
    unbound = Log()
    unbound.run(encode_command(Propose(p1, "s", 1, 0, eligible, 100)))  # type: ignore[arg-type]
    assert unbound.code(vote(0, 0, p1)) == "not_bound"
    assert unbound.m.votes.counters["coordination.vote.refused.not_bound"] == 1


def test_bindings_travel_in_the_snapshot_and_answer_queries() -> None:
    log = Log()
    a = aid(1)
    log.run(bind_cmd(0, 0))
    log.run(bind_cmd(1, 1))
    log.run(bind_cmd(1, 2, 3))
    log.run(open_cmd(a))
    snap = log.m.snapshot()
    other = CoordinationMachine()
    other.restore(snap)
    assert other.snapshot() == snap
    assert other.bindings.bindings == log.m.bindings.bindings
    # the restored replica applies the next commits exactly as the original
    for node, agent in ((1, 1), (2, 1), (0, 0)):
        cmd, _ = commit(node, agent, a, 10 + node)
        log.index += 1
        assert other.apply(log.index, cmd) == log.m.apply(log.index, cmd)
    assert set(other.auctions.auctions[a].commits) == {AG[0], AG[1]}
    q = cbor.encode([8, AG[1]])
    assert cbor.decode(other.query(q)) == [0, [AG[1], IDS[2].node_id, IDS[2].public_key, 3, 3]]
    assert cbor.decode(other.query(cbor.encode([8, AG[9]]))) == [0, None]
    # a binding whose node id is not its key's is refused, and the state kept
    value = cbor.decode(snap)
    value[4][0][1] = IDS[5].node_id
    with pytest.raises(WireError):
        other.restore(cbor.encode(value))
    assert other.bindings.bindings == log.m.bindings.bindings
    # a version 1 snapshot (no bindings) is refused
    with pytest.raises(WireError):
        other.restore(cbor.encode([1, *value[1:4]]))
