"""What changed in the registry (``RegistryCore.take_changes``).

Changes describe what :meth:`RegistryCore.lookup` returns on this node: an entry became
visible, went away, lost a conflict, or was hidden/shown because membership marked its
owner failed/alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundation_p2p.registry.crdt import Entry


@dataclass(frozen=True, slots=True)
class Registered:
    """``entry.name`` now resolves to ``entry`` (a local register or one learnt from a peer)."""

    entry: Entry
    """The entry now visible."""

    @property
    def name(self) -> str:
        """The name that changed (``entry.name``)."""
        return self.entry.name


@dataclass(frozen=True, slots=True)
class Unregistered:
    """``name`` no longer resolves to ``entry``: unregistered (here or on a peer), or its
    owner was reaped by membership."""

    name: str
    """The name that changed."""
    entry: Entry
    """The entry that went away."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two concurrent entries exist for ``name`` (typically registered on both sides of a
    partition); every node picks the same ``winner``, the one with the larger stamp.

    The loser's node (its owner; for a cluster-scoped entry the node that wrote it) removes
    the loser from the CRDT, so the conflict resolves everywhere without coordination.
    """

    name: str
    """The name that changed."""
    winner: Entry
    """The entry ``lookup`` returns from now on (unless its owner is failed)."""
    loser: Entry
    """The entry that lost: its owner should stop what it registered the name for."""


@dataclass(frozen=True, slots=True)
class Hidden:
    """``entry``'s owner was marked failed: lookups skip it until shown again or reaped."""

    name: str
    """The name that changed."""
    entry: Entry
    """The entry hidden."""


@dataclass(frozen=True, slots=True)
class Shown:
    """``entry``'s owner was marked alive again: the entry is visible again."""

    name: str
    """The name that changed."""
    entry: Entry
    """The entry shown."""


Change = Registered | Unregistered | Conflict | Hidden | Shown
"""Any of the registry changes."""

__all__ = ["Change", "Conflict", "Hidden", "Registered", "Shown", "Unregistered"]
