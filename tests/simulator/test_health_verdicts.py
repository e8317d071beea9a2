"""``health.verdicts``: the health monitors of a simulated cluster against the truth.

The CI-sized scenarios (``simulator/scenarios/health-*.toml``) keep the invariant over
several seeds and report what was measured; the run is deterministic; and each check can
fail: a monitor whose rules or figures are deliberately wrong (monkeypatched) breaks it
with a detail naming the problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

import foundation_p2p.health.monitor as monitor_mod
from foundation_p2p.health.monitor import Figures, HealthMonitor, Reason, Status
from simulator.scenario import load_scenario, parse_scenario_text
from simulator.world import RunResult, run_scenario

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "..", "simulator", "scenarios")


def run_file(name: str, seed: int = 1) -> RunResult:
    return run_scenario(load_scenario(os.path.join(SCENARIOS, name)), seed=seed)


def verdict(result: RunResult) -> tuple[bool, str]:
    r = result.invariants["health.verdicts"]
    return r.ok, r.detail


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_paused_node_is_reported_degraded_then_missing_then_healthy(seed: int) -> None:
    result = run_file("health-paused-node.toml", seed)
    ok, detail = verdict(result)
    assert ok, detail
    assert result.ok, {k: v.detail for k, v in result.invariants.items() if not v.ok}
    # the long pause was seen by all four others, degraded then missing
    assert "degraded after max" in detail and "missing after max" in detail
    assert "(n=4)" in detail
    assert "healthy again after" in detail
    # the figures were compared with what the network delivered
    assert "packets/s within" in detail and "error rate monitor" in detail
    assert "suspicions monitor/measured" in detail
    # the static prober's pings give the monitors RTTs: 3 ms each way, 6 ms round trips
    assert "latency p50 monitor 6.00 ms vs measured 6.00 ms" in detail


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_partition_is_reported_as_missing_members_and_heals(seed: int) -> None:
    result = run_file("health-partition-heal.toml", seed)
    ok, detail = verdict(result)
    assert ok, detail
    # six observers, three across the cut each: 18 pairs detected and declared missing
    assert "missing after max" in detail and "(n=18)" in detail
    assert "healthy again after" in detail


def test_the_run_is_deterministic() -> None:
    a = run_file("health-partition-heal.toml", 4)
    b = run_file("health-partition-heal.toml", 4)
    assert a.trace_digest == b.trace_digest
    assert verdict(a) == verdict(b)


def test_same_digest_and_verdict_under_another_hash_seed() -> None:
    def run(hash_seed: str) -> tuple[str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "foundation_p2p", "sim", "run",
             os.path.join(SCENARIOS, "health-partition-heal.toml"), "--seed", "2", "--json"],
            capture_output=True, text=True, timeout=300, check=False,
            env=dict(os.environ, PYTHONHASHSEED=hash_seed),
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        return report["trace_digest"], report["invariants"]["health.verdicts"]["detail"]

    assert run("1") == run("4242")


def test_a_monitor_blind_to_membership_fails_the_invariant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = tuple(r for r in monitor_mod.NODE_RULES if r is not monitor_mod.rule_member_state)
    monkeypatch.setattr(monitor_mod, "NODE_RULES", rules)
    ok, detail = verdict(run_file("health-paused-node.toml"))
    assert not ok
    assert "reports n5 healthy" in detail and "after it was paused" in detail


def test_a_monitor_that_forgets_missing_members_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tuple(r for r in monitor_mod.CLUSTER_RULES
                  if r is not monitor_mod.rule_missing_members)
    monkeypatch.setattr(monitor_mod, "CLUSTER_RULES", rules)
    ok, detail = verdict(run_file("health-partition-heal.toml"))
    assert not ok
    assert "does not report" in detail and "missing" in detail


def test_a_monitor_that_cries_wolf_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def always(v: monitor_mod.NodeView, t: monitor_mod.Thresholds) -> Reason | None:
        if v.is_local or v.member.name != "n2":
            return None
        return Reason("queues", Status.DEGRADED, "its deepest queue holds 5000 items")

    monkeypatch.setattr(monitor_mod, "NODE_RULES", (*monitor_mod.NODE_RULES, always))
    ok, detail = verdict(run_file("health-paused-node.toml"))
    assert not ok
    assert "reports n2 degraded" in detail and "reachable for" in detail


@pytest.mark.parametrize(
    ("field", "factor", "words"),
    [
        ("packets_per_s", 1.5, "packets/s over"),
        # 3 points more (the cluster rule may speak first, when that crosses 5 %)
        ("error_rate", 1.0, "error rate of|were refused here"),
        ("suspicions_per_min", 2.0, "suspicions over the last"),
        ("latency_ms_p50", 2.0, "median latency"),
    ],
)
def test_wrong_figures_fail_the_invariant(
    monkeypatch: pytest.MonkeyPatch, field: str, factor: float, words: str
) -> None:
    real = HealthMonitor.figures

    def skewed(self: HealthMonitor, now: object, rtt_samples: object = ()) -> Figures:
        fig = real(self, now, rtt_samples)  # type: ignore[arg-type]
        value = getattr(fig, field)
        if value is None:
            return fig
        # a suspicion count of 0 doubled is still right: add one too
        extra = {"suspicions_per_min": 1.0, "error_rate": 0.03}.get(field, 0.0)
        return replace(fig, **{field: value * factor + extra})

    monkeypatch.setattr(HealthMonitor, "figures", skewed)
    ok, detail = verdict(run_file("health-paused-node.toml"))
    assert not ok
    assert any(w in detail for w in words.split("|")), detail


def test_the_invariant_is_only_run_where_named() -> None:
    text = """
name = "x"
duration = "10s"
[cluster]
nodes = 3
[[workload]]
kind = "membership"
"""
    result = run_scenario(parse_scenario_text(text, source="x.toml"))
    assert "health.verdicts" not in result.invariants
    named = run_scenario(parse_scenario_text(
        text + '[check]\ninvariants = ["health.verdicts"]\n', source="x.toml"))
    ok, detail = verdict(named)
    assert ok, detail
    assert detail.startswith("10 samples")
