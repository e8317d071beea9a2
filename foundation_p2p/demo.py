"""A guided tour: a 5-node cluster on 127.0.0.1 showing each capability (``make demo``).

Run it with ``python -m foundation_p2p.demo``. It starts five nodes, each in its own process
(:mod:`foundation_p2p.demo_node`: ``open_node`` over real UDP on the loopback interface, a
data directory under a temporary directory, one shared cluster keyring, a ``[consensus]``
table), drives them over their stdin/stdout, and runs the steps of :data:`SECTIONS` in
order: membership converging (and the Raft group forming); a large message on ``data``
and small ones on ``control`` with their latencies; the health table before and while a
node's event loop is blocked; a singleton placed, its node SIGKILLed, the singleton
running elsewhere; KV writes through Raft and a leader SIGKILL with failover; a sealed-bid
auction among agents, with its winner and price; forged and damaged packets dropped and
counted; the killed nodes restarted from their data directories. It ends by itself (22 s
at load average 9, 33-40 s at 18-22 on a shared 2-CPU machine), exit status 0; a step that
fails prints which and what it expected, and the demo exits 1.

The killed nodes stay down until the last step: a node restarted with the same node id
does not get its new registry writes accepted by the peers that knew its previous boot
(its registry dots restart at counter 1; see the report of helper D, session 4), so the
registry-based steps run before any restart.

Adding a step: write ``async def section_x(cluster: DemoCluster) -> None`` that prints
through ``cluster.out`` and asks the nodes for what it needs with ``await
node.call(op, ...)`` (the operations are in :data:`foundation_p2p.demo_node.OPS`, each
waiting on a condition under a bounded timeout, never a sleep), then append it to
:data:`SECTIONS`. ``cluster.running()`` lists the nodes whose process runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio

from foundation_p2p.addresses import Address, format_address, parse_address
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.runtime.rawpeer import RawPeer
from foundation_p2p.wire import cbor

log = logging.getLogger("foundation_p2p.demo")

NAMES = ("n1", "n2", "n3", "n4", "n5")
"""The demo's nodes."""
MEMBERSHIP: dict[str, Any] = {
    "profile": "local",
    "probe_interval_s": 0.2,
    "probe_timeout_s": 0.15,
    "indirect_checks": 2,
    "suspicion_mult": 8,
    "retransmit_mult": 4,
    "push_pull_interval_s": 2.0,
}
"""The nodes' ``[membership]`` table: the ``local`` profile with faster probes, a
suspicion timeout of at least 1.6 s (8 probe periods: a node whose event loop stalls for
a second on a loaded machine is suspected, not declared failed), memberlist's LAN
retransmit multiplier and a short push-pull, so that joins and failures reach every node
within a step's timeout."""
CONSENSUS: dict[str, Any] = {
    "tick_interval_s": 0.05,
    "election_tick": 10,
    "bootstrap_expect": 5,
    "request_timeout_s": 3.0,
}
"""The nodes' ``[consensus]`` table: one Raft group of the five, 0.5 s election timeout."""
HEALTH: dict[str, Any] = {"interval_s": 0.25}
"""The nodes' ``[health]`` table: a health-gossip round every 0.25 s (default 1 s)."""
STEP_TIMEOUT_S = 10.0
"""Longest wait for any one thing the demo expects to happen."""
START_TIMEOUT_S = 20.0
"""Longest wait for a node process to print its ready line (Python imports included)."""
DATA_BYTES = 1024 * 1024
"""The large message of the channels step."""
CONTROL_COUNT = 40
CONTROL_INTERVAL_S = 0.01


class DemoFailed(Exception):
    """A step did not see what it expected; the message says what."""


class Printer:
    """Writes the demo's output: section titles, aligned tables and plain lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def line(self, text: str = "") -> None:
        """One line of text."""
        print(text, file=self.stream, flush=True)

    def title(self, number: int, text: str) -> None:
        """A section heading, with the time since the demo started."""
        elapsed = time.monotonic() - self.started
        self.line()
        self.line(f"== {number}. {text}  (t={elapsed:.1f}s)")

    def table(self, header: list[str], rows: list[list[str]], align: str = "") -> None:
        """Columns padded to their widest cell; ``align`` has one ``l`` or ``r`` per column
        (default: the first left, the others right)."""
        align = align or "l" + "r" * (len(header) - 1)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [
                c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i])
                for i, c in enumerate(row)
            ]
            self.line("   " + "  ".join(cells).rstrip())


class DemoNode:
    """One node process (:mod:`foundation_p2p.demo_node`) and its command channel."""

    def __init__(self, name: str, process: trio.Process, log_path: str) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.node_id = ""
        """Its node id (hex), from the ready line."""
        self.address: Address = ("127.0.0.1", 0)
        self.started = 0.0
        """When it was serving (``time.monotonic()``, the same clock in every process)."""
        self._ready = trio.Event()
        self._next_id = 0
        self._waiting: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self._ended = False

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    async def read(self) -> None:
        """Read the process's answers until its stdout closes (run in the cluster's nursery)."""
        assert self.process.stdout is not None
        buffer = b""
        try:
            while True:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._dispatch(json.loads(line))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._ended = True
            self._ready.set()
            for event, box in self._waiting.values():
                box.append({"ok": False, "error": "the node process ended"})
                event.set()
            self._waiting.clear()

    def _dispatch(self, record: dict[str, Any]) -> None:
        if record.get("ready"):
            self.node_id = str(record["node_id"])
            self.address = parse_address(str(record["address"]))
            self.started = float(record["started"])
            self._ready.set()
            return
        waiting = self._waiting.pop(int(record["id"]), None)
        if waiting is not None:
            waiting[1].append(record)
            waiting[0].set()

    async def wait_ready(self) -> None:
        """Wait for the ready line (bounded by :data:`START_TIMEOUT_S`)."""
        with trio.move_on_after(START_TIMEOUT_S):
            await self._ready.wait()
        if not self.node_id:
            raise DemoFailed(f"{self.name} did not start within {START_TIMEOUT_S:g} s"
                             f"{self.log_tail()}")

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Ask the node to run ``op``; its answer, or :class:`DemoFailed` naming the error."""
        if self._ended:
            raise DemoFailed(f"{self.name}: {op}: the node process is not running")
        self._next_id += 1
        rid = self._next_id
        event, box = trio.Event(), list[dict[str, Any]]()
        self._waiting[rid] = (event, box)
        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps({"id": rid, "op": op, **args}) + "\n")
                                          .encode())
        # Every op waits at most its own "timeout"; this bound only catches a hung process.
        with trio.move_on_after(float(args.get("timeout", STEP_TIMEOUT_S)) + STEP_TIMEOUT_S):
            await event.wait()
        if not box:
            raise DemoFailed(f"{self.name}: {op}: no answer{self.log_tail()}")
        answer: dict[str, Any] = box[0]
        if not answer.get("ok"):
            raise DemoFailed(f"{self.name}: {op}: {answer.get('error')}{self.log_tail()}")
        return answer

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process (SIGKILL, SIGSTOP, SIGCONT...)."""
        if self.process.returncode is None:
            self.process.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL: no leave announcement, no handoff; the socket just goes silent."""
        self.signal(signal.SIGKILL)
        await self.process.wait()

    async def close(self) -> None:
        """End its input: the node leaves gracefully and the process exits (else: killed)."""
        if self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        with contextlib.suppress(trio.BrokenResourceError):
            await self.process.stdin.aclose()
        with trio.move_on_after(STEP_TIMEOUT_S):
            await self.process.wait()
        if self.process.returncode is None:
            log.warning("%s did not exit after its input closed; killing it", self.name)
            await self.kill()

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the process's stderr, indented (empty if there are none)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
        except OSError:
            return ""
        return "".join(f"\n      {self.name} stderr: {t}" for t in tail)


@dataclass
class DemoCluster:
    """The demo's node processes (by name), a keyring file, a printer."""

    root: str
    out: Printer
    nursery: trio.Nursery
    keyring: Keyring = field(default_factory=lambda: Keyring.generate(os.urandom))
    nodes: dict[str, DemoNode] = field(default_factory=dict)
    log_level: str = "WARNING"

    @property
    def key_file(self) -> str:
        """The cluster keyring file every node reads."""
        path = os.path.join(self.root, "cluster.key")
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.keyring.to_text())
        return path

    async def start(self, name: str, join: list[str]) -> DemoNode:
        """Start node ``name`` in its own process; return once it is serving."""
        settings = {
            "name": name,
            "key_file": self.key_file,
            "data_dir": os.path.join(self.root, name),
            "join": join,
            "extra": {"membership": MEMBERSHIP, "consensus": CONSENSUS, "health": HEALTH},
            "log_level": self.log_level,
        }
        log_path = os.path.join(self.root, f"{name}.log")
        args = [sys.executable, "-m", "foundation_p2p.demo_node", json.dumps(settings)]
        try:
            with open(log_path, "ab") as stderr:
                process = await trio.lowlevel.open_process(
                    args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
                )
        except OSError as exc:
            raise DemoFailed(f"cannot start {name}'s process ({args[0]}): {exc}") from exc
        node = DemoNode(name, process, log_path)
        self.nodes[name] = node
        self.nursery.start_soon(node.read)
        await node.wait_ready()
        return node

    def name_of(self, node_id: str) -> str:
        """The name of the node with this hex id (or its first 8 hex digits)."""
        for name, node in self.nodes.items():
            if node.node_id == node_id:
                return name
        return node_id[:8]

    def running(self, *exclude: str) -> list[DemoNode]:
        """The nodes whose process runs, but ``exclude``."""
        return [n for n in self.nodes.values()
                if n.process.returncode is None and n.name not in exclude]

    async def close_all(self) -> None:
        """Close every node (gracefully: each leaves), all at once."""
        async with trio.open_nursery() as nursery:
            for node in self.nodes.values():
                nursery.start_soon(node.close)


Section = Callable[[DemoCluster], Awaitable[None]]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- sections --------------------------------------------------------------------------


async def section_membership(cluster: DemoCluster) -> None:
    """Five node processes: n1 first, then n2..n5 all at once, each joining through n1;
    every node waits until it sees all five alive (SWIM gossip)."""
    out = cluster.out
    n1 = await cluster.start("n1", [])
    seed = [format_address(n1.address)]
    async with trio.open_nursery() as nursery:
        for name in NAMES[1:]:
            nursery.start_soon(cluster.start, name, seed)
    out.line("   n1 starts; n2..n5 start together and join through n1 (SWIM + Lifeguard,")
    out.line(f"   probe every {MEMBERSHIP['probe_interval_s']} s); each waits to see all "
             "five alive:")
    seen: dict[str, dict[str, Any]] = {}

    async def wait(node: DemoNode) -> None:
        seen[node.name] = await node.call("wait_alive", count=len(NAMES), timeout=STEP_TIMEOUT_S)

    async with trio.open_nursery() as nursery:
        for node in cluster.nodes.values():
            nursery.start_soon(wait, node)
    last_up = max(n.started for n in cluster.nodes.values())
    rows = [[n.name, str(n.pid), format_address(n.address), n.node_id[:16] + "…",
             f"{seen[n.name]['at'] - last_up:.2f} s"]
            for n in sorted(cluster.nodes.values(), key=lambda n: n.name)]
    out.table(["node", "pid", "address", "node id", "sees all 5 alive"], rows, align="lrlll")
    out.line("   (times from the moment the last process was serving)")
    raft = await n1.call("wait_leader", voters=len(NAMES), timeout=STEP_TIMEOUT_S * 2)
    formed = time.monotonic() - last_up
    r = raft["raft"]
    out.line(f"   the five formed one Raft group ({r['voters']} voters): leader "
             f"{r['leader_name']}, term {r['term']}, {formed:.1f} s after the last start")


async def section_singleton(cluster: DemoCluster) -> None:
    """A singleton started everywhere runs once; SIGKILL its node; it runs elsewhere."""
    out = cluster.out
    nodes = cluster.running()
    for node in nodes:
        await node.call("start_singleton", name="clock")
    placed = await nodes[0].call("wait_singleton", name="clock", timeout=STEP_TIMEOUT_S)
    host = cluster.nodes[cluster.name_of(placed["owner"])]
    await host.call("wait_running", timeout=STEP_TIMEOUT_S)
    out.line("   every node calls node.processes.start_singleton('clock', 'demo.ticker');")
    out.line(f"   rendezvous hashing over the live nodes places it on {host.name}, "
             "and only there")
    observer = next(n for n in nodes if n is not host)
    await host.kill()
    killed = time.monotonic()
    out.line(f"   {host.name} (pid {host.pid}) killed with SIGKILL: no goodbye, no handoff")
    moved = await observer.call("wait_singleton", name="clock", exclude=[host.node_id],
                                timeout=STEP_TIMEOUT_S)
    new_host = cluster.nodes[cluster.name_of(moved["owner"])]
    running = await new_host.call("wait_running", timeout=STEP_TIMEOUT_S)
    out.line(f"   {observer.name} sees 'clock' placed on {new_host.name} after "
             f"{time.monotonic() - killed:.2f} s; it started there "
             f"{running['at'] - killed:.2f} s after the kill")
    out.line("   (the supervisors noticed the failure through membership and placed it again)")
    out.line(f"   ({host.name} stays down; the last step restarts it)")


async def section_channels(cluster: DemoCluster) -> None:
    """n1 publishes a 1 MiB message on ``data`` then 40 small ones on ``control``; n2
    subscribes to both and measures each message's latency."""
    out = cluster.out
    pub, sub = cluster.nodes["n1"], cluster.nodes["n2"]
    await sub.call("subscribe", topics=["data", "control"])
    await pub.call("wait_subscribers", topics=["data", "control"], subscribers=[sub.node_id],
                   timeout=STEP_TIMEOUT_S)
    out.line("   n2 subscribes to 'data' and 'control'; its topics reach n1 in its "
             "membership announcement")
    out.line(f"   n1 sends {DATA_BYTES // (1024 * 1024)} MiB on 'data', then {CONTROL_COUNT} "
             f"small messages on 'control', one every {_ms(CONTROL_INTERVAL_S)} ms")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pub.call(
            "publish", data_bytes=DATA_BYTES, control_count=CONTROL_COUNT,
            interval_s=CONTROL_INTERVAL_S, timeout=STEP_TIMEOUT_S))
        got = await sub.call("wait_deliveries", want={"data": 1, "control": CONTROL_COUNT},
                             timeout=STEP_TIMEOUT_S * 3)
    data_done = float(got["deliveries"]["data"][0]["at"])
    early = sum(1 for r in got["deliveries"]["control"] if float(r["at"]) < data_done)
    rows = []
    for topic in ("data", "control"):
        records = got["deliveries"][topic]
        lat = [float(r["latency_s"]) for r in records]
        size = max(int(r["bytes"]) for r in records)
        rows.append([topic, str(len(records)), f"{size:,}" if size else "small",
                     _ms(statistics.median(lat)), _ms(_percentile(lat, 0.99)), _ms(max(lat))])
    out.table(["channel", "messages", "bytes", "p50 ms", "p99 ms", "max ms"], rows)
    out.line(f"   {early} of the {CONTROL_COUNT} control messages arrived while the large "
             "one was still in flight:")
    out.line("   one encrypted connection per peer, one stream per channel, 'control' at "
             "RFC 9218 urgency 0")


async def section_kv(cluster: DemoCluster) -> None:
    """Writes through Raft from a follower, SIGKILL of the leader, a new leader, more
    writes, every acknowledged write read back."""
    out = cluster.out
    first = cluster.running()[0]
    status = (await first.call("wait_leader", timeout=STEP_TIMEOUT_S))["raft"]
    leader = cluster.nodes[cluster.name_of(status["leader"])]
    writer = next(n for n in cluster.running(leader.name))
    rows = []
    for i in range(1, 4):
        put = await writer.call("kv_put", key=f"k{i}", value=f"v{i}", timeout=STEP_TIMEOUT_S)
        rows.append([f"put k{i}=v{i}", writer.name, _ms(put["latency_s"])])
    out.line(f"   leader {leader.name} (term {status['term']}); {writer.name} writes "
             "through node.kv.put (a follower forwards to the leader):")
    out.table(["operation", "from", "ms"], rows, align="llr")
    await leader.kill()
    killed = time.monotonic()
    out.line(f"   leader {leader.name} killed with SIGKILL")
    survivors = cluster.running()
    new = (await survivors[0].call("wait_leader", exclude=[leader.node_id],
                                   timeout=STEP_TIMEOUT_S))["raft"]
    elapsed = time.monotonic() - killed
    out.line(f"   {survivors[0].name} follows a new leader, {new['leader_name']} "
             f"(term {new['term']}), {elapsed:.2f} s after the kill")
    put = await survivors[-1].call("kv_put", key="k4", value="v4", timeout=STEP_TIMEOUT_S)
    out.line(f"   {survivors[-1].name} writes k4=v4 under the new leader in "
             f"{_ms(put['latency_s'])} ms")
    reader = survivors[1]
    values = []
    for i in range(1, 5):
        got = await reader.call("kv_get", key=f"k{i}", timeout=STEP_TIMEOUT_S)
        if got["value"] != f"v{i}":
            raise DemoFailed(f"kv: {reader.name} read k{i}={got['value']!r}, expected v{i}")
        values.append(f"k{i}={got['value']}")
    out.line(f"   {reader.name} reads them back (linearizable reads): {', '.join(values)}")
    out.line(f"   ({leader.name} stays down too: 3 of the 5 voters remain, still a majority)")


BIDS = (40, 65, 90, 25, 70)
"""The private valuation (what it bids) of agent-1 .. agent-5."""


async def section_auction(cluster: DemoCluster) -> None:
    """The live nodes start five agents, each bidding its own valuation; one node
    allocates a resource among them by a sealed-bid second-price auction through Raft;
    every live node computes the same winner and price from its own replica of the log."""
    out = cluster.out
    live = cluster.running()
    ids: dict[str, str] = {}
    valuation: dict[str, int] = {}
    for i, amount in enumerate(BIDS):
        name = f"agent-{i + 1}"
        started = await live[i % len(live)].call("start_agent", name=name, amount=amount,
                                                  capability="gpu")
        ids[str(started["agent_id"])] = name
        valuation[name] = amount
    opener = live[0]
    agents = (await opener.call("wait_agents", count=len(BIDS), capability="gpu",
                                timeout=STEP_TIMEOUT_S))["agents"]
    out.line(f"   the {len(live)} live nodes start five coordination agents (supervised "
             "singletons, in the registry);")
    out.line("   each bids its private valuation, sealed: only a commitment goes through Raft "
             "until the reveal")
    rows = [[a["name"], a["agent_id"][:12] + "…", a["host"] or "(moving)",
             str(valuation.get(a["name"], "?"))]
            for a in sorted(agents, key=lambda a: str(a["name"]))]
    out.table(["agent", "agent id", "runs on", "valuation"], rows, align="lllr")
    result = await opener.call("auction", agent_ids=sorted(ids), resources=["gpu-hour"],
                               timeout=STEP_TIMEOUT_S * 2, phase_timeout=STEP_TIMEOUT_S / 2)
    winners = result["winners"]
    if len(winners) != 1:
        raise DemoFailed(f"auction: expected one winner, got {winners}")
    winner, bid = winners[0]
    out.line(f"   {opener.name}: node.coordination.coordinate_resource_allocation(5 agents, "
             f"['gpu-hour']), {result['took_s']:.2f} s:")
    out.line(f"   winner {ids.get(winner, winner[:8])} (bid {bid}) pays {result['price']}, "
             "the second-highest bid (second-price rule)")
    seen = {}
    for node in live:
        r = await node.call("auction_result", auction_id=result["auction_id"],
                            timeout=STEP_TIMEOUT_S)
        seen[node.name] = (r["winners"][0][0] if r["winners"] else None, r["price"])
    if len(set(seen.values())) != 1:
        raise DemoFailed(f"auction: the nodes disagree: {seen}")
    out.line(f"   every live node's replica computed the same winner and price: "
             f"{', '.join(sorted(seen))}")


def _cluster_reasons(report: dict[str, Any]) -> str:
    reasons = report.get("reasons") or []
    return f" ({'; '.join(reasons)})" if reasons else ""


def _health_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for node in sorted(report["nodes"], key=lambda n: n["name"]):
        summary = node.get("summary") or {}
        lag = summary.get("loop_lag_ms")
        rows.append([node["name"], node["state"], node["status"],
                     "-" if lag is None else str(lag),
                     "; ".join(node["reasons"]) or "-"])
    return rows


async def section_health(cluster: DemoCluster) -> None:
    """n1's health report (read from gossip, no round trip) with every node healthy, then
    while n5's event loop is blocked, then once n5 has recovered."""
    out = cluster.out
    n1, slow = cluster.nodes["n1"], cluster.nodes["n5"]
    before = (await n1.call("health", until={"n5": "healthy"},
                            timeout=STEP_TIMEOUT_S))["report"]
    header = ["node", "state", "status", "loop lag ms", "reasons"]
    out.line(f"   n1's node.health.report() (gossiped summaries, no round trip): cluster "
             f"{before['status']}{_cluster_reasons(before)}")
    out.table(header, _health_rows(before), align="lllrl")
    out.line("   n5's event loop is blocked 0.3 s in every 0.4 s (a task that does not "
             "yield), for 3 s:")
    blocked = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: slow.call("block", total_s=3.0, chunk_s=0.3, gap_s=0.1,
                                             timeout=STEP_TIMEOUT_S))
        during = (await n1.call("health", until={"n5": "degraded"}, reason="event loop",
                                timeout=STEP_TIMEOUT_S))["report"]
        seen = time.monotonic() - blocked
    out.line(f"   n1 reports n5 degraded {seen:.2f} s after the blocking began: cluster "
             f"{during['status']}{_cluster_reasons(during)}")
    out.table(header, _health_rows(during), align="lllrl")
    for text in during["recommendations"]:
        out.line(f"   recommendation: {text}")
    await n1.call("health", until={"n5": "healthy"}, timeout=STEP_TIMEOUT_S)
    out.line(f"   n5 is healthy again in n1's report {time.monotonic() - blocked:.2f} s after "
             "the blocking began")


async def section_bad_packets(cluster: DemoCluster) -> None:
    """An outsider's socket sends forged, damaged and replayed packets to a live node; it
    counts each in its ``packets.dropped.*`` counters and still answers pings."""
    out = cluster.out
    target = cluster.running()[0]
    t = target.name
    peer = await RawPeer.open(cluster.keyring)
    stranger = RawPeer(peer.sock, Keyring.generate(os.urandom))
    try:
        with trio.fail_after(STEP_TIMEOUT_S):
            rtt = await peer.ping(target.address)
        out.line(f"   a raw socket holding the cluster key pings {t} by hand: ack in "
                 f"{_ms(rtt)} ms")
        valid = peer.seal([peer.next_ping()])
        await peer.send(target.address, valid)
        flipped = bytearray(peer.seal([peer.next_ping()]))
        flipped[-5] ^= 0x01
        attempts: list[tuple[str, bytes]] = [
            ("the same packet again (a replay)", valid),
            ("sealed with another cluster's key", stranger.seal([stranger.next_ping()])),
            ("one bit flipped in the ciphertext", bytes(flipped)),
            ("truncated to half its length", peer.seal([peer.next_ping()])[: len(valid) // 2]),
            ("protocol version 2", cbor.encode([2, 1, b"\x00" * 16, 1, 1, 0, b"\x00" * 16])),
        ]
        rows = []
        for label, data in attempts:
            before = (await target.call("counters", prefix="packets.dropped."))["counters"]
            await peer.send(target.address, data)
            # the node reads its socket in order: once the next ping is answered, the bad packet
            # before it has been handled.
            with trio.fail_after(STEP_TIMEOUT_S):
                await peer.ping(target.address)
            after = (await target.call("counters", prefix="packets.dropped."))["counters"]
            changed = [f"{k} +{v - before.get(k, 0)}" for k, v in sorted(after.items())
                       if v != before.get(k, 0)]
            if not changed:
                raise DemoFailed(f"bad packets: {t} did not count '{label}' as dropped")
            rows.append([label, ", ".join(changed)])
        out.table([f"packet sent to {t}", f"{t}'s counter"], rows, align="ll")
    finally:
        peer.close()


async def section_restart(cluster: DemoCluster) -> None:
    """The nodes killed earlier restart from their data directories: the same node id, a
    new boot epoch, the Raft log recovered from the WAL; each catches up as a follower
    and reads the last write from its own replica."""
    out = cluster.out
    dead = [n for n in cluster.nodes.values() if n.process.returncode is not None]
    seed = format_address(cluster.running()[0].address)
    lines: dict[str, str] = {}

    async def restart(old: DemoNode) -> None:
        new = await cluster.start(old.name, [seed])
        raft = (await new.call("wait_leader", timeout=STEP_TIMEOUT_S))["raft"]
        got = await new.call("kv_get", key="k4", timeout=STEP_TIMEOUT_S)
        if got["value"] != "v4":
            raise DemoFailed(f"restart: {new.name} read k4={got['value']!r}, expected v4")
        same = "same node id" if new.node_id == old.node_id else "a NEW node id"
        lines[old.name] = (f"   {new.name}: {same}, Raft log from its WAL, a {raft['role']} "
                           f"of {raft['leader_name']} (term {raft['term']}); reads "
                           f"k4={got['value']}")

    async with trio.open_nursery() as nursery:
        for old in dead:
            nursery.start_soon(restart, old)
    for name in sorted(lines):
        out.line(lines[name])
    alive = await cluster.running()[0].call("wait_alive", count=len(NAMES),
                                            timeout=STEP_TIMEOUT_S)
    out.line(f"   membership: {alive['alive']} members alive again")


SECTIONS: list[tuple[str, Section]] = [
    ("Five nodes over UDP on 127.0.0.1: membership converges", section_membership),
    ("Channels: a large message on 'data', small ones on 'control'", section_channels),
    ("Health: the table before and while a node is slowed", section_health),
    ("A singleton: placed, its node killed, running elsewhere", section_singleton),
    ("KV through Raft, and a leader failover", section_kv),
    ("An auction among agents", section_auction),
    ("Bad packets are dropped and counted", section_bad_packets),
    ("The killed nodes restart from their data directories", section_restart),
]
"""The demo's steps, in order."""


def _describe(exc: BaseException) -> str:
    """What went wrong, in words: a :class:`DemoFailed` message as it is, another error
    with its type, the errors of a group one after the other."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    if isinstance(exc, DemoFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def run_demo(out: Printer, log_level: str = "WARNING", keep: str | None = None) -> None:
    """Start the cluster, run every section, close the cluster; :class:`DemoFailed` if a
    step did not see what it expected. The data directories and node logs go to a
    temporary directory, or to ``keep`` (created, and kept afterwards) if given."""
    if keep is not None:
        os.makedirs(keep, exist_ok=True)
    with (contextlib.nullcontext(keep) if keep is not None
          else tempfile.TemporaryDirectory(prefix="foundation-p2p-demo-")) as root:
        out.line("foundation-p2p demo: five nodes, each in its own process, over UDP on "
                 "127.0.0.1")
        out.line(f"   one cluster keyring; data directories and logs under {root}")
        failure: DemoFailed | None = None
        async with trio.open_nursery() as nursery:
            cluster = DemoCluster(root, out, nursery, log_level=log_level)
            try:
                for number, (title, section) in enumerate(SECTIONS, 1):
                    out.title(number, title)
                    try:
                        await section(cluster)
                    except Exception as exc:  # DemoFailed, or a bug in the demo: say where
                        log.debug("step %d failed", number, exc_info=True)
                        failure = DemoFailed(f"step {number} ({title}): {_describe(exc)}")
                        break
            finally:
                with trio.CancelScope(shield=True):
                    await cluster.close_all()
        if failure is not None:
            raise failure
    out.line()
    out.line("done: every node left the cluster gracefully and its process exited.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m foundation_p2p.demo``: 0 done, 1 a step failed."""
    parser = argparse.ArgumentParser(prog="python -m foundation_p2p.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="WARNING",
                        help="level of the nodes' logs, written to <dir>/nX.log "
                        "(default WARNING)")
    parser.add_argument("--keep", metavar="DIR",
                        help="put the data directories and logs in DIR and keep them "
                        "(default: a temporary directory, removed at the end)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    started = time.monotonic()
    try:
        trio.run(run_demo, Printer(sys.stdout), args.log_level.upper(), args.keep)
    except DemoFailed as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    print(f"(took {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
