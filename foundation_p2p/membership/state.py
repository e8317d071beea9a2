"""Member records as the application sees them: :class:`MemberState` and :class:`Member`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from foundation_p2p.addresses import Address, NodeId


class MemberState(enum.Enum):
    """Where a member stands; the wire code is the value (spec/membership.md)."""

    ALIVE = 0
    """Answering probes (or not yet suspected)."""
    SUSPECT = 1
    """Missed a probe; declared failed unless it refutes within the suspicion timeout."""
    FAILED = 2
    """Declared failed (suspicion timed out); retried for a while, then reaped."""
    LEFT = 3
    """Left gracefully (its own signed announcement); reaped later."""


NO_EXTENSIONS: Mapping[int, bytes] = MappingProxyType({})
"""The (read-only) extensions of a member whose record has none."""

STATE_BY_CODE: dict[int, MemberState] = {s.value: s for s in MemberState}
"""Wire code -> state."""


class _ExtensionsSlot:
    """Storage of :attr:`Member.extensions` outside the dataclass fields."""

    __slots__ = ("_extensions",)


@dataclass(frozen=True, slots=True)
class Member(_ExtensionsSlot):
    """One member as this node sees it (an immutable snapshot)."""

    node_id: NodeId
    """The member's identity: 16 bytes derived from its Ed25519 public key."""
    name: str
    """Its human-readable name (not an identity)."""
    address: Address
    """Where it is reached (from its latest signed announcement)."""
    incarnation: int
    """The highest incarnation known for it (its own, or one it was suspected at)."""
    state: MemberState
    """Alive, suspect, failed or left, as this node sees it."""
    metadata: bytes
    """Opaque application metadata (CBOR by convention), at most ``max_metadata_bytes``."""
    observer: bool
    """True for an observer: never probed, never counted in N, never a relay."""
    public_key: bytes
    """Its Ed25519 public key (verifies its announcements)."""
    since_mono: float
    """Monotonic time (this node's clock) of the last state change."""

    @property
    def extensions(self) -> Mapping[int, bytes]:
        """The member's announcement extensions, read-only (key 1: its channels' topic
        set; spec/membership.md section 3.5). Not the application's: that is ``metadata``.

        Not a dataclass field: it takes no part in equality, ``repr`` or event lines (a
        subsystem's business); set once by :meth:`with_extensions`."""
        try:
            return self._extensions  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            return NO_EXTENSIONS

    def with_extensions(self, extensions: Mapping[int, bytes]) -> Member:
        """This snapshot carrying ``extensions`` (read-only view; set once, by the
        membership, right after construction)."""
        if extensions:
            object.__setattr__(self, "_extensions", MappingProxyType(dict(extensions)))
        return self
