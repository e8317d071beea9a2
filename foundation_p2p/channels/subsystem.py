"""``ChannelsSubsystem``: :class:`~foundation_p2p.channels.core.ChannelsCore` driven over
the node's transport connections and gossip (``spec/channels.md``), without I/O.

``NodeCore`` owns one as ``core.channels``. It is a NodeCore subsystem (timers only: it
receives no gossip frame; topic sets ride the membership records) and the owner of the
channel streams of every connection:

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
- **A replaced connection** (the peer restarted, or a new handshake superseded the old
  connection without it ending first): the records not yet started on the old
  connection's streams are kept and written, in order, on the new connection's streams;
  only a record partly written on an old stream is dropped (it cannot be finished on
  another stream): ``channels.send.dropped_partial``, at most one per channel. What the
  old streams had taken whole but not delivered is lost with them; the receiver counts
  both as a sequence gap.
- **Unreachable peers**: a peer whose dial fails, whose connection ends, or for whom no
  address is known is marked unreachable (``ChannelsCore.set_reachable``) for
  ``retry_after_s``; what was pending for it is dropped
  (``channels.send.dropped_disconnected`` / ``channels.send.dropped_no_address``, in
  records) and its receive streams are reset (``ChannelsCore.stream_reset``). After
  ``retry_after_s`` (doubled at each failure in a row, at most ``retry_max_s``; reset
  by a connection) it is reachable again: a peer that membership holds alive or
  suspected is redialled at once (``channels.redials``), any other by its next record.
- **A channel stream the peer stopped** (STOP_SENDING, or a stream otherwise unusable,
  or channel streams that cannot get their numbers on a connection): what waited for
  that stream is dropped (``channels.send.dropped_stream_stopped``) and the connection
  is closed (``channels.connections_closed.stream_stopped`` / ``.misnumbered``): stream
  ids are fixed per connection, so only a new connection carries the channels again.
- A member that membership declares failed or left is forgotten
  (``ChannelsCore.forget_node``) at the next maintenance tick (every
  ``maintenance_interval_s``) at which no connection to it remains
  (``channels.forget_deferred_connected`` counts the ticks it waited): forgetting it
  mid-stream would restart the receive framing inside a record (a broken stream) and
  orphan our channel streams on a connection that still runs (membership flaps under
  loss).

Topic sets (``spec/channels.md`` section 6) ride the membership: our set is membership
announcement extension 1 (``SwimMembership.set_extension``, equivalent lower-level
call), set at the first timer after it changes (the membership signs a new record,
coalescing changes to at most one record per ``extension_min_interval_s``, and spreads
it by SWIM dissemination and push-pull, so a new subscription reaches all N members in
O(log N) gossip rounds). A list that does not fit the membership's extension bound is
announced as the wildcard (every topic; ``channels.topics.wildcard``); never truncated.
Remote sets come from the membership's listener (``SwimMembership.add_listener``): each
time a member's record changes, its extension 1 is applied (``ChannelsCore.apply_topics``;
a value that does not decode is counted ``channels.topics.malformed`` and the member gets
no fan-out). Records are ordered by incarnation, so a late old record never overrides a
newer set.

Nothing here reads a clock or draws randomness of its own: ``now`` comes with every call,
``rng`` is the node's.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from foundation_p2p.addresses import Address, NodeId, short_id
from foundation_p2p.channels.core import ChannelsCore, OutgoingRecord, Subscription
from foundation_p2p.channels.gossip import WILDCARD_VALUE
from foundation_p2p.channels.names import (
    STANDARD_CHANNELS,
    Channel,
    channel_of_stream,
    channel_stream_id,
)
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, LimitError, WireError
from foundation_p2p.events import Command, Event
from foundation_p2p.membership.frames import EXTENSION_TOPICS
from foundation_p2p.membership.state import Member, MemberState
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
from foundation_p2p.transport.errors import ErrorCode
from foundation_p2p.wire.frames import Frame

log = logging.getLogger("foundation_p2p.channels")

DEFAULT_MAX_PENDING_BYTES = 80 * 1024 * 1024
"""Record bytes waiting for one peer (connecting, or stream without credit), at most."""


class _Out:
    """Our sending side toward one peer: the connection's channel streams and the
    records waiting for them."""

    __slots__ = ("cid", "failures", "pending", "pending_bytes", "retry_at", "sids", "started")

    def __init__(self) -> None:
        self.cid: bytes | None = None
        self.sids: list[int] = []
        # per channel: records in order, each the pieces (memoryviews) still to write
        self.pending: list[deque[list[memoryview]]] = [deque() for _ in STANDARD_CHANNELS]
        # per channel: the first pending record is partly written on stream sids[number]
        self.started = [False] * len(STANDARD_CHANNELS)
        self.pending_bytes = 0
        self.retry_at: float | None = None
        self.failures = 0  # times marked unreachable since the last connection: the backoff


class ChannelsSubsystem:
    """Channels on a node: see the module docstring for the rules and bounds."""

    frame_types: tuple[int, ...] = ()

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
        maintenance_interval_s: float = 1.0,
        retry_after_s: float = 1.0,
        retry_max_s: float = 8.0,
    ) -> None:
        """``rng`` and ``max_packet_bytes`` are kept for the constructor's callers; nothing
        here draws randomness or sizes a packet since topic sets ride the membership."""
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
        self.maintenance_interval_s = maintenance_interval_s
        self.retry_after_s = retry_after_s
        self.retry_max_s = retry_max_s
        self._out: dict[NodeId, _Out] = {}
        self._blocked: set[NodeId] = set()  # peers with pending bytes
        self._next_maint: float | None = None  # None: at the first timer
        self._sent_version = 0  # the topics_version last announced
        self._retry_next: float | None = None
        self._now = 0.0
        membership.add_listener(self._on_member)
        for member in membership.members():  # whatever it knew before us
            self._on_member(member)

    # -- publishing (the driver calls these, then sends what the node holds) ---------

    def subscribe(
        self, topic: str, *, max_queued: int | None = None, overflow: str = "drop_oldest"
    ) -> Subscription:
        """``ChannelsCore.subscribe``; a new topic is announced at the next timer (due now)
        through ``SwimMembership.set_extension``."""
        return self.core.subscribe(topic, max_queued=max_queued, overflow=overflow)

    def unsubscribe(self, sub: Subscription) -> None:
        """``ChannelsCore.unsubscribe``; a topic left is announced like a new one."""
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
                out.failures = 0
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
            if conn is not None and conn.local_cid == event.cid and conn.is_established \
                    and not conn.stream_finished(event.stream_id):
                # (a stream that already ended, or is gone, has nothing left to stop)
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
            if q and not conn.send_open(sid):
                # The peer stopped the stream (STOP_SENDING: a record it could not
                # decode) or it is gone: never write to it; replace the connection.
                out.pending_bytes -= written
                self._stream_stopped(node_id, out, number, sid)
                return
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
                        out.started[number] = False
                        continue
                else:
                    pieces[0] = piece[accepted:]
                    if accepted == 0:
                        break
                out.started[number] = True
        out.pending_bytes -= written
        if not out.pending_bytes:
            self._blocked.discard(node_id)

    def _stream_stopped(self, node_id: NodeId, out: _Out, number: int, sid: int) -> None:
        """Our channel stream ``sid`` can take no more bytes (the peer sent STOP_SENDING, or
        it was reset): drop what waited for it, counted in records
        (``channels.send.dropped_stream_stopped``), and close the connection: a channel's
        stream id is fixed on a connection (spec/channels.md section 1), so only a new
        connection carries the channel again. The close reports ``PeerDisconnected``, which
        marks the peer unreachable until the retry redials it."""
        q = out.pending[number]
        dropped = len(q)
        out.pending_bytes -= sum(len(p) for pieces in q for p in pieces)
        q.clear()
        out.started[number] = False
        self.counters["channels.send.dropped_stream_stopped"] += dropped
        self.counters["channels.connections_closed.stream_stopped"] += 1
        log.warning(
            "channel %s: the peer %s stopped stream %d (STOP_SENDING); %d records dropped, "
            "closing the connection (TransportEndpoint.close) to carry the channel on a new one",
            STANDARD_CHANNELS[number].name, short_id(node_id), sid, dropped,
        )
        self._close_connection(node_id, out, "channel stream stopped")

    def _close_connection(self, node_id: NodeId, out: _Out, reason: str) -> None:
        """Close the peer's connection (its channel streams are unusable) and forget them;
        a record partly written on one of them is dropped (``_drop_partial``), the others
        wait for the next connection."""
        self._drop_partial(out)
        out.cid = None
        out.sids = []
        self.transport.close(node_id, int(ErrorCode.NO_ERROR), reason)

    def _ensure_streams(self, node_id: NodeId, conn: Connection, out: _Out) -> bool:
        """Make ``conn`` (established) the one our records to ``node_id`` use."""
        if out.cid == conn.local_cid:
            return True
        if out.cid is not None:
            # The connection was replaced: records not started go on the new streams; a
            # record partly written on an old stream cannot be finished elsewhere.
            self._drop_partial(out)
            out.cid = None
        if not self._open_streams(conn, out):
            # The numbering is fixed per connection: only a new connection can carry the
            # channels. Close this one (the retry redials) instead of retrying on it.
            self.counters["channels.connections_closed.misnumbered"] += 1
            self._unreachable(node_id, "channels.send.dropped_misnumbered")
            self._close_connection(node_id, out, "channel streams misnumbered")
            return False
        return True

    def _open_streams(self, conn: Connection, out: _Out) -> bool:
        """Open our four channel streams on ``conn`` (spec/channels.md section 1)."""
        sids = []
        for channel in STANDARD_CHANNELS:
            if not conn.can_open_stream(uni=True):
                log.warning("channel %s: the peer's unidirectional stream limit is reached; "
                            "no channels on this connection", channel.name)
                return False
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
        out.failures += 1
        delay = min(self.retry_after_s * 2 ** min(out.failures - 1, 16),
                    max(self.retry_max_s, self.retry_after_s))
        out.retry_at = self._now + delay
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
        out.started = [False] * len(STANDARD_CHANNELS)

    def _drop_partial(self, out: _Out) -> None:
        """Drop the record partly written on each old stream (the rest is kept)."""
        for number, q in enumerate(out.pending):
            if out.started[number] and q:
                pieces = q.popleft()
                out.pending_bytes -= sum(len(p) for p in pieces)
                self.counters["channels.send.dropped_partial"] += 1
            out.started[number] = False
        kept = sum(len(q) for q in out.pending)
        if kept:
            self.counters["channels.send.kept_on_new_connection"] += kept

    # -- topic sets through the membership (the Subsystem protocol) ----------------

    def _on_member(self, member: Member) -> None:
        """The membership listener: a member's record changed; hold its topic set."""
        if member.node_id == self.core.node_id or member.state is MemberState.LEFT:
            return  # a left member is forgotten at the next maintenance tick
        if member.state is MemberState.FAILED:
            return
        try:
            self.core.apply_topics(member.node_id, member.extensions.get(EXTENSION_TOPICS))
        except WireError as exc:
            log.debug("topic set of %s refused: %s", short_id(member.node_id), exc)

    def handle_message(self, now: Now, sender: NodeId, addr: Address, frame: Frame) -> None:
        """No frame is routed here (``frame_types`` is empty)."""
        raise AssertionError(f"channels: unexpected frame {frame.TYPE}")

    def handle_timer(self, now: Now) -> None:
        """Announce our set once it changed; retry peers marked unreachable; forget
        members membership declared failed or left."""
        self._now = mono = now.mono
        if self.core.topics_version != self._sent_version:
            self._sent_version = self.core.topics_version
            self._announce_topics(now)
        if self._next_maint is None or mono >= self._next_maint:
            self._next_maint = mono + self.maintenance_interval_s
            self._forget_departed()
        if self._retry_next is not None and mono >= self._retry_next:
            self._retry_next = None
            due: list[NodeId] = []
            for node_id, out in self._out.items():
                if out.retry_at is None:
                    continue
                if out.retry_at <= mono:
                    out.retry_at = None
                    self.core.set_reachable(node_id, True)
                    due.append(node_id)
                elif self._retry_next is None or out.retry_at < self._retry_next:
                    self._retry_next = out.retry_at
            for node_id in due:
                self._redial(now, node_id)
        self.drive_pending(now)

    def _redial(self, now: Now, node_id: NodeId) -> None:
        """The retry of an unreachable peer is due: if membership holds it alive (or
        suspected), dial it now (``NodeCore.connect``) instead of waiting for a record, so
        its channels come back even while every record to it was being skipped. A failed
        dial marks it unreachable again, for twice as long (up to ``retry_max_s``)."""
        member = self.membership.member(node_id)
        if member is None or member.state not in (MemberState.ALIVE, MemberState.SUSPECT):
            return
        conn = self.transport.connection(node_id)
        if conn is not None and conn.state_name in ("handshake", "established"):
            return
        try:
            self._connect(now, node_id)
        except ConfigError as exc:
            log.debug("channels: cannot redial %s: %s", short_id(node_id), exc)
            self._unreachable(node_id, "channels.send.dropped_no_address")
            return
        self.counters["channels.redials"] += 1
        log.debug("channels: redial %s, alive in membership (NodeCore.connect)",
                  short_id(node_id))

    def _announce_topics(self, now: Now) -> None:
        """Put our topic list in membership extension 1 (the wildcard if it does not fit)."""
        value = self.core.topics_value()
        membership = self.membership
        if membership.leaving:
            return
        try:
            membership.set_extension(now, EXTENSION_TOPICS, value)
        except LimitError as exc:
            log.info("topic set does not fit the membership record (%s): announcing every "
                     "topic (the wildcard)", exc)
            self.counters["channels.topics.wildcard"] += 1
            try:
                membership.set_extension(now, EXTENSION_TOPICS, WILDCARD_VALUE)
            except LimitError as again:
                # Metadata fills the record: peers keep the set they hold. Loud, counted.
                self.counters["channels.topics.unannounced"] += 1
                log.warning("topic set not announced: even the wildcard does not fit the "
                            "membership record (%s)", again)
                return
        log.debug("topic set announced (SwimMembership.set_extension key %d, %s)",
                  EXTENSION_TOPICS, "none" if value is None else f"{len(value)} bytes")

    def handle_command(self, now: Now, cmd: Command) -> bool:
        return False

    def next_deadline(self) -> float | None:
        if self.core.topics_version != self._sent_version:
            return self._now  # due now
        best: float | None = None
        if self._out or self.core.has_peers():
            # peers to retry and forget
            best = self._now if self._next_maint is None else self._next_maint
        if self._retry_next is not None and (best is None or self._retry_next < best):
            best = self._retry_next
        return best

    def take_outgoing(self) -> list[tuple[Address | NodeId, Frame]]:
        return []

    def take_events(self) -> list[Event]:
        return []

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
                if transport.connection(node_id) is not None:
                    # Its connection still runs (membership flaps under loss): forgetting
                    # now would reset the receive framing mid-record and orphan our
                    # channel streams. Forgotten once the connection is gone.
                    self.counters["channels.forget_deferred_connected"] += 1
                    continue
                self.core.forget_node(node_id)
                gone = self._out.pop(node_id, None)
                if gone is not None:
                    self._drop_pending(gone, "channels.send.dropped_disconnected")
                self._blocked.discard(node_id)
