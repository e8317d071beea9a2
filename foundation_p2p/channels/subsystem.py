"""``ChannelsSubsystem``: :class:`~foundation_p2p.channels.core.ChannelsCore` driven over
the node's transport connections and gossip (``spec/channels.md``), without I/O.

``NodeCore`` owns one as ``core.channels``. It is a NodeCore subsystem (frame type 48,
the topic-set gossip frame) and the owner of the channel streams of every connection:

- **Publishing** (:meth:`broadcast`, :meth:`broadcast_from`, :meth:`local_broadcast`,
  :meth:`direct_broadcast`): the core delivers locally and returns records; each record is
  queued for its peer and written to the peer's connection. A peer without an
  established connection is dialled (``NodeCore.connect``: the address comes from the
  membership, else from where the peer was last heard).
- **Channel streams**: on every connection, our first four unidirectional streams, opened
  in channel-number order as soon as we see the connection established (ids ``4n + 2``
  when we dialled, ``4n + 3`` when we answered). A record is written whole on its stream:
  header, then body, in pieces as the stream's bounded send buffer frees up.
- **Receiving**: :meth:`filter_events` takes the endpoint's events; stream data on a
  peer's channel stream (unidirectional, id below 16) goes to ``ChannelsCore.receive``
  and is consumed; everything else (other streams, connection events) is returned for
  the runtime's raw stream API. A record that fails to decode breaks its stream: we ask
  the peer to stop sending on it (STOP_SENDING).

Bounded buffers and their policies (each counted in the node's counters):

- **Pending bytes per peer**: records wait in a per-peer queue while the connection is
  being set up and while their stream lacks credit, at most ``max_pending_bytes`` per
  peer (default 80 MiB, above the 64 MiB message bound), except that a record always
  fits an empty queue. A record that would overflow is dropped whole
  (``channels.send.dropped_pending_full``): it is never partly written. Its sequence
  number is taken, so the receiver counts the gap.
- **Unreachable peers**: a peer whose dial fails, whose connection ends, or for whom no
  address is known is marked unreachable (``ChannelsCore.set_reachable``) for
  ``retry_after_s``; what was pending for it is dropped
  (``channels.send.dropped_disconnected`` / ``channels.send.dropped_no_address``, in
  records) and its receive streams are reset (``ChannelsCore.stream_reset``). After
  ``retry_after_s`` the next record dials again.
- A member that membership declares failed or left is forgotten
  (``ChannelsCore.forget_node``) at the next gossip tick.

Topic-set gossip (``spec/channels.md`` section 6): frame ``[48, node-id, topic-set]``.
Our set is sent when it changes (to at most ``gossip_fanout_on_change`` random alive
members) and every ``gossip_interval_s`` (to at most ``gossip_fanout`` random alive
members) once it has changed at least once in this boot (a node that never subscribed
sends nothing and draws no randomness: the empty set is what peers assume); a node
that hears a set from a node it held none for answers with its own. A frame is
accepted only from the node it describes (``channels.gossip.refused_relay`` otherwise;
sets are not relayed). A set whose frame would not fit one gossip packet is
not sent (``channels.gossip.too_large``): with the default 1,400-byte packets that is a
set of roughly 20 long topic names; short names fit many more.

Nothing here reads a clock or draws randomness of its own: ``now`` comes with every call,
``rng`` is the node's.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from foundation_p2p.addresses import Address, NodeId, short_id
from foundation_p2p.channels.core import ChannelsCore, OutgoingRecord, Subscription
from foundation_p2p.channels.gossip import TopicSet, decode_topics
from foundation_p2p.channels.names import (
    STANDARD_CHANNELS,
    Channel,
    channel_of_stream,
    channel_stream_id,
)
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, WireError
from foundation_p2p.events import Command, Event
from foundation_p2p.membership.state import MemberState
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.transport.connection import Connection
from foundation_p2p.transport.endpoint import (
    ConnectFailed,
    EndpointEvent,
    PeerConnected,
    PeerDisconnected,
    StreamData,
    TransportEndpoint,
)
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import (
    Frame,
    expect_bytes,
    expect_frame,
    register_frame,
)
from foundation_p2p.wire.limits import WireLimits

log = logging.getLogger("foundation_p2p.channels")

TOPICS_FRAME_TYPE = 48
"""The topic-set gossip frame (spec/wire.md frame table)."""
DEFAULT_MAX_PENDING_BYTES = 80 * 1024 * 1024
"""Record bytes waiting for one peer (connecting, or stream without credit), at most."""
_FRAME_OVERHEAD = 24  # frame array head, type, node-id head and the 16 bytes
_PACKET_OVERHEAD = 64 + 3  # sealed packet header and tag (NodeCore), frame-list head


@register_frame
@dataclass(slots=True)
class TopicsFrame:
    """``[48, node-id, topic-set]``: ``node_id``'s subscribed topics (spec/channels.md §6)."""

    TYPE: ClassVar[int] = TOPICS_FRAME_TYPE
    node_id: NodeId
    topics: TopicSet

    def to_cbor(self) -> list[Any]:
        t = self.topics
        return [self.TYPE, self.node_id, [t.epoch, t.version, list(t.topics)]]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        expect_frame(items, cls.TYPE, "topics frame", 3, 3)
        node_id = expect_bytes(items[1], "topics frame node-id", size=16)
        # the set's own checks (shape, order, names, bound) on its canonical encoding
        return cls(node_id, decode_topics(cbor.encode(items[2])))


class _Out:
    """Our sending side toward one peer: the connection's channel streams and the
    records waiting for them."""

    __slots__ = ("cid", "pending", "pending_bytes", "retry_at", "sids")

    def __init__(self) -> None:
        self.cid: bytes | None = None
        self.sids: list[int] = []
        # per channel: records in order, each the pieces (memoryviews) still to write
        self.pending: list[deque[list[memoryview]]] = [deque() for _ in STANDARD_CHANNELS]
        self.pending_bytes = 0
        self.retry_at: float | None = None


class ChannelsSubsystem:
    """Channels on a node: see the module docstring for the rules and bounds."""

    frame_types: tuple[int, ...] = (TOPICS_FRAME_TYPE,)

    def __init__(
        self,
        core: ChannelsCore,
        *,
        transport: TransportEndpoint,
        connect: Callable[[Now, NodeId], Connection],
        membership: SwimMembership,
        rng: random.Random,
        counters: Counters,
        max_packet_bytes: int,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        gossip_interval_s: float = 1.0,
        gossip_fanout: int = 3,
        gossip_fanout_on_change: int = 8,
        retry_after_s: float = 1.0,
    ) -> None:
        if type(max_pending_bytes) is not int or max_pending_bytes <= 0:
            raise ConfigError("channels.max_pending_bytes: must be a positive integer")
        self.core = core
        """The sans-I/O pub/sub core (public: the leaky facade)."""
        self.transport = transport
        self._connect = connect
        self.membership = membership
        self.rng = rng
        self.counters = counters
        self.max_packet_bytes = max_packet_bytes
        self.max_pending_bytes = max_pending_bytes
        self.gossip_interval_s = gossip_interval_s
        self.gossip_fanout = gossip_fanout
        self.gossip_fanout_on_change = gossip_fanout_on_change
        self.retry_after_s = retry_after_s
        self._out: dict[NodeId, _Out] = {}
        self._blocked: set[NodeId] = set()  # peers with pending bytes
        self._outgoing: list[tuple[Address | NodeId, Frame]] = []
        self._next_gossip: float | None = None  # None: at the first timer
        self._sent_version = 0  # the topics_version last announced on change
        self._retry_next: float | None = None
        self._heard: set[NodeId] = set()  # peers whose set we hold (bounded by the core's)
        self._now = 0.0

    # -- publishing (the driver calls these, then sends what the node holds) ---------

    def subscribe(
        self, topic: str, *, max_queued: int | None = None, overflow: str = "drop_oldest"
    ) -> Subscription:
        """``ChannelsCore.subscribe``; a new topic is gossiped at the next timer (due now)."""
        return self.core.subscribe(topic, max_queued=max_queued, overflow=overflow)

    def unsubscribe(self, sub: Subscription) -> None:
        """``ChannelsCore.unsubscribe``; a topic left is gossiped like a new one."""
        self.core.unsubscribe(sub)

    def broadcast(
        self, now: Now, topic: Channel | str, message: Any, *, compression: bool = False
    ) -> int:
        """``ChannelsCore.broadcast`` then write its records; returns the records queued."""
        return self.send_records(now, self.core.broadcast(topic, message, compression=compression))

    def broadcast_from(
        self, now: Now, sender: Subscription, topic: Channel | str, message: Any, *,
        compression: bool = False,
    ) -> int:
        """``ChannelsCore.broadcast_from`` then write its records."""
        return self.send_records(
            now, self.core.broadcast_from(sender, topic, message, compression=compression)
        )

    def local_broadcast(self, topic: Channel | str, message: Any) -> int:
        """``ChannelsCore.local_broadcast`` (no records); returns the local deliveries."""
        return self.core.local_broadcast(topic, message)

    def direct_broadcast(
        self, now: Now, node_id: NodeId, topic: Channel | str, message: Any, *,
        compression: bool = False,
    ) -> int:
        """``ChannelsCore.direct_broadcast`` then write its record (if any)."""
        return self.send_records(
            now, self.core.direct_broadcast(node_id, topic, message, compression=compression)
        )

    def send_records(self, now: Now, records: list[OutgoingRecord]) -> int:
        """Queue ``records`` for their peers (bounded, see the module docstring), dial the
        peers without a connection, and write what their streams take now."""
        self._now = now.mono
        queued = 0
        touched: list[NodeId] = []
        counters = self.counters
        for rec in records:
            out = self._out.get(rec.node_id)
            if out is None:
                out = self._out[rec.node_id] = _Out()
            size = len(rec.header) + len(rec.body)
            if out.pending_bytes and out.pending_bytes + size > self.max_pending_bytes:
                counters["channels.send.dropped_pending_full"] += 1
                continue
            pieces = [memoryview(rec.header)]
            if rec.body:
                pieces.append(memoryview(rec.body))
            out.pending[rec.channel.number].append(pieces)
            out.pending_bytes += size
            queued += 1
            if not touched or touched[-1] != rec.node_id:
                touched.append(rec.node_id)
        for node_id in touched:
            self._blocked.add(node_id)
            self._drive(now, node_id)
        return queued

    # -- the transport side ----------------------------------------------------------

    def filter_events(self, now: Now, events: list[EndpointEvent]) -> list[EndpointEvent]:
        """Consume the channel stream data among ``events`` and react to connection events;
        return the events that are not ours (in order) for the runtime."""
        self._now = now.mono
        rest: list[EndpointEvent] = []
        for event in events:
            kind = type(event)
            if kind is StreamData:
                assert isinstance(event, StreamData)
                channel = channel_of_stream(event.stream_id)
                if channel is not None:
                    self._receive(event, channel)
                    continue
            elif kind is PeerConnected:
                assert isinstance(event, PeerConnected)
                self.core.stream_reset(event.node_id)
                self.core.set_reachable(event.node_id, True)
                out = self._out.get(event.node_id)
                if out is None:
                    out = self._out[event.node_id] = _Out()
                out.retry_at = None
                conn = self.transport.connection(event.node_id)
                if conn is not None and conn.is_established and conn.local_cid == event.cid:
                    # our four channel streams first, as the handshake completes
                    self._ensure_streams(event.node_id, conn, out)
                self._drive(now, event.node_id)
            elif kind is PeerDisconnected:
                assert isinstance(event, PeerDisconnected)
                self.core.stream_reset(event.node_id)
                current = self.transport.connection(event.node_id)
                if current is None or current.local_cid == event.cid:
                    self._unreachable(event.node_id, "channels.send.dropped_disconnected")
            elif kind is ConnectFailed:
                assert isinstance(event, ConnectFailed)
                if self.transport.connection(event.node_id) is None:
                    self._unreachable(event.node_id, "channels.send.dropped_disconnected")
            rest.append(event)
        return rest

    def drive_pending(self, now: Now) -> None:
        """Write what the streams of peers with pending records take now (after each
        connection datagram and timer: acknowledgements free send buffers)."""
        self._now = now.mono
        for node_id in list(self._blocked):
            self._drive(now, node_id)

    def _receive(self, event: StreamData, channel: Channel) -> None:
        try:
            if event.data:
                self.core.receive(event.node_id, channel, event.data)
        except WireError as exc:
            log.debug(
                "channel %s from %s broken (%s): STOP_SENDING stream %d",
                channel.name, short_id(event.node_id), exc, event.stream_id,
            )
            conn = self.transport.connection(event.node_id)
            if conn is not None and conn.local_cid == event.cid and conn.is_established:
                conn.stop_sending(event.stream_id)
        if event.end:
            self.core.stream_reset(event.node_id, channel)

    def _drive(self, now: Now, node_id: NodeId) -> None:
        out = self._out.get(node_id)
        if out is None or not out.pending_bytes:
            self._blocked.discard(node_id)
            return
        conn = self.transport.connection(node_id)
        if conn is None or conn.state_name not in ("handshake", "established"):
            try:
                conn = self._connect(now, node_id)
            except ConfigError as exc:
                log.debug("channels: cannot reach %s: %s", short_id(node_id), exc)
                self._unreachable(node_id, "channels.send.dropped_no_address")
                return
        if not conn.is_established:
            return  # PeerConnected (or a failure) comes later
        if out.cid != conn.local_cid and not self._ensure_streams(node_id, conn, out):
            return
        written = 0
        for number, q in enumerate(out.pending):
            sid = out.sids[number]
            while q:
                room = conn.writable(sid)
                if room <= 0:
                    break
                pieces = q[0]
                piece = pieces[0]
                chunk = piece if len(piece) <= room else piece[:room]
                accepted = self.transport.send(now.mono, node_id, sid, chunk.tobytes())
                written += accepted
                if accepted >= len(piece):
                    pieces.pop(0)
                    if not pieces:
                        q.popleft()
                else:
                    pieces[0] = piece[accepted:]
                    if accepted == 0:
                        break
        out.pending_bytes -= written
        if not out.pending_bytes:
            self._blocked.discard(node_id)

    def _ensure_streams(self, node_id: NodeId, conn: Connection, out: _Out) -> bool:
        """Make ``conn`` (established) the one our records to ``node_id`` use."""
        if out.cid == conn.local_cid:
            return True
        if out.cid is not None:
            # the connection was replaced: what waited for the old one is lost
            self._drop_pending(out, "channels.send.dropped_disconnected")
            out.cid = None
        if not self._open_streams(conn, out):
            self._unreachable(node_id, "channels.send.dropped_misnumbered")
            return False
        return True

    def _open_streams(self, conn: Connection, out: _Out) -> bool:
        """Open our four channel streams on ``conn`` (spec/channels.md section 1)."""
        sids = []
        for channel in STANDARD_CHANNELS:
            sid = conn.open_stream(
                urgency=channel.urgency, incremental=channel.incremental, uni=True
            )
            if sid != channel_stream_id(channel, initiator=conn.is_client):
                log.warning(
                    "channel %s: stream %d is not the channel's (another unidirectional "
                    "stream was opened first); no channels on this connection",
                    channel.name, sid,
                )
                return False
            sids.append(sid)
        out.cid = conn.local_cid
        out.sids = sids
        log.debug("channel streams %s opened (Connection.open_stream uni=True)", sids)
        return True

    def _unreachable(self, node_id: NodeId, counter: str) -> None:
        self.core.set_reachable(node_id, False)
        out = self._out.get(node_id)
        if out is None:
            out = self._out[node_id] = _Out()
        self._drop_pending(out, counter)
        out.cid = None
        out.sids = []
        out.retry_at = self._now + self.retry_after_s
        if self._retry_next is None or out.retry_at < self._retry_next:
            self._retry_next = out.retry_at
        self._blocked.discard(node_id)

    def _drop_pending(self, out: _Out, counter: str) -> None:
        records = 0
        for q in out.pending:
            records += len(q)  # a record partly written counts as one
            q.clear()
        if records:
            self.counters[counter] += records
        out.pending_bytes = 0

    # -- gossip (the Subsystem protocol) ---------------------------------------------

    def handle_message(self, now: Now, sender: NodeId, addr: Address, frame: Frame) -> None:
        """A topic-set frame: applied if it describes its sender; a first set is answered."""
        assert isinstance(frame, TopicsFrame)
        if frame.node_id != sender:
            self.counters["channels.gossip.refused_relay"] += 1
            return
        first = sender not in self._heard
        if self.core.set_remote_topics(sender, frame.topics) and first:
            self._heard.add(sender)
            self._queue_gossip([addr])

    def handle_timer(self, now: Now) -> None:
        """Announce our set (on change, and every ``gossip_interval_s``); retry peers
        marked unreachable; forget members membership declared failed or left."""
        self._now = mono = now.mono
        if self.core.topics_version != self._sent_version:
            self._sent_version = self.core.topics_version
            self._queue_gossip(self._random_members(self.gossip_fanout_on_change))
        if self._next_gossip is None or mono >= self._next_gossip:
            self._next_gossip = mono + self.gossip_interval_s
            if self.core.topics_version:
                self._queue_gossip(self._random_members(self.gossip_fanout))
            self._forget_departed()
        if self._retry_next is not None and mono >= self._retry_next:
            self._retry_next = None
            for node_id, out in self._out.items():
                if out.retry_at is None:
                    continue
                if out.retry_at <= mono:
                    out.retry_at = None
                    self.core.set_reachable(node_id, True)
                elif self._retry_next is None or out.retry_at < self._retry_next:
                    self._retry_next = out.retry_at
        self.drive_pending(now)

    def handle_command(self, now: Now, cmd: Command) -> bool:
        return False

    def next_deadline(self) -> float | None:
        if self.core.topics_version != self._sent_version:
            return self._now  # due now
        best: float | None = None
        if self.core.topics_version or self._out:
            # something to announce, or peers to retry and forget
            best = self._now if self._next_gossip is None else self._next_gossip
        if self._retry_next is not None and (best is None or self._retry_next < best):
            best = self._retry_next
        return best

    def take_outgoing(self) -> list[tuple[Address | NodeId, Frame]]:
        out, self._outgoing = self._outgoing, []
        return out

    def take_events(self) -> list[Event]:
        return []

    def _random_members(self, k: int) -> list[Address]:
        me = self.core.node_id
        alive = [
            m.address for m in self.membership.members()
            if m.node_id != me and m.state is MemberState.ALIVE
        ]
        if len(alive) <= k:
            return alive
        return self.rng.sample(alive, k)

    def _queue_gossip(self, addresses: list[Address]) -> None:
        if not addresses:
            return
        core = self.core
        topics = TopicSet(core.epoch, core.topics_version, tuple(core.local_topics()))
        payload = core.gossip_payload()
        if len(payload) + _FRAME_OVERHEAD + _PACKET_OVERHEAD > self.max_packet_bytes:
            self.counters["channels.gossip.too_large"] += 1
            return
        frame = TopicsFrame(core.node_id, topics)
        self.counters["channels.gossip.sent"] += len(addresses)
        self._outgoing.extend((a, frame) for a in addresses)

    def _forget_departed(self) -> None:
        # our sending state of peers with no connection, nothing pending and no retry
        # due (its sequence numbers live in the core): bounded by live connections
        transport = self.transport
        for node_id, out in list(self._out.items()):
            if not out.pending_bytes and out.retry_at is None and \
                    transport.connection(node_id) is None:
                del self._out[node_id]
        for node_id in list(self.core.peers()):
            m = self.membership.member(node_id)
            if m is not None and m.state in (MemberState.FAILED, MemberState.LEFT):
                self.core.forget_node(node_id)
                self._heard.discard(node_id)
                gone = self._out.pop(node_id, None)
                if gone is not None:
                    self._drop_pending(gone, "channels.send.dropped_disconnected")
                self._blocked.discard(node_id)
