"""Named counters of everything a node drops, refuses or overflows."""

from __future__ import annotations


class Counters(dict[str, int]):
    """A ``dict`` of dotted counter names to counts; missing names read as 0.

    Names follow DESIGN.md (``area.what``): for example ``packets.dropped.auth_failed``.
    """

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name``."""
        self[name] = self.get(name, 0) + n

    def __missing__(self, key: str) -> int:
        return 0

    def snapshot(self) -> dict[str, int]:
        """A copy with names in sorted order (deterministic output)."""
        return {k: self[k] for k in sorted(self)}
