"""DNS discovery against a real dnsmasq on 127.0.0.1 (A and SRV records), with real nodes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from discovery_helpers import Dnsmasq, free_udp_port

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.discovery.config import DiscoveryConfig, DnsConfig
from foundation_p2p.membership.state import MemberState
from foundation_p2p.runtime.discovery import (
    DiscoveryError,
    DiscoveryRunner,
    query_dns,
    run_discovery,
)
from foundation_p2p.runtime.node import Node, open_node

SRV_NAME = "_gossip._udp.cluster.test"
FAST = {"probe_interval_s": 0.05, "probe_timeout_s": 0.05}


def alive_count(node: Node) -> int:
    return sum(1 for m in node.members() if m.state is MemberState.ALIVE)


@asynccontextmanager
async def nodes_with_discovery(
    ports: list[int], config: DiscoveryConfig, keyring: Keyring, *, discovering: int | None = None
) -> AsyncIterator[tuple[list[Node], list[DiscoveryRunner]]]:
    """Nodes on these ports; the first ``discovering`` (default: all) run ``config``."""
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        nodes: list[Node] = []
        runners: list[DiscoveryRunner] = []
        for i, port in enumerate(ports):
            node = await stack.enter_async_context(
                open_node(NodeConfig(bind=("127.0.0.1", port), **FAST), keyring=keyring)
            )
            nodes.append(node)
            if discovering is not None and i >= discovering:
                continue
            runners.append(await nursery.start(run_discovery, node, config))
        yield nodes, runners
        nursery.cancel_scope.cancel()


def test_query_dns_reads_a_and_srv_records(dnsmasq: Dnsmasq) -> None:
    dnsmasq.serve(
        {"n1.cluster.test": "127.0.0.1", "n2.cluster.test": "127.0.0.2"},
        [(SRV_NAME, "n1.cluster.test", 7001), (SRV_NAME, "n2.cluster.test", 7002)],
    )
    resolver = ("127.0.0.1", dnsmasq.port)
    assert query_dns(DnsConfig(name=SRV_NAME, resolver=resolver)) == [
        ("127.0.0.1", 7001),
        ("127.0.0.2", 7002),
    ]
    assert query_dns(
        DnsConfig(name="n2.cluster.test", record="A", port=7946, resolver=resolver)
    ) == [("127.0.0.2", 7946)]


def test_nxdomain_is_a_clear_error(dnsmasq: Dnsmasq) -> None:
    dnsmasq.serve({"n1.cluster.test": "127.0.0.1"}, [])
    with pytest.raises(DiscoveryError, match=r"missing\.cluster\.test does not exist.*NXDOMAIN"):
        query_dns(DnsConfig(name="missing.cluster.test", resolver=("127.0.0.1", dnsmasq.port)))


def test_dead_resolver_is_a_clear_error() -> None:
    port = free_udp_port()
    with pytest.raises(DiscoveryError, match=rf"127\.0\.0\.1:{port}"):
        query_dns(DnsConfig(name=SRV_NAME, resolver=("127.0.0.1", port), timeout_s=0.3))


async def test_three_nodes_form_a_cluster_from_srv_records_alone(dnsmasq: Dnsmasq) -> None:
    ports = [free_udp_port() for _ in range(3)]
    dnsmasq.serve({"n.cluster.test": "127.0.0.1"}, [(SRV_NAME, "n.cluster.test", p) for p in ports])
    config = DiscoveryConfig(
        (DnsConfig(name=SRV_NAME, resolver=("127.0.0.1", dnsmasq.port), interval_s=0.2),)
    )
    keyring = Keyring.generate(os.urandom)
    async with nodes_with_discovery(ports, config, keyring) as (nodes, runners):
        with trio.fail_after(10):
            for node in nodes:
                await node.wait_until(lambda node=node: alive_count(node) == 3)  # type: ignore[misc]
        # No node was given a join address: the joins came from discovery.
        assert sum(n.counters["discovery.dns.joins"] for n in nodes) >= 1
        with trio.fail_after(5):
            while not all(r.found.get("dns") == {("127.0.0.1", p) for p in ports} for r in runners):
                await trio.sleep(0.05)


async def test_a_record_added_later_is_picked_up_at_the_next_poll(dnsmasq: Dnsmasq) -> None:
    ports = [free_udp_port() for _ in range(3)]
    dnsmasq.serve(
        {"n.cluster.test": "127.0.0.1"}, [(SRV_NAME, "n.cluster.test", p) for p in ports[:2]]
    )
    config = DiscoveryConfig(
        (DnsConfig(name=SRV_NAME, resolver=("127.0.0.1", dnsmasq.port), interval_s=0.2),)
    )
    keyring = Keyring.generate(os.urandom)
    async with nodes_with_discovery(ports, config, keyring, discovering=2) as (nodes, runners):
        with trio.fail_after(10):
            await nodes[0].wait_until(lambda: alive_count(nodes[0]) == 2)
        # The third node runs no discovery and no record names it yet: nobody finds it.
        # A few polls go by and the first two stay a pair.
        with trio.fail_after(5):
            while runners[0].attempts["dns"] < 4:
                await trio.sleep(0.05)
        assert ("127.0.0.1", ports[2]) not in runners[0].found["dns"]
        assert alive_count(nodes[2]) == 1
        dnsmasq.serve(
            {"n.cluster.test": "127.0.0.1"}, [(SRV_NAME, "n.cluster.test", p) for p in ports]
        )
        with trio.fail_after(10):
            for node in nodes:
                await node.wait_until(lambda node=node: alive_count(node) == 3)  # type: ignore[misc]
        with trio.fail_after(5):
            while not all(("127.0.0.1", ports[2]) in r.found["dns"] for r in runners):
                await trio.sleep(0.05)


async def test_nxdomain_then_dead_resolver_are_retried_not_fatal(dnsmasq: Dnsmasq) -> None:
    dnsmasq.serve({"n.cluster.test": "127.0.0.1"}, [])
    keyring = Keyring.generate(os.urandom)
    config = DiscoveryConfig(
        (
            DnsConfig(
                name=SRV_NAME,
                resolver=("127.0.0.1", dnsmasq.port),
                interval_s=0.1,
                timeout_s=0.3,
            ),
        )
    )
    port = free_udp_port()
    async with nodes_with_discovery([port], config, keyring) as (nodes, runners):
        node, runner = nodes[0], runners[0]
        with trio.fail_after(5):
            while node.counters["discovery.dns.errors.nxdomain"] < 2:
                await trio.sleep(0.05)
        assert "NXDOMAIN" in runner.last_error["dns"]
        assert "retrying in" in runner.last_error["dns"]
        dnsmasq.stop()
        with trio.fail_after(10):
            while (
                node.counters["discovery.dns.errors.resolver"]
                + node.counters["discovery.dns.errors.timeout"]
                < 2
            ):
                await trio.sleep(0.05)
        assert f"127.0.0.1:{dnsmasq.port}" in runner.last_error["dns"]
        # Back up with the record: the error clears at the next poll.
        dnsmasq.serve({"n.cluster.test": "127.0.0.1"}, [(SRV_NAME, "n.cluster.test", port)])
        with trio.fail_after(10):
            while "dns" in runner.last_error:
                await trio.sleep(0.05)
        assert runner.found["dns"] == {("127.0.0.1", port)}


def test_query_dns_reads_aaaa_records_and_srv_targets_with_ipv6(dnsmasq: Dnsmasq) -> None:
    # IPv6 loopback addresses only; nothing is sent to them here, they are just answers
    dnsmasq.serve(
        {"v6.cluster.test": "::1", "both.cluster.test": "127.0.0.3"},
        [(SRV_NAME, "v6.cluster.test", 7003)],
    )
    resolver = ("127.0.0.1", dnsmasq.port)
    assert query_dns(
        DnsConfig(name="v6.cluster.test", record="AAAA", port=7946, resolver=resolver)
    ) == [("::1", 7946)]
    assert query_dns(DnsConfig(name=SRV_NAME, resolver=resolver)) == [("::1", 7003)]
    # a name with only an A record has no AAAA answer: a clear error, not an empty success
    with pytest.raises(DiscoveryError):
        query_dns(DnsConfig(name="both.cluster.test", record="AAAA", port=7946,
                            resolver=resolver))



def test_a_malformed_answer_is_a_clear_error(dnsmasq: Dnsmasq) -> None:
    # an SRV record with port 0 (no gossip port can be 0); dnspython itself drops answers
    # it cannot parse (they look like spoofing) and a timeout then names the resolver
    dnsmasq.serve({"n1.cluster.test": "127.0.0.1"}, [(SRV_NAME, "n1.cluster.test", 0)])
    resolver = ("127.0.0.1", dnsmasq.port)
    with pytest.raises(DiscoveryError, match="malformed answer") as info:
        query_dns(DnsConfig(name=SRV_NAME, resolver=resolver))
    assert SRV_NAME in str(info.value) and "port 0" in str(info.value)
