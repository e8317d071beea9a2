"""The ``--app`` of the namespace tests: ``foundation-p2p node run --app netns_app:main``.

It reports what the node sees as ``obs {json}`` lines on stdout (``t`` is
``time.monotonic()``: one clock for every namespace of the machine), so the harness
judges the protocol from the nodes' own view, with no polling:

- ``{"kind": "hello", "id": hex, "name": ...}`` once;
- ``{"kind": "members", "states": {name: STATE}}`` each time the membership view changes
  (observers left out), checked after every pump step (``node.wait_until``).

Features, from the comma list in ``NETNS_APP_FEATURES``:

- ``singleton``: defines the service ``ticker`` and, once ``NETNS_APP_EXPECT`` members are
  alive, starts the singleton ``ticker``; reports ``{"kind": "singleton", "event":
  "running"|"exited"}`` where it runs and ``{"kind": "lookup", "owner": hex|null}`` when
  ``node.processes.lookup_singleton("ticker")`` changes here.
- ``registry``: registers ``node/<name>`` and reports ``{"kind": "registry", "names": [...]}``
  each time the set of ``node/`` names this node sees changes.
- ``raft``: reports ``{"kind": "raft", "role": ..., "leader": hex|null, "term": n}`` each
  time this node's Raft role, leader or term changes (``node.consensus.status()``).
- ``sub``: subscribes to ``control`` and ``data``; reports ``{"kind": "ctl", "seq", "lat"}``
  per control message (``lat``: seconds since it was published) and ``{"kind": "data",
  "seq", "bytes"}`` per bulk message.
- ``pub``: once a subscriber of both channels is known, publishes for
  ``NETNS_APP_PUB_S`` seconds one control message every ``NETNS_APP_CTL_S`` seconds and
  one bulk message of ``NETNS_APP_BULK_BYTES`` bytes every ``NETNS_APP_BULK_S`` seconds
  on ``data``, reporting ``{"kind": "pub_counters", ...}`` every second and then
  ``{"kind": "pub_done", "ctl": n, "bulk": n, "counters": {}}`` (its ``channels.*`` and
  ``transport.*`` counters).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import trio

from foundation_p2p.membership.state import MemberState


def report(kind: str, **fields: Any) -> None:
    """One ``obs`` line on stdout."""
    print("obs " + json.dumps({"kind": kind, "t": time.monotonic(), **fields}), flush=True)


def view(node: Any) -> dict[str, str]:
    return {m.name: m.state.name for m in node.members() if not m.observer}


async def watch_members(node: Any) -> None:
    last: dict[str, str] | None = None
    while True:
        now = view(node)
        if now != last:
            report("members", states=now)
            last = now
        await node.wait_until(lambda seen=now: view(node) != seen)


async def ticker(node: Any, args: Any, handoff: Any) -> Any:
    """The singleton: runs until the supervisor asks it to stop."""
    report("singleton", event="running", handoff=repr(handoff))
    try:
        reason = await node.supervisor.stop_requested()
        report("singleton", event="stopping", reason=str(reason))
        return {"ran_on": node.node_id.hex()}
    finally:
        report("singleton", event="exited")


async def run_singleton(node: Any) -> None:
    expect = int(os.environ.get("NETNS_APP_EXPECT", "1"))
    node.supervisor.define_service("ticker", ticker)
    await node.wait_until(
        lambda: sum(1 for s in view(node).values() if s == MemberState.ALIVE.name) >= expect
    )
    node.processes.start_singleton("ticker", "ticker")
    last: Any = object()
    while True:
        owner = node.processes.lookup_singleton("ticker")
        if owner != last:
            report("lookup", owner=owner.hex() if owner else None)
            last = owner
        await node.wait_until(lambda seen=last: node.processes.lookup_singleton("ticker") != seen)


async def run_registry(node: Any) -> None:
    node.registry.register(f"node/{node.name}", {"id": node.node_id.hex()})

    def names() -> list[str]:
        return sorted(e.name for e in node.registry.select("node/"))

    while True:
        seen = names()
        report("registry", names=seen)
        await node.wait_until(lambda seen=seen: names() != seen)


async def run_raft(node: Any) -> None:
    def state() -> tuple[str, str | None, int] | None:
        st = node.consensus.status()
        if st is None:
            return None
        return (st.role.value, st.leader.hex() if st.leader else None, st.term)

    while True:
        seen = state()
        if seen is not None:
            report("raft", role=seen[0], leader=seen[1], term=seen[2])
        await node.wait_until(lambda seen=seen: state() != seen)


async def subscribe(node: Any) -> None:
    async with node.channels.subscribe("control") as ctl, node.channels.subscribe(
        "data", max_queued=64
    ) as data, trio.open_nursery() as nursery:

        async def controls() -> None:
            async for d in ctl:
                report("ctl", seq=d.value["seq"], lat=time.monotonic() - d.value["t"])

        async def bulks() -> None:
            async for d in data:
                report("data", seq=d.value["seq"], bytes=len(d.value["blob"]))

        nursery.start_soon(controls)
        nursery.start_soon(bulks)


async def publish(node: Any) -> None:
    duration = float(os.environ.get("NETNS_APP_PUB_S", "5"))
    ctl_every = float(os.environ.get("NETNS_APP_CTL_S", "0.05"))
    bulk_every = float(os.environ.get("NETNS_APP_BULK_S", "0.05"))
    size = int(os.environ.get("NETNS_APP_BULK_BYTES", "32768"))
    core = node.channels.subsystem.core
    await node.wait_until(
        lambda: bool(core.subscribers_of("control")) and bool(core.subscribers_of("data"))
    )
    report("pub_start")
    blob = os.urandom(size)
    counts = {"ctl": 0, "bulk": 0}
    end = trio.current_time() + duration

    async def controls() -> None:
        while trio.current_time() < end:
            node.channels.broadcast("control", {"seq": counts["ctl"], "t": time.monotonic()})
            counts["ctl"] += 1
            await trio.sleep(ctl_every)  # the publishing rate, not a wait for a condition

    async def bulks() -> None:
        while trio.current_time() < end:
            node.channels.broadcast("data", {"seq": counts["bulk"], "blob": blob})
            counts["bulk"] += 1
            await trio.sleep(bulk_every)  # the publishing rate

    keep = ("channels.", "transport.")

    async def progress() -> None:
        while trio.current_time() < end:
            await trio.sleep(1.0)  # the reporting period
            report("pub_counters", ctl=counts["ctl"], bulk=counts["bulk"], counters={
                k: v for k, v in node.counters.items() if k.startswith(keep)})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(controls)
        nursery.start_soon(bulks)
        nursery.start_soon(progress)
    report(
        "pub_done", ctl=counts["ctl"], bulk=counts["bulk"],
        counters={k: v for k, v in node.counters.items() if k.startswith(keep)},
    )


async def main(node: Any) -> None:
    """Report the node's view; run the features ``NETNS_APP_FEATURES`` names."""
    features = {f for f in os.environ.get("NETNS_APP_FEATURES", "").split(",") if f}
    report("hello", id=node.node_id.hex(), name=node.name)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_members, node)
        if "singleton" in features:
            nursery.start_soon(run_singleton, node)
        if "registry" in features:
            nursery.start_soon(run_registry, node)
        if "raft" in features:
            nursery.start_soon(run_raft, node)
        if "sub" in features:
            nursery.start_soon(subscribe, node)
        if "pub" in features:
            nursery.start_soon(publish, node)
