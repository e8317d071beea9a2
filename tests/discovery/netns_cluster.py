"""Run a few nodes with discovery in this process; print what each saw as one JSON line.

Run inside a network namespace the test created (``ip netns exec NS python this.py SPEC``).
``SPEC`` is JSON: ``{"nodes": [{"discovery": <explicit table>, "key": hex, "cluster": label},
...], "wait_s": seconds, "want_alive": n}``. The script stops when every node of the first
``want_alive`` nodes sees ``want_alive`` alive members and found the others itself, or after
``wait_s`` (but not before ``min_s``, if given, nor before each ``[node index, counter,
least]`` of ``until`` holds).
"""

from __future__ import annotations

import json
import sys
from contextlib import AsyncExitStack
from typing import Any

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.discovery.config import resolve_discovery
from foundation_p2p.membership.state import MemberState
from foundation_p2p.runtime.discovery import DiscoveryRunner, run_discovery
from foundation_p2p.runtime.node import Node, open_node


def alive(node: Node) -> int:
    return sum(1 for m in node.members() if m.state is MemberState.ALIVE)


async def main(spec: dict[str, Any]) -> list[dict[str, Any]]:
    want = int(spec["want_alive"])
    until = [(int(i), str(name), int(least)) for i, name, least in spec.get("until", [])]
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        nodes: list[Node] = []
        runners: list[DiscoveryRunner] = []
        for item in spec["nodes"]:
            keyring = Keyring(bytes.fromhex(item["key"]))
            node = await stack.enter_async_context(
                open_node(
                    NodeConfig(bind=("127.0.0.1", 0), probe_interval_s=0.05, probe_timeout_s=0.05),
                    keyring=keyring,
                )
            )
            config = resolve_discovery(item["discovery"]).config
            runner = await nursery.start(
                lambda task_status, node=node, config=config, item=item: run_discovery(
                    node, config, cluster=item.get("cluster"), task_status=task_status
                )
            )
            nodes.append(node)
            runners.append(runner)
        await trio.sleep(float(spec.get("min_s", 0)))
        with trio.move_on_after(float(spec["wait_s"])):
            while not all(
                alive(n) >= want and sum(len(s) for s in r.found.values()) >= want - 1
                for n, r in zip(nodes[:want], runners[:want], strict=True)
            ) or not all(nodes[i].counters[name] >= least for i, name, least in until):
                await trio.sleep(0.05)
        out = [
            {
                "alive": alive(n),
                "found": sorted(f"{h}:{p}" for s in r.found.values() for h, p in s),
                "errors": r.last_error,
                "counters": {k: v for k, v in n.counters.items() if k.startswith("discovery.")},
            }
            for n, r in zip(nodes, runners, strict=True)
        ]
        nursery.cancel_scope.cancel()
    return out


if __name__ == "__main__":
    print(json.dumps(trio.run(main, json.loads(sys.argv[1]))))
