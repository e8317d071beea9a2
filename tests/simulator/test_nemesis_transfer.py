"""The ``transfer-leader`` fault op: leadership moves under a KV load, every Raft and KV
invariant holds, and the leader really changes.

The scenario file ``simulator/scenarios/kv-transfer-under-load.toml`` is run when it is
shipped (it waits for ``simulator/capabilities.py`` to drop the ``transfer-leader``
pending line); the same schedule written inline runs now with
``check_capabilities=False``.
"""

from __future__ import annotations

import os

import pytest

from simulator.scenario import load_scenario, parse_scenario_text
from simulator.world import RunResult, World, run_scenario

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "..", "simulator", "scenarios")
RAFT_KV = {
    "raft.election_safety", "raft.log_matching", "raft.leader_completeness",
    "raft.state_machine_safety", "kv.no_lost_ack", "kv.linearizable",
}

INLINE = """
name = "kv-transfer-inline"
seed = 1
duration = "{duration}"
mode = "bytes"

[cluster]
nodes = {nodes}

[network]
latency = "1ms..5ms"

[[fault]]
at = "5s"
every = "2s"
until = "{until}"
op = "transfer-leader"
node = "@leader"

[[fault]]
at = "{named_at}"
op = "transfer-leader"
node = "{named}"

[[workload]]
kind = "kv"
clients = 3
keys = 3
rate = 15
start = "3s"

[check]
settle = "4s"
"""


@pytest.fixture(autouse=True)
def _private_checker_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the kv checkers and the ``@leader`` role a kv world registers to this module."""
    import simulator.checkers as checkers_mod
    import simulator.kv as kv_sim
    import simulator.nemesis as nemesis_mod

    monkeypatch.setattr(checkers_mod, "CHECKERS", dict(checkers_mod.CHECKERS))
    monkeypatch.setattr(nemesis_mod, "ROLE_RESOLVERS", dict(nemesis_mod.ROLE_RESOLVERS))
    monkeypatch.setattr(kv_sim, "ROLE_RESOLVERS", nemesis_mod.ROLE_RESOLVERS)




def _check(result: RunResult) -> None:
    failed = {k: v.detail for k, v in result.invariants.items() if not v.ok}
    assert result.ok, (result.seed, failed, result.internal_error)
    assert set(result.invariants) >= RAFT_KV


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_leadership_moves_under_load_and_every_invariant_holds(seed: int) -> None:
    text = INLINE.format(duration="20s", nodes=3, until="14s", named_at="8.5s", named="n2")
    r = run_scenario(parse_scenario_text(text, source="inline", check_capabilities=False),
                     seed=seed)
    _check(r)
    m = r.metrics
    transfers = m["faults.applied"]
    assert transfers == 6  # five periodic, one named
    # each transfer that found a leader made a new one: one election per transfer at least
    refused = sum(
        m.get(f"faults.transfer_leader.{k}", 0) for k in ("refused", "no_leader", "already")
    )
    assert m["raft.elections"] >= 1 + transfers - refused
    assert refused <= 1
    assert m["kv.ops_ok"] > 300


def test_transfer_to_a_named_node_makes_it_the_leader() -> None:
    from simulator.kv import resolve_leader

    text = INLINE.format(duration="12s", nodes=3, until="5.5s", named_at="7s", named="n3")
    scenario = parse_scenario_text(text, source="inline", check_capabilities=False)
    before: list[str | None] = []
    for seed in (1, 2, 3, 4):
        world = World(scenario, seed=seed)
        seen: list[str | None] = []

        def look(_: object, world: World = world, seen: list[str | None] = seen) -> None:
            seen.append(resolve_leader(world, ""))

        # the leader at 6.5 s (before the named transfer) and at 8 s (after it)
        world.schedule(6.5, look, None)
        world.schedule(8.0, look, None)
        _check(world.run())
        assert seen[1] == "n3", (seed, seen)
        before.append(seen[0])
    assert any(name != "n3" for name in before), before  # leadership did move to n3


def test_transfer_without_a_leader_is_counted_not_an_error() -> None:
    text = INLINE.format(duration="6s", nodes=3, until="4s", named_at="0.1s", named="n1")
    text = text.replace('at = "5s"\nevery', 'at = "0.2s"\nevery')
    r = run_scenario(parse_scenario_text(text, source="inline", check_capabilities=False),
                     seed=1)
    _check(r)
    assert r.metrics["faults.transfer_leader.no_leader"] >= 1


def test_random_faults_can_draw_transfer_leader() -> None:
    text = INLINE.format(duration="16s", nodes=3, until="6s", named_at="6s", named="n1")
    text += """
[random_faults]
max_concurrent = 1
mean_interval = "1s"
max_duration = "2s"
end_before = "11s"
ops = ["transfer-leader"]
"""
    scenario = parse_scenario_text(text, source="inline", check_capabilities=False)
    r = run_scenario(scenario, seed=5, random_faults=True)
    _check(r)
    assert r.metrics["faults.applied"] >= 5


def _shipped(name: str) -> str:
    path = os.path.join(SCENARIOS, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is staged until capabilities.py drops transfer-leader")
    return path


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shipped_scenario_keeps_every_invariant(seed: int) -> None:
    r = run_scenario(load_scenario(_shipped("kv-transfer-under-load.toml")), seed=seed)
    _check(r)
    assert r.metrics["raft.elections"] >= 1 + r.metrics["faults.applied"] - 1
    assert r.metrics["kv.ops_ok"] > 500


@pytest.mark.soak
def test_shipped_soak_scenario_keeps_every_invariant() -> None:
    r = run_scenario(load_scenario(_shipped("kv-transfer-under-load-soak.toml")), seed=1)
    _check(r)
    assert r.metrics["raft.elections"] >= 20
