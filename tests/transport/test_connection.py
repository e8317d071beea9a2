"""The connection (``foundation_p2p.transport.connection``) over a lossy in-memory pipe."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pair import Pair

from foundation_p2p.crypto.identity import node_id_from_public_key
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError, UnknownKeyError, WireError
from foundation_p2p.transport.config import TransportConfig
from foundation_p2p.transport.connection import (
    CLOSED,
    Connection,
    StreamReset,
)
from foundation_p2p.transport.errors import ErrorCode
from foundation_p2p.transport.frames import (
    AckFrame,
    Frame,
    HandshakeDone,
    MaxStreamData,
    Parameters,
    Ping,
    StreamFrame,
    encode_frames,
)
from foundation_p2p.transport.packet import ConnPacketType, packet_type


def _inject(sender: Connection, receiver: Connection, now: float, frames: list[Frame]) -> None:
    """Make ``sender`` misbehave: seal ``frames`` with its keys and deliver them directly."""
    protection = sender._protection
    assert protection is not None and sender.remote_cid is not None
    pn = sender._next_pn
    sender._next_pn += 1
    receiver.receive_datagram(now, protection.seal(sender.remote_cid, pn, encode_frames(frames)))


def _established(pair: Pair) -> Connection:
    assert pair.run(pair.established, max_time_s=10)
    assert pair.server is not None
    return pair.server


def _node_id(identity: object) -> bytes:
    return node_id_from_public_key(identity.public_key)  # type: ignore[attr-defined]


def test_handshake_completes_and_both_sides_learn_the_authenticated_node_ids() -> None:
    pair = Pair(1)
    server = _established(pair)
    assert pair.c.peer == _node_id(pair.server_identity)
    assert pair.s.peer == _node_id(pair.client_identity)
    assert pair.client.peer_node_id == pair.c.peer
    assert server.peer_node_id == pair.s.peer
    # one round trip for messages 1 and 2, half of one more for message 3
    assert pair.now == pytest.approx(3 * pair.delay_s)


def test_handshake_survives_lost_handshake_packets() -> None:
    pair = Pair(2)
    drops = {"to_server": 2, "to_client": 2}

    def lose_first(to_server: bool, data: bytes) -> bytes | None:
        if packet_type(data) in (ConnPacketType.INITIAL, ConnPacketType.HANDSHAKE):
            key = "to_server" if to_server else "to_client"
            if drops[key]:
                drops[key] -= 1
                return None
        return data

    pair.tamper = lose_first
    assert pair.run(pair.established, max_time_s=20)
    assert pair.client.stats()["handshake.retransmits"] >= 1
    assert pair.c.peer == _node_id(pair.server_identity)


def test_a_client_without_the_cluster_key_cannot_connect() -> None:
    pair = Pair(3, server_keyring=Keyring(bytes(range(1, 33))))
    assert not pair.run(pair.established, max_time_s=60)
    assert pair.server is None
    assert pair.accept_errors and all(isinstance(e, UnknownKeyError) for e in pair.accept_errors)
    assert pair.client.is_closed
    assert pair.c.closed is not None and pair.c.closed.reason in (
        "handshake timed out",
        "idle timeout",
    )


def _message_stream(pair: Pair, data: bytes, urgency: int = 3) -> int:
    sid = pair.client.open_stream(urgency=urgency)
    state = {"sent": 0}

    def feed() -> None:
        sent = state["sent"]
        if sent < len(data):
            n = pair.client.send(sid, data[sent : sent + pair.client.writable(sid)])
            state["sent"] = sent + n
            if state["sent"] == len(data):
                pair.client.send(sid, b"", end=True)
        elif not data and sent == 0:
            state["sent"] = 1
            pair.client.send(sid, b"", end=True)

    feeders.append(feed)
    return sid


feeders: list = []  # type: ignore[type-arg]


def _feed_all() -> None:
    for feed in feeders:
        feed()


@pytest.mark.parametrize("seed", [11, 12])
def test_megabytes_arrive_byte_exact_in_order_at_5pct_loss_duplication_and_reordering(
    seed: int,
) -> None:
    feeders.clear()
    pair = Pair(seed, loss=0.05, duplicate=0.05, reorder=0.1, delay_s=0.01)
    _established(pair)
    bulk = pair.rng.randbytes(2_000_000)
    small = [pair.rng.randbytes(pair.rng.randrange(1, 3000)) for _ in range(12)]
    bulk_id = _message_stream(pair, bulk)
    small_ids = [_message_stream(pair, m, urgency=1) for m in small]
    expected = {bulk_id: bulk, **{sid: m for sid, m in zip(small_ids, small, strict=True)}}
    done = pair.run(lambda: set(expected) <= pair.s.ended, max_time_s=120, on_step=_feed_all)
    assert done
    for sid, data in expected.items():
        assert bytes(pair.s.streams[sid]) == data  # byte-exact and in order
    stats = pair.client.stats()
    assert stats["retransmits"] > 0 and stats["lost"] > 0
    assert pair.server is not None
    assert pair.server.stats()["packets.dropped.replay"] > 0  # the duplicates were refused


def _control_latencies(single_stream: bool, seed: int = 21) -> tuple[list[float], float]:
    """Send 100-byte stamped messages every 10 ms while a 3 MB bulk transfer runs at 2%
    loss; return their one-way latencies and the RTT.

    Datagrams stay at 1200 bytes (no path MTU discovery): with 16 KiB datagrams the 3 MB
    finish in about 0.6 s, so only ~57 messages are stamped and the "p99" is the single
    worst one (one loss recovery, ~5.5 RTT); at 1200 bytes the run takes ~5 s and 500+
    messages, which is what the percentiles below were chosen for."""
    feeders.clear()
    pair = Pair(seed, loss=0.02, delay_s=0.01, config=TransportConfig(pmtu_max_bytes=1200))
    _established(pair)
    client = pair.client
    bulk = pair.rng.randbytes(3_000_000)
    bulk_id = client.open_stream(urgency=7 if not single_stream else 3)
    control_id = bulk_id if single_stream else client.open_stream(urgency=0)
    state = {"sent": 0, "next": pair.now + 0.05, "messages": 0}
    pending_ctrl: list[bytes] = []

    def feed() -> None:
        if pair.now >= state["next"] and state["sent"] < len(bulk):
            state["next"] += 0.01
            # message: 8-byte magic, 8-byte timestamp, padding to 100 bytes
            pending_ctrl.append(b"CTRLMSG!" + struct.pack(">d", pair.now) + bytes(84))
            state["messages"] += 1
        while pending_ctrl and client.writable(control_id) >= 100:
            assert client.send(control_id, pending_ctrl.pop(0)) == 100
        sent = state["sent"]
        if sent < len(bulk) and not pending_ctrl:
            chunk = bulk[sent : sent + min(client.writable(bulk_id), 64 * 1024)]
            state["sent"] = sent + client.send(bulk_id, chunk)

    latencies: list[float] = []
    seen = {"pos": 0}

    def collect() -> None:
        feed()
        buf = pair.s.streams.get(control_id)
        if buf is None:
            return
        pos = seen["pos"]
        # scan new bytes for stamped messages (the bulk bytes are random: the magic marks them)
        while True:
            i = buf.find(b"CTRLMSG!", pos)
            if i < 0 or i + 16 > len(buf):
                break
            (stamp,) = struct.unpack(">d", bytes(buf[i + 8 : i + 16]))
            latencies.append(pair.now - stamp)
            pos = i + 16
        seen["pos"] = max(pos, len(buf) - 16)

    assert pair.run(
        lambda: state["sent"] >= len(bulk) and len(latencies) >= state["messages"],
        max_time_s=120,
        on_step=collect,
    )
    return latencies, 2 * pair.delay_s


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def test_a_control_message_is_not_delayed_behind_a_bulk_stream_at_2pct_loss() -> None:
    latencies, rtt = _control_latencies(single_stream=False)
    assert len(latencies) >= 20
    assert _p99(latencies) <= 5 * rtt, sorted(latencies)[-5:]
    # the same traffic on one ordered stream (the one-TCP-connection situation) waits
    # behind the bulk bytes: the test can tell the two apart
    single, _ = _control_latencies(single_stream=True)
    assert _p99(single) > 3 * _p99(latencies)


def test_a_peer_sending_beyond_our_window_is_closed_with_flow_control_error() -> None:
    pair = Pair(4)
    server = _established(pair)
    sid = pair.client.open_stream()
    window = pair.server_config.initial_max_stream_data
    _inject(pair.client, server, pair.now, [StreamFrame(sid, window, False, b"x")])
    assert server.close_reason is not None
    assert server.close_reason.error_code == ErrorCode.FLOW_CONTROL_ERROR
    assert not server.close_reason.by_peer
    pair.run(lambda: pair.c.closed is not None, max_time_s=5)
    assert pair.c.closed is not None and pair.c.closed.by_peer
    assert pair.c.closed.error_code == ErrorCode.FLOW_CONTROL_ERROR


def test_data_within_the_window_is_accepted() -> None:
    pair = Pair(4)
    server = _established(pair)
    sid = pair.client.open_stream()
    window = pair.server_config.initial_max_stream_data
    _inject(pair.client, server, pair.now, [StreamFrame(sid, window - 1, False, b"x")])
    assert server.close_reason is None


def test_a_peer_opening_more_streams_than_allowed_is_closed_with_stream_limit_error() -> None:
    pair = Pair(5)
    server = _established(pair)
    limit = pair.server_config.max_streams_bidi
    _inject(pair.client, server, pair.now, [StreamFrame(4 * limit, 0, False, b"x")])
    assert server.close_reason is not None
    assert server.close_reason.error_code == ErrorCode.STREAM_LIMIT_ERROR


def test_sender_stops_at_the_peer_window_and_resumes_when_the_peer_reads() -> None:
    config = TransportConfig(initial_max_stream_data=64 * 1024, max_stream_data_window=64 * 1024)
    pair = Pair(6, config=config)
    server = _established(pair)
    pair.server_reads = False  # the server application reads nothing for now
    sid = pair.client.open_stream()
    data = pair.rng.randbytes(200_000)
    assert pair.client.send(sid, data, end=True) == len(data)
    pair.run(lambda: False, max_time_s=pair.now + 2.0)
    sent = pair.client._streams[sid].send
    assert sent is not None and sent.bytes_sent == 64 * 1024  # exactly the window, no more
    assert server.close_reason is None
    assert pair.client.stats()["send_blocked.stream_data"] >= 1
    assert server.stats()["peer_blocked.stream_data"] == 1  # STREAM_DATA_BLOCKED, once
    pair.server_reads = True
    assert pair.run(lambda: sid in pair.s.ended, max_time_s=pair.now + 5.0)
    assert bytes(pair.s.streams[sid]) == data


def test_a_quiet_connection_closes_on_idle_timeout() -> None:
    config = TransportConfig(idle_timeout_s=2.0, keep_alive_s=None)
    pair = Pair(7, config=config)
    _established(pair)
    # path MTU probes are traffic: the quiet time starts once both searches are over
    assert pair.run(
        lambda: pair.client.pmtu is not None and pair.client.pmtu.state == "complete"
        and pair.server is not None and pair.server.pmtu is not None
        and pair.server.pmtu.state == "complete"
        and pair.client.recovery.ack_eliciting_in_flight == 0
        and pair.server.recovery.ack_eliciting_in_flight == 0,
        max_time_s=5,
    )
    start = pair.now
    pair.run(lambda: pair.client.is_closed and pair.server is not None and pair.server.is_closed,
             max_time_s=10)
    assert pair.client.is_closed
    assert pair.c.closed is not None and pair.c.closed.reason == "idle timeout"
    assert pair.s.closed is not None and pair.s.closed.reason == "idle timeout"
    assert 2.0 <= pair.now - start <= 2.2
    assert pair.client.stats()["idle_timeouts"] == 1


def test_keep_alive_keeps_a_quiet_connection_open() -> None:
    config = TransportConfig(idle_timeout_s=2.0, keep_alive_s=0.5)
    pair = Pair(8, config=config)
    _established(pair)
    pair.run(lambda: False, max_time_s=20)
    assert pair.client.is_established
    assert pair.server is not None and pair.server.is_established


def test_a_tampered_packet_is_dropped_and_counted_not_fatal() -> None:
    feeders.clear()
    pair = Pair(9)
    _established(pair)
    tampered = {"n": 0}

    def flip(to_server: bool, data: bytes) -> bytes | None:
        if to_server and packet_type(data) == ConnPacketType.ONE_RTT and tampered["n"] < 3:
            tampered["n"] += 1
            changed = bytearray(data)
            changed[-5] ^= 0x40
            return bytes(changed)
        return data

    pair.tamper = flip
    data = pair.rng.randbytes(100_000)
    sid = _message_stream(pair, data)
    assert pair.run(lambda: sid in pair.s.ended, max_time_s=30, on_step=_feed_all)
    assert bytes(pair.s.streams[sid]) == data
    assert pair.server is not None
    assert pair.server.stats()["packets.dropped.auth_failed"] == 3
    assert pair.server.is_established


def test_close_sends_the_code_and_reason_and_both_sides_end_closed() -> None:
    pair = Pair(10)
    server = _established(pair)
    pair.client.close(0x1F, "going away")
    pair.run(lambda: pair.client.state == CLOSED and server.state == CLOSED, max_time_s=10)
    assert pair.s.closed is not None
    assert (pair.s.closed.error_code, pair.s.closed.reason, pair.s.closed.by_peer) == (
        0x1F, "going away", True
    )
    assert pair.c.closed is not None and not pair.c.closed.by_peer
    with pytest.raises(ConfigError):
        pair.client.open_stream()


def test_reset_stream_reaches_the_peer() -> None:
    pair = Pair(13)
    _established(pair)
    sid = pair.client.open_stream()
    pair.client.send(sid, b"hello")
    pair.run(lambda: sid in pair.s.streams, max_time_s=5)
    pair.client.reset_stream(sid, 7)
    pair.run(lambda: any(type(e) is StreamReset for _, e in pair.s.events), max_time_s=5)
    resets = [e for _, e in pair.s.events if type(e) is StreamReset]
    assert resets == [StreamReset(sid, 7)]


def test_streams_opened_by_the_server_and_unidirectional_streams_work() -> None:
    pair = Pair(14)
    server = _established(pair)
    uni = server.open_stream(uni=True)
    bidi = server.open_stream()
    assert uni & 0x3 == 3 and bidi & 0x3 == 1
    server.send(uni, b"one way", end=True)
    server.send(bidi, b"ping", end=True)
    pair.run(lambda: {uni, bidi} <= pair.c.ended, max_time_s=5)
    assert bytes(pair.c.streams[uni]) == b"one way"
    pair.client.send(bidi, b"pong", end=True)
    pair.run(lambda: bidi in pair.s.ended, max_time_s=5)
    assert bytes(pair.s.streams[bidi]) == b"pong"
    with pytest.raises(ConfigError):
        pair.client.send(uni, b"not allowed")


def test_datagrams_are_delivered_and_the_send_queue_is_bounded() -> None:
    config = TransportConfig(max_datagram_queue=4)
    pair = Pair(15, config=config)
    _established(pair)
    for i in range(6):
        pair.client.send_datagram(bytes([i]) * 10)
    assert pair.client.stats()["datagrams.dropped_send"] == 2
    pair.run(lambda: len(pair.s.datagrams) == 4, max_time_s=5)
    assert pair.s.datagrams == [bytes([i]) * 10 for i in range(2, 6)]
    with pytest.raises(ConfigError):
        pair.client.send_datagram(bytes(2000))


def test_window_updates_are_sent_as_the_application_reads() -> None:
    pair = Pair(16)
    server = _established(pair)
    sid = pair.client.open_stream()
    data = bytes(3 * pair.config.initial_max_stream_data)
    sent = {"n": 0}

    def feed() -> None:
        if sent["n"] < len(data):
            sent["n"] += pair.client.send(sid, data[sent["n"] : sent["n"] + 100_000])

    assert pair.run(lambda: len(pair.s.streams.get(sid, b"")) == len(data), max_time_s=20,
                    on_step=feed)
    assert server.stats()["packets.sent"] > 0
    _inject(pair.client, server, pair.now, [MaxStreamData(sid, 10)])  # lower: ignored
    assert server.close_reason is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_to_receive_datagram_never_raise(data: bytes) -> None:
    pair = _shared_pair()
    server = pair.server
    assert server is not None
    assert server.receive_datagram(pair.now, data) is False
    assert pair.client.receive_datagram(pair.now, data) is False
    assert server.is_established and pair.client.is_established


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1300))
def test_accept_raises_only_wire_errors(data: bytes) -> None:
    pair = _shared_pair()
    with contextlib.suppress(WireError):
        Connection.accept(pair.now, data, pair.server_identity, pair.keyring, pair.secret_bytes)


_PAIR: list[Pair] = []


def _shared_pair() -> Pair:
    if not _PAIR:
        pair = Pair(99)
        _established(pair)
        _PAIR.append(pair)
    return _PAIR[0]


def test_a_client_dialling_the_wrong_node_id_fails_at_once() -> None:
    pair = Pair(17)
    expected = bytes(16)  # not the server's node id
    pair.new_client(expected_peer=expected)
    pair.run(lambda: pair.client.is_closed, max_time_s=5)
    assert pair.client.is_closed
    assert pair.c.closed is not None
    assert pair.c.closed.error_code == ErrorCode.CONNECTION_REFUSED
    assert pair.now < 1.0  # not after the handshake retransmissions ran out
    assert pair.client.stats()["packets.dropped.handshake_unexpected_peer"] == 1


def test_a_replayed_authentic_packet_is_refused_so_it_cannot_move_the_peer() -> None:
    pair = Pair(18)
    server = _established(pair)
    captured: list[bytes] = []

    def capture(to_server: bool, data: bytes) -> bytes | None:
        if to_server and packet_type(data) == ConnPacketType.ONE_RTT:
            captured.append(data)
        return data

    pair.tamper = capture
    sid = pair.client.open_stream()
    pair.client.send(sid, b"x" * 5000, end=True)
    assert pair.run(lambda: sid in pair.s.ended, max_time_s=5)
    assert captured
    # as if an attacker replayed it from another address: not authenticated as new
    assert server.receive_datagram(pair.now, captured[0]) is False
    assert server.stats()["packets.dropped.replay"] >= 1


def test_a_restarted_peer_gets_a_fresh_connection_with_the_same_node_id() -> None:
    pair = Pair(19)
    old_server = _established(pair)
    # the client restarts: same identity, a new Connection (new keys, new connection id)
    restarted = pair
    restarted.new_client()
    assert restarted.run(restarted.established, max_time_s=5)
    assert restarted.server is not None
    assert restarted.server.peer_node_id == old_server.peer_node_id
    assert restarted.server.local_cid != old_server.local_cid
    # the owner replaces the old connection: it closes it
    old_server.close(ErrorCode.NO_ERROR, "replaced")
    assert old_server.close_reason is not None and old_server.close_reason.reason == "replaced"


def test_stop_sending_makes_the_peer_reset_its_side() -> None:
    pair = Pair(20)
    server = _established(pair)
    sid = pair.client.open_stream()
    pair.client.send(sid, b"a" * 1000)
    assert pair.run(lambda: sid in pair.s.streams, max_time_s=5)
    server.stop_sending(sid, 9)
    pair.run(lambda: pair.client._streams.get(sid) is None
             or pair.client._streams[sid].send.reset_code is not None,  # type: ignore[union-attr]
             max_time_s=5)
    stopped = [e for _, e in pair.c.events if type(e).__name__ == "StopSendingReceived"]
    assert len(stopped) == 1 and stopped[0].error_code == 9  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        pair.client.send(sid, b"more")


def test_a_stream_frame_on_our_own_unidirectional_stream_is_a_stream_state_error() -> None:
    pair = Pair(21)
    server = _established(pair)
    uni = server.open_stream(uni=True)  # server-initiated unidirectional: server sends only
    _inject(pair.client, server, pair.now, [StreamFrame(uni, 0, False, b"x")])
    assert server.close_reason is not None
    assert server.close_reason.error_code == ErrorCode.STREAM_STATE_ERROR


@pytest.mark.parametrize(
    ("max_probe_timeouts", "reason"), [(6, "peer unresponsive"), (1000, "idle timeout")]
)
def test_a_vanished_peer_is_given_up_without_busy_looping(
    max_probe_timeouts: int, reason: str
) -> None:
    """A peer that stops answering is given up after ``max_probe_timeouts`` probe timeouts
    in a row (spec/transport.md section 10), or at the idle timeout if that comes first."""
    config = TransportConfig(
        idle_timeout_s=5.0, keep_alive_s=1.0, max_probe_timeouts=max_probe_timeouts
    )
    pair = Pair(22, config=config)
    _established(pair)
    sid = pair.client.open_stream()
    pair.client.send(sid, bytes(1_000_000))
    pair.run(lambda: pair.now > 0.1, max_time_s=1)
    pair.loss = 1.0  # the server is gone while the congestion window is full
    gone_at = pair.now
    steps = 0

    def count() -> None:
        nonlocal steps
        steps += 1

    assert pair.run(lambda: pair.client.is_closed, max_time_s=30, on_step=count)
    assert pair.c.closed is not None and pair.c.closed.reason == reason
    assert steps < 500  # probes back off; nothing re-arms itself at the same instant
    assert pair.client.stats()["probes"] >= 3
    if reason == "peer unresponsive":
        assert pair.now - gone_at < config.idle_timeout_s
        assert pair.client.stats()["unresponsive_closes"] == 1


def test_a_low_urgency_stream_is_not_starved_by_an_urgent_bulk_stream() -> None:
    feeders.clear()
    pair = Pair(23, delay_s=0.005)
    _established(pair)
    urgent = _message_stream(pair, bytes(3_000_000), urgency=0)
    background = _message_stream(pair, bytes(3_000_000), urgency=7)
    pair.run(lambda: len(pair.s.streams.get(urgent, b"")) >= 1_500_000, max_time_s=60,
             on_step=_feed_all)
    got_urgent = len(pair.s.streams.get(urgent, b""))
    got_background = len(pair.s.streams.get(background, b""))
    # the anti-starvation rule gives the background stream about 1 pick in 16
    assert got_background >= got_urgent / 40
    assert got_background <= got_urgent / 4  # and urgency still decides most picks


@pytest.mark.parametrize("seed", [*range(20), 35, 36, 38, 47, 52])
def test_random_scenarios_deliver_every_stream_byte_exact(seed: int) -> None:
    """Random loss, duplication, reordering, delays, windows and buffers (small windows
    make flow-control updates matter: a lost MAX_STREAM_DATA must be resent)."""
    r = random.Random(seed)
    feeders.clear()
    loss, dup = r.choice([0, 0.02, 0.1, 0.2]), r.choice([0, 0.05, 0.2])
    reo = r.choice([0, 0.1, 0.3])
    config = TransportConfig(
        initial_max_stream_data=64 * 1024,
        max_stream_data_window=r.choice([64 * 1024, 256 * 1024]),
        initial_max_data=256 * 1024,
        max_data_window=r.choice([256 * 1024, 1 << 20]),
        stream_send_buffer_bytes=r.choice([4096, 65536, 1 << 20]),
        max_ack_ranges_tracked=r.choice([4, 32, 256]),
        max_ack_ranges_sent=4,
        idle_timeout_s=60,
        keep_alive_s=5,
    )
    pair = Pair(
        seed, loss=loss, duplicate=dup, reorder=reo, delay_s=r.choice([0.001, 0.01, 0.05]),
        jitter_s=r.choice([0, 0.005]), config=config,
    )
    assert pair.run(pair.established, max_time_s=60)
    expected = {}
    for _ in range(r.randrange(1, 8)):
        data = r.randbytes(r.choice([0, 1, 100, 5000, 300_000]))
        expected[_message_stream(pair, data, urgency=r.randrange(8))] = data
    assert pair.run(lambda: set(expected) <= pair.s.ended, max_time_s=pair.now + 300,
                    on_step=_feed_all)
    for sid, data in expected.items():
        assert bytes(pair.s.streams.get(sid, b"")) == data


def _raw_inject(sender: Connection, receiver: Connection, now: float, plaintext: bytes) -> None:
    protection = sender._protection
    assert protection is not None and sender.remote_cid is not None
    pn = sender._next_pn
    sender._next_pn += 1
    receiver.receive_datagram(now, protection.seal(sender.remote_cid, pn, plaintext))


def test_spec_3_a_server_answers_no_initial_packet_shorter_than_1200_bytes() -> None:
    pair = Pair(30)
    from foundation_p2p.transport.packet import encode_initial, parse_handshake

    full = pair.client.handshake.last_sent()
    assert full is not None
    short = encode_initial(pair.keyring.primary_id, pair.client.local_cid, full, 1100)
    with pytest.raises(WireError):
        Connection.accept(pair.now, short, pair.server_identity, pair.keyring, pair.secret_bytes)
    assert parse_handshake(short).noise == full  # well-formed, only too short


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([Parameters(1000, 1000, 1, 1)], ErrorCode.TRANSPORT_PARAMETER_ERROR),
        ([HandshakeDone()], ErrorCode.PROTOCOL_VIOLATION),
        ([AckFrame([(0, 10_000)], 0)], ErrorCode.PROTOCOL_VIOLATION),
        ([StreamFrame(0, 10, True, b"x"), StreamFrame(0, 5, True, b"x")],
         ErrorCode.FINAL_SIZE_ERROR),
    ],
    ids=["parameters below the floor", "handshake-done from the client",
         "ack of a packet never sent", "final size changed"],
)
def test_spec_12_rule_breaking_frames_close_with_their_code(
    frames: list[Frame], code: ErrorCode
) -> None:
    pair = Pair(31)
    server = _established(pair)
    pair.client.open_stream()
    _inject(pair.client, server, pair.now, frames)
    assert server.close_reason is not None
    assert server.close_reason.error_code == code
    pair.run(lambda: pair.c.closed is not None, max_time_s=pair.now + 2)
    assert pair.c.closed is not None and pair.c.closed.by_peer
    assert pair.c.closed.error_code == code


def test_spec_3_undecodable_frames_in_an_authentic_packet_close_with_frame_encoding_error() -> None:
    pair = Pair(32)
    server = _established(pair)
    _raw_inject(pair.client, server, pair.now, b"\x81\x07")  # frame type 7 does not exist
    assert server.close_reason is not None
    assert server.close_reason.error_code == ErrorCode.FRAME_ENCODING_ERROR


def test_spec_10_a_closing_side_answers_later_packets_with_close_at_most_8_times() -> None:
    pair = Pair(33)
    server = _established(pair)
    server.close(0x5, "stop")
    first = server.take_datagrams(pair.now)
    assert len(first) == 1
    answers = 0
    for _ in range(20):
        _inject(pair.client, server, pair.now, [Ping()])
        answers += len(server.take_datagrams(pair.now))
    assert answers == 8
    assert server.state_name == "closing"
    server.handle_timer(pair.now + 10)
    assert server.is_closed and server.next_deadline() is None


def test_spec_9_one_rtt_packets_that_overtake_message_3_are_kept_and_processed() -> None:
    pair = Pair(34)
    held: list[bytes] = []

    def hold_message_3(to_server: bool, data: bytes) -> bytes | None:
        # deliver the client's handshake message 3 only after its first 1-RTT packets
        if to_server and packet_type(data) == ConnPacketType.HANDSHAKE and not held:
            held.append(data)
            return None
        if to_server and packet_type(data) == ConnPacketType.ONE_RTT and held:
            assert pair.server is not None
            pair.server.receive_datagram(pair.now, data)  # before the keys: kept
            pair.server.receive_datagram(pair.now, held.pop())  # message 3: then processed
            assert pair.server._parameters_received  # the kept packet's PARAMETERS
            held.append(b"done")
            return None
        return data

    pair.tamper = hold_message_3
    pair.run(lambda: pair.client.is_established, max_time_s=5)
    sid = pair.client.open_stream()
    pair.client.send(sid, b"early data", end=True)
    assert pair.run(lambda: sid in pair.s.ended, max_time_s=5)
    assert bytes(pair.s.streams[sid]) == b"early data"
    assert pair.server is not None
    assert pair.server.stats()["packets.early"] >= 1
    assert pair.server.stats().get("packets.dropped.no_keys", 0) == 0
