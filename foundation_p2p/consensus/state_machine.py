"""The interface between the Raft log and an application's replicated state machine.

A state machine receives every committed ``NORMAL`` entry in log order, on every replica;
it must be deterministic (the same commands in the same order give the same results and
the same snapshot bytes on every node) and must never raise on a command's bytes: a
malformed command is a result like any other (an error result), since every replica has
to reach the same state after it. :class:`foundation_p2p.consensus.kv.KVStore` is the
built-in one; an application can plug in its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from foundation_p2p.consensus.types import Entry, EntryKind
from foundation_p2p.errors import ConfigError


class StateMachine(Protocol):
    """What the Raft driver applies committed commands to."""

    def apply(self, index: int, command: bytes) -> bytes:
        """Apply the command committed at log ``index``; return its encoded result.

        Deterministic, and never raises for any ``command`` bytes.
        """
        ...

    def snapshot(self) -> bytes:
        """The whole state as bytes (deterministic: equal states give equal bytes)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state by a snapshot's (a ``WireError`` if ``data`` is not
        one, and then the state is unchanged)."""
        ...


class AppliedIndex:
    """The applied index of a state machine, checked to move forward only."""

    def __init__(self, index: int = 0) -> None:
        self.index = index

    def advance(self, index: int) -> None:
        """Record that entry ``index`` was applied; :class:`ConfigError` if it is not
        after the last one (a driver applying out of order or twice)."""
        if index <= self.index:
            raise ConfigError(
                f"state machine: entry {index} applied after entry {self.index} (out of order)"
            )
        self.index = index


def apply_entries(machine: StateMachine, entries: Iterable[Entry]) -> list[tuple[int, bytes]]:
    """Apply the ``NORMAL`` entries of a committed batch in order; ``(index, result)`` for
    each. Other entry kinds (no-ops, configuration changes) are the core's, not the
    machine's, and are skipped.

    Equivalent lower-level calls: ``machine.apply(e.index, e.data)`` for each normal entry.
    """
    out: list[tuple[int, bytes]] = []
    for e in entries:
        if e.kind == EntryKind.NORMAL:
            out.append((e.index, machine.apply(e.index, e.data)))
    return out
