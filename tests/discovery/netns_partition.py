"""A partition that heals through discovery alone; print what happened as one JSON line.

Run inside a network namespace the test created (``ip netns exec NS python this.py``): the
script adds and removes nftables rules there. Two pairs of nodes with SWIM's dead retry
off (``dead_retry_for_s = 0``), so a member once declared failed is never pinged again by
membership itself:

- pair 1: ``a`` runs static discovery with ``b`` as its seed (``b`` runs none);
- pair 2 (the control): ``c`` joins ``d`` once at start, no discovery.

Every UDP datagram is dropped until each pair sees its peer failed, then the rule is
removed; the script reports whether each pair is whole again within ``HEAL_WAIT_S``.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.discovery.config import DiscoveryConfig, StaticConfig
from foundation_p2p.membership.state import MemberState
from foundation_p2p.runtime.discovery import run_discovery
from foundation_p2p.runtime.node import Node, open_node

HEAL_WAIT_S = 4.0
MEMBERSHIP = {
    "probe_interval_s": 0.05,
    "probe_timeout_s": 0.04,
    "gossip_interval_s": 0.05,
    "suspicion_mult": 2,
    "suspicion_max_mult": 2,
    "dead_retry_for_s": 0.0,
    "reap_after_s": 3600.0,
    "push_pull_interval_s": 3600.0,
}


def config() -> NodeConfig:
    return NodeConfig.from_mapping(
        {
            "bind": "127.0.0.1:0",
            "probe_interval_s": 0.05,
            "probe_timeout_s": 0.05,
            "membership": MEMBERSHIP,
        }
    )


def state_of(node: Node, peer: Node) -> str | None:
    for m in node.members():
        if m.node_id == peer.node_id:
            return m.state.name
    return None


def whole(x: Node, y: Node) -> bool:
    return state_of(x, y) == MemberState.ALIVE.name and state_of(y, x) == MemberState.ALIVE.name


def nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True, text=True)


async def main() -> dict[str, Any]:
    keyring = Keyring.generate(os.urandom)
    async with (
        open_node(config(), keyring=keyring) as a,
        open_node(config(), keyring=keyring) as b,
        open_node(config(), keyring=keyring) as c,
        open_node(config(), keyring=keyring) as d,
        trio.open_nursery() as nursery,
    ):
        static = DiscoveryConfig((StaticConfig(seeds=(b.address,), interval_s=0.2),))
        runner = await nursery.start(run_discovery, a, static)
        await c.join([d.address])
        with trio.fail_after(10):
            while not (whole(a, b) and whole(c, d)):
                await trio.sleep(0.02)
        nft("add", "table", "inet", "fp2p_partition")
        nft(
            "add", "chain", "inet", "fp2p_partition", "out",
            "{ type filter hook output priority 0 ; }",
        )  # fmt: skip
        nft("add", "rule", "inet", "fp2p_partition", "out", "meta", "l4proto", "udp", "drop")
        failed = MemberState.FAILED.name
        with trio.fail_after(20):
            while not all(state_of(x, y) == failed for x, y in ((a, b), (b, a), (c, d), (d, c))):
                await trio.sleep(0.02)
        joins_before = a.counters["discovery.static.joins"]
        nft("delete", "table", "inet", "fp2p_partition")
        with trio.move_on_after(HEAL_WAIT_S):
            while not whole(a, b):
                await trio.sleep(0.02)
        await trio.sleep(0.5)  # the control pair gets the same time and more
        result = {
            "discovery_pair_whole": whole(a, b),
            "control_pair_whole": whole(c, d),
            "control_states": [state_of(c, d), state_of(d, c)],
            "joins_after_heal": a.counters["discovery.static.joins"] - joins_before,
            "static_attempts": runner.attempts.get("static", 0),
        }
        nursery.cancel_scope.cancel()
    return result


if __name__ == "__main__":
    print(json.dumps(trio.run(main)))
