"""The Raft state machine (sans-I/O, etcd raft's shape): every state and transition is here.

:class:`Raft` takes ticks and messages and produces messages, entries to persist and
committed entries; :class:`~foundation_p2p.consensus.rawnode.RawNode` wraps it in the
``ready()``/``advance()`` cycle. Nothing here reads a clock, draws randomness of its own
(the election timeout comes from the ``random.Random`` handed in) or does I/O.

The roles and what moves between them (Raft Figure 2 and Ongaro's thesis):

- *follower*: answers appends, heartbeats and votes; forwards proposals and reads to the
  leader; after ``randomized_election_timeout`` ticks without hearing from a leader, starts
  a pre-vote (or an election when pre-vote is off).
- *pre-candidate* (thesis 9.6): asks the voters whether they *would* vote for it in the
  next term, without anyone changing term; only with a majority of yes does it campaign.
  A partitioned node that rejoins thus cannot force the cluster into a new term.
- *candidate*: votes for itself in a new term and asks for votes; a majority makes it
  leader, a valid leader's message makes it a follower.
- *leader*: appends an empty entry of its term (section 8), replicates with per-follower
  progress (probe / replicate with pipelining / snapshot in chunks), commits an entry of its
  own term once a quorum stores it (5.4.2), serves ReadIndex reads, hands leadership over on
  request (TimeoutNow), and with check-quorum steps down when a quorum was not heard from
  within an election timeout.

Bounds (each stated in :class:`RaftConfig`, each overflow counted in ``counters``):
in-flight appends per follower (messages and bytes), uncommitted bytes at the leader,
bytes per append and per Ready of committed entries, the outbox of messages not yet taken
by ``ready()``, pending ReadIndex requests, read states not yet taken, snapshot chunk size
and window, the largest snapshot a follower accepts.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from foundation_p2p.addresses import NodeId, short_id
from foundation_p2p.consensus.confchange import (
    ConfChange,
    ConfChangeError,
    apply_conf_change,
    decode_conf_change,
    encode_conf_change,
)
from foundation_p2p.consensus.log import RaftLog
from foundation_p2p.consensus.messages import M, Message
from foundation_p2p.consensus.progress import Inflights, Progress, PState
from foundation_p2p.consensus.quorum import VoteResult, all_voters, committed_index, vote_result
from foundation_p2p.consensus.readonly import ReadOnly
from foundation_p2p.consensus.storage import LogCompacted, LogStorage, LogUnavailable
from foundation_p2p.consensus.types import (
    ConfState,
    Entry,
    HardState,
    Kind,
    SnapshotMeta,
    make_entry,
)
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, FoundationError, WireError

log = logging.getLogger("foundation_p2p.consensus")

CAMPAIGN_TRANSFER = b"transfer"
"""The ``context`` of a vote request caused by a leader transfer (it bypasses the lease)."""


class StateRole(Enum):
    """A node's role in its current term."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Role:
    """The :class:`StateRole` members as plain class attributes (``Role.LEADER is
    StateRole.LEADER``). Reading a member off an enum class goes through the enum
    metaclass's ``__getattr__`` hook on Python 3.11, several times slower; hot paths
    use these."""

    FOLLOWER: Final = StateRole.FOLLOWER
    PRE_CANDIDATE: Final = StateRole.PRE_CANDIDATE
    CANDIDATE: Final = StateRole.CANDIDATE
    LEADER: Final = StateRole.LEADER


class ReadOnlyOption(Enum):
    """How the leader confirms a read index (see :mod:`~foundation_p2p.consensus.readonly`)."""

    SAFE = "safe"
    """A heartbeat round per batch of requests (ReadIndex, Raft 6.4)."""
    LEASE_BASED = "lease"
    """No round: relies on check-quorum and bounded clock-rate drift."""


class ProposalDropped(FoundationError):
    """A proposal (entry, conf change, read or transfer) was refused; the message says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"proposal dropped: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Settings of one Raft node. Ticks are the driver's unit of time."""

    id: NodeId
    election_tick: int = 10
    """Ticks without a leader before a follower campaigns (randomized in
    ``[election_tick, 2 * election_tick)``); also the check-quorum and lease period."""
    heartbeat_tick: int = 1
    """Ticks between leader heartbeats (must be below ``election_tick``)."""
    pre_vote: bool = True
    check_quorum: bool = True
    read_only: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False
    max_size_per_msg: int = 1 << 20
    """Most entry bytes in one append (at least one entry is always sent)."""
    max_entry_bytes: int = 1 << 20
    """Largest command a proposal may carry (``raft.proposals.dropped.too_large``); keeps
    every append within ``max_size_per_msg`` plus one entry, and within the transport's
    message bound."""
    max_inflight_msgs: int = 256
    """Most appends in flight to one follower in the replicate state."""
    max_inflight_bytes: int = 32 << 20
    """Most entry bytes in flight to one follower (0 = no byte bound)."""
    max_uncommitted_bytes: int = 64 << 20
    """Most bytes of entries the leader holds appended but not committed (0 = no bound);
    a proposal past it is refused (``raft.proposals.dropped.uncommitted_full``)."""
    max_committed_bytes_per_ready: int = 64 << 20
    """Most bytes of committed entries in one Ready (at least one entry)."""
    max_outbox_messages: int = 65_536
    """Most messages waiting for ``ready()``; more are dropped (Raft tolerates loss)."""
    max_pending_reads: int = 4096
    """Most ReadIndex requests pending at the leader (and waiting for its first commit)."""
    max_read_states: int = 4096
    """Most read states waiting for ``ready()``; more are dropped (the client retries)."""
    max_snapshot_chunk_bytes: int = 256 << 10
    """Size of one snapshot chunk."""
    snapshot_window_chunks: int = 4
    """Chunks sent ahead of the follower's acknowledgement."""
    snapshot_resend_heartbeats: int = 3
    """Heartbeat intervals without a chunk acknowledgement before resending."""
    max_snapshot_bytes: int = 1 << 30
    """The largest snapshot a follower accepts (a bigger one is refused and counted)."""

    def __post_init__(self) -> None:
        if type(self.id) is not bytes or len(self.id) != 16:
            raise ConfigError("RaftConfig.id: must be a 16-byte node id")
        for name in (
            "election_tick",
            "heartbeat_tick",
            "max_size_per_msg",
            "max_entry_bytes",
            "max_inflight_msgs",
            "max_outbox_messages",
            "max_pending_reads",
            "max_read_states",
            "max_committed_bytes_per_ready",
            "max_snapshot_chunk_bytes",
            "snapshot_window_chunks",
            "snapshot_resend_heartbeats",
            "max_snapshot_bytes",
        ):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(f"RaftConfig.{name}: must be a positive integer, got {value!r}")
        for name in ("max_inflight_bytes", "max_uncommitted_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigError(f"RaftConfig.{name}: must be >= 0, got {value!r}")
        if self.heartbeat_tick >= self.election_tick:
            raise ConfigError(
                "RaftConfig.heartbeat_tick: must be below election_tick "
                f"({self.heartbeat_tick} >= {self.election_tick})"
            )
        if self.read_only is ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ConfigError(
                "RaftConfig.read_only: lease-based reads require check_quorum=True"
            )
        if self.read_only is ReadOnlyOption.LEASE_BASED and self.election_tick < 4:
            raise ConfigError(
                "RaftConfig.election_tick: lease-based reads need at least 4 (the lease is "
                "election_tick - 2 ticks)"
            )


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read request answered: serve ``context``'s read once ``index`` is applied."""

    index: int
    context: bytes


@dataclass(slots=True)
class _SnapshotReceive:
    """A follower's snapshot being received in chunks (at most ``max_snapshot_bytes``)."""

    meta: SnapshotMeta
    term: int
    total: int
    buffer: bytearray = field(default_factory=bytearray)


class Raft:
    """One node's Raft state machine. Drive it through :class:`RawNode` unless testing."""

    def __init__(self, config: RaftConfig, storage: LogStorage, rng: random.Random) -> None:
        self.config = config
        self.id = config.id
        self.rng = rng
        self.log = RaftLog(storage)
        self.counters = Counters()
        hard, conf = storage.initial_state()
        self.term = hard.term
        self.vote: NodeId | None = hard.vote
        self.conf = conf
        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        self.prs: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly(config.max_pending_reads)
        self.pending_read_index_messages: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee: NodeId | None = None
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0
        self.appends_pending = False
        self.ticks = 0
        """Ticks since this node started (the lease's clock)."""
        self.lease_forfeited = False
        """Leader: a leader transfer was started; no lease reads for the rest of the term."""
        self.lease_acks: dict[NodeId, int] = {}
        """Leader, lease reads: per peer, the latest tick at which a heartbeat was sent
        that the peer acknowledged."""
        self._snap_recv: _SnapshotReceive | None = None
        self._snap_cache: tuple[SnapshotMeta, bytes] | None = None
        if hard.commit:
            if not self.log.committed <= hard.commit <= self.log.last_index():
                raise ConfigError(
                    f"hard state commit {hard.commit} is outside "
                    f"[{self.log.committed}, {self.log.last_index()}] of the stored log"
                )
            self.log.commit_to(hard.commit)
        self._rebuild_progress()
        self.become_follower(self.term, None)

    # ------------------------------------------------------------------------------------
    # Small queries

    def hard_state(self) -> HardState:
        """The state to persist (Figure 2's persistent state, plus the commit index)."""
        return HardState(self.term, self.vote, self.log.committed)

    def promotable(self) -> bool:
        """True if this node may campaign (it is a voter and not installing a snapshot)."""
        return self.id in all_voters(self.conf) and self.log.unstable.snapshot is None

    def _voter_matches(self) -> dict[NodeId, int]:
        return {nid: pr.match for nid, pr in self.prs.items()}

    def _peers(self) -> list[NodeId]:
        return [nid for nid in self.prs if nid != self.id]

    # ------------------------------------------------------------------------------------
    # Sending

    def send(self, m: Message) -> None:
        """Queue ``m`` for the next Ready (bounded by ``max_outbox_messages``)."""
        m.sender = self.id
        if m.type in (M.VOTE, M.PRE_VOTE, M.VOTE_RESP, M.PRE_VOTE_RESP):
            if m.term == 0:
                raise RuntimeError(f"{m.type.name} must carry a term")
        elif m.type not in (M.PROP, M.READ_INDEX):
            # Proposals and reads forwarded to the leader travel without a term (they are
            # requests, not Raft state); everything else carries ours.
            m.term = self.term
        if len(self.msgs) >= self.config.max_outbox_messages:
            self.counters.inc("raft.messages.dropped.outbox_full")
            return
        self.msgs.append(m)

    # ------------------------------------------------------------------------------------
    # Role changes

    def _reset_randomized_election_timeout(self) -> None:
        tick = self.config.election_tick
        self.randomized_election_timeout = tick + self.rng.randrange(tick)

    def _rebuild_progress(self) -> None:
        last = self.log.last_index()
        old = self.prs
        self.prs = {}
        for nid in sorted(self.conf.voters | self.conf.voters_outgoing | self.conf.learners):
            pr = old.get(nid)
            if pr is None:
                pr = Progress(
                    match=0,
                    next=last + 1,
                    inflights=Inflights(
                        self.config.max_inflight_msgs, self.config.max_inflight_bytes
                    ),
                )
                if nid == self.id:
                    pr.match = last
            pr.is_learner = nid in self.conf.learners
            self.prs[nid] = pr

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.lead_transferee = None
        self.votes = {}
        self.prs = {}
        self._rebuild_progress()
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0
        self.lease_acks = {}
        self.lease_forfeited = False
        self.read_only.reset()
        self._snap_cache = None

    def become_follower(self, term: int, leader: NodeId | None) -> None:
        self._reset(term)
        self.leader = leader
        self.role = Role.FOLLOWER
        log.debug("%s became follower at term %d", short_id(self.id), self.term)

    def become_pre_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise RuntimeError("invalid transition leader -> pre-candidate")
        # A pre-vote changes neither term nor vote (thesis 9.6).
        self.votes = {}
        self.leader = None
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise RuntimeError("invalid transition leader -> candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self.counters.inc("raft.elections.started")

    def become_leader(self) -> None:
        if self.role is Role.FOLLOWER:
            raise RuntimeError("invalid transition follower -> leader")
        self._reset(self.term)
        self.leader = self.id
        self.role = Role.LEADER
        self.prs[self.id].become_replicate()
        # Conf changes in the uncommitted tail may exist; a new one waits until they apply.
        self.pending_conf_index = self.log.last_index()
        self.counters.inc("raft.elections.won")
        # Section 8: a no-op entry of the new term, so that earlier entries commit (5.4.2).
        self._append_entries([Entry(0, 0, Kind.NOOP)], exempt=True)
        log.info("%s became leader at term %d", short_id(self.id), self.term)

    # ------------------------------------------------------------------------------------
    # Time

    def tick(self) -> None:
        """Advance time by one tick."""
        self.ticks += 1
        if self.role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(M.HUP, sender=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum:
                self.step(Message(M.CHECK_QUORUM, sender=self.id))
            if self.role is Role.LEADER and self.lead_transferee is not None:
                # A transfer must finish within one election timeout.
                self.counters.inc("raft.transfers.aborted.timeout")
                self.lead_transferee = None
        if self.role is not Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self.step(Message(M.BEAT, sender=self.id))

    # ------------------------------------------------------------------------------------
    # Elections

    def _has_unapplied_conf_change(self) -> bool:
        lo, hi = self.log.applied + 1, self.log.committed + 1
        if lo >= hi:
            return False
        try:
            entries = self.log.slice(lo, hi)
        except (LogCompacted, LogUnavailable):
            return False
        return any(e.kind is Kind.CONF_CHANGE for e in entries)

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER:
            return
        if not self.promotable():
            self.counters.inc("raft.elections.refused.not_promotable")
            return
        if self._has_unapplied_conf_change():
            # The configuration to campaign in is not known until those entries apply.
            self.counters.inc("raft.elections.refused.unapplied_conf_change")
            return
        if self.config.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self.become_pre_candidate()
            vote_type, term = M.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = M.VOTE, self.term
        if self._poll(self.id, True) is VoteResult.WON:
            # A single-voter group wins at once.
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self.become_leader()
            return
        last, last_term = self.log.last_index(), self.log.last_term()
        for nid in sorted(all_voters(self.conf)):
            if nid == self.id:
                continue
            self.send(
                Message(
                    vote_type,
                    to=nid,
                    term=term,
                    index=last,
                    log_term=last_term,
                    context=CAMPAIGN_TRANSFER if transfer else b"",
                )
            )

    def _poll(self, nid: NodeId, granted: bool) -> VoteResult:
        self.votes.setdefault(nid, granted)
        return vote_result(self.conf, self.votes)

    # ------------------------------------------------------------------------------------
    # Step: the entry point of every message

    def step(self, m: Message) -> None:
        """Take one message (from a peer, or a local input such as ``HUP``)."""
        if m.term == 0:
            pass  # local message, or a forwarded proposal / read
        elif m.term > self.term:
            if m.type in (M.VOTE, M.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = self.config.check_quorum and (
                    (self.leader is not None and self.election_elapsed < self.config.election_tick)
                    or (
                        # Lease reads: a node may have acknowledged a leader's heartbeat
                        # just before it restarted, so it keeps that promise for its
                        # first election timeout too.
                        self.config.read_only is ReadOnlyOption.LEASE_BASED
                        and self.ticks < self.config.election_tick
                    )
                )
                if not force and in_lease:
                    # We heard from a leader within the minimum election timeout: do not
                    # let a node that cannot hear it disrupt the group (thesis 4.2.3).
                    self.counters.inc("raft.votes.ignored.in_lease")
                    return
            if m.type is M.PRE_VOTE:
                pass  # never change term for a pre-vote
            elif m.type is M.PRE_VOTE_RESP and not m.reject:
                pass  # a granted pre-vote is answered at the future term; keep ours
            elif m.type in (M.APP, M.HEARTBEAT, M.SNAP):
                self.become_follower(m.term, m.sender)
            else:
                self.become_follower(m.term, None)
        elif m.term < self.term:
            self.counters.inc("raft.messages.stale_term")
            if (self.config.check_quorum or self.config.pre_vote) and m.type in (
                M.HEARTBEAT,
                M.APP,
            ):
                # A stale leader (maybe partitioned away, which pre-vote or check-quorum
                # kept from raising our term) learns the new term from this answer.
                self.send(Message(M.APP_RESP, to=m.sender))
            elif m.type is M.PRE_VOTE:
                self.send(Message(M.PRE_VOTE_RESP, to=m.sender, term=self.term, reject=True))
            return

        t = m.type
        if t is M.HUP:
            self._hup(transfer=False)
        elif t in (M.VOTE, M.PRE_VOTE):
            can_vote = (
                self.vote == m.sender
                or (self.vote is None and self.leader is None)
                or (t is M.PRE_VOTE and m.term > self.term)
            )
            resp = M.VOTE_RESP if t is M.VOTE else M.PRE_VOTE_RESP
            if can_vote and self.log.is_up_to_date(m.index, m.log_term):
                self.send(Message(resp, to=m.sender, term=m.term))
                if t is M.VOTE:
                    self.election_elapsed = 0
                    self.vote = m.sender
            else:
                self.send(Message(resp, to=m.sender, term=self.term, reject=True))
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # ------------------------------------------------------------------------------------
    # Leader

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is M.BEAT:
            self._bcast_heartbeat()
            return
        if t is M.CHECK_QUORUM:
            if not self._quorum_active():
                log.info("%s lost its quorum; stepping down", short_id(self.id))
                self.counters.inc("raft.leader.stepped_down.check_quorum")
                self.become_follower(self.term, None)
            for nid, pr in self.prs.items():
                if nid != self.id:
                    pr.recent_active = False
            return
        if t is M.PROP:
            self._leader_propose(m.entries)
            return
        if t is M.READ_INDEX:
            self._leader_read_index(m)
            return
        peer = self.prs.get(m.sender)
        if peer is None:
            self.counters.inc("raft.messages.ignored.unknown_peer")
            return
        pr = peer
        if t is M.APP_RESP:
            self._handle_append_response(m, pr)
        elif t is M.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is PState.REPLICATE and pr.inflights.full():
                # Appends (or their answers) may have been lost: free one slot so that
                # the heartbeat round moves things again instead of waiting forever.
                pr.inflights.free_first()
                self.counters.inc("raft.inflights.freed_on_heartbeat")
            if pr.state is PState.SNAPSHOT:
                pass
            elif pr.match < self.log.last_index():
                self._send_append(m.sender)
            ctx = m.context
            if self.config.read_only is ReadOnlyOption.LEASE_BASED and len(ctx) >= 8:
                sent = int.from_bytes(ctx[:8], "big")
                if sent <= self.ticks and sent > self.lease_acks.get(m.sender, -1):
                    self.lease_acks[m.sender] = sent
                ctx = ctx[8:]
            if ctx:
                self._read_ack(m.sender, ctx)
        elif t is M.SNAP_RESP:
            pr.recent_active = True
            if pr.state is not PState.SNAPSHOT or m.index != pr.pending_snapshot:
                return
            if m.reject:
                self.counters.inc("raft.snapshots.refused_by_peer")
                pr.become_probe()
                pr.probe_sent = True  # wait for the next heartbeat before probing
                return
            pr.snap_idle_ticks = 0
            if m.snap_offset < pr.snap_acked:
                return  # an old acknowledgement, reordered
            if m.snap_offset > pr.snap_sent:
                return  # acknowledges more than was sent: not for this transfer
            if m.snap_offset < pr.snap_sent and m.snap_offset == pr.snap_acked:
                # The follower did not take the chunk at snap_sent (it asks to resume).
                pr.snap_sent = m.snap_offset
            pr.snap_acked = m.snap_offset
            meta, data = self._snapshot_for_sending()
            if meta.index == pr.pending_snapshot and pr.snap_acked >= len(data):
                # The follower holds the whole snapshot: probe right after it (its answer
                # to the install may be lost; the probe's answer moves us on either way).
                self.counters.inc("raft.snapshots.completed")
                pr.become_probe()
                self._send_append(m.sender)
                return
            self._send_snapshot_chunks(m.sender, pr)
        elif t is M.SNAP_STATUS:
            if pr.state is not PState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            pr.probe_sent = True
        elif t is M.UNREACHABLE:
            if pr.state is PState.REPLICATE:
                pr.become_probe()
        elif t is M.TRANSFER_LEADER:
            self._leader_transfer(m.sender, pr)

    def _quorum_active(self) -> bool:
        votes = {nid: (nid == self.id or pr.recent_active) for nid, pr in self.prs.items()}
        return vote_result(self.conf, votes) is VoteResult.WON

    def _maybe_commit(self) -> bool:
        conf = self.conf
        if conf.voters_outgoing or not conf.voters:
            index = committed_index(conf, self._voter_matches())
        else:
            # committed_index of a simple configuration: the match a majority reached
            prs = self.prs
            matches = sorted([prs[v].match if v in prs else 0 for v in conf.voters])
            index = matches[(len(matches) - 1) // 2]
        return self.log.maybe_commit(index, self.term)

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _append_entries(self, entries: list[Entry], exempt: bool = False) -> str | None:
        """Leader: append ``entries`` with our term; the reason if refused."""
        last = self.log.last_index()
        size = sum([len(e.data) for e in entries])
        limit = self.config.max_uncommitted_bytes
        pending = self.uncommitted_bytes
        if not exempt and limit and pending and pending + size > limit:
            return "uncommitted_full"
        self.uncommitted_bytes += size
        stamped = [
            Entry(self.term, last + 1 + i, e.kind, e.data) for i, e in enumerate(entries)
        ]
        last = self.log.append(stamped)
        self.prs[self.id].maybe_update(last)
        if self._alone():
            self._maybe_commit()
        return None

    def _alone(self) -> bool:
        """True if this node alone is the quorum (the only voter, in both halves of a
        joint configuration). Followers cannot have acknowledged entries not yet sent, so
        only such a group commits a leader's new entries at once."""
        voters = self.conf.voters
        if len(voters) != 1 or self.id not in voters:
            return False
        outgoing = self.conf.voters_outgoing
        return not outgoing or (len(outgoing) == 1 and self.id in outgoing)

    def propose_normal(self, data: bytes) -> str | None:
        """Leader: append one application command, sent at the next
        :meth:`flush_appends`; the reason if refused. The one-entry, deferred case of
        :meth:`_leader_propose` (same checks, same counters, in the same order) without
        building the entry twice: the proposal path of every client command."""
        if len(data) > self.config.max_entry_bytes:
            return self._drop_proposal("too_large")
        if self.id not in self.prs:
            return self._drop_proposal("removed")
        if self.lead_transferee is not None:
            return self._drop_proposal("transferring")
        size = len(data)
        limit = self.config.max_uncommitted_bytes
        pending = self.uncommitted_bytes
        if limit and pending and pending + size > limit:
            return self._drop_proposal("uncommitted_full")
        self.uncommitted_bytes = pending + size
        log_ = self.log
        index = log_.last_index() + 1
        last = log_.append([make_entry(self.term, index, Kind.NORMAL, data)])
        self.prs[self.id].maybe_update(last)
        if self._alone():
            self._maybe_commit()
        self.appends_pending = True
        return None

    def _leader_propose(self, entries: list[Entry], defer: bool = False) -> str | None:
        """Append proposals; send them now, or with ``defer`` at the next
        :meth:`flush_appends` (so proposals made between two Readys share one append per
        follower)."""
        if not entries:
            return "empty"
        if any(len(e.data) > self.config.max_entry_bytes for e in entries):
            return self._drop_proposal("too_large")
        if self.id not in self.prs:
            return self._drop_proposal("removed")
        if self.lead_transferee is not None:
            return self._drop_proposal("transferring")
        conf = self.conf
        for i, e in enumerate(entries):
            if e.kind is not Kind.CONF_CHANGE:
                continue
            try:
                cc = decode_conf_change(e.data)
            except WireError:
                return self._drop_proposal("bad_conf_change")
            already_pending = self.pending_conf_index > self.log.applied
            if already_pending:
                # One change at a time (thesis 4.1): refuse until the previous one applied.
                return self._drop_proposal("conf_change_pending")
            try:
                apply_conf_change(conf, cc)
            except ConfChangeError:
                return self._drop_proposal("conf_change_invalid")
            if cc.leave_joint and not conf.voters_outgoing:
                return self._drop_proposal("not_joint")
            self.pending_conf_index = self.log.last_index() + i + 1
        reason = self._append_entries(entries)
        if reason is not None:
            return self._drop_proposal(reason)
        if defer:
            self.appends_pending = True
        else:
            self._bcast_append()
        return None

    def flush_appends(self) -> None:
        """Send the appends deferred by proposals (RawNode calls this in ``ready()``)."""
        if self.appends_pending:
            self.appends_pending = False
            if self.role is Role.LEADER:
                self._bcast_append()

    def _drop_proposal(self, reason: str) -> str:
        self.counters.inc(f"raft.proposals.dropped.{reason}")
        return reason

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)[0]
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is PState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.sender)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is PState.PROBE:
            pr.become_replicate()
        elif pr.state is PState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is PState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._release_pending_read_index_messages()
            self._bcast_append()
        elif old_paused:
            self._send_append(m.sender)
        # Pipelining: keep sending while the window has room.
        while self._maybe_send_append(m.sender, send_if_empty=False):
            pass
        if m.sender == self.lead_transferee and pr.match == self.log.last_index():
            self._send_timeout_now(m.sender)

    def _leader_transfer(self, transferee: NodeId, pr: Progress) -> None:
        if pr.is_learner:
            self.counters.inc("raft.transfers.refused.learner")
            return
        if self.lead_transferee is not None:
            if self.lead_transferee == transferee:
                return
            self.lead_transferee = None  # abort the older transfer
        if transferee == self.id:
            return
        self.election_elapsed = 0  # the transfer has one election timeout to finish
        self.lead_transferee = transferee
        self.counters.inc("raft.transfers.started")
        if pr.match == self.log.last_index():
            self._send_timeout_now(transferee)
        else:
            self._send_append(transferee)

    def _send_timeout_now(self, to: NodeId) -> None:
        # The transferee's election bypasses the others' leases (context "transfer"),
        # so this leader's lease no longer proves anything for the rest of its term.
        self.lease_forfeited = True
        self.send(Message(M.TIMEOUT_NOW, to=to))

    # -- replication ---------------------------------------------------------------------

    def _bcast_append(self) -> None:
        for nid in self._peers():
            self._send_append(nid)

    def _send_append(self, to: NodeId) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: NodeId, send_if_empty: bool) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            if pr.state is PState.REPLICATE and pr.last_index_pending(self.log.last_index()):
                # The in-flight bound (messages or bytes) holds entries back.
                self.counters.inc("raft.replication.paused.inflight_full")
            return False
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        entries: list[Entry] | None = None
        if prev_term is not None:
            try:
                entries = self.log.slice(
                    pr.next, self.log.last_index() + 1, self.config.max_size_per_msg
                )
            except LogCompacted:
                entries = None
        if prev_term is not None and entries is not None:
            if not entries and not send_if_empty:
                return False
            self.send(
                Message(
                    M.APP,
                    to=to,
                    index=prev,
                    log_term=prev_term,
                    entries=entries,
                    commit=self.log.committed,
                )
            )
            if entries:
                size = sum([len(e.data) for e in entries])
                pr.sent_entries(entries[-1].index, size, len(entries))
            else:
                pr.sent_entries(prev, 0, 0)
            return True
        # The entries are compacted: send the snapshot instead.
        if not pr.recent_active:
            self.counters.inc("raft.snapshots.deferred.inactive")
            return False
        meta, _ = self._snapshot_for_sending()
        if meta.index == 0:
            self.counters.inc("raft.snapshots.unavailable")
            return False
        pr.become_snapshot(meta.index)
        self.counters.inc("raft.snapshots.started")
        self._send_snapshot_chunks(to, pr)
        return True

    def _snapshot_for_sending(self) -> tuple[SnapshotMeta, bytes]:
        stored_meta = None
        if self._snap_cache is not None:
            stored_meta = self._snap_cache[0]
        latest = self.log.storage.snapshot()
        if stored_meta is None or latest[0].index != stored_meta.index:
            self._snap_cache = latest
        assert self._snap_cache is not None
        return self._snap_cache

    def _send_snapshot_chunks(self, to: NodeId, pr: Progress) -> None:
        meta, data = self._snapshot_for_sending()
        if meta.index != pr.pending_snapshot:
            # A newer snapshot replaced the one being sent: start over with it.
            pr.become_snapshot(meta.index)
        chunk = self.config.max_snapshot_chunk_bytes
        window = chunk * self.config.snapshot_window_chunks
        total = len(data)
        while (pr.snap_sent < total or not pr.snap_started) and (
            pr.snap_sent - pr.snap_acked < window
        ):
            start = pr.snap_sent
            piece = data[start : start + chunk]
            self.send(
                Message(
                    M.SNAP,
                    to=to,
                    snapshot=meta,
                    snap_offset=start,
                    snap_total=total,
                    snap_data=piece,
                )
            )
            self.counters.inc("raft.snapshots.chunks_sent")
            pr.snap_sent = start + len(piece)
            pr.snap_started = True

    def _bcast_heartbeat(self, context: bytes = b"") -> None:
        if self.config.read_only is ReadOnlyOption.LEASE_BASED:
            # The heartbeat carries its send time (then any read context); an
            # acknowledgement proves the peer restarted its election timer after that
            # moment (see lease_valid).
            context = self.ticks.to_bytes(8, "big") + context
        for nid in self._peers():
            pr = self.prs[nid]
            if pr.state is PState.SNAPSHOT:
                pr.snap_idle_ticks += 1
                if pr.snap_idle_ticks >= self.config.snapshot_resend_heartbeats:
                    # Chunks or their acknowledgements were lost: resend from the last ack.
                    pr.snap_idle_ticks = 0
                    pr.snap_sent = pr.snap_acked
                    if pr.snap_acked == 0:
                        pr.snap_started = False
                    self.counters.inc("raft.snapshots.resends")
                    self._send_snapshot_chunks(nid, pr)
            commit = min(pr.match, self.log.committed)
            self.send(Message(M.HEARTBEAT, to=nid, commit=commit, context=context))

    # -- reads ---------------------------------------------------------------------------

    def _leader_read_index(self, m: Message) -> None:
        if self.conf.voters == frozenset({self.id}) and not self.conf.voters_outgoing:
            self._answer_read(m, self.log.committed)
            return
        if not self._committed_entry_in_current_term():
            # The commit index is not known to be current until an entry of this term
            # commits (Raft 6.4 step 1); hold the request until then.
            if len(self.pending_read_index_messages) >= self.config.max_pending_reads:
                self.counters.inc("raft.read_index.dropped.full")
                return
            self.pending_read_index_messages.append(m)
            return
        self._send_read_index_response(m)

    def lease_valid(self) -> bool:
        """Leader: True while the leader lease holds (lease-based reads).

        A quorum acknowledged a heartbeat sent at tick ``t``; each of those peers restarted
        its election timer after ``t`` and refuses to vote for another candidate for
        ``election_tick`` of its ticks (the in-lease rule of :meth:`step`). Any new leader
        needs one of their votes, so none can exist before ``t + election_tick``, assuming
        every node's ticks run at the same rate (the clock assumption of
        :mod:`~foundation_p2p.consensus.readonly`). Two ticks are kept as a margin for the
        timer granularity (a tick may fire right after the heartbeat arrived).
        """
        if self.lease_forfeited:
            return False
        acks = dict(self.lease_acks)
        acks[self.id] = self.ticks
        for nid in self.prs:
            acks.setdefault(nid, -1)
        quorum_sent = committed_index(self.conf, {k: v + 1 for k, v in acks.items()}) - 1
        return quorum_sent >= 0 and self.ticks < quorum_sent + self.config.election_tick - 2

    def _send_read_index_response(self, m: Message) -> None:
        if self.config.read_only is ReadOnlyOption.LEASE_BASED:
            if self.lease_valid():
                self.counters.inc("raft.read_index.lease")
                self._answer_read(m, self.log.committed)
                return
            # No quorum heard within the lease (or a transfer forfeited it): confirm
            # leadership with a heartbeat round instead (ReadIndex).
            self.counters.inc("raft.read_index.lease_fallback")
        if not self.read_only.add_request(self.log.committed, m):
            self.counters.inc("raft.read_index.dropped.full_or_duplicate")
            return
        self._bcast_heartbeat(m.context)
        self._read_ack(self.id, m.context)

    def _read_ack(self, nid: NodeId, ctx: bytes) -> None:
        acks = self.read_only.recv_ack(nid, ctx)
        if acks is None:
            return
        votes = {v: True for v in acks}
        if vote_result(self.conf, votes) is not VoteResult.WON:
            return
        for status in self.read_only.advance(ctx):
            self._answer_read(status.request, status.index)

    def _answer_read(self, request: Message, index: int) -> None:
        if request.sender in (b"", self.id):
            self._add_read_state(ReadState(index, request.context))
        else:
            self.send(
                Message(M.READ_INDEX_RESP, to=request.sender, index=index, context=request.context)
            )

    def _add_read_state(self, rs: ReadState) -> None:
        if len(self.read_states) >= self.config.max_read_states:
            self.counters.inc("raft.read_states.dropped.full")
            return
        self.read_states.append(rs)

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._send_read_index_response(m)

    # ------------------------------------------------------------------------------------
    # Candidate and pre-candidate

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = M.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else M.VOTE_RESP
        if t is M.PROP:
            self._drop_proposal("no_leader")
        elif t is M.APP:
            self.become_follower(m.term, m.sender)
            self._handle_append(m)
        elif t is M.HEARTBEAT:
            self.become_follower(m.term, m.sender)
            self._handle_heartbeat(m)
        elif t is M.SNAP:
            self.become_follower(m.term, m.sender)
            self._handle_snapshot(m)
        elif t is my_resp:
            result = self._poll(m.sender, not m.reject)
            if result is VoteResult.WON:
                if self.role is Role.PRE_CANDIDATE:
                    self._campaign(pre=False, transfer=False)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif result is VoteResult.LOST:
                self.become_follower(self.term, None)
        elif t is M.READ_INDEX:
            self.counters.inc("raft.read_index.dropped.no_leader")

    # ------------------------------------------------------------------------------------
    # Follower

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t is M.PROP:
            if self.leader is None:
                self._drop_proposal("no_leader")
            elif self.config.disable_proposal_forwarding:
                self._drop_proposal("forwarding_disabled")
            else:
                m.to = self.leader
                self.send(m)
        elif t is M.APP:
            self.election_elapsed = 0
            self.leader = m.sender
            self._handle_append(m)
        elif t is M.HEARTBEAT:
            self.election_elapsed = 0
            self.leader = m.sender
            self._handle_heartbeat(m)
        elif t is M.SNAP:
            self.election_elapsed = 0
            self.leader = m.sender
            self._handle_snapshot(m)
        elif t is M.TRANSFER_LEADER:
            if self.leader is None:
                self.counters.inc("raft.transfers.dropped.no_leader")
            else:
                m.to = self.leader
                self.send(m)
        elif t is M.TIMEOUT_NOW:
            # Leader transfer: campaign at once, skipping pre-vote (thesis 3.10).
            if self.promotable():
                self._hup(transfer=True)
        elif t is M.READ_INDEX:
            if self.leader is None:
                self.counters.inc("raft.read_index.dropped.no_leader")
            else:
                m.to = self.leader
                self.send(m)
        elif t is M.READ_INDEX_RESP:
            self._add_read_state(ReadState(m.index, m.context))

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self.send(Message(M.APP_RESP, to=m.sender, index=self.log.committed))
            return
        new_last = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if new_last is not None:
            self.send(Message(M.APP_RESP, to=m.sender, index=new_last))
            return
        hint = min(m.index, self.log.last_index())
        hint, hint_term = self.log.find_conflict_by_term(hint, m.log_term)
        self.counters.inc("raft.appends.rejected")
        self.send(
            Message(
                M.APP_RESP,
                to=m.sender,
                index=m.index,
                reject=True,
                reject_hint=hint,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self.send(Message(M.HEARTBEAT_RESP, to=m.sender, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        meta = m.snapshot
        if meta is None:
            return
        if meta.index <= self.log.committed:
            # Nothing to install: say so, and where our log stands.
            self.send(Message(M.SNAP_RESP, to=m.sender, index=meta.index, snap_offset=m.snap_total))
            self.send(Message(M.APP_RESP, to=m.sender, index=self.log.committed))
            self._snap_recv = None
            return
        if m.snap_total > self.config.max_snapshot_bytes:
            self.counters.inc("raft.snapshots.refused.too_large")
            self.send(Message(M.SNAP_RESP, to=m.sender, index=meta.index, reject=True))
            return
        recv = self._snap_recv
        if recv is None or recv.meta != meta or recv.term != m.term or recv.total != m.snap_total:
            if m.snap_offset != 0:
                self.send(Message(M.SNAP_RESP, to=m.sender, index=meta.index, snap_offset=0))
                return
            recv = self._snap_recv = _SnapshotReceive(meta, m.term, m.snap_total)
        if m.snap_offset != len(recv.buffer):
            # Out of order (a lost or reordered chunk): say where we are.
            self.counters.inc("raft.snapshots.chunks_out_of_order")
            self.send(
                Message(M.SNAP_RESP, to=m.sender, index=meta.index, snap_offset=len(recv.buffer))
            )
            return
        recv.buffer += m.snap_data
        self.send(
            Message(M.SNAP_RESP, to=m.sender, index=meta.index, snap_offset=len(recv.buffer))
        )
        if len(recv.buffer) < recv.total:
            return
        data = bytes(recv.buffer)
        self._snap_recv = None
        if self.restore(meta, data):
            self.counters.inc("raft.snapshots.installed")
            self.send(Message(M.APP_RESP, to=m.sender, index=self.log.last_index()))
        else:
            self.send(Message(M.APP_RESP, to=m.sender, index=self.log.committed))

    def restore(self, meta: SnapshotMeta, data: bytes) -> bool:
        """Install a snapshot received whole; False if it brings nothing new."""
        if meta.index <= self.log.committed:
            return False
        if self.id not in (meta.conf.voters | meta.conf.voters_outgoing | meta.conf.learners):
            # A node added after the snapshot was taken: it learns of its own addition
            # from the entries that follow (Raft's InstallSnapshot has no such check;
            # refusing would leave a new member unable ever to catch up).
            self.counters.inc("raft.snapshots.installed_before_own_addition")
        if self.log.match_term(meta.index, meta.term):
            # Our log already has the snapshot's last entry: just move the commit index.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(meta, data)
        self.conf = meta.conf
        self.prs = {}
        self._rebuild_progress()
        return True

    # ------------------------------------------------------------------------------------
    # Configuration changes (applied by RawNode.advance when their entry is applied)

    def apply_conf_change_entry(self, entry: Entry) -> ConfState:
        """Apply a committed ``CONF_CHANGE`` entry; the configuration afterwards."""
        try:
            cc = decode_conf_change(entry.data)
            new_conf = apply_conf_change(self.conf, cc)
        except (WireError, ConfChangeError) as exc:
            self.counters.inc("raft.conf_changes.refused")
            log.warning(
                "%s: conf change at %d not applied: %s", short_id(self.id), entry.index, exc
            )
            return self.conf
        self._switch_conf(new_conf)
        self.counters.inc("raft.conf_changes.applied")
        return self.conf

    def _switch_conf(self, conf: ConfState) -> None:
        self.conf = conf
        self._rebuild_progress()
        if self.role is not Role.LEADER:
            return
        if self.id not in all_voters(conf):
            # Removed (or demoted): step down; the others elect a leader among themselves.
            self.become_follower(self.term, None)
            return
        if self.lead_transferee is not None and self.lead_transferee not in all_voters(conf):
            self.lead_transferee = None
        if self._maybe_commit():
            self._bcast_append()
        else:
            # New members (or a smaller quorum) want entries now.
            for nid in self._peers():
                self._maybe_send_append(nid, send_if_empty=False)

    def maybe_leave_joint(self) -> None:
        """Leader: once the joint configuration is applied, propose leaving it."""
        if (
            self.role is Role.LEADER
            and self.conf.voters_outgoing
            and self.pending_conf_index <= self.log.applied
        ):
            entry = Entry(0, 0, Kind.CONF_CHANGE, encode_conf_change(ConfChange()))
            if self._leader_propose([entry]) is None:
                self.counters.inc("raft.conf_changes.auto_leave")
