"""Membership bookkeeping of a simulated run: views, faults, detections, updates, metrics.

The world tells a :class:`MembershipTracker` about every node's lifecycle (boot, crash,
leave, pause, resume), every change of the network's cuts and clogs, every membership
event any node reports (``MemberJoined`` ... ``MemberReaped``, with its virtual time) and
every metadata update the ``membership`` workload makes. From that it keeps:

- each node's **view** as its events tell it (member id -> alive or not; a suspect member
  counts as alive, as in memberlist's ``Members()``), and a running count of how far the
  views are from the truth (the set of running non-observer nodes), so the time until the
  views agree after a heal or the start of settle is exact to the event
  (``membership.convergence_s``);
- which nodes are **excused** from ``membership.no_false_failures``: ever crashed or left,
  ever on one side of a cut or clog, or ever paused longer than the minimum suspicion
  timeout; every ``MemberFailed`` about any other node is a false positive, recorded when
  it happens (``membership.false_positives``); every ``MemberSuspect`` about one is a false
  suspicion (``membership.false_suspicions``, counted at each member that heard it, so one
  failed probe spread to N members counts N), and ``membership.false_accusations`` counts
  only those raised first-hand (the reporting member is the accuser);
- **detections** of crashes: the first suspicion anywhere (``membership.first_suspect_s``,
  reported next to SWIM's theory ``membership.first_suspect_theory_s``), the moment every
  running member that held the node alive (or suspect) when it crashed has marked it failed
  (``membership.full_detection_s``), the time from the first suspicion to that moment
  (``membership.detection_after_suspect_s``) next to the Lifeguard suspicion window
  (``membership.suspicion_timeout_min_s`` / ``_max_s``);
- the **spread** of metadata updates: when 99.99 % of the other running nodes have seen
  the new incarnation, in seconds and in gossip rounds (``membership.rounds_to_99_99``:
  seconds divided by the updater's gossip interval, so the wait for its first gossip round
  counts too).

Per event the work is O(1) plus the open updates *about that event's subject* (updates
are indexed by node); only lifecycle changes (boot, crash, leave) touch every view.

Everything is bounded: at most ``MAX_OPEN`` crash detections and metadata updates are
followed at once (the oldest is given up, counted in ``membership.detections_dropped`` /
``membership.updates_dropped``), at most ``MAX_SAMPLES`` samples per distribution are kept
(reservoir, drawn from the world's metrics generator) and at most ``MAX_VIOLATIONS``
violation texts (all are counted).
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from foundation_p2p.crypto.identity import verify_signature
from foundation_p2p.events import Event
from foundation_p2p.membership import frames as membership_frames
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.state import Member, MemberState

if TYPE_CHECKING:
    from simulator.host import Host
    from simulator.world import World

MAX_OPEN = 10_000
"""Most crash detections and metadata updates followed at once (oldest given up)."""
MAX_SAMPLES = 100_000
"""Samples kept per distribution (reservoir sampling beyond that)."""
MAX_VIOLATIONS = 100
"""Violation texts kept (every violation is counted)."""
QUIET_MIN_S = 5.0
"""Shortest final stretch of agreeing views that ``quiet_bytes_per_member_per_s`` reports."""
SPREAD_QUANTILE = 0.9999
"""An update has spread when this share of the other running nodes has seen it."""
E_FACTOR = math.e / (math.e - 1.0)
"""SWIM (Das et al. 2002, section 3.1): expected protocol periods until some member first
probes a failed one, e/(e-1) ~ 1.58."""

MAX_MEMO_SIGNATURES = 1_000_000
"""Most signature checks :func:`memoized_signature_checks` remembers (then it starts over)."""

MEMBER_EVENTS: tuple[type[Event], ...] = (
    MemberJoined, MemberUpdated, MemberSuspect, MemberAlive, MemberFailed, MemberLeft,
    MemberReaped,
)
"""The membership event classes the tracker reads."""
_LIVE_STATES = (MemberState.ALIVE, MemberState.SUSPECT)


def min_suspicion_timeout_s(config: MembershipConfig, members: int) -> float:
    """Lifeguard's minimum suspicion timeout for a cluster of ``members``:
    ``suspicion_mult * max(1, log10 N) * probe_interval_s`` (issue 4, spec/membership.md)."""
    scale = max(1.0, math.log10(max(1, members)))
    return config.suspicion_mult * scale * config.probe_interval_s


def max_suspicion_timeout_s(config: MembershipConfig, members: int) -> float:
    """The longest suspicion timeout a member can apply in a cluster of ``members``:
    ``suspicion_max_mult`` times the minimum with Lifeguard (a suspicion nobody confirms),
    the minimum itself without (classic SWIM's fixed timeout)."""
    low = min_suspicion_timeout_s(config, members)
    return config.suspicion_max_mult * low if config.lifeguard else low


def first_suspect_theory_s(config: MembershipConfig) -> float:
    """SWIM's expected time from a crash to the first suspicion of the crashed member, as
    issue 4 states it: e/(e-1) probe periods until the first probe, plus the probe timeout."""
    return E_FACTOR * config.probe_interval_s + config.probe_timeout_s


@contextlib.contextmanager
def memoized_signature_checks() -> Iterator[None]:
    """Within the block, check each distinct signed membership record's Ed25519 signature
    once per run instead of once per receiving node (``messages`` mode, for scale).

    Verification is a pure function of (public key, signature, message), so every node
    gets the answer it would have computed and the run is the same; only the CPU time of
    N nodes verifying the same announcement N times is saved (it dominated joins of
    1000 nodes). ``bytes`` mode, the production path, verifies every copy.
    Equivalent lower-level call: ``foundation_p2p.crypto.identity.verify_signature``.
    """
    original: Callable[[bytes, bytes, bytes], bool] = verify_signature
    memo: dict[tuple[bytes, bytes, bytes], bool] = {}

    def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
        key = (public_key, signature, data)
        known = memo.get(key)
        if known is None:
            if len(memo) >= MAX_MEMO_SIGNATURES:
                memo.clear()
            known = memo[key] = original(public_key, signature, data)
        return known

    # frames.py calls the name it imported, so that is the one to replace.
    membership_frames.verify_signature = verify  # type: ignore[attr-defined]
    try:
        yield
    finally:
        membership_frames.verify_signature = original  # type: ignore[attr-defined,assignment]


class Distribution:
    """Samples of one measured duration: count, sum, and a bounded reservoir for quantiles."""

    def __init__(self, rng_draw: Callable[[int], int]) -> None:
        self.count = 0
        self.total = 0.0
        self.samples: list[float] = []
        self._draw = rng_draw

    def add(self, value: float) -> None:
        """Record one sample."""
        self.count += 1
        self.total += value
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(value)
            return
        j = self._draw(self.count)
        if j < MAX_SAMPLES:
            self.samples[j] = value

    def mean(self) -> float:
        """The mean of every sample (0.0 before the first)."""
        return self.total / self.count if self.count else 0.0

    def report(self, name: str, out: dict[str, float]) -> None:
        """Add ``name_mean``, ``_p50``, ``_p99``, ``_max`` (and ``_count``) if sampled."""
        if not self.count:
            return
        ordered = sorted(self.samples)
        out[f"{name}_count"] = self.count
        out[f"{name}_mean"] = self.total / self.count
        out[f"{name}_p50"] = ordered[len(ordered) // 2]
        out[f"{name}_p99"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        out[f"{name}_max"] = ordered[-1]


@dataclass
class _Detection:
    """One crash being followed until every running member marked the node failed."""

    node: str
    crashed_at: float
    pending: set[str]
    """Running non-observer nodes that held it alive (or suspect) at the crash and have not
    yet marked it failed."""
    first_suspect_at: float | None = None


@dataclass
class _Update:
    """One metadata update being followed until it has spread."""

    node: str
    incarnation: int
    at: float
    gossip_interval_s: float
    unreached: set[str]
    reached: int = 0


@dataclass
class _View:
    """One running node's view of who is alive, as its membership events tell it."""

    alive: set[bytes] = field(default_factory=set)
    mismatch: int = 0
    """Size of the symmetric difference between ``alive`` and the expected set."""


class MembershipTracker:
    """Follows membership across one simulated run; see the module docstring."""

    def __init__(self, world: World) -> None:
        self.world = world
        draw = world._metrics_rng.randrange
        self.configs: dict[str, MembershipConfig] = {}
        self.observer: dict[str, bool] = {}
        for host in world.hosts:
            cfg = MembershipConfig.from_node_config(host.config)
            self.configs[host.name] = cfg
            self.observer[host.name] = cfg.observer
        self.lifeguard_everywhere = all(c.lifeguard for c in self.configs.values())
        self.name_of: dict[bytes, str] = {}
        self.id_of: dict[str, bytes] = {}
        # The truth: running non-observer nodes, and each running node's view.
        self.expected: set[bytes] = set()
        self.running: set[str] = set()
        """Nodes with a core (paused ones too)."""
        self.views: dict[str, _View] = {}
        """Running non-observer nodes' views."""
        self.mismatch_total = 0
        self.convergence = Distribution(draw)
        self._watch_since: float | None = None
        self._quiet_since: tuple[float, int, float] | None = None
        """(time, bytes sent, member-seconds) when the views last came to agree."""
        # Excuses for no_false_failures.
        self.excused: set[str] = set()
        self.long_paused: set[str] = set()
        self.paused_since: dict[str, float] = {}
        self._seen_cuts: set[int] = set()
        self._cut_count = 0
        self._clogs: tuple[int, int] = (0, 0)
        self.false_positives = 0
        self.false_suspicions = 0
        """MemberSuspect events about healthy members, at every member that heard them."""
        self.false_accusations = 0
        """Of those, the ones raised first-hand (the reporter is the accuser: its own probe
        failed): how often a healthy member was really suspected."""
        self.violations: list[str] = []
        # Detections and updates.
        self.detections: OrderedDict[str, _Detection] = OrderedDict()
        self.first_suspect = Distribution(draw)
        self.full_detection = Distribution(draw)
        self.detections_incomplete = 0
        self.detections_dropped = 0
        self.updates: OrderedDict[tuple[str, int], _Update] = OrderedDict()
        self._updates_about: dict[str, list[_Update]] = {}
        """Open updates by updating node (the index ``on_event`` reads)."""
        self.first_suspect_theory = Distribution(draw)
        self.after_suspect = Distribution(draw)
        self.suspicion_min = Distribution(draw)
        self.suspicion_max = Distribution(draw)
        self.update_spread_s = Distribution(draw)
        self.update_rounds = Distribution(draw)
        self.updates_started = 0
        self.updates_dropped = 0
        self.events = 0
        # Bandwidth: integral of running members over virtual time.
        self._up_count = 0
        self._up_since = 0.0
        self.member_seconds = 0.0

    # -- lifecycle -----------------------------------------------------------------------

    def _account(self) -> None:
        now = self.world.now
        self.member_seconds += self._up_count * (now - self._up_since)
        self._up_since = now

    def on_boot(self, host: Host) -> None:
        """``host`` booted a core: it joins the truth and starts an empty view."""
        core = host.core
        assert core is not None
        self._account()
        self._up_count += 1
        name = host.name
        node_id = core.node_id
        self.name_of[node_id] = name
        self.id_of[name] = node_id
        self._close_detection(name, completed=False)
        self.running.add(name)
        if not self.observer[name]:
            self._expect(node_id, True)
            view = _View(alive={node_id})
            # ``expected`` holds node_id now: the view misses everyone else, adds nobody.
            view.mismatch = len(self.expected) - 1
            self.views[name] = view
            self.mismatch_total += view.mismatch
        self._converged_maybe()

    def on_down(self, host: Host, why: str) -> None:
        """``host`` crashed (``why="crash"``) or left gracefully (``"leave"``)."""
        name = host.name
        self._account()
        self._up_count -= 1
        self.excused.add(name)
        self._end_pause(name)
        self.running.discard(name)
        view = self.views.pop(name, None)
        if view is not None:
            self.mismatch_total -= view.mismatch
        node_id = self.id_of.get(name)
        for det in list(self.detections.values()):
            det.pending.discard(name)
            self._detection_done_maybe(det)
        for upd in list(self.updates.values()):
            if name in upd.unreached:
                upd.unreached.discard(name)
                self._update_done_maybe(upd)
        if node_id is None or self.observer[name]:
            self._converged_maybe()
            return
        self._expect(node_id, False)
        if why == "crash":
            if len(self.detections) >= MAX_OPEN:
                self.detections.popitem(last=False)
                self.detections_dropped += 1
            # Only members that hold it alive can mark it failed: one that never heard of
            # it, or already holds it failed, has nothing left to detect.
            pending = {n for n, v in self.views.items() if node_id in v.alive}
            det = _Detection(name, self.world.now, pending)
            self.detections[name] = det
            cfg = self.configs[name]
            members = max(1, len(self.expected))
            self.first_suspect_theory.add(first_suspect_theory_s(cfg))
            self.suspicion_min.add(min_suspicion_timeout_s(cfg, members))
            self.suspicion_max.add(max_suspicion_timeout_s(cfg, members))
            self._detection_done_maybe(det)
        self._converged_maybe()

    def on_pause(self, host: Host) -> None:
        """``host`` stopped running (it stays up)."""
        self.paused_since[host.name] = self.world.now

    def on_resume(self, host: Host) -> None:
        """``host`` runs again: a pause longer than the minimum suspicion timeout excuses it."""
        self._end_pause(host.name)

    def _end_pause(self, name: str) -> None:
        since = self.paused_since.pop(name, None)
        if since is not None and self.world.now - since > self._min_timeout(name):
            self.long_paused.add(name)

    def _min_timeout(self, name: str) -> float:
        return min_suspicion_timeout_s(self.configs[name], max(1, len(self.expected)))

    def _expect(self, node_id: bytes, present: bool) -> None:
        """Add or remove a node from the truth, updating every view's mismatch."""
        if (node_id in self.expected) == present:
            return
        if present:
            self.expected.add(node_id)
        else:
            self.expected.discard(node_id)
        delta = 0
        for view in self.views.values():
            step = -1 if (node_id in view.alive) == present else 1
            view.mismatch += step
            delta += step
        self.mismatch_total += delta

    # -- the network ---------------------------------------------------------------------

    def on_network_change(self) -> None:
        """Look at the cuts and clogs now: excuse every node a new one separates, and start
        timing convergence when one was lifted."""
        world = self.world
        cuts = world.partitions.cuts
        net = world.network
        clogs = (sum(net.clogged_nodes.values()), sum(net.clogged_links.values()))
        lifted = len(cuts) < self._cut_count or clogs[0] < self._clogs[0] or (
            clogs[1] < self._clogs[1]
        )
        if cuts:
            names = [h.name for h in world.hosts]
            for cut in cuts:
                if cut.token in self._seen_cuts:
                    continue
                self._seen_cuts.add(cut.token)
                for a in names:
                    if a in self.excused:
                        continue
                    for b in names:
                        if a != b and (cut.blocks(a, b) or cut.blocks(b, a)):
                            self.excused.add(a)
                            break
        if net.clogged_nodes:
            # A clogged node is cut from everyone, so everyone is cut from it.
            self.excused.update(h.name for h in world.hosts)
        for src, dst in net.clogged_links:
            self.excused.update((src, dst))
        self._cut_count = len(cuts)
        self._clogs = clogs
        if lifted:
            self.watch_convergence()

    def watch_convergence(self, *, heal: bool = True) -> None:
        """Start timing how long the views take to agree: at a heal (views that already
        agree give a sample of 0) or at the start of settle (only if they disagree then)."""
        if self._watch_since is not None:
            return
        if self.mismatch_total == 0:
            if heal:
                self.convergence.add(0.0)
            return
        self._watch_since = self.world.now

    def _converged_maybe(self) -> None:
        """After any change of the views or the truth: end a convergence watch when they
        agree, and mark where the latest quiet stretch (views in agreement) began."""
        if self.mismatch_total != 0:
            self._quiet_since = None
            return
        if self._quiet_since is None:
            self._account()
            self._quiet_since = (self.world.now, self.world.bytes_sent, self.member_seconds)
        if self._watch_since is not None:
            self.convergence.add(self.world.now - self._watch_since)
            self._watch_since = None

    # -- events --------------------------------------------------------------------------

    def on_event(self, host: Host, ev: Event) -> None:
        """One membership event ``host`` reported now."""
        kind = type(ev)
        if kind not in MEMBER_EVENTS:
            return
        self.events += 1
        name = host.name
        if kind is MemberReaped:
            node_id: bytes = ev.node_id  # type: ignore[attr-defined]
            self._set_view(name, node_id, False)
            return
        member: Member = ev.member  # type: ignore[attr-defined]
        node_id = member.node_id
        subject = self.name_of.get(node_id)
        if not member.observer:
            self._set_view(name, node_id, member.state in _LIVE_STATES)
        if subject is None or subject == name:
            return
        if kind is MemberSuspect or kind is MemberFailed:
            det = self.detections.get(subject)
            if det is not None and det.first_suspect_at is None:
                det.first_suspect_at = self.world.now
                self.first_suspect.add(self.world.now - det.crashed_at)
            if not self._is_excused(subject):
                if kind is MemberSuspect:
                    self.false_suspicions += 1
                    if ev.accuser == self.id_of.get(name):  # type: ignore[attr-defined]
                        self.false_accusations += 1
                else:
                    self._false_failure(name, subject)
            if kind is MemberFailed and det is not None:
                det.pending.discard(name)
                self._detection_done_maybe(det)
        about = self._updates_about.get(subject)
        if about:
            for upd in list(about):
                if member.incarnation >= upd.incarnation and name in upd.unreached:
                    upd.unreached.discard(name)
                    upd.reached += 1
                    self._update_done_maybe(upd)

    def _set_view(self, name: str, node_id: bytes, alive: bool) -> None:
        view = self.views.get(name)
        if view is None or (node_id in view.alive) == alive:
            return
        if alive:
            view.alive.add(node_id)
        else:
            view.alive.discard(node_id)
        step = -1 if (node_id in self.expected) == alive else 1
        view.mismatch += step
        self.mismatch_total += step
        self._converged_maybe()

    def _is_excused(self, subject: str) -> bool:
        if subject in self.excused or subject in self.long_paused:
            return True
        since = self.paused_since.get(subject)
        return since is not None and self.world.now - since > self._min_timeout(subject)

    def _false_failure(self, accuser: str, subject: str) -> None:
        self.on_network_change()  # a clog the nemesis did not announce (swizzle) excuses too
        if self._is_excused(subject):
            return
        self.false_positives += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(
                f"{accuser} declared {subject} failed at t={self.world.now:.3f}s"
            )

    # -- detections and updates ----------------------------------------------------------

    def _detection_done_maybe(self, det: _Detection) -> None:
        if det.pending or self.detections.get(det.node) is not det:
            return
        del self.detections[det.node]
        self.full_detection.add(self.world.now - det.crashed_at)
        if det.first_suspect_at is not None:
            self.after_suspect.add(self.world.now - det.first_suspect_at)

    def _close_detection(self, name: str, *, completed: bool) -> None:
        det = self.detections.pop(name, None)
        if det is not None and not completed:
            self.detections_incomplete += 1

    def on_update(self, host: Host, incarnation: int) -> None:
        """``host`` just updated its metadata, now at ``incarnation``."""
        self.updates_started += 1
        if len(self.updates) >= MAX_OPEN:
            _, oldest = self.updates.popitem(last=False)
            self._unindex(oldest)
            self.updates_dropped += 1
        others = {n for n in self.running if n != host.name}
        upd = _Update(
            host.name, incarnation, self.world.now,
            self.configs[host.name].gossip_interval_s, others,
        )
        old = self.updates.pop((host.name, incarnation), None)
        if old is not None:
            self._unindex(old)
        self.updates[(host.name, incarnation)] = upd
        self._updates_about.setdefault(host.name, []).append(upd)
        self._update_done_maybe(upd)

    def _unindex(self, upd: _Update) -> None:
        about = self._updates_about.get(upd.node)
        if about is None:
            return
        with contextlib.suppress(ValueError):
            about.remove(upd)
        if not about:
            del self._updates_about[upd.node]

    def _update_done_maybe(self, upd: _Update) -> None:
        total = upd.reached + len(upd.unreached)
        allowed = math.floor(total * (1.0 - SPREAD_QUANTILE) + 1e-9)
        if len(upd.unreached) > allowed:
            return
        key = (upd.node, upd.incarnation)
        if self.updates.get(key) is not upd:
            return
        del self.updates[key]
        self._unindex(upd)
        spread = self.world.now - upd.at
        self.update_spread_s.add(spread)
        self.update_rounds.add(spread / upd.gossip_interval_s)

    # -- checks --------------------------------------------------------------------------

    def check_converged(self) -> tuple[bool, str]:
        """Every running non-observer node's ``members()`` lists exactly the running
        non-observer nodes as alive (or suspect), and its events told it the same."""
        world = self.world
        expected = {
            h.core.node_id for h in world.hosts
            if h.core is not None and not self.observer[h.name]
        }
        bad: list[str] = []
        checked = 0
        for host in world.hosts:
            core = host.core
            if core is None or not host.is_live or self.observer[host.name]:
                continue
            checked += 1
            seen = {
                m.node_id for m in core.membership.members()
                if not m.observer and m.state in _LIVE_STATES
            }
            if seen != expected:
                bad.append(
                    f"{host.name} misses {self._names(expected - seen)}, "
                    f"has {self._names(seen - expected)}"
                )
                continue
            view = self.views.get(host.name)
            if view is not None and view.alive != expected:
                missed = self._names(expected - view.alive)
                added = self._names(view.alive - expected)
                bad.append(
                    f"{host.name}'s events disagree with members(): events miss {missed}, "
                    f"add {added}"
                )
        if bad:
            return False, f"{len(bad)} of {checked} views differ from the truth: " + "; ".join(
                bad[:5]
            )
        return True, f"all {checked} running members see the same {len(expected)} alive"

    def _names(self, ids: set[bytes]) -> str:
        names = sorted(self.name_of.get(i, i.hex()[:8]) for i in ids)
        if not names:
            return "nobody"
        more = f" (+{len(names) - 8})" if len(names) > 8 else ""
        return "[" + ", ".join(names[:8]) + "]" + more

    def check_no_false_failures(self) -> tuple[bool, str]:
        """No member that was never crashed, cut off, or paused long was declared failed."""
        if self.false_positives:
            return False, (
                f"{self.false_positives} failure declarations about healthy members, first: "
                + "; ".join(self.violations[:3])
            )
        return True, (
            f"no healthy member declared failed ({len(self.excused | self.long_paused)} "
            "nodes excused by crash, leave, cut or long pause)"
        )

    # -- metrics -------------------------------------------------------------------------

    def metrics(self, bytes_sent: int | None) -> dict[str, float]:
        """The ``membership.*`` metrics of the run (only the ones that were measured)."""
        self._account()
        out: dict[str, float] = {
            "membership.events": self.events,
            "membership.false_positives": self.false_positives,
            "membership.false_suspicions": self.false_suspicions,
            "membership.false_accusations": self.false_accusations,
        }
        self.first_suspect.report("membership.first_suspect_s", out)
        if self.first_suspect_theory.count:
            # Constants of the crashed members' configs (their mean if configs differ).
            out["membership.first_suspect_theory_s"] = self.first_suspect_theory.mean()
            out["membership.suspicion_timeout_min_s"] = self.suspicion_min.mean()
            out["membership.suspicion_timeout_max_s"] = self.suspicion_max.mean()
        self.full_detection.report("membership.full_detection_s", out)
        self.after_suspect.report("membership.detection_after_suspect_s", out)
        self.convergence.report("membership.convergence_s", out)
        self.update_spread_s.report("membership.update_spread_s", out)
        self.update_rounds.report("membership.rounds_to_99_99", out)
        open_detections = len(self.detections)
        if self.full_detection.count or self.detections_incomplete or open_detections:
            out["membership.detections_incomplete"] = self.detections_incomplete + open_detections
        if self.updates_started:
            out["membership.updates"] = self.updates_started
            out["membership.updates_unfinished"] = len(self.updates) + self.updates_dropped
        if self.detections_dropped:
            out["membership.detections_dropped"] = self.detections_dropped
        if bytes_sent is not None and self.member_seconds > 0:
            out["membership.bytes_per_member_per_s"] = bytes_sent / self.member_seconds
            quiet = self._quiet_since
            if quiet is not None and self.world.now - quiet[0] >= QUIET_MIN_S:
                spent = self.member_seconds - quiet[2]
                if spent > 0:
                    out["membership.quiet_bytes_per_member_per_s"] = (
                        bytes_sent - quiet[1]
                    ) / spent
        return out


__all__ = [
    "MEMBER_EVENTS",
    "Distribution",
    "MembershipTracker",
    "first_suspect_theory_s",
    "max_suspicion_timeout_s",
    "memoized_signature_checks",
    "min_suspicion_timeout_s",
]
