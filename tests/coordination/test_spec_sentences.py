"""Sentences of spec/coordination.md, one test each (etcd raft_paper_test style)."""

from __future__ import annotations

import random

from coord_helpers import AG, IDS, Log, aid, close_cmd, commit_cmd, final_cmd, open_cmd, reveal_cmd

from foundation_p2p.coordination.auction import AuctionResult
from foundation_p2p.coordination.commitments import SealedBid, commitment_hash, seal_bid
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.wire import CloseVote, Propose, encode_command
from foundation_p2p.wire import cbor


def test_the_bidder_id_prevents_another_bidder_from_opening_a_copied_commitment() -> None:
    """Section 2: "the bidder id prevents another bidder from copying it and opening it as
    theirs"."""
    log = Log()
    a = aid(1)
    log.run(open_cmd(a))
    rng = random.Random(1)
    victim, victim_reveal = seal_bid(IDS[0], AG[0], a, 70, rng.randbytes)
    log.run(commit_cmd(victim))
    # the copier's node signs the victim's commitment with its own key, for its own agent
    copier = IDS[1]
    from foundation_p2p.coordination.commitments import commit_signed_bytes

    sig = copier.sign(commit_signed_bytes(a, AG[1], copier.node_id, victim.commitment))
    copy = SealedBid(a, AG[1], copier.node_id, victim.commitment, sig)
    assert log.run(commit_cmd(copy))[0] == 0
    log.run(close_cmd(a))
    log.run(reveal_cmd(victim_reveal))
    from foundation_p2p.coordination.commitments import Reveal

    stolen = Reveal(a, AG[1], victim_reveal.amount, victim_reveal.nonce)
    assert log.run(reveal_cmd(stolen))[1] == "mismatch"
    res = AuctionResult.from_wire(log.run(final_cmd(a))[1])
    assert res.winners == ((AG[0], 70),) and res.mismatched == (AG[1],)


def test_no_command_before_a_reveal_carries_an_amount() -> None:
    """Section 3: "a commit only the commitment"."""
    bid, reveal = seal_bid(IDS[0], AG[0], aid(1), 123456789, random.Random(2).randbytes)
    fields = cbor.decode(commit_cmd(bid))
    assert [type(f) for f in fields[1:]] == [bytes] * 5
    assert (123456789).to_bytes(4, "big") not in commit_cmd(bid)
    assert bid.commitment == commitment_hash(aid(1), AG[0], 123456789, reveal.nonce)


def test_the_deadline_passes_with_any_entry_after_it() -> None:
    """Section 6: "with the first entry, of any kind, whose index is greater than
    proposed_at + deadline"."""
    from coord_helpers import voters

    m = CoordinationMachine()
    pid = aid(9)
    m.apply(1, encode_command(Propose(pid, "s", 1, 0, voters([0, 1]), 2)))  # type: ignore[arg-type]
    m.apply(2, open_cmd(aid(1)))
    m.apply(3, open_cmd(aid(2)))
    assert m.votes.outcome(pid) is None
    m.apply(4, open_cmd(aid(3)))  # an auction entry still closes the proposal
    out = m.votes.outcome(pid)
    assert out is not None and out.status == "timeout" and out.decided_at == 3
    dup = cbor.decode(m.apply(5, encode_command(CloseVote(pid))))
    assert dup[0] == 1 and dup[1] == out.to_wire()


def test_a_finalize_retry_repeats_the_result() -> None:
    """Section 5.1: "in phase done it is a duplicate repeating the result"."""
    log = Log()
    a = aid(1)
    log.run(open_cmd(a))
    log.run(close_cmd(a))
    first = log.run(final_cmd(a))
    assert log.run(final_cmd(a)) == [1, first[1]]
