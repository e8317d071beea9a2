"""``RegistrySubsystem``: the registry and the supervisor of one node, driven by NodeCore.

``NodeCore`` owns one as ``core.registry`` (the supervisor is also ``core.supervisor``).
It holds the two sans-I/O cores and connects them to the rest of the node, without I/O:

- **Sync.** :class:`~foundation_p2p.registry.core.RegistryCore`'s messages travel over
  the node's :class:`~foundation_p2p.messaging.Messenger` as service 1
  (``SERVICE_REGISTRY``, ``spec/messaging.md``): what ``take_messages`` returns is sent
  after every input; what arrives goes to ``handle_message``; a peer the messenger lost
  (connection ended, unreachable, stream stopped) goes to ``peer_lost``.
- **Membership.** ``NodeCore`` hands every membership event to :meth:`on_member_event`:
  the registry's sync peers (``set_peers``) are the alive and suspect members (observers
  excluded; an observer node syncs with nobody); a member declared failed or left is
  marked failed (``set_failed``: its entries are hidden at read time, and the
  supervisor reads the marks, ``registry.failed``) and unmarked when it joins or comes
  back alive; on top of that the registry shows only the entries of the same live
  members plus this node (``core.set_members``), so an entry of an owner this node never
  knew, such as one that failed before it joined, is hidden too; a reaped member's
  entries are deleted (``reap``).
  The supervisor's live set (``supervisor.set_members``) is the same members plus this
  node.
- **Orphans.** Membership reaps only members it knows, so the entries of an owner that no
  live node knows any more (every node that saw it fail restarted before reaping it) would
  stay in the state for ever, hidden, counting against ``max_entries``. Every tenth of
  membership's ``reap_after_s`` (between 1 s and ``ORPHAN_SCAN_MAX_S``; piggybacked on the
  timer calls membership's probes already cause, no deadline of its own) the node lists the
  owners of its entries that membership does not know at all (not even failed or left); one
  still unknown ``reap_after_s`` after it was first seen so is reaped here as membership
  would have (``reap``: one delta, replicated), counted in ``registry.orphans_reaped``
  (spec/registry.md section 3.5).
- **In use.** A node takes part in anti-entropy only once the registry is in use: its
  replica holds an entry (a local write, or one learnt) or it received a registry
  message. Until then its sync peers are empty, so a cluster that never uses the
  registry (or the supervisor) exchanges nothing; a node joining a cluster that does is
  soon the target of a peer's sync, which activates it, and it then pulls what it lacks.
- **Quorum view.** ``NodeCore`` reports every authenticated gossip packet with
  :meth:`heard` (a direct hearing of its sender) and every registry message does the
  same; the :class:`~foundation_p2p.registry.lease.QuorumView` handed to the supervisor
  holds, per member, the monotonic time it was last heard from directly, and the
  configured member set: the static ``quorum_members`` of the ``[supervisor]`` table if
  set (or the set last given to :meth:`set_configured`), else the **last-known-stable**
  set. That set starts empty (quorum singletons run nowhere yet) and changes only once
  every member in this node's view (membership's members, observers and members that left
  excluded) has been ALIVE, with no membership change, for ``stable_s`` (``[supervisor]``,
  default 10 s): it then becomes the alive members, plus every member of the previous
  set that did not leave gracefully. So a joiner is counted only once the view is whole
  and quiet, a crashed member is never dropped automatically (only a graceful leave or
  :meth:`set_configured` removes one), and while a partition lasts the other side's
  members are failed in the view, so the set does not change on either side (horde#45:
  majorities over different sets need not intersect). Residual risk: a partition that
  outlasts membership's ``reap_after_s`` (the other side's members are then reaped out of
  the view) with members joining one side lets that side adopt a larger set; and a node
  whose view is incomplete yet quiet for ``stable_s`` (e.g. started alone) adopts what it
  sees. ``spec/supervisor.md`` section 5 states both.
- **Outputs.** Registry changes (``take_changes``) go to the supervisor (for name
  conflicts) and to a bounded queue the runtime's ``watch`` reads
  (:meth:`take_changes`; at most ``max_changes``, the oldest dropped and counted in
  ``registry.watch.dropped``). The supervisor's actions (start/stop a service) are
  taken by the driver with ``core.supervisor.take_actions()``.

A call made directly on ``core`` or ``supervisor`` (the leaky facade) leaves messages in
them; :meth:`flush` sends them, and ``NodeCore.take_transport_events`` calls it at every
driver step, so the runtime's ``wake()`` is enough.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Iterable
from typing import Any

from foundation_p2p.addresses import Address, NodeId, short_id
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.events import Command, Event
from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.state import MemberState
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.messaging import SERVICE_REGISTRY, Messenger
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.core import RegistryCore, replica_id_for
from foundation_p2p.registry.events import Change
from foundation_p2p.registry.lease import QuorumView
from foundation_p2p.registry.supervisor import SupervisorConfig, SupervisorCore
from foundation_p2p.wire.frames import Frame

log = logging.getLogger("foundation_p2p.registry")

ORPHAN_SCAN_MAX_S = 60.0
"""The longest period of the orphan scan (see the module docstring)."""
QUORUM_VIEW_INTERVAL_S = 0.5
"""How often the supervisor's quorum view (last direct hearings) is renewed."""
DEFAULT_MAX_CHANGES = 10_000
"""Registry changes kept for the watchers between two ``take_changes`` calls, at most."""

_LIVE_STATES = (MemberState.ALIVE, MemberState.SUSPECT)


class RegistrySubsystem:
    """The registry and the supervisor on a node; see the module docstring."""

    frame_types: tuple[int, ...] = ()

    def __init__(
        self,
        node_id: NodeId,
        *,
        messenger: Messenger,
        membership: SwimMembership,
        config: RegistryConfig,
        supervisor_config: SupervisorConfig,
        counters: Counters,
        rng: random.Random,
        max_changes: int = DEFAULT_MAX_CHANGES,
        boot_epoch: int | None = None,
    ) -> None:
        self.node_id = node_id
        self.messenger = messenger
        self.membership = membership
        self.counters = counters
        # a replica id per boot: the replica restarts empty and counts its dots from 1
        replica = replica_id_for(node_id, boot_epoch) if boot_epoch is not None else None
        self.core = RegistryCore(
            node_id, config=config, counters=counters, rng=rng, replica_id=replica
        )
        """The CRDT registry (``foundation_p2p.registry.core``), public: the leaky facade."""
        self.supervisor = SupervisorCore(
            node_id, self.core, config=supervisor_config, counters=counters, rng=rng
        )
        """The distributed supervisor (``foundation_p2p.registry.supervisor``)."""
        self.max_changes = max_changes
        self._changes: deque[Change] = deque()
        self._last_heard: dict[NodeId, float] = {}
        static = supervisor_config.quorum_members
        self._static: frozenset[NodeId] | None = static if static else None
        self._stable_s = supervisor_config.stable_s
        self._stable_set: frozenset[NodeId] = frozenset()
        self._left: set[NodeId] = set()
        self._view_changed_at: float | None = None
        self._sent_configured: frozenset[NodeId] | None = None
        self._live: frozenset[NodeId] = frozenset()
        self._next_view: float | None = None
        self._active = False
        self._orphans: dict[NodeId, float] = {}
        """Owner of entries here that membership does not know -> when first seen so
        (monotonic); rebuilt at each scan, so at most one per owner in the state."""
        self._next_orphan_scan: float | None = None
        self.core.set_members([node_id])  # widened by every membership change
        messenger.register(SERVICE_REGISTRY, self._on_message, self._on_peer_lost)

    # -- inputs ------------------------------------------------------------------------

    def heard(self, now: Now, sender: NodeId) -> None:
        """``sender`` was heard from directly (an authenticated packet of its own)."""
        if sender in self._live or sender in self.configured:
            self._last_heard[sender] = now.mono

    def on_member_event(self, now: Now, event: Event) -> None:
        """A membership event: update the registry's peers and failed marks and the
        supervisor's live set (see the module docstring)."""
        kind = type(event)
        core = self.core
        if kind is MemberReaped:
            assert isinstance(event, MemberReaped)
            core.reap(now, event.node_id)
            self._last_heard.pop(event.node_id, None)
        elif kind in (MemberJoined, MemberAlive, MemberUpdated, MemberSuspect):
            member = event.member  # type: ignore[attr-defined]
            if member.observer:
                return
            if kind is not MemberSuspect:
                core.set_failed(member.node_id, False)
            if kind is not MemberUpdated:
                self._left.discard(member.node_id)
        elif kind in (MemberFailed, MemberLeft):
            member = event.member  # type: ignore[attr-defined]
            if member.observer:
                return
            core.set_failed(member.node_id, True)
            self.messenger.forget(member.node_id)
            if kind is MemberLeft:
                self._left.add(member.node_id)
        else:
            return
        if kind is not MemberUpdated:
            self._view_changed_at = now.mono  # the stability clock starts again
        self._update_members(now)

    def set_configured(self, now: Now, members: Iterable[NodeId]) -> None:
        """Replace the configured member set quorum mode counts majorities over (an
        explicit reconfiguration: after members were removed for good). From then on the
        set is static: the last-known-stable rule no longer changes it."""
        self._static = frozenset(members)
        self._update_members(now)

    @property
    def configured(self) -> frozenset[NodeId]:
        """The configured member set handed to the supervisor (static or last-known-stable;
        empty until the view was first stable)."""
        return self._static if self._static is not None else self._stable_set

    def _stable_view(self, now: Now) -> frozenset[NodeId] | None:
        """The alive members if every member in the view has been alive, with no
        membership change, for ``stable_s``; else None."""
        if self._view_changed_at is None or now.mono - self._view_changed_at < self._stable_s:
            return None
        alive: set[NodeId] = {self.node_id}
        for m in self.membership.members():
            if m.observer or m.state is MemberState.LEFT:
                continue
            if m.state is not MemberState.ALIVE:
                return None
            alive.add(m.node_id)
        return frozenset(alive)

    def _adopt_stable(self, now: Now) -> None:
        """Apply the last-known-stable rule (see the module docstring)."""
        if self._static is not None or self.membership.local.observer:
            return
        alive = self._stable_view(now)
        if alive is None:
            return
        new = alive | (self._stable_set - self._left)
        if new != self._stable_set:
            log.info(
                "%s: quorum configured set: %d -> %d members (view stable for %.1f s)",
                short_id(self.node_id), len(self._stable_set), len(new), self._stable_s,
            )
            self._stable_set = new
            self.counters.inc("registry.quorum.configured_changes")

    def _update_members(self, now: Now) -> None:
        live = frozenset(
            m.node_id for m in self.membership.members()
            if m.state in _LIVE_STATES and not m.observer
        )
        live |= {self.node_id}
        if live != self._live:
            self._live = live
            self.core.set_members(live)
            self._set_peers()
            self.supervisor.set_members(now, sorted(live))
        self._send_quorum_view(now)
        self.flush(now)

    def _set_peers(self) -> None:
        # an observer (the CLI's members/health) takes no part in the registry's sync, and
        # a node whose registry is not in use yet syncs with nobody (see the docstring)
        if self.membership.local.observer or not self._active:
            self.core.set_peers([])
        else:
            self.core.set_peers(sorted(self._live - {self.node_id}))

    def _activate(self) -> None:
        if not self._active:
            self._active = True
            self.counters.inc("registry.sync.activated")
            self._set_peers()

    def _send_quorum_view(self, now: Now) -> None:
        self._adopt_stable(now)
        configured = self.configured
        changed = configured != self._sent_configured
        self._sent_configured = configured
        self.supervisor.set_quorum_view(
            now,
            QuorumView(
                last_heard=dict(self._last_heard),
                configured=configured if changed else None,
            ),
        )

    def _on_message(self, now: Now, peer: NodeId, message: Any) -> None:
        self._last_heard[peer] = now.mono
        self._activate()
        self.core.handle_message(now, peer, message)  # WireError: counted by the messenger
        self.flush(now)

    def _on_peer_lost(self, peer: NodeId) -> None:
        self.core.peer_lost(peer)

    # -- the Subsystem protocol --------------------------------------------------------

    def handle_message(self, now: Now, sender: NodeId, addr: Address, frame: Frame) -> None:
        raise AssertionError("the registry receives no gossip frames")

    def handle_timer(self, now: Now) -> None:
        """Run the registry's and the supervisor's timers, then send what they produced."""
        self.core.handle_timer(now)
        if self._next_view is None or now.mono >= self._next_view:
            # the lease counts on fresh hearings: the view is renewed on a short period
            self._next_view = now.mono + QUORUM_VIEW_INTERVAL_S
            self._send_quorum_view(now)
        self.supervisor.handle_timer(now)
        if self._next_orphan_scan is None or now.mono >= self._next_orphan_scan:
            reap_after = self.membership.config.reap_after_s
            self._next_orphan_scan = now.mono + max(1.0, min(ORPHAN_SCAN_MAX_S, reap_after / 10))
            self.reap_orphans(now, reap_after)
        self.flush(now)

    def reap_orphans(self, now: Now, reap_after_s: float) -> list[NodeId]:
        """Reap the entries of owners membership has not known for ``reap_after_s`` (see
        the module docstring); the owners reaped. ``handle_timer`` calls it; a direct call
        is a scan too (the leaky facade: ``core.registry.reap_orphans(now, 0)`` reaps every
        unknown owner's entries at once)."""
        known = {m.node_id for m in self.membership.members()}
        known.add(self.node_id)
        unknown = {
            e.owner for slot in self.core.state.entries.values() for e in slot.values()
            if e.owner is not None and e.owner not in known
        }
        since = {owner: self._orphans.get(owner, now.mono) for owner in unknown}
        reaped = sorted(o for o, t in since.items() if now.mono - t >= reap_after_s)
        for owner in reaped:
            log.info(
                "%s: reaping the entries of %s: no member known to this node for %.0f s "
                "(RegistryCore.reap)",
                short_id(self.node_id), short_id(owner), now.mono - since.pop(owner),
            )
            self.core.reap(now, owner)
        if reaped:
            self.counters.inc("registry.orphans_reaped", len(reaped))
        self._orphans = since
        return reaped

    def handle_command(self, now: Now, cmd: Command) -> bool:
        return False

    def next_deadline(self) -> float | None:
        best = self._next_view
        for d in (self.core.next_deadline(), self.supervisor.next_deadline()):
            if d is not None and (best is None or d < best):
                best = d
        return best

    def take_outgoing(self) -> list[tuple[Address | NodeId, Frame]]:
        return []

    def take_events(self) -> list[Event]:
        return []

    # -- outputs -----------------------------------------------------------------------

    def flush(self, now: Now) -> None:
        """Send the registry's messages; pass its changes to the supervisor and the
        watchers (the supervisor's actions wait in ``supervisor.take_actions()``)."""
        core = self.core
        if not self._active and core.state.entries:
            self._activate()  # a local write: ship its delta and start anti-entropy
        send = self.messenger.send
        for peer, message in core.take_messages():
            if not send(now, peer, SERVICE_REGISTRY, message):
                core.peer_lost(peer)
        changes = core.take_changes()
        if changes:
            self.supervisor.registry_changed(now, changes)
            q = self._changes
            for change in changes:
                if len(q) >= self.max_changes:
                    q.popleft()
                    self.counters.inc("registry.watch.dropped")
                q.append(change)
            # the supervisor may have registered or unregistered in answer
            for peer, message in core.take_messages():
                if not send(now, peer, SERVICE_REGISTRY, message):
                    core.peer_lost(peer)

    def release_own(self, now: Now) -> int:
        """Unregister every entry this node owns (a graceful leave, once its services
        handed off): peers drop them now instead of hiding them until membership reaps
        this node (a node that joins later would otherwise see them). Returns how many."""
        core = self.core
        names = [e.name for e in core.entries_of(self.node_id)]
        for name in names:
            core.unregister(now, name)
        if names:
            log.debug("released %d own entries before leaving", len(names))
        self.flush(now)
        return len(names)

    def take_changes(self) -> list[Change]:
        """Registry changes since the last call, oldest first (for the runtime's watch)."""
        if not self._changes:
            return []
        out = list(self._changes)
        self._changes.clear()
        return out

    def describe(self) -> str:
        """One line for logs: live members and the configured set's size."""
        return (
            f"registry on {short_id(self.node_id)}: {len(self._live)} live, "
            f"{len(self.configured)} configured"
        )
