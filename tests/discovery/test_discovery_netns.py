"""mDNS (zeroconf) and multicast beacons, inside a network namespace each test creates.

The namespace has only a loopback interface with multicast on and a 224.0.0.0/4 route to
it, so mDNS (224.0.0.251:5353) and the beacon group never leave it. The nodes run in a
child process started with ``ip netns exec`` (``netns_cluster.py``, ``netns_partition.py``:
the latter also drops all UDP with nftables inside the namespace for a while).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("netns_cluster.py")
PARTITION_SCRIPT = Path(__file__).with_name("netns_partition.py")


def run_in(ns: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, str(SCRIPT), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def mdns(cluster: str) -> dict[str, Any]:
    return {
        "strategies": [
            {
                "strategy": "mdns",
                "cluster": cluster,
                "service": "_foundation-p2p._udp.local.",
                "interval_s": 0.3,
                "interface": "127.0.0.1",
            }
        ]
    }


def multicast(group: str = "239.255.77.46", port: int = 45946) -> dict[str, Any]:
    return {
        "strategies": [
            {
                "strategy": "multicast",
                "group": group,
                "port": port,
                "interval_s": 0.2,
                "jitter": 0.2,
                "ttl": 1,
                "interface": "127.0.0.1",
            }
        ]
    }


def test_mdns_two_nodes_find_each_other_and_ignore_another_cluster(netns: str) -> None:
    key = os.urandom(32).hex()
    other_key = os.urandom(32).hex()
    result = run_in(
        netns,
        {
            "nodes": [
                {"discovery": mdns("blue"), "key": key, "cluster": "blue"},
                {"discovery": mdns("blue"), "key": key, "cluster": "blue"},
                {"discovery": mdns("green"), "key": other_key, "cluster": "green"},
            ],
            "wait_s": 20,
            "want_alive": 2,
            "until": [[i, "discovery.mdns.ignored_cluster", 1] for i in range(3)],
        },
    )
    blue1, blue2, green = result
    assert blue1["alive"] == 2 and blue2["alive"] == 2, result
    # The green node is registered in the same namespace, but blue ignores it (and vice versa).
    assert blue1["counters"].get("discovery.mdns.ignored_cluster", 0) >= 1, result
    assert green["counters"].get("discovery.mdns.ignored_cluster", 0) >= 1, result
    assert green["found"] == [] and green["alive"] == 1, result
    assert len(blue1["found"]) == 1 and len(blue2["found"]) == 1, result


def test_multicast_beacons_are_found_with_the_right_key_ignored_with_a_wrong_one(
    netns: str,
) -> None:
    key = os.urandom(32).hex()
    wrong = os.urandom(32).hex()
    result = run_in(
        netns,
        {
            "nodes": [
                {"discovery": multicast(), "key": key},
                {"discovery": multicast(), "key": key},
                {"discovery": multicast(), "key": wrong},
            ],
            "wait_s": 10,
            "want_alive": 2,
            "until": [
                [0, "discovery.multicast.dropped.unknown_key", 1],
                [1, "discovery.multicast.dropped.unknown_key", 1],
                [2, "discovery.multicast.dropped.unknown_key", 4],
            ],
        },
    )
    a, b, stranger = result
    assert a["alive"] == 2 and b["alive"] == 2, result
    assert len(a["found"]) == 1 and len(b["found"]) == 1, result
    # The stranger's beacons do not authenticate under the cluster key: dropped, counted.
    assert a["counters"].get("discovery.multicast.dropped.unknown_key", 0) >= 1, result
    assert b["counters"].get("discovery.multicast.dropped.unknown_key", 0) >= 1, result
    assert stranger["counters"].get("discovery.multicast.dropped.unknown_key", 0) >= 4, result
    assert stranger["found"] == [] and stranger["alive"] == 1, result
    assert a["counters"]["discovery.multicast.beacons_sent"] >= 1


def test_a_partition_heals_through_discovery_where_membership_alone_stays_split(
    netns: str,
) -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft (nftables) is not installed: cannot make the partition")
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, str(PARTITION_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["discovery_pair_whole"], result
    assert result["joins_after_heal"] >= 1, result
    # Same partition, same time, dead retry off, no discovery: still split.
    assert not result["control_pair_whole"], result
    assert result["control_states"] == ["FAILED", "FAILED"], result
