"""The distributed supervisor core: where each supervised service runs, and its restarts.

``SupervisorCore`` is sans-I/O. It keeps no replicated state of its own: everything other
nodes must know lives in the registry (``RegistryCore``), under names it reserves:

* ``$sup/spec/<name>`` — a child's spec, cluster-scoped (``owner=None``): written by
  ``start_*`` on any node, removed by ``terminate`` (or when a transient/temporary child
  finishes), replicated everywhere, so any node can start or restart the child;
* ``<name>`` — a running **singleton** instance, ``owner`` = the node running it, so
  ``lookup_singleton(name)`` is ``registry.lookup(name)``; or, between an old owner's stop
  and the successor's start, a cluster-scoped **handoff** entry carrying the state the old
  instance handed over (see "Handoff" below);
* ``$sup/giveup/<node hex>/<name>`` — ``owner`` = that node: it exceeded the child's
  restart intensity and gave the child up for ``give_up_s``;
* ``$sup/leaving/<node hex>`` — ``owner`` = that node: it is shutting down gracefully
  (``prepare_shutdown``) and is no longer a placement target.

Placement. A singleton or a ``child`` goes to the rendezvous-hash owner of its name over
the live members (``set_members``), skipping leaving nodes and nodes that gave the child
up; a ``replicated`` child runs on every live node. Every input (membership, quorum view,
registry changes, driver feedback, timers) leads to one *reconcile* pass that compares,
per spec, where the child should run with what this node runs, and emits actions:

* placed here, not running → ``StartService`` (a singleton first claims its name in the
  registry; it waits while another live node still holds the name);
* running here, placed elsewhere for ``handoff_delay_s`` → ``StopService(handoff=True)``
  for a singleton (reason ``"handoff"``), ``StopService(reason="moved")`` for a child;
  redistribution is active, the delay lets the registry reveal a healed partition's
  duplicate first (which then stops with ``NameConflict`` instead of handing off);
* running here, the registry shows another node's instance winning the name →
  ``StopService(reason=NameConflict(name, winner))``; the instance is not restarted because
  of that stop; the row stays ``name_conflict`` in ``which_children``. The node runs the
  name again only if placement later gives it the name *and* the winner released it
  (handed off, or its owner failed) — a fresh start, never a restart fighting the winner.
  "Failed" needs the winner to have been live in this view at or after the loss; a winner
  hidden since then (a stale view after a heal) is waited for up to ``conflict_hold_s``;

Handoff (the chosen path: through the registry). The old owner stops its instance with
``handoff=True``; the driver passes the state the service returns to ``handoff_state`` and
then reports the exit. Only then the old owner replaces its claim on ``<name>`` by a
cluster-scoped entry ``{"state": ..., "from": node id, "service": ...}`` (metadata
``{"$sup": "handoff"}``); the successor, on finding it, removes it, claims the name and
starts with ``StartService.handoff`` = that state. Being cluster-scoped, the state survives
the old owner leaving the cluster (``prepare_shutdown``). Its size is bounded by the
registry's ``max_value_bytes``; a larger state is dropped (counted), the successor starts
without it.

Restarts: see ``restart.py`` (permanent/transient/temporary, intensity, backoff). Beyond
the intensity the child is **given up on this node**: its claim is released and a
give-up entry excludes this node from the child's placement for ``give_up_s``, so the
child moves to the next node in rendezvous order (counted ``supervisor.gave_up``). When
every live node gave it up, it runs nowhere (``which_children`` says ``unplaced``) until
the first give-up expires. A transient child's normal exit, or any exit of a temporary
child, finishes it: a singleton's or child's spec is removed cluster-wide; a replicated
child stays finished on this node only.

Quorum mode (singletons with ``quorum=True``): see ``lease.py`` for the lease and its
safety argument (also ``spec/supervisor.md``). Here: the owner stops the instance as soon
as it stops holding the lease (``next_deadline`` names the expiry) and releases the name;
a successor starts only while it holds the lease, and — unless the old owner released
the name or handed it off gracefully, seen under the successor's current unbroken lease —
only ``successor_wait_s`` after its last evidence that the old owner was alive (or after
its lease began, if that is later). The configured member set changes only through
``SupervisorConfig.quorum_members`` or an explicit ``QuorumView.configured``; membership
changes never change it (horde#45).

Bounds: at most ``max_children`` specs are acted on (more are ignored, counted); local
records exist only for specs; the action queue holds at most two actions per child (a
child emits a start, at most one stop, and then waits for the driver's feedback).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from foundation_p2p.addresses import NodeId, short_id
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, FoundationError, MalformedError
from foundation_p2p.registry.actions import (
    CHILD_KINDS,
    Action,
    ChildInfo,
    ChildKind,
    ChildState,
    NameConflict,
    StartService,
    StopReason,
    StopService,
)
from foundation_p2p.registry.events import Conflict
from foundation_p2p.registry.lease import LeasePolicy, QuorumView, lease_expiry
from foundation_p2p.registry.placement import RendezvousPlacement, rendezvous_owner
from foundation_p2p.registry.restart import (
    OUTCOMES,
    ExponentialBackoff,
    RestartIntensity,
    RestartPolicy,
    check_policy,
    should_restart,
)

if TYPE_CHECKING:
    from foundation_p2p.config import NodeConfig
    from foundation_p2p.registry.crdt import Entry

log = logging.getLogger("foundation_p2p.registry.supervisor")

SPEC_PREFIX = "$sup/spec/"
"""Registry prefix of child specs (cluster-scoped entries)."""
GIVEUP_PREFIX = "$sup/giveup/"
"""Registry prefix of give-up markers: ``$sup/giveup/<node hex>/<name>``."""
LEAVING_PREFIX = "$sup/leaving/"
"""Registry prefix of leaving markers: ``$sup/leaving/<node hex>``."""
RESERVED_PREFIX = "$sup/"
"""Names under this prefix are the supervisor's; a child's name may not start with it."""
META_KEY = "$sup"
"""Metadata key that marks the supervisor's entries (``spec``, ``instance``, ``handoff``,
``giveup``, ``leaving``)."""
MAX_CHILD_NAME_BYTES = 200
"""Longest child name in UTF-8 bytes (the registry allows 255; the give-up marker adds 45)."""

_HEX_LEN = 32
_ACTIVE: frozenset[str] = frozenset({"starting", "running"})


class SpecConflict(ConfigError):
    """A child of that name is already started with a different spec (terminate it first)."""


class RegistryLike(Protocol):
    """The part of ``RegistryCore``'s API the supervisor uses (section 1 of the contract)."""

    def register(
        self,
        now: Now,
        name: str,
        value: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        owner: NodeId | Literal["self"] | None = "self",
    ) -> Entry: ...

    def put(
        self,
        now: Now,
        name: str,
        value: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        owner: NodeId | Literal["self"] | None = "self",
    ) -> Entry: ...

    def unregister(self, now: Now, name: str) -> bool: ...

    def lookup(self, name: str) -> Entry | None: ...

    def select(
        self,
        prefix: str = "",
        predicate: Callable[[Entry], bool] | None = None,
        limit: int | None = None,
    ) -> list[Entry]: ...

    def count(self, prefix: str = "") -> int: ...

    def conflicts_of(self, name: str) -> list[Entry]: ...

    @property
    def failed(self) -> frozenset[NodeId]: ...


def check_child_name(name: str) -> str:
    """Return ``name`` if it can name a child; else raise :class:`ConfigError` saying why."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"child name: {name!r} must be a non-empty string")
    raw = name.encode("utf-8", errors="replace")
    if len(raw) > MAX_CHILD_NAME_BYTES:
        raise ConfigError(
            f"child name: {len(raw)} bytes of UTF-8 is over {MAX_CHILD_NAME_BYTES}: {name[:40]!r}…"
        )
    if name.startswith(RESERVED_PREFIX):
        raise ConfigError(f"child name: {name!r} uses the reserved prefix {RESERVED_PREFIX!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise ConfigError(f"child name: {name!r} contains a control character")
    return name


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What to run, where (by kind), and how to restart it. Validated on construction."""

    name: str
    """The child's name (a singleton's registered name)."""
    service: str
    """The service name the application defined on every node."""
    args: Any = None
    """Arguments for the service (a CBOR value, replicated with the spec)."""
    kind: ChildKind = "child"
    """``singleton`` (one instance cluster-wide, name registered), ``replicated`` (one per
    live node) or ``child`` (placed by rendezvous hashing, no cluster-wide uniqueness)."""
    restart: RestartPolicy = "permanent"
    """``permanent``, ``transient`` or ``temporary`` (``restart.py``)."""
    quorum: bool = False
    """Singletons only: run only where a majority of the configured set is reachable."""
    max_restarts: int = 3
    """Restart intensity: at most this many restarts ..."""
    max_seconds: float = 5.0
    """... within this many seconds, else the child is given up on this node."""

    def __post_init__(self) -> None:
        check_child_name(self.name)
        if not isinstance(self.service, str) or not self.service:
            raise ConfigError(f"{self.name!r}: service must be a non-empty string")
        if self.kind not in CHILD_KINDS:
            raise ConfigError(
                f"{self.name!r}: kind {self.kind!r} is not one of {', '.join(CHILD_KINDS)}"
            )
        check_policy(self.restart)
        if not isinstance(self.quorum, bool):
            raise ConfigError(f"{self.name!r}: quorum must be true or false")
        if self.quorum and self.kind != "singleton":
            raise ConfigError(f"{self.name!r}: quorum mode is for singletons, not {self.kind}")
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int):
            raise ConfigError(f"{self.name!r}: max_restarts must be an integer")
        if self.max_restarts < 0:
            raise ConfigError(f"{self.name!r}: max_restarts {self.max_restarts} must be >= 0")
        seconds = self.max_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ConfigError(f"{self.name!r}: max_seconds {seconds!r} must be > 0")

    def to_value(self) -> dict[str, Any]:
        """The spec as the CBOR map stored at ``$sup/spec/<name>``."""
        return {
            "service": self.service,
            "args": self.args,
            "kind": self.kind,
            "restart": self.restart,
            "quorum": self.quorum,
            "max_restarts": self.max_restarts,
            "max_seconds": float(self.max_seconds),
        }

    @classmethod
    def from_value(cls, name: str, value: Any) -> ChildSpec:
        """Parse a stored spec; :class:`MalformedError` naming the problem if it is not one."""
        if not isinstance(value, Mapping):
            raise MalformedError(f"spec {name!r}: not a map")
        unknown = set(value) - {
            "service", "args", "kind", "restart", "quorum", "max_restarts", "max_seconds"
        }
        if unknown:
            raise MalformedError(f"spec {name!r}: unknown keys {sorted(map(str, unknown))}")
        try:
            return cls(
                name=name,
                service=value["service"],
                args=value.get("args"),
                kind=value["kind"],
                restart=value["restart"],
                quorum=value.get("quorum", False),
                max_restarts=value["max_restarts"],
                max_seconds=value["max_seconds"],
            )
        except KeyError as exc:
            raise MalformedError(f"spec {name!r}: missing key {exc.args[0]!r}") from None
        except ConfigError as exc:
            raise MalformedError(f"spec {name!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Settings of one :class:`SupervisorCore` (the ``[supervisor]`` TOML table)."""

    lease_s: float = 4.0
    """Quorum lease: how long a majority's direct acks keep it (``lease.py``)."""
    max_drift: float = 0.01
    """Bound on monotonic clock rate error the lease's safety assumes (0.01 = 1 %)."""
    stop_margin_s: float = 1.0
    """Real seconds a stopping service may take after its lease ran out."""
    backoff_base_s: float = 0.1
    """First restart delay; doubled per restart already in the intensity window."""
    backoff_max_s: float = 5.0
    """Largest restart delay."""
    backoff_jitter: float = 0.2
    """Each delay is scaled by a factor drawn from [1 - jitter, 1]."""
    give_up_s: float = 30.0
    """How long a node that exceeded a child's restart intensity stays out of its placement."""
    handoff_delay_s: float = 1.0
    """How long a running child stays after placement moved it elsewhere before it is
    stopped (and handed off): lets the registry reveal a duplicate first (after a partition
    heals the duplicate then gets ``NameConflict`` instead of handing off), and damps
    flapping membership. Not applied to ``prepare_shutdown`` or a lost quorum lease."""
    check_interval_s: float = 0.5
    """Longest time between two reconcile passes (registry changes may arrive unannounced)."""
    max_children: int = 10_000
    """Most specs acted on; further ones are ignored (counted ``supervisor.specs.over_limit``)."""
    quorum_members: frozenset[NodeId] = frozenset()
    """The static configured member set of quorum mode (empty: given later by
    ``QuorumView.configured``; until then quorum singletons run nowhere)."""
    conflict_hold_s: float = 10.0
    """After losing a name conflict, how long a node does not claim the name while the
    winner is failed in its view and was not seen live since (``_held_by_winner``)."""
    stable_s: float = 10.0
    """Without ``quorum_members``, the integration's last-known-stable configured set
    changes only after every member in the node's view has been alive, with no membership
    change, for this long (``RegistrySubsystem``; ``spec/supervisor.md`` section 5)."""

    def __post_init__(self) -> None:
        if not self.handoff_delay_s >= 0:
            raise ConfigError(f"SupervisorConfig.handoff_delay_s: {self.handoff_delay_s} < 0")
        for name in ("lease_s", "check_interval_s", "give_up_s", "stable_s", "conflict_hold_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(
                    f"SupervisorConfig.{name}: must be a positive number, got {value!r}"
                )
        if isinstance(self.max_children, bool) or not isinstance(self.max_children, int):
            raise ConfigError("SupervisorConfig.max_children: must be an integer")
        if self.max_children <= 0:
            raise ConfigError(f"SupervisorConfig.max_children: {self.max_children} must be > 0")
        for m in self.quorum_members:
            if not isinstance(m, bytes) or len(m) != 16:
                raise ConfigError(f"SupervisorConfig.quorum_members: {m!r} is not a 16-byte id")
        LeasePolicy(self.lease_s, self.max_drift, self.stop_margin_s)
        ExponentialBackoff(self.backoff_base_s, self.backoff_max_s, self.backoff_jitter)

    @property
    def lease(self) -> LeasePolicy:
        """The lease settings as a :class:`LeasePolicy`."""
        return LeasePolicy(self.lease_s, self.max_drift, self.stop_margin_s)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> SupervisorConfig:
        """Build from a TOML table (``quorum_members`` as hex node ids); unknown keys refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"[supervisor]: unknown key {key!r}")
            values[key] = value
        if "quorum_members" in values:
            members = values["quorum_members"]
            if not isinstance(members, list):
                raise ConfigError("[supervisor]: quorum_members must be a list of hex node ids")
            ids: set[bytes] = set()
            for text in members:
                try:
                    ids.add(bytes.fromhex(text))
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"[supervisor]: quorum_members: {text!r} is not a hex node id"
                    ) from None
            values["quorum_members"] = frozenset(ids)
        return cls(**values)

    @classmethod
    def from_node_config(cls, config: NodeConfig) -> SupervisorConfig:
        """The supervisor settings of a node: its ``[supervisor]`` table (``extra``)."""
        table = config.extra.get("supervisor", {})
        if not isinstance(table, Mapping):
            raise ConfigError("[supervisor]: must be a table")
        return cls.from_mapping(table)


_NO_HANDOFF = object()


class _Child:
    """This node's record of one child (only for specs placed or run here)."""

    __slots__ = (
        "given_up_until",
        "handoff_state",
        "instance",
        "intensity",
        "lost_at",
        "lost_to",
        "lost_to_seen",
        "move_at",
        "reason",
        "restart_at",
        "restarts",
        "spec",
        "state",
        "stop_handoff",
        "stop_reason",
        "wait_until",
    )

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.state: ChildState = "pending"
        self.instance: int | None = None
        self.intensity = RestartIntensity(spec.max_restarts, spec.max_seconds)
        self.restarts = 0
        self.restart_at: float | None = None
        self.reason: StopReason | None = None
        self.stop_reason: StopReason | None = None
        self.stop_handoff = False
        self.handoff_state: Any = _NO_HANDOFF
        self.given_up_until: float | None = None
        self.wait_until: float | None = None
        self.move_at: float | None = None
        self.lost_to: NodeId | None = None
        """The owner of the claim this node last lost the name to (NameConflict)."""
        self.lost_to_seen = False
        """Whether ``lost_to`` was in the live set at or since the loss."""
        self.lost_at = 0.0

    def update_spec(self, spec: ChildSpec) -> None:
        if (spec.max_restarts, spec.max_seconds) != (self.spec.max_restarts, self.spec.max_seconds):
            self.intensity = RestartIntensity(spec.max_restarts, spec.max_seconds)
        self.spec = spec


def _is_handoff(entry: Entry) -> bool:
    return (
        entry.owner is None
        and entry.metadata.get(META_KEY) == "handoff"
        and isinstance(entry.value, Mapping)
        and "state" in entry.value
    )


class SupervisorCore:
    """Decides which supervised services run on this node; emits start/stop actions.

    Inputs: ``set_members`` / ``set_quorum_view`` (membership), the ``start_*`` /
    ``terminate`` API, driver feedback (``service_started``, ``service_exited``,
    ``handoff_state``), ``registry_changed`` (a hint that the registry changed) and
    ``handle_timer``. Outputs: ``take_actions`` and ``next_deadline``.
    """

    def __init__(
        self,
        node_id: NodeId,
        registry: RegistryLike,
        *,
        config: SupervisorConfig | None = None,
        counters: Counters | None = None,
        rng: random.Random,
    ) -> None:
        self.node_id = node_id
        self.registry = registry
        self.config = config if config is not None else SupervisorConfig()
        self.counters = counters if counters is not None else Counters()
        self.rng = rng
        self._hex = node_id.hex()
        self._lease = self.config.lease
        self._backoff = ExponentialBackoff(
            self.config.backoff_base_s, self.config.backoff_max_s, self.config.backoff_jitter
        )
        self._placement = RendezvousPlacement([node_id])
        self._members_version = 0
        self._configured: frozenset[NodeId] = self.config.quorum_members
        self._last_heard: dict[NodeId, float] = {}
        self._readmitted: dict[NodeId, float] = {}
        self._children: dict[str, _Child] = {}
        self._specs: dict[str, ChildSpec] = {}
        self._spec_cache: dict[str, tuple[Any, ChildSpec | None]] = {}
        self._owner_seen: dict[str, tuple[NodeId, float]] = {}
        self._contested: dict[str, tuple[Any, NodeId, float]] = {}
        self._placement_cache: dict[str, tuple[int, frozenset[NodeId], NodeId | None]] = {}
        self._actions: list[Action] = []
        self._next_instance = 1
        self._leaving = False
        self._last_check: float | None = None
        self._appeared: dict[NodeId, float] = {}
        self._lease_since: float | None = None
        self._lease_until: float | None = None

    # ------------------------------------------------------------------ membership input

    def set_members(self, now: Now, live: Iterable[NodeId]) -> None:
        """The live members (alive and suspect, this node included) as membership sees them.

        Placement follows this set at once; the quorum configured set never does.
        """
        self._note_owners_alive(now)
        members = set(live)
        members.add(self.node_id)
        old = self._placement.members
        self._appeared = {
            m: self._appeared.get(m, now.wall) if m in old else now.wall for m in members
        }
        # when each configured member (bounded by the configured set) last came back
        self._readmitted = {
            m: self._readmitted.get(m, now.mono) if m in old else now.mono
            for m in members if m in self._configured and m != self.node_id
        }
        if self._placement.set_members(members):
            self._members_version += 1
            self._placement_cache.clear()
        self._reconcile(now)

    def set_quorum_view(self, now: Now, view: QuorumView) -> None:
        """Per member, when it was last heard directly; maybe a new configured set.

        A ``view.configured`` different from the current set replaces it: the one explicit
        way quorum mode's member set changes (counted ``supervisor.quorum.reconfigured``).
        """
        self._last_heard = dict(view.last_heard)
        if view.configured is not None and view.configured != self._configured:
            log.info(
                "%s: quorum configured set changes from %d to %d members",
                short_id(self.node_id), len(self._configured), len(view.configured),
            )
            self._configured = frozenset(view.configured)
            self.counters.inc("supervisor.quorum.reconfigured")
        self._reconcile(now)

    @property
    def quorum_members(self) -> frozenset[NodeId]:
        """The configured member set quorum mode counts majorities over."""
        return self._configured

    def holds_lease(self, now: Now) -> bool:
        """Whether this node holds the quorum lease now (``lease.py``)."""
        return self._lease_expiry(now) is not None

    # ------------------------------------------------------------------ API

    def start_singleton(
        self,
        now: Now,
        name: str,
        service: str,
        args: Any = None,
        *,
        restart: str = "permanent",
        quorum: bool = False,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> ChildSpec:
        """Run ``service`` as the cluster's one instance named ``name``.

        Equivalent lower-level call: ``start_child(now, ChildSpec(name, service, args,
        kind="singleton", ...))``. Calling it again with the same spec (on any node) is a
        no-op; a different spec under the same name raises :class:`SpecConflict`.
        """
        spec = ChildSpec(
            name, service, args, kind="singleton", restart=check_policy(restart), quorum=quorum,
            max_restarts=max_restarts, max_seconds=max_seconds,
        )
        return self.start_child(now, spec)

    def start_replicated(
        self,
        now: Now,
        name: str,
        service: str,
        args: Any = None,
        *,
        restart: str = "permanent",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> ChildSpec:
        """Run one instance of ``service`` on every live node, under the child name ``name``.

        Equivalent lower-level call: ``start_child(now, ChildSpec(name, service, args,
        kind="replicated", ...))``.
        """
        spec = ChildSpec(
            name, service, args, kind="replicated", restart=check_policy(restart),
            max_restarts=max_restarts, max_seconds=max_seconds,
        )
        return self.start_child(now, spec)

    def start_child(self, now: Now, spec: ChildSpec) -> ChildSpec:
        """Store ``spec`` cluster-wide (``$sup/spec/<name>``) and start it where it belongs.

        A ``child``-kind spec runs on the rendezvous owner of its name, with no cluster-wide
        uniqueness (during a partition each side may run it; placement converges after).
        Same spec again: returns it, no change. Different spec, same name:
        :class:`SpecConflict`.
        """
        key = SPEC_PREFIX + spec.name
        existing = self.registry.lookup(key)
        if existing is not None:
            try:
                old = ChildSpec.from_value(spec.name, existing.value)
            except MalformedError:
                old = None
            if old == spec:
                return spec
            raise SpecConflict(
                f"{spec.name!r} is already started with another spec ({old}); terminate it first"
            )
        if self.registry.count(SPEC_PREFIX) >= self.config.max_children:
            raise ConfigError(
                f"{spec.name!r}: already {self.config.max_children} children (max_children)"
            )
        self.registry.register(now, key, spec.to_value(), {META_KEY: "spec"}, owner=None)
        log.debug("%s: start_child %s (%s)", short_id(self.node_id), spec.name, spec.kind)
        self._reconcile(now)
        return spec

    def terminate(self, now: Now, name: str) -> bool:
        """Remove the child's spec cluster-wide; every node stops its instance. False if none.

        Equivalent lower-level call: ``registry.unregister(now, "$sup/spec/" + name)``
        (each node's supervisor stops what it runs when it sees the spec gone).
        """
        key = SPEC_PREFIX + name
        if self.registry.lookup(key) is None:
            return False
        self.registry.unregister(now, key)
        entry = self.registry.lookup(name)
        if entry is not None and _is_handoff(entry):
            self.registry.unregister(now, name)
        log.debug("%s: terminate %s", short_id(self.node_id), name)
        self._reconcile(now)
        return True

    def which_children(self) -> list[ChildInfo]:
        """Every known child as this node sees it, sorted by name (replicated: one row per
        live node)."""
        rows: list[ChildInfo] = []
        for name, spec in sorted(self._specs.items()):
            c = self._children.get(name)
            if spec.kind == "replicated":
                rows.append(self._local_row(spec, c, c.state if c is not None else "pending"))
                for m in sorted(self._placement.members):
                    if m != self.node_id:
                        rows.append(ChildInfo(name, spec.service, spec.kind, m, "remote", 0))
                continue
            if c is not None and c.state not in ("remote", "unplaced", "pending"):
                rows.append(self._local_row(spec, c, c.state))
                continue
            node: NodeId | None = None
            if spec.kind == "singleton":
                entry = self.registry.lookup(name)
                if entry is not None and entry.owner is not None:
                    node = entry.owner
            if node is None:
                node = self._target(spec)
            if node == self.node_id:
                rows.append(self._local_row(spec, c, "pending"))
            else:
                state: ChildState = "remote" if node is not None else "unplaced"
                restarts = c.restarts if c is not None else 0
                reason = c.reason if c is not None else None
                rows.append(
                    ChildInfo(name, spec.service, spec.kind, node, state, restarts, None, reason)
                )
        return rows

    def placement(self, name: str) -> NodeId | None:
        """Where rendezvous hashing puts ``name`` now (leaving and given-up nodes skipped)."""
        spec = self._specs.get(name)
        if spec is not None:
            return self._target(spec)
        return self._placement.owner(name, exclude=self._leaving_nodes(None))

    def prepare_shutdown(self, now: Now) -> None:
        """Hand every singleton off to its next placement, stop the rest, start nothing more.

        Marks this node leaving in the registry (``$sup/leaving/<hex>``) so other nodes
        place its children elsewhere at once; singletons stop with ``handoff=True`` and
        their state reaches the successor through the registry. The caller should let the
        registry ship these deltas (and wait for the stops) before leaving membership.
        """
        if self._leaving:
            return
        self._leaving = True
        key = LEAVING_PREFIX + self._hex
        if self.registry.lookup(key) is None:
            try:
                self.registry.register(now, key, True, {META_KEY: "leaving"}, owner="self")
            except FoundationError as exc:
                log.warning("%s: cannot mark leaving: %s", short_id(self.node_id), exc)
        log.info("%s: preparing shutdown: handing children off", short_id(self.node_id))
        self._reconcile(now)

    @property
    def leaving(self) -> bool:
        """True once ``prepare_shutdown`` was called."""
        return self._leaving

    def running(self) -> list[tuple[str, int]]:
        """``(name, instance)`` of every child starting or running here."""
        return sorted(
            (n, c.instance)
            for n, c in self._children.items()
            if c.state in _ACTIVE and c.instance is not None
        )

    # ------------------------------------------------------------------ driver feedback

    def service_started(self, now: Now, name: str, instance: int) -> None:
        """The driver started the instance (its async callable is running)."""
        c = self._children.get(name)
        if c is None or c.instance != instance or c.state not in ("starting", "stopping"):
            self.counters.inc("supervisor.feedback.stale")
            return
        if c.state == "starting":
            c.state = "running"

    def service_exited(
        self, now: Now, name: str, instance: int, outcome: str, detail: str = ""
    ) -> None:
        """The instance ended: ``outcome`` is ``"normal"``, ``"crashed"`` or ``"stopped"``."""
        if outcome not in OUTCOMES:
            raise ConfigError(f"outcome: {outcome!r} is not one of {', '.join(OUTCOMES)}")
        c = self._children.get(name)
        if c is None or c.instance != instance or c.state not in (*_ACTIVE, "stopping"):
            self.counters.inc("supervisor.feedback.stale")
            return
        if c.state == "stopping":
            self._after_stop(now, c)
        else:
            self._after_exit(now, c, outcome, detail)
        self._reconcile(now)

    def handoff_state(self, now: Now, name: str, instance: int, state: Any) -> None:
        """State the stopping instance hands to its successor (before it reports its exit)."""
        c = self._children.get(name)
        if c is None or c.instance != instance or c.state != "stopping" or not c.stop_handoff:
            self.counters.inc("supervisor.feedback.stale")
            return
        c.handoff_state = state

    def registry_changed(self, now: Now, changes: Iterable[Any] = ()) -> None:
        """A hint that the registry changed (the integration passes what it drained from
        ``registry.take_changes()``); the supervisor re-reads what it needs.

        One change is used as such: a ``Conflict`` in which a handoff entry beat another
        node's running claim marks that handoff *contested* (see ``_acquire``).
        """
        for change in changes:
            if isinstance(change, Conflict):
                self._note_contested(now, change)
        self._reconcile(now)

    def _note_contested(self, now: Now, change: Conflict) -> None:
        """Remember a handoff entry that won over a claim of a node other than its writer:
        the writer ran a duplicate (a healed partition) and handed off before it saw the
        claim; the claim's owner may still run the instance."""
        win, lose = change.winner, change.loser
        if not _is_handoff(win) or change.name not in self._specs:
            return
        if lose.owner is None or lose.metadata.get(META_KEY) != "instance":
            return
        if lose.owner == win.value.get("from"):
            return  # the writer's own claim, replaced by its handoff: the normal path
        self._contested[change.name] = (win.stamp, lose.owner, now.mono)

    # ------------------------------------------------------------------ outputs

    def handle_timer(self, now: Now) -> None:
        """Restarts whose backoff ran out, expired give-ups, lease expiries, then reconcile."""
        for c in list(self._children.values()):
            if c.state == "backoff" and c.restart_at is not None and now.mono >= c.restart_at:
                c.state = "pending"
                c.restart_at = None
            elif (
                c.state == "given_up"
                and c.given_up_until is not None
                and now.mono >= c.given_up_until
            ):
                self._end_give_up(now, c)
        self._reconcile(now)

    def next_deadline(self) -> float | None:
        """The earliest monotonic time ``handle_timer`` has work."""
        deadlines: list[float] = []
        if self._last_check is not None:
            deadlines.append(self._last_check + self.config.check_interval_s)
        quorum_active = False
        for c in self._children.values():
            if c.state == "backoff" and c.restart_at is not None:
                deadlines.append(c.restart_at)
            elif c.state == "given_up" and c.given_up_until is not None:
                deadlines.append(c.given_up_until)
            elif c.state in ("pending", "name_conflict") and c.wait_until is not None:
                deadlines.append(c.wait_until)
            if c.state in _ACTIVE and c.move_at is not None:
                deadlines.append(c.move_at)
            if c.spec.quorum and c.state in _ACTIVE:
                quorum_active = True
        if quorum_active and self._last_check is not None:
            expiry = self._lease_expiry(Now(self._last_check, 0.0))
            if expiry is not None:
                deadlines.append(expiry)
        return min(deadlines) if deadlines else None

    def take_actions(self) -> list[Action]:
        """The actions emitted since the last call, in order."""
        out, self._actions = self._actions, []
        return out

    # ------------------------------------------------------------------ reconcile

    def _reconcile(self, now: Now) -> None:
        self._last_check = now.mono
        self._update_lease(now)
        self._load_specs()
        excluded = self._leaving_nodes(now)
        gave_up = self._given_up_nodes(now)
        for name in list(self._children):
            if name not in self._specs:
                self._spec_gone(now, self._children[name])
        for name in list(self._owner_seen):
            if name not in self._specs:
                del self._owner_seen[name]
        for name in list(self._contested):
            if name not in self._specs:
                del self._contested[name]
        for name, spec in self._specs.items():
            self._reconcile_child(now, spec, excluded | gave_up.get(name, frozenset()))

    def _load_specs(self) -> None:
        limit = self.config.max_children
        entries = self.registry.select(SPEC_PREFIX, limit=limit + 1)
        if len(entries) > limit:
            self.counters.inc("supervisor.specs.over_limit")
            entries = entries[:limit]
        specs: dict[str, ChildSpec] = {}
        cache: dict[str, tuple[Any, ChildSpec | None]] = {}
        for entry in entries:
            name = entry.name[len(SPEC_PREFIX):]
            cached = self._spec_cache.get(name)
            if cached is not None and cached[0] == entry.stamp:
                spec = cached[1]
            else:
                try:
                    spec = ChildSpec.from_value(name, entry.value)
                except (MalformedError, ConfigError) as exc:
                    log.warning("%s: ignoring spec: %s", short_id(self.node_id), exc)
                    self.counters.inc("supervisor.specs.malformed")
                    spec = None
            cache[name] = (entry.stamp, spec)
            if spec is not None:
                specs[name] = spec
        self._spec_cache = cache
        self._specs = specs

    def _leaving_nodes(self, now: Now | None) -> frozenset[NodeId]:
        """Nodes with a leaving marker; with ``now``, also removes this node's stale one."""
        out: set[NodeId] = set()
        for entry in self.registry.select(LEAVING_PREFIX):
            owner = entry.owner
            if owner is None or entry.name != LEAVING_PREFIX + owner.hex():
                continue
            appeared = self._appeared.get(owner)
            if owner != self.node_id and appeared is not None and (
                entry.stamp.wall_ms < appeared * 1000.0
            ):
                continue  # written before the node (re)appeared here: its previous life
            if owner == self.node_id and not self._leaving:
                # a marker from this node's previous life: it is back
                if now is not None:
                    self._unregister_own(now, entry.name, entry)
                    self.counters.inc("supervisor.markers.stale")
                continue
            out.add(owner)
        if self._leaving:
            out.add(self.node_id)
        return frozenset(out)

    def _given_up_nodes(self, now: Now) -> dict[str, frozenset[NodeId]]:
        found: dict[str, set[NodeId]] = {}
        for entry in self.registry.select(GIVEUP_PREFIX):
            rest = entry.name[len(GIVEUP_PREFIX):]
            hex_id, sep, name = rest[:_HEX_LEN], rest[_HEX_LEN:_HEX_LEN + 1], rest[_HEX_LEN + 1:]
            owner = entry.owner
            if sep != "/" or not name or owner is None or owner.hex() != hex_id:
                continue
            if owner == self.node_id:
                c = self._children.get(name)
                if c is None or c.state != "given_up":
                    self._unregister_own(now, entry.name, entry)
                    self.counters.inc("supervisor.markers.stale")
                    continue
            found.setdefault(name, set()).add(owner)
        return {name: frozenset(nodes) for name, nodes in found.items()}

    def _target(self, spec: ChildSpec, excluded: frozenset[NodeId] | None = None) -> NodeId | None:
        """Where ``spec`` should run (replicated: this node unless it is leaving)."""
        if spec.kind == "replicated":
            return None if self._leaving else self.node_id
        if excluded is None:
            gave_up = {
                e.owner
                for e in self.registry.select(GIVEUP_PREFIX)
                if e.owner is not None and e.name == f"{GIVEUP_PREFIX}{e.owner.hex()}/{spec.name}"
            }
            excluded = self._leaving_nodes(None) | frozenset(gave_up)
        cached = self._placement_cache.get(spec.name)
        if cached is not None and cached[0] == self._members_version and cached[1] == excluded:
            return cached[2]
        owner = rendezvous_owner(spec.name, self._placement.members, exclude=excluded)
        self._placement_cache[spec.name] = (self._members_version, excluded, owner)
        return owner

    def _reconcile_child(self, now: Now, spec: ChildSpec, excluded: frozenset[NodeId]) -> None:
        name = spec.name
        target = self._target(spec, excluded)
        if spec.quorum:
            self._note_owner(now, name)
        c = self._children.get(name)
        if c is None:
            if spec.kind == "singleton":
                entry = self.registry.lookup(name)
                if entry is not None and entry.owner == self.node_id and target != self.node_id:
                    # a claim from before this supervisor existed (a restarted process)
                    self._unregister_own(now, name, entry)
                    self.counters.inc("supervisor.claims.stale")
            if target != self.node_id:
                return
            c = self._children[name] = _Child(spec)
        elif c.spec != spec:
            c.update_spec(spec)

        if c.state in _ACTIVE:
            if spec.kind == "singleton":
                lost = self._check_claim(now, c)
                if lost is not None:
                    self._lose_conflict(now, c, lost)
                    return
            why = self._why_not_here(now, spec, target)
            if why in ("handoff", "moved"):
                if c.move_at is None:
                    c.move_at = now.mono + self.config.handoff_delay_s
                if now.mono < c.move_at:
                    return
            else:
                c.move_at = None
            if why is not None:
                handoff = spec.kind == "singleton" and why in ("handoff", "shutdown")
                self._stop(c, why, handoff)
            return
        if c.state == "backoff":
            if spec.kind == "singleton":
                lost = self._check_claim(now, c)
                if lost is not None:
                    self._lose_conflict(now, c, lost)
                    return
            why = self._why_not_here(now, spec, target)
            if why is not None:
                c.state, c.restart_at, c.reason = "pending", None, why
                self._release(now, c, _NO_HANDOFF)
            return
        if c.state in ("stopping", "exited", "given_up"):
            return
        # pending, name_conflict, remote, unplaced: should it start here?
        if c.wait_until is not None and now.mono >= c.wait_until:
            c.wait_until = None  # a wait that ran out is no deadline any more (no busy loop)
        why = self._why_not_here(now, spec, target)
        if why is not None:
            if c.state != "name_conflict":
                if c.restarts == 0 and c.reason is None:
                    del self._children[name]
                else:
                    c.state = "unplaced" if target is None else "remote"
            c.wait_until = None
            return
        passed: Any = None
        if spec.kind == "singleton":
            if c.state == "name_conflict" and self._held_by_winner(now, c):
                return
            acquired, passed = self._acquire(now, c)
            if not acquired:
                return
        self._start(c, passed)

    def _why_not_here(self, now: Now, spec: ChildSpec, target: NodeId | None) -> str | None:
        if self._leaving:
            return "shutdown"
        if target != self.node_id:
            return "handoff" if spec.kind == "singleton" else "moved"
        if spec.quorum and not self.holds_lease(now):
            return "quorum_lost"
        return None

    # ------------------------------------------------------------------ singleton claims

    def _check_claim(self, now: Now, c: _Child) -> NameConflict | None:
        """Whether this node still holds the singleton's name; repairs a vanished claim."""
        name = c.spec.name
        entry = self.registry.lookup(name)
        if entry is not None and entry.owner == self.node_id:
            return None
        if entry is not None and not _is_handoff(entry):
            # the winner is the largest stamp in the replica (what every node computes),
            # even if its owner is failed in this view and the visible entry is another
            ranked = self.registry.conflicts_of(name)
            best = ranked[0] if ranked else entry
            return NameConflict(name, best.owner if best.owner is not None else entry.owner)
        if entry is None:
            # Our claim is gone. If it lost a conflict to an entry we cannot see (its owner
            # is failed in our view), we lost all the same: the registry removed our claim.
            everything = self.registry.conflicts_of(name)
            top = everything[0] if everything else None
            if top is not None and top.owner is not None and top.owner != self.node_id:
                return NameConflict(name, top.owner)
            self.counters.inc("supervisor.claims.restored")
        else:
            # A handoff entry won over our running claim: its writer ran a duplicate (both
            # sides of a healed partition) and handed off before the registry showed it the
            # conflict. Expected after a heal in default mode, so debug level and counted:
            # we keep running and restore our claim; the duplicate's state is discarded (a
            # node placed to take the handoff leaves it alone meanwhile: _contest_wait).
            self.counters.inc("supervisor.handoffs.stale")
            sender = entry.value.get("from")
            log.debug(
                "%s: %s: discarding a handoff from %s that arrived while running it",
                short_id(self.node_id), name,
                sender.hex() if isinstance(sender, bytes) else "?",
            )
        self._claim(now, c, replace=True)
        return None

    def _acquire(self, now: Now, c: _Child) -> tuple[bool, Any]:
        """Claim the singleton's name if it is free; (claimed, handoff state or None)."""
        spec = c.spec
        name = spec.name
        entry = self.registry.lookup(name)
        handoff: Any = None
        consume = False
        if entry is None and not self.registry.failed.isdisjoint(self._placement.members):
            # membership calls a member live whose entries the registry still hides (e.g.
            # suspect after failed): "free" may only mean "its claim is hidden". Wait.
            if c.state != "name_conflict":
                c.state = "pending"
            self.counters.inc("supervisor.claims.deferred")
            return False, None
        if entry is not None and entry.owner != self.node_id:
            if not _is_handoff(entry):
                # another live node still holds it: wait for its handoff or its failure
                if c.state != "name_conflict":
                    c.state = "pending"
                c.wait_until = None
                return False, None
            waiting_until = self._contest_wait(now, name, entry)
            if waiting_until is not None:
                # a duplicate's handoff beat a live node's running claim: that node keeps
                # its instance and restores its claim; taking the "free" name here would
                # start a second instance beside it (counted once per wait)
                if c.wait_until is None:
                    self.counters.inc("supervisor.handoffs.contested")
                if c.state != "name_conflict":
                    c.state = "pending"
                c.wait_until = waiting_until
                return False, None
            handoff = entry.value.get("state")
            consume = True
        inherited = entry is not None and entry.owner == self.node_id and c.instance is None
        if spec.quorum and (
            (entry is None and self._hidden_holder_heard(now, name))
            or ((entry is None or inherited) and self._unsynced_member_heard(now))
        ):
            # the name looks free only because membership still reports its holder failed,
            # yet that holder was heard from directly within lease_s (right after a heal
            # SWIM lags behind the packets): it may still run the instance. Wait.
            if c.state != "name_conflict":
                c.state = "pending"
            c.wait_until = None  # polled every check_interval_s
            self.counters.inc("supervisor.claims.deferred")
            return False, None
        if spec.quorum and not consume and (entry is None or inherited):
            if inherited:
                # a claim from this node's previous life: nothing local vouches for it
                since = self._lease_since if self._lease_since is not None else now.mono
                ready_at = since + self._lease.successor_wait_s
            else:
                ready_at = self._quorum_ready_at(now, c)
            if now.mono < ready_at:
                if c.wait_until is None:
                    self.counters.inc("supervisor.quorum.waits")  # once per wait
                c.state = "pending"
                c.wait_until = ready_at
                return False, None
        c.wait_until = None
        mine = entry is not None and entry.owner == self.node_id
        if not mine and not self._claim(now, c, replace=consume):
            return False, None
        if consume:
            self.counters.inc("supervisor.handoffs.received")
        return True, handoff

    def _held_by_winner(self, now: Now, c: _Child) -> bool:
        """After a lost conflict: whether the winner may still hold the name unseen.

        Right after a partition heals, the winner of a name conflict is often still failed
        in this node's membership view (its claim hidden), so the name looks free here; a
        new claim would start a second instance, win the next conflict with its newer
        stamp and stop the winner: ping-pong until the views agree. So a node that lost
        the name claims it again only once the winner was seen live and then failed (a
        real failover), or ``conflict_hold_s`` after the loss if the winner never
        reappeared in the live set (it may have crashed).
        """
        winner = c.lost_to
        if winner is None:
            return False
        if winner in self._placement.members:
            c.lost_to_seen = True
            return False  # live: its visible claim (or its release) decides, in _acquire
        if c.lost_to_seen or now.mono >= c.lost_at + self.config.conflict_hold_s:
            c.lost_to = None
            return False
        if c.wait_until is None:
            self.counters.inc("supervisor.claims.held_after_conflict")  # once per hold
        c.wait_until = c.lost_at + self.config.conflict_hold_s
        return True

    def _unsynced_member_heard(self, now: Now) -> bool:
        """Whether a member of the configured set was heard from directly within
        ``lease_s`` while membership does not call it live here (so the registry does not
        sync with it): right after a heal it counts toward this node's lease, yet a claim it
        made while cut off cannot have reached this registry. A name that looks free may
        be its. Assumption S of spec/supervisor.md section 7 then counts from the moment
        membership takes the member back (the registry syncs with it from then on), not
        from the heal."""
        live = self._placement.members
        for member in self._configured:
            if member == self.node_id:
                continue
            if member in live:
                # taken back: its registry's claims reach this one within successor_wait_s
                # (assumption S, counted from the readmission)
                back = self._readmitted.get(member)
                if back is not None and now.mono - back < self._lease.successor_wait_s:
                    return True
                continue
            heard = self._last_heard.get(member)
            if heard is not None and now.mono - heard < self._lease.lease_s:
                return True
        return False

    def _hidden_holder_heard(self, now: Now, name: str) -> bool:
        """Whether a claim on ``name`` hidden here (owner failed in this view) belongs to a
        node heard from directly within ``lease_s``."""
        failed = self.registry.failed
        for e in self.registry.conflicts_of(name):
            owner = e.owner
            if owner is None or owner == self.node_id or owner not in failed:
                continue
            if e.metadata.get(META_KEY) != "instance":
                continue
            heard = self._last_heard.get(owner)
            if heard is not None and now.mono - heard < self._lease.lease_s:
                return True
        return False

    def _contest_wait(self, now: Now, name: str, entry: Entry) -> float | None:
        """Until when to leave a contested handoff entry alone (None: take it).

        Contested (``_note_contested``) and the claim's owner is live here: its supervisor
        replaces the entry with its claim at its next reconcile. If nothing replaced it
        after ``contest_wait_s`` (the owner had stopped meanwhile), the handoff is taken.
        """
        noted = self._contested.get(name)
        if noted is None:
            return None
        stamp, owner, since = noted
        if stamp != entry.stamp:
            del self._contested[name]
            return None
        live = owner in self._placement.members and owner not in self.registry.failed
        until = since + self.contest_wait_s
        if not live or owner == self.node_id or now.mono >= until:
            return None
        return until

    @property
    def contest_wait_s(self) -> float:
        """How long a contested handoff entry is left for the live claimant to replace:
        two reconcile periods plus one second for its delta to arrive."""
        return 2.0 * self.config.check_interval_s + 1.0

    def _claim(self, now: Now, c: _Child, *, replace: bool = False) -> bool:
        """Register this node's claim on the singleton's name (``replace``: over a visible
        handoff entry, as one delta)."""
        write = self.registry.put if replace else self.registry.register
        try:
            write(
                now, c.spec.name, {"service": c.spec.service}, {META_KEY: "instance"}, owner="self"
            )
        except FoundationError as exc:
            log.debug("%s: cannot claim %s: %s", short_id(self.node_id), c.spec.name, exc)
            self.counters.inc("supervisor.claims.failed")
            if c.state != "name_conflict":
                c.state = "pending"
            return False
        return True

    def _release(self, now: Now, c: _Child, handoff: Any) -> None:
        """Give up this node's claim on a singleton name, leaving ``handoff`` state if any."""
        if c.spec.kind != "singleton":
            return
        name = c.spec.name
        entry = self.registry.lookup(name)
        ours = entry is not None and entry.owner == self.node_id
        if handoff is not _NO_HANDOFF and handoff is not None and (ours or entry is None):
            value = {"state": handoff, "from": self.node_id, "service": c.spec.service}
            try:
                # replaces our claim in one delta: the name never looks free in between
                self.registry.put(now, name, value, {META_KEY: "handoff"}, owner=None)
            except FoundationError as exc:
                log.warning(
                    "%s: handoff state of %s dropped: %s", short_id(self.node_id), name, exc
                )
                self.counters.inc("supervisor.handoffs.dropped")
            else:
                self.counters.inc("supervisor.handoffs.sent")
                log.info("%s: handed %s off", short_id(self.node_id), name)
                return
        if ours:
            self.registry.unregister(now, name)

    def _unregister_own(self, now: Now, name: str, entry: Entry) -> None:
        if entry.owner == self.node_id:
            self.registry.unregister(now, name)

    # ------------------------------------------------------------------ quorum evidence

    def _lease_expiry(self, now: Now) -> float | None:
        return lease_expiry(
            self.node_id, self._configured, self._last_heard, now.mono, self._lease.lease_s
        )

    def _note_owner(self, now: Now, name: str) -> None:
        """Remember the latest evidence that the holder of a quorum singleton was alive."""
        entry = self.registry.lookup(name)
        if entry is not None and entry.owner is not None:
            self._owner_seen[name] = (entry.owner, now.mono)

    def _note_owners_alive(self, now: Now) -> None:
        members = self._placement.members
        for name, (owner, _t) in list(self._owner_seen.items()):
            # this node's own record says when it last held the name: never refreshed here
            if owner in members and owner != self.node_id:
                self._owner_seen[name] = (owner, now.mono)

    def _quorum_ready_at(self, now: Now, c: _Child) -> float:
        """When this node may start a quorum singleton whose name looks free (lease.py).

        Evidence only counts if gathered while this node held the lease without a break
        (since ``_lease_since``): before that, the registry may not yet show a claim made
        on the majority side while this node was cut off.
        """
        since = self._lease_since if self._lease_since is not None else now.mono
        wait = self._lease.successor_wait_s
        seen = self._owner_seen.get(c.spec.name)
        if seen is None:
            # never saw a holder: it may have run on a node this one did not hear from
            return since + wait
        owner, last_alive = seen
        heard = self._last_heard.get(owner)
        if heard is not None and owner != self.node_id:
            last_alive = max(last_alive, heard)
        if last_alive >= since:
            if owner == self.node_id:
                return now.mono  # this node stopped it itself, holding the lease throughout
            if owner in self._placement.members:
                return now.mono  # alive, and released the name after its instance stopped
            return last_alive + wait
        return max(since, last_alive) + wait

    def _update_lease(self, now: Now) -> None:
        """Track since when this node holds the lease without a break (conservatively: a
        check after the last known expiry counts as a break)."""
        expiry = self._lease_expiry(now)
        if expiry is None:
            self._lease_since = None
        elif self._lease_since is None or (
            self._lease_until is not None and now.mono > self._lease_until
        ):
            self._lease_since = now.mono
        self._lease_until = expiry

    # ------------------------------------------------------------------ transitions

    def _start(self, c: _Child, handoff: Any) -> None:
        instance = self._next_instance
        self._next_instance += 1
        c.instance = instance
        c.state = "starting"
        c.wait_until = None
        c.stop_reason = None
        c.handoff_state = _NO_HANDOFF
        if c.spec.quorum:
            self._owner_seen[c.spec.name] = (self.node_id, self._last_check or 0.0)
        spec = c.spec
        self._actions.append(StartService(spec.name, spec.service, spec.args, instance, handoff))
        self.counters.inc("supervisor.starts")
        log.debug(
            "%s: start %s #%d (%s)%s", short_id(self.node_id), spec.name, instance,
            spec.service, " with handoff" if handoff is not None else "",
        )

    def _stop(self, c: _Child, reason: StopReason, handoff: bool) -> None:
        assert c.instance is not None
        c.state = "stopping"
        c.move_at = None
        c.stop_reason = reason
        c.stop_handoff = handoff
        c.handoff_state = _NO_HANDOFF
        self._actions.append(StopService(c.spec.name, c.instance, reason, handoff))
        self.counters.inc("supervisor.stops")
        if reason == "quorum_lost":
            self.counters.inc("supervisor.quorum.lost")
        log.debug("%s: stop %s #%d: %s", short_id(self.node_id), c.spec.name, c.instance, reason)

    def _lose_conflict(self, now: Now, c: _Child, lost: NameConflict) -> None:
        self.counters.inc("supervisor.name_conflicts")
        log.warning("%s: %s", short_id(self.node_id), lost)
        c.reason = lost
        c.lost_to = lost.winner_node
        c.lost_to_seen = lost.winner_node in self._placement.members
        c.lost_at = now.mono
        if c.state in _ACTIVE:
            self._stop(c, lost, False)
        else:
            c.state = "name_conflict"
            c.restart_at = None

    def _after_stop(self, now: Now, c: _Child) -> None:
        reason = c.stop_reason
        c.reason = reason
        if isinstance(reason, NameConflict):
            c.state = "name_conflict"  # the winner's claim stands; ours was removed by the CRDT
            return
        handoff = c.handoff_state if c.stop_handoff else _NO_HANDOFF
        self._release(now, c, handoff)
        c.handoff_state = _NO_HANDOFF
        if reason == "terminated":
            del self._children[c.spec.name]
        else:
            c.state = "pending"

    def _after_exit(self, now: Now, c: _Child, outcome: str, detail: str) -> None:
        spec = c.spec
        c.reason = outcome if not detail else f"{outcome}: {detail}"
        if not should_restart(spec.restart, outcome):
            self._finish(now, c)
            return
        if not c.intensity.try_record(now.mono):
            self._give_up(now, c)
            return
        attempt = c.intensity.in_window(now.mono) - 1
        delay = self._backoff.delay(attempt, self.rng)
        c.state = "backoff"
        c.restart_at = now.mono + delay
        c.restarts += 1
        self.counters.inc("supervisor.restarts")
        log.debug(
            "%s: %s #%s exited (%s); restart in %.3f s",
            short_id(self.node_id), spec.name, c.instance, c.reason, delay,
        )

    def _finish(self, now: Now, c: _Child) -> None:
        """A transient child's normal exit or a temporary child's exit: not run again."""
        spec = c.spec
        self.counters.inc("supervisor.finished")
        c.state = "exited"
        if spec.kind == "replicated":
            return
        self._release(now, c, _NO_HANDOFF)
        key = SPEC_PREFIX + spec.name
        if self.registry.lookup(key) is not None:
            self.registry.unregister(now, key)

    def _give_up(self, now: Now, c: _Child) -> None:
        spec = c.spec
        c.state = "given_up"
        c.given_up_until = now.mono + self.config.give_up_s
        self.counters.inc("supervisor.gave_up")
        log.warning(
            "%s: %s exceeded %d restarts in %.1f s: given up here for %.1f s",
            short_id(self.node_id), spec.name, spec.max_restarts, spec.max_seconds,
            self.config.give_up_s,
        )
        if spec.kind == "replicated":
            return
        self._release(now, c, _NO_HANDOFF)
        key = f"{GIVEUP_PREFIX}{self._hex}/{spec.name}"
        if self.registry.lookup(key) is None:
            try:
                self.registry.register(
                    now, key, self.config.give_up_s, {META_KEY: "giveup"}, owner="self"
                )
            except FoundationError as exc:
                log.warning("%s: cannot publish give-up: %s", short_id(self.node_id), exc)

    def _end_give_up(self, now: Now, c: _Child) -> None:
        self.counters.inc("supervisor.give_up.expired")
        key = f"{GIVEUP_PREFIX}{self._hex}/{c.spec.name}"
        entry = self.registry.lookup(key)
        if entry is not None:
            self._unregister_own(now, key, entry)
        del self._children[c.spec.name]

    def _spec_gone(self, now: Now, c: _Child) -> None:
        if c.state in _ACTIVE:
            self._stop(c, "terminated", False)
            return
        if c.state == "stopping":
            c.stop_reason = "terminated"
            c.stop_handoff = False
            return
        if c.state == "given_up":
            self._end_give_up(now, c)
            return
        if c.state == "backoff":
            self._release(now, c, _NO_HANDOFF)
        del self._children[c.spec.name]

    def _local_row(self, spec: ChildSpec, c: _Child | None, state: ChildState) -> ChildInfo:
        if c is None:
            return ChildInfo(spec.name, spec.service, spec.kind, self.node_id, state, 0)
        return ChildInfo(
            spec.name, spec.service, spec.kind, self.node_id, state, c.restarts, c.instance,
            c.reason,
        )
