"""Receive-side ack tracking (``foundation_p2p.transport.acks``): ranges, replays, timing."""

from __future__ import annotations

import itertools
import random

import pytest

from foundation_p2p.errors import ReplayError
from foundation_p2p.transport.acks import AckTracker


def _receive(t: AckTracker, pns: list[int], now: float = 0.0, eliciting: bool = True) -> None:
    for pn in pns:
        t.check(pn)
        t.on_received(pn, eliciting, now)


def test_in_order_packets_make_one_range() -> None:
    t = AckTracker()
    _receive(t, list(range(100)))
    assert t.ranges() == [(0, 99)]
    assert t.largest == 99


def test_gaps_make_ranges_newest_first_and_filling_a_gap_merges() -> None:
    t = AckTracker()
    _receive(t, [0, 1, 2, 5, 6, 9])
    assert t.ranges() == [(9, 9), (5, 6), (0, 2)]
    _receive(t, [4, 3])
    assert t.ranges() == [(9, 9), (0, 6)]
    _receive(t, [8, 7])
    assert t.ranges() == [(0, 9)]


def test_duplicates_are_refused_and_counted() -> None:
    t = AckTracker()
    _receive(t, [0, 1, 5])
    for pn in (0, 1, 5):
        with pytest.raises(ReplayError):
            t.check(pn)
    t.check(3)  # a gap is still acceptable
    assert t.duplicates == 3


def test_random_arrival_order_yields_exactly_the_received_set() -> None:
    rng = random.Random(7)
    t = AckTracker(max_ranges=10_000)
    pns = rng.sample(range(2000), 1500)
    _receive(t, pns)
    covered = {pn for low, high in t.ranges() for pn in range(low, high + 1)}
    assert covered == set(pns)
    ranges = t.ranges()
    for (low_a, _), (_, high_b) in itertools.pairwise(ranges):
        assert high_b < low_a - 1  # disjoint and not adjacent


def test_range_count_is_bounded_oldest_dropped_and_counted() -> None:
    t = AckTracker(max_ranges=4, max_ranges_sent=4)
    _receive(t, [0, 2, 4, 6, 8, 10])
    assert len(t.ranges()) == 4
    assert t.ranges_dropped == 2
    assert t.ranges()[-1] == (4, 4)
    # numbers at or below the forgotten ranges now count as received
    with pytest.raises(ReplayError):
        t.check(1)
    with pytest.raises(ReplayError):
        t.check(2)
    t.check(5)


def test_ack_reports_at_most_max_ranges_sent_newest_first() -> None:
    t = AckTracker(max_ranges=100, max_ranges_sent=3)
    _receive(t, [0, 2, 4, 6, 8])
    ack = t.build_ack(0.0)
    assert ack is not None
    assert ack.ranges == [(8, 8), (6, 6), (4, 4)]


def test_every_second_ack_eliciting_packet_is_acked_at_once() -> None:
    t = AckTracker(max_ack_delay=0.025, threshold=2)
    _receive(t, [0], now=1.0)
    assert t.ack_deadline() == pytest.approx(1.025)
    assert not t.ack_wanted(1.01)
    _receive(t, [1], now=1.01)
    assert t.ack_wanted(1.01)
    assert t.build_ack(1.01) is not None
    assert t.ack_wanted(1.01)  # building changes nothing
    t.on_ack_sent()
    assert t.ack_deadline() is None


def test_an_unacked_packet_is_acked_within_max_ack_delay_with_the_delay_reported() -> None:
    t = AckTracker(max_ack_delay=0.025)
    _receive(t, [0], now=2.0)
    assert not t.ack_wanted(2.024)
    assert t.ack_wanted(2.025)
    ack = t.build_ack(2.025)
    assert ack is not None
    assert ack.ack_delay_us == 25_000


def test_out_of_order_ack_eliciting_packet_is_acked_at_once() -> None:
    t = AckTracker()
    _receive(t, [0], now=0.0)
    t.on_ack_sent()
    _receive(t, [2], now=0.1)  # gap at 1
    assert t.ack_wanted(0.1)
    t.on_ack_sent()
    _receive(t, [1], now=0.2)  # fills the gap
    assert t.ack_wanted(0.2)


def test_non_ack_eliciting_packets_never_trigger_an_ack() -> None:
    t = AckTracker()
    _receive(t, [0, 1, 2, 5], eliciting=False)
    assert t.ack_deadline() is None
    assert not t.has_unacked()
    ack = t.build_ack(0.0)  # but they are reported when an ACK goes anyway
    assert ack is not None and ack.ranges == [(5, 5), (0, 2)]
