"""The registry, the supervisor and ``node.processes`` over real UDP on 127.0.0.1.

In-process ``open_node`` nodes: a registration is visible at once where it was made and
reaches the other node's watch; a singleton runs on exactly one node and, when that node
closes, is handed off with its state to the other; the seed's facade logs the
``node.registry`` / ``node.supervisor`` calls it stands for; a service not defined on a
node is reported crashed and moves on. Every wait is bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.membership.state import MemberState
from foundation_p2p.registry.core import AlreadyRegistered
from foundation_p2p.registry.events import Registered
from foundation_p2p.runtime import open_node
from foundation_p2p.runtime.node import Node

WAIT_S = 10.0


def alive(node: Node, n: int) -> Callable[[], bool]:
    return lambda: sum(1 for m in node.members() if m.state is MemberState.ALIVE) >= n


async def test_a_registration_is_read_at_once_here_and_watched_there(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(), keyring=keyring) as a, open_node(
        make_config(join=(a.address,)), keyring=keyring
    ) as b:
        with trio.fail_after(WAIT_S):
            await a.wait_until(alive(a, 2))
            await b.wait_until(alive(b, 2))
        async with b.registry.watch("svc/") as watch:
            entry = a.registry.register("svc/api", {"port": 8080}, {"zone": "eu"})
            # read-your-writes on the registering node, no wait
            assert a.registry.lookup("svc/api") == entry
            assert entry.owner == a.node_id
            with pytest.raises(AlreadyRegistered):
                a.registry.register("svc/api", 1)
            a.registry.register("other/x", 1)  # outside the watch's prefix
            with trio.fail_after(WAIT_S):
                change = await watch.receive()
            assert isinstance(change, Registered) and change.entry.name == "svc/api"
            got = b.registry.lookup("svc/api")
            assert got is not None and got.value == {"port": 8080} and got.owner == a.node_id
            assert [e.name for e in b.registry.select("svc/")] == ["svc/api"]
            with trio.fail_after(WAIT_S):
                await b.wait_until(lambda: b.registry.count() == 2)
            assert a.registry.unregister("svc/api")
            with trio.fail_after(WAIT_S):
                await b.wait_until(lambda: b.registry.lookup("svc/api") is None)


async def test_a_singleton_runs_once_and_is_handed_off_when_its_node_closes(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    runs: list[tuple[str, Any]] = []
    arrived = trio.Event()

    async def counter(node: Node, args: Any, handoff: Any) -> Any:
        runs.append((node.name, handoff))
        arrived.set()
        await node.supervisor.stop_requested()
        return {"count": args["start"] + 1, "from": node.name}

    async with trio.open_nursery() as nursery:
        a, close_a = await nursery.start(hosted, make_config(name="a"), keyring)
        b, close_b = await nursery.start(hosted, make_config(name="b", join=(a.address,)), keyring)
        for node in (a, b):
            node.supervisor.define_service("counter", counter)
        with trio.fail_after(WAIT_S):
            await a.wait_until(alive(a, 2))
            await b.wait_until(alive(b, 2))
        a.supervisor.start_singleton("counter", "counter", {"start": 41})
        with trio.fail_after(WAIT_S):
            await arrived.wait()
            owner_name = runs[0][0]
            owner, other = (a, b) if owner_name == "a" else (b, a)
            await other.wait_until(
                lambda: other.processes.lookup_singleton("counter") == owner.node_id
            )
        assert runs == [(owner_name, None)]
        assert owner.supervisor.running() == ["counter"] and other.supervisor.running() == []

        # close the owner: it hands the singleton off with its state before leaving
        with trio.fail_after(WAIT_S):
            await (close_a if owner is a else close_b)()
            await other.wait_until(lambda: len(runs) == 2)
            await other.wait_until(
                lambda: other.processes.lookup_singleton("counter") == other.node_id
            )
        assert runs[1] == (other.name, {"count": 42, "from": owner_name})
        assert other.supervisor.running() == ["counter"]
        await (close_b if owner is a else close_a)()


async def hosted(
    config: NodeConfig, keyring: Keyring, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a node until the close function it hands out is awaited (then it has closed)."""
    stop = trio.Event()
    closed = trio.Event()

    async def close() -> None:
        stop.set()
        await closed.wait()

    try:
        async with open_node(config, keyring=keyring) as node:
            task_status.started((node, close))
            await stop.wait()
    finally:
        closed.set()


async def test_the_processes_facade_logs_its_equivalent_calls_and_runs_replicas(
    keyring: Keyring, make_config: Callable[..., NodeConfig], caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    async def replica(node: Node, args: Any, handoff: Any) -> None:
        ran.append(node.name)
        await trio.sleep_forever()

    async with open_node(make_config(name="a"), keyring=keyring) as a, open_node(
        make_config(name="b", join=(a.address,)), keyring=keyring
    ) as b:
        with trio.fail_after(WAIT_S):
            await a.wait_until(alive(a, 2))
            await b.wait_until(alive(b, 2))
        b.supervisor.define_service(f"{replica.__module__}.{replica.__qualname__}", replica)
        with caplog.at_level(logging.DEBUG, logger="foundation_p2p.runtime"):
            spec = a.processes.start_replicated("everywhere", replica)
        assert spec.kind == "replicated"
        text = caplog.text
        assert "supervisor.define_service" in text and "supervisor.start_replicated" in text
        with trio.fail_after(WAIT_S):
            await a.wait_until(lambda: sorted(ran) == ["a", "b"])
        assert a.processes.lookup_singleton("everywhere") is None  # not a singleton
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="foundation_p2p.runtime"):
            a.processes.lookup_singleton("nothing")
        assert "registry.lookup" in caplog.text
        assert a.supervisor.terminate("everywhere")
        with trio.fail_after(WAIT_S):
            await b.wait_until(lambda: b.supervisor.running() == [])


async def test_a_service_not_defined_here_is_reported_crashed(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(), keyring=keyring) as a:
        a.supervisor.start_singleton("ghost", "never-defined", max_restarts=0)
        with trio.fail_after(WAIT_S):
            await a.wait_until(lambda: a.counters["supervisor.runtime.undefined_service"] >= 1)
        assert a.supervisor.running() == []
        with pytest.raises(RuntimeError, match="not called from a supervised service"):
            await a.supervisor.stop_requested()
