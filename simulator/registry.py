"""The ``singleton`` workload: singletons on virtual services, and names in the registry.

Parameters (``[[workload]] kind = "singleton"``; every one optional, each error names
its key):

- ``count`` (default 1): singletons ``{prefix}0`` .. ``{prefix}{count-1}`` (``prefix``
  default ``"s"``), each running the virtual service ``service`` (default ``"worker"``).
  They are started at ``start`` (default ``"3s"``), spread over the nodes up then in
  name order: node *i* calls ``supervisor.start_singleton`` for every singleton *j* with
  ``j % up == i`` (the spec is cluster-scoped: placement, not the caller, decides where
  it runs).
- ``start_on`` (default ``"one"``): ``"every"`` makes every node up call
  ``start_singleton`` for every singleton at ``start``, as an application that runs the
  same code everywhere does (the facade's documented use): the concurrent writes of each
  spec then conflict in the registry (every supervisor must keep running what it runs;
  ``registry.stops_terminated`` counts a spec that looked removed).
- ``quorum`` (default false): start them in quorum mode (they run only on a side holding
  a majority of the configured members' lease).
- ``names`` (default 0): register that many plain names, ``{names_prefix}{k}`` (default
  ``"name/"``), spread over the nodes up at ``names_at`` (default ``"3s"``), round robin,
  each owned by the node that registered it.
- ``failed_starts`` (default 0): at ``failed_at`` (default: ``names_at`` + 10 s), that
  many attempts to register names that already exist (each on a node that does not own
  it; each must be refused with ``AlreadyRegistered``), and as many
  ``start_singleton`` calls for singletons that already exist (each refused or a
  no-op); ``registry.state_bytes`` is measured just before and 5 s after
  (``registry.state_bytes_before_failed_starts`` / ``_after_failed_starts``).
- ``failover_bound`` (a duration): ``registry.failover_bounded`` fails if a singleton whose
  node crashed ran again later than this after the crash.
- ``dedup_bound`` (a duration): ``registry.failover_bounded`` also fails if, after a
  partition healed, a singleton still ran on two nodes this long after membership merged
  again (the first poll, every 0.1 s, at which every node up sees every other node up as
  alive). The time SWIM takes to merge the sides is reported beside it
  (``registry.merge_after_heal_s_max``); the membership scenarios bound it.

At each boot a node joins the cluster through the seeds (as the ``membership`` workload
does). The supervisor's actions are applied after every ``World.pump`` of a node: a
``StartService`` starts the virtual service (``world.services``; trace line
``service start``) and is reported with ``supervisor.service_started``; a
``StopService`` stops it (reporting ``handoff_state`` with the virtual service's state
when asked) and is reported with ``supervisor.service_exited(..., "stopped")``. The
reports are scheduled at the same virtual time, as separate events. Equivalent
lower-level calls: ``core.supervisor.start_singleton(now, name, service, args,
quorum=...)``, ``core.registry.core.register(now, name, value)``,
``core.supervisor.take_actions()``.

Invariants (see :mod:`simulator.checkers`):

- ``registry.converged`` (liveness): after settle, every node up holds the same visible
  registry (names, owners, stamps).
- ``registry.singleton_unique`` (liveness): after settle every singleton runs exactly once
  (on a node up); in quorum mode also: at no moment did two instances run at once.
- ``registry.failover_bounded`` (liveness; only with ``failover_bound``/``dedup_bound``).
- ``registry.specs_kept`` (safety): no singleton was stopped as ``terminated``. The
  workload never terminates a spec, so such a stop means a supervisor saw a spec vanish
  that nobody removed (with ``start_on = "every"`` the concurrent spec writes once made a
  replica hold none of them for a moment: ``spec/registry.md`` section 3.4).
- ``registry.state_bounded`` (liveness; only with ``failed_starts``): the failed attempts
  grew ``registry.state_bytes`` by at most 1 % + 4 KiB.

Metrics: ``registry.convergence_s`` (from the workload's last registration to the first
poll where every node up agrees), ``registry.failover_s_{count,mean,p50,p99,max}`` (crash
of a singleton's node to its next start elsewhere), ``registry.dedup_after_merge_s_max``,
``registry.synced_bytes`` (record bytes of the registry service sent over the messenger,
every node, every boot), ``registry.state_bytes`` (the largest ``state_bytes()`` of a node
up at the end), ``registry.name_conflicts`` (stops for ``NameConflict``),
``registry.singleton_starts``/``_stops``, ``registry.stops_<reason>`` (the supervisor's
other stop reasons: ``handoff``, ``moved``, ``quorum_lost``, ``shutdown``, ``terminated``),
``registry.double_runs`` (moments with two instances).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from foundation_p2p.addresses import Address
from foundation_p2p.events import Join
from foundation_p2p.membership.state import MemberState
from foundation_p2p.registry.actions import NameConflict, StartService, StopService
from simulator.durations import parse_duration
from simulator.membership import Distribution
from simulator.model import WorkloadSpec
from simulator.nemesis import ROLE_RESOLVERS
from simulator.services import ServiceRecord

if TYPE_CHECKING:
    from simulator.host import Host
    from simulator.world import World

POLL_S = 0.1
"""How often the workload compares the nodes' registries and looks for heals."""
MAX_VIOLATIONS = 20
"""Violation texts kept (every violation is counted)."""

_KEYS = (
    "count", "prefix", "service", "start", "quorum", "names", "names_prefix", "names_at",
    "failed_starts", "failed_at", "failover_bound", "dedup_bound", "start_on",
)


def _err(key: str, problem: str) -> ValueError:
    return ValueError(f"workload singleton: {key}: {problem}")


def _duration(params: dict[str, Any], key: str, default: str | None) -> float | None:
    raw = params.get(key, default)
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise _err(key, str(exc)) from None


def _int(params: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    raw = params.get(key, default)
    if type(raw) is not int or not low <= raw <= high:
        raise _err(key, f"must be an integer from {low} to {high}, got {raw!r}")
    return raw


def _text(params: dict[str, Any], key: str, default: str) -> str:
    raw = params.get(key, default)
    if not isinstance(raw, str) or not raw or len(raw) > 64:
        raise _err(key, f"must be a text of 1 to 64 characters, got {raw!r}")
    return raw


@dataclass
class _Running:
    """A virtual service instance this workload started for the supervisor."""

    name: str
    instance: int
    started: float


class SingletonWorkload:
    """Singletons and names on every node; see the module docstring."""

    kind = "singleton"

    def __init__(self, spec: WorkloadSpec) -> None:
        p = spec.params
        for key in p:
            if key not in _KEYS:
                raise _err(key, f"unknown key (known: {', '.join(_KEYS)})")
        self.count = _int(p, "count", 1, 0, 100_000)
        self.prefix = _text(p, "prefix", "s")
        self.service = _text(p, "service", "worker")
        self.start_s = _duration(p, "start", "3s") or 0.0
        quorum = p.get("quorum", False)
        if type(quorum) is not bool:
            raise _err("quorum", f"must be true or false, got {quorum!r}")
        self.quorum = quorum
        start_on = p.get("start_on", "one")
        if start_on not in ("one", "every"):
            raise _err("start_on", f'must be "one" or "every", got {start_on!r}')
        self.start_on: str = start_on
        self.names = _int(p, "names", 0, 0, 1_000_000)
        self.names_prefix = _text(p, "names_prefix", "name/")
        self.names_at_s = _duration(p, "names_at", "3s") or 0.0
        self.failed_starts = _int(p, "failed_starts", 0, 0, 1_000_000)
        failed_at = _duration(p, "failed_at", None)
        self.failed_at_s = failed_at if failed_at is not None else self.names_at_s + 10.0
        self.failover_bound_s = _duration(p, "failover_bound", None)
        self.dedup_bound_s = _duration(p, "dedup_bound", None)
        self.world: World | None = None
        self.seeds: tuple[Address, ...] = ()
        self.singletons = [f"{self.prefix}{j}" for j in range(self.count)]
        self._singleton_set = set(self.singletons)
        # node name -> singleton name -> the instance running there
        self.running: dict[str, dict[str, _Running]] = {}
        self.counts: dict[str, int] = {
            "singleton_starts": 0, "singleton_stops": 0, "name_conflicts": 0,
            "double_runs": 0, "registered": 0, "register_refused": 0,
            "failed_start_refused": 0, "failed_start_accepted": 0, "late_failovers": 0,
            "late_dedups": 0,
        }
        self.violations: list[str] = []
        self.bound_violations: list[str] = []
        self.failover: Distribution | None = None
        self.down_since: dict[str, float] = {}  # singleton -> when its last instance crashed
        self.dedup_s_max = 0.0
        self.last_write_at: float | None = None
        self.converged_at: float | None = None
        self.healed_at: float | None = None  # the last moment a cut ended
        self.merged_at: float | None = None  # then every view up held every node up alive
        self.merge_s_max = 0.0
        self._had_cuts = False
        self.state_before: int | None = None
        self.state_after: int | None = None
        self.first_terminated: str | None = None

    # -- the workload protocol -----------------------------------------------------------

    def on_start(self, world: World) -> None:
        self.world = world
        cluster = world.scenario.cluster
        seeds = cluster.seeds or cluster.names[: min(3, cluster.nodes)]
        self.seeds = tuple(world.host(n).addr for n in seeds)
        self.failover = Distribution(world._metrics_rng.randrange)
        world.services.listeners.append(self._on_service_record)
        world.pump_hooks.append(self._take_actions)
        world.schedule(0.0, self._poll)
        if self.count:
            world.schedule(self.start_s, self._start_singletons)
        if self.names:
            world.schedule(self.names_at_s, self._register_names)
        if self.failed_starts:
            world.schedule(self.failed_at_s - 0.001, self._measure_before)
            world.schedule(self.failed_at_s, self._fail_starts)
            world.schedule(self.failed_at_s + 5.0, self._measure_after)

    def on_boot(self, world: World, host: Host) -> None:
        targets = tuple(a for a in self.seeds if a != host.addr)
        world.command(host, Join(targets))

    # -- driving the nodes ---------------------------------------------------------------

    def _up(self) -> list[Host]:
        world = self.world
        assert world is not None
        return [h for h in world.hosts if h.core is not None]

    def _start_singletons(self, _: Any = None) -> None:
        world = self.world
        assert world is not None
        up = self._up()
        if not up:
            return
        for j, name in enumerate(self.singletons):
            callers = up if self.start_on == "every" else [up[j % len(up)]]
            for host in callers:
                core = host.core
                assert core is not None
                now = host.clock.now(world.now)
                try:
                    core.supervisor.start_singleton(
                        now, name, self.service, {"n": j}, quorum=self.quorum
                    )
                except Exception:
                    world._fail(host, f"supervisor.start_singleton({name})")
        for host in up:
            self._flush(host)
        self.last_write_at = world.now
        self.converged_at = None

    def _register_names(self, _: Any = None) -> None:
        world = self.world
        assert world is not None
        up = self._up()
        if not up:
            return
        from foundation_p2p.registry.core import AlreadyRegistered

        for k in range(self.names):
            host = up[k % len(up)]
            core = host.core
            assert core is not None
            try:
                core.registry.core.register(
                    host.clock.now(world.now), f"{self.names_prefix}{k}", k
                )
                self.counts["registered"] += 1
            except AlreadyRegistered:
                self.counts["register_refused"] += 1
            except Exception:
                world._fail(host, "registry.register")
        for host in up:
            self._flush(host)
        self.last_write_at = world.now
        self.converged_at = None

    def _fail_starts(self, _: Any = None) -> None:
        """Attempts that must fail: names and singletons that exist already."""
        world = self.world
        assert world is not None
        up = self._up()
        if len(up) < 2:
            return
        from foundation_p2p.registry.core import AlreadyRegistered

        existing = [f"{self.names_prefix}{k}" for k in range(self.names)] or self.singletons
        for i in range(self.failed_starts):
            if not existing:
                break
            name = existing[i % len(existing)]
            host = up[(i + 1) % len(up)]
            core = host.core
            assert core is not None
            entry = core.registry.core.lookup(name)
            if entry is not None and entry.owner == core.node_id:
                host = up[(i + 2) % len(up)]
                core = host.core
                assert core is not None
            now = host.clock.now(world.now)
            try:
                core.registry.core.register(now, name, -1)
                self.counts["failed_start_accepted"] += 1
                self._violation(f"{host.name} registered {name!r}, which existed", self.violations)
            except AlreadyRegistered:
                self.counts["failed_start_refused"] += 1
            except Exception:
                world._fail(host, "registry.register")
            if self.singletons:
                single = self.singletons[i % len(self.singletons)]
                try:
                    core.supervisor.start_singleton(
                        now, single, self.service, {"again": i}, quorum=self.quorum
                    )
                except Exception as exc:  # a refusal is fine; a crash of the core is not
                    if not isinstance(exc, (ValueError, LookupError)):
                        world._fail(host, "supervisor.start_singleton (again)")
        for host in up:
            self._flush(host)

    def _state_max(self) -> int:
        best = 0
        for host in self._up():
            assert host.core is not None
            best = max(best, host.core.registry.core.state_bytes())
        return best

    def _measure_before(self, _: Any = None) -> None:
        self.state_before = self._state_max()

    def _measure_after(self, _: Any = None) -> None:
        self.state_after = self._state_max()

    def _flush(self, host: Host) -> None:
        world = self.world
        assert world is not None
        core = host.core
        if core is None:
            return
        try:
            core.registry.flush(host.clock.now(world.now))
        except Exception:
            world._fail(host, "registry.flush")
        world.pump(host)

    # -- the supervisor's actions ----------------------------------------------------------

    def _take_actions(self, host: Host) -> None:
        core = host.core
        if core is None:
            return
        world = self.world
        assert world is not None
        try:
            actions = core.supervisor.take_actions()
        except Exception:
            world._fail(host, "supervisor.take_actions")
        for action in actions:
            if isinstance(action, StartService):
                self._start(host, action)
            elif isinstance(action, StopService):
                self._stop(host, action)

    def _start(self, host: Host, action: StartService) -> None:
        world = self.world
        assert world is not None
        mine = self.running.setdefault(host.name, {})
        old = mine.get(action.name)
        if old is not None:  # a new instance replaces one we never heard stop
            world.services.stop(action.name, host.name, world.now, "replaced")
        mine[action.name] = _Running(action.name, action.instance, world.now)
        world.services.start(action.name, host.name, world.now)
        world.trace(
            {"ev": "service", "what": "start", "name": action.name, "node": host.name,
             "instance": action.instance, "handoff": action.handoff is not None}
        )
        world.schedule(world.now, self._report_started, (host, host.boots, action))

    def _report_started(self, arg: tuple[Host, int, StartService]) -> None:
        host, boot, action = arg
        world = self.world
        assert world is not None
        core = host.core
        if core is None or host.boots != boot:
            return
        try:
            core.supervisor.service_started(
                host.clock.now(world.now), action.name, action.instance
            )
        except Exception:
            world._fail(host, "supervisor.service_started")
        self._flush(host)

    def _stop(self, host: Host, action: StopService) -> None:
        world = self.world
        assert world is not None
        mine = self.running.get(host.name, {})
        run = mine.get(action.name)
        if run is None or run.instance != action.instance:
            return
        del mine[action.name]
        reason = action.reason
        text = str(reason) if isinstance(reason, NameConflict) else reason
        if isinstance(reason, NameConflict):
            self.counts["name_conflicts"] += 1
        else:
            key = f"stops_{text}"
            self.counts[key] = self.counts.get(key, 0) + 1
            if text == "terminated" and self.first_terminated is None:
                self.first_terminated = (
                    f"{action.name} #{action.instance} on {host.name} at t={world.now:.3f}s"
                )
        world.services.stop(action.name, host.name, world.now, text)
        world.trace(
            {"ev": "service", "what": "stop", "name": action.name, "node": host.name,
             "instance": action.instance, "reason": text}
        )
        world.schedule(world.now, self._report_stopped, (host, host.boots, action, run))

    def _report_stopped(self, arg: tuple[Host, int, StopService, _Running]) -> None:
        host, boot, action, run = arg
        world = self.world
        assert world is not None
        core = host.core
        if core is None or host.boots != boot:
            return
        now = host.clock.now(world.now)
        try:
            if action.handoff:
                # the virtual service's state: where and since when it ran
                core.supervisor.handoff_state(
                    now, action.name, action.instance,
                    {"from": host.name, "since": round(run.started, 6)},
                )
            core.supervisor.service_exited(now, action.name, action.instance, "stopped")
        except Exception:
            world._fail(host, "supervisor.service_exited")
        self._flush(host)

    # -- watching ----------------------------------------------------------------------------

    def _on_service_record(self, rec: ServiceRecord) -> None:
        if rec.name not in self._singleton_set:
            return
        world = self.world
        assert world is not None
        where = world.services.where(rec.name)
        if rec.what == "start":
            self.counts["singleton_starts"] += 1
            since = self.down_since.pop(rec.name, None)
            if since is not None and self.failover is not None:
                gap = rec.t - since
                self.failover.add(gap)
                bound = self.failover_bound_s
                if bound is not None and gap > bound:
                    self.counts["late_failovers"] += 1
                    self._violation(
                        f"{rec.name} ran again on {rec.node} {gap:.3f}s after its node "
                        f"crashed (bound {bound:g}s)", self.bound_violations,
                    )
            if len(where) > 1:
                self.counts["double_runs"] += 1
                if self.quorum:
                    self._violation(
                        f"{rec.name} started on {rec.node} while running on "
                        f"{', '.join(n for n in where if n != rec.node)}", self.violations,
                    )
        elif rec.what == "stop":
            self.counts["singleton_stops"] += 1
            if rec.detail in ("crash", "leave"):  # the world stopped it with its node
                self.running.get(rec.node, {}).pop(rec.name, None)
            if not where and rec.detail in ("crash", "leave"):
                self.down_since[rec.name] = rec.t
            if len(where) == 1 and self.healed_at is not None:
                # measured from the merge of the views (0 if the registry got there first)
                since = self.merged_at if self.merged_at is not None else rec.t
                gap = max(0.0, rec.t - since)
                self.dedup_s_max = max(self.dedup_s_max, gap)
                bound = self.dedup_bound_s
                if bound is not None and gap > bound:
                    self.counts["late_dedups"] += 1
                    self._violation(
                        f"{rec.name} still ran twice {gap:.3f}s after membership merged "
                        f"({since - self.healed_at:.3f}s after the heal; bound {bound:g}s)",
                        self.bound_violations,
                    )

    def _poll(self, _: Any = None) -> None:
        world = self.world
        assert world is not None
        cuts = bool(world.partitions.cuts)
        if self._had_cuts and not cuts:
            self.healed_at = world.now
            self.merged_at = None
        self._had_cuts = cuts
        if (
            not cuts and self.healed_at is not None and self.merged_at is None
            and self._views_merged()
        ):
            self.merged_at = world.now
            self.merge_s_max = max(self.merge_s_max, world.now - self.healed_at)
        if self.last_write_at is not None and self.converged_at is None and self._agree():
            self.converged_at = world.now
        world.schedule(world.now + POLL_S, self._poll)

    def views(self) -> dict[str, tuple[tuple[Any, ...], ...]]:
        """Each node up: its visible registry as ``(name, owner, stamp)`` rows."""
        out: dict[str, tuple[tuple[Any, ...], ...]] = {}
        for host in self._up():
            assert host.core is not None
            out[host.name] = tuple(
                (e.name, e.owner, e.stamp) for e in host.core.registry.core.select()
            )
        return out

    def _views_merged(self) -> bool:
        """Every node up sees every node up as alive."""
        up = self._up()
        ids = {h.core.node_id for h in up if h.core is not None}
        for host in up:
            assert host.core is not None
            alive = {
                m.node_id for m in host.core.membership.members()
                if m.state is MemberState.ALIVE
            }
            if not ids <= alive:
                return False
        return True

    def _agree(self) -> bool:
        up = self._up()
        if not up:
            return False
        counts = set()
        for host in up:
            assert host.core is not None
            counts.add(host.core.registry.core.count())
        if len(counts) != 1:
            return False
        return len(set(self.views().values())) == 1

    def _violation(self, text: str, into: list[str]) -> None:
        if len(into) < MAX_VIOLATIONS:
            world = self.world
            t = world.now if world is not None else 0.0
            into.append(f"at t={t:.3f}s: {text}")

    # -- checks and metrics --------------------------------------------------------------------

    def check_converged(self, world: World) -> tuple[bool, str]:
        """``registry.converged``: every node up holds the same visible registry."""
        views = self.views()
        if not views:
            return False, "no node is up"
        distinct = sorted(set(views.values()), key=len)
        if len(distinct) == 1:
            return True, f"{len(views)} nodes agree on {len(distinct[0])} visible entries"
        sizes = ", ".join(f"{n}: {len(v)}" for n, v in sorted(views.items())[:8])
        return False, f"{len(distinct)} different views among {len(views)} nodes ({sizes})"

    def check_unique(self, world: World) -> tuple[bool, str]:
        """``registry.singleton_unique``: each singleton runs exactly once now (and, in
        quorum mode, never ran twice at once)."""
        problems: list[str] = []
        for name in self.singletons:
            where = [n for n in world.services.where(name) if world.host(n).core is not None]
            if len(where) != 1:
                problems.append(f"{name} runs on {len(where)} nodes ({', '.join(where)})")
        ok = not problems and not (self.quorum and self.counts["double_runs"])
        detail = (
            f"{len(self.singletons)} singletons, {len(problems)} not running exactly once; "
            f"{self.counts['double_runs']} moments with two instances "
            f"({'quorum' if self.quorum else 'default'} mode), "
            f"{self.counts['name_conflicts']} stopped for NameConflict"
        )
        if problems:
            detail += "; " + "; ".join(problems[:5])
        if self.violations:
            detail += "; " + "; ".join(self.violations[:3])
        return ok, detail

    def check_bounds(self, world: World) -> tuple[bool, str]:
        """``registry.failover_bounded``: failovers and post-heal deduplications in time."""
        f = self.failover
        n = f.count if f is not None else 0
        worst = max(f.samples) if f is not None and f.samples else 0.0
        # a heal after which the views never merged measured no dedup at all: say so
        unmerged = (
            self.dedup_bound_s is not None and self.healed_at is not None
            and self.merged_at is None
        )
        ok = not self.counts["late_failovers"] and not self.counts["late_dedups"] and not unmerged
        detail = (
            f"{n} failovers (slowest {worst:.3f}s, bound {self.failover_bound_s}); "
            f"slowest dedup {self.dedup_s_max:.3f}s after membership merged (bound "
            f"{self.dedup_bound_s}; merged {self.merge_s_max:.3f}s after the heal at most)"
        )
        if unmerged:
            detail += (
                f"; membership never merged after the heal at t={self.healed_at:.3f}s, so "
                "no dedup was measured"
            )
        if self.bound_violations:
            detail += "; " + "; ".join(self.bound_violations[:3])
        return ok, detail

    def check_specs_kept(self, world: World) -> tuple[bool, str]:
        """``registry.specs_kept``: no instance was stopped as ``terminated``."""
        n = self.counts.get("stops_terminated", 0)
        if not n:
            return True, f"no spec vanished ({len(self.singletons)} singletons)"
        return False, (
            f"{n} instance(s) stopped as terminated though no spec was removed; first: "
            f"{self.first_terminated}"
        )

    def check_state_bounded(self, world: World) -> tuple[bool, str]:
        """``registry.state_bounded``: failed start attempts did not grow the state."""
        before, after = self.state_before, self.state_after
        if before is None or after is None:
            return False, "the failed starts were not measured (the run ended first?)"
        limit = before + before // 100 + 4096
        ok = after <= limit and not self.counts["failed_start_accepted"]
        return ok, (
            f"state_bytes {before} before and {after} after {self.failed_starts} failed "
            f"attempts (limit {limit}); {self.counts['failed_start_refused']} refused, "
            f"{self.counts['failed_start_accepted']} wrongly accepted"
        )

    def metrics(self, world: World) -> dict[str, float]:
        """The ``registry.*`` figures (module docstring)."""
        out: dict[str, float] = {f"registry.{k}": v for k, v in self.counts.items()}
        if self.converged_at is not None and self.last_write_at is not None:
            out["registry.convergence_s"] = self.converged_at - self.last_write_at
        if self.failover is not None:
            self.failover.report("registry.failover_s", out)
        if self.healed_at is not None:
            out["registry.dedup_after_merge_s_max"] = self.dedup_s_max
            out["registry.merge_after_heal_s_max"] = self.merge_s_max
        out["registry.synced_bytes"] = sum(
            h.counter("messaging.registry.sent_bytes") for h in world.hosts
        )
        out["registry.state_bytes"] = self._state_max()
        if self.state_before is not None:
            out["registry.state_bytes_before_failed_starts"] = self.state_before
        if self.state_after is not None:
            out["registry.state_bytes_after_failed_starts"] = self.state_after
        return out


def singleton_workload(world: World) -> SingletonWorkload:
    """The world's ``singleton`` workload (``LookupError`` if it has none)."""
    for w in world.workloads:
        if isinstance(w, SingletonWorkload):
            return w
    raise LookupError("the scenario has no singleton workload")


def resolve_singleton(world: World, name: str) -> str | None:
    """The ``@singleton:NAME`` role: a node up running singleton ``name`` now (the first
    in node order if several do), or None."""
    for node in sorted(world.services.where(name), key=lambda n: world.host(n).index):
        if world.host(node).core is not None:
            return node
    return None


ROLE_RESOLVERS["@singleton"] = resolve_singleton
