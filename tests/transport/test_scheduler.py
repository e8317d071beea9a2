"""The stream scheduler (RFC 9218 urgency and incremental, plus the anti-starvation rule)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.errors import ConfigError
from foundation_p2p.transport.scheduler import StreamScheduler


def picks(s: StreamScheduler, n: int) -> list[int | None]:
    return [s.next() for _ in range(n)]


def test_nothing_ready_gives_none() -> None:
    s = StreamScheduler()
    assert s.next() is None
    s.add(0)
    assert s.next() is None
    s.set_ready(0, True)
    assert s.next() == 0
    s.set_ready(0, False)
    assert s.next() is None


def test_the_lowest_urgency_goes_first() -> None:
    # RFC 9218 4.1: urgency 0 is the highest priority; lower values go before higher ones.
    s = StreamScheduler(fair_share=1000)
    s.add(8, urgency=5)
    s.add(4, urgency=1)
    s.add(0, urgency=3)
    for sid in (8, 4, 0):
        s.set_ready(sid, True)
    assert picks(s, 5) == [4] * 5
    s.set_ready(4, False)
    assert picks(s, 3) == [0] * 3
    s.set_ready(0, False)
    assert picks(s, 2) == [8, 8]


def test_the_default_urgency_is_three_and_incremental() -> None:
    s = StreamScheduler(fair_share=1000)
    s.add(0)
    s.add(4, urgency=3, incremental=True)
    s.set_ready(0, True)
    s.set_ready(4, True)
    assert s.urgency_of(0) == 3
    assert picks(s, 4) == [0, 4, 0, 4]


def test_incremental_streams_of_one_urgency_take_turns_one_chunk_each() -> None:
    # RFC 9218 4.2: incremental responses at the same urgency share the bandwidth.
    s = StreamScheduler(fair_share=1000)
    for sid in (0, 4, 8):
        s.add(sid, urgency=2, incremental=True)
        s.set_ready(sid, True)
    assert picks(s, 6) == [0, 4, 8, 0, 4, 8]
    s.set_ready(4, False)
    assert picks(s, 4) == [0, 8, 0, 8]


def test_non_incremental_streams_go_one_at_a_time_in_stream_id_order() -> None:
    # RFC 9218 4.2: non-incremental responses are served one after another, in the order
    # of their stream ids.
    s = StreamScheduler(fair_share=1000)
    for sid in (12, 4, 8):
        s.add(sid, urgency=3, incremental=False)
        s.set_ready(sid, True)
    assert picks(s, 3) == [4, 4, 4]
    s.set_ready(4, False)  # done
    assert picks(s, 2) == [8, 8]
    s.remove(8)
    assert picks(s, 2) == [12, 12]


def test_non_incremental_group_takes_one_turn_among_incremental_streams() -> None:
    s = StreamScheduler(fair_share=1000)
    s.add(0, incremental=True)
    s.add(4, incremental=True)
    s.add(8, incremental=False)
    s.add(12, incremental=False)
    for sid in (0, 4, 8, 12):
        s.set_ready(sid, True)
    assert picks(s, 6) == [0, 4, 8, 0, 4, 8]


def test_a_priority_change_moves_a_ready_stream() -> None:
    s = StreamScheduler(fair_share=1000)
    s.add(0, urgency=3)
    s.add(4, urgency=3)
    s.set_ready(0, True)
    s.set_ready(4, True)
    s.add(4, urgency=0)  # PRIORITY_UPDATE
    assert picks(s, 3) == [4, 4, 4]
    s.add(4, urgency=6, incremental=False)
    assert picks(s, 2) == [0, 0]
    assert s.is_ready(4)


def test_a_busy_urgent_stream_leaves_one_pick_in_fair_share_to_the_others() -> None:
    s = StreamScheduler(fair_share=16)
    s.add(0, urgency=0)
    s.add(4, urgency=7)
    s.set_ready(0, True)
    s.set_ready(4, True)
    got = Counter(picks(s, 1600))
    assert got[4] == 100 and got[0] == 1500
    assert s.fair_picks == 100 and s.fair_overrides == 100


def test_a_stream_alone_loses_nothing_to_the_fair_share() -> None:
    s = StreamScheduler(fair_share=4)
    s.add(0, urgency=7)
    s.set_ready(0, True)
    assert picks(s, 20) == [0] * 20
    assert s.fair_overrides == 0


def test_misuse_is_refused() -> None:
    s = StreamScheduler()
    with pytest.raises(ConfigError):
        s.add(0, urgency=8)
    with pytest.raises(ConfigError):
        s.set_ready(99, True)
    with pytest.raises(ConfigError):
        StreamScheduler(fair_share=1)
    s.remove(12345)  # unknown ids are ignored


@settings(max_examples=150, deadline=None)
@given(
    fair_share=st.integers(2, 20),
    streams=st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=1, max_size=8),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["ready", "idle", "pick", "pick", "pick", "reprio"]),
            st.integers(0, 7),
            st.integers(0, 7),
        ),
        max_size=300,
    ),
)
def test_no_ready_stream_waits_beyond_the_bound_and_priority_rules_otherwise(
    fair_share: int, streams: list[tuple[int, bool]], ops: list[tuple[str, int, int]]
) -> None:
    # The documented bound: a ready stream is served within fair_share * R picks, R the
    # number of ready streams when its wait began. Every other pick goes to the lowest
    # urgency with a ready stream.
    s = StreamScheduler(fair_share=fair_share)
    ids = [4 * k for k in range(len(streams))]
    urgency = {}
    for sid, (u, inc) in zip(ids, streams, strict=True):
        s.add(sid, urgency=u, incremental=inc)
        urgency[sid] = u
    waited: dict[int, int] = {}  # ready stream -> picks since its wait began
    bound: dict[int, int] = {}
    ready: set[int] = set()

    def start_wait(sid: int) -> None:
        waited[sid] = 0
        bound[sid] = fair_share * len(ready)

    for op, a, b in ops + [("pick", 0, 0)] * 200:
        sid = ids[a % len(ids)]
        if op == "ready" and sid not in ready:
            s.set_ready(sid, True)
            ready.add(sid)
            start_wait(sid)
        elif op == "idle" and sid in ready:
            s.set_ready(sid, False)
            ready.discard(sid)
            del waited[sid], bound[sid]
        elif op == "reprio":
            s.add(sid, urgency=b, incremental=bool(b & 1))
            urgency[sid] = b
        elif op == "pick":
            fair_before = s.fair_picks
            got = s.next()
            if not ready:
                assert got is None
                continue
            assert got in ready
            if s.fair_picks == fair_before:
                assert urgency[got] == min(urgency[r] for r in ready)
            for r in ready:
                waited[r] += 1
            start_wait(got)
            for r in ready:
                assert waited[r] <= bound[r], (r, waited[r], bound[r])
