"""Dead retry at a backoff (spec 12.2), a robust push-pull exchange (10.2) and the relay
rule of ping-req (6.2), one test per sentence."""

from __future__ import annotations

import random

import pytest
from membership_harness import EPOCH, Net, identity

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError
from foundation_p2p.events import Join
from foundation_p2p.membership.config import PROFILES, MembershipConfig
from foundation_p2p.membership.frames import (
    Announcement,
    Dead,
    Nack,
    PingReq,
    PushPull,
    PushPullEntry,
    SwimAck,
    SwimPing,
)
from foundation_p2p.membership.state import MemberState
from foundation_p2p.membership.swim import (
    MAX_ANSWERED_EXCHANGES,
    PUSH_PULL_RETRIES,
    PUSH_PULL_TIMEOUT_MULT,
    RETRY_JITTER,
    SwimMembership,
)
from foundation_p2p.wire.limits import DEFAULT_LIMITS

ALIVE, FAILED = MemberState.ALIVE, MemberState.FAILED


def at(t: float) -> Now:
    return Now(t, EPOCH + t)


def addr(i: int) -> tuple[str, int]:
    return (f"n{i}", 7946)


def nid(i: int) -> bytes:
    return identity(i).node_id


def announce(i: int, inc: int = 1) -> Announcement:
    return Announcement.sign(
        identity(i),
        incarnation=inc,
        state=ALIVE,
        address=addr(i),
        name=f"n{i}",
        metadata=b"",
        observer=False,
    )


def lone(members: int = 10, **config: object) -> SwimMembership:
    core = SwimMembership(
        MembershipConfig(**config),  # type: ignore[arg-type]
        identity=identity(1),
        address=addr(1),
        name="n1",
        now=at(0),
        rng=random.Random(1),
        counters=Counters(),
        limits=DEFAULT_LIMITS,
        incarnation=1,
    )
    for i in range(2, members + 1):
        core.handle_message(at(0), nid(i), addr(i), announce(i))
    core.take_events()
    core.take_outgoing()
    return core


def drive(core: SwimMembership, until: float, t: float = 0.0) -> list[tuple[float, object, object]]:
    """Run ``core``'s timers up to ``until``; alive members (not in ``failed``) ack probes."""
    sent: list[tuple[float, object, object]] = []
    while True:
        d = core.next_deadline()
        if d is None or d > until:
            return sent
        t = max(t, d)
        core.handle_timer(at(t))
        for dest, frame in core.take_outgoing():
            sent.append((t, dest, frame))
            if isinstance(frame, SwimPing):
                member = core.member(frame.target)
                if member is not None and member.state is ALIVE:
                    core.handle_message(at(t), frame.target, dest, SwimAck(frame.seq))  # type: ignore[arg-type]


# -- 12.2 dead retry at a backoff -------------------------------------------------------------


def test_a_failed_member_is_retried_at_a_doubling_jittered_gap_up_to_the_cap() -> None:
    core = lone(
        members=4,
        dead_retry_interval_s=2.0,
        dead_retry_max_interval_s=16.0,
        dead_retry_for_s=100.0,
        push_pull_interval_s=10_000.0,
    )
    core.handle_message(at(1), nid(2), addr(2), Dead(nid(3), 1, nid(2)))
    assert core.member(nid(3)).state is FAILED  # type: ignore[union-attr]
    sent = drive(core, 300.0, 1.0)
    times = [t for t, _, f in sent if isinstance(f, SwimPing) and f.target == nid(3)]
    assert times, "never retried"
    gaps = [b - a for a, b in zip([1.0, *times], times, strict=False)]
    expected = 2.0
    low, high = RETRY_JITTER
    for gap in gaps:
        assert expected * low - 1e-9 <= gap < expected * high + 1e-9, (gap, expected)
        expected = min(expected * 2, 16.0)
    assert times[-1] < 1.0 + 100.0
    assert times[-1] > 1.0 + 100.0 - 16.0 * high  # kept going until dead_retry_for_s
    assert len({round(g, 6) for g in gaps}) == len(gaps)  # jittered: no two gaps equal
    assert core.counters["membership.dead_retries"] == len(times)
    assert core.counters["membership.dead_retry.expired"] == 1


def test_every_failed_member_has_its_own_retry_schedule() -> None:
    core = lone(
        members=8,
        dead_retry_interval_s=2.0,
        dead_retry_max_interval_s=4.0,
        dead_retry_for_s=30.0,
        push_pull_interval_s=10_000.0,
    )
    for i in (3, 4, 5):
        core.handle_message(at(1), nid(2), addr(2), Dead(nid(i), 1, nid(2)))
    sent = drive(core, 40.0, 1.0)
    for i in (3, 4, 5):
        pings = [t for t, _, f in sent if isinstance(f, SwimPing) and f.target == nid(i)]
        # 2, 4, 4, 4, ... (x [0.5, 1.5)) within 30 s: at least 30 / 6, at most 1 + 30 / 2 pings
        assert 5 <= len(pings) <= 16, (i, pings)


def test_a_member_that_comes_back_is_no_longer_retried_and_retry_state_stays_bounded() -> None:
    core = lone(
        members=6,
        dead_retry_interval_s=1.0,
        dead_retry_max_interval_s=2.0,
        push_pull_interval_s=10_000.0,
    )
    t = 1.0
    for inc in range(1, 400):
        core.handle_message(at(t), nid(2), addr(2), Dead(nid(3), inc, nid(2)))
        core.handle_message(at(t), nid(3), addr(3), announce(3, inc + 1))
        t += 0.01
    assert core.member(nid(3)).state is ALIVE  # type: ignore[union-attr]
    assert len(core._retry_heap) <= 2 * 1 + 64 + 1
    drive(core, t + 30.0, t)
    assert core.counters["membership.dead_retries"] == 0


def test_dead_retry_settings_are_in_every_profile_and_checked() -> None:
    for profile, values in PROFILES.items():
        assert values["dead_retry_max_interval_s"] >= values["dead_retry_interval_s"], profile
        cfg = MembershipConfig.from_mapping({"profile": profile})
        assert cfg.dead_retry_max_interval_s == values["dead_retry_max_interval_s"]
    cfg = MembershipConfig.from_mapping({"dead_retry_max_interval_s": 7})
    assert cfg.dead_retry_max_interval_s == 7.0
    with pytest.raises(ConfigError, match="dead_retry_max_interval_s: shorter"):
        MembershipConfig(dead_retry_interval_s=10.0, dead_retry_max_interval_s=5.0)
    with pytest.raises(ConfigError, match="dead_retry_max_interval_s: must be a number"):
        MembershipConfig.from_mapping({"dead_retry_max_interval_s": "soon"})


# -- 10.2 a robust push-pull ----------------------------------------------------------------


def _chunk(exchange: int, index: int, reply: bool, last: bool, i: int = 5) -> PushPull:
    return PushPull(exchange, index, reply, last, [PushPullEntry(announce(i), ALIVE)])


def test_any_chunk_of_an_exchange_triggers_the_answer_once() -> None:
    core = lone(members=4)
    core.handle_message(at(1), nid(2), addr(2), _chunk(77, 1, True, True))  # chunk 0 was lost
    answer = [f for d, f in core.take_outgoing() if isinstance(f, PushPull)]
    assert answer and all(f.exchange == 77 and not f.reply for f in answer)
    assert answer[-1].last
    core.handle_message(at(1), nid(2), addr(2), _chunk(77, 0, True, False))  # late chunk 0
    assert not [f for d, f in core.take_outgoing() if isinstance(f, PushPull)]
    core.handle_message(at(2), nid(3), addr(3), _chunk(77, 0, True, True))  # another sender
    assert [f for d, f in core.take_outgoing() if isinstance(f, PushPull)]
    assert core.counters["membership.push_pull.answered"] == 2


def test_the_answered_exchanges_are_bounded() -> None:
    core = lone(members=3)
    for x in range(MAX_ANSWERED_EXCHANGES + 10):
        core.handle_message(at(1), nid(2), addr(2), _chunk(x, 0, True, True))
    assert len(core._pp_answered) == MAX_ANSWERED_EXCHANGES


def test_an_unanswered_push_pull_is_sent_again_a_bounded_number_of_times() -> None:
    core = lone(members=4, push_pull_interval_s=20.0)
    sent = drive(core, 60.0)
    starts = [(t, d, f) for t, d, f in sent if isinstance(f, PushPull) and f.reply]
    first_t, first_dest, _ = starts[0]
    timeout = PUSH_PULL_TIMEOUT_MULT * core.config.probe_timeout_s
    burst = [s for s in starts if s[0] < first_t + (PUSH_PULL_RETRIES + 1) * timeout]
    assert [round(t - first_t, 6) for t, _, _ in burst] == [
        round(k * timeout, 6) for k in range(PUSH_PULL_RETRIES + 1)
    ]
    assert {d for _, d, _ in burst} == {first_dest}
    assert len({f.exchange for _, _, f in burst}) == PUSH_PULL_RETRIES + 1  # fresh each time
    assert core.counters["membership.push_pull.unanswered"] >= 1


def test_an_answered_push_pull_is_not_sent_again() -> None:
    core = lone(members=4, push_pull_interval_s=20.0)
    t, dest, first = 0.0, None, None
    while first is None:
        t = core.next_deadline()  # type: ignore[assignment]
        core.handle_timer(at(t))
        for d, f in core.take_outgoing():
            if isinstance(f, PushPull) and f.reply:
                dest, first = d, f
    core.handle_message(at(t + 0.01), nid(2), dest, _chunk(first.exchange, 0, False, True))  # type: ignore[arg-type]
    sent = drive(core, t + 5.0, t + 0.01)
    assert not [f for _, _, f in sent if isinstance(f, PushPull) and f.reply]
    assert core.counters["membership.push_pull.completed"] == 1
    assert core.counters["membership.push_pull.retried"] == 0


def test_a_dropped_chunk_0_no_longer_waits_for_the_next_exchange() -> None:
    """Two nodes, tables of several chunks; the initiator's chunk 0 is lost: the answer
    still comes within the exchange (any chunk triggers it)."""
    net = Net(push_pull_chunk_bytes=300, push_pull_interval_s=1000.0)
    a = net.add("a")
    b = net.add("b")
    for i in range(10, 20):  # give both some members, so tables span chunks
        for core in (a, b):
            core.handle_message(net.now(), nid(i), addr(i), announce(i))
    net.record = True
    lost: list[PushPull] = []

    def drop(src: object, dst: object, frame: object) -> bool:
        if isinstance(frame, PushPull) and frame.reply and frame.index == 0 and not lost:
            lost.append(frame)
            return True
        return False

    net.drop = drop
    net.command(b, Join((("a", 7946),)))
    net.run_until(0.5)
    assert lost, "chunk 0 was never sent"
    answers = [
        f
        for _, s, d, f in net.sent
        if isinstance(f, PushPull)
        and not f.reply
        and s == ("a", 7946)
        and f.exchange == lost[0].exchange
    ]
    assert answers and answers[-1].last
    assert b.joined and b.counters["membership.join.attempts"] == 1


def test_an_exchange_whose_every_chunk_is_lost_is_retried_and_completes() -> None:
    net = Net(push_pull_interval_s=3.0)
    a, b = net.add("a"), net.add("b")
    net.command(b, Join((("a", 7946),)))
    net.run_until(2.0)
    assert b.joined
    net.record = True
    dropped: list[int] = []

    def drop(src: object, dst: object, frame: object) -> bool:
        # Lose every chunk of the first periodic exchange either node starts.
        if (
            isinstance(frame, PushPull)
            and frame.reply
            and (not dropped or dropped[0] == frame.exchange)
        ):
            dropped.append(frame.exchange)
            return True
        return False

    net.drop = drop
    net.run_until(20.0)
    assert dropped
    retried = (
        a.counters["membership.push_pull.retried"] + b.counters["membership.push_pull.retried"]
    )
    completed = (
        a.counters["membership.push_pull.completed"] + b.counters["membership.push_pull.completed"]
    )
    assert retried >= 1 and completed >= 1


# -- 6.2 a relay pings only known members at their signed address ------------------------


def test_a_relay_refuses_a_ping_req_for_a_node_it_does_not_know_and_nacks() -> None:
    core = lone(members=4)
    stranger = identity(99).node_id
    core.handle_message(at(1), nid(2), addr(2), PingReq(5, stranger, "203.0.113.9", 53))
    out = core.take_outgoing()
    assert not [f for _, f in out if isinstance(f, SwimPing)]
    assert [(d, f) for d, f in out if isinstance(f, Nack)] == [(addr(2), Nack(5))]
    assert core.counters["membership.relay.refused"] == 1
    core.handle_message(at(1), nid(2), addr(2), PingReq(6, core.node_id, "203.0.113.9", 53))
    assert core.counters["membership.relay.refused"] == 2


def test_a_relay_pings_the_member_at_its_signed_address_not_the_requested_one() -> None:
    core = lone(members=4)
    core.handle_message(at(1), nid(2), addr(2), PingReq(5, nid(3), "203.0.113.9", 53))
    pings = [(d, f) for d, f in core.take_outgoing() if isinstance(f, SwimPing)]
    assert len(pings) == 1 and pings[0][0] == addr(3) and pings[0][1].target == nid(3)
    assert core.counters["membership.relay.address_replaced"] == 1
    core.handle_message(at(1), nid(2), addr(2), PingReq(6, nid(3), *addr(3)))
    assert core.counters["membership.relay.address_replaced"] == 1
    assert core.counters["membership.relay.pings"] == 2


def test_a_relay_does_not_ping_an_observer() -> None:
    core = lone(members=3)
    obs = Announcement.sign(
        identity(7),
        incarnation=1,
        state=ALIVE,
        address=addr(7),
        name="o",
        metadata=b"",
        observer=True,
    )
    core.handle_message(at(0), nid(7), addr(7), obs)
    core.take_outgoing()
    core.handle_message(at(1), nid(2), addr(2), PingReq(5, nid(7), *addr(7)))
    assert not [f for _, f in core.take_outgoing() if isinstance(f, SwimPing)]
    assert core.counters["membership.relay.refused"] == 1


# -- 9.1 fresh news first; pulled records behind it -----------------------------------------


def _sent_counts(
    core: SwimMembership, dests: list[tuple[str, int]], rounds: int
) -> list[list[bytes]]:
    """Piggyback onto empty packets to ``dests`` in turn; the node ids of what each took."""
    out = []
    for r in range(rounds):
        dest = dests[r % len(dests)]
        out.append(
            [f.node_id for f, _ in core.piggyback(dest, 0, 64) if isinstance(f, Announcement)]
        )
    return out


def test_a_fresh_update_goes_before_a_backlog_sent_fewer_times() -> None:
    core = lone(members=300, retransmit_mult=4)  # limit 4 x 3 = 12
    limit = core.config.retransmit_limit(core.alive_count())
    dests = [addr(i) for i in range(400, 420)]
    _sent_counts(core, dests, 3)  # the backlog: 299 records, the first few sent once
    later = 5.0  # past the hot window of the backlog
    core.handle_message(at(later), nid(2), addr(2), announce(7, inc=9))  # fresh news about n7
    taken = _sent_counts(core, dests, limit)
    # n7's record rides in every packet until it reached the limit, although most of the
    # backlog was sent fewer times (least-sent first would have sent those first).
    assert all(nid(7) in t for t in taken)
    assert all(nid(7) not in t for t in _sent_counts(core, dests, 5))


def test_an_update_stops_being_hot_after_its_window() -> None:
    core = lone(members=300)
    dests = [addr(i) for i in range(400, 420)]
    core.handle_message(at(1.0), nid(2), addr(2), announce(7, inc=9))
    assert nid(7) in _sent_counts(core, dests, 1)[0]
    core.handle_message(at(60.0), nid(3), addr(3), SwimAck(12345))  # time passes
    # Now sent once, it ranks with the backlog of records never sent: behind them.
    assert nid(7) not in _sent_counts(core, dests, 1)[0]


def test_pulled_records_are_passed_on_twice_behind_the_senders_own_record() -> None:
    core = lone(members=2)
    entries = [PushPullEntry(announce(i), ALIVE) for i in (5, 6, 7, 8, 9)]
    chunk = PushPull(3, 0, False, True, [PushPullEntry(announce(4), ALIVE), *entries])
    core.handle_message(at(1), nid(4), addr(4), chunk)
    dests = [addr(i) for i in range(400, 420)]
    taken = _sent_counts(core, dests, 30)
    flat = [n for t in taken for n in t]
    limit = core.config.retransmit_limit(core.alive_count())
    assert flat.count(nid(4)) == limit  # the sender's own record: fresh news
    for i in (5, 6, 7, 8, 9):
        assert flat.count(nid(i)) == 2  # pulled: passed on twice
    assert taken[0][0] == nid(4)


def test_an_announcement_is_not_sent_to_its_member_nor_straight_back_to_its_origin() -> None:
    core = lone(members=4)
    core.handle_message(at(1), nid(2), addr(3), announce(2, inc=5))  # n2's record via n3
    assert not [f for f, _ in core.piggyback(addr(2), 0, 64) if f.node_id == nid(2)]  # type: ignore[attr-defined]
    assert not [f for f, _ in core.piggyback(addr(3), 0, 64) if f.node_id == nid(2)]  # type: ignore[attr-defined]
    assert [f for f, _ in core.piggyback(addr(4), 0, 64) if f.node_id == nid(2)]  # type: ignore[attr-defined]
    assert [f for f, _ in core.piggyback(addr(3), 0, 64) if f.node_id == nid(2)]  # type: ignore[attr-defined]


def test_a_joiner_gossips_its_own_record_once_its_join_is_answered() -> None:
    net = Net()
    net.add("seed")
    joiner = net.add("joiner")
    net.record = True
    net.command(joiner, Join((("seed", 7946),)))
    net.run_until(1.0)
    assert joiner.joined
    own = [
        f
        for _, src, _, f in net.sent
        if src == ("joiner", 7946) and isinstance(f, Announcement) and f.node_id == joiner.node_id
    ]
    assert own  # not only through the seed's push-pull: the joiner spreads it itself


def test_the_first_periodic_push_pull_counts_from_the_completed_join() -> None:
    net = Net(push_pull_interval_s=10.0)
    seed = net.add("seed")
    for i in range(40):  # a table of 41 members: push_pull_interval(41) = 20 s
        seed.handle_message(net.now(), nid(100 + i), addr(100 + i), announce(100 + i))
    joiner = net.add("joiner", push_pull_chunk_bytes=300)
    net.record = True
    net.command(joiner, Join((("seed", 7946),)))
    net.run_until(0.5)
    assert joiner.joined
    joined_at = max(t for t, _, dst, f in net.sent if dst == ("joiner", 7946))
    deadline = joiner._next_push_pull
    assert deadline is not None
    interval = joiner.config.push_pull_interval(joiner.alive_count())
    assert interval == 20.0
    assert joined_at + 0.5 * interval - 0.01 <= deadline <= joined_at + interval + 0.01
