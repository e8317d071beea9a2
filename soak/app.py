"""The soak's node application: channel, KV and registry traffic, and a stats line every
few seconds (``foundation-p2p node run --app soak.app:run``).

Environment: ``SOAK_STATS`` (file to append JSON lines to), ``SOAK_NAME`` (this node's
name), ``SOAK_PERIOD_S`` (seconds between two rounds of traffic, default 0.5),
``SOAK_REPORT_S`` (seconds between two stats lines, default 5).

Traffic starts once the Raft group has a leader (``node.consensus.wait_leader()``, at most
``START_TIMEOUT_S``). Each round: one broadcast on the ``soak`` topic (every node
subscribes to it), one KV put of ``soak/<name>`` then a linearizable get of another
node's key (``node.kv``), one registry ``put`` of ``soak/<name>`` and a
``count("soak/")`` (``node.registry``). Each KV op waits at most ``OP_TIMEOUT_S``. A
failed op is reported with its wall time, kind and error, and judged by the controller
(soak/cluster.py): expected while a node of the cluster was just killed or restarted,
an error otherwise.

A stats line: ``{"t": wall, "name", "pid", "tasks": live Trio tasks (walked from the root
task), "ops": {kind: ok count}, "fails": [[started, ended, kind, error], ...] (wall
times) since the last line, "received": channel deliveries, "dropped": deliveries the
subscription dropped, "registry_names": visible soak/ names, "raft": this member's Raft
status (term, role, leader, commit, applied; on the leader every peer's
``[match, next, state]``), for the diagnosis of a stall}``.

``SOAK_DEBUG_LOGGERS`` (comma-separated logger names, e.g. ``foundation_p2p.consensus``)
sets those loggers to DEBUG in the node process (the rest stays at ``--log-level``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from typing import Any

import trio

from foundation_p2p.addresses import short_id
from foundation_p2p.runtime import Node

OP_TIMEOUT_S = 5.0
"""Longest wait for one KV operation."""
START_TIMEOUT_S = 30.0
"""Longest wait for a Raft leader before the traffic starts (a failure is reported)."""
TOPIC = "soak"


def count_tasks() -> int:
    """Live Trio tasks of this run: the root task and every task in its nurseries, down."""
    root = trio.lowlevel.current_root_task()
    todo = [] if root is None else [root]
    n = 0
    while todo:
        task = todo.pop()
        n += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return n


def raft_status(node: Node) -> dict[str, Any] | None:
    """This member's Raft status as JSON (``node.consensus.status()``; None before the
    group forms): term, role, leader, commit, applied, and the leader's progress per peer."""
    st = node.consensus.status()
    if st is None:
        return None
    return {
        "term": st.term, "role": st.role.value,
        "leader": short_id(st.leader) if st.leader is not None else None,
        "commit": st.commit, "applied": st.applied,
        "progress": {short_id(n): list(p) for n, p in st.progress.items()},
    }


class _Stats:
    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.fails: list[list[Any]] = []
        self.received = 0

    def fail(self, kind: str, exc: BaseException, started: float | None = None) -> None:
        now = time.time()
        self.fails.append([now if started is None else started, now, kind,
                           f"{type(exc).__name__}: {exc}"[:200]])


async def run(node: Node) -> None:
    """Drive traffic until cancelled; append a stats line to ``SOAK_STATS`` every few s."""
    path = os.environ["SOAK_STATS"]
    name = os.environ.get("SOAK_NAME", node.name)
    period = float(os.environ.get("SOAK_PERIOD_S", "0.5"))
    report_s = float(os.environ.get("SOAK_REPORT_S", "5"))
    for logger in filter(None, os.environ.get("SOAK_DEBUG_LOGGERS", "").split(",")):
        logging.getLogger(logger.strip()).setLevel(logging.DEBUG)
    stats = _Stats()
    async with trio.open_nursery() as nursery, node.channels.subscribe(
        TOPIC, max_queued=256
    ) as sub:

        async def receive() -> None:
            async for _delivery in sub:
                stats.received += 1

        async def report() -> None:
            while True:
                await trio.sleep(report_s)
                line = {
                    "t": time.time(), "name": name, "pid": os.getpid(),
                    "tasks": count_tasks(), "ops": dict(stats.ops), "fails": stats.fails,
                    "received": stats.received, "dropped": sub.dropped,
                    "registry_names": node.registry.count("soak/"),
                    "raft": raft_status(node),
                }
                stats.fails = []
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")

        nursery.start_soon(receive)
        nursery.start_soon(report)
        try:  # traffic starts once the Raft group has a leader (at boot, or after a restart)
            with trio.fail_after(START_TIMEOUT_S):
                await node.consensus.wait_leader()
        except trio.TooSlowError as exc:
            stats.fail("start", exc)
        i = 0
        while True:
            i += 1
            await _round(node, name, i, stats)
            await trio.sleep(period)


async def _round(node: Node, name: str, i: int, stats: _Stats) -> None:
    try:
        node.channels.broadcast(TOPIC, {"from": name, "i": i})
        stats.ops["channel"] += 1
    except Exception as exc:  # every failure is reported, and judged by the controller
        stats.fail("channel", exc)
    started = time.time()
    try:
        with trio.fail_after(OP_TIMEOUT_S):
            await node.kv.put(f"soak/{name}".encode(), str(i).encode())
        stats.ops["kv_put"] += 1
    except Exception as exc:
        stats.fail("kv_put", exc, started)
    started = time.time()
    try:
        with trio.fail_after(OP_TIMEOUT_S):
            await node.kv.get(f"soak/n{1 + i % 5}".encode())
        stats.ops["kv_get"] += 1
    except Exception as exc:
        stats.fail("kv_get", exc, started)
    try:
        node.registry.put(f"soak/{name}", i)
        node.registry.count("soak/")
        stats.ops["registry"] += 1
    except Exception as exc:
        stats.fail("registry", exc)
