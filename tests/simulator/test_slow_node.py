"""The slow-node model (``op = "slow"``, simulator/README.md "The slow-node model").

Its rules, each from the README's sentences: the receive queue is bounded in datagrams
and bytes with tail-drop, counted and traced; the handler takes datagrams in arrival order
at most ``rate`` per second while starved (none at 0), no sooner than ``lag`` after their
arrival, then ``drain_rate`` per second until the queue is empty, when the node is normal
again; timers fire on time (``"on_time"``) or wait behind the datagrams (``"late"``);
settle handles the backlog at once; a crash forgets the queue; runs are deterministic.
Then the Lifeguard ablation's two CI scenarios and their verdicts.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from simulator.host import SlowParams, SlowState
from simulator.nemesis import SlowFaultSpec
from simulator.scenario import load_scenario, parse_scenario_text
from simulator.trace import TraceSink
from simulator.world import RunResult, World

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "..", "simulator", "scenarios")

BASE = """\
# t: slow-node model test
name = "t"
seed = {seed}
duration = "{duration}s"
mode = "bytes"
[cluster]
nodes = 6
profile = "lan"
[network]
latency = "1ms..5ms"
[node.membership]
profile = "lan"
[[workload]]
kind = "membership"
[check]
settle = "{settle}s"
[[fault]]
at = "5s"
op = "slow"
node = "n2"
for = "4s"
"""


def run(
    tmp_path: Path, fault_keys: str = "", *, seed: int = 1, duration: float = 20.0,
    settle: float = 2.0, extra: str = "",
) -> tuple[RunResult, list[dict[str, Any]]]:
    text = BASE.format(seed=seed, duration=duration, settle=settle) + fault_keys + extra
    scenario = parse_scenario_text(text, source="t.toml")
    path = tmp_path / f"trace-{seed}.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        result = World(scenario, sink=TraceSink(out)).run()
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(x) for x in f][1:]  # the header first
    assert result.internal_error is None, result.internal_error
    return result, lines


def t(e: dict[str, Any]) -> float:
    return float(e["t"])


def handled_by(lines: list[dict[str, Any]], node: str, lo: float, hi: float) -> list[float]:
    return [t(e) for e in lines if e["ev"] == "deliver" and e["dst"] == node and lo <= t(e) < hi]


# -- the receive queue on its own ---------------------------------------------------------


def test_queue_bounds_are_datagrams_and_bytes_with_tail_drop_counted() -> None:
    st = SlowState(SlowParams(queue_packets=3, queue_bytes=250), now=0.0)

    def fn(_: Any) -> None:
        pass

    assert st.admit(0.1, fn, "a", 100) and st.admit(0.2, fn, "b", 100)
    assert not st.admit(0.3, fn, "c", 100)  # 300 bytes > 250: the arrival is dropped
    assert st.admit(0.4, fn, "d", 50)  # 250 bytes, 3 datagrams: fits exactly
    assert not st.admit(0.5, fn, "e", 1)  # a 4th datagram: dropped
    assert st.dropped == 2 and st.packets == 3 and st.bytes == 250
    st.add_timer(0.6, fn, "timer")
    st.add_timer(0.7, fn, "timer again")  # at most one timer firing waits
    assert len(st.queue) == 4 and st.packets == 3  # timers do not count against the bounds
    assert [st.take(1.0)[1] for _ in range(4)] == ["a", "b", "d", "timer"]  # arrival order
    assert st.processed == 3 and st.packets == 0 and st.bytes == 0
    assert st.lag_max == 1.0 - 0.1 and abs(st.lag_sum - (0.9 + 0.8 + 0.6)) < 1e-9


def test_rate_is_the_starved_one_then_the_drain_one() -> None:
    st = SlowState(SlowParams(rate=2.0, drain_rate=50.0), now=0.0)
    assert st.rate() == 2.0
    st.starved = False
    assert st.rate() == 50.0


# -- the model in a running world ----------------------------------------------------------


def test_a_full_queue_drops_the_arrivals_and_counts_and_traces_them(tmp_path: Path) -> None:
    result, lines = run(tmp_path, "rate = 0\nqueue = 3\n")
    m = result.metrics
    drops = [e for e in lines if e["ev"] == "drop" and e.get("reason") == "recv_queue_full"]
    assert drops and all(e["dst"] == "n2" and 5.0 <= t(e) < 9.0 for e in drops)
    assert m["node.recv_queue_dropped"] == len(drops)
    # Nothing handled while starved at rate 0; the three queued datagrams right after.
    assert handled_by(lines, "n2", 5.0, 9.0) == []
    # (The default drain_rate is 100/s: one every 10 ms.)
    first = handled_by(lines, "n2", 9.0, 9.1)[:3]
    assert [round(x - 9.0, 6) for x in first] == [0.0, 0.01, 0.02]


def test_the_byte_bound_drops_too(tmp_path: Path) -> None:
    small, _ = run(tmp_path, "rate = 0\nqueue_bytes = 300\n")
    large, _ = run(tmp_path, "rate = 0\n")
    assert small.metrics["node.recv_queue_dropped"] > 0
    assert large.metrics["node.recv_queue_dropped"] == 0  # 256 datagrams / 208 KiB: room


def test_the_starved_rate_bounds_what_is_handled(tmp_path: Path) -> None:
    _, lines = run(tmp_path, "rate = 2\n")
    during = handled_by(lines, "n2", 5.0, 9.0)
    assert 2 <= len(during) <= 2 * 4 + 1
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert all(g >= 0.5 - 1e-9 for g in gaps), gaps


def test_the_backlog_drains_at_drain_rate_then_the_node_is_normal(tmp_path: Path) -> None:
    # 40/s: several times what a node of this cluster receives, so the backlog ends.
    result, lines = run(tmp_path, "rate = 0\ndrain_rate = 40\n", duration=30.0)
    end = next(e for e in lines if e["ev"] == "slow_end")
    assert end["node"] == "n2" and 9.0 < t(end) < 28.0  # caught up before settle
    drained = handled_by(lines, "n2", 9.0, t(end) + 1e-9)
    assert len(drained) >= 3  # a backlog built up in the 4 starved seconds
    gaps = [b - a for a, b in itertools.pairwise(drained)]
    assert all(g >= 0.025 - 1e-9 for g in gaps), [g for g in gaps if g < 0.025]
    assert end["handled"] == result.metrics["node.recv_queue_handled"]
    assert result.metrics["node.recv_queue_lag_s_max"] >= 1.0
    # Afterwards datagrams are handled on arrival again: off the drain's 25 ms grid.
    later = handled_by(lines, "n2", t(end) + 0.5, 28.0)
    assert later
    assert any(abs(x * 40 - round(x * 40)) > 1e-6 for x in later)


def test_lag_delays_every_datagram_while_slow(tmp_path: Path) -> None:
    result, lines = run(tmp_path, "rate = 1000\ndrain_rate = 1000\nlag = \"300ms\"\n")
    assert result.metrics["node.recv_queue_handled"] > 0
    assert result.metrics["node.recv_queue_lag_s_mean"] >= 0.3 - 1e-9
    assert handled_by(lines, "n2", 5.0, 5.3) == []


def test_timers_fire_on_time_while_the_handler_is_starved(tmp_path: Path) -> None:
    _, lines = run(tmp_path, 'rate = 0\ntimers = "on_time"\n')
    timers = [t(e) for e in lines if e["ev"] == "timer" and e["node"] == "n2"]
    assert [x for x in timers if 5.0 < x < 9.0]  # probes and gossip went on


def test_late_timers_wait_behind_the_datagrams(tmp_path: Path) -> None:
    _, lines = run(tmp_path, 'rate = 0\ntimers = "late"\n')
    timers = [t(e) for e in lines if e["ev"] == "timer" and e["node"] == "n2"]
    assert not [x for x in timers if 5.0 < x < 9.0]
    assert [x for x in timers if 9.0 <= x < 10.0]  # they ran once the handler did


def test_settle_handles_the_backlog_at_once(tmp_path: Path) -> None:
    # Starved from 5 s to 9 s, but settle starts at 7 s: the backlog is handled at 7 s.
    result, lines = run(tmp_path, "rate = 0\n", duration=10.0, settle=3.0)
    end = next(e for e in lines if e["ev"] == "slow_end")
    assert t(end) == 7.0
    assert len(handled_by(lines, "n2", 7.0, 7.0 + 1e-9)) >= 3
    assert result.ok, {k: v.detail for k, v in result.invariants.items() if not v.ok}


def test_a_crash_forgets_the_queue_and_counts_stay(tmp_path: Path) -> None:
    crash = '[[fault]]\nat = "7s"\nop = "crash"\nnode = "n2"\nfor = "2s"\n'
    _, lines = run(tmp_path, "rate = 0\n", extra=crash)
    assert not [e for e in lines if e["ev"] == "slow_end"]
    assert handled_by(lines, "n2", 5.0, 9.0) == []
    assert handled_by(lines, "n2", 9.5, 18.0)  # the restarted node runs normally


def test_same_seed_same_digest_other_seed_other_digest(tmp_path: Path) -> None:
    keys = "rate = 3\ndrain_rate = 10\nlag = \"20ms\"\nqueue = 8\n"
    a, _ = run(tmp_path, keys, seed=7)
    b, _ = run(tmp_path, keys, seed=7)
    c, _ = run(tmp_path, keys, seed=8)
    assert a.trace_digest == b.trace_digest
    for key in ("node.recv_queue_dropped", "node.recv_queue_handled", "node.recv_queue_lag_s_max"):
        assert a.metrics[key] == b.metrics[key]
    assert a.trace_digest != c.trace_digest


# -- the Lifeguard ablation (CI size) -----------------------------------------------------


def test_ablation_lifeguard_makes_no_false_failure_where_classic_swim_makes_some() -> None:
    on = World(load_scenario(os.path.join(SCENARIOS, "membership-slow-node.toml"))).run()
    off = World(load_scenario(os.path.join(SCENARIOS, "membership-slow-node-classic.toml"))).run()
    assert on.ok and off.ok
    assert on.invariants["membership.no_false_failures"].ok
    assert on.metrics["membership.false_positives"] == 0
    assert off.metrics["membership.false_positives"] > 0
    # The same slow node in both runs: the model was in force in each.
    assert on.metrics["node.recv_queue_handled"] > 0 and off.metrics["node.recv_queue_handled"] > 0


def test_random_faults_can_draw_slow_nodes(tmp_path: Path) -> None:
    text = BASE.format(seed=3, duration=60.0, settle=10.0).replace(
        '[[fault]]\nat = "5s"\nop = "slow"\nnode = "n2"\nfor = "4s"\n', ""
    ) + '[random_faults]\nops = ["slow"]\nmean_interval = "5s"\nmax_duration = "6s"\n'
    scenario = parse_scenario_text(text, source="t.toml")
    world = World(scenario, random_faults=True)
    result = world.run()
    assert result.internal_error is None, result.internal_error
    drawn = world.nemesis.drawn
    assert drawn and all(isinstance(f, SlowFaultSpec) and f.op == "slow" for f in drawn)
    assert result.metrics["faults.applied"] >= 1
    assert result.metrics["node.recv_queue_handled"] > 0
    again = World(parse_scenario_text(text, source="t.toml"), random_faults=True).run()
    assert again.trace_digest == result.trace_digest
