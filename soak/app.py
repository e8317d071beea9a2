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


LAG_TICK_S = 0.05
"""Period of the loop-lag watch (:func:`watch_lag`)."""
STALL_S = 0.25
"""A loop lag at least this long is reported as a stall (an election timeout is 0.5 s)."""
MAX_STALLS = 20
"""Stalls kept per stats line (the longest first; the rest counted in ``stalls_cut``)."""
MAX_LEADER_CHANGES = 64
"""Leader-view changes kept per stats line (more are counted in ``leaders_cut``)."""
RAFT_COUNTERS = ("raft.leader.elected", "raft.leader.stepped_down.check_quorum",
                 "raft.requests.indeterminate", "raft.reads.timeout", "raft.send.dropped",
                 "raft.log.slow_syncs", "raft.heartbeats.sent_during_sync")
"""Node counters copied into each stats line (diagnosis of KV failures)."""
LOSS_WORDS = ("dropped", "broken", "lost", "refused", "stopped", "truncated", "timeouts",
              "misnumbered", "blocked", "fallbacks", "errors")
"""Every node counter whose name holds one of these words goes into the stats line's
``losses`` (where a Raft message between two live nodes can disappear or wait)."""


def _schedstat() -> tuple[int, int]:
    """This process's main-thread CPU time and run-queue wait time in ns
    (``/proc/self/schedstat``; ``(0, 0)`` where it does not exist)."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as f:
            run, wait = f.read().split()[:2]
        return int(run), int(wait)
    except (OSError, ValueError):
        return 0, 0


class _Stats:
    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.fails: list[list[Any]] = []
        self.received = 0
        self.lag_max = 0.0
        self.stalls: list[list[Any]] = []
        self.stalls_cut = 0
        self.rx_gap_max = 0.0
        self.rx_gaps: list[list[Any]] = []
        self.leaders: list[list[Any]] = []
        self.leaders_cut = 0
        self._view: tuple[int, str | None] | None = None

    def watch_leader(self, node: Node) -> None:
        """Note a change of this member's (term, leader) view: ``[wall, term, leader]``
        (``leader`` a short id or None), at most :data:`MAX_LEADER_CHANGES` per line."""
        st = node.consensus.status()
        if st is None:
            return
        view = (st.term, short_id(st.leader) if st.leader is not None else None)
        if view == self._view:
            return
        self._view = view
        if len(self.leaders) >= MAX_LEADER_CHANGES:
            self.leaders_cut += 1
            return
        self.leaders.append([time.time(), view[0], view[1]])

    def stall(self, wall: float, lag: float, run_ns: int, wait_ns: int) -> None:
        """Record a stall of ``lag`` s ending at ``wall``: ``[wall, lag ms, ms on CPU, ms
        waiting for a CPU]`` (bounded: :data:`MAX_STALLS` longest kept)."""
        self.stalls.append([wall, round(lag * 1000), round(run_ns / 1e6), round(wait_ns / 1e6)])
        if len(self.stalls) > MAX_STALLS:
            self.stalls.sort(key=lambda x: -x[1])
            self.stalls.pop()
            self.stalls_cut += 1

    def rx_gap(self, wall: float, gap: float, timers: int, lag: float) -> None:
        """Record ``gap`` s without a datagram read ending at ``wall``: ``[wall, gap ms,
        core.handle_timer calls meanwhile, longest loop lag meanwhile in ms]`` (bounded
        like the stalls)."""
        self.rx_gaps.append([wall, round(gap * 1000), timers, round(lag * 1000)])
        if len(self.rx_gaps) > MAX_STALLS:
            self.rx_gaps.sort(key=lambda x: -x[1])
            self.rx_gaps.pop()

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
                    "id": short_id(node.node_id),
                    "tasks": count_tasks(), "ops": dict(stats.ops), "fails": stats.fails,
                    "received": stats.received, "dropped": sub.dropped,
                    "registry_names": node.registry.count("soak/"),
                    "raft": raft_status(node),
                    "lag_max_ms": round(stats.lag_max * 1000), "stalls": stats.stalls,
                    "stalls_cut": stats.stalls_cut,
                    "rx_gap_max_ms": round(stats.rx_gap_max * 1000), "rx_gaps": stats.rx_gaps,
                    "leaders": stats.leaders, "leaders_cut": stats.leaders_cut,
                    "counters": {k: node.core.counters.get(k, 0) for k in RAFT_COUNTERS},
                    "losses": {k: v for k, v in sorted(node.core.counters.items())
                               if any(w in k for w in LOSS_WORDS)},
                }
                stats.fails = []
                stats.lag_max = 0.0
                stats.stalls = []
                stats.stalls_cut = 0
                stats.rx_gap_max = 0.0
                stats.rx_gaps = []
                stats.leaders = []
                stats.leaders_cut = 0
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")

        nursery.start_soon(receive)
        nursery.start_soon(report)
        nursery.start_soon(watch_lag, node, stats)
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


async def watch_lag(node: Node, stats: _Stats) -> None:
    """Sleep :data:`LAG_TICK_S` in a loop and record how late each wake-up is: the longest
    lag per stats line, and every lag over :data:`STALL_S` with the CPU time and run-queue
    wait of the main thread meanwhile (``/proc/self/schedstat``), which tells a process
    starved of CPU (wait) from one busy in Python or blocked in a call (neither).

    It also watches the pump's reads (the ``udp.datagrams_received`` counter): a member
    hears heartbeats or their answers every tick, so a gap of :data:`STALL_S` without a
    read while the loop runs means the pump was not reading; the ``core.handle_timer``
    calls meanwhile (counted by wrapping it) say whether timer rounds kept it busy."""
    core = node.core
    counters = core.counters
    timer_calls = [0]
    handle_timer = core.handle_timer

    def counting_handle_timer(now: Any) -> None:
        timer_calls[0] += 1
        handle_timer(now)

    core.handle_timer = counting_handle_timer  # type: ignore[method-assign]
    clock = trio.current_time
    before, sched = clock(), _schedstat()
    rx, rx_at, rx_timers, rx_lag = counters.get("udp.datagrams_received", 0), before, 0, 0.0
    while True:
        await trio.sleep(LAG_TICK_S)
        now, now_sched = clock(), _schedstat()
        lag = now - before - LAG_TICK_S
        stats.lag_max = max(stats.lag_max, lag)
        if lag >= STALL_S:
            stats.stall(time.time(), lag, now_sched[0] - sched[0], now_sched[1] - sched[1])
        before, sched = now, now_sched
        stats.watch_leader(node)
        rx_lag = max(rx_lag, lag)
        now_rx = counters.get("udp.datagrams_received", 0)
        if now_rx != rx:
            gap = now - rx_at
            stats.rx_gap_max = max(stats.rx_gap_max, gap)
            if gap >= STALL_S:
                stats.rx_gap(time.time(), gap, timer_calls[0] - rx_timers, rx_lag)
            rx, rx_at, rx_timers, rx_lag = now_rx, now, timer_calls[0], 0.0


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
