"""``RegistryCore``: the replicated name registry of one node (sans-I/O).

It keeps a :class:`~foundation_p2p.registry.crdt.RegistryState` (an add-wins LWW map with a
causal context) and offers the registry API over it: :meth:`~RegistryCore.register`,
:meth:`~RegistryCore.unregister`, :meth:`~RegistryCore.lookup`,
:meth:`~RegistryCore.select`, :meth:`~RegistryCore.count`. Every local call mutates the
local replica at once (read-your-writes on this node) and buffers the delta; the driver
takes the deltas as messages (:meth:`~RegistryCore.take_messages`) and hands them to the
messenger, one copy per peer. Peers join what they receive.

Anti-entropy repairs what deltas missed (lost, dropped from the buffer, or sent while a peer
was unreachable). Every ``sync_interval_s`` (jittered) the node picks one peer without a
sync in flight and runs (``spec/registry.md`` section 4)::

    initiator                                         responder
    request(sid, my context, 32 group digests)  ->
                                                <-    reply(sid, entries whose dot is not in
                                                            the request's context (capped),
                                                            my context if complete,
                                                            bucket digests of groups that differ,
                                                            more)
    [check(sid, my live dots of buckets still different) ->
                                                <-    removed(sid, those the responder has
                                                            seen and no longer holds)]

A reply never carries what the initiator has already seen (its context says so), and the
check round carries only dots of buckets whose digests still differ, so a sync between
replicas that differ in k names costs O(k) entries, not the whole state. If the reply was
cut by ``max_sync_bytes``, the initiator asks again at once.

Conflicts. Two entries for one name can exist at once only if they were written
concurrently (neither writer had seen the other's), e.g. on both sides of a partition. The
**larger stamp wins** on every replica: stamps are hybrid logical times, totally ordered
(ties broken by node id), and every replica compares the same two values, so all agree
without talking; and because a hybrid clock never runs behind anything its node has seen,
the winner is "the registration made last", which a person can check against wall-clock
logs. Every node that sees both emits :class:`~foundation_p2p.registry.events.Conflict`;
the loser's owner (for a cluster-scoped entry: its writer) removes the loser, and that
removal spreads like any delta.

Failed and unknown owners. Entries whose owner membership reports failed are hidden at
read time (:meth:`~RegistryCore.set_failed`), and so, once the driver hands over the live
member set (:meth:`~RegistryCore.set_members`, as the node integration does), are entries
whose owner is not a live member at all: an owner that failed before this node joined is
never in its member table (push-pull does not carry the failures of members the receiver
never knew, ``spec/membership.md``), so "not known failed" is not "alive". Entries are
deleted only when the owner is reaped (:meth:`~RegistryCore.reap`), by membership or, for
an owner no member remembers, by the node integration's orphan scan
(``RegistrySubsystem.reap_orphans``): a partitioned owner's entries come back when the
partition heals.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from foundation_p2p.addresses import NodeId
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, FoundationError, WireError
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.crdt import (
    BUCKETS,
    BUCKETS_PER_GROUP,
    GROUPS,
    Dot,
    DotContext,
    Entry,
    RegistryState,
    Touched,
    add_delta,
    remove_delta,
    retract_delta,
    winner,
)
from foundation_p2p.registry.events import (
    Change,
    Conflict,
    Hidden,
    Registered,
    Shown,
    Unregistered,
)
from foundation_p2p.registry.hlc import HybridClock, Stamp
from foundation_p2p.registry.wire import (
    Delta,
    Message,
    SyncCheck,
    SyncRemoved,
    SyncReply,
    SyncRequest,
    check_metadata,
    check_name,
    check_value,
    context_to_wire,
    decode_message,
    encode_message,
    entry_to_wire,
    message_size,
)

log = logging.getLogger("foundation_p2p.registry")

_MESSAGE_OVERHEAD_BYTES = 64
"""Room left in a capped message for its header (type, sid, flags, array heads)."""
_ENTRY_OVERHEAD_BYTES = 48
"""Estimated encoded bytes of an entry besides its name, value and metadata."""
_DIGEST_BYTES = 12
"""Upper bound on one encoded bucket digest in a reply map (key <= 3, uint64 <= 9 bytes)."""


class AlreadyRegistered(FoundationError):
    """``register`` found a visible entry with that name (any owner)."""

    def __init__(self, name: str, entry: Entry) -> None:
        owner = "cluster" if entry.owner is None else entry.owner.hex()
        super().__init__(f"name {name!r} is already registered (owner {owner}, {entry.stamp})")
        self.name = name
        """The name asked for."""
        self.entry = entry
        """The entry that holds it."""


@dataclass(slots=True)
class _Sync:
    """One anti-entropy round this node started with a peer."""

    sid: int
    deadline: float
    more: bool = False
    checked: set[Dot] = field(default_factory=set)


class RegistryCore:
    """The registry replica of one node: local API, membership input, and sync messages.

    All methods are synchronous and take ``now``; nothing here reads a clock, draws its own
    randomness or performs I/O.
    """

    def __init__(
        self,
        node_id: NodeId,
        *,
        config: RegistryConfig | None = None,
        counters: Counters | None = None,
        rng: random.Random | None = None,
        replica_id: NodeId | None = None,
    ) -> None:
        if not isinstance(node_id, bytes) or len(node_id) != 16:
            raise ConfigError(f"node_id: expected 16 bytes, got {node_id!r}")
        if replica_id is not None and (not isinstance(replica_id, bytes) or len(replica_id) != 16):
            raise ConfigError(f"replica_id: expected 16 bytes, got {replica_id!r}")
        self.node_id = node_id
        self.replica_id: NodeId = replica_id if replica_id is not None else node_id
        """The writer id in this replica's dots. Dot counters start at 1 in every replica
        that starts empty, so a node that restarts must write under a new replica id (the
        node integration derives one per boot: :func:`replica_id_for`), or its peers, which
        saw its earlier counters, would take its new writes as already seen."""
        self.config = config if config is not None else RegistryConfig()
        self.counters = counters if counters is not None else Counters()
        self.rng = rng if rng is not None else random.Random(0)
        # stamps carry the writer id of the dot (the wire form derives a stamp's node id
        # from its dot), so the clock ticks under the replica id too
        self.clock = HybridClock(
            self.replica_id, max_clock_lead_s=self.config.max_clock_lead_s,
            counters=self.counters,
        )
        self.state = RegistryState()
        """The CRDT replica (read it, never mutate it from outside)."""
        self.state.sizer = _entry_size
        self._failed: set[NodeId] = set()
        self._members: frozenset[NodeId] | None = None
        self._peers: list[NodeId] = []
        self._outbox: list[tuple[NodeId, Any]] = []
        self._deltas: deque[tuple[RegistryState, int]] = deque()
        self._delta_bytes = 0
        self._changes: deque[Change] = deque()
        self._syncs: dict[NodeId, _Sync] = {}
        self.last_sync_completed: float | None = None
        """Monotonic time of the last anti-entropy round this node completed (None: none
        yet); the health summary's ``registry_lag_ms`` is its age."""
        self._next_sync: float | None = None
        self._sid = self.rng.getrandbits(32)
        self._recent_conflicts: OrderedDict[str, list[Entry]] = OrderedDict()

    # -- local API ----------------------------------------------------------------------

    def register(
        self,
        now: Now,
        name: str,
        value: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        owner: NodeId | Literal["self"] | None = "self",
    ) -> Entry:
        """Register ``name`` -> ``value``; visible to ``lookup`` on this node at once.

        Raises :class:`AlreadyRegistered` if a visible entry holds the name (an entry whose
        owner is failed is not visible: the new one is concurrent with it, and the usual
        conflict rule settles it if that owner comes back), and :class:`ConfigError` for an
        invalid name, value, metadata or owner.
        """
        existing = self.lookup(name)
        if existing is not None:
            raise AlreadyRegistered(name, existing)
        return self._write(now, name, value, metadata, owner, supersede=False)

    def put(
        self,
        now: Now,
        name: str,
        value: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        owner: NodeId | Literal["self"] | None = "self",
    ) -> Entry:
        """Register or replace ``name``: the new entry supersedes every visible one.

        Equivalent lower-level calls: ``unregister`` then ``register``, as one delta (no
        moment where the name is absent).
        """
        return self._write(now, name, value, metadata, owner, supersede=True)

    def unregister(self, now: Now, name: str) -> bool:
        """Remove ``name``'s visible entries; False if none is visible.

        Only the entries this replica has seen are removed: a concurrent registration
        elsewhere survives (add-wins).
        """
        slot = self.state.entries.get(name)
        if not slot:
            return False
        dots = [d for d, e in slot.items() if not self._hidden(e)]
        if not dots:
            return False
        self._mutate(remove_delta(dots))
        return True

    def lookup(self, name: str) -> Entry | None:
        """The entry ``name`` resolves to (largest stamp among visible ones), or None."""
        slot = self.state.entries.get(name)
        if not slot:
            return None
        return self._visible_winner(slot)

    def select(
        self,
        prefix: str = "",
        predicate: Callable[[Entry], bool] | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """The visible entries whose name starts with ``prefix`` and that satisfy
        ``predicate``, sorted by name, at most ``limit``."""
        out: list[Entry] = []
        if limit is not None and limit <= 0:
            return out
        entries = self.state.entries
        for name in self._names_with_prefix(prefix):
            entry = self._visible_winner(entries[name])
            if entry is None or (predicate is not None and not predicate(entry)):
                continue
            out.append(entry)
            if limit is not None and len(out) >= limit:
                break
        return out

    def count(self, prefix: str = "") -> int:
        """How many names starting with ``prefix`` resolve to a visible entry."""
        names = self.state.names
        if not self._failed and self._members is None:
            # Every live name has a visible entry: count by bisection in the sorted index.
            if not prefix:
                return len(names)
            last = prefix[-1]
            if ord(last) < 0x10FFFF:
                upper = prefix[:-1] + chr(ord(last) + 1)
                return int(names.bisect_left(upper) - names.bisect_left(prefix))
        entries = self.state.entries
        return sum(
            1 for n in self._names_with_prefix(prefix) if self._visible_winner(entries[n])
        )

    def conflicts_of(self, name: str) -> list[Entry]:
        """Every entry of ``name`` still in the replica, winner (largest stamp) first,
        followed by the losers of the last conflict this node saw for the name (kept for
        ``max_recent_conflicts`` names) that are already gone."""
        slot = self.state.entries.get(name, {})
        live = sorted(slot.values(), key=lambda e: e.stamp, reverse=True)
        seen = {e.stamp for e in live}
        for loser in self._recent_conflicts.get(name, ()):
            if loser.stamp not in seen:
                live.append(loser)
                seen.add(loser.stamp)
        return live

    def entries_of(self, owner: NodeId | None) -> list[Entry]:
        """Every live entry owned by ``owner`` (visible or not), sorted by name."""
        return sorted(
            (e for slot in self.state.entries.values() for e in slot.values() if e.owner == owner),
            key=lambda e: (e.name, e.stamp),
        )

    # -- membership input ---------------------------------------------------------------

    def set_failed(self, node_id: NodeId, failed: bool) -> None:
        """Hide (``failed=True``) or show again the entries owned by ``node_id``.

        Emits ``Hidden``/``Shown`` for names whose visible entry changes because of it (and
        ``Registered`` when hiding one reveals a concurrent entry of another owner).
        """
        if failed == (node_id in self._failed):
            return

        def apply() -> None:
            if failed:
                self._failed.add(node_id)
            else:
                self._failed.discard(node_id)

        self._remark({node_id}, apply)

    def set_members(self, members: Iterable[NodeId] | None) -> None:
        """Show only the entries owned by this node or by one of ``members`` (the members
        membership reports alive or suspect); ``None`` (the default) turns the rule off, so
        only :meth:`set_failed` hides entries.

        With the rule on, an entry of an owner this node never knew (one that failed before
        it joined, whose failure push-pull does not carry) is hidden, not taken as live.
        Cluster-scoped entries (owner None) are never hidden. Emits ``Hidden``/``Shown``/
        ``Registered`` like :meth:`set_failed`.
        """
        new = None if members is None else frozenset(members) | {self.node_id}
        old = self._members
        if new == old:
            return
        if old is None or new is None:
            owners: set[NodeId] = {
                e.owner for slot in self.state.entries.values() for e in slot.values()
                if e.owner is not None
            }
        else:
            owners = set(old ^ new)

        def apply() -> None:
            self._members = new

        self._remark(owners, apply)

    def _remark(self, owners: set[NodeId], apply: Callable[[], None]) -> None:
        """Change which owners are hidden (``apply``) and emit the changes it makes to the
        names those ``owners`` hold entries of."""
        if not owners:
            apply()
            return
        names = {e.name for slot in self.state.entries.values() for e in slot.values()
                 if e.owner in owners}
        before = {n: self.lookup(n) for n in names}
        was_hidden = {o: self._owner_hidden(o) for o in owners}
        apply()
        for name in sorted(names):
            old, new = before[name], self.lookup(name)
            if old == new:
                continue
            if old is not None and self._hidden(old):
                self._emit(Hidden(name, old))
            if new is not None:
                shown = new.owner is not None and was_hidden.get(new.owner, False)
                self._emit(Shown(name, new) if shown else Registered(new))

    def reap(self, now: Now, node_id: NodeId) -> None:
        """Delete every entry owned by ``node_id`` (membership reaped it): one delta,
        shipped to peers like a local unregister. Emits ``Unregistered`` for each name whose
        winning entry (visible or hidden) was owned by it."""
        dots = [d for d, n in self.state.dot_names.items()
                if self.state.entries[n][d].owner == node_id]
        if not dots:
            return
        winners = {}
        for dot in dots:
            name = self.state.dot_names[dot]
            win = winner(self.state.entries[name].values())
            if win is not None and win.owner == node_id:
                winners[name] = win
        self.counters.inc("registry.reaped", len(dots))
        self._mutate(remove_delta(dots), reaped=winners)

    def set_peers(self, peers: Iterable[NodeId]) -> None:
        """The live peers to ship deltas to and run anti-entropy with (self is ignored)."""
        self._peers = sorted(set(peers) - {self.node_id})
        live = set(self._peers)
        for peer in [p for p in self._syncs if p not in live]:
            del self._syncs[peer]
            self.counters.inc("registry.sync.abandoned")

    def peer_lost(self, peer: NodeId) -> None:
        """The messenger lost ``peer``: its sync in flight is abandoned."""
        if self._syncs.pop(peer, None) is not None:
            self.counters.inc("registry.sync.abandoned")

    # -- sync -----------------------------------------------------------------------------

    def handle_message(self, now: Now, peer: NodeId, msg: Any) -> None:
        """Take one sync message from ``peer`` (a decoded CBOR value).

        Raises a :class:`~foundation_p2p.errors.WireError` naming the problem if ``msg`` is
        not a valid registry message (counted ``registry.messages.refused``).
        """
        try:
            m = decode_message(msg, max_value_bytes=self.config.max_value_bytes)
        except WireError:
            self.counters.inc("registry.messages.refused")
            raise
        self.counters.inc("registry.messages.received")
        if isinstance(m, Delta):
            incoming = self._admit(m.state)
            self._observe(now, (e for s in incoming.entries.values() for e in s.values()))
            self._after_join(self.state.join(incoming))
        elif isinstance(m, SyncRequest):
            self._answer_request(peer, m)
        elif isinstance(m, SyncReply):
            self._take_reply(now, peer, m)
        elif isinstance(m, SyncCheck):
            self._answer_check(peer, m)
        else:
            self._take_removed(now, peer, m)

    def handle_timer(self, now: Now) -> None:
        """Expire syncs with no answer, and start the next anti-entropy round when due."""
        for peer in [p for p, s in self._syncs.items() if now.mono >= s.deadline]:
            del self._syncs[peer]
            self.counters.inc("registry.sync.timeouts")
        if not self._peers:
            self._next_sync = None
            return
        if self._next_sync is None:
            self._schedule(now)
        elif now.mono >= self._next_sync:
            self._schedule(now)
            self._start_sync(now)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must run next (monotonic seconds), or None.

        ``-inf`` when there are peers but no round is scheduled yet (call it now)."""
        deadlines = [s.deadline for s in self._syncs.values()]
        if self._peers:
            deadlines.append(self._next_sync if self._next_sync is not None else float("-inf"))
        return min(deadlines) if deadlines else None

    def take_messages(self) -> list[tuple[NodeId, Any]]:
        """The messages to send, each ``(peer, CBOR value)``: buffered deltas (one copy per
        peer) then sync messages. Counts their encoded bytes in ``registry.synced_bytes``."""
        if self._deltas:
            values = self._flush_deltas()
            for value, size in values:
                for peer in self._peers:
                    self._outbox.append((peer, value))
                    self.counters.inc("registry.synced_bytes", size)
                    self.counters.inc("registry.delta_bytes", size)
                    self.counters.inc("registry.deltas.sent")
        out, self._outbox = self._outbox, []
        return out

    def take_changes(self) -> list[Change]:
        """The changes since the last call, oldest first."""
        out = list(self._changes)
        self._changes.clear()
        return out

    # -- sizes ----------------------------------------------------------------------------

    def state_bytes(self) -> int:
        """Encoded size of the whole CRDT state, causal context included."""
        state = self.state
        ctx = message_size(context_to_wire(state.ctx))
        return 1 + _array_head_bytes(len(state.dot_names)) + state.entry_bytes() + ctx

    @property
    def peers(self) -> list[NodeId]:
        """The peers as last set, sorted."""
        return list(self._peers)

    @property
    def failed(self) -> frozenset[NodeId]:
        """The owners currently marked failed."""
        return frozenset(self._failed)

    @property
    def members(self) -> frozenset[NodeId] | None:
        """The owners whose entries are shown, as last set by :meth:`set_members` (this node
        included), or None if that rule is off."""
        return self._members

    def syncing_with(self, peer: NodeId) -> bool:
        """True if a sync this node started with ``peer`` is in flight."""
        return peer in self._syncs

    # -- internals: writing -------------------------------------------------------------

    def _write(
        self,
        now: Now,
        name: str,
        value: Any,
        metadata: Mapping[str, Any] | None,
        owner: NodeId | Literal["self"] | None,
        *,
        supersede: bool,
    ) -> Entry:
        limit = self.config.max_value_bytes
        try:
            check_name(name)
            value_size = check_value(value, limit, what=f"value of {name!r}")
            meta = check_metadata(dict(metadata or {}), limit, what=f"metadata of {name!r}")
            meta_size = check_value(meta, limit, what=f"metadata of {name!r}")
        except WireError as exc:
            raise ConfigError(str(exc)) from None
        if owner == "self":
            owner_id: NodeId | None = self.node_id
        elif owner is None or (isinstance(owner, bytes) and len(owner) == 16):
            owner_id = owner
        else:
            raise ConfigError(f"owner: expected 'self', None or a 16-byte node id, got {owner!r}")
        if name not in self.state.entries:
            cfg = self.config
            if len(self.state.dot_names) >= cfg.max_entries:
                raise ConfigError(
                    f"registry: {name!r}: the replica holds max_entries = {cfg.max_entries} "
                    "entries; remove some or raise [registry] max_entries"
                )
            if self.state.live_by_writer.get(self.replica_id, 0) >= cfg.max_entries_per_writer:
                raise ConfigError(
                    f"registry: {name!r}: this node wrote max_entries_per_writer = "
                    f"{cfg.max_entries_per_writer} live entries; remove some or raise "
                    "[registry] max_entries_per_writer"
                )
        stamp = self.clock.tick(now.wall)
        dot = self.state.ctx.next_dot(self.replica_id)
        entry = Entry(name, value, meta, owner_id, stamp)
        old: list[Dot] = []
        if supersede:
            slot = self.state.entries.get(name, {})
            old = [d for d, e in slot.items() if not self._hidden(e)]
        weight = value_size + meta_size + len(name) + _ENTRY_OVERHEAD_BYTES + 24 * len(old)
        self._mutate(add_delta(dot, entry, old), weight=weight)
        if log.isEnabledFor(logging.DEBUG):
            who = owner_id.hex() if owner_id else "cluster"
            log.debug("registered %r (owner %s, %s)", name, who, stamp)
        return entry

    def _refuses(self, name: str, writer: NodeId, live: int, by_writer: dict[NodeId, int]) -> bool:
        """Whether a new entry of ``name`` written by ``writer`` is beyond the entry bounds
        (``live`` entries held, ``by_writer`` per writer, both counting what this message
        already admitted); counted."""
        if name in self.state.entries:
            return False
        cfg = self.config
        if live >= cfg.max_entries:
            self.counters.inc("registry.entries.refused")
            return True
        if by_writer.get(writer, 0) >= cfg.max_entries_per_writer:
            self.counters.inc("registry.entries.refused_writer")
            return True
        return False

    def _admit(self, delta: RegistryState) -> RegistryState:
        """``delta`` without the entries of new names beyond ``max_entries`` or their
        writer's ``max_entries_per_writer`` (the context is kept: see the config)."""
        state = self.state
        live = len(state.dot_names)
        cfg = self.config
        if live + len(delta.dot_names) < cfg.max_entries and all(
            state.live_by_writer.get(w, 0) + n < cfg.max_entries_per_writer
            for w, n in delta.live_by_writer.items()
        ):
            return delta  # the common case: nothing near a bound
        by_writer = dict(state.live_by_writer)
        kept = RegistryState(indexed=False)
        for name, slot in delta.entries.items():
            for dot, entry in slot.items():
                if self._refuses(name, dot[0], live, by_writer):
                    continue
                kept._add_live(name, dot, entry)
                live += 1
                by_writer[dot[0]] = by_writer.get(dot[0], 0) + 1
        kept.ctx = delta.ctx
        return kept

    def _admit_entries(self, entries: list[tuple[Dot, Entry]]) -> list[tuple[Dot, Entry]]:
        """A sync reply's entries without those beyond the entry bounds (as :meth:`_admit`)."""
        state = self.state
        live = len(state.dot_names)
        cfg = self.config
        if live + len(entries) < cfg.max_entries and len(entries) < (
            cfg.max_entries_per_writer - max(state.live_by_writer.values(), default=0)
        ):
            return entries
        by_writer = dict(state.live_by_writer)
        out: list[tuple[Dot, Entry]] = []
        for dot, entry in entries:
            if dot in state.dot_names or state.ctx.contains(dot):
                out.append((dot, entry))  # add_entries skips it anyway
                continue
            if self._refuses(entry.name, dot[0], live, by_writer):
                continue
            out.append((dot, entry))
            live += 1
            by_writer[dot[0]] = by_writer.get(dot[0], 0) + 1
        return out

    def _mutate(
        self,
        delta: RegistryState,
        reaped: Mapping[str, Entry] | None = None,
        *,
        weight: int | None = None,
    ) -> None:
        """Apply a local delta, buffer it for shipping, and emit the changes."""
        self._buffer(delta, weight)
        self._after_join(self.state.join(delta), reaped=reaped)

    def _buffer(self, delta: RegistryState, weight: int | None = None) -> None:
        """Keep ``delta`` for the next flush. Bounded by ``max_delta_buffer`` deltas and
        ``max_delta_buffer_bytes`` (estimated encoded bytes: a removal counts 24 bytes a
        dot); overflow drops the oldest, counted ``registry.deltas.dropped``."""
        if weight is None:
            weight = 16 + 24 * (len(delta.ctx.vv) + len(delta.ctx.cloud))
        config = self.config
        while self._deltas and (
            len(self._deltas) >= config.max_delta_buffer
            or self._delta_bytes + weight > config.max_delta_buffer_bytes
        ):
            _, dropped = self._deltas.popleft()
            self._delta_bytes -= dropped
            self.counters.inc("registry.deltas.dropped")
        self._deltas.append((delta, weight))
        self._delta_bytes += weight

    def _flush_deltas(self) -> list[tuple[Any, int]]:
        """Join the buffered deltas into one and encode it, split by ``max_sync_bytes``."""
        merged = self._deltas.popleft()[0]
        if self._deltas:
            merged = merged.copy()
            while self._deltas:
                merged.join(self._deltas.popleft()[0])
        self._delta_bytes = 0
        if not self._peers:
            # Nobody to ship to: anti-entropy brings the changes to peers that appear later.
            self.counters.inc("registry.deltas.unsent")
            return []
        value = encode_message(Delta(merged))
        size = message_size(value)
        if size <= self.config.max_sync_bytes:
            return [(value, size)]
        # Too big for one message: entries in chunks, each with exactly its own dots as
        # context (they remove nothing), then the removed dots alone (they add nothing).
        out: list[tuple[Any, int]] = []
        budget = self.config.max_sync_bytes - _MESSAGE_OVERHEAD_BYTES
        chunk: list[Any] = []
        chunk_dots: list[Dot] = []
        used = 0
        live = set(merged.dot_names)

        def close() -> None:
            ctx = DotContext(cloud=chunk_dots)
            v = [1, list(chunk), context_to_wire(ctx)]
            out.append((v, message_size(v)))

        for name in merged.sorted_names():
            for dot, entry in sorted(merged.entries[name].items()):
                item = entry_to_wire(dot, entry)
                item_size = message_size(item) + 24  # the entry and its dot in the context
                if chunk and used + item_size > budget:
                    close()
                    chunk, chunk_dots, used = [], [], 0
                chunk.append(item)
                chunk_dots.append(dot)
                used += item_size
        if chunk:
            close()
        removed = sorted(d for d in merged.ctx.dots() if d not in live)  # hash-seed free
        step = max(1, budget // 24)
        for i in range(0, len(removed), step):
            ctx = DotContext(cloud=removed[i : i + step])
            v = [1, [], context_to_wire(ctx)]
            out.append((v, message_size(v)))
        return out

    # -- internals: reading -------------------------------------------------------------

    def _owner_hidden(self, owner: NodeId) -> bool:
        if owner in self._failed:
            return True
        members = self._members
        return members is not None and owner not in members

    def _hidden(self, entry: Entry) -> bool:
        owner = entry.owner
        return owner is not None and self._owner_hidden(owner)

    def _visible_winner(self, slot: Mapping[Dot, Entry]) -> Entry | None:
        hiding = self._members is not None or self._failed
        if len(slot) == 1:
            (only,) = slot.values()
            return None if hiding and self._hidden(only) else only
        if not hiding:
            return winner(slot.values())
        return winner(e for e in slot.values() if not self._hidden(e))

    def _names_with_prefix(self, prefix: str) -> Iterable[str]:
        names = self.state.names
        if not prefix:
            everything: Iterable[str] = names
            return everything
        start: int = names.bisect_left(prefix)
        tail: Iterable[str] = names.islice(start)
        return _takewhile_prefix(tail, prefix)

    def _responsible(self, dot: Dot, entry: Entry) -> NodeId:
        """Who removes ``entry`` when it loses a conflict: its owner (a node id), or for a
        cluster-scoped entry the replica that wrote it (a replica id)."""
        return entry.owner if entry.owner is not None else dot[0]

    # -- internals: changes -------------------------------------------------------------

    def _emit(self, change: Change) -> None:
        if len(self._changes) >= self.config.max_changes:
            self._changes.popleft()
            self.counters.inc("registry.changes.dropped")
        self._changes.append(change)

    def _after_join(self, touched: Touched, reaped: Mapping[str, Entry] | None = None) -> None:
        """Emit the changes of a join and remove the conflict losers this node answers for."""
        retract: list[Dot] = []
        carried: list[tuple[Dot, Entry]] = []
        for name in sorted(touched):
            removed, added = touched[name]
            slot = self.state.entries.get(name, {})
            before_slot = {d: e for d, e in slot.items() if d not in added}
            before_slot.update(removed)
            if reaped is not None and name in reaped:
                self._emit(Unregistered(name, reaped[name]))
                continue
            if len(slot) > 1 and added:
                win_dot, win = max(slot.items(), key=lambda kv: kv[1].stamp)
                fresh = win_dot in added
                losers = [(d, e) for d, e in slot.items() if d != win_dot and (fresh or d in added)]
                if losers:
                    self._record_conflict(name, win, [e for _, e in losers])
                    mine = False
                    for dot, loser in losers:
                        self._emit(Conflict(name, win, loser))
                        if self._responsible(dot, loser) in (self.node_id, self.replica_id):
                            retract.append(dot)
                            mine = True
                    if mine:
                        carried.append((win_dot, win))
                    continue
            old = self._visible_winner(before_slot) if before_slot else None
            new = self._visible_winner(slot) if slot else None
            if old is new or old == new:
                continue
            if new is not None:
                self._emit(Registered(new))
            elif old is not None:
                self._emit(Unregistered(name, old))
        if retract:
            # The winners travel with the retraction (spec/registry.md section 3.4): a
            # replica never joins the loser's removal without the entry it lost to.
            self.counters.inc("registry.conflicts.retracted", len(retract))
            delta = retract_delta(retract, carried)
            weight = 16 + 24 * (len(retract) + len(carried)) + sum(
                _entry_size(dot, entry) for dot, entry in carried
            )
            self._buffer(delta, weight)
            self.state.join(delta)

    def _record_conflict(self, name: str, win: Entry, losers: list[Entry]) -> None:
        self.counters.inc("registry.conflicts", len(losers))
        log.info("conflict on %r: %s wins over %s", name, win.stamp,
                 ", ".join(str(e.stamp) for e in losers))
        recent = self._recent_conflicts.pop(name, [])
        recent = (recent + losers)[-8:]
        self._recent_conflicts[name] = recent
        while len(self._recent_conflicts) > self.config.max_recent_conflicts:
            self._recent_conflicts.popitem(last=False)

    def _observe(self, now: Now, entries: Iterable[Entry]) -> None:
        top: Stamp | None = None
        for entry in entries:
            if top is None or entry.stamp > top:
                top = entry.stamp
        if top is not None:
            self.clock.observe(top, now.wall)

    # -- internals: anti-entropy --------------------------------------------------------

    def _schedule(self, now: Now) -> None:
        j = self.config.sync_jitter
        factor = 1.0 + (self.rng.uniform(-j, j) if j else 0.0)
        self._next_sync = now.mono + self.config.sync_interval_s * factor

    def _send(self, peer: NodeId, msg: Message) -> None:
        value = encode_message(msg)
        size = message_size(value)
        self.counters.inc("registry.synced_bytes", size)
        self.counters.inc("registry.sync_bytes", size)
        self._outbox.append((peer, value))

    def _start_sync(self, now: Now, peer: NodeId | None = None) -> None:
        if peer is None:
            free = [p for p in self._peers if p not in self._syncs]
            if not free:
                self.counters.inc("registry.sync.skipped")
                return
            peer = self.rng.choice(free)
        self._sid = (self._sid + 1) & 0xFFFFFFFF
        self._syncs[peer] = _Sync(self._sid, now.mono + self.config.sync_timeout_s)
        self.counters.inc("registry.sync.started")
        self._send(peer, SyncRequest(self._sid, self.state.ctx, self.state.group_digests()))

    def _finish_sync(self, now: Now, peer: NodeId, sync: _Sync) -> None:
        del self._syncs[peer]
        self.counters.inc("registry.sync.completed")
        self.last_sync_completed = now.mono
        if sync.more and peer in self._peers:
            self.counters.inc("registry.sync.continued")
            self._start_sync(now, peer)

    def _answer_request(self, peer: NodeId, req: SyncRequest) -> None:
        state = self.state
        mine = state.group_digests()
        groups = [g for g in range(GROUPS) if mine[g] != req.group_digests[g]]
        per = BUCKETS_PER_GROUP
        buckets = [b for g in groups for b in range(g * per, (g + 1) * per)]
        ctx_value = context_to_wire(state.ctx)
        budget = self.config.max_sync_bytes - _MESSAGE_OVERHEAD_BYTES - message_size(ctx_value)
        entries: list[tuple[Dot, Entry]] = []
        more = False
        theirs = req.context
        for name in state.names_in_buckets(buckets):
            for dot, entry in sorted(state.entries[name].items()):
                if theirs.contains(dot):
                    continue
                size = message_size(entry_to_wire(dot, entry)) + 2
                if size > budget and entries:
                    more = True
                    break
                budget -= size
                entries.append((dot, entry))
            if more:
                break
        # Bucket digests (for the initiator's removal check) only once the entries are
        # complete, and only as many groups as fit, starting at group sid mod 32 so that
        # successive rounds cover the others. A cut here does not set ``more``: groups
        # may differ for good within one sync (dots only the initiator has), and asking
        # again at once would loop.
        digests: dict[int, int] = {}
        entries_cut = more
        if not more and groups:
            start = req.sid % GROUPS
            for g in sorted(groups, key=lambda g: (g - start) % GROUPS):
                cost = per * _DIGEST_BYTES
                if cost > budget:
                    self.counters.inc("registry.sync.digests_cut")
                    break
                budget -= cost
                for b in range(g * per, (g + 1) * per):
                    digests[b] = state.buckets[b]
        # The context may be merged only if every entry the initiator lacks is here.
        context = None if entries_cut or state.ctx == theirs else state.ctx
        self.counters.inc("registry.sync.answered")
        self._send(peer, SyncReply(req.sid, entries, context, digests, more))

    def _take_reply(self, now: Now, peer: NodeId, rep: SyncReply) -> None:
        sync = self._syncs.get(peer)
        if sync is None or sync.sid != rep.sid:
            self.counters.inc("registry.sync.stale")
            return
        entries = self._admit_entries(rep.entries)
        self._observe(now, (e for _, e in entries))
        self._after_join(self.state.add_entries(entries))
        if rep.context is not None:
            self.state.ctx.merge(rep.context)
        sync.more = rep.more
        # Buckets that still differ: we hold dots the responder lacks or has removed. As
        # many as fit, starting at bucket sid mod 1024 (later rounds check the others);
        # never a reason to ask again at once (see _answer_request).
        dots: list[Dot] = []
        budget = (self.config.max_sync_bytes - _MESSAGE_OVERHEAD_BYTES) // 24
        state = self.state
        start = rep.sid % BUCKETS
        for b in sorted(rep.bucket_digests, key=lambda b: (b - start) % BUCKETS):
            if state.buckets[b] == rep.bucket_digests[b]:
                continue
            found = [
                dot
                for name in sorted(state.bucket_names.get(b, ()))
                for dot in state.entries[name]
                if rep.context is None or rep.context.contains(dot)
            ]
            if dots and len(dots) + len(found) > budget:
                self.counters.inc("registry.sync.checks_cut")
                break
            dots.extend(found[:budget])
        if not dots:
            self._finish_sync(now, peer, sync)
            return
        sync.checked = set(dots)
        sync.deadline = now.mono + self.config.sync_timeout_s
        self._send(peer, SyncCheck(rep.sid, sorted(dots)))

    def _answer_check(self, peer: NodeId, chk: SyncCheck) -> None:
        state = self.state
        gone = [d for d in chk.dots if d not in state.dot_names and state.ctx.contains(d)]
        self._send(peer, SyncRemoved(chk.sid, gone))

    def _take_removed(self, now: Now, peer: NodeId, rem: SyncRemoved) -> None:
        sync = self._syncs.get(peer)
        if sync is None or sync.sid != rem.sid:
            self.counters.inc("registry.sync.stale")
            return
        dots = [d for d in rem.dots if d in sync.checked]
        if len(dots) != len(rem.dots):
            self.counters.inc("registry.sync.unasked_dots", len(rem.dots) - len(dots))
        if dots:
            self._after_join(self.state.join(remove_delta(dots)))
        self._finish_sync(now, peer, sync)


def _entry_size(dot: Dot, entry: Entry) -> int:
    return message_size(entry_to_wire(dot, entry))


def _array_head_bytes(n: int) -> int:
    """Size of a CBOR array head for ``n`` items."""
    return 1 if n < 24 else 2 if n < 256 else 3 if n < 65_536 else 5 if n < 2**32 else 9


def _takewhile_prefix(names: Iterable[str], prefix: str) -> Iterable[str]:
    for name in names:
        if not name.startswith(prefix):
            return
        yield name


__all__ = ["AlreadyRegistered", "RegistryCore"]


def replica_id_for(node_id: NodeId, boot_epoch: int) -> NodeId:
    """The replica id of ``node_id``'s registry in the boot ``boot_epoch``: 16 bytes of
    SHA-256 over a label, the node id and the epoch (``spec/registry.md`` section 3)."""
    digest = hashlib.sha256(
        b"foundation-p2p registry replica\x00" + node_id + boot_epoch.to_bytes(8, "big")
    ).digest()
    return digest[:16]
