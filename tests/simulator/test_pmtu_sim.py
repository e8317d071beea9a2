"""Path MTU discovery in the simulator: the virtual network drops datagrams above its MTU
(``net.dropped_mtu``), so a cluster's connections settle just under 1472 bytes on an
Ethernet-like network and reach the transport's ceiling (16384) on a loopback-like one.
Same seed, same digest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.model import Scenario
from simulator.network import (
    DEFAULT_MTU_BYTES,
    IP_UDP_HEADER_BYTES,
    Network,
    PartitionState,
    check_mtu,
)
from simulator.rand import child_rng
from simulator.scenario import parse_scenario_text
from simulator.world import World

SCENARIO = """
name = "pmtu"
seed = 3
duration = "12s"
mode = "bytes"

[cluster]
nodes = 3

[network]
latency = "1ms..3ms"

[[workload]]
kind = "broadcast"
publishers = ["n1"]
subscribers = ["n2", "n3"]
channels = ["data"]
interval = "100ms"
small_bytes = 200
start = "3s"
big_bytes = 200_000
big_at = ["5s"]

[check]
settle = "3s"
"""


def _world(mtu: int) -> World:
    scenario: Scenario = parse_scenario_text(SCENARIO, source="pmtu.toml")

    def factory(sc: Scenario, partitions: PartitionState, seed: int) -> Network:
        return Network(sc.network, child_rng(seed, "network"), partitions, mtu=mtu)

    return World(scenario, network_factory=factory)


def _sizes(world: World) -> list[int]:
    """The datagram size of every live connection of every node."""
    out = []
    for host in world.hosts:
        assert host.core is not None
        for peer in host.core.transport.peers():
            conn = host.core.transport.connection(peer)
            if conn is not None and conn.is_established:
                out.append(conn.max_datagram_size)
    return out


def test_an_ethernet_mtu_settles_connections_just_under_1472_bytes() -> None:
    world = _world(1500)
    result = world.run()
    assert result.ok, result.invariants
    sizes = _sizes(world)
    assert sizes, "the workload opened no connection"
    assert all(1456 <= s <= 1472 for s in sizes), sizes
    assert world.network.counts["net.dropped_mtu"] > 0  # the too-large probes
    assert result.metrics.get("net.dropped_mtu", 0) == world.network.counts["net.dropped_mtu"]


def test_a_loopback_mtu_lets_connections_reach_the_ceiling() -> None:
    world = _world(65535)
    result = world.run()
    assert result.ok, result.invariants
    sizes = _sizes(world)
    assert sizes and all(s == 16384 for s in sizes), sizes
    assert world.network.counts["net.dropped_mtu"] == 0


def test_the_mtu_run_is_deterministic() -> None:
    a, b = _world(1500).run(), _world(1500).run()
    assert a.trace_digest == b.trace_digest


_CHILD = """
import sys
sys.path.insert(0, "tests/simulator")
from test_pmtu_sim import _world
print(_world(1500).run().trace_digest)
"""


def test_the_mtu_run_has_the_same_digest_under_another_hash_seed() -> None:
    repo = Path(__file__).resolve().parents[2]

    def digest(hash_seed: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD], capture_output=True, text=True, cwd=repo,
            env=dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(repo)),
            timeout=300, check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first = digest("1")
    assert len(first) == 64 and first == digest("4242")


def test_the_default_mtu_is_ethernet_and_bad_ones_are_refused() -> None:
    scenario = parse_scenario_text(SCENARIO, source="pmtu.toml")
    net = Network(scenario.network, child_rng(1, "network"))
    assert net.mtu == DEFAULT_MTU_BYTES == 1500
    limit = 1500 - IP_UDP_HEADER_BYTES
    assert net.route(0.0, "n1", "n2", limit)[0] is None
    assert net.route(0.0, "n1", "n2", limit + 1)[0] == "mtu"
    assert net.counts["net.dropped_mtu"] == 1
    for bad in (1000, 1227, 70000, 1500.0, "1500", True):
        with pytest.raises(ValueError, match=r"network\.mtu: must be an integer"):
            check_mtu(bad, "network.mtu")
    check_mtu(1228, "network.mtu")
