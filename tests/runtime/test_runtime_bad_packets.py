"""Bad datagrams sent to a running node are dropped, counted by reason, and harmless.

Each test sends one bad datagram to a node through ``open_node`` on 127.0.0.1, then a
valid ping from the same raw socket: a node reads its socket in order, so once that ping
is answered the bad datagram has been handled. The node must have counted exactly one
drop, under the expected name, and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.events import PeerAcked
from foundation_p2p.runtime import Node, open_node
from foundation_p2p.runtime.rawpeer import RawPeer
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Ping
from foundation_p2p.wire.packet import parse_packet

WAIT_S = 5.0


def drop_counters(node: Node) -> dict[str, int]:
    return {k: v for k, v in node.counters.items() if k.startswith("packets.dropped.") and v}


async def send_then_prove_alive(node: Node, peer: RawPeer, data: bytes) -> dict[str, int]:
    """Send ``data`` to ``node``, then a valid ping; return the drop counters that changed."""
    before = drop_counters(node)
    await peer.send(node.address, data)
    with trio.fail_after(WAIT_S):
        assert await peer.ping(node.address) > 0  # the node still answers
    after = drop_counters(node)
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def foreign_key_packet(keyring: Keyring, peer: RawPeer) -> bytes:
    stranger = RawPeer(peer.sock, Keyring.generate(os.urandom))
    return stranger.seal([Ping(1)])


def truncated_packet(keyring: Keyring, peer: RawPeer) -> bytes:
    data = peer.seal([peer.next_ping()])
    return data[: len(data) - 7]


def flipped_bit_packet(keyring: Keyring, peer: RawPeer) -> bytes:
    data = bytearray(peer.seal([peer.next_ping()]))
    data[-3] ^= 0x10  # inside the AEAD tag of a packet number never seen before
    return bytes(data)


def flipped_header_bit_packet(keyring: Keyring, peer: RawPeer) -> bytes:
    data = bytearray(peer.seal([peer.next_ping()]))
    header, aad, _ = parse_packet(bytes(data))
    # The packet number is the header's last field, one byte while it is below 24. Move it
    # to a number never seen (pn + 16): the associated data no longer matches the seal.
    assert header.packet_number < 8 and aad[-1] == header.packet_number
    data[len(aad) - 1] ^= 0x10
    return bytes(data)


def version_two_packet(keyring: Keyring, peer: RawPeer) -> bytes:
    return cbor.encode([2, 1, peer.node_id, peer.boot_epoch, 0, 0, b"\x00" * 32])


def not_cbor_packet(keyring: Keyring, peer: RawPeer) -> bytes:
    return b"GET / HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize(
    ("make_packet", "counter"),
    [
        (foreign_key_packet, "packets.dropped.unknown_key"),
        (truncated_packet, "packets.dropped.malformed"),
        (flipped_bit_packet, "packets.dropped.auth_failed"),
        (flipped_header_bit_packet, "packets.dropped.auth_failed"),
        (version_two_packet, "packets.dropped.unsupported_version"),
        (not_cbor_packet, "packets.dropped.malformed"),
    ],
    ids=["foreign-key", "truncated", "flipped-bit", "flipped-header-bit", "version-2", "not-cbor"],
)
async def test_bad_packet_is_dropped_counted_and_the_node_keeps_running(
    keyring: Keyring,
    make_config: Callable[..., NodeConfig],
    make_packet: Callable[[Keyring, RawPeer], bytes],
    counter: str,
) -> None:
    async with open_node(make_config(), keyring=keyring) as node:
        peer = await RawPeer.open(keyring)
        try:
            with trio.fail_after(WAIT_S):
                await peer.ping(node.address)  # the peer is known and valid
            changed = await send_then_prove_alive(node, peer, make_packet(keyring, peer))
            assert changed == {counter: 1}
        finally:
            peer.close()


async def test_replayed_real_datagram_is_dropped_and_counted(
    keyring: Keyring,
    make_config: Callable[..., NodeConfig],
    open_proxy: Callable[[Any], Awaitable[Any]],
) -> None:
    # a -> proxy -> b: the proxy (a raw socket we control) captures a's real datagrams.
    async with open_node(make_config(name="b"), keyring=keyring) as b:
        proxy = await open_proxy(b.address)
        async with open_node(make_config(name="a", join=(proxy.address,)), keyring=keyring) as a:
            async with a.events(PeerAcked) as events:
                with trio.fail_after(WAIT_S):
                    await events.receive()  # b accepted a's ping (it answered)
            captured = proxy.to_upstream[0]
            header, _, _ = parse_packet(captured)
            assert header.sender == a.node_id
            assert b.counters["packets.dropped.replay"] == 0

            peer = await RawPeer.open(keyring)
            try:
                changed = await send_then_prove_alive(b, peer, captured)
                assert changed == {"packets.dropped.replay": 1}
                changed = await send_then_prove_alive(b, peer, captured)
                assert changed == {"packets.dropped.replay": 1}
            finally:
                peer.close()
            # a's own traffic still gets through
            async with a.events(PeerAcked) as events:
                with trio.fail_after(WAIT_S):
                    ack = await events.receive()
            assert isinstance(ack, PeerAcked) and ack.node_id == b.node_id


async def test_a_valid_packet_is_not_counted_as_a_drop(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    # The control case: the helper above must see no change for a good packet.
    async with open_node(make_config(), keyring=keyring) as node:
        peer = await RawPeer.open(keyring)
        try:
            changed = await send_then_prove_alive(node, peer, peer.seal([peer.next_ping()]))
            assert changed == {}
        finally:
            peer.close()
