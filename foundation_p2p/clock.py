"""Time as the sans-I/O cores see it: a value handed in, never read from the machine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Now:
    """A reading of the two clocks a core may need.

    The Trio runtime builds one from ``time.monotonic()`` and ``time.time()``; the
    simulator builds one from its virtual clock and the node's skewed wall clock.
    """

    mono: float
    """Monotonic seconds from an arbitrary origin: timers and deadlines."""
    wall: float
    """Wall-clock seconds since the Unix epoch: only for what must compare across nodes."""

    @property
    def wall_ms(self) -> int:
        """The wall clock in whole milliseconds."""
        return int(self.wall * 1000)
