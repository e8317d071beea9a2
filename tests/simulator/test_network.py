"""The virtual network model: rates within statistical bounds, partitions, order, clogs."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest

from simulator.model import (
    CheckSpec,
    ClusterSpec,
    FaultSpec,
    LatencySpec,
    LinkSpec,
    NetworkSpec,
    Scenario,
    WorkloadSpec,
)
from simulator.network import MAX_QUEUE_S, Network, PartitionState
from simulator.world import run_scenario

N_SENDS = 20_000


def _within_5_sigma(count: int, n: int, p: float) -> bool:
    sigma = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 5 * sigma


@pytest.mark.parametrize("loss", [0.01, 0.2, 0.5])
def test_measured_loss_rate_is_within_5_sigma_of_configured(loss: float) -> None:
    net = Network(NetworkSpec(loss=loss), random.Random(7))
    dropped = sum(net.route(i * 0.001, "n1", "n2", 100)[0] == "loss" for i in range(N_SENDS))
    assert _within_5_sigma(dropped, N_SENDS, loss), dropped
    assert net.counts["net.dropped_loss"] == dropped


@pytest.mark.parametrize("dup", [0.05, 0.3])
def test_measured_duplication_rate_is_within_5_sigma_of_configured(dup: float) -> None:
    net = Network(NetworkSpec(duplicate=dup), random.Random(8))
    dups = sum(net.route(i * 0.001, "n1", "n2", 100)[2] >= 0 for i in range(N_SENDS))
    assert _within_5_sigma(dups, N_SENDS, dup), dups
    assert net.counts["net.duplicated"] == dups


def test_latency_stays_within_the_configured_range() -> None:
    net = Network(NetworkSpec(latency=LatencySpec(0.010, 0.050)), random.Random(1))
    delays = []
    for i in range(2000):
        t = i * 1.0  # far apart: FIFO never delays
        _, arrival, _ = net.route(t, "a", "b", 10)
        delays.append(arrival - t)
    assert 0.010 <= min(delays) < 0.012
    assert 0.048 < max(delays) <= 0.050


def test_link_override_applies_only_to_its_link_and_symmetric_reverse() -> None:
    spec = NetworkSpec(
        latency=LatencySpec(0.001, 0.001),
        links=(LinkSpec("n1", "n2", latency=LatencySpec(0.5, 0.5), loss=1.0),),
    )
    net = Network(spec, random.Random(1))
    assert net.route(0.0, "n1", "n2", 10)[0] == "loss"
    assert net.route(0.0, "n2", "n1", 10)[0] == "loss"
    reason, arrival, _ = net.route(0.0, "n1", "n3", 10)
    assert reason is None and arrival == pytest.approx(0.001)


def test_fault_overrides_take_effect_and_lift_on_a_uniform_network() -> None:
    """With every link alike, route skips the per-link cache: a loss fault on one node's
    links must still apply at once, and only there, and lifting it must restore them."""
    net = Network(NetworkSpec(latency=LatencySpec(0.001, 0.001)), random.Random(1))
    assert net.route(0.0, "n1", "n2", 10)[0] is None
    token = net.override("loss", 1.0, nodes=("n2",))
    assert net.route(1.0, "n1", "n2", 10)[0] == "loss"
    assert net.route(1.0, "n2", "n3", 10)[0] == "loss"
    assert net.route(1.0, "n1", "n3", 10)[0] is None
    all_links = net.override("latency", LatencySpec(0.2, 0.2))
    assert net.route(2.0, "n1", "n3", 10)[1] == pytest.approx(2.2)
    assert net.remove_override(token) and net.remove_override(all_links)
    assert net.route(3.0, "n1", "n2", 10)[0] is None
    assert net.route(4.0, "n3", "n1", 10)[1] == pytest.approx(4.001)
    net.override("loss", 1.0)
    assert net.route(5.0, "n3", "n1", 10)[0] == "loss"
    net.clear_overrides()
    assert net.route(6.0, "n3", "n1", 10)[0] is None


def test_without_reorder_a_link_is_fifo_and_with_reorder_packets_overtake() -> None:
    def out_of_order(reorder: float) -> int:
        net = Network(NetworkSpec(latency=LatencySpec(0.001, 0.050), reorder=reorder),
                      random.Random(3))
        arrivals = [net.route(i * 0.001, "a", "b", 10)[1] for i in range(2000)]
        return sum(1 for x, y in itertools.pairwise(arrivals) if y < x)

    assert out_of_order(0.0) == 0
    assert out_of_order(0.2) > 50


def test_bandwidth_adds_serialization_delay_and_bounds_the_queue() -> None:
    net = Network(NetworkSpec(latency=LatencySpec(0.0, 0.0), bandwidth_bytes_per_s=1000.0),
                  random.Random(1))
    _, first, _ = net.route(0.0, "a", "b", 100)
    _, second, _ = net.route(0.0, "a", "b", 100)
    assert first == pytest.approx(0.1)
    assert second == pytest.approx(0.2)
    reasons = [net.route(0.0, "a", "b", 100)[0] for _ in range(30)]
    assert "queue_full" in reasons
    queued = reasons.index("queue_full") + 2
    assert queued * 0.1 == pytest.approx(MAX_QUEUE_S + 0.1, abs=0.11)
    assert net.counts["net.dropped_queue"] == reasons.count("queue_full")


def test_split_partition_blocks_both_ways_and_heals() -> None:
    parts = PartitionState()
    net = Network(NetworkSpec(), random.Random(1), parts)
    parts.split([("n1", "n2"), ("n3",)])
    assert net.route(0.0, "n1", "n3", 1)[0] == "partition"
    assert net.route(0.0, "n3", "n2", 1)[0] == "partition"
    assert net.route(0.0, "n1", "n2", 1)[0] is None
    parts.heal()
    assert net.route(0.0, "n1", "n3", 1)[0] is None


def test_oneway_partition_blocks_one_direction_only() -> None:
    parts = PartitionState()
    token = parts.oneway(["n1"], ["n2"])
    assert parts.blocks("n1", "n2")
    assert not parts.blocks("n2", "n1")
    assert parts.remove(token)
    assert not parts.blocks("n1", "n2")


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 9])
def test_majorities_ring_gives_each_node_a_distinct_majority(n: int) -> None:
    names = [f"n{i}" for i in range(1, n + 1)]
    parts = PartitionState()
    parts.majorities_ring(names)
    views = []
    for a in names:
        view = frozenset(b for b in names if a == b or not parts.blocks(a, b))
        assert len(view) > n // 2, (a, sorted(view))
        views.append(view)
        for b in names:
            assert parts.blocks(a, b) == parts.blocks(b, a)
    if n >= 4:
        assert len(set(views)) == n


def test_isolate_cuts_one_node_from_all_others() -> None:
    parts = PartitionState()
    parts.isolate("n2")
    assert parts.blocks("n2", "n1") and parts.blocks("n3", "n2")
    assert not parts.blocks("n1", "n3")


def test_clog_holds_then_releases_in_order() -> None:
    net = Network(NetworkSpec(), random.Random(1))
    net.clog_node("n2")
    assert net.route(0.0, "n1", "n2", 1)[0] == "clog"
    assert net.route(0.0, "n2", "n3", 1)[0] == "clog"
    assert net.route(0.0, "n1", "n3", 1)[0] is None
    key = net.clogged("n1", "n2")
    net.hold(key, "first")
    net.hold(key, "second")
    assert net.unclog_node("n2") == ["first", "second"]
    assert net.route(0.0, "n1", "n2", 1)[0] is None


# -- the network inside a running world ------------------------------------------------


def _scenario(nodes: int, faults: tuple[FaultSpec, ...], duration: float = 12.0,
              **kw: object) -> Scenario:
    return Scenario(
        name="net-test", text="", seed=5, duration_s=duration,
        cluster=ClusterSpec(nodes=nodes), workloads=(WorkloadSpec("ping"),), faults=faults,
        **kw,  # type: ignore[arg-type]
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_a_partition_delivers_nothing_across_it(tmp_path: Path) -> None:
    groups = (("n1", "n2"), ("n3", "n4"))
    sc = _scenario(4, (FaultSpec(at_s=3.0, op="partition", groups=groups, for_s=4.0),))
    trace = tmp_path / "t.jsonl"
    result = run_scenario(sc, trace_path=str(trace))
    assert result.ok, result.invariants
    side = {"n1": 0, "n2": 0, "n3": 1, "n4": 1}
    across_during = across_after = 0
    for ev in _lines(trace):
        if ev["ev"] != "deliver":
            continue
        t = float(str(ev["t"]))
        if side[str(ev["src"])] != side[str(ev["dst"])]:
            if 3.0 <= t < 7.0:
                across_during += 1
            elif t >= 8.0:
                across_after += 1
    assert across_during == 0
    assert across_after > 0  # healed: traffic crosses again
    assert result.metrics["net.dropped_partition"] > 0


def test_a_oneway_partition_delivers_only_one_way(tmp_path: Path) -> None:
    sc = _scenario(2, (FaultSpec(at_s=2.0, op="partition", oneway=True, src="n1", dst="n2",
                                 for_s=5.0),))
    trace = tmp_path / "t.jsonl"
    run_scenario(sc, trace_path=str(trace))
    forward = backward = 0
    for ev in _lines(trace):
        if ev["ev"] == "deliver" and 2.0 <= float(str(ev["t"])) < 7.0:
            if ev["src"] == "n1":
                forward += 1
            else:
                backward += 1
    assert forward == 0
    assert backward > 0


def test_clogged_node_receives_its_held_packets_after_the_clog(tmp_path: Path) -> None:
    sc = _scenario(3, (FaultSpec(at_s=2.0, op="clog", node="n3", for_s=3.0),),
                   check=CheckSpec(settle_s=4.0))
    trace = tmp_path / "t.jsonl"
    result = run_scenario(sc, trace_path=str(trace))
    assert result.ok, result.invariants
    events = _lines(trace)
    held = [e for e in events if e["ev"] == "hold"]
    assert held and all(2.0 <= float(str(e["t"])) < 5.0 for e in held)
    to_n3 = [e for e in events if e["ev"] == "deliver" and e["dst"] == "n3"]
    assert not [e for e in to_n3 if 2.01 <= float(str(e["t"])) < 5.0]
    assert result.metrics["net.held_clog"] == len(held)


def test_swizzle_clogs_nodes_one_by_one_then_releases_them(tmp_path: Path) -> None:
    sc = _scenario(6, (FaultSpec(at_s=2.0, op="swizzle", for_s=4.0),),
                   check=CheckSpec(settle_s=3.0))
    trace = tmp_path / "t.jsonl"
    result = run_scenario(sc, trace_path=str(trace))
    assert result.ok, result.invariants
    events = _lines(trace)
    clogs = [e for e in events if e["ev"] == "swizzle"]
    fault = next(e for e in events if e["ev"] == "fault")
    detail = fault["detail"]
    assert isinstance(detail, dict)
    assert [e["node"] for e in clogs] == detail["clog"]
    assert len({str(e["t"]) for e in clogs}) == len(clogs)  # one by one
    undos = [e for e in events if e["ev"] == "undo"]
    assert [str(u["what"]).split()[-1] for u in undos] == detail["unclog"]


def test_per_link_state_is_pruned_when_full_and_fifo_still_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import simulator.network as network_mod

    monkeypatch.setattr(network_mod, "MAX_LINK_STATE", 10)
    net = Network(NetworkSpec(latency=LatencySpec(0.001, 0.002)), random.Random(2))
    for i in range(50):
        net.route(float(i), f"a{i}", "b", 10)  # each link's arrival is soon in the past
    assert net.counts["net.link_state_pruned"] > 0
    assert len(net._last_arrival) <= 10
    arrivals = [net.route(100.0 + i * 1e-4, "x", "y", 10)[1] for i in range(100)]
    assert arrivals == sorted(arrivals)
