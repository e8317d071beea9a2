"""Rendezvous (highest-random-weight) placement of names on the live members.

Every node that knows the same member set computes the same placement for a name, with
no coordination: each member gets a weight ``BLAKE2b(name, node id)`` and the name goes
to the member with the highest weight (Thaler and Ravishankar's HRW hashing). Removing a
member moves only the names that member held; adding one moves only the names it now
wins — the minimal disruption that active redistribution relies on.

The weight hashes the name's UTF-8 length (4 bytes, big-endian), the name and the 16-byte
node id with BLAKE2b (8-byte digest, personalised ``"fp2p-hrw"``), so no two
(name, node) pairs share an input and Python's per-process ``hash()`` is never involved.
Ties (two members with the same 64-bit weight) go to the larger node id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from foundation_p2p.addresses import NodeId

_PERSON = b"fp2p-hrw"


def rendezvous_weight(name: str, node_id: NodeId) -> int:
    """The 64-bit weight of ``node_id`` for ``name`` (larger wins)."""
    raw = name.encode("utf-8")
    h = hashlib.blake2b(digest_size=8, person=_PERSON)
    h.update(len(raw).to_bytes(4, "big"))
    h.update(raw)
    h.update(node_id)
    return int.from_bytes(h.digest(), "big")


def rendezvous_order(name: str, members: Iterable[NodeId]) -> list[NodeId]:
    """The members ordered by preference for ``name``: the owner first, then its successors.

    Duplicates in ``members`` count once; the order of ``members`` does not matter.
    """
    unique = set(members)
    return sorted(unique, key=lambda m: (rendezvous_weight(name, m), m), reverse=True)


def rendezvous_owner(
    name: str, members: Iterable[NodeId], *, exclude: Iterable[NodeId] = ()
) -> NodeId | None:
    """The member with the highest weight for ``name``, skipping ``exclude``; None if none."""
    skip = set(exclude)
    best: tuple[int, NodeId] | None = None
    for m in set(members):
        if m in skip:
            continue
        key = (rendezvous_weight(name, m), m)
        if best is None or key > best:
            best = key
    return None if best is None else best[1]


class RendezvousPlacement:
    """The current live member set and the placement of names over it.

    Equivalent lower-level calls: :func:`rendezvous_owner` / :func:`rendezvous_order` with
    ``self.members``.
    """

    __slots__ = ("_members",)

    def __init__(self, members: Iterable[NodeId] = ()) -> None:
        self._members: frozenset[NodeId] = frozenset(members)

    @property
    def members(self) -> frozenset[NodeId]:
        """The member set placement is computed over."""
        return self._members

    def set_members(self, members: Iterable[NodeId]) -> bool:
        """Replace the member set; True if it changed."""
        new = frozenset(members)
        changed = new != self._members
        self._members = new
        return changed

    def owner(self, name: str, *, exclude: Iterable[NodeId] = ()) -> NodeId | None:
        """Where ``name`` goes now (None when no member is left after ``exclude``)."""
        return rendezvous_owner(name, self._members, exclude=exclude)

    def order(self, name: str) -> list[NodeId]:
        """Every member in preference order for ``name``."""
        return rendezvous_order(name, self._members)
