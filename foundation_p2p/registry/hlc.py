"""A hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014).

A :class:`Stamp` is ``(wall_ms, logical, node_id)``: the physical part follows the
largest wall clock (in milliseconds) this node has seen, the logical part counts events
within one millisecond, and the node id breaks the remaining ties, so stamps are totally
ordered and two nodes never produce the same one. If event *a* happened before event *b*
(*b*'s node had seen *a*'s stamp), then ``stamp(a) < stamp(b)``, whatever the wall clocks
say; for concurrent events the order is the wall clock's, to the millisecond.

The clock never reads the machine's time: every call takes the driver's wall clock
(``Now.wall``, float seconds since the epoch).

A remote stamp far in the future would drag every later local stamp with it (a node with
a clock one year ahead would make every other node's writes lose for a year). So
:meth:`HybridClock.observe` follows a remote stamp only up to ``max_clock_lead_s`` ahead of
the local wall clock; beyond that it clamps (counted ``registry.hlc.clamped``). The remote
stamp itself is not changed — a CRDT's order must be the same on every replica — so a
stamp from such a node may still win a conflict it should have lost; the counter shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundation_p2p.addresses import NodeId
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError

MAX_LOGICAL = 2**32 - 1
"""Largest logical counter; past it the clock moves its physical part one millisecond on."""


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """A hybrid logical time: compared as the tuple ``(wall_ms, logical, node_id)``."""

    wall_ms: int
    """The physical part: milliseconds since the Unix epoch (the largest wall clock seen)."""
    logical: int
    """Events at the same ``wall_ms``, counted from 0."""
    node_id: NodeId
    """The node that made the stamp (16 bytes): the final tie-breaker."""

    def __str__(self) -> str:
        return f"{self.wall_ms}.{self.logical}@{self.node_id.hex()[:8]}"


class HybridClock:
    """The hybrid logical clock of one node: :meth:`tick` for local events, :meth:`observe`
    for stamps received from other nodes."""

    __slots__ = ("_counters", "_logical", "_max_lead_ms", "_wall_ms", "node_id")

    def __init__(
        self, node_id: NodeId, *, max_clock_lead_s: float = 60.0, counters: Counters | None = None
    ) -> None:
        if not max_clock_lead_s > 0:
            raise ConfigError(f"max_clock_lead_s: must be positive, got {max_clock_lead_s!r}")
        self.node_id = node_id
        self._max_lead_ms = int(max_clock_lead_s * 1000)
        self._counters = counters if counters is not None else Counters()
        self._wall_ms = 0
        self._logical = 0

    @property
    def last(self) -> tuple[int, int]:
        """The clock's current ``(wall_ms, logical)``."""
        return (self._wall_ms, self._logical)

    def tick(self, wall: float) -> Stamp:
        """A stamp for a local event at wall-clock time ``wall`` (larger than every stamp this
        clock has made or observed, within the clamp)."""
        pt = int(wall * 1000)
        if pt > self._wall_ms:
            self._wall_ms = pt
            self._logical = 0
        elif self._logical >= MAX_LOGICAL:
            self._wall_ms += 1
            self._logical = 0
        else:
            self._logical += 1
        return Stamp(self._wall_ms, self._logical, self.node_id)

    def observe(self, stamp: Stamp, wall: float) -> bool:
        """Take in a remote ``stamp`` received at wall-clock time ``wall``.

        Returns False (and counts ``registry.hlc.clamped``) when ``stamp`` leads ``wall`` by
        more than ``max_clock_lead_s``: the clock then advances only to that bound.
        """
        pt = int(wall * 1000)
        limit = pt + self._max_lead_ms
        followed = True
        remote_ms, remote_logical = stamp.wall_ms, stamp.logical
        if remote_ms > limit:
            self._counters.inc("registry.hlc.clamped")
            remote_ms, remote_logical = limit, 0
            followed = False
        if remote_ms > self._wall_ms:
            self._wall_ms = remote_ms
            self._logical = min(remote_logical, MAX_LOGICAL)
        elif remote_ms == self._wall_ms and remote_logical > self._logical:
            self._logical = min(remote_logical, MAX_LOGICAL)
        return followed
