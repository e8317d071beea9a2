"""Membership inside ``NodeCore``: sealed packets, packet size, the user share, restarts,
and whole clusters through the simulator."""

from __future__ import annotations

import random
from collections.abc import Callable

from membership_harness import identity

from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.events import Join
from foundation_p2p.membership.frames import MEMBERSHIP_FRAME_TYPES, Announcement
from foundation_p2p.membership.state import MemberState
from foundation_p2p.membership.swim import PACKET_OVERHEAD_BYTES as SWIM_OVERHEAD
from foundation_p2p.node import PACKET_OVERHEAD_BYTES, NodeCore
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Ping, decode_frames
from simulator.scenario import parse_scenario_text
from simulator.world import run_scenario

KEYRING = Keyring(bytes(range(32)))
A = ("10.0.0.1", 7946)
B = ("10.0.0.2", 7946)
C = ("10.0.0.3", 7946)


def secret(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def make(
    addr: tuple[str, int], seed: int, wall: float = 1_700_000_000.0, **config: object
) -> NodeCore:
    core = NodeCore(
        NodeConfig(bind=addr, name=f"node-{seed}", **config),  # type: ignore[arg-type]
        now=Now(0, wall),
        keyring=KEYRING,
        stored={},
        rng=random.Random(seed),
        secret_bytes=secret(seed),
    )
    writes = core.take_writes()
    core.writes_done(Now(0, wall), [w.id for w in writes])
    return core


def test_the_overhead_bounds_agree() -> None:
    assert SWIM_OVERHEAD == PACKET_OVERHEAD_BYTES


def test_two_cores_join_over_sealed_packets_and_the_first_incarnation_is_the_boot_epoch() -> None:
    a, b = make(A, 1), make(B, 2)
    assert a.membership.local.incarnation == a.boot_epoch
    b.handle_command(Now(0, 0), Join((A,)))
    t = 0.0
    for _ in range(200):
        t += 0.05
        for core in (a, b):
            if (d := core.next_deadline()) is not None and d <= t:
                core.handle_timer(Now(t, t))
        for src, dst, src_addr in ((a, b, A), (b, a, B)):
            for _addr, data in src.take_outgoing():
                dst.handle_datagram(Now(t, t), src_addr, data)
    for core in (a, b):
        assert [m.state for m in core.membership.members()] == [MemberState.ALIVE] * 2
    assert b.membership.member(a.node_id).address == A  # type: ignore[union-attr]


def test_a_restarted_core_announces_a_higher_incarnation() -> None:
    first = make(A, 1)
    stored = {"identity": first.identity.to_bytes()}
    again = NodeCore(
        NodeConfig(bind=("10.0.0.9", 7000)),
        now=Now(0, 1_700_000_000.0),  # the wall clock even stepped back
        keyring=KEYRING,
        stored={**stored, "boot_epoch": cbor.encode(first.boot_epoch)},
        rng=random.Random(3),
        secret_bytes=secret(3),
    )
    assert again.node_id == first.node_id
    assert again.membership.local.incarnation > first.membership.local.incarnation


def _fill_queue(core: NodeCore, count: int) -> None:
    for i in range(2, count + 2):
        ann = Announcement.sign(
            identity(100 + i),
            incarnation=1,
            state=MemberState.ALIVE,
            address=(f"10.1.0.{i}", 7946),
            name=f"member-{i:03d}",
            metadata=b"\xa1drole\x66worker",
            observer=False,
        )
        core.membership.handle_message(Now(0, 0), ann.node_id, C, ann)  # not from B


def test_packets_never_exceed_max_packet_bytes_and_piggybacking_keeps_the_user_share() -> None:
    a, b = make(A, 1, max_packet_bytes=700), make(B, 2)
    _fill_queue(a, 40)
    share = a.membership.config.user_payload_share
    budget = 700 - PACKET_OVERHEAD_BYTES
    for seq in range(30):
        a._send_frame(B, Ping(seq))
    out = a.take_outgoing()
    assert out
    piggybacked = 0
    for _addr, data in out:
        assert len(data) <= 700
        _, plaintext = b.protection.open(data)
        frames = decode_frames(plaintext).frames
        member_bytes = sum(
            len(cbor.encode(f.to_cbor())) for f in frames if f.TYPE in MEMBERSHIP_FRAME_TYPES
        )
        piggybacked += member_bytes
        assert member_bytes <= budget * (1 - share)
    assert piggybacked > 0


def test_a_packet_full_of_user_frames_gets_no_piggyback() -> None:
    a, b = make(A, 1, max_packet_bytes=400), make(B, 2)
    _fill_queue(a, 10)
    for seq in range(200):
        a._send_frame(B, Ping(1_000_000 + seq))
    for _addr, data in a.take_outgoing():
        _, plaintext = b.protection.open(data)
        frames = decode_frames(plaintext).frames
        if len(frames) >= 30:  # a full packet of pings
            assert all(isinstance(f, Ping) for f in frames)


def test_messages_mode_piggybacks_updates_too() -> None:
    a = make(A, 1)
    _fill_queue(a, 5)
    a._send_frame(B, Ping(1))
    ((_addr, packet),) = a.take_outgoing_packets()
    kinds = [type(f).__name__ for f in packet.frames]
    assert kinds[0] == "Ping" and "Announcement" in kinds


CLUSTER = """\
name = "membership-core-crash"
duration = "40s"
mode = "{mode}"
[cluster]
nodes = 12
[network]
latency = "1ms..5ms"
loss = 0.01
[[fault]]
at = "12s"
op = "crash"
nodes = ["n5"]
[[workload]]
kind = "membership"
[check]
settle = "5s"
"""


def test_a_simulated_cluster_converges_and_every_live_member_detects_a_crash() -> None:
    for mode in ("bytes", "messages"):
        scenario = parse_scenario_text(CLUSTER.format(mode=mode), source="core-crash")
        result = run_scenario(scenario, seed=3)
        assert result.ok, {k: v.detail for k, v in result.invariants.items() if not v.ok}
        m = result.metrics
        assert m["membership.full_detection_s_count"] == 1
        assert m["membership.false_positives"] == 0
        # First suspicion within a few probe periods; everyone within the Lifeguard window.
        assert m["membership.first_suspect_s_max"] <= 5.0
        assert m["membership.full_detection_s_max"] <= 5.0 + 6 * 4 * 1.08 + 2.0
