"""A node's virtual disk: writes are visible at once but survive a crash only once synced.

Keys are the durable-write keys of :mod:`foundation_p2p.durability`. ``write`` replaces a
key's visible value and queues it as unsynced; ``sync`` makes every queued write durable;
``crash`` throws away what was not synced, optionally leaving the last unsynced write torn
(a proper prefix of its data reached the platter). The unsynced queue is bounded by
``max_unsynced`` writes: when full, ``write`` syncs first (a forced flush, counted in
``forced_syncs``), as an OS flushes dirty pages under pressure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class TornWrite:
    """What a torn crash left: ``key`` holds ``data[:kept]`` of the interrupted write."""

    key: str
    data: bytes
    kept: int


class VirtualDisk:
    """One node's disk; see the module docstring."""

    def __init__(self, max_unsynced: int = 1024) -> None:
        self.max_unsynced = max_unsynced
        self._visible: dict[str, bytes] = {}
        self._durable: dict[str, bytes] = {}
        self._unsynced: list[tuple[str, bytes]] = []
        self.writes = 0
        self.syncs = 0
        self.forced_syncs = 0
        self.lost_writes = 0
        self.torn_writes = 0

    def write(self, key: str, data: bytes) -> None:
        """Replace ``key``; readable at once, durable only after :meth:`sync`."""
        if len(self._unsynced) >= self.max_unsynced:
            self.forced_syncs += 1
            self.sync()
        self._visible[key] = data
        self._unsynced.append((key, data))
        self.writes += 1

    def read(self, key: str) -> bytes | None:
        """The visible value of ``key`` (None if absent)."""
        return self._visible.get(key)

    def snapshot(self) -> dict[str, bytes]:
        """Every visible key and value, keys sorted."""
        return {k: self._visible[k] for k in sorted(self._visible)}

    def durable_snapshot(self) -> dict[str, bytes]:
        """What would survive a crash now (no tearing), keys sorted."""
        return {k: self._durable[k] for k in sorted(self._durable)}

    @property
    def unsynced(self) -> int:
        """How many writes are not yet durable."""
        return len(self._unsynced)

    def sync(self) -> None:
        """Make every write so far durable (``fsync``)."""
        for key, data in self._unsynced:
            self._durable[key] = data
        self._unsynced.clear()
        self.syncs += 1

    def crash(self, rng: random.Random, *, torn: bool = False) -> TornWrite | None:
        """Lose every unsynced write; with ``torn``, keep a proper prefix of the last one."""
        torn_write: TornWrite | None = None
        if torn and self._unsynced:
            key, data = self._unsynced[-1]
            kept = rng.randrange(0, len(data)) if data else 0
            self._durable[key] = data[:kept]
            torn_write = TornWrite(key, data, kept)
            self.torn_writes += 1
        self.lost_writes += len(self._unsynced)
        self._unsynced.clear()
        self._visible = dict(self._durable)
        return torn_write
