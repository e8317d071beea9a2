"""HealthService on five NodeCores in memory (tests/core_net.py), verdicts checked against
what the test did: a node whose loop lags is reported degraded by the others with that
reason; a paused node is suspected then reported missing; after it resumes all is healthy
again; the metrics parse and carry the verdicts."""

from __future__ import annotations

import random

from core_net import WALL, CoreNet

from foundation_p2p.addresses import Address
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.events import Join
from foundation_p2p.health.monitor import Status
from foundation_p2p.health.service import HealthService
from foundation_p2p.node import NodeCore

KEYRING = Keyring(bytes(range(32)))
ADDRS: list[Address] = [(f"10.0.1.{i}", 7946) for i in range(1, 6)]


def boot(n: int = 5) -> tuple[CoreNet, list[NodeCore], list[HealthService]]:
    cores: list[NodeCore] = []
    services: list[HealthService] = []
    for i in range(n):
        rng = random.Random(i)
        core = NodeCore(
            NodeConfig(bind=ADDRS[i], name=f"n{i + 1}"), now=Now(0.0, WALL), keyring=KEYRING,
            stored={}, rng=random.Random(i + 50), secret_bytes=rng.randbytes,
        )
        cores.append(core)
        services.append(service_of(core))
    net = CoreNet(*cores)
    for c in cores[1:]:
        c.handle_command(net.stamp(), Join((ADDRS[0],)))
    assert net.run(lambda: all_healthy(net, services), max_time_s=30.0)
    return net, cores, services


def service_of(core: NodeCore) -> HealthService:
    """The core's own HealthService when NodeCore wires one, else one attached here."""
    wired = getattr(core, "health", None)
    if isinstance(wired, HealthService):
        return wired
    return HealthService(core, now=Now(0.0, WALL))


def all_healthy(net: CoreNet, services: list[HealthService]) -> bool:
    for s in services:
        r = s.report(net.stamp())
        if r.status is not Status.HEALTHY or len(r.nodes) != len(services):
            return False
    return True


def test_a_lagging_node_is_reported_degraded_with_its_reason() -> None:
    net, _cores, services = boot()
    start = net.now
    services[3].local_figures["loop_lag_ms"] = 900

    def seen_by_all() -> bool:
        for s in services:
            n = s.report(net.stamp()).node("n4")
            if n is None or n.status is not Status.DEGRADED:
                return False
        return True

    assert net.run(seen_by_all, max_time_s=10.0)
    assert net.now - start <= 5.0  # a few gossip rounds
    r = services[0].report(net.stamp())
    n4 = r.node("n4")
    assert n4 is not None
    assert [x.rule for x in n4.reasons] == ["loop_lag"]
    assert n4.reasons[0].text == "its event loop lags 900 ms"
    assert r.status is Status.DEGRADED
    assert any("n4's event loop lags 900 ms" in line for line in r.recommendations)
    # the others stay healthy
    assert all(n.status is Status.HEALTHY for n in r.nodes if n.name != "n4")


def test_a_paused_node_is_suspected_then_missing_then_healthy_after_resuming() -> None:
    net, cores, services = boot()
    paused = cores[4]
    del net.cores[ADDRS[4]]  # no timers, its datagrams lost: paused

    def verdict_on_n5(status: Status, rule: str) -> bool:
        for s in services[:4]:
            n = s.report(net.stamp()).node("n5")
            if n is None or n.status is not status or n.reasons[0].rule != rule:
                return False
        return True

    assert net.run(lambda: verdict_on_n5(Status.DEGRADED, "member_state"), max_time_s=10.0)
    n5 = services[0].report(net.stamp()).node("n5")
    assert n5 is not None and "suspected" in n5.reasons[0].text
    assert net.run(lambda: verdict_on_n5(Status.CRITICAL, "member_state"), max_time_s=30.0)
    r = services[0].report(net.stamp())
    assert r.status is Status.DEGRADED
    assert [x.rule for x in r.reasons] == ["missing_members"]
    assert r.reasons[0].text == "1 of 5 members missing: n5"
    # resume: the node comes back, refutes, and everyone is healthy again
    net.cores[ADDRS[4]] = paused
    assert net.run(lambda: all_healthy(net, services), max_time_s=60.0)
    for s in services:
        n5 = s.report(net.stamp()).node("n5")
        assert n5 is not None and n5.state == "alive"


def test_metrics_carry_counters_and_verdicts() -> None:
    net, cores, services = boot(3)
    text = services[0].metrics_text(net.stamp())
    assert "# TYPE foundation_p2p_packets_received_total counter" in text
    assert f"foundation_p2p_packets_received_total {cores[0].counters['packets.received']}" \
        in text
    assert "foundation_p2p_health_status 0\n" in text
    assert text.count('foundation_p2p_health_node_status{node="n') == 3
    assert "foundation_p2p_health_summaries 3\n" in text
    assert "foundation_p2p_health_gossip_accepted_total" in text


def test_the_gossip_leaves_other_subsystems_draws_alone() -> None:
    # rounds that choose targets draw from the gossip's own generator, never the node's
    net, cores, services = boot(3)
    for core, service in zip(cores, services, strict=True):
        before = core.rng.getstate()
        own_before = service.gossip.rng.getstate()
        service.gossip.take_outgoing()
        for k in range(1, 4):
            t = net.now + k * service.gossip.config.interval_s
            service.gossip.handle_timer(Now(t, WALL + t))
        assert service.gossip.take_outgoing()  # it did send, to chosen members
        assert service.gossip.rng.getstate() != own_before
        assert core.rng.getstate() == before
