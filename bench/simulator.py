"""Simulator speed: simulated seconds per wall second on the ping and membership workloads.

Runs the ping workload at 10, 100 and 1000 nodes and the membership workload (SWIM +
Lifeguard, the issue 4 cluster: 1 % loss, staggered joins through 3 seeds at 1000 nodes) at
100 and 1000 nodes, each in ``messages`` and ``bytes`` mode, and the bare event-loop floor
(the world's own heap loop popping no-op events) in the same process, and prints one JSON
object as its last line. ``--quick`` uses smaller durations and skips the 1000-node
membership runs (a 1000-node join costs minutes of CPU in bytes mode).

For each run: ``sim_s_per_wall_s`` (whole run, boots included), ``sim_s_per_cpu_s`` (the
same against this process's CPU time: steadier on a shared machine),
``steady_sim_s_per_wall_s`` (after a warm-up of ``WARMUP_S`` virtual seconds),
``events_per_s``, and
``floor_ratio`` = floor events per second / run events per second (how many times more a
run's average event costs than a bare heap pop-and-call).

Goals (issue 3): messages >= 100 sim-s/wall-s at 100 nodes and >= 10 at 1000; bytes >= 20
at 100 nodes. These measure the engine on the minimal ping workload, with SWIM membership
switched off (``[membership] enabled = false``).

Membership runs (``"workload": "membership"``) report the same figures plus ``join_*``
(the first ``warm_s`` virtual seconds: every node boots and learns every other, N^2
announcements) and ``steady_*`` (after it: probes, acks, gossip and push-pull of a settled
cluster). At 1000 nodes the default window (40..60 s) is still the join's gossip draining:
each node sends each of the 1000 new records retransmit_mult x ceil(log10(N+1)) = 16 times,
about 3 minutes of full gossip rounds; ``--membership-warm 240 --membership-duration 300``
measures the quiet cluster after it. Goal (issue 4 work): >= 3 steady sim-s per wall-s at
1000 nodes in bytes mode, more in messages mode.

``--workload ping|membership|all`` picks the runs (default all);
``--profile NODES MODE [WORKLOAD]`` prints a cProfile of one run instead.

Run: ``.venv/bin/python bench/simulator.py [--quick] [--workload membership]``
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
from simulator.scenario import parse_scenario_text  # noqa: E402
from simulator.world import World  # noqa: E402

FULL = {10: 300.0, 100: 60.0, 1000: 20.0}
QUICK = {10: 60.0, 100: 30.0, 1000: 8.0}
WARMUP_S = 2.0
GOALS = {("messages", 100): 100.0, ("messages", 1000): 10.0, ("bytes", 100): 20.0}
MEMBERSHIP_FULL = {100: (60.0, 20.0), 1000: (60.0, 40.0)}
"""Membership runs: nodes -> (virtual seconds, warm-up seconds covering the join)."""
MEMBERSHIP_QUICK = {100: (30.0, 15.0)}
MEMBERSHIP_GOALS = {("bytes", 1000): 3.0}
"""Steady sim-s per wall-s wanted for the membership workload."""


def membership_scenario(nodes: int, duration: float, mode: str) -> Scenario:
    """The issue 4 crash cluster without the crash: LAN profile, 1-5 ms, 1 % loss; 1000
    nodes boot 20 ms apart (as membership-crash-1000-soak.toml)."""
    start = 'start = "staggered"\nstart_interval = "20ms"\n' if nodes > 100 else ""
    text = f"""
name = "bench-membership-{nodes}"
seed = 1
duration = "{duration}s"
mode = "{mode}"
[cluster]
nodes = {nodes}
profile = "lan"
{start}[network]
latency = "1ms..5ms"
loss = 0.01
[[workload]]
kind = "membership"
[check]
settle = "0s"
"""
    return parse_scenario_text(text, source=f"<bench membership {nodes}>")


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


def run_one(
    nodes: int, duration: float, mode: str, workload: str = "ping", warm_s: float = WARMUP_S
) -> dict[str, Any]:
    """One run; the whole-run, warm-up (join) and steady-state speeds."""
    if workload == "membership":
        world = World(membership_scenario(nodes, duration, mode))
    else:
        world = World(_scenario(nodes, duration, mode))
    marks: dict[str, float] = {}

    def warm(_: Any) -> None:
        marks["warm"] = time.perf_counter()
        marks["warm_cpu"] = time.process_time()

    world.schedule(warm_s, warm)
    start = time.perf_counter()
    cpu_start = time.process_time()
    result = world.run()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    out: dict[str, Any] = {
        "workload": workload,
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
    if "warm" in marks and duration > warm_s:
        steady_wall = start + wall - marks["warm"]
        steady_cpu = cpu_start + cpu - marks["warm_cpu"]
        out["warm_s"] = warm_s
        out["steady_sim_s_per_wall_s"] = round((duration - warm_s) / steady_wall, 2)
        out["steady_sim_s_per_cpu_s"] = round((duration - warm_s) / steady_cpu, 2)
        if workload == "membership":
            out["join_wall_s"] = round(marks["warm"] - start, 2)
            out["join_cpu_s"] = round(marks["warm_cpu"] - cpu_start, 2)
            out["join_sim_s_per_cpu_s"] = round(warm_s / out["join_cpu_s"], 3)
    if workload == "membership":
        m = result.metrics
        out["invariants_failed"] = sorted(k for k, v in result.invariants.items() if not v.ok)
        out["membership_events"] = m.get("membership.events")
        out["trace_lines"] = m.get("sim.trace_lines")
        out["trace_digest"] = result.trace_digest
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


def _finish_run(r: dict[str, Any], floor: float, goal: float | None) -> None:
    duration = r["virtual_s"]
    r["floor_ratio"] = round(floor / r["events_per_s"], 2)
    events_per_sim_s = r["events"] / duration
    r["floor_sim_s_per_wall_s"] = round(floor / events_per_sim_s, 1)
    if goal is not None:
        speed = r.get("steady_sim_s_per_wall_s", r["sim_s_per_wall_s"])
        r["goal"] = goal
        r["meets_goal"] = speed >= goal
    print(
        f"{r['workload']:10} {r['mode']:8} {r['nodes']:5} nodes: "
        f"{r['sim_s_per_wall_s']:8.2f} sim-s/wall-s "
        f"(steady {r.get('steady_sim_s_per_wall_s', '-')}, "
        f"per CPU-s {r['sim_s_per_cpu_s']}, steady per CPU-s "
        f"{r.get('steady_sim_s_per_cpu_s', '-')}), "
        f"{r['events_per_s']:,} events/s, floor ratio {r['floor_ratio']}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller durations")
    parser.add_argument(
        "--workload", choices=("ping", "membership", "all"), default="all",
        help="which runs (default: all)",
    )
    parser.add_argument(
        "--nodes", type=int, action="append", help="only these cluster sizes (repeatable)"
    )
    parser.add_argument(
        "--mode", choices=("messages", "bytes"), action="append",
        help="only these delivery modes (repeatable)",
    )
    parser.add_argument(
        "--membership-duration", type=float, metavar="S",
        help="virtual seconds of the membership runs (default: per size, see MEMBERSHIP_FULL)",
    )
    parser.add_argument(
        "--membership-warm", type=float, metavar="S",
        help="warm-up seconds of the membership runs; e.g. 240 at 1000 nodes measures the "
        "quiet cluster after the join's gossip has drained",
    )
    parser.add_argument(
        "--profile", nargs="+", metavar="ARG",
        help="NODES MODE [WORKLOAD]: print a cProfile of one run",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    member_sizes = MEMBERSHIP_QUICK if args.quick else MEMBERSHIP_FULL
    if args.profile:
        nodes, mode = int(args.profile[0]), args.profile[1]
        workload = args.profile[2] if len(args.profile) > 2 else "ping"
        prof = cProfile.Profile()
        if workload == "membership":
            duration, warm = member_sizes[nodes]
            prof.runcall(run_one, nodes, duration, mode, "membership", warm)
        else:
            prof.runcall(run_one, nodes, sizes[nodes], mode)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0
    floor = event_loop_floor(300_000 if args.quick else 1_000_000)
    print(f"event-loop floor: {floor:,.0f} events/s", file=sys.stderr)
    runs = []
    modes = tuple(args.mode or ("messages", "bytes"))
    if args.nodes:
        sizes = {n: d for n, d in sizes.items() if n in args.nodes}
        member_sizes = {n: d for n, d in MEMBERSHIP_FULL.items() if n in args.nodes}
    if args.workload in ("ping", "all"):
        for mode in modes:
            for nodes, duration in sizes.items():
                if mode == "bytes" and nodes == 1000:
                    duration = duration / 2
                r = run_one(nodes, duration, mode)
                _finish_run(r, floor, GOALS.get((mode, nodes)))
                runs.append(r)
    if args.membership_duration is not None or args.membership_warm is not None:
        member_sizes = {
            n: (args.membership_duration or d, args.membership_warm or w)
            for n, (d, w) in member_sizes.items()
        }
    if args.workload in ("membership", "all"):
        for mode in modes:
            for nodes, (duration, warm) in member_sizes.items():
                r = run_one(nodes, duration, mode, "membership", warm)
                _finish_run(r, floor, MEMBERSHIP_GOALS.get((mode, nodes)))
                runs.append(r)
    report = {
        "bench": "simulator",
        "quick": args.quick,
        "workload": args.workload,
        "python": platform.python_version(),
        "floor_events_per_s": round(floor),
        "runs": runs,
    }
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
