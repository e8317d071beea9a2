"""Determinism: same scenario and seed give the same trace digest, in-process and across
processes with different hash seeds; different seeds give different event streams."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from simulator.scenario import parse_scenario_text
from simulator.world import run_scenario

REPO = Path(__file__).resolve().parents[2]

SCENARIO_TEXT = """
name = "determinism"
seed = 3
duration = "30s"
mode = "bytes"

[cluster]
nodes = 6

[network]
latency = "1ms..20ms"
loss = 0.02
duplicate = 0.02
reorder = 0.05

[random_faults]
max_concurrent = 2
mean_interval = "3s"
max_duration = "4s"
ops = ["partition", "isolate", "crash", "pause", "loss", "latency", "clog", "skew", "swizzle"]

[[fault]]
at = "4s"
op = "partition"
shape = "majorities-ring"
for = "3s"

[[workload]]
kind = "ping"

[check]
settle = "8s"
"""

CHILD = """
import sys
from simulator.scenario import parse_scenario_text
from simulator.world import run_scenario
text = sys.stdin.read()
sc = parse_scenario_text(text, source="<stdin>")
r = run_scenario(sc, seed=int(sys.argv[1]), mode=sys.argv[2], random_faults=True)
print(r.trace_digest, r.events)
"""


def _digest_in_subprocess(hash_seed: str, seed: int, mode: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(seed), mode],
        input=SCENARIO_TEXT, capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
        check=True,
    )
    return out.stdout.strip()


def test_same_seed_twice_gives_the_same_digest() -> None:
    sc = parse_scenario_text(SCENARIO_TEXT, source="<test>")
    a = run_scenario(sc, random_faults=True)
    b = run_scenario(sc, random_faults=True)
    assert a.trace_digest == b.trace_digest
    assert a.events == b.events
    assert a.metrics["faults.applied"] > 3


def test_same_seed_in_processes_with_different_hash_seeds_gives_the_same_digest() -> None:
    for mode in ("bytes", "messages"):
        first = _digest_in_subprocess("1", 9, mode)
        second = _digest_in_subprocess("4242", 9, mode)
        assert first == second, mode
    sc = parse_scenario_text(SCENARIO_TEXT, source="<test>")
    here = run_scenario(sc, seed=9, mode="messages", random_faults=True)
    assert f"{here.trace_digest} {here.events}" == first


def test_different_seeds_give_different_event_streams(tmp_path: Path) -> None:
    sc = parse_scenario_text(SCENARIO_TEXT, source="<test>")
    bodies = []
    for seed in (1, 2):
        path = tmp_path / f"s{seed}.jsonl"
        run_scenario(sc, seed=seed, trace_path=str(path))
        bodies.append(path.read_text().split("\n", 1)[1])
    assert bodies[0] != bodies[1]


def test_the_mode_and_random_faults_change_the_digest() -> None:
    sc = parse_scenario_text(SCENARIO_TEXT, source="<test>")
    digests = {
        run_scenario(sc, mode="bytes").trace_digest,
        run_scenario(sc, mode="messages").trace_digest,
        run_scenario(sc, random_faults=True).trace_digest,
    }
    assert len(digests) == 3
