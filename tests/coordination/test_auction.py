"""AuctionMachine: every rule, ties, reserve, non-reveal, forgery, replay, lateness, retries."""

from __future__ import annotations

import random

import pytest
from coord_helpers import (
    AG,
    IDS,
    Log,
    aid,
    close_cmd,
    commit_cmd,
    final_cmd,
    open_cmd,
    reveal_cmd,
    run_auction,
)

from foundation_p2p.coordination.auction import AuctionMachine, AuctionResult
from foundation_p2p.coordination.commitments import (
    Reveal,
    SealedBid,
    commitment_hash,
    seal_bid,
)
from foundation_p2p.coordination.wire import FIRST_PRICE, MULTI_UNIT, SECOND_PRICE
from foundation_p2p.errors import ConfigError


def result(out: list[object]) -> AuctionResult:
    return AuctionResult.from_wire(out[1])


def nid(i: int) -> bytes:
    return IDS[i].node_id


def test_first_price_winner_pays_its_bid() -> None:
    _, out = run_auction({0: 10, 1: 30, 2: 20}, rule=FIRST_PRICE)
    r = result(out)
    assert r.winners == ((nid(1), 30),) and r.price == 30


def test_second_price_winner_pays_the_second_highest_bid() -> None:
    _, out = run_auction({0: 10, 1: 30, 2: 20}, rule=SECOND_PRICE)
    r = result(out)
    assert r.winners == ((nid(1), 30),) and r.price == 20


def test_second_price_pays_the_reserve_when_it_is_above_the_second_bid() -> None:
    r = result(run_auction({0: 10, 1: 30}, rule=SECOND_PRICE, reserve=15)[1])
    assert r.winners == ((nid(1), 30),) and r.price == 15
    assert r.below_reserve == (nid(0),)


def test_bids_below_the_reserve_never_win() -> None:
    for rule in (FIRST_PRICE, SECOND_PRICE):
        r = result(run_auction({0: 5, 1: 9}, rule=rule, reserve=10)[1])
        assert r.winners == () and r.price is None
        assert r.below_reserve == tuple(sorted([nid(0), nid(1)]))


def test_a_bid_equal_to_the_reserve_wins_at_the_reserve() -> None:
    r = result(run_auction({0: 10}, rule=FIRST_PRICE, reserve=10)[1])
    assert r.winners == ((nid(0), 10),) and r.price == 10


def test_single_bidder_in_second_price_pays_the_reserve() -> None:
    r = result(run_auction({3: 50}, rule=SECOND_PRICE, reserve=7)[1])
    assert r.winners == ((nid(3), 50),) and r.price == 7


def test_no_bidders_gives_no_winner() -> None:
    for rule, units in ((FIRST_PRICE, 1), (SECOND_PRICE, 1), (MULTI_UNIT, 3)):
        r = result(run_auction({}, rule=rule, units=units)[1])
        assert r.winners == () and r.price is None and r.unrevealed == ()


def test_multi_unit_k_highest_pay_the_k_plus_1th_price() -> None:
    bids = {0: 10, 1: 50, 2: 40, 3: 30, 4: 20}
    r = result(run_auction(bids, rule=MULTI_UNIT, units=3)[1])
    assert r.winners == ((nid(1), 50), (nid(2), 40), (nid(3), 30)) and r.price == 20


def test_multi_unit_with_fewer_bids_than_units_pays_the_reserve() -> None:
    r = result(run_auction({0: 10, 1: 50}, rule=MULTI_UNIT, units=3, reserve=4)[1])
    assert {w[0] for w in r.winners} == {nid(0), nid(1)} and r.price == 4


@pytest.mark.parametrize("rule", [FIRST_PRICE, SECOND_PRICE])
def test_ties_break_by_the_lower_commitment_hash(rule: int) -> None:
    for seed in range(5):
        log, out = run_auction({0: 25, 1: 25, 2: 10}, rule=rule, seed=seed)
        a = log.m.auctions[aid(1)]
        lowest = min((a.commits[nid(i)].commitment, nid(i)) for i in (0, 1))[1]
        r = result(out)
        assert r.winners == ((lowest, 25),)
        assert r.price == 25  # the tied bid is the second-highest too


def test_multi_unit_tie_at_the_boundary_breaks_by_commitment() -> None:
    log, out = run_auction({0: 30, 1: 20, 2: 20, 3: 20}, rule=MULTI_UNIT, units=2)
    a = log.m.auctions[aid(1)]
    second = min((a.commits[nid(i)].commitment, nid(i)) for i in (1, 2, 3))[1]
    r = result(out)
    assert r.winners == ((nid(0), 30), (second, 20)) and r.price == 20


def test_an_unrevealed_bid_counts_as_no_bid_and_is_reported() -> None:
    r = result(run_auction({0: 99, 1: 30, 2: 20}, reveal={1, 2})[1])
    assert r.winners == ((nid(1), 30),) and r.price == 20 and r.unrevealed == (nid(0),)


def test_a_mismatched_reveal_counts_as_no_bid_and_is_reported() -> None:
    log = Log()
    a = aid(1)
    rng = random.Random(1)
    log.run(open_cmd(a))
    bid0, r0 = seal_bid(IDS[0], AG[0], a, 99, rng.randbytes)
    bid1, r1 = seal_bid(IDS[1], AG[1], a, 30, rng.randbytes)
    log.run(commit_cmd(bid0))
    log.run(commit_cmd(bid1))
    log.run(close_cmd(a))
    out = log.run(reveal_cmd(Reveal(a, r0.bidder, 100, r0.nonce)))  # claims a higher amount
    assert out[0] == 2 and out[1] == "mismatch"
    assert log.run(reveal_cmd(r1))[0] == 0
    res = result(log.run(final_cmd(a)))
    assert res.winners == ((nid(1), 30),) and res.mismatched == (nid(0),) and res.price == 0


def test_a_wrong_reveal_by_someone_else_does_not_cancel_the_true_one() -> None:
    log = Log()
    a = aid(1)
    log.run(open_cmd(a))
    bid, r = seal_bid(IDS[0], AG[0], a, 40, random.Random(2).randbytes)
    log.run(commit_cmd(bid))
    log.run(close_cmd(a))
    assert log.run(reveal_cmd(Reveal(a, r.bidder, 1, bytes(16))))[1] == "mismatch"
    assert log.run(reveal_cmd(r))[0] == 0
    res = result(log.run(final_cmd(a)))
    assert res.winners == ((nid(0), 40),) and res.mismatched == ()


def test_a_forged_signature_is_refused() -> None:
    log = Log()
    a = aid(1)
    log.run(open_cmd(a))
    bid, _ = seal_bid(IDS[0], AG[0], a, 40, random.Random(3).randbytes)
    forged = SealedBid(a, bid.bidder, bid.node_id, bid.commitment,
                       bytes([bid.signature[0] ^ 1]) + bid.signature[1:])
    assert log.run(commit_cmd(forged))[1] == "bad_signature"
    # node 1 signs, properly, a bid for agent 0 (hosted by node 0), naming itself: not_host
    other, _ = seal_bid(IDS[1], AG[0], a, 40, random.Random(3).randbytes)
    assert log.run(commit_cmd(other))[1] == "not_host"
    # ... or naming node 0 (the host), with its own signature: bad_signature
    posing = SealedBid(a, bid.bidder, IDS[0].node_id, other.commitment, other.signature)
    assert log.run(commit_cmd(posing))[1] == "bad_signature"
    assert log.m.auctions[a].commits == {}
    assert log.m.counters["coordination.auction.refused.bad_signature"] == 2
    assert log.m.counters["coordination.auction.refused.not_host"] == 1


def test_a_commitment_replayed_from_another_auction_is_refused() -> None:
    log = Log()
    a, b = aid(1), aid(2)
    log.run(open_cmd(a))
    log.run(open_cmd(b))
    bid, reveal = seal_bid(IDS[0], AG[0], a, 40, random.Random(4).randbytes)
    assert log.run(commit_cmd(bid))[0] == 0
    replay = SealedBid(b, bid.bidder, bid.node_id, bid.commitment, bid.signature)
    assert log.run(commit_cmd(replay))[1] == "bad_signature"
    # and the reveal cannot open it in the other auction even if it got in
    assert not Reveal(b, reveal.bidder, reveal.amount, reveal.nonce).matches(bid.commitment)


def test_a_commit_after_close_is_refused_and_reported_late() -> None:
    log = Log()
    a = aid(1)
    rng = random.Random(5)
    log.run(open_cmd(a))
    bid0, r0 = seal_bid(IDS[0], AG[0], a, 10, rng.randbytes)
    log.run(commit_cmd(bid0))
    log.run(close_cmd(a))
    late, _ = seal_bid(IDS[1], AG[1], a, 500, rng.randbytes)
    out = log.run(commit_cmd(late))
    assert out[0] == 2 and out[1] == "late"
    log.run(reveal_cmd(r0))
    res = result(log.run(final_cmd(a)))
    assert res.winners == ((nid(0), 10),) and res.late == (nid(1),)


def test_retried_commands_are_deduplicated() -> None:
    log = Log()
    a = aid(1)
    rng = random.Random(6)
    assert log.run(open_cmd(a))[0] == 0
    assert log.run(open_cmd(a))[0] == 1
    assert log.run(open_cmd(a, rule=FIRST_PRICE))[1] == "exists"
    bid, r = seal_bid(IDS[0], AG[0], a, 10, rng.randbytes)
    assert log.run(commit_cmd(bid))[0] == 0
    assert log.run(commit_cmd(bid))[0] == 1
    other, _ = seal_bid(IDS[0], AG[0], a, 11, rng.randbytes)
    assert log.run(commit_cmd(other))[1] == "conflict"
    assert log.run(close_cmd(a))[0] == 0
    assert log.run(close_cmd(a))[0] == 1
    # the same commit retried after the close is a duplicate, not a late bid
    assert log.run(commit_cmd(bid))[0] == 1
    assert log.run(reveal_cmd(r))[0] == 0
    assert log.run(reveal_cmd(r))[0] == 1
    first = log.run(final_cmd(a))
    again = log.run(final_cmd(a))
    assert first[0] == 0 and again[0] == 1 and first[1] == again[1]
    assert len(log.m.auctions[a].commits) == 1
    assert log.m.auctions[a].late == set()
    assert log.run(commit_cmd(bid))[0] == 1  # and after the finalize too


def test_phase_order_is_enforced() -> None:
    log = Log()
    a = aid(1)
    rng = random.Random(7)
    bid, r = seal_bid(IDS[0], AG[0], a, 10, rng.randbytes)
    assert log.run(commit_cmd(bid))[1] == "unknown_auction"
    log.run(open_cmd(a))
    log.run(commit_cmd(bid))
    assert log.run(reveal_cmd(r))[1] == "wrong_phase"
    assert log.run(final_cmd(a))[1] == "wrong_phase"
    log.run(close_cmd(a))
    log.run(final_cmd(a))
    assert log.run(reveal_cmd(r))[1] == "late"
    _, r2 = seal_bid(IDS[1], AG[1], a, 10, rng.randbytes)
    assert log.run(reveal_cmd(r2))[1] == "late"


def test_reveal_without_commitment_is_refused() -> None:
    log = Log()
    a = aid(1)
    log.run(open_cmd(a))
    log.run(close_cmd(a))
    _, r = seal_bid(IDS[0], AG[0], a, 10, random.Random(8).randbytes)
    assert log.run(reveal_cmd(r))[1] == "no_commitment"


def test_no_amount_appears_in_any_command_before_its_reveal() -> None:
    amounts = {0: 0x5EC2E7_01, 1: 0x5EC2E7_02}
    log, _ = run_auction(amounts)
    for entry, cmd in enumerate(log.entries):
        for amount in amounts.values():
            needle = amount.to_bytes(4, "big")
            if needle in cmd:
                assert cmd[1] == 4, f"amount in entry {entry} which is not a reveal"
    assert sum(amounts[0].to_bytes(4, "big") in c for c in log.entries) == 1


def test_garbage_is_a_refusal_not_an_exception() -> None:
    m = AuctionMachine()
    for i, junk in enumerate([b"", b"\xff", b"\x80", b"\x82\x01\x00", b"\x81\x18\x63"], 1):
        out = m.apply(i, junk)
        assert out[1] == 2  # [2, code, message]


def test_bounds_refuse_and_count() -> None:
    log = Log(AuctionMachine(max_active=2, max_bidders=1, max_results=1))
    rng = random.Random(9)
    log.run(open_cmd(aid(1)))
    log.run(open_cmd(aid(2)))
    assert log.run(open_cmd(aid(3)))[1] == "full"
    b0, _ = seal_bid(IDS[0], AG[0], aid(1), 1, rng.randbytes)
    b1, _ = seal_bid(IDS[1], AG[1], aid(1), 1, rng.randbytes)
    log.run(commit_cmd(b0))
    assert log.run(commit_cmd(b1))[1] == "full"
    for a in (aid(1), aid(2)):
        log.run(close_cmd(a))
        log.run(final_cmd(a))
    assert log.m.result(aid(1)) is None and log.m.result(aid(2)) is not None
    assert log.m.counters["coordination.auction.results_evicted"] == 1
    assert log.m.counters["coordination.auction.refused.full"] == 2


def test_commitment_layout_and_nonce_bounds() -> None:
    c = commitment_hash(aid(1), nid(0), 7, bytes(16))
    assert len(c) == 32 and c != commitment_hash(aid(2), nid(0), 7, bytes(16))
    assert c != commitment_hash(aid(1), nid(0), 8, bytes(16))
    for bad in (bytes(15), bytes(65)):
        with pytest.raises(ConfigError):
            commitment_hash(aid(1), nid(0), 7, bad)
    with pytest.raises(ConfigError):
        commitment_hash(aid(1), nid(0), -1, bytes(16))


def test_a_bad_snapshot_leaves_the_state_unchanged() -> None:
    from foundation_p2p.errors import WireError
    from foundation_p2p.wire import cbor

    log, _ = run_auction({0: 10, 1: 20})
    before = log.m.snapshot()
    value = cbor.decode(before)
    forged = cbor.encode([1, value[1], 0, [[*value[3][0][:4], [value[3][0][4][0]] * 2,
                                            *value[3][0][5:]]]])  # a reveal listed twice
    for bad in (b"", before[:-1], cbor.encode([2, 0, 0, []]), forged):
        with pytest.raises(WireError):
            log.m.restore(bad) if bad != forged else _restore_strict(log.m, bad)
        assert log.m.snapshot() == before
    fresh = AuctionMachine()
    fresh.restore(before)
    assert fresh.snapshot() == before and fresh.result(aid(1)) == log.m.result(aid(1))


def _restore_strict(m: AuctionMachine, data: bytes) -> None:
    m.restore(data)
    raise AssertionError("restored a snapshot listing one reveal twice")
