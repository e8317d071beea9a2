"""``node.consensus`` / ``node.kv`` on three in-process Trio nodes over 127.0.0.1 UDP.

The group forms by itself (bootstrap_expect = 3) through membership; writes through a
follower replicate; the WAL in each data directory keeps every acknowledged write across
a full-cluster restart (and the group is not bootstrapped again); closing the leader hands
leadership over first.
"""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.runtime import Node, open_node
from foundation_p2p.runtime.consensus import ConsensusError

CONSENSUS = {"tick_interval_s": 0.02, "election_tick": 10, "bootstrap_expect": 3}
WAIT_S = 15.0


def config(data_dir: str | None, join: tuple[Any, ...] = (), **extra: Any) -> NodeConfig:
    return NodeConfig(
        bind=("127.0.0.1", 0),
        probe_interval_s=0.05,
        probe_timeout_s=0.05,
        data_dir=data_dir,
        join=join,
        extra={"consensus": {**CONSENSUS, **extra}},
    )


async def start_three(
    stack: AsyncExitStack, keyring: Keyring, dirs: list[str | None]
) -> list[Node]:
    first = await stack.enter_async_context(open_node(config(dirs[0]), keyring=keyring))
    nodes = [first]
    for d in dirs[1:]:
        nodes.append(
            await stack.enter_async_context(
                open_node(config(d, join=(first.address,)), keyring=keyring)
            )
        )
    with trio.fail_after(WAIT_S):
        for n in nodes:
            await n.consensus.wait_leader()
            await n.wait_until(lambda n=n: _voters(n) == 3)
    return nodes


def _leader(node: Node) -> bytes | None:
    st = node.consensus.status()
    return None if st is None else st.leader


def _voters(node: Node) -> int:
    st = node.consensus.status()
    return 0 if st is None else len(st.voters)


def leader_of(nodes: list[Node]) -> Node:
    for n in nodes:
        if n.consensus.is_leader():
            return n
    raise AssertionError("no leader")


async def test_group_forms_and_a_follower_writes_and_reads(tmp_path: Any) -> None:
    keyring = Keyring.generate(os.urandom)
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack, keyring, [str(tmp_path / f"n{i}") for i in range(3)])
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        st = follower.consensus.status()
        assert st is not None and len(st.voters) == 3 and st.leader == leader.node_id
        assert follower.raft is not None and follower.raft.raft.role is StateRole.FOLLOWER
        with trio.fail_after(WAIT_S):
            assert await follower.kv.put(b"k", b"v1") is None
            assert await follower.kv.put(b"k", b"v2") == b"v1"
            assert await leader.kv.get(b"k") == b"v2"
            assert await follower.kv.cas(b"k", b"nope", b"v3") == (False, b"v2")
            assert await follower.kv.cas(b"k", b"v2", b"v3") == (True, b"v3")
            assert await nodes[2].kv.get(b"k") == b"v3"
            assert await follower.kv.delete(b"k") == b"v3"
            assert await follower.kv.get(b"k") is None
        # the log is on disk: a WAL directory per node
        for i in range(3):
            assert os.listdir(tmp_path / f"n{i}" / "raft")


async def test_a_full_cluster_restart_keeps_every_acknowledged_write(tmp_path: Any) -> None:
    keyring = Keyring.generate(os.urandom)
    dirs: list[str | None] = [str(tmp_path / f"n{i}") for i in range(3)]
    acked: dict[bytes, bytes] = {}
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack, keyring, dirs)
        with trio.fail_after(WAIT_S):
            # concurrent writes from every node share fsyncs (group commit)
            async with trio.open_nursery() as nursery:
                for i in range(30):
                    node = nodes[i % 3]

                    async def put(node: Node = node, i: int = i) -> None:
                        key = b"key%d" % i
                        await node.kv.put(key, b"val%d" % i)
                        acked[key] = b"val%d" % i

                    nursery.start_soon(put)
        assert len(acked) == 30
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack, keyring, dirs)
        for n in nodes:
            assert n.core.counters.get("raft.bootstrapped", 0) == 0
        with trio.fail_after(WAIT_S):
            for key, value in acked.items():
                assert await nodes[1].kv.get(key) == value


async def test_closing_the_leader_hands_leadership_over_first(tmp_path: Any) -> None:
    keyring = Keyring.generate(os.urandom)
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack, keyring, [None, None, None])
        leader = leader_of(nodes)
        others = [n for n in nodes if n is not leader]
        with trio.fail_after(WAIT_S):
            await others[0].kv.put(b"a", b"1")
            target = await leader.consensus.transfer_leadership()
            assert target in {n.node_id for n in others}
            await others[0].wait_until(
                lambda: any(n.consensus.is_leader() for n in others)
            )
            assert not leader.consensus.is_leader()
            new_leader = next(n for n in others if n.consensus.is_leader())
            # a read fails definitely (NotLeader) until the follower hears of the new leader
            await others[1].wait_until(lambda: _leader(others[1]) == new_leader.node_id)
            assert await others[1].kv.get(b"a") == b"1"


async def test_a_node_without_consensus_refuses_clearly() -> None:
    keyring = Keyring.generate(os.urandom)
    cfg = NodeConfig(bind=("127.0.0.1", 0))
    async with open_node(cfg, keyring=keyring) as node:
        assert node.raft is None
        with pytest.raises(ConsensusError, match=r"no \[consensus\] table"):
            await node.kv.put(b"k", b"v")
