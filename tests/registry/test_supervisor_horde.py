"""The Horde complaints as tests, on clusters of RegistryCore + SupervisorCore pairs:
horde#172 (a dead node's singleton restarts elsewhere), #207 (nodes leaving never multiply
a singleton), #186 (a conflict loser is stopped with NameConflict and stays visible),
#6/#13 (handoff state reaches the successor), plus graceful shutdown and churn."""

from __future__ import annotations

import random

import pytest
from test_supervisor_harness import SupCluster, nid

from foundation_p2p.registry.actions import NameConflict
from foundation_p2p.registry.placement import rendezvous_order
from foundation_p2p.registry.supervisor import SupervisorConfig


def names(k: int) -> list[str]:
    return [f"single-{i}" for i in range(k)]


def test_horde_172_a_dead_nodes_singleton_runs_again_on_exactly_one_other_node() -> None:
    c = SupCluster(5)
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(2.0)
    [owner] = c.running("s")
    c.crash(owner)
    c.run(3.0)
    assert c.running("s") == []  # nobody noticed yet: no failure detection, no failover
    c.refresh_views()  # membership declares it failed everywhere
    detected = c.t
    while not c.running("s"):
        c.run(0.05)
    failover = c.t - detected
    [successor] = c.running("s")
    expected = rendezvous_order("s", [n.id for n in c.nodes if n.up])[0]
    assert c.nodes[successor].id == expected
    while c.owner_everywhere("s") != {expected}:
        c.run(0.05)
    visible = c.t - detected
    print(f"horde#172: every registry names the new owner {visible:.2f} s after detection")
    assert visible <= 0.1  # the claim's delta is shipped eagerly
    c.run(2.0)
    assert c.running("s") == [successor]
    assert c.owner_everywhere("s") == {expected}
    print(f"horde#172: singleton running again {failover:.2f} s after the failure was detected")
    assert failover <= 0.1, f"failover took {failover:.2f} s after detection"


def test_horde_172_many_singletons_of_a_dead_node_all_restart() -> None:
    c = SupCluster(6)
    for n in names(30):
        c.nodes[0].sup.start_singleton(c.now(), n, "svc")
    c.run(2.0)
    victim = max(range(6), key=lambda i: len(c.nodes[i].services))
    lost = sorted(c.nodes[victim].services)
    assert lost
    c.crash(victim)
    c.refresh_views()
    c.run(2.0)
    for n in names(30):
        assert len(c.running(n)) == 1, n
        assert c.peak[n] == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_horde_207_nodes_leaving_never_multiply_a_singleton(seed: int) -> None:
    c = SupCluster(8, seed=seed)
    rng = random.Random(seed)
    for n in names(20):
        c.nodes[rng.randrange(8)].sup.start_singleton(c.now(), n, "svc")
    c.run(2.0)
    leavers = rng.sample(range(8), 5)
    for k, i in enumerate(leavers):
        if k % 2 == 0:
            c.nodes[i].sup.prepare_shutdown(c.now(i))  # graceful: hands off, then leaves
            c.run(1.0)
            assert c.nodes[i].services == {}
        c.crash(i)
        # membership learns of it node by node, not all at once
        for node in rng.sample(c.nodes, len(c.nodes)):
            if node.up:
                c.set_view(node.index, [o.index for o in c.nodes if o.up])
                c.run(0.2)
    c.run(3.0)
    for n in names(20):
        assert len(c.running(n)) == 1, n
        assert c.peak[n] == 1, f"{n} ran {c.peak[n]} times at once"


def test_horde_186_the_conflict_loser_is_stopped_with_name_conflict_and_stays_visible() -> None:
    # "s" is placed on node 2 among {0, 1, 2}. Both sides of a partition start it: node 0
    # first (older claim), node 2 later (newer claim: the winner everywhere after the heal).
    assert rendezvous_order("s", [nid(i) for i in range(3)])[0] == nid(2)
    c = SupCluster(3)
    c.partition([0, 1], [2])
    c.refresh_views()
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    c.nodes[2].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    assert c.running("s") == [0, 2]  # default mode: both sides run it
    c.heal()
    c.refresh_views()
    c.run(2.0)
    assert c.running("s") == [2]
    stop = c.nodes[0].stops[-1]
    assert stop.reason == NameConflict("s", nid(2))
    assert stop.handoff is False
    assert "name conflict on 's'" in str(stop.reason)
    assert c.nodes[0].sup.counters["supervisor.name_conflicts"] == 1
    for node in c.nodes:  # every node agrees on the winner
        assert node.registry.lookup("s").owner == nid(2)  # type: ignore[union-attr]
    [row] = c.nodes[0].sup.which_children()
    assert row.state == "name_conflict" and row.node == nid(0)
    assert row.reason == NameConflict("s", nid(2))
    # ... and it is not restarted under that name
    c.run(10.0)
    assert len(c.nodes[0].starts) == 1 and c.running("s") == [2]


def test_after_a_heal_exactly_one_instance_survives_and_placement_wins_eventually() -> None:
    c = SupCluster(5)
    for n in names(10):
        c.nodes[0].sup.start_singleton(c.now(), n, "svc")
    c.run(2.0)
    c.partition([0, 1, 2], [3, 4])
    c.refresh_views()
    c.run(2.0)
    for n in names(10):
        assert len(c.running(n)) == 2  # each side runs every singleton
    c.heal()
    c.refresh_views()
    c.run(3.0)
    conflicts = sum(n.sup.counters["supervisor.name_conflicts"] for n in c.nodes)
    assert conflicts == 10
    for n in names(10):
        [i] = c.running(n)
        assert c.nodes[i].id == rendezvous_order(n, [x.id for x in c.nodes])[0]


def test_horde_6_13_handoff_state_reaches_the_successor_when_placement_moves() -> None:
    # "s" goes to node 2 among {0, 1, 2}, to node 0 among {0, 1}: start with node 2 away.
    c = SupCluster(3)
    c.partition([0, 1], [2])
    c.refresh_views()
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    assert c.running("s") == [0]
    c.nodes[0].services["s"].state = {"counter": 41, "log": ["a", "b"]}
    # node 2 stays isolated from the singleton but joins: drop the cut, it has no claim
    c.heal()
    c.refresh_views()
    c.run(2.0)
    assert c.running("s") == [2]
    stop = c.nodes[0].stops[-1]
    assert (stop.reason, stop.handoff) == ("handoff", True)
    start = c.nodes[2].starts[-1]
    assert start.handoff == {"counter": 41, "log": ["a", "b"]}
    assert c.nodes[2].sup.counters["supervisor.handoffs.received"] == 1
    assert c.nodes[0].sup.counters["supervisor.handoffs.sent"] == 1
    assert c.peak["s"] == 1
    for node in c.nodes:
        assert node.registry.lookup("s").owner == nid(2)  # type: ignore[union-attr]


def test_prepare_shutdown_hands_singletons_off_and_the_state_survives_the_leaver() -> None:
    c = SupCluster(4)
    for n in names(12):
        c.nodes[1].sup.start_singleton(c.now(), n, "svc")
    c.run(2.0)
    leaver = max(range(4), key=lambda i: len(c.nodes[i].services))
    mine = sorted(c.nodes[leaver].services)
    for n in mine:
        c.nodes[leaver].services[n].state = f"state of {n}"
    c.nodes[leaver].sup.prepare_shutdown(c.now(leaver))
    c.run(0.5)  # long enough for the registry to ship the handoff entries
    assert c.nodes[leaver].services == {}
    c.crash(leaver)  # gone for good before the others' membership even notices
    c.run(1.0)
    for n in mine:
        [i] = c.running(n)
        assert c.nodes[i].services[n].handoff == f"state of {n}"
        assert c.peak[n] == 1
    # the others moved as soon as the leaving marker arrived, before membership noticed
    assert all(c.nodes[leaver].id in node.live for node in c.nodes if node.up)
    c.refresh_views()
    c.run(1.0)
    for n in names(12):
        assert len(c.running(n)) == 1


def test_a_handoff_state_too_large_for_the_registry_is_dropped_and_counted() -> None:
    c = SupCluster(3)
    c.partition([0, 1], [2])
    c.refresh_views()
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    c.nodes[0].services["s"].state = b"x" * 100_000  # over max_value_bytes (64 KiB)
    c.heal()
    c.refresh_views()
    c.run(2.0)
    assert c.running("s") == [2]
    assert c.nodes[2].starts[-1].handoff is None
    assert c.nodes[0].sup.counters["supervisor.handoffs.dropped"] == 1


def test_a_restarted_node_drops_claims_from_its_previous_life() -> None:
    c = SupCluster(3)
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    [owner] = c.running("s")
    c.crash(owner)
    c.restart(owner)  # back before anyone noticed: its old claim is still everywhere
    c.run(3.0)
    assert c.running("s") == [owner]
    assert c.peak["s"] == 1


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_churn_every_singleton_runs_exactly_once_at_the_end(seed: int) -> None:
    rng = random.Random(seed)
    c = SupCluster(8, seed=seed, config=SupervisorConfig(check_interval_s=0.25))
    for n in names(100):
        c.nodes[rng.randrange(8)].sup.start_singleton(c.now(), n, "svc")
    c.run(2.0)
    for _ in range(12):
        up = [n.index for n in c.nodes if n.up]
        down = [n.index for n in c.nodes if not n.up]
        op = rng.choice(["crash", "leave", "join"]) if down and len(up) > 3 else (
            "join" if down else rng.choice(["crash", "leave"]))
        if op == "join":
            c.restart(rng.choice(down))
        else:
            i = rng.choice(up)
            if op == "leave":
                c.nodes[i].sup.prepare_shutdown(c.now(i))
                c.run(0.5)
            c.crash(i)
            c.refresh_views()
        c.run(rng.uniform(0.2, 1.5))
    c.run(5.0)
    for n in names(100):
        assert len(c.running(n)) == 1, n
        assert c.peak[n] == 1, f"{n} ran {c.peak[n]} times at once"


def _name_placed(order_pt_x: tuple[int, int, int]) -> str:
    """A name whose owner over {P, X} is P and over {P, T, X} is T."""
    p, t, x = order_pt_x
    for i in range(1000):
        name = f"contested-{i}"
        if (
            rendezvous_order(name, [nid(p), nid(x)])[0] == nid(p)
            and rendezvous_order(name, [nid(p), nid(t), nid(x)])[0] == nid(t)
        ):
            return name
    raise AssertionError("no such name")


def test_a_duplicates_handoff_never_starts_a_second_instance_beside_the_live_owner() -> None:
    # The soak finding (registry-partition-heal-soak seed 1, s93): P runs the singleton all
    # along; X, cut off, ran a duplicate and handed it off (to T) before its registry saw P's
    # claim. At the heal X's handoff entry (the newest stamp) beats P's running claim. P keeps
    # running (it restores its claim, "discarding a handoff ... while running it"); T must
    # not take the handoff as a free name and start a second instance beside P.
    P, T, X = 0, 1, 2
    name = _name_placed((P, T, X))
    c = SupCluster(3)
    c.set_view(P, [P, X])  # P's view (T not in it): P owns the name
    c.set_view(T, [P, T, X])  # T's and X's: T owns it, but P visibly holds it
    c.set_view(X, [P, T, X])
    c.partition([T], [P, X])  # T learns the spec and P's claim together, later
    c.nodes[P].sup.start_singleton(c.now(), name, "svc")
    c.run(2.0)
    c.heal()
    c.run(2.0)
    assert c.running(name) == [P]
    c.partition([P, T], [X])
    c.set_view(X, [X])  # X declares P and T failed: it starts a duplicate
    c.run(1.0)
    assert c.running(name) == [P, X]
    c.nodes[X].services[name].state = {"from": "the duplicate"}
    c.set_view(X, [P, T, X])  # membership is whole again before the registry syncs
    c.run(1.5)  # X hands off to T (handoff_delay_s = 1 s): its handoff entry is written
    assert c.running(name) == [P]
    assert c.nodes[X].sup.counters["supervisor.handoffs.sent"] == 1
    c.heal()
    c.run(5.0)
    assert c.running(name) == [P]
    assert c.nodes[T].starts == []  # T never ran it: the handoff was contested by P's claim
    assert not any(isinstance(s.reason, NameConflict) for s in c.nodes[P].stops)
    assert c.owner_everywhere(name) == {nid(P)}
    assert c.nodes[P].sup.counters["supervisor.handoffs.stale"] >= 1
    assert c.nodes[T].sup.counters["supervisor.handoffs.contested"] >= 1


def test_a_conflict_loser_whose_view_still_hides_the_winner_does_not_claim_again() -> None:
    # registry-partition-heal-soak seed 3, s5: after the heal the loser's membership still
    # declared the winner failed (its claim hidden), so the name looked free and placement
    # put it on the loser: it claimed again with a newer stamp, won the next conflict and
    # stopped the winner, and so on (each side naming the other the winner) until the
    # views agreed.
    c = SupCluster(3)
    c.partition([0, 1], [2])
    c.refresh_views()
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    c.nodes[2].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    assert c.running("s") == [0, 2]
    c.heal()  # the registries sync; node 0's membership still says node 2 failed
    c.set_view(2, [0, 1, 2])
    c.nodes[0].registry.set_peers([nid(1), nid(2)])  # (in the soak: learnt via a third node)
    c.run(3.0)
    assert c.running("s") == [2]
    assert len(c.nodes[0].starts) == 1 and len(c.nodes[2].stops) == 0
    assert c.nodes[0].stops[-1].reason == NameConflict("s", nid(2))
    assert c.nodes[0].sup.counters["supervisor.claims.held_after_conflict"] == 1
    c.set_view(0, [0, 1, 2])  # the views agree: node 2 (placement's owner) keeps it
    c.run(3.0)
    assert c.running("s") == [2] and len(c.nodes[0].starts) == 1


def test_a_conflict_winner_that_really_crashed_is_replaced_after_conflict_hold_s() -> None:
    c = SupCluster(3, config=SupervisorConfig(conflict_hold_s=4.0))
    c.partition([0, 1], [2])
    c.refresh_views()
    c.nodes[0].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    c.nodes[2].sup.start_singleton(c.now(), "s", "svc")
    c.run(1.0)
    c.heal()
    c.set_view(2, [0, 1, 2])
    c.nodes[0].registry.set_peers([nid(1), nid(2)])
    c.run(1.0)
    assert c.running("s") == [2]
    c.crash(2)  # node 0 never saw it live again
    c.run(2.0)
    assert c.running("s") == []
    c.run(2.0)  # conflict_hold_s after the loss: the name is taken over
    assert c.running("s") in ([0], [1])
