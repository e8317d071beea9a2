"""Channels on NodeCore (``core.channels``): three cores in memory, virtual time.

Topic sets ride the membership records (extension 1); a broadcast reaches only the nodes
that announced the topic; records travel on the connections' channel streams, in order per
publisher.
"""

from __future__ import annotations

import random

from core_net import WALL, CoreNet

from foundation_p2p.addresses import Address
from foundation_p2p.channels.core import Delivery
from foundation_p2p.channels.gossip import WILDCARD, TopicSet
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.durability import IDENTITY_KEY
from foundation_p2p.events import Join
from foundation_p2p.membership.frames import EXTENSION_TOPICS, Announcement
from foundation_p2p.membership.state import MemberState
from foundation_p2p.node import NodeCore
from foundation_p2p.transport.endpoint import EndpointEvent, StreamData
from foundation_p2p.wire import cbor

KEYRING = Keyring(bytes(range(32)))
A: Address = ("10.0.0.1", 7946)
B: Address = ("10.0.0.2", 7946)
C: Address = ("10.0.0.3", 7946)


def make(
    addr: Address, seed: int, stored: dict[str, bytes] | None = None, at: float = 0.0
) -> NodeCore:
    rng = random.Random(seed)
    return NodeCore(
        NodeConfig(bind=addr),
        now=Now(at, WALL + at),
        keyring=KEYRING,
        stored=stored or {},
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


def test_broadcast_reaches_only_nodes_that_announced_the_topic_in_publisher_order() -> None:
    net, a, b, c = cluster()
    sub_b = b.channels.subscribe("orders")
    other_c = c.channels.subscribe("audit")  # c subscribes to something else
    assert net.run(lambda: a.channels.core.subscribers_of("audit") == [c.node_id])
    assert net.run(lambda: a.channels.core.subscribers_of("orders") == [b.node_id])
    assert a.counters["channels.topics.applied"] >= 2
    # the sets came in the members' own signed records (extension 1)
    record = a.membership.member(b.node_id)
    assert record is not None and cbor.decode(record.extensions[EXTENSION_TOPICS]) == ["orders"]
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


def test_direct_broadcast_ignores_topic_sets_and_unknown_nodes_are_counted() -> None:
    net, a, b, c = cluster()
    sub = c.channels.subscribe("x")
    # c's set has not been announced yet: direct_broadcast sends anyway
    assert a.channels.direct_broadcast(net.stamp(), c.node_id, "x", 1) == 1
    assert net.run(lambda: len(sub) == 1)
    # nobody on b subscribes: counted there
    a.channels.direct_broadcast(net.stamp(), b.node_id, "x", 2)
    assert net.run(lambda: b.counters["channels.receive.no_subscriber"] == 1)


def test_a_topic_set_is_believed_only_in_a_record_its_node_signed() -> None:
    net, a, b, c = cluster()
    # b forges a record for c (c's fields, a higher incarnation, b's signature)
    m = a.membership.member(c.node_id)
    assert m is not None
    record = Announcement.encode_record(
        c.identity,
        incarnation=m.incarnation + 1,
        state=MemberState.ALIVE,
        address=m.address,
        name=m.name,
        metadata=b"",
        observer=False,
        extensions={EXTENSION_TOPICS: cbor.encode(["stolen"])},
    )
    forged = Announcement.parse(record, b.identity.sign(b"x" + record))
    a.membership.handle_message(net.stamp(), b.node_id, B, forged)
    assert a.counters["membership.announcement.bad_signature"] == 1
    assert a.channels.core.subscribers_of("stolen") == []
    # no channels frame exists any more: nothing is routed to the channels subsystem
    assert a.channels.frame_types == ()


def test_a_topic_set_that_does_not_fit_the_record_is_announced_as_the_wildcard() -> None:
    net, a, b, _ = cluster()
    topics = [f"topic-with-a-rather-long-name-{i:02d}-" + "x" * 24 for i in range(20)]
    subs = [b.channels.subscribe(t) for t in topics]
    assert net.run(lambda: a.channels.core.remote_topics(b.node_id) == WILDCARD)
    assert b.counters["channels.topics.wildcard"] == 1
    # every topic goes to b, including one it does not subscribe to: b filters, counts
    assert a.channels.core.subscribers_of("unrelated") == [b.node_id]
    a.channels.broadcast(net.stamp(), topics[3], "wanted")
    a.channels.broadcast(net.stamp(), "unrelated", "unwanted")
    assert net.run(lambda: b.counters["channels.receive.no_subscriber"] == 1)
    assert [d.value for d in subs[3].take()] == ["wanted"]
    # back under the bound: a list again
    for sub in subs[1:]:
        b.channels.unsubscribe(sub)
    assert net.run(lambda: a.channels.core.remote_topics(b.node_id) == TopicSet((topics[0],)))
    assert a.channels.core.subscribers_of("unrelated") == []


def test_a_burst_of_subscriptions_is_one_or_two_records() -> None:
    net, a, b, _ = cluster()
    before = b.membership.local.incarnation
    subs = [b.channels.subscribe(f"t{i}") for i in range(10)]
    assert net.run(lambda: len(a.channels.core.subscribers_of("t9")) == 1)
    assert b.membership.local.incarnation - before <= 2
    assert len(subs) == 10


def test_a_restarted_subscriber_is_known_by_its_new_record() -> None:
    net, a, b, _ = cluster()
    b.channels.subscribe("old-topic")
    assert net.run(lambda: a.channels.core.subscribers_of("old-topic") == [b.node_id])
    identity = b.identity.to_bytes()
    del net.cores[B]
    b2 = make(B, 22, {IDENTITY_KEY: identity}, at=net.now)
    net.cores[B] = b2
    b2.handle_command(net.stamp(), Join((A,)))
    b2.channels.subscribe("new-topic")
    assert net.run(lambda: a.channels.core.subscribers_of("new-topic") == [b.node_id])
    assert a.channels.core.subscribers_of("old-topic") == []


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


def test_records_not_started_survive_a_replaced_connection() -> None:
    net, a, b, _ = cluster()
    sub = b.channels.subscribe("bulk")
    assert net.run(lambda: a.channels.core.subscribers_of("bulk") == [b.node_id])
    a.channels.broadcast(net.stamp(), "bulk", [0, b""])
    assert net.run(lambda: len(sub) == 1)
    payload = random.Random(5).randbytes(100_000)
    for i in range(1, 41):  # 4 MB: more than the stream takes at once
        a.channels.broadcast(net.stamp(), "bulk", [i, payload])
    waiting = sum(len(q) for q in a.channels._out[b.node_id].pending)
    assert waiting > 5
    # b restarts (same identity, same address) and dials a before a sends anything more
    identity = b.identity.to_bytes()
    del net.cores[B]
    b2 = make(B, 22, {IDENTITY_KEY: identity}, at=net.now)
    net.cores[B] = b2
    sub2 = b2.channels.subscribe("bulk")
    b2.connect(net.stamp(), a.node_id, A)
    assert net.run(lambda: a.counters["channels.send.kept_on_new_connection"] > 0, 5.0)
    kept = a.counters["channels.send.kept_on_new_connection"]
    assert kept >= waiting - 1
    assert a.counters["channels.send.dropped_partial"] <= 1
    assert net.run(lambda: len(sub2) >= kept, 30.0)
    got = [d.value[0] for d in sub2.take()]
    assert got == sorted(got) and got[-1] == 40 and len(got) >= kept


def test_when_metadata_fills_the_record_the_set_is_not_announced_and_it_is_counted() -> None:
    net, a, b, _ = cluster()
    room = b.membership.chunk_bytes - len(b.membership._self.ann.record) - 64 - 8
    b.membership.update_metadata(net.stamp(), b"m" * (room - 2))  # leaves 2 bytes free
    b.channels.subscribe("orders")
    assert net.run(lambda: b.counters["channels.topics.unannounced"] == 1, 2.0)
    assert b.counters["channels.topics.wildcard"] == 1
    assert a.channels.core.subscribers_of("orders") == []
