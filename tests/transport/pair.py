"""A deterministic in-memory pair of connections: a lossy pipe in virtual time.

``Pair(seed, loss=, duplicate=, reorder=, delay_s=)`` builds a client and (on the first
initial packet) a server :class:`Connection`, and moves datagrams between them through a
``random.Random(seed)`` pipe that drops, duplicates and delays (reordering) them. Time is
virtual: :meth:`Pair.step` jumps to the next datagram arrival or connection deadline. The
same seed gives the same run.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import WireError
from foundation_p2p.transport.config import TransportConfig
from foundation_p2p.transport.connection import (
    Connection,
    ConnectionClosed,
    DatagramReceived,
    Event,
    HandshakeCompleted,
    StreamDataReceived,
)

CLUSTER_KEY = bytes(range(32))


class Side:
    """What one side's application saw: events, stream bytes, ends, when each came."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []
        self.streams: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.datagrams: list[bytes] = []
        self.closed: ConnectionClosed | None = None
        self.peer: bytes | None = None

    def take(self, now: float, events: list[Event]) -> None:
        for event in events:
            self.events.append((now, event))
            if type(event) is StreamDataReceived:
                self.streams.setdefault(event.stream_id, bytearray()).extend(event.data)
                if event.end:
                    self.ended.add(event.stream_id)
            elif type(event) is HandshakeCompleted:
                self.peer = event.peer_node_id
            elif type(event) is DatagramReceived:
                self.datagrams.append(event.data)
            elif type(event) is ConnectionClosed:
                self.closed = event


class Pair:
    """Two connections joined by a lossy, duplicating, reordering pipe (virtual time)."""

    def __init__(
        self,
        seed: int = 1,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay_s: float = 0.01,
        jitter_s: float = 0.0,
        config: TransportConfig | None = None,
        server_config: TransportConfig | None = None,
        keyring: Keyring | None = None,
        server_keyring: Keyring | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.config = config or TransportConfig()
        self.server_config = server_config or self.config
        self.keyring = keyring or Keyring(CLUSTER_KEY)
        self.server_keyring = server_keyring or self.keyring
        self.client_identity = Identity.generate(self.secret_bytes)
        self.server_identity = Identity.generate(self.secret_bytes)
        self.now = 0.0
        self.client = Connection.connect(
            self.now, self.client_identity, self.keyring, self.secret_bytes, config=self.config
        )
        self.server: Connection | None = None
        self.accept_errors: list[WireError] = []
        self.c = Side()
        self.s = Side()
        self._queue: list[tuple[float, int, bool, bytes]] = []  # (time, seq, to_server, data)
        self._seq = 0
        self.tamper: Callable[[bool, bytes], bytes | None] | None = None
        """Optional hook on every datagram: (to_server, data) -> data to deliver or None."""
        self.delivered = 0
        self.dropped = 0
        self.server_reads = True
        """False: the server application takes no events (and so reads nothing)."""
        self._flush()

    def new_client(self, **kwargs: object) -> Connection:
        """Replace the client with a new connection (same identity unless the caller says),
        as after a restart: the pipe and the server start empty."""
        self._queue.clear()
        self.server = None
        self.s = Side()
        self.c = Side()
        self.client = Connection.connect(
            self.now, self.client_identity, self.keyring, self.secret_bytes,
            config=self.config, **kwargs,  # type: ignore[arg-type]
        )
        self._flush()
        return self.client

    def secret_bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def _send(self, to_server: bool, data: bytes) -> None:
        rng = self.rng
        if rng.random() < self.loss:
            self.dropped += 1
            return
        copies = 2 if rng.random() < self.duplicate else 1
        for _ in range(copies):
            t = self.now + self.delay_s
            if self.jitter_s:
                t += rng.random() * self.jitter_s
            if rng.random() < self.reorder:
                t += rng.random() * 3 * self.delay_s
            self._seq += 1
            heapq.heappush(self._queue, (t, self._seq, to_server, data))

    def _flush(self) -> None:
        for data in self.client.take_datagrams(self.now):
            self._send(True, data)
        if self.server is not None:
            for data in self.server.take_datagrams(self.now):
                self._send(False, data)

    def next_time(self) -> float | None:
        times = []
        if self._queue:
            times.append(self._queue[0][0])
        for conn in (self.client, self.server):
            if conn is not None:
                d = conn.next_deadline()
                if d is not None:
                    times.append(d)
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next arrival or deadline and process it; False when idle."""
        t = self.next_time()
        if t is None:
            return False
        if t > self.now:
            self.now = t
        now = self.now
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, _, to_server, data = heapq.heappop(queue)
            if self.tamper is not None:
                changed = self.tamper(to_server, data)
                if changed is None:
                    continue
                data = changed
            self.delivered += 1
            if to_server:
                if self.server is None:
                    try:
                        self.server = Connection.accept(
                            now,
                            data,
                            self.server_identity,
                            self.server_keyring,
                            self.secret_bytes,
                            config=self.server_config,
                        )
                    except WireError as exc:
                        self.accept_errors.append(exc)
                else:
                    self.server.receive_datagram(now, data)
            else:
                self.client.receive_datagram(now, data)
        for conn in (self.client, self.server):
            if conn is not None:
                d = conn.next_deadline()
                if d is not None and d <= now:
                    conn.handle_timer(now)
        self.c.take(now, self.client.take_events())
        if self.server is not None and self.server_reads:
            self.s.take(now, self.server.take_events())
        self._flush()
        return True

    def run(
        self, until: Callable[[], bool] | None = None, max_time_s: float = 60.0,
        on_step: Callable[[], None] | None = None,
    ) -> bool:
        """Step until ``until()`` holds (True) or virtual time passes ``max_time_s`` or
        nothing is left to do (False)."""
        stuck = 0
        while self.now <= max_time_s:
            if until is not None and until():
                return True
            if on_step is not None:
                on_step()
                self._flush()
            before = self.now
            if not self.step():
                return until() if until is not None else True
            # a deadline that stays due after its timer ran is a busy loop
            stuck = stuck + 1 if self.now == before else 0
            if stuck > 1000:
                raise AssertionError(f"busy loop at t={self.now}: a deadline stays due")
        return until() if until is not None else False

    def established(self) -> bool:
        return (
            self.server is not None
            and self.client.is_established
            and self.server.is_established
        )
