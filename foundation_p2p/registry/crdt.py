"""The registry's CRDT: an add-wins, last-writer-wins map with dots and a causal context.

This is the "optimized OR-Map of multi-value registers" of Almeida, Shoker and Baquero,
"Delta State Replicated Data Types" (JPDC 2018), with the register's values ordered by a
hybrid logical clock:

* every write makes a fresh **dot** ``(node_id, counter)`` — the writer's next event —
  and stores the entry under it;
* the **causal context** (:class:`DotContext`) is the set of every dot a replica has seen,
  kept compact as a version vector plus a *dot cloud* of the dots beyond the contiguous
  prefix;
* a dot in the context but no longer in the entries was removed: a removal leaves **no
  tombstone**, only the context (which compacts back into the version vector, so 10,000
  register/unregister cycles of one node cost one vector slot);
* :meth:`RegistryState.join` keeps a dot if both sides hold it, or if one side holds it and
  the other has not seen it — so a removal wins only over what it saw, and a concurrent add
  survives (add-wins);
* concurrent writes of the same name leave several dots; the one with the largest
  :class:`~foundation_p2p.registry.hlc.Stamp` is the value (last writer wins). The losers
  stay in the state until a mutation removes them (``RegistryCore`` does it on the loser's
  node), which keeps the join a true semilattice join.

Deltas are :class:`RegistryState` values too (small ones: a few entries, a context of a
few dots), made by :func:`add_delta`, :func:`remove_delta` and :func:`retract_delta`,
joined like any state.

For anti-entropy the state keeps, incrementally, a digest per bucket of names
(:data:`BUCKETS` buckets in :data:`GROUPS` groups): the XOR of a 64-bit hash of each live
``(name, dot)``. Two replicas with the same live dots have the same digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from foundation_p2p.addresses import NodeId
from foundation_p2p.registry.hlc import Stamp

Dot = tuple[NodeId, int]
"""A write's identity: the writer's node id and its per-node event counter (from 1)."""

Touched = dict[str, tuple[dict["Dot", "Entry"], set["Dot"]]]
"""What a join changed: name -> (entries removed by dot, dots added)."""

GROUPS = 32
"""Digest groups; a sync request carries one digest per group."""
BUCKETS_PER_GROUP = 32
"""Buckets in each group; a sync reply carries the bucket digests of differing groups."""
BUCKETS = GROUPS * BUCKETS_PER_GROUP
"""Name buckets (1024): a name's bucket is its BLAKE2b-32 hash modulo this number."""

_MASK64 = (1 << 64) - 1


def bucket_of(name: str) -> int:
    """The digest bucket of ``name``: BLAKE2b (4-byte digest) of its UTF-8, mod :data:`BUCKETS`."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def item_hash(name: str, dot: Dot) -> int:
    """The 64-bit hash of one live ``(name, dot)``: BLAKE2b-64 of
    ``node_id || counter (8 bytes, big-endian) || name (UTF-8)``."""
    data = dot[0] + dot[1].to_bytes(8, "big") + name.encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class Entry:
    """One registered name as the registry returns it."""

    name: str
    """1..255 bytes of UTF-8, no control characters."""
    value: Any
    """A plain CBOR value (bounded by ``RegistryConfig.max_value_bytes`` encoded)."""
    metadata: dict[str, Any]
    """A CBOR map with text keys, bounded likewise."""
    owner: NodeId | None
    """The node the entry belongs to; ``None`` = cluster-scoped (never hidden or reaped
    because a node failed; only an explicit unregister removes it)."""
    stamp: Stamp
    """The hybrid logical time of the write: the last-writer-wins order."""


class DotContext:
    """A set of dots, stored as a version vector (every counter 1..n of a node) plus a dot
    cloud (the dots not yet contiguous). Compacted on every change, so equal sets have
    equal representations."""

    __slots__ = ("cloud", "vv")

    def __init__(
        self, vv: dict[NodeId, int] | None = None, cloud: Iterable[Dot] = ()
    ) -> None:
        self.vv: dict[NodeId, int] = {n: c for n, c in (vv or {}).items() if c > 0}
        """Node id -> the largest counter ``n`` such that all of 1..n are in the set."""
        self.cloud: set[Dot] = set()
        """Dots beyond their node's contiguous prefix."""
        for dot in cloud:
            self.add(dot)

    def contains(self, dot: Dot) -> bool:
        """True if ``dot`` is in the set."""
        return dot[1] <= self.vv.get(dot[0], 0) or dot in self.cloud

    __contains__ = contains

    def add(self, dot: Dot) -> None:
        """Add one dot, absorbing cloud dots that become contiguous."""
        node, counter = dot
        top = self.vv.get(node, 0)
        if counter <= top:
            return
        if counter != top + 1:
            self.cloud.add(dot)
            return
        cloud = self.cloud
        while (node, counter + 1) in cloud:
            counter += 1
            cloud.discard((node, counter))
        self.vv[node] = counter

    def merge(self, other: DotContext) -> None:
        """Add every dot of ``other``.

        Costs O(other) plus, only when a vector slot rises while this cloud is not empty,
        one pass over this cloud (no sorting)."""
        vv = self.vv
        raised: list[NodeId] = []
        for node, top in other.vv.items():
            if top > vv.get(node, 0):
                vv[node] = top
                raised.append(node)
        if raised and self.cloud:
            cloud = self.cloud
            lifted = set(raised)
            self.cloud = cloud = {d for d in cloud if d[0] not in lifted or d[1] > vv[d[0]]}
            for node in raised:
                top = vv[node]
                while (node, top + 1) in cloud:
                    top += 1
                    cloud.discard((node, top))
                vv[node] = top
        for dot in other.cloud:
            self.add(dot)

    def compact(self) -> None:
        """Move cloud dots that are contiguous with the version vector into it."""
        if not self.cloud:
            return
        old = sorted(self.cloud)
        self.cloud = set()
        for dot in old:
            self.add(dot)

    def next_dot(self, node: NodeId) -> Dot:
        """The dot of ``node``'s next write (its own dots are always contiguous)."""
        return (node, self.vv.get(node, 0) + 1)

    def copy(self) -> DotContext:
        """An independent copy."""
        new = DotContext()
        new.vv = dict(self.vv)
        new.cloud = set(self.cloud)
        return new

    def dots(self) -> Iterator[Dot]:
        """Every dot of the set (the vector expanded: for tests and small contexts)."""
        for node, top in self.vv.items():
            for counter in range(1, top + 1):
                yield (node, counter)
        yield from self.cloud

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DotContext):
            return NotImplemented
        return self.vv == other.vv and self.cloud == other.cloud

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        vv = {n.hex()[:8]: c for n, c in sorted(self.vv.items())}
        cloud = sorted((n.hex()[:8], c) for n, c in self.cloud)
        return f"DotContext(vv={vv}, cloud={cloud})"


_NO_NAMES = SortedList()
"""The (never filled) name index of unindexed states."""


class RegistryState:
    """A replica (or a delta) of the registry map: ``name -> {dot: Entry}`` plus its
    :class:`DotContext`, with a dot index and — when ``indexed`` (replicas; deltas skip it)
    — a sorted name index and bucket digests."""

    __slots__ = (
        "_bucket_cache",
        "_entry_bytes",
        "_unsized",
        "bucket_names",
        "buckets",
        "ctx",
        "dot_names",
        "entries",
        "entry_sizes",
        "indexed",
        "live_by_writer",
        "names",
        "sizer",
    )

    def __init__(self, *, indexed: bool = True) -> None:
        self.indexed = indexed
        """Whether ``names``, ``buckets`` and ``bucket_names`` are kept (empty if not)."""
        self.entries: dict[str, dict[Dot, Entry]] = {}
        """Live entries: name -> dot -> entry (several dots = concurrent writes)."""
        self.ctx = DotContext()
        """Every dot this replica has seen (live or removed)."""
        self.names: SortedList = SortedList() if indexed else _NO_NAMES
        """The names with at least one live dot, sorted (for prefix selects)."""
        self.dot_names: dict[Dot, str] = {}
        """Live dot -> its name."""
        self.live_by_writer: dict[NodeId, int] = {}
        """Writer (a dot's node) -> how many live dots it wrote (for the entry bounds)."""
        self.buckets: list[int] = [0] * BUCKETS if indexed else []
        """Per bucket, the XOR of :func:`item_hash` over its live ``(name, dot)``."""
        self.bucket_names: dict[int, set[str]] = {}
        """Per non-empty bucket, its live names."""
        self._bucket_cache: dict[str, int] = {}
        self.sizer: Callable[[Dot, Entry], int] | None = None
        """If set (before any entry is added), the encoded size of one live entry: the state
        then keeps :meth:`entry_bytes`, their sum, so its encoded size is known without
        encoding it all (each entry is measured once, when the sum is next asked for)."""
        self.entry_sizes: dict[Dot, int] = {}
        """Live dot -> its entry's encoded size (when ``sizer`` is set)."""
        self._entry_bytes = 0
        self._unsized: set[Dot] = set()

    # -- reading -----------------------------------------------------------------------

    def bucket(self, name: str) -> int:
        """The bucket of ``name`` (cached while the name is live)."""
        b = self._bucket_cache.get(name)
        if b is None:
            b = bucket_of(name)
        return b

    def group_digests(self) -> list[int]:
        """The XOR of the bucket digests of each group, :data:`GROUPS` values."""
        out = []
        buckets = self.buckets
        for g in range(GROUPS):
            h = 0
            for b in buckets[g * BUCKETS_PER_GROUP : (g + 1) * BUCKETS_PER_GROUP]:
                h ^= b
            out.append(h)
        return out

    def names_in_buckets(self, wanted: Iterable[int]) -> list[str]:
        """The live names whose bucket is in ``wanted``, sorted."""
        out: list[str] = []
        for b in wanted:
            out.extend(self.bucket_names.get(b, ()))
        out.sort()
        return out

    def entry_bytes(self) -> int:
        """The summed encoded size of the live entries (needs ``sizer``)."""
        if self._unsized:
            sizer = self.sizer
            assert sizer is not None
            for dot in self._unsized:
                entry = self.entries[self.dot_names[dot]][dot]
                size = self.entry_sizes[dot] = sizer(dot, entry)
                self._entry_bytes += size
            self._unsized.clear()
        return self._entry_bytes

    def sorted_names(self) -> list[str]:
        """The live names in ascending order."""
        return list(self.names) if self.indexed else sorted(self.entries)

    def live_dots(self) -> int:
        """How many live dots the state holds."""
        return len(self.dot_names)

    def canonical(self) -> tuple[Any, ...]:
        """A comparable value: equal for replicas with the same entries and context."""
        entries = tuple(
            (name, tuple(sorted(self.entries[name].items(), key=lambda kv: kv[0])))
            for name in self.sorted_names()
        )
        return (
            entries,
            tuple(sorted(self.ctx.vv.items())),
            tuple(sorted(self.ctx.cloud)),
        )

    # -- changing ------------------------------------------------------------------------

    def _add_live(self, name: str, dot: Dot, entry: Entry) -> None:
        slot = self.entries.get(name)
        if slot is None:
            slot = self.entries[name] = {}
            if self.indexed:
                self.names.add(name)
                b = self._bucket_cache[name] = bucket_of(name)
                self.bucket_names.setdefault(b, set()).add(name)
        slot[dot] = entry
        self.dot_names[dot] = name
        self.live_by_writer[dot[0]] = self.live_by_writer.get(dot[0], 0) + 1
        if self.sizer is not None:
            self._unsized.add(dot)
        if self.indexed:
            self.buckets[self._bucket_cache[name]] ^= item_hash(name, dot)

    def _drop_live(self, name: str, dot: Dot) -> None:
        slot = self.entries[name]
        del slot[dot]
        del self.dot_names[dot]
        left = self.live_by_writer[dot[0]] - 1
        if left:
            self.live_by_writer[dot[0]] = left
        else:
            del self.live_by_writer[dot[0]]
        if self.sizer is not None:
            size = self.entry_sizes.pop(dot, None)
            if size is None:
                self._unsized.discard(dot)
            else:
                self._entry_bytes -= size
        if not self.indexed:
            if not slot:
                del self.entries[name]
            return
        self.buckets[self._bucket_cache[name]] ^= item_hash(name, dot)
        if not slot:
            del self.entries[name]
            self.names.remove(name)
            b = self._bucket_cache.pop(name)
            names = self.bucket_names[b]
            names.discard(name)
            if not names:
                del self.bucket_names[b]

    def join(self, other: RegistryState) -> Touched:
        """Join ``other`` (a delta or a whole state) into this one.

        A dot survives if both sides hold it, or one side holds it and the other's context
        does not contain it. Then the contexts merge. Returns, per name whose live dots
        changed, the entries removed and the dots added. Cost: proportional to the smaller
        of ``other``'s context and this state's live dots, plus ``other``'s live dots.
        """
        touched: Touched = {}
        octx = other.ctx
        # 1. our live dots that ``other`` has seen but no longer holds: removed there.
        ours = self.dot_names
        if sum(octx.vv.values()) + len(octx.cloud) < len(ours):
            candidates: Iterable[Dot] = [d for d in octx.dots() if d in ours]
        else:
            candidates = list(ours)
        odots = other.dot_names
        for dot in candidates:
            if dot in odots or not octx.contains(dot):
                continue
            name = ours[dot]
            removed = self.entries[name][dot]
            self._drop_live(name, dot)
            touched.setdefault(name, ({}, set()))[0][dot] = removed
        # 2. their live dots we have not seen: new here.
        ctx = self.ctx
        for dot, name in odots.items():
            if dot in ours or ctx.contains(dot):
                continue
            self._add_live(name, dot, other.entries[name][dot])
            touched.setdefault(name, ({}, set()))[1].add(dot)
        ctx.merge(octx)
        return touched

    def add_entries(self, items: Iterable[tuple[Dot, Entry]]) -> Touched:
        """Join the delta "these entries, with exactly their dots as context" (a sync
        reply's entries): adds the ones not yet seen, removes nothing."""
        touched: Touched = {}
        ctx = self.ctx
        for dot, entry in items:
            if dot in self.dot_names or ctx.contains(dot):
                continue
            self._add_live(entry.name, dot, entry)
            ctx.add(dot)
            touched.setdefault(entry.name, ({}, set()))[1].add(dot)
        return touched

    def copy(self) -> RegistryState:
        """An independent copy (entries are immutable and shared)."""
        new = RegistryState(indexed=self.indexed)
        for name, slot in self.entries.items():
            for dot, entry in slot.items():
                new._add_live(name, dot, entry)
        new.ctx = self.ctx.copy()
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegistryState):
            return NotImplemented
        return self.canonical() == other.canonical()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RegistryState({len(self.entries)} names, {len(self.dot_names)} dots, {self.ctx!r})"


def add_delta(dot: Dot, entry: Entry, supersedes: Iterable[Dot] = ()) -> RegistryState:
    """The delta of writing ``entry`` under the fresh ``dot``, replacing the dots in
    ``supersedes`` (the ones the writer saw for that name and meant to overwrite)."""
    delta = RegistryState(indexed=False)
    delta._add_live(entry.name, dot, entry)
    delta.ctx.add(dot)
    for old in supersedes:
        delta.ctx.add(old)
    return delta


def remove_delta(dots: Iterable[Dot]) -> RegistryState:
    """The delta of removing the live ``dots``: no entries, a context of exactly them."""
    delta = RegistryState(indexed=False)
    for dot in dots:
        delta.ctx.add(dot)
    return delta


def retract_delta(losers: Iterable[Dot], winners: Iterable[tuple[Dot, Entry]]) -> RegistryState:
    """The delta of retracting conflict ``losers``, carrying the ``winners`` they lost to.

    A replica that joins the removal of a loser without the winner would show the name
    free for a moment (the winner's own delta may come later, from another node): a
    cluster-scoped spec written by three nodes at once vanished on one of them and its
    supervisor stopped the singleton. With the winner in the same delta the name never
    looks free; a replica that has already removed the winner keeps it removed (its dot
    is in that replica's context), so carrying it resurrects nothing.
    """
    delta = RegistryState(indexed=False)
    for dot, entry in winners:
        if dot not in delta.dot_names:
            delta._add_live(entry.name, dot, entry)
            delta.ctx.add(dot)
    for dot in losers:
        delta.ctx.add(dot)
    return delta


def winner(entries: Iterable[Entry]) -> Entry | None:
    """The entry with the largest stamp (the last writer), or None if there is none."""
    best: Entry | None = None
    for entry in entries:
        if best is None or entry.stamp > best.stamp:
            best = entry
    return best
