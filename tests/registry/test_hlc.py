"""The hybrid logical clock: monotonic local stamps, causality across nodes, the lead clamp."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError
from foundation_p2p.registry.hlc import MAX_LOGICAL, HybridClock, Stamp

A, B = b"\x01" * 16, b"\x02" * 16


def test_stamps_order_by_wall_then_logical_then_node() -> None:
    assert Stamp(1, 5, B) < Stamp(2, 0, A)
    assert Stamp(2, 0, B) < Stamp(2, 1, A)
    assert Stamp(2, 1, A) < Stamp(2, 1, B)


def test_tick_follows_the_wall_clock_and_counts_within_a_millisecond() -> None:
    clock = HybridClock(A)
    assert clock.tick(1.0) == Stamp(1000, 0, A)
    assert clock.tick(1.0) == Stamp(1000, 1, A)
    assert clock.tick(1.0004) == Stamp(1000, 2, A)
    assert clock.tick(1.002) == Stamp(1002, 0, A)


def test_tick_never_goes_back_when_the_wall_clock_does() -> None:
    clock = HybridClock(A)
    first = clock.tick(10.0)
    assert clock.tick(5.0) > first


def test_observe_makes_later_local_stamps_larger_than_the_remote_one() -> None:
    slow = HybridClock(A)
    remote = Stamp(20_000, 7, B)
    assert slow.observe(remote, 1.0) is True
    assert slow.tick(1.0) > remote


def test_observe_clamps_a_remote_stamp_far_in_the_future() -> None:
    counters = Counters()
    clock = HybridClock(A, max_clock_lead_s=5.0, counters=counters)
    assert clock.observe(Stamp(3_600_000, 0, B), 0.0) is False
    assert counters["registry.hlc.clamped"] == 1
    assert clock.tick(0.0).wall_ms == 5_000


def test_logical_overflow_moves_the_physical_part() -> None:
    clock = HybridClock(A)
    clock.observe(Stamp(1000, MAX_LOGICAL, B), 1.0)
    assert clock.tick(1.0) == Stamp(1001, 0, A)


def test_lead_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_clock_lead_s"):
        HybridClock(A, max_clock_lead_s=0)


@settings(deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1e6), st.integers(0, 10**9)), max_size=50))
def test_stamps_strictly_increase_over_any_event_sequence(
    events: list[tuple[bool, float, int]],
) -> None:
    clock = HybridClock(A, max_clock_lead_s=1e9)
    last = Stamp(0, 0, A)
    for local, wall, remote_ms in events:
        if local:
            stamp = clock.tick(wall)
            assert stamp > last
            last = stamp
        else:
            remote = Stamp(remote_ms, 3, B)
            clock.observe(remote, wall)
            last = max(last, Stamp(remote.wall_ms, remote.logical, A))
