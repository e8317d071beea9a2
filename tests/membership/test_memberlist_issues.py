"""The hashicorp/memberlist complaints issue 4 names, each shown fixed by a test named for it.

- memberlist#222: dead peers are never retried after a partition, so the halves stay apart;
- memberlist#157: a node restarting on a new address conflicts with itself;
- memberlist#299: membership gossip crowds out user messages near 1000 members;
- memberlist#253: left members are never purged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from membership_harness import EPOCH, Net, identity

from foundation_p2p.addresses import Address
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.events import Join, Leave
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.membership.events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberUpdated,
)
from foundation_p2p.membership.frames import (
    MEMBERSHIP_FRAME_TYPES,
    Announcement,
    SwimAck,
    SwimPing,
)
from foundation_p2p.membership.state import MemberState
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.node import PACKET_OVERHEAD_BYTES, NodeCore
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import DEFAULT_LIMITS

ALIVE, FAILED, LEFT = MemberState.ALIVE, MemberState.FAILED, MemberState.LEFT


def addr(i: int) -> Address:
    return (f"n{i}", 7946)


def nid(i: int) -> bytes:
    return identity(i).node_id


def joined_cluster(n: int, **config: Any) -> Net:
    net = Net(**config)
    cores = [net.add(f"n{i}") for i in range(1, n + 1)]
    for core in cores[1:]:
        net.command(core, Join((addr(1),)))
    net.run_until(5.0)
    for core in cores:
        assert len(core.members()) == n
    return net


def states(core: SwimMembership) -> dict[bytes, MemberState]:
    return {m.node_id: m.state for m in core.members()}


# -- memberlist#222 ----------------------------------------------------------------------------


def _partition(net: Net, side: set[Address], seconds: float) -> float:
    net.cut = lambda s, d: (s in side) != (d in side)
    net.run_until(net.t + seconds)
    net.cut = lambda s, d: False
    return net.t


def test_memberlist_222_dead_peers_are_retried_after_a_partition_and_the_halves_merge() -> None:
    net = joined_cluster(6, dead_retry_interval_s=2.0, dead_retry_max_interval_s=8.0)
    side = {addr(1), addr(2), addr(3)}
    healed = _partition(net, side, 60.0)
    assert states(net.node("n1"))[nid(5)] is FAILED  # each half declared the other failed
    assert states(net.node("n5"))[nid(1)] is FAILED
    net.run_until(healed + 30.0)
    for core in net.nodes.values():
        assert set(states(core).values()) == {ALIVE}, states(core)
    answered = sum(c.counters["membership.dead_retry.answered"] for c in net.nodes.values())
    assert answered >= 1


def test_memberlist_222_a_long_partition_still_heals_within_the_backoff_cap() -> None:
    """After ten minutes apart the retries run at the cap (8 s here, x1.5 jitter at most):
    the halves find each other within one capped gap of the heal, and the retries cost a
    few pings per failed member per minute, not one per interval."""
    net = joined_cluster(6, dead_retry_interval_s=2.0, dead_retry_max_interval_s=8.0)
    side = {addr(1), addr(2), addr(3)}
    before = sum(c.counters["membership.dead_retries"] for c in net.nodes.values())
    healed = _partition(net, side, 600.0)
    retries = sum(c.counters["membership.dead_retries"] for c in net.nodes.values()) - before
    # 6 nodes x 3 failed members each, at most one ping per 8 s after the first few.
    assert retries <= 6 * 3 * (600 / 8 + 4)
    net.run_until(healed + 8.0 * 1.5 + 10.0)
    for core in net.nodes.values():
        assert set(states(core).values()) == {ALIVE}, states(core)


def test_memberlist_222_without_dead_retry_the_halves_stay_apart() -> None:
    """The control: with retries off (dead_retry_for_s = 0) nothing brings the halves back
    (what memberlist does), so the tests above can fail."""
    net = joined_cluster(6, dead_retry_for_s=0.0)
    healed = _partition(net, {addr(1), addr(2), addr(3)}, 60.0)
    net.run_until(healed + 30.0)
    assert states(net.node("n1"))[nid(5)] is FAILED
    assert sum(c.counters["membership.dead_retries"] for c in net.nodes.values()) == 0


# -- memberlist#157 ----------------------------------------------------------------------------


def _restart_elsewhere(net: Net, wait: float) -> SwimMembership:
    old = net.node("n4")
    inc = old.local.incarnation
    net.crash(old)
    net.run_until(net.t + wait)
    new = net.add("n4-again", number=4, address=("10.9.9.9", 8000), incarnation=inc + 1000)
    net.record = True
    net.command(new, Join((addr(1),)))
    return new


def test_memberlist_157_a_node_restarting_on_a_new_address_is_the_same_member() -> None:
    net = joined_cluster(5)
    new = _restart_elsewhere(net, 0.5)
    restarted = net.t
    net.run_until(restarted + 10.0)
    for name in ("n1", "n2", "n3", "n5"):
        core = net.node(name)
        members = [m for m in core.members() if m.node_id == nid(4)]
        assert len(members) == 1
        (m,) = members
        assert m.state is ALIVE and m.address == ("10.9.9.9", 8000)
        assert not net.of_type(name, MemberFailed)
        (updated,) = [e for e in net.of_type(name, MemberUpdated) if e.member.node_id == nid(4)]
        assert updated.member.address == ("10.9.9.9", 8000)
    # No conflict: the restarted node never had to refute, nobody refuted, and nobody
    # probes the old address after learning the new one.
    assert new.counters["membership.refutations"] == 0
    assert all(c.counters["membership.refutations"] == 0 for c in net.nodes.values())
    late = [
        f
        for t, _, dst, f in net.sent
        if t > restarted + 3.0 and dst == addr(4) and isinstance(f, SwimPing)
    ]
    assert not late
    assert len(new.members()) == 5


def test_memberlist_157_a_restart_after_being_declared_failed_rejoins_as_the_same_member() -> None:
    net = joined_cluster(5)
    _restart_elsewhere(net, 40.0)
    assert states(net.node("n1"))[nid(4)] is FAILED
    net.run_until(net.t + 10.0)
    for name in ("n1", "n2", "n3", "n5"):
        (m,) = [m for m in net.node(name).members() if m.node_id == nid(4)]
        assert m.state is ALIVE and m.address == ("10.9.9.9", 8000)
        assert [e.member.address for e in net.of_type(name, MemberJoined)][-1] == m.address


# -- memberlist#299 ----------------------------------------------------------------------------


@dataclass(slots=True)
class Blob:
    """A stand-in user frame: ``[200, seq, payload]`` (not registered; encoded only)."""

    TYPE: ClassVar[int] = 200
    seq: int
    payload: bytes

    def to_cbor(self) -> list[Any]:
        return [self.TYPE, self.seq, self.payload]


KEYRING = Keyring(bytes(range(32)))
A = ("10.0.0.1", 7946)
B = ("10.0.0.2", 7946)


def _core(seed: int, members: int) -> NodeCore:
    core = NodeCore(
        NodeConfig(bind=A, name="a"),
        now=Now(0, EPOCH),
        keyring=KEYRING,
        stored={},
        rng=random.Random(seed),
        secret_bytes=random.Random(seed).randbytes,
    )
    core.writes_done(Now(0, EPOCH), [w.id for w in core.take_writes()])
    for i in range(members):
        ann = Announcement.sign(
            identity(1000 + i),
            incarnation=1,
            state=ALIVE,
            address=(f"10.1.{i // 250}.{i % 250}", 7946),
            name=f"member-{i:04d}",
            metadata=b"\xa1drole\x66worker",
            observer=False,
        )
        core.membership.handle_message(Now(0, EPOCH), ann.node_id, ("10.0.0.3", 7946), ann)
    core.take_outgoing()
    core.take_events()
    return core


def _send_blobs(core: NodeCore, sizes: list[int]) -> list[list[list[Any]]]:
    """Send one blob per size to B, interleaved with gossip rounds; the packets' frames."""
    packets: list[list[list[Any]]] = []
    t = 0.0
    for seq, size in enumerate(sizes):
        t += 0.05
        d = core.next_deadline()
        if d is not None and d <= t:
            core.handle_timer(Now(t, EPOCH + t))
        core._send_frame(B, Blob(seq, bytes(size)))  # type: ignore[arg-type]
        for _, data in core.take_outgoing():
            assert len(data) <= core.config.max_packet_bytes
            _, plaintext = core.protection.open(data)
            packets.append(cbor.decode(plaintext))
    return packets


def test_memberlist_299_user_payloads_keep_their_share_near_1000_members() -> None:
    busy = _core(1, 1000)
    assert busy.membership.pending_broadcasts() >= 1000  # a full broadcast queue
    quiet = _core(2, 0)
    rng = random.Random(5)
    budget = busy.config.max_packet_bytes - PACKET_OVERHEAD_BYTES - 3
    share = busy.membership.config.user_payload_share
    user_room = budget - int(budget * (1 - share))  # 334 bytes of 1333 with the defaults
    sizes = [rng.randrange(1, user_room - 8) for _ in range(300)]
    with_queue = _send_blobs(busy, sizes)
    without = _send_blobs(quiet, sizes)

    def blobs(packets: list[list[list[Any]]]) -> list[int]:
        return [f[1] for p in packets for f in p if f[0] == Blob.TYPE]

    # Every user frame goes out at once, in order, whatever the membership load.
    assert blobs(with_queue) == blobs(without) == list(range(len(sizes)))
    user_packets = [p for p in with_queue if any(f[0] == Blob.TYPE for f in p)]
    quiet_packets = [p for p in without if any(f[0] == Blob.TYPE for f in p)]
    assert len(user_packets) == len(quiet_packets)  # nothing displaced into extra packets
    piggybacked = 0
    for frames in user_packets:
        member_bytes = sum(len(cbor.encode(f)) for f in frames if f[0] in MEMBERSHIP_FRAME_TYPES)
        user_bytes = sum(len(cbor.encode(f)) for f in frames if f[0] == Blob.TYPE)
        piggybacked += member_bytes
        # Membership never takes the user share: what is left for user frames in every
        # packet is at least user_payload_share of it.
        assert member_bytes <= budget * (1 - share)
        assert user_bytes + member_bytes <= budget
    assert piggybacked > 0  # membership still rides along, within its share


# -- memberlist#253 ----------------------------------------------------------------------------


def test_memberlist_253_left_members_are_reaped_and_state_stays_bounded() -> None:
    net = joined_cluster(6, reap_after_s=20.0)
    for name in ("n5", "n6"):
        net.command(net.node(name), Leave())
    net.run_until(net.t + 5.0)
    for name in ("n1", "n2", "n3", "n4"):
        assert states(net.node(name))[nid(5)] is LEFT
        assert {e.member.node_id for e in net.of_type(name, MemberLeft)} == {nid(5), nid(6)}
        assert not net.of_type(name, MemberFailed)
    net.crash(net.node("n5"))
    net.crash(net.node("n6"))
    net.run_until(net.t + 25.0)
    for name in ("n1", "n2", "n3", "n4"):
        core = net.node(name)
        assert set(states(core)) == {nid(i) for i in (1, 2, 3, 4)}
        assert {e.node_id for e in net.of_type(name, MemberReaped)} == {nid(5), nid(6)}


def test_memberlist_253_member_churn_keeps_the_table_and_tombstones_bounded() -> None:
    """2000 members come and leave over 400 s; reap_after_s = 20: the table never holds
    more than the live members plus those that left in the last reap_after_s (+ one
    reaping check), and tombstones expire too."""
    reap = 20.0
    core = SwimMembership(
        MembershipConfig(reap_after_s=reap, max_members=10_000),
        identity=identity(1),
        address=addr(1),
        name="n1",
        now=Now(0, EPOCH),
        rng=random.Random(1),
        counters=Counters(),
        limits=DEFAULT_LIMITS,
    )
    t = 0.0
    peak = 0
    for i in range(2, 2002):
        t += 0.2
        now = Now(t, EPOCH + t)
        ident = identity(i)
        core.handle_message(now, ident.node_id, addr(i), _ann(ident, i, 1, ALIVE))
        if i > 10:  # a member that came 8 steps ago leaves
            j = i - 8
            core.handle_message(now, nid(j), addr(j), _ann(identity(j), j, 2, LEFT))
        while (d := core.next_deadline()) is not None and d <= t:
            core.handle_timer(Now(d, EPOCH + d))
        _answer_probes(core, now)
        peak = max(peak, len(core.members()))
        assert core.pending_broadcasts() <= core.config.max_broadcasts
    check = max(0.1, min(10.0, reap / 10))
    assert peak <= 1 + 9 + (reap + check) / 0.2 + 1
    end = t + 2 * reap + 2 * check
    while (d := core.next_deadline()) is not None and d <= end:
        core.handle_timer(Now(d, EPOCH + d))
        _answer_probes(core, Now(d, EPOCH + d))
    assert len(core.members()) == 1 + 9  # self and the members that never left
    assert len(core._tombstones) == 0  # expired too
    assert core.counters["membership.reaped"] == 2001 - 9 - 1


def _answer_probes(core: SwimMembership, now: Now) -> None:
    """Every member that is still in the table answers the core's pings."""
    for dest, frame in core.take_outgoing():
        if isinstance(frame, SwimPing):
            core.handle_message(now, frame.target, dest, SwimAck(frame.seq))  # type: ignore[arg-type]


def _ann(ident: Any, i: int, inc: int, state: MemberState) -> Announcement:
    return Announcement.sign(
        ident,
        incarnation=inc,
        state=state,
        address=addr(i),
        name=f"n{i}",
        metadata=b"",
        observer=False,
    )
