"""The runtime's UDP pump on 127.0.0.1: batched non-blocking receive, non-blocking send.

A node's pump reads every datagram waiting in its socket (at most ``RECEIVE_BATCH``) before
one flush, sends with the standard-library socket's non-blocking ``sendto``, and must still
let other Trio tasks run and its timers fire while datagrams keep arriving. Datagrams are
sent from a plain socket without yielding to Trio, so they all wait in the node's socket
when the pump next runs; a valid ping from a :class:`RawPeer` answered afterwards proves
they were all handled (the node reads its socket in order).
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.events import PeerAcked
from foundation_p2p.runtime import open_node
from foundation_p2p.runtime.node import RECEIVE_BATCH
from foundation_p2p.runtime.rawpeer import RawPeer
from foundation_p2p.runtime.udp import (
    IP_MTU_DISCOVER,
    PMTUDISC_PROBE,
    bind_udp_socket,
    set_dont_fragment,
)

WAIT_S = 5.0


def junk_sender() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def test_a_burst_is_read_in_bounded_batches_and_counted_exactly(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    count = 3 * RECEIVE_BATCH + 7
    sizes = [20 + i % 50 for i in range(count)]
    async with open_node(make_config(name="a"), keyring=keyring) as a:
        peer = await RawPeer.open(keyring)
        junk = junk_sender()
        junk_address = junk.getsockname()
        real_handle = a.core.handle_datagram
        handled: list[tuple[Any, int]] = []

        def handle(now: Any, src: Any, data: bytes) -> None:
            handled.append((src, len(data)))
            real_handle(now, src, data)

        try:
            with trio.fail_after(WAIT_S):
                assert await peer.ping(a.address) > 0
            a.core.handle_datagram = handle  # type: ignore[method-assign]
            before_dgrams = a.counters["udp.datagrams_received"]
            before_bytes = a.counters["udp.bytes_received"]
            before_cut = a.counters["udp.receive_batch_cut"]
            for size in sizes:  # no checkpoint: all of them wait in the node's socket
                junk.sendto(b"\xff" * size, a.address)
            with trio.fail_after(WAIT_S):
                assert await peer.ping(a.address) > 0
            # every junk datagram was handled, whole and in order, and counted exactly
            assert [n for src, n in handled if src == junk_address] == sizes
            assert a.counters["udp.datagrams_received"] - before_dgrams == len(handled)
            assert a.counters["udp.bytes_received"] - before_bytes == sum(n for _, n in handled)
            # more than RECEIVE_BATCH were waiting: the batch was cut at least once
            assert a.counters["udp.receive_batch_cut"] - before_cut >= count // RECEIVE_BATCH
            dropped = sum(v for k, v in a.counters.items() if k.startswith("packets.dropped."))
            assert dropped == count
        finally:
            junk.close()
            peer.close()


async def test_other_tasks_and_timers_run_while_datagrams_keep_arriving(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    """Each datagram handled sends another: the socket is never empty, so the pump never
    waits; the other tasks and the membership timers (probes answered) must go on."""
    async with (
        open_node(make_config(name="a"), keyring=keyring) as a,
        open_node(make_config(name="b", join=(a.address,)), keyring=keyring) as b,
    ):
        junk = junk_sender()
        real_handle = a.core.handle_datagram
        state = {"flooding": True, "handled": 0, "ticks": 0}

        def handle(now: Any, src: Any, data: bytes) -> None:
            if state["flooding"]:
                state["handled"] += 1
                junk.sendto(b"\xfe" * 32, a.address)
            real_handle(now, src, data)

        async def ticker() -> None:
            while True:
                state["ticks"] += 1
                await trio.lowlevel.checkpoint()

        try:
            junk.sendto(b"\xfe" * 32, a.address)
            a.core.handle_datagram = handle  # type: ignore[method-assign]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                with trio.fail_after(WAIT_S):
                    async with a.events(PeerAcked) as events:
                        acks = 0
                        async for ev in events:
                            assert isinstance(ev, PeerAcked) and ev.node_id == b.node_id
                            acks += 1
                            # a's probe timer fired and b's answer was read in the flood
                            if acks == 3 and state["handled"] > 3 * RECEIVE_BATCH:
                                break
                assert state["ticks"] > 10
                nursery.cancel_scope.cancel()
        finally:
            state["flooding"] = False
            junk.close()


async def test_a_datagram_too_big_is_counted_and_the_pump_goes_on(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(name="a"), keyring=keyring) as a:
        sink = junk_sender()
        sink.setblocking(False)
        try:
            dest = sink.getsockname()
            before = dict(a.counters)
            await a._send([(dest, b"x" * 70_000), (dest, b"y" * 100)])
            # expected with path-MTU probes: counted apart from the send errors
            assert a.counters["udp.send_errors"] == before.get("udp.send_errors", 0)
            assert a.counters["udp.send_too_big"] - before.get("udp.send_too_big", 0) == 1
            assert a.counters["udp.datagrams_sent"] - before.get("udp.datagrams_sent", 0) >= 1
            with trio.fail_after(WAIT_S):
                await trio.lowlevel.wait_readable(sink)
            assert sink.recvfrom(65535)[0] == b"y" * 100
            peer = await RawPeer.open(keyring)
            try:
                with trio.fail_after(WAIT_S):
                    assert await peer.ping(a.address) > 0
            finally:
                peer.close()
        finally:
            sink.close()


class BusyOnce:
    """A socket whose first ``sendto`` reports a full send buffer (``BlockingIOError``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.refused = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def sendto(self, data: bytes, addr: Any) -> int:
        if not self.refused:
            self.refused += 1
            raise BlockingIOError(errno.EAGAIN, "send buffer full")
        return self.sock.sendto(data, addr)


async def test_a_full_send_buffer_waits_and_sends_each_datagram_once(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(name="a"), keyring=keyring) as a:
        sink = junk_sender()
        sink.setblocking(False)
        real = a._raw
        try:
            dest = sink.getsockname()
            busy = BusyOnce(real)
            a._raw = busy  # type: ignore[assignment]
            a.gso = False  # one sendto per datagram here
            before = dict(a.counters)
            await a._send([(dest, b"one"), (dest, b"two")])
            a._raw = real
            assert busy.refused == 1
            assert a.counters["udp.send_blocked"] - before.get("udp.send_blocked", 0) == 1
            got = []
            with trio.fail_after(WAIT_S):
                while len(got) < 2:
                    await trio.lowlevel.wait_readable(sink)
                    got.append(sink.recvfrom(65535)[0])
            assert got == [b"one", b"two"]
            assert a.counters["udp.send_errors"] == before.get("udp.send_errors", 0)
        finally:
            a._raw = real
            sink.close()


def drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recvfrom(65535)[0])
        except BlockingIOError:
            return got


async def receive_count(sock: socket.socket, count: int) -> list[bytes]:
    got: list[bytes] = []
    with trio.fail_after(WAIT_S):
        while len(got) < count:
            await trio.lowlevel.wait_readable(sock)
            got.extend(drain(sock))
    return got


async def test_runs_of_equal_datagrams_to_one_peer_leave_in_one_segmented_send(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(name="a"), keyring=keyring) as a:
        if not a.gso:
            pytest.skip("no UDP segmentation offload on this kernel")
        sink_a, sink_b = junk_sender(), junk_sender()
        sink_a.setblocking(False)
        sink_b.setblocking(False)
        try:
            to_a, to_b = sink_a.getsockname(), sink_b.getsockname()
            run1 = [bytes([i]) * 1000 for i in range(10)] + [b"s" * 300]  # last shorter
            run2 = [bytes([50 + i]) * 500 for i in range(3)]
            out = (
                [(to_a, d) for d in run1]
                + [(to_a, b"t" * 1000), (to_b, b"u" * 1000)]
                + [(to_a, d) for d in run2]
            )
            before = dict(a.counters)

            def delta(name: str) -> int:
                return a.counters[name] - before.get(name, 0)

            await a._send(out)
            assert delta("udp.gso_sends") == 2
            assert delta("udp.gso_datagrams") == len(run1) + len(run2)
            assert delta("udp.datagrams_sent") == len(out)
            assert delta("udp.bytes_sent") == sum(len(d) for _, d in out)
            assert delta("udp.gso_fallbacks") == 0
            # the peer gets each datagram whole, in order, never glued together
            assert await receive_count(sink_a, len(out) - 1) == [*run1, b"t" * 1000, *run2]
            assert await receive_count(sink_b, 1) == [b"u" * 1000]
        finally:
            sink_a.close()
            sink_b.close()


class RefusesSegments:
    """A socket whose ``sendmsg`` fails with ``code``; ``sendto`` works."""

    def __init__(self, sock: socket.socket, code: int) -> None:
        self.sock = sock
        self.code = code
        self.refused = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def sendto(self, data: bytes, addr: Any) -> int:
        return self.sock.sendto(data, addr)

    def sendmsg(self, *args: Any) -> int:
        self.refused += 1
        raise OSError(self.code, "refused")


@pytest.mark.parametrize("code,stays_on", [(errno.EIO, False), (errno.EINVAL, True)])
async def test_a_refused_segmented_send_falls_back_to_one_by_one(
    keyring: Keyring, make_config: Callable[..., NodeConfig], code: int, stays_on: bool
) -> None:
    async with open_node(make_config(name="a"), keyring=keyring) as a:
        sink = junk_sender()
        sink.setblocking(False)
        real = a._raw
        try:
            a.gso = True
            fake = RefusesSegments(real, code)
            a._raw = fake  # type: ignore[assignment]
            out = [(sink.getsockname(), bytes([i]) * 700) for i in range(5)]
            before = dict(a.counters)
            await a._send(out)
            a._raw = real
            assert fake.refused == 1
            assert a.gso is stays_on
            assert a.counters["udp.gso_fallbacks"] - before.get("udp.gso_fallbacks", 0) == 1
            assert a.counters["udp.gso_sends"] == before.get("udp.gso_sends", 0)
            sent = a.counters["udp.datagrams_sent"] - before.get("udp.datagrams_sent", 0)
            assert sent == 5
            assert await receive_count(sink, 5) == [d for _, d in out]
        finally:
            a._raw = real
            sink.close()


async def test_a_host_name_destination_is_resolved_without_blocking(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(name="a"), keyring=keyring) as a:
        sink = junk_sender()
        sink.setblocking(False)
        try:
            port = sink.getsockname()[1]
            sent = a.counters["udp.datagrams_sent"]
            await a._send([(("localhost", port), b"named")])
            with trio.fail_after(WAIT_S):
                await trio.lowlevel.wait_readable(sink)
            assert sink.recvfrom(65535)[0] == b"named"
            assert a.counters["udp.datagrams_sent"] >= sent + 1
            assert a._numeric_hosts["localhost"] is False
        finally:
            sink.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux socket options")
async def test_the_socket_refuses_to_fragment() -> None:
    sock = await bind_udp_socket(("127.0.0.1", 0))
    try:
        assert IP_MTU_DISCOVER is not None
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER) == PMTUDISC_PROBE
        assert not sock.getblocking()
        # the largest IPv4 UDP payload fits the loopback MTU and is sent whole
        sink = junk_sender()
        try:
            assert sock.sendto(b"z" * 65_507, sink.getsockname()) == 65_507
            assert len(sink.recvfrom(65_535)[0]) == 65_507
        finally:
            sink.close()
    finally:
        sock.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        assert set_dont_fragment(plain)
        assert plain.getsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER) == PMTUDISC_PROBE


MTU_SCRIPT = r"""
import os, socket, sys
import trio
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.runtime import open_node

async def main():
    keyring = Keyring.generate(os.urandom)
    async with open_node(NodeConfig(bind=("127.0.0.1", 0)), keyring=keyring) as a:
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        dest = sink.getsockname()
        c = a.counters
        # a probe above the 1500-byte MTU, then a datagram that fits: never fragmented
        await a._send([(dest, b"p" * 2000), (dest, b"n" * 1400)])
        await a._send([(dest, bytes([i]) * 1400) for i in range(3)])  # offload works
        got = []
        with trio.fail_after(5):
            while len(got) < 4:
                await trio.lowlevel.wait_readable(sink)
                got.append(sink.recv(65535))
        print(a.gso, c["udp.send_too_big"], c["udp.send_errors"], c["udp.gso_fallbacks"],
              c["udp.gso_sends"], [(len(g), g[:1]) for g in got])

trio.run(main)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None
    or shutil.which("ip") is None,
    reason="needs root, unshare and ip (a network namespace of its own)",
)
def test_on_a_1500_byte_link_an_oversize_datagram_is_refused_and_the_rest_sent() -> None:
    """In a network namespace of its own whose loopback has Ethernet's MTU: a datagram
    above it is refused (EMSGSIZE, counted apart), never fragmented, also when it heads
    a segmentation-offload run (which falls back to one by one); runs that fit go out."""
    out = subprocess.run(
        ["unshare", "-n", "sh", "-c",
         f"ip link set lo up && ip link set lo mtu 1500 && exec {sys.executable} -c \"$0\"",
         MTU_SCRIPT],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    gso, too_big, errors, fallbacks, gso_sends, got = out.stdout.strip().split(" ", 5)
    assert (too_big, errors) == ("1", "0")
    assert got == "[(1400, b'n'), (1400, b'\\x00'), (1400, b'\\x01'), (1400, b'\\x02')]"
    if gso == "True":
        assert (fallbacks, gso_sends) == ("1", "1")
