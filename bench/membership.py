"""Membership (SWIM + Lifeguard) in the simulator, and on real UDP next to ``swim-protocol``.

Prints one JSON object as its last line:

- ``crash``: for N = 10, 100, 1000, a cluster on a LAN with 1 % loss where one node
  crashes: ``first_suspect_s`` (crash to the first suspicion anywhere) next to SWIM's
  theory (e/(e-1) probe periods to the first probe, plus the probe timeout),
  ``full_detection_s`` (crash to every running member marking it failed) next to the
  Lifeguard suspicion window, ``false_positives``,
  ``bytes_per_member_per_s`` (every byte on the wire, sealed, per running member, and
  ``quiet_bytes_per_member_per_s``, the same once the views agree after the crash; bytes
  mode only, so N = 1000 gets a shorter bytes-mode run of its own), simulated seconds per
  wall second;
- ``slow_node``: the Lifeguard ablation. One node of 100 is slow (the simulator's ``slow``
  fault: its message handler starved 4 s of every 10 s while its timers fire on time, a
  bounded tail-drop receive queue, the backlog drained at 20 datagrams/s) at 1 % loss, with
  Lifeguard and without (classic SWIM): false failure declarations of each
  (``membership.false_positives``: MemberFailed events about members that were not
  excused, summed over the members reporting them), split by subject (the slow node, the
  healthy others) and counted as distinct declarations (subject, incarnation), false
  suspicions, their ratios next to the paper's "more than 50x", the slow node's receive
  queue (drops, lag), and Lifeguard's cost in detection latency (the same crash with and
  without it); a control where the slow node's timers wait behind its datagrams (a starved
  single-threaded loop) instead of firing on time; full size only, a sweep of the drain
  rate (how slow the recovery is);
- ``slow_links``: another variant of the ablation: one node whose links take 1..3 s each
  way, with Lifeguard and without: false failures and false suspicions;
- ``partition_heal``: halves cut for 60 s (quick: 30 s), then healed: time until every
  view agrees again;
- ``join_wave``: staggered joins through 3 seeds, then metadata updates: gossip rounds
  until an update reached 99.99 % of the nodes (Serf's model: 11 rounds at 1000 nodes);
- ``udp``: ``bench/membership_udp.py``'s ``run(quick)`` (our 5-node cluster on 127.0.0.1
  vs PyPI ``swim-protocol``), or ``{"skipped": reason}``.

Full size uses the shipped ``*-soak.toml`` scenarios (one virtual hour for the slow node);
``--quick`` uses smaller ones and skips N = 1000 (under a minute in all, the UDP part
included).
Run: ``.venv/bin/python bench/membership.py [--quick] [--no-udp]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, _ROOT)

from foundation_p2p.membership.config import MembershipConfig  # noqa: E402
from simulator.scenario import load_scenario, parse_scenario_text  # noqa: E402
from simulator.trace import TraceSink  # noqa: E402
from simulator.world import RunResult, World  # noqa: E402

SCENARIOS = os.path.join(_ROOT, "simulator", "scenarios")
LAN = MembershipConfig()
E_FACTOR = math.e / (math.e - 1.0)
QUICK_SKIP_1000 = (
    "--quick: a 1000-node join alone takes minutes of wall time (every node verifies and "
    "records 999 announcements); run without --quick"
)


def crash_text(
    nodes: int, *, mode: str, crash_at_s: float | None, duration_s: float,
    lifeguard: bool = True,
) -> str:
    """A crash scenario like ``membership-crash*.toml`` for ``nodes`` nodes (no crash when
    ``crash_at_s`` is None; classic SWIM without ``lifeguard``)."""
    start = ""
    if nodes > 100:
        start = 'start = "staggered"\nstart_interval = "20ms"\n'
    fault = ""
    if crash_at_s is not None:
        fault = f'[[fault]]\nat = "{crash_at_s}s"\nop = "crash"\nnode = "n{nodes // 2}"\n'
    return f"""
name = "bench-membership-crash-{nodes}"
duration = "{duration_s}s"
mode = "{mode}"
[cluster]
nodes = {nodes}
{start}[network]
latency = "1ms..5ms"
loss = 0.01
[node.membership]
lifeguard = {str(lifeguard).lower()}
{fault}[[workload]]
kind = "membership"
[check]
settle = "5s"
"""


def _ablation_text(kind: str, nodes: int, lifeguard: bool, duration_s: float, fault: str) -> str:
    """A Lifeguard-vs-classic scenario: node n5 gets ``fault`` (a [[fault]] table body)."""
    return f"""
name = "bench-membership-{kind}-{'lifeguard' if lifeguard else 'classic'}-{nodes}"
duration = "{duration_s}s"
mode = "messages"
[cluster]
nodes = {nodes}
[network]
latency = "1ms..5ms"
loss = 0.01
[node.membership]
lifeguard = {str(lifeguard).lower()}
[[fault]]
at = "10s"
node = "n5"
{fault}
[[workload]]
kind = "membership"
[check]
settle = "5s"
"""


SLOW_NODE = "n5"
"""The slow node of the ``membership-slow-node*.toml`` scenarios."""


def slow_text(
    *, lifeguard: bool, duration_s: float | None = None, drain_rate: float | None = None,
    timers: str | None = None,
) -> str:
    """The shipped full-size slow-node scenario (``membership-slow-node[-classic]-soak.toml``),
    optionally shortened or with another drain rate: the bench runs what the files say."""
    name = "membership-slow-node-soak.toml" if lifeguard else (
        "membership-slow-node-classic-soak.toml")
    with open(os.path.join(SCENARIOS, name), encoding="utf-8") as f:
        text = f.read()
    if duration_s is not None:
        text = _replace_once(text, 'duration = "3630s"', f'duration = "{duration_s:g}s"')
    if drain_rate is not None:
        text = _replace_once(text, "drain_rate = 20\n", f"drain_rate = {drain_rate:g}\n")
    if timers is not None:
        text = _replace_once(text, 'timers = "on_time"', f'timers = "{timers}"')
    return text


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"the slow-node scenario no longer holds {old!r} once")
    return text.replace(old, new)


class FailureLog:
    """Counts the MemberFailed events of a run from its trace lines, by subject, and the
    distinct declarations (subject, incarnation) among them."""

    def __init__(self) -> None:
        self.about: dict[str, int] = {}
        self.declarations: set[tuple[str, int]] = set()

    def see(self, line: str) -> None:
        if '"type":"MemberFailed"' not in line:
            return
        member = json.loads(line)["data"]["member"]
        name = member["name"]
        self.about[name] = self.about.get(name, 0) + 1
        self.declarations.add((name, int(member["inc"])))

    def split(self, slow: str) -> dict[str, int]:
        """Events about the slow node, about the others, and distinct declarations of each."""
        on_slow = self.about.get(slow, 0)
        return {
            "failed_events_about_slow_node": on_slow,
            "failed_events_about_healthy_nodes": sum(self.about.values()) - on_slow,
            "declarations_about_slow_node": sum(1 for n, _ in self.declarations if n == slow),
            "declarations_about_healthy_nodes": sum(
                1 for n, _ in self.declarations if n != slow
            ),
        }


def run_world(
    text_or_path: str, *, seed: int = 1, failures: FailureLog | None = None
) -> tuple[RunResult, float]:
    """Run a scenario (TOML text or a file path); the result and its wall seconds.
    ``failures`` sees every trace line (to count MemberFailed events)."""
    if text_or_path.endswith(".toml"):
        scenario = load_scenario(text_or_path)
    else:
        scenario = parse_scenario_text(text_or_path, source="<bench>")
    sink = TraceSink()
    if failures is not None:
        append = sink.line
        see = failures.see

        def line(text: str) -> None:
            see(text)
            append(text)

        sink.line = line
    start = time.perf_counter()
    result = World(scenario, seed=seed, sink=sink).run()
    return result, time.perf_counter() - start


def _failed(result: RunResult) -> list[str]:
    return sorted(k for k, v in result.invariants.items() if not v.ok)


def _pick(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {
        k[len(prefix) + 1:]: round(v, 4)
        for k, v in metrics.items()
        if k.startswith(prefix + "_") and not k.endswith("_count")
    }


def suspicion_window_s(nodes: int) -> tuple[float, float]:
    """Lifeguard's (min, max) suspicion timeout for ``nodes`` members (lan profile)."""
    low = LAN.suspicion_mult * max(1.0, math.log10(nodes)) * LAN.probe_interval_s
    return low, LAN.suspicion_max_mult * low


def bench_crash(nodes: int, quick: bool) -> dict[str, Any]:
    """One crash among ``nodes``: detection, false positives, bandwidth, speed."""
    if quick:
        plan = {10: ("bytes", 10.0, 45.0), 100: ("bytes", 15.0, 45.0),
                1000: ("messages", 30.0, 60.0)}
    else:
        plan = {10: ("bytes", 15.0, 60.0), 100: ("bytes", 40.0, 120.0),
                1000: ("messages", 80.0, 150.0)}
    mode, crash_at, duration = plan[nodes]
    result, wall = run_world(crash_text(nodes, mode=mode, crash_at_s=crash_at,
                                        duration_s=duration))
    m = result.metrics
    low, high = suspicion_window_s(nodes - 1)
    out: dict[str, Any] = {
        "nodes": nodes,
        "mode": mode,
        "virtual_s": duration,
        "ok": result.ok,
        "failed_invariants": _failed(result),
        "first_suspect_s": m.get("membership.first_suspect_s_mean"),
        "first_suspect_theory_s": round(
            E_FACTOR * LAN.probe_interval_s + LAN.probe_timeout_s, 3
        ),
        "full_detection_s": m.get("membership.full_detection_s_mean"),
        "suspicion_window_s": [round(low, 3), round(high, 3)],
        "detection_bound_s": round(E_FACTOR * LAN.probe_interval_s + LAN.probe_interval_s
                                   + high, 3),
        "detections_incomplete": m.get("membership.detections_incomplete"),
        "false_positives": m.get("membership.false_positives"),
        "false_suspicions": m.get("membership.false_suspicions"),
        "sim_s_per_wall_s": round(duration / wall, 2),
        "wall_s": round(wall, 2),
    }
    bandwidth = m.get("membership.bytes_per_member_per_s")
    if bandwidth is None:
        # messages mode carries no byte sizes: measure bandwidth in a short bytes-mode run
        # of the same cluster without the crash.
        short = 20.0 if quick else 40.0
        bres, bwall = run_world(crash_text(nodes, mode="bytes", crash_at_s=None,
                                           duration_s=short))
        bandwidth = bres.metrics.get("membership.bytes_per_member_per_s")
        m = dict(m, **{k: v for k, v in bres.metrics.items() if "bytes_per_member" in k})
        out["bandwidth_run"] = {"mode": "bytes", "virtual_s": short, "wall_s": round(bwall, 2),
                                "ok": bres.ok, "failed_invariants": _failed(bres),
                                "crash": False,
                                "note": "join-dominated: every node pulls the full state; at "
                                        "1000 nodes a few views still miss a member at 40 s "
                                        "(push-pull repairs them, every 180 s at this size)"}
    out["bytes_per_member_per_s"] = None if bandwidth is None else round(bandwidth, 1)
    quiet = m.get("membership.quiet_bytes_per_member_per_s")
    out["quiet_bytes_per_member_per_s"] = None if quiet is None else round(quiet, 1)
    return out


def _slow_run(text: str) -> dict[str, Any]:
    failures = FailureLog()
    result, wall = run_world(text, failures=failures)
    m = result.metrics
    out: dict[str, Any] = {
        "nodes": result.nodes,
        "virtual_s": result.virtual_seconds,
        "ok": result.ok,
        "failed_invariants": _failed(result),
        "false_positives": m.get("membership.false_positives", 0),
        "false_suspicions": m.get("membership.false_suspicions", 0),
        "recv_queue_dropped": m.get("node.recv_queue_dropped", 0),
        "recv_queue_handled": m.get("node.recv_queue_handled", 0),
        "recv_queue_lag_s_mean": round(m.get("node.recv_queue_lag_s_mean", 0.0), 3),
        "recv_queue_lag_s_max": round(m.get("node.recv_queue_lag_s_max", 0.0), 3),
        "starved_phases": m.get("faults.applied", 0),
        "sim_s_per_wall_s": round(result.virtual_seconds / wall, 2),
        "wall_s": round(wall, 1),
    }
    out.update(failures.split(SLOW_NODE))
    return out


def _ratio(off: float, on: float) -> float | str | None:
    if on:
        return round(off / on, 2)
    return f">= {off:g} (Lifeguard: 0)" if off else None


def bench_slow_node(quick: bool) -> dict[str, Any]:
    """Lifeguard vs classic SWIM around a slow node: false failures, their ratio, the
    detection latency Lifeguard costs, and (full size) a sweep of the drain rate."""
    duration = 120.0 if quick else None  # full: the shipped hour
    runs: dict[str, Any] = {}
    for lifeguard in (True, False):
        label = "lifeguard" if lifeguard else "classic"
        runs[label] = _slow_run(slow_text(lifeguard=lifeguard, duration_s=duration))
        print(f"slow node, {label}: {runs[label]}", file=sys.stderr)
    on, off = runs["lifeguard"], runs["classic"]
    runs["paper_claim"] = "Lifeguard: false positives reduced by more than 50x (arXiv 1707.00788)"
    runs["ratio_classic_to_lifeguard"] = _ratio(off["false_positives"], on["false_positives"])
    runs["healthy_declarations_ratio_classic_to_lifeguard"] = _ratio(
        off["declarations_about_healthy_nodes"], on["declarations_about_healthy_nodes"]
    )
    runs["false_suspicions_ratio_classic_to_lifeguard"] = _ratio(
        off["false_suspicions"], on["false_suspicions"]
    )
    runs["model"] = (
        "simulator 'slow' fault on n5 (simulator/README.md, the slow-node model): handler "
        "starved 4 s of every 10 s (rate 0), timers on time, receive queue 256 datagrams / "
        "212992 bytes tail-drop, backlog drained at 20 datagrams/s"
    )
    runs["timers_late_control"] = bench_timers_late(120.0 if quick else 600.0)
    runs["detection_cost"] = bench_detection_cost(quick)
    runs["drain_rate_sweep"] = (
        {"skipped": "--quick: the sweep runs at full size only"} if quick
        else bench_drain_sweep()
    )
    return runs


def bench_timers_late(duration: float) -> dict[str, Any]:
    """The control: the same slow node whose timers wait behind its datagrams (a starved
    single-threaded loop, like a pause) instead of firing on time."""
    out: dict[str, Any] = {"nodes": 100, "virtual_s": duration, "timers": "late"}
    for lifeguard in (True, False):
        r = _slow_run(slow_text(lifeguard=lifeguard, duration_s=duration, timers="late"))
        out["lifeguard" if lifeguard else "classic"] = {
            k: r[k] for k in ("false_positives", "false_suspicions", "recv_queue_dropped",
                              "recv_queue_lag_s_max")
        }
    print(f"slow node, timers late: {out}", file=sys.stderr)
    return out


def bench_detection_cost(quick: bool) -> dict[str, Any]:
    """One crash among 100 with and without Lifeguard, over several seeds (one crash per
    run): what Lifeguard's longer suspicions cost in detection time."""
    duration = 45.0 if quick else 120.0
    crash_at = 15.0 if quick else 40.0
    seeds = range(1, 4) if quick else range(1, 9)
    out: dict[str, Any] = {"nodes": 100, "virtual_s": duration, "seeds": len(seeds)}
    for lifeguard in (True, False):
        firsts: list[float] = []
        fulls: list[float] = []
        failed: list[str] = []
        for seed in seeds:
            result, _ = run_world(crash_text(100, mode="bytes", crash_at_s=crash_at,
                                             duration_s=duration, lifeguard=lifeguard),
                                  seed=seed)
            m = result.metrics
            failed += [f"seed {seed}: {name}" for name in _failed(result)]
            if "membership.first_suspect_s_mean" in m:
                firsts.append(m["membership.first_suspect_s_mean"])
            if "membership.full_detection_s_mean" in m:
                fulls.append(m["membership.full_detection_s_mean"])
        out["lifeguard" if lifeguard else "classic"] = {
            "failed_invariants": failed,
            "first_suspect_s_mean": round(sum(firsts) / len(firsts), 3) if firsts else None,
            "full_detection_s_mean": round(sum(fulls) / len(fulls), 3) if fulls else None,
            "full_detection_s_min": round(min(fulls), 3) if fulls else None,
            "full_detection_s_max": round(max(fulls), 3) if fulls else None,
            "detections": len(fulls),
        }
    a = out["lifeguard"]["full_detection_s_mean"]
    b = out["classic"]["full_detection_s_mean"]
    out["extra_detection_s"] = None if a is None or b is None else round(a - b, 3)
    return out


def bench_drain_sweep() -> dict[str, Any]:
    """False positives with and without Lifeguard as the slow node recovers faster or
    slower (drain rate, datagrams/s), 100 nodes, 600 virtual seconds each."""
    points: list[dict[str, Any]] = []
    for drain in (10.0, 20.0, 50.0, 200.0):
        point: dict[str, Any] = {"drain_rate": drain}
        for lifeguard in (True, False):
            r = _slow_run(slow_text(lifeguard=lifeguard, duration_s=600.0, drain_rate=drain))
            point["lifeguard" if lifeguard else "classic"] = {
                k: r[k] for k in ("false_positives", "false_suspicions",
                                  "declarations_about_healthy_nodes",
                                  "declarations_about_slow_node", "recv_queue_dropped",
                                  "recv_queue_lag_s_max")
            }
        point["ratio_classic_to_lifeguard"] = _ratio(
            point["classic"]["false_positives"], point["lifeguard"]["false_positives"]
        )
        print(f"drain sweep: {point}", file=sys.stderr)
        points.append(point)
    return {"nodes": 100, "virtual_s": 600.0, "points": points}


def slow_links_text(nodes: int, *, lifeguard: bool, duration_s: float) -> str:
    """A node whose links take 1..3 s each way (slow to hear and to answer) from 10 s on."""
    fault = 'op = "latency"\nlatency = "1s..3s"'
    return _ablation_text("slow-links", nodes, lifeguard, duration_s, fault)


def bench_slow_links(quick: bool) -> dict[str, Any]:
    """Lifeguard vs classic SWIM around a node with 1..3 s latency on its links (another
    variant of the ablation: the node is slow to hear acks, so it accuses others)."""
    nodes, duration = (50, 100.0) if quick else (100, 300.0)
    runs: dict[str, Any] = {}
    for lifeguard in (True, False):
        result, wall = run_world(slow_links_text(nodes, lifeguard=lifeguard,
                                                 duration_s=duration))
        m = result.metrics
        runs["lifeguard" if lifeguard else "classic"] = {
            "nodes": nodes,
            "virtual_s": duration,
            "failed_invariants": _failed(result),
            "false_positives": m.get("membership.false_positives", 0),
            "false_suspicions": m.get("membership.false_suspicions", 0),
            "sim_s_per_wall_s": round(duration / wall, 2),
        }
    for key in ("false_positives", "false_suspicions"):
        on, off = runs["lifeguard"][key], runs["classic"][key]
        runs[f"{key}_ratio_classic_to_lifeguard"] = round(off / on, 2) if on else None
    return runs


def bench_partition(quick: bool) -> dict[str, Any]:
    """Halves cut, then healed: convergence after the heal."""
    name = "membership-partition-heal.toml" if quick else "membership-partition-heal-soak.toml"
    result, wall = run_world(os.path.join(SCENARIOS, name))
    m = result.metrics
    return {
        "scenario": name,
        "nodes": result.nodes,
        "ok": result.ok,
        "failed_invariants": _failed(result),
        "convergence_s": _pick(m, "membership.convergence_s"),
        "goal_s": 30.0,
        "sim_s_per_wall_s": round(result.virtual_seconds / wall, 2),
    }


def bench_join_wave(quick: bool) -> dict[str, Any]:
    """A staggered join wave through 3 seeds, then updates: rounds to 99.99 %."""
    path = os.path.join(SCENARIOS, "membership-join-wave-soak.toml")
    if quick:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        text = text.replace("nodes = 1000", "nodes = 100").replace(
            'duration = "240s"', 'duration = "30s"').replace(
            'update_from = "45s"', 'update_from = "8s"').replace(
            'update_every = "3s"', 'update_every = "1s"')
        scenario = parse_scenario_text(text, source="<bench>")
    else:
        scenario = load_scenario(path)
    world = World(scenario)
    start = time.perf_counter()
    result = world.run()
    wall = time.perf_counter() - start
    rounds = world.membership.update_rounds.samples
    m = result.metrics
    return {
        "nodes": result.nodes,
        "ok": result.ok,
        "failed_invariants": _failed(result),
        "rounds_to_99_99": _pick(m, "membership.rounds_to_99_99"),
        "update_spread_s": _pick(m, "membership.update_spread_s"),
        "updates": m.get("membership.updates"),
        "updates_unfinished": m.get("membership.updates_unfinished"),
        "goal_rounds": 11,
        "share_within_goal": round(sum(r <= 11 for r in rounds) / len(rounds), 4)
        if rounds else None,
        "sim_s_per_wall_s": round(result.virtual_seconds / wall, 2),
    }


def bench_udp(quick: bool) -> dict[str, Any]:
    """``bench/membership_udp.py``'s ``run(quick)``, or why it was skipped."""
    path = os.path.join(_HERE, "membership_udp.py")
    if not os.path.exists(path):
        return {"skipped": "bench/membership_udp.py is absent"}
    try:
        spec = importlib.util.spec_from_file_location("bench_membership_udp", path)
        if spec is None or spec.loader is None:
            return {"skipped": "bench/membership_udp.py cannot be loaded"}
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result = module.run(quick)
    except Exception as exc:  # the UDP part is optional; say why it is missing
        return {"skipped": f"bench/membership_udp.py failed: {type(exc).__name__}: {exc}"}
    return dict(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (< 1 min)")
    parser.add_argument("--no-udp", action="store_true", help="skip the real-UDP part")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    crash: list[dict[str, Any]] = []
    for nodes in (10, 100, 1000):
        if args.quick and nodes == 1000:
            crash.append({"nodes": nodes, "skipped": QUICK_SKIP_1000})
            continue
        r = bench_crash(nodes, args.quick)
        crash.append(r)
        print(
            f"crash {nodes:5} nodes: first suspect {r['first_suspect_s']} s "
            f"(theory ~{r['first_suspect_theory_s']} s), full detection "
            f"{r['full_detection_s']} s (window {r['suspicion_window_s']}), "
            f"{r['bytes_per_member_per_s']} B/member/s, {r['sim_s_per_wall_s']} sim-s/wall-s",
            file=sys.stderr,
        )
    slow = bench_slow_node(args.quick)
    print(f"slow node: lifeguard {slow['lifeguard']['false_positives']} false positives, "
          f"classic {slow['classic']['false_positives']} (ratio "
          f"{slow['ratio_classic_to_lifeguard']}; the paper: > 50x)", file=sys.stderr)
    slow_links = bench_slow_links(args.quick)
    print(f"slow links: false suspicions lifeguard {slow_links['lifeguard']['false_suspicions']}"
          f", classic {slow_links['classic']['false_suspicions']}", file=sys.stderr)
    partition = bench_partition(args.quick)
    print(f"partition heal: convergence {partition['convergence_s']}", file=sys.stderr)
    wave = bench_join_wave(args.quick)
    print(f"join wave {wave['nodes']}: rounds {wave['rounds_to_99_99']}", file=sys.stderr)
    udp = {"skipped": "--no-udp"} if args.no_udp else bench_udp(args.quick)
    report = {
        "bench": "membership",
        "quick": args.quick,
        "python": platform.python_version(),
        "crash": crash,
        "slow_node": slow,
        "slow_links": slow_links,
        "partition_heal": partition,
        "join_wave": wave,
        "udp": udp,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
