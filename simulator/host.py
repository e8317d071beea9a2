"""One simulated machine: a ``NodeCore`` (when up), its virtual disk, wall clock and inbox.

A host is ``new`` (not started yet), ``up``, ``down`` (crashed) or ``left`` (stopped after
a graceful leave). Only ``up`` hosts have a core. A paused host is up but starved: what
arrives for it (datagrams, timer firings, disk confirmations) piles up in ``pile`` and runs
when it resumes. The pile is bounded to ``MAX_PILE`` items; when full the oldest item is
dropped and counted in ``pile_dropped``.

The host also keeps its own model of what the disk must hold after a crash
(``expected_durable``: every write confirmed synced), which the
``disk.no_unsynced_after_crash`` checker compares with what a restart actually reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from foundation_p2p.addresses import Address
from foundation_p2p.config import NodeConfig
from foundation_p2p.counters import Counters
from foundation_p2p.node import NodeCore
from simulator.clock import SkewedClock
from simulator.disk import TornWrite, VirtualDisk

MAX_PILE = 100_000
"""Most items a paused host piles up; the oldest is dropped first (counted)."""

NEW = "new"
UP = "up"
DOWN = "down"
LEFT = "left"


class Host:
    """One machine of the simulated cluster; see the module docstring."""

    __slots__ = (
        "addr", "addr_text", "boots", "clock", "config", "core", "disk", "expected_durable",
        "index", "last_ack", "name", "old_counters", "paused", "pile", "pile_dropped",
        "secret_bytes", "status", "timer_at", "timer_missed", "torn", "unsynced_model",
    )

    def __init__(
        self,
        name: str,
        index: int,
        config: NodeConfig,
        secret_bytes: Callable[[int], bytes],
    ) -> None:
        self.name = name
        self.index = index
        self.addr: Address = config.bind
        self.addr_text = f"{self.addr[0]}:{self.addr[1]}"
        self.config = config
        self.secret_bytes = secret_bytes
        self.clock = SkewedClock()
        self.disk = VirtualDisk()
        self.status = NEW
        self.core: NodeCore | None = None
        self.paused = False
        self.pile: deque[tuple[Callable[[Any], None], Any]] = deque()
        self.pile_dropped = 0
        self.boots = 0
        self.timer_at: float | None = None
        self.timer_missed = False
        self.old_counters = Counters()
        self.last_ack: dict[Address, float] = {}
        self.expected_durable: dict[str, bytes] = {}
        self.unsynced_model: list[tuple[str, bytes]] = []
        self.torn: TornWrite | None = None

    @property
    def is_live(self) -> bool:
        """Up and not paused: it answers."""
        return self.core is not None and not self.paused

    def total_counters(self) -> Counters:
        """This node's counters summed over all its boots."""
        total = Counters(self.old_counters)
        if self.core is not None:
            for k, v in self.core.counters.items():
                total[k] = total.get(k, 0) + v
        return total

    def counter(self, name: str) -> int:
        """One counter of this node, summed over all its boots (no copy)."""
        n = self.old_counters.get(name, 0)
        if self.core is not None:
            n += self.core.counters.get(name, 0)
        return n

    def retire_core(self) -> None:
        """Forget the running core (crash, leave), keeping its counters."""
        if self.core is not None:
            for k, v in self.core.counters.items():
                self.old_counters[k] = self.old_counters.get(k, 0) + v
        self.core = None
        self.paused = False
        self.pile.clear()
        self.timer_at = None
        self.timer_missed = False
        self.last_ack.clear()

    def pile_up(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Keep something for when the host resumes (bounded; oldest dropped)."""
        if len(self.pile) >= MAX_PILE:
            self.pile.popleft()
            self.pile_dropped += 1
        self.pile.append((fn, arg))
