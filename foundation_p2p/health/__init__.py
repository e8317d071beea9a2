"""Cluster health: the gossiped self-summaries, the monitor's rules, Prometheus exposition.

- :mod:`foundation_p2p.health.summary`: ``HealthSummary`` and its bounded CBOR codec;
- :mod:`foundation_p2p.health.gossip`: ``HealthGossip``, the NodeCore subsystem that
  spreads summaries (frame 49), and ``SummarySampler``;
- :mod:`foundation_p2p.health.monitor`: ``HealthMonitor``, verdicts with their reasons;
- :mod:`foundation_p2p.health.prometheus`: text exposition format 0.0.4.
"""
