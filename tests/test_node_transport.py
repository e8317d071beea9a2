"""NodeCore with its transport endpoint: connection datagrams beside gossip, one socket."""

from __future__ import annotations

import random

import pytest
from core_net import WALL, CoreNet

from foundation_p2p.addresses import Address
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError
from foundation_p2p.events import Join
from foundation_p2p.membership.state import MemberState
from foundation_p2p.node import NodeCore
from foundation_p2p.transport.endpoint import EndpointEvent, PeerConnected, StreamData

KEYRING = Keyring(bytes(range(32)))
A: Address = ("10.0.0.1", 7946)
B: Address = ("10.0.0.2", 7946)


def make(addr: Address, seed: int, **config: object) -> NodeCore:
    rng = random.Random(seed)
    return NodeCore(
        NodeConfig(bind=addr, **config),  # type: ignore[arg-type]
        now=Now(0.0, WALL),
        keyring=KEYRING,
        stored={},
        rng=random.Random(seed + 100),
        secret_bytes=rng.randbytes,
    )


class Wire(CoreNet):
    """Two or more cores on a lossless 2 ms network, driven in virtual time; the
    endpoints' own events are kept per node in :attr:`events`."""

    def __init__(self, *cores: NodeCore, confirm_writes: bool = True) -> None:
        super().__init__(*cores, confirm_writes=confirm_writes)
        self.events: dict[Address, list[EndpointEvent]] = {a: [] for a in self.cores}

    def collect(self, addr: Address, core: NodeCore) -> None:
        core.take_events()
        self.events[addr].extend(core.transport.take_events())


def test_two_cores_exchange_stream_data_while_gossip_goes_on() -> None:
    a, b = make(A, 1), make(B, 2)
    wire = Wire(a, b)
    a.handle_command(wire.stamp(), Join((B,)))

    def members_alive() -> bool:
        ma, mb = a.membership.member(b.node_id), b.membership.member(a.node_id)
        return (
            ma is not None
            and mb is not None
            and ma.state == MemberState.ALIVE
            and mb.state == MemberState.ALIVE
        )

    assert wire.run(members_alive)
    # the address comes from the membership
    a.connect(wire.stamp(), b.node_id)
    assert wire.run(lambda: b.node_id in a.transport.peers() and a.node_id in b.transport.peers())
    up = [e for e in wire.events[B] if isinstance(e, PeerConnected)]
    assert [e.node_id for e in up] == [a.node_id]
    payload = random.Random(5).randbytes(2_000_000)
    sid = a.transport.open_stream(wire.now, b.node_id)
    control = a.transport.open_stream(wire.now, b.node_id, urgency=0)
    sent = 0

    def pump() -> bool:
        nonlocal sent
        if sent < len(payload):
            sent += a.transport.send(wire.now, b.node_id, sid, payload[sent:], end=True)
        data = [e for e in wire.events[B] if isinstance(e, StreamData) and e.stream_id == sid]
        return b"".join(e.data for e in data) == payload and data[-1].end

    a.transport.send(wire.now, b.node_id, control, b"urgent", end=True)
    gossip_before = a.counters["packets.received"] - a.counters["transport.datagrams_received"]
    assert wire.run(pump)
    assert any(
        e.data == b"urgent"
        for e in wire.events[B]
        if isinstance(e, StreamData) and e.stream_id == control
    )
    # gossip goes on beside the open connection (probes every second), the members alive
    wire.run(lambda: False, max_time_s=3.0)
    gossip_after = a.counters["packets.received"] - a.counters["transport.datagrams_received"]
    assert gossip_after > gossip_before
    assert members_alive()
    assert a.counters["packets.dropped.malformed"] == 0
    assert b.counters["transport.dropped.malformed"] == 0
    # 2 MB in datagrams of at most the path-MTU ceiling (16384 by default)
    assert wire.sent_connection > 2_000_000 // 16384


def test_connection_datagrams_wait_for_the_boot_writes() -> None:
    a, b = make(A, 1), make(B, 2)
    wire = Wire(a, b, confirm_writes=False)
    a.connect(wire.stamp(), b.node_id, B)
    assert a.take_outgoing() == [] and a.take_outgoing_datagrams() == []
    assert a.next_deadline() is None or a.next_deadline() > wire.now  # type: ignore[operator]
    writes = a.take_writes()
    a.writes_done(wire.stamp(), [w.id for w in writes])
    out = a.take_outgoing()
    assert len(out) == 1 and out[0][0] == B and out[0][1][:3] == b"\x86\x01\x02"


def test_messages_mode_hands_connection_bytes_out_separately() -> None:
    a, b = make(A, 1), make(B, 2)
    wire = Wire(a, b)
    wire.flush()
    a.connect(wire.stamp(), b.node_id, B)
    assert a.take_outgoing_packets() == []
    (only,) = a.take_outgoing_datagrams()
    assert only[0] == B and only[1][:3] == b"\x86\x01\x02"
    b.handle_datagram(wire.stamp(), A, only[1])
    assert b.transport.half_open == 1


def test_connect_needs_an_address() -> None:
    a = make(A, 1)
    with pytest.raises(ConfigError, match="no known address"):
        a.connect(Now(0.0, WALL), bytes(16))


def test_transport_table_configures_the_endpoint() -> None:
    a = make(A, 1, extra={"transport": {"max_connections": 3, "idle_timeout_s": 20.0}})
    assert a.transport.config.max_connections == 3
    assert a.transport.config.connection.idle_timeout_s == 20.0
    with pytest.raises(ConfigError, match="unknown key"):
        make(A, 1, extra={"transport": {"max_conections": 3}})
