"""``Messenger``: CBOR messages of the node's internal services over transport connections.

The registry's sync, Raft and the coordination layer talk to one peer at a time with
small structured messages. The messenger carries them on the node's transport connections
(``core.transport``), without I/O, as ``spec/messaging.md`` specifies:

- **Streams.** For each service, one unidirectional stream per direction and connection,
  opened by the sender at its first message on that connection (after the channel
  streams, so its id is 16 or more). The stream's first byte is the service number; then
  come records, each a CBOR byte string whose content is the deterministic CBOR encoding
  of one message (``record = bstr .cbor message``). Streams are never finished: they last
  as long as their connection.
- **Order.** Messages of one service from one sender arrive in the order they were sent,
  as long as the connection lasts. When it ends, what was in flight is lost: every
  registered service hears ``on_peer_lost(peer)`` and must not expect an answer to what
  it sent before (the registry abandons its sync in flight, Raft retransmits).
- **Dial on demand.** :meth:`send` to a peer without a connection dials it
  (``NodeCore.connect``: the address comes from the membership, else from where the peer
  was last heard); messages wait in the peer's pending queue meanwhile. Nothing is
  written on a connection before its ``PeerConnected`` event went through
  :meth:`filter_events` (chained after the channels', which open the channel streams
  ``2..15`` first).
- **Receiving.** :meth:`filter_events` consumes the data of the peers' unidirectional
  streams with ids of 16 and more, hands each decoded message to its service's
  ``on_message(now, peer, message)`` and returns the other events for the runtime. A
  ``WireError`` raised by ``on_message`` (the service refuses a well-formed message) is
  counted (``messaging.<service>.refused``); the stream goes on. A record that fails to
  decode (not a byte string head, longer than ``max_record_bytes``, not deterministic
  CBOR, not plain data), or a stream naming a service not registered here, **breaks
  its stream**: we ask the peer to stop sending on it (STOP_SENDING) and ignore the
  rest (``messaging.receive.broken.<code>``). The peer sees its stream stopped, drops
  what it held for that service (``messaging.send.dropped_stopped``), tells the service
  ``on_peer_lost`` and opens a new stream at its next message.

Bounded buffers and their policies (each overflow counted in the node's counters):

- **Pending per peer and service**: messages wait while the connection is being set up
  and while their stream lacks credit, at most ``max_pending_bytes`` (a registration
  option, default 4 MiB) per peer and service, except that a message always fits an
  empty queue. A message that would overflow is **refused**: :meth:`send` returns False
  (``messaging.send.dropped_pending_full``) and the queue keeps what it had (the older
  messages, already in order). The sender decides (the registry's anti-entropy repairs
  a lost delta, Raft retries).
- **Unreachable peers**: a peer whose dial fails, whose connection ends, or for whom no
  address is known is unreachable for ``retry_after_s``: what was pending for it is
  dropped (``messaging.send.dropped_disconnected`` / ``messaging.send.dropped_no_address``,
  in messages), every service hears ``on_peer_lost``, and :meth:`send` to it returns
  False (``messaging.send.dropped_unreachable``) until ``retry_after_s`` passed; the next
  message then dials again. The table of retry times is swept when it exceeds
  ``max_tracked_peers``.
- **Receive buffers**: one partial record per peer stream, at most ``max_record_bytes``
  plus its 9-byte head; streams are bounded by the connection's stream limits.
- **Messages**: at most ``max_record_bytes`` encoded (default 4 MiB); a larger one is
  refused at :meth:`send` with ``LimitError`` (a local bug, not a network condition).

Counters: ``messaging.<service>.sent`` / ``.sent_bytes`` / ``.received`` /
``.received_bytes`` / ``.refused`` per service name (``registry``, ``raft``,
``coordination``, or ``s<number>``), and ``messaging.send.*``, ``messaging.receive.*``
as above.

Nothing here reads a clock or draws randomness: ``now`` comes with every call.
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from foundation_p2p.addresses import NodeId, short_id
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError
from foundation_p2p.transport.connection import Connection, StopSendingReceived, StreamReset
from foundation_p2p.transport.endpoint import (
    ConnectFailed,
    EndpointEvent,
    PeerConnected,
    PeerDisconnected,
    PeerEvent,
    StreamData,
    TransportEndpoint,
)
from foundation_p2p.transport.scheduler import DEFAULT_URGENCY
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import WireLimits

log = logging.getLogger("foundation_p2p.messaging")

SERVICE_REGISTRY = 1
"""The registry's sync messages (``spec/registry.md``)."""
SERVICE_RAFT = 2
"""Raft's messages (``spec/raft.md``)."""
SERVICE_COORDINATION = 3
"""The coordination layer's messages (agents, auctions, votes)."""
SERVICE_NAMES = {
    SERVICE_REGISTRY: "registry",
    SERVICE_RAFT: "raft",
    SERVICE_COORDINATION: "coordination",
}
"""Names used in the counters (``messaging.<name>.sent``); others are ``s<number>``."""

FIRST_STREAM_ID = 16
"""Messenger streams have ids of 16 and more (ids 2..15 are the channel streams)."""
DEFAULT_MAX_PENDING_BYTES = 4 * 1024 * 1024
"""Encoded messages waiting for one peer and service, at most (see the module docstring)."""
DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024
"""Largest encoded message."""
DEFAULT_RETRY_AFTER_S = 1.0
"""How long an unreachable peer is not dialled again."""
DEFAULT_MAX_TRACKED_PEERS = 4096
"""Retry times kept before expired ones are swept."""

_SMALL_CBOR_BYTES = 65_507  # cbor.decode's own size cap (WireLimits.max_packet_bytes)


def service_name(service: int) -> str:
    """The name of a service number in counters and logs."""
    return SERVICE_NAMES.get(service, f"s{service}")


def record_head(length: int) -> bytes:
    """The CBOR byte-string head (major type 2, shortest form) of a ``length``-byte record."""
    if length < 24:
        return bytes([0x40 | length])
    if length < 0x100:
        return bytes([0x58, length])
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    if length < 0x1_0000_0000:
        return b"\x5a" + length.to_bytes(4, "big")
    return b"\x5b" + length.to_bytes(8, "big")


def encode_record(message: Any, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> bytes:
    """One record: the byte-string head then the deterministic CBOR of ``message``.

    ``MalformedError`` if ``message`` is not plain CBOR data, ``LimitError`` if its
    encoding exceeds ``max_record_bytes``.
    """
    payload = cbor.encode(message)
    if len(payload) > max_record_bytes:
        raise LimitError(
            f"message: {len(payload)} bytes exceeds max_record_bytes {max_record_bytes}"
        )
    return record_head(len(payload)) + payload


def parse_record_head(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """``(payload_start, payload_length)`` of the record head at ``pos``, or None if the
    head is not complete yet. ``MalformedError`` if it is not a definite-length byte
    string head in its shortest form."""
    if pos >= len(buf):
        return None
    initial = buf[pos]
    if initial >> 5 != 2:
        raise MalformedError(f"record: initial byte 0x{initial:02x} is not a byte string head")
    info = initial & 0x1F
    if info < 24:
        return pos + 1, info
    if info > 27:
        raise MalformedError("record: indefinite or reserved length (only definite lengths)")
    size = 1 << (info - 24)
    if pos + 1 + size > len(buf):
        return None
    length = int.from_bytes(buf[pos + 1 : pos + 1 + size], "big")
    shortest = 24 if size == 1 else 1 << (8 * (size >> 1))
    if length < shortest:
        raise MalformedError("record: length not in its shortest form (RFC 8949 4.2.1)")
    return pos + 1 + size, length


def _kind_and_bytes(data: bytes, limits: WireLimits) -> list[Any] | None:
    """``[kind, payload]`` (a uint below 24 and a byte string), the shape of every Raft
    record, read by hand when it is in deterministic CBOR and within ``limits``;
    ``None`` for anything else (``decode_message``'s general path then decides). The
    same value that path returns, without its decode, re-encode and compare."""
    n = len(data)
    if type(data) is not bytes or n < 3 or data[0] != 0x82 or data[1] >= 24 or data[2] >> 5 != 2:
        return None
    if _SMALL_CBOR_BYTES >= n > limits.max_packet_bytes or limits.max_depth < 1:
        return None
    try:
        head = parse_record_head(data, 2)
    except WireError:
        return None
    if head is None:
        return None
    start, length = head
    if start + length != n or length > limits.max_bytes_bytes or limits.max_collection_items < 2:
        return None
    return [data[1], data[start:]]


def decode_message(data: bytes, limits: WireLimits) -> Any:
    """The message a record's payload carries: one deterministic CBOR item of plain data.

    Raises only ``WireError`` subclasses (``MalformedError``, ``LimitError``).
    """
    fast = _kind_and_bytes(data, limits)
    if fast is not None:
        return fast
    if len(data) <= _SMALL_CBOR_BYTES:
        value = cbor.decode(data, limits)
    else:
        stream = io.BytesIO(data)
        try:
            value = cbor2.CBORDecoder(
                stream, max_depth=limits.max_depth, allow_indefinite=False,
                allow_duplicate_keys=False,
            ).decode()
        except cbor2.CBORDecodeError as exc:
            if "depth" in str(exc):
                raise LimitError(f"message: nesting deeper than {limits.max_depth}") from None
            raise MalformedError(f"message: not well-formed CBOR: {exc}") from None
        except (ValueError, TypeError, OverflowError, RecursionError, MemoryError,
                KeyError) as exc:
            raise MalformedError(f"message: not decodable CBOR: {type(exc).__name__}") from None
        if stream.tell() != len(data):
            raise MalformedError(f"message: {len(data) - stream.tell()} bytes after the item")
        try:
            again = cbor2.dumps(value, canonical=True)
        except Exception as exc:
            raise MalformedError(f"message: {type(value).__name__} is not plain CBOR") from exc
        if again != data:
            raise MalformedError("message: not deterministic CBOR (RFC 8949 section 4.2)")
    cbor.check_plain(value, limits, what="message")
    return value


@dataclass(slots=True)
class _Service:
    number: int
    name: str
    on_message: Callable[[Now, NodeId, Any], None]
    on_peer_lost: Callable[[NodeId], None] | None
    urgency: int
    max_pending_bytes: int
    # its per-message counter names, built once
    sent: str = ""
    sent_bytes: str = ""
    received: str = ""
    received_bytes: str = ""

    def __post_init__(self) -> None:
        prefix = f"messaging.{self.name}."
        self.sent = prefix + "sent"
        self.sent_bytes = prefix + "sent_bytes"
        self.received = prefix + "received"
        self.received_bytes = prefix + "received_bytes"


class _Out:
    """Our sending side toward one peer: a queue per service, the streams on ``cid``."""

    __slots__ = ("cid", "partial", "pending", "pending_bytes", "preamble", "sids")

    def __init__(self) -> None:
        self.cid: bytes | None = None
        """The connection our streams are on (None: none opened yet)."""
        self.sids: dict[int, int] = {}
        """Service number -> our stream id on ``cid``."""
        self.preamble: set[int] = set()
        """Services whose stream still needs its first byte written."""
        self.pending: dict[int, deque[memoryview]] = {}
        """Service number -> records (the head one possibly partly written)."""
        self.pending_bytes: dict[int, int] = {}
        self.partial: set[int] = set()
        """Services whose head record is partly written on the current streams."""

    def total(self) -> int:
        return sum(self.pending_bytes.values())


class _In:
    """A peer's stream toward us: its service (once read) and a partial record."""

    __slots__ = ("broken", "buf", "service")

    def __init__(self) -> None:
        self.service: _Service | None = None
        self.buf = bytearray()
        self.broken = False


class Messenger:
    """Internal services' messages over the node's connections; see the module docstring."""

    def __init__(
        self,
        node_id: NodeId,
        *,
        transport: TransportEndpoint,
        connect: Callable[[Now, NodeId], Connection],
        counters: Counters,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        max_tracked_peers: int = DEFAULT_MAX_TRACKED_PEERS,
        max_depth: int = 16,
    ) -> None:
        if type(max_record_bytes) is not int or max_record_bytes <= 0:
            raise ConfigError("messaging.max_record_bytes: must be a positive integer")
        if not retry_after_s > 0:
            raise ConfigError("messaging.retry_after_s: must be positive")
        self.node_id = node_id
        self.transport = transport
        self._connect = connect
        self.counters = counters
        self.max_record_bytes = max_record_bytes
        self.retry_after_s = retry_after_s
        self.max_tracked_peers = max_tracked_peers
        self.limits = WireLimits(
            max_depth=max_depth,
            max_collection_items=max_record_bytes,
            max_text_bytes=max_record_bytes,
            max_bytes_bytes=max_record_bytes,
        )
        self._services: dict[int, _Service] = {}
        self._out: dict[NodeId, _Out] = {}
        self._blocked: set[NodeId] = set()  # peers with pending messages
        self._ready: dict[NodeId, bytes] = {}  # connections whose PeerConnected we saw
        self._retry_at: dict[NodeId, float] = {}
        self._in: dict[tuple[bytes, int], _In] = {}

    # -- services ----------------------------------------------------------------------

    def register(
        self,
        service: int,
        on_message: Callable[[Now, NodeId, Any], None],
        on_peer_lost: Callable[[NodeId], None] | None = None,
        *,
        urgency: int = DEFAULT_URGENCY,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        """Receive ``service``'s messages with ``on_message(now, peer, message)``.

        ``on_peer_lost(peer)`` is called when messages to or from ``peer`` may have been
        lost (its connection ended, it is unreachable, or it stopped our stream).
        ``urgency`` (RFC 9218, 0..7) is the priority of the service's streams.
        ``ConfigError`` for a number outside 1..255 or one already registered.
        """
        if type(service) is not int or not 1 <= service <= 255:
            raise ConfigError(f"messaging: service number {service!r} is not in 1..255")
        if service in self._services:
            raise ConfigError(f"messaging: service {service} is already registered")
        if type(urgency) is not int or not 0 <= urgency <= 7:
            raise ConfigError(f"messaging: urgency {urgency!r} is not in 0..7")
        if type(max_pending_bytes) is not int or max_pending_bytes <= 0:
            raise ConfigError("messaging: max_pending_bytes must be a positive integer")
        self._services[service] = _Service(
            service, service_name(service), on_message, on_peer_lost, urgency, max_pending_bytes
        )

    def pending_bytes(self, node_id: NodeId, service: int | None = None) -> int:
        """Encoded bytes waiting for ``node_id`` (of one service, or all)."""
        out = self._out.get(node_id)
        if out is None:
            return 0
        if service is None:
            return out.total()
        return out.pending_bytes.get(service, 0)

    def reachable(self, now: Now, node_id: NodeId) -> bool:
        """False while ``node_id`` is marked unreachable (see the module docstring)."""
        at = self._retry_at.get(node_id)
        return at is None or now.mono >= at

    # -- sending -----------------------------------------------------------------------

    def send(self, now: Now, node_id: NodeId, service: int, message: Any) -> bool:
        """Queue ``message`` for ``node_id``'s ``service`` and write what its stream takes.

        Returns False (and counts it) when the message is dropped: the peer is
        unreachable, or its queue for this service is full. ``ConfigError`` for a service
        not registered here or our own node id; ``MalformedError``/``LimitError`` for a
        message that is not plain CBOR data or is too large.
        """
        svc = self._services.get(service)
        if svc is None:
            raise ConfigError(f"messaging: service {service} is not registered")
        if node_id == self.node_id:
            raise ConfigError("messaging: cannot send to our own node id")
        record = encode_record(message, self.max_record_bytes)
        counters = self.counters
        at = self._retry_at.get(node_id)
        if at is not None:
            if now.mono < at:
                counters.inc("messaging.send.dropped_unreachable")
                return False
            del self._retry_at[node_id]
        out = self._out.get(node_id)
        if out is None:
            out = self._out[node_id] = _Out()
        queued = out.pending_bytes.get(service, 0)
        if queued and queued + len(record) > svc.max_pending_bytes:
            counters.inc("messaging.send.dropped_pending_full")
            return False
        q = out.pending.get(service)
        if q is None:
            q = out.pending[service] = deque()
        q.append(memoryview(record))
        out.pending_bytes[service] = queued + len(record)
        counters.inc(svc.sent)
        counters.inc(svc.sent_bytes, len(record))
        self._blocked.add(node_id)
        self._drive(now, node_id)
        # a peer found unreachable while driving lost this message with the others
        return node_id not in self._retry_at

    def drive_pending(self, now: Now) -> None:
        """Write what the streams of peers with pending messages take now (after each
        connection datagram and timer: acknowledgements free send buffers)."""
        for node_id in sorted(self._blocked):
            self._drive(now, node_id)

    def forget(self, node_id: NodeId) -> None:
        """Drop everything held for ``node_id`` (a member that failed or left): its
        pending messages (``messaging.send.dropped_disconnected``) and its retry time."""
        out = self._out.pop(node_id, None)
        if out is not None:
            self._drop_pending(out, "messaging.send.dropped_disconnected")
        self._blocked.discard(node_id)
        self._retry_at.pop(node_id, None)

    def _drive(self, now: Now, node_id: NodeId) -> None:
        out = self._out.get(node_id)
        if out is None or not out.total():
            self._blocked.discard(node_id)
            return
        conn = self.transport.connection(node_id)
        if conn is None or conn.state_name not in ("handshake", "established"):
            try:
                conn = self._connect(now, node_id)
            except ConfigError as exc:
                log.debug("messaging: cannot reach %s: %s", short_id(node_id), exc)
                self._unreachable(now, node_id, "messaging.send.dropped_no_address")
                return
        if not conn.is_established or self._ready.get(node_id) != conn.local_cid:
            return  # its PeerConnected (or a failure) comes through filter_events
        if out.cid != conn.local_cid:
            self._switch(node_id, out, conn.local_cid)
        mono = now.mono
        for service, q in list(out.pending.items()):
            if not q:
                continue
            sid = out.sids.get(service)
            if sid is None:
                sid = self._open(node_id, conn, out, service)
                if sid is None:
                    continue
            try:
                out.pending_bytes[service] -= self._write(mono, node_id, conn, out, service, sid)
            except ConfigError as exc:
                # the peer stopped the stream (its STOP_SENDING is on its way to us) or
                # the connection is closing: what this service held for the peer is lost
                log.debug("messaging: stream %d to %s: %s", sid, short_id(node_id), exc)
                self._drop_service(node_id, out, service, "messaging.send.dropped_stopped")
        if not out.total():
            self._blocked.discard(node_id)

    def _write(
        self, mono: float, node_id: NodeId, conn: Connection, out: _Out, service: int, sid: int
    ) -> int:
        """Write ``service``'s pending records on ``sid`` as far as the stream takes them;
        return the record bytes written."""
        transport = self.transport
        if service in out.preamble:
            if conn.writable(sid) <= 0:
                return 0
            transport.send(mono, node_id, sid, bytes([service]))
            out.preamble.discard(service)
        q = out.pending[service]
        written = 0
        while q:
            room = conn.writable(sid)
            if room <= 0:
                break
            piece = q[0]
            chunk = piece if len(piece) <= room else piece[:room]
            accepted = transport.send(mono, node_id, sid, chunk.tobytes())
            written += accepted
            if accepted >= len(piece):
                q.popleft()
                out.partial.discard(service)
            else:
                if accepted:
                    q[0] = piece[accepted:]
                    out.partial.add(service)
                break
        return written

    def _open(self, node_id: NodeId, conn: Connection, out: _Out, service: int) -> int | None:
        """Open our stream for ``service`` on ``conn``; None (messages dropped) if the
        peer's stream limit is reached or the id would be a channel stream's."""
        svc = self._services[service]
        if not conn.can_open_stream(uni=True):
            self.counters.inc("messaging.send.stream_limit")
            self._drop_service(node_id, out, service, "messaging.send.dropped_stream_limit")
            return None
        sid = conn.open_stream(urgency=svc.urgency, incremental=True, uni=True)
        if sid < FIRST_STREAM_ID:
            # the channel streams were not opened on this connection: this one took the
            # place of one of them, which we cannot undo; it stays unused
            log.warning("messaging: stream %d is below %d; not used", sid, FIRST_STREAM_ID)
            self.counters.inc("messaging.send.misnumbered")
            self._drop_service(node_id, out, service, "messaging.send.dropped_stream_limit")
            return None
        out.sids[service] = sid
        out.preamble.add(service)
        log.debug(
            "messaging: %s stream %d to %s (Connection.open_stream uni=True)",
            svc.name, sid, short_id(node_id),
        )
        return sid

    def _switch(self, node_id: NodeId, out: _Out, cid: bytes) -> None:
        """Our streams move to connection ``cid``: a record partly written on the old
        streams is lost with them; whole ones wait for the new streams."""
        if out.cid is not None:
            for service in sorted(out.partial):
                q = out.pending[service]
                if q:
                    out.pending_bytes[service] -= len(q.popleft())
                    self.counters.inc("messaging.send.dropped_disconnected")
            out.partial.clear()
        out.cid = cid
        out.sids.clear()
        out.preamble.clear()

    def _drop_service(self, node_id: NodeId, out: _Out, service: int, counter: str) -> None:
        q = out.pending.get(service)
        if q:
            self.counters.inc(counter, len(q))
            q.clear()
        out.pending_bytes[service] = 0
        out.partial.discard(service)
        out.sids.pop(service, None)
        out.preamble.discard(service)
        svc = self._services[service]
        if svc.on_peer_lost is not None:
            svc.on_peer_lost(node_id)

    def _drop_pending(self, out: _Out, counter: str) -> None:
        dropped = 0
        for q in out.pending.values():
            dropped += len(q)
            q.clear()
        if dropped:
            self.counters.inc(counter, dropped)
        out.pending_bytes.clear()
        out.partial.clear()

    def _unreachable(self, now: Now, node_id: NodeId, counter: str) -> None:
        out = self._out.pop(node_id, None)
        if out is not None:
            self._drop_pending(out, counter)
        self._blocked.discard(node_id)
        retry = self._retry_at
        if len(retry) >= self.max_tracked_peers:
            for peer in [p for p, at in retry.items() if at <= now.mono]:
                del retry[peer]
            if len(retry) >= self.max_tracked_peers:  # all still due later: oldest out
                del retry[next(iter(retry))]
        retry[node_id] = now.mono + self.retry_after_s
        self._peer_lost(node_id)

    def _peer_lost(self, node_id: NodeId) -> None:
        for svc in self._services.values():
            if svc.on_peer_lost is not None:
                svc.on_peer_lost(node_id)

    # -- the transport side ------------------------------------------------------------

    def filter_events(self, now: Now, events: list[EndpointEvent]) -> list[EndpointEvent]:
        """Consume the messenger streams' data and events among ``events``, react to
        connections coming and going; return the other events (in order)."""
        rest: list[EndpointEvent] = []
        for event in events:
            kind = type(event)
            if kind is StreamData:
                assert isinstance(event, StreamData)
                if event.stream_id >= FIRST_STREAM_ID and event.stream_id & 2:
                    self._receive(now, event)
                    continue
            elif kind is PeerConnected:
                assert isinstance(event, PeerConnected)
                conn = self.transport.connection(event.node_id)
                if conn is not None and conn.is_established and conn.local_cid == event.cid:
                    self._ready[event.node_id] = event.cid
                    self._retry_at.pop(event.node_id, None)
                    if event.node_id in self._blocked:
                        self._drive(now, event.node_id)
            elif kind is PeerDisconnected:
                assert isinstance(event, PeerDisconnected)
                self._disconnected(now, event.node_id, event.cid)
            elif kind is ConnectFailed:
                assert isinstance(event, ConnectFailed)
                if self.transport.connection(event.node_id) is None:
                    self._unreachable(now, event.node_id, "messaging.send.dropped_disconnected")
            elif kind is PeerEvent:
                assert isinstance(event, PeerEvent)
                if self._peer_event(now, event):
                    continue
            rest.append(event)
        return rest

    def _disconnected(self, now: Now, node_id: NodeId, cid: bytes) -> None:
        for key in [k for k in self._in if k[0] == cid]:
            del self._in[key]
        if self._ready.get(node_id) == cid:
            del self._ready[node_id]
        current = self.transport.connection(node_id)
        if current is None or current.local_cid == cid:
            self._unreachable(now, node_id, "messaging.send.dropped_disconnected")
            return
        out = self._out.get(node_id)
        if out is not None and out.cid == cid:
            # replaced by a newer connection: whole records wait for it
            self._switch(node_id, out, cid)
            out.cid = None
        self._peer_lost(node_id)

    def _peer_event(self, now: Now, event: PeerEvent) -> bool:
        inner = event.event
        if isinstance(inner, StopSendingReceived):
            if inner.stream_id < FIRST_STREAM_ID or not inner.stream_id & 2:
                return False
            out = self._out.get(event.node_id)
            if out is not None and out.cid == event.cid:
                for service, sid in list(out.sids.items()):
                    if sid == inner.stream_id:
                        log.debug(
                            "messaging: %s stopped our %s stream %d",
                            short_id(event.node_id), service_name(service), sid,
                        )
                        self._drop_service(
                            event.node_id, out, service, "messaging.send.dropped_stopped"
                        )
            return True
        if isinstance(inner, StreamReset) and inner.stream_id >= FIRST_STREAM_ID \
                and inner.stream_id & 2:
            state = self._in.pop((event.cid, inner.stream_id), None)
            if state is not None and state.buf:
                self.counters.inc("messaging.receive.truncated")
            return True
        return False

    def _receive(self, now: Now, event: StreamData) -> None:
        key = (event.cid, event.stream_id)
        state = self._in.get(key)
        if state is None:
            state = self._in[key] = _In()
        if not state.broken and event.data:
            try:
                self._consume(now, event, state)
            except WireError as exc:
                self._break(event, state, exc)
        if event.end:
            if state.buf and not state.broken:
                self.counters.inc("messaging.receive.truncated")
            del self._in[key]

    def _consume(self, now: Now, event: StreamData, state: _In) -> None:
        data = event.data
        if state.service is None:
            number = data[0]
            svc = self._services.get(number)
            if svc is None:
                raise MalformedError(f"stream for service {number}, not registered here")
            state.service = svc
            data = data[1:]
        svc = state.service
        buf = state.buf
        buf += data
        pos = 0
        counters = self.counters
        node_id = event.node_id
        while True:
            head = parse_record_head(buf, pos)
            if head is None:
                break
            start, length = head
            if length > self.max_record_bytes:
                raise LimitError(
                    f"record of {length} bytes exceeds max_record_bytes {self.max_record_bytes}"
                )
            end = start + length
            if end > len(buf):
                break
            message = decode_message(bytes(buf[start:end]), self.limits)
            pos = end
            counters.inc(svc.received)
            counters.inc(svc.received_bytes, end - start)
            try:
                svc.on_message(now, node_id, message)
            except WireError as exc:
                counters.inc(f"messaging.{svc.name}.refused")
                log.debug(
                    "messaging: %s refused a message from %s: %s: %s",
                    svc.name, short_id(node_id), exc.code, exc,
                )
        if pos:
            del buf[:pos]

    def _break(self, event: StreamData, state: _In, exc: WireError) -> None:
        state.broken = True
        state.buf = bytearray()
        self.counters.inc(f"messaging.receive.broken.{exc.code}")
        log.debug(
            "messaging: stream %d from %s broken (%s): STOP_SENDING",
            event.stream_id, short_id(event.node_id), exc,
        )
        conn = self.transport.connection(event.node_id)
        if conn is not None and conn.local_cid == event.cid and conn.is_established:
            conn.stop_sending(event.stream_id)
