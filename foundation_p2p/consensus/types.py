"""Values shared by the Raft core, its log storage and the state machines.

These are plain data: the Raft core (:mod:`foundation_p2p.consensus.raft`) produces and
consumes them, the write-ahead log stores them, the wire codec encodes them. Nothing here
does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from foundation_p2p.addresses import NodeId


class EntryKind(IntEnum):
    """What a log entry carries (its number is on the wire and on disk)."""

    NORMAL = 0
    """An application command for the state machine (``data`` is its bytes)."""
    CONF_CHANGE = 1
    """A change of the group's configuration (``data`` is an encoded :class:`ConfState`
    change; the Raft core defines the encoding)."""
    NOOP = 2
    """The empty entry a new leader appends to commit entries of earlier terms
    (Raft section 8); ``data`` is empty."""


class Kind:
    """The :class:`EntryKind` members as plain class attributes (``Kind.NORMAL is
    EntryKind.NORMAL``). Reading a member off an enum class goes through the enum
    metaclass's ``__getattr__`` hook on Python 3.11, several times slower; hot paths use
    these."""

    NORMAL: Final = EntryKind.NORMAL
    CONF_CHANGE: Final = EntryKind.CONF_CHANGE
    NOOP: Final = EntryKind.NOOP


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry."""

    term: int
    """The leader's term when it was appended (>= 1)."""
    index: int
    """Its position in the log (>= 1)."""
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


_new = object.__new__
_set_term, _set_index, _set_kind, _set_data = (
    Entry.__dict__[name].__set__ for name in ("term", "index", "kind", "data")
)


def make_entry(term: int, index: int, kind: EntryKind, data: bytes) -> Entry:
    """``Entry(term, index, kind, data)``, the same frozen object, built without the
    frozen dataclass's ``object.__setattr__`` call per field (several times faster: the
    leader builds one per proposal, a follower one per entry received)."""
    e = _new(Entry)
    _set_term(e, term)
    _set_index(e, index)
    _set_kind(e, kind)
    _set_data(e, data)
    return e


@dataclass(frozen=True, slots=True)
class HardState:
    """What a node must persist before it answers (Raft Figure 2, "persistent state")."""

    term: int = 0
    """``currentTerm``."""
    vote: NodeId | None = None
    """``votedFor`` in ``term``, or ``None``."""
    commit: int = 0
    """The commit index known (persisted so a restart can re-apply up to it quickly; not
    needed for safety)."""


@dataclass(frozen=True, slots=True)
class ConfState:
    """The group's configuration: who votes and who only learns.

    During a joint-consensus change ``voters_outgoing`` holds the old voter set and a
    decision needs a majority of both sets; otherwise it is empty.
    """

    voters: frozenset[NodeId] = field(default_factory=frozenset)
    learners: frozenset[NodeId] = field(default_factory=frozenset)
    voters_outgoing: frozenset[NodeId] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot stands in the log and the configuration at that point."""

    index: int
    """The last log index the snapshot includes."""
    term: int
    """That entry's term."""
    conf: ConfState = field(default_factory=ConfState)
