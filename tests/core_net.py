"""NodeCores on an in-memory network, driven in virtual time (shared by the unit tests).

The same loop the simulator runs, without its faults: every datagram arrives ``delay_s``
after it was sent, nothing is lost, time jumps to the next datagram or deadline.
Subclasses say what they take from a core besides datagrams (:meth:`CoreNet.collect`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from foundation_p2p.addresses import Address
from foundation_p2p.clock import Now
from foundation_p2p.node import NodeCore

WALL = 1_700_000_000.0
"""The wall clock at virtual time 0."""


class CoreNet:
    """Cores keyed by their bind address on a lossless network with a fixed delay."""

    delay_s = 0.002

    def __init__(self, *cores: NodeCore, confirm_writes: bool = True) -> None:
        self.cores = {c.config.bind: c for c in cores}
        self.now = 0.0
        self.queue: list[tuple[float, int, Address, Address, bytes]] = []
        self.seq = 0
        self.confirm_writes = confirm_writes
        self.sent = 0
        self.sent_connection = 0
        """Datagrams sent, and how many of them were connection packets (types 2..4)."""

    def stamp(self) -> Now:
        return Now(self.now, WALL + self.now)

    def collect(self, addr: Address, core: NodeCore) -> None:
        """Take what ``core`` produced besides datagrams (here: its events, dropped)."""
        core.take_events()

    def flush(self) -> None:
        """Confirm durable writes, collect, and put every outgoing datagram on the wire."""
        for addr, core in self.cores.items():
            if self.confirm_writes:
                writes = core.take_writes()
                if writes:
                    core.writes_done(self.stamp(), [w.id for w in writes])
            self.collect(addr, core)
            for dst, data in core.take_outgoing():
                self.sent += 1
                if data[0] in (0x85, 0x86):  # 5- and 6-element arrays: connection packets
                    self.sent_connection += 1
                self.seq += 1
                heapq.heappush(self.queue, (self.now + self.delay_s, self.seq, addr, dst, data))

    def run(self, until: Callable[[], bool], max_time_s: float = 30.0) -> bool:
        """Advance until ``until()`` holds (True) or ``max_time_s`` of virtual time passed."""
        self.flush()
        end = self.now + max_time_s
        while self.now < end:
            if until():
                return True
            times = [self.queue[0][0]] if self.queue else []
            for core in self.cores.values():
                d = core.next_deadline()
                if d is not None:
                    times.append(d)
            if not times:
                break
            self.now = max(self.now, min(times))
            while self.queue and self.queue[0][0] <= self.now:
                _, _, src, dst, data = heapq.heappop(self.queue)
                if dst in self.cores:  # a removed core's datagrams are lost
                    self.cores[dst].handle_datagram(self.stamp(), src, data)
            for core in self.cores.values():
                d = core.next_deadline()
                if d is not None and d <= self.now:
                    core.handle_timer(self.stamp())
            self.flush()
        return until()
