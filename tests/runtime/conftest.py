"""Fixtures for the real-UDP runtime tests (127.0.0.1 and ::1 only)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

from foundation_p2p.addresses import Address
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.runtime.udp import MAX_DATAGRAM_BYTES, bind_udp, bound_address

FAST_PROBE_S = 0.05
"""Probe interval (and timeout) of the test nodes: a few rounds fit in a fraction of a second."""
WAIT_S = 5.0
"""Bound on every wait for something that should happen within milliseconds on loopback."""


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate(os.urandom)


@pytest.fixture
def make_config() -> Callable[..., NodeConfig]:
    """NodeConfig on 127.0.0.1 with a free port and fast probes; keywords override."""

    def make(**overrides: Any) -> NodeConfig:
        settings: dict[str, Any] = {
            "bind": ("127.0.0.1", 0),
            "probe_interval_s": FAST_PROBE_S,
            "probe_timeout_s": FAST_PROBE_S,
        }
        settings.update(overrides)
        return NodeConfig(**settings)

    return make


class UdpProxy:
    """Forwards datagrams between one downstream peer and ``upstream``, recording them.

    Whatever arrives from ``upstream`` goes to the last other address heard from
    (``downstream``); everything else goes to ``upstream``. ``to_upstream`` holds every
    datagram forwarded upstream, in order; ``arrived`` is set at each one.
    """

    def __init__(self, sock: trio.socket.SocketType, upstream: Address) -> None:
        self.sock = sock
        self.address = bound_address(sock)
        self.upstream = upstream
        self.downstream: Address | None = None
        self.to_upstream: list[bytes] = []
        self.to_downstream: list[bytes] = []
        self.arrived = trio.Event()

    async def run(self) -> None:
        while True:
            data, src = await self.sock.recvfrom(MAX_DATAGRAM_BYTES)
            src = (str(src[0]), int(src[1]))
            if src == self.upstream:
                if self.downstream is not None:
                    self.to_downstream.append(data)
                    await self.sock.sendto(data, self.downstream)
            else:
                self.downstream = src
                self.to_upstream.append(data)
                await self.sock.sendto(data, self.upstream)
                self.arrived.set()
                self.arrived = trio.Event()

    async def wait_upstream(self, count: int) -> None:
        """Until at least ``count`` datagrams went upstream (bound it with fail_after)."""
        while len(self.to_upstream) < count:
            await self.arrived.wait()


@pytest.fixture
async def open_proxy() -> AsyncIterator[Callable[[Address], Any]]:
    """``proxy = await open_proxy(upstream)``: a running :class:`UdpProxy` on 127.0.0.1."""
    async with trio.open_nursery() as nursery:
        socks: list[trio.socket.SocketType] = []

        async def start(upstream: Address) -> UdpProxy:
            sock = await bind_udp(("127.0.0.1", 0))
            socks.append(sock)
            proxy = UdpProxy(sock, upstream)
            nursery.start_soon(proxy.run)
            return proxy

        yield start
        nursery.cancel_scope.cancel()
    for s in socks:
        s.close()
