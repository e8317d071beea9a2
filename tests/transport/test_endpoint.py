"""TransportEndpoint: several endpoints joined by an in-memory network in virtual time."""

from __future__ import annotations

import heapq
import random

import pytest

from foundation_p2p.addresses import Address
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError
from foundation_p2p.transport.config import TransportConfig
from foundation_p2p.transport.endpoint import (
    ConnectFailed,
    EndpointConfig,
    EndpointEvent,
    PeerConnected,
    PeerDisconnected,
    StreamData,
    TransportEndpoint,
)
from foundation_p2p.transport.packet import MIN_INITIAL_BYTES, encode_initial
from foundation_p2p.transport.reset import RESET_BYTES

CLUSTER_KEY = bytes(range(32))


class Net:
    """Endpoints at addresses; datagrams arrive ``delay_s`` later (or are lost)."""

    def __init__(self, seed: int = 1, delay_s: float = 0.005, loss: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.delay_s = delay_s
        self.loss = loss
        self.now = 0.0
        self.nodes: dict[Address, TransportEndpoint] = {}
        self.events: dict[Address, list[EndpointEvent]] = {}
        self.queue: list[tuple[float, int, Address, Address, bytes]] = []
        self.seq = 0
        self.boots = 0
        self.source_override: dict[Address, Address] = {}
        """Datagrams from key appear to come from value (a NAT rebinding)."""
        self.drop_resets = False
        """Lose every stateless reset (to test the other restart rules alone)."""
        self.sent: list[tuple[Address, Address, bytes]] = []
        """Every datagram sent: (source, destination, bytes)."""

    def secret_bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def add(self, addr: Address, identity: Identity | None = None,
            config: EndpointConfig | None = None, epoch: int | None = None) -> TransportEndpoint:
        """A node at ``addr``; each one added boots with a newer epoch unless told."""
        identity = identity or Identity.generate(self.secret_bytes)
        if epoch is None:
            self.boots += 1
            epoch = 1000 + self.boots
        ep = TransportEndpoint(identity, Keyring(CLUSTER_KEY), self.secret_bytes,
                               epoch=epoch, config=config, counters=Counters())
        self.nodes[addr] = ep
        self.events[addr] = []
        return ep

    def flush(self) -> None:
        for addr, ep in self.nodes.items():
            for dst, data in ep.take_datagrams(self.now):
                self.sent.append((addr, dst, data))
                if self.rng.random() < self.loss:
                    continue
                if self.drop_resets and len(data) == RESET_BYTES:
                    continue
                self.seq += 1
                src = self.source_override.get(addr, addr)
                heapq.heappush(self.queue, (self.now + self.delay_s, self.seq, src, dst, data))
            self.events[addr].extend(ep.take_events())

    def step(self) -> bool:
        times = [q[0] for q in self.queue[:1]]
        for ep in self.nodes.values():
            d = ep.next_deadline()
            if d is not None:
                times.append(d)
        if not times:
            return False
        self.now = max(self.now, min(times))
        while self.queue and self.queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self.queue)
            ep = self.nodes.get(dst)
            if ep is not None:
                ep.handle_datagram(self.now, src, data)
        for ep in self.nodes.values():
            d = ep.next_deadline()
            if d is not None and d <= self.now:
                ep.handle_timer(self.now)
        self.flush()
        return True

    def run(self, until, max_time_s: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
        self.flush()
        limit = self.now + max_time_s
        while self.now <= limit:
            if until():
                return True
            if not self.step():
                break
        return bool(until())

    def of(self, addr: Address, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[addr] if isinstance(e, kind)]


A: Address = ("10.0.0.1", 1)
B: Address = ("10.0.0.2", 1)
C: Address = ("10.0.0.3", 1)


def connected(net: Net, a: Address, b: Address) -> bool:
    ea, eb = net.nodes[a], net.nodes[b]
    return eb.node_id in ea.peers() and ea.node_id in eb.peers()


def test_connect_exchange_stream_data_both_ways() -> None:
    net = Net()
    a, b = net.add(A), net.add(B)
    conn = a.connect(net.now, b.node_id, B)
    assert a.connect(net.now, b.node_id, B) is conn  # the pending dial is reused
    assert net.run(lambda: connected(net, A, B))
    up_a = net.of(A, PeerConnected)
    up_b = net.of(B, PeerConnected)
    assert [(e.node_id, e.outgoing) for e in up_a] == [(b.node_id, True)]
    assert [(e.node_id, e.outgoing, e.address) for e in up_b] == [(a.node_id, False, A)]
    payload = net.rng.randbytes(300_000)
    sid = a.open_stream(net.now, b.node_id)
    sent = 0

    def pump() -> bool:
        nonlocal sent
        if sent < len(payload):
            sent += a.send(net.now, b.node_id, sid, payload[sent:], end=True)
        got = b"".join(e.data for e in net.of(B, StreamData) if e.stream_id == sid)
        return got == payload and any(e.end for e in net.of(B, StreamData))

    assert net.run(pump)
    # the answer on the same stream
    b.send(net.now, a.node_id, sid, b"pong", end=True)
    assert net.run(lambda: any(e.data == b"pong" for e in net.of(A, StreamData)))
    assert a.connect(net.now, b.node_id, B) is a.connection(b.node_id)
    assert a.counters["transport.connected"] == 1
    assert b.counters["transport.accepted"] == 1
    assert a.half_open == 0 and b.half_open == 0


def test_restart_replaces_the_old_connection() -> None:
    """Without the stateless reset (lost here) nor the gossip hint, the new boot's
    handshake still replaces the connection to the old one."""
    net = Net()
    net.drop_resets = True
    a, b = net.add(A), net.add(B)
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: connected(net, A, B))
    old = b.connection(a.node_id)
    assert old is not None
    # A restarts: same identity, new endpoint (new Noise static key, new connection ids)
    a2 = net.add(A, identity=a.identity)
    a2.connect(net.now, b.node_id, B)
    assert net.run(lambda: b.connection(a.node_id) is not old
                   and b.connection(a.node_id) is not None
                   and b.connection(a.node_id).is_established)  # type: ignore[union-attr]
    assert old.state_name in ("closing", "closed")
    downs = net.of(B, PeerDisconnected)
    assert [(d.node_id, d.reason) for d in downs] == [(a.node_id, "replaced")]
    ups = net.of(B, PeerConnected)
    assert len(ups) == 2 and ups[1].cid == b.connection(a.node_id).local_cid  # type: ignore[union-attr]
    assert b.counters["transport.replaced"] == 1
    # the new connection carries data
    sid = a2.open_stream(net.now, b.node_id)
    a2.send(net.now, b.node_id, sid, b"after restart", end=True)
    assert net.run(lambda: any(e.data == b"after restart" for e in net.of(B, StreamData)))


def test_address_change_moves_the_connection_after_authentication() -> None:
    net = Net()
    a, b = net.add(A), net.add(B)
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: connected(net, A, B))
    assert b.address(a.node_id) == A
    new_addr: Address = ("10.0.0.9", 7)
    net.source_override[A] = new_addr
    net.nodes[new_addr] = a  # replies to the new address reach A
    net.events[new_addr] = net.events[A]
    sid = a.open_stream(net.now, b.node_id)
    a.send(net.now, b.node_id, sid, b"from elsewhere", end=True)
    assert net.run(lambda: b.address(a.node_id) == new_addr)
    assert b.counters["transport.address_changes"] == 1
    # a forged datagram from a third address changes nothing: it does not authenticate
    conn = b.connection(a.node_id)
    assert conn is not None
    forged = b"\x85\x01\x04\x48" + conn.local_cid + b"\x05" + b"\x51" + bytes(17)
    b.handle_datagram(net.now, ("10.6.6.6", 6), forged)
    assert b.address(a.node_id) == new_addr


@pytest.mark.parametrize("seed", range(4))
def test_simultaneous_connect_keeps_one_connection_on_both_sides(seed: int) -> None:
    net = Net(seed=seed)
    a, b = net.add(A), net.add(B)
    a.connect(net.now, b.node_id, B)
    b.connect(net.now, a.node_id, A)

    def settled() -> bool:
        ca, cb = a.connection(b.node_id), b.connection(a.node_id)
        return (
            ca is not None and cb is not None and ca.is_established
            and cb.is_established and ca.remote_cid == cb.local_cid
            and len(a) == 1 and len(b) == 1
        )

    assert net.run(settled), f"seed {seed}"
    # the kept one was dialled by the smaller node id
    smaller = a if a.node_id < b.node_id else b
    assert smaller.connection(a.node_id if smaller is b else b.node_id).is_client  # type: ignore[union-attr]
    assert a.counters["transport.duplicates_closed"] + b.counters[
        "transport.duplicates_closed"] >= 1
    sid = a.open_stream(net.now, b.node_id)
    a.send(net.now, b.node_id, sid, b"one", end=True)
    assert net.run(lambda: any(e.data == b"one" for e in net.of(B, StreamData)))


def test_half_open_bounds_are_enforced_and_counted() -> None:
    net = Net()
    cfg = EndpointConfig(max_half_open=3, max_half_open_per_address=2)
    b = net.add(B, config=cfg)
    spoofers = [Identity.generate(net.secret_bytes) for _ in range(5)]
    from foundation_p2p.transport.connection import Connection

    def initial(identity: Identity) -> bytes:
        conn = Connection.connect(0.0, identity, Keyring(CLUSTER_KEY), net.secret_bytes)
        return conn.take_datagrams(0.0)[0]

    for ident in spoofers[:3]:
        b.handle_datagram(0.0, ("10.1.1.1", 1), initial(ident))
    assert b.half_open == 2
    assert b.counters["transport.dropped.half_open_per_address"] == 1
    b.handle_datagram(0.0, ("10.1.1.2", 1), initial(spoofers[3]))
    b.handle_datagram(0.0, ("10.1.1.3", 1), initial(spoofers[4]))
    assert b.half_open == 3
    assert b.counters["transport.dropped.half_open_full"] == 1
    # the half-open connections give up after their handshake retries; the slots free up
    while b.next_deadline() is not None and net.now < 120:
        net.now = max(net.now, b.next_deadline())  # type: ignore[type-var]
        b.handle_timer(net.now)
        b.take_datagrams(net.now)
    assert b.half_open == 0 and len(b) == 0
    assert b.counters["transport.handshake_failed"] == 3


def test_bad_datagrams_are_dropped_and_counted() -> None:
    net = Net()
    b = net.add(B)
    b.handle_datagram(0.0, A, b"")
    b.handle_datagram(0.0, A, b"\x85\x02\x04")  # version 2
    b.handle_datagram(0.0, A, b"\x85\x01\x04\x48" + bytes(8) + b"\x00\x51" + bytes(17))
    b.handle_datagram(0.0, A, b"\x85\x01\x03\x48" + bytes(8) + b"\x48" + bytes(8) + b"\x40")
    b.handle_datagram(0.0, A, b"\x87\x01\x01")  # gossip is not the endpoint's
    short = encode_initial(0, bytes(8), bytes(48), min_bytes=100)
    b.handle_datagram(0.0, A, short)  # below 1200 bytes
    b.handle_datagram(0.0, A, encode_initial(77, bytes(8), bytes(48), MIN_INITIAL_BYTES))
    c = b.counters
    assert c["transport.dropped.malformed"] == 2  # the empty one and the short initial
    assert c["transport.dropped.unsupported_version"] == 1
    assert c["transport.dropped.unknown_cid"] == 2
    assert c["transport.dropped.not_connection"] == 1
    assert c["transport.dropped.unknown_key"] == 1
    assert len(b) == 0 and b.take_datagrams(0.0) == []


def test_max_connections_evicts_the_least_recently_used() -> None:
    net = Net()
    cfg = EndpointConfig(max_connections=2)
    a = net.add(A, config=cfg)
    b, c, d = net.add(B), net.add(C), net.add(("10.0.0.4", 1))
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: b.node_id in a.peers())
    a.connect(net.now, c.node_id, C)
    assert net.run(lambda: c.node_id in a.peers())
    sid = a.open_stream(net.now, b.node_id)  # B is now the most recently used
    a.send(net.now, b.node_id, sid, b"x")
    a.connect(net.now, d.node_id, ("10.0.0.4", 1))
    assert net.run(lambda: d.node_id in a.peers())
    assert sorted(a.peers()) == sorted([b.node_id, d.node_id])
    assert a.counters["transport.evicted"] == 1
    assert [e.node_id for e in net.of(A, PeerDisconnected)] == [c.node_id]


def test_idle_connection_is_closed() -> None:
    net = Net()
    cfg = EndpointConfig(idle_close_s=5.0, connection=TransportConfig(keep_alive_s=1.0))
    a = net.add(A, config=cfg)
    b = net.add(B)
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: connected(net, A, B))
    start = net.now
    assert net.run(lambda: b.node_id not in a.peers(), max_time_s=20)
    assert 4.9 <= net.now - start < 6.0  # from A's handshake, a few ms before `start`
    assert a.counters["transport.closed_idle"] == 1
    downs = net.of(A, PeerDisconnected)
    assert [(d.reason, d.by_peer) for d in downs] == [("idle", False)]
    # the peer hears the close
    assert net.run(lambda: a.node_id not in b.peers())
    assert [d.by_peer for d in net.of(B, PeerDisconnected)] == [True]


def test_dial_to_nobody_fails_with_an_event() -> None:
    net = Net()
    a = net.add(A)
    ghost = Identity.generate(net.secret_bytes).node_id
    a.connect(net.now, ghost, ("10.9.9.9", 9))
    assert net.run(lambda: bool(net.of(A, ConnectFailed)), max_time_s=200)
    assert net.of(A, ConnectFailed)[0].node_id == ghost
    assert a.connection(ghost) is None
    with pytest.raises(ConfigError):
        a.connect(net.now, a.node_id, A)


def test_paused_connection_is_not_read_and_the_sender_is_held_back() -> None:
    net = Net()
    a, b = net.add(A), net.add(B)
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: connected(net, A, B))
    b.pause(a.node_id)
    sid = a.open_stream(net.now, b.node_id)
    payload = bytes(3_000_000)
    sent = 0

    def push() -> bool:
        nonlocal sent
        if sent < len(payload):
            sent += a.send(net.now, b.node_id, sid, payload[sent:], end=True)
        return False

    def until() -> bool:
        push()
        return net.now > 3.0

    net.run(until, max_time_s=5)
    assert not net.of(B, StreamData)
    conn = a.connection(b.node_id)
    assert conn is not None
    assert sent < len(payload)  # flow control stopped the sender, nothing was lost
    b.pause(a.node_id, False)

    def done() -> bool:
        push()
        got = sum(len(e.data) for e in net.of(B, StreamData))
        return got == len(payload)

    assert net.run(done, max_time_s=30)


def test_from_mapping_names_bad_keys() -> None:
    cfg = EndpointConfig.from_mapping(
        {"max_connections": 9, "idle_timeout_s": 3.0, "keep_alive_s": 1.0}
    )
    assert cfg.max_connections == 9 and cfg.connection.idle_timeout_s == 3.0
    with pytest.raises(ConfigError, match=r"transport\.nope"):
        EndpointConfig.from_mapping({"nope": 1})
    with pytest.raises(ConfigError, match="max_half_open"):
        EndpointConfig(max_half_open=0)


def test_a_later_dial_from_the_same_peer_boot_replaces_a_stale_connection() -> None:
    """The peer lost the connection (its CONNECTION_CLOSE never came) and dials back from
    the other side: long after the first authenticated, this is not a simultaneous dial,
    and the new connection wins whatever the node ids' order."""
    net = Net()
    net.drop_resets = True
    a, b = net.add(A), net.add(B)
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: connected(net, A, B))
    old = a.connection(b.node_id)
    net.run(lambda: False, max_time_s=5.0)  # past simultaneous_window_s (2 s)
    b2 = net.add(B, identity=b.identity, epoch=b.epoch)
    b2._static = b.static  # same boot of B: the same Noise static key
    b2.connect(net.now, a.node_id, A)
    assert net.run(lambda: a.connection(b.node_id) is not old
                   and a.node_id in b2.peers())
    assert [d.reason for d in net.of(A, PeerDisconnected)] == ["replaced"]
    assert a.counters["transport.replaced"] == 1
    assert a.counters["transport.duplicates_closed"] == 0


@pytest.mark.parametrize("seed", [0, 1, 6])
def test_handshake_and_data_survive_loss(seed: int) -> None:
    """10% loss each way: lost handshake messages are retransmitted, one connection
    results, and the stream's bytes arrive intact."""
    net = Net(seed=seed, loss=0.10)
    a, b = net.add(A), net.add(B)
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: connected(net, A, B), max_time_s=60)
    assert b.counters["transport.accepted"] == 1  # one connection, however many initials
    if seed == 6:  # this seed loses a handshake message: both sides retransmit
        assert a.stats()["transport.conn.handshake.retransmits"] >= 1
        assert b.stats()["transport.conn.handshake.duplicates"] >= 1
    # 1 MB: with path MTU discovery the data goes in ~16 KiB datagrams, and 200 KB (13 of
    # them) can cross 10% loss without losing one, leaving nothing to retransmit
    payload = net.rng.randbytes(1_000_000)
    sid = a.open_stream(net.now, b.node_id)
    sent = 0

    def pump() -> bool:
        nonlocal sent
        if sent < len(payload):
            sent += a.send(net.now, b.node_id, sid, payload[sent:], end=True)
        return b"".join(e.data for e in net.of(B, StreamData)) == payload

    assert net.run(pump, max_time_s=60)
    assert a.stats()["transport.conn.retransmits"] > 0


def test_a_repeated_initial_is_answered_by_the_same_half_open_connection() -> None:
    net = Net()
    a, b = net.add(A), net.add(B)
    a.connect(0.0, b.node_id, B)
    ((_, initial),) = a.take_datagrams(0.0)
    b.handle_datagram(0.0, A, initial)
    first = b.take_datagrams(0.0)
    b.handle_datagram(0.1, A, initial)  # the client did not get the answer and resent
    again = b.take_datagrams(0.1)
    assert len(b) == 1 and b.half_open == 1 and b.counters["transport.accepted"] == 1
    assert [d for _, d in again] == [d for _, d in first]  # message 2, byte for byte
    # the same client connection id from another address is another handshake
    b.handle_datagram(0.2, C, initial)
    assert len(b) == 2 and b.counters["transport.accepted"] == 2
