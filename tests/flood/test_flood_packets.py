"""Packet and handshake floods against one ``NodeCore``: bounded state, counted drops.

Each test floods a booted core (tests/flood/flood.py) with ``SMALL`` then ``LARGE`` attacks
of one kind, from a distinct spoofed source address each, and checks that every structure
an outside peer can reach has the same size after both floods (at most its configured
bound), that the heap grows by less than ``HEAP_SLACK`` while 3x more attacks arrive, and
that every attack was counted where the module docstrings say.
"""

from __future__ import annotations

import os
import random

from flood import HOME, KEYRING, WALL, booted_core, flood, footprint, spoofed

from foundation_p2p.clock import Now
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.protection import GossipProtection
from foundation_p2p.transport.connection import Connection
from foundation_p2p.wire.frames import Ping, encode_frames

SMALL = 500
LARGE = 2000
HEAP_SLACK = 96 * 1024
"""Heap growth allowed over LARGE - SMALL attacks: under 64 bytes per attack."""


def _dropped(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if ".dropped." in k)


def _assert_flat(result_small: dict[str, int], result_large: dict[str, int]) -> None:
    grown = {k: (result_small[k], v) for k, v in result_large.items() if v > result_small[k]}
    assert not grown, f"grew with the flood size: {grown}"


def test_garbage_datagrams_leave_no_state_and_are_counted() -> None:
    core = booted_core()
    rng = random.Random(7)

    def attack(i: int) -> None:
        data = rng.randbytes(rng.randint(1, 1400))
        core.handle_datagram(Now(1.0, WALL + 1), spoofed(i), data)

    res = flood(attack, lambda: footprint(core), SMALL, LARGE)
    _assert_flat(res.small, res.large)
    assert res.large["peer_addresses"] == 0 and res.large["connections"] == 0
    assert _dropped(core.counters) == LARGE
    assert res.heap_growth < HEAP_SLACK, res


def test_unauthenticated_packets_from_many_senders_keep_the_subkey_cache_bounded() -> None:
    # Well-formed gossip packets under our key id, from a new sender id and epoch each, with
    # a broken tag: each one derives (and caches) a subkey before the AEAD check refuses it.
    core = booted_core()
    rng = random.Random(8)
    stranger = Keyring(bytes(range(1, 33)))

    def attack(i: int) -> None:
        forged = GossipProtection(KEYRING if i % 4 else stranger, rng.randbytes(16), 1 + i)
        data = bytearray(forged.seal(encode_frames([Ping(1)])))
        data[-1] ^= 0x01
        core.handle_datagram(Now(1.0, WALL + 1), spoofed(i), bytes(data))

    # past the subkey cache's bound (1024) already at the small flood's end
    small, large = 1500, 6000
    res = flood(attack, lambda: footprint(core), small, large)
    _assert_flat(res.small, res.large)
    assert res.large["subkey_cache"] == 1024
    assert res.large["replay_senders"] == 0 and res.large["peer_addresses"] == 0
    assert core.counters["packets.dropped.unknown_key"] == large // 4
    assert core.counters["packets.dropped.auth_failed"] == large * 3 // 4
    assert _dropped(core.counters) == large
    assert res.heap_growth < HEAP_SLACK, res


def test_replayed_packets_are_counted_and_cost_nothing() -> None:
    core = booted_core()
    peer = Identity.generate(random.Random(9).randbytes)
    sender = GossipProtection(KEYRING, peer.node_id, 5)
    captured = sender.seal(encode_frames([Ping(1)]))
    core.handle_datagram(Now(1.0, WALL + 1), ("10.9.9.9", 1), captured)  # the original
    assert core.counters["packets.received"] == 1
    core.take_outgoing()

    def attack(i: int) -> None:
        core.handle_datagram(Now(1.0, WALL + 1), spoofed(i), captured)
        if i % 64 == 0:
            core.take_outgoing()

    res = flood(attack, lambda: footprint(core), SMALL, LARGE)
    _assert_flat(res.small, res.large)
    assert core.counters["packets.dropped.replay"] == LARGE
    assert res.large["peer_addresses"] == 1
    assert res.heap_growth < HEAP_SLACK, res


def test_authenticated_senders_beyond_the_tracking_bound_are_forgotten() -> None:
    # An insider (it holds the cluster key) pings from a new identity each time: every
    # per-sender table stays within max_tracked_senders, least recently heard forgotten.
    bound = 64
    core = booted_core(max_tracked_senders=bound, extra={"transport": {"max_peer_epochs": bound}})
    rng = random.Random(10)
    now = Now(1.0, WALL + 1)

    def attack(i: int) -> None:
        sender = GossipProtection(KEYRING, rng.randbytes(16), 1 + i)
        core.handle_datagram(now, spoofed(i), sender.seal(encode_frames([Ping(1)])))
        core.take_outgoing()
        core.take_events()

    # past the subkey cache's fixed bound (1024) already at the small flood's end
    small, large = 1100, 4400
    res = flood(attack, lambda: footprint(core), small, large)
    _assert_flat(res.small, res.large)
    assert res.large["peer_addresses"] == bound
    assert res.large["replay_senders"] == bound
    assert res.large["peer_epochs"] == bound
    assert res.large["subkey_cache"] == 1024
    assert core.counters["packets.received"] == large
    assert res.heap_growth < HEAP_SLACK, res


def test_handshake_flood_keeps_half_open_connections_bounded_and_counted() -> None:
    # Many new connection attempts, each from a new identity and address, half with a key
    # we do not hold; none is ever completed (the attacker never answers).
    core = booted_core()
    cfg = core.transport.config
    foreign = Keyring(bytes(range(2, 34)))
    identities = [Identity.generate(os.urandom) for _ in range(8)]
    rng = random.Random(11)
    initials = [
        Connection.connect(0.0, identities[k % 8], KEYRING if k % 2 else foreign,
                           rng.randbytes).take_datagrams(0.0)[0]
        for k in range(16)
    ]
    now = Now(1.0, WALL + 1)

    def attack(i: int) -> None:
        # the same 16 handshakes replayed from ever new addresses: each address is new
        # state to an endpoint that keys half-open connections by source
        core.handle_datagram(now, spoofed(i), initials[i % 16])
        core.take_outgoing()

    res = flood(attack, lambda: footprint(core), SMALL // 2, LARGE // 2)
    _assert_flat(res.small, res.large)
    assert res.large["half_open"] == cfg.max_half_open
    assert res.large["initials"] == cfg.max_half_open
    assert res.large["half_open_addrs"] <= cfg.max_half_open
    refused = core.counters["transport.dropped.half_open_full"]
    assert refused + core.counters["transport.accepted"] + _foreign_refused(core) == LARGE // 2
    assert refused > 0
    assert res.heap_growth < HEAP_SLACK, res


def _foreign_refused(core: object) -> int:
    counters = core.counters  # type: ignore[attr-defined]
    return sum(v for k, v in counters.items()
               if k.startswith("transport.dropped.") and not k.endswith("half_open_full"))


_ = HOME
