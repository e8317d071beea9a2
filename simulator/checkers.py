"""Invariant checkers: a plug-in registry of named properties a simulated run must keep.

A :class:`Checker` has a dotted name (``area.what``), a kind and two functions:
``applies(world)`` says whether it concerns this scenario's cluster and workloads, and
``check(world)`` returns ``(ok, detail)``. ``"safety"`` checkers run during the run (after
every fault and once per virtual second) and at the end; the first failure is kept.
``"liveness"`` checkers run once, at the end of the run (after ``[check] settle``).
Every checker that applies always runs; ``[check] invariants`` may name extra ones.

Later capabilities add theirs with :func:`register` (``membership.converged``,
``raft.election_safety``...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.membership import MembershipTracker
    from simulator.world import World

SAFETY = "safety"
LIVENESS = "liveness"

AUTH_FAILURE_CODES = (
    "auth_failed",
    "malformed",
    "limit",
    "unsupported_version",
    "unknown_key",
    "stale_epoch",
    "bad_signature",
)
"""``packets.dropped.<code>`` counters that must stay zero when no attacker is simulated."""


@dataclass(frozen=True)
class Checker:
    """One named invariant: when it applies, and how it is checked."""

    name: str
    """Dotted name, ``area.what``."""
    kind: str
    """``"safety"`` (checked during the run) or ``"liveness"`` (checked after settle)."""
    description: str
    """One line for reports and the README."""
    applies: Callable[[World], bool]
    """Whether this checker concerns the world's scenario."""
    check: Callable[[World], tuple[bool, str]]
    """``(ok, detail)``; ``detail`` says what was seen either way."""


CHECKERS: dict[str, Checker] = {}
"""Every known checker by name (insertion order is report order)."""


def register(checker: Checker) -> Checker:
    """Add a checker to :data:`CHECKERS`; ``ValueError`` on a duplicate name or bad kind."""
    if checker.kind not in (SAFETY, LIVENESS):
        raise ValueError(f"checker {checker.name!r}: kind must be safety or liveness")
    if "." not in checker.name:
        raise ValueError(f"checker {checker.name!r}: name must be dotted (area.what)")
    if checker.name in CHECKERS:
        raise ValueError(f"checker {checker.name!r} is already registered")
    CHECKERS[checker.name] = checker
    return checker


def _always(world: World) -> bool:
    return True


# -- sim.no_internal_error ---------------------------------------------------------------


def _check_internal_error(world: World) -> tuple[bool, str]:
    if world.internal_error is None:
        return True, "the code under test never raised"
    first = world.internal_error.strip().splitlines()
    return False, f"the code under test raised: {first[-1] if first else '?'}"


# -- wire.no_auth_failures ---------------------------------------------------------------


_AUTH_FAILURE_COUNTERS = tuple(f"packets.dropped.{code}" for code in AUTH_FAILURE_CODES)


def _check_auth_failures(world: World) -> tuple[bool, str]:
    # Runs every virtual second over every host: a counter that was never incremented is
    # absent from both dicts, so most hosts cost one membership test per name.
    bad: list[str] = []
    replays = 0
    for host in world.hosts:
        core = host.core
        live = core.counters if core is not None else {}
        old = host.old_counters
        for name in _AUTH_FAILURE_COUNTERS:
            if name in live or name in old:
                n = host.counter(name)
                if n:
                    bad.append(f"{host.name}: {name}={n}")
        if "packets.dropped.replay" in live or "packets.dropped.replay" in old:
            replays += host.counter("packets.dropped.replay")
    duplicated = world.network.counts.get("net.duplicated", 0)
    if bad:
        return False, "packets failed to open or decode: " + ", ".join(bad[:10])
    if replays > duplicated:
        # Only a duplicated datagram may legitimately hit the replay window.
        return False, f"{replays} packets rejected as replays but only {duplicated} duplicated"
    return True, f"no packet failed AEAD or decoding; {replays} duplicates rejected as replays"


# -- net.partition_respected -------------------------------------------------------------


def _check_partition(world: World) -> tuple[bool, str]:
    violations = world.partition_violations
    if violations:
        return False, f"{len(violations)} deliveries crossed an active partition, first: " + (
            violations[0]
        )
    return True, "no delivery crossed an active partition"


# -- disk.no_unsynced_after_crash --------------------------------------------------------


def _check_disk(world: World) -> tuple[bool, str]:
    violations = world.disk_violations
    if violations:
        return False, f"{len(violations)} restarts saw wrong disk contents, first: " + (
            violations[0]
        )
    return True, f"{world.stats.get('node.restarts', 0)} restarts read exactly what was synced"


# -- services.stopped_on_crash -----------------------------------------------------------


def _check_services(world: World) -> tuple[bool, str]:
    bad: list[str] = []
    for host in world.hosts:
        if host.core is None:
            running = world.services.running_on(host.name)
            if running:
                bad.append(f"{host.name} is down but runs {', '.join(running)}")
    if bad:
        return False, "; ".join(bad[:10])
    return True, "every down node's services are stopped"


# -- probe.reachable ---------------------------------------------------------------------


def _applies_probe(world: World) -> bool:
    return world.has_workload("ping")


def probe_rounds(world: World) -> int:
    """Probe rounds a pair may go unanswered by bad luck alone: with the scenario's worst
    link loss ``p``, ``k`` rounds all lose the ping or the ack with probability
    ``(1 - (1 - p)^2)^k``; ``k`` makes that below 1e-9 (1 round on a lossless network)."""
    net = world.scenario.network
    worst = max([net.loss] + [link.loss for link in net.links if link.loss is not None])
    if worst <= 0.0:
        return 1
    if worst >= 1.0:
        return 1_000_000
    round_trip_loss = 1.0 - (1.0 - worst) ** 2
    return max(1, math.ceil(math.log(1e-9) / math.log(round_trip_loss)))


def _check_probe(world: World) -> tuple[bool, str]:
    now = world.now
    missing: list[str] = []
    checked = 0
    rounds = probe_rounds(world)
    for host in world.hosts:
        core = host.core
        if core is None or not host.is_live:
            continue
        window = core.config.probe_interval_s * rounds + core.config.probe_timeout_s
        for addr in core.prober.targets:
            target = world.host_at(addr)
            if target is None or not target.is_live:
                continue
            checked += 1
            last = host.last_ack.get(addr)
            if last is None or now - last > window:
                seen = "never" if last is None else f"last at {last:.3f}s"
                missing.append(f"{host.name}->{target.name} ({seen})")
    if missing:
        return False, f"{len(missing)} of {checked} live probe targets unanswered: " + ", ".join(
            missing[:10]
        )
    rounds_text = "probe interval" if rounds == 1 else f"{rounds} probe intervals (loss)"
    return True, f"all {checked} live probe targets acked within the last {rounds_text}"


register(
    Checker(
        "sim.no_internal_error",
        SAFETY,
        "the code under test never raised an exception",
        _always,
        _check_internal_error,
    )
)
register(
    Checker(
        "wire.no_auth_failures",
        SAFETY,
        "no packet failed AEAD or decoding; replays only from duplicated datagrams",
        _always,
        _check_auth_failures,
    )
)
register(
    Checker(
        "net.partition_respected",
        SAFETY,
        "no datagram was delivered across an active partition",
        _always,
        _check_partition,
    )
)
register(
    Checker(
        "disk.no_unsynced_after_crash",
        SAFETY,
        "a restarted node reads exactly what was synced before its crash",
        _always,
        _check_disk,
    )
)
register(
    Checker(
        "services.stopped_on_crash",
        SAFETY,
        "a crashed or stopped node runs no service",
        _always,
        _check_services,
    )
)
register(
    Checker(
        "probe.reachable",
        LIVENESS,
        "after settle, every live node got an ack from each live probe target in the last "
        "probe interval (more intervals on a lossy network, see probe_rounds)",
        _applies_probe,
        _check_probe,
    )
)


# -- membership.converged / membership.no_false_failures --------------------------------


def _applies_membership(world: World) -> bool:
    return world.has_workload("membership")


def _applies_no_false_failures(world: World) -> bool:
    # Classic SWIM (lifeguard = false, the ablation) makes no such promise about a slow
    # node; its false positives are reported in membership.false_positives instead.
    tracker: MembershipTracker = world.membership
    return world.has_workload("membership") and tracker.lifeguard_everywhere


def _check_converged(world: World) -> tuple[bool, str]:
    tracker: MembershipTracker = world.membership
    return tracker.check_converged()


def _check_no_false_failures(world: World) -> tuple[bool, str]:
    tracker: MembershipTracker = world.membership
    return tracker.check_no_false_failures()


register(
    Checker(
        "membership.converged",
        LIVENESS,
        "after settle, every running non-observer member lists exactly the running "
        "non-observer nodes as alive (suspect counts as alive), in members() and in its events",
        _applies_membership,
        _check_converged,
    )
)
register(
    Checker(
        "membership.no_false_failures",
        SAFETY,
        "no member that was never crashed, left, cut off (partition, isolation, clog) or "
        "paused longer than the minimum suspicion timeout is declared failed by anyone "
        "(with Lifeguard on everywhere)",
        _applies_no_false_failures,
        _check_no_false_failures,
    )
)


# -- channels.delivered_intact / channels.ordered ----------------------------------------


def _applies_broadcast(world: World) -> bool:
    return world.has_workload("broadcast")


def _check_delivered_intact(world: World) -> tuple[bool, str]:
    from simulator.channels import broadcast_workload

    return broadcast_workload(world).check_delivered_intact(world)


def _check_ordered(world: World) -> tuple[bool, str]:
    from simulator.channels import broadcast_workload

    return broadcast_workload(world).check_ordered(world)


register(
    Checker(
        "channels.delivered_intact",
        LIVENESS,
        "every delivered broadcast body matches its digest, none arrives twice, and every "
        "message reached every subscriber that was up (and subscribed join_grace earlier) "
        "when it was sent, unless publisher or subscriber crashed, left, was cut off or "
        "paused long, or is down at the end",
        _applies_broadcast,
        _check_delivered_intact,
    )
)
register(
    Checker(
        "channels.ordered",
        SAFETY,
        "per subscriber boot, publisher and channel, broadcast messages arrive in the "
        "publisher's order",
        _applies_broadcast,
        _check_ordered,
    )
)


# -- registry.* (the singleton workload, simulator.registry) --------------------------------


def _applies_singleton(world: World) -> bool:
    return world.has_workload("singleton")


def _singleton_check(method: str) -> Callable[[World], tuple[bool, str]]:
    def check(world: World) -> tuple[bool, str]:
        from simulator.registry import singleton_workload

        return getattr(singleton_workload(world), method)(world)  # type: ignore[no-any-return]

    return check


def _applies_bounds(world: World) -> bool:
    if not world.has_workload("singleton"):
        return False
    from simulator.registry import singleton_workload

    w = singleton_workload(world)
    return w.failover_bound_s is not None or w.dedup_bound_s is not None


def _applies_failed_starts(world: World) -> bool:
    if not world.has_workload("singleton"):
        return False
    from simulator.registry import singleton_workload

    return singleton_workload(world).failed_starts > 0


register(
    Checker(
        "registry.converged",
        LIVENESS,
        "after settle, every node up holds the same visible registry (names, owners, stamps)",
        _applies_singleton,
        _singleton_check("check_converged"),
    )
)
register(
    Checker(
        "registry.singleton_unique",
        LIVENESS,
        "after settle every singleton runs exactly once, on a node up; in quorum mode no "
        "moment had two instances",
        _applies_singleton,
        _singleton_check("check_unique"),
    )
)
register(
    Checker(
        "registry.specs_kept",
        SAFETY,
        "no singleton is stopped as terminated when no spec was removed (a supervisor saw "
        "a spec vanish that nobody removed)",
        _applies_singleton,
        _singleton_check("check_specs_kept"),
    )
)
register(
    Checker(
        "registry.failover_bounded",
        LIVENESS,
        "a singleton whose node crashed runs again within failover_bound; after a heal no "
        "singleton runs twice longer than dedup_bound",
        _applies_bounds,
        _singleton_check("check_bounds"),
    )
)
register(
    Checker(
        "registry.state_bounded",
        LIVENESS,
        "failed start attempts (names and singletons that exist) are refused and grow "
        "registry.state_bytes by at most 1 % + 4 KiB",
        _applies_failed_starts,
        _singleton_check("check_state_bounded"),
    )
)
