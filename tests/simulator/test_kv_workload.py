"""The ``kv`` workload and the Raft/KV invariants, driven over the in-memory cluster of
``tests/consensus/test_subsystem_harness.py`` by a small stand-in for the World (the
World itself gets a consensus subsystem only once the wiring of K_wiring.md is applied)."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from consensus.test_subsystem_harness import Cluster, nid

from foundation_p2p.clock import Now
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.subsystem import ConsensusConfig
from foundation_p2p.consensus.types import Entry
from simulator.kv import KVWorkload, kv_workload, resolve_leader
from simulator.model import WorkloadSpec


@dataclass
class FakeHost:
    name: str
    node: bytes
    cluster: Cluster
    addr: str = ""
    paused: bool = False
    clock: Any = field(default_factory=lambda: SimpleNamespace(now=lambda t: Now(t, t)))

    @property
    def core(self) -> Any:
        m = self.cluster.members[self.node]
        return SimpleNamespace(consensus=m.sub, node_id=self.node) if m.up else None

    @property
    def is_live(self) -> bool:
        return self.core is not None and not self.paused


class FakeWorld:
    """What KVWorkload uses of the World, over a Cluster."""

    def __init__(self, cluster: Cluster, workload: KVWorkload, duration: float) -> None:
        self.cluster = cluster
        self.rng = random.Random(5)
        self.hosts = [FakeHost(f"n{m.id[0]}", m.id, cluster) for m in cluster.members.values()]
        self.workloads = [workload]
        self.settle_at = duration - 2.0
        self.duration = duration
        names = [h.name for h in self.hosts]
        self.scenario = SimpleNamespace(
            cluster=SimpleNamespace(seeds=None, names=names, nodes=len(names))
        )
        self._events: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = itertools.count()

    @property
    def now(self) -> float:
        return self.cluster.t

    def host(self, name: str) -> FakeHost:
        return next(h for h in self.hosts if h.name == name)

    def has_workload(self, kind: str) -> bool:
        return kind == "kv"

    def schedule(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        heapq.heappush(self._events, (t, next(self._seq), fn, arg))

    def pump(self, host: FakeHost) -> None:
        self.cluster.flush(self.cluster.members[host.node])

    def command(self, host: FakeHost, cmd: Any) -> None:
        pass

    def run_until(self, t_end: float, on_time: Callable[[float], None] | None = None) -> None:
        while self.cluster.t < t_end:
            while self._events and self._events[0][0] <= self.cluster.t:
                _, _, fn, arg = heapq.heappop(self._events)
                fn(arg)
            if on_time is not None:
                on_time(self.cluster.t)
            self.cluster.step()


def make(params: dict[str, Any], n: int = 3, seed: int = 3, duration: float = 8.0) -> FakeWorld:
    cfg = ConsensusConfig(bootstrap_expect=3, stabilization_s=1.0, request_timeout_s=1.5)
    cluster = Cluster(n, seed=seed, config=cfg)
    w = KVWorkload(WorkloadSpec("kv", params))
    world = FakeWorld(cluster, w, duration)
    w.on_start(world)  # type: ignore[arg-type]
    return world


def all_checks(w: KVWorkload) -> dict[str, tuple[bool, str]]:
    out = {
        name: w.check_safety(name)
        for name in (
            "raft.election_safety",
            "raft.log_matching",
            "raft.leader_completeness",
            "raft.state_machine_safety",
        )
    }
    out["kv.no_lost_ack"] = w.check_no_lost_ack()
    out["kv.linearizable"] = w.check_linearizable()
    return out


def test_register_kv_adds_the_checkers_and_the_leader_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import simulator.checkers as checkers_mod
    import simulator.nemesis as nemesis_mod

    # simulator.workloads registers them at import: start from a registry without them
    monkeypatch.setattr(checkers_mod, "CHECKERS", {
        k: v for k, v in checkers_mod.CHECKERS.items() if not k.startswith(("raft.", "kv."))
    })
    monkeypatch.setattr(nemesis_mod, "ROLE_RESOLVERS", {
        k: v for k, v in nemesis_mod.ROLE_RESOLVERS.items() if k != "@leader"
    })
    import simulator.kv as kv_sim

    monkeypatch.setattr(kv_sim, "ROLE_RESOLVERS", nemesis_mod.ROLE_RESOLVERS)
    assert "kv.linearizable" not in checkers_mod.CHECKERS
    kv_sim.register_kv()
    kv_sim.register_kv()  # idempotent
    CHECKERS = checkers_mod.CHECKERS
    assert nemesis_mod.ROLE_RESOLVERS["@leader"] is resolve_leader
    for name in (
        "raft.election_safety",
        "raft.log_matching",
        "raft.leader_completeness",
        "raft.state_machine_safety",
        "kv.no_lost_ack",
        "kv.linearizable",
    ):
        assert name in CHECKERS


def test_quiet_run_is_linearizable_and_safe() -> None:
    world = make({"clients": 4, "keys": 2, "rate": 20, "start": "1s"})
    w = kv_workload(world)  # type: ignore[arg-type]
    world.run_until(world.duration)
    checks = all_checks(w)
    assert all(ok for ok, _ in checks.values()), checks
    m = w.metrics()
    assert m["kv.ops_ok"] > 100
    assert m["raft.elections"] >= 1
    assert m["raft.commits_per_s"] > 10
    lines = w.history_lines()
    assert len(lines) == len(w.recorder.events) and '"type":"invoke"' in lines[0]
    assert m["kv.ops_ok"] + m["kv.ops_failed"] + m["kv.ops_info"] >= len(lines) // 2 - 4
    assert resolve_leader(world, "") is not None  # type: ignore[arg-type]


def test_leader_crash_and_restart_keeps_invariants_and_measures_failover() -> None:
    world = make({"clients": 5, "keys": 3, "rate": 20, "start": "1s"}, seed=8, duration=10.0)
    w = kv_workload(world)  # type: ignore[arg-type]
    c = world.cluster
    state: dict[str, Any] = {}

    def faults(t: float) -> None:
        if "crashed" not in state and t >= 3.0:
            leader = c.leader()
            assert leader is not None
            state["crashed"] = leader.id
            c.crash(leader.id)
        if "crashed" in state and "back" not in state and t >= 5.0:
            c.restart(state["crashed"])
            state["back"] = True

    world.run_until(world.duration, faults)
    checks = all_checks(w)
    assert all(ok for ok, _ in checks.values()), checks
    m = w.metrics()
    assert m["raft.elections"] >= 2
    assert 0 < m["raft.failover_s"] < 3.0
    assert m["kv.ops_ok"] > 50
    assert m["kv.ops_info"] + m["kv.ops_failed"] >= 1


def test_election_safety_violation_is_detected() -> None:
    world = make({"clients": 1, "start": "1s"})
    w = kv_workload(world)  # type: ignore[arg-type]
    world.run_until(2.0)
    leader = world.cluster.leader()
    assert leader is not None and leader.sub.raw is not None
    other = next(m for m in world.cluster.members.values() if m is not leader)
    assert other.sub.raw is not None
    other.sub.raw.raft.term = leader.sub.raw.raft.term
    other.sub.raw.raft.role = StateRole.LEADER  # a forged second leader in the same term
    ok, detail = w.check_safety("raft.election_safety")
    assert not ok and "leaders" in detail


def test_state_machine_safety_violation_is_detected() -> None:
    world = make({"clients": 1, "start": "1s"})
    w = kv_workload(world)  # type: ignore[arg-type]
    world.run_until(3.0)
    index = max(w.observer.applied)
    w.observer.on_applied("forged", Entry(99, index, data=b"other"), None)
    ok, _ = w.check_safety("raft.state_machine_safety")
    assert not ok


def test_leader_completeness_violation_is_detected() -> None:
    world = make({"clients": 1, "start": "1s"})
    w = kv_workload(world)  # type: ignore[arg-type]
    world.run_until(2.0)
    leader = world.cluster.leader()
    assert leader is not None and leader.sub.raw is not None
    missing = leader.sub.raw.raft.log.last_index() + 1
    w.observer.committed[missing] = (1, b"x" * 16)
    w.observer.commit_term[missing] = 1
    ok, detail = w.check_safety("raft.leader_completeness")
    assert not ok and "lacks index" in detail


def test_log_matching_violation_is_detected() -> None:
    world = make({"clients": 1, "start": "1s"})
    w = kv_workload(world)  # type: ignore[arg-type]
    world.run_until(2.0)
    # node 2's log gets a different entry 1 (same index and term, other data)
    m = world.cluster.members[nid(2)]
    assert m.sub.raw is not None
    log = m.sub.raw.raft.log
    fake = Entry(1, 1, data=b"forged")
    orig = log.slice

    def forged(lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        out = orig(lo, hi, max_bytes)
        return [fake if e.index == 1 else e for e in out]

    log.slice = forged  # type: ignore[method-assign]
    ok, detail = w.check_safety("raft.log_matching")
    assert not ok and "differ" in detail


def test_non_linearizable_history_is_detected() -> None:
    world = make({"clients": 1, "start": "1s"})
    w = kv_workload(world)  # type: ignore[arg-type]
    world.run_until(3.0)
    t = world.now + 1
    w.recorder.invoke(99, "get", "k0", None, time=t)
    w.recorder.complete(99, "ok", "never-written", time=t + 0.1)
    ok, detail = w.check_linearizable()
    assert not ok and "not linearizable" in detail.lower()


def test_lost_ack_is_detected() -> None:
    world = make({"clients": 2, "start": "1s", "rate": 20})
    w = kv_workload(world)  # type: ignore[arg-type]
    world.run_until(4.0)
    assert w._acked
    beyond = max(
        m.sub.raw.raft.log.last_index() for m in world.cluster.members.values() if m.sub.raw
    )
    w._acked.append((beyond + 5, "n1"))
    ok, detail = w.check_no_lost_ack()
    assert not ok and "lacks index" in detail


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"clients": 0}, "clients"),
        ({"keys": "3"}, "keys"),
        ({"rate": 0}, "rate"),
        ({"reads": 0, "writes": 0, "cas": 0}, "reads"),
        ({"start": 5}, "start"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_parameters_name_their_key(params: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=f"workload kv: {key}"):
        KVWorkload(WorkloadSpec("kv", params))


def random_faults_run(seed: int) -> list[bool]:
    """Crashes (of the leader too; losing unsynced writes, sometimes with a torn tail),
    restarts, isolations, loss and duplication drawn from the seed; every invariant holds
    and the history is linearizable. Returns, per crash, whether writes were unsynced."""
    world = make({"clients": 4, "keys": 2, "rate": 15, "start": "1s"}, seed=seed, duration=14.0)
    w = kv_workload(world)  # type: ignore[arg-type]
    c = world.cluster
    c.loss, c.duplication = 0.02, 0.02
    c.delayed_sync = True
    rng = random.Random(1000 + seed)
    plan: list[tuple[float, str, bytes]] = []
    lost_unsynced: list[bool] = []
    t = 2.0
    while t < 10.0:
        node = nid(rng.randrange(1, 4))
        kind = rng.choice(["crash", "isolate", "crash-leader"])
        if kind == "crash-leader":
            kind, node = "crash", b""  # the leader at that time
        plan.append((t, kind, node))
        t += rng.uniform(1.0, 2.5)
        plan.append((t, "heal", node))  # b"": the node crashed as leader
        t += rng.uniform(0.5, 1.5)

    def faults(now: float) -> None:
        while plan and plan[0][0] <= now:
            _, kind, node = plan.pop(0)
            if not node:
                leader = c.leader()
                node = leader.id if leader is not None else nid(1)
                plan[:] = [(t, k, node if k == "heal" and not n else n) for t, k, n in plan]
            m = c.members[node]
            if kind == "crash" and m.up:
                lost_unsynced.append(bool(m.unsynced))
                c.crash(node, torn=rng.random() < 0.5)
            elif kind == "isolate":
                c.isolate(node)
            elif kind == "heal":
                c.heal()
                if not c.members[node].up:
                    c.restart(node)

    world.run_until(world.duration, faults)
    checks = all_checks(w)
    assert all(ok for ok, _ in checks.values()), checks
    assert w.metrics()["kv.ops_ok"] > 50
    return lost_unsynced


@pytest.mark.parametrize("seed", range(8))
def test_random_faults_keep_every_invariant(seed: int) -> None:
    random_faults_run(seed)


def test_random_faults_do_crash_with_unsynced_writes() -> None:
    # the fault plans above crash nodes (leaders too) while writes are saved but not synced
    # (how often depends on timing: about one seed in four catches a write unsynced)
    lost = [x for seed in range(8, 20) for x in random_faults_run(seed)]
    assert len(lost) >= 6 and any(lost)
