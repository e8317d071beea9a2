"""The Trio runtime: ``open_node`` drives one ``NodeCore`` with a real UDP socket.

``open_node(config)`` is an async context manager yielding a :class:`Node`. Inside it:

- the keyring is loaded (the ``keyring`` argument, else ``config.cluster_key_file``);
- the stored state (identity, boot epoch) is read from ``config.data_dir`` (a
  :class:`~foundation_p2p.runtime.storage.DataDirStore`), or kept in memory when there is
  no data directory (a warning says the identity is then ephemeral);
- ``NodeCore`` is built with the machine's clocks, a ``random.Random`` seeded from
  ``os.urandom`` and ``os.urandom`` as its secret byte source;
- a UDP socket is bound (``node.address`` is the real bound address);
- ONE pump task waits for a datagram or the core's next deadline and feeds
  ``handle_datagram`` / ``handle_timer``; after each step it sends ``take_outgoing()``,
  makes ``take_writes()`` durable (in a worker thread) and only then calls
  ``writes_done`` (which releases the datagrams that waited for them), and hands
  ``take_events()`` to the subscribers. A step takes every datagram already waiting in
  the socket, up to :data:`RECEIVE_BATCH` (non-blocking ``recvfrom`` until
  ``BlockingIOError``, each given to ``handle_datagram``), then does one such flush;
  datagrams go out with non-blocking ``sendto`` (waiting ``trio.lowlevel.wait_writable``
  only when the kernel's send buffer is full);
- application services run in the node's nursery (``Node.start_service``).

Membership: ``node.membership`` is the SWIM core (``core.membership``, a
:class:`~foundation_p2p.membership.swim.SwimMembership`); ``members()``, ``member(id)``,
``membership_events()``, ``update_metadata(...)`` and ``leave()`` are thin layers over it.

Transport: ``node.transport`` is the node's
:class:`~foundation_p2p.transport.endpoint.TransportEndpoint` (``core.transport``): one
encrypted connection per peer on the same UDP socket. :meth:`Node.connect`,
:meth:`Node.open_stream` and :meth:`Node.accept_stream` are a thin async layer over it;
a :class:`TransportStream` sends with :meth:`TransportStream.send` (waiting for
flow-control credit, never dropping; the wait is bounded by ``send_timeout_s``) and
receives as an async iterator of byte chunks (a bounded buffer; see
:class:`TransportStream` for what happens when the reader is slow).

Leaving the ``async with`` (normally, by an exception or by cancellation) cancels the
services, stops the pump, gives the core a ``Leave`` command (unless ``leave()`` already
did: the membership core signs a LEFT announcement and gossips it at once), closes the
transport connections (CONNECTION_CLOSE to each peer), sends the last datagrams (bounded by
``leave_timeout_s``) and closes the socket: nothing outlives the block.

Channels: ``node.channels`` (:class:`Channels`) publishes and subscribes over the
connections' channel streams (``core.channels``, spec/channels.md):
``broadcast``/``broadcast_from``/``local_broadcast``/``direct_broadcast``, and
``async with node.channels.subscribe(topic) as sub: async for delivery in sub``.

Registry and supervisor: ``node.registry`` (:class:`~foundation_p2p.runtime.registry.
Registry`), ``node.supervisor`` (:class:`~foundation_p2p.runtime.registry.Supervisor`) and
the seed's ``node.processes`` (:class:`~foundation_p2p.runtime.registry.Processes`), over
``core.registry`` and ``core.supervisor``. After each step the pump runs the supervisor's
actions (``core.supervisor.take_actions()``: services started in the nursery, stopped by
cancellation or handoff) and hands the registry's changes (``core.registry.take_changes()``)
to the watches. Closing the node first hands its services off (:meth:`Node.hand_off`:
``supervisor.prepare_shutdown``, the stops, then ``registry.release_own``), bounded by
``handoff_timeout_s``, then leaves.

Failures: a bad datagram is the core's business (dropped and counted, see
``NodeCore.handle_datagram``); an exception escaping a ``NodeCore`` call is a bug and
ends the node with that exception, as does a storage failure (a node that cannot make
its state durable must not go on). Send and receive errors of the socket are counted
(``udp.send_errors``, ``udp.receive_errors``; an oversize datagram refused by the kernel,
``EMSGSIZE``, is counted apart in ``udp.send_too_big``: path-MTU probes expect it) and the
pump goes on.

Clocks: ``NodeCore`` deadlines are ``time.monotonic()`` seconds; Trio's own clock
(``trio.current_time()``) has another origin, so the pump converts a deadline into a Trio
deadline as ``trio.current_time() + (deadline - time.monotonic())``.

Logging goes to ``foundation_p2p.runtime``; debug lines name the ``NodeCore`` calls made.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import socket as stdlib_socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import trio

from foundation_p2p.addresses import (
    NODE_ID_BYTES,
    Address,
    NodeId,
    format_address,
    parse_address,
    short_id,
)
from foundation_p2p.channels.core import Delivery
from foundation_p2p.channels.core import Subscription as CoreSubscription
from foundation_p2p.channels.names import Channel
from foundation_p2p.channels.routing import RoutingDecision, explain, route_message
from foundation_p2p.channels.subsystem import ChannelsSubsystem
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus.memory_storage import MemoryStorage
from foundation_p2p.consensus.rawnode import RawNode
from foundation_p2p.consensus.storage import LogStorage
from foundation_p2p.consensus.wal import WalStorage
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.durability import IDENTITY_KEY
from foundation_p2p.errors import ConfigError
from foundation_p2p.events import Event, Join, Leave
from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.state import Member
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.node import NodeCore
from foundation_p2p.runtime.admin import RuntimeHealth, RuntimeProbe
from foundation_p2p.runtime.consensus import KV, Consensus, RaftLogDriver
from foundation_p2p.runtime.coordination import Coordination
from foundation_p2p.runtime.registry import Processes, Registry, Supervisor
from foundation_p2p.runtime.services import ServiceRunner
from foundation_p2p.runtime.storage import DataDirStore, MemoryStore, Store
from foundation_p2p.runtime.udp import (
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    MAX_DATAGRAM_BYTES,
    SOL_UDP,
    UDP_SEGMENT,
    bind_udp_socket,
    bound_address,
    is_numeric_host,
    resolve,
    supports_gso,
)
from foundation_p2p.runtime.vfs import OsVfs
from foundation_p2p.transport.connection import Connection, StreamReset
from foundation_p2p.transport.endpoint import (
    ConnectFailed,
    EndpointEvent,
    PeerDisconnected,
    PeerEvent,
    StreamData,
    TransportEndpoint,
)
from foundation_p2p.transport.scheduler import DEFAULT_URGENCY
from foundation_p2p.wire import cbor

log = logging.getLogger("foundation_p2p.runtime")

DEFAULT_EVENT_BUFFER = 1024
"""Events buffered per subscriber before new ones are dropped for it."""
DEFAULT_LEAVE_TIMEOUT_S = 1.0
"""Longest time spent sending the leave announcement and last datagrams when closing."""
DEFAULT_HANDOFF_TIMEOUT_S = 4.0
"""Longest time spent handing supervised services off when closing (:meth:`Node.hand_off`)."""
MEMBERSHIP_EVENTS: tuple[type[Event], ...] = (
    MemberJoined,
    MemberUpdated,
    MemberSuspect,
    MemberAlive,
    MemberFailed,
    MemberLeft,
    MemberReaped,
)
"""The membership event classes (what :meth:`Node.membership_events` delivers)."""
DEFAULT_STREAM_BUFFER_BYTES = 4 * 1024 * 1024
"""Received bytes a :class:`TransportStream` buffers before its connection is paused."""
DEFAULT_MAX_INCOMING_STREAMS = 256
"""Streams opened by peers and not yet taken with :meth:`Node.accept_stream`, at most."""
DEFAULT_SEND_TIMEOUT_S = 30.0
"""Longest :meth:`TransportStream.send` waits for flow-control credit before giving up."""
DEFAULT_CONNECT_TIMEOUT_S = 10.0
"""Longest :meth:`Node.connect` waits for the handshake."""
RECEIVE_BATCH = 64
"""Datagrams the pump reads from the socket in one step before one flush. Bound: a step
that reaches it stops reading (``udp.receive_batch_cut`` counts it), flushes, checks the
core's timers and lets the other Trio tasks run before reading on; the rest waits in the
kernel's receive buffer."""
MAX_NUMERIC_HOSTS = 4096
"""Destination hosts remembered as numeric or not (so a send needs no lookup); when full
the memory is cleared and rebuilt (bounded, never wrong: it is only a cache)."""


def machine_now() -> Now:
    """The machine's clocks as a :class:`Now`: ``time.monotonic()`` and ``time.time()``."""
    return Now(time.monotonic(), time.time())


class Subscription:
    """A bounded stream of a node's events: ``async with node.events() as events``.

    Holds a ``trio.open_memory_channel(max_buffered)``. Overflow policy: when the
    subscriber is ``max_buffered`` events behind, each new event is dropped for this
    subscriber only (other subscribers and the node are not slowed down); every drop is
    counted in ``dropped`` and in the node's ``events.dropped_subscriber_full`` counter.
    Iteration ends when the node closes.
    """

    def __init__(
        self, node: Node, max_buffered: int, types: tuple[type[Event], ...]
    ) -> None:
        if max_buffered < 1:
            raise ConfigError(f"events: max_buffered must be at least 1, got {max_buffered}")
        self._node = node
        self.types = types
        """Event classes delivered (empty: every event)."""
        self.dropped = 0
        """Events dropped because this subscriber's buffer was full."""
        self._send, self._receive = trio.open_memory_channel[Event](max_buffered)
        self._entered = False

    async def __aenter__(self) -> Subscription:
        self._node._subscribe(self)
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._node._unsubscribe(self)
        self._send.close()
        self._receive.close()

    def _offer(self, event: Event) -> bool:
        """Queue ``event`` without waiting; False if this subscriber is gone."""
        if self.types and not isinstance(event, self.types):
            return True
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            self._node.counters.inc("events.dropped_subscriber_full")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def _end(self) -> None:
        self._send.close()

    async def receive(self) -> Event:
        """The next event; ``trio.EndOfChannel`` once the node has closed."""
        if not self._entered:
            raise RuntimeError("use the subscription as `async with node.events() as events`")
        return await self._receive.receive()

    def __aiter__(self) -> Subscription:
        if not self._entered:
            raise RuntimeError("use the subscription as `async with node.events() as events`")
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class TransportStream:
    """One stream of a connection to a peer, for Trio code (from :meth:`Node.open_stream`
    or :meth:`Node.accept_stream`).

    Sending: ``await stream.send(data, end=False)`` hands the bytes to the connection as
    its send buffer frees up, waiting for flow-control credit instead of dropping; a wait
    longer than ``send_timeout_s`` raises ``trio.TooSlowError`` (what was accepted before
    stays sent). ``await stream.end()`` finishes our side.

    Receiving: ``async for chunk in stream`` yields the peer's bytes in order until it
    finishes the stream; ``await stream.receive_all(max_bytes)`` gathers them. Received
    bytes wait in a buffer of ``max_buffered_bytes``. Overflow policy: when a stream's
    buffer is over its bound, the node stops reading the whole connection of that peer
    (``TransportEndpoint.pause``), so the peer runs out of flow-control credit and waits;
    reading below half the bound resumes it. Nothing is dropped; the buffer can exceed its
    bound by at most what one read of the connection hands over (one receive window),
    and the other streams of that peer wait meanwhile (counted:
    ``transport.paused``/``transport.resumed``).

    When the connection ends (peer gone, replaced by a new one after a restart, closed),
    sending raises ``trio.BrokenResourceError`` and the iterator raises it after the
    bytes already received; a stream reset by the peer does the same.

    Equivalent lower-level calls: ``node.transport.connection(node_id)`` is the
    :class:`~foundation_p2p.transport.connection.Connection`; sending is its
    ``writable(stream_id)`` and ``send(stream_id, data, end)`` then :meth:`Node.wake`;
    receiving is the :class:`~foundation_p2p.transport.endpoint.StreamData` events of
    ``node.transport.take_events()`` (the pump takes them).
    """

    def __init__(
        self, node: Node, conn: Connection, node_id: NodeId, stream_id: int,
        max_buffered_bytes: int, send_timeout_s: float,
    ) -> None:
        self._node = node
        self.connection = conn
        """The connection carrying the stream (public: the leaky facade)."""
        self.node_id = node_id
        """The peer's node id."""
        self.stream_id = stream_id
        self.max_buffered_bytes = max_buffered_bytes
        self.send_timeout_s = send_timeout_s
        self._chunks: deque[bytes] = deque()
        self.buffered = 0
        """Received bytes not yet taken by the reader."""
        self._ended = False
        self._broken: str | None = None
        self._arrived = trio.Event()

    @property
    def _key(self) -> tuple[bytes, int]:
        return (self.connection.local_cid, self.stream_id)

    async def send(self, data: bytes, end: bool = False) -> None:
        """Send all of ``data`` (then finish our side if ``end``), waiting for credit."""
        node = self._node
        conn = self.connection
        sid = self.stream_id
        view = memoryview(data)
        total = len(view)
        offset = 0
        with trio.fail_after(self.send_timeout_s):
            while True:
                self._check_sendable()
                room = conn.writable(sid)
                if room > 0 or (offset == total and end):
                    piece = bytes(view[offset : offset + room])
                    last = offset + len(piece) == total
                    accepted = node.core.transport.send(
                        time.monotonic(), self.node_id, sid, piece, end and last
                    )
                    offset += accepted
                    node.wake()
                    if offset == total:
                        return
                # no room: wait for acknowledgements to free the buffer (a pump step)
                await node.wait_until(
                    lambda: conn.is_closed or conn.state_name != "established"
                    or conn.writable(sid) > 0
                )

    async def end(self) -> None:
        """Finish our side of the stream (the peer's iterator then ends)."""
        await self.send(b"", end=True)

    def _check_sendable(self) -> None:
        if self._broken is not None:
            raise trio.BrokenResourceError(self._broken)
        transport = self._node.core.transport
        if transport.connection(self.node_id) is not self.connection or \
                not self.connection.is_established:
            raise trio.BrokenResourceError(
                f"stream {self.stream_id}: the connection to {self.node_id.hex()} ended"
            )

    def _data(self, data: bytes, end: bool) -> None:
        if data:
            self._chunks.append(data)
            self.buffered += len(data)
        if end:
            self._ended = True
        self._arrived.set()

    def _break(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
        self._arrived.set()

    async def receive(self) -> bytes:
        """The next chunk of bytes; ``trio.EndOfChannel`` once the peer finished."""
        while not self._chunks:
            if self._ended:
                raise trio.EndOfChannel
            if self._broken is not None:
                raise trio.BrokenResourceError(self._broken)
            self._arrived = trio.Event()
            await self._arrived.wait()
        chunk = self._chunks.popleft()
        self.buffered -= len(chunk)
        self._node._stream_drained(self)
        return chunk

    async def receive_all(self, max_bytes: int) -> bytes:
        """Every byte until the peer finishes; ``ValueError`` beyond ``max_bytes``."""
        out = bytearray()
        async for chunk in self:
            out += chunk
            if len(out) > max_bytes:
                raise ValueError(f"stream {self.stream_id}: more than {max_bytes} bytes")
        return bytes(out)

    def __aiter__(self) -> TransportStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class ChannelSubscription:
    """One local subscription to a channel or topic, for Trio code (from
    ``node.channels.subscribe(...)``): ``async with`` it, then ``async for delivery in
    sub`` (each a :class:`~foundation_p2p.channels.core.Delivery`: topic, channel,
    publisher, seq, value).

    Deliveries wait in a bounded queue of ``max_queued``; when it is full, one more drops
    the oldest waiting (``overflow="drop_oldest"``, the default) or itself
    (``"drop_newest"``), counted in :attr:`dropped` and the node's
    ``channels.queue.dropped_oldest``/``dropped_newest``. Publishers never wait for a
    slow subscriber.

    Equivalent lower-level calls: ``core.channels.subscribe(topic, max_queued=...,
    overflow=...)`` returns the :class:`~foundation_p2p.channels.core.Subscription`
    (:attr:`subscription`), whose ``take()`` drains the queue; the pump learns which
    queues filled from ``core.channels.core.take_woken()``; leaving the block is
    ``core.channels.unsubscribe(sub)``.
    """

    def __init__(
        self, node: Node, topic: str, max_queued: int | None, overflow: str
    ) -> None:
        self._node = node
        self.topic = topic
        """The channel or topic subscribed to."""
        self._max_queued = max_queued
        self._overflow = overflow
        self.subscription: CoreSubscription | None = None
        """The core's subscription once entered (public: the leaky facade)."""
        self._arrived = trio.Event()
        self._closed = False

    @property
    def dropped(self) -> int:
        """Deliveries lost to the queue's overflow policy."""
        return 0 if self.subscription is None else self.subscription.dropped

    async def __aenter__(self) -> ChannelSubscription:
        node = self._node
        node._check_open()
        sub = node.core.channels.subscribe(
            self.topic, max_queued=self._max_queued, overflow=self._overflow
        )
        log.debug("channels: core.channels.subscribe(%r) -> id %d", self.topic, sub.id)
        self.subscription = sub
        node._channel_subs[sub.id] = self
        node.wake()  # the new topic set is gossiped by the next timer
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sub = self.subscription
        if sub is not None:
            self._node._channel_subs.pop(sub.id, None)
            self._node.core.channels.unsubscribe(sub)
            log.debug("channels: core.channels.unsubscribe(id %d)", sub.id)
            if not self._node._closed:
                self._node.wake()
        self._end()

    def _end(self) -> None:
        self._closed = True
        self._arrived.set()

    async def receive(self) -> Delivery:
        """The next delivery (waits); ``trio.EndOfChannel`` once unsubscribed or the node
        closed."""
        sub = self.subscription
        if sub is None:
            raise RuntimeError("use the subscription as `async with node.channels.subscribe(...)`")
        while True:
            got = sub.take(1)
            if got:
                return got[0]
            if self._closed:
                raise trio.EndOfChannel
            self._arrived = trio.Event()
            await self._arrived.wait()

    def __aiter__(self) -> ChannelSubscription:
        return self

    async def __anext__(self) -> Delivery:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class Channels:
    """Publish/subscribe on the node (``node.channels``; spec/channels.md), for Trio code.

    Phoenix.PubSub's operations over the node's connections: :meth:`broadcast`,
    :meth:`broadcast_from`, :meth:`local_broadcast`, :meth:`direct_broadcast`, and
    :meth:`subscribe`; :meth:`route_message` and :meth:`explain` pick a channel by the
    routing rules. Publishing never blocks: local subscribers get the message at once,
    each remote subscriber's record is queued (bounded per peer; overflow dropped and
    counted, see :mod:`foundation_p2p.channels.subsystem`) and written by the pump.

    Equivalent lower-level calls: ``node.core.channels`` (the
    :class:`~foundation_p2p.channels.subsystem.ChannelsSubsystem`) has the same methods
    with ``now`` as first argument, then :meth:`Node.wake`; ``node.core.channels.core`` is
    the sans-I/O :class:`~foundation_p2p.channels.core.ChannelsCore`.
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def subsystem(self) -> ChannelsSubsystem:
        """``node.core.channels`` (public: the leaky facade)."""
        return self._node.core.channels

    def subscribe(
        self, channel_or_topic: Channel | str, *, max_queued: int | None = None,
        overflow: str = "drop_oldest",
    ) -> ChannelSubscription:
        """A subscription to a standard channel or a custom topic, used as ``async with``.

        ``max_queued`` defaults to 1,024; ``overflow`` is ``drop_oldest`` or
        ``drop_newest``. ``ConfigError`` (on entering) for a bad topic or policy or too
        many topics. Equivalent: ``core.channels.subscribe(topic, ...)``.
        """
        topic = channel_or_topic.name if isinstance(channel_or_topic, Channel) \
            else channel_or_topic
        return ChannelSubscription(self._node, topic, max_queued, overflow)

    def broadcast(
        self, channel: Channel | str, message: Any, compression: bool = False
    ) -> int:
        """Publish to every subscriber of ``channel`` (a channel or topic), here and on
        the nodes that gossiped it; returns the records queued for remote nodes.
        Equivalent: ``core.channels.broadcast(now, channel, message, compression=...)``,
        then :meth:`Node.wake`."""
        node = self._node
        node._check_open()
        n = node.core.channels.broadcast(
            machine_now(), channel, message, compression=compression
        )
        log.debug("channels: core.channels.broadcast(%s) -> %d records", channel, n)
        node._channels_published()
        return n

    def broadcast_from(
        self, sender: ChannelSubscription, channel: Channel | str, message: Any,
        compression: bool = False,
    ) -> int:
        """:meth:`broadcast`, except to the local subscription ``sender``. Equivalent:
        ``core.channels.broadcast_from(now, sender.subscription, channel, message)``."""
        node = self._node
        node._check_open()
        if sender.subscription is None:
            raise RuntimeError("broadcast_from: the sender subscription was not entered")
        n = node.core.channels.broadcast_from(
            machine_now(), sender.subscription, channel, message, compression=compression
        )
        log.debug("channels: core.channels.broadcast_from(%s) -> %d records", channel, n)
        node._channels_published()
        return n

    def local_broadcast(self, channel: Channel | str, message: Any) -> int:
        """Deliver to this node's subscribers only; returns how many got it. Equivalent:
        ``core.channels.local_broadcast(channel, message)``."""
        node = self._node
        node._check_open()
        n = node.core.channels.local_broadcast(channel, message)
        log.debug("channels: core.channels.local_broadcast(%s) -> %d", channel, n)
        node._channels_published()
        return n

    def direct_broadcast(
        self, node_id: NodeId, channel: Channel | str, message: Any,
        compression: bool = False,
    ) -> int:
        """Deliver to the subscribers on ``node_id`` only (whatever gossip says; local
        delivery for our own id). Equivalent: ``core.channels.direct_broadcast(now,
        node_id, channel, message)``, then :meth:`Node.wake`."""
        node = self._node
        node._check_open()
        n = node.core.channels.direct_broadcast(
            machine_now(), node_id, channel, message, compression=compression
        )
        log.debug("channels: core.channels.direct_broadcast(%s, %s) -> %d records",
                  short_id(node_id), channel, n)
        node._channels_published()
        return n

    def route_message(self, message: Any, priority: str = "normal") -> Channel:
        """The channel the routing rules give ``message`` (spec/channels.md section 3).
        Equivalent: ``foundation_p2p.channels.routing.route_message``."""
        return route_message(message, priority)

    def explain(self, message: Any, priority: str = "normal") -> RoutingDecision:
        """Why :meth:`route_message` chooses its channel (rule, sizes). Equivalent:
        ``foundation_p2p.channels.routing.explain``."""
        return explain(message, priority)


class Node:
    """A running node: the public face of the Trio runtime (yielded by :func:`open_node`).

    ``core`` is the :class:`~foundation_p2p.node.NodeCore` itself, public on purpose (the
    leaky facade): every method here is a thin layer whose docstring names the
    equivalent lower-level calls. Call ``core`` methods from the node's own Trio thread;
    after an input call, :meth:`wake` lets the pump send what it produced.

    Membership: :attr:`membership` (the SWIM core, ``core.membership``), :meth:`members`,
    :meth:`member`, :meth:`membership_events`, :meth:`update_metadata` and :meth:`leave`;
    :meth:`wait_until` waits for any condition on the node's state.
    """

    def __init__(
        self,
        core: NodeCore,
        config: NodeConfig,
        sock: trio.socket.SocketType,
        store: Store,
        *,
        leave_timeout_s: float = DEFAULT_LEAVE_TIMEOUT_S,
        raw: stdlib_socket.socket,
    ) -> None:
        self.core = core
        """The sans-I/O ``NodeCore`` this node drives (public: the leaky facade)."""
        self.config = config
        """The configuration the node was opened with."""
        self.address: Address = bound_address(sock)
        """The address the UDP socket is bound to (the real port when ``bind`` had port 0)."""
        self.store = store
        """Where durable writes go (a data directory, or memory)."""
        self.leave_timeout_s = leave_timeout_s
        if raw.fileno() != sock.fileno():
            raise ValueError("Node: raw must be the standard-library socket sock wraps")
        self._sock = sock
        """The Trio socket (Trio code may use it; the pump does not)."""
        raw.setblocking(False)
        self._raw = raw
        """The same socket as a standard-library object: the pump's non-blocking calls."""
        self.gso = supports_gso(raw)
        """Send runs of equal-size datagrams to one peer in one ``sendmsg`` with Linux UDP
        segmentation offload (``UDP_SEGMENT``): True where the kernel knows it; set it
        False to send one datagram per system call. Turned off by itself if the kernel
        refuses (see :meth:`_send`)."""
        self._numeric_hosts: dict[str, bool] = {}
        self._family = sock.family
        self._subscribers: list[Subscription] = []
        self._services: ServiceRunner | None = None
        self._wait_scope: trio.CancelScope | None = None
        self._pump_scope = trio.CancelScope()
        self._pump_done = trio.Event()
        self._dirty = False
        self._closed = False
        self._left = False
        self._stepped = trio.Event()
        self.stream_buffer_bytes = DEFAULT_STREAM_BUFFER_BYTES
        """``max_buffered_bytes`` of each :class:`TransportStream` (set before use)."""
        self.send_timeout_s = DEFAULT_SEND_TIMEOUT_S
        """``send_timeout_s`` of each :class:`TransportStream`."""
        self._streams: dict[tuple[bytes, int], TransportStream] = {}
        self._full: dict[NodeId, set[tuple[bytes, int]]] = {}
        self._incoming_send, self._incoming = trio.open_memory_channel[TransportStream](
            DEFAULT_MAX_INCOMING_STREAMS
        )
        self._channel_subs: dict[int, ChannelSubscription] = {}
        self.channels = Channels(self)
        """Publish/subscribe over the node's connections (:class:`Channels`)."""
        self.registry = Registry(self)
        """The replicated name registry (:class:`~foundation_p2p.runtime.registry.Registry`)."""
        self.supervisor = Supervisor(self)
        """The distributed supervisor and its service table
        (:class:`~foundation_p2p.runtime.registry.Supervisor`)."""
        self.processes = Processes(self)
        """The seed's facade for singletons
        (:class:`~foundation_p2p.runtime.registry.Processes`)."""
        self.handoff_timeout_s = DEFAULT_HANDOFF_TIMEOUT_S
        """Longest time :meth:`hand_off` waits when the node closes."""
        self._handed_off = False
        self.health = RuntimeHealth(core.health, machine_now)
        """The node's health (:class:`~foundation_p2p.runtime.admin.RuntimeHealth`):
        ``health.report()`` reads the gossiped summaries (``core.health.report(now)``), no
        network round trip; ``health.metrics_text()`` is the Prometheus text."""
        self.admin_port: int | None = None
        """The admin endpoint's bound port when ``open_node(admin=...)`` started one."""
        self._raft_log = RaftLogDriver(self)
        self.raft_storage: LogStorage | None = None
        """The Raft log (WAL in ``data_dir/raft``, or memory) when ``[consensus]`` is set."""
        self.consensus = Consensus(self)
        """The Raft member's facade (:class:`~foundation_p2p.runtime.consensus.Consensus`:
        propose, read, status; ``core.consensus`` below it)."""
        self.kv = KV(self.consensus)
        """The replicated KV store (:class:`~foundation_p2p.runtime.consensus.KV`)."""
        self.coordination = Coordination(self)
        """Agents, auctions, votes, negotiation over the Raft group
        (:class:`~foundation_p2p.runtime.coordination.Coordination`)."""

    @property
    def raft(self) -> RawNode | None:
        """The Raft core (``core.consensus.raw``), ``None`` before the group forms or
        without ``[consensus]``."""
        sub = self.core.consensus
        return sub.raw if sub is not None else None

    # -- identity ----------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        """This node's id (16 bytes, from its Ed25519 identity). Same as ``core.node_id``."""
        return self.core.node_id

    @property
    def name(self) -> str:
        """The configured name, or the first 8 hex digits of the node id if none was set."""
        return self.config.name or short_id(self.node_id)

    @property
    def boot_epoch(self) -> int:
        """This start's boot epoch. Same as ``core.boot_epoch``."""
        return self.core.boot_epoch

    @property
    def advertised(self) -> Address:
        """The address peers should use: ``config.advertise`` if set, else :attr:`address`."""
        return self.config.advertise or self.address

    @property
    def counters(self) -> Counters:
        """The node's counters (``core.counters``; the runtime adds ``udp.*``, ``services.*``
        and ``events.dropped_subscriber_full`` to the same table)."""
        return self.core.counters

    # -- application API ---------------------------------------------------------------

    def events(
        self, *types: type[Event], max_buffered: int = DEFAULT_EVENT_BUFFER
    ) -> Subscription:
        """A fresh bounded subscription to the node's events (only ``types``, if given).

        Use as ``async with node.events(PeerAcked) as events: async for ev in events``.
        A subscription receives the events emitted while it exists, none from before:
        to see every event of a join, subscribe first, then call :meth:`join` (rather
        than passing ``join`` in the configuration).
        Equivalent lower-level calls: the pump calls ``core.take_events()`` after each
        step and offers each event to every subscription without waiting (see
        :class:`Subscription` for the overflow policy).
        """
        if self._closed:
            raise trio.ClosedResourceError("the node is closed")
        return Subscription(self, max_buffered, types)

    async def join(self, addresses: Iterable[Address | str]) -> None:
        """Contact these peers (``(host, port)`` tuples or ``"HOST:PORT"`` texts).

        Names are resolved first (in the socket's address family), so a peer's answers
        match the address it was pinged at. Equivalent lower-level calls:
        ``core.handle_command(now, Join(resolved_addresses))`` then :meth:`wake`.
        """
        self._check_open()
        resolved = await self._resolve_all(addresses)
        log.debug("join %s: NodeCore.handle_command(Join)", [format_address(a) for a in resolved])
        self.core.handle_command(machine_now(), Join(resolved))
        self.wake()

    def leave(self) -> None:
        """Leave the cluster gracefully: peers will report this node ``MemberLeft``, not failed.

        The membership core broadcasts a signed LEFT announcement and stops probing; the
        node keeps answering peers until it closes (closing the node does this too, and
        waits up to ``leave_timeout_s`` for the announcement to go out). Supervised
        services are not handed off by ``leave()`` itself: ``await node.hand_off()`` first
        (closing the node does both, in that order). Equivalent lower-level calls:
        ``core.handle_command(now, Leave())`` (which reaches ``core.membership`` and the
        static prober) then :meth:`wake`.
        """
        self._check_open()
        self._leave()

    def _leave(self) -> None:
        if self._left:
            return
        self._left = True
        log.debug("leave: NodeCore.handle_command(Leave)")
        self.core.handle_command(machine_now(), Leave())
        self.wake()

    # -- membership --------------------------------------------------------------------

    @property
    def membership(self) -> SwimMembership:
        """The SWIM membership core (``core.membership``), public on purpose.

        Read it freely (``members()``, ``local``, ``alive_count()``, ``awareness``,
        ``config``); after calling one of its input methods directly, call :meth:`wake`.
        """
        return self.core.membership

    def members(self) -> list[Member]:
        """Every member this node knows, itself included, sorted by node id.

        Each :class:`~foundation_p2p.membership.state.Member` is an immutable snapshot
        (state, incarnation, address, metadata...). Equivalent lower-level call:
        ``core.membership.members()``.
        """
        return self.core.membership.members()

    def member(self, node_id: NodeId | str) -> Member | None:
        """The member with this node id (16 bytes or 32 hex digits), or None if unknown.

        Equivalent lower-level call: ``core.membership.member(node_id)``.
        """
        if isinstance(node_id, str):
            try:
                raw = bytes.fromhex(node_id)
            except ValueError:
                raise ValueError(f"member: {node_id!r} is not a hex node id") from None
            node_id = raw
        if len(node_id) != NODE_ID_BYTES:
            raise ValueError(
                f"member: a node id is {NODE_ID_BYTES} bytes, got {len(node_id)}"
            )
        return self.core.membership.member(node_id)

    def membership_events(self, max_buffered: int = DEFAULT_EVENT_BUFFER) -> Subscription:
        """A subscription to the membership events only (joined, updated, suspect, alive,
        failed, left, reaped).

        Use as ``async with node.membership_events() as events: async for ev in events``.
        Equivalent lower-level call: ``node.events(*MEMBERSHIP_EVENTS)``.
        """
        return self.events(*MEMBERSHIP_EVENTS, max_buffered=max_buffered)

    def update_metadata(self, value: bytes | Any) -> None:
        """Set this node's metadata and spread it (a new incarnation, signed, gossiped).

        ``value`` is either the bytes to publish as they are, or any value deterministic
        CBOR can encode (it is encoded with :func:`foundation_p2p.wire.cbor.encode`; read
        it back with ``cbor.decode(member.metadata)``). Raises
        :class:`~foundation_p2p.errors.LimitError` if the bytes exceed the membership's
        ``max_metadata_bytes``, :class:`~foundation_p2p.errors.MalformedError` if the
        value cannot be encoded and ``ValueError`` after :meth:`leave`. Equivalent
        lower-level calls:
        ``core.membership.update_metadata(now, data)`` then :meth:`wake`.
        """
        self._check_open()
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
        else:
            data = cbor.encode(value)
        log.debug("update_metadata: SwimMembership.update_metadata(%d bytes)", len(data))
        self.core.membership.update_metadata(machine_now(), data)
        self.wake()

    def start_service(
        self, async_fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None
    ) -> int:
        """Run ``await async_fn(*args)`` inside the node; return the service's id.

        The service is cancelled when the node closes. If it raises, the error is logged
        with its traceback and counted in ``services.crashed``; the node keeps running.
        Equivalent lower-level calls: ``nursery.start_soon`` in the node's nursery, with
        that logging and counting around the call.
        """
        self._check_open()
        assert self._services is not None
        return self._services.start(async_fn, *args, name=name)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true; it is checked now and after each pump step.

        Bound it with ``trio.fail_after``/``move_on_after``. Raises
        ``trio.ClosedResourceError`` if the node closes first. Equivalent lower-level
        calls: none (the pump signals each step it completes; a step is one batch of
        waiting datagrams (at most :data:`RECEIVE_BATCH`), a timer or a wake-up handled and
        its outputs sent).
        """
        while not predicate():
            self._check_open()
            await self._stepped.wait()

    def wake(self) -> None:
        """Make the pump send, persist and deliver what the core now holds, and recompute
        its next deadline. Call it after calling ``core`` input methods directly."""
        self._dirty = True
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    # -- transport ---------------------------------------------------------------------

    @property
    def transport(self) -> TransportEndpoint:
        """The node's transport endpoint (``core.transport``), public on purpose.

        Its connections (``transport.connection(node_id)``) are the full stream API;
        after calling one of their input methods directly, call :meth:`wake`.
        """
        return self.core.transport

    async def connect(
        self, node_id: NodeId, addr: Address | None = None,
        timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> Connection:
        """Return an established connection to ``node_id``, dialling it if needed.

        ``addr`` defaults to the member's address in the membership. Raises
        ``ConfigError`` (no address known, our own id), ``ConnectionError`` when the
        handshake fails and ``trio.TooSlowError`` after ``timeout_s``. Equivalent
        lower-level calls: ``core.connect(now, node_id, addr)``, :meth:`wake`, then wait
        for the connection's ``is_established``.
        """
        self._check_open()
        conn = self.core.connect(machine_now(), node_id, addr)
        self.wake()
        with trio.fail_after(timeout_s):
            await self.wait_until(lambda: conn.is_established or conn.state_name != "handshake")
        if not conn.is_established:
            reason = conn.close_reason.reason if conn.close_reason else conn.state_name
            raise ConnectionError(f"connect to {node_id.hex()}: {reason}")
        # simultaneous dials can leave the other connection as the peer's
        current = self.core.transport.connection(node_id)
        return current if current is not None and current.is_established else conn

    async def open_stream(
        self, node_id: NodeId, *, urgency: int = DEFAULT_URGENCY, addr: Address | None = None,
    ) -> TransportStream:
        """Open a bidirectional stream to ``node_id`` (connecting first if needed).

        ``urgency`` 0..7 (RFC 9218; 0 goes first). Equivalent lower-level calls:
        :meth:`connect`, then ``transport.open_stream(now, node_id, urgency=urgency)``.
        """
        conn = await self.connect(node_id, addr)
        sid = self.core.transport.open_stream(time.monotonic(), node_id, urgency=urgency)
        stream = TransportStream(
            self, conn, node_id, sid, self.stream_buffer_bytes, self.send_timeout_s
        )
        self._streams[stream._key] = stream
        return stream

    async def accept_stream(self) -> TransportStream:
        """The next stream a peer opened (waits). At most ``DEFAULT_MAX_INCOMING_STREAMS``
        wait to be accepted; beyond, a new stream is refused (STOP_SENDING, and our side
        reset) and counted in ``transport.streams_refused``. Raises
        ``trio.ClosedResourceError`` once the node closes. Equivalent lower-level calls:
        the pump sees the first ``StreamData`` of a stream id the peer opened."""
        try:
            return await self._incoming.receive()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError("the node is closed") from None

    def _channels_published(self) -> None:
        self._notify_channels()
        self.wake()

    def _notify_channels(self) -> None:
        """Wake the channel subscriptions whose queues filled (``take_woken``)."""
        subs = self._channel_subs
        for sub in self.core.channels.core.take_woken():
            got = subs.get(sub.id)
            if got is not None:
                got._arrived.set()

    def _stream_drained(self, stream: TransportStream) -> None:
        full = self._full.get(stream.node_id)
        if full is None or stream.buffered * 2 > stream.max_buffered_bytes:
            return
        full.discard(stream._key)
        if not full:
            del self._full[stream.node_id]
            self.core.transport.pause(stream.node_id, False)
            self.wake()

    def _dispatch_transport(self, events: list[EndpointEvent]) -> None:
        streams = self._streams
        counters = self.core.counters
        for event in events:
            kind = type(event)
            if kind is StreamData:
                assert isinstance(event, StreamData)
                key = (event.cid, event.stream_id)
                stream = streams.get(key)
                if stream is None:
                    stream = self._new_incoming(event)
                    if stream is None:
                        continue
                stream._data(event.data, event.end)
                if event.end:
                    # nothing more arrives on it: the reader holds it from here on
                    streams.pop(key, None)
                if stream.buffered > stream.max_buffered_bytes:
                    full = self._full.setdefault(event.node_id, set())
                    if not full:
                        self.core.transport.pause(event.node_id)
                    full.add(key)
            elif kind is PeerDisconnected:
                assert isinstance(event, PeerDisconnected)
                self._full.pop(event.node_id, None)
                for key in [k for k in streams if k[0] == event.cid]:
                    streams.pop(key)._break(
                        f"the connection to {event.node_id.hex()} ended: {event.reason}"
                    )
            elif kind is PeerEvent:
                assert isinstance(event, PeerEvent)
                inner = event.event
                if isinstance(inner, StreamReset):
                    got = streams.pop((event.cid, inner.stream_id), None)
                    if got is not None:
                        got._break(f"stream {inner.stream_id} reset by the peer "
                                   f"(code {inner.error_code})")
            elif kind is ConnectFailed:
                counters.inc("transport.runtime.connect_failed")

    def _new_incoming(self, event: StreamData) -> TransportStream | None:
        conn = self.core.transport.connection(event.node_id)
        if conn is None or conn.local_cid != event.cid or \
                (event.stream_id & 1) == (0 if conn.is_client else 1):
            # a stream of ours we no longer track (or of an old connection): unread
            self.core.counters.inc("transport.runtime.data_dropped_untracked")
            return None
        stream = TransportStream(
            self, conn, event.node_id, event.stream_id, self.stream_buffer_bytes,
            self.send_timeout_s,
        )
        try:
            self._incoming_send.send_nowait(stream)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.core.counters.inc("transport.streams_refused")
            if conn.state_name == "established":
                conn.stop_sending(event.stream_id)
                if event.stream_id & 2 == 0:  # bidirectional: our side too
                    conn.reset_stream(event.stream_id)
            return None
        self._streams[stream._key] = stream
        return stream

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the node is closed")

    async def _resolve_all(self, addresses: Iterable[Address | str]) -> tuple[Address, ...]:
        if isinstance(addresses, str) or (
            isinstance(addresses, tuple) and len(addresses) == 2 and isinstance(addresses[1], int)
        ):
            raise ConfigError(
                f"join: expected a list of addresses, got the single address {addresses!r}"
            )
        out: list[Address] = []
        for item in addresses:
            addr = parse_address(item, what="join") if isinstance(item, str) else item
            _, numeric = await resolve(addr, self._family)
            out.append(numeric)
        return tuple(out)

    def _subscribe(self, sub: Subscription) -> None:
        self._check_open()
        self._subscribers.append(sub)

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def _deliver(self, events: list[Event]) -> None:
        if not self._subscribers:
            return
        gone = []
        for sub in self._subscribers:
            for event in events:
                if not sub._offer(event):
                    gone.append(sub)
                    break
        for sub in gone:
            self._unsubscribe(sub)

    async def _send(self, datagrams: list[tuple[Address, bytes]]) -> None:
        """Send ``datagrams`` in order with the standard-library socket's non-blocking
        ``sendto``, or several at once with UDP segmentation offload.

        Segmentation offload (:attr:`gso`, Linux ``UDP_SEGMENT``): a run of consecutive
        datagrams to one address, all of one size but the last (which may be shorter), at
        most ``GSO_MAX_SEGMENTS`` and ``GSO_MAX_BYTES`` together, leaves in one
        ``sendmsg`` (the kernel cuts it apart; counted: ``udp.gso_sends``,
        ``udp.gso_datagrams``). If the kernel refuses such a send, its datagrams are sent
        one by one instead (``udp.gso_fallbacks``); a refusal saying the socket or the
        device cannot do it (``EIO``, ``ENOPROTOOPT``, ``EOPNOTSUPP``) also turns
        :attr:`gso` off for good.

        When the kernel's send buffer is full (``BlockingIOError``) the send waits for
        ``trio.lowlevel.wait_writable`` and is made again (counted: ``udp.send_blocked``);
        the wait is bounded by this list, itself bounded by the core's queues. Any other
        ``OSError`` is counted (``udp.send_errors``; ``EMSGSIZE``, a datagram larger than
        the interface allows with "don't fragment" set, in ``udp.send_too_big`` instead:
        the transport's path-MTU probes meet it on purpose, and lose the probe) and the
        datagram skipped. A host name (not a literal address; normally the runtime only
        hands numeric addresses to the core) goes through ``trio.socket``'s ``sendto``,
        which resolves it without blocking the pump's thread. Nothing is sent if the
        caller is already cancelled (``trio.lowlevel.checkpoint_if_cancelled``).
        """
        # a cancelled caller sends nothing (closing with leave_timeout_s=0 is a crash)
        await trio.lowlevel.checkpoint_if_cancelled()
        counters = self.core.counters
        numeric = self._numeric_hosts
        tally = [0, 0]  # datagrams and bytes that left (counted even if cancelled)
        n = len(datagrams)
        i = 0
        try:
            while i < n:
                addr, data = datagrams[i]
                is_numeric = numeric.get(addr[0])
                if is_numeric is None:
                    if len(numeric) >= MAX_NUMERIC_HOSTS:
                        numeric.clear()
                    is_numeric = numeric[addr[0]] = is_numeric_host(addr[0])
                j = i + 1
                if self.gso and is_numeric:
                    size = total = len(data)
                    while j < n and j - i < GSO_MAX_SEGMENTS:
                        next_addr, next_data = datagrams[j]
                        k = len(next_data)
                        if k > size or total + k > GSO_MAX_BYTES or next_addr != addr:
                            break
                        total += k
                        j += 1
                        if k < size:  # only the last may be shorter
                            break
                    if j - i > 1 and await self._send_segmented(
                        addr, datagrams[i:j], size, total, tally
                    ):
                        i = j
                        continue
                for addr, data in datagrams[i:j]:
                    await self._send_one(addr, data, is_numeric, tally)
                i = j
        finally:
            if tally[0]:
                counters.inc("udp.datagrams_sent", tally[0])
                counters.inc("udp.bytes_sent", tally[1])

    async def _send_one(
        self, addr: Address, data: bytes, is_numeric: bool, tally: list[int]
    ) -> None:
        """One datagram: ``sendto`` (see :meth:`_send`); ``tally`` gains it if it left."""
        raw = self._raw
        while True:
            try:
                if is_numeric:
                    raw.sendto(data, addr)
                else:
                    await self._sock.sendto(data, addr)
            except BlockingIOError:
                self.core.counters.inc("udp.send_blocked")
                log.debug("sendto %s: send buffer full; wait_writable", addr)
                await trio.lowlevel.wait_writable(raw)
                continue
            except OSError as exc:
                # EMSGSIZE is expected (path-MTU probes larger than the interface allows)
                too_big = exc.errno == errno.EMSGSIZE
                self.core.counters.inc("udp.send_too_big" if too_big else "udp.send_errors")
                log.debug("sendto %s (%d bytes) failed: %s", addr, len(data), exc)
                return
            tally[0] += 1
            tally[1] += len(data)
            return

    async def _send_segmented(
        self, addr: Address, group: list[tuple[Address, bytes]], size: int, total: int,
        tally: list[int],
    ) -> bool:
        """``group`` (to ``addr``, each ``size`` bytes but the last) in one ``sendmsg``
        with ``UDP_SEGMENT`` = ``size``; False if the kernel refused it (see :meth:`_send`)."""
        raw = self._raw
        counters = self.core.counters
        assert UDP_SEGMENT is not None  # self.gso is False without it
        ancillary = [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))]
        buffers = [data for _, data in group]
        while True:
            try:
                raw.sendmsg(buffers, ancillary, 0, addr)
            except BlockingIOError:
                counters.inc("udp.send_blocked")
                log.debug("sendmsg %s: send buffer full; wait_writable", addr)
                await trio.lowlevel.wait_writable(raw)
                continue
            except OSError as exc:
                counters.inc("udp.gso_fallbacks")
                if exc.errno in (errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                    self.gso = False
                    log.debug("sendmsg UDP_SEGMENT refused (%s): segmentation offload off", exc)
                else:
                    log.debug(
                        "sendmsg UDP_SEGMENT %s (%d x %d bytes) refused: %s; one by one",
                        addr, len(group), size, exc,
                    )
                return False
            counters.inc("udp.gso_sends")
            counters.inc("udp.gso_datagrams", len(group))
            tally[0] += len(group)
            tally[1] += total
            return True

    async def _flush(self) -> None:
        """Send, persist and deliver until the core has nothing more to give."""
        core = self.core
        while True:
            progressed = False
            out = core.take_outgoing()
            if out:
                log.debug("take_outgoing -> %d datagrams", len(out))
                await self._send(out)
                progressed = True
            writes = core.take_writes()
            if writes:
                # Shielded: once a write is on disk the core must hear about it, or the
                # datagrams waiting for it would never be released.
                with trio.CancelScope(shield=True):
                    log.debug(
                        "take_writes -> %s; persisting", [(w.id, w.key) for w in writes]
                    )
                    await trio.to_thread.run_sync(
                        self.store.write_many, [(w.key, w.data) for w in writes]
                    )
                    ids = [w.id for w in writes]
                    log.debug("writes_done(%s)", ids)
                    core.writes_done(machine_now(), ids)
                progressed = True
            cons = core.consensus
            if cons is not None and await self._raft_log.step(cons):
                # the Raft log's group commit (runtime.consensus.RaftLogDriver): the
                # fdatasync runs in a worker thread while the pump goes on
                progressed = True
            events = core.take_events()
            if events:
                self._deliver(events)
                progressed = True
            transport_events = core.take_transport_events(machine_now())
            if transport_events:
                self._dispatch_transport(transport_events)
                progressed = True
            actions = core.supervisor.take_actions()
            if actions:
                log.debug("supervisor.take_actions -> %d", len(actions))
                self.supervisor._apply(actions)
                progressed = True
            changes = core.registry.take_changes()
            if changes:
                self.registry._deliver(changes)
            self._notify_channels()
            if not progressed:
                if self._closed and self._raft_log.busy:
                    await self._raft_log.drain()  # before the WAL closes
                    continue
                self._stepped.set()
                self._stepped = trio.Event()
                return

    def _receive_batch(self) -> int:
        """Read the datagrams waiting in the socket, at most :data:`RECEIVE_BATCH`, with the
        standard-library socket's non-blocking ``recvfrom`` until ``BlockingIOError``,
        giving each to ``core.handle_datagram``; how many reads were made (0: the socket
        was empty).

        A receive error (some systems report ICMP errors of earlier sends here) is counted
        (``udp.receive_errors``) and reading goes on; it counts towards the bound. Reaching
        the bound is counted (``udp.receive_batch_cut``).
        """
        core = self.core
        counters = core.counters
        handle = core.handle_datagram
        recvfrom = self._raw.recvfrom
        reads = 0
        received = 0
        received_bytes = 0
        try:
            while reads < RECEIVE_BATCH:
                try:
                    data, src = recvfrom(MAX_DATAGRAM_BYTES)
                except BlockingIOError:
                    return reads
                except OSError as exc:
                    reads += 1
                    counters.inc("udp.receive_errors")
                    log.debug("recvfrom failed: %s", exc)
                    continue
                reads += 1
                received += 1
                received_bytes += len(data)
                log.debug("handle_datagram from %s (%d bytes)", src, len(data))
                handle(machine_now(), (src[0], src[1]), data)
            counters.inc("udp.receive_batch_cut")
            return reads
        finally:
            if received:
                counters.inc("udp.datagrams_received", received)
                counters.inc("udp.bytes_received", received_bytes)

    async def _wait_readable(self, deadline: float | None) -> None:
        """Wait until a datagram can be read, the core's ``deadline`` passes or :meth:`wake`
        cancels the wait (``trio.lowlevel.wait_readable`` under ``_wait_scope``)."""
        with trio.CancelScope() as scope:
            if deadline is not None:
                scope.deadline = trio.current_time() + max(0.0, deadline - time.monotonic())
            self._wait_scope = scope
            try:
                await trio.lowlevel.wait_readable(self._raw)
            finally:
                self._wait_scope = None

    async def _run_pump(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The one pump task: datagrams and timers in, datagrams, writes and events out.

        Each round, in order: the datagrams waiting are read (:meth:`_receive_batch`, at
        most :data:`RECEIVE_BATCH`), then a due timer is handled (``core.handle_timer``),
        then ONE flush if anything happened (those, or a wake-up by :meth:`wake`); else the
        pump waits for the socket, the next deadline or a wake-up. So a flood cannot delay
        the timers by more than one batch, a timer due on every round cannot starve the
        reads, and a round that did not wait passes a ``trio.lowlevel.checkpoint()`` so
        the other Trio tasks run between rounds.
        """
        core = self.core
        try:
            with self._pump_scope:
                await self._flush()
                task_status.started()
                waited = True
                while True:
                    if not waited:
                        await trio.lowlevel.checkpoint()
                    waited = False
                    # One round: the datagrams waiting (one bounded batch), then a due
                    # timer, then one flush. A timer due on every round cannot starve the
                    # reads (nor a flood the timers), and after a stall the answers that
                    # waited are read before the overdue tick (check-quorum sees them).
                    busy = self._dirty
                    self._dirty = False
                    if self._receive_batch():
                        busy = True
                    deadline = core.next_deadline()
                    if deadline is not None and deadline <= time.monotonic():
                        log.debug("handle_timer (deadline %.6f)", deadline)
                        core.handle_timer(machine_now())
                        busy = True
                    if busy:
                        await self._flush()
                        continue
                    await self._wait_readable(deadline)
                    waited = True
        finally:
            self._pump_done.set()

    async def hand_off(self, timeout_s: float | None = None) -> bool:
        """Hand this node's supervised services off and drop its registry entries, before
        leaving; True if everything completed within ``timeout_s`` (default
        ``handoff_timeout_s``). Closing the node calls it.

        Equivalent lower-level calls: ``core.supervisor.prepare_shutdown(now)`` (the
        singletons stop with handoff, the others stop; nothing new starts here), wait until
        ``core.supervisor.running()`` is empty, ``core.registry.release_own(now)``, then wait
        until the messenger's queues are empty and the connections have nothing in flight.
        """
        self._check_open()
        if self._handed_off:
            return True
        self._handed_off = True
        core = self.core
        if not core.supervisor.running() and not core.registry.core.entries_of(core.node_id):
            return True
        limit = self.handoff_timeout_s if timeout_s is None else timeout_s
        done = False
        with trio.move_on_after(limit):
            log.debug("hand_off: SupervisorCore.prepare_shutdown")
            core.supervisor.prepare_shutdown(machine_now())
            self.wake()
            await self.wait_until(
                lambda: not core.supervisor.running() and not self.supervisor.running()
            )
            log.debug("hand_off: RegistrySubsystem.release_own")
            core.registry.release_own(machine_now())
            self.wake()
            await self.wait_until(self._drained)
            done = True
        if not done:
            log.warning("hand_off: not complete within %.1f s; leaving anyway", limit)
        return done

    def _drained(self) -> bool:
        """Nothing of the messenger waits and no connection has stream bytes in flight."""
        core = self.core
        transport = core.transport
        for peer in transport.peers():
            if core.messenger.pending_bytes(peer):
                return False
            conn = transport.connection(peer)
            if conn is not None and conn.is_established and conn.recovery.bytes_in_flight:
                return False
        return True

    async def _shutdown(self) -> None:
        """Transfer Raft leadership, hand services off, stop the pump, leave, send the
        last datagrams (that order: the group keeps a leader while the services move, and
        the handoff's registry deltas go out before the LEFT announcement); called
        shielded by open_node."""
        if not self._closed and self.core.consensus is not None:
            with contextlib.suppress(trio.ClosedResourceError):
                # core.consensus.transfer_leadership(now), wait <= 2 election timeouts
                await self.consensus.transfer_leadership()
        if not self._closed and not self._handed_off:
            with contextlib.suppress(trio.ClosedResourceError):
                await self.hand_off()
        # Refuse joins, services and subscriptions from here on: a service still running
        # must not undo the Leave below.
        self._closed = True
        self._stepped.set()
        if self._services is not None:
            self._services.close()
        self._pump_scope.cancel()
        await self._pump_done.wait()
        with trio.move_on_after(self.leave_timeout_s):
            if not self._left:
                # The membership core signs a LEFT announcement and gossips it at once.
                log.debug("closing: NodeCore.handle_command(Leave), last flush")
                self._left = True
                self.core.handle_command(machine_now(), Leave())
            transport = self.core.transport
            for peer in transport.peers():
                transport.close(peer, reason="node closing")
            await self._flush()
        for sub in list(self._subscribers):
            sub._end()
        self._subscribers.clear()
        for channel_sub in list(self._channel_subs.values()):
            channel_sub._end()
        self._channel_subs.clear()
        self.registry._close()
        self.coordination._close()
        for stream in list(self._streams.values()):
            stream._break("the node closed")
        self._streams.clear()
        self._incoming_send.close()


def load_keyring(config: NodeConfig, keyring: Keyring | None) -> Keyring:
    """The keyring given, else the one in ``config.cluster_key_file``; ConfigError if none."""
    if keyring is not None:
        return keyring
    if config.cluster_key_file is None:
        raise ConfigError(
            "cluster_key_file: no keyring given (pass keyring= or set cluster_key_file; "
            "create one with `foundation-p2p keygen --out FILE`)"
        )
    return Keyring.from_file(config.cluster_key_file)


def open_store(data_dir: str | None) -> Store:
    """A :class:`DataDirStore` for ``data_dir``, or a :class:`MemoryStore` if it is None."""
    if data_dir is None:
        return MemoryStore()
    return DataDirStore(data_dir)


def open_raft_storage(config: NodeConfig) -> LogStorage | None:
    """The Raft log of a ``[consensus]`` node: the WAL recovered from ``data_dir/raft``
    (``WalStorage.open(OsVfs(...))``), or a ``MemoryStorage`` without a data directory;
    ``None`` without ``[consensus]``. ``StorageError`` names a damaged WAL."""
    if "consensus" not in config.extra:
        return None
    if config.data_dir is None:
        log.warning("[consensus] without data_dir: the Raft log is in memory only")
        return MemoryStorage()
    return WalStorage.open(OsVfs(os.path.join(config.data_dir, "raft")))


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    keyring: Keyring | None = None,
    store: Store | None = None,
    leave_timeout_s: float = DEFAULT_LEAVE_TIMEOUT_S,
    admin: tuple[str, int] | None = None,
) -> AsyncIterator[Node]:
    """Run one node over UDP for the duration of the ``async with``; yield its :class:`Node`.

    ``admin=(host, port)`` also serves ``GET /health`` and ``GET /metrics`` there
    (:class:`~foundation_p2p.runtime.admin.AdminServer`; off by default; use a loopback
    host unless the endpoint must be reachable from elsewhere; port 0 picks one, see
    ``node.admin_port``).

    ``keyring`` overrides ``config.cluster_key_file``; ``store`` overrides
    ``config.data_dir`` (any :class:`~foundation_p2p.runtime.storage.Store`). When the
    block is entered, the socket is bound, the boot writes (identity, boot epoch) are
    durable, the pump runs and ``Join(config.join)`` was given if ``join`` is set.

    Raises :class:`ConfigError` (keyring, addresses),
    :class:`~foundation_p2p.errors.StorageError` (data directory) or
    :class:`~foundation_p2p.runtime.udp.BindError` (port in use...), each naming the
    problem, before the block is entered.
    """
    keyring = load_keyring(config, keyring)
    own_store = store is None
    if store is None:
        store = await trio.to_thread.run_sync(open_store, config.data_dir)
        if config.data_dir is None:
            log.warning(
                "no data_dir: the identity is in memory only; this node gets a new node id "
                "at every start"
            )
    try:
        stored = await trio.to_thread.run_sync(store.read_all)
        raft_storage = await trio.to_thread.run_sync(open_raft_storage, config)
        try:
            raw = await bind_udp_socket(config.bind)
            sock = trio.socket.from_stdlib_socket(raw)
            node: Node | None = None
            try:
                family = sock.family
                join = tuple([(await resolve(a, family))[1] for a in config.join])
                rng = random.Random(int.from_bytes(os.urandom(16), "big"))
                # The core announces config.advertised to the membership: give it the port
                # the socket really got (bind port 0) and the numeric host.
                bound = bound_address(sock)
                core_config = config if config.bind == bound else config.replace(bind=bound)
                core = NodeCore(
                    core_config,
                    now=machine_now(),
                    keyring=keyring,
                    stored=stored,
                    rng=rng,
                    secret_bytes=os.urandom,
                    raft_storage=raft_storage,
                )
                node = Node(
                    core, config, sock, store, leave_timeout_s=leave_timeout_s, raw=raw
                )
                node.raft_storage = raft_storage
                log.info(
                    "node %s (%s) bound to %s, epoch %d, %s identity",
                    core.node_id.hex(),
                    node.name,
                    format_address(node.address),
                    core.boot_epoch,
                    "stored" if IDENTITY_KEY in stored else "new",
                )
                # An error raised by the body is re-raised as it is, after the nursery closed,
                # rather than wrapped in the nursery's ExceptionGroup.
                body_error: BaseException | None = None
                if join:
                    log.debug("join %s: NodeCore.handle_command(Join)", join)
                    core.handle_command(machine_now(), Join(join))
                # The boot writes (identity, epoch) become durable here, before any datagram
                # can leave, and a storage failure is raised as it is.
                await node._flush()
                async with trio.open_nursery() as nursery:
                    node._services = ServiceRunner(nursery, core.counters)
                    await nursery.start(node._run_pump)
                    nursery.start_soon(RuntimeProbe(core.health.local_figures).run)
                    if admin is not None:
                        log.debug("admin: runtime.admin.AdminServer(%s:%d).serve", *admin)
                        node.admin_port = await nursery.start(
                            node.health.admin_server(admin[0], admin[1]).serve
                        )
                    if config.extra.get("discovery") is not None:
                        # the `discovery` key (spec/discovery.md): strategies that keep
                        # feeding node.join; the resolved configuration is logged at INFO
                        from foundation_p2p.runtime.discovery import run_configured_discovery

                        log.debug("discovery: runtime.discovery.run_configured_discovery")
                        await nursery.start(run_configured_discovery, node)
                    try:
                        yield node
                    except BaseException as exc:
                        body_error = exc
                    finally:
                        with trio.CancelScope(shield=True):
                            await node._shutdown()
                        nursery.cancel_scope.cancel()
                if body_error is not None:
                    raise body_error
            finally:
                if node is not None:
                    node._closed = True
                sock.close()
        finally:
            if isinstance(raft_storage, WalStorage):
                raft_storage.close()
                vfs = raft_storage.vfs
                if isinstance(vfs, OsVfs):
                    vfs.close()  # releases the WAL directory's lock
    finally:
        if own_store:
            store.close()
