"""One demo node in its own process, driven by the demo over a JSON-lines protocol.

``python -m foundation_p2p.demo_node SETTINGS_JSON`` opens a node with
:func:`~foundation_p2p.runtime.open_node` (real UDP on 127.0.0.1, a data directory, a
``[consensus]`` table...) and, once it is serving, prints one line
``{"ready": true, "node_id": ..., "address": ..., "epoch": ...}`` on stdout. It then reads
one JSON command per line on stdin, ``{"id": N, "op": NAME, ...arguments}``, runs each in
its own task (so a slow one does not hold the others up) and answers each with one line
``{"id": N, "ok": true, ...}`` or ``{"id": N, "ok": false, "error": "..."}``. End of input
closes the node gracefully; the demo kills it with SIGKILL to show a crash.

The node does nothing on its own beyond what every node does: the demo's steps are the
operations in :data:`OPS`, each a thin use of one facade (``node.members()``,
``node.processes``, ``node.channels``, ``node.kv``, ``node.consensus``, ``node.health``),
and each waits for its condition with ``node.wait_until`` under a bounded
``trio.fail_after`` (never a sleep). The settings are the demo's (:mod:`foundation_p2p.demo`
builds them): ``name``, ``key_file``, ``data_dir``, ``join`` (``HOST:PORT`` texts) and
``extra`` (the node's TOML tables).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from foundation_p2p.addresses import format_address, parse_address
from foundation_p2p.config import NodeConfig
from foundation_p2p.membership.state import MemberState
from foundation_p2p.runtime import Node, open_node
from foundation_p2p.runtime.consensus import NotLeader

log = logging.getLogger("foundation_p2p.demo")

SINGLETON_SERVICE = "demo.ticker"
"""The service every demo node defines; the demo runs it as a singleton."""
MAX_DELIVERIES = 10_000
"""Deliveries remembered per topic (beyond that the newest are not recorded, counted in
``dropped``): the demo sends a few dozen."""


@dataclass
class Worker:
    """The node and what the demo's operations recorded on it."""

    node: Node
    started: float
    """``time.monotonic()`` when the node was serving (before the ready line)."""
    nursery: trio.Nursery
    singleton_log: list[dict[str, Any]] = field(default_factory=list)
    """One record per start of the singleton service here (``time``, ``handoff``)."""
    deliveries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per subscribed topic, one record per message received: ``seq``, ``at`` (arrival,
    ``time.monotonic()``), ``latency_s``, ``bytes`` (of its ``blob``), ``channel``."""
    dropped: dict[str, int] = field(default_factory=dict)
    changed: trio.Event = field(default_factory=trio.Event)

    def poke(self) -> None:
        """Wake the waits on :attr:`deliveries` / :attr:`singleton_log`."""
        self.changed.set()
        self.changed = trio.Event()
        self.node.wake()


def _alive(node: Node) -> list[Any]:
    return [m for m in node.members() if m.state is MemberState.ALIVE and not m.observer]


def _names(node: Node) -> dict[bytes, str]:
    return {m.node_id: m.name or m.node_id.hex()[:8] for m in node.members()}


def make_ticker(worker: Worker) -> Callable[[Node, Any, Any], Awaitable[Any]]:
    """The demo's singleton service, noting its starts in ``worker.singleton_log``."""

    async def ticker(node: Node, args: Any, handoff: Any) -> Any:
        """Runs until asked to hand off; hands the list of nodes it ran on to its successor."""
        history = list(handoff["ran_on"]) if isinstance(handoff, dict) else []
        worker.singleton_log.append({"time": time.monotonic(), "handoff": handoff})
        worker.poke()
        await node.supervisor.stop_requested()
        return {"ran_on": [*history, node.name]}

    return ticker


# -- operations ----------------------------------------------------------------------


async def op_members(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Every member this node knows, with its state (``node.members()``)."""
    return {
        "members": [
            {"name": m.name, "node_id": m.node_id.hex(), "state": m.state.name.lower(),
             "address": format_address(m.address), "incarnation": m.incarnation}
            for m in w.node.members() if not m.observer
        ]
    }


async def op_wait_alive(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Wait until ``count`` members (this node included) are alive; when (``at``, this
    machine's ``time.monotonic()``) it happened."""
    count = int(msg["count"])
    with trio.fail_after(float(msg["timeout"])):
        await w.node.wait_until(lambda: len(_alive(w.node)) >= count)
    return {"at": time.monotonic(), "alive": len(_alive(w.node))}


async def op_start_singleton(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """``node.processes.start_singleton(name, service)`` (the same call on every node)."""
    w.node.processes.start_singleton(str(msg["name"]), SINGLETON_SERVICE)
    return {}


async def op_wait_singleton(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Wait until ``node.processes.lookup_singleton(name)`` names a node not in
    ``exclude`` (hex ids); that node's id and name."""
    name = str(msg["name"])
    exclude = {bytes.fromhex(x) for x in msg.get("exclude", [])}

    def placed() -> bool:
        owner = w.node.processes.lookup_singleton(name)
        return owner is not None and owner not in exclude

    with trio.fail_after(float(msg["timeout"])):
        await w.node.wait_until(placed)
    owner = w.node.processes.lookup_singleton(name)
    assert owner is not None
    return {"owner": owner.hex(), "owner_name": _names(w.node).get(owner, owner.hex()[:8])}


async def op_wait_running(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Wait until the singleton service has started here at least ``starts`` times; its
    last start (seconds since the node started, the handoff state it received)."""
    starts = int(msg.get("starts", 1))
    with trio.fail_after(float(msg["timeout"])):
        while len(w.singleton_log) < starts:
            await w.changed.wait()
    last = w.singleton_log[-1]
    return {"at_s": last["time"] - w.started, "at": last["time"], "handoff": last["handoff"]}


async def _collect(w: Worker, topic: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    records = w.deliveries.setdefault(topic, [])
    async with w.node.channels.subscribe(topic) as sub:
        task_status.started()
        async for delivery in sub:
            value = delivery.value
            if not isinstance(value, dict) or "sent" not in value:
                continue
            if len(records) >= MAX_DELIVERIES:
                w.dropped[topic] = w.dropped.get(topic, 0) + 1
                continue
            records.append({
                "seq": value.get("seq"),
                "at": time.monotonic(),
                "latency_s": time.monotonic() - float(value["sent"]),
                "bytes": len(value.get("blob", b"")),
                "channel": delivery.channel,
            })
            w.poke()


async def op_subscribe(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Subscribe to each of ``topics`` (``node.channels.subscribe``) and record what
    arrives with its latency (both processes read the same ``CLOCK_MONOTONIC``)."""
    for topic in msg["topics"]:
        await w.nursery.start(_collect, w, str(topic))
    return {}


async def op_wait_subscribers(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Wait until this node has learned (membership extension 1) that each node of
    ``subscribers`` subscribes to each of ``topics``."""
    core = w.node.core.channels.core
    wanted = {bytes.fromhex(x) for x in msg["subscribers"]}
    topics = [str(t) for t in msg["topics"]]
    with trio.fail_after(float(msg["timeout"])):
        await w.node.wait_until(
            lambda: all(wanted <= set(core.subscribers_of(t)) for t in topics)
        )
    return {}


async def op_publish(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """One message of ``data_bytes`` on ``data``, then ``control_count`` small ones on
    ``control``, one every ``interval_s`` (``node.channels.broadcast``); each carries
    the ``time.monotonic()`` of its sending."""
    channels = w.node.channels
    blob = bytes(int(msg["data_bytes"]))
    channels.broadcast("data", {"sent": time.monotonic(), "seq": 0, "blob": blob})
    for seq in range(int(msg["control_count"])):
        channels.broadcast("control", {"sent": time.monotonic(), "seq": seq})
        # the send pattern of the demo (a paced stream of commands), not a wait for a state
        await trio.sleep(float(msg["interval_s"]))
    return {}


async def op_wait_deliveries(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Wait until ``want`` (topic -> count) messages arrived; their records."""
    want = {str(k): int(v) for k, v in msg["want"].items()}
    with trio.fail_after(float(msg["timeout"])):
        while any(len(w.deliveries.get(t, [])) < n for t, n in want.items()):
            await w.changed.wait()
    return {"deliveries": {t: w.deliveries.get(t, []) for t in want}}


async def op_raft(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """This node's Raft status (``node.consensus.status()``)."""
    st = w.node.consensus.status()
    if st is None:
        return {"raft": None}
    names = _names(w.node)
    return {"raft": {
        "role": st.role.value, "term": st.term, "commit": st.commit,
        "leader": st.leader.hex() if st.leader else None,
        "leader_name": names.get(st.leader, "?") if st.leader else None,
        "voters": len(st.voters),
    }}


async def op_wait_leader(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Wait until this node knows a leader that is not in ``exclude`` and a configuration
    of at least ``voters`` voters; then its status."""
    exclude = {bytes.fromhex(x) for x in msg.get("exclude", [])}
    voters = int(msg.get("voters", 0))
    consensus = w.node.consensus

    def known() -> bool:
        st = consensus.status()
        return (st is not None and st.leader is not None and st.leader not in exclude
                and len(st.voters) >= voters)

    with trio.fail_after(float(msg["timeout"])):
        await w.node.wait_until(known)
    return await op_raft(w, msg)


async def op_kv_put(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """``node.kv.put(key, value)``; a proposal that finds no leader (before the group
    forms, during an election) is tried again once this node knows one, until ``timeout``."""
    key, value = str(msg["key"]).encode(), str(msg["value"]).encode()
    consensus = w.node.consensus
    t0 = time.monotonic()
    attempts = 0
    with trio.fail_after(float(msg["timeout"])):
        while True:
            attempts += 1
            try:
                await w.node.kv.put(key, value)
                break
            except NotLeader as exc:
                if exc.reason != "no_leader":
                    raise
                await w.node.wait_until(
                    lambda: (st := consensus.status()) is not None and st.leader is not None
                )
    return {"latency_s": time.monotonic() - t0, "attempts": attempts}


async def op_kv_get(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """``node.kv.get(key)`` (a linearizable read)."""
    with trio.fail_after(float(msg["timeout"])):
        value = await w.node.kv.get(str(msg["key"]).encode())
    return {"value": None if value is None else value.decode()}


async def op_health(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """``node.health.report()`` as JSON; with ``until`` ({name: status}), first wait
    (re-reading the report after each pump step) until those nodes have those statuses
    (and, if ``reason`` is given, every unhealthy one a reason containing it)."""
    until = {str(k): str(v) for k, v in msg.get("until", {}).items()}

    reason = str(msg.get("reason", ""))

    def matches() -> bool:
        report = w.node.health.report_json()
        nodes = {n["name"]: n for n in report["nodes"]}
        return all(
            k in nodes and nodes[k]["status"] == v
            and (not reason or v == "healthy" or any(reason in r for r in nodes[k]["reasons"]))
            for k, v in until.items()
        )

    if until:
        with trio.fail_after(float(msg["timeout"])):
            await w.node.wait_until(matches)
    return {"report": w.node.health.report_json()}


async def op_block(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Block this node's event loop for ``chunk_s`` at a time without yielding, then let it
    run for ``gap_s``, for ``total_s`` (the fault the health step shows: nothing in the
    node runs while a chunk lasts, as with a long synchronous call in an application task;
    the gaps are the fault's shape, not a wait for some state)."""
    end = time.monotonic() + float(msg["total_s"])
    chunk, gap = float(msg["chunk_s"]), float(msg.get("gap_s", 0.0))
    while time.monotonic() < end:
        time.sleep(chunk)  # the injected fault: a task that does not yield
        await trio.sleep(gap)
    return {}


async def op_counters(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """The node's counters whose names start with ``prefix`` (``node.counters``)."""
    prefix = str(msg.get("prefix", ""))
    return {"counters": {k: v for k, v in w.node.counters.items() if k.startswith(prefix)}}


class DemoBidder:
    """A coordination agent's handler that bids the amount it was started with (its
    private valuation), votes yes and accepts the first offer it is made."""

    def __init__(self, args: Any) -> None:
        self.amount = int(args["amount"])

    def bid(self, auction: Any) -> int | None:
        """The sealed bid for any auction it is invited to."""
        return self.amount

    def vote(self, proposal: Any) -> int:
        """Yes."""
        return 1

    def offer(self, negotiation: Any) -> Any:
        """Accept an offer made to it, else offer its amount."""
        from foundation_p2p.coordination.negotiation import Accept, Offer

        return Accept() if negotiation.last_offer is not None else Offer(self.amount)


def make_bidder(args: Any) -> DemoBidder:
    """The agent factory the demo names (``foundation_p2p.demo_node:make_bidder``)."""
    return DemoBidder(args)


async def op_start_agent(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """``node.coordination.start_coordination_agent`` of a :class:`DemoBidder` bidding
    ``amount`` (a supervised singleton, placed where the supervisor puts it)."""
    record = w.node.coordination.start_coordination_agent(
        "foundation_p2p.demo_node:make_bidder", {"amount": int(msg["amount"])},
        name=str(msg["name"]), capabilities=[str(msg["capability"])],
    )
    return {"agent_id": record.agent_id.hex()}


async def op_wait_agents(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """Wait until ``count`` agents with ``capability`` are registered; each one's id,
    name and the node hosting it (``node.processes.lookup_singleton("agent-<id>")``)."""
    coord = w.node.coordination
    timeout = float(msg["timeout"])
    agents = await coord.wait_agents(int(msg["count"]), str(msg["capability"]), timeout)
    names = _names(w.node)
    out = []
    for a in agents:
        host = w.node.processes.lookup_singleton("agent-" + a.agent_id.hex())
        out.append({"agent_id": a.agent_id.hex(), "name": a.name,
                    "host": names.get(host, "?") if host is not None else None})
    return {"agents": out}


def _result(result: Any) -> dict[str, Any]:
    return {
        "auction_id": result.auction_id.hex(),
        "winners": [[b.hex(), amount] for b, amount in result.winners],
        "price": result.price,
        "unrevealed": [b.hex() for b in result.unrevealed],
    }


async def op_auction(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """``node.coordination.coordinate_resource_allocation(agent_ids, resources)``: a
    sealed-bid second-price auction through Raft; its result and how long it took."""
    t0 = time.monotonic()
    result = await w.node.coordination.coordinate_resource_allocation(
        [bytes.fromhex(a) for a in msg["agent_ids"]], [str(r) for r in msg["resources"]],
        timeout_s=float(msg["timeout"]), commit_timeout_s=float(msg["phase_timeout"]),
        reveal_timeout_s=float(msg["phase_timeout"]),
    )
    return {**_result(result), "took_s": time.monotonic() - t0}


async def op_auction_result(w: Worker, msg: dict[str, Any]) -> dict[str, Any]:
    """The result of auction ``auction_id`` computed by this node's own replica, once it
    applied the ``Finalize`` entry (``node.coordination.wait_result``)."""
    result = await w.node.coordination.wait_result(bytes.fromhex(str(msg["auction_id"])),
                                                   float(msg["timeout"]))
    return _result(result)


Op = Callable[[Worker, dict[str, Any]], Awaitable[dict[str, Any]]]
OPS: dict[str, Op] = {
    "members": op_members,
    "wait_alive": op_wait_alive,
    "start_singleton": op_start_singleton,
    "wait_singleton": op_wait_singleton,
    "wait_running": op_wait_running,
    "subscribe": op_subscribe,
    "wait_subscribers": op_wait_subscribers,
    "publish": op_publish,
    "wait_deliveries": op_wait_deliveries,
    "raft": op_raft,
    "wait_leader": op_wait_leader,
    "kv_put": op_kv_put,
    "kv_get": op_kv_get,
    "health": op_health,
    "block": op_block,
    "counters": op_counters,
    "start_agent": op_start_agent,
    "wait_agents": op_wait_agents,
    "auction": op_auction,
    "auction_result": op_auction_result,
}
"""The operations the demo can ask of a node."""


def register_op(name: str, op: Op) -> None:
    """Add an operation (for steps built on capabilities that live in other modules)."""
    OPS[name] = op


# -- the process -----------------------------------------------------------------------


class Output:
    """Writes one JSON object per line on stdout, one writer at a time."""

    def __init__(self) -> None:
        self._stream = trio.lowlevel.FdStream(1)
        self._lock = trio.Lock()

    async def send(self, record: dict[str, Any]) -> None:
        """Write ``record`` and a newline."""
        data = (json.dumps(record, default=_jsonable) + "\n").encode()
        async with self._lock:
            await self._stream.send_all(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


async def _answer(w: Worker, out: Output, msg: dict[str, Any]) -> None:
    rid = msg.get("id")
    op = OPS.get(str(msg.get("op")))
    if op is None:
        await out.send({"id": rid, "ok": False, "error": f"unknown op {msg.get('op')!r}"})
        return
    try:
        result = await op(w, msg)
    except trio.TooSlowError:
        await out.send({"id": rid, "ok": False,
                        "error": f"{msg['op']}: timed out after {msg.get('timeout')} s"})
        return
    except Exception as exc:  # every failure goes back to the demo, which reports it
        log.debug("op %s failed", msg.get("op"), exc_info=True)
        await out.send({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    await out.send({"id": rid, "ok": True, **result})


def node_config(settings: dict[str, Any]) -> NodeConfig:
    """The node's configuration from the demo's settings."""
    return NodeConfig(
        name=str(settings["name"]),
        bind=("127.0.0.1", 0),
        join=tuple(parse_address(a) for a in settings.get("join", [])),
        cluster_key_file=str(settings["key_file"]),
        data_dir=str(settings["data_dir"]),
        extra=dict(settings.get("extra", {})),
    )


async def serve(settings: dict[str, Any]) -> None:
    """Open the node, print the ready line, answer commands until stdin closes."""
    out = Output()
    async with open_node(node_config(settings)) as node, trio.open_nursery() as nursery:
        worker = Worker(node, time.monotonic(), nursery)
        node.supervisor.define_service(SINGLETON_SERVICE, make_ticker(worker))
        await out.send({"ready": True, "node_id": node.node_id.hex(),
                        "address": format_address(node.address), "epoch": node.boot_epoch,
                        "started": worker.started})
        stdin = trio.lowlevel.FdStream(0)
        buffer = b""
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    nursery.start_soon(_answer, worker, out, json.loads(line))
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m foundation_p2p.demo_node SETTINGS_JSON``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m foundation_p2p.demo_node SETTINGS_JSON", file=sys.stderr)
        return 2
    settings = json.loads(args[0])
    logging.basicConfig(level=str(settings.get("log_level", "WARNING")), stream=sys.stderr)
    trio.run(serve, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
