"""The ``broadcast`` workload: publishers send checked messages over the nodes' channels.

Parameters (``[[workload]] kind = "broadcast"``; every one optional, each error names its
key):

- ``publishers``: node names (a list) or a count (the first N nodes); default 1.
- ``subscribers``: node names or a count (the last N nodes); default every node.
- ``channels``: the channels the small messages go out on, round robin (default
  ``["control"]``; each is also the topic, so a message rides the channel of its name).
- ``interval``: each publisher sends one small message every ``interval`` (default
  ``"100ms"``), of ``small_bytes`` bytes of body (default 64), from ``start`` (default
  ``"3s"``, time for the joins and the topic-set gossip) until ``until`` (default: the start
  of ``[check] settle``, or the end of the run).
- ``big_bytes`` (default 0: none), ``big_at`` (a duration or a list of them) and
  ``big_channel`` (default ``"data"``): each publisher sends one message of ``big_bytes``
  bytes of body at each ``big_at``.
- ``join_grace``: a subscriber is expected to get a message only if it booted at least
  this long before it was sent (default ``"2s"``: its topic set must have been gossiped).
- ``fault_grace`` (default ``"2s"``): see the excuses of ``channels.delivered_intact``.

Every message is the CBOR array ``[publisher name, seq, blake2b-128(body), sent_at, body]``
(``seq`` counts that publisher's messages, over all channels; ``sent_at`` is the virtual
time). At each boot a node joins the cluster through the seeds (like the ``membership``
workload) and a subscriber subscribes to every channel used; after every ``World.pump`` of
a node the workload drains its subscriptions (``Subscription.take()``), so a delivery's
time is the virtual time the data was read. Equivalent lower-level calls:
``core.channels.subscribe(topic)``, ``core.channels.broadcast(now, topic, message)``,
``core.take_transport_events(now)``.

Invariants (see :mod:`simulator.checkers`):

- ``channels.delivered_intact`` (liveness, at the end): every delivered body matches its
  digest, no message reaches a subscriber twice, and every message was delivered to every
  *expected* subscriber. Expected: every subscriber other than the publisher that was up at
  the send and had booted at least ``join_grace`` before it, except when the publisher or
  the subscriber is *excused*: either was down (crashed, left, restarting) or paused, or
  an active cut (partition, isolation, one-way cut) or clog separated the two (either
  way), at any moment from ``fault_grace`` before the send to the end of the run
  (seen every :data:`POLL_S` of virtual time, at every boot and at the final check; the
  grace covers a connection that broke just before the send and is being re-dialled).
- ``channels.ordered`` (safety): per subscriber boot, publisher and channel, the ``seq`` of
  the deliveries only grows.

Metrics: ``channels.sent``, ``channels.delivered``, ``channels.expected``,
``channels.missing``, ``channels.duplicates``, ``channels.corrupt``, ``channels.out_of_order``,
``channels.control_latency_s_{count,mean,p50,p99,max}`` (send to delivery of messages on
``control``), ``channels.control_latency_during_data_s_*`` (the same, for control
messages sent while a big message was still on its way to some expected subscriber),
``channels.data_transfer_s_*`` and ``channels.data_throughput_bytes_per_s``
(big messages: body bytes delivered over the summed send-to-delivery times) and
``transport.retransmits`` (stream bytes sent again: the nodes' ``transport.conn.retransmits``
over all boots, live connections included).

Bounds: at most :data:`MAX_TRACKED` messages are followed (later ones are sent but not
followed, counted in ``channels.untracked``); at most :data:`MAX_VIOLATIONS` violation
texts are kept (all are counted).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from foundation_p2p.addresses import Address
from foundation_p2p.channels.core import Subscription
from foundation_p2p.channels.names import CHANNELS_BY_NAME
from foundation_p2p.events import Join
from simulator.durations import parse_duration
from simulator.membership import Distribution
from simulator.model import WorkloadSpec

if TYPE_CHECKING:
    from simulator.host import Host
    from simulator.world import World

MAX_TRACKED = 200_000
"""Most messages followed per run (later ones are counted in ``channels.untracked``)."""
MAX_VIOLATIONS = 20
"""Violation texts kept (every violation is counted)."""
MAX_SMALL_BYTES = 65_536
MAX_BIG_BYTES = 64 * 1024 * 1024 - 1024
"""Below the channels' 64 MiB message bound, leaving room for the envelope."""

_KEYS = (
    "publishers", "subscribers", "channels", "interval", "small_bytes", "start", "until",
    "big_bytes", "big_at", "big_channel", "join_grace", "fault_grace",
)
POLL_S = 0.05
"""How often the workload looks for disturbed nodes (down, paused, cut off, clogged)."""


def body_digest(body: bytes) -> bytes:
    """The 16-byte BLAKE2b digest a message carries of its body."""
    return hashlib.blake2b(body, digest_size=16).digest()


@dataclass
class _Sent:
    """One message being followed."""

    channel: str
    at: float
    size: int
    expected: tuple[str, ...]
    during_data: bool
    """A big message was still on its way to some subscriber when this one was sent."""
    got: dict[str, int] = field(default_factory=dict)
    """Subscriber name -> deliveries."""


def _err(key: str, problem: str) -> ValueError:
    return ValueError(f"workload broadcast: {key}: {problem}")


def _duration(params: dict[str, Any], key: str, default: str | None) -> float | None:
    raw = params.get(key, default)
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise _err(key, str(exc)) from None


def _int(params: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    raw = params.get(key, default)
    if type(raw) is not int or not low <= raw <= high:
        raise _err(key, f"must be an integer from {low} to {high}, got {raw!r}")
    return raw


def _nodes(params: dict[str, Any], key: str) -> list[str] | int | None:
    raw = params.get(key)
    if raw is None:
        return None
    if type(raw) is int:
        if raw < 1:
            raise _err(key, f"a count must be at least 1, got {raw}")
        return raw
    if isinstance(raw, list) and raw and all(isinstance(n, str) for n in raw):
        if len(set(raw)) != len(raw):
            raise _err(key, f"names a node twice: {raw!r}")
        return list(raw)
    raise _err(key, f"must be a count or a non-empty list of node names, got {raw!r}")


def _channel(raw: Any, key: str) -> str:
    if not isinstance(raw, str) or raw not in CHANNELS_BY_NAME:
        raise _err(key, f"{raw!r} is not a channel (channels: {', '.join(CHANNELS_BY_NAME)})")
    return raw


class BroadcastWorkload:
    """Publishers send digest-carrying messages on a virtual-time schedule; subscribers'
    deliveries are checked (see the module docstring)."""

    kind = "broadcast"

    def __init__(self, spec: WorkloadSpec) -> None:
        p = spec.params
        unknown = sorted(set(p) - set(_KEYS))
        if unknown:
            raise _err(unknown[0], f"unknown key (keys: {', '.join(_KEYS)})")
        self._publishers_param = _nodes(p, "publishers")
        self._subscribers_param = _nodes(p, "subscribers")
        raw_channels = p.get("channels", ["control"])
        if not isinstance(raw_channels, list) or not raw_channels:
            raise _err("channels", f"must be a non-empty list of channels, got {raw_channels!r}")
        self.channels = [_channel(c, f"channels[{i}]") for i, c in enumerate(raw_channels)]
        interval = _duration(p, "interval", "100ms")
        assert interval is not None
        if interval <= 0:
            raise _err("interval", "must be longer than zero")
        self.interval_s = interval
        self.small_bytes = _int(p, "small_bytes", 64, 0, MAX_SMALL_BYTES)
        start = _duration(p, "start", "3s")
        assert start is not None
        self.start_s = start
        self.until_s = _duration(p, "until", None)
        self.big_bytes = _int(p, "big_bytes", 0, 0, MAX_BIG_BYTES)
        raw_at = p.get("big_at", [])
        at_list = raw_at if isinstance(raw_at, list) else [raw_at]
        self.big_at: list[float] = []
        for i, item in enumerate(at_list):
            try:
                self.big_at.append(parse_duration(item))
            except ValueError as exc:
                raise _err(f"big_at[{i}]" if isinstance(raw_at, list) else "big_at",
                           str(exc)) from None
        if self.big_at and not self.big_bytes:
            raise _err("big_at", "needs big_bytes (the size of the big messages)")
        if self.big_bytes and not self.big_at:
            raise _err("big_bytes", "needs big_at (when to send the big messages)")
        self.big_channel = _channel(p.get("big_channel", "data"), "big_channel")
        grace = _duration(p, "join_grace", "2s")
        assert grace is not None
        self.join_grace_s = grace
        fault_grace = _duration(p, "fault_grace", "2s")
        assert fault_grace is not None
        self.fault_grace_s = fault_grace
        self.disturbed_at: dict[str, float] = {}
        """Node -> the last virtual time it was seen down, paused, cut off or clogged."""
        self.pair_disturbed_at: dict[tuple[str, str], float] = {}
        """(publisher, subscriber) -> the last virtual time a cut or clog separated them."""
        self._cut_pairs: dict[int, tuple[tuple[str, str], ...]] = {}
        self.topics = sorted(set(self.channels) | ({self.big_channel} if self.big_at else set()))
        # Set at the start.
        self.publishers: list[str] = []
        self.subscribers: list[str] = []
        self.seeds: tuple[Address, ...] = ()
        self.world: World | None = None
        # Bookkeeping.
        self.seq: dict[str, int] = {}
        self.ticks: dict[str, int] = {}
        self.booted_at: dict[str, float] = {}
        self.subs: dict[str, list[Subscription]] = {}
        self.boot_no: dict[str, int] = {}
        self.sent: dict[tuple[str, int], _Sent] = {}
        self.last_seq: dict[tuple[str, int, str, str], int] = {}
        """(subscriber, its boot, publisher, channel) -> the last seq delivered."""
        self.counts: dict[str, int] = {
            k: 0 for k in ("sent", "delivered", "duplicates", "corrupt", "out_of_order",
                           "untracked", "unexpected")
        }
        self.violations: list[str] = []
        self.order_violations: list[str] = []
        self.control_latency: Distribution | None = None
        self.data_transfer: Distribution | None = None
        self.control_during_data: Distribution | None = None
        self.big_open = 0
        """Big messages' expected deliveries not made yet."""
        self.data_bytes = 0
        self.data_seconds = 0.0

    # -- the workload protocol -----------------------------------------------------------

    def on_start(self, world: World) -> None:
        self.world = world
        names = list(world.scenario.cluster.names)
        self.publishers = self._resolve(self._publishers_param, names, "publishers", first=True)
        self.subscribers = self._resolve(
            self._subscribers_param, names, "subscribers", first=False
        )
        cluster = world.scenario.cluster
        seeds = cluster.seeds or cluster.names[: min(3, cluster.nodes)]
        self.seeds = tuple(world.host(n).addr for n in seeds)
        draw = world._metrics_rng.randrange
        self.control_latency = Distribution(draw)
        self.data_transfer = Distribution(draw)
        self.control_during_data = Distribution(draw)
        world.pump_hooks.append(self._drain)
        world.schedule(0.0, self._poll)
        for name in self.publishers:
            self.seq[name] = 0
            self.ticks[name] = 0
            world.schedule(self.start_s, self._tick, name)
            for at in self.big_at:
                world.schedule(at, self._send_big, name)

    def on_boot(self, world: World, host: Host) -> None:
        targets = tuple(a for a in self.seeds if a != host.addr)
        world.command(host, Join(targets))
        self.booted_at[host.name] = world.now
        self.disturbed_at[host.name] = world.now  # it was down until now
        self.boot_no[host.name] = host.boots
        core = host.core
        if core is None or host.name not in self.subscribers:
            return
        try:
            self.subs[host.name] = [core.channels.subscribe(t) for t in self.topics]
        except Exception:
            world._fail(host, "channels.subscribe")
        world.pump(host)

    # -- faults --------------------------------------------------------------------------

    def _poll(self, _: Any = None) -> None:
        world = self.world
        assert world is not None
        self.note_disturbed(world)
        world.schedule(world.now + POLL_S, self._poll)

    def note_disturbed(self, world: World) -> None:
        """Mark, at the current virtual time, every node that is down or paused, and every
        (publisher, subscriber) pair an active cut or clog separates (either way)."""
        now = world.now
        out = self.disturbed_at
        for h in world.hosts:
            if h.core is None or h.paused:
                out[h.name] = now
        pairs = self.pair_disturbed_at
        cuts = world.partitions.cuts
        for cut in cuts:
            touched = self._cut_pairs.get(cut.token)
            if touched is None:
                touched = tuple(
                    (p, s) for p in self.publishers for s in self.subscribers
                    if p != s and (cut.blocks(p, s) or cut.blocks(s, p))
                )
                if len(self._cut_pairs) > 1000:
                    self._cut_pairs.clear()
                self._cut_pairs[cut.token] = touched
            for pair in touched:
                pairs[pair] = now
        net = world.network
        clogged = {node for node, n in net.clogged_nodes.items() if n > 0}
        links = {link for link, n in net.clogged_links.items() if n > 0}
        if clogged or links:
            for p in self.publishers:
                for s in self.subscribers:
                    if p in clogged or s in clogged or (p, s) in links or (s, p) in links:
                        pairs[(p, s)] = now

    # -- publishing ----------------------------------------------------------------------

    def _resolve(
        self, param: list[str] | int | None, names: list[str], key: str, *, first: bool
    ) -> list[str]:
        if param is None:
            return names[:1] if first else list(names)
        if isinstance(param, int):
            if param > len(names):
                raise _err(key, f"{param} nodes asked, the cluster has {len(names)}")
            return names[:param] if first else names[len(names) - param:]
        for n in param:
            if n not in names:
                raise _err(key, f"no node named {n!r} in the cluster")
        return list(param)

    def _until(self, world: World) -> float:
        if self.until_s is not None:
            return self.until_s
        return world.settle_at if world.scenario.check.settle_s > 0 else world.duration

    def _tick(self, name: str) -> None:
        world = self.world
        assert world is not None
        if world.now >= self._until(world):
            return
        n = self.ticks[name] = self.ticks[name] + 1
        # start + n * interval, not a running sum (no drift of the schedule)
        world.schedule(self.start_s + n * self.interval_s, self._tick, name)
        channel = self.channels[self.seq[name] % len(self.channels)]
        self._publish(world, name, channel, world.rng.randbytes(self.small_bytes))

    def _send_big(self, name: str) -> None:
        world = self.world
        assert world is not None
        self._publish(world, name, self.big_channel, world.rng.randbytes(self.big_bytes))

    def _publish(self, world: World, name: str, channel: str, body: bytes) -> None:
        host = world.host(name)
        core = host.core
        if core is None or not host.is_live:
            return
        seq = self.seq[name]
        self.seq[name] = seq + 1
        now = world.now
        message = [name, seq, body_digest(body), now, body]
        self.counts["sent"] += 1
        if len(self.sent) < MAX_TRACKED:
            expected = tuple(
                s for s in self.subscribers
                if s != name
                and world.host(s).core is not None
                and self.booted_at.get(s, now) <= now - self.join_grace_s
            )
            self.sent[(name, seq)] = _Sent(
                channel, now, len(body), expected, during_data=self.big_open > 0
            )
            if self._is_big(channel, len(body)):
                self.big_open += len(expected)
        else:
            self.counts["untracked"] += 1
        try:
            core.channels.broadcast(host.clock.now(now), channel, message)
        except Exception:
            world._fail(host, "channels.broadcast")
        world.pump(host)

    # -- receiving -----------------------------------------------------------------------

    def _drain(self, host: Host) -> None:
        subs = self.subs.get(host.name)
        if not subs or host.core is None:
            return
        for sub in subs:
            if len(sub):
                for d in sub.take():
                    self.on_delivery(host.name, host.boots, d.channel, d.seq, d.value)

    def _violation(self, text: str, into: list[str]) -> None:
        if len(into) < MAX_VIOLATIONS:
            world = self.world
            t = world.now if world is not None else 0.0
            into.append(f"at t={t:.3f}s: {text}")

    def on_delivery(self, sub: str, boot: int, channel: str, seq: int | None, value: Any) -> None:
        """Record one delivery to ``sub`` (in its boot ``boot``); ``seq`` is the channels
        record sequence (``None`` for a local delivery, which is not counted)."""
        if seq is None:
            return  # published on this node: local delivery
        world = self.world
        now = world.now if world is not None else 0.0
        ok = (
            isinstance(value, list) and len(value) == 5 and isinstance(value[0], str)
            and type(value[1]) is int and isinstance(value[2], bytes)
            and isinstance(value[3], (int, float)) and isinstance(value[4], bytes)
        )
        if not ok:
            self.counts["corrupt"] += 1
            self._violation(f"{sub} got a malformed message on {channel}", self.violations)
            return
        pub, mseq, digest, _sent_at, body = value
        self.counts["delivered"] += 1
        if body_digest(body) != digest:
            self.counts["corrupt"] += 1
            self._violation(
                f"{sub} got {pub}#{mseq} on {channel} with a body not matching its digest",
                self.violations,
            )
        key = (sub, boot, pub, channel)
        last = self.last_seq.get(key)
        if last is not None and mseq <= last:
            self.counts["out_of_order"] += 1
            self._violation(
                f"{sub} got {pub}#{mseq} on {channel} after {pub}#{last}", self.order_violations
            )
        else:
            self.last_seq[key] = mseq
        rec = self.sent.get((pub, mseq))
        if rec is None:
            self.counts["unexpected"] += 1
            return
        n = rec.got.get(sub, 0) + 1
        rec.got[sub] = n
        if n > 1:
            self.counts["duplicates"] += 1
            self._violation(f"{sub} got {pub}#{mseq} {n} times", self.violations)
            return
        elapsed = now - rec.at
        if channel == "control" and self.control_latency is not None:
            self.control_latency.add(elapsed)
            if rec.during_data and self.control_during_data is not None:
                self.control_during_data.add(elapsed)
        if self._is_big(channel, rec.size):
            if sub in rec.expected:
                self.big_open -= 1
            if self.data_transfer is not None:
                self.data_transfer.add(elapsed)
            self.data_bytes += rec.size
            self.data_seconds += elapsed

    def _is_big(self, channel: str, size: int) -> bool:
        return self.big_bytes > 0 and channel == self.big_channel and size == self.big_bytes

    # -- checks and metrics --------------------------------------------------------------

    def missing(self, world: World) -> tuple[int, int, list[str]]:
        """(expected deliveries, missing ones, a few examples) over the followed messages,
        after the excuses of the module docstring."""
        self.note_disturbed(world)
        last = self.disturbed_at
        pairs = self.pair_disturbed_at
        grace = self.fault_grace_s
        expected = missing = 0
        examples: list[str] = []
        for (pub, seq), rec in self.sent.items():
            since = rec.at - grace
            if last.get(pub, -1.0) >= since:
                continue
            for s in rec.expected:
                if last.get(s, -1.0) >= since or pairs.get((pub, s), -1.0) >= since:
                    continue
                expected += 1
                if s not in rec.got:
                    missing += 1
                    if len(examples) < 5:
                        examples.append(f"{pub}#{seq} ({rec.channel}, sent {rec.at:.3f}s) -> {s}")
        return expected, missing, examples

    def check_delivered_intact(self, world: World) -> tuple[bool, str]:
        """``channels.delivered_intact``: bodies intact, none twice, every expected one."""
        expected, missing, examples = self.missing(world)
        c = self.counts
        ok = not missing and not c["corrupt"] and not c["duplicates"]
        detail = (
            f"{c['sent']} sent, {expected} expected deliveries, {missing} missing, "
            f"{c['duplicates']} duplicates, {c['corrupt']} corrupt"
        )
        if examples:
            detail += "; missing e.g. " + ", ".join(examples)
        if self.violations:
            detail += "; " + "; ".join(self.violations[:3])
        return ok, detail

    def check_ordered(self, world: World) -> tuple[bool, str]:
        """``channels.ordered``: per subscriber boot, publisher and channel, seq grows."""
        n = self.counts["out_of_order"]
        if n:
            return False, f"{n} out of order: " + "; ".join(self.order_violations[:3])
        return True, f"{self.counts['delivered']} deliveries in publisher order"

    def metrics(self, world: World) -> dict[str, float]:
        """The ``channels.*`` and ``transport.retransmits`` figures (module docstring)."""
        out: dict[str, float] = {f"channels.{k}": v for k, v in self.counts.items()}
        expected, missing, _ = self.missing(world)
        out["channels.expected"] = expected
        out["channels.missing"] = missing
        if self.control_latency is not None:
            self.control_latency.report("channels.control_latency_s", out)
        if self.control_during_data is not None:
            self.control_during_data.report("channels.control_latency_during_data_s", out)
        if self.data_transfer is not None:
            self.data_transfer.report("channels.data_transfer_s", out)
        if self.data_seconds > 0:
            out["channels.data_throughput_bytes_per_s"] = self.data_bytes / self.data_seconds
        key = "transport.conn.retransmits"
        total = 0
        for host in world.hosts:
            total += host.old_counters.get(key, 0)
            if host.core is not None:
                total += host.core.transport.stats().get(key, 0)
        out["transport.retransmits"] = total
        return out


def broadcast_workload(world: World) -> BroadcastWorkload:
    """The world's ``broadcast`` workload (``LookupError`` if it has none)."""
    for w in world.workloads:
        if isinstance(w, BroadcastWorkload):
            return w
    raise LookupError("the scenario has no broadcast workload")
