"""The nemesis: executes ``[[fault]]`` tables (and drawn random faults) against the world.

Faults are data (:class:`~simulator.model.FaultSpec`). Each occurrence is applied at its
virtual time; a fault with ``for`` schedules its inverse (``crash`` -> restart, ``pause``
-> resume, ``partition``/``isolate`` -> lift that cut, ``clog`` -> unclog, ``skew`` ->
true time, ``loss``/``latency`` -> the scenario's network). Periodic faults repeat every
``every`` from ``at`` until ``until`` (default: the end of the run).

Node roles are resolved when the fault fires: ``@random`` draws from the world's fault
generator among the nodes the op can act on; other roles (``@leader``,
``@singleton:NAME``) go through :data:`ROLE_RESOLVERS`, which later capabilities fill.

At the start of ``[check] settle`` every pending inverse runs at once, every partition and
clog is lifted, network overrides are undone, paused nodes resume and slow nodes handle
their whole backlog at once and run at full speed again. After that only the
restoring ops (``heal``, ``restart``, ``resume``, ``join``) still fire.

Random faults (``--random-faults``, TigerBeetle style) are drawn from the seed within
``[random_faults]`` limits; each lasts at most ``max_duration_s`` and ends before
``end_before_s`` (default: the start of settle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from simulator.host import DOWN, LEFT, NEW, UP, Host, SlowParams
from simulator.model import FaultSpec, LatencySpec
from simulator.rand import child_rng

if TYPE_CHECKING:
    from simulator.world import World

ROLE_RESOLVERS: dict[str, Callable[[World, str], str | None]] = {}
"""Role (``"@leader"``, ``"@singleton"``) -> ``resolve(world, argument)`` giving a node
name, or None when no node holds the role now. Filled by later capabilities."""

RESTORING_OPS = ("heal", "restart", "resume", "join")
"""Ops that still fire after settle begins."""

RANDOM_OPS = ("partition", "isolate", "crash", "pause", "slow", "loss", "latency", "clog",
              "swizzle", "skew", "transfer-leader")
"""Ops the random-fault mode knows how to draw."""


@dataclass(frozen=True)
class SlowFaultSpec(FaultSpec):
    """A ``slow`` fault: a :class:`FaultSpec` with the slow handler's parameters."""

    slow: SlowParams = field(default_factory=SlowParams)


class FaultError(ValueError):
    """A fault cannot be executed as written (names the fault and the problem)."""


class Nemesis:
    """Runs the fault schedule of one world; see the module docstring."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.applied = 0
        self._pending: dict[int, tuple[str, Callable[[], None]]] = {}
        self._token = 0
        self.drawn: list[FaultSpec] = []

    # -- scheduling ----------------------------------------------------------------------

    def schedule_all(self, random_faults: bool) -> None:
        """Put every fault occurrence of the scenario (and drawn ones) on the queue."""
        world = self.world
        specs = list(world.scenario.faults)
        if random_faults:
            self.drawn = draw_random_faults(world)
            specs.extend(self.drawn)
        for spec in specs:
            if spec.every_s:
                until = spec.until_s if spec.until_s is not None else world.duration
                k = 0
                while True:
                    t = spec.at_s + k * spec.every_s
                    if t >= until or t > world.duration:
                        break
                    world.schedule(t, self._fire, spec)
                    k += 1
            else:
                world.schedule(spec.at_s, self._fire, spec)

    def _fire(self, spec: FaultSpec) -> None:
        world = self.world
        if world.settled and spec.op not in RESTORING_OPS:
            world.trace({"ev": "fault_skipped", "op": spec.op, "index": spec.index,
                         "reason": "settling"})
            return
        self.apply(spec)
        world.run_safety_checks()

    def _later(self, delay_s: float, what: str, undo: Callable[[], None]) -> None:
        """Run ``undo`` after ``delay_s`` unless settle runs it first."""
        self._token += 1
        token = self._token
        self._pending[token] = (what, undo)
        self.world.schedule(self.world.now + delay_s, self._run_undo, token)

    def _run_undo(self, token: int) -> None:
        entry = self._pending.pop(token, None)
        if entry is None:
            return
        what, undo = entry
        self.world.trace({"ev": "undo", "what": what})
        undo()
        self.world.run_safety_checks()

    def settle(self) -> None:
        """Undo every pending fault now, heal the network, resume paused nodes."""
        world = self.world
        for token in sorted(self._pending):
            self._run_undo(token)
        world.partitions.heal()
        world.reroute(world.network.unclog_all())
        world.network.clear_overrides()
        for host in world.hosts:
            if host.paused:
                world.resume(host)
            if host.slow is not None:
                world.unslow(host, flush=True)

    # -- node selection ------------------------------------------------------------------

    def _candidates(self, op: str) -> list[Host]:
        hosts = self.world.hosts
        if op == "restart":
            return [h for h in hosts if h.status == DOWN]
        if op == "resume":
            return [h for h in hosts if h.paused]
        if op == "join":
            return [h for h in hosts if h.status in (NEW, LEFT)]
        if op == "slow":
            return [h for h in hosts if h.status == UP and not h.paused and h.slow is None]
        return [h for h in hosts if h.status == UP and not h.paused]

    def _resolve(self, spec: FaultSpec, who: str) -> Host | None:
        world = self.world
        if who == "@random":
            candidates = self._candidates(spec.op)
            if not candidates:
                return None
            return candidates[world.fault_rng.randrange(len(candidates))]
        if who.startswith("@"):
            role, _, arg = who.partition(":")
            resolver = ROLE_RESOLVERS.get(role)
            if resolver is None:
                raise FaultError(
                    f"fault #{spec.index} ({spec.op}): role {who!r} needs a capability that "
                    "has not landed"
                )
            name = resolver(world, arg)
            return None if name is None else world.host(name)
        return world.host(who)

    def _targets(self, spec: FaultSpec) -> list[Host]:
        out: list[Host] = []
        names = ([spec.node] if spec.node else []) + list(spec.nodes)
        for who in names:
            host = self._resolve(spec, who)
            if host is not None and host not in out:
                out.append(host)
        return out

    # -- applying ------------------------------------------------------------------------

    def apply(self, spec: FaultSpec) -> None:
        """Apply one occurrence of ``spec`` now (and schedule its inverse if ``for``)."""
        world = self.world
        op = spec.op
        handler = _OPS.get(op)
        if handler is None:
            raise FaultError(f"fault #{spec.index}: op {op!r} is not available in the simulator")
        targets = self._targets(spec)
        wanted_node = bool(spec.node or spec.nodes)
        if wanted_node and not targets:
            world.trace({"ev": "fault_skipped", "op": op, "index": spec.index,
                         "reason": "no node for " + ",".join(
                             ([spec.node] if spec.node else []) + list(spec.nodes))})
            return
        self.applied += 1
        detail = handler(self, spec, targets)
        world.trace({"ev": "fault", "op": op, "index": spec.index,
                     "nodes": [h.name for h in targets], "detail": detail})

    # Each op: (nemesis, spec, resolved target hosts) -> trace detail.

    def _op_partition(self, spec: FaultSpec, targets: list[Host]) -> Any:
        parts = self.world.partitions
        if spec.shape == "majorities-ring":
            members = [h.name for h in targets] or [h.name for h in self.world.hosts]
            ring = list(members)
            self.world.fault_rng.shuffle(ring)
            token = parts.majorities_ring(ring)
            detail: Any = {"ring": ring}
        elif spec.oneway:
            if spec.src and spec.dst:
                sources, dests = [spec.src], [spec.dst]
            elif len(spec.groups) == 2:
                sources, dests = list(spec.groups[0]), list(spec.groups[1])
            else:
                raise FaultError(f"fault #{spec.index}: a one-way partition needs from/to "
                                 "or two groups")
            token = parts.oneway(sources, dests)
            detail = {"from": sources, "to": dests}
        elif spec.groups:
            token = parts.split(spec.groups)
            detail = {"groups": [list(g) for g in spec.groups]}
        else:
            raise FaultError(f"fault #{spec.index}: partition needs groups, a shape or oneway")
        if spec.for_s:
            self._later(spec.for_s, "partition", lambda: _remove_cut(self.world, token))
        return detail

    def _op_heal(self, spec: FaultSpec, targets: list[Host]) -> Any:
        world = self.world
        cuts = world.partitions.heal()
        held = world.network.unclog_all()
        world.reroute(held)
        return {"cuts": cuts, "released": len(held)}

    def _op_isolate(self, spec: FaultSpec, targets: list[Host]) -> Any:
        tokens = [self.world.partitions.isolate(h.name) for h in targets]
        if spec.for_s:
            def undo() -> None:
                for tok in tokens:
                    self.world.partitions.remove(tok)
            self._later(spec.for_s, "isolate", undo)
        return None

    def _op_crash(self, spec: FaultSpec, targets: list[Host]) -> Any:
        crashed = [h for h in targets if self.world.crash(h, torn=spec.torn)]
        if spec.for_s and crashed:
            def undo() -> None:
                for h in crashed:
                    self.world.boot(h)
            self._later(spec.for_s, "crash", undo)
        return {"torn": spec.torn} if spec.torn else None

    def _op_restart(self, spec: FaultSpec, targets: list[Host]) -> Any:
        world = self.world
        for h in targets:
            if h.core is not None:
                world.crash(h)
            world.boot(h)
        return None

    def _op_pause(self, spec: FaultSpec, targets: list[Host]) -> Any:
        paused = [h for h in targets if self.world.pause(h)]
        if spec.for_s and paused:
            def undo() -> None:
                for h in paused:
                    self.world.resume(h)
            self._later(spec.for_s, "pause", undo)
        return None

    def _op_slow(self, spec: FaultSpec, targets: list[Host]) -> Any:
        params = spec.slow if isinstance(spec, SlowFaultSpec) else SlowParams()
        slowed = [h for h in targets if self.world.slow(h, params)]
        if spec.for_s and slowed:
            def undo() -> None:
                for h in slowed:
                    self.world.unslow(h)
            self._later(spec.for_s, "slow", undo)
        return {
            "rate": params.rate, "drain_rate": params.drain_rate, "lag_s": params.lag_s,
            "queue": params.queue_packets, "queue_bytes": params.queue_bytes,
            "timers": params.timers,
        }

    def _op_resume(self, spec: FaultSpec, targets: list[Host]) -> Any:
        for h in targets:
            self.world.resume(h)
        return None

    def _op_skew(self, spec: FaultSpec, targets: list[Host]) -> Any:
        world = self.world
        hosts = targets or list(world.hosts)
        kind = spec.kind or "offset"
        value = _need_value(spec)
        for h in hosts:
            if kind == "offset":
                h.clock.set_offset(value)
            elif kind == "drift":
                h.clock.set_drift(world.now, value)
            elif kind == "step":
                h.clock.step(value)
            else:
                raise FaultError(f"fault #{spec.index}: skew kind {kind!r} is not offset, "
                                 "drift or step")
        if spec.for_s:
            def undo() -> None:
                for h in hosts:
                    h.clock.reset(self.world.now)
            self._later(spec.for_s, "skew", undo)
        return {"kind": kind, "value": value}

    def _link_fault(self, spec: FaultSpec, targets: list[Host], field: str, value: Any) -> None:
        net = self.world.network
        token = net.override(field, value, src=spec.src, dst=spec.dst,
                             nodes=tuple(h.name for h in targets))
        if spec.for_s:
            self._later(spec.for_s, field, lambda: _remove_override(self.world, token))

    def _op_loss(self, spec: FaultSpec, targets: list[Host]) -> Any:
        value = _need_value(spec)
        self._link_fault(spec, targets, "loss", value)
        return {"loss": value}

    def _op_latency(self, spec: FaultSpec, targets: list[Host]) -> Any:
        if spec.latency is None:
            raise FaultError(f"fault #{spec.index}: latency needs a latency value")
        self._link_fault(spec, targets, "latency", spec.latency)
        return {"low_s": spec.latency.low_s, "high_s": spec.latency.high_s}

    def _op_clog(self, spec: FaultSpec, targets: list[Host]) -> Any:
        world = self.world
        net = world.network
        if spec.src and spec.dst:
            src, dst = spec.src, spec.dst
            net.clog_link(src, dst)
            if spec.for_s:
                self._later(spec.for_s, "clog",
                            lambda: world.reroute(net.unclog_link(src, dst)))
            return {"from": src, "to": dst}
        clogged = [h.name for h in targets]
        if not clogged:
            raise FaultError(f"fault #{spec.index}: clog needs a node, nodes, or from/to")
        for name in clogged:
            net.clog_node(name)
        if spec.for_s:
            def undo() -> None:
                for name in clogged:
                    world.reroute(net.unclog_node(name))
            self._later(spec.for_s, "clog", undo)
        return None

    def _op_swizzle(self, spec: FaultSpec, targets: list[Host]) -> Any:
        """FoundationDB's swizzle-clog: clog a random subset one by one, then unclog them
        one by one in a random order, over ``for`` seconds (default 10)."""
        world = self.world
        rng = world.fault_rng
        members = [h.name for h in targets] or [h.name for h in world.hosts]
        k = rng.randint(1, max(1, len(members) // 2))
        chosen = rng.sample(members, k)
        total = spec.for_s or 10.0
        step = total / (2 * k)
        order = list(chosen)
        rng.shuffle(order)
        net = world.network

        def clog(name: str) -> None:
            if world.settled:
                return
            net.clog_node(name)
            world.trace({"ev": "swizzle", "what": "clog", "node": name})

        def unclog(name: str) -> Callable[[], None]:
            def run() -> None:
                if name in net.clogged_nodes:
                    world.reroute(net.unclog_node(name))
            return run

        for i, name in enumerate(chosen):
            world.schedule(world.now + i * step, _call, (clog, name))
        for j, name in enumerate(order):
            self._later(total / 2 + j * step + step / 2, "swizzle " + name, unclog(name))
        return {"clog": chosen, "unclog": order}

    def _op_join(self, spec: FaultSpec, targets: list[Host]) -> Any:
        for h in targets:
            self.world.boot(h)
        return None

    def _op_leave(self, spec: FaultSpec, targets: list[Host]) -> Any:
        for h in targets:
            self.world.leave(h)
        return None

    def _op_transfer_leader(self, spec: FaultSpec, targets: list[Host]) -> Any:
        """Move Raft leadership. A target named by a role (``@leader``, ``@random``) that
        leads hands leadership to its most caught-up voter (``consensus.transfer_leadership``,
        the graceful-shutdown step); any other target gets leadership from the current
        leader (``raw.transfer_leader(target)``); a named node that already leads keeps
        it. Then the leader's core is pumped. The detail names the leader and the
        transferee (``None``: no leader, a paused leader, or nothing to hand to, counted)."""
        world = self.world
        from simulator.kv import consensus_of, resolve_leader

        by_role = bool(spec.node and spec.node.startswith("@"))
        out: list[dict[str, Any]] = []
        for target in targets:
            leader_name = resolve_leader(world, "")
            leader = world.host(leader_name) if leader_name is not None else None
            sub = consensus_of(leader) if leader is not None else None
            if leader is None or sub is None or sub.raw is None or leader.paused:
                world.stats.inc("faults.transfer_leader.no_leader")
                out.append({"leader": None, "to": None})
                continue
            if target is leader and not by_role:
                world.stats.inc("faults.transfer_leader.already")
                out.append({"leader": leader.name, "to": leader.name})
                continue
            now = leader.clock.now(world.now)
            to: str | None = None
            try:
                if target is leader:
                    node = sub.transfer_leadership(now)
                    names = {h.core.node_id: h.name for h in world.hosts if h.core is not None}
                    to = None if node is None else names.get(node)
                elif target.core is not None and consensus_of(target) is not None:
                    sub.raw.transfer_leader(target.core.node_id)
                    to = target.name
            except Exception:
                world._fail(leader, "consensus.transfer_leadership")
            if to is None:
                world.stats.inc("faults.transfer_leader.refused")
            world.pump(leader)
            out.append({"leader": leader.name, "to": to})
        return out


def _call(arg: tuple[Callable[[str], None], str]) -> None:
    fn, value = arg
    fn(value)


def _remove_cut(world: World, token: int) -> None:
    world.partitions.remove(token)


def _remove_override(world: World, token: int) -> None:
    world.network.remove_override(token)


def _need_value(spec: FaultSpec) -> float:
    if spec.value is None:
        raise FaultError(f"fault #{spec.index} ({spec.op}): needs a value")
    return spec.value


_OPS: dict[str, Callable[[Nemesis, FaultSpec, list[Host]], Any]] = {
    "partition": Nemesis._op_partition,
    "heal": Nemesis._op_heal,
    "isolate": Nemesis._op_isolate,
    "crash": Nemesis._op_crash,
    "restart": Nemesis._op_restart,
    "pause": Nemesis._op_pause,
    "slow": Nemesis._op_slow,
    "resume": Nemesis._op_resume,
    "skew": Nemesis._op_skew,
    "loss": Nemesis._op_loss,
    "latency": Nemesis._op_latency,
    "clog": Nemesis._op_clog,
    "swizzle": Nemesis._op_swizzle,
    "join": Nemesis._op_join,
    "leave": Nemesis._op_leave,
    "transfer-leader": Nemesis._op_transfer_leader,
}
"""Fault ops the simulator executes."""


def draw_random_faults(world: World) -> list[FaultSpec]:
    """A fault schedule drawn from the seed within ``[random_faults]`` limits.

    Gaps between fault starts are exponential with mean ``mean_interval_s``; at most
    ``max_concurrent`` faults overlap; each lasts up to ``max_duration_s`` and ends (its
    inverse applied) before ``end_before_s`` (default: the start of settle, or the end).
    """
    scenario = world.scenario
    limits = scenario.random_faults
    rng = child_rng(world.seed, "random-faults")
    end = limits.end_before_s if limits.end_before_s is not None else world.settle_at
    end = min(end, world.duration)
    ops = [op for op in limits.ops if op in RANDOM_OPS]
    if not ops:
        raise FaultError(
            f"random_faults ops {list(limits.ops)}: none can be drawn at random "
            f"(drawable: {', '.join(RANDOM_OPS)})"
        )
    names = list(scenario.cluster.names)
    specs: list[FaultSpec] = []
    active: list[float] = []
    t = rng.expovariate(1.0 / limits.mean_interval_s)
    while t < end:
        active = [e for e in active if e > t]
        if len(active) < limits.max_concurrent:
            low = min(0.5, limits.max_duration_s)
            dur = min(rng.uniform(low, limits.max_duration_s), end - t)
            if dur <= 0:
                break
            op = ops[rng.randrange(len(ops))]
            spec = FaultSpec(at_s=t, op=op, node="@random", for_s=dur,
                             index=-1 - len(specs))
            if op == "partition":
                shuffled = list(names)
                rng.shuffle(shuffled)
                cut = rng.randint(1, max(1, len(shuffled) - 1))
                spec = replace(spec, node=None,
                               groups=(tuple(shuffled[:cut]), tuple(shuffled[cut:])))
            elif op == "loss":
                spec = replace(spec, node=None, value=round(rng.uniform(0.05, 0.5), 3))
            elif op == "latency":
                low_s = round(rng.uniform(0.01, 0.2), 4)
                spec = replace(spec, latency=LatencySpec(low_s, round(low_s * 2, 4)))
            elif op == "swizzle":
                spec = replace(spec, node=None)
            elif op == "skew":
                spec = replace(spec, kind="offset", value=round(rng.uniform(-30.0, 30.0), 3))
            elif op == "transfer-leader":
                # no inverse: @random is the leader (hand it on) or the node to lead next
                spec = replace(spec, for_s=None)
            elif op == "slow":
                # A starved handler (timers on time), then a drain rate drawn per fault.
                params = SlowParams(drain_rate=float(rng.choice((10, 20, 50, 100, 1000))))
                spec = SlowFaultSpec(at_s=t, op=op, node="@random", for_s=dur,
                                     index=spec.index, slow=params)
            specs.append(spec)
            active.append(t + dur)
        t += rng.expovariate(1.0 / limits.mean_interval_s)
    return specs
