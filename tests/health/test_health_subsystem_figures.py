"""The health summary's Raft and registry figures come from the running subsystems:
three in-process nodes over 127.0.0.1 with a Raft group report their roles (one leader,
two followers) in the summaries every node holds, and a Raft-less node reports none."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import Any

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.health.summary import RaftRole
from foundation_p2p.runtime import Node, open_node

CONSENSUS = {"tick_interval_s": 0.02, "election_tick": 10, "bootstrap_expect": 3}
HEALTH = {"interval_s": 0.2, "refresh_s": 1.0}
MEMBERSHIP = {"profile": "local", "probe_interval_s": 0.1, "probe_timeout_s": 0.05}
WAIT_S = 20.0


def config(join: tuple[Any, ...] = (), consensus: bool = True) -> NodeConfig:
    extra: dict[str, Any] = {"health": HEALTH, "membership": MEMBERSHIP}
    if consensus:
        extra["consensus"] = CONSENSUS
    return NodeConfig(bind=("127.0.0.1", 0), join=join, extra=extra)


def roles_seen_by(node: Node) -> dict[bytes, int]:
    return {nid: s.raft_role for nid, s in node.health.summaries().items()}


async def test_every_node_sees_one_leader_and_two_followers_in_the_summaries() -> None:
    keyring = Keyring.generate(os.urandom)
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_node(config(), keyring=keyring))
        nodes = [first] + [
            await stack.enter_async_context(
                open_node(config(join=(first.address,)), keyring=keyring))
            for _ in range(2)
        ]
        plain = await stack.enter_async_context(
            open_node(config(join=(first.address,), consensus=False), keyring=keyring))
        with trio.fail_after(WAIT_S):
            for n in nodes:
                await n.consensus.wait_leader()
        leader = next(n for n in nodes if n.consensus.is_leader())
        await leader.kv.put(b"k", b"v")
        want = {n.node_id: (RaftRole.LEADER if n is leader else RaftRole.FOLLOWER)
                for n in nodes}
        want[plain.node_id] = RaftRole.NONE

        def agreed(n: Node) -> bool:
            seen = roles_seen_by(n)
            return all(seen.get(k) == v for k, v in want.items())

        with trio.fail_after(WAIT_S):
            for n in [*nodes, plain]:
                await n.wait_until(lambda n=n: agreed(n))
        for n in nodes:
            own = n.health.summaries()[n.node_id]
            assert own.raft_lag < 100  # a healthy group: nothing far behind
