"""The validated form of a scenario: what ``simulator.scenario`` parses a TOML file into,
and what ``simulator.world`` runs. Every field here is already checked; the world trusts it.

Times are virtual seconds (floats). Node names are ``n1``..``nN``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FAULT_OPS = (
    "partition", "heal", "isolate", "crash", "restart", "pause", "resume", "skew",
    "loss", "latency", "clog", "swizzle", "join", "leave", "transfer-leader",
)
"""Every fault op the parser knows. Ops whose capability has not landed are refused (exit 2)."""

ROLES = ("@leader", "@random", "@singleton")
"""Node roles resolved when a fault fires (``@singleton:NAME`` carries a name)."""

WORKLOAD_KINDS = ("ping", "membership", "kv", "broadcast", "singleton", "auction")
"""Workload kinds the parser knows; each arrives with its capability."""


@dataclass(frozen=True)
class LatencySpec:
    """Uniform latency between ``low_s`` and ``high_s`` (equal for a fixed latency)."""

    low_s: float
    high_s: float


@dataclass(frozen=True)
class LinkSpec:
    """Settings for the one-way link ``src`` -> ``dst`` (a ``[[network.link]]`` table).

    ``None`` fields inherit the ``[network]`` defaults. ``symmetric`` applies the same
    settings to ``dst`` -> ``src`` too.
    """

    src: str
    dst: str
    latency: LatencySpec | None = None
    loss: float | None = None
    duplicate: float | None = None
    reorder: float | None = None
    bandwidth_bytes_per_s: float | None = None
    symmetric: bool = True


@dataclass(frozen=True)
class NetworkSpec:
    """The ``[network]`` table: defaults for every link, plus per-link overrides."""

    latency: LatencySpec = LatencySpec(0.001, 0.010)
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    bandwidth_bytes_per_s: float | None = None
    links: tuple[LinkSpec, ...] = ()
    mtu: int = 1500
    """Bytes of the largest IP packet a link carries (``simulator.network.DEFAULT_MTU_BYTES``)."""


@dataclass(frozen=True)
class ClusterSpec:
    """The ``[cluster]`` table."""

    nodes: int
    profile: str = "lan"
    start: str = "together"  # "together" | "staggered"
    start_interval_s: float = 0.0
    late: tuple[str, ...] = ()
    """Nodes that do not start at time 0: they start when a ``join`` fault names them."""
    seeds: tuple[str, ...] = ()
    """Nodes every other node joins through (default: the first min(3, N) nodes)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"n{i}" for i in range(1, self.nodes + 1))


@dataclass(frozen=True)
class FaultSpec:
    """One ``[[fault]]`` table.

    ``node`` is a node name or a role (``@leader``, ``@random``, ``@singleton:NAME``).
    Periodic faults repeat every ``every_s`` from ``at_s`` until ``until_s``; ``for_s``
    is how long each occurrence lasts before its inverse (``pause`` -> ``resume``,
    ``partition``/``isolate``/``clog`` -> ``heal``, ``crash`` -> ``restart``).
    """

    at_s: float
    op: str
    node: str | None = None
    nodes: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    shape: str | None = None  # "majorities-ring" for partition
    oneway: bool = False
    src: str | None = None
    dst: str | None = None
    every_s: float | None = None
    for_s: float | None = None
    until_s: float | None = None
    value: float | None = None  # loss rate, skew offset seconds, drift ppm...
    latency: LatencySpec | None = None
    kind: str | None = None  # skew: "offset" | "drift" | "step"
    torn: bool = False  # crash: tear the last unsynced write
    index: int = 0  # position in the file, for error messages and the trace


@dataclass(frozen=True)
class WorkloadSpec:
    """One ``[[workload]]`` table; ``params`` holds the kind's own keys, validated."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RandomFaultLimits:
    """Limits for ``--random-faults`` (the ``[random_faults]`` table)."""

    max_concurrent: int = 1
    mean_interval_s: float = 10.0
    max_duration_s: float = 10.0
    ops: tuple[str, ...] = ("partition", "isolate", "crash", "pause", "loss", "clog", "skew")
    end_before_s: float | None = None
    """No random fault starts after this (default: duration minus settle)."""


@dataclass(frozen=True)
class CheckSpec:
    """The ``[check]`` table."""

    invariants: tuple[str, ...] = ()
    settle_s: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A whole validated scenario file."""

    name: str
    text: str
    """The file's exact text (kept in the trace so a trace replays on its own)."""
    seed: int = 1
    duration_s: float = 60.0
    mode: str = "bytes"  # "bytes" | "messages"
    cluster: ClusterSpec = ClusterSpec(nodes=3)
    node_defaults: dict[str, Any] = field(default_factory=dict)
    """``[node]`` keys (the NodeConfig TOML schema) applied to every node."""
    node_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``[node.nX]`` tables: node name -> NodeConfig TOML keys."""
    network: NetworkSpec = NetworkSpec()
    faults: tuple[FaultSpec, ...] = ()
    workloads: tuple[WorkloadSpec, ...] = ()
    check: CheckSpec = CheckSpec()
    random_faults: RandomFaultLimits = RandomFaultLimits()
