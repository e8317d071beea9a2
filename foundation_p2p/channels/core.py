"""``ChannelsCore``: publish/subscribe over channel streams, without I/O.

The operations are Phoenix.PubSub's: :meth:`~ChannelsCore.broadcast`,
:meth:`~ChannelsCore.broadcast_from`, :meth:`~ChannelsCore.local_broadcast`,
:meth:`~ChannelsCore.direct_broadcast`. A publishing call delivers to this node's
subscribers at once and *returns* the records to write, as :class:`OutgoingRecord`\\ s
(peer, channel, header, body); the driver writes ``header`` then ``body`` to its stream
for that channel on the connection to that peer, in the order returned. Bytes read from
a peer's channel stream go to :meth:`~ChannelsCore.receive`, which decodes them and
delivers to local subscribers. Nothing here reads a clock, draws randomness, or touches
a socket.

Who gets a record: every remote node whose announced topic set (``gossip.py``; it rides
the node's membership record, :meth:`~ChannelsCore.apply_topics`) holds the topic, or
that announced the wildcard (every topic), except nodes marked unreachable
(``direct_broadcast`` sends to the named node whatever its topic set says, since
dissemination may lag). Remote nodes are visited in node-id order, so the output is
deterministic.

Ordering (``spec/channels.md`` section 5): each (peer, channel) pair has a sequence
counter, 0, 1, 2, ... for the life of this core (it survives reconnections). The stream
keeps records in order; the receiver checks the sequence: the expected number is
delivered; a larger one is delivered and the numbers skipped are counted as a gap
(``channels.receive.seq_gap_messages``); a smaller one is a duplicate, dropped and counted
(``channels.receive.seq_duplicates``); ``seq`` 0 always starts a new sequence (the
publisher restarted or forgot us; ``channels.receive.seq_restarts``).

Overflow and failure policies (each counted in ``counters``):

- a subscription's queue holds at most ``max_queued`` deliveries; when full, its
  ``overflow`` policy drops the oldest queued delivery (``drop_oldest``, the default) or
  the new one (``drop_newest``): ``channels.queue.dropped_oldest`` /
  ``channels.queue.dropped_newest``, and ``Subscription.dropped``;
- a peer marked unreachable (:meth:`~ChannelsCore.set_reachable`) gets no records; each
  record it would have got still takes its sequence number, so if the same stream goes
  on later the receiver sees the gap: ``channels.send.skipped_unreachable``;
- a record that fails to decode breaks its stream: ``channels.receive.dropped.<code>``,
  the stream's later bytes are dropped (``channels.receive.dropped_broken``) until
  :meth:`~ChannelsCore.stream_reset`; the error is also raised to the caller;
- a record for a topic nobody here subscribes to: ``channels.receive.no_subscriber``;
- at most ``max_remote_nodes`` peers are tracked; a topic set or bytes from one more are
  refused (``channels.topics.refused_peers_full``, ``channels.receive.refused_peers_full``)
  until :meth:`~ChannelsCore.forget_node` makes room;
- a topic set that does not decode is refused and the node's held set cleared (it gets
  no fan-out until it announces a valid one): ``channels.topics.malformed``. Ordering
  of a node's sets is the membership's (its record's incarnation), not ours.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from foundation_p2p.addresses import NodeId, short_id
from foundation_p2p.channels.codec import (
    COMPRESSED,
    DEFAULT_CHANNEL_LIMITS,
    ChannelLimits,
    EncodedBody,
    RecordDecoder,
    encode_body,
    record_header,
)
from foundation_p2p.channels.gossip import (
    DEFAULT_MAX_TOPICS,
    TopicSet,
    decode_topics,
    encode_topics,
)
from foundation_p2p.channels.names import (
    STANDARD_CHANNELS,
    Channel,
    TopicMap,
    channel_named,
    check_topic,
)
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, WireError

log = logging.getLogger("foundation_p2p.channels")

OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")
"""What a full subscription queue does with one more delivery."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message delivered to a subscription."""

    topic: str
    """The topic it was published on."""
    channel: str
    """The channel it travelled on (for a remote message: the stream it arrived on)."""
    publisher: NodeId
    """The node that published it."""
    seq: int | None
    """Its sequence number on the publisher's stream to us; ``None`` when published here."""
    value: Any
    """The message."""


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A record to write on the stream of ``channel`` to ``node_id``: ``header`` then ``body``.

    ``body`` is shared by every recipient of one broadcast (it is not copied per peer).
    """

    node_id: NodeId
    """The peer."""
    channel: Channel
    """The channel whose stream carries it."""
    seq: int
    """Its sequence number on that stream."""
    header: bytes
    """The 14-byte header and the topic."""
    body: bytes
    """The body."""

    @property
    def record(self) -> bytes:
        """The whole record (a copy: prefer writing ``header`` and ``body`` separately)."""
        return self.header + self.body


class Subscription:
    """A local subscription to one topic: a bounded queue of :class:`Delivery`.

    Overflow: at most ``max_queued`` deliveries wait; one more drops the oldest waiting
    (``drop_oldest``) or itself (``drop_newest``), counted in :attr:`dropped`.
    """

    __slots__ = ("_q", "active", "delivered", "dropped", "id", "max_queued", "overflow", "topic")

    def __init__(self, sub_id: int, topic: str, max_queued: int, overflow: str) -> None:
        self.id = sub_id
        """Unique among this core's subscriptions."""
        self.topic = topic
        """The topic subscribed to."""
        self.max_queued = max_queued
        """Bound of the queue."""
        self.overflow = overflow
        """``drop_oldest`` or ``drop_newest``."""
        self.dropped = 0
        """Deliveries lost to overflow."""
        self.delivered = 0
        """Deliveries queued (including those later dropped by ``drop_oldest``)."""
        self.active = True
        """False once unsubscribed."""
        self._q: deque[Delivery] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def __repr__(self) -> str:
        return (
            f"Subscription(id={self.id}, topic={self.topic!r}, queued={len(self._q)}, "
            f"dropped={self.dropped}, overflow={self.overflow})"
        )

    def take(self, max_items: int | None = None) -> list[Delivery]:
        """Remove and return up to ``max_items`` queued deliveries (default all), oldest first."""
        q = self._q
        if max_items is None or max_items >= len(q):
            items = list(q)
            q.clear()
            return items
        return [q.popleft() for _ in range(max(0, max_items))]

    def _offer(self, delivery: Delivery, counters: Counters) -> bool:
        """Queue ``delivery``; returns True if the queue was empty before."""
        q = self._q
        was_empty = not q
        if len(q) >= self.max_queued:
            self.dropped += 1
            if self.overflow == "drop_newest":
                counters["channels.queue.dropped_newest"] += 1
                return False
            q.popleft()
            counters["channels.queue.dropped_oldest"] += 1
        q.append(delivery)
        self.delivered += 1
        return was_empty


class _Peer:
    """What the core knows of one remote node."""

    __slots__ = ("decoders", "reachable", "recv_next", "send_seq", "topics", "topics_value")

    def __init__(self) -> None:
        self.topics: TopicSet | None = None
        self.topics_value: bytes | None = None  # the announced bytes ``topics`` came from
        self.reachable = True
        self.send_seq = [0, 0, 0, 0]
        self.recv_next: list[int | None] = [None, None, None, None]
        self.decoders: list[RecordDecoder | None] = [None, None, None, None]


class ChannelsCore:
    """Sans-I/O pub/sub for one node; see the module docstring for the policies."""

    def __init__(
        self,
        node_id: NodeId,
        *,
        epoch: int,
        counters: Counters | None = None,
        limits: ChannelLimits = DEFAULT_CHANNEL_LIMITS,
        topic_map: TopicMap | None = None,
        max_topics_per_node: int = DEFAULT_MAX_TOPICS,
        max_subscriptions_per_topic: int = 256,
        default_max_queued: int = 1024,
        max_remote_nodes: int = 4096,
    ) -> None:
        """``epoch`` is this node's boot epoch (informational: the membership record's
        incarnation orders our announced topic sets)."""
        for name, value in (
            ("max_topics_per_node", max_topics_per_node),
            ("max_subscriptions_per_topic", max_subscriptions_per_topic),
            ("default_max_queued", default_max_queued),
            ("max_remote_nodes", max_remote_nodes),
        ):
            if type(value) is not int or value <= 0:
                raise ConfigError(f"ChannelsCore.{name}: must be a positive integer")
        self.node_id = node_id
        self.epoch = epoch
        self.counters = counters if counters is not None else Counters()
        self.limits = limits
        self.topic_map = topic_map if topic_map is not None else TopicMap()
        """Which channel each topic rides (``names.TopicMap``)."""
        self.max_topics_per_node = max_topics_per_node
        self.max_subscriptions_per_topic = max_subscriptions_per_topic
        self.default_max_queued = default_max_queued
        self.max_remote_nodes = max_remote_nodes
        self.topics_version = 0
        """Changes of the local topic set since boot (the driver announces the set when
        this moves)."""
        self._subs: dict[str, dict[int, Subscription]] = {}
        self._next_sub_id = 1
        self._peers: dict[NodeId, _Peer] = {}
        self._subscribers: dict[str, set[NodeId]] = {}
        self._wildcards: set[NodeId] = set()  # nodes that announced every topic
        self._woken: dict[int, Subscription] = {}

    # -- local subscriptions -----------------------------------------------------------

    def subscribe(
        self, topic: str, *, max_queued: int | None = None, overflow: str = "drop_oldest"
    ) -> Subscription:
        """Subscribe to ``topic`` (a standard channel name or a custom topic).

        ``ConfigError`` for an invalid topic or policy, more than
        ``max_subscriptions_per_topic`` subscriptions on the topic, or a new topic beyond
        ``max_topics_per_node`` (the gossip bound).
        """
        check_topic(topic)
        if overflow not in OVERFLOW_POLICIES:
            raise ConfigError(f"overflow {overflow!r}: expected drop_oldest or drop_newest")
        bound = self.default_max_queued if max_queued is None else max_queued
        if type(bound) is not int or bound <= 0:
            raise ConfigError(f"max_queued {max_queued!r}: must be a positive integer")
        subs = self._subs.get(topic)
        if subs is None:
            if len(self._subs) >= self.max_topics_per_node:
                raise ConfigError(
                    f"topic {topic!r}: already subscribed to {len(self._subs)} topics "
                    f"(max_topics_per_node)"
                )
            subs = self._subs[topic] = {}
            self.topics_version += 1
        elif len(subs) >= self.max_subscriptions_per_topic:
            raise ConfigError(
                f"topic {topic!r}: already {len(subs)} subscriptions (max_subscriptions_per_topic)"
            )
        sub = Subscription(self._next_sub_id, topic, bound, overflow)
        self._next_sub_id += 1
        subs[sub.id] = sub
        log.debug("subscribe %s id=%d max_queued=%d %s", topic, sub.id, bound, overflow)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """End ``sub`` (its queued deliveries stay readable); idempotent."""
        if not sub.active:
            return
        sub.active = False
        subs = self._subs.get(sub.topic)
        if subs is not None and subs.pop(sub.id, None) is not None and not subs:
            del self._subs[sub.topic]
            self.topics_version += 1
        self._woken.pop(sub.id, None)

    def local_topics(self) -> list[str]:
        """Topics with at least one local subscription, sorted."""
        return sorted(self._subs)

    def take_woken(self) -> list[Subscription]:
        """Subscriptions whose queue went from empty to non-empty since the last call."""
        if not self._woken:
            return []
        woken = list(self._woken.values())
        self._woken.clear()
        return woken

    # -- topic sets ---------------------------------------------------------------------

    def topics_value(self) -> bytes | None:
        """This node's topic list as announced (``gossip.encode_topics``), or None when it
        subscribes to nothing (then no extension is announced at all)."""
        if not self._subs:
            return None
        return encode_topics(self._subs, max_topics=self.max_topics_per_node)

    def apply_topics(self, node_id: NodeId, value: bytes | None) -> bool:
        """``node_id``'s announced topic set (its membership record's extension 1, None if
        it has none): decode and hold it; True if our view changed.

        The membership orders the records, so the latest call wins. A value that does not
        decode clears the held set, is counted (``channels.topics.malformed``) and raises
        ``WireError``.
        """
        if node_id == self.node_id:
            return False
        peer = self._peers.get(node_id)
        if peer is not None and peer.topics_value == value and (
            value is not None or peer.topics is None
        ):
            return False  # the set we hold came from these very bytes
        if value is None:
            return self.set_remote_topics(node_id, None)
        try:
            topic_set = decode_topics(value, max_topics=self.max_topics_per_node)
        except WireError:
            self.counters["channels.topics.malformed"] += 1
            self.set_remote_topics(node_id, None)
            raise
        changed = self.set_remote_topics(node_id, topic_set)
        peer = self._peers.get(node_id)
        if peer is not None:
            peer.topics_value = value
        return changed

    def set_remote_topics(self, node_id: NodeId, topic_set: TopicSet | None) -> bool:
        """Hold ``topic_set`` as ``node_id``'s (None: it subscribes to nothing); True if
        our view changed."""
        if node_id == self.node_id:
            return False
        peer = self._peers.get(node_id)
        if peer is None:
            if topic_set is None:
                return False
            peer = self._peer(node_id, "topics")
            if peer is None:
                return False
        old = peer.topics
        peer.topics_value = None
        if old == topic_set:
            return False
        self._unindex(node_id, old)
        if topic_set is not None:
            if topic_set.wildcard:
                self._wildcards.add(node_id)
            for t in topic_set.topics:
                self._subscribers.setdefault(t, set()).add(node_id)
        peer.topics = topic_set
        self.counters["channels.topics.applied"] += 1
        return True

    def _unindex(self, node_id: NodeId, old: TopicSet | None) -> None:
        if old is None:
            return
        self._wildcards.discard(node_id)
        for t in old.topics:
            nodes = self._subscribers.get(t)
            if nodes is not None:
                nodes.discard(node_id)
                if not nodes:
                    del self._subscribers[t]

    def remote_topics(self, node_id: NodeId) -> TopicSet | None:
        """The topic set held for ``node_id`` (None if none)."""
        peer = self._peers.get(node_id)
        return None if peer is None else peer.topics

    def forget_node(self, node_id: NodeId) -> None:
        """Forget ``node_id`` (membership says it died or left): topics, sequences, streams."""
        peer = self._peers.pop(node_id, None)
        if peer is not None:
            self._unindex(node_id, peer.topics)

    def subscribers_of(self, topic: str) -> list[NodeId]:
        """Remote nodes a broadcast on ``topic`` goes to (those whose set holds it, and
        those that announced the wildcard), in node-id order."""
        return sorted(self._subscribers.get(topic, set()) | self._wildcards)

    def set_reachable(self, node_id: NodeId, reachable: bool) -> None:
        """Mark ``node_id`` reachable or not (the driver's view of its connection)."""
        peer = self._peers.get(node_id)
        if peer is None:
            if reachable:
                return
            peer = self._peer(node_id, "send")
            if peer is None:
                return
        peer.reachable = reachable

    def _peer(self, node_id: NodeId, why: str) -> _Peer | None:
        peer = self._peers.get(node_id)
        if peer is None:
            if len(self._peers) >= self.max_remote_nodes:
                self.counters[f"channels.{why}.refused_peers_full"] += 1
                return None
            peer = self._peers[node_id] = _Peer()
        return peer

    # -- publishing --------------------------------------------------------------------

    def broadcast(
        self, topic: Channel | str, message: Any, *, compression: bool = False
    ) -> list[OutgoingRecord]:
        """Publish ``message`` on ``topic``: deliver to local subscribers, return the sends.

        One record per reachable remote node subscribed to ``topic`` (node-id order).
        """
        return self._publish(topic, message, compression, local=True, fan_out=True)[0]

    def broadcast_from(
        self,
        sender: Subscription,
        topic: Channel | str,
        message: Any,
        *,
        compression: bool = False,
    ) -> list[OutgoingRecord]:
        """Like :meth:`broadcast`, but the local subscription ``sender`` does not get it."""
        return self._publish(
            topic, message, compression, local=True, exclude=sender.id, fan_out=True
        )[0]

    def local_broadcast(self, topic: Channel | str, message: Any) -> int:
        """Deliver ``message`` to this node's subscribers only; returns how many got it."""
        return self._publish(topic, message, False, local=True)[1]

    def direct_broadcast(
        self, node_id: NodeId, topic: Channel | str, message: Any, *, compression: bool = False
    ) -> list[OutgoingRecord]:
        """Deliver ``message`` to the subscribers on ``node_id`` only.

        For this node's own id: local delivery, no sends. Otherwise no local delivery and
        one record to ``node_id`` whatever its gossiped topics say (the receiver counts
        ``channels.receive.no_subscriber`` if nobody there listens), unless it is marked
        unreachable. ``ConfigError`` if the peer table is full.
        """
        if node_id == self.node_id:
            self._publish(topic, message, compression, local=True)
            return []
        if node_id not in self._peers and len(self._peers) >= self.max_remote_nodes:
            raise ConfigError(f"direct_broadcast: peer table full ({self.max_remote_nodes})")
        return self._publish(topic, message, compression, local=False, direct=node_id)[0]

    def _publish(
        self,
        topic_arg: Channel | str,
        message: Any,
        compression: bool,
        *,
        local: bool,
        exclude: int | None = None,
        direct: NodeId | None = None,
        fan_out: bool = False,
    ) -> tuple[list[OutgoingRecord], int]:
        """Validate, deliver locally if ``local``, and build the records: to ``direct``,
        or to every subscribed node if ``fan_out``. Returns (records, local deliveries)."""
        topic = topic_arg.name if isinstance(topic_arg, Channel) else check_topic(topic_arg)
        channel = self.topic_map.channel_of(topic)
        counters = self.counters
        if direct is not None:
            targets: list[NodeId] = [direct]
        elif fan_out:
            targets = self.subscribers_of(topic) if self._wildcards else sorted(
                self._subscribers.get(topic, ())
            )
        else:
            targets = []
        body: EncodedBody | None = None
        if targets:
            body = encode_body(message, compress=compression, limits=self.limits)
            if compression and not body.flags & COMPRESSED:
                counters["channels.send.compression_skipped"] += 1
        else:
            # Local delivery only: still refuse what could not be sent, so the local
            # behaviour does not depend on who else subscribes.
            encode_body(message, compress=False, limits=self.limits)
        counters["channels.published"] += 1
        delivered = 0
        if local:
            delivered = self._deliver_local(
                topic, channel.name, self.node_id, None, message, exclude
            )
        out: list[OutgoingRecord] = []
        if body is None:
            return out, delivered
        number = channel.number
        for node_id in targets:
            peer = self._peer(node_id, "send")
            if peer is None:
                continue
            seq = peer.send_seq[number]
            peer.send_seq[number] = seq + 1
            if not peer.reachable:
                counters["channels.send.skipped_unreachable"] += 1
                continue
            header = record_header(topic, seq, body)
            out.append(OutgoingRecord(node_id, channel, seq, header, body.body))
            counters["channels.sent.records"] += 1
            counters["channels.sent.bytes"] += len(header) + len(body.body)
        log.debug(
            "publish %s on %s: %d local deliveries, %d sends (encode_body, record_header)",
            topic,
            channel.name,
            delivered,
            len(out),
        )
        return out, delivered

    def _deliver_local(
        self,
        topic: str,
        channel: str,
        publisher: NodeId,
        seq: int | None,
        value: Any,
        exclude: int | None,
    ) -> int:
        subs = self._subs.get(topic)
        if not subs:
            return 0
        delivery = Delivery(topic, channel, publisher, seq, value)
        counters = self.counters
        n = 0
        for sub in subs.values():
            if sub.id == exclude:
                continue
            if sub._offer(delivery, counters):
                self._woken[sub.id] = sub
            n += 1
        counters["channels.delivered.local" if seq is None else "channels.delivered.remote"] += n
        return n

    # -- receiving ---------------------------------------------------------------------

    def receive(self, peer_id: NodeId, channel: Channel | str | int, data: bytes) -> int:
        """Bytes read from ``peer_id``'s stream of ``channel``: decode, order, deliver.

        Returns the number of records decoded. A decoding error is counted
        (``channels.receive.dropped.<code>``) and raised; the stream is broken until
        :meth:`stream_reset`.
        """
        ch = _channel_of(channel)
        counters = self.counters
        peer = self._peer(peer_id, "receive")
        if peer is None:
            return 0
        decoder = peer.decoders[ch.number]
        if decoder is None:
            decoder = peer.decoders[ch.number] = RecordDecoder(self.limits)
        if decoder.broken:
            counters["channels.receive.dropped_broken"] += 1
            return 0
        try:
            messages = decoder.feed(data)
        except WireError as exc:
            counters.inc(f"channels.receive.dropped.{exc.code}")
            log.debug("stream %s from %s broken: %s", ch.name, short_id(peer_id), exc)
            raise
        expected = peer.recv_next
        number = ch.number
        for m in messages:
            seq = m.seq
            want = expected[number]
            if seq == 0 and want is not None and want != 0:
                counters["channels.receive.seq_restarts"] += 1
            elif want is not None and seq < want:
                counters["channels.receive.seq_duplicates"] += 1
                continue
            elif want is not None and seq > want:
                counters["channels.receive.seq_gaps"] += 1
                counters["channels.receive.seq_gap_messages"] += seq - want
            elif want is None and seq != 0:
                # First record we see on this stream, mid-sequence (we restarted, or the
                # publisher sent earlier records while we were unknown): accepted.
                counters["channels.receive.seq_joined"] += 1
            expected[number] = seq + 1
            counters["channels.received.records"] += 1
            counters["channels.received.bytes"] += m.record_bytes
            if not self._deliver_local(m.topic, ch.name, peer_id, seq, m.value, None):
                counters["channels.receive.no_subscriber"] += 1
        return len(messages)

    def stream_reset(self, peer_id: NodeId, channel: Channel | str | int | None = None) -> None:
        """A stream from ``peer_id`` ended or was replaced (a new connection): drop its
        partial record (``channels.receive.partial_dropped``) and start framing afresh.
        ``channel=None`` resets all four. Sequence expectations are kept."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        numbers = range(4) if channel is None else (_channel_of(channel).number,)
        for number in numbers:
            decoder = peer.decoders[number]
            if decoder is not None and not decoder.at_boundary:
                self.counters["channels.receive.partial_dropped"] += 1
            peer.decoders[number] = None

    def has_peers(self) -> bool:
        """True if any peer is tracked."""
        return bool(self._peers)

    def peers(self) -> Iterable[NodeId]:
        """Tracked peers, in node-id order."""
        return sorted(self._peers)


def _channel_of(channel: Channel | str | int) -> Channel:
    if isinstance(channel, Channel):
        return channel
    if type(channel) is int and 0 <= channel < len(STANDARD_CHANNELS):
        return STANDARD_CHANNELS[channel]
    return channel_named(channel)
