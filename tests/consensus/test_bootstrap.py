"""Bootstrap: the initial voters are chosen deterministically, agreed in two phases by one
coordinator, and written once (``foundation_p2p/consensus/bootstrap.py``).

Three levels: :class:`BootstrapProtocol` alone over a seeded lossy, reordering network
with views that grow over time (the N > ``bootstrap_expect`` case that never formed a
group before); the subsystem harness (``Cluster``); and whole simulated clusters
(``World``, real ``NodeCore`` and membership) with 4 and 5 nodes started together or a few
milliseconds apart, over a few dozen seeds.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_subsystem_harness import Cluster, nid

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.bootstrap import (
    ACK,
    COMMIT,
    PREPARE,
    RELEASE,
    BootstrapMessage,
    BootstrapProtocol,
    decode_bootstrap,
    initial_voters,
)
from foundation_p2p.consensus.subsystem import ConsensusConfig
from foundation_p2p.errors import ConfigError, MalformedError


def test_initial_voters_are_the_smallest_ids_in_any_order() -> None:
    ids = [nid(i) for i in (7, 3, 9, 1, 5)]
    want = frozenset({nid(1), nid(3), nid(5)})
    for perm in itertools.permutations(ids):
        assert initial_voters(perm, 3) == want
    assert initial_voters(ids[:2], 3) is None
    with pytest.raises(ConfigError):
        initial_voters(ids, 0)


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
    # two phases: node 1 coordinates {1, 2, 3} (node 2 knows no smaller id): one group
    assert sets == {frozenset({nid(1), nid(2), nid(3)})}
    assert c.leader() is not None


def test_four_eligible_nodes_expect_three_form_one_group() -> None:
    c = Cluster(4, config=ConsensusConfig(bootstrap_expect=3, stabilization_s=1.0))
    leader = c.wait_leader()
    c.run_until(lambda: all(m.sub.started for m in c.members.values()), 10.0)
    booted = sorted(m.id for m in c.members.values() if m.sub.counters["raft.bootstrapped"])
    assert booted == [nid(1), nid(2), nid(3)]
    assert c.node(4).sub.counters["raft.joined"] == 1
    assert c.put(leader, b"k", b"v").ok


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


# -- BootstrapProtocol alone ------------------------------------------------------------------


@dataclass
class _Net:
    """Protocol instances over a seeded network: each message is lost with ``loss``,
    else delivered after a random delay (so reordered); views are set per node over time."""

    expect: int
    seed: int
    loss: float = 0.0
    nodes: dict[NodeId, BootstrapProtocol] = field(default_factory=dict)
    queue: list[tuple[float, int, NodeId, NodeId, list[object]]] = field(default_factory=list)
    now: float = 0.0
    boots: int = 0
    decided: dict[NodeId, frozenset[NodeId]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def start(self, node: NodeId) -> BootstrapProtocol:
        self.boots += 1
        b = BootstrapProtocol(node, self.expect, nonce=self.rng.getrandbits(63), resend_s=0.5)
        self.nodes[node] = b
        self.decided.pop(node, None)
        return b

    def view(self, node: NodeId, members: set[NodeId]) -> None:
        self.nodes[node].set_candidates(self.now, members)
        self.flush(node)

    def flush(self, node: NodeId) -> None:
        b = self.nodes[node]
        for peer, msg in b.poll(self.now):
            if self.rng.random() < self.loss:
                continue
            self.boots += 1  # a unique tie-breaker for the heap order
            delay = self.rng.uniform(0.001, 0.2)
            self.queue.append((self.now + delay, self.boots, node, peer, msg))
        if b.ready() is not None:
            old = self.decided.setdefault(node, b.ready())  # type: ignore[arg-type]
            assert old == b.ready(), "a node changed its decided set"

    def run(self, until: float) -> None:
        while True:
            self.queue.sort(key=lambda x: (x[0], x[1]))
            deadlines = [d for d in (b.next_deadline() for b in self.nodes.values()) if d]
            t_msg = self.queue[0][0] if self.queue else None
            t_timer = min(deadlines) if deadlines else None
            t = min(x for x in (t_msg, t_timer, until) if x is not None)
            if t >= until:
                self.now = until
                return
            self.now = max(self.now, t)
            if t_msg is not None and t_msg <= t:
                _, _, src, dst, msg = self.queue.pop(0)
                if dst in self.nodes:
                    self.nodes[dst].receive(self.now, src, decode_bootstrap(msg))
                    self.flush(dst)
            else:
                for node in sorted(self.nodes):
                    self.flush(node)

    def sets(self) -> set[frozenset[NodeId]]:
        return set(self.decided.values())


def _grow_views(net: _Net, ids: list[NodeId], order: list[NodeId], spacing: float) -> None:
    """Nodes start in ``order`` ``spacing`` apart; each learns the earlier ones at once and
    is learned by each earlier one after its own random membership delay."""
    pending: list[tuple[float, NodeId, NodeId]] = []
    for i, node in enumerate(order):
        net.run(i * spacing)
        net.start(node)
        net.view(node, set(order[: i + 1]))
        for other in order[:i]:
            pending.append((net.now + net.rng.uniform(0.0, 0.8), other, node))
    seen: dict[NodeId, set[NodeId]] = {n: set(order[: order.index(n) + 1]) for n in ids}
    for t, who, learns in sorted(pending):
        net.run(t)
        seen[who].add(learns)
        net.view(who, seen[who])


@pytest.mark.parametrize("n, expect", [(4, 3), (5, 3), (5, 5), (7, 3), (3, 3)])
def test_protocol_forms_one_group_from_growing_views(n: int, expect: int) -> None:
    ids = [nid(i) for i in range(1, n + 1)]
    formed = 0
    for seed in range(40):
        net = _Net(expect, seed, loss=0.1)
        order = ids[:]
        net.rng.shuffle(order)
        _grow_views(net, ids, order, spacing=net.rng.choice([0.0, 0.003, 0.05, 0.4]))
        net.run(30.0)
        sets = net.sets()
        assert len(sets) == 1, (seed, sets)  # exactly once: never two, never none
        (voters,) = sets
        assert len(voters) == expect
        # every voter that decided wrote the same set; the coordinator always decides
        assert min(voters) in net.decided
        assert set(net.decided) <= voters
        formed += 1
    assert formed == 40


def test_protocol_converged_views_choose_the_smallest_ids() -> None:
    ids = [nid(i) for i in (9, 2, 7, 4, 5)]
    for seed in range(10):
        net = _Net(3, seed)
        for node in ids:
            net.start(node)
        for node in ids:
            net.view(node, set(ids))
        net.run(5.0)
        assert net.sets() == {frozenset({nid(2), nid(4), nid(5)})}
        assert set(net.decided) == {nid(2), nid(4), nid(5)}


def test_the_4_node_conflict_that_never_formed_now_resolves() -> None:
    # node 2 sees {2, 3, 4} first and coordinates it; node 3 promises; then node 1 shows up
    b = {i: BootstrapProtocol(nid(i), 3, nonce=i) for i in (1, 2, 3, 4)}

    def deliver(src: int) -> None:
        for peer, msg in b[src].poll(0.0):
            b[peer[0]].receive(0.0, nid(src), decode_bootstrap(msg))

    small = [nid(2), nid(3), nid(4)]
    for i in (2, 3, 4):
        b[i].set_candidates(0.0, small)
    deliver(2)
    deliver(3)  # node 3's ack reaches node 2; node 4's is still on the way
    assert b[3].promise is not None and b[4].promise is not None and b[2].ready() is None
    everyone = [nid(1), *small]
    for i in (1, 2, 3, 4):
        b[i].set_candidates(0.0, everyone)
    assert b[2].coordinating is None, "node 2 sees node 1: it stops coordinating"
    for _ in range(4):
        for i in (1, 2, 3, 4):
            deliver(i)
    assert b[1].ready() == frozenset({nid(1), nid(2), nid(3)})
    assert b[2].ready() == b[3].ready() == b[1].ready()
    assert b[4].ready() is None and b[4].promise is None, "released by node 2"
    assert b[3].counters["raft.bootstrap.released"] == 1


def test_a_promised_node_refuses_another_coordinator_until_released() -> None:
    b = BootstrapProtocol(nid(3), 3, nonce=7)
    b.set_candidates(0.0, [nid(1), nid(2), nid(3), nid(4)])
    assert b.coordinating is None and b.poll(0.0) == []
    b.receive(0.0, nid(2), BootstrapMessage(PREPARE, 5, 1, frozenset({nid(2), nid(3), nid(4)})))
    assert b.promise is None, "node 1 is smaller and alive: {2, 3, 4} is not the set"
    b.set_candidates(0.1, [nid(2), nid(3), nid(4)])  # node 1 failed
    assert b.promise is not None and b.promise.coordinator == nid(2)
    assert b.poll(0.1) == [(nid(2), [3, [ACK, 5, 1, []]])]
    b.set_candidates(0.2, [nid(1), nid(2), nid(3), nid(4)])  # node 1 back
    b.receive(0.2, nid(1), BootstrapMessage(PREPARE, 9, 1, frozenset({nid(1), nid(2), nid(3)})))
    assert b.promise.coordinator == nid(2) and b.conflicts == 1
    # a commit for another round is ignored; a release frees the node
    b.receive(0.3, nid(2), BootstrapMessage(COMMIT, 5, 2, frozenset({nid(2), nid(3), nid(4)})))
    assert b.ready() is None and b.counters["raft.bootstrap.stale.commit"] == 1
    b.receive(0.4, nid(2), BootstrapMessage(RELEASE, 5, 1))
    assert b.promise is not None and b.promise.coordinator == nid(1), "promises node 1 at once"
    assert (nid(1), [3, [ACK, 9, 1, []]]) in b.poll(0.4)
    b.receive(0.5, nid(1), BootstrapMessage(COMMIT, 9, 1, frozenset({nid(1), nid(2), nid(3)})))
    assert b.ready() == frozenset({nid(1), nid(2), nid(3)})


def test_promise_to_a_failed_coordinator_is_released_by_membership() -> None:
    b = BootstrapProtocol(nid(3), 3, nonce=1)
    b.set_candidates(0.0, [nid(2), nid(3), nid(4)])
    b.receive(0.0, nid(2), BootstrapMessage(PREPARE, 5, 1, frozenset({nid(2), nid(3), nid(4)})))
    assert b.promise is not None
    b.set_candidates(1.0, [nid(3), nid(4), nid(5)])
    assert b.promise is None and b.counters["raft.bootstrap.released.coordinator_gone"] == 1
    assert b.coordinating == frozenset({nid(3), nid(4), nid(5)})


def test_coordinator_restart_voids_the_old_promise() -> None:
    b = BootstrapProtocol(nid(3), 3, nonce=1)
    b.set_candidates(0.0, [nid(2), nid(3), nid(4)])
    voters = frozenset({nid(2), nid(3), nid(4)})
    b.receive(0.0, nid(2), BootstrapMessage(PREPARE, 5, 4, voters))
    b.receive(0.1, nid(2), BootstrapMessage(PREPARE, 5, 3, voters))  # late, older round
    assert b.counters["raft.bootstrap.stale.prepare"] == 1 and b.promise.round == 4
    b.receive(0.2, nid(2), BootstrapMessage(PREPARE, 6, 1, voters))  # a new boot of node 2
    assert b.promise is not None and (b.promise.nonce, b.promise.round) == (6, 1)


def test_coordinator_commits_once_every_voter_promised_and_releases_dropped_ones() -> None:
    b = BootstrapProtocol(nid(1), 3, nonce=3, resend_s=0.5)
    b.set_candidates(0.0, [nid(1), nid(2), nid(4)])
    assert b.coordinating == frozenset({nid(1), nid(2), nid(4)}) and b.round == 1
    assert sorted(p for p, _ in b.poll(0.0)) == [nid(2), nid(4)]
    assert b.poll(0.2) == [] and b.next_deadline() == 0.5
    b.receive(0.3, nid(2), BootstrapMessage(ACK, 3, 1))
    # node 3 appears: a new round without node 4, which is released
    b.set_candidates(0.4, [nid(1), nid(2), nid(3), nid(4)])
    assert b.round == 2 and b.acks == set()
    out = b.poll(0.4)
    assert (nid(4), [3, [RELEASE, 3, 2, []]]) in out
    assert {p for p, m in out if m[1][0] == PREPARE} == {nid(2), nid(3)}
    b.receive(0.5, nid(4), BootstrapMessage(ACK, 3, 1))  # for the abandoned round
    b.receive(0.5, nid(2), BootstrapMessage(ACK, 3, 1))
    assert b.counters["raft.bootstrap.stale.ack"] == 2 and b.ready() is None
    b.receive(0.6, nid(2), BootstrapMessage(ACK, 3, 2))
    b.receive(0.6, nid(3), BootstrapMessage(ACK, 3, 2))
    assert b.ready() == frozenset({nid(1), nid(2), nid(3)})
    commits = b.poll(0.6)
    assert {p for p, m in commits if m[1][0] == COMMIT} == {nid(2), nid(3)}
    assert b.next_deadline() is None


def test_expect_one_decides_alone() -> None:
    b = BootstrapProtocol(nid(1), 1, nonce=0)
    b.set_candidates(0.0, [])
    assert b.ready() == frozenset({nid(1)}) and b.poll(0.0) == []


@pytest.mark.parametrize(
    "message, problem",
    [
        ([3], "expected"),
        ([3, [0, 0, 0]], "expected"),
        ([3, 0, 0, 0, []], "expected"),
        ([3, [9, 0, 0, []]], "unknown op"),
        ([3, [True, 0, 0, []]], "unknown op"),
        ([3, [0, -1, 0, [nid(1)]]], "nonce"),
        ([3, [0, 1 << 63, 0, [nid(1)]]], "nonce"),
        ([3, [0, 0, 1 << 64, [nid(1)]]], "round"),
        ([3, [1, 0, 0, [nid(1)]]], "no voters"),
        ([3, [0, 0, 0, []]], "1..64"),
        ([3, [0, 0, 0, [nid(i % 250) for i in range(1, 66)]]], "1..64"),
        ([3, [0, 0, 0, [b"x"]]], "16-byte"),
        ([3, [0, 0, 0, None]], "16-byte"),
        ([3, [3, 0, 0, [nid(2), nid(1)]]], "sorted"),
        ([3, [3, 0, 0, [nid(1), nid(1)]]], "sorted"),
        ((3, [1, 0, 0, []]), "expected"),
    ],
)
def test_malformed_bootstrap_messages_are_refused(message: object, problem: str) -> None:
    with pytest.raises(MalformedError, match=problem):
        decode_bootstrap(message)


def test_messages_round_trip() -> None:
    for m in (
        BootstrapMessage(PREPARE, 5, 2, frozenset({nid(1), nid(2)})),
        BootstrapMessage(ACK, 5, 2),
        BootstrapMessage(RELEASE, 0, 0),
        BootstrapMessage(COMMIT, (1 << 63) - 1, (1 << 64) - 1, frozenset({nid(3)})),
    ):
        assert decode_bootstrap(m.encode()) == m


def test_protocol_config_errors() -> None:
    with pytest.raises(ConfigError, match="bootstrap_expect"):
        BootstrapProtocol(nid(1), 0, nonce=0)
    with pytest.raises(ConfigError, match="nonce"):
        BootstrapProtocol(nid(1), 3, nonce=-1)
    with pytest.raises(ConfigError, match="resend"):
        BootstrapProtocol(nid(1), 3, nonce=0, resend_s=0)


# -- whole simulated clusters --------------------------------------------------------------

SIM_BOOT = """
name = "kv-bootstrap"
seed = 1
duration = "10s"
mode = "bytes"

[cluster]
nodes = {nodes}
{start}

[network]
latency = "1ms..5ms"
loss = 0.01

[node.consensus]
bootstrap_expect = {expect}

[[workload]]
kind = "kv"
clients = 2
keys = 2
rate = 10
start = "1s"

[check]
settle = "3s"
"""

SIM_CASES = [
    (4, 3, ""),
    (4, 3, 'start = "staggered"\nstart_interval = "7ms"'),
    (5, 3, 'start = "staggered"\nstart_interval = "3ms"'),
    (5, 5, ""),
    (5, 5, 'start = "staggered"\nstart_interval = "40ms"'),
]


def sim_bootstrap(nodes: int, expect: int, start: str, seed: int) -> dict[str, Any]:
    """One simulated cluster: its report, who bootstrapped which first entry, and each
    node's voter count at the end (``None``: not started)."""
    from simulator.scenario import parse_scenario_text
    from simulator.world import World

    text = SIM_BOOT.format(nodes=nodes, expect=expect, start=start)
    world = World(parse_scenario_text(text, source="kv-bootstrap"), seed=seed)
    result = world.run()
    booted: dict[str, bytes] = {}
    voters: dict[str, int | None] = {}
    for host in world.hosts:
        sub = host.core.consensus if host.core is not None else None
        assert sub is not None
        if sub.counters["raft.bootstrapped"]:
            booted[host.name] = sub.storage.entries(1, 2)[0].data
        st = sub.status()
        voters[host.name] = len(st.voters) if st is not None else None
    return {"result": result, "booted": booted, "voters": voters}


@pytest.mark.parametrize("nodes, expect, start", SIM_CASES)
def test_simulated_clusters_bootstrap_once_over_seeds(nodes: int, expect: int, start: str) -> None:
    for seed in range(1, 9):
        out = sim_bootstrap(nodes, expect, start, seed)
        r = out["result"]
        failed = {k: v.detail for k, v in r.invariants.items() if not v.ok}
        assert r.ok, (seed, failed)
        # the founders that got the commit wrote entry 1 (the others received it): one set
        assert 1 <= len(out["booted"]) <= expect, (seed, sorted(out["booted"]))
        assert len(set(out["booted"].values())) == 1, (seed, "two different first entries")
        # every node ended in the one group of `expect` voters (the rest are learners)
        assert set(out["voters"].values()) == {expect}, (seed, out["voters"])
        assert r.metrics["kv.ops_ok"] > 50, seed
