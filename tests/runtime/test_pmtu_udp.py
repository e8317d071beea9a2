"""Path MTU discovery over real UDP on 127.0.0.1 (loopback MTU 65536): a connection's
datagram size grows past 1200 bytes to the ``[transport] pmtu_max_bytes`` ceiling, and
data then crosses in datagrams that large. Every wait is bounded; no sleeps."""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.runtime import TransportStream, open_node

WAIT_S = 10.0
"""Bound on each wait: the search takes a dozen round trips of well under 1 ms each."""


async def test_a_loopback_connection_grows_its_datagrams_to_the_ceiling(
    make_config: Callable[..., NodeConfig], keyring: Keyring
) -> None:
    ceiling = 9000
    extra = {"transport": {"pmtu_max_bytes": ceiling}}
    async with open_node(make_config(extra=extra), keyring=keyring) as server, open_node(
        make_config(extra=extra), keyring=keyring
    ) as client:
        received = bytearray()
        done = trio.Event()

        async def serve() -> None:
            stream: TransportStream = await server.accept_stream()
            async for chunk in stream:
                received.extend(chunk)
            done.set()

        server.start_service(serve)
        with trio.fail_after(WAIT_S):
            conn = await client.connect(server.node_id, server.address)
        assert conn.pmtu is not None  # [transport] pmtu_max_bytes reached the connection
        with trio.fail_after(WAIT_S):
            await client.wait_until(
                lambda: conn.pmtu is not None and conn.pmtu.state == "complete"
            )
        assert conn.max_datagram_size == ceiling
        stats = conn.stats()
        assert stats["pmtu.probes_acked"] >= 1 and stats["pmtu.current_bytes"] == ceiling
        assert client.transport.stats()["transport.pmtu.largest_bytes"] == ceiling
        sent_before = conn.recovery.packets_sent
        data = os.urandom(300_000)
        with trio.fail_after(WAIT_S * 3):
            stream = await client.open_stream(server.node_id)
            await stream.send(data, end=True)
            await done.wait()
        assert bytes(received) == data
        # 300 kB in 9000-byte datagrams: far fewer packets than the ~265 at 1200 bytes
        assert conn.recovery.packets_sent - sent_before < 150
