"""A member that missed a late joiner's record learns it in seconds, not at the next
periodic push-pull (spec/membership.md, "Repairing a missed join"): the joiner gossips its
own record for a whole pass of its gossip list, and a frame from a member that is not in
the table makes the receiver pull from it. One test per sentence."""

from __future__ import annotations

import random

from membership_harness import EPOCH, Net, identity

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.events import Join
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.membership.frames import Announcement, PushPull, SwimPing
from foundation_p2p.membership.state import MemberState
from foundation_p2p.membership.swim import (
    MAX_UNKNOWN_SENDERS,
    UNKNOWN_PULL_COOLDOWN_MULT,
    UNKNOWN_PULL_DELAY_MULT,
    SwimMembership,
)
from foundation_p2p.wire.limits import DEFAULT_LIMITS


def at(t: float) -> Now:
    return Now(t, EPOCH + t)


def addr(i: int) -> tuple[str, int]:
    return (f"n{i}", 7946)


def nid(i: int) -> bytes:
    return identity(i).node_id


def announce(i: int, inc: int = 1) -> Announcement:
    return Announcement.sign(
        identity(i), incarnation=inc, state=MemberState.ALIVE, address=addr(i),
        name=f"n{i}", metadata=b"", observer=False,
    )


def lone(members: int = 5, **config: object) -> SwimMembership:
    core = SwimMembership(
        MembershipConfig(**config),  # type: ignore[arg-type]
        identity=identity(1), address=addr(1), name="n1", now=at(0), rng=random.Random(1),
        counters=Counters(), limits=DEFAULT_LIMITS, incarnation=1,
    )
    for i in range(2, members + 1):
        core.handle_message(at(0), nid(i), addr(i), announce(i))
    core.take_events()
    core.take_outgoing()
    return core


def pulls_to(core: SwimMembership, dest: tuple[str, int]) -> list[PushPull]:
    return [f for d, f in core.take_outgoing() if d == dest and isinstance(f, PushPull)]


def test_a_frame_from_an_unknown_member_makes_the_receiver_pull_from_it() -> None:
    core = lone()
    delay = UNKNOWN_PULL_DELAY_MULT * core.config.probe_interval_s
    core.handle_message(at(1.0), nid(9), addr(9), SwimPing(7, nid(1)))
    assert core.member(nid(9)) is None
    core.handle_timer(at(1.0 + delay - 0.01))
    assert not pulls_to(core, addr(9)), "waits: the record may be on its way"
    core.handle_timer(at(1.0 + delay))
    sent = pulls_to(core, addr(9))
    assert sent and sent[0].reply, "a push-pull that asks for the sender's table"
    assert core.counters["membership.unknown_sender.pulled"] == 1
    # the answer's first entry is the sender's own record
    core.handle_message(at(1.5 + delay), nid(9), addr(9), announce(9))
    assert core.member(nid(9)) is not None


def test_no_pull_when_the_record_arrives_within_the_delay() -> None:
    core = lone()
    core.handle_message(at(1.0), nid(9), addr(9), SwimPing(7, nid(1)))
    core.handle_message(at(1.2), nid(3), addr(3), announce(9))
    core.handle_timer(at(3.0))
    assert not pulls_to(core, addr(9))
    assert core.counters["membership.unknown_sender.learned"] == 1
    assert core.counters["membership.unknown_sender.pulled"] == 0


def test_a_sender_is_pulled_from_at_most_once_per_cooldown() -> None:
    core = lone()
    probe = core.config.probe_interval_s
    core.handle_message(at(1.0), nid(9), addr(9), SwimPing(7, nid(1)))
    core.handle_timer(at(1.0 + probe))
    assert pulls_to(core, addr(9))
    t = 1.0 + probe + 0.5
    core.handle_message(at(t), nid(9), addr(9), SwimPing(8, nid(1)))
    core.handle_timer(at(t + probe))
    assert not pulls_to(core, addr(9)), "inside the cooldown"
    t = 1.0 + probe + UNKNOWN_PULL_COOLDOWN_MULT * probe + 0.1
    core.handle_message(at(t), nid(9), addr(9), SwimPing(9, nid(1)))
    core.handle_timer(at(t + probe))
    assert pulls_to(core, addr(9)), "after it"
    assert core.counters["membership.unknown_sender.pulled"] == 2


def test_noted_unknown_senders_are_bounded() -> None:
    core = lone()
    for i in range(MAX_UNKNOWN_SENDERS + 5):
        core.handle_message(at(1.0), nid(100 + i), addr(100 + i), SwimPing(i, nid(1)))
    assert len(core._unknown) == MAX_UNKNOWN_SENDERS
    assert core.counters["membership.unknown_sender.dropped"] == 5


def test_an_observer_or_a_leaving_node_does_not_pull_from_unknown_senders() -> None:
    obs = lone(observer=True)
    obs.handle_message(at(1.0), nid(9), addr(9), SwimPing(7, nid(1)))
    assert not obs._unknown
    core = lone()
    core.leaving = True
    core.handle_message(at(1.0), nid(9), addr(9), SwimPing(7, nid(1)))
    assert not core._unknown


def test_a_joiner_gossips_its_own_record_to_every_member_once_joined() -> None:
    net = Net(seed=3)
    names = [f"m{i}" for i in range(12)]
    for name in names:
        net.add(name)
    seed = net.node("m0")
    for name in names[1:]:
        net.command(net.node(name), Join((("m0", 7946),)))
    net.run_until(20.0)
    joiner = net.add("late")
    net.record = True
    net.command(joiner, Join((("m0", 7946),)))
    net.run_until(30.0)
    direct = {
        dst for _, src, dst, f in net.sent
        if src == ("late", 7946) and isinstance(f, Announcement) and f.node_id == joiner.node_id
    }
    assert direct == {(name, 7946) for name in names}, "every member heard it from the joiner"
    assert seed.member(joiner.node_id) is not None


def test_a_member_that_misses_every_copy_of_a_joiners_record_pulls_it() -> None:
    net = Net(seed=5, push_pull_interval_s=600.0)  # no periodic push-pull in this test
    names = [f"m{i}" for i in range(10)]
    for name in names:
        net.add(name)
    for name in names[1:]:
        net.command(net.node(name), Join((("m0", 7946),)))
    net.run_until(20.0)
    victim = net.node("m7")
    joiner = net.add("late")
    # every copy of the joiner's record sent to the victim is lost, its own included (this
    # harness sends each frame alone); its probe of the victim (within one pass of its
    # probe list, 11 s here) and push-pull tables still arrive
    net.drop = lambda src, dst, f: (
        dst == ("m7", 7946) and isinstance(f, Announcement) and f.node_id == joiner.node_id
    )
    net.command(joiner, Join((("m0", 7946),)))
    net.run_until(36.0)
    assert victim.member(joiner.node_id) is not None
    assert victim.counters["membership.unknown_sender.pulled"] >= 1


def test_an_observer_refreshes_soon_after_joining_then_less_and_less_often() -> None:
    """An observer receives no gossip: a member's record that changes just after the
    observer joined (a Raft node announcing its eligibility) reaches it at its next
    refresh, which comes ``probe_interval_s`` after the join, then at doubling gaps."""
    net = Net(seed=11)
    for name in ("a", "b", "c"):
        net.add(name)
    for name in ("b", "c"):
        net.command(net.node(name), Join((("a", 7946),)))
    net.run_until(5.0)
    obs = net.add("obs", observer=True)
    net.command(obs, Join((("a", 7946),)))
    net.run_until(5.2)
    assert obs.joined
    b = net.node("b")
    b.set_extension(net.now(), 2, b"\x01")
    net._pump(net.addr(b))
    net.run_until(7.5)  # within the first refresh gaps (about 0.5-1 s, then 1-2 s)
    seen = obs.member(b.node_id)
    assert seen is not None and seen.extensions.get(2) == b"\x01"
    # the gaps double: few refreshes over a minute, then the normal interval
    net.run_until(65.0)
    sent = obs.counters["membership.push_pull.sent"]
    assert 6 <= sent <= 12, sent
    assert obs._push_pull_interval() == min(
        obs.config.push_pull_interval(obs.alive_count()), obs.config.observer_expiry_s / 3
    )
