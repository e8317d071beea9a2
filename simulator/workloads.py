"""Workloads: what the simulated application does, registered by ``[[workload]] kind``.

A workload is built once per run from its :class:`~simulator.model.WorkloadSpec` and is
told when the run starts and whenever a node boots (first start, restart, late join).
Later capabilities add ``kv``, ``broadcast``, ``singleton`` and ``auction`` to
:data:`WORKLOADS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from foundation_p2p.addresses import Address
from foundation_p2p.events import Join
from simulator.model import WorkloadSpec

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


WORKLOADS: dict[str, Callable[[WorkloadSpec], Workload]] = {"ping": PingWorkload}
"""Workload implementations by kind; later issues add theirs."""


def build_workload(spec: WorkloadSpec) -> Workload:
    """The workload for ``spec``; ``ValueError`` naming the kind if none is registered."""
    factory = WORKLOADS.get(spec.kind)
    if factory is None:
        raise ValueError(
            f"workload kind {spec.kind!r} is not available (available: {', '.join(WORKLOADS)})"
        )
    return factory(spec)
