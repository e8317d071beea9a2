"""HealthGossip on NodeCores in memory (tests/core_net.py): summaries converge, newest
version wins, stale and self-describing frames are refused, the table stays bounded."""

from __future__ import annotations

import random

import pytest
from core_net import WALL, CoreNet

from foundation_p2p.addresses import Address
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError
from foundation_p2p.events import Join
from foundation_p2p.health.gossip import (
    HealthGossip,
    HealthGossipConfig,
    SummaryFrame,
    SummarySampler,
)
from foundation_p2p.health.summary import HealthSummary
from foundation_p2p.membership.state import MemberState
from foundation_p2p.node import NodeCore

KEYRING = Keyring(bytes(range(32)))
ADDRS: list[Address] = [(f"10.0.0.{i}", 7946) for i in range(1, 7)]


def make(addr: Address, seed: int) -> tuple[NodeCore, HealthGossip]:
    rng = random.Random(seed)
    core = NodeCore(
        NodeConfig(bind=addr),
        now=Now(0.0, WALL),
        keyring=KEYRING,
        stored={},
        rng=random.Random(seed + 100),
        secret_bytes=rng.randbytes,
    )
    extra_lag = {"loop_lag_ms": seed * 10}
    sampler = SummarySampler(
        core.membership, lambda: {**core.counters, **core.transport.stats()},
        lambda: extra_lag,
    )
    wired = getattr(core, "health", None)
    if wired is not None:  # NodeCore runs a HealthService itself: drive its gossip
        wired.gossip.sample = sampler
        return core, wired.gossip
    health = HealthGossip(
        core.membership, epoch=core.boot_epoch, rng=random.Random(seed + 7),
        counters=core.counters, sample=sampler,
    )
    core.add_subsystem("health", health)
    return core, health


def cluster(n: int) -> tuple[CoreNet, list[NodeCore], list[HealthGossip]]:
    pairs = [make(ADDRS[i], i + 1) for i in range(n)]
    cores = [c for c, _ in pairs]
    healths = [h for _, h in pairs]
    net = CoreNet(*cores)
    for c in cores[1:]:
        c.handle_command(net.stamp(), Join((ADDRS[0],)))

    def all_alive() -> bool:
        return all(
            (m := x.membership.member(y.node_id)) is not None and m.state == MemberState.ALIVE
            for x in cores for y in cores
        )

    assert net.run(all_alive)
    return net, cores, healths


def test_every_node_learns_every_summary_without_asking() -> None:
    net, cores, healths = cluster(5)
    # nothing is gossiped before a round has run: arm the rounds by publishing once
    for _c, h in zip(cores, healths, strict=True):
        h.publish(net.stamp(), {"awareness": 0})

    def converged() -> bool:
        return all(len(h.summaries()) == 5 for h in healths)

    assert net.run(converged, max_time_s=20.0)
    # the figures are the sampler's: loop lag seed * 10 ms
    for h in healths:
        lags = sorted(s.loop_lag_ms for s in h.summaries().values())
        assert lags == [10, 20, 30, 40, 50]
    assert all(c.counters["health.gossip.accepted"] > 0 for c in cores)


def test_a_new_version_replaces_the_old_everywhere() -> None:
    net, cores, healths = cluster(4)
    for h in healths:
        h.publish(net.stamp(), {})
    assert net.run(lambda: all(len(h.summaries()) == 4 for h in healths), max_time_s=20.0)
    target = healths[2]
    target.sample = lambda now: {"loop_lag_ms": 900, "awareness": 6, "awareness_max": 8}
    assert net.run(lambda: all(
        h.summaries()[cores[2].node_id].loop_lag_ms == 900 for h in healths
    ), max_time_s=20.0)
    v = target.version
    assert all(h.summaries()[cores[2].node_id].version >= v - 1 for h in healths)


def test_stale_and_self_summaries_are_refused_and_counted() -> None:
    net, cores, healths = cluster(2)
    a, b = healths
    s = a.publish(net.stamp(), {"loop_lag_ms": 5})
    a.publish(net.stamp(), {"loop_lag_ms": 6})
    now = net.stamp()
    newer = HealthSummary(cores[0].node_id, s.epoch, s.version + 1, loop_lag_ms=6)
    b.handle_message(now, cores[0].node_id, ADDRS[0], SummaryFrame(newer))
    b.handle_message(now, cores[0].node_id, ADDRS[0], SummaryFrame(s))
    assert cores[1].counters["health.gossip.stale"] == 1
    assert b.summaries()[cores[0].node_id].loop_lag_ms == 6
    fake_self = HealthSummary(cores[1].node_id, 1 << 60, 1)
    b.handle_message(now, cores[0].node_id, ADDRS[0], SummaryFrame(fake_self))
    assert cores[1].counters["health.gossip.about_self"] == 1
    assert cores[1].node_id not in b.summaries()
    # a newer boot epoch wins over any version of the older boot
    reboot = HealthSummary(cores[0].node_id, s.epoch + 1, 1, loop_lag_ms=1)
    b.handle_message(now, cores[0].node_id, ADDRS[0], SummaryFrame(reboot))
    assert b.summaries()[cores[0].node_id].loop_lag_ms == 1


def test_table_is_bounded_and_evicts_unknown_nodes_first() -> None:
    net, cores, _healths = cluster(2)
    a = cores[0]
    h = HealthGossip(
        a.membership, epoch=1, rng=random.Random(1), counters=a.counters,
        config=HealthGossipConfig(max_nodes=3),
    )
    now = net.stamp()
    known = cores[1].node_id
    h.handle_message(now, known, ADDRS[1], SummaryFrame(HealthSummary(known, 1, 1)))
    for i in range(5):
        nid = bytes([0xEE, i]) + bytes(14)
        h.handle_message(now, known, ADDRS[1], SummaryFrame(HealthSummary(nid, 1, 1)))
    table = h.summaries()
    assert len(table) == 3
    assert known in table  # a live member's entry outlives unknown nodes'
    assert a.counters["health.table.evicted"] == 3


def test_unknown_nodes_are_forgotten_after_forget_after_s() -> None:
    _net, cores, _healths = cluster(2)
    a = cores[0]
    h = HealthGossip(
        a.membership, epoch=1, rng=random.Random(1), counters=a.counters,
        config=HealthGossipConfig(forget_after_s=5.0),
    )
    ghost = bytes([0xAB]) * 16
    h.handle_message(Now(10.0, WALL), ghost, ADDRS[1], SummaryFrame(HealthSummary(ghost, 1, 1)))
    h.handle_timer(Now(12.0, WALL))
    assert ghost in h.summaries()
    h.handle_timer(Now(17.5, WALL))
    assert ghost not in h.summaries()
    assert a.counters["health.table.forgotten"] == 1


def test_config_from_the_health_table() -> None:
    cfg = HealthGossipConfig.from_mapping({"interval_s": 2, "fanout": 4})
    assert (cfg.interval_s, cfg.fanout) == (2.0, 4)
    with pytest.raises(ConfigError, match="unknown key 'fan_out'"):
        HealthGossipConfig.from_mapping({"fan_out": 4})
    with pytest.raises(ConfigError, match="fanout must be a number"):
        HealthGossipConfig.from_mapping({"fanout": "4"})
    with pytest.raises(ConfigError, match="fanout"):
        HealthGossipConfig.from_mapping({"fanout": 0})


def test_an_observer_hears_every_nodes_summary() -> None:
    net, cores, healths = cluster(4)
    rng = random.Random(99)
    obs = NodeCore(
        NodeConfig(bind=ADDRS[5], extra={"membership": {"observer": True}}),
        now=net.stamp(), keyring=KEYRING, stored={}, rng=random.Random(199),
        secret_bytes=rng.randbytes,
    )
    wired = getattr(obs, "health", None)
    if wired is not None:
        obs_health = wired.gossip
    else:
        obs_health = HealthGossip(obs.membership, epoch=obs.boot_epoch,
                                  rng=random.Random(5), counters=obs.counters)
        obs.add_subsystem("health", obs_health)
    net.cores[ADDRS[5]] = obs
    obs.handle_command(net.stamp(), Join((ADDRS[0],)))
    for h in healths:
        h.start(net.stamp())
    ids = {c.node_id for c in cores}
    assert net.run(lambda: ids <= set(obs_health.summaries()), max_time_s=15.0)
    # members never send to it more than observer_fanout (1) per round each
    assert all(c.membership.member(obs.node_id) is not None for c in cores)


def test_jitter_is_not_published_but_real_changes_are() -> None:
    from foundation_p2p.health.gossip import significant_change

    base = {"loop_lag_ms": 10, "rss_kib": 50_000, "awareness": 0, "queue_depth": 3}
    assert significant_change(None, base)
    assert not significant_change(base, {**base, "loop_lag_ms": 40, "rss_kib": 52_000,
                                         "queue_depth": 90})
    assert significant_change(base, {**base, "loop_lag_ms": 900})
    assert significant_change(base, {**base, "awareness": 1})  # any change of the score
    assert significant_change(base, {**base, "rss_kib": 80_000})


def test_first_hand_unchanged_summary_refreshes_its_age() -> None:
    net, cores, healths = cluster(2)
    a, b = healths
    s = a.publish(net.stamp(), {"loop_lag_ms": 5})
    b.handle_message(Now(100.0, WALL), cores[0].node_id, ADDRS[0], SummaryFrame(s))
    b.handle_message(Now(130.0, WALL), cores[0].node_id, ADDRS[0], SummaryFrame(s))
    assert b.received_at(cores[0].node_id) == 130.0
    assert cores[1].counters["health.gossip.refreshed"] == 1
    # relayed by someone else: no proof of life, not a refresh
    b.handle_message(Now(160.0, WALL), cores[0].node_id, ADDRS[0], SummaryFrame(s))
    b.handle_message(Now(170.0, WALL), bytes(16), ADDRS[0], SummaryFrame(s))
    assert b.received_at(cores[0].node_id) == 160.0
    assert cores[1].counters["health.gossip.stale"] == 1
