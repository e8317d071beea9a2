"""Autopilot: learners, promotion, replacement of a failed voter, min_voters, transfer."""

from __future__ import annotations

from test_subsystem_harness import Cluster, nid

from foundation_p2p.consensus.autopilot import AutopilotConfig, plan
from foundation_p2p.consensus.confchange import ConfChangeOp
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.rawnode import Status
from foundation_p2p.consensus.subsystem import ConsensusConfig


def status(voters: list[int], learners: list[int], progress: dict[int, int], commit: int) -> Status:
    return Status(
        id=nid(voters[0]),
        term=2,
        vote=None,
        role=StateRole.LEADER,
        leader=nid(voters[0]),
        commit=commit,
        applied=commit,
        last_index=commit,
        voters=frozenset(nid(v) for v in voters),
        learners=frozenset(nid(v) for v in learners),
        voters_outgoing=frozenset(),
        lead_transferee=None,
        progress={nid(n): (m, m + 1, "replicate") for n, m in progress.items()},
    )


CFG = AutopilotConfig(target_voters=3, min_voters=3, stabilization_s=5.0, max_lag_entries=10)


def test_new_alive_member_becomes_learner() -> None:
    st = status([1, 2, 3], [], {1: 50, 2: 50, 3: 50}, 50)
    alive = frozenset(nid(i) for i in (1, 2, 3, 4))
    got = plan(st, alive, {}, 0.0, CFG)
    assert got is not None and got[1].ops == ((ConfChangeOp.ADD_LEARNER, nid(4)),)


def test_failed_voter_replaced_only_after_stabilization_and_by_caught_up_learner() -> None:
    st = status([1, 2, 3], [4, 5], {1: 100, 2: 100, 3: 10, 4: 20, 5: 95}, 100)
    alive = frozenset(nid(i) for i in (1, 2, 4, 5))
    assert plan(st, alive, {nid(3): 0.0}, 4.9, CFG) is None
    got = plan(st, alive, {nid(3): 0.0}, 5.0, CFG)
    assert got is not None
    # learner 4 lags (20 of 100): learner 5 is chosen
    assert got[1].ops == ((ConfChangeOp.ADD_VOTER, nid(5)), (ConfChangeOp.REMOVE, nid(3)))


def test_never_shrinks_below_min_voters() -> None:
    st = status([1, 2, 3], [], {1: 100, 2: 100, 3: 0}, 100)
    alive = frozenset(nid(i) for i in (1, 2))
    assert plan(st, alive, {nid(3): 0.0}, 100.0, CFG) is None
    st5 = status([1, 2, 3, 4], [], {1: 9, 2: 9, 3: 9, 4: 0}, 9)
    alive4 = frozenset(nid(i) for i in (1, 2, 3))
    got = plan(st5, alive4, {nid(4): 0.0}, 100.0, CFG)
    assert got is not None and got[1].ops == ((ConfChangeOp.REMOVE, nid(4)),)


def test_grow_to_target_and_leader_never_removes_itself() -> None:
    st = status([1], [2], {1: 5, 2: 5}, 5)
    got = plan(st, frozenset({nid(1), nid(2)}), {}, 0.0, CFG)
    assert got is not None and got[1].ops == ((ConfChangeOp.ADD_VOTER, nid(2)),)
    st = status([1, 2, 3], [4], {1: 5, 2: 5, 3: 5, 4: 5}, 5)
    assert plan(st, frozenset({nid(2), nid(3), nid(4)}), {nid(1): 0.0}, 99.0, CFG) is None


def test_joint_state_and_disabled_do_nothing() -> None:
    st = status([1, 2, 3], [], {1: 5, 2: 5, 3: 5}, 5)
    off = AutopilotConfig(enabled=False)
    assert plan(st, frozenset(nid(i) for i in range(1, 5)), {}, 0.0, off) is None


def test_cluster_replaces_failed_voter_with_learner() -> None:
    cfg = ConsensusConfig(bootstrap_expect=3, stabilization_s=1.0, request_timeout_s=2.0)
    c = Cluster(4, config=cfg)
    leader = c.wait_leader()

    def learner4() -> bool:
        st = leader.sub.status()
        return st is not None and nid(4) in st.learners

    c.run_until(learner4, 5.0)
    assert c.put(leader, b"before", b"1").ok
    victim = next(m for m in c.members.values() if m is not leader and m.id != nid(4))
    c.crash(victim.id)

    def replaced() -> bool:
        lead = c.leader()
        st = lead.sub.status() if lead is not None else None
        return (
            st is not None
            and nid(4) in st.voters
            and victim.id not in st.voters
            and not st.voters_outgoing
        )

    c.run_until(replaced, 10.0)
    lead = c.leader()
    assert lead is not None
    st = lead.sub.status()
    assert st is not None and len(st.voters) == 3
    assert c.put(lead, b"after", b"2").ok
    c.run(0.5)
    assert c.kv_of(c.node(4)) == {b"before": b"1", b"after": b"2"}


def test_three_voters_one_down_no_learner_keeps_three() -> None:
    cfg = ConsensusConfig(bootstrap_expect=3, stabilization_s=0.5)
    c = Cluster(3, config=cfg)
    leader = c.wait_leader()
    victim = next(m for m in c.members.values() if m is not leader)
    c.crash(victim.id)
    c.run(3.0)
    lead = c.leader()
    assert lead is not None
    st = lead.sub.status()
    assert st is not None and victim.id in st.voters and len(st.voters) == 3


def test_graceful_shutdown_transfers_leadership() -> None:
    c = Cluster(3)
    leader = c.wait_leader()
    c.run(0.5)
    assert c.put(leader, b"k", b"v").ok
    target = leader.sub.transfer_leadership(c.now)
    assert target is not None and target != leader.id
    c.run_until(lambda: c.members[target].sub.is_leader(), 3.0)
    assert not leader.sub.is_leader()
    assert leader.sub.counters["raft.shutdown.transfers"] == 1
    # a follower has nothing to hand over
    assert leader.sub.transfer_leadership(c.now) is None
