"""An in-process network of ``RegistryCore`` replicas for the registry tests: messages move
only when a test pumps them, optionally lost, duplicated or reordered by a seeded rng."""

from __future__ import annotations

import random
from typing import Any

import cbor2

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.core import RegistryCore
from foundation_p2p.wire import cbor

WALL0 = 1_700_000_000.0


def node_id(i: int) -> bytes:
    """A readable 16-byte node id for replica ``i``."""
    return bytes([i + 1]) * 16


class RegistryNet:
    """``n`` replicas, all peers of each other; ``now`` is shared virtual time."""

    def __init__(self, n: int, *, seed: int = 0, config: RegistryConfig | None = None,
                 wire: bool = True) -> None:
        self.ids = [node_id(i) for i in range(n)]
        self.cores = [
            RegistryCore(
                nid,
                config=config or RegistryConfig(),
                counters=Counters(),
                rng=random.Random(seed * 1000 + i),
            )
            for i, nid in enumerate(self.ids)
        ]
        self.by_id = {c.node_id: c for c in self.cores}
        self.t = 0.0
        self.rng = random.Random(seed)
        self.wire = wire
        """Round-trip every message through deterministic CBOR bytes (as the messenger does)."""
        self.cut: set[frozenset[bytes]] = set()
        """Pairs of node ids that cannot reach each other."""
        self.delivered = 0
        for core in self.cores:
            core.set_peers(self.ids)

    def now(self) -> Now:
        return Now(self.t, WALL0 + self.t)

    def partition(self, *groups: list[int]) -> None:
        """Cut every pair of replicas in different groups."""
        for a, ga in enumerate(groups):
            for gb in groups[a + 1 :]:
                for i in ga:
                    for j in gb:
                        self.cut.add(frozenset((self.ids[i], self.ids[j])))

    def heal(self) -> None:
        self.cut.clear()

    def pump(self, *, loss: float = 0.0, dup: float = 0.0, shuffle: bool = False,
             max_steps: int = 10_000) -> int:
        """Deliver messages until none are left; returns how many were delivered."""
        count = 0
        for _ in range(max_steps):
            batch: list[tuple[RegistryCore, bytes, Any]] = []
            for core in self.cores:
                for peer, msg in core.take_messages():
                    if frozenset((core.node_id, peer)) in self.cut:
                        continue
                    if loss and self.rng.random() < loss:
                        continue
                    batch.append((self.by_id[peer], core.node_id, msg))
                    if dup and self.rng.random() < dup:
                        batch.append((self.by_id[peer], core.node_id, msg))
            if not batch:
                return count
            if shuffle:
                self.rng.shuffle(batch)
            for dst, src, msg in batch:
                if self.wire:
                    msg = cbor2.loads(cbor.encode(msg))
                dst.handle_message(self.now(), src, msg)
                count += 1
        self.delivered += count
        raise AssertionError("messages kept flowing")

    def tick(self, dt: float = 0.05) -> None:
        """Advance time by ``dt`` and fire due timers."""
        self.t += dt
        for core in self.cores:
            deadline = core.next_deadline()
            if deadline is not None and deadline <= self.t:
                core.handle_timer(self.now())

    def run(self, seconds: float, *, dt: float = 0.05, **pump: Any) -> None:
        """Tick and pump for ``seconds`` of virtual time."""
        end = self.t + seconds
        while self.t < end:
            self.tick(dt)
            self.pump(**pump)

    def converged(self) -> bool:
        first = self.cores[0].state.canonical()
        return all(c.state.canonical() == first for c in self.cores[1:])
