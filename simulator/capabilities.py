"""Scenario items the parser knows but whose capability has not landed yet.

A scenario may name a fault op, a node role, a workload kind or an invariant that a later
issue brings (``transfer-leader`` needs consensus, ``kind = "singleton"`` needs the registry...).
The parser accepts the spelling, then refuses the scenario (``sim run`` exits 2) with a
message naming the missing capability, instead of running something that cannot work.

When a capability lands, its issue deletes its lines from :data:`PENDING` (and registers
its checkers in :data:`simulator.checkers.CHECKERS`); nothing else here changes.
"""

from __future__ import annotations

from dataclasses import dataclass

CONSENSUS = "consensus (issue 7)"
TRANSPORT = "transport (issue 5)"
REGISTRY = "registry (issue 6)"
COORDINATION = "coordination (issue 8)"

FAULT_OP = "fault op"
ROLE = "role"
WORKLOAD = "workload kind"
INVARIANT = "invariant"
CATEGORIES = (FAULT_OP, ROLE, WORKLOAD, INVARIANT)


@dataclass(frozen=True)
class Pending:
    """One scenario item that waits for a capability.

    ``name`` is exact, except that an invariant name ending in ``.*`` covers every
    invariant of that area (``raft.*`` covers ``raft.election_safety``).
    """

    category: str
    name: str
    capability: str


PENDING: tuple[Pending, ...] = (
    Pending(INVARIANT, "transport.*", TRANSPORT),
)
"""The table later issues edit: delete a line when its capability lands."""


def missing_capability(category: str, name: str) -> str | None:
    """The capability ``name`` (of ``category``) still waits for, or ``None`` if available.

    Roles are matched without their argument: ``@singleton:web`` is looked up as
    ``@singleton``.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
    if category == ROLE:
        name = name.split(":", 1)[0]
    for item in PENDING:
        if item.category != category:
            continue
        if item.name == name:
            return item.capability
        if item.name.endswith(".*") and name.startswith(item.name[:-1]):
            return item.capability
    return None


def is_pending_invariant(name: str) -> bool:
    """Whether ``name`` is an invariant a later capability will bring (so not a typo)."""
    return missing_capability(INVARIANT, name) is not None


def pending_summary() -> list[str]:
    """One line per pending item, for ``--help`` texts and the README."""
    return [f"{item.category} {item.name}: needs {item.capability}" for item in PENDING]
