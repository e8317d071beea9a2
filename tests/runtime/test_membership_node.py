"""The membership facade of the Trio runtime (``node.members()``, ``update_metadata``...).

Several nodes in one process, over real UDP on 127.0.0.1, with fast membership timers.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import pytest
import trio
import trio.testing

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError, LimitError
from foundation_p2p.events import PeerAcked
from foundation_p2p.membership.events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
)
from foundation_p2p.membership.state import MemberState
from foundation_p2p.runtime import Node, open_node
from foundation_p2p.runtime.node import MEMBERSHIP_EVENTS
from foundation_p2p.wire import cbor

WAIT_S = 5.0
FAST = {"profile": "local", "probe_interval_s": 0.1, "probe_timeout_s": 0.05}


def fast_config(name: str, **overrides: Any) -> NodeConfig:
    settings: dict[str, Any] = {
        "name": name,
        "bind": ("127.0.0.1", 0),
        "extra": {"membership": dict(FAST)},
    }
    settings.update(overrides)
    return NodeConfig(**settings)


class Cluster:
    """Opens nodes in the test's own task and closes them (newest first) at the end."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Cluster:
        await self.stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stack.__aexit__(*exc)

    async def start(self, name: str, **overrides: Any) -> Node:
        return await self.stack.enter_async_context(
            open_node(fast_config(name, **overrides), keyring=self.keyring)
        )


def alive_ids(node: Node) -> set[bytes]:
    return {m.node_id for m in node.members() if m.state is MemberState.ALIVE}


def sees_alive(node: Node, want: set[bytes]) -> bool:
    return alive_ids(node) == want


async def converge(*nodes: Node) -> None:
    want = {n.node_id for n in nodes}
    with trio.fail_after(WAIT_S):
        for node in nodes:
            await node.wait_until(functools.partial(sees_alive, node, want))


async def test_members_lists_every_node_with_its_real_address_and_name(
    keyring: Keyring,
) -> None:
    async with Cluster(keyring) as cluster:
        a = await cluster.start("a")
        b = await cluster.start("b", join=(a.address,))
        c = await cluster.start("c", join=(a.address,))
        await converge(a, b, c)
        assert a.membership is a.core.membership
        listed = a.members()
        assert [m.node_id for m in listed] == sorted(n.node_id for n in (a, b, c))
        by_id = {m.node_id: m for m in listed}
        for node in (a, b, c):
            record = by_id[node.node_id]
            assert record.address == node.address  # the bound port, never port 0
            assert record.name == node.name
        assert a.member(b.node_id) == by_id[b.node_id]
        assert a.member(b.node_id.hex()) == by_id[b.node_id]
        assert a.member(b"\x00" * 16) is None


async def test_member_refuses_an_id_that_is_not_sixteen_bytes(
    keyring: Keyring,
) -> None:
    async with Cluster(keyring) as cluster:
        a = await cluster.start("a")
        with pytest.raises(ValueError, match="not a hex node id"):
            a.member("zz")
        with pytest.raises(ValueError, match="16 bytes, got 3"):
            a.member(b"abc")


async def test_membership_events_carry_only_membership_events(
    keyring: Keyring,
) -> None:
    async with Cluster(keyring) as cluster:
        a = await cluster.start("a")
        b = await cluster.start("b")
        seen: list[Any] = []
        async with a.membership_events() as events, a.events(PeerAcked) as acks:
            await b.join([a.address])
            with trio.fail_after(WAIT_S):
                first = await events.receive()
                await acks.receive()  # the static prober's events still flow elsewhere
            seen.append(first)
        assert isinstance(first, MemberJoined)
        assert first.member.node_id == b.node_id
        assert all(isinstance(ev, MEMBERSHIP_EVENTS) for ev in seen)


async def test_update_metadata_encodes_values_and_reaches_the_others(
    keyring: Keyring,
) -> None:
    async with Cluster(keyring) as cluster:
        a = await cluster.start("a")
        b = await cluster.start("b", join=(a.address,))
        await converge(a, b)
        before = a.member(b.node_id)
        assert before is not None
        async with a.membership_events() as events:
            b.update_metadata({"role": "db", "shard": 3})
            with trio.fail_after(WAIT_S):
                async for ev in events:
                    if isinstance(ev, MemberUpdated) and ev.member.node_id == b.node_id:
                        break
        seen = a.member(b.node_id)
        assert seen is not None
        assert cbor.decode(seen.metadata) == {"role": "db", "shard": 3}
        assert seen.incarnation > before.incarnation
        b.update_metadata(b"\x01raw")
        with trio.fail_after(WAIT_S):
            await a.wait_until(lambda: a.member(b.node_id).metadata == b"\x01raw")  # type: ignore[union-attr]


async def test_update_metadata_refuses_too_much(keyring: Keyring) -> None:
    async with Cluster(keyring) as cluster:
        a = await cluster.start("a")
        limit = a.membership.config.max_metadata_bytes
        with pytest.raises(LimitError, match="max_metadata_bytes"):
            a.update_metadata(b"x" * (limit + 1))
        assert a.membership.local.metadata == b""


async def test_leave_is_reported_as_left_not_failed(keyring: Keyring) -> None:
    async with Cluster(keyring) as cluster:
        a = await cluster.start("a")
        b = await cluster.start("b", join=(a.address,))
        await converge(a, b)
        async with a.membership_events() as events:
            b.leave()
            assert b.membership.leaving
            with trio.fail_after(WAIT_S):
                async for ev in events:
                    assert not isinstance(ev, MemberFailed)
                    if isinstance(ev, MemberLeft):
                        assert ev.member.node_id == b.node_id
                        break
        assert a.member(b.node_id).state is MemberState.LEFT  # type: ignore[union-attr]
        b.leave()  # leaving twice is harmless
        with pytest.raises(ValueError, match="left"):
            b.update_metadata(b"too late")


async def test_closing_a_node_leaves_gracefully(keyring: Keyring) -> None:
    async with open_node(fast_config("a"), keyring=keyring) as a:
        async with open_node(fast_config("b", join=(a.address,)), keyring=keyring) as b:
            await converge(a, b)
            b_id = b.node_id
        with trio.fail_after(WAIT_S):
            await a.wait_until(lambda: a.member(b_id).state is MemberState.LEFT)  # type: ignore[union-attr]


async def test_wait_until_ends_when_the_node_closes(keyring: Keyring) -> None:
    errors: list[BaseException] = []
    async with (
        trio.open_nursery() as nursery,
        open_node(fast_config("a"), keyring=keyring) as a,
    ):

        async def wait_forever() -> None:
            try:
                await a.wait_until(lambda: False)
            except trio.ClosedResourceError as exc:
                errors.append(exc)

        nursery.start_soon(wait_forever)
        await trio.testing.wait_all_tasks_blocked()
    assert len(errors) == 1


async def test_a_bad_membership_table_is_refused_by_name(keyring: Keyring) -> None:
    config = fast_config("a", extra={"membership": {"probe_interval_s": -1}})
    with pytest.raises(ConfigError, match="probe_interval_s"):
        async with open_node(config, keyring=keyring):
            pass
