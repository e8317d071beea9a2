"""Subscribed topics spread through membership gossip (issue 5, item 4; spec/channels.md
section 6): in a 50-node cluster one node subscribes to a custom topic, every other node
lists it as a subscriber within the membership's dissemination bound, and a publisher's
broadcast reaches it.

The bound, from the config: the channels announce the set at their next timer (due at
once), membership signs one record (the first extension change is not delayed by
``extension_min_interval_s``), and the record is sent at most ``retransmit_limit(N)``
times by each node, one gossip round every ``gossip_interval_s``: so every node has it
within ``retransmit_limit(N) x gossip_interval_s`` plus the network latency, unless it
was lost more than the redundancy covers. With the ``lan`` profile and N = 50 that is
4 x ceil(log10 51) = 8 rounds of 0.2 s: 1.6 s. (Direct frames, before, took about N/3
seconds: ~17 s here.)

Seeds 1-20: the run also checks ``membership.converged`` after a staggered start with 1 %
loss. A member that missed every gossiped copy of a late joiner's record used to keep
missing it until a periodic push-pull (15-30 s after its start, past the end): about one
seed in three failed. Two repairs in the SWIM core fixed it (``swim.py``): a joiner
gossips its own record for a whole pass of its gossip list, and a frame from a member
not in the table makes the receiver pull from it.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from foundation_p2p.channels.core import Subscription
from foundation_p2p.membership.config import MembershipConfig
from simulator.scenario import parse_scenario_text
from simulator.world import World

NODES = 50
TOPIC = "custom:room/42"
SUBSCRIBE_AT_S = 10.0
PUBLISH_AT_S = 14.0
LAN = MembershipConfig()
LATENCY_MAX_S = 0.005

SCENARIO = f"""
name = "topics-spread"
seed = 1
duration = "18s"
mode = "bytes"

[cluster]
nodes = {NODES}
profile = "lan"
start = "staggered"
start_interval = "100ms"

[network]
latency = "1ms..5ms"
loss = 0.01

[node.membership]
profile = "lan"

[[workload]]
kind = "membership"

[check]
settle = "2s"
"""


def spread_bound_s(n: int) -> float:
    """``retransmit_limit(n) x gossip_interval_s`` plus one latency per round."""
    rounds = LAN.retransmit_limit(n)
    return rounds * (LAN.gossip_interval_s + LATENCY_MAX_S)


class Probe:
    """Subscribes one node at ``SUBSCRIBE_AT_S``, then records, every 10 ms of virtual
    time, when each other node first lists it among the topic's subscribers."""

    def __init__(self, world: World, subscriber: str, publisher: str) -> None:
        self.world = world
        self.subscriber = world.host(subscriber)
        self.publisher = world.host(publisher)
        self.sub: Subscription | None = None
        self.subscribed_at = 0.0
        self.known_at: dict[str, float] = {}
        self.sent = 0
        world.schedule(SUBSCRIBE_AT_S, self.subscribe)
        world.schedule(PUBLISH_AT_S, self.publish)

    def subscribe(self, _: Any) -> None:
        core = self.subscriber.core
        assert core is not None
        self.sub = core.channels.subscribe(TOPIC)
        self.subscribed_at = self.world.now
        self.world.pump(self.subscriber)
        self.world.schedule(self.world.now, self.poll)

    def poll(self, _: Any) -> None:
        core = self.subscriber.core
        assert core is not None
        target = core.node_id
        for host in self.world.hosts:
            if host is self.subscriber or host.name in self.known_at or host.core is None:
                continue
            if target in host.core.channels.core.subscribers_of(TOPIC):
                self.known_at[host.name] = self.world.now
        if len(self.known_at) < NODES - 1 and self.world.now < PUBLISH_AT_S:
            self.world.schedule(self.world.now + 0.01, self.poll)

    def publish(self, _: Any) -> None:
        core = self.publisher.core
        assert core is not None
        self.sent = core.channels.broadcast(
            self.publisher.clock.now(self.world.now), TOPIC, {"hello": "room 42"}
        )
        self.world.pump(self.publisher)


@pytest.mark.parametrize("seed", range(1, 21))
def test_a_new_subscription_reaches_all_50_nodes_within_the_dissemination_bound(
    seed: int,
) -> None:
    world = World(parse_scenario_text(SCENARIO, source="topics-spread.toml"), seed=seed)
    probe = Probe(world, subscriber="n37", publisher="n5")
    result = world.run()
    assert result.ok, {k: v.detail for k, v in result.invariants.items() if not v.ok}
    # every other node learned the subscription, within the bound
    assert len(probe.known_at) == NODES - 1, sorted(
        h.name for h in world.hosts if h.name not in probe.known_at and h.name != "n37"
    )
    spread = [t - probe.subscribed_at for t in probe.known_at.values()]
    bound = spread_bound_s(NODES)
    assert bound == 8 * (0.2 + LATENCY_MAX_S)
    assert max(spread) <= bound, (max(spread), bound)
    # it spread by gossip, not all at once: the first nodes knew well before the last
    assert min(spread) < max(spread) / 2
    # log N rounds of fan-out gossip_nodes + 1, well under the N/3 s of direct frames
    assert max(spread) < NODES / 3 / 4
    # the publisher's broadcast went to the subscriber only, and arrived
    assert probe.sent == 1
    assert probe.sub is not None
    (delivery,) = probe.sub.take()
    assert delivery.value == {"hello": "room 42"} and delivery.topic == TOPIC
    publisher = world.host("n5").core
    assert publisher is not None
    assert publisher.counters["channels.sent.records"] == 1
    # one signed record carried the set (no frame of its own)
    subscriber = world.host("n37").core
    assert subscriber is not None
    assert subscriber.counters["membership.extensions.announced"] == 1
    print(
        f"topics spread to {NODES - 1} nodes: max {max(spread):.3f} s, "
        f"median {sorted(spread)[len(spread) // 2]:.3f} s (bound {bound:.3f} s, "
        f"log_4(N) rounds = {math.log(NODES, LAN.gossip_nodes + 1):.1f})"
    )
