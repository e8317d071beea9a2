"""The virtual network: per-link latency, loss, duplication, reordering, bandwidth,
partitions and clogs.

``Network.route(t, src, dst, size)`` decides what happens to one datagram sent at virtual
time ``t``: dropped (with a reason), held (a clogged link or node), or delivered at one or
two arrival times (two when duplicated). The world schedules the deliveries.

- **MTU**: every link carries IP packets of at most ``mtu`` bytes (``[network] mtu``,
  default :data:`DEFAULT_MTU_BYTES`, Ethernet's 1500); a datagram whose UDP payload plus
  the 28 bytes of IPv4 and UDP headers exceeds it is dropped at send time (``mtu``,
  counted in ``net.dropped_mtu``), as a router drops a don't-fragment packet too large
  for the next hop. Path MTU discovery's probes meet this limit, so their outcome is
  deterministic: on the default network connections settle just under 1472 bytes.
- **Latency** is uniform in ``[low_s, high_s]`` per datagram. Without reordering a link is
  FIFO (a datagram never arrives before one sent earlier on the same link); with
  probability ``reorder`` a datagram skips that rule and takes extra delay up to twice the
  link's highest latency, so later datagrams overtake it.
- **Bandwidth** adds serialization delay: a link sends one datagram at a time at
  ``bandwidth_bytes_per_s``. Its queue is bounded to ``MAX_QUEUE_S`` seconds of sending;
  a datagram arriving at a full queue is dropped (``queue_full``).
- **Partitions** are cuts (:class:`PartitionState`): group splits, one-way cuts,
  majorities-ring and isolation; a datagram crossing an active cut is dropped at send time
  and again at arrival if a cut appeared while it was in flight.
- **Clogs** hold datagrams on a link or at a node (both directions) until the clog is
  lifted; then they are routed again. Held datagrams are bounded to ``MAX_HELD`` per clog
  key; when full the oldest is dropped (``clog_overflow``).
- Per-link state (FIFO order, bandwidth queue) is bounded by ``MAX_LINK_STATE`` links;
  entries already in the past are pruned when it fills.

Link settings: the ``[network]`` defaults, then ``[[network.link]]`` overrides, then fault
overrides (``loss`` and ``latency`` faults) in the order they were applied.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from simulator.model import LatencySpec, NetworkSpec

DEFAULT_MTU_BYTES = 1500
"""The links' MTU when the scenario sets none: Ethernet's. Cluster members on one LAN see
this; loopback (65536) would let every datagram through and never exercise a search."""
IP_UDP_HEADER_BYTES = 28
"""IPv4 (20) plus UDP (8) header bytes: a datagram's payload fits when payload + 28 <= mtu."""
MIN_MTU_BYTES = 1200 + IP_UDP_HEADER_BYTES
"""Smallest MTU accepted: the transport's 1200-byte datagrams must pass (RFC 9000 needs a
path to carry them; a smaller MTU would stop every connection)."""
MAX_MTU_BYTES = 65_535
"""Largest MTU accepted (an IPv4 packet's total length field)."""

MAX_QUEUE_S = 1.0
"""Longest a datagram may wait in a bandwidth-limited link's send queue (seconds)."""
MAX_HELD = 10_000
"""Most datagrams a clog holds per link or node; the oldest is dropped when full."""
MAX_LINK_STATE = 200_000
"""Most links with remembered send state (FIFO order, bandwidth queue, settings cache).
When full, state that no longer matters (arrivals and queues already in the past) is
forgotten; the settings cache is simply rebuilt (counted in ``net.link_state_pruned``)."""


def check_mtu(value: object, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``value`` is an MTU the network models:
    an integer in ``MIN_MTU_BYTES..MAX_MTU_BYTES`` (bytes of an IP packet)."""
    if type(value) is not int or not MIN_MTU_BYTES <= value <= MAX_MTU_BYTES:
        raise ValueError(
            f"{where}: must be an integer number of bytes in {MIN_MTU_BYTES}..{MAX_MTU_BYTES} "
            f"(an IP packet carrying at least the transport's 1200-byte datagrams), "
            f"got {value!r}"
        )


@dataclass(slots=True)
class LinkParams:
    """The effective settings of one directed link."""

    low_s: float
    span_s: float
    loss: float
    duplicate: float
    reorder: float
    bandwidth: float | None
    plain: bool = False
    """No loss, duplication, reordering or bandwidth limit: the fast path of ``route``."""

    def settle(self) -> LinkParams:
        """Recompute :attr:`plain` after a change; returns self."""
        self.plain = not (self.loss or self.duplicate or self.reorder or self.bandwidth)
        return self


@dataclass(frozen=True)
class LinkOverride:
    """A fault's change to some links: ``selects(src, dst)`` decides which."""

    token: int
    src: str | None
    dst: str | None
    nodes: tuple[str, ...]
    field: str
    value: Any

    def selects(self, src: str, dst: str) -> bool:
        if self.src is not None and self.src != src:
            return False
        if self.dst is not None and self.dst != dst:
            return False
        return not self.nodes or src in self.nodes or dst in self.nodes


class Cut:
    """One active partition rule: ``blocks(src, dst)`` is True when ``src`` cannot reach
    ``dst``."""

    def __init__(self, token: int, kind: str, blocks: Callable[[str, str], bool]) -> None:
        self.token = token
        self.kind = kind
        self.blocks = blocks


class PartitionState:
    """The active partitions of the world (the nemesis's record of what it cut)."""

    def __init__(self) -> None:
        self.cuts: list[Cut] = []
        self._next = 0

    def _add(self, kind: str, blocks: Callable[[str, str], bool]) -> int:
        self._next += 1
        self.cuts.append(Cut(self._next, kind, blocks))
        return self._next

    def split(self, groups: Iterable[Iterable[str]]) -> int:
        """Cut between groups (both ways); unlisted nodes form one more group."""
        group_of: dict[str, int] = {}
        for i, group in enumerate(groups):
            for name in group:
                group_of[name] = i

        def blocks(src: str, dst: str) -> bool:
            return group_of.get(src, -1) != group_of.get(dst, -1)

        return self._add("split", blocks)

    def oneway(self, sources: Iterable[str], dests: Iterable[str]) -> int:
        """Cut every link from ``sources`` to ``dests`` (the other way still works)."""
        src_set = frozenset(sources)
        dst_set = frozenset(dests)

        def blocks(src: str, dst: str) -> bool:
            return src in src_set and dst in dst_set

        return self._add("oneway", blocks)

    def isolate(self, node: str) -> int:
        """Cut ``node`` off from every other node, both ways."""

        def blocks(src: str, dst: str) -> bool:
            return (src == node) != (dst == node)

        return self._add("isolate", blocks)

    def majorities_ring(self, ring: list[str]) -> int:
        """Jepsen's majorities-ring: in ring order, each node sees the nodes within
        ``ceil((majority - 1) / 2)`` places, so each sees a majority and, from 4 nodes on,
        no two the same. Cuts are symmetric, so with 3 nodes nothing is cut."""
        n = len(ring)
        majority = n // 2 + 1
        reach = majority // 2  # ceil((majority - 1) / 2)
        position = {name: i for i, name in enumerate(ring)}

        def blocks(src: str, dst: str) -> bool:
            a = position.get(src)
            b = position.get(dst)
            if a is None or b is None:
                return False
            d = abs(a - b)
            return min(d, n - d) > reach

        return self._add("majorities-ring", blocks)

    def remove(self, token: int) -> bool:
        """Lift one cut; False if it was already gone (healed)."""
        for i, cut in enumerate(self.cuts):
            if cut.token == token:
                del self.cuts[i]
                return True
        return False

    def heal(self) -> int:
        """Lift every cut; returns how many were active."""
        n = len(self.cuts)
        self.cuts.clear()
        return n

    def blocks(self, src: str, dst: str) -> bool:
        """Whether any active cut stops ``src`` -> ``dst``."""
        return any(cut.blocks(src, dst) for cut in self.cuts)


class Network:
    """The virtual network; see the module docstring."""

    def __init__(
        self,
        spec: NetworkSpec,
        rng: random.Random,
        partitions: PartitionState | None = None,
        *,
        mtu: int | None = None,
    ) -> None:
        """``mtu``: the links' MTU in bytes; None takes ``spec.mtu`` (``[network] mtu``),
        or :data:`DEFAULT_MTU_BYTES` when the spec has none. Raises ``ValueError`` for an
        MTU outside ``MIN_MTU_BYTES..MAX_MTU_BYTES``."""
        if mtu is None:
            mtu = getattr(spec, "mtu", DEFAULT_MTU_BYTES)
        check_mtu(mtu, "network.mtu")
        self.mtu = mtu
        self._max_payload = mtu - IP_UDP_HEADER_BYTES
        self.spec = spec
        self.rng = rng
        self.partitions = partitions or PartitionState()
        self._random = rng.random
        self._cuts = self.partitions.cuts  # the same list, for a cheap "any cut?" test
        self._base: dict[tuple[str, str], LinkParams] = {}
        self._default = self._params(spec.latency, spec.loss, spec.duplicate, spec.reorder,
                                     spec.bandwidth_bytes_per_s)
        for link in spec.links:
            pairs = [(link.src, link.dst)]
            if link.symmetric:
                pairs.append((link.dst, link.src))
            for pair in pairs:
                base = self._base.get(pair, self._default)
                self._base[pair] = LinkParams(
                    link.latency.low_s if link.latency else base.low_s,
                    (link.latency.high_s - link.latency.low_s) if link.latency else base.span_s,
                    base.loss if link.loss is None else link.loss,
                    base.duplicate if link.duplicate is None else link.duplicate,
                    base.reorder if link.reorder is None else link.reorder,
                    base.bandwidth if link.bandwidth_bytes_per_s is None
                    else link.bandwidth_bytes_per_s,
                ).settle()
        self._overrides: list[LinkOverride] = []
        self._next_token = 0
        self._cache: dict[tuple[str, str], LinkParams] = {}
        self._uniform: LinkParams | None = None
        """The settings of every link when they are all the same (no per-link settings, no
        fault override): ``route`` then skips the per-link cache."""
        self._update_uniform()
        self._last_arrival: dict[tuple[str, str], float] = {}
        self._busy_until: dict[tuple[str, str], float] = {}
        self.clogged_nodes: dict[str, int] = {}
        self.clogged_links: dict[tuple[str, str], int] = {}
        self._held: dict[object, deque[Any]] = {}
        self.counts: dict[str, int] = {
            "net.sent": 0,
            "net.duplicated": 0,
            "net.reordered": 0,
            "net.held_clog": 0,
            "net.dropped_loss": 0,
            "net.dropped_partition": 0,
            "net.dropped_queue": 0,
            "net.dropped_clog_overflow": 0,
            "net.dropped_mtu": 0,
            "net.link_state_pruned": 0,
        }

    @staticmethod
    def _params(
        latency: LatencySpec, loss: float, dup: float, reorder: float, bw: float | None
    ) -> LinkParams:
        return LinkParams(
            latency.low_s, latency.high_s - latency.low_s, loss, dup, reorder, bw
        ).settle()

    # -- link settings -------------------------------------------------------------------

    def _update_uniform(self) -> None:
        self._uniform = None if self._base or self._overrides else self._default

    def link(self, src: str, dst: str) -> LinkParams:
        """The effective settings of ``src`` -> ``dst`` now."""
        key = (src, dst)
        params = self._cache.get(key)
        if params is None:
            base = self._base.get(key, self._default)
            params = base  # shared (never mutated) unless an override changes it
            for o in self._overrides:
                if o.selects(src, dst):
                    if params is base:
                        params = LinkParams(base.low_s, base.span_s, base.loss,
                                            base.duplicate, base.reorder, base.bandwidth)
                    if o.field == "latency":
                        params.low_s = o.value.low_s
                        params.span_s = o.value.high_s - o.value.low_s
                    else:
                        setattr(params, o.field, o.value)
            if params is not base:
                params.settle()
            if len(self._cache) >= MAX_LINK_STATE:
                self._cache.clear()  # a cache: recomputed on demand
            self._cache[key] = params
        return params

    def _prune(self, t: float) -> None:
        """Forget per-link send state that no longer matters at time ``t`` (bounds memory)."""
        self._last_arrival = {k: v for k, v in self._last_arrival.items() if v > t}
        self._busy_until = {k: v for k, v in self._busy_until.items() if v > t}
        self.counts["net.link_state_pruned"] += 1

    def override(
        self,
        field: str,
        value: Any,
        *,
        src: str | None = None,
        dst: str | None = None,
        nodes: tuple[str, ...] = (),
    ) -> int:
        """Change ``field`` (``loss``, ``duplicate``, ``reorder``, ``latency``) on the selected
        links (all when nothing is selected); returns a token for :meth:`remove_override`."""
        if field not in ("loss", "duplicate", "reorder", "latency", "bandwidth"):
            raise ValueError(f"cannot override link field {field!r}")
        self._next_token += 1
        self._overrides.append(LinkOverride(self._next_token, src, dst, nodes, field, value))
        self._cache.clear()
        self._update_uniform()
        return self._next_token

    def remove_override(self, token: int) -> bool:
        """Undo one override; False if it was already gone."""
        for i, o in enumerate(self._overrides):
            if o.token == token:
                del self._overrides[i]
                self._cache.clear()
                self._update_uniform()
                return True
        return False

    def clear_overrides(self) -> None:
        """Undo every fault override (back to the scenario's network)."""
        self._overrides.clear()
        self._cache.clear()
        self._update_uniform()

    # -- routing -------------------------------------------------------------------------

    def blocked(self, src: str, dst: str) -> bool:
        """Whether an active partition stops ``src`` -> ``dst``."""
        cuts = self.partitions.cuts
        return bool(cuts) and self.partitions.blocks(src, dst)

    def clogged(self, src: str, dst: str) -> object | None:
        """The clog key holding ``src`` -> ``dst`` datagrams, or None."""
        if self.clogged_nodes:
            if src in self.clogged_nodes:
                return src
            if dst in self.clogged_nodes:
                return dst
        if self.clogged_links and (src, dst) in self.clogged_links:
            return (src, dst)
        return None

    def route(self, t: float, src: str, dst: str, size: int) -> tuple[str | None, float, float]:
        """What happens to one datagram: ``(drop_reason, arrival, duplicate_arrival)``.

        ``drop_reason`` is None when delivered; ``"clog"`` means the caller must
        :meth:`hold` it. ``duplicate_arrival`` is ``-1.0`` when not duplicated.
        """
        counts = self.counts
        counts["net.sent"] += 1
        if size > self._max_payload:
            counts["net.dropped_mtu"] += 1
            return "mtu", 0.0, -1.0
        if self._cuts and self.partitions.blocks(src, dst):
            counts["net.dropped_partition"] += 1
            return "partition", 0.0, -1.0
        if (self.clogged_nodes or self.clogged_links) and self.clogged(src, dst) is not None:
            return "clog", 0.0, -1.0
        key = (src, dst)
        p = self._uniform or self._cache.get(key) or self.link(src, dst)
        if p.plain:
            arrival = t + p.low_s + (self._random() * p.span_s if p.span_s else 0.0)
            last_arrival = self._last_arrival
            last = last_arrival.get(key, 0.0)
            if arrival < last:
                arrival = last
            elif len(last_arrival) >= MAX_LINK_STATE and key not in last_arrival:
                self._prune(t)
                last_arrival = self._last_arrival
            last_arrival[key] = arrival
            return None, arrival, -1.0
        rng = self.rng
        if p.loss and rng.random() < p.loss:
            counts["net.dropped_loss"] += 1
            return "loss", 0.0, -1.0
        start = t
        if p.bandwidth:
            busy = self._busy_until.get(key, t)
            if busy > t:
                if busy - t > MAX_QUEUE_S:
                    counts["net.dropped_queue"] += 1
                    return "queue_full", 0.0, -1.0
                start = busy
            elif len(self._busy_until) >= MAX_LINK_STATE:
                self._prune(t)
            start += size / p.bandwidth
            self._busy_until[key] = start
        arrival = start + p.low_s + (rng.random() * p.span_s if p.span_s else 0.0)
        if p.reorder and rng.random() < p.reorder:
            counts["net.reordered"] += 1
            arrival += rng.random() * 2.0 * (p.low_s + p.span_s)
        else:
            last_arrival = self._last_arrival
            last = last_arrival.get(key, 0.0)
            if arrival < last:
                arrival = last
            elif len(last_arrival) >= MAX_LINK_STATE and key not in last_arrival:
                self._prune(t)
                last_arrival = self._last_arrival
            last_arrival[key] = arrival
        dup = -1.0
        if p.duplicate and rng.random() < p.duplicate:
            counts["net.duplicated"] += 1
            dup = arrival + rng.random() * (p.low_s + p.span_s)
        return None, arrival, dup

    # -- clogs ---------------------------------------------------------------------------

    def hold(self, key: object, item: Any) -> Any | None:
        """Keep ``item`` until ``key`` is unclogged; returns an item dropped for space."""
        queue = self._held.get(key)
        if queue is None:
            queue = self._held[key] = deque()
        dropped = None
        if len(queue) >= MAX_HELD:
            dropped = queue.popleft()
            self.counts["net.dropped_clog_overflow"] += 1
        queue.append(item)
        self.counts["net.held_clog"] += 1
        return dropped

    def clog_node(self, node: str) -> None:
        """Hold every datagram from or to ``node``."""
        self.clogged_nodes[node] = self.clogged_nodes.get(node, 0) + 1

    def clog_link(self, src: str, dst: str) -> None:
        """Hold every datagram ``src`` -> ``dst``."""
        self.clogged_links[(src, dst)] = self.clogged_links.get((src, dst), 0) + 1

    def unclog_node(self, node: str) -> list[Any]:
        """Lift one clog of ``node``; returns the held datagrams to route again, in order."""
        n = self.clogged_nodes.get(node, 0)
        if n <= 1:
            self.clogged_nodes.pop(node, None)
        else:
            self.clogged_nodes[node] = n - 1
        return self._release(node)

    def unclog_link(self, src: str, dst: str) -> list[Any]:
        """Lift one clog of ``src`` -> ``dst``; returns the held datagrams, in order."""
        key = (src, dst)
        n = self.clogged_links.get(key, 0)
        if n <= 1:
            self.clogged_links.pop(key, None)
        else:
            self.clogged_links[key] = n - 1
        return self._release(key)

    def unclog_all(self) -> list[Any]:
        """Lift every clog; returns every held datagram, by clog in clog order."""
        self.clogged_nodes.clear()
        self.clogged_links.clear()
        out: list[Any] = []
        for key in list(self._held):
            out.extend(self._release(key))
        return out

    def _release(self, key: object) -> list[Any]:
        if key in self.clogged_nodes or key in self.clogged_links:
            return []
        queue = self._held.pop(key, None)
        return list(queue) if queue else []
