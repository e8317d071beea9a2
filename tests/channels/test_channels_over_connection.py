"""Channels over a real transport ``Connection`` pair (in memory, virtual time, with loss):
the channel stream ids of spec/channels.md section 1, records written whole through the
bounded stream buffers, decoded on the other side, delivered intact and in order."""

from __future__ import annotations

import random
from collections import deque

from foundation_p2p.channels.core import ChannelsCore, OutgoingRecord
from foundation_p2p.channels.names import (
    STANDARD_CHANNELS,
    Channel,
    channel_of_stream,
    channel_stream_id,
)
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.transport.connection import (
    Connection,
    HandshakeCompleted,
    StreamDataReceived,
)


class Link:
    """Client and server connections joined by a pipe that drops ``loss`` of datagrams."""

    def __init__(self, seed: int, loss: float) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        keyring = Keyring(bytes(range(32)))
        self.now = 0.0
        self.client = Connection.connect(
            self.now, Identity.generate(self.rng.randbytes), keyring, self.rng.randbytes
        )
        self.server_identity = Identity.generate(self.rng.randbytes)
        self.keyring = keyring
        self.server: Connection | None = None
        self.in_flight: list[tuple[float, bool, bytes]] = []  # (arrival, to_server, data)
        self.events: dict[bool, list[object]] = {True: [], False: []}  # by is_server

    def _pump_out(self) -> None:
        for to_server, conn in ((True, self.client), (False, self.server)):
            if conn is None:
                continue
            for data in conn.take_datagrams(self.now):
                if self.rng.random() >= self.loss:
                    self.in_flight.append((self.now + 0.005, to_server, data))

    def step(self) -> None:
        """Advance virtual time to the next arrival or deadline and process it."""
        self._pump_out()
        times = [t for t, _, _ in self.in_flight]
        for conn in (self.client, self.server):
            if conn is not None and conn.next_deadline() is not None:
                times.append(conn.next_deadline())  # type: ignore[arg-type]
        if not times:
            return
        self.now = max(self.now, min(times))
        due = [x for x in self.in_flight if x[0] <= self.now]
        self.in_flight = [x for x in self.in_flight if x[0] > self.now]
        for _, to_server, data in due:
            if to_server:
                if self.server is None:
                    self.server = Connection.accept(
                        self.now, data, self.server_identity, self.keyring, self.rng.randbytes
                    )
                else:
                    self.server.receive_datagram(self.now, data)
            else:
                self.client.receive_datagram(self.now, data)
        for conn in (self.client, self.server):
            if conn is not None:
                d = conn.next_deadline()
                if d is not None and d <= self.now:
                    conn.handle_timer(self.now)
        self.events[False].extend(self.client.take_events())
        if self.server is not None:
            self.events[True].extend(self.server.take_events())
        self._pump_out()


class Writer:
    """The driver's side of sending: each record written whole, in order, per stream; at
    most the stream buffer is handed to the connection, the rest waits here."""

    def __init__(self, conn: Connection, stream_ids: dict[int, int]) -> None:
        self.conn = conn
        self.stream_ids = stream_ids
        self.pending: dict[int, deque[memoryview]] = {sid: deque() for sid in stream_ids.values()}

    def add(self, records: list[OutgoingRecord]) -> None:
        for r in records:
            q = self.pending[self.stream_ids[r.channel.number]]
            q.append(memoryview(r.header))
            q.append(memoryview(r.body))

    def flush(self) -> None:
        for sid, q in self.pending.items():
            while q:
                n = self.conn.send(sid, bytes(q[0][: self.conn.writable(sid)]))
                if n < len(q[0]):
                    q[0] = q[0][n:]
                    break
                q.popleft()


def test_all_four_channels_deliver_intact_and_in_order_at_3pct_loss() -> None:
    link = Link(seed=5, loss=0.03)

    def completed(is_server: bool) -> bool:
        return any(isinstance(e, HandshakeCompleted) for e in link.events[is_server])

    for _ in range(10_000):
        if completed(True) and completed(False):
            break
        link.step()
    a_id = next(e.peer_node_id for e in link.events[True] if isinstance(e, HandshakeCompleted))
    b_id = next(e.peer_node_id for e in link.events[False] if isinstance(e, HandshakeCompleted))
    a, b = ChannelsCore(a_id, epoch=1), ChannelsCore(b_id, epoch=1)
    subs = {c.name: b.subscribe(c.name, max_queued=10_000) for c in STANDARD_CHANNELS}
    a.apply_topics(b_id, b.topics_value())

    # The client opens its four channel streams first, in channel order (spec section 1).
    ids: dict[int, int] = {}
    for channel in STANDARD_CHANNELS:
        sid = link.client.open_stream(
            urgency=channel.urgency, incremental=channel.incremental, uni=True
        )
        assert sid == channel_stream_id(channel, initiator=True)
        ids[channel.number] = sid
    writer = Writer(link.client, ids)

    rng = random.Random(9)
    bulk = rng.randbytes(400_000)
    sent: dict[str, list[object]] = {c.name: [] for c in STANDARD_CHANNELS}
    writer.add(a.broadcast("data", bulk))
    sent["data"].append(bulk)
    for i in range(40):
        for topic, message in (
            ("control", {"beat": i}),
            ("events", f"event {i}"),
            ("telemetry", {"metric": "m", "value": i, "timestamp": i}),
        ):
            writer.add(a.broadcast(topic, message, compression=i % 2 == 0))
            sent[topic].append(message)

    want = sum(len(v) for v in sent.values())
    got: dict[str, list[object]] = {c.name: [] for c in STANDARD_CHANNELS}
    steps = 0
    while sum(len(v) for v in got.values()) < want and steps < 200_000:
        writer.flush()
        link.step()
        steps += 1
        for event in link.events[True]:
            if isinstance(event, StreamDataReceived):
                ch = channel_of_stream(event.stream_id)
                assert isinstance(ch, Channel)
                b.receive(a_id, ch, event.data)
        link.events[True].clear()
        for name, sub in subs.items():
            got[name].extend(d.value for d in sub.take())
    assert got == sent
    assert b.counters["channels.receive.seq_gaps"] == 0
    assert b.counters["channels.receive.seq_duplicates"] == 0
    assert link.client.stats()["lost"] > 0  # the loss really happened
