"""A restarted peer is reached again at once (``spec/transport.md`` section 11).

Endpoints joined by ``test_endpoint.Net`` (virtual time, in memory). A restart is a new
``TransportEndpoint`` at the same address with the same identity and a newer boot epoch:
it holds none of the old boot's connections.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_endpoint import A, B, Net, connected

from foundation_p2p.transport.endpoint import (
    ConnectFailed,
    EndpointConfig,
    PeerConnected,
    PeerDisconnected,
    StreamData,
    TransportEndpoint,
)
from foundation_p2p.transport.errors import ErrorCode
from foundation_p2p.transport.packet import ConnPacketType, packet_type, parse_one_rtt
from foundation_p2p.transport.reset import (
    RESET_BYTES,
    ResetKey,
    ResetLimiter,
    encode_reset,
    reset_token_of,
)

A2 = ("10.0.0.9", 1)


def send_data(net: Net, src: TransportEndpoint, dst: TransportEndpoint, data: bytes) -> None:
    sid = src.open_stream(net.now, dst.node_id)
    src.send(net.now, dst.node_id, sid, data, end=True)
    net.flush()


def got(net: Net, addr: tuple[str, int], data: bytes) -> bool:
    return any(e.data == data for e in net.of(addr, StreamData))


def pair(net: Net) -> tuple[TransportEndpoint, TransportEndpoint]:
    a, b = net.add(A), net.add(B)
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: connected(net, A, B))
    return a, b


# --- the boot epoch in the handshake ------------------------------------------------------


def test_each_connection_knows_its_peers_boot_epoch() -> None:
    net = Net()
    a, b = pair(net)
    ca, cb = a.connection(b.node_id), b.connection(a.node_id)
    assert ca is not None and cb is not None
    assert ca.peer_epoch == b.epoch and cb.peer_epoch == a.epoch
    assert a.peer_epoch(b.node_id) == b.epoch and b.peer_epoch(a.node_id) == a.epoch
    # each side holds the token of the other's connection id under the other's reset key
    assert ca.peer_reset_token == b.reset_key.token(cb.local_cid)
    assert cb.peer_reset_token == a.reset_key.token(ca.local_cid)


# --- the gossip hint ----------------------------------------------------------------------


def test_a_newer_epoch_seen_in_gossip_closes_the_connection_to_the_old_boot_at_once() -> None:
    net = Net()
    net.drop_resets = True  # the hint alone
    a, b = pair(net)
    old = a.connection(b.node_id)
    assert old is not None
    # gossip from the same boot, an older one, or about ourselves changes nothing
    a.observe_peer_epoch(net.now, b.node_id, b.epoch)
    a.observe_peer_epoch(net.now, b.node_id, b.epoch - 1)
    a.observe_peer_epoch(net.now, a.node_id, a.epoch + 5)
    assert a.connection(b.node_id) is old and old.is_established
    assert a.counters["transport.peer_restarted"] == 0
    # B restarts; its first gossip packet reaches A
    b2 = net.add(B, identity=b.identity)
    assert b2.epoch > b.epoch
    t0 = net.now
    n_sent = len(net.sent)
    a.observe_peer_epoch(net.now, b.node_id, b2.epoch)
    assert a.connection(b.node_id) is None and old.is_closed
    net.flush()
    downs = net.of(A, PeerDisconnected)
    assert [(d.node_id, d.reason, d.by_peer) for d in downs] == [
        (b.node_id, "peer restarted", False)
    ]
    assert a.counters["transport.peer_restarted"] == 1
    assert old.stats()["abandoned"] == 1
    # closed silently: nothing more goes to the dead boot's connection id
    assert [d for s, _, d in net.sent[n_sent:] if s == A] == []
    # the owner dials the new boot, which answers at once
    a.connect(net.now, b.node_id, B)
    assert net.run(lambda: connected(net, A, B), max_time_s=1.0)
    send_data(net, a, b2, b"to the new boot")
    assert net.run(lambda: got(net, B, b"to the new boot"), max_time_s=1.0)
    assert net.now - t0 < 0.1


# --- stateless reset ----------------------------------------------------------------------


@pytest.mark.parametrize("restarted", ["client", "server"])
def test_a_stateless_reset_closes_the_connection_to_a_restarted_peer(restarted: str) -> None:
    """No gossip: the survivor's next packet reaches the new boot, which cannot read it
    and answers with the token of the old connection id; the survivor closes at once."""
    net = Net()
    pair(net)
    addr = A if restarted == "client" else B
    gone = net.nodes[addr]
    survivor_addr = B if restarted == "client" else A
    survivor = net.nodes[survivor_addr]
    old = survivor.connection(gone.node_id)
    assert old is not None
    new = net.add(addr, identity=gone.identity)
    sent_before = len(net.sent)
    t0 = net.now
    send_data(net, survivor, new, b"x" * 500)
    assert net.run(lambda: survivor.connection(gone.node_id) is None, max_time_s=1.0)
    assert net.now - t0 <= 2 * net.delay_s + 1e-9  # one round trip
    downs = net.of(survivor_addr, PeerDisconnected)
    assert [(d.node_id, d.reason) for d in downs] == [(gone.node_id, "stateless reset")]
    assert survivor.counters["transport.reset.received"] == 1
    # every packet the survivor had in flight is answered; the first reset closes the
    # connection, the later ones match nothing any more
    sent = new.counters["transport.reset.sent"]
    assert sent >= 1
    net.run(lambda: False, max_time_s=0.1)
    assert survivor.counters["transport.reset.unmatched"] == sent - 1
    # the reset: 31 bytes, 1-RTT shaped, smaller than the packet that triggered it
    resets = [d for s, _, d in net.sent[sent_before:] if s == addr and len(d) == RESET_BYTES]
    assert len(resets) == sent
    reset = resets[0]
    assert packet_type(reset) == ConnPacketType.ONE_RTT
    parse_one_rtt(reset)  # well formed
    trigger = max(len(d) for s, _, d in net.sent[sent_before:] if s == survivor_addr)
    assert len(reset) < trigger
    assert reset_token_of(reset) == gone.reset_key.token(old.remote_cid or b"")
    assert old.is_closed and old.close_reason is not None
    assert old.close_reason.reason == "stateless reset"
    # the owner dials again and the new boot answers
    survivor.connect(net.now, new.node_id, addr)
    assert net.run(lambda: connected(net, A, B), max_time_s=1.0)


def test_the_reset_key_survives_restarts_and_differs_between_nodes() -> None:
    net = Net()
    a, b = net.add(A), net.add(B)
    a2 = net.add(A, identity=a.identity)
    cid = bytes(range(8))
    assert a.reset_key.token(cid) == a2.reset_key.token(cid)
    assert a.reset_key.token(cid) != b.reset_key.token(cid)
    assert a.reset_key.token(cid) != a.reset_key.token(bytes(8))
    assert ResetKey.from_identity(a.identity).token(cid) == a.reset_key.token(cid)


def test_a_reset_whose_token_does_not_match_is_dropped_and_counted() -> None:
    net = Net()
    a, b = pair(net)
    conn = a.connection(b.node_id)
    assert conn is not None
    wrong = ResetKey(bytes(32)).token(bytes(8))
    for token in (wrong, bytes(16)):
        a.handle_datagram(net.now, B, encode_reset(token, bytes(range(10))))
    assert a.counters["transport.reset.unmatched"] == 2
    assert a.counters["transport.reset.received"] == 0
    assert a.connection(b.node_id) is conn and conn.is_established
    assert a.take_datagrams(net.now) == []  # and it is not answered
    # the right token closes it, from whatever address (the token is the proof)
    right = conn.peer_reset_token
    assert right is not None
    a.handle_datagram(net.now, ("192.0.2.1", 9), encode_reset(right, bytes(10)))
    assert a.counters["transport.reset.received"] == 1 and conn.is_closed


def test_a_packet_that_could_be_a_reset_is_never_answered() -> None:
    """Two nodes that hold nothing for each other cannot ping-pong resets."""
    net = Net()
    x, y = net.add(A), net.add(B)
    prefix = b"\x85\x01\x04\x48" + bytes(8) + b"\x00"
    small = prefix + b"\x51" + bytes(17)  # 31 bytes
    assert len(small) == RESET_BYTES
    x.handle_datagram(net.now, B, small)
    assert x.take_datagrams(net.now) == []
    assert x.counters["transport.reset.too_small"] == 1
    big = prefix + b"\x52" + bytes(18)  # 32 bytes: answered
    x.handle_datagram(net.now, B, big)
    out = x.take_datagrams(net.now)
    assert len(out) == 1 and out[0][0] == B and len(out[0][1]) == RESET_BYTES
    y.handle_datagram(net.now, A, out[0][1])
    assert y.take_datagrams(net.now) == []
    assert y.counters["transport.reset.unmatched"] == 1
    assert y.counters["transport.reset.too_small"] == 1
    assert y.counters["transport.reset.sent"] == 0


def test_resets_are_rate_limited_and_counted() -> None:
    net = Net()
    x = net.add(A, config=EndpointConfig(reset_rate=5.0, reset_burst=3))

    def junk(i: int) -> bytes:
        return b"\x85\x01\x04\x48" + i.to_bytes(8, "big") + b"\x00\x58\x28" + bytes(40)

    for i in range(10):
        x.handle_datagram(0.0, B, junk(i))
    assert len(x.take_datagrams(0.0)) == 3
    assert x.counters["transport.reset.sent"] == 3
    assert x.counters["transport.reset.rate_limited"] == 7
    # one second later: the bucket holds its burst again (5 per second, 3 at most)
    for i in range(10):
        x.handle_datagram(1.0, B, junk(100 + i))
    assert len(x.take_datagrams(1.0)) == 3
    # 0.25 s later: one more
    for i in range(3):
        x.handle_datagram(1.25, B, junk(200 + i))
    assert len(x.take_datagrams(1.25)) == 1
    assert x.counters["transport.reset.sent"] == 7
    assert x.counters["transport.reset.rate_limited"] == 7 + 7 + 2


def test_the_limiter_refills_at_its_rate_and_refuses_bad_settings() -> None:
    lim = ResetLimiter(rate=2.0, burst=2)
    assert [lim.allow(0.0) for _ in range(3)] == [True, True, False]
    assert lim.allow(0.25) is False  # half a token
    assert lim.allow(0.5) is True
    assert lim.allow(0.4) is False  # time going back adds nothing
    with pytest.raises(Exception, match="rate must be positive"):
        ResetLimiter(rate=0.0, burst=1)
    with pytest.raises(Exception, match="reset_burst"):
        EndpointConfig(reset_burst=0)
    with pytest.raises(Exception, match="reset_rate"):
        EndpointConfig.from_mapping({"reset_rate": -1})


# --- older boots never replace newer ones -------------------------------------------------


def test_a_late_handshake_of_an_older_boot_is_refused() -> None:
    """A's previous boot (a lower epoch) completes a handshake after A's current boot is
    connected: B refuses it and keeps the current connection."""
    net = Net()
    net.drop_resets = True
    a, b = pair(net)
    current = b.connection(a.node_id)
    old_boot = net.add(A2, identity=a.identity, epoch=a.epoch - 1)
    old_boot.connect(net.now, b.node_id, B)
    assert net.run(lambda: b.counters["transport.refused_stale_epoch"] == 1, max_time_s=2.0)
    net.run(lambda: False, max_time_s=1.0)
    assert b.connection(a.node_id) is current and current is not None
    assert current.is_established
    assert net.of(B, PeerDisconnected) == []
    assert len(net.of(B, PeerConnected)) == 1
    # the old boot hears CONNECTION_REFUSED
    downs = net.of(A2, PeerDisconnected)
    assert [(d.error_code, d.reason, d.by_peer) for d in downs] == [
        (int(ErrorCode.CONNECTION_REFUSED), "stale epoch", True)
    ]
    # the current connection still carries data
    send_data(net, a, b, b"still here")
    assert net.run(lambda: got(net, B, b"still here"), max_time_s=1.0)


def test_an_epoch_known_from_gossip_refuses_a_dial_to_the_old_boot() -> None:
    """A dials B's old boot (still running somewhere, say) after gossip showed B's newer
    boot: the handshake completes but the dial fails with 'stale epoch'."""
    net = Net()
    a = net.add(A)
    b_old = net.add(B, epoch=50)
    a.observe_peer_epoch(net.now, b_old.node_id, 60)
    a.connect(net.now, b_old.node_id, B)
    assert net.run(lambda: bool(net.of(A, ConnectFailed)), max_time_s=2.0)
    assert [(f.node_id, f.reason) for f in net.of(A, ConnectFailed)] == [
        (b_old.node_id, "stale epoch")
    ]
    assert a.counters["transport.refused_stale_epoch"] == 1
    assert a.connection(b_old.node_id) is None and net.of(A, PeerConnected) == []


def test_a_replayed_initial_of_a_previous_boot_replaces_nothing() -> None:
    """An initial packet captured from A's previous boot and replayed later: B answers it
    (it cannot tell), but the handshake never completes (only the old boot held its
    ephemeral key), the half-open state expires, and A's current connection stays."""
    net = Net()
    a, b = pair(net)
    initial = next(d for s, _, d in net.sent if s == A and packet_type(d) == 2)
    a2 = net.add(A, identity=a.identity)  # A restarts and reconnects
    a2.connect(net.now, b.node_id, B)
    assert net.run(lambda: b.connection(a.node_id) is not None
                   and b.connection(a.node_id).peer_epoch == a2.epoch)  # type: ignore[union-attr]
    current = b.connection(a.node_id)
    ups = len(net.of(B, PeerConnected))
    b.handle_datagram(net.now, A2, initial)
    assert b.half_open == 1
    net.run(lambda: b.half_open == 0, max_time_s=30.0)
    assert b.half_open == 0
    assert b.connection(a.node_id) is current and current is not None
    assert current.is_established or current.state_name == "established"
    assert len(net.of(B, PeerConnected)) == ups
    assert b.counters["transport.handshake_failed"] == 1


# --- fuzz/targets_transport.py's endpoint target ------------------------------------------


def _endpoint_target():  # type: ignore[no-untyped-def]
    import importlib.util
    import sys
    from pathlib import Path

    fuzz_dir = Path(__file__).resolve().parents[2] / "fuzz"
    if str(fuzz_dir) not in sys.path:
        sys.path.insert(0, str(fuzz_dir))
    spec = importlib.util.spec_from_file_location("targets_transport", fuzz_dir /
                                                  "targets_transport.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TARGETS = _endpoint_target()
_HEAD = b"\x85\x01\x04\x48"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda cid, tail: _HEAD + cid + b"\x00" + tail,
              st.binary(min_size=8, max_size=8), st.binary(min_size=1, max_size=80)),
))
def test_the_endpoint_fuzz_target_holds_on_random_and_packet_shaped_input(data: bytes) -> None:
    _TARGETS.fuzz_transport_endpoint(data)


def test_the_endpoint_fuzz_target_accepts_the_genuine_reset_and_catches_a_forgery() -> None:
    target = _TARGETS.fuzz_transport_endpoint
    target(b"\x00")
    pair = _TARGETS._ENDPOINTS[0]
    target(encode_reset(pair.token, bytes(10)))  # the genuine token: closes, allowed
    assert _TARGETS._ENDPOINTS == []
    # a broken endpoint that closes on anything is caught
    target(b"\x00")
    pair = _TARGETS._ENDPOINTS[0]
    conn = pair.a.connection(pair.b.node_id)
    original = pair.a.handle_datagram

    def broken(now: float, addr: tuple[str, int], data: bytes) -> None:
        conn.abandon("broken")
        original(now, addr, data)

    pair.a.handle_datagram = broken  # type: ignore[method-assign]
    with pytest.raises(AssertionError, match="without its reset token"):
        target(encode_reset(bytes(16), bytes(10)))
    _TARGETS._ENDPOINTS.clear()


# --- through NodeCore: gossip packets carry the hint ------------------------------------


def _core(addr: tuple[str, int], seed: int, stored: dict[str, bytes], wall_s: float):  # type: ignore[no-untyped-def]
    import random

    from core_net import WALL

    from foundation_p2p.clock import Now
    from foundation_p2p.config import NodeConfig
    from foundation_p2p.crypto.keyring import Keyring
    from foundation_p2p.node import NodeCore

    rng = random.Random(seed)
    return NodeCore(
        NodeConfig(bind=addr), now=Now(0.0, WALL + wall_s), keyring=Keyring(bytes(range(32))),
        stored=stored, rng=random.Random(seed + 100), secret_bytes=rng.randbytes,
    )


@pytest.mark.parametrize("mode", ["bytes", "messages"])
def test_a_gossip_packet_from_a_newer_boot_closes_the_core_connection(mode: str) -> None:
    """NodeCore calls ``observe_peer_epoch`` for every authenticated gossip packet
    (``handle_datagram``) and every decoded one (``handle_packet``, the simulator's
    messages mode)."""
    from core_net import CoreNet

    from foundation_p2p.durability import BOOT_EPOCH_KEY, IDENTITY_KEY
    from foundation_p2p.events import Join
    from foundation_p2p.wire import cbor
    from foundation_p2p.wire.packet import GossipPacket

    a, b = _core(A, 1, {}, 0.0), _core(B, 2, {}, 0.0)
    net = CoreNet(a, b)
    a.connect(net.stamp(), b.node_id, B)
    assert net.run(lambda: b.node_id in a.transport.peers())
    old = a.transport.connection(b.node_id)
    assert old is not None and old.peer_epoch == b.boot_epoch
    # B restarts from its stored identity and epoch, with a later wall clock
    stored = {IDENTITY_KEY: b.identity.to_bytes(), BOOT_EPOCH_KEY: cbor.encode(b.boot_epoch)}
    b2 = _core(B, 3, stored, 5.0)
    assert b2.node_id == b.node_id and b2.boot_epoch > b.boot_epoch
    if mode == "messages":
        a.handle_packet(net.stamp(), B, GossipPacket(b2.node_id, b2.boot_epoch, ()))
    else:
        net.cores[B] = b2
        b2.handle_command(net.stamp(), Join((A,)))
        assert net.run(lambda: a.counters["packets.received"]
                       - a.counters["transport.datagrams_received"] > 0
                       and old.is_closed, max_time_s=2.0)
    assert old.is_closed and old.close_reason is not None
    assert old.close_reason.reason == "peer restarted"
    assert a.counters["transport.peer_restarted"] == 1
    assert a.transport.connection(b.node_id) is None
    assert a.transport.peer_epoch(b.node_id) == b2.boot_epoch
