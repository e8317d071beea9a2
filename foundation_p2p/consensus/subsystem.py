"""``ConsensusSubsystem``: a node's Raft group member, driven by NodeCore (sans-I/O).

It holds a :class:`~foundation_p2p.consensus.rawnode.RawNode` and its state machine (the
KV store by default) and connects them to the node without I/O:

- **Time.** :meth:`handle_timer` ticks the core once per ``tick_interval_s`` of
  ``now.mono`` (a driver late by more than a tick skips the missed ticks rather than
  firing them in a burst, which would start elections), expires requests and runs the
  bootstrap and autopilot steps.
- **Messages.** Raft messages travel over the node's messenger as service 2
  (``SERVICE_RAFT``): each messenger message is ``[0, raft]`` with ``raft`` the bytes of
  ``consensus.messages.encode_message``; ``[1, ...]``/``[2, ...]`` are the client
  protocol and ``[3, voters]`` a bootstrap proposal (``spec/consensus-client.md``).
- **Persist, then send, then apply.** Each Ready that must be durable becomes one
  :class:`LogWrite` intent (:meth:`take_log_writes`). The driver saves every write taken
  (``WalStorage.save``), syncs once for the batch (group commit), then calls
  :meth:`log_writes_done` with their ids: only then are that Ready's messages sent, its
  committed entries applied and the core advanced. A Ready with nothing to persist goes
  through at once, and so does one whose only durable change is the commit index: its
  hard state is written with the next batch, but nothing waits for that sync (etcd's
  ``MustSync``; every entry the commit index covers is durable here already, and a
  restarted node learns the commit index from the leader). :func:`persist` is the
  driver's side for a ``WalStorage`` or a
  ``MemoryStorage``. The core reads the log through the storage the driver hands in.
- **Apply.** Entry data is the proposal envelope ``[proposer, boot, ticket, command,
  floor]`` (CBOR); ``command`` goes to the state machine's ``apply`` unless the
  replicated :class:`~foundation_p2p.consensus.dedup.ProposalWindows` say a copy of
  the same ``(proposer, boot, ticket)`` was applied before (counted
  ``raft.apply.duplicates``); if this node proposed it in this boot, its result is
  reported under its ticket. Every ``snapshot_every`` applied entries the state machine
  is snapshotted, with the windows (``dedup.encode_snapshot``), and the log compacted
  up to there (a :class:`LogWrite` with ``compact``).
- **Re-sending proposals.** A proposal forwarded to the leader can be lost with its
  connection (closed as a duplicate when a member restarts) or with a leader change,
  and the proposer cannot tell lost from slow. So it sends the same envelope again
  (``raw.propose(data)``, counted ``raft.requests.resent``): to a new leader as soon as
  one is known, when the connection to the leader is lost, and after
  ``proposal_retry_s`` (then 2x, 4x, ... that) while it is a follower. The windows
  make every member apply it once. ``proposal_retry_s = 0`` never re-sends.
- **Client API.** :meth:`propose` and :meth:`read` return a ticket; outcomes come from
  :meth:`take_results` as :class:`Outcome`. A proposal refused here (no leader known)
  fails at once with the leader hint; one not applied within ``request_timeout_s`` ends
  ``indeterminate`` (it may still apply). Reads use ReadIndex (``lease_reads`` switches
  the core to lease-based reads, which assume bounded clock drift between members).

Bounded queues (each overflow counted): pending requests (``max_pending_requests``:
:meth:`propose`/:meth:`read` past it fail at once with ``overloaded``), outcomes not yet
taken (``max_results``, the oldest dropped: ``raft.results.dropped``), log write
intents (one Ready in flight, one hard state whose only change is the commit index
(a newer one replaces it while the driver has not taken it), plus at most one compaction).

Equivalent lower-level calls for the facade: ``raw.propose(envelope)``,
``raw.read_index(ctx)``, ``raw.ready()``/``raw.advance()``, ``raw.status()``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cbor2

from foundation_p2p.addresses import NodeId, short_id
from foundation_p2p.clock import Now
from foundation_p2p.consensus import kv
from foundation_p2p.consensus.autopilot import AutopilotConfig, plan
from foundation_p2p.consensus.bootstrap import BootstrapProtocol, decode_bootstrap
from foundation_p2p.consensus.confchange import bootstrap_entry
from foundation_p2p.consensus.dedup import ProposalWindows, decode_snapshot, encode_snapshot
from foundation_p2p.consensus.fastcbor import encode_uint, uint_head
from foundation_p2p.consensus.messages import Message, decode_message, encode_messages
from foundation_p2p.consensus.raft import (
    ProposalDropped,
    RaftConfig,
    ReadOnlyOption,
    Role,
)
from foundation_p2p.consensus.rawnode import RawNode, Ready, Status
from foundation_p2p.consensus.state_machine import StateMachine
from foundation_p2p.consensus.storage import LogStorage
from foundation_p2p.consensus.types import ConfState, Entry, HardState, Kind, SnapshotMeta
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, MalformedError, WireError

log = logging.getLogger("foundation_p2p.consensus")

SERVICE_RAFT = 2
"""The messenger service number of Raft (``foundation_p2p.messaging.SERVICE_RAFT``)."""

ELIGIBLE_EXTENSION_KEY = 2
"""The membership extension a node sets to say it may be a Raft voter (key 1 is the
channels' topic set): ``b"\\x01"`` eligible, ``b"\\x02"`` eligible and a member of the group
(a node that sees a ``2`` knows the group exists and never bootstraps)."""
ELIGIBLE_VALUE = b"\x01"
IN_GROUP_VALUE = b"\x02"

KIND_RAFT = 0
KIND_CLIENT_REQUEST = 1
KIND_CLIENT_RESPONSE = 2
KIND_BOOTSTRAP = 3


class MessengerLike(Protocol):
    """What the subsystem uses of :class:`foundation_p2p.messaging.Messenger`."""

    def register(
        self,
        service: int,
        on_message: Callable[[Now, NodeId, Any], None],
        on_peer_lost: Callable[[NodeId], None] | None = None,
    ) -> None: ...

    def send(self, now: Now, node_id: NodeId, service: int, message: Any) -> bool: ...


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """Settings of a node's Raft member (the ``[consensus]`` table)."""

    tick_interval_s: float = 0.05
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    lease_reads: bool = False
    """Serve reads by the leader's lease (needs check-quorum; assumes the members' clocks
    advance at rates within the election timeout's margin of each other)."""
    snapshot_every: int = 10_000
    request_timeout_s: float = 5.0
    proposal_retry_s: float = 1.0
    """A follower sends a proposal not yet applied again after this long (then after 2x,
    4x, ... this); every proposal is also re-sent to a new leader. 0 = never re-send
    (a lost proposal then ends ``indeterminate``)."""
    max_pending_requests: int = 10_000
    max_results: int = 100_000
    bootstrap_expect: int = 3
    """Voters of a new group (3 or 5); 0 = never bootstrap (join an existing group)."""
    min_voters: int = 3
    stabilization_s: float = 10.0
    bootstrap_resend_s: float = 0.5
    autopilot: bool = True
    max_append_bytes: int = 64 << 10
    """Most entry bytes in one append message (``RaftConfig.max_size_per_msg``)."""
    max_inflight_bytes: int = 256 << 10
    """Most entry bytes in flight to one follower (``RaftConfig.max_inflight_bytes``).
    Raft messages to a peer share one ordered stream, so this also bounds how much a
    heartbeat can queue behind: with megabytes in flight a loaded leader heard nothing
    back within an election timeout and stepped down (check-quorum) under a 2 KiB load."""

    def __post_init__(self) -> None:
        if not self.tick_interval_s > 0:
            raise ConfigError("consensus.tick_interval_s: must be positive")
        if not self.request_timeout_s > 0:
            raise ConfigError("consensus.request_timeout_s: must be positive")
        if type(self.proposal_retry_s) not in (int, float) or not self.proposal_retry_s >= 0:
            raise ConfigError(
                f"consensus.proposal_retry_s: must be 0 or positive, got {self.proposal_retry_s!r}"
            )
        for name in (
            "snapshot_every",
            "max_pending_requests",
            "max_results",
            "min_voters",
            "max_append_bytes",
            "max_inflight_bytes",
        ):
            v = getattr(self, name)
            if type(v) is not int or v <= 0:
                raise ConfigError(f"consensus.{name}: must be a positive integer, got {v!r}")
        if self.bootstrap_expect not in (0, 1, 3, 5):
            raise ConfigError(
                f"consensus.bootstrap_expect: must be 3 or 5 (1 for tests, 0 = join only), "
                f"got {self.bootstrap_expect!r}"
            )
        if self.lease_reads and not self.check_quorum:
            raise ConfigError("consensus.lease_reads: requires check_quorum")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> ConsensusConfig:
        """Build from the ``[consensus]`` TOML table; an unknown key is a
        :class:`ConfigError` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in table:
            if key not in known:
                raise ConfigError(f"[consensus]: unknown key {key!r}")
        return cls(**dict(table))

    @classmethod
    def from_node_config(cls, config: Any) -> ConsensusConfig | None:
        """The node's ``[consensus]`` table (``config.extra``), or ``None`` if it has none
        (the node runs no Raft member)."""
        table = config.extra.get("consensus")
        if table is None:
            return None
        if not isinstance(table, Mapping):
            raise ConfigError("[consensus]: must be a table")
        return cls.from_mapping(table)

    def raft_config(self, node_id: NodeId) -> RaftConfig:
        """The core's settings for ``node_id``."""
        return RaftConfig(
            id=node_id,
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            read_only=ReadOnlyOption.LEASE_BASED if self.lease_reads else ReadOnlyOption.SAFE,
            max_size_per_msg=self.max_append_bytes,
            max_inflight_bytes=self.max_inflight_bytes,
        )


@dataclass(frozen=True, slots=True)
class LogWrite:
    """One durable write the driver must make (in ``id`` order), then sync."""

    id: int
    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: tuple[SnapshotMeta, bytes] | None = None
    """A snapshot received from the leader: replaces the log."""
    compact: tuple[int, ConfState, bytes] | None = None
    """``(index, conf, data)``: record the state machine's snapshot at applied ``index``
    and drop the entries it covers (``create_snapshot`` then ``compact``)."""


def _commit_only(w: LogWrite) -> bool:
    """A write that only records a hard state (nothing waits for it)."""
    return w.hard_state is not None and not w.entries and w.snapshot is None and w.compact is None


def save_writes(storage: Any, writes: Sequence[LogWrite]) -> None:
    """Record ``writes`` in ``storage`` in order, without the final sync (a driver that
    models or offloads the fsync calls ``storage.sync()`` itself, then
    :meth:`ConsensusSubsystem.log_writes_done`). ``WalStorage.save``, or
    ``MemoryStorage``'s ``apply_snapshot``/``append``/``set_hard_state``; a ``compact``
    write calls ``create_snapshot`` (which syncs the snapshot itself) and ``compact``."""
    for w in writes:
        if w.snapshot is not None or w.entries or w.hard_state is not None:
            if hasattr(storage, "save"):
                storage.save(hard_state=w.hard_state, entries=w.entries, snapshot=w.snapshot)
            else:
                if w.snapshot is not None:
                    storage.apply_snapshot(*w.snapshot)
                if w.entries:
                    storage.append(list(w.entries))
                if w.hard_state is not None:
                    storage.set_hard_state(w.hard_state)
        if w.compact is not None:
            index, conf, data = w.compact
            if index > storage.first_index() - 1:
                storage.create_snapshot(index, conf, data)
                storage.compact(index)


def persist(storage: Any, writes: Sequence[LogWrite]) -> None:
    """The driver's side of :meth:`ConsensusSubsystem.take_log_writes`: make ``writes``
    durable with one sync (group commit). Equivalent lower-level calls:
    :func:`save_writes` then ``storage.sync()`` (``MemoryStorage`` has none)."""
    save_writes(storage, writes)
    if hasattr(storage, "sync"):
        storage.sync()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a request ended.

    ``status``: ``ok`` (``value`` is the state machine's encoded result), ``indeterminate``
    (timed out: it may or may not apply), or a definite failure that changed nothing:
    ``no_leader`` (``leader`` is the hint if one is known), ``dropped`` (``reason``),
    ``overloaded``, ``not_member``.
    """

    ticket: int
    status: str
    value: bytes | None = None
    leader: NodeId | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True for ``ok``."""
        return self.status == "ok"


_new = object.__new__
_set_ticket, _set_status, _set_value, _set_leader, _set_reason = (
    Outcome.__dict__[name].__set__ for name in ("ticket", "status", "value", "leader", "reason")
)


def _ok_outcome(ticket: int, value: bytes) -> Outcome:
    """``Outcome(ticket, "ok", value=value)``, the same frozen object, built without the
    frozen dataclass's ``object.__setattr__`` per field (one per proposal applied)."""
    o = _new(Outcome)
    _set_ticket(o, ticket)
    _set_status(o, "ok")
    _set_value(o, value)
    _set_leader(o, None)
    _set_reason(o, "")
    return o


@dataclass(slots=True)
class _Request:
    ticket: int
    deadline: float
    read_key: bytes | None  # None: a proposal
    read_op: bytes = b""
    read_index: int | None = None
    on_done: Callable[[Outcome], None] | None = None
    data: bytes | None = None
    """A proposal's envelope (sent again as it is)."""
    retry_at: float = 0.0
    retries: int = 0


def encode_envelope(
    proposer: NodeId, boot: int, ticket: int, command: bytes, floor: int | None = None
) -> bytes:
    """An entry's data: the command, who proposed it and, if ``floor`` is given, the
    proposer's floor (every ticket at or below it is done: ``spec/consensus-client.md``
    section 2). Without ``floor`` it is the earlier four-element envelope, which every
    member applies without the duplicate check."""
    if floor is None:
        return cbor2.dumps([proposer, boot, ticket, command], canonical=True)
    return cbor2.dumps([proposer, boot, ticket, command, floor], canonical=True)


def decode_envelope(data: bytes) -> tuple[NodeId, int, int, bytes, int | None]:
    """Decode an entry's envelope: ``(proposer, boot, ticket, command, floor)``, ``floor``
    ``None`` for a four-element envelope; ``MalformedError`` if it is not one."""
    try:
        value = cbor2.loads(data)
    except Exception as exc:
        raise MalformedError(f"proposal envelope: not CBOR: {type(exc).__name__}") from None
    if (
        type(value) is not list
        or len(value) not in (4, 5)
        or type(value[0]) is not bytes
        or len(value[0]) != 16
        or type(value[1]) is not int
        or type(value[2]) is not int
        or type(value[3]) is not bytes
        or value[1] < 0
        or value[2] < 0
    ):
        raise MalformedError(
            "proposal envelope: expected [node_id, boot, ticket, command, floor?]"
        )
    floor: int | None = None
    if len(value) == 5:
        floor = value[4]
        if type(floor) is not int or not 0 <= floor < value[2]:
            raise MalformedError("proposal envelope: floor must be a uint below the ticket")
    return value[0], value[1], value[2], value[3], floor


def eligible_members(members: Iterable[Any]) -> list[NodeId]:
    """The node ids of the members that are alive or suspect, not observers, and announce
    :data:`ELIGIBLE_EXTENSION_KEY` (membership ``Member`` snapshots)."""
    out: list[NodeId] = []
    for m in members:
        state = getattr(getattr(m, "state", None), "name", "")
        if state not in ("ALIVE", "SUSPECT") or getattr(m, "observer", False):
            continue
        if m.extensions.get(ELIGIBLE_EXTENSION_KEY) in (ELIGIBLE_VALUE, IN_GROUP_VALUE):
            out.append(m.node_id)
    return out


def group_announced(members: Iterable[Any]) -> bool:
    """True if a member announces that it belongs to a formed group (extension value 2)."""
    return any(
        getattr(m, "extensions", {}).get(ELIGIBLE_EXTENSION_KEY) == IN_GROUP_VALUE
        for m in members
    )


class ConsensusSubsystem:
    """A node's member of the Raft group; see the module docstring."""

    def __init__(
        self,
        node_id: NodeId,
        *,
        messenger: MessengerLike,
        storage: LogStorage,
        config: ConsensusConfig,
        counters: Counters,
        rng: random.Random,
        state_machine: StateMachine | None = None,
        eligible: bool = True,
    ) -> None:
        self.node_id = node_id
        self.messenger = messenger
        self.storage = storage
        self.config = config
        self.counters = counters
        self.rng = rng
        self.eligible = eligible
        self.state_machine: StateMachine = (
            state_machine if state_machine is not None else kv.KVStore()
        )
        self.raw: RawNode | None = None
        """The core (``node.raft``'s RawNode), ``None`` until the group exists here."""
        self.boot_id = rng.getrandbits(63)
        self._envelope_head: bytes | None = (
            b"\x85\x50" + node_id + encode_uint(self.boot_id)
            if type(node_id) is bytes and len(node_id) == 16
            else None
        )
        """``[node_id, boot, ...`` of every envelope this node proposes: a CBOR array of
        five, the 16-byte string head, the node id, the boot number."""
        self.windows = ProposalWindows()
        """The replicated proposal windows (``dedup``): which envelopes were applied."""
        self.windows.counters = counters
        self._retry_due: float | None = None
        self._tickets = 0
        self._write_ids = 0
        self._pending: dict[int, _Request] = {}
        self._reads_by_ctx: dict[bytes, int] = {}
        self._waiting_reads: list[_Request] = []
        self._results: deque[Outcome] = deque()
        self._writes: list[LogWrite] = []
        self._inflight: tuple[int, Ready | None] | None = None
        self._bootstrapping: frozenset[NodeId] | None = None
        self._compacting: int | None = None
        self._snap_index = 0
        self._next_tick: float | None = None
        self._group_seen = False
        self._announced: bytes | None = None
        self._alive: frozenset[NodeId] = frozenset({node_id})
        self._autopilot_due = True
        """Run the autopilot at the next timer call even if no tick is due."""
        self._down_since: dict[NodeId, float] = {}
        self._client_waiters: dict[int, tuple[NodeId, int]] = {}
        self.boot = BootstrapProtocol(
            node_id,
            max(config.bootstrap_expect, 1),
            nonce=self.boot_id,
            resend_s=config.bootstrap_resend_s,
            counters=counters,
        )
        self.autopilot = AutopilotConfig(
            target_voters=max(config.bootstrap_expect, 1),
            min_voters=config.min_voters,
            stabilization_s=config.stabilization_s,
            enabled=config.autopilot,
        )
        self.elections_won = 0
        self.on_apply: Callable[[Entry, tuple[NodeId, int, int] | None], None] | None = None
        """Observer hook (the simulator's checkers): called with every normal entry as it is
        applied, and its envelope's ``(proposer, boot, ticket)`` (``None`` if malformed)."""
        self._now = Now(0.0, 0.0)
        """The latest ``now`` an input brought (answers to clients are sent with it)."""
        messenger.register(SERVICE_RAFT, self._on_message, self._on_peer_lost)
        if self.has_state():
            self._start()

    # -- state ---------------------------------------------------------------------------

    def has_state(self) -> bool:
        """True if the storage holds any Raft state (such a node never bootstraps)."""
        s = self.storage
        hard, _ = s.initial_state()
        return hard != HardState() or s.last_index() > 0 or s.first_index() > 1

    def _start(self) -> None:
        meta, data = self.storage.snapshot()
        if meta.index > 0:
            self._restore(data)
            self._snap_index = meta.index
        self.raw = RawNode(self.config.raft_config(self.node_id), self.storage, self.rng)
        self.raw.raft.counters = self.counters
        log.debug("raft started on %s at snapshot %d", short_id(self.node_id), meta.index)

    def _restore(self, data: bytes) -> None:
        """Restore the state machine and the proposal windows from a Raft snapshot's data
        (``dedup.decode_snapshot``)."""
        windows, machine = decode_snapshot(data)
        self.state_machine.restore(machine)
        windows.counters = self.counters
        self.windows = windows

    @property
    def started(self) -> bool:
        """True once this node is a member of a group (bootstrapped, restarted or joined)."""
        return self.raw is not None

    def status(self) -> Status | None:
        """The core's status (term, role, leader, commit, applied, voters, learners)."""
        return self.raw.status() if self.raw is not None else None

    def is_leader(self) -> bool:
        """True if this node leads the group now."""
        return self.raw is not None and self.raw.raft.role is Role.LEADER

    # -- membership input ------------------------------------------------------------------

    def set_alive(self, now: Now, members: Iterable[NodeId]) -> None:
        """The eligible members alive in membership now (this node is added): drives the
        bootstrap and the autopilot's failure clock."""
        self._now = now
        alive = frozenset(members) | {self.node_id}
        self._alive = alive
        self._autopilot_due = True
        for n in list(self._down_since):
            if n in alive:
                del self._down_since[n]
        if self.raw is not None:
            st = self.raw.status()
            for n in st.voters | st.learners:
                if n not in alive and n not in self._down_since:
                    self._down_since[n] = now.mono
        elif self.eligible and self.config.bootstrap_expect and not self._group_seen:
            self.boot.set_candidates(now.mono, alive)
        self._step(now)
        if self.raw is None:
            self._bootstrap_step(now)

    # -- client API ----------------------------------------------------------------------

    def _new_request(
        self, now: Now, read_key: bytes | None, on_done: Callable[[Outcome], None] | None
    ) -> _Request | Outcome:
        self._tickets += 1
        ticket = self._tickets
        self._now = now
        if len(self._pending) >= self.config.max_pending_requests:
            self.counters.inc("raft.requests.overloaded")
            return Outcome(ticket, "overloaded")
        if self.raw is None:
            return Outcome(ticket, "not_member")
        req = _Request(ticket, now.mono + self.config.request_timeout_s, read_key, on_done=on_done)
        return req

    def propose(
        self, now: Now, command: bytes, on_done: Callable[[Outcome], None] | None = None
    ) -> int:
        """Propose ``command`` for the state machine; its ticket. The outcome comes from
        :meth:`take_results` (and ``on_done`` if given)."""
        req = self._new_request(now, None, on_done)
        if isinstance(req, Outcome):
            self._report(req, on_done)
            return req.ticket
        assert self.raw is not None
        # every ticket below the oldest pending request is done (applied, failed, or
        # reported indeterminate): this run never sends it again
        floor = next(iter(self._pending)) - 1 if self._pending else req.ticket - 1
        if self._envelope_head is not None and type(command) is bytes:
            # encode_envelope's bytes, the constant head (node id, boot) built once
            data = b"".join(
                (
                    self._envelope_head,
                    encode_uint(req.ticket),
                    uint_head(2, len(command)),
                    command,
                    encode_uint(floor),
                )
            )
        else:
            data = encode_envelope(self.node_id, self.boot_id, req.ticket, command, floor)
        try:
            self.raw.propose(data)
        except ProposalDropped as exc:
            leader = self.raw.raft.leader
            status = "no_leader" if exc.reason == "no_leader" else "dropped"
            self._report(Outcome(req.ticket, status, leader=leader, reason=exc.reason), on_done)
            return req.ticket
        retry = self.config.proposal_retry_s
        if retry:
            req.data = data
            req.retry_at = now.mono + retry
            if self._retry_due is None:
                self._retry_due = req.retry_at
        self._pending[req.ticket] = req
        self.counters.inc("raft.requests.proposed")
        self._step(now)
        return req.ticket

    def read(
        self, now: Now, key: bytes, on_done: Callable[[Outcome], None] | None = None
    ) -> int:
        """A linearizable read of ``key`` (ReadIndex, or the lease if configured); its
        ticket. The outcome's value is the KV result (``kv.decode_result``)."""
        return self.read_query(now, kv.encode_get(key), on_done, key=key)

    def read_query(
        self,
        now: Now,
        op: bytes,
        on_done: Callable[[Outcome], None] | None = None,
        *,
        key: bytes = b"",
    ) -> int:
        """A linearizable read-only query (``state_machine.query(op)``); its ticket."""
        req = self._new_request(now, key, on_done)
        if isinstance(req, Outcome):
            self._report(req, on_done)
            return req.ticket
        assert self.raw is not None
        req.read_op = op
        ctx = b"r" + self.boot_id.to_bytes(8, "big") + req.ticket.to_bytes(8, "big")
        r = self.raw.raft
        if r.role is not Role.LEADER and r.leader is None:
            self._report(Outcome(req.ticket, "no_leader"), on_done)
            return req.ticket
        self.raw.read_index(ctx)
        self._pending[req.ticket] = req
        self._reads_by_ctx[ctx] = req.ticket
        self._step(now)
        return req.ticket

    def take_results(self) -> list[Outcome]:
        """Outcomes since the last call, oldest first."""
        out = list(self._results)
        self._results.clear()
        return out

    def transfer_leadership(self, now: Now) -> NodeId | None:
        """Graceful shutdown, first step: if leading, hand leadership to the most caught-up
        other voter that is alive; the transferee (``None`` if nothing to do)."""
        if not self.is_leader():
            return None
        assert self.raw is not None
        st = self.raw.status()
        others = [
            (st.progress.get(n, (0, 0, ""))[0], n)
            for n in st.voters
            if n != self.node_id and n in self._alive
        ]
        if not others:
            return None
        others.sort(key=lambda x: (-x[0], x[1]))
        target = others[0][1]
        self.raw.transfer_leader(target)
        self.counters.inc("raft.shutdown.transfers")
        self._step(now)
        return target

    # -- driver: storage -------------------------------------------------------------------

    def take_log_writes(self) -> list[LogWrite]:
        """Writes to make durable now, in order; then :meth:`log_writes_done`."""
        out, self._writes = self._writes, []
        return out

    def log_writes_done(self, now: Now, ids: Iterable[int]) -> None:
        """The writes ``ids`` are durable (synced): release what waited for them."""
        self._now = now
        done = set(ids)
        if self._compacting is not None and self._compacting in done:
            self._compacting = None
        if self._inflight is not None and self._inflight[0] in done:
            _, rd = self._inflight
            self._inflight = None
            if rd is None:
                assert self._bootstrapping is not None
                log.info(
                    "bootstrapped a group of %d voters on %s",
                    len(self._bootstrapping),
                    short_id(self.node_id),
                )
                self.counters.inc("raft.bootstrapped")
                self._bootstrapping = None
                self._start()
            else:
                self._finish(now, rd)
        self._step(now)

    # -- driver: the Subsystem side --------------------------------------------------------

    def handle_timer(self, now: Now) -> None:
        """Ticks, request timeouts, bootstrap proposals, autopilot (leader: on each tick
        and after a membership, leadership or configuration change); then the Ready
        cycle."""
        self._now = now
        interval = self.config.tick_interval_s
        ticked = False
        if self._next_tick is None:
            self._next_tick = now.mono + interval
        elif now.mono >= self._next_tick:
            if self.raw is not None:
                self.raw.tick()
                ticked = True
            self._next_tick += interval
            if self._next_tick <= now.mono:
                self.counters.inc("raft.ticks.skipped")
                self._next_tick = now.mono + interval
        self._expire(now)
        if self._retry_due is not None and now.mono >= self._retry_due:
            self._resend_due(now)
        if self.raw is None:
            self._bootstrap_step(now)
        elif (ticked or self._autopilot_due) and self.is_leader():
            # once per tick, or at once after what may change its plan (membership,
            # leadership, an applied configuration change): not on every timer call,
            # which under load comes for every transport deadline
            self._autopilot_due = False
            self._autopilot_step(now)
        self._step(now)

    def next_deadline(self) -> float | None:
        """The next time :meth:`handle_timer` has something to do."""
        best = self._next_tick
        if self.raw is None and not self._group_seen and self._bootstrapping is None:
            t = self.boot.next_deadline()
            if t is not None:
                best = t if best is None else min(best, t)
        if self._pending:
            # insertion order is deadline order (a fixed timeout after a monotonic now)
            first = next(iter(self._pending.values())).deadline
            if best is None or first < best:
                best = first
            if self._retry_due is not None and self._retry_due < best:
                best = self._retry_due
        return best

    def _resend_due(self, now: Now) -> None:
        """Send again every proposal whose retry time passed (a follower's: the leader's
        own proposals are in its log), each next after twice its last wait; then plan
        the next sweep (at most four per ``proposal_retry_s``)."""
        self._retry_due = None
        raw = self.raw
        retry = self.config.proposal_retry_s
        if raw is None or not retry:
            return
        leading = raw.raft.role is Role.LEADER
        soonest: float | None = None
        for req in self._pending.values():
            if req.data is None:
                continue
            if req.retry_at <= now.mono and not leading:
                self._resend(req)
                req.retries += 1
                req.retry_at = now.mono + retry * (2 ** min(req.retries, 6))
            if soonest is None or req.retry_at < soonest:
                soonest = req.retry_at
        if soonest is not None:
            self._retry_due = max(soonest, now.mono + retry / 4)

    def _resend(self, req: _Request) -> None:
        """``raw.propose(envelope)`` once more; a refusal here (no leader yet) waits for
        the next retry or leader."""
        assert self.raw is not None and req.data is not None
        try:
            self.raw.propose(req.data)
        except ProposalDropped:
            self.counters.inc("raft.requests.resend_refused")
            return
        self.counters.inc("raft.requests.resent")

    def _resend_all(self) -> None:
        """Send every pending proposal again (a new leader, or the leader's connection
        lost): safe, the windows make every member apply an envelope once."""
        if not self.config.proposal_retry_s:
            return
        for req in self._pending.values():
            if req.data is not None:
                self._resend(req)

    def _expire(self, now: Now) -> None:
        expired = False
        while self._pending:
            ticket, req = next(iter(self._pending.items()))
            if now.mono < req.deadline:
                break
            expired = True
            del self._pending[ticket]
            if req.read_key is None:
                self.counters.inc("raft.requests.indeterminate")
                self._report(Outcome(ticket, "indeterminate"), req.on_done)
            else:
                # a read changes nothing: a timeout is a definite failure
                self.counters.inc("raft.reads.timeout")
                self._report(Outcome(ticket, "dropped", reason="timeout"), req.on_done)
        if not expired:
            return
        if self._waiting_reads:
            self._waiting_reads = [r for r in self._waiting_reads if r.ticket in self._pending]
        if self._reads_by_ctx:
            self._reads_by_ctx = {
                c: t for c, t in self._reads_by_ctx.items() if t in self._pending
            }

    def _bootstrap_step(self, now: Now) -> None:
        if self._group_seen or self._bootstrapping is not None:
            return
        voters = self.boot.ready()
        if voters is not None and not self.has_state():
            self._bootstrapping = voters
            self._write_ids += 1
            hard = HardState(term=1, vote=None, commit=1)
            entry = bootstrap_entry(ConfState(voters=voters))
            self._writes.append(LogWrite(self._write_ids, hard_state=hard, entries=(entry,)))
            self._inflight = (self._write_ids, None)
        for peer, msg in self.boot.poll(now.mono):
            self.messenger.send(now, peer, SERVICE_RAFT, msg)

    def _autopilot_step(self, now: Now) -> None:
        assert self.raw is not None
        r = self.raw.raft
        if r.pending_conf_index > r.log.applied:
            return
        decision = plan(self.raw.status(), self._alive, self._down_since, now.mono, self.autopilot)
        if decision is None:
            return
        reason, cc = decision
        try:
            self.raw.propose_conf_change(cc)
        except ProposalDropped as exc:
            self.counters.inc(f"raft.autopilot.refused.{exc.reason}")
            return
        self.counters.inc("raft.autopilot.changes")
        log.info("autopilot on %s: %s %s", short_id(self.node_id), reason, cc.ops)

    # -- the Ready cycle ------------------------------------------------------------------

    def _step(self, now: Now) -> None:
        self._ready_cycle(now)
        raw = self.raw
        if raw is not None and self._inflight is not None:
            # a sync is in flight: heartbeats (and their answers) need nothing it writes
            beats = raw.take_heartbeats()
            if beats:
                self.counters.inc("raft.heartbeats.sent_during_sync", len(beats))
                for m, data in zip(beats, encode_messages(beats), strict=True):
                    self._send_raft(now, m, data)

    def _ready_cycle(self, now: Now) -> None:
        raw = self.raw
        while raw is not None and self._inflight is None and raw.has_ready():
            rd = raw.ready()
            last = self._writes[-1] if self._writes else None
            if (
                not rd.must_sync()
                and rd.hard_state is not None
                and last is not None
                and _commit_only(last)
            ):
                # a newer commit index replaces the one not yet taken by the driver
                self._writes[-1] = dataclasses.replace(last, hard_state=rd.hard_state)
                self.counters.inc("raft.writes.commit_only_coalesced")
            elif rd.must_save():
                self._write_ids += 1
                self._writes.append(
                    LogWrite(
                        self._write_ids,
                        hard_state=rd.hard_state,
                        entries=tuple(rd.entries),
                        snapshot=rd.snapshot,
                    )
                )
                if rd.must_sync():
                    self._inflight = (self._write_ids, rd)
                    return
                # only the commit index moved: the write goes with the next batch, and
                # nothing waits for it (every entry it covers is durable already)
                self.counters.inc("raft.writes.commit_only")
            self._finish(now, rd)

    def _finish(self, now: Now, rd: Ready) -> None:
        raw = self.raw
        assert raw is not None
        resend = False
        if rd.soft_state is not None:
            self._autopilot_due = True
            if rd.soft_state.role is Role.LEADER:
                self.elections_won += 1
                self.counters.inc("raft.leader.elected")
            if rd.soft_state.leader is not None and self._reads_by_ctx:
                # a new leader: the reads forwarded to the old one get no answer
                self._reask_reads()
            if rd.soft_state.leader is not None and self._pending:
                # a new leader: the proposals forwarded to the old one may be lost, and
                # this node's own uncommitted ones may be cut from its log
                resend = True
            log.debug("%s: role %s, leader %s", short_id(self.node_id), rd.soft_state.role,
                      short_id(rd.soft_state.leader) if rd.soft_state.leader else None)
        if rd.messages:
            for m, data in zip(rd.messages, encode_messages(rd.messages), strict=True):
                self._send_raft(now, m, data)
        if rd.snapshot is not None:
            meta, data = rd.snapshot
            self._restore(data)
            self._snap_index = meta.index
            self.counters.inc("raft.snapshots.installed")
        applied = self._applied_sm()
        for e in rd.committed_entries:
            if e.kind is Kind.NORMAL:
                if e.index > applied:
                    self._apply(e)
                    applied = self._applied_sm()
            else:
                self._autopilot_due = True  # a configuration change may free its next step
        for rs in rd.read_states:
            ticket = self._reads_by_ctx.pop(rs.context, None)
            req = self._pending.get(ticket) if ticket is not None else None
            if req is not None:
                req.read_index = rs.index
                self._waiting_reads.append(req)
        raw.advance(rd)
        if resend:
            self._resend_all()
        self._serve_reads()
        self._maybe_compact()

    def _applied_sm(self) -> int:
        idx = getattr(self.state_machine, "applied_index", None)
        return idx if isinstance(idx, int) else 0

    def _apply(self, e: Entry) -> None:
        try:
            proposer, boot, ticket, command, floor = decode_envelope(e.data)
        except WireError:
            self.counters.inc("raft.apply.bad_envelope")
            if self.on_apply is not None:
                self.on_apply(e, None)
            return
        if self.on_apply is not None:
            self.on_apply(e, (proposer, boot, ticket))
        if floor is not None and not self.windows.admit(e.index, proposer, boot, ticket, floor):
            self.counters.inc("raft.apply.duplicates")
            return
        result = self.state_machine.apply(e.index, command)
        self.counters.inc("raft.applied")
        if proposer == self.node_id and boot == self.boot_id:
            req = self._pending.pop(ticket, None)
            if req is not None and req.read_key is None:
                self._report(_ok_outcome(ticket, result), req.on_done)

    def _serve_reads(self) -> None:
        if not self._waiting_reads or self.raw is None:
            return
        applied = self.raw.raft.log.applied
        keep: list[_Request] = []
        for req in self._waiting_reads:
            assert req.read_index is not None
            if req.read_index <= applied:
                if self._pending.pop(req.ticket, None) is None:
                    continue
                query = getattr(self.state_machine, "query", None)
                if query is None:
                    self._report(
                        Outcome(req.ticket, "dropped", reason="no_query"), req.on_done
                    )
                    continue
                self.counters.inc("raft.reads.served")
                self._report(Outcome(req.ticket, "ok", value=query(req.read_op)), req.on_done)
            else:
                keep.append(req)
        self._waiting_reads = keep

    def _maybe_compact(self) -> None:
        raw = self.raw
        assert raw is not None
        applied = raw.raft.log.applied
        if self._compacting is not None or applied - self._snap_index < self.config.snapshot_every:
            return
        if applied > self.storage.last_index():
            return
        data = encode_snapshot(self.windows, self.state_machine.snapshot())
        self._write_ids += 1
        self._writes.append(LogWrite(self._write_ids, compact=(applied, raw.conf_state, data)))
        self._compacting = self._write_ids
        self._snap_index = applied
        self.counters.inc("raft.snapshots.taken")

    def _report(self, outcome: Outcome, on_done: Callable[[Outcome], None] | None) -> None:
        if outcome.ticket in self._client_waiters:
            peer, req_id = self._client_waiters.pop(outcome.ticket)
            self._answer_client(peer, req_id, outcome)
            return
        if on_done is not None:
            on_done(outcome)
            return
        if len(self._results) >= self.config.max_results:
            self._results.popleft()
            self.counters.inc("raft.results.dropped")
        self._results.append(outcome)

    # -- messages ------------------------------------------------------------------------

    def _send_raft(self, now: Now, m: Message, data: bytes) -> None:
        if not self.messenger.send(now, m.to, SERVICE_RAFT, [KIND_RAFT, data]):
            self.counters.inc("raft.send.dropped")
            assert self.raw is not None
            if m.to in self.raw.raft.prs:
                self.raw.report_unreachable(m.to)

    def _on_peer_lost(self, peer: NodeId) -> None:
        raw = self.raw
        if raw is None:
            return
        if self.is_leader():
            if peer in raw.raft.prs:
                raw.report_unreachable(peer)
        elif peer == raw.raft.leader and (self._reads_by_ctx or self._pending):
            # the reads and proposals we forwarded to the leader may be lost with the
            # connection
            if self._reads_by_ctx:
                self._reask_reads()
            self._resend_all()
            self._step(self._now)

    def _reask_reads(self) -> None:
        """Ask the current leader again for every read still waiting for its read index
        (``raw.read_index(ctx)`` with the same context). Safe: a read changes nothing, its
        index comes from a leader after the read began, and a late second answer finds no
        waiting read (its context was taken by the first) and is ignored. Proposals are
        re-sent by :meth:`_resend_all` (their windows make a copy harmless)."""
        raw = self.raw
        assert raw is not None
        for ctx in list(self._reads_by_ctx):
            raw.read_index(ctx)
        self.counters.inc("raft.reads.reforwarded", len(self._reads_by_ctx))

    def _on_message(self, now: Now, peer: NodeId, message: Any) -> None:
        self._now = now
        if type(message) is not list or not message or type(message[0]) is not int:
            raise MalformedError("raft service: expected [kind, ...]")
        kind = message[0]
        if kind == KIND_RAFT:
            if len(message) != 2 or type(message[1]) is not bytes:
                raise MalformedError("raft service: expected [0, message bytes]")
            m = decode_message(message[1])
            if m.sender != peer:
                self.counters.inc("raft.messages.dropped.sender_mismatch")
                return
            self._group_seen = True
            if self.raw is None:
                if self._bootstrapping is not None:
                    return  # our bootstrap write is in flight: take the message after it
                self._start()  # join the group with an empty log
                self.counters.inc("raft.joined")
            assert self.raw is not None
            self.raw.step(m)
        elif kind == KIND_BOOTSTRAP:
            bmsg = decode_bootstrap(message)
            if (
                self.raw is None
                and self.eligible
                and self.config.bootstrap_expect
                and not self._group_seen
            ):
                self.boot.receive(now.mono, peer, bmsg)
        elif kind == KIND_CLIENT_REQUEST:
            self._client_request(now, peer, message)
        elif kind == KIND_CLIENT_RESPONSE:
            self._client_response(now, peer, message)
        else:
            raise MalformedError(f"raft service: unknown kind {kind}")
        self._step(now)
        if self.raw is None:
            self._bootstrap_step(now)

    # -- client protocol (serving side) ------------------------------------------------------

    def _client_request(self, now: Now, peer: NodeId, message: list[Any]) -> None:
        from foundation_p2p.consensus.client import decode_request

        req = decode_request(message)
        if req.op == "propose":
            ticket = self.propose(now, req.payload, on_done=None)
        else:
            ticket = self.read_query(now, req.payload, on_done=None)
        if ticket in self._pending:
            self._client_waiters[ticket] = (peer, req.request_id)
        else:
            # answered at once: the outcome is the last one recorded
            for i in range(len(self._results) - 1, -1, -1):
                if self._results[i].ticket == ticket:
                    outcome = self._results[i]
                    del self._results[i]
                    self._answer_client(peer, req.request_id, outcome)
                    break

    def _answer_client(self, peer: NodeId, request_id: int, outcome: Outcome) -> None:
        from foundation_p2p.consensus.client import encode_response

        leader = outcome.leader
        if leader is None and self.raw is not None:
            leader = self.raw.raft.leader
        msg = encode_response(request_id, outcome.status, outcome.value, leader)
        self.messenger.send(self._now, peer, SERVICE_RAFT, msg)

    def _client_response(self, now: Now, peer: NodeId, message: list[Any]) -> None:
        self.counters.inc("raft.client.unexpected_response")

    # -- the NodeCore Subsystem protocol ---------------------------------------------------

    frame_types: tuple[int, ...] = ()

    def handle_message(self, now: Now, sender: NodeId, addr: Any, frame: Any) -> None:
        """Raft receives no gossip frames (its messages come through the messenger)."""
        raise AssertionError("consensus receives no gossip frames")

    def handle_command(self, now: Now, cmd: Any) -> bool:
        """No gossip commands: the facade calls :meth:`propose`/:meth:`read`."""
        return False

    def take_outgoing(self) -> list[tuple[Any, Any]]:
        """Nothing goes out as gossip frames."""
        return []

    def take_events(self) -> list[Any]:
        """No node events (outcomes come from :meth:`take_results`)."""
        return []

    def on_membership(self, now: Now, members: Iterable[Any]) -> None:
        """Recompute the eligible alive members from membership snapshots (``Member``:
        alive or suspect, not an observer, extension :data:`ELIGIBLE_EXTENSION_KEY` set)
        and hand them to :meth:`set_alive`; a member announcing the group (value 2) means
        the group exists: this node will join it, never bootstrap. ``NodeCore`` calls it
        on every membership event."""
        members = list(members)
        if self.raw is None and group_announced(members):
            self._group_seen = True
        self.set_alive(now, eligible_members(members))

    def take_extension_change(self) -> bytes | None:
        """The value to announce under :data:`ELIGIBLE_EXTENSION_KEY` if it changed since
        the last call (``NodeCore`` then calls ``membership.set_extension``), else None.
        Eligible nodes announce 1, then 2 once they belong to the group."""
        if not self.eligible:
            return None
        value = IN_GROUP_VALUE if self.raw is not None else ELIGIBLE_VALUE
        if value == self._announced:
            return None
        self._announced = value
        return value

    def describe(self) -> str:
        """One line for logs."""
        if self.raw is None:
            return f"consensus on {short_id(self.node_id)}: not started"
        st = self.raw.status()
        return (
            f"consensus on {short_id(self.node_id)}: {st.role.value} term {st.term} "
            f"commit {st.commit} applied {st.applied} voters {len(st.voters)}"
        )
