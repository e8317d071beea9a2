"""The driver's handle on a Raft node: inputs in, :class:`Ready` out (etcd raft's RawNode).

The cycle, repeated by the driver (the Trio runtime, the simulator, a test harness)::

    node.tick()                 # every tick of the driver's clock
    node.step(message)          # every message from a peer (decoded)
    node.propose(data)          # application commands
    if node.has_ready():
        rd = node.ready()
        persist rd.snapshot (if any), rd.entries and rd.hard_state   # fsync here
        send rd.messages                                             # only after persisting
        apply rd.snapshot, then rd.committed_entries to the state machine
        serve rd.read_states once their index is applied
        node.advance(rd)

Entries in ``rd.committed_entries`` may also be in ``rd.entries`` (a single-voter group
commits at once): persist first, then apply. ``advance`` applies the configuration
changes among the committed entries (the core's configuration follows the applied log)
and proposes leaving joint consensus when due. One Ready is outstanding at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.confchange import ConfChange, encode_conf_change
from foundation_p2p.consensus.log import RaftLog
from foundation_p2p.consensus.messages import LOCAL_TYPES, M, Message
from foundation_p2p.consensus.raft import (
    ProposalDropped,
    Raft,
    RaftConfig,
    ReadState,
    Role,
    StateRole,
)
from foundation_p2p.consensus.storage import LogStorage
from foundation_p2p.consensus.types import ConfState, Entry, HardState, Kind, SnapshotMeta
from foundation_p2p.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting when it changes (not persisted)."""

    leader: NodeId | None
    role: StateRole


@dataclass(slots=True)
class Ready:
    """What the driver must do now, in this order: persist, send, apply, advance."""

    hard_state: HardState | None = None
    """Persist it (``None``: unchanged since the last Ready)."""
    soft_state: SoftState | None = None
    """Leader or role changed (``None``: unchanged)."""
    snapshot: tuple[SnapshotMeta, bytes] | None = None
    """A snapshot received from the leader: persist it (replacing the log), restore the
    state machine from it."""
    entries: list[Entry] = field(default_factory=list)
    """Entries to persist (overwriting any stored entry at the same index and after)."""
    messages: list[Message] = field(default_factory=list)
    """Messages to send once the above is durable."""
    committed_entries: list[Entry] = field(default_factory=list)
    """Entries to apply to the state machine, in order."""
    read_states: list[ReadState] = field(default_factory=list)
    """Reads that may be served once the applied index reaches their ``index``."""

    term_or_vote_changed: bool = False
    """The hard state's term or vote changed (not only its commit index)."""

    def must_sync(self) -> bool:
        """True if something must be durable before the messages go out and the committed
        entries are applied: entries, a snapshot, or a new term or vote (etcd's
        ``MustSync``). A hard state whose only change is the commit index must still be
        saved, but need not be waited for: the commit index is recovered from the leader,
        and every entry it covers is already durable here (see :meth:`must_save`)."""
        return bool(self.entries) or self.snapshot is not None or self.term_or_vote_changed

    def must_save(self) -> bool:
        """True if something is to be written: :meth:`must_sync`, or a commit-only change."""
        return self.must_sync() or self.hard_state is not None


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's state (``node.consensus.status()`` reports this)."""

    id: NodeId
    term: int
    vote: NodeId | None
    role: StateRole
    leader: NodeId | None
    commit: int
    applied: int
    last_index: int
    voters: frozenset[NodeId]
    learners: frozenset[NodeId]
    voters_outgoing: frozenset[NodeId]
    lead_transferee: NodeId | None
    progress: dict[NodeId, tuple[int, int, str]]
    """Leader only: per peer ``(match, next, state)``."""


class RawNode:
    """A Raft node driven by ``tick``/``step``/``propose`` and ``ready``/``advance``."""

    def __init__(self, config: RaftConfig, storage: LogStorage, rng: random.Random) -> None:
        self.raft = Raft(config, storage, rng)
        self._prev_hard = self.raft.hard_state()
        self._prev_soft = SoftState(self.raft.leader, self.raft.role)
        self._outstanding: Ready | None = None
        self._applying_snapshot: SnapshotMeta | None = None

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        """One tick of the driver's clock."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (pre-vote first if configured)."""
        self.raft.step(Message(M.HUP, sender=self.raft.id))

    def step(self, m: Message) -> None:
        """Take a message from a peer. Local types are refused (``ConfigError``); a peer
        message without a term, or a response from a node outside the group, is dropped."""
        if m.type in LOCAL_TYPES:
            raise ConfigError(f"RawNode.step: {m.type.name} is a local message type")
        if m.term == 0 and m.type not in (M.PROP, M.READ_INDEX):
            self.raft.counters.inc("raft.messages.dropped.no_term")
            return
        if m.to != self.raft.id:
            self.raft.counters.inc("raft.messages.dropped.wrong_receiver")
            return
        if m.type in (M.APP_RESP, M.HEARTBEAT_RESP, M.SNAP_RESP) and m.sender not in self.raft.prs:
            self.raft.counters.inc("raft.messages.ignored.unknown_peer")
            return
        self.raft.step(m)

    def propose(self, data: bytes) -> None:
        """Propose an application command; ``ProposalDropped`` if refused here."""
        r = self.raft
        if r.role is Role.LEADER:
            # the common case, without the intermediate entry (Raft.propose_normal)
            reason = r.propose_normal(data)
            if reason is not None:
                raise ProposalDropped(reason)
            return
        self._propose(Entry(0, 0, Kind.NORMAL, data))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a configuration change; ``ProposalDropped`` if refused here (for
        example while an earlier change is not yet applied)."""
        self._propose(Entry(0, 0, Kind.CONF_CHANGE, encode_conf_change(cc)))

    def _propose(self, entry: Entry) -> None:
        r = self.raft
        if len(entry.data) > r.config.max_entry_bytes:
            r._drop_proposal("too_large")
            raise ProposalDropped("too_large")
        if r.role is Role.LEADER:
            reason = r._leader_propose([entry], defer=True)
            if reason is not None:
                raise ProposalDropped(reason)
            return
        if r.role is not Role.FOLLOWER or r.leader is None:
            r._drop_proposal("no_leader")
            raise ProposalDropped("no_leader")
        if r.config.disable_proposal_forwarding:
            r._drop_proposal("forwarding_disabled")
            raise ProposalDropped("forwarding_disabled")
        r.send(Message(M.PROP, to=r.leader, entries=[entry]))

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; its ``ReadState`` (same ``context``, which must be
        unique among pending reads) comes in a later Ready."""
        self.raft.step(Message(M.READ_INDEX, sender=self.raft.id, context=context))

    def transfer_leader(self, transferee: NodeId) -> None:
        """Ask the leader (this node or, forwarded, the one it knows) to hand over."""
        self.raft.step(Message(M.TRANSFER_LEADER, sender=transferee))

    def report_unreachable(self, peer: NodeId) -> None:
        """The transport failed to deliver to ``peer``."""
        self.raft.step(Message(M.UNREACHABLE, sender=peer))

    def report_snapshot(self, peer: NodeId, failed: bool) -> None:
        """The transport finished (or failed) sending a snapshot to ``peer``."""
        self.raft.step(Message(M.SNAP_STATUS, sender=peer, reject=failed))

    # -- outputs --------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """True if :meth:`ready` would return something to do."""
        r = self.raft
        if self._outstanding is not None:
            return False
        return bool(
            r.appends_pending
            or r.msgs
            or r.read_states
            or r.log.unstable.entries
            or r.log.unstable.snapshot is not None
            or r.log.has_next_committed()
            # hard_state() != _prev_hard and SoftState(...) != _prev_soft, field by field
            # (no frozen objects built on every check)
            or r.term != (hard := self._prev_hard).term
            or r.vote != hard.vote
            or r.log.committed != hard.commit
            or r.leader != (soft := self._prev_soft).leader
            or r.role is not soft.role
        )

    def take_heartbeats(self) -> list[Message]:
        """Remove and return the heartbeats and heartbeat responses waiting in the core's
        outbox, if the core's term is the persisted one; ``[]`` otherwise.

        A driver may send these while an earlier Ready is still being made durable (one
        Ready in flight): they carry no entry, no vote and no state that sync could still
        be writing (their term is the persisted term; a heartbeat's commit index is at most
        the follower's acknowledged match). Without this a slow ``fdatasync`` on the leader
        silences its heartbeats and the followers elect another leader; the Raft thesis
        (section 10.2.1) lets a leader send while its own disk write is in progress, and
        etcd's server sends the leader's messages before saving. Everything else keeps
        waiting for the next Ready.
        """
        r = self.raft
        msgs = r.msgs
        if not msgs or r.term != self._prev_hard.term:
            return []
        beat, answer = M.HEARTBEAT, M.HEARTBEAT_RESP
        beats = [m for m in msgs if m.type is beat or m.type is answer]
        if beats:
            r.msgs = [m for m in msgs if m.type is not beat and m.type is not answer]
        return beats

    def ready(self) -> Ready:
        """The work to do now; call :meth:`advance` with it when done."""
        if self._outstanding is not None:
            raise ConfigError("RawNode.ready: the previous Ready has not been advanced")
        r = self.raft
        r.flush_appends()
        rd = Ready()
        hard = r.hard_state()
        if hard != self._prev_hard:
            rd.hard_state = hard
            prev = self._prev_hard
            rd.term_or_vote_changed = hard.term != prev.term or hard.vote != prev.vote
        soft = SoftState(r.leader, r.role)
        if soft != self._prev_soft:
            rd.soft_state = soft
        unstable = r.log.unstable
        if unstable.snapshot is not None:
            rd.snapshot = (unstable.snapshot, unstable.snapshot_data)
        rd.entries = list(unstable.entries)
        rd.committed_entries = r.log.next_committed(r.config.max_committed_bytes_per_ready)
        if rd.committed_entries and rd.committed_entries[-1].index < r.log.committed:
            # The per-Ready byte bound holds the rest back until the next Ready.
            r.counters.inc("raft.ready.committed_split")
        rd.messages, r.msgs = r.msgs, []
        rd.read_states, r.read_states = r.read_states, []
        if rd.committed_entries and r.role is Role.LEADER:
            r.uncommitted_bytes = max(
                0, r.uncommitted_bytes - sum([len(e.data) for e in rd.committed_entries])
            )
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied ``rd``."""
        if rd is not self._outstanding:
            raise ConfigError("RawNode.advance: not the Ready last returned by ready()")
        self._outstanding = None
        r = self.raft
        rlog: RaftLog = r.log
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.snapshot is not None:
            meta = rd.snapshot[0]
            rlog.unstable.stable_snapshot_to(meta.index)
            if meta.index > rlog.applied:
                rlog.applied = meta.index
        if rd.entries:
            last = rd.entries[-1]
            rlog.unstable.stable_to(last.index, last.term)
        for e in rd.committed_entries:
            if e.kind is Kind.CONF_CHANGE and e.index > rlog.applied:
                rlog.applied_to(e.index)
                r.apply_conf_change_entry(e)
        if rd.committed_entries and rd.committed_entries[-1].index > rlog.applied:
            # (Entries at or below applied were covered by a snapshot installed meanwhile.)
            rlog.applied_to(rd.committed_entries[-1].index)
        r.maybe_leave_joint()

    # -- queries --------------------------------------------------------------------------

    @property
    def conf_state(self) -> ConfState:
        """The configuration as of the applied index (what a snapshot there must hold)."""
        return self.raft.conf

    def status(self) -> Status:
        """The node's term, role, leader, indexes, configuration and (leader) progress."""
        r = self.raft
        progress: dict[NodeId, tuple[int, int, str]] = {}
        if r.role is Role.LEADER:
            progress = {nid: (p.match, p.next, p.state.value) for nid, p in r.prs.items()}
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            role=r.role,
            leader=r.leader,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index(),
            voters=r.conf.voters,
            learners=r.conf.learners,
            voters_outgoing=r.conf.voters_outgoing,
            lead_transferee=r.lead_transferee,
            progress=progress,
        )
