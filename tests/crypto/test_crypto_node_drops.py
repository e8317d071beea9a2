"""NodeCore-level drops: two cores pass datagrams directly, tampered with in between.

Every refused datagram is counted under ``packets.dropped.<code>``, nothing it carried is
applied, and the receiving node still answers a good ping afterwards.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.durability import BOOT_EPOCH_KEY, IDENTITY_KEY
from foundation_p2p.events import Join, PeerAcked
from foundation_p2p.node import NodeCore
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Ping, encode_frames

KEY = bytes(range(32))
WALL = 1_790_000_000.0
A_ADDR = ("127.0.0.1", 7001)
B_ADDR = ("127.0.0.1", 7002)


@dataclass
class Host:
    """A NodeCore with the durable writes it has made, driven by hand."""

    core: NodeCore
    disk: dict[str, bytes] = field(default_factory=dict)

    def persist(self, now: Now) -> None:
        writes = self.core.take_writes()
        for w in writes:
            self.disk[w.key] = w.data
        self.core.writes_done(now, [w.id for w in writes])


def boot(
    seed: int, *, key: bytes = KEY, disk: dict[str, bytes] | None = None, wall: float = WALL
) -> Host:
    now = Now(0.0, wall)
    core = NodeCore(
        NodeConfig(probe_interval_s=1.0, probe_timeout_s=0.5),
        now=now,
        keyring=Keyring(key),
        stored=dict(disk or {}),
        rng=random.Random(seed),
        secret_bytes=random.Random(seed + 1000).randbytes,
    )
    host = Host(core, dict(disk or {}))
    host.persist(now)
    host.core.take_events()
    return host


def ping_from(sender: Host, now: Now) -> bytes:
    """One sealed datagram from ``sender`` to B: a ping from its static prober."""
    sender.core.handle_command(now, Join((B_ADDR,)))
    deadline = sender.core.next_deadline()
    assert deadline is not None
    sender.core.handle_timer(Now(deadline, now.wall))
    out = sender.core.take_outgoing()
    assert [addr for addr, _ in out] == [B_ADDR]
    return out[0][1]


def answers_a_good_ping(a: Host, b: Host, now: Now) -> bool:
    """A fresh ping from ``a`` reaches ``b``, ``b`` acks, and ``a`` reports PeerAcked."""
    a.core.handle_command(now, Join((B_ADDR,)))
    a.core.handle_timer(Now(now.mono + 0.2, now.wall))  # past the next probe round
    sent = a.core.take_outgoing()
    assert sent, "a has a ping to send"
    for _, data in sent:
        b.core.handle_datagram(now, A_ADDR, data)
    replies = b.core.take_outgoing()
    for addr, data in replies:
        assert addr == A_ADDR
        a.core.handle_datagram(now, B_ADDR, data)
    return any(isinstance(e, PeerAcked) for e in a.core.take_events())


@pytest.fixture
def pair() -> tuple[Host, Host]:
    return boot(1), boot(2)


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


TAMPERS = {
    "malformed": lambda d: d[:-1],
    "auth_failed": lambda d: flip(d, len(d) - 5),
    "unsupported_version": lambda d: b"\x87\x02" + d[2:],
    "limit": lambda d: d + bytes(65_508 - len(d)),
}


@pytest.mark.parametrize("code", sorted(TAMPERS))
def test_tampered_datagram_is_dropped_counted_and_the_node_still_acks(
    pair: tuple[Host, Host], code: str
) -> None:
    a, b = pair
    now = Now(10.0, WALL + 10)
    data = ping_from(a, now)
    b.core.handle_datagram(now, A_ADDR, TAMPERS[code](data))
    assert b.core.counters[f"packets.dropped.{code}"] == 1
    assert b.core.take_outgoing() == []  # nothing it carried was applied: no ack
    assert b.core.peer_addresses == {}
    assert answers_a_good_ping(a, b, Now(20.0, WALL + 20))
    assert b.core.counters[f"packets.dropped.{code}"] == 1


def test_a_packet_sealed_with_a_key_not_in_the_ring_is_unknown_key(
    pair: tuple[Host, Host],
) -> None:
    a, b = pair
    now = Now(10.0, WALL + 10)
    stranger = boot(3, key=bytes(range(50, 82)))
    b.core.handle_datagram(now, A_ADDR, ping_from(stranger, now))
    assert b.core.counters["packets.dropped.unknown_key"] == 1
    assert b.core.take_outgoing() == []
    assert answers_a_good_ping(a, b, Now(20.0, WALL + 20))


def test_a_replayed_datagram_is_dropped_and_counted(pair: tuple[Host, Host]) -> None:
    a, b = pair
    now = Now(10.0, WALL + 10)
    data = ping_from(a, now)
    b.core.handle_datagram(now, A_ADDR, data)
    assert len(b.core.take_outgoing()) == 1  # the ack
    b.core.handle_datagram(now, A_ADDR, data)
    assert b.core.counters["packets.dropped.replay"] == 1
    assert b.core.take_outgoing() == []  # no second ack for the replay
    assert answers_a_good_ping(a, b, Now(20.0, WALL + 20))


def test_after_a_restart_old_epoch_packets_are_stale_and_new_ones_accepted(
    pair: tuple[Host, Host],
) -> None:
    a, b = pair
    now = Now(10.0, WALL + 10)
    before = ping_from(a, now)
    # a restarts from its disk with the wall clock stepped back: the epoch still grows.
    a2 = boot(1, disk=a.disk, wall=WALL - 3600)
    assert a2.core.node_id == a.core.node_id
    assert a2.core.boot_epoch == a.core.boot_epoch + 1
    assert a2.disk[BOOT_EPOCH_KEY] == cbor.encode(a2.core.boot_epoch)
    assert IDENTITY_KEY in a2.disk
    after = ping_from(a2, Now(11.0, WALL + 11))
    b.core.handle_datagram(now, A_ADDR, after)
    assert len(b.core.take_outgoing()) == 1
    b.core.handle_datagram(now, A_ADDR, before)
    assert b.core.counters["packets.dropped.stale_epoch"] == 1
    assert b.core.take_outgoing() == []
    assert answers_a_good_ping(a2, b, Now(20.0, WALL + 20))


def test_an_authentic_packet_with_malformed_frames_applies_nothing(
    pair: tuple[Host, Host],
) -> None:
    a, b = pair
    now = Now(10.0, WALL + 10)
    good_then_bad = encode_frames([Ping(1)])[:-1] + b"\x82\x01\x20"  # 2nd frame: seq -1
    packet = a.core.protection.seal(b"\x82" + good_then_bad[1:])
    b.core.handle_datagram(now, A_ADDR, packet)
    assert b.core.counters["packets.dropped.malformed"] == 1
    assert b.core.take_outgoing() == []  # the good ping before the bad frame is not acked
    assert answers_a_good_ping(a, b, Now(20.0, WALL + 20))


def test_unknown_frames_are_counted_and_known_ones_still_applied(
    pair: tuple[Host, Host],
) -> None:
    a, b = pair
    now = Now(10.0, WALL + 10)
    plaintext = cbor.encode([[77, "from a later version"], [1, 5]])
    b.core.handle_datagram(now, A_ADDR, a.core.protection.seal(plaintext))
    assert b.core.counters["frames.unknown"] == 1
    assert len(b.core.take_outgoing()) == 1  # the ping was acked
