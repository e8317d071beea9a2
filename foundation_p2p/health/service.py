"""``HealthService``: a node's health, wired over one ``NodeCore`` (``node.health``).

It registers a :class:`~foundation_p2p.health.gossip.HealthGossip` subsystem (named
``health``) on the core, samples the node's summary with a
:class:`~foundation_p2p.health.gossip.SummarySampler`, and answers
:meth:`report` / :meth:`metrics_text` from what the node already holds: no network round
trip. Each gossip round also hands the monitor a counter sample
(``monitor.observe``), so its rates cover the last window however often it is asked.
Equivalent lower-level calls:

- ``service.gossip.summaries()`` / ``received_at()``: the gossiped summaries;
- ``service.monitor.report(now, local=..., members=core.membership.members(),
  summaries=..., received_at=..., counters=service.counters(),
  rtt_samples=service.rtt_samples())``: the verdicts;
- ``prometheus.render(counters, gauges, families=health_families(report))``: the metrics.

Figures the core cannot know (event-loop lag, memory, CPU) are set by the driver in
:attr:`local_figures`; other subsystems (Raft, registry) add theirs with
:meth:`add_provider`. The gossip draws from its own ``random.Random``, seeded from the
node id and boot epoch, so adding it leaves every other subsystem's draws unchanged.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from foundation_p2p.clock import Now
from foundation_p2p.health.gossip import HealthGossip, HealthGossipConfig, SummarySampler
from foundation_p2p.health.monitor import HealthMonitor, HealthReport, Thresholds
from foundation_p2p.health.prometheus import health_families, render
from foundation_p2p.membership.state import MemberState

if TYPE_CHECKING:
    from foundation_p2p.node import NodeCore

_REACHABLE = (MemberState.ALIVE, MemberState.SUSPECT)


class HealthService:
    """Health gossip, sampling and monitoring of one node; see the module docstring."""

    def __init__(
        self,
        core: NodeCore,
        *,
        now: Now,
        config: HealthGossipConfig | None = None,
        thresholds: Thresholds | None = None,
        start: bool = True,
    ) -> None:
        self.core = core
        self.local_figures: dict[str, int] = {}
        """Figures set by the driver: ``loop_lag_ms``, ``rss_kib``, ``cpu_permille``..."""
        self._providers: list[Callable[[Now], Mapping[str, int]]] = []
        self._sampled_at: Now | None = None
        seed = hashlib.sha256(
            b"foundation-p2p health" + core.node_id + core.boot_epoch.to_bytes(8, "big")
        ).digest()
        self.sampler = SummarySampler(core.membership, self.counters, self._extra)
        self.gossip = HealthGossip(
            core.membership,
            epoch=core.boot_epoch,
            rng=random.Random(int.from_bytes(seed[:8], "big")),
            counters=core.counters,
            sample=self._sample,
            config=config,
        )
        core.add_subsystem("health", self.gossip)
        self.monitor = HealthMonitor(thresholds)
        if start:
            self.gossip.start(now)

    def _sample(self, now: Now) -> dict[str, int]:
        # every gossip round also feeds the monitor a counter sample, so its rates
        # (packets/s, error rate, suspicions) span the last window whoever asks, and
        # however rarely (a /health poll every 15 s, or two polls 1 ms apart)
        self.monitor.observe(now, self.counters())
        self._sampled_at = now
        return self.sampler(now)

    def add_provider(self, provider: Callable[[Now], Mapping[str, int]]) -> None:
        """Add figures to every sample: ``provider(now)`` returns some of the summary's
        fields (NodeCore adds ``raft_role``/``raft_lag`` from Raft and ``registry_lag_ms``
        from the registry)."""
        self._providers.append(provider)

    def counters(self) -> dict[str, int]:
        """The node's counters with the transport's (``transport.stats()``)."""
        out = dict(self.core.counters)
        out.update(self.core.transport.stats())
        return out

    def rtt_samples(self) -> list[float]:
        """One round-trip time (seconds) per reachable member that has one: the smoothed
        RTT of the transport connection to it when that has a sample, else the static
        prober's last ping RTT to its address (``core.prober.rtt_s``), else the round trip
        of SWIM's last direct probe to it (``core.membership.probe_rtts()``).

        Connections exist only where channels, the registry or Raft talk; the static
        prober pings its join targets in every ``node run``; SWIM probes every member in
        turn, so a cluster running membership alone still has samples."""
        out: list[float] = []
        transport = self.core.transport
        pinged = self.core.prober.rtt_s
        probed = self.core.membership.probe_rtts()
        for m in self.core.membership.members():
            if m.node_id == self.core.node_id or m.state not in _REACHABLE:
                continue
            conn = transport.connection(m.node_id)
            if conn is not None and conn.recovery.rtt.has_sample:
                out.append(conn.smoothed_rtt)
            else:
                rtt = pinged.get(m.address)
                if rtt is None:
                    rtt = probed.get(m.node_id)
                if rtt is not None:
                    out.append(rtt)
        return out

    def _extra(self) -> dict[str, int]:
        out = {"queue_depth": self.core.membership.pending_broadcasts()}
        now = self._sampled_at
        if now is not None:
            for provider in self._providers:
                out.update(provider(now))
        for k, v in self.local_figures.items():
            out[k] = max(out.get(k, 0), v) if k == "queue_depth" else v
        return out

    def report(self, now: Now) -> HealthReport:
        """The monitor's verdicts now, from local state only."""
        return self.monitor.report(
            now,
            local=self.core.node_id,
            members=self.core.membership.members(),
            summaries=self.gossip.summaries(),
            received_at={k: t for k in self.gossip.summaries()
                         if (t := self.gossip.received_at(k)) is not None},
            counters=self.counters(),
            rtt_samples=self.rtt_samples(),
        )

    def metrics_text(self, now: Now) -> str:
        """Prometheus exposition of every counter, the gauges and the health verdicts."""
        core = self.core
        gauges: dict[str, float] = {
            "membership.awareness": core.membership.awareness,
            "membership.alive_count": core.membership.alive_count(),
            "membership.pending_broadcasts": core.membership.pending_broadcasts(),
            "node.pending_writes": core.pending_writes,
            "health.summaries": len(self.gossip.summaries()),
        }
        for k, v in self.local_figures.items():
            gauges[f"health.local.{k}"] = v
        report = self.report(now)
        return render(self.counters(), gauges, families=health_families(report))
