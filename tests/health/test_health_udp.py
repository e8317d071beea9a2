"""Health over the Trio runtime: three nodes on real UDP (127.0.0.1), a HealthService
attached to each running core, the admin endpoint of one answering /health with all
three and /metrics with their verdicts; the RuntimeProbe sees a blocked event loop."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.health.gossip import HealthGossipConfig
from foundation_p2p.health.service import HealthService
from foundation_p2p.membership.state import MemberState
from foundation_p2p.runtime import Node, open_node
from foundation_p2p.runtime.admin import RuntimeHealth, RuntimeProbe
from foundation_p2p.runtime.node import machine_now

KEYRING = Keyring(bytes(range(1, 33)))
FAST = {"profile": "local", "probe_interval_s": 0.1, "probe_timeout_s": 0.05}


def config(name: str, **overrides: Any) -> NodeConfig:
    return NodeConfig(name=name, bind=("127.0.0.1", 0), extra={"membership": dict(FAST)},
                      **overrides)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split(b" ")[1]), body


def attach(node: Node) -> HealthService:
    """The core's own HealthService when NodeCore wires one, else one attached here;
    rounds every 0.2 s."""
    wired = getattr(node.core, "health", None)
    if isinstance(wired, HealthService):
        wired.gossip.config = HealthGossipConfig(interval_s=0.2)
        return wired
    service = HealthService(node.core, now=machine_now(),
                            config=HealthGossipConfig(interval_s=0.2))
    node.wake()
    return service


async def test_admin_health_lists_all_three_nodes_and_metrics_answer() -> None:
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_node(config("a"), keyring=KEYRING))
        b = await stack.enter_async_context(
            open_node(config("b", join=(a.address,)), keyring=KEYRING))
        c = await stack.enter_async_context(
            open_node(config("c", join=(a.address,)), keyring=KEYRING))
        services = [attach(n) for n in (a, b, c)]
        nursery = await stack.enter_async_context(trio.open_nursery())
        probe = RuntimeProbe(services[0].local_figures)
        nursery.start_soon(probe.run)
        health = RuntimeHealth(services[0], machine_now)
        server = health.admin_server()
        port = await nursery.start(server.serve)
        assert health.report().node("a") is not None

        def all_seen() -> bool:
            return all(
                len(s.gossip.summaries()) == 3
                and all(m.state is MemberState.ALIVE for m in n.members())
                for s, n in zip(services, (a, b, c), strict=True)
            )

        with trio.fail_after(10):
            await a.wait_until(all_seen)
            while True:
                status, body = await http_get(port, "/health")
                report = json.loads(body)
                own = next(n for n in report["nodes"] if n["name"] == "a")
                # healthy, and the probe's figures published in a's own summary
                if report["status"] == "healthy" and own["summary"]["rss_kib"] > 0:
                    break
                await trio.sleep(0.1)
        assert status == 200
        assert sorted(n["name"] for n in report["nodes"]) == ["a", "b", "c"]
        assert {n["status"] for n in report["nodes"]} == {"healthy"}
        assert all(n["summary"]["version"] >= 1 for n in report["nodes"])
        status, metrics = await http_get(port, "/metrics")
        assert status == 200
        text = metrics.decode()
        assert "foundation_p2p_udp_datagrams_received_total" in text
        assert text.count("foundation_p2p_health_node_status{") == 3
        status, _ = await http_get(port, "/nope")
        assert status == 404
        assert a.counters["admin.requests"] >= 3  # the server counts into the node's table
        assert len(health.summaries()) == 3
        nursery.cancel_scope.cancel()


async def test_runtime_probe_sees_a_blocked_event_loop() -> None:
    figures: dict[str, int] = {}
    probe = RuntimeProbe(figures, interval_s=0.05, window=100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.run)
        await trio.sleep(0.12)
        assert figures["loop_lag_ms"] < 250
        time.sleep(0.3)  # block the loop on purpose: this is the lag being measured
        await trio.sleep(0.12)
        nursery.cancel_scope.cancel()
    assert figures["loop_lag_ms"] >= 250
    assert figures["cpu_permille"] >= 0


def test_probe_window_forgets_old_spikes() -> None:
    figures: dict[str, int] = {}
    probe = RuntimeProbe(figures, window=2)
    probe.sample(0.9, 0.1, 1.0)
    assert figures["loop_lag_ms"] == 900 and figures["cpu_permille"] == 100
    probe.sample(0.01, 0.0, 1.0)
    assert figures["loop_lag_ms"] == 900
    probe.sample(0.02, 0.0, 1.0)
    assert figures["loop_lag_ms"] == 20
