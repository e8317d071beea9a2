"""A node's virtual wall clock: virtual time plus an offset, a drift and steps.

Monotonic time is the world's virtual time for every node. The wall clock is
``EPOCH_S + mono + offset_s + drift_ppm * 1e-6 * (mono - drift_since)``, so skew moves
only ``now.wall``, never ``now.mono``.
"""

from __future__ import annotations

from foundation_p2p.clock import Now

EPOCH_S = 1_767_225_600.0
"""The wall-clock reading at virtual time 0 (2026-01-01T00:00:00Z), the same every run."""


class SkewedClock:
    """One node's wall clock; see the module docstring."""

    __slots__ = ("drift_ppm", "drift_since", "offset_s", "skewed")

    def __init__(self) -> None:
        self.offset_s = 0.0
        self.drift_ppm = 0.0
        self.drift_since = 0.0
        self.skewed = False
        """False while the clock reads true time (a fast path for the world)."""

    def _update(self) -> None:
        self.skewed = bool(self.offset_s or self.drift_ppm)

    def wall(self, mono: float) -> float:
        """The wall-clock reading at virtual time ``mono``."""
        if self.drift_ppm:
            return (
                EPOCH_S + mono + self.offset_s + self.drift_ppm * 1e-6 * (mono - self.drift_since)
            )
        return EPOCH_S + mono + self.offset_s

    def now(self, mono: float) -> Now:
        """The ``Now`` a core sees at virtual time ``mono``."""
        return Now(mono, self.wall(mono))

    def set_offset(self, offset_s: float) -> None:
        """Set the constant offset from true time (``skew`` kind ``offset``)."""
        self.offset_s = offset_s
        self._update()

    def set_drift(self, mono: float, drift_ppm: float) -> None:
        """Drift from ``mono`` on at ``drift_ppm`` (what drifted so far is kept)."""
        self.offset_s += self.drift_ppm * 1e-6 * (mono - self.drift_since)
        self.drift_ppm = drift_ppm
        self.drift_since = mono
        self._update()

    def step(self, delta_s: float) -> None:
        """Jump the wall clock by ``delta_s`` (negative steps go back in time)."""
        self.offset_s += delta_s
        self._update()

    def reset(self, mono: float) -> None:
        """Back to true time (the skew fault's undo)."""
        self.offset_s = 0.0
        self.drift_ppm = 0.0
        self.drift_since = mono
        self.skewed = False
