"""The ``health.verdicts`` invariant: every node's health monitor checked against the truth.

The simulator knows what no node can: which node is paused, crashed or cut off from which,
since when, and what the virtual network did to every datagram. ``health.verdicts``
(a safety checker, so checked after every fault and once per virtual second) asks every
running node for its report (``core.health.report(now)``, the same call ``node.health``
makes over real UDP) and holds it to that truth. A scenario turns it on by naming it in
``[check] invariants`` (it needs the ``membership`` workload, which makes the nodes join).

**Verdicts.** For each running, unpaused node ``o`` (the observer) and each other booted,
non-observer node ``s`` that has not left, the pair is

- *bad* while ``s`` is down, paused, or cut off from ``o`` (not in ``o``'s connected
  component of running, unpaused nodes whose links are open both ways: partitions,
  isolations and clogs), since the moment that became true;
- *good* while ``s`` and ``o`` are up, unpaused, not slow, in one component;
- neither while ``s`` or ``o`` is slow (the ``slow`` op: a slow node may or may not be
  suspected), or while some node is unreachable from some other: a node that cannot
  reach everyone rightly reports it in its own figures (Lifeguard's awareness score rises
  with each failed probe), so its health owes nothing until the cluster is whole again.

and the invariant holds when

1. a pair bad for ``detect`` seconds shows ``s`` degraded or critical in ``o``'s report,
   with the reason of the ``member_state`` rule ("suspected by membership ..." /
   "missing: declared failed ...");
2. a pair bad for ``missing`` seconds shows ``s`` failed, and ``o``'s cluster reasons name
   it among the missing members;
3. a pair good for ``healthy`` seconds shows ``s`` healthy and alive; when every pair of
   ``o`` is, ``o``'s cluster status is healthy (or degraded by the churn rule alone,
   within a monitor window of a recovery: after a heal the accusations made across the
   cut arrive and are refuted, and those suspicions are real).

The bounds come from ``o``'s own configuration (``[node.membership]``, ``[node.health]``),
with N the cluster size:

- ``detect = DETECT_PROBE_PERIODS x probe_interval_s`` ("within a few probe periods": the
  observer's own round-robin reaches every member within N - 1 periods, the others'
  probes and their gossip usually sooner, then the probe and indirect probes take one);
  multiplied by ``ceil(unreachable / reachable)`` when the observer's side of a cut has
  fewer nodes than the members it lost (each side's probers share the work), and doubled
  when at least half of the members it probes are unreachable (Lifeguard's awareness
  score then climbs with each failed probe, stretching the probe interval up to
  ``awareness_max + 1`` times: a 3/3 split took up to 9 s, a 12/12 split of 24 nodes up
  to 14 s, against 8 probe periods);
- ``missing = detect + suspicion_max_s(N)`` (Lifeguard's longest suspicion timeout);
- ``healthy = min(dead_retry_max_interval_s, B + dead_retry_interval_s) + detect +
  HEALTHY_ROUNDS x health interval_s``, where B is how long the pair was last not good
  (a member declared failed is found again by the dead-member retries, whose gap doubles
  up to ``dead_retry_max_interval_s``; then its summary must arrive); plus, when ``s``
  ran with at least half of the members it probes unreachable during that stretch (an
  isolated node, either side of an even split), the time its Lifeguard awareness score
  takes to fall from the maximum below the monitor's degraded line, one successful
  probe per (score + 1) probe periods (35 s with the lan profile): until then its own
  summary rightly says it probes at several times the interval; plus the health gossip's
  ``refresh_s`` when B was long enough for ``s``'s summary to go stale at ``o``
  (``summary_stale_s - refresh_s``): the next refresh renews it.

**Figures.** A :class:`NetworkTap` records, independently of the nodes, every datagram the
virtual network routes: when it arrives where, whether it is a duplicate, and each
link's one-way delay. Whenever a monitor's counter window spans at least
``FIGURE_MIN_WINDOW_S`` during which its node was up, unpaused and not slow, its figures
are compared with the tap's over the same window (the monitor samples its counters at
each report, and this checker makes every report, so the windows coincide):

- ``packets_per_s`` with the datagrams that arrived at the node, within
  ``PACKET_RATE_TOLERANCE`` (relative) or two datagrams over the window;
- ``error_rate`` (``bytes`` mode: duplicates are refused by the replay window) with the
  share of arrivals that were duplicates, within ``ERROR_RATE_TOLERANCE`` (absolute) plus
  two datagrams' worth;
- ``suspicions_per_min`` (a count when the window is under a minute) with the bad
  episodes of the node's pairs that began inside the window (no episode starting within
  ``detect`` of either edge), within ``SUSPICION_TOLERANCE`` (an episode shorter than
  ``detect`` may or may not have raised one); on a lossless network
  every suspicion has a cause. In a window holding a recovery (a heal, a resume) the
  count may be higher, not lower: the accusations made across a cut reach the other
  side after the heal, and their subjects refute them;
- ``latency_ms_p50`` (when the monitor has RTT samples) with the median over the node's
  peers of the tap's mean one-way delay there plus back, within
  ``LATENCY_TOLERANCE`` (relative) + 1 ms.

Losses make SWIM suspect healthy members now and then (a real suspicion, which the
monitor rightly reports), so the verdict scenarios run on a lossless network; the figure
checks of suspicions only apply when ``[network] loss`` is 0.

The detail names what was seen: detection, missing and recovery times (worst and count),
and measured vs monitor figures. Everything is bounded: at most ``MAX_IN_FLIGHT``
datagrams are followed in flight (beyond that the tap stops and the figure checks say
so), ``MAX_EPISODES`` episode starts per pair, ``MAX_VIOLATIONS`` violation texts.
"""

from __future__ import annotations

import heapq
import math
import statistics
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from foundation_p2p.health.monitor import HealthReport, NodeHealth, Status

if TYPE_CHECKING:
    from simulator.host import Host
    from simulator.world import World

DETECT_PROBE_PERIODS = 8
"""A bad pair must be reported degraded within this many of the observer's probe periods."""
HEALTHY_ROUNDS = 3
"""Health gossip rounds allowed for a recovered node's summary to arrive."""
FIGURE_MIN_WINDOW_S = 20.0
"""Figures are compared only over monitor windows at least this long."""
PACKET_RATE_TOLERANCE = 0.05
ERROR_RATE_TOLERANCE = 0.01
SUSPICION_TOLERANCE = 0
LATENCY_TOLERANCE = 0.3
MAX_IN_FLIGHT = 1_000_000
MAX_EPISODES = 1000
MAX_VIOLATIONS = 20
INF = float("inf")
MAX_RECORDS = 256
"""Per-host tap records kept (one per sample; a monitor window spans at most 61)."""

BAD = "bad"
GOOD = "good"
UNKNOWN = "unknown"


class NetworkTap:
    """What the virtual network does to each datagram, counted apart from the nodes.

    It wraps ``world.network.route`` (the network's decision per datagram: dropped, or
    arriving at a time, maybe twice) and keeps, per destination, the datagrams arrived by
    now and how many of them were duplicates, and per directed link the summed one-way
    delay. Arrivals in the future wait in a heap of at most ``MAX_IN_FLIGHT`` entries; when
    it is full the tap stops counting (``overflowed``) rather than grow.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.arrived: dict[str, int] = {}
        self.duplicates: dict[str, int] = {}
        self.delay_sum: dict[tuple[str, str], float] = {}
        self.delay_count: dict[tuple[str, str], int] = {}
        self.overflowed = False
        self._pending: list[tuple[float, int, str, bool]] = []
        self._seq = 0
        network = world.network
        original = network.route

        def route(t: float, src: str, dst: str, size: int) -> tuple[str | None, float, float]:
            reason, arrival, dup = original(t, src, dst, size)
            if reason is None:
                self._note(src, dst, t, arrival, dup)
            return reason, arrival, dup

        network.route = route  # type: ignore[method-assign]

    def _note(self, src: str, dst: str, t: float, arrival: float, dup: float) -> None:
        if self.overflowed:
            return
        if len(self._pending) + 2 > MAX_IN_FLIGHT:
            self.overflowed = True
            self._pending.clear()
            return
        key = (src, dst)
        self.delay_sum[key] = self.delay_sum.get(key, 0.0) + (arrival - t)
        self.delay_count[key] = self.delay_count.get(key, 0) + 1
        self._seq += 1
        heapq.heappush(self._pending, (arrival, self._seq, dst, False))
        if dup >= 0.0:
            self._seq += 1
            heapq.heappush(self._pending, (dup, self._seq, dst, True))

    def advance(self, now: float) -> None:
        """Count every datagram whose arrival time is not after ``now``."""
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, _, dst, dup = heapq.heappop(pending)
            self.arrived[dst] = self.arrived.get(dst, 0) + 1
            if dup:
                self.duplicates[dst] = self.duplicates.get(dst, 0) + 1

    def rtt_s(self, a: str, b: str) -> float | None:
        """Mean one-way delay ``a -> b`` plus ``b -> a`` (seconds), if both were seen."""
        n1 = self.delay_count.get((a, b), 0)
        n2 = self.delay_count.get((b, a), 0)
        if not n1 or not n2:
            return None
        return self.delay_sum[(a, b)] / n1 + self.delay_sum[(b, a)] / n2


@dataclass
class _Pair:
    """The truth about one (observer, subject) pair and what the observer said."""

    state: str
    since: float
    cause: str
    last_bad_s: float = 0.0
    """How long the pair was not good before it last became good."""
    left_good: float = 0.0
    """When the pair last stopped being good."""
    detected: bool = False
    missing: bool = False
    recovered: bool = False
    episodes: deque[list[float]] = field(default_factory=lambda: deque(maxlen=MAX_EPISODES))
    """``[start, end]`` of each bad episode (``end`` is infinite while it lasts)."""


@dataclass
class _Stats:
    """What the judge saw, for the detail line."""

    samples: int = 0
    detect_s: list[float] = field(default_factory=list)
    missing_s: list[float] = field(default_factory=list)
    recover_s: list[float] = field(default_factory=list)
    figure_checks: int = 0
    packet_rates: list[tuple[float, float]] = field(default_factory=list)
    error_rates: list[tuple[float, float]] = field(default_factory=list)
    suspicions: list[tuple[float, int]] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    no_latency: int = 0

    def keep(self, values: list[tuple[float, float]] | list[tuple[float, int]]) -> None:
        """Bound a comparison list (keep the first 10000)."""
        del values[10_000:]


@dataclass
class _Bounds:
    detect_s: float
    missing_s: float
    retry_s: float
    retry_max_s: float
    rounds_s: float
    stale_s: float = 75.0
    refresh_s: float = 30.0

    def scaled(self, factor: int) -> _Bounds:
        """The bounds when each prober has ``factor`` unreachable members to find."""
        if factor == 1:
            return self
        detect = self.detect_s * factor
        return _Bounds(detect, self.missing_s - self.detect_s + detect, self.retry_s,
                       self.retry_max_s, self.rounds_s, self.stale_s, self.refresh_s)

    def healthy_s(self, last_bad_s: float) -> float:
        return (min(self.retry_max_s, last_bad_s + self.retry_s) + self.detect_s
                + self.rounds_s)


class HealthJudge:
    """The state of ``health.verdicts`` for one world (see the module docstring)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.tap = NetworkTap(world)
        self.pairs: dict[tuple[str, str], _Pair] = {}
        self.violations: list[str] = []
        self.violation_count = 0
        self.stats = _Stats()
        self.last_sample = -1.0
        self.boot_of: dict[str, int] = {}
        self.quiet_since: dict[str, float] = {}
        """Since when each host has been up, unpaused and not slow (its current core)."""
        self.records: dict[str, deque[tuple[float, int, int]]] = {}
        """Per host: (time, arrived, duplicates) at each sample of its current core."""
        scenario = world.scenario
        self.lossless = (
            scenario.network.loss == 0
            and not any(f.op == "loss" for f in scenario.faults)
            and not any(getattr(link, "loss", None) for link in scenario.network.links)
            and not (world.random_faults and "loss" in scenario.random_faults.ops)
        )
        self.bytes_mode = not world.messages_mode
        self._bounds: dict[str, _Bounds] = {}
        self.probes_failing: dict[str, float] = {}
        """When each node last ran with at least half of the members it probes
        unreachable (its Lifeguard awareness score climbs then)."""
        self.recoveries: deque[float] = deque(maxlen=MAX_EPISODES)
        """When some pair stopped being bad (a heal, a resume, a restart)."""

    # -- truth ---------------------------------------------------------------------------

    def _bounds_of(self, host: Host) -> _Bounds:
        b = self._bounds.get(host.name)
        if b is None:
            core = host.core
            assert core is not None
            m = core.membership.config
            detect = DETECT_PROBE_PERIODS * m.probe_interval_s
            b = _Bounds(
                detect_s=detect,
                missing_s=detect + m.suspicion_max_s(len(self.world.hosts)),
                retry_s=m.dead_retry_interval_s,
                retry_max_s=m.dead_retry_max_interval_s,
                rounds_s=HEALTHY_ROUNDS * core.health.gossip.config.interval_s,
                stale_s=core.health.monitor.thresholds.summary_stale_s,
                refresh_s=core.health.gossip.config.refresh_s,
            )
            self._bounds[host.name] = b
        return b

    def _components(self, hosts: list[Host]) -> dict[str, int]:
        """Connected components of running, unpaused nodes over links open both ways."""
        net = self.world.network
        parent = {h.name: h.name for h in hosts}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        cut = bool(self.world.partitions.cuts) or bool(net.clogged_nodes or net.clogged_links)
        names = [h.name for h in hosts]
        if not cut:
            return {n: 0 for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if find(a) == find(b):
                    continue
                if (net.blocked(a, b) or net.blocked(b, a) or net.clogged(a, b) is not None
                        or net.clogged(b, a) is not None):
                    continue
                parent[find(a)] = find(b)
        roots: dict[str, int] = {}
        return {n: roots.setdefault(find(n), len(roots)) for n in names}

    def _truth(self, o: Host, s: Host, comp: dict[str, int], whole: bool) -> tuple[str, str]:
        if s.core is None:
            return BAD, "down"
        if s.paused:
            return BAD, "paused"
        if comp.get(s.name) != comp.get(o.name):
            return BAD, "cut off"
        if s.slow is not None or o.slow is not None:
            return UNKNOWN, "slow"
        if not whole:
            # s's own figures (Lifeguard awareness after failed probes) rightly show that
            # it cannot reach somebody: no verdict is owed until the cluster is whole
            return UNKNOWN, "reachable, but the cluster is not whole"
        return GOOD, "reachable"

    # -- sampling ------------------------------------------------------------------------

    def sample(self) -> None:
        """Ask every running node for its report and judge it (once per virtual instant)."""
        world = self.world
        now = world.now
        if now <= self.last_sample:
            return
        self.last_sample = now
        self.stats.samples += 1
        self.tap.advance(now)
        tracked = [h for h in world.hosts if h.boots > 0 and h.status != "left"]
        for h in tracked:
            if h.core is None or h.paused or h.slow is not None:
                self.quiet_since.pop(h.name, None)
            elif self.boot_of.get(h.name) != h.boots or h.name not in self.quiet_since:
                if self.boot_of.get(h.name) != h.boots:
                    self.records.pop(h.name, None)
                    for key in [k for k in self.pairs if k[0] == h.name]:
                        del self.pairs[key]
                self.boot_of[h.name] = h.boots
                self.quiet_since[h.name] = now
        running = [h for h in tracked if h.core is not None and not h.paused]
        comp = self._components(running)
        observer = world.membership.observer
        whole = len(running) == len(tracked) and len(set(comp.values())) <= 1 and all(
            h.slow is None for h in running)
        members = [h for h in tracked if not observer.get(h.name, False)]
        for h in running:
            if h.slow is None and not observer.get(h.name, False) and len(members) > 1:
                lost = sum(1 for x in members if x is not h and (
                    x.core is None or x.paused or comp.get(x.name) != comp.get(h.name)))
                if 2 * lost >= len(members) - 1:
                    self.probes_failing[h.name] = now
        for o in running:
            if o.slow is not None:
                continue
            core = o.core
            assert core is not None
            report = core.health.report(o.clock.now(now))
            rec = self.records.setdefault(o.name, deque(maxlen=MAX_RECORDS))
            rec.append((now, self.tap.arrived.get(o.name, 0), self.tap.duplicates.get(o.name, 0)))
            truths = [(s, *self._truth(o, s, comp, whole)) for s in tracked
                      if s is not o and not observer.get(s.name, False)]
            lost = sum(1 for _, state, _ in truths if state == BAD)
            side = sum(1 for h in running if comp.get(h.name) == comp.get(o.name))
            share = max(1, math.ceil(lost / max(1, side)))
            lifeguard = 2 if lost and 2 * lost >= lost + side - 1 else 1
            bounds = self._bounds_of(o).scaled(share * lifeguard)
            all_good = True
            for s, state, cause in truths:
                pair = self._pair(o, s, state, cause, now)
                if not self._judge_pair(o, s, pair, report, bounds, now):
                    all_good = False
            # a heal makes suspicions (accusations made across the cut arrive, and are
            # refuted): the churn rule may speak for a monitor window after one
            churn_ok = any(now - t <= core.health.monitor.window_s for t in self.recoveries)
            if all_good and report.status is not Status.HEALTHY and not (
                    churn_ok and all(r.rule == "churn" for r in report.reasons)):
                self._violate(
                    f"t={now:.3f}s: {o.name}'s cluster status is {report.status.label} "
                    f"({'; '.join(r.text for r in report.reasons)}) though every node has "
                    "been reachable long enough"
                )
            self._figures(o, report, bounds, now)

    def _pair(self, o: Host, s: Host, state: str, cause: str, now: float) -> _Pair:
        key = (o.name, s.name)
        pair = self.pairs.get(key)
        if pair is None:
            # first sight (the observer's boot): a bad pair counts from now, a good one from
            # the observer's boot (it has to join)
            pair = _Pair(state, now if state != GOOD else self.quiet_since.get(o.name, now),
                         cause, left_good=now)
            self.pairs[key] = pair
            if state == BAD:
                pair.episodes.append([now, INF])
            return pair
        if pair.state != state or pair.cause != cause:
            if pair.state == GOOD:
                pair.left_good = now
            if state == GOOD:
                # the healthy bound counts the whole stretch the pair was not good
                pair.last_bad_s = now - pair.left_good
            if state == BAD and pair.state != BAD:
                pair.episodes.append([now, INF])
                pair.detected = pair.missing = False
            if pair.state == BAD and state != BAD:
                if pair.episodes:
                    pair.episodes[-1][1] = now
                if not self.recoveries or self.recoveries[-1] != now:
                    self.recoveries.append(now)
            if not (state == BAD and pair.state == BAD):
                pair.since = now  # still bad for another cause: the episode goes on
            pair.state = state
            pair.cause = cause
            pair.recovered = False
        return pair

    def _judge_pair(self, o: Host, s: Host, pair: _Pair, report: HealthReport,
                    bounds: _Bounds, now: float) -> bool:
        """Check one pair; True when it is good and past its healthy bound."""
        node = report.node(s.name)
        elapsed = now - pair.since
        if pair.state == BAD:
            noticed = node is not None and node.status >= Status.DEGRADED and any(
                r.rule == "member_state" for r in node.reasons)
            if noticed and not pair.detected:
                pair.detected = True
                self.stats.detect_s.append(elapsed)
            if elapsed >= bounds.detect_s and not noticed:
                self._violate(
                    f"t={now:.3f}s: {o.name} reports {s.name} {_said(node)} {elapsed:.1f} s "
                    f"after it was {pair.cause} (bound {bounds.detect_s:g} s: degraded or "
                    "worse, with the member_state reason)"
                )
            missing = node is not None and node.state == "failed" and any(
                r.rule == "missing_members" and s.name in _names(r.text)
                for r in report.reasons)
            if missing and not pair.missing:
                pair.missing = True
                self.stats.missing_s.append(elapsed)
            if elapsed >= bounds.missing_s and not missing:
                self._violate(
                    f"t={now:.3f}s: {o.name} does not report {s.name} missing "
                    f"{elapsed:.1f} s after it was {pair.cause} (bound {bounds.missing_s:g} s); "
                    f"it says {_said(node)}; cluster: "
                    f"{'; '.join(r.text for r in report.reasons) or 'no reasons'}"
                )
            return False
        if pair.state != GOOD:
            return False
        healthy = (node is not None and node.status is Status.HEALTHY
                   and node.state == "alive")
        if healthy and not pair.recovered:
            pair.recovered = True
            if pair.last_bad_s > 0:
                self.stats.recover_s.append(elapsed)
        bound = bounds.healthy_s(pair.last_bad_s)
        if self.probes_failing.get(s.name, -1.0) >= pair.left_good:
            bound += self._awareness_recovery_s(s)
        if pair.last_bad_s >= bounds.stale_s - bounds.refresh_s:
            # s's summary may have gone stale at o meanwhile: the next refresh renews it
            bound += bounds.refresh_s
        if elapsed < bound:
            return False
        if not healthy:
            self._violate(
                f"t={now:.3f}s: {o.name} reports {s.name} {_said(node)} though it has been "
                f"reachable for {elapsed:.1f} s (bound {bound:g} s)"
            )
        return True

    def _awareness_recovery_s(self, host: Host) -> float:
        """How long ``host``'s Lifeguard awareness score takes to fall from its maximum
        below the monitor's degraded line, one successful probe per (score + 1) probe
        periods: the time its own figures rightly say "probing at Nx interval"."""
        core = host.core
        if core is None:
            return 0.0
        m = core.membership.config
        line = core.health.monitor.thresholds.awareness_fraction[0] * m.awareness_max
        return sum((a + 1) * m.probe_interval_s
                   for a in range(m.awareness_max, 0, -1) if a >= line)

    # -- figures -------------------------------------------------------------------------

    def _figures(self, o: Host, report: HealthReport, bounds: _Bounds, now: float) -> None:
        fig = report.figures
        window = fig.window_s
        quiet = self.quiet_since.get(o.name)
        if window < FIGURE_MIN_WINDOW_S or quiet is None or now - window < quiet:
            return
        if self.tap.overflowed:
            return
        start = now - window
        rec = self.records.get(o.name)
        first = next((r for r in rec or () if abs(r[0] - start) < 1e-9), None)
        if first is None or rec is None:
            return
        last = rec[-1]
        arrived = last[1] - first[1]
        dups = last[2] - first[2]
        st = self.stats
        st.figure_checks += 1
        truth_rate = arrived / window
        if fig.packets_per_s is not None:
            st.packet_rates.append((fig.packets_per_s, truth_rate))
            st.keep(st.packet_rates)
            if abs(fig.packets_per_s - truth_rate) > max(
                    PACKET_RATE_TOLERANCE * truth_rate, 2.0 / window):
                self._violate(
                    f"t={now:.3f}s: {o.name}'s monitor counts {fig.packets_per_s:.2f} "
                    f"packets/s over {window:.0f} s; the network delivered {truth_rate:.2f}/s"
                )
        core = o.core
        assert core is not None
        if fig.error_rate is None and arrived >= core.health.monitor.min_packets:
            self._violate(
                f"t={now:.3f}s: {o.name}'s monitor states no error rate though {arrived} "
                f"datagrams reached it over {window:.0f} s"
            )
        elif self.bytes_mode and fig.error_rate is not None and arrived > 0:
            truth_err = dups / arrived
            got = fig.error_rate
            st.error_rates.append((got, truth_err))
            st.keep(st.error_rates)
            if abs(got - truth_err) > ERROR_RATE_TOLERANCE + 2.0 / arrived:
                self._violate(
                    f"t={now:.3f}s: {o.name}'s monitor reports an error rate of "
                    f"{got * 100:.2f}% over {window:.0f} s; {dups} of the {arrived} datagrams "
                    f"that reached it were duplicates ({truth_err * 100:.2f}%)"
                )
        if self.lossless and fig.suspicions_per_min is not None:
            self._suspicions(o, fig.suspicions_per_min, start, now, bounds, window)
        if fig.latency_ms_p50 is None:
            st.no_latency += 1
        else:
            self._latency(o, fig.latency_ms_p50, now)

    def _suspicions(self, o: Host, rate: float, start: float, now: float, bounds: _Bounds,
                    window: float) -> None:
        count = rate * max(window, 60.0) / 60.0
        edge = bounds.detect_s
        truth = ambiguous = 0
        for (a, _s), pair in self.pairs.items():
            if a != o.name:
                continue
            for t, end in pair.episodes:
                if start - edge <= t <= start or now - edge <= t <= now:
                    return  # an episode at an edge: its suspicion may fall either side
                if start < t < now:
                    if min(end, now) - t >= edge:
                        truth += 1
                    else:
                        ambiguous += 1  # too short to owe a suspicion, may have had one
        # after a heal the two sides' accusations meet: a member may be suspected for an
        # accusation made across the cut, and refutes it (no new unreachability). So the
        # count must equal the truth in windows without a recovery, and not fall short of
        # it in the others.
        healed = any(start - edge <= t <= now for t in self.recoveries)
        self.stats.suspicions.append((count, truth))
        self.stats.keep(self.stats.suspicions)
        if count + 1e-9 < truth - SUSPICION_TOLERANCE or (
                not healed and count - 1e-9 > truth + ambiguous + SUSPICION_TOLERANCE):
            self._violate(
                f"t={now:.3f}s: {o.name}'s monitor counts {count:.0f} suspicions over the last "
                f"{window:.0f} s; {truth} members became unreachable from it then"
                + (" (a heal in the window allows more, not fewer)" if healed else "")
            )

    def _latency(self, o: Host, p50_ms: float, now: float) -> None:
        core = o.core
        assert core is not None
        names = {m.node_id: m.name for m in core.membership.members()}
        rtts = []
        for node_id, name in names.items():
            if node_id == core.node_id:
                continue
            rtt = self.tap.rtt_s(o.name, name)
            if rtt is not None:
                rtts.append(rtt * 1000.0)
        if not rtts:
            return
        truth = statistics.median(rtts)
        self.stats.latencies.append((p50_ms, truth))
        self.stats.keep(self.stats.latencies)
        if abs(p50_ms - truth) > LATENCY_TOLERANCE * truth + 1.0:
            self._violate(
                f"t={now:.3f}s: {o.name}'s monitor reports a median latency of "
                f"{p50_ms:.2f} ms; the network's round trips to its peers have a median "
                f"of {truth:.2f} ms"
            )

    # -- outcome -------------------------------------------------------------------------

    def _violate(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(text)

    def detail(self) -> str:
        """What was seen: the first violation, or the timings and figures compared."""
        st = self.stats
        parts = [f"{st.samples} samples"]
        for label, values in (("degraded after", st.detect_s), ("missing after", st.missing_s),
                              ("healthy again after", st.recover_s)):
            if values:
                parts.append(f"{label} max {max(values):.1f} s (n={len(values)})")
        if st.packet_rates:
            worst = max(abs(a - b) / b if b else 0.0 for a, b in st.packet_rates)
            parts.append(f"packets/s within {worst * 100:.1f}% (n={len(st.packet_rates)})")
        if st.error_rates:
            worst = max(abs(a - b) for a, b in st.error_rates)
            mean_m = statistics.fmean(a for a, _ in st.error_rates)
            mean_t = statistics.fmean(b for _, b in st.error_rates)
            parts.append(f"error rate monitor {mean_m * 100:.2f}% vs measured "
                         f"{mean_t * 100:.2f}% (worst {worst * 100:.2f} pp)")
        if st.suspicions:
            parts.append("suspicions monitor/measured "
                         f"{sum(a for a, _ in st.suspicions):.0f}/"
                         f"{sum(b for _, b in st.suspicions)} (n={len(st.suspicions)})")
        if st.latencies:
            worst = max(abs(a - b) for a, b in st.latencies)
            parts.append(f"latency p50 monitor {statistics.fmean(a for a, _ in st.latencies):.2f}"
                         f" ms vs measured {statistics.fmean(b for _, b in st.latencies):.2f} ms"
                         f" (worst {worst:.2f} ms)")
        elif st.no_latency:
            parts.append("latency: the monitors had no RTT sample")
        if self.tap.overflowed:
            parts.append(f"the tap stopped: over {MAX_IN_FLIGHT} datagrams in flight")
        text = "; ".join(parts)
        if self.violations:
            return f"{self.violation_count} violations, first: {self.violations[0]} ({text})"
        return text


def _said(node: NodeHealth | None) -> str:
    if node is None:
        return "nowhere (not in its report)"
    reasons = "; ".join(r.text for r in node.reasons) or "no reasons"
    return f"{node.status.label} ({node.state}: {reasons})"


def _names(text: str) -> list[str]:
    """The node names of a ``missing_members`` reason ("2 of 5 members missing: n4, n5")."""
    _, _, tail = text.partition(": ")
    return [n.strip() for n in tail.split(",")]


_JUDGES: weakref.WeakKeyDictionary[World, HealthJudge] = weakref.WeakKeyDictionary()


def judge_of(world: World) -> HealthJudge:
    """The world's judge (made at the first check, which installs the network tap)."""
    judge = _JUDGES.get(world)
    if judge is None:
        judge = HealthJudge(world)
        _JUDGES[world] = judge
    return judge


def _check(world: World) -> tuple[bool, str]:
    judge = judge_of(world)
    judge.sample()
    return not judge.violations, judge.detail()


def _applies(world: World) -> bool:
    # only where named in [check] invariants: it asks every node for a report every
    # virtual second, and most scenarios' faults (loss, crashes) are not its subject
    return False


def register_health() -> None:
    """Register ``health.verdicts`` in :mod:`simulator.checkers` (idempotent)."""
    from simulator.checkers import CHECKERS, SAFETY, Checker, register

    if "health.verdicts" not in CHECKERS:
        register(Checker(
            "health.verdicts", SAFETY,
            "every node's health report matches the truth: unreachable nodes degraded then "
            "missing, reachable ones healthy, figures as the network measured",
            _applies, _check,
        ))

