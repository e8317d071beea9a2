"""The graceful shutdown order, end to end: leadership transfer, singleton handoff, leave.

Three in-process nodes over UDP on 127.0.0.1 form a Raft group; a singleton is named so
that rendezvous hashing places it on the Raft leader. Closing that node gracefully
(leaving its ``open_node`` block) must, in this order:

1. transfer Raft leadership (the node stops leading; the others follow a new leader),
2. hand the singleton off (its service is asked to stop and returns its state, which
   the successor receives),
3. leave membership (the others report it ``left``, never ``failed``).

Each step is timestamped where it happens (``trio.current_time()``, one clock: the nodes
share this process): the moment the closing node no longer leads (``wait_until`` on its
own Raft status), the moment its service's ``stop_requested()`` returns and the moment it
returns its state, and the moment a peer receives ``MemberLeft``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.membership.events import MemberFailed, MemberLeft
from foundation_p2p.membership.state import MemberState
from foundation_p2p.registry.placement import rendezvous_owner
from foundation_p2p.runtime import Node, open_node

CONSENSUS = {"tick_interval_s": 0.02, "election_tick": 10, "bootstrap_expect": 3}
MEMBERSHIP = {"profile": "local", "probe_interval_s": 0.1, "probe_timeout_s": 0.05}
WAIT_S = 15.0
"""Bound on each wait (group formation, placement, the close and what follows it)."""


class ShutdownOrderError(AssertionError):
    """The three shutdown steps happened in another order."""


@dataclass
class Timeline:
    """What happened, when (``trio.current_time()``), on which node."""

    started: list[tuple[str, Any]] = field(default_factory=list)
    """``(node name, handoff state)`` per start of the service."""
    stop_requested: dict[str, float] = field(default_factory=dict)
    returned: dict[str, float] = field(default_factory=dict)
    stepped_down: float | None = None
    left_seen: float | None = None
    failed_seen: bool = False
    changed: trio.Event = field(default_factory=trio.Event)

    def poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


def config(name: str, data_dir: str, join: tuple[Any, ...] = ()) -> NodeConfig:
    return NodeConfig(
        name=name,
        bind=("127.0.0.1", 0),
        data_dir=data_dir,
        join=join,
        extra={"consensus": dict(CONSENSUS), "membership": dict(MEMBERSHIP)},
    )


class Running:
    """A node open in its own task (so it can be closed while other nurseries are open)."""

    def __init__(self) -> None:
        self.node: Node | None = None
        self.close = trio.Event()
        self.closed = trio.Event()

    async def run(self, cfg: NodeConfig, keyring: Keyring,
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with open_node(cfg, keyring=keyring) as node:
                self.node = node
                task_status.started(node)
                await self.close.wait()
        finally:
            self.closed.set()

    async def aclose(self) -> None:
        """Close the node gracefully (leave its ``open_node`` block); wait until it is."""
        self.close.set()
        await self.closed.wait()


def service(timeline: Timeline) -> Any:
    async def run(node: Node, args: Any, handoff: Any) -> Any:
        timeline.started.append((node.name, handoff))
        timeline.poke()
        try:
            await node.supervisor.stop_requested()
            timeline.stop_requested[node.name] = trio.current_time()
            return {"ran_on": node.name}
        finally:
            timeline.returned[node.name] = trio.current_time()

    return run


def _leader(node: Node) -> bytes | None:
    st = node.consensus.status()
    return None if st is None else st.leader


def _voters(node: Node) -> int:
    st = node.consensus.status()
    return 0 if st is None else len(st.voters)


def test_leader_hosting_a_singleton_transfers_then_hands_off_then_leaves(
    tmp_path: Any,
) -> None:
    # run here rather than by pytest-trio, so that the order error reaches xfail as it is
    # (not inside pytest-trio's ExceptionGroup)
    trio.run(scenario, tmp_path)


async def scenario(tmp_path: Any) -> None:
    """Three nodes; the leader, hosting the singleton, closes; judge what happened."""
    keyring = Keyring.generate(os.urandom)
    timeline = Timeline()
    running = {name: Running() for name in ("a", "b", "c")}
    failure: BaseException | None = None
    async with trio.open_nursery() as main:
        nodes: dict[str, Node] = {}
        first = await main.start(running["a"].run, config("a", str(tmp_path / "a")), keyring)
        nodes["a"] = first
        for name in ("b", "c"):
            nodes[name] = await main.start(
                running[name].run,
                config(name, str(tmp_path / name), join=(first.address,)),
                keyring,
            )
        try:
            await check_order(nodes, running, timeline)
        except BaseException as exc:  # re-raised as it is, not inside an ExceptionGroup
            failure = exc
        for r in running.values():
            r.close.set()
    if failure is not None:
        raise failure


async def check_order(nodes: dict[str, Node], running: dict[str, Running],
                      timeline: Timeline) -> None:
    with trio.fail_after(WAIT_S):
        for n in nodes.values():
            await n.consensus.wait_leader()
            await n.wait_until(lambda n=n: _voters(n) == 3)
    leader = next(n for n in nodes.values() if n.consensus.is_leader())
    others = [n for n in nodes.values() if n is not leader]
    ids = [n.node_id for n in nodes.values()]
    # a singleton name that rendezvous hashing places on the leader
    singleton = next(
        f"job-{i}" for i in range(1000)
        if rendezvous_owner(f"job-{i}", ids) == leader.node_id
    )
    for n in nodes.values():
        n.supervisor.define_service("job", service(timeline))
        n.processes.start_singleton(singleton, "job")
    with trio.fail_after(WAIT_S):
        while not timeline.started:
            await timeline.changed.wait()
        for n in nodes.values():
            await n.wait_until(
                lambda n=n: n.processes.lookup_singleton(singleton) == leader.node_id
            )
    assert timeline.started == [(leader.name, None)]

    watcher = others[0]

    async def watch_leadership() -> None:
        sub = leader.consensus.subsystem
        try:
            await leader.wait_until(lambda: not sub.is_leader())
        except trio.ClosedResourceError:
            return  # closed while still leading: stepped_down stays None
        timeline.stepped_down = trio.current_time()

    async def watch_membership(events: Any) -> None:
        async for ev in events:
            member = getattr(ev, "member", None)
            if member is None or member.node_id != leader.node_id:
                continue
            if isinstance(ev, MemberFailed):
                timeline.failed_seen = True
            if isinstance(ev, MemberLeft):
                timeline.left_seen = trio.current_time()
                return

    # the nursery ends when the watcher has seen MemberLeft and the closed node's
    # own watch has returned
    with trio.fail_after(2 * WAIT_S):
        async with watcher.membership_events() as events, trio.open_nursery() as nursery:
            nursery.start_soon(watch_leadership)
            nursery.start_soon(watch_membership, events)
            await running[leader.name].aclose()  # the graceful close under test
            del nodes[leader.name]
    closed = trio.current_time()

    # what the others see: a new leader, the singleton elsewhere with the handed-off
    # state, the node left (never failed)
    with trio.fail_after(WAIT_S):
        for n in others:
            await n.wait_until(
                lambda n=n: _leader(n) not in (None, leader.node_id)
            )
        while len(timeline.started) < 2:
            await timeline.changed.wait()
        for n in others:
            await n.wait_until(
                lambda n=n: n.processes.lookup_singleton(singleton)
                not in (None, leader.node_id)
            )
            await n.wait_until(
                lambda n=n: (m := n.member(leader.node_id)) is not None
                and m.state is not MemberState.ALIVE
            )
    new_leaders = {_leader(n) for n in others}
    assert len(new_leaders) == 1 and leader.node_id not in new_leaders
    successor, handoff = timeline.started[1]
    assert successor != leader.name
    assert handoff == {"ran_on": leader.name}
    for n in others:
        m = n.member(leader.node_id)
        assert m is not None and m.state is MemberState.LEFT, m
    assert not timeline.failed_seen, "a peer declared the closing node failed"
    assert timeline.left_seen is not None and timeline.left_seen <= closed

    # the order
    t_transfer = timeline.stepped_down
    t_handoff = timeline.stop_requested.get(leader.name)
    t_handed = timeline.returned.get(leader.name)
    assert t_handoff is not None and t_handed is not None
    order = (
        f"stopped leading at {t_transfer}, singleton asked to hand off at {t_handoff} "
        f"(state returned at {t_handed}), MemberLeft seen at {timeline.left_seen}"
    )
    if t_transfer is None:
        raise ShutdownOrderError(f"the node was still leading when it closed: {order}")
    if not t_transfer <= t_handoff:
        raise ShutdownOrderError(f"handoff began before leadership moved: {order}")
    if not t_handed <= timeline.left_seen:
        raise ShutdownOrderError(f"left before the handoff completed: {order}")


SEEN_WAIT_S = 5.0
"""Bound on a registry delta's trip between two nodes on loopback (milliseconds when it
works; the first boot's write above is seen within it)."""


class NotSeenError(AssertionError):
    """A restarted node's registry write never reached a peer."""


def test_a_node_restarted_after_a_graceful_close_is_heard_again(tmp_path: Any) -> None:
    trio.run(restart_scenario, tmp_path)


async def restart_scenario(tmp_path: Any) -> None:
    """b registers a name, closes gracefully, restarts from its data directory (same node
    id) and registers another name: a must see the second one too."""
    keyring = Keyring.generate(os.urandom)
    a_run, b_run, b2_run = Running(), Running(), Running()
    failure: BaseException | None = None
    async with trio.open_nursery() as main:
        a = await main.start(a_run.run, config("a", str(tmp_path / "a")), keyring)
        b = await main.start(b_run.run, config("b", str(tmp_path / "b"), join=(a.address,)),
                             keyring)
        try:
            b.registry.register("before-restart", 1)
            with trio.fail_after(WAIT_S):
                await a.wait_until(lambda: a.registry.lookup("before-restart") is not None)
            with trio.fail_after(WAIT_S):
                await b_run.aclose()
            b2 = await main.start(
                b2_run.run, config("b", str(tmp_path / "b"), join=(a.address,)), keyring
            )
            assert b2.node_id == b.node_id
            b2.registry.register("after-restart", 2)
            with trio.move_on_after(SEEN_WAIT_S):
                await a.wait_until(lambda: a.registry.lookup("after-restart") is not None)
            if a.registry.lookup("after-restart") is None:
                raise NotSeenError(
                    f"a did not see b's write made after its restart within {SEEN_WAIT_S} s"
                )
        except BaseException as exc:  # re-raised as it is, not inside an ExceptionGroup
            failure = exc
        for r in (a_run, b_run, b2_run):
            r.close.set()
    if failure is not None:
        raise failure
