"""Channels over real UDP on 127.0.0.1, through ``open_node`` and ``node.channels``.

Two nodes join, one subscribes to the four standard channels; once its topic set has
reached the other (membership extension 1, spec/channels.md section 6), the other
broadcasts on each channel, and a 50 MB message on ``data`` arrives intact. Every wait
is bounded and waits on a condition; no sleeps.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import trio

from foundation_p2p.channels.core import Delivery
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.runtime import ChannelSubscription, open_node
from foundation_p2p.runtime.node import Node

BIG = 50 * 1024 * 1024
TRANSFER_S = 240.0
"""Bound on the 50 MB transfer (a few seconds of Python per side)."""
WAIT_S = 10.0


async def _collect(sub: ChannelSubscription, want: int, out: list[Delivery],
                   done: trio.Event) -> None:
    async for delivery in sub:
        out.append(delivery)
        if len(out) == want:
            done.set()
            return


async def _gossiped(publisher: Node, subscriber: Node, topics: list[str]) -> None:
    core = publisher.core.channels.core
    await publisher.wait_until(
        lambda: all(core.subscribers_of(t) == [subscriber.node_id] for t in topics)
    )


async def test_messages_on_all_four_channels_and_50_mb_on_data(
    make_config: Callable[..., NodeConfig], keyring: Keyring
) -> None:
    big = os.urandom(1024 * 1024) * 50
    async with open_node(make_config(), keyring=keyring) as sub_node, open_node(
        make_config(join=(sub_node.address,)), keyring=keyring
    ) as pub_node:
        names = ["control", "events", "data", "telemetry"]
        got: dict[str, list[Delivery]] = {n: [] for n in names}
        done = {n: trio.Event() for n in names}
        want = {"control": 20, "events": 20, "data": 2, "telemetry": 20}
        async with sub_node.channels.subscribe("control") as s0, \
            sub_node.channels.subscribe("events") as s1, \
            sub_node.channels.subscribe("data") as s2, \
            sub_node.channels.subscribe("telemetry", max_queued=64) as s3, \
            trio.open_nursery() as nursery:
            for name, s in zip(names, (s0, s1, s2, s3), strict=True):
                nursery.start_soon(_collect, s, want[name], got[name], done[name])
            with trio.fail_after(WAIT_S):
                await _gossiped(pub_node, sub_node, names)
            ch = pub_node.channels
            for i in range(20):
                assert ch.broadcast("control", {"cmd": i}) == 1
                assert ch.broadcast("events", ["event", i]) == 1
                sample = {"metric": "m", "value": i, "timestamp": 1.5}
                assert ch.route_message(sample).name == "telemetry"
                assert ch.broadcast(ch.route_message(sample), sample) == 1
            assert ch.route_message(big).name == "data"
            assert "rule size" in str(ch.explain(big))
            assert ch.broadcast("data", big) == 1
            assert ch.broadcast("data", b"after", compression=True) == 1
            with trio.fail_after(TRANSFER_S):
                for name in names:
                    await done[name].wait()
        assert [d.value for d in got["control"]] == [{"cmd": i} for i in range(20)]
        assert [d.value for d in got["events"]] == [["event", i] for i in range(20)]
        assert [d.value["value"] for d in got["telemetry"]] == list(range(20))
        first, second = got["data"]
        assert len(first.value) == BIG
        assert hashlib.sha256(first.value).digest() == hashlib.sha256(big).digest()
        assert second.value == b"after"
        for name in names:
            assert {d.publisher for d in got[name]} == {pub_node.node_id}
            assert {d.channel for d in got[name]} == {name}
            assert [d.seq for d in got[name]] == list(range(want[name]))
        assert sub_node.counters["channels.received.records"] == 62
        assert pub_node.counters["channels.send.dropped_pending_full"] == 0


async def test_local_broadcast_and_broadcast_from_skip_the_network(
    make_config: Callable[..., NodeConfig], keyring: Keyring
) -> None:
    async with open_node(make_config(), keyring=keyring) as node:
        async with node.channels.subscribe("room:1") as a, \
                node.channels.subscribe("room:1") as b:
            assert node.channels.local_broadcast("room:1", "hi") == 2
            assert node.channels.broadcast_from(a, "room:1", "from a") == 0
            with trio.fail_after(WAIT_S):
                assert (await a.receive()).value == "hi"
                assert (await b.receive()).value == "hi"
                assert (await b.receive()).value == "from a"
            assert a.subscription is not None and len(a.subscription) == 0
        assert node.counters["channels.sent.records"] == 0
