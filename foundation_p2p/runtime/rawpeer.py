"""A hand-driven gossip endpoint over a plain Trio UDP socket, for demos, tests and diagnostics.

:class:`RawPeer` has its own identity and boot epoch and seals and opens gossip packets
itself with :class:`~foundation_p2p.crypto.protection.GossipProtection`, without a
``NodeCore``. That lets a caller send exactly the bytes it wants (a valid ping, a replay
of a captured datagram, a packet sealed under a foreign key, a flipped bit) and look at
exactly the bytes a node sends back.
"""

from __future__ import annotations

import os
import socket as stdlib_socket
import time

import trio

from foundation_p2p.addresses import Address, NodeId
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.protection import GossipProtection
from foundation_p2p.errors import WireError
from foundation_p2p.runtime.udp import MAX_DATAGRAM_BYTES, bind_udp, bound_address
from foundation_p2p.wire.frames import Ack, Frame, Ping, decode_frames, encode_frames
from foundation_p2p.wire.packet import GossipHeader


class RawPeer:
    """A gossip endpoint driven by hand: ``seal``/``open`` packets, ``send``/``receive`` bytes."""

    def __init__(
        self,
        sock: trio.socket.SocketType,
        keyring: Keyring,
        *,
        identity: Identity | None = None,
        boot_epoch: int | None = None,
    ) -> None:
        self.sock = sock
        self.address: Address = bound_address(sock)
        """Where this peer's socket is bound."""
        self.identity = identity or Identity.generate(os.urandom)
        self.node_id: NodeId = self.identity.node_id
        self.boot_epoch = boot_epoch if boot_epoch is not None else int(time.time() * 1000)
        self.protection = GossipProtection(keyring, self.node_id, self.boot_epoch)
        """Seals with this peer's subkey; opens (and replay-checks) what it receives."""
        self._next_seq = 1

    @classmethod
    async def open(cls, keyring: Keyring, host: str = "127.0.0.1") -> RawPeer:
        """A raw peer bound to ``host`` on a free port."""
        return cls(await bind_udp((host, 0)), keyring)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def seal(self, frames: list[Frame]) -> bytes:
        """A complete gossip packet carrying ``frames``, with this peer's next packet number."""
        return self.protection.seal(encode_frames(frames))

    def open_packet(self, data: bytes) -> tuple[GossipHeader, list[Frame]]:
        """Authenticate and decode a received packet; raises ``WireError`` like a node would."""
        header, plaintext = self.protection.open(data)
        return header, decode_frames(plaintext).frames

    async def send(self, address: Address, data: bytes) -> None:
        """Send raw bytes to ``address``."""
        await self.sock.sendto(data, address)

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram and its source address."""
        data, src = await self.sock.recvfrom(MAX_DATAGRAM_BYTES)
        return data, (str(src[0]), int(src[1]))

    def next_ping(self) -> Ping:
        """A ping with this peer's next sequence number."""
        seq = self._next_seq
        self._next_seq += 1
        return Ping(seq)

    async def ping(self, address: Address) -> float:
        """Ping ``address`` and wait for the matching ack; return the round-trip seconds.

        While waiting, pings from that address are answered and other datagrams ignored
        (a node pings back whoever pinged it). Bound the wait with ``trio.fail_after``.
        """
        ping = self.next_ping()
        sent = time.monotonic()
        await self.send(address, self.seal([ping]))
        while True:
            data, src = await self.receive()
            if src != address:
                continue
            try:
                _, frames = self.open_packet(data)
            except WireError:
                continue
            for frame in frames:
                if isinstance(frame, Ack) and frame.seq == ping.seq:
                    return time.monotonic() - sent
                if isinstance(frame, Ping):
                    await self.send(src, self.seal([Ack(frame.seq)]))


def is_ipv6_loopback_available() -> bool:
    """True if this machine can bind a UDP socket to ``::1``."""
    if not stdlib_socket.has_ipv6:
        return False
    try:
        with stdlib_socket.socket(stdlib_socket.AF_INET6, stdlib_socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
