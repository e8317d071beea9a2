"""Quorum mode: the lease (lease.py), the minority stops, the majority waits out the old
lease and takes over, never two at once; horde#45 (the configured set never follows
membership silently)."""

from __future__ import annotations

import random

import pytest
from test_supervisor_harness import SupCluster, nid

from foundation_p2p.errors import ConfigError
from foundation_p2p.registry.lease import LeasePolicy, QuorumView, lease_expiry, majority
from foundation_p2p.registry.placement import rendezvous_order
from foundation_p2p.registry.supervisor import SupervisorConfig

FIVE = frozenset(nid(i) for i in range(5))


def quorum_cluster(n: int = 5, members: frozenset[bytes] = FIVE, **cfg: float) -> SupCluster:
    config = SupervisorConfig(quorum_members=members, **cfg)  # type: ignore[arg-type]
    return SupCluster(n, config=config, quorum=True)


def run_until(c: SupCluster, cond: object, limit_s: float, dt: float = 0.05) -> float:
    start = c.t
    while not cond():  # type: ignore[operator]
        assert c.t - start < limit_s, "condition not reached"
        c.run(dt, dt=dt)
    return c.t - start


# -- the lease itself ---------------------------------------------------------------------


def test_majority_of_a_configured_set() -> None:
    assert [majority(range(k)) for k in range(6)] == [0, 1, 2, 2, 3, 3]  # type: ignore[arg-type]


def test_lease_lasts_lease_s_after_the_majority_th_most_recent_direct_ack() -> None:
    me = nid(0)
    heard = {nid(1): 10.0, nid(2): 8.0, nid(3): 3.0}
    assert lease_expiry(me, FIVE, heard, 11.0, 4.0) == 12.0  # self@11, 10, 8 -> 8 + 4
    assert lease_expiry(me, FIVE, heard, 12.0, 4.0) is None
    assert lease_expiry(me, FIVE, {nid(1): 10.0}, 10.5, 4.0) is None  # only 2 of 5
    assert lease_expiry(me, frozenset(), heard, 10.5, 4.0) is None
    # a node outside the configured set does not count itself
    assert lease_expiry(nid(9), FIVE, heard, 11.0, 4.0) is None
    assert lease_expiry(nid(9), FIVE, {**heard, nid(4): 11.0}, 11.0, 4.0) == 12.0


def test_successor_wait_covers_the_lease_on_a_slow_clock_plus_the_stop_margin() -> None:
    p = LeasePolicy(lease_s=4.0, max_drift=0.01, stop_margin_s=1.0)
    # the old owner's 4 s may last 4/0.99 real s; our fast clock must count (that + 1) * 1.01
    assert p.successor_wait_s == pytest.approx((4.0 / 0.99 + 1.0) * 1.01)
    assert LeasePolicy(4.0, 0.0, 0.0).successor_wait_s == 4.0
    with pytest.raises(ConfigError, match="max_drift"):
        LeasePolicy(max_drift=0.5)


# -- partitions ---------------------------------------------------------------------------


def test_minority_owner_stops_at_lease_expiry_and_majority_starts_after_the_wait() -> None:
    c = quorum_cluster()
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    run_until(c, lambda: c.running("q"), 10.0)
    [owner] = c.running("q")
    peer = (owner + 1) % 5
    others = [i for i in range(5) if i not in (owner, peer)]
    c.partition([owner, peer], others)
    c.refresh_views()  # the majority notices at once: the worst case for safety
    cut_at = c.t
    stopped = run_until(c, lambda: owner not in c.running("q"), 10.0, dt=0.01)
    assert stopped == pytest.approx(4.0, abs=0.02)  # lease_s after the last majority ack
    assert c.nodes[owner].stops[-1].reason == "quorum_lost"
    started = run_until(c, lambda: c.running("q"), 10.0, dt=0.01) + stopped
    wait = LeasePolicy().successor_wait_s
    assert started == pytest.approx(wait, abs=0.03)
    assert c.t - cut_at >= wait
    print(f"quorum: minority owner stopped {stopped:.2f} s after the cut, majority took over"
          f" {started:.2f} s after it (successor_wait_s {wait:.2f})")
    [successor] = c.running("q")
    assert successor in others
    assert c.peak["q"] == 1
    # the minority, still partitioned, never starts it again; after the heal, one instance
    c.run(10.0)
    assert c.running("q") == [successor]
    c.heal()
    c.refresh_views()
    # a start after the heal may wait successor_wait_s from the readmission
    # (_unsynced_member_heard): 5 s after it there may be none running yet, never two
    c.run(5.0)
    assert len(c.running("q")) <= 1 and c.peak["q"] == 1
    c.run(6.0)
    assert len(c.running("q")) == 1 and c.peak["q"] == 1


def test_a_minority_alone_never_starts_a_quorum_singleton() -> None:
    c = quorum_cluster()
    c.partition([0, 1], [2, 3, 4])
    c.refresh_views()
    c.run(6.0)
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    c.run(10.0)
    assert c.running("q") == []
    rows = c.nodes[0].sup.which_children()
    assert [r.state for r in rows] in (["pending"], ["remote"], ["unplaced"])
    c.heal()
    c.refresh_views()
    c.run(10.0)
    assert len(c.running("q")) == 1


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_clean_partitions_never_show_two_instances_at_once(seed: int) -> None:
    # Assumption C of lease.py: each partition shape lasts at least successor_wait_s
    # (5.09 s here); the flapping case is the strict xfail below.
    rng = random.Random(seed)
    c = quorum_cluster()
    for k in range(6):
        c.nodes[k % 5].sup.start_singleton(c.now(), f"q{k}", "svc", quorum=True)
    c.run(8.0)
    for _ in range(8):
        if rng.random() < 0.6:
            nodes = list(range(5))
            rng.shuffle(nodes)
            cut = rng.randint(1, 2)
            c.heal()
            c.partition(nodes[:cut], nodes[cut:])
        else:
            c.heal()
        c.refresh_views()
        c.run(rng.uniform(LeasePolicy().successor_wait_s, 12.0))
    c.heal()
    c.refresh_views()
    c.run(15.0)
    for k in range(6):
        assert c.peak[f"q{k}"] == 1, f"q{k} ran twice at once"
        assert len(c.running(f"q{k}")) == 1


def test_graceful_handoff_in_quorum_mode_needs_no_lease_wait() -> None:
    c = quorum_cluster()
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    run_until(c, lambda: c.running("q"), 10.0)
    [owner] = c.running("q")
    c.nodes[owner].services["q"].state = "carry me"
    c.nodes[owner].sup.prepare_shutdown(c.now(owner))
    took = run_until(c, lambda: [i for i in c.running("q") if i != owner], 3.0)
    assert took < 1.0
    [successor] = c.running("q")
    assert c.nodes[successor].services["q"].handoff == "carry me"
    assert c.peak["q"] == 1


def test_a_quorum_singleton_starts_one_successor_wait_after_its_node_got_the_lease() -> None:
    # a node cannot tell "never ran" from "ran on a node I did not hear from", nor see a
    # claim made while it was cut off before the registry syncs: it waits once per lease
    c = quorum_cluster()
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    took = run_until(c, lambda: c.running("q"), 10.0, dt=0.01)
    got_lease = 0.05  # the harness's first tick brings the first acks
    assert took == pytest.approx(got_lease + LeasePolicy().successor_wait_s, abs=0.05)
    placed = c.by_id[rendezvous_order("q", list(FIVE))[0]].index
    assert c.running("q") == [placed]
    assert c.nodes[placed].sup.counters["supervisor.quorum.waits"] == 1
    # a second one started while the lease has long been held starts at once
    c.nodes[0].sup.start_singleton(c.now(), "q2", "svc", quorum=True)
    assert run_until(c, lambda: c.running("q2"), 1.0) <= 0.1


def test_flapping_partition_keeps_one_instance_once_unsynced_hearings_defer() -> None:
    # was a strict xfail (assumption C broken: the owner regains a majority without the
    # successor within successor_wait_s). The successor has heard the owner within lease_s
    # while its membership holds the owner failed, so it defers (_unsynced_member_heard)
    # until its stale lease is gone.
    c = quorum_cluster()
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    run_until(c, lambda: c.running("q"), 10.0)
    [owner] = c.running("q")
    rest = [i for i in range(5) if i != owner]
    successor = c.by_id[rendezvous_order("q", [nid(i) for i in rest])[0]].index
    c.partition([owner], rest)
    c.refresh_views()
    c.run(1.5)
    # the owner gets a majority back before its lease ran out, without the successor,
    # which still holds a lease from acks 1.5 s into the first cut
    c.heal()
    buddy = next(i for i in rest if i != successor)
    c.partition([successor, buddy], [i for i in range(5) if i not in (successor, buddy)])
    c.refresh_views()
    c.run(10.0)
    assert c.peak["q"] == 1


def test_without_a_configured_set_quorum_singletons_run_nowhere() -> None:
    c = SupCluster(3, quorum=True)
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    c.run(10.0)
    assert c.running("q") == []
    assert not any(n.sup.holds_lease(c.now()) for n in c.nodes)


# -- horde#45: dynamic membership ---------------------------------------------------------


def test_horde_45_membership_shrinking_never_shrinks_the_configured_set() -> None:
    c = quorum_cluster()
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    run_until(c, lambda: c.running("q"), 10.0)
    survivors = [0, 1]
    for i in range(2, 5):
        c.crash(i)
    c.refresh_views()  # membership now says: {0, 1}, and that is all there is
    c.run(10.0)
    assert c.running("q") == []  # 2 of the 5 configured is not a majority
    for i in survivors:
        assert c.nodes[i].sup.quorum_members == FIVE
        assert c.nodes[i].sup.counters["supervisor.quorum.reconfigured"] == 0
    # an operator shrinks the configured set explicitly: now 2 of 2 is a majority
    for i in survivors:
        node = c.nodes[i]
        node.sup.set_quorum_view(
            c.now(i), QuorumView(dict(node.sup._last_heard), frozenset(nid(j) for j in survivors))
        )
        assert node.sup.counters["supervisor.quorum.reconfigured"] == 1
    c.run(10.0)
    assert len(c.running("q")) == 1


def test_horde_45_joiners_do_not_count_until_the_set_is_reconfigured() -> None:
    three = frozenset(nid(i) for i in range(3))
    c = quorum_cluster(5, members=three)
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    c.run(10.0)
    # nodes 3 and 4 are members like any other, but not configured: a side with
    # {2, 3, 4} is 3 of 5 live members yet only 1 of 3 configured
    c.partition([0, 1], [2, 3, 4])
    c.refresh_views()
    c.run(15.0)
    assert all(i in (0, 1) for i in c.running("q"))
    assert len(c.running("q")) == 1
    assert not c.nodes[3].sup.holds_lease(c.now(3))
    assert c.nodes[0].sup.holds_lease(c.now(0))
    assert c.peak["q"] == 1


# -- clock drift ----------------------------------------------------------------------------


def drift_cut(rates: list[float], **cfg: float) -> SupCluster:
    """The owner (node 2, where "q" goes) runs slow, everyone else fast; cut it off."""
    c = SupCluster(5, config=SupervisorConfig(quorum_members=FIVE, **cfg),  # type: ignore[arg-type]
                   quorum=True, rates=rates)
    assert rendezvous_order("q", list(FIVE))[0] == nid(2)
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    run_until(c, lambda: c.running("q"), 10.0)
    assert c.running("q") == [2]
    c.partition([2], [0, 1, 3, 4])
    c.refresh_views()
    c.run(12.0, dt=0.01)
    return c


def test_drift_within_the_bound_keeps_one_instance_at_a_time() -> None:
    # rates 0.99 (owner) and 1.01 (successors): exactly the 1 % bound, no stop margin
    c = drift_cut([1.01, 1.01, 0.99, 1.01, 1.01], max_drift=0.01, stop_margin_s=0.0)
    assert len(c.running("q")) == 1 and c.running("q") != [2]
    assert c.peak["q"] == 1


def test_drift_beyond_the_bound_can_overlap_which_is_why_the_bound_is_configurable() -> None:
    # the owner's clock runs 20 % slow, the successors' 20 % fast, the bound says 1 %
    rates = [1.2, 1.2, 0.8, 1.2, 1.2]
    c = drift_cut(rates, max_drift=0.01, stop_margin_s=0.0)
    assert c.peak["q"] == 2
    # declaring the real drift (and a little stop margin) makes it safe again
    c = drift_cut(rates, max_drift=0.2, stop_margin_s=0.2)
    assert c.peak["q"] == 1


def test_a_restarted_owner_does_not_trust_its_old_claim_before_a_successor_wait() -> None:
    c = quorum_cluster()
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    run_until(c, lambda: c.running("q"), 10.0)
    [owner] = c.running("q")
    c.crash(owner)
    c.restart(owner)  # back at once: its claim is still the visible one everywhere
    took = run_until(c, lambda: c.running("q"), 10.0, dt=0.01)
    assert c.running("q") == [owner]
    assert took >= LeasePolicy().successor_wait_s - 0.05  # its new lease began ~0.05 s in
    assert c.peak["q"] == 1


def test_an_old_owner_that_regains_the_lease_before_its_registry_syncs_waits() -> None:
    # found by the simulator's registry-partition-heal-quorum: the old owner's record of
    # its own tenure must not count as fresh evidence once its lease was broken
    c = quorum_cluster()
    c.nodes[0].sup.start_singleton(c.now(), "q", "svc", quorum=True)
    run_until(c, lambda: c.running("q"), 10.0)
    [owner] = c.running("q")
    others = [i for i in range(5) if i != owner]
    c.partition([owner], others)
    c.refresh_views()
    run_until(c, lambda: [i for i in c.running("q") if i != owner], 10.0)
    c.heal()
    c.refresh_views()
    # the old owner hears everyone again before any registry message crossed the heal
    node = c.nodes[owner]
    heard = {nid(i): c.now(owner).mono for i in others}
    node.sup.set_quorum_view(c.now(owner), QuorumView(heard))
    c._settle(node)
    assert owner not in c.running("q")
    c.run(10.0)
    assert len(c.running("q")) == 1 and c.peak["q"] == 1


def test_a_live_member_whose_entries_the_registry_still_hides_defers_claims() -> None:
    c = quorum_cluster()
    c.run(6.0)  # everyone has held the lease for a while
    node = c.nodes[0]
    node.registry.set_failed(nid(3), True)  # membership says live (suspect), registry hides
    node.sup.start_singleton(c.now(), "q0", "svc", quorum=True)
    name = next(f"q{i}" for i in range(50)
                if rendezvous_order(f"q{i}", list(FIVE))[0] == nid(0))
    if name != "q0":
        node.sup.start_singleton(c.now(), name, "svc", quorum=True)
    c._settle(node)
    assert name not in node.services
    assert node.sup.counters["supervisor.claims.deferred"] >= 1
    node.registry.set_failed(nid(3), False)
    node.sup.registry_changed(c.now())
    c._settle(node)
    assert name in node.services


def test_a_configured_member_heard_but_not_live_here_defers_free_looking_claims() -> None:
    # found by the simulator's registry-quorum-joiners (seed 1): after a heal the old
    # minority node hears the majority's members (its lease is back) while its membership
    # still holds them failed, so its registry has not synced the claims they made meanwhile
    c = quorum_cluster()
    c.run(6.0)  # everyone has held the lease for a while
    node = c.nodes[0]
    name = next(f"q{i}" for i in range(50)
                if rendezvous_order(f"q{i}", list(FIVE - {nid(3)}))[0] == nid(0))
    node.sup.set_members(c.now(), sorted(FIVE - {nid(3)}))  # 3 failed in this view...
    heard = {m: c.now().mono for m in FIVE}  # ...yet heard from directly just now
    node.sup.set_quorum_view(c.now(), QuorumView(heard))
    node.sup.start_singleton(c.now(), name, "svc", quorum=True)
    c._settle(node)
    assert name not in node.services
    assert node.sup.counters["supervisor.claims.deferred"] >= 1
    node.sup.set_members(c.now(), sorted(FIVE))  # membership took it back: the registry syncs
    node.sup.registry_changed(c.now())
    c._settle(node)
    assert name not in node.services  # not before successor_wait_s after the readmission
    took = run_until(c, lambda: name in node.services, 10.0, dt=0.05)
    assert took == pytest.approx(LeasePolicy().successor_wait_s, abs=0.1)
