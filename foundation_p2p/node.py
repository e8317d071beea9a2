"""``NodeCore``: the sans-I/O composition of one node.

Two levels, one shape (DESIGN.md, "The core contract"). The driver (the Trio runtime or
the simulator) feeds ``NodeCore`` datagrams, timer firings and application commands, and
takes from it datagrams to send, application events and durable-write intents. Inside,
``NodeCore`` opens and decodes packets (dropping and counting whatever fails) and hands
decoded frames to the subsystem cores registered for their frame types; it gathers what
the subsystems want sent, packs their frames into packets no larger than
``max_packet_bytes``, and seals them.

``NodeCore`` never reads a clock, draws its own randomness, or touches a socket or file:
``now`` is passed in, ``rng`` (protocol choices) and ``secret_bytes`` (key material) are
handed in at construction.

Two kinds of datagram share the socket; ``handle_datagram`` tells them apart by their
first three bytes (``transport.packet.packet_type``): gossip packets (type 1, sealed with
the cluster key) are opened here; connection packets (types 2..4) go to
:attr:`NodeCore.transport`, the node's
:class:`~foundation_p2p.transport.endpoint.TransportEndpoint` (its settings: the
``[transport]`` table of ``config.extra``). ``take_outgoing`` returns both kinds;
``next_deadline`` and ``handle_timer`` cover both. In the simulator's ``messages`` mode,
``take_outgoing_packets`` returns the gossip packets and ``take_outgoing_datagrams`` the
connection datagrams (bytes: connections always run the real path). The endpoint's
events (peers connected, stream data...) are taken with ``core.take_transport_events(now)``
(``core.transport.take_events()`` with the channel streams' data consumed by
:attr:`NodeCore.channels`), not mixed into ``take_events``: stream data must not be
dropped by the event queue's overflow policy, and the endpoint keeps it in the
connections until it is read.

Channels: :attr:`NodeCore.channels` (``foundation_p2p.channels.subsystem``) publishes over
the connections' channel streams and gossips the node's topic set (frame 48).

Messenger: :attr:`NodeCore.messenger` (``foundation_p2p.messaging``, ``spec/messaging.md``)
carries the internal services' messages (registry sync, Raft, coordination) on
unidirectional streams 16 and up; ``take_transport_events`` passes the endpoint's events
through ``channels.filter_events`` then ``messenger.filter_events``, and the messenger's
queues are driven after every connection datagram and timer.

Registry and supervisor: :attr:`NodeCore.registry` (a
:class:`~foundation_p2p.registry.subsystem.RegistrySubsystem`: the CRDT registry
``registry.core`` and the supervisor, also :attr:`NodeCore.supervisor`) syncs over the
messenger (service 1). Every membership event the node emits is also handed to
``registry.on_member_event`` (peers, failed owners, reaping, the supervisor's live set),
and every authenticated gossip packet to ``registry.heard`` (the quorum lease's direct
hearings). The supervisor's actions are taken by the driver with
``core.supervisor.take_actions()``; the registry's changes with
``core.registry.take_changes()``. ``take_transport_events`` also sends what direct calls
on the registry and supervisor cores left behind (``registry.flush``).

Consensus (opt-in, a ``[consensus]`` table): :attr:`NodeCore.consensus` (a
:class:`~foundation_p2p.consensus.subsystem.ConsensusSubsystem`, Raft over messenger
service 2) sees every member event (``consensus.on_membership``) and announces itself in
membership extension key 2. The driver hands in the recovered ``raft_storage`` and
persists the log writes itself: ``consensus.take_log_writes()``, write + sync, then
``consensus.log_writes_done(now, ids)``.

Health: :attr:`NodeCore.health` (a :class:`~foundation_p2p.health.service.HealthService`)
gossips the node's health summary (frame 49, ``spec/health.md``) with a version counter of
its own, and answers ``health.report(now)`` from local state.

Bounded queues, with their overflow policy (each overflow is counted):

- outgoing datagrams: at most ``max_outgoing_datagrams`` between two ``take_outgoing``
  calls; newer frames are dropped (``outgoing.dropped_full``);
- datagrams held until durable writes complete: at most ``max_pending_release``; newer
  ones are dropped (``outgoing.dropped_pending_full``). Connection datagrams are not
  taken from the endpoint at all while a write is pending (they wait inside their
  connections, bounded there), and the endpoint's deadlines are left out of
  ``next_deadline`` meanwhile, so nothing of a connection leaves before the boot writes;
- events: at most ``max_events``; the oldest is dropped (``events.dropped_full``);
- peer addresses learned from packets: at most ``max_tracked_senders``, least recently
  heard forgotten.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Protocol

from foundation_p2p.addresses import Address, NodeId, short_id
from foundation_p2p.channels.core import ChannelsCore
from foundation_p2p.channels.subsystem import ChannelsSubsystem
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus.machines import MachineSet
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.storage import LogStorage
from foundation_p2p.consensus.subsystem import (
    ELIGIBLE_EXTENSION_KEY,
    ConsensusConfig,
    ConsensusSubsystem,
)
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.protection import GossipProtection
from foundation_p2p.durability import BOOT_EPOCH_KEY, IDENTITY_KEY, DurableWrite
from foundation_p2p.errors import ConfigError, StorageError, WireError
from foundation_p2p.events import Command, Event, Started
from foundation_p2p.health.gossip import HealthGossipConfig
from foundation_p2p.health.service import HealthService
from foundation_p2p.health.summary import RaftRole
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
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.messaging import Messenger
from foundation_p2p.probe import StaticProber
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.subsystem import RegistrySubsystem
from foundation_p2p.registry.supervisor import SupervisorConfig, SupervisorCore
from foundation_p2p.transport.connection import Connection
from foundation_p2p.transport.endpoint import EndpointConfig, EndpointEvent, TransportEndpoint
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Frame, decode_frames
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits
from foundation_p2p.wire.packet import GossipPacket

log = logging.getLogger("foundation_p2p.node")

PACKET_OVERHEAD_BYTES = 64
"""Upper bound of a gossip packet's header, ``sealed`` head and AEAD tag (spec/wire.md)."""
_MEMBER_EVENTS = (
    MemberJoined, MemberUpdated, MemberSuspect, MemberAlive, MemberFailed, MemberLeft,
    MemberReaped,
)
ESTIMATED_FRAME_BYTES = 48
"""Size assumed per frame when piggybacking in ``messages`` mode (frames are not encoded)."""


class Subsystem(Protocol):
    """What a subsystem core offers ``NodeCore`` (membership, transport, registry...)."""

    frame_types: tuple[int, ...]
    """Frame types this subsystem receives."""

    def handle_message(self, now: Now, sender: NodeId, addr: Address, frame: Frame) -> None: ...
    def handle_timer(self, now: Now) -> None: ...
    def handle_command(self, now: Now, cmd: Command) -> bool: ...
    def next_deadline(self) -> float | None: ...
    def take_outgoing(self) -> list[tuple[Address | NodeId, Frame]]: ...
    def take_events(self) -> list[Event]: ...


def _array_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x80 | n])
    if n < 0x100:
        return bytes([0x98, n])
    return b"\x99" + n.to_bytes(2, "big")


class NodeCore:
    """One node's protocol state; see the module docstring for the contract."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        now: Now,
        keyring: Keyring,
        stored: Mapping[str, bytes],
        rng: random.Random,
        secret_bytes: Callable[[int], bytes],
        limits: WireLimits | None = None,
        raft_storage: LogStorage | None = None,
    ) -> None:
        """Boot a node.

        ``stored`` is what the driver read from durable storage (keys of
        :mod:`foundation_p2p.durability`). The identity is loaded from it or generated
        from ``secret_bytes``; the boot epoch is ``max(now.wall_ms, last epoch + 1)``, so
        it grows at every start even if the wall clock stepped back. Both are returned as
        durable writes, and every datagram waits until the driver confirms them.

        ``raft_storage``: the Raft log (a recovered ``WalStorage``, or a ``MemoryStorage``);
        used only when the config has a ``[consensus]`` table, and then required.
        """
        self.config = config
        self.rng = rng
        self.limits = limits or DEFAULT_LIMITS
        self.counters = Counters()
        self._write_seq = 0
        self._writes: list[DurableWrite] = []
        self._undone: set[int] = set()

        identity_bytes = stored.get(IDENTITY_KEY)
        new_identity = identity_bytes is None
        if identity_bytes is None:
            self.identity = Identity.generate(secret_bytes)
            self._write(IDENTITY_KEY, self.identity.to_bytes())
        else:
            self.identity = Identity.from_bytes(identity_bytes, source=IDENTITY_KEY)
        last_epoch = 0
        epoch_bytes = stored.get(BOOT_EPOCH_KEY)
        if epoch_bytes is not None:
            try:
                last_epoch = cbor.decode(epoch_bytes)
            except WireError as exc:
                raise StorageError(f"{BOOT_EPOCH_KEY}: unreadable: {exc}") from None
            if type(last_epoch) is not int or not 0 <= last_epoch < (1 << 64) - 1:
                raise StorageError(f"{BOOT_EPOCH_KEY}: not an unsigned integer below 2**64 - 1")
        self.boot_epoch: int = max(now.wall_ms, last_epoch + 1)
        self._write(BOOT_EPOCH_KEY, cbor.encode(self.boot_epoch))
        self.node_id: NodeId = self.identity.node_id

        self.protection = GossipProtection(
            keyring,
            self.node_id,
            self.boot_epoch,
            limits=self.limits,
            max_tracked_senders=config.max_tracked_senders,
            replay_window=config.replay_window,
        )
        self.peer_addresses: OrderedDict[NodeId, Address] = OrderedDict()
        """Where each peer was last heard from (bounded by ``max_tracked_senders``)."""

        self._events: deque[Event] = deque()
        self._outbox: list[tuple[Address, list[Frame]]] = []
        self._outbox_index: dict[Address, int] = {}
        self._outbox_frames = 0
        self._held: deque[tuple[int, Address, list[Frame]]] = deque()
        self._held_frames = 0

        self.subsystems: dict[str, Subsystem] = {}
        """Subsystem cores by name, in the order they are driven."""
        self._routes: dict[int, Subsystem] = {}
        self.prober = StaticProber(config, rng, self.counters)
        """The static prober (pings ``join`` addresses)."""
        self.add_subsystem("probe", self.prober)
        membership_config = MembershipConfig.from_node_config(config)
        self.membership = SwimMembership(
            membership_config,
            identity=self.identity,
            address=config.advertised,
            name=config.name,
            now=now,
            rng=rng,
            counters=self.counters,
            limits=self.limits,
            incarnation=self.boot_epoch,
            max_packet_bytes=config.max_packet_bytes,
        )
        """The SWIM + Lifeguard membership core (``foundation_p2p.membership``)."""
        self.piggyback: Callable[[Address, int, int], list[tuple[Frame, bytes]]] | None = None
        """Tops up every packet with queued membership updates: called with the packet's
        destination, the bytes already used and the frame slots left, returns ``(frame,
        encoded)`` pairs that fit
        (the membership share of the packet; ``user_payload_share`` stays free)."""
        if membership_config.enabled:
            self.add_subsystem("membership", self.membership)
            self.piggyback = self.membership.piggyback

        self.transport = TransportEndpoint(
            self.identity,
            keyring,
            secret_bytes,
            epoch=self.boot_epoch,
            config=EndpointConfig.from_mapping(config.extra.get("transport", {})),
            counters=self.counters,
        )
        """The node's transport connections (:mod:`foundation_p2p.transport.endpoint`)."""

        self.channels = ChannelsSubsystem(
            ChannelsCore(self.node_id, epoch=self.boot_epoch, counters=self.counters),
            transport=self.transport,
            connect=self.connect,
            membership=self.membership,
            rng=rng,
            counters=self.counters,
            max_packet_bytes=config.max_packet_bytes,
        )
        """Publish/subscribe channels over the connections (``spec/channels.md``): the
        topic-set gossip (frame 48) and the channel streams; ``channels.core`` is the
        sans-I/O :class:`~foundation_p2p.channels.core.ChannelsCore`."""
        self.add_subsystem("channels", self.channels)

        self.messenger = Messenger(
            self.node_id,
            transport=self.transport,
            connect=self.connect,
            counters=self.counters,
        )
        """Internal services' messages over the connections (``spec/messaging.md``)."""
        self.registry = RegistrySubsystem(
            self.node_id,
            messenger=self.messenger,
            membership=self.membership,
            config=RegistryConfig.from_node_config(config),
            supervisor_config=SupervisorConfig.from_node_config(config),
            counters=self.counters,
            # its own generator, derived without drawing from ``rng``: the registry's
            # choices (sync ids, jitter) leave the other subsystems' draws as they were
            rng=random.Random(int.from_bytes(self.node_id, "big") ^ self.boot_epoch),
            boot_epoch=self.boot_epoch,
        )
        """The replicated registry and the supervisor (``registry.core`` is the
        :class:`~foundation_p2p.registry.core.RegistryCore`)."""
        self.supervisor: SupervisorCore = self.registry.supervisor
        """The distributed supervisor core (``registry.supervisor``)."""
        self.add_subsystem("registry", self.registry)
        self.health = HealthService(
            self, now=now, config=HealthGossipConfig.from_mapping(config.extra.get("health", {}))
        )
        """Health summaries gossiped (subsystem ``health``, frame 49, ``spec/health.md``) and
        the monitor: ``health.report(now)`` reads local state, no network round trip."""
        consensus_config = ConsensusConfig.from_node_config(config)
        self.consensus: ConsensusSubsystem | None = None
        """The node's Raft member (``spec/consensus-client.md``), if ``[consensus]`` is set.
        Its log writes are not :class:`DurableWrite` s: the driver takes them with
        ``consensus.take_log_writes()`` and confirms them with ``log_writes_done``."""
        if consensus_config is not None:
            if raft_storage is None:
                raise ConfigError("[consensus]: the driver must hand in raft_storage")
            self.consensus = ConsensusSubsystem(
                self.node_id,
                messenger=self.messenger,
                storage=raft_storage,
                config=consensus_config,
                counters=self.counters,
                # its own generator, not drawn from ``rng`` (as the registry's): wiring it
                # leaves every other subsystem's draws as they were
                rng=random.Random(
                    int.from_bytes(self.node_id, "big") ^ self.boot_epoch ^ 0x52414654
                ),
                eligible=not self.membership.local.observer,
                state_machine=MachineSet(),
            )
            self.add_subsystem("consensus", self.consensus)
            self.consensus.on_membership(now, self.membership.members())
            self.health.add_provider(self._raft_health)
        self.health.add_provider(self._registry_health)

        self._emit(Started(self.node_id, self.boot_epoch, new_identity))
        log.debug(
            "boot node=%s epoch=%d new_identity=%s (Identity.%s, writes %s)",
            short_id(self.node_id),
            self.boot_epoch,
            new_identity,
            "generate" if new_identity else "from_bytes",
            [w.key for w in self._writes],
        )

    # -- composition -------------------------------------------------------------------

    def add_subsystem(self, name: str, core: Subsystem) -> None:
        """Register a subsystem core; it receives the frames of its ``frame_types``."""
        if name in self.subsystems:
            raise ValueError(f"subsystem {name!r} is already registered")
        for t in core.frame_types:
            if t in self._routes:
                raise ValueError(f"frame type {t} already routed to another subsystem")
            self._routes[t] = core
        self.subsystems[name] = core

    # -- inputs ------------------------------------------------------------------------

    def handle_datagram(self, now: Now, addr: Address, data: bytes) -> None:
        """A datagram arrived from ``addr``: open, decode, dispatch; drop and count on error.

        Connection packets (an array of 5 or 6 elements, version 1, type 2..4) go to
        ``transport.handle_datagram``; everything else is treated as gossip.
        """
        counters = self.counters
        counters["packets.received"] += 1
        if len(data) > 2 and (data[0] == 0x85 or data[0] == 0x86) and data[1] == 1 \
                and 2 <= data[2] <= 4:
            self.transport.handle_datagram(now.mono, addr, data)
            self.channels.drive_pending(now)  # acknowledgements free stream buffers
            self.messenger.drive_pending(now)
            return
        try:
            header, plaintext = self.protection.open(data)
            decoded = decode_frames(plaintext, self.limits)
        except WireError as exc:
            counters.inc(f"packets.dropped.{exc.code}")
            log.debug("drop datagram from %s: %s: %s", addr, exc.code, exc)
            return
        if decoded.unknown:
            counters.inc("frames.unknown", decoded.unknown)
        # a newer boot of the sender closes our connection to its previous boot at once
        self.transport.observe_peer_epoch(now.mono, header.sender, header.boot_epoch)
        self._dispatch(now, header.sender, addr, decoded.frames)

    def handle_packet(self, now: Now, addr: Address, packet: GossipPacket) -> None:
        """A decoded packet arrived (the simulator's ``messages`` mode; no crypto)."""
        self.counters["packets.received"] += 1
        self.transport.observe_peer_epoch(now.mono, packet.sender, packet.boot_epoch)
        self._dispatch(now, packet.sender, addr, packet.frames)  # type: ignore[arg-type]

    def _dispatch(self, now: Now, sender: NodeId, addr: Address, frames: list[Frame]) -> None:
        if sender == self.node_id:
            self.counters.inc("packets.dropped.from_self")
            return
        peers = self.peer_addresses
        if peers.get(sender) != addr:
            peers[sender] = addr
            if len(peers) > self.config.max_tracked_senders:
                peers.popitem(last=False)
        peers.move_to_end(sender)
        self.registry.heard(now, sender)
        routes = self._routes
        for frame in frames:
            core = routes.get(frame.TYPE)
            if core is None:
                self.counters.inc("frames.unrouted")
                continue
            try:
                core.handle_message(now, sender, addr, frame)
            except WireError as exc:
                # A frame that decoded but that its subsystem refuses on its meaning (a bad
                # signature, an impossible value): dropped and counted like a bad packet.
                self.counters.inc(f"frames.dropped.{exc.code}")
                log.debug("drop frame %s from %s: %s: %s", frame.TYPE, addr, exc.code, exc)
        self._collect(now)

    def handle_timer(self, now: Now) -> None:
        """Time has reached (or passed) ``next_deadline()``: let every subsystem act."""
        for core in self.subsystems.values():
            core.handle_timer(now)
        self.transport.handle_timer(now.mono)
        self.channels.drive_pending(now)
        self.messenger.drive_pending(now)
        self._collect(now)

    def handle_command(self, now: Now, cmd: Command) -> None:
        """A command from the application; ``ValueError`` if no subsystem takes it."""
        handled = False
        for core in self.subsystems.values():
            handled = core.handle_command(now, cmd) or handled
        if not handled:
            raise ValueError(f"no subsystem handles {type(cmd).__name__}")
        self._collect(now)

    def next_deadline(self) -> float | None:
        """The earliest monotonic time at which ``handle_timer`` must be called."""
        best: float | None = None
        for core in self.subsystems.values():
            d = core.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        if not self._undone:  # connection datagrams wait for the durable writes anyway
            d = self.transport.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        return best

    def connect(self, now: Now, node_id: NodeId, addr: Address | None = None) -> Connection:
        """Dial a peer (or return its connection): ``transport.connect(now.mono, node_id,
        addr)``, where ``addr`` defaults to the membership's address of the member, else
        the address the node last heard it from (not needed when a connection exists).
        ``ConfigError`` if none is known.
        """
        existing = self.transport.connection(node_id)
        if addr is None and existing is not None and existing.state_name in (
            "handshake", "established"
        ):
            return existing
        if addr is None:
            member = self.membership.member(node_id)
            found = member.address if member is not None else self.peer_addresses.get(node_id)
            if found is None:
                raise ConfigError(f"connect: no known address for node {node_id.hex()}")
            addr = found
        return self.transport.connect(now.mono, node_id, addr)

    # -- outputs -----------------------------------------------------------------------

    def take_transport_events(self, now: Now) -> list[EndpointEvent]:
        """The endpoint's events without the channel and messenger stream data:
        ``transport.take_events()`` passed through ``channels.filter_events`` then
        ``messenger.filter_events`` (which consume the data of the peers' channel and
        service streams and react to connections coming and going). Drivers call this
        instead of ``transport.take_events()``, after every step: it also sends what
        direct calls on the registry and supervisor cores left behind
        (``registry.flush(now)``)."""
        self.registry.flush(now)
        events = self.transport.take_events()
        if not events:
            return events
        return self.messenger.filter_events(now, self.channels.filter_events(now, events))

    def take_outgoing(self) -> list[tuple[Address, bytes]]:
        """Sealed datagrams to send now: gossip, then the connections' (packets held for
        durable writes stay held)."""
        if not self._outbox:
            return self.take_outgoing_datagrams()
        out: list[tuple[Address, bytes]] = []
        seal = self.protection.seal
        budget = self.config.max_packet_bytes - PACKET_OVERHEAD_BYTES
        memo: dict[int, bytes] = {}  # id(frame) -> encoding; the outbox keeps frames alive
        for addr, frames in self._drain_outbox():
            for plaintext in self._pack(addr, frames, budget, memo):
                out.append((addr, seal(plaintext)))
        out.extend(self.take_outgoing_datagrams())
        return out

    def take_outgoing_datagrams(self) -> list[tuple[Address, bytes]]:
        """The connections' datagrams to send now (``transport.take_datagrams()``), or
        none while a durable write is pending. ``take_outgoing`` includes them; the
        simulator's ``messages`` mode sends them as bytes beside the decoded packets."""
        if self._undone:
            return []
        return self.transport.take_datagrams()

    def take_outgoing_packets(self) -> list[tuple[Address, GossipPacket]]:
        """Decoded packets to deliver (the simulator's ``messages`` mode; no sealing).

        Frames for one destination are grouped as ``take_outgoing`` would, at most
        ``limits.max_frames`` per packet; sizes are not computed in this mode.
        """
        if not self._outbox:
            return []
        out: list[tuple[Address, GossipPacket]] = []
        step = self.limits.max_frames
        fill = self.piggyback
        for addr, frames in self._drain_outbox():
            for i in range(0, len(frames), step):
                group = frames[i : i + step]
                if fill is not None:
                    extra = fill(addr, ESTIMATED_FRAME_BYTES * len(group), step - len(group))
                    if extra:
                        group = group + [f for f, _ in extra]
                out.append((addr, GossipPacket(self.node_id, self.boot_epoch, tuple(group))))
        return out

    def take_events(self) -> list[Event]:
        """Events for the application, oldest first."""
        if not self._events:
            return []
        events = list(self._events)
        self._events.clear()
        return events

    def take_writes(self) -> list[DurableWrite]:
        """Writes the driver must make durable, then confirm with ``writes_done``."""
        if not self._writes:
            return []
        writes, self._writes = self._writes, []
        return writes

    def writes_done(self, now: Now, ids: list[int]) -> None:
        """The driver made these writes durable; release what waited for them."""
        self._undone.difference_update(ids)
        lowest = min(self._undone) if self._undone else None
        while self._held and (lowest is None or self._held[0][0] < lowest):
            _, addr, frames = self._held.popleft()
            self._held_frames -= len(frames)
            self._queue_frames(addr, frames)

    @property
    def pending_writes(self) -> int:
        """How many durable writes are issued but not yet confirmed."""
        return len(self._undone)

    # -- internals ---------------------------------------------------------------------

    def _write(self, key: str, data: bytes) -> None:
        self._write_seq += 1
        self._writes.append(DurableWrite(self._write_seq, key, data))
        self._undone.add(self._write_seq)

    def _emit(self, event: Event) -> None:
        if len(self._events) >= self.config.max_events:
            self._events.popleft()
            self.counters.inc("events.dropped_full")
        self._events.append(event)

    def _raft_health(self, now: Now) -> dict[str, int]:
        """The health summary's Raft figures: the role, and ``raft_lag`` = entries
        committed here but not yet applied, or on a leader the slowest voter's distance
        from the log's end (``last_index - match``)."""
        sub = self.consensus
        raw = sub.raw if sub is not None else None
        if raw is None:
            return {"raft_role": RaftRole.NONE, "raft_lag": 0}
        r = raw.raft
        lag = r.log.committed - r.log.applied
        if r.role is StateRole.LEADER:
            role = RaftRole.LEADER
            last = r.log.last_index()
            lag = max([lag] + [last - p.match for v, p in r.prs.items() if v in r.conf.voters])
        elif r.role in (StateRole.CANDIDATE, StateRole.PRE_CANDIDATE):
            role = RaftRole.CANDIDATE
        elif r.id in r.conf.learners:
            role = RaftRole.LEARNER
        else:
            role = RaftRole.FOLLOWER
        return {"raft_role": role, "raft_lag": max(0, lag)}

    def _registry_health(self, now: Now) -> dict[str, int]:
        """The health summary's ``registry_lag_ms``: the age of this node's last completed
        anti-entropy round (0 before the registry syncs with anyone)."""
        core = self.registry.core
        done = core.last_sync_completed
        if done is None or not core.peers:  # nothing synced yet, or nobody to sync with
            return {"registry_lag_ms": 0}
        return {"registry_lag_ms": int(max(0.0, now.mono - done) * 1000)}

    def _collect(self, now: Now) -> None:
        peers = self.peer_addresses
        for core in self.subsystems.values():
            outgoing = core.take_outgoing()
            if outgoing:
                if self._undone:
                    for dest, frame in outgoing:
                        addr = dest if not isinstance(dest, bytes) else peers.get(dest)
                        if addr is None:
                            self.counters.inc("outgoing.dropped_no_address")
                            continue
                        self._send_frame(addr, frame)
                else:
                    self._queue_outgoing(outgoing)
            for event in core.take_events():
                self._emit(event)
                if type(event) in _MEMBER_EVENTS:
                    self.registry.on_member_event(now, event)
                    if self.consensus is not None:
                        self.consensus.on_membership(now, self.membership.members())
        if self.consensus is not None:
            # announce eligibility, then "in the group" (membership extension key 2)
            value = self.consensus.take_extension_change()
            if value is not None and not self.membership.leaving:
                # once leaving, the LEFT announcement is final: no extension after it
                self.membership.set_extension(now, ELIGIBLE_EXTENSION_KEY, value)

    def _queue_outgoing(self, outgoing: list[tuple[Address | NodeId, Frame]]) -> None:
        """:meth:`_queue_frames` for a subsystem's whole output, one frame at a time."""
        peers = self.peer_addresses
        index = self._outbox_index
        outbox = self._outbox
        limit = self.config.max_outgoing_datagrams
        queued = 0
        for dest, frame in outgoing:
            if isinstance(dest, bytes):
                found = peers.get(dest)
                if found is None:
                    self.counters.inc("outgoing.dropped_no_address")
                    continue
                addr: Address = found
            else:
                addr = dest
            i = index.get(addr)
            if i is None:
                if len(outbox) >= limit:
                    self.counters.inc("outgoing.dropped_full")
                    continue
                index[addr] = len(outbox)
                outbox.append((addr, [frame]))
            else:
                outbox[i][1].append(frame)
            queued += 1
        self._outbox_frames += queued

    def _send_frame(self, addr: Address, frame: Frame) -> None:
        if self._undone:
            barrier = max(self._undone)
            if self._held and self._held[-1][0] == barrier and self._held[-1][1] == addr:
                self._held[-1][2].append(frame)
            elif len(self._held) >= self.config.max_pending_release:
                self.counters.inc("outgoing.dropped_pending_full")
                return
            else:
                self._held.append((barrier, addr, [frame]))
            self._held_frames += 1
            return
        self._queue_frames(addr, [frame])

    def _queue_frames(self, addr: Address, frames: list[Frame]) -> None:
        index = self._outbox_index.get(addr)
        if index is None:
            if len(self._outbox) >= self.config.max_outgoing_datagrams:
                self.counters.inc("outgoing.dropped_full", len(frames))
                return
            self._outbox_index[addr] = len(self._outbox)
            self._outbox.append((addr, list(frames)))
        else:
            self._outbox[index][1].extend(frames)
        self._outbox_frames += len(frames)

    def _drain_outbox(self) -> list[tuple[Address, list[Frame]]]:
        outbox, self._outbox = self._outbox, []
        self._outbox_index.clear()
        self._outbox_frames = 0
        return outbox

    def _pack(
        self, addr: Address, frames: list[Frame], budget: int, memo: dict[int, bytes]
    ) -> list[bytes]:
        """Pack frames into plaintexts of at most ``budget`` bytes, in order.

        ``memo`` holds the encodings of frames already encoded in this ``take_outgoing``
        call, keyed by object identity: a gossip round hands the same frame object to
        several destinations, and it is encoded once.
        """
        packets: list[bytes] = []
        chunk: list[bytes] = []
        size = 3
        max_frames = self.limits.max_frames
        for frame in frames:
            encoded = memo.get(id(frame))
            if encoded is None:
                encoded = memo[id(frame)] = cbor.encode(frame.to_cbor())
            if len(encoded) + 3 > budget:
                self.counters.inc("outgoing.dropped_oversize_frame")
                log.warning("dropping a %d-byte frame larger than a packet", len(encoded))
                continue
            if chunk and (size + len(encoded) > budget or len(chunk) >= max_frames):
                packets.append(self._finish(addr, chunk, size))
                chunk, size = [], 3
            chunk.append(encoded)
            size += len(encoded)
        if chunk:
            packets.append(self._finish(addr, chunk, size))
        return packets

    def _finish(self, addr: Address, chunk: list[bytes], size: int) -> bytes:
        """One packet's plaintext: its frames, topped up by :attr:`piggyback`."""
        fill = self.piggyback
        if fill is not None:
            for _, encoded in fill(addr, size - 3, self.limits.max_frames - len(chunk)):
                chunk.append(encoded)
        return _array_head(len(chunk)) + b"".join(chunk)
