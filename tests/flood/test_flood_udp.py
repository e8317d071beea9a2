"""A real node on 127.0.0.1 flooded over UDP: garbage, forged, replayed packets and
handshakes, at two flood sizes; its tables stay bounded and every datagram is counted.

The flood goes in batches of ``BATCH`` datagrams, each followed by an authenticated ping
from the same socket: a node reads its socket in order, so once the ping is answered the
batch was handled (and the socket buffer never holds more than one batch).
"""

from __future__ import annotations

import os
import random

import trio
from flood import footprint

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.protection import GossipProtection
from foundation_p2p.runtime import open_node
from foundation_p2p.runtime.rawpeer import RawPeer
from foundation_p2p.transport.connection import Connection
from foundation_p2p.wire.frames import Ping, encode_frames

BATCH = 100
SMALL = 400
LARGE = 1600
WAIT_S = 10.0


def _dropped(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if ".dropped." in k)


async def test_udp_flood_of_bad_packets_and_handshakes_stays_bounded() -> None:
    keyring = Keyring.generate(os.urandom)
    rng = random.Random(5)
    config = NodeConfig(bind=("127.0.0.1", 0), probe_interval_s=0.2, probe_timeout_s=0.2)
    async with open_node(config, keyring=keyring) as node:
        peer = await RawPeer.open(keyring)
        try:
            with trio.fail_after(WAIT_S):
                await peer.ping(node.address)
            captured = peer.seal([peer.next_ping()])
            await peer.send(node.address, captured)  # the original of the replays
            stranger = Keyring.generate(os.urandom)
            ident = Identity.generate(os.urandom)
            initials = [Connection.connect(0.0, ident, keyring if k % 2 else stranger,
                                           rng.randbytes).take_datagrams(0.0)[0]
                        for k in range(8)]

            def attack(i: int) -> bytes:
                kind = i % 4
                if kind == 0:
                    return rng.randbytes(rng.randint(1, 1400))
                if kind == 1:
                    forged = GossipProtection(keyring, rng.randbytes(16), 1 + i)
                    data = bytearray(forged.seal(encode_frames([Ping(1)])))
                    data[-1] ^= 1
                    return bytes(data)
                if kind == 2:
                    return captured
                return initials[(i // 4) % 8]

            async def flood(start: int, stop: int) -> None:
                for base in range(start, stop, BATCH):
                    for i in range(base, min(stop, base + BATCH)):
                        await peer.send(node.address, attack(i))
                    with trio.fail_after(WAIT_S):
                        await peer.ping(node.address)

            core = node.core
            before = _dropped(core.counters)
            await flood(0, SMALL)
            small = footprint(core)
            await flood(SMALL, LARGE)
            large = footprint(core)
            grown = {k: (small[k], v) for k, v in large.items()
                     if v > small[k] and k not in ("subkey_cache", "counter_names")}
            assert not grown, f"grew with the flood size: {grown}"
            # forged packets from new sender ids fill the subkey cache up to its fixed bound
            # (1024; test_flood_packets.py floods past it)
            assert large["subkey_cache"] <= 1024
            assert large["counter_names"] <= small["counter_names"] + 4
            # one source address: at most max_half_open_per_address half-open handshakes
            per_address = core.transport.config.max_half_open_per_address
            assert large["half_open"] <= per_address
            c = core.counters
            assert c["packets.dropped.auth_failed"] == LARGE // 4
            assert c["packets.dropped.replay"] == LARGE // 4
            assert _dropped(c) - before >= 3 * LARGE // 4  # garbage, forged, replayed
            handshakes = (c["transport.accepted"] + c["transport.dropped.unknown_key"]
                          + c["transport.dropped.half_open_per_address"])
            assert c["transport.accepted"] <= per_address
            assert 0 < handshakes <= LARGE // 4  # the rest: retransmissions, answered
        finally:
            peer.close()
