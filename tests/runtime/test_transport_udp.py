"""Transport connections over real UDP on 127.0.0.1, through ``open_node``.

Two nodes: one dials the other by node id and address, opens a stream carrying 50 MB and
three small-message streams; every byte arrives intact and in order, each stream on its
own. Every wait is bounded; no sleeps.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.runtime import MemoryStore, TransportStream, open_node
from foundation_p2p.runtime.node import Node

BIG = 50 * 1024 * 1024
TRANSFER_S = 240.0
"""Bound on the 50 MB transfer (it takes a few seconds of Python per side)."""


async def _serve(node: Node, results: dict[int, bytes], done: trio.Event, want: int) -> None:
    async def one(stream: TransportStream) -> None:
        digest = hashlib.sha256()
        size = 0
        async for chunk in stream:
            digest.update(chunk)
            size += len(chunk)
        results[stream.stream_id] = size.to_bytes(8, "big") + digest.digest()
        await stream.send(b"ack %d" % size, end=True)  # answer on the same stream
        if len(results) == want:
            done.set()

    async with trio.open_nursery() as nursery:
        while True:
            stream = await node.accept_stream()
            nursery.start_soon(one, stream)


async def test_50_mb_and_small_messages_on_separate_streams(
    make_config: Callable[..., NodeConfig], keyring: Keyring
) -> None:
    big = os.urandom(1024 * 1024) * 50
    smalls = [os.urandom(100 + i) for i in range(3)]
    async with open_node(make_config(), keyring=keyring) as server, open_node(
        make_config(), keyring=keyring
    ) as client:
        results: dict[int, bytes] = {}
        done = trio.Event()
        server.start_service(_serve, server, results, done, 4)
        with trio.fail_after(10):
            conn = await client.connect(server.node_id, server.address)
        assert conn.is_established and conn.peer_node_id == server.node_id
        assert client.transport.peers() == [server.node_id]

        replies: dict[int, bytes] = {}

        async def send_and_read(stream: TransportStream, data: bytes) -> None:
            await stream.send(data, end=True)
            replies[stream.stream_id] = await stream.receive_all(64)

        with trio.fail_after(TRANSFER_S):
            bulk = await client.open_stream(server.node_id, urgency=7)
            small_streams = [
                await client.open_stream(server.node_id, urgency=0) for _ in smalls
            ]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_and_read, bulk, big)
                for stream, data in zip(small_streams, smalls, strict=True):
                    nursery.start_soon(send_and_read, stream, data)
            await done.wait()

        def fingerprint(data: bytes) -> bytes:
            return len(data).to_bytes(8, "big") + hashlib.sha256(data).digest()

        assert results[bulk.stream_id] == fingerprint(big)
        for stream, data in zip(small_streams, smalls, strict=True):
            assert results[stream.stream_id] == fingerprint(data)
            assert replies[stream.stream_id] == b"ack %d" % len(data)
        assert replies[bulk.stream_id] == b"ack %d" % BIG
        # the streams were independent: the small ones finished before the bulk one
        # (their acks came back first is not guaranteed; their bytes arrived intact)
        stats = client.transport.stats()
        # every byte went in packets no larger than the path-MTU ceiling (bigger ones than
        # the 1200-byte start once discovery raised the size on loopback)
        ceiling = client.transport.config.connection.pmtu_max_bytes
        assert stats["transport.conn.packets.sent"] > BIG // ceiling
        assert stats["transport.pmtu.largest_bytes"] > 1200  # loopback: discovery raised it
        assert server.counters["transport.accepted"] == 1
        assert server.counters["transport.dropped.unknown_cid"] == 0


async def test_connect_to_a_silent_address_fails_within_the_bound(
    make_config: Callable[..., NodeConfig], keyring: Keyring
) -> None:
    # handshake retries 0.1 + 0.2 + 0.4 s, then the dial gives up
    fast = {"transport": {"handshake_timeout_s": 0.1, "handshake_max_tries": 3}}
    async with open_node(make_config(extra=fast), keyring=keyring) as node:
        ghost = bytes(16)  # nobody answers at the discard port
        with trio.fail_after(10):
            try:
                await node.connect(ghost, ("127.0.0.1", 9), timeout_s=5)
            except ConnectionError as exc:
                assert "handshake timed out" in str(exc)
            else:
                raise AssertionError("connect to nobody succeeded")
        assert node.counters["transport.connect_failed"] == 1
        assert node.transport.connection(ghost) is None


async def test_a_slow_reader_pauses_the_sender_without_losing_bytes(
    make_config: Callable[..., NodeConfig], keyring: Keyring
) -> None:
    data = os.urandom(8 * 1024 * 1024)
    async with open_node(make_config(), keyring=keyring) as server, open_node(
        make_config(), keyring=keyring
    ) as client:
        server.stream_buffer_bytes = 256 * 1024
        got = bytearray()
        finished = trio.Event()

        async def slow_reader() -> None:
            stream = await server.accept_stream()
            # read nothing until the buffer went over its bound and the peer was paused
            await server.wait_until(lambda: server.counters["transport.paused"] >= 1)
            paused_at = stream.buffered
            # over its bound, by at most one read of the connection (a stream window)
            assert server.stream_buffer_bytes < paused_at
            assert paused_at <= server.stream_buffer_bytes + 4 * 1024 * 1024
            async for chunk in stream:
                got.extend(chunk)
            finished.set()

        server.start_service(slow_reader)
        with trio.fail_after(60):
            stream = await client.open_stream(server.node_id, addr=server.address)
            await stream.send(data, end=True)
            await finished.wait()
        assert bytes(got) == data
        assert server.counters["transport.resumed"] >= 1
        assert server.counters["transport.runtime.data_dropped_untracked"] == 0


async def test_a_restarted_peer_replaces_its_old_connection(
    make_config: Callable[..., NodeConfig], keyring: Keyring
) -> None:
    store = MemoryStore()  # B's identity survives its restart
    async with open_node(make_config(), keyring=keyring) as a:
        # leave_timeout_s=0: B stops like a crash, without closing its connections
        b1_cm = open_node(make_config(), keyring=keyring, store=store, leave_timeout_s=0.0)
        b1 = await b1_cm.__aenter__()
        b_id = b1.node_id
        with trio.fail_after(10):
            old = await a.open_stream(b_id, addr=b1.address)
            await old.send(b"before", end=False)
        await b1_cm.__aexit__(None, None, None)
        old_conn = a.transport.connection(b_id)
        assert old_conn is not None and old_conn.is_established  # A has not noticed

        async with open_node(make_config(), keyring=keyring, store=store) as b2:
            assert b2.node_id == b_id
            with trio.fail_after(10):
                await b2.connect(a.node_id, a.address)
                await a.wait_until(
                    lambda: a.transport.connection(b_id) is not old_conn
                    and a.transport.connection(b_id) is not None
                )
            assert a.transport.address(b_id) == b2.address
            assert a.counters["transport.replaced"] == 1
            # the old stream is broken; a new one reaches the restarted node
            with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
                await old.send(b"after")
            received: list[bytes] = []
            got = trio.Event()

            async def read_one() -> None:
                stream = await b2.accept_stream()
                received.append(await stream.receive_all(100))
                got.set()

            b2.start_service(read_one)
            with trio.fail_after(10):
                new = await a.open_stream(b_id)
                await new.send(b"hello again", end=True)
                await got.wait()  # (wait_until would wait for a later pump step)
            assert received == [b"hello again"]


@pytest.mark.parametrize("hint", ["stateless reset", "gossip epoch"])
async def test_a_peer_restarted_at_the_same_address_is_reached_again_at_once(
    make_config: Callable[..., NodeConfig], keyring: Keyring, tmp_path: Path, hint: str
) -> None:
    """B crashes (no CONNECTION_CLOSE) and restarts with the same data directory (same
    identity, a new boot epoch) on the same port, while A publishes a message every 10 ms
    on a stream to B. A's next packet to the dead boot draws a stateless reset (or, when
    the two are cluster members, B's first gossip packet shows its new epoch); A's stream
    breaks at once, A reopens one, and B's new boot gets messages within a round trip or
    two of its start (before: ``max_probe_timeouts`` probe timeouts, ~0.4 s and more)."""
    members = hint == "gossip epoch"
    data_dir = str(tmp_path / "b")
    async with open_node(make_config(), keyring=keyring) as a:
        b_config = make_config(data_dir=data_dir, join=(a.address,) if members else ())
        b1_cm = open_node(b_config, keyring=keyring, leave_timeout_s=0.0)
        b1 = await b1_cm.__aenter__()
        b_id, b_addr, first_epoch = b1.node_id, b1.address, b1.boot_epoch
        first_messages: list[bytes] = []

        async def read_into(node: Node, out: list[bytes], got: trio.Event) -> None:
            async with trio.open_nursery() as nursery:
                while True:
                    stream = await node.accept_stream()

                    async def drain(s: TransportStream = stream) -> None:
                        async for chunk in s:
                            out.append(chunk)
                            got.set()

                    nursery.start_soon(drain)

        got_first = trio.Event()
        b1.start_service(read_into, b1, first_messages, got_first)
        sent = 0
        broken = 0

        async def publisher() -> None:
            """One message every 10 ms (the workload's rate); a broken stream is replaced
            by a new one (dialling the peer again)."""
            nonlocal sent, broken
            stream: TransportStream | None = None
            while True:
                try:
                    if stream is None:
                        stream = await a.open_stream(b_id, addr=b_addr)
                    sent += 1
                    await stream.send(b"message %d;" % sent)
                except (trio.BrokenResourceError, ConnectionError, trio.TooSlowError):
                    broken += 1
                    stream = None
                await trio.sleep(0.01)

        a.start_service(publisher)
        with trio.fail_after(10):
            await got_first.wait()
            if members:
                await a.wait_until(lambda: a.member(b_id) is not None)
        old_conn = a.transport.connection(b_id)
        assert old_conn is not None and old_conn.peer_epoch == first_epoch
        await b1_cm.__aexit__(None, None, None)  # a crash: B closes nothing

        messages: list[bytes] = []
        got = trio.Event()
        started = trio.current_time()
        async with open_node(
            make_config(data_dir=data_dir, bind=b_addr, join=(a.address,) if members else ()),
            keyring=keyring,
        ) as b2:
            running = trio.current_time()
            assert b2.node_id == b_id and b2.address == b_addr
            assert b2.boot_epoch > first_epoch
            b2.start_service(read_into, b2, messages, got)
            with trio.fail_after(5):
                await got.wait()
            elapsed = trio.current_time() - started
            print(f"\n[{hint}] restart -> first message delivered to the new boot: "
                  f"{elapsed * 1000:.1f} ms from open_node, "
                  f"{(trio.current_time() - running) * 1000:.1f} ms from the socket bound; "
                  f"A: reset.received={a.counters['transport.reset.received']} "
                  f"peer_restarted={a.counters['transport.peer_restarted']}")
            assert old_conn.is_closed
            reason = old_conn.close_reason.reason if old_conn.close_reason else ""
            assert reason in ("stateless reset", "peer restarted")
            if members:
                assert a.counters["transport.peer_restarted"] + a.counters[
                    "transport.reset.received"] >= 1
            else:
                assert reason == "stateless reset"
                assert a.counters["transport.reset.received"] == 1
                assert b2.counters["transport.reset.sent"] >= 1
            assert a.counters["transport.conn.unresponsive_closes"] == 0
            new_conn = a.transport.connection(b_id)
            assert new_conn is not None and new_conn.peer_epoch == b2.boot_epoch
            assert broken >= 1
            assert elapsed < 2.0
