"""The membership checkers and metrics fail when they must, judged from synthetic events.

Each test boots a small world, then feeds its ``MembershipTracker`` the membership events a
buggy (or a correct) SWIM would report, at chosen virtual times, and reads the checkers'
verdicts and the metrics. The shipped scenarios (test_membership_scenarios.py) show the
same checkers passing on the real protocol.
"""

from __future__ import annotations

from foundation_p2p.events import Event
from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.state import Member, MemberState
from simulator.checkers import CHECKERS
from simulator.host import Host
from simulator.membership import min_suspicion_timeout_s
from simulator.scenario import parse_scenario_text
from simulator.world import World

BASE = """\
name = "m"
duration = "60s"
[cluster]
nodes = {nodes}
[[workload]]
kind = "membership"
"""


def world(nodes: int = 4, extra: str = "") -> World:
    """A world with every node booted at t=0 and nothing else run."""
    scenario = parse_scenario_text(BASE.format(nodes=nodes) + extra, source="m.toml")
    w = World(scenario)
    for host in w.hosts:
        w.boot(host)
    return w


def member(w: World, name: str, state: MemberState, incarnation: int = 0) -> Member:
    host = w.host(name)
    return Member(
        node_id=w.membership.id_of[name], name=name, address=host.addr, incarnation=incarnation,
        state=state, metadata=b"", observer=False, public_key=b"\x00" * 32, since_mono=0.0,
    )


def at(w: World, t: float, host: str, ev: Event) -> None:
    """``host`` reports ``ev`` at virtual time ``t``."""
    w.now = t
    w.membership.on_event(w.host(host), ev)


def everyone_knows_everyone(w: World) -> None:
    for viewer in w.hosts:
        for other in w.hosts:
            if other is not viewer:
                at(w, 1.0, viewer.name, MemberJoined(member(w, other.name, MemberState.ALIVE)))


def no_false_failures(w: World) -> tuple[bool, str]:
    return CHECKERS["membership.no_false_failures"].check(w)


def converged(w: World) -> tuple[bool, str]:
    return CHECKERS["membership.converged"].check(w)


def test_a_healthy_member_declared_failed_breaks_no_false_failures() -> None:
    w = world()
    everyone_knows_everyone(w)
    assert no_false_failures(w)[0]
    at(w, 5.0, "n1", MemberFailed(member(w, "n3", MemberState.FAILED)))
    ok, detail = no_false_failures(w)
    assert not ok and "n1 declared n3 failed at t=5.000s" in detail
    assert w.metrics(1.0)["membership.false_positives"] == 1


def test_a_false_suspicion_is_counted_but_is_no_violation() -> None:
    w = world()
    everyone_knows_everyone(w)
    at(w, 5.0, "n1", MemberSuspect(member(w, "n3", MemberState.SUSPECT), b"\x01" * 16))
    at(w, 6.0, "n1", MemberAlive(member(w, "n3", MemberState.ALIVE, 1)))
    assert no_false_failures(w)[0]
    m = w.metrics(1.0)
    assert m["membership.false_suspicions"] == 1 and m["membership.false_positives"] == 0


def test_a_crashed_member_may_be_declared_failed_and_its_detection_is_timed() -> None:
    w = world()
    everyone_knows_everyone(w)
    w.now = 10.0
    w.crash(w.host("n4"))
    at(w, 11.5, "n2", MemberSuspect(member(w, "n4", MemberState.SUSPECT), b"\x02" * 16))
    for t, name in ((15.0, "n1"), (16.0, "n2")):
        at(w, t, name, MemberFailed(member(w, "n4", MemberState.FAILED)))
    assert "membership.full_detection_s_mean" not in w.metrics(1.0)  # n3 has not yet
    at(w, 17.0, "n3", MemberFailed(member(w, "n4", MemberState.FAILED)))
    assert no_false_failures(w)[0]
    m = w.metrics(1.0)
    assert m["membership.first_suspect_s_mean"] == 1.5
    assert m["membership.full_detection_s_mean"] == 7.0
    assert m["membership.full_detection_s_count"] == 1
    assert m["membership.detections_incomplete"] == 0


def test_a_detection_cut_short_by_a_restart_is_incomplete() -> None:
    w = world()
    everyone_knows_everyone(w)
    w.now = 10.0
    w.crash(w.host("n4"))
    at(w, 12.0, "n1", MemberFailed(member(w, "n4", MemberState.FAILED)))
    w.now = 13.0
    w.boot(w.host("n4"))
    m = w.metrics(1.0)
    assert m["membership.detections_incomplete"] == 1
    assert "membership.full_detection_s_mean" not in m


def test_a_pause_longer_than_the_minimum_suspicion_timeout_excuses_only_then() -> None:
    w = world()
    everyone_knows_everyone(w)
    cfg = w.membership.configs["n2"]
    low = min_suspicion_timeout_s(cfg, 4)
    assert low == cfg.suspicion_mult * cfg.probe_interval_s  # log10(4) < 1
    w.now = 10.0
    w.pause(w.host("n2"))
    at(w, 10.0 + low - 0.5, "n1", MemberFailed(member(w, "n2", MemberState.FAILED)))
    assert not no_false_failures(w)[0]  # not paused long enough yet
    w2 = world()
    everyone_knows_everyone(w2)
    w2.now = 10.0
    w2.pause(w2.host("n2"))
    at(w2, 10.0 + low + 0.5, "n1", MemberFailed(member(w2, "n2", MemberState.FAILED)))
    assert no_false_failures(w2)[0]


def test_a_node_on_either_side_of_a_partition_is_excused() -> None:
    w = world()
    everyone_knows_everyone(w)
    w.now = 5.0
    w.partitions.split([["n1", "n2"], ["n3", "n4"]])
    w.run_safety_checks()
    w.partitions.heal()
    w.run_safety_checks()
    at(w, 20.0, "n1", MemberFailed(member(w, "n4", MemberState.FAILED)))
    at(w, 20.0, "n4", MemberFailed(member(w, "n2", MemberState.FAILED)))
    assert no_false_failures(w)[0]


def test_views_that_differ_from_the_running_nodes_break_converged() -> None:
    w = world()
    everyone_knows_everyone(w)
    # The real SWIM cores saw no datagram: their members() list only themselves.
    ok, detail = converged(w)
    assert not ok and "misses" in detail


def test_convergence_is_timed_from_a_heal_to_the_last_view_that_agrees() -> None:
    w = world(3)
    everyone_knows_everyone(w)
    w.now = 5.0
    token = w.partitions.isolate("n3")
    w.run_safety_checks()
    at(w, 10.0, "n1", MemberFailed(member(w, "n3", MemberState.FAILED)))
    at(w, 10.0, "n2", MemberFailed(member(w, "n3", MemberState.FAILED)))
    w.now = 20.0
    w.partitions.remove(token)
    w.run_safety_checks()  # the heal starts the clock
    at(w, 23.0, "n1", MemberJoined(member(w, "n3", MemberState.ALIVE, 1)))
    assert "membership.convergence_s_mean" not in w.metrics(1.0)
    at(w, 24.5, "n2", MemberJoined(member(w, "n3", MemberState.ALIVE, 1)))
    assert w.metrics(1.0)["membership.convergence_s_max"] == 4.5
    assert no_false_failures(w)[0]  # n3 was isolated


def test_an_update_has_spread_when_every_other_running_node_saw_its_incarnation() -> None:
    w = world(4)
    everyone_knows_everyone(w)
    w.now = 30.0
    updater: Host = w.host("n1")
    w.membership.on_update(updater, 3)
    gossip_s = w.membership.configs["n1"].gossip_interval_s
    at(w, 30.2, "n2", MemberUpdated(member(w, "n1", MemberState.ALIVE, 3)))
    at(w, 30.3, "n3", MemberUpdated(member(w, "n1", MemberState.ALIVE, 2)))  # an older one
    at(w, 30.4, "n3", MemberUpdated(member(w, "n1", MemberState.ALIVE, 3)))
    assert "membership.rounds_to_99_99_max" not in w.metrics(1.0)
    at(w, 30.6, "n4", MemberUpdated(member(w, "n1", MemberState.ALIVE, 3)))
    m = w.metrics(1.0)
    assert abs(m["membership.update_spread_s_max"] - 0.6) < 1e-9
    assert abs(m["membership.rounds_to_99_99_max"] - 0.6 / gossip_s) < 1e-9
    assert m["membership.updates"] == 1 and m["membership.updates_unfinished"] == 0


def test_classic_swim_reports_false_positives_without_claiming_the_invariant() -> None:
    w = world(4, "[node.membership]\nlifeguard = false\n")
    names = [c.name for c in w._checkers]
    assert "membership.converged" in names and "membership.no_false_failures" not in names
    everyone_knows_everyone(w)
    at(w, 5.0, "n1", MemberFailed(member(w, "n3", MemberState.FAILED)))
    assert w.metrics(1.0)["membership.false_positives"] == 1


def test_update_metadata_has_the_requested_size() -> None:
    from simulator.workloads import update_metadata_bytes

    shortest = len(update_metadata_bytes(70_000, 0))  # [70000, b""]: 7 bytes
    assert shortest == 7
    for size in (7, 8, 23, 24, 25, 64, 255, 256, 257, 300, 1024):
        assert len(update_metadata_bytes(70_000, size)) == size
    assert len(update_metadata_bytes(70_000, 3)) == shortest


def test_auth_failures_of_an_earlier_boot_still_fail_the_auth_checker() -> None:
    """The checker reads both the running core's counters and those kept from crashed
    boots; a counter present with 0 is no failure."""
    w = world(3)
    check = CHECKERS["wire.no_auth_failures"].check
    assert check(w)[0]
    n2 = w.host("n2")
    assert n2.core is not None
    n2.core.counters["packets.dropped.malformed"] = 0
    assert check(w)[0]
    w.crash(n2)
    n2.old_counters["packets.dropped.auth_failed"] = 2
    ok, detail = check(w)
    assert not ok and "n2: packets.dropped.auth_failed=2" in detail
