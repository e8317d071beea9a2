"""An in-process cluster of ``RegistryCore`` + ``SupervisorCore`` pairs for the supervisor
tests, with a scripted driver and membership: virtual time advances only in ``run``.

The driver plays the runtime: a ``StartService`` starts an instance at once (and reports
``service_started``), a ``StopService`` asks the instance for its state when
``handoff=True`` (``handoff_state``) and reports ``service_exited(..., "stopped")``.
Membership is scripted: ``refresh_views()`` gives each up node the up nodes it can reach
as live (the rest failed), or a test sets views by hand. In quorum mode every tick tells
each node that the nodes it reaches were heard from now.

After every step the harness counts, per singleton name, the instances running on up nodes
(``peak`` keeps the largest count ever seen, the "at no moment two" check).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.registry.actions import StartService, StopService
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.core import RegistryCore
from foundation_p2p.registry.lease import QuorumView
from foundation_p2p.registry.supervisor import SupervisorConfig, SupervisorCore
from foundation_p2p.wire import cbor

WALL0 = 1_700_000_000.0


def nid(i: int) -> bytes:
    """A readable 16-byte node id for node ``i``."""
    return bytes([0x10 + i]) * 16


@dataclass
class Instance:
    """One running service instance as the scripted driver keeps it."""

    name: str
    service: str
    instance: int
    handoff: Any
    started_at: float
    state: Any = None
    """What the instance hands off when stopped with ``handoff=True``."""


@dataclass
class Node:
    index: int
    id: bytes
    registry: RegistryCore
    sup: SupervisorCore
    up: bool = True
    services: dict[str, Instance] = field(default_factory=dict)
    starts: list[StartService] = field(default_factory=list)
    stops: list[StopService] = field(default_factory=list)
    live: frozenset[bytes] = frozenset()


class SupCluster:
    """``n`` nodes whose registries exchange messages directly and whose supervisors are
    driven by a scripted driver."""

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        config: SupervisorConfig | None = None,
        registry_config: RegistryConfig | None = None,
        quorum: bool = False,
        skew_s: float = 0.0,
        rates: list[float] | None = None,
    ) -> None:
        self.t = 0.0
        self.rng = random.Random(seed)
        self.config = config or SupervisorConfig()
        self.registry_config = registry_config or RegistryConfig(sync_interval_s=0.5)
        self.nodes: list[Node] = []
        self.by_id: dict[bytes, Node] = {}
        self.cut: set[frozenset[bytes]] = set()
        self.quorum = quorum
        self.skew = [self.rng.uniform(-skew_s, skew_s) for _ in range(n)]
        self.rates = rates or [1.0] * n
        """Each node's monotonic clock runs at this rate of virtual time (drift)."""
        self.peak: dict[str, int] = {}
        self.seed = seed
        for i in range(n):
            self._make(i)
        self.refresh_views()

    def _make(self, i: int) -> Node:
        node_id = nid(i)
        counters = Counters()
        reg = RegistryCore(
            node_id,
            config=self.registry_config,
            counters=counters,
            rng=random.Random(self.seed * 1000 + i),
        )
        sup = SupervisorCore(
            node_id,
            reg,
            config=self.config,
            counters=counters,
            rng=random.Random(self.seed * 1000 + 500 + i),
        )
        node = Node(i, node_id, reg, sup)
        if i < len(self.nodes):
            self.nodes[i] = node
        else:
            self.nodes.append(node)
        self.by_id[node_id] = node
        return node

    # -- time and faults ----------------------------------------------------------------

    def now(self, i: int = 0) -> Now:
        return Now(self.t * self.rates[i], WALL0 + self.t + self.skew[i])

    def reachable(self, a: bytes, b: bytes) -> bool:
        return (
            self.by_id[a].up and self.by_id[b].up and frozenset((a, b)) not in self.cut
        )

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every link between nodes of different groups (views are not refreshed)."""
        gs = [list(g) for g in groups]
        for a, ga in enumerate(gs):
            for gb in gs[a + 1 :]:
                for i in ga:
                    for j in gb:
                        self.cut.add(frozenset((nid(i), nid(j))))

    def heal(self) -> None:
        self.cut.clear()

    def crash(self, i: int) -> None:
        """Node ``i`` stops at once: its services are gone, it sends and receives nothing."""
        node = self.nodes[i]
        node.up = False
        node.services.clear()

    def restart(self, i: int) -> Node:
        """A fresh process for node ``i`` (same id, empty state)."""
        node = self._make(i)
        node.up = True
        self.refresh_views()
        return node

    def set_view(self, i: int, live: Iterable[int]) -> None:
        """What node ``i``'s membership says: ``live`` alive, every other node failed."""
        node = self.nodes[i]
        ids = frozenset(nid(j) for j in live) | {node.id}
        node.live = ids
        now = self.now(i)
        for other in self.nodes:
            if other.id != node.id:
                node.registry.set_failed(other.id, other.id not in ids)
        node.registry.set_peers(ids)
        node.sup.set_members(now, ids)
        self._settle(node)

    def refresh_views(self) -> None:
        """Every up node sees the up nodes it can reach as live (perfect failure detection)."""
        for node in self.nodes:
            if node.up:
                live = [o.index for o in self.nodes if self.reachable(node.id, o.id)]
                self.set_view(node.index, live)

    # -- driving ------------------------------------------------------------------------

    def _settle(self, node: Node) -> None:
        """Run the driver for ``node`` until its supervisor has nothing more to say."""
        for _ in range(100):
            actions = node.sup.take_actions()
            if not actions:
                break
            for action in actions:
                now = self.now(node.index)
                if isinstance(action, StartService):
                    node.starts.append(action)
                    assert action.name not in node.services, f"{action.name} started twice"
                    node.services[action.name] = Instance(
                        action.name, action.service, action.instance, action.handoff, self.t,
                        state=action.handoff,
                    )
                    node.sup.service_started(now, action.name, action.instance)
                else:
                    node.stops.append(action)
                    inst = node.services.pop(action.name, None)
                    assert inst is not None and inst.instance == action.instance
                    if action.handoff:
                        node.sup.handoff_state(now, action.name, action.instance, inst.state)
                    node.sup.service_exited(now, action.name, action.instance, "stopped")
        else:
            raise AssertionError("supervisor kept emitting actions")
        self._count()

    def _count(self) -> None:
        counts: dict[str, int] = {}
        for node in self.nodes:
            if node.up:
                for name in node.services:
                    counts[name] = counts.get(name, 0) + 1
        for name, k in counts.items():
            if k > self.peak.get(name, 0):
                self.peak[name] = k

    def exit_service(self, i: int, name: str, outcome: str, detail: str = "") -> int:
        """The service ``name`` on node ``i`` ends by itself; returns its instance."""
        node = self.nodes[i]
        inst = node.services.pop(name)
        node.sup.service_exited(self.now(i), name, inst.instance, outcome, detail)
        self._settle(node)
        return inst.instance

    def pump(self) -> None:
        for _ in range(10_000):
            batch = []
            for node in self.nodes:
                if not node.up:
                    node.registry.take_messages()
                    continue
                for peer, msg in node.registry.take_messages():
                    if self.reachable(node.id, peer):
                        batch.append((self.by_id[peer], node.id, msg))
            if not batch:
                break
            for dst, src, msg in batch:
                dst.registry.handle_message(self.now(dst.index), src, cbor2.loads(cbor.encode(msg)))
        else:
            raise AssertionError("messages kept flowing")
        for node in self.nodes:
            if node.up:
                changes = node.registry.take_changes()
                if changes:
                    node.sup.registry_changed(self.now(node.index), changes)
                self._settle(node)

    def tick(self, dt: float) -> None:
        self.t += dt
        for node in self.nodes:
            if not node.up:
                continue
            now = self.now(node.index)
            if self.quorum:
                heard = {o.id: now.mono for o in self.nodes
                         if o.id != node.id and self.reachable(node.id, o.id)}
                prev = node.sup._last_heard  # keep older times of unreachable members
                merged = {**prev, **heard}
                node.sup.set_quorum_view(now, QuorumView(merged))
            d = node.registry.next_deadline()
            if d is not None and d <= now.mono:
                node.registry.handle_timer(now)
            d = node.sup.next_deadline()
            if d is not None and d <= now.mono:
                node.sup.handle_timer(now)
            self._settle(node)

    def run(self, seconds: float, dt: float = 0.05) -> None:
        end = self.t + seconds
        while self.t < end - 1e-9:
            self.tick(dt)
            self.pump()

    # -- observations -------------------------------------------------------------------

    def running(self, name: str) -> list[int]:
        """Indexes of up nodes running ``name``."""
        return [n.index for n in self.nodes if n.up and name in n.services]

    def owner_everywhere(self, name: str) -> set[bytes | None]:
        """What every up node's registry says owns ``name``."""
        out: set[bytes | None] = set()
        for n in self.nodes:
            if n.up:
                e = n.registry.lookup(name)
                out.add(None if e is None else e.owner)
        return out


def test_harness_starts_one_singleton_and_every_registry_names_its_owner() -> None:
    c = SupCluster(3)
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(2.0)
    assert len(c.running("s")) == 1
    owner = c.nodes[c.running("s")[0]].id
    assert c.owner_everywhere("s") == {owner}
    assert c.peak["s"] == 1
