"""The messenger (``foundation_p2p.messaging``, ``spec/messaging.md``) between NodeCores in
memory: services' CBOR messages on unidirectional streams 16 and up, in order per sender
and service, dial on demand, bounded pending queues, unreachable peers, broken streams.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from core_net import WALL, CoreNet

from foundation_p2p.addresses import Address, NodeId
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError, LimitError, MalformedError
from foundation_p2p.events import Join
from foundation_p2p.membership.state import MemberState
from foundation_p2p.messaging import (
    FIRST_STREAM_ID,
    Messenger,
    decode_message,
    encode_record,
    parse_record_head,
    record_head,
)
from foundation_p2p.node import NodeCore
from foundation_p2p.transport.endpoint import EndpointEvent, StreamData
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits

KEYRING = Keyring(bytes(range(32)))
TEST = 200
OTHER = 201
"""Service numbers for these tests (1..3 are the node's own: the registry runs on 1)."""
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


class Inbox:
    """What one service received, and the peers it was told it lost."""

    def __init__(self) -> None:
        self.got: list[tuple[NodeId, Any]] = []
        self.lost: list[NodeId] = []

    def on_message(self, now: Now, peer: NodeId, message: Any) -> None:
        self.got.append((peer, message))

    def on_peer_lost(self, peer: NodeId) -> None:
        self.lost.append(peer)


class Net(CoreNet):
    """Cores whose transport events go through the channels then the messenger; the
    events left for the runtime are kept in :attr:`raw`."""

    def __init__(self, *cores: NodeCore) -> None:
        super().__init__(*cores)
        self.raw: dict[Address, list[EndpointEvent]] = {a: [] for a in self.cores}

    def collect(self, addr: Address, core: NodeCore) -> None:
        self.raw[addr].extend(core.take_transport_events(self.stamp()))
        core.take_events()


def cluster(n: int = 3) -> tuple[Net, list[NodeCore]]:
    cores = [make(addr, i + 1) for i, addr in enumerate((A, B, C)[:n])]
    net = Net(*cores)
    for core in cores[1:]:
        core.handle_command(net.stamp(), Join((A,)))

    def all_alive() -> bool:
        for x in cores:
            for y in cores:
                m = x.membership.member(y.node_id)
                if m is None or m.state != MemberState.ALIVE:
                    return False
        return True

    assert net.run(all_alive)
    return net, cores


def inboxes(cores: list[NodeCore], service: int = TEST) -> list[Inbox]:
    out = []
    for core in cores:
        box = Inbox()
        core.messenger.register(service, box.on_message, box.on_peer_lost)
        out.append(box)
    return out


def test_messages_arrive_in_order_per_sender_and_service_after_a_dial_on_demand() -> None:
    net, (a, b, c) = cluster()
    box_a, box_b, box_c = inboxes([a, b, c])
    assert a.transport.connection(b.node_id) is None
    for i in range(200):
        assert a.messenger.send(net.stamp(), b.node_id, TEST, ["delta", i])
        assert c.messenger.send(net.stamp(), b.node_id, TEST, {"from": "c", "n": i})
    assert net.run(lambda: len(box_b.got) == 400)
    from_a = [m for p, m in box_b.got if p == a.node_id]
    from_c = [m for p, m in box_b.got if p == c.node_id]
    assert from_a == [["delta", i] for i in range(200)]
    assert from_c == [{"from": "c", "n": i} for i in range(200)]
    assert box_a.got == [] and box_c.got == []
    assert a.counters["messaging.s200.sent"] == 200
    assert b.counters["messaging.s200.received"] == 400
    assert b.counters["messaging.s200.received_bytes"] > 0
    # the stream the messenger opened comes after the four channel streams
    sids = a.messenger._out[b.node_id].sids
    assert list(sids) == [TEST] and sids[TEST] >= FIRST_STREAM_ID


def test_each_service_has_its_own_stream_and_the_runtime_sees_none_of_their_data() -> None:
    net, (a, b, _) = cluster()
    box_b = inboxes([a, b])[1]
    other_b = inboxes([a, b], OTHER)[1]
    for i in range(20):
        a.messenger.send(net.stamp(), b.node_id, TEST, i)
        a.messenger.send(net.stamp(), b.node_id, OTHER, -i)
    assert net.run(lambda: len(box_b.got) == 20 and len(other_b.got) == 20)
    assert [m for _, m in box_b.got] == list(range(20))
    assert [m for _, m in other_b.got] == [-i for i in range(20)]
    sids = a.messenger._out[b.node_id].sids
    assert len(set(sids.values())) == 2
    assert all(sid >= FIRST_STREAM_ID and sid & 2 for sid in sids.values())
    assert not [e for e in net.raw[B] if isinstance(e, StreamData)]


def test_a_message_larger_than_the_stream_buffer_arrives_whole() -> None:
    net, (a, b, _) = cluster()
    box_b = inboxes([a, b])[1]
    big = {"blob": bytes(range(256)) * 4000, "n": list(range(1000))}  # ~1 MB encoded
    assert a.messenger.send(net.stamp(), b.node_id, TEST, big)
    assert a.messenger.send(net.stamp(), b.node_id, TEST, "after")
    assert net.run(lambda: len(box_b.got) == 2, max_time_s=60)
    assert box_b.got[0][1] == big and box_b.got[1][1] == "after"


def test_a_full_pending_queue_refuses_new_messages_and_keeps_the_older_ones() -> None:
    net, (a, b, _) = cluster()
    box_b = Inbox()
    b.messenger.register(TEST, box_b.on_message)
    a.messenger.register(TEST, Inbox().on_message, max_pending_bytes=10_000)
    payload = bytes(1000)
    results = [a.messenger.send(net.stamp(), b.node_id, TEST, payload)
               for _ in range(30)]
    # no connection yet: everything waits; the queue holds at most 10,000 bytes
    assert results[:9] == [True] * 9 and not any(results[10:])
    refused = results.count(False)
    assert a.counters["messaging.send.dropped_pending_full"] == refused
    assert a.messenger.pending_bytes(b.node_id, TEST) <= 10_000
    assert net.run(lambda: len(box_b.got) == 30 - refused)
    assert a.messenger.pending_bytes(b.node_id) == 0


def test_a_peer_with_no_known_address_is_unreachable_then_dialled_again_after_retry() -> None:
    net, (a, b) = cluster(2)
    box_a, _ = inboxes([a, b])
    stranger = bytes(range(16))
    assert not a.messenger.send(net.stamp(), stranger, TEST, "hello")
    assert a.counters["messaging.send.dropped_no_address"] == 1
    assert box_a.lost == [stranger]
    assert not a.messenger.reachable(net.stamp(), stranger)
    assert not a.messenger.send(net.stamp(), stranger, TEST, "again")
    assert a.counters["messaging.send.dropped_unreachable"] == 1
    net.now += a.messenger.retry_after_s
    assert a.messenger.reachable(net.stamp(), stranger)
    assert not a.messenger.send(net.stamp(), stranger, TEST, "later")
    assert a.counters["messaging.send.dropped_no_address"] == 2


def test_a_record_that_fails_to_decode_breaks_its_stream_and_others_go_on() -> None:
    net, (a, b) = cluster(2)
    box_a, box_b = inboxes([a, b])
    assert a.messenger.send(net.stamp(), b.node_id, TEST, "first")
    assert net.run(lambda: len(box_b.got) == 1)
    conn = a.transport.connection(b.node_id)
    assert conn is not None
    # a hand-made stream: service 1, then a text head where a byte string head belongs
    sid = conn.open_stream(uni=True)
    assert sid >= FIRST_STREAM_ID
    conn.send(sid, bytes([TEST]) + encode_record("fine") + b"\x61x")

    def stopped() -> bool:  # the peer's STOP_SENDING reset our side of the stream
        try:
            conn.send(sid, b"")
        except ConfigError:
            return True
        return False

    assert net.run(stopped)
    assert b.counters["messaging.receive.broken.malformed"] == 1
    assert [m for _, m in box_b.got] == ["first", "fine"]
    # the messenger's own stream is untouched
    assert a.messenger.send(net.stamp(), b.node_id, TEST, "second")
    assert net.run(lambda: len(box_b.got) == 3)
    assert box_b.got[-1][1] == "second" and box_a.lost == []


@pytest.mark.parametrize(
    "garbage, code",
    [
        (record_head(3) + b"\x82\x01", None),  # incomplete: waits, nothing delivered
        (b"\x58\x05" + b"\x00" * 5, "malformed"),  # length 5 not in its shortest form
        (b"\x5f", "malformed"),  # indefinite length
        (b"\x5a" + (1 << 30).to_bytes(4, "big"), "limit"),  # longer than max_record_bytes
        (record_head(3) + b"\xa2\x02\x00\x01\x00"[:3], "malformed"),  # not whole CBOR
        (record_head(2) + b"\x19\x00", "malformed"),  # truncated item
        (record_head(3) + b"\x19\x00\x01", "malformed"),  # 1 not in its shortest form
        (record_head(2) + b"\xc1\x00", "malformed"),  # a tag is not plain data
    ],
)
def test_bad_records_break_the_stream_with_a_counted_code(garbage: bytes, code: str | None) -> None:
    net, (a, b) = cluster(2)
    box_b = inboxes([a, b])[1]
    a.messenger.send(net.stamp(), b.node_id, TEST, 0)
    assert net.run(lambda: len(box_b.got) == 1)
    conn = a.transport.connection(b.node_id)
    assert conn is not None
    sid = conn.open_stream(uni=True)
    conn.send(sid, bytes([TEST]) + garbage)
    if code is None:
        net.run(lambda: False, max_time_s=1)
        assert not any(k.startswith("messaging.receive.broken") for k in b.counters)
        assert len(box_b.got) == 1
    else:
        assert net.run(lambda: b.counters[f"messaging.receive.broken.{code}"] == 1)
        assert len(box_b.got) == 1


def test_a_service_the_peer_does_not_run_gets_its_stream_stopped_and_is_told() -> None:
    net, (a, b) = cluster(2)
    box_a = Inbox()
    a.messenger.register(OTHER, box_a.on_message, box_a.on_peer_lost)
    inboxes([a, b])  # both run TEST; only a runs OTHER
    a.messenger.send(net.stamp(), b.node_id, OTHER, "vote?")
    assert net.run(lambda: box_a.lost == [b.node_id])
    assert b.counters["messaging.receive.broken.malformed"] == 1
    assert OTHER not in a.messenger._out[b.node_id].sids
    # the next message opens a new stream (stopped again: b still does not run OTHER)
    a.messenger.send(net.stamp(), b.node_id, OTHER, "vote?")
    assert net.run(lambda: b.counters["messaging.receive.broken.malformed"] == 2)


def test_a_message_the_service_refuses_is_counted_and_the_stream_goes_on() -> None:
    net, (a, b) = cluster(2)
    got: list[Any] = []

    def picky(now: Now, peer: NodeId, message: Any) -> None:
        if message == "bad":
            raise MalformedError("not a sync message")
        got.append(message)

    a.messenger.register(TEST, Inbox().on_message)
    b.messenger.register(TEST, picky)
    for m in ("one", "bad", "two"):
        a.messenger.send(net.stamp(), b.node_id, TEST, m)
    assert net.run(lambda: len(got) == 2)
    assert got == ["one", "two"]
    assert b.counters["messaging.s200.refused"] == 1


def test_a_closed_connection_tells_the_services_and_the_next_message_dials_again() -> None:
    net, (a, b) = cluster(2)
    box_a, box_b = inboxes([a, b])
    a.messenger.send(net.stamp(), b.node_id, TEST, 1)
    assert net.run(lambda: len(box_b.got) == 1)
    a.transport.close(b.node_id, reason="test")
    assert net.run(lambda: box_a.lost == [b.node_id] and box_b.lost == [a.node_id])
    net.now += a.messenger.retry_after_s
    # both sides dial again (b's registry syncs too): a simultaneous dial may lose what
    # went on the losing connection, and says so (on_peer_lost); the service sends again
    for _ in range(3):
        lost = len(box_a.lost)
        assert a.messenger.send(net.stamp(), b.node_id, TEST, 2)
        assert net.run(lambda: len(box_b.got) == 2 or len(box_a.lost) > lost)  # noqa: B023
        if len(box_b.got) == 2:
            break
    assert box_b.got[-1] == (a.node_id, 2)


def test_send_refuses_local_mistakes_with_clear_errors() -> None:
    net, (a, b) = cluster(2)
    with pytest.raises(ConfigError, match="not registered"):
        a.messenger.send(net.stamp(), b.node_id, TEST, 1)
    a.messenger.register(TEST, Inbox().on_message)
    with pytest.raises(ConfigError, match="already registered"):
        a.messenger.register(TEST, Inbox().on_message)
    with pytest.raises(ConfigError, match=r"1\.\.255"):
        a.messenger.register(0, Inbox().on_message)
    with pytest.raises(ConfigError, match="own node id"):
        a.messenger.send(net.stamp(), a.node_id, TEST, 1)
    with pytest.raises(MalformedError):
        a.messenger.send(net.stamp(), b.node_id, TEST, object())
    small = Messenger(
        a.node_id, transport=a.transport, connect=a.connect, counters=a.counters,
        max_record_bytes=100,
    )
    small.register(TEST, Inbox().on_message)
    with pytest.raises(LimitError, match="max_record_bytes"):
        small.send(net.stamp(), b.node_id, TEST, bytes(200))


def test_record_heads_are_shortest_form_byte_string_heads() -> None:
    for n in (0, 23, 24, 255, 256, 65535, 65536, 2**32):
        head = record_head(n)
        assert parse_record_head(head, 0) == (len(head), n)
        assert cbor.encode(b"")[:1] == b"\x40"
    assert encode_record([1, "a"]) == cbor.encode(cbor.encode([1, "a"]))
    assert parse_record_head(b"\x59\x01", 0) is None  # incomplete head
    with pytest.raises(MalformedError):
        parse_record_head(b"\x60", 0)
    big = cbor.encode(list(range(30_000)))  # > 65,507 bytes: the large path
    assert decode_message(big, big_limits()) == list(range(30_000))
    with pytest.raises(MalformedError):
        decode_message(big + b"\x00", big_limits())


def big_limits() -> WireLimits:
    return WireLimits(max_collection_items=1 << 20, max_bytes_bytes=1 << 22,
                      max_text_bytes=1 << 22)


def test_default_limits_refuse_deep_nesting() -> None:
    deep: Any = 0
    for _ in range(20):
        deep = [deep]
    with pytest.raises(LimitError):
        decode_message(cbor.encode(deep), DEFAULT_LIMITS)
