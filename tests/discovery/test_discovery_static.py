"""Static seeds, offered again every interval: a node started before its peers finds them."""

from __future__ import annotations

import logging
import os
import random
from functools import partial

import pytest
import trio
from discovery_helpers import free_udp_port

from foundation_p2p.config import NodeConfig
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.discovery.config import DiscoveryConfig, HostFacts, StaticConfig
from foundation_p2p.membership.state import MemberState
from foundation_p2p.runtime.discovery import (
    MAX_FOUND_PER_STRATEGY,
    DiscoveryRunner,
    jittered,
    run_configured_discovery,
    run_discovery,
)
from foundation_p2p.runtime.node import Node, open_node

FAST = {"probe_interval_s": 0.05, "probe_timeout_s": 0.05}


def alive_count(node: Node) -> int:
    return sum(1 for m in node.members() if m.state is MemberState.ALIVE)


async def test_a_node_started_before_its_seed_finds_it_when_it_comes_up() -> None:
    keyring = Keyring.generate(os.urandom)
    seed_port = free_udp_port()
    config = DiscoveryConfig((StaticConfig(seeds=(("127.0.0.1", seed_port),), interval_s=0.1),))
    async with (
        open_node(NodeConfig(bind=("127.0.0.1", 0), **FAST), keyring=keyring) as early,
        trio.open_nursery() as nursery,
    ):
        runner = await nursery.start(run_discovery, early, config)
        with trio.fail_after(5):
            while runner.attempts.get("static", 0) < 3:
                await trio.sleep(0.02)
        assert alive_count(early) == 1
        # The seed starts late and runs no discovery at all: only early's retries join it.
        async with open_node(
            NodeConfig(bind=("127.0.0.1", seed_port), **FAST), keyring=keyring
        ) as seed:
            with trio.fail_after(5):
                await seed.wait_until(lambda: alive_count(seed) == 2)
                await early.wait_until(lambda: alive_count(early) == 2)
            joins = early.counters["discovery.static.joins"]
            assert joins >= 1
            # Once the seed is an alive member, further polls do not join it again.
            attempts = runner.attempts["static"]
            with trio.fail_after(5):
                while runner.attempts["static"] < attempts + 3:
                    await trio.sleep(0.02)
            assert early.counters["discovery.static.joins"] == joins
        nursery.cancel_scope.cancel()


async def test_the_node_config_discovery_key_runs_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keyring = Keyring.generate(os.urandom)
    async with open_node(NodeConfig(bind=("127.0.0.1", 0), **FAST), keyring=keyring) as seed:
        table = {
            "bind": "127.0.0.1:0",
            "probe_interval_s": 0.05,
            "probe_timeout_s": 0.05,
            "discovery": {"use": "static", "seeds": [f"127.0.0.1:{seed.address[1]}"]},
        }
        config = NodeConfig.from_mapping(table)
        async with (
            open_node(config, keyring=keyring) as node,
            trio.open_nursery() as nursery,
        ):
            with caplog.at_level(logging.INFO, logger="foundation_p2p.discovery"):
                runner = await nursery.start(
                    partial(run_configured_discovery, node, facts=HostFacts())
                )
            assert runner is not None
            with trio.fail_after(5):
                await node.wait_until(lambda: alive_count(node) == 2)
            assert "discovery: static (apprentice mode)" in caplog.text
            assert f"seeds = ['127.0.0.1:{seed.address[1]}']" in caplog.text
            nursery.cancel_scope.cancel()
        async with (
            open_node(NodeConfig(bind=("127.0.0.1", 0)), keyring=keyring) as plain,
            trio.open_nursery() as nursery,
        ):
            # No discovery key: nothing runs.
            assert await nursery.start(run_configured_discovery, plain) is None


def test_found_addresses_are_bounded_and_the_least_recently_seen_forgotten() -> None:
    runner = DiscoveryRunner(Counters())
    many = [("10.0.0.1", port) for port in range(1, MAX_FOUND_PER_STRATEGY + 11)]
    offered = runner.record("dns", many + many[:3])
    # One answer offers at most MAX_FOUND_PER_STRATEGY addresses; the rest is counted.
    assert offered == many[:MAX_FOUND_PER_STRATEGY]
    assert runner.counters["discovery.dns.overflow"] == 10
    assert runner.found["dns"] == set(many[:MAX_FOUND_PER_STRATEGY])
    # Churn: new addresses keep being offered; the least recently seen is forgotten.
    runner.record("dns", [many[0]])
    assert runner.record("dns", many[-2:]) == many[-2:]
    assert len(runner.found["dns"]) == MAX_FOUND_PER_STRATEGY
    assert many[0] in runner.found["dns"]
    assert many[1] not in runner.found["dns"] and many[2] not in runner.found["dns"]
    assert runner.counters["discovery.dns.overflow"] == 12
    assert runner.counters["discovery.dns.found"] == MAX_FOUND_PER_STRATEGY + 2


def test_jitter_stays_within_its_band_and_varies() -> None:
    rng = random.Random(7)
    waits = [jittered(5.0, 0.2, rng) for _ in range(500)]
    assert all(4.0 <= w <= 6.0 for w in waits)
    assert max(waits) - min(waits) > 1.5
    assert {jittered(5.0, 0.0, rng) for _ in range(10)} == {5.0}


async def test_open_node_runs_the_discovery_its_config_names() -> None:
    # the library path: a `discovery` key in the NodeConfig is enough (no run_discovery call)
    keyring = Keyring.generate(os.urandom)
    async with open_node(NodeConfig(bind=("127.0.0.1", 0), **FAST), keyring=keyring) as seed:
        port = seed.address[1]
        config = NodeConfig.from_mapping(
            {
                "bind": "127.0.0.1:0",
                "discovery": {"use": "static", "seeds": [f"127.0.0.1:{port}"], "interval_s": 0.1},
                **FAST,
            }
        )
        async with open_node(config, keyring=keyring) as finder:
            with trio.fail_after(5):
                await finder.wait_until(lambda: alive_count(finder) == 2)
                await seed.wait_until(lambda: alive_count(seed) == 2)
            assert finder.counters["discovery.static.joins"] >= 1
