"""NodeCore, the sans-I/O composition: boot, durability barrier, packing, bounded queues."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.durability import BOOT_EPOCH_KEY, IDENTITY_KEY
from foundation_p2p.errors import StorageError
from foundation_p2p.events import Join, Leave, PeerAcked, PeerUnanswered, Started
from foundation_p2p.node import NodeCore
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Ping
from foundation_p2p.wire.packet import parse_packet

KEYRING = Keyring(bytes(range(32)))
A = ("10.0.0.1", 7946)
B = ("10.0.0.2", 7946)


def secret(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes


def make(
    addr: tuple[str, int] = A,
    *,
    stored: dict[str, bytes] | None = None,
    wall: float = 1_700_000_000.0,
    seed: int = 1,
    **config: object,
) -> NodeCore:
    return NodeCore(
        NodeConfig(bind=addr, **config),  # type: ignore[arg-type]
        now=Now(0.0, wall),
        keyring=KEYRING,
        stored=stored or {},
        rng=random.Random(seed),
        secret_bytes=secret(seed),
    )


def confirm(core: NodeCore, now: Now) -> dict[str, bytes]:
    writes = core.take_writes()
    core.writes_done(now, [w.id for w in writes])
    return {w.key: w.data for w in writes}


def test_first_boot_generates_identity_and_epoch_as_durable_writes() -> None:
    core = make()
    writes = {w.key: w.data for w in core.take_writes()}
    assert set(writes) == {IDENTITY_KEY, BOOT_EPOCH_KEY}
    assert cbor.decode(writes[BOOT_EPOCH_KEY]) == core.boot_epoch == 1_700_000_000_000
    (started,) = core.take_events()
    assert started == Started(core.node_id, core.boot_epoch, new_identity=True)


def test_restart_keeps_identity_and_epoch_grows_even_if_clock_stepped_back() -> None:
    first = make(wall=2_000_000_000.0)
    stored = confirm(first, Now(0, 0))
    second = make(stored=stored, wall=1_000_000_000.0, seed=2)
    assert second.node_id == first.node_id
    assert second.boot_epoch == first.boot_epoch + 1
    assert [w.key for w in second.take_writes()] == [BOOT_EPOCH_KEY]


def test_corrupt_stored_state_is_refused_with_the_key_named() -> None:
    with pytest.raises(StorageError, match="identity"):
        make(stored={IDENTITY_KEY: b"\x00garbage"})
    with pytest.raises(StorageError, match="boot_epoch"):
        make(stored={BOOT_EPOCH_KEY: cbor.encode("soon")})


def test_datagrams_wait_for_durable_writes() -> None:
    core = make()
    core.handle_command(Now(0, 0), Join((B,)))
    core.handle_timer(Now(1.0, 0))
    assert core.take_outgoing() == []
    assert core.pending_writes == 2
    confirm(core, Now(1.0, 0))
    out = core.take_outgoing()
    assert [addr for addr, _ in out] == [B]
    header, _, _ = parse_packet(out[0][1])
    assert header.sender == core.node_id and header.packet_number == 0


def _pair() -> tuple[NodeCore, NodeCore]:
    a, b = make(A, seed=1), make(B, seed=2)
    for n in (a, b):
        confirm(n, Now(0, 0))
        n.take_events()
    return a, b


def _exchange(a: NodeCore, b: NodeCore, t: float) -> None:
    for _ in range(3):
        for src, dst, src_addr in ((a, b, A), (b, a, B)):
            for _addr, data in src.take_outgoing():
                dst.handle_datagram(Now(t, t), src_addr, data)


def test_ping_is_acked_and_the_pinger_is_adopted_as_a_target() -> None:
    a, b = _pair()
    a.handle_command(Now(0, 0), Join((B,)))
    a.handle_timer(Now(0.2, 0.2))
    _exchange(a, b, 0.25)
    acked = [e for e in a.take_events() if isinstance(e, PeerAcked)]
    assert len(acked) == 1 and acked[0].node_id == b.node_id and acked[0].address == B
    assert acked[0].rtt_s == pytest.approx(0.05)
    assert A in b.prober.targets
    assert b.peer_addresses[a.node_id] == A


def test_unanswered_ping_reports_after_the_timeout() -> None:
    a = make()
    confirm(a, Now(0, 0))
    a.take_events()
    a.handle_command(Now(0, 0), Join((B,)))
    a.handle_timer(Now(0.2, 0))
    assert a.take_outgoing()
    deadline = a.next_deadline()
    assert deadline == pytest.approx(0.2 + a.config.probe_timeout_s)
    a.handle_timer(Now(deadline, 0))
    assert [type(e) for e in a.take_events()] == [PeerUnanswered]
    assert a.counters["probe.unanswered"] == 1


def test_leave_stops_probing() -> None:
    a = make()
    confirm(a, Now(0, 0))
    a.handle_command(Now(0, 0), Join((B,)))
    a.handle_command(Now(0, 0), Leave())
    assert a.next_deadline() is None


def test_frames_pack_into_packets_no_larger_than_the_limit() -> None:
    a = make(max_packet_bytes=256)
    confirm(a, Now(0, 0))
    for seq in range(200):
        a._send_frame(B, Ping(seq + 1_000_000))
    out = a.take_outgoing()
    assert len(out) > 1
    assert all(len(data) <= 256 for _, data in out)
    numbers = [parse_packet(data)[0].packet_number for _, data in out]
    assert numbers == list(range(len(out)))


def test_outgoing_queue_is_bounded_and_overflow_counted() -> None:
    a = make(max_outgoing_datagrams=2)
    confirm(a, Now(0, 0))
    for i in range(5):
        a._send_frame((f"10.0.1.{i}", 1), Ping(i))
    assert len(a.take_outgoing()) == 2
    assert a.counters["outgoing.dropped_full"] == 3


def test_event_queue_drops_oldest_and_counts() -> None:
    a = make(max_events=2)
    confirm(a, Now(0, 0))
    a.handle_command(Now(0, 0), Join(tuple((f"10.0.1.{i}", 1) for i in range(4))))
    a.handle_timer(Now(0.2, 0))
    a.handle_timer(Now(1.0, 0))
    events = a.take_events()
    assert len(events) == 2 and all(isinstance(e, PeerUnanswered) for e in events)
    assert a.counters["events.dropped_full"] == 3


def test_packets_from_our_own_node_id_are_dropped() -> None:
    a = make()
    confirm(a, Now(0, 0))
    a._send_frame(B, Ping(1))
    ((_, data),) = a.take_outgoing()
    a.handle_datagram(Now(0, 0), B, data)
    assert a.counters["packets.dropped.from_self"] == 1


def test_unknown_command_is_refused() -> None:
    a = make()
    with pytest.raises(ValueError, match="no subsystem"):
        a.handle_command(Now(0, 0), object())  # type: ignore[arg-type]


def test_membership_switched_off_is_built_but_not_driven() -> None:
    on = make()
    off = make(extra={"membership": {"enabled": False}})
    assert "membership" in on.subsystems and on.piggyback is not None
    assert "membership" not in off.subsystems and off.piggyback is None
    assert off.membership.members() == [off.membership.local]
    confirm(off, Now(0, 0))
    off.handle_command(Now(0, 0), Join((B,)))
    off.handle_timer(Now(0.2, 0))
    kinds = {type(f).__name__ for _, data in off.take_outgoing() for f in _frames_of(data)}
    assert kinds == {"Ping"}


def _frames_of(data: bytes) -> list[object]:
    from foundation_p2p.crypto.protection import GossipProtection
    from foundation_p2p.wire.frames import decode_frames

    receiver = GossipProtection(KEYRING, bytes(16), 1)
    _, plaintext = receiver.open(data)
    return list(decode_frames(plaintext).frames)


def test_a_frame_its_subsystem_refuses_is_dropped_and_counted() -> None:
    from foundation_p2p.errors import SignatureError

    a, b = _pair()

    class Refusing:
        frame_types = ()

        def handle_message(self, now: Now, sender: bytes, addr: object, frame: object) -> None:
            raise SignatureError("forged")

    b._routes[Ping.TYPE] = Refusing()  # type: ignore[assignment]
    a._send_frame(B, Ping(7))
    _exchange(a, b, 0.1)
    assert b.counters["frames.dropped.bad_signature"] == 1
