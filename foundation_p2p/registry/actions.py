"""What the supervisor core asks its driver to do, and what it reports about children.

The Trio runtime turns a :class:`StartService` into the application's async callable
running in the node's nursery and a :class:`StopService` into its cancellation; the
simulator runs a virtual service instead. Either reports back through
``SupervisorCore.service_started`` / ``service_exited`` / ``handoff_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from foundation_p2p.addresses import NodeId

ChildKind = Literal["singleton", "replicated", "child"]
CHILD_KINDS: tuple[str, ...] = ("singleton", "replicated", "child")


@dataclass(frozen=True, slots=True)
class NameConflict:
    """The registry resolved a name conflict against this node's instance."""

    name: str
    """The contested name."""
    winner_node: NodeId | None
    """The node whose instance keeps the name (None: a cluster-scoped entry won)."""

    def __str__(self) -> str:
        who = "a cluster-scoped entry" if self.winner_node is None else self.winner_node.hex()
        return f"name conflict on {self.name!r}: won by {who}"


StopReason = str | NameConflict
"""Why a service is stopped: ``NameConflict`` or one of the strings ``"handoff"``
(placement moved; state is passed on), ``"moved"`` (placement moved, no handoff),
``"terminated"`` (``terminate`` or the spec was removed), ``"quorum_lost"``,
``"shutdown"`` (``prepare_shutdown``)."""


@dataclass(frozen=True, slots=True)
class StartService:
    """Start an instance of ``service`` for the child ``name`` on this node."""

    name: str
    """The child's name (a singleton's registered name)."""
    service: str
    """The service name the application defined on every node."""
    args: Any
    """The spec's arguments (a CBOR value)."""
    instance: int
    """This node's number for the instance; feedback names it, stale feedback is ignored."""
    handoff: Any | None
    """State the previous instance handed off (None when there is none)."""


@dataclass(frozen=True, slots=True)
class StopService:
    """Stop the running instance ``instance`` of ``name``."""

    name: str
    """The child's name."""
    instance: int
    """The instance to stop."""
    reason: StopReason
    """Why (see :data:`StopReason`); a :class:`NameConflict` means: never restarted here
    under that name because of its exit."""
    handoff: bool
    """True when the service should return state for its successor
    (``SupervisorCore.handoff_state``) before it exits."""


Action = StartService | StopService


ChildState = Literal[
    "pending",  # placed here, waiting (quorum lease, successor wait, the name still held)
    "starting",  # StartService emitted, service_started not yet reported
    "running",
    "backoff",  # crashed, restart scheduled
    "stopping",  # StopService emitted, exit not yet reported
    "given_up",  # restart intensity exceeded on this node
    "name_conflict",  # lost the name to another node's instance
    "exited",  # finished (transient normal exit, temporary exit) on this node
    "remote",  # runs (or is placed) on another node
    "unplaced",  # no eligible node (every live node gave up, or quorum lacking)
]


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of ``SupervisorCore.which_children``."""

    name: str
    """The child's name."""
    service: str
    """Its service name."""
    kind: ChildKind
    """``singleton``, ``replicated`` or ``child``."""
    node: NodeId | None
    """Where it runs or is placed (this node for local rows; None if unplaced)."""
    state: ChildState
    """This node's view of the child (see :data:`ChildState`)."""
    restarts: int
    """Restarts on this node since the spec was first seen here."""
    instance: int | None = None
    """This node's current instance number (None for remote rows)."""
    reason: StopReason | None = None
    """Why the last local instance stopped, if it did."""
