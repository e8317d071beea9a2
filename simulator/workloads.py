"""Workloads: what the simulated application does, registered by ``[[workload]] kind``.

A workload is built once per run from its :class:`~simulator.model.WorkloadSpec` and is
told when the run starts and whenever a node boots (first start, restart, late join).
``broadcast`` (:mod:`simulator.channels`) publishes over the nodes' channels;
``singleton`` (:mod:`simulator.registry`) runs supervised singletons on virtual services
and registers names; ``kv`` (:mod:`simulator.kv`) runs KV clients over the nodes' Raft
group (every node gets a ``[consensus]`` table, ``World.kv_consensus_extra``) and records a
history; ``auction`` (:mod:`simulator.coordination`) runs agents bidding in sealed-bid
auctions and voting through that Raft group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from foundation_p2p.addresses import Address
from foundation_p2p.events import Join, Leave
from foundation_p2p.wire import cbor
from simulator.channels import BroadcastWorkload
from simulator.coordination import AuctionWorkload, register_coordination
from simulator.health import register_health
from simulator.kv import KVWorkload, register_kv
from simulator.model import WorkloadSpec
from simulator.registry import SingletonWorkload

if TYPE_CHECKING:
    from simulator.host import Host
    from simulator.world import World


class Workload(Protocol):
    """What the world calls on a workload."""

    kind: str

    def on_start(self, world: World) -> None:
        """The run starts (virtual time 0), before any node boots."""

    def on_boot(self, world: World, host: Host) -> None:
        """``host`` just booted a new core (first start, restart or late join)."""


class PingWorkload:
    """Every node joins the cluster's seed nodes at boot; the static prober does the rest.

    Seeds are ``[cluster] seeds`` or the first ``min(3, N)`` nodes. A node sends
    ``Join(seed addresses other than itself)``; the seeds ping back everyone who pinged
    them. Equivalent lower-level call: ``core.handle_command(now, Join(addresses))``.
    """

    kind = "ping"

    def __init__(self, spec: WorkloadSpec) -> None:
        if spec.params:
            raise ValueError(f"workload ping: takes no parameters, got {sorted(spec.params)}")
        self.seeds: tuple[Address, ...] = ()

    def on_start(self, world: World) -> None:
        cluster = world.scenario.cluster
        names = cluster.seeds or cluster.names[: min(3, cluster.nodes)]
        self.seeds = tuple(world.host(name).addr for name in names)

    def on_boot(self, world: World, host: Host) -> None:
        targets = tuple(a for a in self.seeds if a != host.addr)
        world.command(host, Join(targets))


def update_metadata_bytes(seq: int, size: int) -> bytes:
    """CBOR ``[seq, zero padding]`` of exactly ``size`` bytes (or the shortest such array,
    when ``size`` is smaller than that)."""
    pad = max(0, size - len(cbor.encode([seq, b""])))
    while pad > 0 and len(cbor.encode([seq, b"\x00" * pad])) > size:
        pad -= 1
    return cbor.encode([seq, b"\x00" * pad])


class MembershipWorkload:
    """Every node joins the cluster through the seeds at boot; optionally, metadata updates.

    At each boot a node sends ``Join(seed addresses other than itself)``, which both SWIM
    (``core.membership``) and the static prober take; unless ``static_prober = true`` the
    prober is then stopped on that node (``core.prober.handle_command(now, Leave())``), so
    every byte on the wire is membership's and ``membership.bytes_per_member_per_s`` measures
    SWIM alone. With ``update_every``, from ``update_from`` (default: one ``update_every``
    in) until ``update_until`` (default: the start of settle), one running non-observer node
    drawn from the world's generator sets new metadata of ``metadata_bytes`` bytes (default
    32) every ``update_every``; the tracker follows each update until 99.99 % of the other
    running nodes have seen it (``membership.rounds_to_99_99``).
    Equivalent lower-level calls: ``core.handle_command(now, Join(addresses))``,
    ``core.membership.update_metadata(now, metadata)``.
    """

    kind = "membership"

    def __init__(self, spec: WorkloadSpec) -> None:
        p = spec.params
        self.update_every_s: float | None = p.get("update_every_s")
        self.update_from_s: float | None = p.get("update_from_s")
        self.update_until_s: float | None = p.get("update_until_s")
        self.metadata_bytes: int = p.get("metadata_bytes", 32)
        self.static_prober: bool = p.get("static_prober", False)
        self.seeds: tuple[Address, ...] = ()
        self.updates = 0

    def on_start(self, world: World) -> None:
        cluster = world.scenario.cluster
        names = cluster.seeds or cluster.names[: min(3, cluster.nodes)]
        self.seeds = tuple(world.host(name).addr for name in names)
        every = self.update_every_s
        if every is not None:
            start = self.update_from_s if self.update_from_s is not None else every
            world.schedule(start, self._update, world)

    def on_boot(self, world: World, host: Host) -> None:
        targets = tuple(a for a in self.seeds if a != host.addr)
        world.command(host, Join(targets))
        if not self.static_prober and host.core is not None:
            host.core.prober.handle_command(host.clock.now(world.now), Leave())

    def _update(self, world: World) -> None:
        every = self.update_every_s
        assert every is not None
        until = self.update_until_s if self.update_until_s is not None else world.settle_at
        if world.now >= until:
            return
        world.schedule(world.now + every, self._update, world)
        tracker = world.membership
        candidates = [
            h for h in world.hosts if h.is_live and not tracker.observer[h.name]
        ]
        if not candidates:
            return
        host = candidates[world.rng.randrange(len(candidates))]
        core = host.core
        assert core is not None
        self.updates += 1
        metadata = update_metadata_bytes(self.updates, self.metadata_bytes)
        try:
            core.membership.update_metadata(host.clock.now(world.now), metadata)
        except Exception:
            world._fail(host, "update_metadata")
        tracker.on_update(host, core.membership.local.incarnation)
        world.pump(host)


def kv_workload_factory(spec: WorkloadSpec) -> KVWorkload:
    """The ``kv`` workload (its six checkers and the ``@leader`` role are registered when
    this module is imported: ``simulator.kv.register_kv``, idempotent)."""
    register_kv()
    return KVWorkload(spec)


register_kv()  # the scenario parser validates ``raft.*``/``kv.*`` invariant names at once
register_health()  # ``health.verdicts``, named in ``[check] invariants``


def auction_workload_factory(spec: WorkloadSpec) -> AuctionWorkload:
    """The ``auction`` workload (its four ``auction.*``/``vote.*`` checkers are registered
    when this module is imported: ``simulator.coordination.register_coordination``,
    idempotent)."""
    register_coordination()
    return AuctionWorkload(spec)


register_coordination()  # ``auction.*``/``vote.*`` names are valid in ``[check] invariants``


WORKLOADS: dict[str, Callable[[WorkloadSpec], Workload]] = {
    "ping": PingWorkload,
    "membership": MembershipWorkload,
    "broadcast": BroadcastWorkload,
    "singleton": SingletonWorkload,
    "kv": kv_workload_factory,
    "auction": auction_workload_factory,
}
"""Workload implementations by kind; later issues add theirs."""


def build_workload(spec: WorkloadSpec) -> Workload:
    """The workload for ``spec``; ``ValueError`` naming the kind if none is registered."""
    factory = WORKLOADS.get(spec.kind)
    if factory is None:
        raise ValueError(
            f"workload kind {spec.kind!r} is not available (available: {', '.join(WORKLOADS)})"
        )
    return factory(spec)
