"""The ``kv`` workload through ``sim run``'s path (World, real NodeCores, WAL on virtual
disks): the CI-sized kv scenarios and a random-faults sweep keep every Raft and KV
invariant, the history file is written, and the figures are measured.

The scenario files are ``simulator/scenarios/kv-*.toml``; the sweep runs
``kv-random-faults.toml`` as ``sim sweep --random-faults`` does (``sweep_one`` per seed).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from simulator.cli import sweep_one
from simulator.scenario import load_scenario
from simulator.world import RunResult, run_scenario

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "..", "simulator", "scenarios")
RAFT_KV = {
    "raft.election_safety", "raft.log_matching", "raft.leader_completeness",
    "raft.state_machine_safety", "kv.no_lost_ack", "kv.linearizable",
}

KV_FILES = [
    "kv-basic.toml", "kv-leader-isolation.toml", "kv-majorities-ring.toml",
    "kv-crash-restart.toml", "kv-skew.toml", "kv-lossy.toml",
    "kv-membership-change-partition.toml",
]

SWEEP_FILE = os.path.join(SCENARIOS, "kv-random-faults.toml")


@pytest.fixture(autouse=True)
def _private_checker_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kv world registers the kv checkers and the ``@leader`` role; keep that to this
    module (test_kv_workload.py checks that registering adds them)."""
    import simulator.checkers as checkers_mod
    import simulator.kv as kv_sim
    import simulator.nemesis as nemesis_mod

    monkeypatch.setattr(checkers_mod, "CHECKERS", dict(checkers_mod.CHECKERS))
    monkeypatch.setattr(nemesis_mod, "ROLE_RESOLVERS", dict(nemesis_mod.ROLE_RESOLVERS))
    monkeypatch.setattr(kv_sim, "ROLE_RESOLVERS", nemesis_mod.ROLE_RESOLVERS)


def run_file(name: str, *, seed: int = 1, history: str | None = None) -> RunResult:
    result = run_scenario(
        load_scenario(os.path.join(SCENARIOS, name)), seed=seed, history_path=history
    )
    failed = {k: v.detail for k, v in result.invariants.items() if not v.ok}
    assert result.ok, failed
    assert set(result.invariants) >= RAFT_KV
    return result


@pytest.mark.parametrize("name", KV_FILES)
def test_every_kv_scenario_keeps_every_invariant(name: str) -> None:
    r = run_file(name)
    m = r.metrics
    assert m["kv.ops_ok"] > 100
    assert m["raft.elections"] >= 1


def test_leader_isolation_fails_over_within_a_few_election_timeouts() -> None:
    m = run_file("kv-leader-isolation.toml").metrics
    assert m["raft.failover_s_count"] >= 1
    # election timeout is 10 ticks x 50 ms, randomized in [0.5, 1.0) s
    assert m["raft.failover_s_mean"] <= 3.0


def test_history_file_is_the_kv_workloads_history(tmp_path: Any) -> None:
    path = str(tmp_path / "h.jsonl")
    scenario = load_scenario(SWEEP_FILE)
    result = run_scenario(scenario, seed=3, history_path=path)
    assert result.ok, {k: v.detail for k, v in result.invariants.items() if not v.ok}
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) >= 2 * result.metrics["kv.ops_ok"]  # an invoke and a completion each
    assert {"invoke", "ok"} <= {str(x.get("type")) for x in lines}


def _sweep(seeds: range) -> list[int]:
    """``sim sweep --random-faults`` in this process (sweep_one per seed); the seeds
    that failed."""
    scenario = load_scenario(SWEEP_FILE)
    failed = [s for s in seeds if not sweep_one(scenario, s, "bytes", True)["ok"]]
    # the sweep did inject faults (the same runs, metrics read directly)
    faults = sum(
        run_scenario(scenario, seed=s, random_faults=True).metrics["faults.applied"]
        for s in seeds[:3]
    )
    assert faults >= 3
    return failed


def test_random_faults_sweep_keeps_every_invariant() -> None:
    assert _sweep(range(1, 25)) == []


@pytest.mark.soak
def test_random_faults_sweep_soak() -> None:
    assert _sweep(range(100, 300)) == []
