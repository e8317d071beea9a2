"""One transport connection (sans-I/O): handshake, streams, acks, recovery, flow control.

Modelled on aioquic's ``QuicConnection`` and RFC 9000/9002; ``spec/transport.md`` is the
normative text. The owner (the node, or a test) moves bytes and time:

- ``conn = Connection.connect(now, ...)`` (initiator) or ``Connection.accept(now, datagram,
  ...)`` (responder, from a received initial packet);
- ``receive_datagram(now, data)`` for every datagram addressed to this connection (the
  owner demultiplexes by connection id, :func:`~foundation_p2p.transport.packet.packet_type`
  and :func:`~foundation_p2p.transport.packet.parse_one_rtt`);
- ``handle_timer(now)`` when ``next_deadline()`` passes;
- ``take_datagrams(now)`` after either, to get the datagrams to send;
- ``take_events()`` for what happened: :class:`HandshakeCompleted`,
  :class:`StreamDataReceived`, :class:`StreamReset`, :class:`StopSendingReceived`,
  :class:`DatagramReceived`, :class:`ConnectionClosed`.

The application API: ``open_stream(urgency=, incremental=, uni=)``, ``send(stream_id, data,
end=False) -> accepted bytes``, ``read(stream_id)``, ``reset_stream``, ``stop_sending``,
``send_datagram``, ``close(code, reason)``.

Composition: :class:`~foundation_p2p.crypto.handshake.Handshake` (Noise XXpsk3) sets up
:class:`~foundation_p2p.transport.packet.PacketProtection`;
:class:`~foundation_p2p.transport.acks.AckTracker` tracks received packet numbers;
:class:`~foundation_p2p.transport.recovery.LossRecovery`,
:class:`~foundation_p2p.transport.congestion.NewReno` and
:class:`~foundation_p2p.transport.congestion.Pacer` decide what is lost and when to send;
:mod:`~foundation_p2p.transport.streams` and :mod:`~foundation_p2p.transport.flow` hold the
stream bytes and credit; :class:`~foundation_p2p.transport.scheduler.StreamScheduler` picks
which stream fills the next packet (urgency 0 first, round-robin, a fair share for the rest).

Bounds and overflow (each counted in :attr:`Connection.counters`):

- send streams hold at most ``stream_send_buffer_bytes`` each: ``send`` returns how many
  bytes it took; receive streams hold at most the window we advertised (a peer exceeding
  it is closed with FLOW_CONTROL_ERROR);
- unreliable datagrams: ``max_datagram_queue`` queued to send (oldest dropped,
  ``datagrams.dropped_send``) and ``max_received_datagrams`` waiting in events (newest
  dropped, ``datagrams.dropped_recv``);
- sent packets tracked by recovery: ``max_sent_packets_tracked`` (no new data beyond it);
- received packet-number ranges: ``max_ack_ranges_tracked`` (``acks.ranges_dropped``);
- streams: the peer may open ``max_streams_bidi`` / ``max_streams_uni`` at a time
  (STREAM_LIMIT_ERROR beyond); control frames waiting to be sent are one per stream and
  kind at most (window updates replace older ones).

Restart and address change (``spec/transport.md`` section 11): the connection is bound to
its connection ids, not to an address. A datagram for our connection id from a new address
is accepted once it authenticates (``receive_datagram`` returns True), and the owner then
sends to the new address. A peer that restarts loses its keys and connections; a fresh
handshake makes a new ``Connection``. The handshake tells each side the other's boot epoch
(:attr:`Connection.peer_epoch`) and the stateless reset token of the other's connection id
(:attr:`Connection.peer_reset_token`); the owner (the endpoint) ends a connection to a dead
boot with :meth:`Connection.abandon` when gossip shows a newer epoch or a matching
stateless reset arrives, or closes it (``close(NO_ERROR, "replaced")``) when a new
connection with the same ``peer_node_id`` completes.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from foundation_p2p.addresses import NodeId
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.handshake import Handshake, NoiseStatic, UnexpectedPeerError
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError, MalformedError, WireError
from foundation_p2p.transport.acks import AckTracker
from foundation_p2p.transport.config import (
    FLOOR_MAX_DATA,
    FLOOR_MAX_STREAM_DATA,
    FLOOR_MAX_STREAMS,
    TransportConfig,
)
from foundation_p2p.transport.congestion import NewReno, Pacer
from foundation_p2p.transport.errors import ErrorCode, TransportError
from foundation_p2p.transport.flow import FlowCredit, FlowWindow
from foundation_p2p.transport.frames import (
    MAX_REASON_BYTES,
    AckFrame,
    ConnectionClose,
    DataBlocked,
    DatagramFrame,
    Frame,
    FrameType,
    HandshakeDone,
    MaxData,
    MaxStreamData,
    MaxStreams,
    Padding,
    Parameters,
    Ping,
    ResetStream,
    StopSending,
    StreamDataBlocked,
    StreamFrame,
    decode_frames,
    encode_stream,
    uint_bytes,
)
from foundation_p2p.transport.packet import (
    AEAD_TAG_BYTES,
    CID_BYTES,
    MIN_INITIAL_BYTES,
    ONE_RTT_OVERHEAD,
    ConnPacketType,
    PacketProtection,
    encode_handshake,
    encode_initial,
    packet_type,
    parse_handshake,
    parse_one_rtt,
)
from foundation_p2p.transport.pmtu import PathMtuSearch
from foundation_p2p.transport.recovery import AckOutcome, LossRecovery, SentPacket
from foundation_p2p.transport.reset import ResetKey
from foundation_p2p.transport.scheduler import DEFAULT_URGENCY, StreamScheduler
from foundation_p2p.transport.streams import RecvStream, SendStream

log = logging.getLogger("foundation_p2p.transport")

# connection states
HANDSHAKE = 0
ESTABLISHED = 1
CLOSING = 2  # we sent CONNECTION_CLOSE; answer further packets with it, then forget
DRAINING = 3  # the peer sent CONNECTION_CLOSE; send nothing, then forget
CLOSED = 4

_STATE_NAMES = ("handshake", "established", "closing", "draining", "closed")
_MAX_EARLY_PACKETS = 8
"""1-RTT packets kept while the keys are not there yet (they overtook handshake message 3);
beyond, they are dropped (``packets.dropped.no_keys``) and recovered by loss recovery."""
_MAX_CLOSE_REPEATS = 8
"""In the closing state, a received packet is answered with CONNECTION_CLOSE at most this
many times (the peer may not have received ours)."""

# payload records of sent packets: what to do when the packet is acked or lost
_REC_STREAM = 0  # (kind, stream_id, offset, length, fin)
_REC_CONTROL = 1  # (kind, frame)


# --- events -----------------------------------------------------------------------------


class Event:
    """Base of the events :meth:`Connection.take_events` returns."""

    __slots__ = ()


@dataclass(slots=True)
class HandshakeCompleted(Event):
    """The handshake finished; the peer proved it holds ``peer_node_id``'s identity key."""

    peer_node_id: NodeId
    """The authenticated node id of the peer."""


@dataclass(slots=True)
class StreamDataReceived(Event):
    """In-order bytes arrived on a stream."""

    stream_id: int
    data: bytes
    """The next bytes of the stream (possibly empty when only the end arrived)."""
    end: bool
    """True when these are the last bytes: the peer finished the stream."""


@dataclass(slots=True)
class StreamReset(Event):
    """The peer abandoned its sending side of a stream (RESET_STREAM)."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class StopSendingReceived(Event):
    """The peer no longer reads a stream (STOP_SENDING); our side was reset in answer."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class DatagramReceived(Event):
    """An unreliable DATAGRAM arrived."""

    data: bytes


@dataclass(slots=True)
class ConnectionClosed(Event):
    """The connection is closed (or closing): nothing more will be delivered."""

    error_code: int
    """An :class:`~foundation_p2p.transport.errors.ErrorCode` value (or an application code)."""
    reason: str
    by_peer: bool
    """True when the peer sent CONNECTION_CLOSE; False for our close, idle or handshake
    timeout."""


# --- streams ----------------------------------------------------------------------------


class _Stream:
    __slots__ = ("end_reported", "recv", "send", "stop_sent", "stream_id")

    def __init__(self, stream_id: int, send: SendStream | None, recv: RecvStream | None):
        self.stream_id = stream_id
        self.send = send
        self.recv = recv
        self.end_reported = False
        self.stop_sent = False  # STOP_SENDING queued once per stream (the queue stays bounded)


def _initiator_bit(is_client: bool) -> int:
    return 0 if is_client else 1


class Connection:
    """One end of a transport connection; see the module docstring for the driving loop."""

    def __init__(
        self,
        *,
        is_client: bool,
        handshake: Handshake,
        now: float,
        secret_bytes: Callable[[int], bytes],
        config: TransportConfig | None = None,
    ) -> None:
        """Prefer :meth:`connect` and :meth:`accept`, which build the handshake."""
        cfg = config if config is not None else TransportConfig()
        self.config = cfg
        self.is_client = is_client
        self.handshake = handshake
        self.state = HANDSHAKE
        self.local_cid = secret_bytes(CID_BYTES)
        if len(self.local_cid) != CID_BYTES:
            raise ConfigError("secret_bytes returned the wrong number of bytes")
        self.remote_cid: bytes | None = None
        self.peer_node_id: NodeId | None = None
        self.counters = Counters()
        self._now = now
        self._events: list[Event] = []
        self._received_datagrams = 0  # DatagramReceived events waiting in _events

        # handshake retransmission
        self._hs_packet: bytes | None = None  # the last handshake packet we sent
        self._hs_deadline: float | None = None
        self._hs_tries = 0
        self._hs_confirmed = False  # client: the server has the keys (a 1-RTT packet came)
        self._hs_out: list[bytes] = []
        self._early: list[bytes] = []  # 1-RTT packets that came before the keys (bounded)

        # 1-RTT
        self._protection: PacketProtection | None = None
        self._next_pn = 0
        self.acks = AckTracker(
            max_ack_delay=cfg.max_ack_delay_s,
            threshold=cfg.ack_eliciting_threshold,
            max_ranges=cfg.max_ack_ranges_tracked,
            max_ranges_sent=cfg.max_ack_ranges_sent,
        )
        self.cc = NewReno(max_datagram_size=cfg.max_datagram_bytes)
        self.recovery = LossRecovery(
            self.cc, max_ack_delay=cfg.max_ack_delay_s, max_tracked=cfg.max_sent_packets_tracked
        )
        self.pacer = Pacer(self.cc, self.recovery.rtt, max_datagram_size=cfg.max_datagram_bytes)
        self._payload_budget = cfg.max_datagram_bytes - ONE_RTT_OVERHEAD
        self._base_mds = cfg.max_datagram_bytes
        self.pmtu: PathMtuSearch | None = (
            PathMtuSearch(
                cfg.max_datagram_bytes,
                cfg.pmtu_max_bytes,
                max_probes=cfg.pmtu_probe_tries,
                raise_interval_s=cfg.pmtu_raise_interval_s,
            )
            if cfg.pmtu_max_bytes > cfg.max_datagram_bytes
            else None
        )
        """Path MTU discovery (None when ``pmtu_max_bytes == max_datagram_bytes``)."""

        # flow control (connection level); the peer's limits start at the protocol floor
        self.conn_credit = FlowCredit(FLOOR_MAX_DATA)
        self.conn_window = FlowWindow(cfg.initial_max_data, max_window=cfg.max_data_window)
        self._peer_stream_window = FLOOR_MAX_STREAM_DATA
        self._parameters_received = False
        self._conn_blocked: set[int] = set()  # streams waiting for connection credit
        self._max_data_queued = False

        # streams
        self._streams: dict[int, _Stream] = {}
        self.scheduler = StreamScheduler()
        self._n_ready = 0
        self._priorities: dict[int, tuple[int, bool]] = {}
        ib = _initiator_bit(is_client)
        # next stream index we open / the peer may open, per uni flag
        self._next_local = [0, 0]
        self._next_remote = [0, 0]
        self._local_limit = [FLOOR_MAX_STREAMS, FLOOR_MAX_STREAMS]  # how many we may open
        self._remote_limit = [cfg.max_streams_bidi, cfg.max_streams_uni]  # peer may open
        self._local_bit = ib
        self._readable: dict[int, None] = {}

        # control frames waiting (retransmittable), datagrams, probes, pings
        self._control: deque[Frame] = deque()
        self._stream_updates: dict[int, None] = {}  # streams owing MAX_STREAM_DATA
        self._datagrams: deque[bytes] = deque()
        self._probes = 0
        self._ping = False
        self._pace_at: float | None = None
        self._idle_timeout = cfg.idle_timeout_s
        self._keep_alive = cfg.keep_alive_s
        self._mds = cfg.max_datagram_bytes
        self._pacing = cfg.pacing

        # timers and closing
        self._last_received = now
        self._idle_start = now
        self._sent_eliciting_since_receive = False
        self._last_eliciting_sent = now
        self._close_frame: ConnectionClose | None = None
        self._close_deadline: float | None = None
        self._close_repeats = 0
        self._close_pending = False
        self.close_reason: ConnectionClosed | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        now: float,
        identity: Identity,
        keyring: Keyring,
        secret_bytes: Callable[[int], bytes],
        *,
        config: TransportConfig | None = None,
        expected_peer: NodeId | None = None,
        static: NoiseStatic | None = None,
        reset_key: ResetKey | None = None,
    ) -> Connection:
        """Start a connection as the initiator; the initial packet is ready in
        :meth:`take_datagrams`.

        ``expected_peer``: the node id dialled; another authenticated peer fails the
        handshake. ``static``: the node's Noise static key for this boot (a fresh one per
        connection when omitted). ``reset_key``: the node's stateless reset key (derived
        from ``identity`` when omitted); the handshake announces the token of our
        connection id.
        """
        hs = Handshake.initiate(identity, keyring, secret_bytes, expected_peer, static=static)
        conn = cls(is_client=True, handshake=hs, now=now, secret_bytes=secret_bytes, config=config)
        key = reset_key if reset_key is not None else ResetKey.from_identity(identity)
        hs.reset_token = key.token(conn.local_cid)
        message = hs.next_message()
        assert message is not None
        conn._send_handshake(
            now, encode_initial(hs.key_id, conn.local_cid, message, MIN_INITIAL_BYTES)
        )
        return conn

    @classmethod
    def accept(
        cls,
        now: float,
        datagram: bytes,
        identity: Identity,
        keyring: Keyring,
        secret_bytes: Callable[[int], bytes],
        *,
        config: TransportConfig | None = None,
        static: NoiseStatic | None = None,
        reset_key: ResetKey | None = None,
    ) -> Connection:
        """Answer a received initial packet as the responder (``static`` and
        ``reset_key`` as in :meth:`connect`).

        Raises a :class:`~foundation_p2p.errors.WireError` subclass when ``datagram`` is
        not an acceptable initial packet (malformed, shorter than 1200 bytes, unknown key
        id, bad Noise message): the owner drops and counts it, and no state is kept.
        """
        cfg = config if config is not None else TransportConfig()
        packet = parse_handshake(datagram, cfg.max_handshake_bytes)
        if packet.ptype != ConnPacketType.INITIAL or packet.key_id is None:
            raise MalformedError("accept: not an initial packet")
        if len(datagram) < MIN_INITIAL_BYTES:
            raise MalformedError(
                f"initial packet of {len(datagram)} bytes, below {MIN_INITIAL_BYTES}"
            )
        hs = Handshake.respond(identity, keyring, secret_bytes, packet.key_id, static=static)
        hs.receive(packet.noise)
        conn = cls(is_client=False, handshake=hs, now=now, secret_bytes=secret_bytes, config=cfg)
        key = reset_key if reset_key is not None else ResetKey.from_identity(identity)
        hs.reset_token = key.token(conn.local_cid)
        conn.remote_cid = packet.scid
        conn.counters.inc("packets.received")
        message = hs.next_message()
        assert message is not None
        conn._send_handshake(now, encode_handshake(packet.scid, conn.local_cid, message))
        return conn

    # --- state queries ------------------------------------------------------------------

    @property
    def is_established(self) -> bool:
        """True once the handshake completed and until the connection closes."""
        return self.state == ESTABLISHED

    @property
    def is_closed(self) -> bool:
        """True once nothing more will be sent or delivered (closing or draining ended)."""
        return self.state == CLOSED

    @property
    def state_name(self) -> str:
        """``handshake``, ``established``, ``closing``, ``draining`` or ``closed``."""
        return _STATE_NAMES[self.state]

    @property
    def peer_epoch(self) -> int | None:
        """The peer's boot epoch from its verified handshake payload (None before)."""
        return self.handshake.peer_epoch

    @property
    def peer_reset_token(self) -> bytes | None:
        """The stateless reset token the peer announced for this connection (None before
        its handshake payload is verified)."""
        return self.handshake.peer_reset_token

    @property
    def smoothed_rtt(self) -> float:
        """The current smoothed RTT estimate, seconds."""
        return self.recovery.rtt.smoothed_rtt

    @property
    def max_datagram_size(self) -> int:
        """The largest datagram this connection sends now, bytes: ``max_datagram_bytes``
        until path MTU discovery confirms more (:attr:`pmtu`)."""
        return self._mds

    def stats(self) -> dict[str, int]:
        """Counters of the connection and of its loss recovery, by name.

        ``pmtu.current_bytes`` is a gauge (the datagram size in use), the rest count."""
        out = dict(self.counters)
        out.update(self.recovery.stats())
        if self.pmtu is not None:
            out.update(self.pmtu.stats())
        out["pmtu.current_bytes"] = self._mds
        out["acks.ranges_dropped"] = self.acks.ranges_dropped
        out["scheduler.fair_overrides"] = self.scheduler.fair_overrides
        return out

    # --- handshake ----------------------------------------------------------------------

    def _send_handshake(self, now: float, packet: bytes) -> None:
        self._hs_packet = packet
        self._hs_out.append(packet)
        self._hs_tries = 1
        self._hs_deadline = now + self.config.handshake_timeout_s

    def _retransmit_handshake(self, now: float) -> None:
        if self._hs_packet is None:
            return
        self._hs_out.append(self._hs_packet)
        self._hs_tries += 1
        self.counters.inc("handshake.retransmits")
        self._hs_deadline = now + self.config.handshake_timeout_s * (1 << (self._hs_tries - 1))

    def _on_handshake_packet(self, now: float, data: bytes) -> bool:
        try:
            packet = parse_handshake(data, self.config.max_handshake_bytes)
        except WireError as exc:
            self._drop(exc.code)
            return False
        hs = self.handshake
        if packet.ptype == ConnPacketType.INITIAL:
            # a retransmitted initial for us (the owner routes it by the client's cid)
            if self.is_client or packet.scid != self.remote_cid:
                self._drop("unexpected_initial")
                return False
        elif packet.dcid != self.local_cid or (
            self.remote_cid is not None and packet.scid != self.remote_cid
        ):
            self._drop("unknown_cid")
            return False
        if self.state not in (HANDSHAKE, ESTABLISHED):
            self._drop("closed")
            return False
        duplicates = hs.duplicates
        try:
            hs.receive(packet.noise)
        except WireError as exc:
            self._drop("handshake_" + exc.code)
            if self.state == HANDSHAKE and (hs.failed or isinstance(exc, UnexpectedPeerError)):
                # an authenticated peer that is not the node dialled is a final answer
                self._fail(ErrorCode.CONNECTION_REFUSED, f"handshake failed: {exc}")
            return False
        if hs.duplicates != duplicates:
            # the peer retransmitted: it did not get our answer, resend it
            self.counters.inc("handshake.duplicates")
            if self._hs_packet is not None and not self._hs_confirmed:
                self._hs_out.append(self._hs_packet)
            return False
        if self.is_client and self.remote_cid is None:
            self.remote_cid = packet.scid
            message = hs.next_message()
            assert message is not None
            self._send_handshake(now, encode_handshake(packet.scid, self.local_cid, message))
        if hs.complete and self.state == HANDSHAKE:
            self._establish(now)
            early, self._early = self._early, []
            for datagram in early:
                self._receive(now, datagram)
        return True

    def _establish(self, now: float) -> None:
        keys = self.handshake.keys()
        self._protection = PacketProtection(
            keys.send_key, keys.send_iv, keys.recv_key, keys.recv_iv
        )
        node_id = self.handshake.peer_node_id
        assert node_id is not None
        self.peer_node_id = node_id
        self.state = ESTABLISHED
        cfg = self.config
        self._control.append(
            Parameters(
                cfg.initial_max_data,
                cfg.initial_max_stream_data,
                cfg.max_streams_bidi,
                cfg.max_streams_uni,
            )
        )
        # the client keeps resending message 3 (its timer runs on) until a 1-RTT packet
        # from the server shows the server has the keys
        if not self.is_client:
            self._hs_confirmed = True
            self._hs_deadline = None
            self._control.append(HandshakeDone())
        self._events.append(HandshakeCompleted(node_id))
        self._last_eliciting_sent = now
        log.debug("connection established with %s", node_id.hex())

    # --- receiving ----------------------------------------------------------------------

    def receive_datagram(self, now: float, data: bytes) -> bool:
        """Process one received datagram; True if it authenticated as the peer's.

        Never raises for the datagram's content: a refused datagram is dropped and counted
        under ``packets.dropped.<reason>``; a peer breaking the protocol closes the connection.
        """
        self._now = now
        self.counters.inc("packets.received")
        return self._receive(now, data)

    def _receive(self, now: float, data: bytes) -> bool:
        if self.state == CLOSED:
            self._drop("closed")
            return False
        try:
            ptype = packet_type(data)
        except WireError as exc:
            self._drop(exc.code)
            return False
        if ptype != ConnPacketType.ONE_RTT:
            if ptype == ConnPacketType.GOSSIP:
                self._drop("not_connection")
                return False
            return self._on_handshake_packet(now, data)
        protection = self._protection
        try:
            dcid, pn, aad, sealed = parse_one_rtt(data)
        except WireError as exc:
            self._drop(exc.code)
            return False
        if dcid != self.local_cid:
            self._drop("unknown_cid")
            return False
        if protection is None:
            # a 1-RTT packet overtook handshake message 3: keep a few for when it arrives
            if len(self._early) < _MAX_EARLY_PACKETS:
                self._early.append(data)
                self.counters.inc("packets.early")
            else:
                self._drop("no_keys")
            return False
        acks = self.acks
        try:
            acks.check(pn)
            plaintext = protection.open(pn, aad, sealed)
        except WireError as exc:
            self._drop(exc.code)
            return False
        self._last_received = now
        self._idle_start = now
        self._sent_eliciting_since_receive = False
        if self.is_client and not self._hs_confirmed:
            self._hs_confirmed = True
            self._hs_deadline = None
        if self.state == DRAINING:
            return True
        try:
            frames = decode_frames(plaintext)
        except WireError as exc:
            acks.on_received(pn, False, now)
            self._fail(ErrorCode.FRAME_ENCODING_ERROR, f"undecodable frames: {exc}")
            return True
        eliciting = False
        if self.state == CLOSING:
            acks.on_received(pn, False, now)
            for frame in frames:
                if type(frame) is ConnectionClose:
                    self._enter_draining(now)
                    return True
            if self._close_repeats < _MAX_CLOSE_REPEATS:
                self._close_repeats += 1
                self._close_pending = True
            return True
        try:
            for frame in frames:
                if isinstance(frame, StreamFrame):
                    eliciting = True
                    self._on_stream_frame(frame)
                elif isinstance(frame, AckFrame):
                    self._on_ack_frame(frame, now)
                elif isinstance(frame, ConnectionClose):
                    self._on_close_frame(frame, now)
                    acks.on_received(pn, False, now)
                    return True
                elif type(frame) is Padding:
                    pass  # filler of a path MTU probe; not ack-eliciting
                else:
                    eliciting = True
                    self._on_control_frame(frame, now)
        except TransportError as exc:
            acks.on_received(pn, eliciting, now)
            self._fail(exc.code, exc.reason, exc.frame_type)
            return True
        acks.on_received(pn, eliciting, now)
        return True

    def _drop(self, reason: str) -> None:
        self.counters.inc("packets.dropped." + reason)

    def _on_stream_frame(self, frame: StreamFrame) -> None:
        stream = self._stream_for_peer_data(frame.stream_id, FrameType.STREAM)
        if stream is None or stream.recv is None:
            return
        stream.recv.on_frame(frame.offset, frame.data, frame.fin)
        self._readable[frame.stream_id] = None

    def _on_ack_frame(self, frame: AckFrame, now: float) -> None:
        outcome = self.recovery.on_ack_received(frame.ranges, frame.ack_delay_us / 1e6, now)
        self._apply_outcome(outcome)

    def _apply_outcome(self, outcome: AckOutcome) -> None:
        streams = self._streams
        if self.pmtu is not None:
            self._pmtu_outcome(outcome)
        for p in outcome.acked:
            records = p.payload
            if records is None:
                continue
            for rec in cast("list[Any]", records):
                if rec[0] == _REC_STREAM:
                    stream = streams.get(rec[1])
                    if stream is not None and stream.send is not None:
                        stream.send.on_acked(rec[2], rec[3], rec[4])
                        if stream.send.finished:
                            self._maybe_retire(stream)
        lost = outcome.lost
        if lost:
            self.counters.inc("lost", len(lost))  # path MTU probes included
            for p in lost:
                records = p.payload
                if records is None:
                    continue
                for rec in cast("list[Any]", records):
                    if rec[0] == _REC_STREAM:
                        stream = streams.get(rec[1])
                        if stream is not None and stream.send is not None:
                            stream.send.on_lost(rec[2], rec[3], rec[4])
                            if stream.send.has_data():
                                self._set_ready(rec[1], True)
                    else:
                        self._requeue_control(rec[1])

    def _pmtu_outcome(self, outcome: AckOutcome) -> None:
        """Tell path MTU discovery about acknowledged and lost probes and large packets."""
        pmtu = self.pmtu
        assert pmtu is not None
        now = self._now
        base = self._base_mds
        acked = outcome.acked
        if acked:
            probe_pn = pmtu.probe_pn
            if probe_pn is not None and acked[0].pn <= probe_pn <= acked[-1].pn:
                for p in acked:
                    if p.pn == probe_pn:
                        size = pmtu.on_probe_acked(p.pn, now)
                        if size is not None:
                            self._set_datagram_size(size)
                        break
            if self._mds > base:
                for p in reversed(acked):
                    if p.size > base and not p.pmtu_probe:
                        pmtu.on_large_acked(p.size, p.time_sent)
                        break
        for p in outcome.lost:
            if p.pmtu_probe:
                pmtu.on_probe_lost(p.pn, now)
            elif p.size > base and self._mds > base:
                size = pmtu.on_large_lost(p.size, p.time_sent, now)
                if size is not None:
                    self.counters.inc("pmtu.black_holes_by_loss")
                    self._set_datagram_size(size)

    def _set_datagram_size(self, size: int) -> None:
        """Use datagrams of up to ``size`` bytes from now on (path MTU discovery)."""
        log.debug(
            "datagram size %d -> %d bytes (NewReno.set_max_datagram_size, "
            "Pacer.set_max_datagram_size)", self._mds, size,
        )
        self._mds = size
        self._payload_budget = size - ONE_RTT_OVERHEAD
        self.cc.set_max_datagram_size(size)
        self.pacer.set_max_datagram_size(size)

    def _build_probe(self, now: float, size: int) -> bytes | None:
        """A path MTU probe of exactly ``size`` bytes (PING + PADDING), or None when the
        congestion window, the tracking bound or the pacer does not let it go now.

        The window and the pacer are asked for a packet of the current size, as for any
        packet: the probe may overshoot them by the difference (one probe at a time). Asked
        for the probe's own size, a window that is not growing (a lightly used connection)
        would never let a probe above it go, and the search would stall."""
        recovery = self.recovery
        mds = self._mds
        if not recovery.can_track() or not self.cc.can_send(recovery.bytes_in_flight, mds):
            return None
        if self._pacing and self.pacer.next_send_time(now, mds) > now:
            return None
        protection = self._protection
        assert protection is not None and self.remote_cid is not None
        pn = self._next_pn
        # packet = prefix (4 + cid + pn) + sealed head (3) + PING (2) + PADDING head
        # (2 + 3) + padding + tag; the 3-byte heads hold for every size in 1200..65507
        prefix = 4 + len(self.remote_cid) + len(uint_bytes(pn))
        padding = size - prefix - 3 - 2 - 5 - AEAD_TAG_BYTES
        packet = protection.seal(
            self.remote_cid, pn, b"\x81\x01" + Padding(padding).encode()
        )
        self._next_pn = pn + 1
        actual = len(packet)
        recovery.on_packet_sent(SentPacket(pn, now, actual, True, True, None, True))
        self.pacer.on_sent(now, actual)
        self._last_eliciting_sent = now
        if not self._sent_eliciting_since_receive:
            self._sent_eliciting_since_receive = True
            self._idle_start = now
        assert self.pmtu is not None
        self.pmtu.on_probe_sent(pn, actual)
        return packet

    def _requeue_control(self, frame: Frame) -> None:
        """A control frame was lost: send it again if it still matters (its current value)."""
        if isinstance(frame, MaxData):
            if not self._max_data_queued:
                self._max_data_queued = True
                self._control.append(MaxData(self.conn_window.limit))
        elif isinstance(frame, MaxStreamData):
            stream = self._streams.get(frame.stream_id)
            if stream is not None and stream.recv is not None and not stream.recv.at_end:
                # the limit already advertised (it may have grown since): resend it as is
                self._control.append(MaxStreamData(frame.stream_id, stream.recv.flow.limit))
        elif isinstance(frame, MaxStreams):
            self._control.append(MaxStreams(frame.uni, self._remote_limit[int(frame.uni)]))
        elif isinstance(frame, (ResetStream, StopSending, HandshakeDone, Parameters)):
            self._control.append(frame)
        # PING, DATA_BLOCKED and STREAM_DATA_BLOCKED are not repeated: they are hints

    def _on_close_frame(self, frame: ConnectionClose, now: float) -> None:
        self.counters.inc("closed_by_peer")
        self._emit_closed(frame.error_code, frame.reason, by_peer=True)
        self._enter_draining(now)

    def _enter_draining(self, now: float) -> None:
        self.state = DRAINING
        # A draining connection sends nothing more: a CONNECTION_CLOSE still pending from
        # CLOSING (the peer's packets crossed ours) would leave the deadline due on every
        # call until the close deadline, a busy loop for the driver.
        self._close_pending = False
        self._close_deadline = now + 3 * self.recovery.rtt.pto(self.config.max_ack_delay_s)
        self._discard_sending()

    def _on_control_frame(self, frame: Frame, now: float) -> None:
        if isinstance(frame, Ping):
            return
        if isinstance(frame, MaxData):
            if self.conn_credit.raise_limit(frame.maximum):
                self._unblock_connection()
        elif isinstance(frame, MaxStreamData):
            sid = frame.stream_id
            stream = self._stream_for_peer_control(sid, FrameType.MAX_STREAM_DATA)
            send = stream.send if stream is not None else None
            if send is not None and send.credit.raise_limit(frame.maximum) and send.has_data():
                self._set_ready(sid, True)
        elif isinstance(frame, MaxStreams):
            uni = int(frame.uni)
            if frame.maximum > self._local_limit[uni]:
                self._local_limit[uni] = frame.maximum
        elif isinstance(frame, DataBlocked):
            self.counters.inc("peer_blocked.data")
        elif isinstance(frame, StreamDataBlocked):
            self.counters.inc("peer_blocked.stream_data")
            self._stream_for_peer_data(frame.stream_id, FrameType.STREAM_DATA_BLOCKED)
        elif isinstance(frame, ResetStream):
            self._on_reset_stream(frame)
        elif isinstance(frame, StopSending):
            sid = frame.stream_id
            stream = self._stream_for_peer_control(sid, FrameType.STOP_SENDING)
            if stream is not None and stream.send is not None:
                send = stream.send
                if send.reset_code is None and not send.finished:
                    self._reset_send(stream, frame.error_code)
                    self._events.append(StopSendingReceived(sid, frame.error_code))
        elif isinstance(frame, DatagramFrame):
            if self._received_datagrams >= self.config.max_received_datagrams:
                self.counters.inc("datagrams.dropped_recv")
                return
            self._received_datagrams += 1
            self._events.append(DatagramReceived(frame.data))
        elif isinstance(frame, HandshakeDone):
            if not self.is_client:
                raise TransportError(
                    ErrorCode.PROTOCOL_VIOLATION,
                    "HANDSHAKE_DONE from the client",
                    FrameType.HANDSHAKE_DONE,
                )
        elif isinstance(frame, Parameters):
            self._on_parameters(frame)

    def _on_reset_stream(self, frame: ResetStream) -> None:
        sid = frame.stream_id
        stream = self._stream_for_peer_data(sid, FrameType.RESET_STREAM)
        if stream is None or stream.recv is None:
            return
        already = stream.recv.at_end
        stream.recv.on_reset(frame.error_code, frame.final_size)
        self._readable.pop(sid, None)
        self._stream_updates.pop(sid, None)
        if not already and not stream.end_reported:
            stream.end_reported = True
            self._events.append(StreamReset(sid, frame.error_code))
        self._maybe_retire(stream)

    def _on_parameters(self, p: Parameters) -> None:
        if (
            p.max_data < FLOOR_MAX_DATA
            or p.max_stream_data < FLOOR_MAX_STREAM_DATA
            or p.max_streams_bidi < FLOOR_MAX_STREAMS
            or p.max_streams_uni < FLOOR_MAX_STREAMS
        ):
            raise TransportError(
                ErrorCode.TRANSPORT_PARAMETER_ERROR,
                "PARAMETERS below the protocol floor",
                FrameType.PARAMETERS,
            )
        if self._parameters_received:  # a retransmission: only the first one counts
            return
        self._parameters_received = True
        if self.conn_credit.raise_limit(p.max_data):
            self._unblock_connection()
        self._peer_stream_window = p.max_stream_data
        for sid, stream in self._streams.items():
            send = stream.send
            if send is not None and send.credit.raise_limit(p.max_stream_data) and send.has_data():
                self._set_ready(sid, True)
        self._local_limit[0] = max(self._local_limit[0], p.max_streams_bidi)
        self._local_limit[1] = max(self._local_limit[1], p.max_streams_uni)

    def _unblock_connection(self) -> None:
        blocked = self._conn_blocked
        if blocked:
            for sid in blocked:
                stream = self._streams.get(sid)
                if stream is not None and stream.send is not None and stream.send.has_data():
                    self._set_ready(sid, True)
            blocked.clear()

    # --- stream bookkeeping -------------------------------------------------------------

    def _is_local(self, stream_id: int) -> bool:
        return (stream_id & 1) == self._local_bit

    def _stream_for_peer_data(self, sid: int, ftype: int) -> _Stream | None:
        """The stream a frame about the peer's sending side refers to (None: retired)."""
        stream = self._streams.get(sid)
        if stream is not None:
            if stream.recv is None:
                raise TransportError(
                    ErrorCode.STREAM_STATE_ERROR, f"stream {sid} is send-only for us", ftype
                )
            return stream
        uni = (sid >> 1) & 1
        index = sid >> 2
        if self._is_local(sid):
            if uni:
                raise TransportError(
                    ErrorCode.STREAM_STATE_ERROR, f"stream {sid} is our unidirectional one",
                    ftype,
                )
            if index >= self._next_local[0]:
                raise TransportError(
                    ErrorCode.STREAM_STATE_ERROR, f"stream {sid} was never opened", ftype
                )
            return None
        return self._open_remote(sid, uni, index, ftype)

    def _stream_for_peer_control(self, sid: int, ftype: int) -> _Stream | None:
        """The stream a frame about our sending side refers to (None: retired)."""
        stream = self._streams.get(sid)
        if stream is not None:
            if stream.send is None:
                raise TransportError(
                    ErrorCode.STREAM_STATE_ERROR, f"stream {sid} is receive-only for us", ftype
                )
            return stream
        uni = (sid >> 1) & 1
        index = sid >> 2
        if self._is_local(sid):
            if index >= self._next_local[uni]:
                raise TransportError(
                    ErrorCode.STREAM_STATE_ERROR, f"stream {sid} was never opened", ftype
                )
            return None
        if uni:
            raise TransportError(
                ErrorCode.STREAM_STATE_ERROR, f"stream {sid} is the peer's send-only", ftype
            )
        return self._open_remote(sid, uni, index, ftype)

    def _open_remote(self, sid: int, uni: int, index: int, ftype: int) -> _Stream | None:
        if index < self._next_remote[uni]:
            return None  # opened before and retired
        if index >= self._remote_limit[uni]:
            raise TransportError(
                ErrorCode.STREAM_LIMIT_ERROR,
                f"stream {sid} beyond the limit of {self._remote_limit[uni]}",
                ftype,
            )
        base = (uni << 1) | (1 - self._local_bit)
        for i in range(self._next_remote[uni], index + 1):
            self._create_stream((i << 2) | base, send=not uni, recv=True)
        self._next_remote[uni] = index + 1
        return self._streams[sid]

    def _create_stream(
        self,
        sid: int,
        *,
        send: bool,
        recv: bool,
        urgency: int = DEFAULT_URGENCY,
        incremental: bool = True,
    ) -> _Stream:
        cfg = self.config
        send_stream = (
            SendStream(
                sid,
                max_buffer=cfg.stream_send_buffer_bytes,
                credit=FlowCredit(self._peer_stream_window),
            )
            if send
            else None
        )
        recv_stream = (
            RecvStream(
                sid,
                window=cfg.initial_max_stream_data,
                max_window=cfg.max_stream_data_window,
                conn_flow=self.conn_window,
            )
            if recv
            else None
        )
        stream = _Stream(sid, send_stream, recv_stream)
        self._streams[sid] = stream
        if send:
            self.scheduler.add(sid, urgency, incremental)
        return stream

    def _set_ready(self, sid: int, ready: bool) -> None:
        scheduler = self.scheduler
        if scheduler.is_ready(sid) != ready:
            scheduler.set_ready(sid, ready)
            self._n_ready += 1 if ready else -1

    def _maybe_retire(self, stream: _Stream) -> None:
        """Forget a stream both of whose sides are done; the peer may then open another."""
        send, recv = stream.send, stream.recv
        if send is not None and not (send.finished or send.reset_code is not None):
            return
        if recv is not None and not (recv.at_end and stream.end_reported):
            return
        sid = stream.stream_id
        del self._streams[sid]
        if self.scheduler.is_ready(sid):
            self._n_ready -= 1
        self.scheduler.remove(sid)
        self._conn_blocked.discard(sid)
        self._readable.pop(sid, None)
        self._stream_updates.pop(sid, None)
        self.counters.inc("streams.retired")
        if not self._is_local(sid):
            uni = (sid >> 1) & 1
            self._remote_limit[uni] += 1
            # one MAX_STREAMS per direction is enough: replace a queued one
            self._control = deque(
                f for f in self._control if not (type(f) is MaxStreams and f.uni == bool(uni))
            )
            self._control.append(MaxStreams(bool(uni), self._remote_limit[uni]))

    def _reset_send(self, stream: _Stream, code: int) -> None:
        send = stream.send
        assert send is not None
        send.reset(code)
        self._set_ready(stream.stream_id, False)
        self._conn_blocked.discard(stream.stream_id)
        self._control.append(ResetStream(stream.stream_id, code, send.final_size or 0))
        self._maybe_retire(stream)

    # --- application API ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state >= CLOSING:
            raise ConfigError(f"connection is {self.state_name}")

    def can_open_stream(self, uni: bool = False) -> bool:
        """True if the peer's stream limit lets us open another stream of this kind now."""
        return self._next_local[int(uni)] < self._local_limit[int(uni)]

    def open_stream(
        self, *, urgency: int = DEFAULT_URGENCY, incremental: bool = True, uni: bool = False
    ) -> int:
        """Open a stream and return its id (RFC 9218 ``urgency`` 0..7, 0 first).

        Raises :class:`~foundation_p2p.errors.ConfigError` when the connection is closing
        or the peer's stream limit is reached (:meth:`can_open_stream`).
        """
        self._check_open()
        u = int(uni)
        if not self.can_open_stream(uni):
            raise ConfigError(
                f"stream limit reached: the peer allows {self._local_limit[u]} "
                f"{'unidirectional' if uni else 'bidirectional'} streams"
            )
        index = self._next_local[u]
        self._next_local[u] = index + 1
        sid = (index << 2) | (u << 1) | self._local_bit
        self._create_stream(sid, send=True, recv=not uni, urgency=urgency, incremental=incremental)
        return sid

    def set_priority(self, stream_id: int, urgency: int, incremental: bool = True) -> None:
        """Change a stream's urgency and incremental flag (RFC 9218), locally."""
        if stream_id in self.scheduler:
            self.scheduler.add(stream_id, urgency, incremental)

    def _send_side(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.send is None:
            raise ConfigError(f"stream {stream_id}: no open sending side")
        return stream

    def send(self, stream_id: int, data: bytes, end: bool = False) -> int:
        """Queue bytes on a stream; return how many were accepted (the buffer is bounded).

        ``end`` finishes the stream once every accepted byte is sent (it applies only
        when all of ``data`` was accepted). Raises ``ConfigError`` for a stream we cannot
        send on or a closed connection.
        """
        self._check_open()
        stream = self._send_side(stream_id)
        send = stream.send
        assert send is not None
        accepted = send.write(data, end)
        if send.has_data():
            self._set_ready(stream_id, True)
        return accepted

    def send_open(self, stream_id: int) -> bool:
        """True if :meth:`send` can take bytes on the stream: it has a sending side that
        is neither reset (by us, or in answer to the peer's STOP_SENDING) nor finished,
        and the connection is open. A driver checks this before :meth:`writable` when
        the peer may have stopped the stream: those two raise ``ConfigError`` for a
        stream that is gone."""
        if self.state >= CLOSING:
            return False
        stream = self._streams.get(stream_id)
        send = stream.send if stream is not None else None
        return send is not None and send.reset_code is None and not send.fin_written

    def writable(self, stream_id: int) -> int:
        """How many bytes :meth:`send` would accept on the stream now."""
        stream = self._send_side(stream_id)
        assert stream.send is not None
        return stream.send.writable()

    def read(self, stream_id: int, max_bytes: int = -1) -> bytes:
        """In-order bytes received on a stream and not read yet (pull instead of events)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.recv is None:
            return b""
        data = stream.recv.read(max_bytes)
        self._after_read(stream)
        return data

    def stream_finished(self, stream_id: int) -> bool:
        """True when every byte of the peer's side was read (or the stream is gone)."""
        stream = self._streams.get(stream_id)
        return stream is None or stream.recv is None or stream.recv.at_end

    def _after_read(self, stream: _Stream) -> None:
        recv = stream.recv
        assert recv is not None
        if recv.available == 0:
            self._readable.pop(stream.stream_id, None)
        if not recv.at_end:
            flow = recv.flow
            if (flow.limit - flow.consumed) * 2 <= flow.window:  # FlowWindow.update's rule
                self._stream_updates[stream.stream_id] = None
        if not self._max_data_queued:
            limit = self.conn_window.update(self._now, self.recovery.rtt.smoothed_rtt)
            if limit is not None:
                self._max_data_queued = True
                self._control.append(MaxData(limit))
        if recv.at_end and not stream.end_reported:
            stream.end_reported = True
            self._maybe_retire(stream)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Abandon our sending side of a stream (RESET_STREAM)."""
        self._check_open()
        stream = self._send_side(stream_id)
        assert stream.send is not None
        if stream.send.reset_code is None:
            self._reset_send(stream, error_code)

    def stop_sending(self, stream_id: int, error_code: int = 0) -> None:
        """Ask the peer to stop sending on a stream; what arrives is discarded."""
        self._check_open()
        stream = self._streams.get(stream_id)
        if stream is None or stream.recv is None:
            raise ConfigError(f"stream {stream_id}: no open receiving side")
        if stream.stop_sent:
            return
        stream.stop_sent = True
        stream.recv.discard()
        self._readable.pop(stream_id, None)
        self._control.append(StopSending(stream_id, error_code))

    def send_datagram(self, data: bytes) -> None:
        """Queue an unreliable DATAGRAM; the oldest queued one is dropped when full."""
        self._check_open()
        if len(data) > self.config.max_datagram_frame_bytes:
            raise ConfigError(
                f"datagram of {len(data)} bytes exceeds max_datagram_frame_bytes "
                f"({self.config.max_datagram_frame_bytes})"
            )
        queue = self._datagrams
        if len(queue) >= self.config.max_datagram_queue:
            queue.popleft()
            self.counters.inc("datagrams.dropped_send")
        queue.append(bytes(data))

    def close(self, error_code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close the connection: send CONNECTION_CLOSE, then forget it after 3 PTOs."""
        if self.state >= CLOSING:
            return
        self.counters.inc("closed_locally")
        self._start_closing(int(error_code), reason, None)

    def abandon(self, reason: str) -> None:
        """Close at once and silently (no CONNECTION_CLOSE, no closing period): the peer's
        boot that held this connection is gone (a stateless reset, or a newer boot seen).

        ``ConnectionClosed(NO_ERROR, reason, by_peer=False)`` is the event; no-op once
        closed."""
        if self.state == CLOSED:
            return
        self.counters.inc("abandoned")
        self._emit_closed(int(ErrorCode.NO_ERROR), reason, by_peer=False)
        self._to_closed()

    def _fail(self, code: int, reason: str, frame_type: int | None = None) -> None:
        """The peer broke the protocol: close with ``code``."""
        if self.state >= CLOSING:
            return
        log.info("closing connection with error %#x: %s", code, reason)
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
        self.counters.inc(f"errors.{name}")
        self._start_closing(code, reason, frame_type)

    def _start_closing(self, code: int, reason: str, frame_type: int | None) -> None:
        raw = reason.encode("utf-8")[:MAX_REASON_BYTES]
        reason = raw.decode("utf-8", "ignore")
        self._emit_closed(code, reason, by_peer=False)
        if self._protection is None:
            self._to_closed()
            return
        self.state = CLOSING
        self._close_frame = ConnectionClose(code, frame_type, reason)
        self._close_pending = True
        self._close_deadline = self._now + 3 * self.recovery.rtt.pto(self.config.max_ack_delay_s)
        self._discard_sending()

    def _emit_closed(self, code: int, reason: str, by_peer: bool) -> None:
        if self.close_reason is None:
            event = ConnectionClosed(code, reason, by_peer)
            self.close_reason = event
            self._events.append(event)

    def _discard_sending(self) -> None:
        self.recovery.on_close()
        self._control.clear()
        self._datagrams.clear()
        self._hs_out.clear()
        self._hs_deadline = None
        self._probes = 0
        self._ping = False

    def _to_closed(self) -> None:
        self.state = CLOSED
        self._early.clear()
        self._discard_sending()
        self._close_deadline = None
        self._streams.clear()
        self._readable.clear()

    # --- timers -------------------------------------------------------------------------

    def _idle_deadline(self) -> float:
        return self._idle_start + self.config.idle_timeout_s

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` (then :meth:`take_datagrams`) must run next, or None."""
        state = self.state
        if state != ESTABLISHED:
            if state == CLOSED:
                return None
            if state >= CLOSING:
                return self._now if self._close_pending else self._close_deadline
            if self._hs_out:
                return self._now
            deadline = self._idle_start + self._idle_timeout
            hs = self._hs_deadline
            return hs if hs is not None and hs < deadline else deadline
        now = self._now
        if self._probes or self._hs_out:
            return now
        ack = self.acks.ack_deadline()
        if ack is not None and ack <= now:
            return now
        deadline = self._idle_start + self._idle_timeout
        hs = self._hs_deadline
        if hs is not None and hs < deadline:
            deadline = hs
        if ack is not None and ack < deadline:
            deadline = ack
        rec = self.recovery.deadline()
        if rec is not None and rec < deadline:
            deadline = rec
        pace = self._pace_at
        if pace is not None and pace < deadline:
            deadline = pace
        keep = self._keep_alive
        if keep is not None and not self._ping:  # a pending PING waits for the window
            last = self._last_eliciting_sent
            if self._last_received > last:
                last = self._last_received
            if last + keep < deadline:
                deadline = last + keep
        return deadline

    def handle_timer(self, now: float) -> None:
        """Run whatever timers are due at ``now`` (idle, handshake, loss, keep-alive)."""
        self._now = now
        state = self.state
        if state == CLOSED:
            return
        if state >= CLOSING:
            if self._close_deadline is not None and now >= self._close_deadline:
                self._to_closed()
            return
        if now >= self._idle_deadline():
            self.counters.inc("idle_timeouts")
            self._emit_closed(int(ErrorCode.NO_ERROR), "idle timeout", by_peer=False)
            self._to_closed()
            return
        if self._hs_deadline is not None and now >= self._hs_deadline:
            if self._hs_tries >= self.config.handshake_max_tries:
                self._hs_deadline = None
                if state == HANDSHAKE:
                    self.counters.inc("handshake.timeouts")
                    self._emit_closed(
                        int(ErrorCode.CONNECTION_REFUSED), "handshake timed out", by_peer=False
                    )
                    self._to_closed()
                    return
            else:
                self._retransmit_handshake(now)
        if state != ESTABLISHED:
            return
        due = self.recovery.deadline()
        if due is not None and now >= due:
            result = self.recovery.on_timeout(now)
            if isinstance(result, AckOutcome):
                self._apply_outcome(result)
            elif result:
                if self.recovery.pto_count >= self.config.max_probe_timeouts:
                    # the peer stopped answering: close silently, like the idle timeout
                    self.counters.inc("unresponsive_closes")
                    self._emit_closed(
                        int(ErrorCode.NO_ERROR), "peer unresponsive", by_peer=False
                    )
                    self._to_closed()
                    return
                self.counters.inc("probes", result)
                self._probes += result
                if self.pmtu is not None and self._mds > self._base_mds:
                    size = self.pmtu.on_pto(self.recovery.pto_count, now)
                    if size is not None:
                        self.counters.inc("pmtu.black_holes_by_pto")
                        self._set_datagram_size(size)
        keep = self.config.keep_alive_s
        if keep is not None and now >= max(self._last_eliciting_sent, self._last_received) + keep:
            self._ping = True

    # --- sending ------------------------------------------------------------------------

    def take_datagrams(self, now: float | None = None) -> list[bytes]:
        """The datagrams to send now (handshake, 1-RTT, close), in order.

        ``now`` defaults to the time of the last call that passed one.
        """
        if now is not None:
            self._now = now
        now = self._now
        out: list[bytes] = []
        if self._hs_out:
            out.extend(self._hs_out)
            self._hs_out.clear()
        state = self.state
        if state == ESTABLISHED:
            self._pace_at = None
            pmtu = self.pmtu
            if pmtu is not None and self._hs_confirmed:
                size = pmtu.probe_size(now)
                if size is not None:
                    probe = self._build_probe(now, size)
                    if probe is not None:
                        out.append(probe)
            build = self._build_packet
            while True:
                packet = build(now)
                if packet is None:
                    break
                out.append(packet)
        elif state == CLOSING and self._close_pending:
            self._close_pending = False
            assert self._close_frame is not None
            out.append(self._seal([self._close_frame.encode()], None, now, False))
        if out:
            self.counters.inc("packets.sent", len(out))
        return out

    def _seal(
        self, parts: list[bytes], records: list[tuple[object, ...]] | None, now: float,
        eliciting: bool,
    ) -> bytes:
        protection = self._protection
        assert protection is not None and self.remote_cid is not None
        pn = self._next_pn
        self._next_pn = pn + 1
        packet = protection.seal(self.remote_cid, pn, b"".join(parts))
        size = len(packet)
        self.recovery.on_packet_sent(
            SentPacket(pn, now, size, eliciting, eliciting, records)
        )
        if eliciting:
            self.pacer.on_sent(now, size)
            self._last_eliciting_sent = now
            if not self._sent_eliciting_since_receive:
                self._sent_eliciting_since_receive = True
                self._idle_start = now
        return packet

    def _build_packet(self, now: float) -> bytes | None:
        """One 1-RTT packet: ACK, control frames, datagrams, stream chunks; or None."""
        acks = self.acks
        want_ack = acks.ack_wanted(now)
        probe = self._probes > 0
        can_send = False
        if (
            self._n_ready
            or self._control
            or self._stream_updates
            or self._datagrams
            or probe
            or self._ping
        ):
            recovery = self.recovery
            if probe:
                can_send = True
            elif recovery.can_track() and self.cc.can_send(recovery.bytes_in_flight, self._mds):
                if self._pacing:
                    at = self.pacer.next_send_time(now, self._mds)
                    if at <= now:
                        can_send = True
                    else:
                        self._pace_at = at
                else:
                    can_send = True
            else:
                self.counters.inc("send_blocked.congestion")
        if not can_send and not want_ack:
            return None

        space = self._payload_budget
        parts: list[bytes] = []
        records: list[tuple[object, ...]] = []
        ack_frame = acks.build_ack(now) if (want_ack or acks.has_unacked()) else None
        if ack_frame is not None:
            encoded = ack_frame.encode()
            parts.append(encoded)
            space -= len(encoded)
        eliciting = False
        if can_send:
            # connection-level control first
            control = self._control
            while control:
                frame = control[0]
                encoded = frame.encode()
                if len(encoded) > space:
                    break
                control.popleft()
                if type(frame) is MaxData:
                    self._max_data_queued = False
                    frame = MaxData(self.conn_window.limit)
                    encoded = frame.encode()
                parts.append(encoded)
                records.append((_REC_CONTROL, frame))
                space -= len(encoded)
                eliciting = True
            if self._stream_updates:
                self._add_stream_updates(parts, records, now)
                space = self._payload_budget - sum(len(p) for p in parts)
                eliciting = eliciting or bool(records)
            # unreliable datagrams
            datagrams = self._datagrams
            while datagrams and len(datagrams[0]) + 5 <= space:
                encoded = DatagramFrame(datagrams.popleft()).encode()
                parts.append(encoded)
                space -= len(encoded)
                eliciting = True
            # stream data
            if self._n_ready and space > 32:
                space, added = self._add_stream_chunks(parts, records, space, now)
                eliciting = eliciting or added
            if (probe or self._ping) and not eliciting:
                parts.append(b"\x81\x01")
                eliciting = True
            if eliciting:
                self._ping = False
                if probe:
                    self._probes -= 1
        if not eliciting and not want_ack:
            return None
        if ack_frame is not None:
            acks.on_ack_sent()
        return self._seal(parts, records or None, now, eliciting)

    def _add_stream_updates(
        self, parts: list[bytes], records: list[tuple[object, ...]], now: float
    ) -> None:
        space = self._payload_budget - sum(len(p) for p in parts)
        rtt = self.recovery.rtt.smoothed_rtt
        updates = self._stream_updates
        for sid in list(updates):
            if space < 24:
                break
            del updates[sid]
            stream = self._streams.get(sid)
            if stream is None or stream.recv is None or stream.recv.at_end:
                continue
            limit = stream.recv.max_data_update(now, rtt)
            if limit is None:
                continue
            frame = MaxStreamData(sid, limit)
            encoded = frame.encode()
            parts.append(encoded)
            records.append((_REC_CONTROL, frame))
            space -= len(encoded)

    def _add_stream_chunks(
        self, parts: list[bytes], records: list[tuple[object, ...]], space: int, now: float
    ) -> tuple[int, bool]:
        added = False
        scheduler = self.scheduler
        streams = self._streams
        conn_credit = self.conn_credit
        while space > 32 and self._n_ready:
            sid = scheduler.next()
            if sid is None:
                break
            stream = streams[sid]
            send = stream.send
            assert send is not None
            overhead = 15 + len(uint_bytes(sid))
            before = send.bytes_sent
            chunk = send.next_chunk(space - overhead, conn_credit)
            if chunk is None:
                self._set_ready(sid, False)
                if send.has_data():
                    # blocked by connection credit (the stream's own is in has_data)
                    self.counters.inc("send_blocked.data")
                    self._conn_blocked.add(sid)
                    conn_credit.note_blocked()
                    limit = conn_credit.blocked_at()
                    if limit is not None:
                        self._control.append(DataBlocked(limit))
                else:
                    self.counters.inc("send_blocked.stream_data")
                    send.credit.note_blocked()
                    limit = send.credit.blocked_at()
                    if limit is not None:
                        self._control.append(StreamDataBlocked(sid, limit))
                continue
            offset, data, fin = chunk
            encoded = encode_stream(sid, offset, fin, data)
            parts.append(encoded)
            records.append((_REC_STREAM, sid, offset, len(data), fin))
            space -= len(encoded)
            added = True
            if offset < before:
                self.counters.inc("retransmits")
            if not send.has_data():
                self._set_ready(sid, False)
                credit = send.credit
                if credit.available() <= 0 and send.bytes_acked + send.buffered > send.bytes_sent:
                    # unsent bytes wait for the peer's MAX_STREAM_DATA
                    self.counters.inc("send_blocked.stream_data")
                    credit.note_blocked()
                    limit = credit.blocked_at()
                    if limit is not None:
                        self._control.append(StreamDataBlocked(sid, limit))
        return space, added

    # --- events -------------------------------------------------------------------------

    def take_events(self) -> list[Event]:
        """Everything that happened since the last call, oldest first.

        Stream bytes are read here (moving flow-control credit back to the peer): an
        application that wants backpressure on a stream reads it with :meth:`read`
        instead and takes events only for the rest.
        """
        events = self._events
        self._events = []
        self._received_datagrams = 0
        if self._readable:
            closed = None
            if events and type(events[-1]) is ConnectionClosed:
                closed = events.pop()
            for sid in list(self._readable):
                stream = self._streams.get(sid)
                if stream is None or stream.recv is None:
                    self._readable.pop(sid, None)
                    continue
                recv = stream.recv
                data = recv.read()
                end = recv.at_end
                if data or (end and not stream.end_reported):
                    events.append(StreamDataReceived(sid, data, end))
                self._after_read(stream)
            if closed is not None:
                events.append(closed)
        return events
