"""The Raft core beyond Figure 2: pre-vote, check-quorum, reads, leader transfer,
membership changes, snapshots in chunks, flow control and forwarding."""

from __future__ import annotations

import random

import pytest
from raft_harness import Network, ids, make_raft, nid, take
from safety_checks import SafetyChecker

from foundation_p2p.consensus.confchange import (
    ConfChange,
    ConfChangeError,
    ConfChangeOp,
    apply_conf_change,
    decode_conf_change,
    encode_conf_change,
)
from foundation_p2p.consensus.memory_storage import MemoryStorage
from foundation_p2p.consensus.messages import Message, MessageType
from foundation_p2p.consensus.raft import (
    ProposalDropped,
    RaftConfig,
    ReadOnlyOption,
    StateRole,
)
from foundation_p2p.consensus.rawnode import RawNode
from foundation_p2p.consensus.types import ConfState, Entry
from foundation_p2p.errors import ConfigError, WireError

M = MessageType
ADD, LEARN, REMOVE = ConfChangeOp.ADD_VOTER, ConfChangeOp.ADD_LEARNER, ConfChangeOp.REMOVE


def started(voters: list[int], **kw: object) -> tuple[Network, bytes]:
    net = Network(voters, **kw)
    net.observers.append(SafetyChecker())
    net.campaign(nid(voters[0]))
    leader = net.leader()
    assert leader == nid(voters[0])
    return net, leader


# --- pre-vote and check-quorum ----------------------------------------------------------


def test_prevote_partitioned_node_rejoining_does_not_disrupt() -> None:
    """Thesis 9.6: with pre-vote, a node that was partitioned away and timed out many times
    does not raise its term, so rejoining does not depose the leader."""
    net, leader = started([1, 2, 3])
    term = net.raft(leader).term
    net.isolate(nid(3))
    net.tick(100)
    r3 = net.raft(nid(3))
    assert r3.term == term and r3.role is StateRole.PRE_CANDIDATE
    net.heal()
    net.tick(30)
    assert net.leader() == leader and net.raft(leader).term == term
    assert net.raft(nid(3)).leader == leader


def test_without_prevote_a_rejoining_node_forces_a_new_term() -> None:
    """The contrast (what pre-vote prevents): the isolated node's term grew, and its return
    makes the leader step down."""
    net, leader = started([1, 2, 3], pre_vote=False, check_quorum=False)
    term = net.raft(leader).term
    net.isolate(nid(3))
    net.tick(100)
    assert net.raft(nid(3)).term > term
    net.heal()
    net.tick(2 * net.raft(nid(3)).config.election_tick)
    assert net.raft(leader).term > term


def test_check_quorum_leader_without_quorum_steps_down() -> None:
    """Thesis 6.2: "a leader steps down if an election timeout elapses without a successful
    round of heartbeats to a majority of its cluster"."""
    net, leader = started([1, 2, 3])
    net.isolate(leader)
    net.tick(2 * net.raft(leader).config.election_tick)
    assert net.raft(leader).role is StateRole.FOLLOWER
    assert net.raft(leader).counters["raft.leader.stepped_down.check_quorum"] == 1


def test_check_quorum_lease_ignores_vote_requests_while_leader_is_heard() -> None:
    """Thesis 4.2.3: a server that heard from a current leader within the minimum election
    timeout does not grant a vote (nor update its term) for a vote request."""
    net, leader = started([1, 2, 3])
    r2 = net.raft(nid(2))
    term = r2.term
    r2.step(Message(M.VOTE, to=nid(2), sender=nid(3), term=term + 1, index=99, log_term=99))
    assert r2.term == term and r2.vote == leader
    assert r2.counters["raft.votes.ignored.in_lease"] == 1


# --- proposal forwarding ---------------------------------------------------------------


def test_follower_forwards_proposals_to_the_leader() -> None:
    net, _ = started([1, 2, 3])
    net.nodes[nid(3)].propose(b"via-follower")
    net.stabilize()
    for n in net.nodes:
        assert net.applied[n].commands() == [b"via-follower"]


def test_proposal_without_leader_or_with_forwarding_off_is_refused() -> None:
    net = Network([1, 2, 3])
    with pytest.raises(ProposalDropped, match="no_leader"):
        net.nodes[nid(2)].propose(b"x")
    net2, _ = started([1, 2, 3], disable_proposal_forwarding=True)
    with pytest.raises(ProposalDropped, match="forwarding_disabled"):
        net2.nodes[nid(2)].propose(b"x")


# --- flow control --------------------------------------------------------------------


def test_inflight_message_bound_pauses_replication() -> None:
    """At most max_inflight_msgs appends are outstanding to a follower in replicate state."""
    r = make_raft(1, (1, 2), max_inflight_msgs=3, pre_vote=False)
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=r.term))
    take(r)
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=1))  # -> replicate
    take(r)
    for i in range(10):
        r.step(Message(M.PROP, sender=r.id, entries=[Entry(0, 0, data=b"p%d" % i)]))
    sent = [m for m in take(r) if m.type is M.APP and m.entries]
    assert len(sent) == 3
    assert r.prs[nid(2)].is_paused()
    assert r.counters["raft.replication.paused.inflight_full"] > 0
    acked = sent[0].entries[-1].index
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=acked))
    assert [m for m in take(r) if m.type is M.APP and m.entries]  # room again: more goes out


def test_inflight_byte_bound_pauses_replication() -> None:
    r = make_raft(1, (1, 2), max_inflight_bytes=100, max_size_per_msg=60, pre_vote=False)
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=r.term))
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=1))
    take(r)
    for _ in range(10):
        r.step(Message(M.PROP, sender=r.id, entries=[Entry(0, 0, data=b"x" * 50)]))
    sent = [m for m in take(r) if m.type is M.APP and m.entries]
    assert sum(len(e.data) for m in sent for e in m.entries) == 100
    assert r.prs[nid(2)].inflights.full()


def test_uncommitted_bytes_bound_refuses_proposals() -> None:
    net, leader = started([1, 2, 3], max_uncommitted_bytes=100)
    net.isolate(leader)
    node = net.nodes[leader]
    node.propose(b"x" * 60)
    node.propose(b"x" * 30)
    with pytest.raises(ProposalDropped, match="uncommitted_full"):
        node.propose(b"x" * 20)
    assert net.raft(leader).counters["raft.proposals.dropped.uncommitted_full"] == 1
    net.heal()
    net.tick(3)
    node.propose(b"x" * 20)  # committed entries freed the room


def test_oversized_proposal_is_refused() -> None:
    net, leader = started([1, 2, 3], max_entry_bytes=100)
    with pytest.raises(ProposalDropped, match="too_large"):
        net.nodes[nid(2)].propose(b"x" * 101)
    net.nodes[nid(2)].propose(b"x" * 100)
    net.stabilize()
    r = net.raft(leader)
    r.step(Message(M.PROP, sender=nid(3), entries=[Entry(0, 0, data=b"y" * 101)]))
    assert net.raft(nid(2)).counters["raft.proposals.dropped.too_large"] == 1
    assert r.counters["raft.proposals.dropped.too_large"] == 1
    assert net.applied[leader].commands() == [b"x" * 100]


def test_append_size_bound_splits_batches() -> None:
    r = make_raft(1, (1, 2), max_size_per_msg=100, pre_vote=False)
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=r.term))
    take(r)
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=1))
    for _ in range(3):
        r.log.append([Entry(r.term, r.log.last_index() + 1, data=b"y" * 60)])
    take(r)
    while r._maybe_send_append(nid(2), send_if_empty=False):
        pass
    sizes = [sum(len(e.data) for e in m.entries) for m in take(r) if m.type is M.APP]
    assert sizes == [60, 60, 60]  # each message holds what fits, and at least one entry


def test_committed_bytes_per_ready_bound_splits_readys() -> None:
    st = MemoryStorage()
    st.bootstrap(ConfState(voters=frozenset(ids(1))))
    node = RawNode(RaftConfig(id=nid(1), max_committed_bytes_per_ready=100), st,
                   random.Random(0))
    node.advance(node.ready())  # applies the bootstrap entry (the configuration)
    node.campaign()
    for _ in range(5):
        node.propose(b"z" * 60)
    batches = []
    while node.has_ready():
        rd = node.ready()
        st.append(rd.entries)
        if rd.hard_state:
            st.set_hard_state(rd.hard_state)
        batches.append([len(e.data) for e in rd.committed_entries if e.data])
        node.advance(rd)
    assert [b for b in batches if b] == [[60]] * 5
    assert node.raft.counters["raft.ready.committed_split"] >= 4


def test_outbox_bound_drops_and_counts() -> None:
    r = make_raft(1, (1, 2, 3), max_outbox_messages=2, pre_vote=False)
    for t in range(1, 6):
        r.step(Message(M.VOTE, to=r.id, sender=nid(2), term=t))
    assert len(r.msgs) == 2
    assert r.counters["raft.messages.dropped.outbox_full"] == 3


# --- reads ---------------------------------------------------------------------------


def test_read_index_on_leader_needs_a_heartbeat_quorum() -> None:
    """Raft 6.4: the leader records its commit index, then confirms leadership with a
    heartbeat round before the read may proceed."""
    net, leader = started([1, 2, 3])
    reads = collect_read_states(net)
    net.nodes[leader].propose(b"w")
    net.stabilize()
    commit = net.raft(leader).log.committed
    net.partition([leader], ids(2, 3))
    net.nodes[leader].read_index(b"r1")
    net.stabilize()
    assert reads == [] and len(net.raft(leader).read_only) == 1
    net.heal()
    net.nodes[leader].read_index(b"r2")  # its heartbeat round answers r1 and r2
    net.stabilize()
    assert reads == [(leader, commit, b"r1"), (leader, commit, b"r2")]
    assert len(net.raft(leader).read_only) == 0


def collect_read_states(net: Network) -> list[tuple[bytes, int, bytes]]:
    out: list[tuple[bytes, int, bytes]] = []
    original = net.apply

    def apply(node: bytes, rd: object) -> None:
        original(node, rd)  # type: ignore[arg-type]
        for rs in rd.read_states:  # type: ignore[attr-defined]
            out.append((node, rs.index, rs.context))

    net.apply = apply  # type: ignore[method-assign]
    return out


def test_read_index_from_follower_and_leader() -> None:
    net, leader = started([1, 2, 3])
    reads = collect_read_states(net)
    net.nodes[leader].propose(b"w")
    net.stabilize()
    commit = net.raft(leader).log.committed
    net.nodes[nid(3)].read_index(b"from-follower")
    net.nodes[leader].read_index(b"from-leader")
    net.stabilize()
    assert sorted(reads) == sorted([(nid(3), commit, b"from-follower"),
                                    (leader, commit, b"from-leader")])


def test_read_index_isolated_leader_gets_no_answer() -> None:
    net, leader = started([1, 2, 3])
    reads = collect_read_states(net)
    net.isolate(leader)
    net.nodes[leader].read_index(b"stale?")
    net.tick(3)
    assert reads == []
    net.tick(30)  # check-quorum: it steps down; the pending read is dropped
    assert net.raft(leader).role is StateRole.FOLLOWER and reads == []


def test_read_index_waits_for_a_commit_in_the_leaders_term() -> None:
    """Raft 6.4 step 1: the leader's commit index is current only once it has committed an
    entry of its term (its no-op)."""
    r = make_raft(1, (1, 2, 3), pre_vote=False)
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=r.term))
    take(r)
    r.step(Message(M.READ_INDEX, sender=r.id, context=b"early"))
    assert len(r.pending_read_index_messages) == 1 and not take(r)
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=1))
    heartbeats = [m for m in take(r) if m.type is M.HEARTBEAT and m.context == b"early"]
    assert heartbeats
    r.step(Message(M.HEARTBEAT_RESP, to=r.id, sender=nid(2), term=r.term, context=b"early"))
    assert [(rs.index, rs.context) for rs in r.read_states] == [(1, b"early")]


def lease_group(seed: int) -> tuple[Network, bytes]:
    """A 3-node group with lease reads, after its first election (no node votes during its
    first election timeout in this mode, so the group elects on its own timers)."""
    net = Network([1, 2, 3], seed=seed, read_only=ReadOnlyOption.LEASE_BASED)
    return net, net.tick_until_leader()


def test_lease_mode_restarted_node_keeps_its_promise_for_an_election_timeout() -> None:
    """A node that acknowledged a heartbeat and then restarted refuses votes for its first
    election timeout (it cannot remember whether it promised a lease)."""
    net, leader = lease_group(2)
    follower, other = [n for n in net.nodes if n != leader]
    net.crash(follower)
    net.restart(follower)
    r = net.raft(follower)
    vote = Message(M.VOTE, to=follower, sender=other, term=r.term + 5, index=99, log_term=99)
    r.step(vote)
    assert r.counters["raft.votes.ignored.in_lease"] == 1 and r.vote != other
    for _ in range(r.config.election_tick):
        r.tick()
    take(r)
    r.step(vote)
    assert r.vote == other


def test_lease_read_answers_without_a_round_and_requires_check_quorum() -> None:
    with pytest.raises(ConfigError, match="check_quorum"):
        RaftConfig(id=nid(1), read_only=ReadOnlyOption.LEASE_BASED, check_quorum=False)
    net, leader = lease_group(0)
    reads = collect_read_states(net)
    net.tick(2)  # heartbeats acknowledged: the lease holds
    net.isolate(leader)  # no round trip needed (and none possible)
    net.nodes[leader].read_index(b"lease")
    net.flush()
    assert [(n, c) for n, _, c in reads] == [(leader, b"lease")]
    assert net.raft(leader).counters["raft.read_index.lease"] == 1


def test_lease_expires_before_another_leader_can_exist() -> None:
    """Under the clock assumption (every node ticks at the same rate), an isolated leader's
    lease lapses before the rest of the group can elect a new leader, so a lease read is
    never served while another leader exists."""
    for seed in range(10):
        net, leader = lease_group(seed)
        net.tick(3)
        old = net.raft(leader)
        assert old.lease_valid()
        net.isolate(leader)
        served_after = 0
        for _ in range(60):
            net.tick(1)
            others = [n for n in net.nodes if n != leader and net.raft(n).role is StateRole.LEADER]
            if old.role is StateRole.LEADER and old.lease_valid():
                assert not others, f"seed {seed}: lease held while {others[0][0]} leads"
                served_after += 1
        assert served_after > 0  # the lease did hold for a while after the cut
        assert net.leader() not in (None, leader)
        reads = collect_read_states(net)
        net.nodes[leader].read_index(b"late")
        net.flush()
        assert reads == []  # it stepped down long ago; no leader to ask


def test_lease_is_forfeited_by_a_leader_transfer_and_reads_fall_back() -> None:
    net, leader = lease_group(1)
    reads = collect_read_states(net)
    net.tick(2)
    r = net.raft(leader)
    assert r.lease_valid()
    target = next(n for n in net.nodes if n != leader)
    net.isolate(target)  # the transfer cannot complete
    net.nodes[leader].transfer_leader(target)
    net.stabilize()
    assert r.lead_transferee == target and r.lease_forfeited
    net.tick(r.config.election_tick)  # the transfer is abandoned
    assert r.role is StateRole.LEADER and r.lead_transferee is None
    assert not r.lease_valid()
    net.nodes[leader].read_index(b"after-transfer")
    net.stabilize()
    assert [(n, c) for n, _, c in reads] == [(leader, b"after-transfer")]
    assert r.counters["raft.read_index.lease_fallback"] == 1


def test_pending_read_bound() -> None:
    r = make_raft(1, (1, 2, 3), pre_vote=False, max_pending_reads=2)
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=r.term))
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=1))
    for i in range(4):
        r.step(Message(M.READ_INDEX, sender=r.id, context=b"c%d" % i))
    assert len(r.read_only) == 2
    assert r.counters["raft.read_index.dropped.full_or_duplicate"] == 2


# --- leader transfer -----------------------------------------------------------------


def test_leader_transfer_to_an_up_to_date_follower() -> None:
    """Thesis 3.10: the leader brings the target up to date, then sends TimeoutNow; the
    target campaigns at once (even with pre-vote and inside others' leases)."""
    net, leader = started([1, 2, 3])
    net.nodes[leader].propose(b"before")
    net.stabilize()
    net.nodes[leader].transfer_leader(nid(3))
    net.stabilize()
    assert net.leader() == nid(3)
    assert net.raft(leader).role is StateRole.FOLLOWER
    net.nodes[nid(3)].propose(b"after")
    net.stabilize()
    assert net.applied[leader].commands() == [b"before", b"after"]


def test_leader_transfer_to_a_lagging_follower_catches_it_up_first() -> None:
    net, leader = started([1, 2, 3])
    net.isolate(nid(3))
    for i in range(5):
        net.nodes[leader].propose(b"%d" % i)
    net.stabilize()
    net.heal()
    net.nodes[leader].transfer_leader(nid(3))
    assert net.raft(leader).lead_transferee == nid(3)
    with pytest.raises(ProposalDropped, match="transferring"):
        net.nodes[leader].propose(b"during")
    net.stabilize()
    assert net.leader() == nid(3)
    assert len(net.applied[nid(3)].commands()) == 5


def test_leader_transfer_aborts_after_an_election_timeout() -> None:
    net, leader = started([1, 2, 3])
    net.isolate(nid(3))
    net.nodes[leader].transfer_leader(nid(3))
    net.stabilize()
    net.tick(net.raft(leader).config.election_tick)
    r = net.raft(leader)
    assert r.lead_transferee is None and r.counters["raft.transfers.aborted.timeout"] == 1
    net.nodes[leader].propose(b"works again")


def test_transfer_request_on_a_follower_is_forwarded() -> None:
    net, _ = started([1, 2, 3])
    net.nodes[nid(2)].transfer_leader(nid(2))
    net.stabilize()
    assert net.leader() == nid(2)


# --- membership ----------------------------------------------------------------------


def test_conf_change_codec_and_rules() -> None:
    a, b, c, d, e = ids(1, 2, 3, 4, 5)
    cc = ConfChange(((ADD, d), (REMOVE, a)))
    assert decode_conf_change(encode_conf_change(cc)) == cc
    with pytest.raises(WireError):
        decode_conf_change(b"\x81\x82\x07\x41\x00")
    base = ConfState(voters=frozenset({a, b, c}))
    simple = apply_conf_change(base, ConfChange(((ADD, d),)))
    assert simple == ConfState(voters=frozenset({a, b, c, d}))
    joint = apply_conf_change(base, cc)
    assert joint.voters == frozenset({b, c, d}) and joint.voters_outgoing == base.voters
    assert apply_conf_change(joint, ConfChange()) == ConfState(voters=frozenset({b, c, d}))
    with pytest.raises(ConfChangeError, match="joint"):
        apply_conf_change(joint, ConfChange(((ADD, e),)))
    with pytest.raises(ConfChangeError, match="no voter"):
        apply_conf_change(ConfState(voters=frozenset({a})), ConfChange(((REMOVE, a),)))
    learner = apply_conf_change(base, ConfChange(((LEARN, e),)))
    assert learner.learners == frozenset({e})
    # Idempotent (a replay after restart).
    assert apply_conf_change(simple, ConfChange(((ADD, d),))) == simple


def add_node(net: Network, n: int) -> None:
    net.add_node(nid(n))  # empty: it learns the configuration from the log


def test_learner_catches_up_without_voting_then_is_promoted() -> None:
    net, leader = started([1, 2, 3])
    for i in range(5):
        net.nodes[leader].propose(b"%d" % i)
    net.stabilize()
    add_node(net, 4)
    net.nodes[leader].propose_conf_change(ConfChange(((LEARN, nid(4)),)))
    net.stabilize()
    net.tick(2)
    r = net.raft(leader)
    assert r.conf.learners == frozenset({nid(4)}) and nid(4) not in r.conf.voters
    assert net.applied[nid(4)].commands() == net.applied[leader].commands()
    # A learner does not count toward commit: with two voters cut off nothing commits.
    net.isolate(nid(2))
    net.partition([leader, nid(4)], [nid(2)], [nid(3)])
    before = r.log.committed
    net.nodes[leader].propose(b"needs a voter")
    net.stabilize()
    assert r.log.committed == before
    net.heal()
    net.stabilize()
    net.nodes[leader].propose_conf_change(ConfChange(((ADD, nid(4)),)))
    net.stabilize()
    net.tick(2)
    assert nid(4) in r.conf.voters and not r.conf.learners
    assert not net.raft(nid(4)).conf.learners  # it applied the change too


def test_one_conf_change_at_a_time() -> None:
    net, leader = started([1, 2, 3])
    net.isolate(leader)
    node = net.nodes[leader]
    node.propose_conf_change(ConfChange(((LEARN, nid(4)),)))
    with pytest.raises(ProposalDropped, match="conf_change_pending"):
        node.propose_conf_change(ConfChange(((LEARN, nid(5)),)))
    net.heal()
    net.tick(2)
    node.propose_conf_change(ConfChange(((LEARN, nid(5)),)))  # the first is applied now


def test_joint_consensus_replaces_two_voters_and_leaves_automatically() -> None:
    net, leader = started([1, 2, 3])
    add_node(net, 4)
    add_node(net, 5)
    net.nodes[leader].propose_conf_change(
        ConfChange(((ADD, nid(4)), (ADD, nid(5)), (REMOVE, nid(2)), (REMOVE, nid(3))))
    )
    net.stabilize()
    net.tick(3)
    r = net.raft(leader)
    assert r.conf == ConfState(voters=frozenset(ids(1, 4, 5)))
    assert r.counters["raft.conf_changes.auto_leave"] == 1
    for n in ids(1, 4, 5):
        assert net.raft(n).conf == r.conf
    net.nodes[leader].propose(b"new group")
    net.stabilize()
    assert net.applied[nid(5)].commands()[-1] == b"new group"


def test_joint_configuration_needs_both_majorities() -> None:
    net, leader = started([1, 2, 3])
    add_node(net, 4)
    add_node(net, 5)
    # Cut the new voters off: the joint entry cannot commit (the incoming majority lacks).
    net.partition(ids(1, 2, 3), ids(4, 5))
    net.nodes[leader].propose_conf_change(
        ConfChange(((ADD, nid(4)), (ADD, nid(5)), (REMOVE, nid(2)), (REMOVE, nid(3))))
    )
    net.stabilize()
    r = net.raft(leader)
    # The joint entry commits under the old configuration (1, 2, 3) and applies ...
    assert r.conf.voters_outgoing == frozenset(ids(1, 2, 3))
    commit = r.log.committed
    # ... but the automatic leave entry needs {1, 4, 5} too: nothing more commits.
    net.tick(3)
    assert r.log.committed == commit and r.conf.voters_outgoing
    net.heal()
    net.tick(5)
    assert r.conf == ConfState(voters=frozenset(ids(1, 4, 5)))


def test_removed_leader_steps_down_and_the_rest_elect() -> None:
    net, leader = started([1, 2, 3])
    net.nodes[leader].propose_conf_change(ConfChange(((REMOVE, leader),)))
    net.stabilize()
    assert net.raft(leader).role is StateRole.FOLLOWER
    net.tick(40)
    new = net.leader()
    assert new in (nid(2), nid(3))
    assert net.raft(new).conf.voters == frozenset(ids(2, 3))


# --- snapshots -----------------------------------------------------------------------


def compact(net: Network, node: bytes) -> None:
    rn, st = net.nodes[node], net.storage[node]
    index = rn.raft.log.applied
    data = b"|".join(net.applied[node].commands()) + b"#" * 3000
    st.create_snapshot(index, rn.conf_state, data)
    st.compact(index)


def test_lagging_follower_catches_up_from_a_snapshot_in_chunks() -> None:
    net, leader = started([1, 2, 3], max_snapshot_chunk_bytes=512, snapshot_window_chunks=2)
    net.isolate(nid(3))
    for i in range(20):
        net.nodes[leader].propose(b"c%d" % i)
    net.stabilize()
    compact(net, leader)
    net.heal()
    net.tick(3)
    r3 = net.raft(nid(3))
    assert net.applied[nid(3)].snapshot_index == net.storage[leader].snap_meta.index
    assert net.applied[nid(3)].snapshot_data == net.storage[leader].snap_data
    size = len(net.storage[leader].snap_data)
    assert net.raft(leader).counters["raft.snapshots.chunks_sent"] >= size // 512
    assert r3.counters["raft.snapshots.installed"] == 1
    net.nodes[leader].propose(b"after")
    net.stabilize()
    assert net.applied[nid(3)].commands() == [b"after"]
    assert r3.log.last_index() == net.raft(leader).log.last_index()


def test_snapshot_chunks_survive_loss_and_reordering() -> None:
    net, leader = started([1, 2, 3], max_snapshot_chunk_bytes=256, snapshot_window_chunks=4)
    net.isolate(nid(3))
    for i in range(20):
        net.nodes[leader].propose(b"c%d" % i)
    net.stabilize()
    compact(net, leader)
    net.heal()
    net.reorder = True
    rng = random.Random(5)
    dropped = []

    def lossy(m: Message) -> bool:
        if m.type is M.SNAP and rng.random() < 0.3:
            dropped.append(m.snap_offset)
            return False
        return True

    net.msg_filter = lossy
    net.tick(60)
    assert dropped
    assert net.applied[nid(3)].snapshot_data == net.storage[leader].snap_data


def test_follower_refuses_a_snapshot_over_its_bound() -> None:
    net = Network([1, 2, 3])
    net.nodes[nid(3)] = RawNode(
        RaftConfig(id=nid(3), max_snapshot_bytes=100), net.storage[nid(3)], random.Random(0)
    )
    net.campaign(nid(1))
    net.isolate(nid(3))
    for i in range(5):
        net.nodes[nid(1)].propose(b"%d" % i)
    net.stabilize()
    compact(net, nid(1))
    net.heal()
    net.tick(5)
    assert net.raft(nid(3)).counters["raft.snapshots.refused.too_large"] >= 1
    assert net.raft(nid(1)).counters["raft.snapshots.refused_by_peer"] >= 1
    assert net.applied[nid(3)].snapshot_index == 0


def test_restart_replays_from_persisted_state() -> None:
    net, leader = started([1, 2, 3])
    for i in range(5):
        net.nodes[leader].propose(b"%d" % i)
    net.stabilize()
    net.crash(nid(2))
    net.restart(nid(2))
    r2 = net.raft(nid(2))
    assert r2.term == net.raft(leader).term and r2.vote == leader
    net.tick(2)
    assert net.applied[nid(2)].commands() == [b"%d" % i for i in range(5)]


def test_rawnode_refuses_local_types_and_a_second_ready() -> None:
    st = MemoryStorage(ConfState(voters=frozenset(ids(1))))
    node = RawNode(RaftConfig(id=nid(1)), st, random.Random(0))
    with pytest.raises(ConfigError, match="local"):
        node.step(Message(M.HUP, to=nid(1), sender=nid(1)))
    node.campaign()
    node.ready()
    with pytest.raises(ConfigError, match="advanced"):
        node.ready()


def test_transport_reports_move_progress_back_to_probe() -> None:
    net, leader = started([1, 2, 3])
    net.tick(1)
    r = net.raft(leader)
    assert r.prs[nid(2)].state.value == "replicate"
    net.nodes[leader].report_unreachable(nid(2))
    assert r.prs[nid(2)].state.value == "probe"
    # A snapshot the transport failed to deliver: back to probing, waiting a heartbeat.
    r.prs[nid(3)].become_snapshot(5)
    net.nodes[leader].report_snapshot(nid(3), failed=True)
    pr = r.prs[nid(3)]
    assert pr.state.value == "probe" and pr.probe_sent and pr.pending_snapshot == 0


def test_transfer_to_a_learner_is_refused() -> None:
    net, leader = started([1, 2, 3])
    net.add_node(nid(4))
    net.nodes[leader].propose_conf_change(ConfChange(((LEARN, nid(4)),)))
    net.stabilize()
    net.tick(2)
    net.nodes[leader].transfer_leader(nid(4))
    r = net.raft(leader)
    assert r.lead_transferee is None
    assert r.counters["raft.transfers.refused.learner"] == 1


def test_status_reports_the_group() -> None:
    net, leader = started([1, 2, 3])
    net.nodes[leader].propose(b"x")
    net.stabilize()
    s = net.nodes[leader].status()
    assert s.role is StateRole.LEADER and s.leader == leader and s.term >= 1
    assert s.commit == s.applied == s.last_index == 3
    assert s.voters == frozenset(ids(1, 2, 3)) and not s.learners
    assert {n: p[0] for n, p in s.progress.items()} == {n: 3 for n in ids(1, 2, 3)}
    follower = net.nodes[nid(2)].status()
    assert follower.leader == leader and follower.progress == {}
