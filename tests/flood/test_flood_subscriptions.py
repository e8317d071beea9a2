"""Subscription floods against a ``ChannelsCore``: announced topic sets and published
records from many peers, or many from one, stay within the core's bounds and are counted.

Same method as test_flood_packets.py: the reachable structures are measured after a small
and after a 4x larger flood, and must not have grown; the heap may grow by less than
``HEAP_SLACK`` meanwhile.
"""

from __future__ import annotations

import random

from flood import flood

from foundation_p2p.channels.core import ChannelsCore
from foundation_p2p.channels.gossip import encode_topics

HOME = bytes([1]) * 16
PUBLISHER = bytes([2]) * 16
MAX_PEERS = 128
HEAP_SLACK = 96 * 1024


def sizes(core: ChannelsCore) -> dict[str, int]:
    """Every per-peer and per-topic table of ``core``."""
    peers = core._peers
    return {
        "peers": len(peers),
        "indexed_topics": len(core._subscribers),
        "index_entries": sum(len(s) for s in core._subscribers.values()),
        "wildcards": len(core._wildcards),
        "decoders": sum(1 for p in peers.values() for d in p.decoders if d is not None),
        "queued": sum(len(s._q) for subs in core._subs.values() for s in subs.values()),
        "woken": len(core._woken),
        "counter_names": len(core.counters),
    }


def _flat(small: dict[str, int], large: dict[str, int]) -> None:
    grown = {k: (small[k], v) for k, v in large.items() if v > small[k]}
    assert not grown, f"grew with the flood size: {grown}"


def test_topic_sets_from_ever_new_peers_stop_at_max_remote_nodes() -> None:
    core = ChannelsCore(HOME, epoch=1, max_remote_nodes=MAX_PEERS)
    rng = random.Random(1)

    def attack(i: int) -> None:
        topics = [f"t{i}-{k}" for k in range(core.max_topics_per_node)]
        core.apply_topics(rng.randbytes(16), encode_topics(topics))

    res = flood(attack, lambda: sizes(core), 400, 1600)
    _flat(res.small, res.large)
    assert res.large["peers"] == MAX_PEERS
    assert res.large["index_entries"] == MAX_PEERS * core.max_topics_per_node
    assert core.counters["channels.topics.refused_peers_full"] == 1600 - MAX_PEERS
    assert core.counters["channels.topics.applied"] == MAX_PEERS
    assert res.heap_growth < HEAP_SLACK, res


def test_one_peer_churning_its_topic_set_leaves_only_its_current_set_indexed() -> None:
    core = ChannelsCore(HOME, epoch=1, max_remote_nodes=MAX_PEERS)

    def attack(i: int) -> None:
        core.apply_topics(PUBLISHER, encode_topics([f"c{i}-{k}" for k in range(64)]))

    res = flood(attack, lambda: sizes(core), 400, 1600)
    _flat(res.small, res.large)
    assert res.large["peers"] == 1 and res.large["indexed_topics"] == 64
    assert core.counters["channels.topics.applied"] == 1600
    assert res.heap_growth < HEAP_SLACK, res


def _record(topic: str, seq_from: int, count: int) -> list[bytes]:
    """``count`` records on ``topic`` as PUBLISHER's stream would carry them to HOME."""
    pub = ChannelsCore(PUBLISHER, epoch=1)
    out = []
    for _ in range(count):
        (send,) = pub.direct_broadcast(HOME, topic, {"n": seq_from, "pad": "x" * 200})
        out.append(send.header + send.body)
    return out


def test_records_flooding_a_subscription_drop_its_oldest_beyond_max_queued() -> None:
    core = ChannelsCore(HOME, epoch=1, max_remote_nodes=MAX_PEERS)
    sub = core.subscribe("orders", max_queued=64)
    records = _record("orders", 0, 1600)

    def attack(i: int) -> None:
        core.receive(PUBLISHER, "events", records[i])

    res = flood(attack, lambda: sizes(core), 400, 1600)
    _flat(res.small, res.large)
    assert res.large["queued"] == 64
    assert core.counters["channels.queue.dropped_oldest"] == 1600 - 64
    assert sub.dropped == 1600 - 64
    assert res.heap_growth < HEAP_SLACK, res


def test_records_from_ever_new_peers_stop_at_max_remote_nodes() -> None:
    core = ChannelsCore(HOME, epoch=1, max_remote_nodes=MAX_PEERS)
    core.subscribe("orders", max_queued=64)
    (first,) = _record("orders", 0, 1)
    rng = random.Random(2)

    def attack(i: int) -> None:
        # each stream sends half a record: a decoder holds it, waiting for the rest
        core.receive(rng.randbytes(16), "events", first[: len(first) // 2])

    res = flood(attack, lambda: sizes(core), 400, 1600)
    _flat(res.small, res.large)
    assert res.large["peers"] == MAX_PEERS and res.large["decoders"] == MAX_PEERS
    assert core.counters["channels.receive.refused_peers_full"] == 1600 - MAX_PEERS
    assert res.heap_growth < HEAP_SLACK, res
