"""SupervisorCore on one node and small clusters: the API, restart strategies, restart
intensity, backoff, give-up, specs in the registry, stale feedback, configuration."""

from __future__ import annotations

import random

import pytest
from test_supervisor_harness import SupCluster, nid

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, MalformedError
from foundation_p2p.registry.actions import StartService, StopService
from foundation_p2p.registry.core import RegistryCore
from foundation_p2p.registry.restart import (
    ExponentialBackoff,
    RestartIntensity,
    should_restart,
)
from foundation_p2p.registry.supervisor import (
    SPEC_PREFIX,
    ChildSpec,
    SpecConflict,
    SupervisorConfig,
    SupervisorCore,
)

NOW = Now(0.0, 1_700_000_000.0)


def solo(**config: object) -> tuple[SupervisorCore, RegistryCore]:
    reg = RegistryCore(nid(0), counters=Counters(), rng=random.Random(1))
    sup = SupervisorCore(
        nid(0), reg, config=SupervisorConfig(**config),  # type: ignore[arg-type]
        counters=reg.counters, rng=random.Random(2),
    )
    sup.set_members(NOW, [nid(0)])
    return sup, reg


# -- API ----------------------------------------------------------------------------------


def test_start_singleton_stores_the_spec_cluster_scoped_claims_the_name_and_starts() -> None:
    sup, reg = solo()
    sup.start_singleton(NOW, "db", "db-service", {"port": 1})
    [start] = sup.take_actions()
    assert start == StartService("db", "db-service", {"port": 1}, start.instance, None)
    spec = reg.lookup(SPEC_PREFIX + "db")
    assert spec is not None and spec.owner is None
    claim = reg.lookup("db")
    assert claim is not None and claim.owner == nid(0)
    [row] = sup.which_children()
    assert (row.name, row.node, row.state, row.kind) == ("db", nid(0), "starting", "singleton")
    sup.service_started(NOW, "db", start.instance)
    assert sup.which_children()[0].state == "running"


def test_starting_the_same_spec_twice_is_a_no_op_and_a_different_spec_is_refused() -> None:
    sup, _ = solo()
    sup.start_singleton(NOW, "db", "svc", 1)
    sup.start_singleton(NOW, "db", "svc", 1)
    assert len(sup.take_actions()) == 1
    with pytest.raises(SpecConflict, match="another spec"):
        sup.start_singleton(NOW, "db", "svc", 2)


def test_terminate_removes_the_spec_stops_the_instance_and_releases_the_name() -> None:
    sup, reg = solo()
    sup.start_singleton(NOW, "db", "svc")
    [start] = sup.take_actions()
    assert sup.terminate(NOW, "db") is True
    [stop] = sup.take_actions()
    assert stop == StopService("db", start.instance, "terminated", False)
    sup.service_exited(NOW, "db", start.instance, "stopped")
    assert reg.lookup("db") is None and reg.lookup(SPEC_PREFIX + "db") is None
    assert sup.which_children() == []
    assert sup.terminate(NOW, "db") is False


@pytest.mark.parametrize(
    ("name", "problem"),
    [("", "non-empty"), ("$sup/x", "reserved"), ("a\nb", "control"), ("x" * 201, "over 200")],
)
def test_bad_child_names_are_refused_naming_the_problem(name: str, problem: str) -> None:
    sup, _ = solo()
    with pytest.raises(ConfigError, match=problem):
        sup.start_singleton(NOW, name, "svc")


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="restart"):
        ChildSpec("a", "svc", restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="quorum mode is for singletons"):
        ChildSpec("a", "svc", kind="replicated", quorum=True)
    with pytest.raises(ConfigError, match="max_seconds"):
        ChildSpec("a", "svc", max_seconds=0)
    with pytest.raises(ConfigError, match="kind"):
        ChildSpec("a", "svc", kind="many")  # type: ignore[arg-type]


def test_a_malformed_spec_from_a_peer_is_ignored_and_counted_not_fatal() -> None:
    sup, reg = solo()
    reg.register(NOW, SPEC_PREFIX + "bad", {"service": 7}, owner=None)
    reg.register(NOW, SPEC_PREFIX + "worse", [1, 2], owner=None)
    sup.registry_changed(NOW)
    sup.registry_changed(NOW)
    assert sup.take_actions() == []
    assert sup.counters["supervisor.specs.malformed"] == 2  # once per entry, not per pass
    with pytest.raises(MalformedError, match="not a map"):
        ChildSpec.from_value("x", [1])
    with pytest.raises(MalformedError, match="missing key 'kind'"):
        ChildSpec.from_value("x", {"service": "s"})


def test_spec_round_trips_through_its_registry_value() -> None:
    spec = ChildSpec("a", "svc", {"k": [1, 2]}, kind="singleton", restart="transient",
                     quorum=True, max_restarts=5, max_seconds=2.5)
    assert ChildSpec.from_value("a", spec.to_value()) == spec


def test_config_from_mapping_refuses_unknown_keys_and_parses_quorum_members() -> None:
    cfg = SupervisorConfig.from_mapping({"lease_s": 2.0, "quorum_members": [nid(1).hex()]})
    assert cfg.lease_s == 2.0 and cfg.quorum_members == frozenset({nid(1)})
    with pytest.raises(ConfigError, match="unknown key 'leese_s'"):
        SupervisorConfig.from_mapping({"leese_s": 2.0})
    with pytest.raises(ConfigError, match="not a hex node id"):
        SupervisorConfig.from_mapping({"quorum_members": ["zz"]})
    with pytest.raises(ConfigError, match="max_drift"):
        SupervisorConfig(max_drift=0.7)


def test_stale_feedback_is_ignored_and_counted() -> None:
    sup, _ = solo()
    sup.start_singleton(NOW, "db", "svc")
    [start] = sup.take_actions()
    sup.service_exited(NOW, "db", start.instance + 99, "crashed")
    sup.service_started(NOW, "nothing", 1)
    sup.handoff_state(NOW, "db", start.instance, "state")  # not stopping: refused
    assert sup.counters["supervisor.feedback.stale"] == 3
    assert sup.take_actions() == []
    with pytest.raises(ConfigError, match="outcome"):
        sup.service_exited(NOW, "db", start.instance, "exploded")


# -- restart strategies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "outcome", "restarts"),
    [
        ("permanent", "normal", True),
        ("permanent", "crashed", True),
        ("permanent", "stopped", True),
        ("transient", "normal", False),
        ("transient", "stopped", False),
        ("transient", "crashed", True),
        ("temporary", "crashed", False),
        ("temporary", "normal", False),
    ],
)
def test_restart_strategy_table(policy: str, outcome: str, restarts: bool) -> None:
    assert should_restart(policy, outcome) is restarts  # type: ignore[arg-type]


def test_a_crashed_permanent_singleton_restarts_on_the_same_node_after_backoff() -> None:
    c = SupCluster(3, config=SupervisorConfig(backoff_base_s=0.2, backoff_jitter=0.0))
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    [i] = c.running("s")
    first = c.exit_service(i, "s", "crashed", "boom")
    assert c.running("s") == []
    row = next(r for r in c.nodes[i].sup.which_children() if r.name == "s")
    assert row.state == "backoff" and row.reason == "crashed: boom"
    c.run(0.15)
    assert c.running("s") == []  # still backing off (0.2 s)
    c.run(0.1)
    assert c.running("s") == [i]
    assert c.nodes[i].services["s"].instance != first
    assert c.nodes[i].sup.counters["supervisor.restarts"] == 1
    assert c.owner_everywhere("s") == {c.nodes[i].id}  # the claim was kept through the crash


def test_backoff_doubles_per_restart_in_the_window_and_is_capped() -> None:
    b = ExponentialBackoff(0.1, 0.5, 0.0)
    rng = random.Random(0)
    assert [b.delay(k, rng) for k in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    jittered = ExponentialBackoff(1.0, 10.0, 0.5)
    ds = [jittered.delay(0, rng) for _ in range(200)]
    assert 0.5 <= min(ds) < 0.6 and 0.9 < max(ds) <= 1.0


def test_observed_restart_delays_grow_exponentially() -> None:
    c = SupCluster(1, config=SupervisorConfig(backoff_base_s=0.1, backoff_max_s=10.0,
                                              backoff_jitter=0.0))
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc", max_restarts=5, max_seconds=60.0)
    c.run(0.1)
    delays = []
    for _ in range(4):
        crashed_at = c.t
        c.exit_service(0, "s", "crashed")
        while not c.running("s"):
            c.run(0.01, dt=0.01)
        delays.append(round(c.t - crashed_at, 2))
    assert delays == [0.1, 0.2, 0.4, 0.8]


def test_transient_child_is_not_restarted_after_a_normal_exit_and_its_spec_is_removed() -> None:
    c = SupCluster(3)
    c.nodes[1].sup.start_singleton(c.now(), "job", "svc", restart="transient")
    c.run(1.0)
    [i] = c.running("job")
    c.exit_service(i, "job", "crashed")
    c.run(1.0)
    assert c.running("job") == [i]  # a crash restarts it
    c.exit_service(i, "job", "normal")
    c.run(2.0)
    assert c.running("job") == []
    for node in c.nodes:
        assert node.registry.lookup(SPEC_PREFIX + "job") is None
        assert node.registry.lookup("job") is None
        assert node.sup.which_children() == []


def test_temporary_child_is_never_restarted_even_after_a_crash() -> None:
    c = SupCluster(3)
    c.nodes[0].sup.start_singleton(c.now(), "once", "svc", restart="temporary")
    c.run(1.0)
    [i] = c.running("once")
    c.exit_service(i, "once", "crashed")
    c.run(3.0)
    assert c.running("once") == []
    assert sum(len(n.starts) for n in c.nodes) == 1


def test_replicated_transient_exit_finishes_only_on_that_node() -> None:
    c = SupCluster(3)
    c.nodes[0].sup.start_replicated(c.now(), "agent", "svc", restart="transient")
    c.run(1.0)
    assert c.running("agent") == [0, 1, 2]
    c.exit_service(1, "agent", "normal")
    c.run(2.0)
    assert c.running("agent") == [0, 2]
    rows = {r.node: r.state for r in c.nodes[1].sup.which_children()}
    assert rows[c.nodes[1].id] == "exited"
    assert rows[c.nodes[0].id] == "remote"


# -- restart intensity and give-up --------------------------------------------------------


def test_restart_intensity_window_allows_max_restarts_in_max_seconds() -> None:
    w = RestartIntensity(3, 5.0)
    assert [w.try_record(t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert w.try_record(5.0) is True  # the restart at 0.0 left the window
    assert RestartIntensity(0, 1.0).try_record(0.0) is False


def test_beyond_the_restart_intensity_the_singleton_moves_to_the_next_node() -> None:
    c = SupCluster(4, config=SupervisorConfig(backoff_base_s=0.01, backoff_jitter=0.0,
                                              give_up_s=20.0))
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc", max_restarts=2, max_seconds=10.0)
    c.run(1.0)
    [first] = c.running("s")
    order = c.nodes[0].sup._placement.order("s")
    assert order[0] == c.nodes[first].id
    for _ in range(2):
        c.exit_service(first, "s", "crashed")
        c.run(0.5)
        assert c.running("s") == [first]
    c.exit_service(first, "s", "crashed")  # the third crash in 10 s: given up here
    gave_up = c.nodes[first].sup
    assert gave_up.counters["supervisor.gave_up"] == 1
    row = next(r for r in gave_up.which_children() if r.node == c.nodes[first].id)
    assert row.state == "given_up"
    c.run(2.0)
    second = c.by_id[order[1]].index
    assert c.running("s") == [second]
    assert all(n.sup.placement("s") == order[1] for n in c.nodes)
    # the give-up expires: the node is eligible again and the singleton moves back
    c.run(20.0)
    assert gave_up.counters["supervisor.give_up.expired"] == 1
    assert c.running("s") == [first]
    assert c.peak["s"] == 1


def test_when_every_node_gave_up_the_singleton_is_unplaced_and_visible() -> None:
    c = SupCluster(2, config=SupervisorConfig(backoff_base_s=0.01, give_up_s=60.0))
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc", max_restarts=0)
    c.run(1.0)
    for _ in range(2):
        [i] = c.running("s")
        c.exit_service(i, "s", "crashed")
        c.run(1.0)
    assert c.running("s") == []
    for node in c.nodes:
        assert node.sup.placement("s") is None
        [row] = node.sup.which_children()
        assert row.state == "given_up"


# -- replicated and placed children -------------------------------------------------------


def test_start_replicated_runs_one_instance_per_live_node_including_joiners() -> None:
    c = SupCluster(4)
    c.set_view(3, [3])
    c.partition([0, 1, 2], [3])
    c.refresh_views()
    c.nodes[0].sup.start_replicated(c.now(), "agent", "svc")
    c.run(1.0)
    assert c.running("agent") == [0, 1, 2]
    c.heal()
    c.refresh_views()
    c.run(2.0)
    assert c.running("agent") == [0, 1, 2, 3]
    assert all(len(n.starts) == 1 for n in c.nodes)


def test_start_child_runs_on_the_rendezvous_owner_and_moves_without_handoff() -> None:
    c = SupCluster(4)
    spec = ChildSpec("worker-7", "svc", kind="child")
    c.nodes[2].sup.start_child(c.now(), spec)
    c.run(1.0)
    owner = c.nodes[0].sup.placement("worker-7")
    assert c.running("worker-7") == [c.by_id[owner].index]  # type: ignore[index]
    assert c.nodes[0].registry.lookup("worker-7") is None  # no name registered for a child
    c.crash(c.by_id[owner].index)  # type: ignore[index]
    c.refresh_views()
    c.run(1.0)
    [now_on] = c.running("worker-7")
    assert c.nodes[now_on].id == c.nodes[now_on].sup.placement("worker-7")


def test_a_child_whose_placement_moves_is_stopped_with_moved_and_started_there() -> None:
    c = SupCluster(3)
    c.set_view(0, [0])
    c.partition([0], [1, 2])
    c.refresh_views()
    spec = ChildSpec("w1", "svc", kind="child")  # placed on node 2 of {0, 1, 2}
    c.nodes[0].sup.start_child(c.now(), spec)
    c.run(0.5)
    assert c.running("w1") == [0]
    c.heal()
    c.refresh_views()
    c.run(1.0)
    assert c.nodes[0].sup.placement("w1") == nid(2)
    assert c.running("w1") == [2]
    assert c.nodes[0].stops[-1].reason == "moved"
    assert c.nodes[0].stops[-1].handoff is False


# -- markers from a previous life, rows, deadlines ----------------------------------------


def test_a_rejoined_node_is_placed_again_despite_its_old_leaving_marker() -> None:
    c = SupCluster(3)
    c.run(0.5)
    c.nodes[2].sup.prepare_shutdown(c.now(2))
    c.run(0.5)
    assert all(n.sup.placement("anything") != nid(2) for n in c.nodes[:2])
    c.crash(2)
    c.refresh_views()
    c.run(1.0)
    c.restart(2)  # its marker is still in the others' registries, hidden while it was away
    c.run(0.01, dt=0.01)
    name = next(f"n{i}" for i in range(100)
                if c.nodes[0].sup._placement.order(f"n{i}")[0] == nid(2))
    assert c.nodes[0].sup.placement(name) == nid(2)  # the old marker is ignored at once
    c.run(2.0)
    for node in c.nodes:  # and the rejoined node removed it
        assert node.registry.select("$sup/leaving/") == []
    assert c.nodes[2].sup.counters["supervisor.markers.stale"] == 1


def test_a_restarted_node_removes_its_give_up_marker_from_a_previous_life() -> None:
    c = SupCluster(2, config=SupervisorConfig(backoff_base_s=0.01, give_up_s=600.0))
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc", max_restarts=0)
    c.run(1.0)
    [i] = c.running("s")
    c.exit_service(i, "s", "crashed")
    c.run(1.0)
    assert c.running("s") == [1 - i]
    assert len(c.nodes[1 - i].registry.select("$sup/giveup/")) == 1
    c.crash(i)
    c.restart(i)
    c.run(2.0)
    assert c.nodes[1 - i].registry.select("$sup/giveup/") == []
    assert c.nodes[i].sup.counters["supervisor.markers.stale"] == 1


def test_which_children_shows_where_a_remote_singleton_runs() -> None:
    c = SupCluster(3)
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    [i] = c.running("s")
    for node in c.nodes:
        [row] = node.sup.which_children()
        assert row.node == nid(i)
        assert row.state == ("running" if node.index == i else "remote")
        assert (row.instance is not None) == (node.index == i)


def test_next_deadline_names_the_backoff_restart_and_the_periodic_check() -> None:
    sup, _ = solo(backoff_base_s=0.5, backoff_jitter=0.0, check_interval_s=2.0)
    assert sup.next_deadline() == 2.0
    sup.start_singleton(NOW, "s", "svc")
    [start] = sup.take_actions()
    sup.service_exited(Now(1.0, NOW.wall + 1), "s", start.instance, "crashed")
    assert sup.next_deadline() == 1.5
    sup.handle_timer(Now(1.5, NOW.wall + 1.5))
    [restart] = sup.take_actions()
    assert isinstance(restart, StartService) and restart.instance > start.instance
