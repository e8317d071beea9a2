"""The SWIM + Lifeguard state machine, one test per sentence of the protocol.

In the style of etcd's raft_paper_test: each test is named for a rule of
``foundation_p2p/membership/swim.py`` (and spec/membership.md) and drives one core
directly, or a few cores through the in-test network of ``membership_harness``.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
from membership_harness import EPOCH, Net, identity

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import LimitError
from foundation_p2p.events import Join, Leave
from foundation_p2p.membership.config import MembershipConfig, suspicion_timeout
from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.frames import (
    Announcement,
    Dead,
    Nack,
    PingReq,
    PushPull,
    Suspect,
    SwimAck,
    SwimPing,
)
from foundation_p2p.membership.state import MemberState
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.wire.limits import DEFAULT_LIMITS

ALIVE, SUSPECT, FAILED, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.FAILED,
    MemberState.LEFT,
)


def at(t: float) -> Now:
    return Now(t, EPOCH + t)


def addr(i: int) -> tuple[str, int]:
    return (f"n{i}", 7946)


def announce(i: int, inc: int = 1, state: MemberState = ALIVE, **kw: object) -> Announcement:
    fields: dict[str, object] = {
        "address": addr(i),
        "name": f"n{i}",
        "metadata": b"",
        "observer": False,
    }
    fields.update(kw)
    return Announcement.sign(identity(i), incarnation=inc, state=state, **fields)  # type: ignore[arg-type]


def lone(members: int = 10, **config: object) -> SwimMembership:
    """Node 1, which has heard the announcements of nodes 2..members (all alive, inc 1)."""
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
        core.handle_message(at(0), identity(i).node_id, addr(i), announce(i))
    core.take_events()
    core.take_outgoing()
    return core


def nid(i: int) -> bytes:
    return identity(i).node_id


def state_of(core: SwimMembership, i: int) -> MemberState | None:
    m = core.member(nid(i))
    return None if m is None else m.state


def cluster(n: int, **config: object) -> Net:
    net = Net(**config)
    cores = [net.add(f"n{i}") for i in range(1, n + 1)]
    for c in cores[1:]:
        net.command(c, Join((addr(1),)))
    net.run_until(5.0)
    for c in cores:
        assert len(c.members()) == n, c.members()
    return net


# -- members, join and push-pull ---------------------------------------------------------


def test_a_member_enters_the_table_only_through_a_verified_announcement() -> None:
    core = lone(members=1)
    core.handle_message(at(1), nid(2), addr(2), Suspect(nid(2), 1, nid(3)))
    assert core.member(nid(2)) is None
    assert core.counters["membership.opinion.unknown"] == 1
    core.handle_message(at(1), nid(2), addr(2), announce(2))
    (joined,) = core.take_events()
    assert isinstance(joined, MemberJoined) and joined.member.node_id == nid(2)
    assert joined.member.address == addr(2) and joined.member.state is ALIVE


def test_join_is_a_push_pull_with_the_seeds_and_every_member_learns_every_member() -> None:
    net = cluster(5)
    for core in net.nodes.values():
        assert [m.state for m in core.members()] == [ALIVE] * 5
        assert core.alive_count() == 5
    assert all(c.joined for c in list(net.nodes.values())[1:])


def test_join_is_retried_at_a_doubling_backoff_until_a_seed_answers() -> None:
    net = Net(join_retry_s=1.0, join_retry_max_s=4.0)
    a = net.add("n1")
    net.record = True
    net.command(a, Join((addr(2),)))  # nobody there yet
    net.run_until(12.0)
    tries = [t for t, _, dst, f in net.sent if isinstance(f, PushPull) and dst == addr(2)]
    gaps = [round(b - a_, 1) for a_, b in itertools.pairwise(tries)]
    assert len(tries) >= 4
    assert all(1.0 <= g <= 1.25 * 4.0 for g in gaps) and gaps[1] >= 2.0 and gaps[-1] >= 4.0
    net.add("n2")
    net.run_until(20.0)
    assert a.joined and len(a.members()) == 2
    attempts = a.counters["membership.join.attempts"]
    net.run_until(60.0)
    assert a.counters["membership.join.answered"] == 1
    assert a.counters["membership.join.attempts"] == attempts  # no retry once answered


def test_push_pull_chunks_stay_within_chunk_bytes_and_the_exchange_bound() -> None:
    core = lone(members=60, push_pull_chunk_bytes=600, push_pull_max_bytes=5000)
    core.handle_message(at(1), nid(2), addr(2), PushPull(7, 0, True, True, []))
    chunks = [f for _, f in core.take_outgoing() if isinstance(f, PushPull)]
    assert len(chunks) > 1
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.exchange == 7 and not c.reply for c in chunks)
    for c in chunks:
        assert len(c.encode()) <= 600 + 32
    total = sum(len(e.announcement.record) + 64 for c in chunks for e in c.entries)
    assert total <= 5000
    assert chunks[0].entries[0].announcement.node_id == nid(1)  # our own record first
    assert core.counters["membership.push_pull.truncated"] == 1


# -- probing and awareness ----------------------------------------------------------------


def test_probes_go_round_robin_over_a_shuffled_list_reshuffled_each_pass() -> None:
    core = lone(members=6)
    targets: list[bytes] = []
    for _ in range(15):
        t, ping = _start_probe(core)
        targets.append(ping.target)
        core.handle_message(at(t), ping.target, addr(2), SwimAck(ping.seq))
    passes = [targets[i : i + 5] for i in range(0, 15, 5)]
    for p in passes:
        assert sorted(p) == sorted(nid(i) for i in range(2, 7))  # each member once a pass
    assert passes[0] != passes[1] or passes[1] != passes[2]  # reshuffled


def test_a_ping_is_acked_only_by_the_node_it_names() -> None:
    core = lone(members=2)
    core.handle_message(at(1), nid(2), addr(2), SwimPing(5, nid(3)))
    assert core.take_outgoing() == []
    assert core.counters["membership.ping.wrong_target"] == 1
    core.handle_message(at(1), nid(2), addr(2), SwimPing(6, nid(1)))
    assert core.take_outgoing() == [(addr(2), SwimAck(6))]


def _start_probe(core: SwimMembership) -> tuple[float, SwimPing]:
    """Fire timers (gossip rounds...) until the core sends its next probe."""
    for _ in range(100):
        t = core.next_deadline()
        assert t is not None
        core.handle_timer(at(t))
        pings = [f for _, f in core.take_outgoing() if isinstance(f, SwimPing)]
        if pings:
            assert len(pings) == 1
            return t, pings[0]
    raise AssertionError("no probe")


def test_no_direct_ack_within_the_probe_timeout_sends_ping_req_to_k_relays() -> None:
    core = lone(members=10, indirect_checks=3)
    t, ping = _start_probe(core)
    core.handle_timer(at(t + 0.5))
    reqs = [(dst, f) for dst, f in core.take_outgoing() if isinstance(f, PingReq)]
    assert len(reqs) == 3
    assert {f.target for _, f in reqs} == {ping.target}
    assert all(f.seq == ping.seq for _, f in reqs)
    assert len({dst for dst, _ in reqs}) == 3


def test_an_ack_forwarded_by_a_relay_completes_the_probe() -> None:
    core = lone(members=5)
    t, ping = _start_probe(core)
    core.handle_timer(at(t + 0.5))
    core.take_outgoing()
    core.handle_message(at(t + 0.7), nid(3), addr(3), SwimAck(ping.seq))
    core.handle_timer(at(t + 1.0))
    assert all(m.state is ALIVE for m in core.members())
    assert core.counters["membership.probes.acked"] == 1


def test_a_relay_pings_the_target_forwards_its_ack_or_nacks_after_the_timeout() -> None:
    core = lone(members=4)
    core.handle_message(at(1), nid(2), addr(2), PingReq(77, nid(3), "n3", 7946))
    ((dst, ping),) = core.take_outgoing()
    assert dst == addr(3) and isinstance(ping, SwimPing) and ping.target == nid(3)
    core.handle_message(at(1.1), nid(3), addr(3), SwimAck(ping.seq))
    assert core.take_outgoing() == [(addr(2), SwimAck(77))]
    core.handle_message(at(2), nid(2), addr(2), PingReq(78, nid(4), "n4", 7946))
    core.take_outgoing()
    core.handle_timer(at(2 + 0.5 * 0.8 - 0.001))
    assert not [f for _, f in core.take_outgoing() if isinstance(f, Nack)]
    core.handle_timer(at(2 + 0.5 * 0.8))
    nacks = [(d, f) for d, f in core.take_outgoing() if isinstance(f, Nack)]
    assert nacks == [(addr(2), Nack(78))]


def test_without_lifeguard_a_relay_sends_no_nack() -> None:
    core = lone(members=4, lifeguard=False)
    core.handle_message(at(2), nid(2), addr(2), PingReq(78, nid(4), "n4", 7946))
    core.take_outgoing()
    core.handle_timer(at(3))
    assert not [f for _, f in core.take_outgoing() if isinstance(f, Nack)]


def test_a_probe_unanswered_by_the_end_of_the_interval_suspects_the_target() -> None:
    core = lone(members=10)
    t, ping = _start_probe(core)
    core.handle_timer(at(t + 0.5))
    core.take_outgoing()
    core.handle_timer(at(t + 1.0))
    events = core.take_events()
    (suspect,) = [e for e in events if isinstance(e, MemberSuspect)]
    assert suspect.member.node_id == ping.target and suspect.accuser == nid(1)
    sent = [f for _, f in core.take_outgoing() if isinstance(f, Suspect)]
    assert sent and sent[0].node_id == ping.target and sent[0].incarnation == 1


def test_awareness_rises_by_the_missing_nacks_and_falls_by_one_per_successful_probe() -> None:
    core = lone(members=10, indirect_checks=3)
    t, ping = _start_probe(core)
    core.handle_timer(at(t + 0.5))
    core.take_outgoing()
    core.handle_message(at(t + 0.9), nid(5), addr(5), Nack(ping.seq))  # one of three
    core.handle_timer(at(t + 1.0))  # ends this probe and starts the next
    assert core.awareness == 2
    (ping2,) = [f for _, f in core.take_outgoing() if isinstance(f, SwimPing)]
    core.handle_message(at(t + 1.1), ping2.target, addr(2), SwimAck(ping2.seq))
    assert core.awareness == 1


def test_awareness_scales_the_probe_interval_and_timeout() -> None:
    core = lone(members=10, indirect_checks=3)
    core.awareness = 3
    t, _ping = _start_probe(core)
    probe = core._probe
    assert probe is not None
    assert probe.direct_deadline == pytest.approx(t + 0.5 * 4)  # direct ack wait scaled
    assert core._next_probe == pytest.approx(t + 1.0 * 4)  # next probe scaled
    core.handle_timer(at(t + 0.5 * 4 - 0.01))
    assert not [f for _, f in core.take_outgoing() if isinstance(f, PingReq)]
    core.handle_timer(at(t + 0.5 * 4))
    assert [f for _, f in core.take_outgoing() if isinstance(f, PingReq)]


def test_awareness_is_bounded_by_awareness_max() -> None:
    core = lone(members=4, awareness_max=2, indirect_checks=0)
    for _ in range(4):
        t, _ = _start_probe(core)
        core.handle_timer(at(t + 0.5 * (core.awareness + 1)))
    t = core.next_deadline()
    assert t is not None
    core.handle_timer(at(t))
    assert core.awareness == 2


def test_without_lifeguard_awareness_stays_zero() -> None:
    core = lone(members=4, lifeguard=False, indirect_checks=0)
    for _ in range(3):
        t, _ = _start_probe(core)
        core.handle_timer(at(t + 0.5))
    assert core.awareness == 0


# -- suspicion ----------------------------------------------------------------------------


def expected_timeout(n: int, confirmations: int, cfg: MembershipConfig) -> float:
    low = cfg.suspicion_mult * max(1.0, math.log10(n)) * cfg.probe_interval_s
    high = cfg.suspicion_max_mult * low
    k = cfg.suspicion_mult - 2
    return max(low, high - (high - low) * math.log(confirmations + 1) / math.log(k + 1))


@pytest.mark.parametrize("confirmations", [0, 1, 2])
def test_suspicion_timeout_shrinks_with_independent_confirmations(confirmations: int) -> None:
    cfg = MembershipConfig()
    core = lone(members=20)
    core.handle_message(at(10), nid(2), addr(2), Suspect(nid(9), 1, nid(2)))
    for j in range(confirmations):
        core.handle_message(at(11), nid(3 + j), addr(3 + j), Suspect(nid(9), 1, nid(3 + j)))
    deadline = core.suspicion_deadline(nid(9))
    assert deadline == pytest.approx(10 + expected_timeout(20, confirmations, cfg))
    core.handle_timer(at(deadline - 0.01))
    assert state_of(core, 9) is SUSPECT
    core.handle_timer(at(deadline))
    assert state_of(core, 9) is FAILED


def test_the_timeout_formula_reaches_min_at_k_confirmations_and_never_goes_below() -> None:
    assert suspicion_timeout(4.0, 24.0, 0, 2) == 24.0
    assert suspicion_timeout(4.0, 24.0, 1, 2) == pytest.approx(24 - 20 * math.log(2) / math.log(3))
    assert suspicion_timeout(4.0, 24.0, 2, 2) == pytest.approx(4.0)
    assert suspicion_timeout(4.0, 24.0, 5, 2) == 4.0
    cfg = MembershipConfig()
    assert cfg.suspicion_min_s(5) == 4.0  # max(1, log10 5) = 1
    assert cfg.suspicion_min_s(1000) == pytest.approx(12.0)
    assert cfg.suspicion_max_s(1000) == pytest.approx(72.0)
    assert MembershipConfig(lifeguard=False).suspicion_max_s(1000) == pytest.approx(12.0)


def test_confirmations_from_the_first_accuser_or_repeated_ones_do_not_count() -> None:
    core = lone(members=20)
    core.handle_message(at(10), nid(2), addr(2), Suspect(nid(9), 1, nid(2)))
    first = core.suspicion_deadline(nid(9))
    core.handle_message(at(11), nid(2), addr(2), Suspect(nid(9), 1, nid(2)))
    core.handle_message(at(11), nid(3), addr(3), Suspect(nid(9), 1, nid(3)))
    core.handle_message(at(11), nid(3), addr(3), Suspect(nid(9), 1, nid(3)))
    second = core.suspicion_deadline(nid(9))
    cfg = MembershipConfig()
    assert first == pytest.approx(10 + expected_timeout(20, 0, cfg))
    assert second == pytest.approx(10 + expected_timeout(20, 1, cfg))


def test_without_lifeguard_the_suspicion_timeout_is_the_minimum() -> None:
    core = lone(members=20, lifeguard=False)
    core.handle_message(at(10), nid(2), addr(2), Suspect(nid(9), 1, nid(2)))
    low = 4 * math.log10(20) * 1.0
    assert core.suspicion_deadline(nid(9)) == pytest.approx(10 + low)


def test_a_suspect_timing_out_is_declared_failed_and_the_dead_opinion_gossiped() -> None:
    core = lone(members=5)
    core.handle_message(at(0), nid(2), addr(2), Suspect(nid(4), 1, nid(2)))
    core.take_events()
    core.take_outgoing()
    deadline = core.suspicion_deadline(nid(4))
    assert deadline is not None
    core.handle_timer(at(deadline))
    (failed,) = [e for e in core.take_events() if isinstance(e, MemberFailed)]
    assert failed.member.node_id == nid(4) and failed.member.state is FAILED
    t = core.next_deadline()
    assert t is not None
    core.handle_timer(at(t))  # a gossip round
    deads = [f for _, f in core.take_outgoing() if isinstance(f, Dead)]
    assert deads and deads[0] == Dead(nid(4), 1, nid(1))
    assert core.alive_count() == 4


def test_a_ping_to_a_suspect_carries_the_suspicion_so_it_can_refute_at_once() -> None:
    net = cluster(4)
    a, b = net.node("n1"), net.node("n2")
    a.handle_message(net.now(), nid(3), addr(3), Suspect(nid(2), b.local.incarnation, nid(3)))
    net.record = True
    # Run until n1 probes n2 (the buddy system) and n2 refutes.
    for _ in range(20):
        net.run_until(net.t + 1.0)
        if any(d == addr(2) and isinstance(f, SwimPing) for _, s, d, f in net.sent if s == addr(1)):
            break
    net.run_until(net.t + 0.5)
    buddy = [f for _, s, d, f in net.sent if s == addr(1) and d == addr(2)]
    assert any(isinstance(f, Suspect) and f.node_id == nid(2) for f in buddy)
    assert b.counters["membership.refutations"] >= 1
    assert state_of(a, 2) is ALIVE
    assert net.of_type("n1", MemberAlive)


# -- incarnations and refutation -----------------------------------------------------------


def test_alive_overrides_only_with_a_higher_incarnation() -> None:
    core = lone(members=3)
    core.handle_message(at(1), nid(2), addr(2), Suspect(nid(2), 1, nid(3)))
    core.handle_message(at(2), nid(2), addr(2), announce(2, inc=1, metadata=b"x"))
    assert state_of(core, 2) is SUSPECT
    assert core.counters["membership.announcement.stale"] == 1
    core.handle_message(at(3), nid(2), addr(2), announce(2, inc=2))
    assert state_of(core, 2) is ALIVE
    assert any(isinstance(e, MemberAlive) for e in core.take_events())


def test_suspect_and_dead_override_alive_at_an_equal_incarnation_but_not_an_older_one() -> None:
    core = lone(members=4)
    core.handle_message(at(1), nid(2), addr(2), announce(2, inc=5))
    core.handle_message(at(1), nid(3), addr(3), Suspect(nid(2), 4, nid(3)))
    assert state_of(core, 2) is ALIVE
    core.handle_message(at(1), nid(3), addr(3), Suspect(nid(2), 5, nid(3)))
    assert state_of(core, 2) is SUSPECT
    core.handle_message(at(1), nid(3), addr(3), Dead(nid(2), 5, nid(3)))
    assert state_of(core, 2) is FAILED
    core.handle_message(at(1), nid(3), addr(3), Dead(nid(4), 0, nid(3)))
    assert state_of(core, 4) is ALIVE
    core.handle_message(at(1), nid(3), addr(3), Dead(nid(4), 1, nid(3)))
    assert state_of(core, 4) is FAILED
    assert core.counters["membership.opinion.stale"] == 2


def test_a_failed_member_comes_back_only_with_a_higher_incarnation_and_joins_again() -> None:
    core = lone(members=3)
    core.handle_message(at(1), nid(3), addr(3), Dead(nid(2), 1, nid(3)))
    core.take_events()
    core.handle_message(at(2), nid(2), addr(2), announce(2, inc=1))
    assert state_of(core, 2) is FAILED
    core.handle_message(at(2), nid(2), addr(2), announce(2, inc=2))
    assert state_of(core, 2) is ALIVE
    assert [type(e) for e in core.take_events()] == [MemberJoined]


def test_a_node_hearing_itself_suspected_refutes_with_a_higher_incarnation() -> None:
    core = lone(members=3)
    core.handle_message(at(1), nid(2), addr(2), Suspect(nid(1), 1, nid(2)))
    assert core.local.incarnation == 2 and core.local.state is ALIVE
    core.handle_message(at(1), nid(2), addr(2), Dead(nid(1), 2, nid(2)))
    assert core.local.incarnation == 3
    assert core.counters["membership.refutations"] == 2
    assert core.awareness == 2  # Lifeguard: each refutation raises it
    t = core.next_deadline()
    assert t is not None
    core.handle_timer(at(t))
    anns = [f for _, f in core.take_outgoing() if isinstance(f, Announcement)]
    assert anns and anns[0].node_id == nid(1) and anns[0].incarnation == 3 and anns[0].verify()


def test_an_opinion_about_an_incarnation_this_node_never_had_is_ignored() -> None:
    core = lone(members=3)
    core.handle_message(at(1), nid(2), addr(2), Dead(nid(1), (1 << 64) - 1, nid(2)))
    core.handle_message(at(1), nid(2), addr(2), Suspect(nid(1), 7, nid(2)))
    assert core.local.incarnation == 1 and core.local.state is ALIVE
    assert core.counters["membership.opinion.future_incarnation"] == 2
    assert core.counters["membership.refutations"] == 0


def test_an_own_record_from_an_earlier_life_is_outbid() -> None:
    core = lone(members=3)
    old_life = announce(1, inc=40)
    core.handle_message(at(1), nid(2), addr(2), old_life)
    assert core.local.incarnation == 41
    assert core.counters["membership.refutations"] == 1


def test_an_opinion_about_an_older_life_needs_no_refutation() -> None:
    core = lone(members=3)
    core.handle_message(at(1), nid(2), addr(2), Suspect(nid(1), 0, nid(2)))
    assert core.local.incarnation == 1
    assert core.counters["membership.refutations"] == 0


def test_a_forged_announcement_is_rejected_and_counted() -> None:
    core = lone(members=3)
    # Signed by node 3's key but claiming node 2's id and key: the signature fails.
    real = announce(2, inc=9, metadata=b"evil")
    forged = Announcement.parse(real.record, announce(3, inc=9).signature)
    core.handle_message(at(1), nid(3), addr(3), forged)
    assert core.member(nid(2)).incarnation == 1  # type: ignore[union-attr]
    # An altered record (metadata bytes changed after signing).
    altered_record = real.record.replace(b"evil", b"good")
    altered = Announcement.parse(altered_record, real.signature)
    core.handle_message(at(1), nid(3), addr(3), altered)
    assert core.member(nid(2)).metadata == b""  # type: ignore[union-attr]
    # A new member whose id does not derive from its public key.
    other = announce(4)
    spoof_record = other.record.replace(nid(4), nid(5))
    spoofed = Announcement.parse(spoof_record, identity(4).sign(b"x" * 8))
    core.handle_message(at(1), nid(3), addr(3), spoofed)
    assert core.member(nid(5)) is None
    assert core.counters["membership.announcement.bad_signature"] == 3
    core.handle_message(at(1), nid(2), addr(2), real)
    assert core.member(nid(2)).metadata == b"evil"  # type: ignore[union-attr]


def test_announcements_are_relayed_verbatim() -> None:
    core = lone(members=3)
    ann = announce(2, inc=4, metadata=b"\xa1ax\x01")
    core.handle_message(at(1), nid(2), addr(2), ann)
    relayed: list[tuple[object, Announcement]] = []
    t = 1.0
    while not relayed and t < 5.0:
        t = max(t, core.next_deadline() or t)
        core.handle_timer(at(t))
        relayed = [
            (d, f)
            for d, f in core.take_outgoing()
            if isinstance(f, Announcement) and f.node_id == nid(2)
        ]
    assert relayed and relayed[0][1].record == ann.record
    assert relayed[0][1].signature == ann.signature
    assert relayed[0][0] == addr(3)  # not to n2 itself, nor back to where it came from


# -- leave, healing, reaping ----------------------------------------------------------------


def test_graceful_leave_is_reported_left_not_failed() -> None:
    net = cluster(4)
    leaver = net.node("n4")
    net.command(leaver, Leave())
    net.run_until(net.t + 30.0)
    for name in ("n1", "n2", "n3"):
        core = net.node(name)
        assert state_of(core, 4) is LEFT
        assert net.of_type(name, MemberLeft) and not net.of_type(name, MemberFailed)
    assert leaver.local.state is LEFT and leaver.next_deadline() is not None
    assert leaver.counters["membership.probes.sent"] == leaver.counters["membership.probes.sent"]


def test_a_left_node_answers_suspicion_with_its_left_record_not_a_refutation() -> None:
    core = lone(members=3)
    core.handle_command(at(1), Leave())
    inc = core.local.incarnation
    core.handle_message(at(2), nid(2), addr(2), Suspect(nid(1), inc, nid(2)))
    assert core.local.state is LEFT and core.local.incarnation == inc
    assert core.counters["membership.refutations"] == 0


def test_a_crashed_member_is_failed_by_every_member_within_the_suspicion_window() -> None:
    net = cluster(6)
    victim = net.node("n6")
    net.crash(victim)
    t0 = net.t
    net.run_until(t0 + 30.0)
    for name in ("n1", "n2", "n3", "n4", "n5"):
        assert state_of(net.node(name), 6) is FAILED
        (failed,) = net.of_type(name, MemberFailed)
        assert failed.member.since_mono - t0 <= 2.0 + 4 * 6  # first probe + max suspicion


def test_dead_retry_merges_the_halves_of_a_healed_partition() -> None:
    net = cluster(6, dead_retry_interval_s=2.0)
    left = {addr(i) for i in (1, 2, 3)}
    net.cut = lambda s, d: (s in left) != (d in left)
    net.run_until(net.t + 40.0)
    assert state_of(net.node("n1"), 5) is FAILED
    assert state_of(net.node("n5"), 1) is FAILED
    net.cut = lambda s, d: False
    healed = net.t
    net.run_until(healed + 20.0)
    for core in net.nodes.values():
        assert [m.state for m in core.members()] == [ALIVE] * 6
    assert sum(c.counters["membership.dead_retries"] for c in net.nodes.values()) > 0


def test_failed_and_left_members_are_reaped_and_not_brought_back_by_old_records() -> None:
    core = lone(members=4, reap_after_s=50.0, observer_expiry_s=60.0)
    core.handle_message(at(1), nid(2), addr(2), Dead(nid(3), 1, nid(2)))
    core.handle_message(at(1), nid(4), addr(4), announce(4, inc=2, state=LEFT))
    core.take_events()
    t = 0.0
    while t < 60.0:
        d = core.next_deadline()
        assert d is not None
        t = d
        core.handle_timer(at(t))
        for _, f in core.take_outgoing():
            if isinstance(f, SwimPing):
                core.handle_message(at(t), f.target, addr(2), SwimAck(f.seq))
    reaped = {e.node_id for e in core.take_events() if isinstance(e, MemberReaped)}
    assert reaped == {nid(3), nid(4)}
    assert core.member(nid(3)) is None and core.member(nid(4)) is None
    core.handle_message(at(61), nid(2), addr(2), announce(3, inc=1))
    assert core.member(nid(3)) is None
    assert core.counters["membership.announcement.reaped"] == 1
    core.handle_message(at(61), nid(3), addr(3), announce(3, inc=2))
    assert state_of(core, 3) is ALIVE


# -- metadata, identity, observers ------------------------------------------------------------


def test_a_metadata_update_bumps_the_incarnation_and_spreads() -> None:
    net = cluster(5)
    a = net.node("n1")
    before = a.local.incarnation
    a.update_metadata(net.now(), b"\xa1drole\x66worker")
    assert a.local.incarnation == before + 1 and a.local.metadata == b"\xa1drole\x66worker"
    net.run_until(net.t + 3.0)
    for name in ("n2", "n3", "n4", "n5"):
        assert net.node(name).member(nid(1)).metadata == b"\xa1drole\x66worker"  # type: ignore[union-attr]
        assert net.of_type(name, MemberUpdated)


def test_metadata_beyond_max_metadata_bytes_is_refused() -> None:
    core = lone(members=2, max_metadata_bytes=16)
    with pytest.raises(LimitError, match="max_metadata_bytes"):
        core.update_metadata(at(1), b"x" * 17)
    assert core.local.incarnation == 1
    big = announce(2, inc=2, metadata=b"y" * 17)
    core.handle_message(at(1), nid(2), addr(2), big)
    assert core.member(nid(2)).incarnation == 1  # type: ignore[union-attr]
    assert core.counters["membership.announcement.metadata_too_large"] == 1


def test_a_restart_on_a_new_address_is_the_same_member_with_the_new_address() -> None:
    net = cluster(4)
    old = net.node("n4")
    net.crash(old)
    net.run_until(net.t + 3.0)
    new_addr = ("n4-new", 9000)
    restarted = net.add("n4b", number=4, address=new_addr, incarnation=old.local.incarnation + 50)
    assert restarted.node_id == old.node_id
    net.command(restarted, Join((addr(1),)))
    net.run_until(net.t + 5.0)
    for name in ("n1", "n2", "n3"):
        m = net.node(name).member(nid(4))
        assert m is not None and m.address == new_addr and m.state is ALIVE
        assert len(net.node(name).members()) == 4


def test_observers_are_never_probed_never_counted_and_never_relays() -> None:
    net = cluster(4)
    obs = net.add("obs", number=50, observer=True)
    net.command(obs, Join((addr(1),)))
    net.record = True
    net.run_until(net.t + 20.0)
    assert len(obs.members()) == 5 and obs.alive_count() == 4
    for name in ("n1", "n2", "n3", "n4"):
        core = net.node(name)
        assert core.member(obs.node_id).observer  # type: ignore[union-attr]
        assert core.alive_count() == 4
    to_obs = [f for _, _, d, f in net.sent if d == obs_addr(net, obs)]
    assert not any(isinstance(f, (SwimPing, PingReq)) for f in to_obs)
    from_obs = [f for _, s, _, f in net.sent if s == obs_addr(net, obs)]
    assert not any(isinstance(f, SwimPing) for f in from_obs)
    assert obs.counters["membership.probes.sent"] == 0


def obs_addr(net: Net, core: SwimMembership) -> tuple[str, int]:
    return net.addr(core)


# -- dissemination -----------------------------------------------------------------------------


def test_an_update_is_sent_at_most_retransmit_mult_times_ceil_log10_n_plus_1() -> None:
    core = lone(members=9, retransmit_mult=2)
    assert core.config.retransmit_limit(core.alive_count()) == 2
    core.handle_message(at(1), nid(2), addr(2), announce(2, inc=5))
    sends = 0
    for _ in range(10):
        for dest in (addr(5), addr(6)):  # not n3 or n4: their own records stay queued
            sends += sum(
                1
                for f, _ in core.piggyback(dest, 0, 64)
                if isinstance(f, Announcement) and f.incarnation == 5
            )
    assert sends == 2
    again = [
        f
        for dest in (addr(7), addr(8), addr(9))
        for f, _ in core.piggyback(dest, 0, 64)
        if isinstance(f, Announcement) and f.incarnation == 5
    ]
    assert not again  # removed from the queue at the limit


def test_the_broadcast_queue_is_bounded_and_drops_the_most_sent_update() -> None:
    core = lone(members=2, max_broadcasts=3)
    core.piggyback(addr(9), 0, 64)  # n2's join announcement: sent once
    for i in range(3, 7):
        core.handle_message(at(1), nid(i), addr(i), announce(i))
    assert core.pending_broadcasts() == 3
    assert core.counters["membership.broadcast.dropped_full"] == 2


def test_piggybacking_leaves_the_user_share_and_least_sent_go_first() -> None:
    core = lone(members=30, user_payload_share=0.5)
    cap = core.piggyback_cap
    assert cap == int(core.budget * 0.5)
    taken = core.piggyback(addr(2), 100, 64)
    assert taken and sum(len(e) for _, e in taken) <= cap - 100
    again = core.piggyback(addr(3), 100, 64)
    first_keys = {f.node_id for f, _ in taken}  # type: ignore[attr-defined]
    assert not first_keys & {f.node_id for f, _ in again}  # type: ignore[attr-defined]
    assert core.piggyback(addr(4), cap, 64) == []


def test_a_join_pushes_to_every_seed_and_pulls_from_the_next_one_when_one_is_silent() -> None:
    net = Net(join_retry_s=1.0)
    net.add("n1")
    net.add("n2")
    c = net.add("n3")
    net.crash(net.node("n1"))
    net.record = True
    net.command(c, Join((addr(1), addr(2))))
    net.run_until(4.0)
    first = [(d, f.reply) for t, s, d, f in net.sent if isinstance(f, PushPull) and t == 0.0]
    assert sorted(d for d, _ in first) == [addr(1), addr(2)]
    assert sum(1 for _, reply in first if reply) == 1  # one seed is asked for its table
    assert c.joined and c.member(nid(2)) is not None
    assert net.node("n2").member(c.node_id) is not None


def test_an_opinion_above_the_members_announced_incarnation_is_ignored() -> None:
    core = lone(members=4)
    core.handle_message(at(1), nid(3), addr(3), Suspect(nid(2), 5, nid(3)))
    core.handle_message(at(1), nid(3), addr(3), Dead(nid(2), (1 << 64) - 1, nid(3)))
    assert state_of(core, 2) is ALIVE and core.member(nid(2)).incarnation == 1  # type: ignore[union-attr]
    assert core.counters["membership.opinion.future_incarnation"] == 2
    core.handle_message(at(1), nid(3), addr(3), Suspect(nid(2), 1, nid(3)))
    assert state_of(core, 2) is SUSPECT


def test_a_new_member_is_reached_by_the_current_gossip_pass() -> None:
    core = lone(members=29)  # 28 peers
    for _ in range(3):  # 9 of them taken: 19 left in this pass
        core._gossip_targets(3)
    core.handle_message(at(1), nid(40), addr(40), announce(40))
    # Without insertion the next 19 picks would be exactly the old pass, without n40.
    chosen = [core._gossip_targets(1)[0] for _ in range(19)]
    assert nid(40) in chosen


def _address_of(target: bytes) -> tuple[str, int]:
    return next(addr(i) for i in range(64) if nid(i) == target)


def test_a_direct_ack_records_the_probe_round_trip() -> None:
    core = lone(members=2)  # one peer: every probe goes to it
    samples = [0.012, 0.004, 0.008, 0.006, 0.010, 0.002, 0.006, 0.008, 0.040]
    for n, rtt in enumerate(samples, 1):
        t, ping = _start_probe(core)
        core.handle_message(at(t + rtt), ping.target, _address_of(ping.target), SwimAck(ping.seq))
        got = core.probe_rtts()
        if n < 4:
            assert got == {}  # too few samples to stand for the path
        elif n <= 8:
            assert got == {ping.target: pytest.approx(sum(samples[:n]) / n)}
    # from the ninth sample on, each weighs 1/8: 0.0070 + (0.040 - 0.0070) / 8
    assert got == {ping.target: pytest.approx(0.007 + 0.033 / 8)}


def test_an_ack_forwarded_by_a_relay_is_not_a_round_trip_sample() -> None:
    core = lone(members=5)
    t, ping = _start_probe(core)
    core.handle_timer(at(t + 0.5))
    core.take_outgoing()
    relay = next(i for i in range(1, 5) if nid(i) != ping.target)
    core.handle_message(at(t + 0.7), nid(relay), addr(relay), SwimAck(ping.seq))
    assert core.counters["membership.probes.acked"] == 1
    assert core.probe_rtts() == {}
