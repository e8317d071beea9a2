"""``HealthMonitor``: per-node and cluster verdicts, with the reasons that produced them.

Pure: everything is handed in (the membership's members, the gossiped summaries and when
they arrived, the node's counters, transport RTT samples, ``now``). Nothing here reads a
clock, a socket or another node: a report costs no network round trip.

**Rules.** Each verdict comes from small functions, one concern each, listed in
:data:`NODE_RULES` and :data:`CLUSTER_RULES`. A rule returns ``None`` (nothing to say) or
a :class:`Reason` with the status it argues for; a node's (or the cluster's) status is
the worst its reasons argue for, ``healthy`` without reasons. Thresholds live in
:class:`Thresholds`.

**Figures** (:class:`Figures`): rates over the last ``window_s`` of counter samples
(the bounded sample history, one sample per :meth:`HealthMonitor.observe` or
:meth:`HealthMonitor.report`): packets received per second, errors (dropped packets and
refused frames) per received packet (once at least ``min_packets`` were received in the
window), suspicions, refutations and failures per minute
(counted over at least a minute: a window shorter than that is not extrapolated);
message latency as percentiles of the RTT samples handed in.

**History**: the last ``history`` verdicts (time, status, nodes per status), oldest
dropped first.

**Recommendations**: derived from the non-healthy reasons and the figures behind them,
one line each, e.g. "n4's awareness score is 6 of 8: its event loop lags 900 ms - it is
probing at 7x interval".
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from foundation_p2p.addresses import NodeId
from foundation_p2p.clock import Now
from foundation_p2p.health.summary import HealthSummary, RaftRole
from foundation_p2p.membership.state import Member, MemberState


class Status(enum.IntEnum):
    """A verdict, ordered by severity (``max`` of several is the worst)."""

    HEALTHY = 0
    DEGRADED = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        """``healthy``, ``degraded`` or ``critical``."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a rule argues for ``status``: the rule's name and a readable sentence."""

    rule: str
    status: Status
    text: str


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where each rule draws its lines (``degraded`` at or above the first figure,
    ``critical`` at or above the second)."""

    awareness_fraction: tuple[float, float] = (0.5, 1.0)
    """Awareness score as a fraction of its maximum."""
    loop_lag_ms: tuple[int, int] = (100, 1000)
    drop_permille: tuple[int, int] = (50, 200)
    retransmit_permille: tuple[int, int] = (100, 300)
    queue_depth: tuple[int, int] = (1000, 10000)
    raft_lag: tuple[int, int] = (100, 10000)
    registry_lag_ms: tuple[int, int] = (5000, 60000)
    summary_stale_s: float = 75.0
    """A summary not renewed this long (2.5 gossip refreshes of 30 s) says nothing
    current: the node is degraded."""
    suspicions_per_min: float = 6.0
    """Cluster churn: more suspicions than this per minute degrade the cluster."""
    error_rate: tuple[float, float] = (0.05, 0.2)


@dataclass(frozen=True, slots=True)
class NodeView:
    """What a node rule sees about one node."""

    member: Member
    summary: HealthSummary | None
    summary_age_s: float | None
    is_local: bool
    now_mono: float


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """One node's verdict."""

    node_id: NodeId
    name: str
    address: tuple[str, int]
    state: str
    status: Status
    reasons: tuple[Reason, ...]
    summary: HealthSummary | None
    summary_age_s: float | None

    def to_json(self) -> dict[str, Any]:
        """The node as JSON-ready values."""
        out: dict[str, Any] = {
            "node_id": self.node_id.hex(),
            "name": self.name,
            "address": f"{self.address[0]}:{self.address[1]}",
            "state": self.state,
            "status": self.status.label,
            "reasons": [r.text for r in self.reasons],
            "summary_age_s": None if self.summary_age_s is None else round(self.summary_age_s, 3),
        }
        if self.summary is not None:
            out["summary"] = {"epoch": self.summary.epoch, "version": self.summary.version,
                              **self.summary.figures()}
        return out


@dataclass(frozen=True, slots=True)
class Figures:
    """Measured figures of the local node over ``window_s`` (``None``: not measurable yet)."""

    window_s: float
    packets_per_s: float | None
    error_rate: float | None
    suspicions_per_min: float | None
    refutations_per_min: float | None
    failures_per_min: float | None
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    latency_samples: int

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON-ready values (rounded)."""
        return {k: (round(v, 3) if isinstance(v, float) else v)
                for k, v in ((f, getattr(self, f)) for f in self.__slots__)}


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One past verdict: when (monotonic), the cluster status, nodes per status."""

    mono: float
    status: Status
    counts: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The whole answer of :meth:`HealthMonitor.report`."""

    status: Status
    reasons: tuple[Reason, ...]
    nodes: tuple[NodeHealth, ...]
    figures: Figures
    recommendations: tuple[str, ...]
    history: tuple[HistoryEntry, ...] = field(default=())

    def node(self, name_or_id: str | bytes) -> NodeHealth | None:
        """The node with this name or node id, or None."""
        for n in self.nodes:
            if n.name == name_or_id or n.node_id == name_or_id:
                return n
        return None

    def to_json(self) -> dict[str, Any]:
        """``{"status", "reasons", "nodes": [...], "recommendations", "figures",
        "history"}`` as JSON-ready values."""
        return {
            "status": self.status.label,
            "reasons": [r.text for r in self.reasons],
            "nodes": [n.to_json() for n in self.nodes],
            "recommendations": list(self.recommendations),
            "figures": self.figures.to_json(),
            "history": [
                {"mono": round(h.mono, 3), "status": h.status.label,
                 "healthy": h.counts[0], "degraded": h.counts[1], "critical": h.counts[2]}
                for h in self.history
            ],
        }


# -- node rules ------------------------------------------------------------------------

def _two_level(value: float, levels: tuple[float, float]) -> Status:
    if value >= levels[1]:
        return Status.CRITICAL
    if value >= levels[0]:
        return Status.DEGRADED
    return Status.HEALTHY


def rule_member_state(v: NodeView, t: Thresholds) -> Reason | None:
    """A suspect member is degraded, a failed one critical (membership's own verdict)."""
    state = v.member.state
    since = v.now_mono - v.member.since_mono
    if state is MemberState.SUSPECT:
        return Reason("member_state", Status.DEGRADED, f"suspected by membership for {since:.1f} s")
    if state is MemberState.FAILED:
        return Reason("member_state", Status.CRITICAL,
                      f"missing: declared failed {since:.1f} s ago")
    return None


def rule_summary_fresh(v: NodeView, t: Thresholds) -> Reason | None:
    """A node whose health summary is missing or stale tells us nothing current.

    Stale counts from when the member last changed state too: a member found again after
    a partition (failed, then alive) cannot have sent us a summary while it was cut off,
    so its old summary is not held against it until it has been back ``summary_stale_s``.
    """
    if v.is_local or v.member.state is MemberState.FAILED:
        return None
    if v.summary is None or v.summary_age_s is None:
        return Reason("summary_fresh", Status.DEGRADED, "no health summary received yet")
    if v.summary_age_s > t.summary_stale_s and v.now_mono - v.member.since_mono > (
            t.summary_stale_s):
        return Reason("summary_fresh", Status.DEGRADED,
                      f"its health summary is {v.summary_age_s:.0f} s old")
    return None


def rule_awareness(v: NodeView, t: Thresholds) -> Reason | None:
    """Lifeguard's awareness score: a high score means the node doubts its own timing."""
    s = v.summary
    if s is None or s.awareness_max == 0 or s.awareness == 0:
        return None
    status = _two_level(s.awareness / s.awareness_max, t.awareness_fraction)
    if status is Status.HEALTHY:
        return None
    return Reason("awareness", status,
                  f"awareness score is {s.awareness} of {s.awareness_max}: it is probing at "
                  f"{s.awareness + 1}x interval")


def rule_loop_lag(v: NodeView, t: Thresholds) -> Reason | None:
    """Event-loop lag: a lagging loop answers probes late."""
    s = v.summary
    if s is None:
        return None
    status = _two_level(s.loop_lag_ms, t.loop_lag_ms)
    if status is Status.HEALTHY:
        return None
    return Reason("loop_lag", status, f"its event loop lags {s.loop_lag_ms} ms")


def rule_drops(v: NodeView, t: Thresholds) -> Reason | None:
    """Share of received packets the node dropped (bad, replayed, undecodable)."""
    s = v.summary
    if s is None:
        return None
    status = _two_level(s.drop_permille, t.drop_permille)
    if status is Status.HEALTHY:
        return None
    return Reason("drops", status, f"it drops {s.drop_permille / 10:.1f}% of received packets")


def rule_retransmits(v: NodeView, t: Thresholds) -> Reason | None:
    """Share of connection packets declared lost (and retransmitted)."""
    s = v.summary
    if s is None:
        return None
    status = _two_level(s.retransmit_permille, t.retransmit_permille)
    if status is Status.HEALTHY:
        return None
    return Reason("retransmits", status,
                  f"{s.retransmit_permille / 10:.1f}% of its connection packets are lost")


def rule_queues(v: NodeView, t: Thresholds) -> Reason | None:
    """The deepest bounded queue: a deep queue means the node falls behind."""
    s = v.summary
    if s is None:
        return None
    status = _two_level(s.queue_depth, t.queue_depth)
    if status is Status.HEALTHY:
        return None
    return Reason("queues", status, f"its deepest queue holds {s.queue_depth} items")


def rule_raft_lag(v: NodeView, t: Thresholds) -> Reason | None:
    """A Raft member behind the commit index serves stale reads and slows quorums."""
    s = v.summary
    if s is None or s.raft_role == RaftRole.NONE:
        return None
    status = _two_level(s.raft_lag, t.raft_lag)
    if status is Status.HEALTHY:
        return None
    role = RaftRole(s.raft_role).name.lower()
    return Reason("raft_lag", status, f"as Raft {role} it is {s.raft_lag} entries behind")


def rule_registry_lag(v: NodeView, t: Thresholds) -> Reason | None:
    """Registry sync lag: how far its replica trails what it has heard of."""
    s = v.summary
    if s is None:
        return None
    status = _two_level(s.registry_lag_ms, t.registry_lag_ms)
    if status is Status.HEALTHY:
        return None
    return Reason("registry_lag", status, f"its registry replica lags {s.registry_lag_ms} ms")


NodeRule = Callable[[NodeView, Thresholds], "Reason | None"]
NODE_RULES: tuple[NodeRule, ...] = (
    rule_member_state, rule_summary_fresh, rule_awareness, rule_loop_lag, rule_drops,
    rule_retransmits, rule_queues, rule_raft_lag, rule_registry_lag,
)
"""Every node rule, in the order reasons are listed."""


# -- cluster rules ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClusterView:
    """What a cluster rule sees."""

    nodes: tuple[NodeHealth, ...]
    figures: Figures


def rule_missing_members(c: ClusterView, t: Thresholds) -> Reason | None:
    """Failed members are missing: the cluster runs without them."""
    missing = [n.name for n in c.nodes if n.state == "failed"]
    if not missing:
        return None
    return Reason("missing_members", Status.DEGRADED,
                  f"{len(missing)} of {len(c.nodes)} members missing: {', '.join(missing)}")


def rule_majority(c: ClusterView, t: Thresholds) -> Reason | None:
    """Fewer than a majority alive: quorum-based services (Raft, leases) stop."""
    alive = sum(1 for n in c.nodes if n.state in ("alive", "suspect"))
    if not c.nodes or alive > len(c.nodes) // 2:
        return None
    return Reason("majority", Status.CRITICAL,
                  f"only {alive} of {len(c.nodes)} members are reachable: no majority")


def rule_unhealthy_nodes(c: ClusterView, t: Thresholds) -> Reason | None:
    """Any degraded or critical (non-failed) node degrades the cluster."""
    bad = [n for n in c.nodes if n.status is not Status.HEALTHY and n.state != "failed"]
    if not bad:
        return None
    names = ", ".join(f"{n.name} ({n.status.label})" for n in bad)
    return Reason("unhealthy_nodes", Status.DEGRADED, f"unhealthy nodes: {names}")


def rule_churn(c: ClusterView, t: Thresholds) -> Reason | None:
    """Many suspicions per minute: probes time out often (loss, lag or flapping)."""
    rate = c.figures.suspicions_per_min
    if rate is None or rate < t.suspicions_per_min:
        return None
    return Reason("churn", Status.DEGRADED, f"{rate:.1f} suspicions per minute")


def rule_errors(c: ClusterView, t: Thresholds) -> Reason | None:
    """Share of received packets this node refused."""
    rate = c.figures.error_rate
    if rate is None:
        return None
    status = _two_level(rate, t.error_rate)
    if status is Status.HEALTHY:
        return None
    return Reason("errors", status, f"{rate * 100:.1f}% of received packets were refused here")


ClusterRule = Callable[[ClusterView, Thresholds], "Reason | None"]
CLUSTER_RULES: tuple[ClusterRule, ...] = (
    rule_majority, rule_missing_members, rule_unhealthy_nodes, rule_churn, rule_errors,
)
"""Every cluster rule, in the order reasons are listed."""


# -- recommendations -------------------------------------------------------------------

def recommend(node: NodeHealth) -> list[str]:
    """Recommendations for one node, each naming the figures that led to it."""
    by_rule = {r.rule: r for r in node.reasons}
    s = node.summary
    out: list[str] = []
    who = node.name
    if "member_state" in by_rule and node.state == "failed":
        out.append(f"{who} is {by_rule['member_state'].text}: check that its process runs "
                   "and that it is reachable from here")
    elif "member_state" in by_rule:
        out.append(f"{who} is {by_rule['member_state'].text}: watch for a refutation; if "
                   "it repeats, check its network path")
    if "awareness" in by_rule and s is not None:
        cause = ""
        if "loop_lag" in by_rule:
            cause = f"its event loop lags {s.loop_lag_ms} ms"
        elif "drops" in by_rule or "retransmits" in by_rule:
            cause = "it loses packets"
        because = f"{cause} - " if cause else ""
        out.append(f"{who}'s awareness score is {s.awareness} of {s.awareness_max}: "
                   f"{because}it is probing at {s.awareness + 1}x interval")
    elif "loop_lag" in by_rule and s is not None:
        out.append(f"{who}'s event loop lags {s.loop_lag_ms} ms: look for blocking work "
                   "in its Trio tasks")
    if "drops" in by_rule and s is not None:
        out.append(f"{who} drops {s.drop_permille / 10:.1f}% of what it receives: check "
                   "its cluster key and for replayed or foreign traffic")
    if "retransmits" in by_rule and s is not None:
        out.append(f"{who} retransmits {s.retransmit_permille / 10:.1f}% of its packets: "
                   "its network path loses packets")
    if "queues" in by_rule and s is not None:
        out.append(f"{who}'s deepest queue holds {s.queue_depth} items: it cannot keep up")
    if "raft_lag" in by_rule and s is not None:
        out.append(f"{who} is {s.raft_lag} Raft entries behind: it needs a snapshot or a "
                   "faster link")
    if "registry_lag" in by_rule and s is not None:
        out.append(f"{who}'s registry replica lags {s.registry_lag_ms} ms")
    if "summary_fresh" in by_rule:
        out.append(f"{who}: {by_rule['summary_fresh'].text} - its gossip does not reach us")
    return out


# -- the monitor -----------------------------------------------------------------------

_RATE_COUNTERS = (
    "packets.received", "membership.suspicion.started", "membership.refutations",
    "membership.failed",
)


def _errors(counters: Mapping[str, int]) -> int:
    return sum(v for k, v in counters.items()
               if k.startswith("packets.dropped.") or k.startswith("frames.dropped."))


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by the nearest-rank method."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class HealthMonitor:
    """Verdicts from handed-in state; bounded sample and verdict histories.

    ``samples``: counter samples kept (oldest dropped first); ``history``: verdicts kept.
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        window_s: float = 60.0,
        samples: int = 256,
        history: int = 120,
        min_packets: int = 100,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.window_s = window_s
        self.min_packets = min_packets
        """The error rate is not stated over fewer received packets (a handful of
        refused duplicates among forty packets is noise, not a verdict)."""
        self._samples: deque[tuple[float, tuple[int, ...]]] = deque(maxlen=samples)
        self.history: deque[HistoryEntry] = deque(maxlen=history)

    def observe(self, now: Now, counters: Mapping[str, int]) -> None:
        """Record a counter sample (the figures are rates between samples)."""
        values = (*(counters.get(k, 0) for k in _RATE_COUNTERS), _errors(counters))
        if self._samples and self._samples[-1][0] >= now.mono:
            self._samples[-1] = (self._samples[-1][0], values)
            return
        self._samples.append((now.mono, values))

    def figures(self, now: Now, rtt_samples: Sequence[float] = ()) -> Figures:
        """Rates over the samples within ``window_s`` of now, and RTT percentiles (ms)."""
        recent = [s for s in self._samples if now.mono - s[0] <= self.window_s]
        rates: list[float | None] = [None] * 5
        error_rate: float | None = None
        window = 0.0
        if len(recent) >= 2:
            (t0, v0), (t1, v1) = recent[0], recent[-1]
            window = t1 - t0
            if window > 0:
                deltas = [b - a for a, b in zip(v0, v1, strict=True)]
                # packets per second over the window; events per minute over at least a
                # minute (a short window must not extrapolate one suspicion to many)
                per = [window] + [max(window, self.window_s, 60.0) / 60.0] * 3 + [window]
                rates = [max(d, 0) / p for d, p in zip(deltas, per, strict=True)]
                received = deltas[0]
                if received >= self.min_packets:
                    error_rate = max(deltas[4], 0) / received
        lat = [s * 1000.0 for s in rtt_samples if s > 0]
        return Figures(
            window_s=window,
            packets_per_s=rates[0],
            error_rate=error_rate,
            suspicions_per_min=rates[1],
            refutations_per_min=rates[2],
            failures_per_min=rates[3],
            latency_ms_p50=percentile(lat, 0.5) if lat else None,
            latency_ms_p99=percentile(lat, 0.99) if lat else None,
            latency_samples=len(lat),
        )

    def assess_node(self, view: NodeView) -> NodeHealth:
        """Run every node rule on one node."""
        reasons = tuple(r for rule in NODE_RULES if (r := rule(view, self.thresholds)))
        status = max((r.status for r in reasons), default=Status.HEALTHY)
        m = view.member
        return NodeHealth(m.node_id, m.name, m.address, m.state.name.lower(), status, reasons,
                          view.summary, view.summary_age_s)

    def report(
        self,
        now: Now,
        *,
        local: NodeId,
        members: Sequence[Member],
        summaries: Mapping[NodeId, HealthSummary],
        received_at: Mapping[NodeId, float],
        counters: Mapping[str, int],
        rtt_samples: Sequence[float] = (),
    ) -> HealthReport:
        """The verdicts now. Members that left and observers are not assessed."""
        self.observe(now, counters)
        figures = self.figures(now, rtt_samples)
        nodes: list[NodeHealth] = []
        for m in members:
            if m.state is MemberState.LEFT or (m.observer and m.node_id != local):
                continue
            got = received_at.get(m.node_id)
            view = NodeView(m, summaries.get(m.node_id),
                            None if got is None else max(0.0, now.mono - got),
                            m.node_id == local, now.mono)
            nodes.append(self.assess_node(view))
        cluster = ClusterView(tuple(nodes), figures)
        reasons = tuple(r for rule in CLUSTER_RULES if (r := rule(cluster, self.thresholds)))
        status = max((r.status for r in reasons), default=Status.HEALTHY)
        recs: list[str] = []
        for n in nodes:
            recs.extend(recommend(n))
        if any(r.rule == "churn" for r in reasons) and figures.suspicions_per_min is not None:
            recs.append(f"{figures.suspicions_per_min:.1f} suspicions per minute: probes time "
                        "out often; check for packet loss or lagging nodes")
        counts = (
            sum(1 for n in nodes if n.status is Status.HEALTHY),
            sum(1 for n in nodes if n.status is Status.DEGRADED),
            sum(1 for n in nodes if n.status is Status.CRITICAL),
        )
        self.history.append(HistoryEntry(now.mono, status, counts))
        return HealthReport(status, reasons, tuple(nodes), figures, tuple(recs),
                            tuple(self.history))
