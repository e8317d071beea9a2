"""``HealthGossip``: the health-summary gossip, a NodeCore subsystem (spec/health.md §3).

Every node spreads its own :class:`~foundation_p2p.health.summary.HealthSummary` and
relays the summaries it hears, so that any node holds every member's latest summary and
can report the whole cluster's health without a round trip.

- **Frame** ``[49, summary]`` (frame type 49, the first of the numbers spec/wire.md
  leaves to later capabilities such as health; 24..47 stay membership's). A summary is
  newer than another of its node when its ``(epoch, version)`` is larger; the version is
  this subsystem's own counter, never the SWIM incarnation.
- **Rounds**: every ``interval_s`` (the first one ``interval_s`` after :meth:`start`,
  none once membership is leaving) the node samples its figures (the ``sample`` callable
  handed in, typically :class:`SummarySampler`), publishes a new version when they changed
  significantly (:func:`significant_change`) or ``refresh_s`` passed, and sends to
  ``fanout`` random alive members (and to
  ``observer_fanout`` random alive observers, so that an observer such as the ``health``
  CLI learns every node's own summary within a round) one packet's worth
  of frames: its own summary first, then the relayed summaries with transmissions left,
  least transmitted first, at most ``max_frames_per_round`` frames in all.
- **Relaying**: a summary newer than the one held is stored and relayed in
  ``ceil(retransmit_mult * log2(N + 1) / fanout)`` more rounds (N: the table's size), so
  about ``retransmit_mult * log2(N + 1)`` transmissions as SWIM's updates; an older one
  is counted (``health.gossip.stale``) and dropped; the same one received first-hand
  (from the node it describes) only refreshes its arrival time
  (``health.gossip.refreshed``): the monitor's staleness rule reads that time. A
  summary about ourselves from someone else is ignored (``health.gossip.about_self``).
- **Bounded table**: at most ``max_nodes`` summaries. When full, a summary of a new node
  replaces the entry of a node membership does not know as alive or suspect, else the
  least recently received one (``health.table.evicted``). Entries of members that left,
  and of nodes membership has not known for ``forget_after_s``, are forgotten at the next
  round (``health.table.forgotten``).

The subsystem never reads a clock; ``rng`` must be its own (derived by the wiring, so that
adding it does not shift the draws of other subsystems).
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from foundation_p2p.addresses import Address, NodeId, short_id
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError
from foundation_p2p.events import Command, Event
from foundation_p2p.health.summary import FIELD_LIMITS, HealthSummary
from foundation_p2p.membership.state import Member, MemberState
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.wire.frames import Frame, expect_frame, register_frame
from foundation_p2p.wire.limits import WireLimits

log = logging.getLogger("foundation_p2p.health")

SUMMARY_FRAME_TYPE = 49
"""The health-summary gossip frame (spec/health.md, spec/wire.md frame table)."""


@register_frame
@dataclass(slots=True)
class SummaryFrame:
    """``[49, summary]``: one node's health summary, first-hand or relayed."""

    TYPE: ClassVar[int] = SUMMARY_FRAME_TYPE
    summary: HealthSummary

    def to_cbor(self) -> list[Any]:
        return [self.TYPE, self.summary.to_cbor()]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        expect_frame(items, cls.TYPE, "health summary frame", 2, 2)
        return cls(HealthSummary.from_cbor(items[1]))


@dataclass(frozen=True, slots=True)
class HealthGossipConfig:
    """Settings of :class:`HealthGossip` (see the module docstring)."""

    interval_s: float = 1.0
    fanout: int = 3
    refresh_s: float = 30.0
    max_nodes: int = 1024
    max_frames_per_round: int = 16
    retransmit_mult: float = 3.0
    forget_after_s: float = 60.0
    observer_fanout: int = 1

    def __post_init__(self) -> None:
        if not self.interval_s > 0 or not self.refresh_s > 0 or self.forget_after_s < 0:
            raise ConfigError("health gossip: interval_s and refresh_s must be > 0")
        if self.observer_fanout < 0:
            raise ConfigError("health gossip: observer_fanout must be >= 0")
        if self.fanout < 1 or self.max_nodes < 1 or self.max_frames_per_round < 1:
            raise ConfigError(
                "health gossip: fanout, max_nodes and max_frames_per_round must be >= 1"
            )
        if self.retransmit_mult < 0:
            raise ConfigError("health gossip: retransmit_mult must be >= 0")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> HealthGossipConfig:
        """Build from the ``[health]`` table of ``config.extra``; an unknown key, or a
        value of the wrong type, is a ``ConfigError`` naming it."""
        if not isinstance(table, Mapping):
            raise ConfigError("[health]: must be a table")
        kinds = {"fanout": int, "max_nodes": int, "max_frames_per_round": int,
                 "observer_fanout": int}
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key not in cls.__dataclass_fields__:
                raise ConfigError(f"[health]: unknown key {key!r}")
            want = kinds.get(key, float)
            if type(value) is bool or not isinstance(value, int if want is int else (int, float)):
                raise ConfigError(f"[health]: {key} must be a number, got {value!r}")
            out[key] = want(value)
        return cls(**out)


class _Entry:
    __slots__ = ("received_mono", "sends_left", "summary", "unknown_since")

    def __init__(self, summary: HealthSummary, received_mono: float, sends_left: int) -> None:
        self.summary = summary
        self.received_mono = received_mono
        self.sends_left = sends_left
        self.unknown_since: float | None = None


Sample = Callable[[Now], Mapping[str, int]]
"""Returns the node's current figures by name (keys of ``FIELD_LIMITS``; others refused)."""


class HealthGossip:
    """The health-summary gossip subsystem; see the module docstring."""

    frame_types: tuple[int, ...] = (SUMMARY_FRAME_TYPE,)

    def __init__(
        self,
        membership: SwimMembership,
        *,
        epoch: int,
        rng: random.Random,
        counters: Counters,
        sample: Sample | None = None,
        config: HealthGossipConfig | None = None,
    ) -> None:
        self.config = config or HealthGossipConfig()
        self.membership = membership
        self.node_id: NodeId = membership.node_id
        self.epoch = epoch
        self.rng = rng
        self.counters = counters
        self.sample = sample
        self.version = 0
        """Our own summaries' counter (bumped at each publication)."""
        self._table: dict[NodeId, _Entry] = {}
        self._out: list[tuple[Address | NodeId, Frame]] = []
        self._next_round: float | None = None
        self._published_mono = -math.inf
        self._figures: dict[str, int] | None = None

    # -- reading -----------------------------------------------------------------------

    def summaries(self) -> dict[NodeId, HealthSummary]:
        """The latest summary of every node held (ours included once published)."""
        return {k: e.summary for k, e in self._table.items()}

    def received_at(self, node_id: NodeId) -> float | None:
        """When (monotonic) the held summary of ``node_id`` arrived (ours: published)."""
        e = self._table.get(node_id)
        return None if e is None else e.received_mono

    def own(self) -> HealthSummary | None:
        """Our latest published summary."""
        e = self._table.get(self.node_id)
        return None if e is None else e.summary

    # -- publishing --------------------------------------------------------------------

    def publish(self, now: Now, figures: Mapping[str, int]) -> HealthSummary:
        """Publish a new version of our summary with ``figures`` (clamped to their bounds).

        ``ConfigError`` for a name that is not a summary figure. Arms the rounds.
        """
        unknown = sorted(set(figures) - set(FIELD_LIMITS))
        if unknown:
            raise ConfigError(f"health summary: unknown figures {unknown}")
        self.version += 1
        summary = HealthSummary(
            self.node_id, self.epoch, self.version, **{k: int(v) for k, v in figures.items()}
        ).clamped()
        self._figures = dict(summary.figures())
        self._published_mono = now.mono
        self._table[self.node_id] = _Entry(summary, now.mono, 0)
        self.counters.inc("health.published")
        if self._next_round is None:
            self._next_round = now.mono
        return summary

    def start(self, now: Now) -> None:
        """Arm the rounds: the first samples (and publishes) one ``interval_s`` after
        ``now`` (not at once: a booting node's first datagrams wait for its boot writes)."""
        if self._next_round is None:
            self._next_round = now.mono + self.config.interval_s

    # -- Subsystem protocol ------------------------------------------------------------

    def handle_message(self, now: Now, sender: NodeId, addr: Address, frame: Frame) -> None:
        """A summary frame: keep it if newer than the one held, and relay it."""
        if not isinstance(frame, SummaryFrame):
            return
        s = frame.summary
        counters = self.counters
        counters.inc("health.gossip.received")
        if s.node_id == self.node_id:
            counters.inc("health.gossip.about_self")
            return
        held = self._table.get(s.node_id)
        if held is not None and not s.newer_than(held.summary):
            if sender == s.node_id and s == held.summary:
                # first-hand and unchanged: the node is still there and still says so
                held.received_mono = now.mono
                counters.inc("health.gossip.refreshed")
            else:
                counters.inc("health.gossip.stale")
            return
        if held is None and len(self._table) >= self.config.max_nodes:
            self._evict()
        sends = self._retransmits()
        if held is None:
            self._table[s.node_id] = _Entry(s, now.mono, sends)
        else:
            held.summary, held.received_mono, held.sends_left = s, now.mono, sends
            held.unknown_since = None
        counters.inc("health.gossip.accepted")
        if self._next_round is None:
            self._next_round = now.mono + self.config.interval_s

    def handle_timer(self, now: Now) -> None:
        """A round: sample and maybe publish, forget departed nodes, send to ``fanout``."""
        if self._next_round is None or now.mono < self._next_round:
            return
        if self.membership.leaving:  # a leaving node says nothing more about itself
            self._next_round = None
            return
        cfg = self.config
        self._next_round = now.mono + cfg.interval_s
        if self.sample is not None:
            figures = dict(self.sample(now))
            clamped = {k: min(max(int(v), 0), FIELD_LIMITS.get(k, 0)) for k, v in figures.items()}
            if significant_change(self._figures, clamped) \
                    or now.mono - self._published_mono >= cfg.refresh_s:
                self.publish(now, figures)
        self._forget(now)
        frames = self._round_frames()
        if not frames:
            return
        peers: list[Member] = []
        observers: list[Member] = []
        for m in self.membership.members():
            if m.state is MemberState.ALIVE and m.node_id != self.node_id:
                (observers if m.observer else peers).append(m)
        targets = self.rng.sample(peers, min(cfg.fanout, len(peers))) if peers else []
        if observers and cfg.observer_fanout:
            targets += self.rng.sample(observers, min(cfg.observer_fanout, len(observers)))
        if not targets:
            return
        for m in targets:
            for f in frames:
                self._out.append((m.address, f))
        self.counters.inc("health.gossip.sent", len(frames) * len(targets))

    def handle_command(self, now: Now, cmd: Command) -> bool:
        """No commands: health is read with :meth:`summaries`."""
        return False

    def next_deadline(self) -> float | None:
        """The next round (None until something was published or heard, and once the
        node is leaving)."""
        if self.membership.leaving:
            return None
        return self._next_round

    def take_outgoing(self) -> list[tuple[Address | NodeId, Frame]]:
        """Frames to send (each round's frames to each chosen member)."""
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        """No events (the monitor reads the table)."""
        return []

    # -- internals ---------------------------------------------------------------------

    def _retransmits(self) -> int:
        """Rounds a fresh summary is relayed: ``retransmit_mult * log2(N + 1)``
        transmissions in all, ``fanout`` per round."""
        cfg = self.config
        n = max(len(self._table), 1)
        return max(1, math.ceil(cfg.retransmit_mult * math.log2(n + 1) / cfg.fanout))

    def _round_frames(self) -> list[Frame]:
        frames: list[Frame] = []
        own = self._table.get(self.node_id)
        if own is not None:
            frames.append(SummaryFrame(own.summary))
        room = self.config.max_frames_per_round - len(frames)
        relay = [e for k, e in self._table.items() if e.sends_left > 0 and k != self.node_id]
        if relay and room > 0:
            relay.sort(key=lambda e: (-e.sends_left, e.summary.node_id))
            for e in relay[:room]:
                e.sends_left -= 1
                frames.append(SummaryFrame(e.summary))
        return frames

    def _evict(self) -> None:
        membership = self.membership
        victim: NodeId | None = None
        oldest = math.inf
        for k, e in self._table.items():
            if k == self.node_id:
                continue
            m = membership.member(k)
            if m is None or m.state not in (MemberState.ALIVE, MemberState.SUSPECT):
                victim = k
                break
            if e.received_mono < oldest:
                oldest, victim = e.received_mono, k
        if victim is not None:
            del self._table[victim]
            self.counters.inc("health.table.evicted")
            log.debug("health table full: evicted %s", short_id(victim))

    def _forget(self, now: Now) -> None:
        membership = self.membership
        gone: list[NodeId] = []
        for k, e in self._table.items():
            if k == self.node_id:
                continue
            m = membership.member(k)
            if m is not None and m.state is MemberState.LEFT:
                gone.append(k)
            elif m is None:
                if e.unknown_since is None:
                    e.unknown_since = now.mono
                elif now.mono - e.unknown_since >= self.config.forget_after_s:
                    gone.append(k)
            else:
                e.unknown_since = None
        for k in gone:
            del self._table[k]
        if gone:
            self.counters.inc("health.table.forgotten", len(gone))


SIGNIFICANT: dict[str, tuple[int, float]] = {
    "loop_lag_ms": (50, 0.5),
    "drop_permille": (10, 0.5),
    "retransmit_permille": (10, 0.5),
    "queue_depth": (100, 0.5),
    "raft_lag": (10, 0.5),
    "registry_lag_ms": (1000, 0.5),
    "rss_kib": (16384, 0.25),
    "cpu_permille": (100, 0.5),
}
"""Per figure, ``(absolute, relative)``: a change counts when it exceeds both (figures
not listed, such as the awareness score and the Raft role, count at any change)."""


def significant_change(old: Mapping[str, int] | None, new: Mapping[str, int]) -> bool:
    """True if ``new`` differs from ``old`` enough to publish a new version: every
    published version is relayed through the whole cluster, so jitter (a few ms of loop
    lag, a few KiB of memory) waits for the next ``refresh_s`` instead."""
    if old is None:
        return True
    for name in set(old) | set(new):
        a, b = old.get(name, 0), new.get(name, 0)
        if a == b:
            continue
        tol = SIGNIFICANT.get(name)
        if tol is None:
            return True
        absolute, relative = tol
        if abs(a - b) > absolute and abs(a - b) > relative * max(a, b):
            return True
    return False


class SummarySampler:
    """Computes a node's summary figures at each round (the ``sample`` of HealthGossip).

    - ``awareness`` / ``awareness_max``: the membership's Lifeguard score and its bound;
    - ``drop_permille``: packets dropped (counters ``packets.dropped.*``) per 1000 received
      (``packets.received``) over the last ``window_s`` of samples;
    - ``retransmit_permille``: connection packets declared lost
      (``transport.conn.recovery.packets_lost``) per 1000 sent
      (``transport.conn.recovery.packets_sent``) over the same window (both summed over
      live connections, so a closing connection can make the delta negative: floored at 0);

    Rates are taken over a window, not between two rounds: a node receives a few packets
    per second, and one duplicate among six made a healthy node "drop 16 %". A rate over
    fewer than ``min_packets`` packets is not stated (0): three duplicates among forty
    packets say nothing about the node. The window holds at most ``max_samples`` samples
    (the oldest is dropped first).
    - everything else from ``extra()`` (event-loop lag, queue depths, Raft, registry,
      resources: what the driver and the other subsystems know), when given.

    ``counters()`` returns the node's counters (e.g. ``{**core.counters,
    **core.transport.stats()}``).
    """

    def __init__(
        self,
        membership: SwimMembership,
        counters: Callable[[], Mapping[str, int]],
        extra: Callable[[], Mapping[str, int]] | None = None,
        *,
        window_s: float = 60.0,
        max_samples: int = 128,
        min_packets: int = 100,
    ) -> None:
        self.membership = membership
        self.counters = counters
        self.extra = extra
        self.window_s = window_s
        self.min_packets = min_packets
        self._samples: deque[tuple[float, int, int, int, int]] = deque(maxlen=max_samples)

    def __call__(self, now: Now) -> dict[str, int]:
        c = self.counters()
        received = c.get("packets.received", 0)
        dropped = sum(v for k, v in c.items() if k.startswith("packets.dropped."))
        sent = c.get("transport.conn.recovery.packets_sent", 0)
        lost = c.get("transport.conn.recovery.packets_lost", 0)
        samples = self._samples
        while len(samples) > 1 and now.mono - samples[1][0] >= self.window_s:
            samples.popleft()
        drop_pm = retx_pm = 0
        if samples:
            _, r0, d0, s0, l0 = samples[0]
            if received - r0 >= self.min_packets:
                drop_pm = _permille(dropped - d0, received - r0)
            if sent - s0 >= self.min_packets:
                retx_pm = _permille(lost - l0, sent - s0)
        samples.append((now.mono, received, dropped, sent, lost))
        m = self.membership
        out = {
            "awareness": m.awareness,
            "awareness_max": m.config.awareness_max,
            "drop_permille": drop_pm,
            "retransmit_permille": retx_pm,
        }
        if self.extra is not None:
            out.update(self.extra())
        return out


def _permille(part: int, whole: int) -> int:
    if whole <= 0 or part <= 0:
        return 0
    return min(1000, (1000 * part) // whole)
