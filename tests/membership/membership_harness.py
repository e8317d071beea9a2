"""A tiny in-test network for SWIM cores: frames delivered between cores in virtual time.

Each :class:`Net` holds ``SwimMembership`` cores keyed by address. Frames go through
their CBOR encoding and the frame decoder on the way (so the codecs are exercised),
with a fixed latency; a node can be crashed (it neither sends nor receives), links
can be cut by a predicate, and single frames dropped by another. Time only moves in
:meth:`Net.run_until`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from foundation_p2p.addresses import Address
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.events import Event
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import FRAME_TYPES, Frame
from foundation_p2p.wire.limits import DEFAULT_LIMITS

EPOCH = 1_700_000_000.0


def identity(n: int) -> Identity:
    """A deterministic identity for test node ``n``."""
    return Identity(bytes([n % 256]) * 31 + bytes([n // 256]))


def roundtrip(frame: Frame) -> Frame:
    """The frame as a receiver decodes it from its encoding."""
    items = cbor.decode(cbor.encode(frame.to_cbor()))
    return FRAME_TYPES[items[0]].from_cbor(items, DEFAULT_LIMITS)


class Net:
    """Cores on a virtual network (see the module docstring)."""

    def __init__(self, *, latency: float = 0.002, seed: int = 7, **config: Any) -> None:
        self.t = 0.0
        self.latency = latency
        self.rng = random.Random(seed)
        self.config = MembershipConfig(**config)
        self.nodes: dict[Address, SwimMembership] = {}
        self.names: dict[Address, str] = {}
        self.ids: dict[Address, int] = {}
        self.events: dict[str, list[Event]] = {}
        self.down: set[Address] = set()
        self.cut: Callable[[Address, Address], bool] = lambda src, dst: False
        self.drop: Callable[[Address, Address, Frame], bool] = lambda src, dst, frame: False
        """Drops single frames (after ``record``): return True to lose this one."""
        self.sent: list[tuple[float, Address, Address, Frame]] = []
        self.record = False
        self._queue: list[tuple[float, int, Address, Address, Frame]] = []
        self._serial = 0

    def now(self) -> Now:
        return Now(self.t, EPOCH + self.t)

    def add(
        self,
        name: str,
        *,
        number: int | None = None,
        address: Address | None = None,
        incarnation: int = 1,
        **overrides: Any,
    ) -> SwimMembership:
        """Start a core named ``name`` (identity ``number``, default its position)."""
        n = number if number is not None else len(self.ids) + 1
        addr = address or (name, 7946)
        config = self.config.replace(**overrides) if overrides else self.config
        core = SwimMembership(
            config,
            identity=identity(n),
            address=addr,
            name=name,
            now=self.now(),
            rng=random.Random(self.rng.getrandbits(64)),
            counters=Counters(),
            limits=DEFAULT_LIMITS,
            incarnation=incarnation,
        )
        self.nodes[addr] = core
        self.names[addr] = name
        self.ids[addr] = n
        self.events.setdefault(name, [])
        self.down.discard(addr)
        return core

    def node(self, name: str) -> SwimMembership:
        return (
            self.nodes[(name, 7946)]
            if (name, 7946) in self.nodes
            else next(c for a, c in self.nodes.items() if self.names[a] == name)
        )

    def addr(self, core: SwimMembership) -> Address:
        return next(a for a, c in self.nodes.items() if c is core)

    def command(self, core: SwimMembership, cmd: Any) -> None:
        core.handle_command(self.now(), cmd)
        self._pump(self.addr(core))

    def crash(self, core: SwimMembership) -> None:
        self.down.add(self.addr(core))

    def _pump(self, addr: Address) -> None:
        core = self.nodes[addr]
        for dest, frame in core.take_outgoing():
            assert isinstance(dest, tuple)
            if self.record:
                self.sent.append((self.t, addr, dest, frame))
            if addr in self.down or dest in self.down or self.cut(addr, dest):
                continue
            if self.drop(addr, dest, frame):
                continue
            self._serial += 1
            heapq.heappush(self._queue, (self.t + self.latency, self._serial, addr, dest, frame))
        self.events[self.names[addr]].extend(core.take_events())

    def run_until(self, end: float) -> None:
        """Deliver frames and fire timers in time order up to ``end``."""
        while True:
            nxt = self._queue[0][0] if self._queue else None
            due: list[Address] = []
            best = nxt
            for addr, core in self.nodes.items():
                if addr in self.down:
                    continue
                d = core.next_deadline()
                if d is not None and (best is None or d < best):
                    best = d
            if best is None or best > end:
                self.t = end
                return
            self.t = max(self.t, best)
            if nxt is not None and nxt <= best:
                _, _, src, dst, frame = heapq.heappop(self._queue)
                core = self.nodes.get(dst)
                if core is None or dst in self.down:
                    continue
                core.handle_message(self.now(), core_id(self.nodes[src]), src, roundtrip(frame))
                self._pump(dst)
                continue
            for addr, core in self.nodes.items():
                if addr in self.down:
                    continue
                d = core.next_deadline()
                if d is not None and d <= self.t:
                    due.append(addr)
            for addr in due:
                self.nodes[addr].handle_timer(self.now())
                self._pump(addr)

    def of_type(self, name: str, kind: type) -> list[Any]:
        return [e for e in self.events[name] if isinstance(e, kind)]


def core_id(core: SwimMembership) -> bytes:
    return core.node_id
