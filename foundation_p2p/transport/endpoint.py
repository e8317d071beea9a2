"""``TransportEndpoint``: the owner of one node's transport connections (sans-I/O).

One endpoint per node. It demultiplexes connection datagrams (packet types 2..4 of
``spec/transport.md``; gossip is the node's), creates connections for dials and for
acceptable initial packets, keeps at most one connection per authenticated peer node id,
and gathers what the connections want sent. The owner (``NodeCore``, or a test) drives it:

- ``handle_datagram(now, addr, data)`` for every connection datagram;
- ``connect(now, node_id, addr)`` to dial a peer (returns the existing connection if any);
- ``handle_timer(now)`` when ``next_deadline()`` passes;
- ``take_datagrams()`` after any call, for ``(addr, bytes)`` to send;
- ``take_events()`` for :class:`PeerConnected`, :class:`PeerDisconnected`,
  :class:`ConnectFailed`, :class:`StreamData` and :class:`PeerEvent` (the connection's
  other events, wrapped).

The application side is the connection itself (leaky facade): ``connection(node_id)``
returns the :class:`~foundation_p2p.transport.connection.Connection`, whose
``open_stream``/``send``/``read`` are the stream API; :meth:`open_stream` and
:meth:`send` here are the same calls plus the bookkeeping of when a connection was last
used (for the idle and LRU rules below).

Rules (``spec/transport.md`` section 11):

- **Demultiplexing.** An initial packet goes to the half-open connection already answering
  that ``(address, client connection id)`` (a retransmission), else to
  ``Connection.accept``; handshake and 1-RTT packets go by their destination connection
  id; anything else is dropped and counted (``transport.dropped.<reason>``).
- **One connection per peer.** When a connection authenticates peer P and another live
  connection to P exists: if both carry the same Noise static key of P (one boot of P),
  were dialled from opposite sides and the other one authenticated less than
  ``simultaneous_window_s`` before, both sides dialled at once: the one whose client
  has the smaller node id is kept, the other closed (``NO_ERROR``, ``duplicate``). In
  every other case (P restarted: a new static key; or P dialled again because it lost
  the old connection, whose CONNECTION_CLOSE we missed) the new connection replaces the
  old one (closed with ``replaced``), reported as :class:`PeerDisconnected` then
  :class:`PeerConnected`. Weak spot: in a simultaneous dial, a side may use the losing
  connection for the few milliseconds before the winner authenticates; what it sent
  there is lost with it (the application sees :class:`PeerDisconnected`).
- **Boot epochs.** Every handshake carries each side's boot epoch (``epoch`` here, the
  node's ``boot_epoch``), signed with its static key binding, so each connection knows its
  peer's (``Connection.peer_epoch``). The endpoint remembers the newest epoch it has seen
  of each peer (from handshakes and from :meth:`observe_peer_epoch`, at most
  ``max_peer_epochs`` peers, least recently seen forgotten). A connection that
  authenticates a peer boot older than the newest known one is refused (closed with
  CONNECTION_REFUSED ``stale epoch``, ``transport.refused_stale_epoch``): a late or
  replayed handshake of a previous boot never replaces the current boot's connection.
- **Restarted peer, the gossip hint.** :meth:`observe_peer_epoch` (the node calls it for
  every authenticated gossip packet) closes at once and silently a connection whose peer
  epoch is older than the one observed: that boot is dead. :class:`PeerDisconnected`
  ``peer restarted`` (``transport.peer_restarted``); the owner dials the new boot.
- **Restarted peer, stateless reset** (``spec/transport.md`` section 11.3, :mod:`.reset`).
  A 1-RTT packet for an unknown connection id, longer than ``RESET_BYTES``, is answered
  with a stateless reset carrying the token of that id under our :class:`ResetKey`
  (derived from the identity seed, so the same in every boot): at most ``reset_burst`` at
  once and ``reset_rate`` per second (``transport.reset.sent``,
  ``transport.reset.rate_limited``, ``transport.reset.too_small``). A 1-RTT packet for
  an unknown connection id whose last 16 bytes are the token a peer announced for one of
  our connections closes that connection at once (:class:`PeerDisconnected`
  ``stateless reset``, ``transport.reset.received``); one of the reset's size that
  matches no token is dropped (``transport.reset.unmatched``).
- **Address change.** An authenticated 1-RTT packet from a new address moves the
  connection there (``transport.address_changes``); nothing unauthenticated does.
- **Noise static key.** One per endpoint (node boot), drawn from ``secret_bytes`` on first
  use and handed to every handshake, signed together with the boot epoch.

Bounds (:class:`EndpointConfig`; each overflow is counted):

- live connections: at most ``max_connections``; a new one first closes the least
  recently used established connection (``transport.evicted``); with none to close, an
  incoming initial is dropped (``transport.dropped.max_connections``) and ``connect``
  raises ``ConfigError``. Connections closing or draining do not count (they are
  forgotten after three probe timeouts);
- half-open incoming handshakes: at most ``max_half_open`` in total
  (``transport.dropped.half_open_full``) and ``max_half_open_per_address`` per source
  address (``transport.dropped.half_open_per_address``);
- idle connections: one not used by the application (no stream data sent through
  :meth:`send` or received) for ``idle_close_s`` is closed (``transport.closed_idle``);
  the connection's own idle timeout (no packet at all) still applies;
- endpoint events (connected, disconnected, failed, and the stream data drained from a
  connection as it closes): at most ``max_events``, the oldest dropped
  (``transport.events.dropped``). Stream data of a live connection is not queued here: it
  stays in the connection (bounded by its receive windows) until :meth:`take_events`
  reads it, and a connection :meth:`pause`\\ d by the owner is not read at all, so its
  peer runs out of flow-control credit (backpressure, not loss);
- stateless resets waiting to be sent: at most ``reset_burst`` (the limiter's bucket);
  peers' reset tokens: one per connection held; known peer epochs: ``max_peer_epochs``.

Counters go to the ``counters`` table handed in, under ``transport.``; a connection's
own counters (``Connection.stats()``) are added under ``transport.conn.`` when it is
forgotten, and :meth:`stats` adds those of the live ones.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from foundation_p2p.addresses import Address, NodeId, short_id
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.handshake import NoiseStatic
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError, WireError
from foundation_p2p.transport.config import TransportConfig
from foundation_p2p.transport.connection import (
    Connection,
    ConnectionClosed,
    HandshakeCompleted,
    StreamDataReceived,
)
from foundation_p2p.transport.connection import Event as ConnectionEvent
from foundation_p2p.transport.errors import ErrorCode
from foundation_p2p.transport.packet import (
    CID_BYTES,
    ConnPacketType,
    packet_type,
    parse_handshake,
)
from foundation_p2p.transport.reset import (
    RESET_BYTES,
    ResetKey,
    ResetLimiter,
    encode_reset,
    reset_token_of,
)
from foundation_p2p.transport.scheduler import DEFAULT_URGENCY

log = logging.getLogger("foundation_p2p.transport")

_ONE_RTT_HEAD = b"\x85\x01\x04\x48"
_HANDSHAKE_HEAD = b"\x85\x01\x03\x48"


# --- configuration ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """The endpoint's bounds and the connections' settings; every field is checked."""

    max_connections: int = 256
    """Live (handshaking or established) connections at most."""
    max_half_open: int = 64
    """Incoming handshakes not yet complete, at most (all addresses together)."""
    max_half_open_per_address: int = 4
    """Incoming handshakes not yet complete from one source address, at most."""
    idle_close_s: float = 300.0
    """Close a connection the application has not used for this long."""
    max_events: int = 4096
    """Endpoint events queued (connected, disconnected, failed, drained data), at most."""
    simultaneous_window_s: float = 2.0
    """Two connections of one peer boot, dialled from opposite sides, that authenticate
    within this long of each other are a simultaneous dial (the smaller client's wins);
    later, the newer connection replaces the older one."""
    reset_rate: float = 20.0
    """Stateless resets sent per second at most, on average."""
    reset_burst: int = 10
    """Stateless resets sent at once at most (the rate limiter's bucket)."""
    max_peer_epochs: int = 4096
    """Peers whose newest boot epoch is remembered, at most (least recently seen dropped)."""
    connection: TransportConfig = dataclasses.field(default_factory=TransportConfig)
    """The settings of every connection."""

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_half_open", "max_half_open_per_address",
                     "max_events", "reset_burst", "max_peer_epochs"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(
                    f"EndpointConfig.{name}: must be a positive integer, got {value!r}"
                )
        for name in ("idle_close_s", "simultaneous_window_s", "reset_rate"):
            value = getattr(self, name)
            if (
                type(value) is bool
                or not isinstance(value, (int, float))
                or not 0 < value < float("inf")
            ):
                raise ConfigError(
                    f"EndpointConfig.{name}: must be a positive finite number, got {value!r}"
                )
        if not isinstance(self.connection, TransportConfig):
            raise ConfigError("EndpointConfig.connection: must be a TransportConfig")

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], *, source: str = "transport"
    ) -> EndpointConfig:
        """Build from a ``[transport]`` table: endpoint keys and ``TransportConfig`` keys."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: must be a table")
        own = {f.name for f in dataclasses.fields(cls)} - {"connection"}
        conn_fields = {f.name for f in dataclasses.fields(TransportConfig)}
        mine: dict[str, Any] = {}
        conn: dict[str, Any] = {}
        for key, value in table.items():
            if key in own:
                mine[key] = value
            elif key in conn_fields:
                conn[key] = value
            else:
                known = ", ".join(sorted(own | conn_fields))
                raise ConfigError(f"{source}.{key}: unknown key (known: {known})")
        try:
            return cls(connection=TransportConfig(**conn), **mine)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


_CONN_GAUGES = frozenset({"pmtu.current_bytes"})
"""Keys of ``Connection.stats()`` that are levels, not counts: not summed over
connections (``transport.pmtu.largest_bytes`` is the largest datagram size in use)."""


# --- events -----------------------------------------------------------------------------


class EndpointEvent:
    """Base of the events :meth:`TransportEndpoint.take_events` returns."""

    __slots__ = ()


@dataclass(slots=True)
class PeerConnected(EndpointEvent):
    """A connection to ``node_id`` authenticated and is now the peer's connection."""

    node_id: NodeId
    cid: bytes
    """Our connection id of this connection (names it in later events)."""
    address: Address
    outgoing: bool
    """True if we dialled."""


@dataclass(slots=True)
class PeerDisconnected(EndpointEvent):
    """The peer's connection ``cid`` ended; its streams are gone."""

    node_id: NodeId
    cid: bytes
    error_code: int
    reason: str
    """``replaced``, ``duplicate``, ``peer restarted`` and ``stateless reset`` name the
    endpoint's rules; otherwise the close's."""
    by_peer: bool


@dataclass(slots=True)
class ConnectFailed(EndpointEvent):
    """A dial to ``node_id`` ended before it authenticated (timeout, refusal, eviction)."""

    node_id: NodeId
    cid: bytes
    reason: str


@dataclass(slots=True)
class StreamData(EndpointEvent):
    """In-order bytes on one of the peer's connection's streams."""

    node_id: NodeId
    cid: bytes
    stream_id: int
    data: bytes
    end: bool
    """True when the peer finished the stream with these bytes."""


@dataclass(slots=True)
class PeerEvent(EndpointEvent):
    """Any other connection event (stream reset, stop sending, datagram), wrapped."""

    node_id: NodeId
    cid: bytes
    event: ConnectionEvent


# --- the endpoint -----------------------------------------------------------------------


class _Entry:
    __slots__ = (
        "addr", "bound", "conn", "down_reported", "established_at", "half_open",
        "initial_key", "last_used", "paused",
    )

    def __init__(self, conn: Connection, addr: Address, now: float, scid: bytes | None):
        self.conn = conn
        self.addr = addr
        self.last_used = now
        # (source address, client cid) of an incoming connection: routes repeated initials
        self.initial_key = (addr, scid) if scid is not None else None
        self.half_open = scid is not None  # incoming and not authenticated yet
        self.bound = False  # it is (or was) the peer's connection in _by_peer
        self.paused = False
        self.down_reported = False
        self.established_at = now


class TransportEndpoint:
    """The connections of one node; see the module docstring for the driving loop."""

    def __init__(
        self,
        identity: Identity,
        keyring: Keyring,
        secret_bytes: Callable[[int], bytes],
        *,
        epoch: int,
        config: EndpointConfig | None = None,
        counters: Counters | None = None,
    ) -> None:
        """``epoch``: this node's boot epoch (``NodeCore.boot_epoch``), announced in every
        handshake."""
        self.identity = identity
        self.epoch = epoch
        self.node_id: NodeId = identity.node_id
        self.keyring = keyring
        self.config = config if config is not None else EndpointConfig()
        self.counters = counters if counters is not None else Counters()
        """Counters under ``transport.`` (shared with the node when it passes its table)."""
        self._secret_bytes = secret_bytes
        self._static: NoiseStatic | None = None
        self._now = 0.0
        self._by_cid: dict[bytes, _Entry] = {}
        self._by_peer: dict[NodeId, _Entry] = {}
        self._dialing: dict[NodeId, _Entry] = {}
        self._initials: dict[tuple[Address, bytes], _Entry] = {}
        self._half_open_by_addr: dict[Address, int] = {}
        self._half_open = 0
        self._live = 0  # entries whose connection is neither closing nor closed
        self._lru: OrderedDict[bytes, None] = OrderedDict()  # bound entries, least used first
        self._events: deque[EndpointEvent] = deque()
        self.reset_key = ResetKey.from_identity(identity)
        """The stateless reset key (the same in every boot of this identity)."""
        self._reset_limiter = ResetLimiter(self.config.reset_rate, self.config.reset_burst)
        self._resets: deque[tuple[Address, bytes]] = deque()
        self._by_token: dict[bytes, _Entry] = {}  # the peer's reset token -> its connection
        self._peer_epochs: OrderedDict[NodeId, int] = OrderedDict()

    # --- queries ------------------------------------------------------------------------

    @property
    def static(self) -> NoiseStatic:
        """This boot's Noise static key (made on first use from ``secret_bytes``)."""
        if self._static is None:
            self._static = NoiseStatic.generate(self.identity, self._secret_bytes, self.epoch)
        return self._static

    def connection(self, node_id: NodeId) -> Connection | None:
        """The peer's current connection (authenticated), or its pending dial, or None."""
        entry = self._by_peer.get(node_id) or self._dialing.get(node_id)
        return entry.conn if entry is not None else None

    def address(self, node_id: NodeId) -> Address | None:
        """Where the peer's current connection sends, or None."""
        entry = self._by_peer.get(node_id)
        return entry.addr if entry is not None else None

    def peer_epoch(self, node_id: NodeId) -> int | None:
        """The newest boot epoch known of ``node_id`` (handshakes, gossip), or None."""
        return self._peer_epochs.get(node_id)

    def peers(self) -> list[NodeId]:
        """Node ids with an authenticated connection."""
        return list(self._by_peer)

    def __len__(self) -> int:
        """Connections held, closing ones included."""
        return len(self._by_cid)

    @property
    def half_open(self) -> int:
        """Incoming handshakes not complete yet."""
        return self._half_open

    def stats(self) -> dict[str, int]:
        """The ``transport.*`` counters, with the live connections' own added under
        ``transport.conn.``, and ``transport.pmtu.largest_bytes``: the largest datagram
        size a live connection uses (path MTU discovery; 0 with no connection)."""
        out = {k: v for k, v in self.counters.items() if k.startswith("transport.")}
        largest = 0
        for entry in self._by_cid.values():
            for key, value in entry.conn.stats().items():
                if key in _CONN_GAUGES:
                    continue
                name = "transport.conn." + key
                out[name] = out.get(name, 0) + value
            size = entry.conn.max_datagram_size
            if size > largest:
                largest = size
        out["transport.pmtu.largest_bytes"] = largest
        out["transport.connections"] = len(self._by_cid)
        out["transport.half_open"] = self._half_open
        return out

    # --- application side ---------------------------------------------------------------

    def connect(self, now: float, node_id: NodeId, addr: Address) -> Connection:
        """Dial ``node_id`` at ``addr``, or return its existing connection (or dial).

        Raises ``ConfigError`` for our own node id, or when ``max_connections`` live
        connections exist and none can be evicted.
        """
        self._now = now
        if node_id == self.node_id:
            raise ConfigError("connect: cannot connect to our own node id")
        existing = self._by_peer.get(node_id) or self._dialing.get(node_id)
        if existing is not None and existing.conn.state_name in ("handshake", "established"):
            return existing.conn
        if not self._make_room(now):
            self.counters.inc("transport.connect_refused")
            raise ConfigError(
                f"connect: {self.config.max_connections} connections are open and none is idle"
            )
        conn = Connection.connect(
            now, self.identity, self.keyring, self._secret_bytes,
            config=self.config.connection, expected_peer=node_id, static=self.static,
            reset_key=self.reset_key,
        )
        entry = _Entry(conn, addr, now, None)
        self._add(entry)
        self._dialing[node_id] = entry
        self.counters.inc("transport.dials")
        log.debug("dial %s at %s", short_id(node_id), addr)
        return conn

    def open_stream(
        self, now: float, node_id: NodeId, *, urgency: int = DEFAULT_URGENCY,
        incremental: bool = True, uni: bool = False,
    ) -> int:
        """Open a stream on the peer's connection (``Connection.open_stream``).

        Raises ``ConfigError`` if the peer has no established connection (``connect``
        first and wait for :class:`PeerConnected`) or its stream limit is reached.
        """
        entry = self._established(node_id)
        self._touch(entry, now)
        return entry.conn.open_stream(urgency=urgency, incremental=incremental, uni=uni)

    def send(
        self, now: float, node_id: NodeId, stream_id: int, data: bytes, end: bool = False
    ) -> int:
        """``Connection.send`` on the peer's connection; returns the bytes accepted."""
        entry = self._established(node_id)
        self._touch(entry, now)
        return entry.conn.send(stream_id, data, end)

    def close(self, node_id: NodeId, error_code: int = ErrorCode.NO_ERROR,
              reason: str = "") -> None:
        """Close the peer's connection (and a pending dial); no-op if there is none."""
        for table in (self._by_peer, self._dialing):
            entry = table.get(node_id)
            if entry is not None:
                entry.conn.close(error_code, reason)
                self._check(entry)

    def pause(self, node_id: NodeId, paused: bool = True) -> None:
        """Stop (or resume) reading the peer's stream data in :meth:`take_events`.

        Unread data stays in the connection, whose windows then stop the peer: the
        owner's way to push back when its own queues are full.
        """
        entry = self._by_peer.get(node_id)
        if entry is not None and entry.paused != paused:
            entry.paused = paused
            self.counters.inc("transport.paused" if paused else "transport.resumed")

    def _established(self, node_id: NodeId) -> _Entry:
        entry = self._by_peer.get(node_id)
        if entry is None or not entry.conn.is_established:
            raise ConfigError(f"no established connection to {node_id.hex()}")
        return entry

    def _touch(self, entry: _Entry, now: float) -> None:
        entry.last_used = now
        cid = entry.conn.local_cid
        if cid in self._lru:
            self._lru.move_to_end(cid)

    # --- inputs -------------------------------------------------------------------------

    def handle_datagram(self, now: float, addr: Address, data: bytes) -> None:
        """A connection datagram (packet type 2, 3 or 4) arrived from ``addr``.

        Never raises for the datagram's content: refusals are dropped and counted under
        ``transport.dropped.<reason>``.
        """
        self._now = now
        counters = self.counters
        counters.inc("transport.datagrams_received")
        try:
            ptype = packet_type(data)
        except WireError as exc:
            counters.inc(f"transport.dropped.{exc.code}")
            return
        if ptype == ConnPacketType.ONE_RTT:
            entry = self._by_cid.get(data[4:12]) if data[:4] == _ONE_RTT_HEAD else None
            if entry is None:
                self._on_unknown_cid(now, addr, data)
                return
            if entry.conn.receive_datagram(now, data) and entry.addr != addr:
                log.debug("connection %s moved %s -> %s", entry.conn.local_cid.hex(),
                          entry.addr, addr)
                entry.addr = addr
                counters.inc("transport.address_changes")
            self._check(entry)
        elif ptype == ConnPacketType.HANDSHAKE:
            entry = self._by_cid.get(data[4:12]) if data[:4] == _HANDSHAKE_HEAD else None
            if entry is None:
                counters.inc("transport.dropped.unknown_cid")
                return
            entry.conn.receive_datagram(now, data)
            self._check(entry)
        elif ptype == ConnPacketType.INITIAL:
            self._on_initial(now, addr, data)
        else:
            counters.inc("transport.dropped.not_connection")

    def observe_peer_epoch(self, now: float, node_id: NodeId, epoch: int) -> None:
        """An authenticated message showed that ``node_id`` runs boot ``epoch`` (the node
        calls this for every authenticated gossip packet, with its header's sender and
        epoch).

        If the peer's connection (established or closing) talks to an older boot, that
        boot is gone: the connection is closed at once and silently
        (``Connection.abandon``), reported as :class:`PeerDisconnected` ``peer
        restarted`` and counted (``transport.peer_restarted``). The epoch is remembered
        (see the module docstring) so that a late handshake of the old boot is refused.
        """
        self._now = now
        if node_id == self.node_id:
            return
        self._note_epoch(node_id, epoch)
        entry = self._by_peer.get(node_id)
        if entry is None:
            return
        conn = entry.conn
        peer_epoch = conn.peer_epoch
        if peer_epoch is not None and peer_epoch < epoch and not conn.is_closed:
            self.counters.inc("transport.peer_restarted")
            log.debug("%s restarted (epoch %d -> %d): its connection is closed",
                      short_id(node_id), peer_epoch, epoch)
            conn.abandon("peer restarted")
            self._check(entry)

    def _note_epoch(self, node_id: NodeId, epoch: int) -> None:
        epochs = self._peer_epochs
        known = epochs.get(node_id)
        if known is None or known < epoch:
            epochs[node_id] = epoch
        epochs.move_to_end(node_id)
        if len(epochs) > self.config.max_peer_epochs:
            epochs.popitem(last=False)
            self.counters.inc("transport.peer_epochs_forgotten")

    def _on_unknown_cid(self, now: float, addr: Address, data: bytes) -> None:
        """A 1-RTT packet for no connection of ours: a stateless reset for one of our
        connections, or a packet for a connection of a previous boot (answered with a
        reset), or noise."""
        counters = self.counters
        token = reset_token_of(data)
        if token is not None:
            entry = self._by_token.get(token)
            if entry is not None and not entry.conn.is_closed:
                counters.inc("transport.reset.received")
                log.debug("stateless reset from %s for the connection to %s", addr,
                          short_id(entry.conn.peer_node_id or b""))
                entry.conn.abandon("stateless reset")
                self._check(entry)
                return
            if len(data) == RESET_BYTES:
                counters.inc("transport.reset.unmatched")
        counters.inc("transport.dropped.unknown_cid")
        if len(data) <= RESET_BYTES:
            # it could be a reset itself, and the answer would not be smaller
            counters.inc("transport.reset.too_small")
            return
        if data[:4] != _ONE_RTT_HEAD:
            return
        if len(self._resets) >= self.config.reset_burst or not self._reset_limiter.allow(now):
            counters.inc("transport.reset.rate_limited")
            return
        token = self.reset_key.token(data[4:12])
        self._resets.append((addr, encode_reset(token, self._secret_bytes(10))))
        counters.inc("transport.reset.sent")

    def _on_initial(self, now: float, addr: Address, data: bytes) -> None:
        counters = self.counters
        cfg = self.config
        try:
            scid = parse_handshake(data, cfg.connection.max_handshake_bytes).scid
        except WireError as exc:
            counters.inc(f"transport.dropped.{exc.code}")
            return
        known = self._initials.get((addr, scid))
        if known is not None:
            known.conn.receive_datagram(now, data)  # a retransmission: answered again
            self._check(known)
            return
        if self._half_open >= cfg.max_half_open:
            counters.inc("transport.dropped.half_open_full")
            return
        if self._half_open_by_addr.get(addr, 0) >= cfg.max_half_open_per_address:
            counters.inc("transport.dropped.half_open_per_address")
            return
        try:
            conn = Connection.accept(
                now, data, self.identity, self.keyring, self._secret_bytes,
                config=cfg.connection, static=self.static, reset_key=self.reset_key,
            )
        except WireError as exc:
            counters.inc(f"transport.dropped.{exc.code}")
            return
        if not self._make_room(now):
            counters.inc("transport.dropped.max_connections")
            return
        entry = _Entry(conn, addr, now, scid)
        self._add(entry)
        self._initials[(addr, scid)] = entry
        self._half_open += 1
        self._half_open_by_addr[addr] = self._half_open_by_addr.get(addr, 0) + 1
        counters.inc("transport.accepted")

    def handle_timer(self, now: float) -> None:
        """Run the timers of every connection that is due, and the idle rule."""
        self._now = now
        idle = self.config.idle_close_s
        for entry in list(self._by_cid.values()):
            conn = entry.conn
            deadline = conn.next_deadline()
            if deadline is not None and deadline <= now:
                conn.handle_timer(now)
            if entry.bound and conn.is_established and now >= entry.last_used + idle:
                self.counters.inc("transport.closed_idle")
                conn.close(ErrorCode.NO_ERROR, "idle")
            self._check(entry)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_timer` must run, or None."""
        best: float | None = None
        idle = self.config.idle_close_s
        for entry in self._by_cid.values():
            conn = entry.conn
            d = conn.next_deadline()
            if entry.bound and conn.is_established:
                i = entry.last_used + idle
                if d is None or i < d:
                    d = i
            if d is not None and (best is None or d < best):
                best = d
        return best

    # --- outputs ------------------------------------------------------------------------

    def take_datagrams(self, now: float | None = None) -> list[tuple[Address, bytes]]:
        """``(address, datagram)`` pairs to send now, from every connection."""
        if now is not None:
            self._now = now
        now = self._now
        out: list[tuple[Address, bytes]] = list(self._resets)
        self._resets.clear()
        for entry in list(self._by_cid.values()):
            datagrams = entry.conn.take_datagrams(now)
            if datagrams:
                addr = entry.addr
                out.extend([(addr, d) for d in datagrams])
            if entry.conn.is_closed:
                self._check(entry)
        if out:
            self.counters.inc("transport.datagrams_sent", len(out))
        return out

    def take_events(self) -> list[EndpointEvent]:
        """Endpoint events, then the stream data and events of the peers' connections.

        Reading moves flow-control credit back to the peer; a paused connection is not
        read (see :meth:`pause`).
        """
        out = list(self._events)
        self._events.clear()
        for node_id, entry in list(self._by_peer.items()):
            if entry.paused:
                continue
            self._translate(node_id, entry, out)
        return out

    def _translate(self, node_id: NodeId, entry: _Entry, out: list[EndpointEvent]) -> None:
        cid = entry.conn.local_cid
        got_data = False
        for event in entry.conn.take_events():
            kind = type(event)
            if kind is StreamDataReceived:
                assert isinstance(event, StreamDataReceived)
                out.append(StreamData(node_id, cid, event.stream_id, event.data, event.end))
                got_data = True
            elif kind is ConnectionClosed:
                continue  # reported by _check as PeerDisconnected
            elif kind is not HandshakeCompleted:
                out.append(PeerEvent(node_id, cid, event))
        if got_data:
            self._touch(entry, self._now)

    # --- bookkeeping --------------------------------------------------------------------

    def _add(self, entry: _Entry) -> None:
        self._by_cid[entry.conn.local_cid] = entry
        self._live += 1

    def _emit(self, event: EndpointEvent) -> None:
        if len(self._events) >= self.config.max_events:
            self._events.popleft()
            self.counters.inc("transport.events.dropped")
        self._events.append(event)

    def _make_room(self, now: float) -> bool:
        """Make a live slot free, closing the least recently used established connection."""
        if self._live < self.config.max_connections:
            return True
        for cid in self._lru:
            entry = self._by_cid.get(cid)
            if entry is not None and entry.conn.is_established:
                self.counters.inc("transport.evicted")
                log.debug("evict the connection to %s (least recently used)",
                          short_id(entry.conn.peer_node_id or b""))
                entry.conn.close(ErrorCode.NO_ERROR, "evicted")
                self._check(entry)
                return self._live < self.config.max_connections
        return False

    def _end_half_open(self, entry: _Entry) -> None:
        if entry.half_open:
            entry.half_open = False
            self._half_open -= 1
            assert entry.initial_key is not None
            addr = entry.initial_key[0]
            n = self._half_open_by_addr.get(addr, 0) - 1
            if n > 0:
                self._half_open_by_addr[addr] = n
            else:
                self._half_open_by_addr.pop(addr, None)

    def _check(self, entry: _Entry) -> None:
        """Act on the connection's state after an input: authenticated, closing, closed."""
        conn = entry.conn
        state = conn.state_name
        if state == "established" and not entry.bound and not entry.down_reported:
            self._end_half_open(entry)
            self._on_established(entry)
        elif state != "handshake" and state != "established":
            self._end_half_open(entry)
            if not entry.down_reported:
                entry.down_reported = True
                self._live -= 1
                self._on_down(entry)
            if state == "closed":
                self._forget(entry)

    def _on_established(self, entry: _Entry) -> None:
        conn = entry.conn
        peer = conn.peer_node_id
        assert peer is not None
        if self._dialing.get(peer) is entry:
            del self._dialing[peer]
        old = self._by_peer.get(peer)
        if self._refuse_stale(entry, old):
            return
        if old is not None and old is not entry and old.conn.is_established:
            same_boot = old.conn.handshake.peer_static == conn.handshake.peer_static
            recent = self._now - old.established_at < self.config.simultaneous_window_s
            if same_boot and recent and old.conn.is_client != conn.is_client:
                # both sides dialled at once: keep the one whose client id is smaller
                client_old = self.node_id if old.conn.is_client else peer
                client_new = self.node_id if conn.is_client else peer
                if client_old < client_new:
                    self.counters.inc("transport.duplicates_closed")
                    entry.bound = True  # never reported up; reported down as nothing
                    entry.down_reported = True
                    self._live -= 1
                    conn.close(ErrorCode.NO_ERROR, "duplicate")
                    return
                reason = "duplicate"
                self.counters.inc("transport.duplicates_closed")
            else:
                reason = "replaced"
                self.counters.inc("transport.replaced")
            self._replace(old, reason)
        entry.bound = True
        self._by_peer[peer] = entry
        self._lru[conn.local_cid] = None
        if conn.peer_epoch is not None:
            self._note_epoch(peer, conn.peer_epoch)
        token = conn.peer_reset_token
        if token is not None:
            self._by_token[token] = entry
        entry.last_used = self._now
        entry.established_at = self._now
        self.counters.inc("transport.connected")
        self._emit(PeerConnected(peer, conn.local_cid, entry.addr, conn.is_client))
        log.debug("connected to %s (%s)", short_id(peer), "out" if conn.is_client else "in")

    def _refuse_stale(self, entry: _Entry, old: _Entry | None) -> bool:
        """Refuse a connection that authenticated a peer boot older than one we know."""
        conn = entry.conn
        peer = conn.peer_node_id
        epoch = conn.peer_epoch
        assert peer is not None
        if epoch is None:
            return False
        newest = self._peer_epochs.get(peer, -1)
        if old is not None and old.conn.peer_epoch is not None:
            newest = max(newest, old.conn.peer_epoch)
        if epoch >= newest:
            return False
        self.counters.inc("transport.refused_stale_epoch")
        log.debug("refuse a connection to %s: its boot epoch %d is older than %d",
                  short_id(peer), epoch, newest)
        entry.bound = True  # never reported up
        entry.down_reported = True
        self._live -= 1
        conn.close(ErrorCode.CONNECTION_REFUSED, "stale epoch")
        if conn.is_client:
            self.counters.inc("transport.connect_failed")
            self._emit(ConnectFailed(peer, conn.local_cid, "stale epoch"))
        if conn.is_closed:
            self._forget(entry)
        return True

    def _replace(self, old: _Entry, reason: str) -> None:
        peer = old.conn.peer_node_id
        assert peer is not None
        self._translate(peer, old, [])  # what it still held is lost with its streams
        old.down_reported = True
        self._live -= 1
        old.conn.close(ErrorCode.NO_ERROR, reason)
        self._lru.pop(old.conn.local_cid, None)
        if self._by_peer.get(peer) is old:
            del self._by_peer[peer]
        self._emit(PeerDisconnected(peer, old.conn.local_cid, int(ErrorCode.NO_ERROR), reason,
                                    False))
        if old.conn.is_closed:
            self._forget(old)

    def _on_down(self, entry: _Entry) -> None:
        conn = entry.conn
        close = conn.close_reason
        code = close.error_code if close is not None else int(ErrorCode.NO_ERROR)
        reason = close.reason if close is not None else conn.state_name
        by_peer = close.by_peer if close is not None else False
        peer = conn.peer_node_id
        self._lru.pop(conn.local_cid, None)
        if entry.bound and peer is not None and self._by_peer.get(peer) is entry:
            # deliver what it still holds (bounded by its windows), then the end
            events: list[EndpointEvent] = []
            self._translate(peer, entry, events)
            for event in events:
                self._emit(event)
            del self._by_peer[peer]
            self.counters.inc("transport.disconnected")
            self._emit(PeerDisconnected(peer, conn.local_cid, code, reason, by_peer))
        elif not entry.bound and conn.is_client:
            target = next((n for n, e in self._dialing.items() if e is entry), None)
            if target is not None:
                del self._dialing[target]
                self.counters.inc("transport.connect_failed")
                self._emit(ConnectFailed(target, conn.local_cid, reason))
        elif not entry.bound:
            self.counters.inc("transport.handshake_failed")

    def _forget(self, entry: _Entry) -> None:
        conn = entry.conn
        if self._by_cid.pop(conn.local_cid, None) is None:
            return
        if entry.initial_key is not None:
            self._initials.pop(entry.initial_key, None)
        token = conn.peer_reset_token
        if token is not None and self._by_token.get(token) is entry:
            del self._by_token[token]
        for key, value in conn.stats().items():
            if value and key not in _CONN_GAUGES:
                self.counters.inc("transport.conn." + key, value)


__all__ = [
    "CID_BYTES",
    "ConnectFailed",
    "EndpointConfig",
    "EndpointEvent",
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "StreamData",
    "TransportEndpoint",
]
