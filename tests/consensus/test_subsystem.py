"""ConsensusSubsystem on an in-memory cluster: bootstrap, commit, forwarding, failover,
restart from the WAL, persist-then-send, snapshots, timeouts."""

from __future__ import annotations

import random

import cbor2
import pytest
from test_subsystem_harness import Cluster, FakeMessenger, nid

from foundation_p2p.clock import Now
from foundation_p2p.consensus import kv
from foundation_p2p.consensus.memory_storage import MemoryStorage
from foundation_p2p.consensus.messages import MessageType, decode_message
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.subsystem import (
    ConsensusConfig,
    ConsensusSubsystem,
    decode_envelope,
    encode_envelope,
)
from foundation_p2p.consensus.types import EntryKind
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, MalformedError


def test_three_nodes_bootstrap_once_and_elect() -> None:
    c = Cluster(3)
    c.wait_leader()
    c.run(1.0)
    for m in c.members.values():
        assert m.sub.counters["raft.bootstrapped"] == 1
        e1 = m.storage.entries(1, 2)[0]
        assert e1.kind is EntryKind.CONF_CHANGE and e1.term == 1
    firsts = {m.storage.entries(1, 2)[0] for m in c.members.values()}
    assert len(firsts) == 1, "every founding voter stored the same entry 1"
    st = c.node(1).sub.status()
    assert st is not None and st.voters == {nid(1), nid(2), nid(3)}
    assert len(c.leaders()) == 1


def test_proposal_committed_and_applied_on_all() -> None:
    c = Cluster(3)
    leader = c.wait_leader()
    out = c.put(leader, b"k", b"v")
    assert out.ok
    assert kv.decode_result(out.value or b"").ok
    c.run(0.5)
    for m in c.members.values():
        assert c.kv_of(m) == {b"k": b"v"}


def test_follower_forwards_proposal_and_reads_linearizably() -> None:
    c = Cluster(3)
    leader = c.wait_leader()
    follower = next(m for m in c.members.values() if m is not leader)
    # right after the election a follower may not know the leader yet: a definite refusal
    c.run_until(lambda: follower.sub.raw is not None and follower.sub.raw.raft.leader == leader.id)
    out = c.put(follower, b"a", b"1")
    assert out.ok, out
    ticket = follower.sub.read(c.now, b"a")
    r = c.wait_outcome(follower, ticket)
    assert r.ok
    assert kv.decode_result(r.value or b"").value == b"1"
    assert follower.sub.counters["raft.reads.served"] == 1


def test_leader_crash_new_leader_keeps_acknowledged_writes() -> None:
    c = Cluster(3, seed=4)
    leader = c.wait_leader()
    acked = {}
    for i in range(10):
        key = b"k%d" % i
        if c.put(leader, key, b"v%d" % i).ok:
            acked[key] = b"v%d" % i
    assert len(acked) == 10
    c.crash(leader.id)
    start = c.t
    new = c.wait_leader(timeout=5.0)
    assert new.id != leader.id
    failover = c.t - start
    assert failover < 3.0
    out = c.put(new, b"after", b"x")
    assert out.ok
    for key, value in acked.items():
        assert c.kv_of(new)[key] == value
    # the old leader comes back and catches up
    back = c.restart(leader.id)
    c.run_until(lambda: c.kv_of(back).get(b"after") == b"x", 5.0)
    assert all(c.kv_of(back)[k] == v for k, v in acked.items())


def test_full_cluster_restart_from_wal_keeps_every_acknowledged_write() -> None:
    c = Cluster(3, seed=7)
    leader = c.wait_leader()
    acked = {}
    for i in range(15):
        if c.put(leader, b"x%d" % i, b"%d" % i).ok:
            acked[b"x%d" % i] = b"%d" % i
    for node in list(c.members):
        c.crash(node)
    for node in list(c.members):
        m = c.restart(node)
        assert m.sub.started, "a node with persisted state restarts its group"
        assert m.sub.counters["raft.bootstrapped"] == 0
    leader = c.wait_leader()
    out = c.put(leader, b"z", b"z")
    assert out.ok
    c.run(0.5)
    for m in c.members.values():
        store = c.kv_of(m)
        for k, v in acked.items():
            assert store[k] == v


def test_persist_then_send_messages_wait_for_the_write() -> None:
    c = Cluster(3)
    leader = c.wait_leader()
    c.run(0.2)
    leader.hold_writes = True
    leader.messenger.sent.clear()
    ticket = leader.sub.propose(c.now, kv.encode_put(b"p", b"q"))
    for _ in range(3):
        c.step()
    appends = [
        decode_message(msg[1])
        for _, msg in leader.messenger.sent
        if msg[0] == 0 and decode_message(msg[1]).type is MessageType.APP
    ]
    assert all(not m.entries for m in appends), "entries were sent before being durable"
    writes = leader.sub.take_log_writes()
    assert len(writes) == 1 and writes[0].entries
    # the durable write releases the append
    from foundation_p2p.consensus.subsystem import persist

    persist(leader.storage, writes)
    leader.sub.log_writes_done(c.now, [w.id for w in writes])
    sent = [decode_message(msg[1]) for _, msg in leader.messenger.sent if msg[0] == 0]
    assert any(m.type is MessageType.APP and m.entries for m in sent)
    leader.hold_writes = False
    assert c.wait_outcome(leader, ticket).ok


def test_group_commit_many_proposals_share_one_write() -> None:
    c = Cluster(3)
    leader = c.wait_leader()
    c.run(0.2)
    leader.hold_writes = True
    c.step()
    first = leader.sub.take_log_writes()  # whatever was in flight (maybe nothing)
    if first:
        from foundation_p2p.consensus.subsystem import persist

        persist(leader.storage, first)
        leader.sub.log_writes_done(c.now, [w.id for w in first])
        leader.hold_writes = True
    tickets = [leader.sub.propose(c.now, kv.encode_put(b"g%d" % i, b"v")) for i in range(20)]
    leader.hold_writes = False
    before = leader.storage.counters["wal.fsyncs"]
    c.step()
    fsyncs = leader.storage.counters["wal.fsyncs"] - before
    assert fsyncs <= 2
    for t in tickets:
        assert c.wait_outcome(leader, t).ok


def test_snapshot_and_compaction_then_restart() -> None:
    cfg = ConsensusConfig(bootstrap_expect=3, snapshot_every=5, stabilization_s=1.0)
    c = Cluster(3, config=cfg)
    leader = c.wait_leader()
    for i in range(23):
        assert c.put(leader, b"s%d" % i, b"%d" % i).ok
    c.run(0.5)
    for m in c.members.values():
        assert m.storage.first_index() > 10, "the log was compacted"
        assert m.sub.counters["raft.snapshots.taken"] >= 3
    victim = next(m for m in c.members.values() if m is not leader)
    c.crash(victim.id)
    back = c.restart(victim.id)
    c.run(1.0)
    assert c.kv_of(back) == c.kv_of(leader)
    assert len(c.kv_of(back)) == 23


def test_isolated_leader_times_out_indeterminate() -> None:
    cfg = ConsensusConfig(bootstrap_expect=3, request_timeout_s=0.4, check_quorum=True)
    c = Cluster(3, config=cfg)
    leader = c.wait_leader()
    c.run(0.2)
    c.isolate(leader.id)
    ticket = leader.sub.propose(c.now, kv.encode_put(b"lost?", b"1"))
    out = c.wait_outcome(leader, ticket)
    assert out.status in ("indeterminate", "no_leader")
    assert out.status == "indeterminate"


def test_not_member_and_no_leader_fail_at_once() -> None:
    c = Cluster(1, config=ConsensusConfig(bootstrap_expect=3))
    m = c.node(1)
    ticket = m.sub.propose(c.now, kv.encode_put(b"a", b"b"))
    out = m.sub.take_results()
    assert [o.status for o in out] == ["not_member"] and out[0].ticket == ticket
    assert m.sub.read(c.now, b"a") == ticket + 1
    assert m.sub.take_results()[0].status == "not_member"


def test_single_voter_bootstrap_expect_one() -> None:
    c = Cluster(1, config=ConsensusConfig(bootstrap_expect=1, min_voters=1))
    leader = c.wait_leader()
    assert c.put(leader, b"one", b"1").ok


def test_envelope_roundtrip_and_refusal() -> None:
    data = encode_envelope(nid(9), 5, 7, b"cmd")
    assert decode_envelope(data) == (nid(9), 5, 7, b"cmd", None)
    assert decode_envelope(encode_envelope(nid(9), 5, 7, b"cmd", 6)) == (nid(9), 5, 7, b"cmd", 6)
    with pytest.raises(MalformedError):
        decode_envelope(b"\xff")
    with pytest.raises(MalformedError):
        decode_envelope(encode_envelope(nid(9), 5, 7, b"")[:-1] + b"\x01")
    with pytest.raises(MalformedError, match="floor"):
        decode_envelope(encode_envelope(nid(9), 5, 7, b"", 7))  # a floor covers its own ticket
    with pytest.raises(MalformedError, match="floor"):
        decode_envelope(cbor2.dumps([nid(9), 5, 7, b"", -1]))


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="bootstrap_expect"):
        ConsensusConfig(bootstrap_expect=4)
    with pytest.raises(ConfigError, match="lease_reads"):
        ConsensusConfig(lease_reads=True, check_quorum=False)
    with pytest.raises(ConfigError, match="tick_interval_s"):
        ConsensusConfig(tick_interval_s=0)
    with pytest.raises(ConfigError, match="max_inflight_bytes"):
        ConsensusConfig(max_inflight_bytes=0)


def test_append_and_inflight_byte_bounds_reach_the_core() -> None:
    rc = ConsensusConfig(max_append_bytes=1000, max_inflight_bytes=5000).raft_config(nid(1))
    assert (rc.max_size_per_msg, rc.max_inflight_bytes) == (1000, 5000)
    # with entries of about 340 bytes, one append carries at most 3 (1000 bytes of entries,
    # at least one entry), and the group still commits all of them
    c = Cluster(3, config=ConsensusConfig(bootstrap_expect=3, max_append_bytes=1000))
    leader = c.wait_leader()
    c.run(0.2)
    leader.messenger.sent.clear()
    tickets = [leader.sub.propose(c.now, kv.encode_put(b"b%d" % i, b"v" * 300)) for i in range(9)]
    for t in tickets:
        assert c.wait_outcome(leader, t).ok
    appends = [
        decode_message(msg[1])
        for _, msg in leader.messenger.sent
        if msg[0] == 0 and decode_message(msg[1]).type is MessageType.APP
    ]
    sizes = [sum(len(e.data) for e in m.entries) for m in appends if m.entries]
    assert sizes and max(sizes) <= 1000 + 400
    assert sum(len(m.entries) for m in appends) >= 2 * 9


def test_malformed_service_message_is_refused() -> None:
    class Net:
        queue: list[object] = []

    m = FakeMessenger(Net(), nid(1))  # type: ignore[arg-type]
    sub = ConsensusSubsystem(
        nid(1),
        messenger=m,
        storage=MemoryStorage(),
        config=ConsensusConfig(),
        counters=Counters(),
        rng=random.Random(1),
    )
    handler = m.handlers[2][0]
    now = Now(0.0, 0.0)
    for bad in ([], [0], [0, "x"], [9, 1], "text", [3, [b"short"]]):
        with pytest.raises(MalformedError):
            handler(now, nid(2), bad)
    assert not sub.started


def test_memory_storage_works_as_the_log() -> None:
    # a MemoryStorage-backed node restarted from persisted state starts its group
    storage = MemoryStorage()
    messenger = FakeMessenger(type("N", (), {"queue": []})(), nid(1))
    sub = ConsensusSubsystem(
        nid(1),
        messenger=messenger,
        storage=storage,
        config=ConsensusConfig(bootstrap_expect=1, min_voters=1),
        counters=Counters(),
        rng=random.Random(1),
    )
    from foundation_p2p.consensus.subsystem import persist

    t = 0.0
    sub.set_alive(Now(t, t), [])
    for _ in range(200):
        t += 0.01
        sub.handle_timer(Now(t, t))
        writes = sub.take_log_writes()
        if writes:
            persist(storage, writes)
            sub.log_writes_done(Now(t, t), [w.id for w in writes])
        if sub.is_leader():
            break
    assert sub.is_leader()
    assert sub.status() is not None
    st = sub.status()
    assert st is not None and st.role is StateRole.LEADER


def _member(n: int, state: str, *, observer: bool = False, eligible: bool = True) -> object:
    from foundation_p2p.membership.state import Member, MemberState

    m = Member(
        node_id=nid(n),
        name=f"n{n}",
        address=("127.0.0.1", 7000 + n),
        incarnation=1,
        state=MemberState[state],
        metadata=b"",
        observer=observer,
        public_key=b"\x00" * 32,
        since_mono=0.0,
    )
    return m.with_extensions({2: b"\x01"}) if eligible else m


def test_eligible_members_from_membership() -> None:
    from foundation_p2p.consensus.subsystem import eligible_members

    members = [
        _member(1, "ALIVE"),
        _member(2, "SUSPECT"),
        _member(3, "FAILED"),
        _member(4, "ALIVE", observer=True),
        _member(5, "ALIVE", eligible=False),
    ]
    assert eligible_members(members) == [nid(1), nid(2)]


def test_config_from_node_config_table() -> None:
    from types import SimpleNamespace

    assert ConsensusConfig.from_node_config(SimpleNamespace(extra={})) is None
    cfg = ConsensusConfig.from_node_config(
        SimpleNamespace(extra={"consensus": {"bootstrap_expect": 5, "snapshot_every": 100}})
    )
    assert cfg is not None and cfg.bootstrap_expect == 5 and cfg.snapshot_every == 100
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        ConsensusConfig.from_mapping({"bogus": 1})
    with pytest.raises(ConfigError, match="must be a table"):
        ConsensusConfig.from_node_config(SimpleNamespace(extra={"consensus": 3}))


def test_subsystem_protocol_and_membership_input() -> None:
    c = Cluster(3)
    m = c.node(1)
    sub = m.sub
    assert sub.frame_types == () and sub.take_outgoing() == [] and sub.take_events() == []
    assert sub.handle_command(c.now, object()) is False
    sub.on_membership(c.now, [_member(2, "ALIVE"), _member(3, "ALIVE")])
    assert sub.boot.proposal == {nid(1), nid(2), nid(3)}


def test_lease_reads() -> None:
    cfg = ConsensusConfig(bootstrap_expect=3, lease_reads=True)
    c = Cluster(3, config=cfg)
    leader = c.wait_leader()
    assert c.put(leader, b"l", b"1").ok
    ticket = leader.sub.read(c.now, b"l")
    out = c.wait_outcome(leader, ticket)
    assert out.ok and kv.decode_result(out.value or b"").value == b"1"


def test_extension_announces_eligibility_then_membership_of_the_group() -> None:
    c = Cluster(3)
    m = c.node(1)
    assert m.sub.take_extension_change() == b"\x01"
    assert m.sub.take_extension_change() is None
    c.wait_leader()
    assert m.sub.take_extension_change() == b"\x02"
    assert m.sub.take_extension_change() is None


def test_announced_group_prevents_bootstrap() -> None:
    from foundation_p2p.membership.state import Member

    c = Cluster(4, config=ConsensusConfig(bootstrap_expect=3))
    m4 = c.node(4)
    plain = _member(9, "ALIVE", eligible=False)
    assert isinstance(plain, Member)
    announced = [plain.with_extensions({2: b"\x02"}), _member(2, "ALIVE"), _member(3, "ALIVE")]
    m4.sub.on_membership(c.now, announced)
    # node 4 would propose {2, 3, 4} but knows a group exists: it waits to be added
    assert m4.sub.boot.proposal is None
    c.run(0.5)
    assert m4.sub.counters["raft.bootstrapped"] == 0


def test_requests_expire_in_order_reads_fail_definitely() -> None:
    cfg = ConsensusConfig(bootstrap_expect=3, request_timeout_s=0.3)
    c = Cluster(3, config=cfg)
    leader = c.wait_leader()
    follower = next(m for m in c.members.values() if m is not leader)
    c.run_until(lambda: follower.sub.raw is not None and follower.sub.raw.raft.leader is not None)
    c.isolate(follower.id)
    first = follower.sub.propose(c.now, kv.encode_put(b"a", b"1"))
    c.step()
    read = follower.sub.read(c.now, b"a")
    deadline = follower.sub.next_deadline()
    assert deadline is not None and deadline <= c.t + 0.3
    a = c.wait_outcome(follower, first)
    b = c.wait_outcome(follower, read)
    assert a.status == "indeterminate"
    assert b.status == "dropped" and b.reason == "timeout"
    assert follower.sub.counters["raft.reads.timeout"] == 1


def test_commit_only_hard_state_is_saved_but_not_waited_for() -> None:
    """etcd's MustSync: a Ready whose only durable change is the commit index is written
    with the next batch, but its committed entries apply without waiting for that sync."""
    c = Cluster(3)
    leader = c.wait_leader()
    c.run(0.2)
    ticket = leader.sub.propose(c.now, kv.encode_put(b"c", b"1"))
    # persist the entry on the leader, then hold the leader's writes: the followers'
    # acknowledgements move only the commit index, which must not wait for a sync
    c.step()
    leader.hold_writes = True
    for _ in range(5):
        c.step()
    outcome = next((o for o in leader.results if o.ticket == ticket), None)
    assert outcome is not None and outcome.ok, "the commit waited for a sync"
    writes = leader.sub.take_log_writes()
    assert writes and all(
        w.hard_state is not None and not w.entries and w.snapshot is None for w in writes
    )
    assert len(writes) == 1, "commit-only writes not yet taken are coalesced"
    assert writes[0].hard_state is not None and writes[0].hard_state.commit >= 2
    assert leader.sub.counters["raft.writes.commit_only"] >= 1
    leader.hold_writes = False
    c.run(0.2)


def test_ready_of_a_commit_only_change_must_be_saved_not_synced() -> None:
    from foundation_p2p.consensus.rawnode import Ready
    from foundation_p2p.consensus.types import HardState

    commit_only = Ready(hard_state=HardState(term=3, vote=nid(1), commit=9))
    assert commit_only.must_save() and not commit_only.must_sync()
    new_vote = Ready(hard_state=HardState(term=3, vote=nid(1), commit=9), term_or_vote_changed=True)
    assert new_vote.must_sync()
    assert not Ready().must_save()


def test_a_leader_whose_sync_is_slow_keeps_its_followers_with_heartbeats() -> None:
    """A slow fdatasync on the leader (one Ready in flight for several election timeouts)
    must not silence its heartbeats: the followers keep their leader, and the entries still
    wait for the sync (persist-then-send)."""
    c = Cluster(3)
    leader = c.wait_leader()
    c.run(0.2)
    term = leader.sub.status().term  # type: ignore[union-attr]
    leader.hold_writes = True
    leader.messenger.sent.clear()
    ticket = leader.sub.propose(c.now, kv.encode_put(b"slow", b"disk"))
    c.run(1.5)  # 30 ticks: three times the election timeout's lower bound
    assert c.leaders() == [leader]
    for m in c.members.values():
        st = m.sub.status()
        assert st is not None and st.term == term and st.leader == leader.id
    sent = [decode_message(msg[1]) for _, msg in leader.messenger.sent if msg[0] == 0]
    assert sum(m.type is MessageType.HEARTBEAT for m in sent) >= 2 * 20
    assert all(not m.entries for m in sent if m.type is MessageType.APP)
    assert leader.sub.counters["raft.heartbeats.sent_during_sync"] > 0
    leader.hold_writes = False
    assert c.wait_outcome(leader, ticket).ok


def test_heartbeats_do_not_pass_a_sync_that_writes_a_new_term() -> None:
    """While the Ready in flight carries a new term (or vote), nothing of that term leaves
    before it is durable: the bypass needs the core's term to be the persisted one."""
    c = Cluster(3)
    leader = c.wait_leader()
    c.run(0.2)
    raw = leader.sub.raw
    assert raw is not None
    beat = _heartbeat_to(raw, c)
    raw.raft.msgs.append(beat)
    persisted = raw._prev_hard.term
    raw.raft.term = persisted + 1  # as if a term change were in flight, not yet durable
    try:
        assert raw.take_heartbeats() == []
        assert beat in raw.raft.msgs  # it waits for the next Ready
    finally:
        raw.raft.term = persisted
    # once the core's term is the durable one, the same heartbeat may leave
    assert beat in raw.take_heartbeats()
    assert beat not in raw.raft.msgs


def _heartbeat_to(raw: object, c: Cluster) -> object:
    from foundation_p2p.consensus.messages import M, Message

    peer = next(n for n in c.members if n != raw.raft.id)  # type: ignore[attr-defined]
    m = Message(M.HEARTBEAT, to=peer, commit=0)
    m.term = raw.raft.term  # type: ignore[attr-defined]
    return m
