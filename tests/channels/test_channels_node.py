"""Channels on NodeCore (``core.channels``): three cores in memory, virtual time.

Topic sets travel in frame 48; a broadcast reaches only the nodes that gossiped the
topic; records travel on the connections' channel streams, in order per publisher.
"""

from __future__ import annotations

import random

from core_net import WALL, CoreNet

from foundation_p2p.addresses import Address
from foundation_p2p.channels.core import Delivery
from foundation_p2p.channels.gossip import TopicSet
from foundation_p2p.channels.subsystem import TopicsFrame
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.events import Join
from foundation_p2p.membership.state import MemberState
from foundation_p2p.node import NodeCore
from foundation_p2p.transport.endpoint import EndpointEvent, StreamData
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import decode_frames
from foundation_p2p.wire.limits import DEFAULT_LIMITS

KEYRING = Keyring(bytes(range(32)))
A: Address = ("10.0.0.1", 7946)
B: Address = ("10.0.0.2", 7946)
C: Address = ("10.0.0.3", 7946)


def make(addr: Address, seed: int) -> NodeCore:
    rng = random.Random(seed)
    return NodeCore(
        NodeConfig(bind=addr),
        now=Now(0.0, WALL),
        keyring=KEYRING,
        stored={},
        rng=random.Random(seed + 100),
        secret_bytes=rng.randbytes,
    )


class Net(CoreNet):
    """Cores on a lossless 2 ms network; transport events go through
    ``take_transport_events`` (channel data consumed there), the rest kept in :attr:`raw`."""

    def __init__(self, *cores: NodeCore) -> None:
        super().__init__(*cores)
        self.raw: dict[Address, list[EndpointEvent]] = {a: [] for a in self.cores}

    def collect(self, addr: Address, core: NodeCore) -> None:
        self.raw[addr].extend(core.take_transport_events(self.stamp()))
        core.take_events()


def cluster() -> tuple[Net, NodeCore, NodeCore, NodeCore]:
    a, b, c = make(A, 1), make(B, 2), make(C, 3)
    net = Net(a, b, c)
    b.handle_command(net.stamp(), Join((A,)))
    c.handle_command(net.stamp(), Join((A,)))

    def all_alive() -> bool:
        for x in (a, b, c):
            for y in (a, b, c):
                m = x.membership.member(y.node_id)
                if m is None or m.state != MemberState.ALIVE:
                    return False
        return True

    assert net.run(all_alive)
    return net, a, b, c


def test_broadcast_reaches_only_nodes_that_gossiped_the_topic_in_publisher_order() -> None:
    net, a, b, c = cluster()
    sub_b = b.channels.subscribe("orders")
    other_c = c.channels.subscribe("audit")  # c subscribes to something else
    assert net.run(lambda: a.channels.core.subscribers_of("orders") == [b.node_id])
    assert a.channels.core.subscribers_of("audit") == [c.node_id]
    assert a.counters["channels.gossip.applied"] >= 2
    for i in range(50):
        assert a.channels.broadcast(net.stamp(), "orders", {"n": i}) == 1
    got: list[Delivery] = []

    def all_arrived() -> bool:
        got.extend(sub_b.take())
        return len(got) == 50

    assert net.run(all_arrived)
    assert [d.value for d in got] == [{"n": i} for i in range(50)]
    assert [d.seq for d in got] == list(range(50))
    assert {d.publisher for d in got} == {a.node_id}
    assert {d.channel for d in got} == {"events"}
    assert len(other_c) == 0
    assert c.counters["channels.received.records"] == 0
    # the channel data never reached the raw stream API
    assert not [e for e in net.raw[B] if isinstance(e, StreamData)]


def test_each_topic_travels_on_its_channel_and_large_messages_arrive_whole() -> None:
    net, a, b, _ = cluster()
    subs = {name: b.channels.subscribe(name) for name in ("control", "events", "data", "telemetry")}
    assert net.run(lambda: len(a.channels.core.subscribers_of("data")) == 1)
    big = random.Random(9).randbytes(3_000_000)
    a.channels.broadcast(net.stamp(), "data", big)
    for name in ("control", "events", "telemetry"):
        a.channels.broadcast(net.stamp(), name, name)
    assert net.run(lambda: all(len(s) for s in subs.values()))
    for name, sub in subs.items():
        (d,) = sub.take()
        assert d.channel == name
        assert d.value == (big if name == "data" else name)
    # our four channel streams are each side's first unidirectional streams
    conn = a.transport.connection(b.node_id)
    assert conn is not None
    first = 2 if conn.is_client else 3
    assert a.channels._out[b.node_id].sids == [first, first + 4, first + 8, first + 12]


def test_direct_broadcast_ignores_gossip_and_unknown_nodes_are_counted() -> None:
    net, a, b, c = cluster()
    sub = c.channels.subscribe("x")
    # no gossip has run yet: direct_broadcast sends anyway
    assert a.channels.direct_broadcast(net.stamp(), c.node_id, "x", 1) == 1
    assert net.run(lambda: len(sub) == 1)
    # nobody on b subscribes: counted there
    a.channels.direct_broadcast(net.stamp(), b.node_id, "x", 2)
    assert net.run(lambda: b.counters["channels.receive.no_subscriber"] == 1)


def test_topics_frame_from_another_node_is_refused() -> None:
    net, a, b, c = cluster()
    forged = TopicsFrame(c.node_id, TopicSet(c.boot_epoch + 1, 1, ("stolen",)))
    a.channels.handle_message(net.stamp(), b.node_id, B, forged)
    assert a.counters["channels.gossip.refused_relay"] == 1
    assert a.channels.core.subscribers_of("stolen") == []
    # and the frame is on the wire as spec/wire.md says: [48, node-id, topic-set]
    encoded = cbor.encode([forged.to_cbor()])
    (frame,) = decode_frames(encoded, DEFAULT_LIMITS).frames
    assert isinstance(frame, TopicsFrame) and frame == forged
    assert forged.to_cbor() == [48, c.node_id, [c.boot_epoch + 1, 1, ["stolen"]]]


def test_a_departed_member_gets_no_records_and_its_set_is_forgotten() -> None:
    net, a, b, _ = cluster()
    b.channels.subscribe("orders")
    assert net.run(lambda: a.channels.core.subscribers_of("orders") == [b.node_id])
    del net.cores[B]  # b vanishes
    assert net.run(lambda: a.channels.core.subscribers_of("orders") == [], 60.0)
    assert a.channels.broadcast(net.stamp(), "orders", 1) == 0


def test_pending_bytes_are_bounded_and_overflow_is_dropped_whole_and_counted() -> None:
    net, a, b, _ = cluster()
    sub = b.channels.subscribe("bulk")
    assert net.run(lambda: a.channels.core.subscribers_of("bulk") == [b.node_id])
    a.channels.max_pending_bytes = 300_000
    payload = random.Random(3).randbytes(100_000)
    # no connection yet: everything waits in the per-peer queue while the dial runs
    assert a.transport.connection(b.node_id) is None
    queued = [a.channels.broadcast(net.stamp(), "bulk", [i, payload]) for i in range(5)]
    assert queued == [1, 1, 0, 0, 0]  # the third would pass 300,000 bytes
    assert a.counters["channels.send.dropped_pending_full"] == 3
    assert net.run(lambda: len(sub) == 2)
    assert [d.value[0] for d in sub.take()] == [0, 1]
    # a later record shows the skipped sequence numbers as a gap at the receiver
    a.channels.broadcast(net.stamp(), "bulk", [5, b""])
    assert net.run(lambda: len(sub) == 1)
    assert sub.take()[0].seq == 5
    assert b.counters["channels.receive.seq_gap_messages"] == 3


def test_a_peer_with_no_known_address_is_marked_unreachable_then_retried() -> None:
    net, a, _, _ = cluster()
    stranger = bytes(range(16))
    assert a.channels.direct_broadcast(net.stamp(), stranger, "x", 1) == 1
    assert a.counters["channels.send.dropped_no_address"] == 1
    # while marked: no record, its sequence number taken
    assert a.channels.direct_broadcast(net.stamp(), stranger, "x", 2) == 0
    assert a.counters["channels.send.skipped_unreachable"] == 1
    start = net.now
    assert net.run(lambda: net.now >= start + a.channels.retry_after_s)
    assert a.channels.direct_broadcast(net.stamp(), stranger, "x", 3) == 1
    assert a.counters["channels.send.dropped_no_address"] == 2
