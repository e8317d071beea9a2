"""The static prober: pings known addresses and answers pings (sans-I/O).

The smallest subsystem that exercises the whole data path before membership exists: it
pings every target once per ``probe_interval_s``, reports :class:`PeerAcked` with the
round-trip time or :class:`PeerUnanswered` after ``probe_timeout_s``, answers every
:class:`Ping` with an :class:`Ack`, and adopts the address of any peer that pings it as a
target. Targets are bounded (``max_probe_targets``: further ones are refused and counted),
and so are unanswered pings (``max_outstanding_pings``: the oldest is forgotten, counted).
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass

from foundation_p2p.addresses import Address, NodeId
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.counters import Counters
from foundation_p2p.events import Command, Event, Join, Leave, PeerAcked, PeerUnanswered
from foundation_p2p.wire.frames import Ack, Frame, Ping


@dataclass(slots=True)
class _Outstanding:
    address: Address
    sent_mono: float


class StaticProber:
    """Pings a bounded set of addresses; see the module docstring."""

    frame_types: tuple[int, ...] = (Ping.TYPE, Ack.TYPE)

    def __init__(self, config: NodeConfig, rng: random.Random, counters: Counters) -> None:
        self.interval_s = config.probe_interval_s
        self.timeout_s = config.probe_timeout_s
        self.max_targets = config.max_probe_targets
        self.max_outstanding = config.max_outstanding_pings
        self.rng = rng
        self.counters = counters
        self.targets: OrderedDict[Address, NodeId | None] = OrderedDict()
        """Addresses probed each round, with the node id last seen answering there."""
        self.rtt_s: dict[Address, float] = {}
        """Last measured round-trip time per target."""
        self.active = True
        self._next_seq = 1
        self._next_round: float | None = None
        self._outstanding: dict[int, _Outstanding] = {}
        self._timeouts: deque[tuple[float, int]] = deque()
        self._out: list[tuple[Address | NodeId, Frame]] = []
        self._events: list[Event] = []

    def add_target(self, now: Now, address: Address) -> bool:
        """Probe ``address`` from the next round on; False (and counted) when full."""
        if address in self.targets:
            return True
        if len(self.targets) >= self.max_targets:
            self.counters.inc("probe.targets_refused")
            return False
        self.targets[address] = None
        if self._next_round is None and self.active:
            # A small random offset keeps nodes that start together from pinging in lockstep.
            self._next_round = now.mono + self.rng.uniform(0.0, self.interval_s / 10)
        return True

    def handle_command(self, now: Now, cmd: Command) -> bool:
        if isinstance(cmd, Join):
            self.active = True
            for addr in cmd.addresses:
                self.add_target(now, addr)
            return True
        if isinstance(cmd, Leave):
            self.active = False
            self._next_round = None
            return True
        return False

    def handle_message(self, now: Now, sender: NodeId, addr: Address, frame: Frame) -> None:
        if isinstance(frame, Ping):
            self._out.append((addr, Ack(frame.seq)))
            if self.active:
                self.add_target(now, addr)
        elif isinstance(frame, Ack):
            pending = self._outstanding.pop(frame.seq, None)
            if pending is None or pending.address != addr:
                self.counters.inc("probe.unexpected_acks")
                if pending is not None:
                    self._outstanding[frame.seq] = pending
                return
            rtt = now.mono - pending.sent_mono
            if addr in self.targets:
                self.targets[addr] = sender
            self.rtt_s[addr] = rtt
            self._events.append(PeerAcked(sender, addr, rtt))

    def handle_timer(self, now: Now) -> None:
        while self._timeouts and self._timeouts[0][0] <= now.mono:
            _, seq = self._timeouts.popleft()
            pending = self._outstanding.pop(seq, None)
            if pending is not None:
                self.counters.inc("probe.unanswered")
                self._events.append(PeerUnanswered(pending.address, seq))
        if self._next_round is not None and self._next_round <= now.mono:
            for addr in self.targets:
                self._send_ping(now, addr)
            self._next_round = now.mono + self.interval_s

    def _send_ping(self, now: Now, addr: Address) -> None:
        seq = self._next_seq
        self._next_seq += 1
        if len(self._outstanding) >= self.max_outstanding:
            oldest = next(iter(self._outstanding))
            del self._outstanding[oldest]
            self.counters.inc("probe.outstanding_forgotten")
        self._outstanding[seq] = _Outstanding(addr, now.mono)
        self._timeouts.append((now.mono + self.timeout_s, seq))
        self._out.append((addr, Ping(seq)))

    def next_deadline(self) -> float | None:
        deadline = self._next_round
        while self._timeouts and self._timeouts[0][1] not in self._outstanding:
            self._timeouts.popleft()
        if self._timeouts:
            first = self._timeouts[0][0]
            deadline = first if deadline is None else min(deadline, first)
        return deadline

    def take_outgoing(self) -> list[tuple[Address | NodeId, Frame]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
