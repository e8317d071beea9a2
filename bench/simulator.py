"""Simulator speed: simulated seconds per wall second on the ping workload.

Runs 10, 100 and 1000 nodes in ``messages`` and ``bytes`` mode, and the bare event-loop
floor (the world's own heap loop popping no-op events) in the same process, and prints one
JSON object as its last line. ``--quick`` uses smaller durations (under a minute in all).

For each run: ``sim_s_per_wall_s`` (whole run, boots included), ``sim_s_per_cpu_s`` (the
same against this process's CPU time: steadier on a shared machine),
``steady_sim_s_per_wall_s`` (after a warm-up of ``WARMUP_S`` virtual seconds),
``events_per_s``, and
``floor_ratio`` = floor events per second / run events per second (how many times more a
run's average event costs than a bare heap pop-and-call).

Goals (issue 3): messages >= 100 sim-s/wall-s at 100 nodes and >= 10 at 1000; bytes >= 20
at 100 nodes. These measure the engine on the minimal ping workload, with SWIM membership
switched off (``[membership] enabled = false``); the simulator's speed on the membership
workload is reported by ``bench/membership.py`` (``sim_s_per_wall_s`` per N).
``--profile NODES MODE`` prints a cProfile of one run instead.

Run: ``.venv/bin/python bench/simulator.py [--quick]``
"""

from __future__ import annotations

import argparse
import cProfile
import heapq
import json
import os
import platform
import pstats
import sys
import time
from typing import Any

# This file is named like the package it measures: drop its own directory from the path so
# ``import simulator`` finds the package (the repository root) rather than this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from simulator.model import ClusterSpec, Scenario, WorkloadSpec  # noqa: E402
from simulator.world import World  # noqa: E402

FULL = {10: 300.0, 100: 60.0, 1000: 20.0}
QUICK = {10: 60.0, 100: 30.0, 1000: 8.0}
WARMUP_S = 2.0
GOALS = {("messages", 100): 100.0, ("messages", 1000): 10.0, ("bytes", 100): 20.0}


def _scenario(nodes: int, duration: float, mode: str) -> Scenario:
    return Scenario(
        name=f"bench-ping-{nodes}",
        text="",
        seed=1,
        duration_s=duration,
        mode=mode,
        cluster=ClusterSpec(nodes=nodes),
        # The engine's own speed, on the minimal ping workload: membership is switched off
        # here (bench/membership.py measures the simulator on the membership workload).
        node_defaults={"membership": {"enabled": False}},
        workloads=(WorkloadSpec("ping"),),
    )


def run_one(nodes: int, duration: float, mode: str) -> dict[str, Any]:
    """One ping run; the whole-run and steady-state speeds."""
    world = World(_scenario(nodes, duration, mode))
    marks: dict[str, float] = {}

    def warm(_: Any) -> None:
        marks["warm"] = time.perf_counter()

    world.schedule(WARMUP_S, warm)
    start = time.perf_counter()
    cpu_start = time.process_time()
    result = world.run()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    out: dict[str, Any] = {
        "nodes": nodes,
        "mode": mode,
        "virtual_s": duration,
        "wall_s": round(wall, 4),
        "events": result.events,
        "events_per_s": round(result.events / wall),
        "sim_s_per_wall_s": round(duration / wall, 2),
        "cpu_s": round(cpu, 4),
        "sim_s_per_cpu_s": round(duration / cpu, 2),
        "ok": result.ok,
        "deliveries": result.metrics["net.delivered"],
    }
    if "warm" in marks and duration > WARMUP_S:
        steady_wall = start + wall - marks["warm"]
        out["steady_sim_s_per_wall_s"] = round((duration - WARMUP_S) / steady_wall, 2)
    return out


def event_loop_floor(n_events: int) -> float:
    """Events per wall second of the world's loop popping no-op events (same heap, same
    dispatch), with every event scheduling the next as real events do."""
    world = World(_scenario(1, 1e9, "messages"))
    heap = world._heap
    heap.clear()
    remaining = [n_events]

    def noop(arg: Any) -> None:
        remaining[0] -= 1
        if remaining[0] > 0:
            world._seq += 1
            heapq.heappush(heap, (world.now + 0.001, world._seq, noop, arg))

    # A realistic heap size: one pending event per node of a 1000-node run.
    for i in range(1000):
        world._seq += 1
        heapq.heappush(heap, (i * 1e-6, world._seq, noop, None))
    start = time.perf_counter()
    world._loop(start)
    wall = time.perf_counter() - start
    return world.events / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller durations (< 1 min)")
    parser.add_argument(
        "--profile", nargs=2, metavar=("NODES", "MODE"), help="print a cProfile of one run"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.profile:
        nodes, mode = int(args.profile[0]), args.profile[1]
        prof = cProfile.Profile()
        prof.runcall(run_one, nodes, sizes[nodes], mode)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0
    floor = event_loop_floor(300_000 if args.quick else 1_000_000)
    print(f"event-loop floor: {floor:,.0f} events/s", file=sys.stderr)
    runs = []
    for mode in ("messages", "bytes"):
        for nodes, duration in sizes.items():
            if mode == "bytes" and nodes == 1000:
                duration = duration / 2
            r = run_one(nodes, duration, mode)
            r["floor_ratio"] = round(floor / r["events_per_s"], 2)
            events_per_sim_s = r["events"] / duration
            r["floor_sim_s_per_wall_s"] = round(floor / events_per_sim_s, 1)
            goal = GOALS.get((mode, nodes))
            if goal is not None:
                speed = r.get("steady_sim_s_per_wall_s", r["sim_s_per_wall_s"])
                r["goal"] = goal
                r["meets_goal"] = speed >= goal
            runs.append(r)
            print(
                f"{mode:8} {nodes:5} nodes: {r['sim_s_per_wall_s']:8.2f} sim-s/wall-s "
                f"(steady {r.get('steady_sim_s_per_wall_s', '-')}, "
                f"per CPU-s {r['sim_s_per_cpu_s']}), "
                f"{r['events_per_s']:,} events/s, floor ratio {r['floor_ratio']}",
                file=sys.stderr,
            )
    report = {
        "bench": "simulator",
        "quick": args.quick,
        "python": platform.python_version(),
        "floor_events_per_s": round(floor),
        "runs": runs,
    }
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
