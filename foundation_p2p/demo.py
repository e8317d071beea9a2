"""A guided tour: a small cluster on 127.0.0.1 showing each capability (``make demo``).

Run it with ``python -m foundation_p2p.demo``. It starts a few nodes over real UDP on the
loopback interface, each with its own data directory under a temporary directory and one
shared cluster keyring, then runs the sections of :data:`SECTIONS` in order and exits by
itself within a few seconds.

Adding a capability to the demo: write ``async def section_x(cluster: DemoCluster) ->
None`` that prints what it shows through ``cluster.out`` (and waits on conditions with a
bounded ``trio.fail_after``, never a sleep), and append it to :data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio

from foundation_p2p.addresses import Address, NodeId, format_address
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.events import PeerAcked
from foundation_p2p.membership.events import MemberFailed, MemberLeft
from foundation_p2p.runtime import Node, open_node
from foundation_p2p.runtime.rawpeer import RawPeer
from foundation_p2p.wire import cbor
from foundation_p2p.wire.packet import parse_packet

PROBE_INTERVAL_S = 0.2
"""How often the demo nodes ping each other (faster than the default, to keep it short)."""
MEMBERSHIP: dict[str, Any] = {
    "profile": "local",
    "probe_interval_s": 0.2,
    "probe_timeout_s": 0.1,
    "retransmit_mult": 4,
    "push_pull_interval_s": 2.0,
}
"""The demo nodes' ``[membership]`` table: the ``local`` profile with faster probes, and
memberlist's LAN retransmit multiplier and a short push-pull so that a join reaches every
node within the demo's step timeout."""
STEP_TIMEOUT_S = 5.0
"""Longest wait for any one thing the demo expects to happen."""


class Printer:
    """Writes the demo's output: section titles, aligned tables and plain lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._started = time.monotonic()

    def line(self, text: str = "") -> None:
        """One line of text."""
        print(text, file=self.stream, flush=True)

    def title(self, number: int, text: str) -> None:
        """A section heading, with the time since the demo started."""
        elapsed = time.monotonic() - self._started
        self.line()
        self.line(f"== {number}. {text}  (t={elapsed:.2f}s)")

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


@dataclass
class DemoCluster:
    """The demo's nodes (by name), started and stopped in the main task."""

    keyring: Keyring
    root: str
    out: Printer
    nodes: dict[str, Node] = field(default_factory=dict)
    _stacks: dict[str, contextlib.AsyncExitStack] = field(default_factory=dict)

    def config(self, name: str, join: tuple[Address, ...]) -> NodeConfig:
        """The demo configuration of node ``name``, with its own data directory."""
        return NodeConfig(
            name=name,
            bind=("127.0.0.1", 0),
            join=join,
            data_dir=os.path.join(self.root, name),
            probe_interval_s=PROBE_INTERVAL_S,
            probe_timeout_s=PROBE_INTERVAL_S,
            extra={"membership": dict(MEMBERSHIP)},
        )

    async def start(self, name: str, join: tuple[Address, ...] = ()) -> Node:
        """Open node ``name`` (``open_node``) and keep it until :meth:`stop`."""
        stack = contextlib.AsyncExitStack()
        node = await stack.enter_async_context(
            open_node(self.config(name, join), keyring=self.keyring)
        )
        self.nodes[name] = node
        self._stacks[name] = stack
        return node

    async def stop(self, name: str) -> None:
        """Close node ``name``: it leaves, sends its last datagrams and closes its socket."""
        del self.nodes[name]
        await self._stacks.pop(name).aclose()

    async def stop_all(self) -> None:
        """Close every node, newest first."""
        for name in reversed(list(self.nodes)):
            await self.stop(name)

    def name_of(self, node_id: NodeId) -> str:
        """The name of the running node with this id (or its short hex id)."""
        for name, node in self.nodes.items():
            if node.node_id == node_id:
                return name
        return node_id.hex()[:8]


Section = Callable[[DemoCluster], Awaitable[None]]


# -- sections --------------------------------------------------------------------------


async def section_authenticated_probes(cluster: DemoCluster) -> None:
    """Three nodes ping each other over sealed UDP packets; show the round-trip times."""
    out = cluster.out
    n1 = await cluster.start("n1")
    n2 = await cluster.start("n2", join=(n1.address,))
    n3 = await cluster.start("n3", join=(n1.address, n2.address))
    for node in (n1, n2, n3):
        out.line(
            f"   {node.name}  id {node.node_id.hex()[:16]}…  at {format_address(node.address)}"
            f"  epoch {node.boot_epoch}"
        )
    out.line("   n2 joins n1; n3 joins n1 and n2; a node pings back whoever pinged it.")
    wanted = 3
    rtts: dict[tuple[str, str], list[float]] = {}
    names = list(cluster.nodes)

    async def watch(node: Node) -> None:
        others = [o for o in names if o != node.name]
        async with node.events(PeerAcked) as events:
            async for ev in events:
                assert isinstance(ev, PeerAcked)
                samples = rtts.setdefault((node.name, cluster.name_of(ev.node_id)), [])
                samples.append(ev.rtt_s)
                if all(len(rtts.get((node.name, o), [])) >= wanted for o in others):
                    return

    with trio.fail_after(STEP_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for node in (n1, n2, n3):
                nursery.start_soon(watch, node)
    out.line(f"   every node got {wanted}+ authenticated acks from every other node:")
    rows = []
    for (src, dst), samples in sorted(rtts.items()):
        rows.append(
            [f"{src} -> {dst}", str(len(samples)), f"{statistics.median(samples) * 1e3:.3f}"]
        )
    out.table(["probe", "acks", "median rtt ms"], rows)


async def section_bad_packets(cluster: DemoCluster) -> None:
    """An outsider's socket sends forged, damaged and replayed packets to n1; n1 counts them."""
    out = cluster.out
    n1 = cluster.nodes["n1"]
    peer = await RawPeer.open(cluster.keyring)
    # Same socket, another keyring: it seals under a key n1 has never seen.
    stranger = RawPeer(peer.sock, Keyring.generate(os.urandom))
    try:
        with trio.fail_after(STEP_TIMEOUT_S):
            rtt = await peer.ping(n1.address)
        out.line(
            f"   a raw socket holding the cluster key pings n1 by hand: ack in {rtt * 1e3:.3f} ms"
        )
        valid = peer.seal([peer.next_ping()])
        header, aad, sealed = parse_packet(valid)
        out.line(f"   one sealed ping is {len(valid)} bytes:")
        out.line(
            f"     {len(aad)}-byte clear header: version 1, gossip, sender "
            f"{header.sender.hex()[:8]}…, epoch {header.boot_epoch},"
        )
        out.line(f"       key id {header.key_id:#010x}, packet number {header.packet_number}")
        head = len(valid) - len(aad) - len(sealed)
        out.line(
            f"     then a {head}-byte length and {len(sealed)} sealed bytes: the encrypted "
            "frames and a 16-byte AEAD tag"
        )
        await peer.send(n1.address, valid)
        # A fresh packet, damaged: the replay window has not seen its number, so only
        # the AEAD tag can catch it.
        flipped = bytearray(peer.seal([peer.next_ping()]))
        flipped[-5] ^= 0x01
        attempts: list[tuple[str, bytes]] = [
            ("the same packet again (a replay)", valid),
            ("sealed with a key n1 does not have", stranger.seal([stranger.next_ping()])),
            ("one bit flipped in the ciphertext", bytes(flipped)),
            ("truncated to half its length", peer.seal([peer.next_ping()])[: len(valid) // 2]),
            ("protocol version 2", cbor.encode([2, 1, b"\x00" * 16, 1, 1, 0, b"\x00" * 16])),
        ]
        rows = []
        for label, data in attempts:
            before = dict(n1.counters)
            await peer.send(n1.address, data)
            # n1 reads its socket in order: once the next ping is answered, the bad packet
            # before it has been handled.
            with trio.fail_after(STEP_TIMEOUT_S):
                await peer.ping(n1.address)
            changed = [
                f"{k} +{v - before.get(k, 0)}"
                for k, v in sorted(n1.counters.items())
                if k.startswith("packets.dropped.") and v != before.get(k, 0)
            ]
            rows.append([label, ", ".join(changed) or "(nothing dropped!)"])
        out.table(["packet sent to n1", "n1's counter"], rows, align="ll")
        out.line("   n1 dropped each one before decoding its frames, and still answers pings.")
    finally:
        peer.close()


async def section_restart(cluster: DemoCluster) -> None:
    """n3 restarts from its data directory: same node id, a larger boot epoch, accepted."""
    out = cluster.out
    old = cluster.nodes["n3"]
    old_id, old_epoch, join = old.node_id, old.boot_epoch, old.config.join
    watched = ("packets.dropped.stale_epoch", "packets.dropped.replay")
    refused_before = sum(cluster.nodes[n].counters[k] for n in ("n1", "n2") for k in watched)
    await cluster.stop("n3")
    out.line(f"   n3 stopped (epoch {old_epoch}); starting it again from the same data dir")
    n3 = await cluster.start("n3", join=join)
    peers = {cluster.nodes["n1"].node_id, cluster.nodes["n2"].node_id}
    with trio.fail_after(STEP_TIMEOUT_S):
        async with n3.events(PeerAcked) as events:
            async for ev in events:
                assert isinstance(ev, PeerAcked)
                peers.discard(ev.node_id)
                if not peers:
                    break
    same = "the same" if n3.node_id == old_id else "a DIFFERENT"
    out.line(f"   n3 has {same} node id {n3.node_id.hex()[:16]}…, epoch {n3.boot_epoch}")
    out.line(
        f"   the epoch grew by {n3.boot_epoch - old_epoch}: a new sealing subkey, so packet "
        "numbers restart"
    )
    out.line("   at 0 and no (key, nonce) pair is ever used twice")
    refused = (
        sum(cluster.nodes[n].counters[k] for n in ("n1", "n2") for k in watched) - refused_before
    )
    out.line("   n1 and n2 accepted the new epoch at once: both answered n3's pings")
    out.line(f"   (n3 packets refused as stale or replayed: {refused})")


class NodeRunProcess:
    """``python -m foundation_p2p node run`` in its own process (so it can be SIGKILLed)."""

    def __init__(self, process: trio.Process, node_id: NodeId, address: Address) -> None:
        self.process = process
        self.node_id = node_id
        self.address = address

    @classmethod
    async def start(cls, cluster: DemoCluster, name: str, join: Address) -> NodeRunProcess:
        """Start it with the cluster's keyring and membership table; wait for its ready line."""
        key_file = os.path.join(cluster.root, "cluster.key")
        if not os.path.exists(key_file):
            with open(key_file, "w", encoding="utf-8") as f:
                f.write(cluster.keyring.to_text())
        config_file = os.path.join(cluster.root, "membership.toml")
        with open(config_file, "w", encoding="utf-8") as f:
            f.write("[membership]\n")
            for key, value in MEMBERSHIP.items():
                f.write(f"{key} = {json.dumps(value)}\n")
        args = [
            sys.executable, "-m", "foundation_p2p", "node", "run", "--bind", "127.0.0.1:0",
            "--join", format_address(join), "--name", name, "--cluster-key-file", key_file,
            "--data-dir", os.path.join(cluster.root, name), "--config", config_file,
            "--log-level", "ERROR",
        ]  # fmt: skip
        process = await trio.lowlevel.open_process(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert process.stdout is not None
        buffer = b""
        with trio.fail_after(STEP_TIMEOUT_S * 2):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    raise RuntimeError(f"{name} exited before its ready line")
                buffer += chunk
        fields = dict(part.split("=", 1) for part in buffer.decode().split()[1:])
        host, _, port = fields["address"].rpartition(":")
        return cls(process, bytes.fromhex(fields["node_id"]), (host, int(port)))

    async def kill(self) -> None:
        """SIGKILL: no leave announcement, the socket just goes silent."""
        self.process.kill()
        await self.process.wait()


def _member_rows(node: Node, names: dict[NodeId, str]) -> list[list[str]]:
    return [
        [
            names.get(m.node_id, m.name),
            format_address(m.address),
            m.state.name.lower(),
            str(m.incarnation),
            m.metadata.hex() or "-",
        ]
        for m in node.members()
    ]


async def section_membership(cluster: DemoCluster) -> None:
    """SWIM membership: a fourth node joins, n2 publishes metadata, n4 is SIGKILLed and
    detected, n3 leaves gracefully."""
    out = cluster.out
    n1, n2, n3 = (cluster.nodes[n] for n in ("n1", "n2", "n3"))
    settings = n1.membership.config
    out.line(
        f"   profile {settings.profile}: probe every {settings.probe_interval_s:g} s, "
        f"timeout {settings.probe_timeout_s:g} s, {settings.indirect_checks} indirect "
        f"probe(s), Lifeguard {'on' if settings.lifeguard else 'off'}"
    )
    n4 = await NodeRunProcess.start(cluster, "n4", n1.address)
    out.line(f"   n4 runs in its own process (pid {n4.process.pid}) and joins through n1")
    everyone = {n1.node_id, n2.node_id, n3.node_id, n4.node_id}
    try:
        with trio.fail_after(STEP_TIMEOUT_S):
            for node in (n1, n2, n3):
                await node.wait_until(
                    lambda node=node: {  # type: ignore[misc]
                        m.node_id for m in node.members() if m.state.name == "ALIVE"
                    } == everyone
                )
        n2.update_metadata({"role": "cache"})
        with trio.fail_after(STEP_TIMEOUT_S):
            await n1.wait_until(lambda: n1.member(n2.node_id).metadata != b"")  # type: ignore[union-attr]
        names = {node.node_id: name for name, node in cluster.nodes.items()}
        names[n4.node_id] = "n4"
        out.line("   every node sees all four alive; n2 published metadata {'role': 'cache'};")
        out.line("   n1's view:")
        out.table(
            ["member", "address", "state", "incarnation", "metadata"],
            _member_rows(n1, names),
            align="llllr",
        )
        window = settings.suspicion_max_s(4) + 5 * settings.probe_interval_s
        reports: list[list[str]] = []
        async with (
            n1.membership_events() as e1,
            n2.membership_events() as e2,
            n3.membership_events() as e3,
        ):
            await n4.kill()
            killed = time.monotonic()
            out.line(f"   n4 killed with SIGKILL; the others detect it (bound {window:.1f} s):")

            async def watch(name: str, events: Any) -> None:
                async for ev in events:
                    if getattr(getattr(ev, "member", None), "node_id", None) != n4.node_id:
                        continue
                    kind = type(ev).__name__
                    reports.append([name, kind, f"{time.monotonic() - killed:.2f} s"])
                    if kind == "MemberFailed":
                        return

            with trio.fail_after(window + STEP_TIMEOUT_S):
                async with trio.open_nursery() as nursery:
                    for name, events in (("n1", e1), ("n2", e2), ("n3", e3)):
                        nursery.start_soon(watch, name, events)
        reports.sort(key=lambda r: float(r[2].split()[0]))
        out.table(["seen by", "event", "after the kill"], reports, align="llr")
    finally:
        if n4.process.returncode is None:
            await n4.kill()
    async with n1.membership_events() as e1:
        await cluster.stop("n3")
        with trio.fail_after(STEP_TIMEOUT_S):
            async for ev in e1:
                if isinstance(ev, MemberLeft) and ev.member.node_id == n3.node_id:
                    break
                if isinstance(ev, MemberFailed) and ev.member.node_id == n3.node_id:
                    raise AssertionError("n3 left but was declared failed")
    out.line("   n3 closes: it signs a LEFT announcement; n1 reports MemberLeft, not failed")
    out.table(
        ["member", "address", "state", "incarnation", "metadata"],
        _member_rows(n1, {**names, n3.node_id: "n3"}),
        align="llllr",
    )


async def section_counters(cluster: DemoCluster) -> None:
    """Every node's traffic and drop counters."""
    keys = [
        "udp.datagrams_sent",
        "udp.datagrams_received",
        "packets.dropped.replay",
        "packets.dropped.unknown_key",
        "packets.dropped.auth_failed",
        "packets.dropped.malformed",
        "packets.dropped.unsupported_version",
    ]
    rows = [[k] + [str(node.counters[k]) for node in cluster.nodes.values()] for k in keys]
    cluster.out.table(["counter", *cluster.nodes], rows)


SECTIONS: list[tuple[str, Section]] = [
    ("Authenticated probes over UDP", section_authenticated_probes),
    ("Bad packets are dropped and counted", section_bad_packets),
    ("Restart: same identity, new boot epoch", section_restart),
    ("Membership: join, metadata, a killed node detected, a graceful leave", section_membership),
    ("Counters", section_counters),
]
"""The demo's sections, in order; later capabilities append theirs."""


async def run_demo(out: Printer) -> None:
    """Start the cluster, run every section, stop the cluster."""
    with tempfile.TemporaryDirectory(prefix="foundation-p2p-demo-") as root:
        cluster = DemoCluster(Keyring.generate(os.urandom), root, out)
        out.line("foundation-p2p demo: a small cluster over UDP on 127.0.0.1")
        out.line(f"   one cluster keyring, data directories under {root}")
        try:
            for number, (title, section) in enumerate(SECTIONS, 1):
                out.title(number, title)
                await section(cluster)
        finally:
            await cluster.stop_all()
    out.line()
    out.line("done: every node left and closed its socket.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m foundation_p2p.demo``."""
    parser = argparse.ArgumentParser(prog="python -m foundation_p2p.demo", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="logs on stderr (default WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    started = time.monotonic()
    trio.run(run_demo, Printer(sys.stdout))
    print(f"(took {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
