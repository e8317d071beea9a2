"""Bootstrap: the initial voters are chosen deterministically, confirmed, and written once."""

from __future__ import annotations

import itertools

import pytest
from test_subsystem_harness import Cluster, nid

from foundation_p2p.consensus.bootstrap import BootstrapState, initial_voters
from foundation_p2p.consensus.subsystem import ConsensusConfig
from foundation_p2p.errors import ConfigError


def test_initial_voters_are_the_smallest_ids_in_any_order() -> None:
    ids = [nid(i) for i in (7, 3, 9, 1, 5)]
    want = frozenset({nid(1), nid(3), nid(5)})
    for perm in itertools.permutations(ids):
        assert initial_voters(perm, 3) == want
    assert initial_voters(ids[:2], 3) is None
    with pytest.raises(ConfigError):
        initial_voters(ids, 0)


def test_state_fixes_its_first_proposal_and_needs_every_voter() -> None:
    b = BootstrapState(nid(1), 3)
    b.set_candidates([nid(1), nid(2)])
    assert b.proposal is None and b.ready() is None
    b.set_candidates([nid(1), nid(2), nid(3)])
    assert b.proposal == {nid(1), nid(2), nid(3)}
    # a smaller id appearing later does not change a fixed proposal
    b.set_candidates([nid(0), nid(1), nid(2), nid(3)])
    assert b.proposal == {nid(1), nid(2), nid(3)}
    b.peer_proposed(nid(2), frozenset({nid(1), nid(2), nid(3)}))
    assert b.ready() is None, "nid(3) has not confirmed"
    b.peer_proposed(nid(3), frozenset({nid(0), nid(1), nid(3)}))
    assert b.conflicts == 1 and b.ready() is None
    b.peer_proposed(nid(3), frozenset({nid(1), nid(2), nid(3)}))
    ready = b.ready()
    assert ready == frozenset({nid(1), nid(2), nid(3)})


def test_state_adopts_a_peer_proposal_that_fits_its_view() -> None:
    b = BootstrapState(nid(4), 3)
    b.peer_proposed(nid(2), frozenset({nid(2), nid(4), nid(6)}))
    assert b.proposal is None, "needs its own view first"
    b.set_candidates([nid(1), nid(2), nid(4), nid(6)])
    # it would compute {1, 2, 4}, but adopts the proposal already heard
    assert b.proposal == {nid(2), nid(4), nid(6)}
    assert nid(2) in b.confirmed


def test_proposal_not_naming_its_sender_is_a_conflict() -> None:
    b = BootstrapState(nid(1), 3)
    b.peer_proposed(nid(9), frozenset({nid(1), nid(2), nid(3)}))
    assert b.conflicts == 1


def test_node_not_among_the_smallest_never_proposes() -> None:
    b = BootstrapState(nid(9), 3)
    b.set_candidates([nid(1), nid(2), nid(3), nid(9)])
    assert b.proposal is None and b.ready() is None


def test_five_nodes_bootstrap_expect_five() -> None:
    c = Cluster(5, config=ConsensusConfig(bootstrap_expect=5, min_voters=3))
    c.wait_leader()
    c.run(0.5)
    for m in c.members.values():
        assert m.sub.counters["raft.bootstrapped"] == 1
        st = m.sub.status()
        assert st is not None and len(st.voters) == 5


def test_extra_member_joins_instead_of_bootstrapping() -> None:
    c = Cluster(5, config=ConsensusConfig(bootstrap_expect=3, stabilization_s=1.0))
    leader = c.wait_leader()
    c.run_until(lambda: all(m.sub.started for m in c.members.values()), 5.0)
    c.run(1.0)
    booted = sorted(m.id for m in c.members.values() if m.sub.counters["raft.bootstrapped"])
    assert booted == [nid(1), nid(2), nid(3)]
    for i in (4, 5):
        assert c.node(i).sub.counters["raft.joined"] == 1
        assert c.node(i).sub.counters["raft.bootstrapped"] == 0
    assert c.put(leader, b"k", b"v").ok
    c.run(0.5)
    assert c.kv_of(c.node(5)) == {b"k": b"v"}


def test_bootstrap_waits_for_the_expected_count() -> None:
    c = Cluster(3, config=ConsensusConfig(bootstrap_expect=3))
    c.crash(nid(3))
    c.run(2.0)
    assert not any(m.sub.started for m in c.members.values() if m.up)
    assert c.leader() is None


def test_differing_views_never_form_two_groups() -> None:
    # node 4 sees {1, 2, 4} alive (it misses 3), the others see everyone: only one set wins
    c = Cluster(4, config=ConsensusConfig(bootstrap_expect=3, stabilization_s=1.0))
    c.view_override[nid(4)] = frozenset({nid(1), nid(2), nid(4)})
    c.view_override[nid(2)] = frozenset({nid(1), nid(2), nid(4)})
    c.run(3.0)
    firsts = {m.storage.entries(1, 2)[0] for m in c.members.values() if m.storage.last_index()}
    assert len(firsts) <= 1, "two different bootstrap entries"
    sets = {m.sub.boot.proposal for m in c.members.values() if m.sub.counters["raft.bootstrapped"]}
    assert len(sets) <= 1
    # here the proposals conflict ({1,2,3} against {1,2,4}): the nodes wait, counted
    assert not any(m.sub.started for m in c.members.values())
    assert c.node(1).sub.counters["raft.bootstrap.conflicts"] > 0


def test_node_with_state_never_bootstraps_again() -> None:
    c = Cluster(3)
    c.wait_leader()
    c.run(0.5)
    for node in list(c.members):
        c.crash(node)
    for node in list(c.members):
        m = c.restart(node)
        assert m.sub.has_state()
    c.run(2.0)
    for m in c.members.values():
        assert m.sub.counters["raft.bootstrapped"] == 0
        assert m.sub.boot.proposal is None
    assert c.leader() is not None


def test_ineligible_node_never_bootstraps() -> None:
    c = Cluster(4, eligible=[2, 3, 4], config=ConsensusConfig(bootstrap_expect=3))
    c.wait_leader()
    c.run(0.5)
    assert c.node(1).sub.counters["raft.bootstrapped"] == 0
    st = c.node(2).sub.status()
    assert st is not None and st.voters == {nid(2), nid(3), nid(4)}
