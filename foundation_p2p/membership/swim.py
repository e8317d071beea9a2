"""``SwimMembership``: the SWIM + Lifeguard membership state machine (sans-I/O).

Read top to bottom, this module is the protocol of ``spec/membership.md``:

**Members.** Every member (this node included) is known by its latest *announcement*: its
own record ``[node_id, public_key, incarnation, ALIVE|LEFT, host, port, name, metadata,
observer, ? extensions]`` signed with its Ed25519 identity and relayed verbatim. A member enters the
table only through a verified announcement. *Opinions* about others (``Suspect``,
``Dead``) are unsigned and carry an incarnation and the accuser. Incarnation rules:

- an ALIVE announcement overrides only with an incarnation higher than the known one;
- a suspect or dead opinion overrides ALIVE at an equal incarnation; dead overrides
  SUSPECT likewise; anything older is stale, and anything above the incarnation of the
  member's latest announcement is ignored (both counted);
- a LEFT announcement overrides every state at an equal or higher incarnation;
- a node that hears itself suspected or declared dead refutes: it signs a new ALIVE
  announcement with ``max(own, heard) + 1`` and gossips it (Lifeguard: awareness + 1).

The first incarnation of a start is the node's boot epoch (strictly larger at every start,
see ``NodeCore``), so a node restarting, on the same or a new address, is the same member
with a newer record at once: its new address is adopted (``MemberUpdated`` or, if it had
been declared failed, ``MemberJoined``).

**Probing** (SWIM 4.3, Lifeguard). Once per ``probe_interval * (awareness + 1)`` the next
member of a shuffled round-robin list is pinged (the list is reshuffled at the end of each
pass; new members are inserted at a random position). No ack within ``probe_timeout *
(awareness + 1)``: ``indirect_checks`` random members are asked to ping it (ping-req); a
relay pings only a member it knows, at that member's signed address (never an address the
requester names), and forwards the target's ack, or (Lifeguard) answers a nack when the
target stays silent for 0.8 probe timeouts. No ack by the end of the probe interval: the
target is suspected. A ping to a suspect carries the suspicion (buddy system) so it can
refute at once. Awareness (Lifeguard's local health, 0..awareness_max) goes down by one
per successful probe, up by one per refutation, and up by the number of missing nacks (or
by one when no relay could be asked) per failed probe.

**Suspicion** (Lifeguard). A suspect is declared failed after
``max(min, max - (max - min) * ln(n + 1) / ln(k + 1))`` seconds, where min =
suspicion_mult * max(1, log10 N) * probe_interval, max = suspicion_max_mult * min, n the
independent confirmations heard so far (suspect opinions from accusers other than the
first), and k = suspicion_mult - 2 (0 when N - 2 < k). Without Lifeguard the timeout is
min, awareness stays 0 and relays send no nacks.

**Dissemination.** Every update (an announcement or an opinion) goes into a broadcast
queue keyed by the member it is about (a newer update about a member replaces the queued
one). The queue is bounded (``max_broadcasts``; when full the most-sent entry is dropped,
counted ``membership.broadcast.dropped_full``). Each outgoing packet of the node is topped
up with queued updates that fit (:meth:`piggyback`: never past the packet size, and
leaving ``user_payload_share`` of it free); and every ``gossip_interval`` a round sends
them to ``gossip_nodes`` members in packets of their own. Updates are taken hot first (a
new update is hot for the rounds it needs to be sent out, so fresh news never waits behind
a backlog), then least-sent first. An update is sent at most ``retransmit_mult *
ceil(log10(N + 1))`` times, never to the member an announcement is about, and not straight
back to where it came from. A record pulled from a push-pull table (not its sender's own)
is passed on only twice, behind all fresher news.

**Push-pull.** Every ``push_pull_interval`` (scaled up above 32 members like memberlist's
pushPullScale) a node sends its whole table to one random member, which answers with its
own (the first chunk of an exchange to arrive, whichever it is, triggers the answer,
once; an initiator with no answer within ``4 * probe_timeout_s`` sends again under a fresh
exchange, at most twice); entries are chunked into ``push-pull`` frames of at most
``push_pull_chunk_bytes``,
and one exchange sends at most ``push_pull_max_bytes`` (above it, this node's record and a
random subset; counted ``membership.push_pull.truncated``). A received entry applies as
its announcement, except that a SUSPECT or FAILED entry applies as a suspect opinion by
the sender (memberlist's rule: a full-state merge never declares a member dead, it lets
the member refute), and a FAILED or LEFT entry for an unknown member is skipped.
``Join(addresses)`` pushes this node's record to every seed and pulls the whole table
from one of them (in turn), retried with a doubling backoff (``join_retry_s`` ..
``join_retry_max_s``) until a seed's answer arrives whole (every chunk up to the last).

**Healing and reaping.** Each member this node declared failed is pinged again at an
exponential backoff (first ``dead_retry_interval_s`` after the failure, the gap doubling
up to ``dead_retry_max_interval_s``, jittered) until ``dead_retry_for_s`` after it; if it
acks, the two push-pull, so the two halves of a healed partition find each other and
refute. Failed and left members are forgotten ``reap_after_s`` after the transition
(``MemberReaped``); a reaped member's incarnation is remembered (bounded by
``max_members``, oldest forgotten first) so a late copy of its old announcement does not
bring it back.

**Observers.** A member whose record says ``observer`` is never probed, never a ping-req
relay, never a gossip or push-pull target, and never counted in N. An observer itself
does not probe and does not gossip: it joins by push-pull and refreshes by push-pull
every ``min(push_pull interval, observer_expiry_s / 3)``, sooner at first (the first
refresh ``probe_interval_s`` after its join, the gap doubling up to that interval, so
an observer that joined a forming cluster sees the members' records of the next seconds,
such as a Raft eligibility extension); members forget an observer not heard from
(push-pull) for ``observer_expiry_s`` (``MemberReaped``).

**Leave.** ``Leave()`` signs a LEFT announcement at incarnation + 1 and gossips it; the
node stops probing, push-pull and retries, keeps answering pings and push-pulls, and
answers any suspicion of itself with its LEFT announcement instead of refuting.

**Bounds.** Members ``max_members`` (new ones refused, ``membership.members.refused_full``);
broadcast queue as above; relayed ping-reqs ``max_relayed_probes`` (the oldest forgotten,
``membership.relay.forgotten``); one own probe at a time; push-pull bytes per exchange as
above; join exchanges ``max_join_addresses``; suspicion timers one per suspect; dead-retry
schedule one time per failed member (superseded timer entries pruned past twice the failed
members + 64), unanswered retry pings ``MAX_RETRY_PINGS``; awaited push-pulls
``MAX_PENDING_PUSH_PULLS`` (the oldest given up, ``membership.push_pull.given_up``),
answered exchanges ``MAX_ANSWERED_EXCHANGES`` (the oldest forgotten); hot windows 2 x
``max_broadcasts`` (the oldest ends early).

**Extensions** (spec 3.5). Beside the application's ``metadata``, a record carries a
bounded map ``{key: bytes}`` for the node's own subsystems (key 1: the channels' topic
set), so what they announce rides the same signed, verbatim-relayed dissemination.
:meth:`SwimMembership.set_extension` issues a new announcement (incarnation + 1) like
:meth:`~SwimMembership.update_metadata`, but coalesced: at most one per
``extension_min_interval_s`` (a change inside the interval is announced at its end, the
latest value of each key winning). Total value bytes at most ``max_extension_bytes``.
Listeners (:meth:`SwimMembership.add_listener`) are called with a member's snapshot each
time its table entry takes a new announcement, so a subsystem learns remote extensions
without polling the table (O(1) per change, not O(N) per tick).

All randomness comes from the ``rng`` handed in, and time only from ``now``.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from foundation_p2p.addresses import Address, NodeId, short_id
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.errors import LimitError
from foundation_p2p.events import Command, Event, Join, Leave
from foundation_p2p.membership.config import MembershipConfig, suspicion_timeout
from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.frames import (
    ACK,
    ANNOUNCEMENT,
    DEAD,
    MAX_EXTENSION_KEY,
    MAX_EXTENSIONS,
    MEMBERSHIP_FRAME_TYPES,
    NACK,
    PING,
    PING_REQ,
    PUSH_PULL,
    SUSPECT,
    Announcement,
    Dead,
    Nack,
    PingReq,
    PushPull,
    PushPullEntry,
    Suspect,
    SwimAck,
    SwimPing,
    extension_bytes,
)
from foundation_p2p.membership.state import Member, MemberState
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Frame
from foundation_p2p.wire.limits import WireLimits

log = logging.getLogger("foundation_p2p.membership")

PACKET_OVERHEAD_BYTES = 64
"""Same bound as ``foundation_p2p.node.PACKET_OVERHEAD_BYTES`` (header, sealed head, tag)."""
FRAMES_ARRAY_HEAD = 3
"""Bytes of the packet's frame-array head (at most 3 for 64 frames)."""
CHUNK_OVERHEAD = 32
"""Upper bound of a push-pull frame's bytes around its entries."""
ENTRY_OVERHEAD = 8
"""Upper bound of a push-pull entry's bytes around its record and signature."""
MIN_PIGGYBACK_ROOM = 40
"""Below this many free bytes a packet is not topped up (no update fits)."""
MAX_RETRY_PINGS = 256
"""Most unanswered dead-retry pings remembered (the oldest is forgotten first)."""
RETRY_JITTER = (0.5, 1.5)
"""Each dead-retry gap is multiplied by a factor drawn uniformly from this range (mean 1:
wide, so the retries of the many (node, failed member) pairs of a partition spread out
instead of arriving in waves after the same number of doublings)."""
PUSH_PULL_TIMEOUT_MULT = 4.0
"""An initiated push-pull not answered within this many probe timeouts is sent again."""
RTT_MIN_SAMPLES = 4
"""Directly acked probes to a member before :meth:`SwimMembership.probe_rtts` reports it."""
RTT_SMOOTHING = 8
"""Probe round trips: a plain mean of the first 8 samples, then an average weighted 1/8."""
PUSH_PULL_RETRIES = 2
"""Most times an unanswered push-pull is sent again (each under a fresh exchange)."""
MAX_PENDING_PUSH_PULLS = 16
"""Most push-pulls this node awaits an answer to (the oldest is given up first)."""
MAX_ANSWERED_EXCHANGES = 256
"""Most exchanges remembered as answered (the oldest is forgotten first)."""
MAX_UNKNOWN_SENDERS = 64
"""Most senders not in the table remembered for a pull or as recently pulled (the oldest
is forgotten first, counted ``membership.unknown_sender.dropped``)."""
UNKNOWN_PULL_DELAY_MULT = 1.0
"""A sender still unknown this many probe intervals after its frame is pulled from."""
UNKNOWN_PULL_COOLDOWN_MULT = 10.0
"""A sender pulled from is not pulled from again for this many probe intervals."""
MAX_JOIN_CHUNKS = 4096
"""Most chunk indices of a join answer remembered (a bigger answer never completes a join
by itself; the periodic push-pull still merges what came)."""
MAX_INCARNATION = (1 << 64) - 1
"""Incarnations are unsigned 64-bit integers."""
SCAN_LIMIT = 64
"""Most queued updates examined to fill one packet (bounds the cost per packet)."""
MISS_LIMIT = 16
"""Filling a packet stops after this many examined updates too large for the room left."""
PULLED_SENDS = 2
"""A record learned from a push-pull (not the sender's own) is passed on this many times."""
NACK_FRACTION = 0.8
"""A relay nacks after this share of the probe timeout (so the nack arrives in time)."""

ALIVE = MemberState.ALIVE
SUSPECT_STATE = MemberState.SUSPECT
FAILED = MemberState.FAILED
LEFT = MemberState.LEFT

_EMPTY: list[tuple[Frame, bytes]] = []


@dataclass(slots=True)
class _Suspicion:
    accuser: NodeId
    start: float
    low: float
    high: float
    expected: int
    confirmers: set[NodeId]
    deadline: float


class _Node:
    """One member's state (slots: the hot path reads these per frame)."""

    __slots__ = (
        "_member",
        "ann",
        "incarnation",
        "last_heard",
        "node_id",
        "retry_at",
        "retry_gap",
        "since",
        "state",
        "suspicion",
    )

    def __init__(self, ann: Announcement, state: MemberState, since: float) -> None:
        self.node_id: NodeId = ann.node_id
        self.ann = ann
        self.incarnation = ann.incarnation
        self.state = state
        self.since = since
        self.last_heard = since
        self.suspicion: _Suspicion | None = None
        self.retry_at = 0.0
        """When the next dead-retry ping is due (while FAILED)."""
        self.retry_gap = 0.0
        """The current dead-retry backoff (doubles after each retry up to the cap)."""
        self._member: Member | None = None

    @property
    def member(self) -> Member:
        """The immutable snapshot the application sees (built on demand, then kept until
        the next change)."""
        m = self._member
        if m is None:
            m = self._member = self._snapshot()
        return m

    def _snapshot(self) -> Member:
        a = self.ann
        return Member(
            a.node_id,
            a.name,
            (a.host, a.port),
            self.incarnation,
            self.state,
            a.metadata,
            a.observer,
            a.public_key,
            self.since,
        ).with_extensions(a.extensions)

    def refresh(self) -> None:
        self._member = None


class _Broadcast:
    __slots__ = (
        "encoded", "frame", "key", "last_dest", "limit", "sent", "serial", "subject", "tier",
    )

    def __init__(self, key: NodeId, frame: Frame, encoded: bytes, serial: int) -> None:
        self.key = key
        self.frame = frame
        self.encoded = encoded
        self.sent = 0
        self.limit: int | None = None  # sends before it retires (None: the retransmit limit)
        self.serial = serial
        self.last_dest: Address | None = None
        """Where it was last sent, or where it came from (not sent there next: a gossip
        round's packet would otherwise carry it twice, once as gossip and once
        piggybacked, and the node it came from has it)."""
        self.subject: Address | None = None
        """For an announcement, the address of the member it is about (never sent there:
        a member has its own record)."""
        self.tier: list[dict[NodeId, _Broadcast]] = []
        """The levels it is in: the hot ones (fresh news) or the others."""


@dataclass(slots=True)
class _Probe:
    seq: int
    target: NodeId
    start: float
    direct_deadline: float | None
    acked: bool = False
    nacks_expected: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    requester: Address
    requester_seq: int
    deadline: float


@dataclass(slots=True)
class _PendingPushPull:
    addr: Address
    attempts: int
    deadline: float


class _IndexedSet:
    """A list with O(1) add, remove and random choice (swap-remove)."""

    __slots__ = ("index", "items")

    def __init__(self) -> None:
        self.items: list[NodeId] = []
        self.index: dict[NodeId, int] = {}

    def add(self, key: NodeId) -> bool:
        if key in self.index:
            return False
        self.index[key] = len(self.items)
        self.items.append(key)
        return True

    def discard(self, key: NodeId) -> bool:
        i = self.index.pop(key, None)
        if i is None:
            return False
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i
        return True

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, key: object) -> bool:
        return key in self.index


class SwimMembership:
    """The membership subsystem; see the module docstring for the protocol."""

    frame_types: tuple[int, ...] = MEMBERSHIP_FRAME_TYPES

    def __init__(
        self,
        config: MembershipConfig,
        *,
        identity: Identity,
        address: Address,
        name: str,
        now: Now,
        rng: random.Random,
        counters: Counters,
        limits: WireLimits,
        incarnation: int = 0,
        max_packet_bytes: int = 1400,
    ) -> None:
        """Start as an alive member at ``incarnation`` (``NodeCore`` passes its boot epoch)."""
        self.config = config
        self.identity = identity
        self.node_id: NodeId = identity.node_id
        self.rng = rng
        self.counters = counters
        self.limits = limits
        self.budget = max_packet_bytes - PACKET_OVERHEAD_BYTES - FRAMES_ARRAY_HEAD
        """Bytes of frames one packet holds."""
        self.chunk_bytes = max(64, min(config.push_pull_chunk_bytes, self.budget - CHUNK_OVERHEAD))
        self.piggyback_cap = int(self.budget * (1.0 - config.user_payload_share))
        """Most bytes of a packet that membership frames may fill by piggybacking."""
        self.awareness = 0
        """Lifeguard local health score, 0 (healthy) .. ``awareness_max``."""
        self.leaving = False
        """True once ``Leave()`` was given."""
        self._observer = config.observer
        # an observer's refresh interval: probe_interval_s at first, doubling at each
        # refresh up to its normal one (it receives no gossip: news reaches it only so)
        self._observer_refresh = config.probe_interval_s
        self._name = name
        self._address = address
        self._metadata = b""
        self._extensions: dict[int, bytes] = {}  # what our next record carries
        self._ext_last: float | None = None  # when extensions were last announced
        self._ext_due: float | None = None  # a coalesced extension change waits until then
        self._listeners: list[Callable[[Member], None]] = []

        self._nodes: dict[NodeId, _Node] = {}
        self._peers = _IndexedSet()  # alive/suspect non-observer members other than self
        self._failed = _IndexedSet()  # FAILED members (dead-retry candidates)
        self._left = _IndexedSet()  # LEFT members (reaping candidates)
        self._watchers = _IndexedSet()  # observer members (expiry candidates)
        self._n_active = 0  # alive/suspect non-observers, self included
        self._tombstones: OrderedDict[NodeId, tuple[int, float]] = OrderedDict()

        self._seq = rng.getrandbits(32)
        self._probe: _Probe | None = None
        self._probe_list: list[NodeId] = []
        self._probe_pos = 0
        self._relays: OrderedDict[int, _Relay] = OrderedDict()
        self._retry_pings: OrderedDict[int, NodeId] = OrderedDict()  # MAX_RETRY_PINGS
        self._retry_heap: list[tuple[float, int, NodeId]] = []  # lazily pruned
        self._pp_pending: OrderedDict[int, _PendingPushPull] = OrderedDict()
        self._pp_answered: OrderedDict[tuple[NodeId, int], None] = OrderedDict()
        # senders of frames that are not in the table: pulled from if still unknown at
        # _next_unknown (both bounded by MAX_UNKNOWN_SENDERS, the oldest forgotten)
        self._unknown: OrderedDict[NodeId, Address] = OrderedDict()
        self._unknown_pulled: OrderedDict[NodeId, float] = OrderedDict()
        self._next_unknown: float | None = None
        self._suspicion_heap: list[tuple[float, int, NodeId]] = []
        self._heap_serial = 0

        self._bq: dict[NodeId, _Broadcast] = {}
        self._levels: list[dict[NodeId, _Broadcast]] = [{}]  # updates no longer hot
        self._hot: list[dict[NodeId, _Broadcast]] = [{}]  # fresh news, taken first
        self._hot_fifo: deque[tuple[float, int, NodeId]] = deque()  # (until, serial, key)
        self._t = now.mono  # the time of the latest input (for the hot window)
        self._hot_n = -1
        self._hot_s = 0.0
        self._changed = False  # set when a timer may need arming (see handle_message)
        self._bq_serial = 0
        self._limit_n = -1
        self._limit = 1

        self._seeds: tuple[Address, ...] = ()
        self._join_exchanges: set[int] = set()
        self._join_got: set[int] = set()  # chunk indices of the join answer received
        self._join_got_exchange = -1
        self._join_last: int | None = None
        self._join_backoff = config.join_retry_s
        self._join_turn = 0
        self.joined = False
        """True once a seed answered a join push-pull, its last chunk included (or none was
        needed)."""

        self._next_probe: float | None = None
        self._next_gossip: float | None = None
        self._gossip_phase = now.mono + rng.uniform(0.0, config.gossip_interval_s)
        self._gossip_list: list[NodeId] = []
        self._gossip_dests: set[Address] = set()  # at most gossip_nodes
        self._gossip_pos = 0
        self._next_push_pull: float | None = None
        self._next_join: float | None = None
        self._next_maint: float | None = None
        self._maint_interval = max(
            0.1, min(10.0, min(config.reap_after_s, config.observer_expiry_s) / 10)
        )

        self._deadline: float | None = None
        self._deadline_stale = True
        self._table_version = 0  # bumped on every change of what push-pull would send
        self._chunk_cache: tuple[int, list[list[PushPullEntry]]] | None = None
        self._bq_min = 1 << 30  # a lower bound of the queued updates' encoded sizes

        self._out: list[tuple[Address | NodeId, Frame]] = []
        self._events: list[Event] = []
        self._handlers: dict[int, Callable[[Now, NodeId, Address, Frame], None]] = {
            PING: self._on_ping,  # type: ignore[dict-item]
            ACK: self._on_ack,  # type: ignore[dict-item]
            PING_REQ: self._on_ping_req,  # type: ignore[dict-item]
            NACK: self._on_nack,  # type: ignore[dict-item]
            ANNOUNCEMENT: self._on_announcement_frame,  # type: ignore[dict-item]
            SUSPECT: self._on_suspect_frame,  # type: ignore[dict-item]
            DEAD: self._on_dead_frame,  # type: ignore[dict-item]
            PUSH_PULL: self._on_push_pull,  # type: ignore[dict-item]
        }

        self._probe_rtt: dict[NodeId, tuple[int, float]] = {}
        """Last direct probe round trip per member (see :meth:`probe_rtts`)."""
        own = self._sign(incarnation, ALIVE)
        self._self = _Node(own, ALIVE, now.mono)
        self._nodes[self.node_id] = self._self
        if not self._observer:
            self._n_active = 1

    # -- public API ----------------------------------------------------------------------

    @property
    def local(self) -> Member:
        """This node's own record."""
        return self._self.member

    def members(self) -> list[Member]:
        """Every known member, this node included, sorted by node id."""
        return [self._nodes[k].member for k in sorted(self._nodes)]

    def member(self, node_id: NodeId) -> Member | None:
        """The member with this id, or None."""
        node = self._nodes.get(node_id)
        return None if node is None else node.member

    def alive_count(self) -> int:
        """N for the formulas: alive and suspect members that are not observers (self too)."""
        return self._n_active

    def update_metadata(self, now: Now, metadata: bytes) -> None:
        """Replace this node's metadata: a new signed announcement at incarnation + 1.

        Raises ``LimitError`` if ``metadata`` exceeds ``max_metadata_bytes`` or the
        announcement would not fit one packet; ``ValueError`` after ``Leave()``.
        """
        if type(metadata) is not bytes:
            raise TypeError("metadata: expected bytes")
        if len(metadata) > self.config.max_metadata_bytes:
            raise LimitError(
                f"metadata: {len(metadata)} bytes exceeds max_metadata_bytes "
                f"{self.config.max_metadata_bytes}"
            )
        if self.leaving:
            raise ValueError("metadata: this node has left")
        self._deadline_stale = True
        self._t = now.mono
        old = self._metadata
        self._metadata = metadata
        ann = self._sign(self._self.incarnation + 1, ALIVE)
        if len(ann.record) + len(ann.signature) + ENTRY_OVERHEAD > self.chunk_bytes:
            self._metadata = old
            raise LimitError("metadata: the signed announcement would not fit one packet")
        self._adopt_own(now, ann)
        self._arm(now.mono)
        log.debug("metadata updated: %d bytes, incarnation %d", len(metadata), ann.incarnation)

    def set_extension(self, now: Now, key: int, value: bytes | None) -> bool:
        """Set (``None``: remove) this node's announcement extension ``key``.

        Like :meth:`update_metadata` it is announced in a new signed record at incarnation
        + 1, but coalesced: at most one such announcement per ``extension_min_interval_s``;
        a change inside the interval is announced when it ends, with the latest value of
        every key (a record signed meanwhile for another reason, a refutation or a
        metadata update, carries it already). Returns True if announced now, False if it
        waits or changes nothing.

        Raises ``LimitError`` when the extensions would exceed ``max_extension_bytes`` or
        ``MAX_EXTENSIONS`` entries, or the signed announcement would not fit one packet
        (nothing is changed then); ``ValueError`` for a bad key or after ``Leave()``.
        """
        if type(key) is not int or not 0 <= key <= MAX_EXTENSION_KEY:
            raise ValueError(f"extension key {key!r}: expected an integer 0..{MAX_EXTENSION_KEY}")
        if value is not None and type(value) is not bytes:
            raise TypeError(f"extension {key}: expected bytes or None")
        if self.leaving:
            raise ValueError(f"extension {key}: this node has left")
        if self._extensions.get(key) == value:
            return False
        new = dict(self._extensions)
        if value is None:
            del new[key]
        else:
            new[key] = value
        new = dict(sorted(new.items()))
        if len(new) > MAX_EXTENSIONS:
            raise LimitError(f"extension {key}: more than {MAX_EXTENSIONS} extensions")
        total = extension_bytes(new)
        if total > self.config.max_extension_bytes:
            raise LimitError(
                f"extension {key}: {total} bytes of extensions exceeds max_extension_bytes "
                f"{self.config.max_extension_bytes}"
            )
        record = Announcement.encode_record(
            self.identity,
            incarnation=self._self.incarnation + 1,
            state=ALIVE,
            address=self._address,
            name=self._name,
            metadata=self._metadata,
            observer=self._observer,
            extensions=new,
        )
        size = len(record) + 64 + ENTRY_OVERHEAD
        if size > self.chunk_bytes:
            raise LimitError(
                f"extension {key}: the signed announcement ({size} bytes) would not fit one "
                f"packet ({self.chunk_bytes} bytes)"
            )
        self._deadline_stale = True
        self._t = now.mono
        self._extensions = new
        if self._self.ann.extensions == new:
            self._ext_due = None  # back to what was announced: nothing to send
            return False
        t = now.mono
        if self._ext_last is not None and t < self._ext_last + self.config.extension_min_interval_s:
            if self._ext_due is None:
                self._ext_due = self._ext_last + self.config.extension_min_interval_s
            self.counters.inc("membership.extensions.coalesced")
            return False
        self._announce_extensions(now)
        return True

    def add_listener(self, callback: Callable[[Member], None]) -> None:
        """Call ``callback(member)`` each time another member's table entry takes a new
        announcement (it joined, updated its record, came back alive, or left).

        Not called for suspect/failed opinions, nor for this node's own record. The
        callback runs inside the membership's handlers: it must not raise and must not
        call back into this object's mutating methods.
        """
        self._listeners.append(callback)

    def _announce_extensions(self, now: Now) -> None:
        self._ext_due = None
        self._ext_last = now.mono
        ann = self._sign(self._self.incarnation + 1, ALIVE)
        self._adopt_own(now, ann)
        self.counters.inc("membership.extensions.announced")
        self._arm(now.mono)
        log.debug(
            "extensions %s announced at incarnation %d", sorted(ann.extensions), ann.incarnation
        )

    # -- Subsystem protocol ----------------------------------------------------------------

    def handle_command(self, now: Now, cmd: Command) -> bool:
        """``Join`` (push-pull with the seeds until one answers) and ``Leave``."""
        self._deadline_stale = True
        self._t = now.mono
        if isinstance(cmd, Join):
            self._join(now, cmd.addresses)
            self._arm(now.mono)
            return True
        if isinstance(cmd, Leave):
            self._leave(now)
            self._arm(now.mono)
            return True
        return False

    def handle_message(self, now: Now, sender: NodeId, addr: Address, frame: Frame) -> None:
        """One membership frame from ``sender`` (authenticated) at ``addr``."""
        self._deadline_stale = True
        self._t = now.mono
        self._handlers[frame.TYPE](now, sender, addr, frame)
        if sender not in self._nodes and not self._observer and not self.leaving:
            self._note_unknown(now, sender, addr)
        if self._changed:  # a member or an update appeared: a timer may be needed
            self._changed = False
            self._arm(now.mono)

    def handle_timer(self, now: Now) -> None:
        """Run every timer that is due."""
        self._deadline_stale = True
        self._t = now.mono
        t = now.mono
        probe = self._probe
        if probe is not None and probe.direct_deadline is not None and t >= probe.direct_deadline:
            probe.direct_deadline = None
            if not probe.acked:
                self._indirect(now, probe)
        if self._next_probe is not None and t >= self._next_probe:
            self._probe_tick(now)
        if self._relays:
            self._expire_relays(t)
        heap = self._suspicion_heap
        while heap and heap[0][0] <= t:
            _, _, node_id = heapq.heappop(heap)
            self._suspicion_due(now, node_id)
        if self._next_gossip is not None and t >= self._next_gossip:
            self._next_gossip = None
            self._gossip_round()
        if self._next_push_pull is not None and t >= self._next_push_pull:
            self._next_push_pull = None
            self._periodic_push_pull(now)
        if self._retry_heap and self._retry_heap[0][0] <= t:
            self._dead_retry(now)
        if self._pp_pending:
            self._expire_push_pulls(now)
        if self._next_join is not None and t >= self._next_join:
            self._join_attempt(now)
        if self._next_maint is not None and t >= self._next_maint:
            self._next_maint = None
            self._maintenance(now)
        if self._next_unknown is not None and t >= self._next_unknown:
            self._next_unknown = None
            self._pull_unknown(now)
        if self._ext_due is not None and t >= self._ext_due:
            self._ext_due = None
            if self._self.ann.extensions != self._extensions and not self.leaving:
                self._announce_extensions(now)
        self._arm(t)

    def next_deadline(self) -> float | None:
        """The earliest time a timer is due (None when nothing is pending).

        Cached: timers change only inside ``handle_message``, ``handle_timer``,
        ``handle_command`` and ``update_metadata``, which mark the cache stale.
        """
        if not self._deadline_stale:
            return self._deadline
        self._deadline_stale = False
        best: float | None = None
        probe = self._probe
        candidates = (
            self._next_probe,
            probe.direct_deadline if probe is not None else None,
            self._next_gossip,
            self._next_push_pull,
            self._retry_heap[0][0] if self._retry_heap and not self.leaving else None,
            next(iter(self._pp_pending.values())).deadline if self._pp_pending else None,
            self._next_join,
            self._next_maint,
            self._suspicion_heap[0][0] if self._suspicion_heap else None,
            next(iter(self._relays.values())).deadline if self._relays else None,
            self._ext_due,
            self._next_unknown,
        )
        for d in candidates:
            if d is not None and (best is None or d < best):
                best = d
        self._deadline = best
        return best

    def take_outgoing(self) -> list[tuple[Address | NodeId, Frame]]:
        """Frames to send, with their destination addresses."""
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        """Membership events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    # -- piggybacking (called by NodeCore for every packet it assembles) -----------------

    def piggyback(self, dest: Address, used: int, free_frames: int) -> list[tuple[Frame, bytes]]:
        """Least-sent queued updates that fit a packet to ``dest`` already holding ``used``
        bytes.

        The packet's membership share is ``piggyback_cap`` bytes (the budget minus
        ``user_payload_share``); updates are added while they fit in ``piggyback_cap -
        used`` and ``free_frames``. Returns ``(frame, encoded)`` pairs, counted as sent.
        """
        if not self._bq:
            return _EMPTY
        if self._gossip_dests and dest in self._gossip_dests:
            # This packet carries a gossip round: it already holds the least-sent updates.
            self._gossip_dests.discard(dest)
            return _EMPTY
        room = self.piggyback_cap - used
        if room < MIN_PIGGYBACK_ROOM or free_frames <= 0:
            return _EMPTY
        taken = self._take_broadcasts(room, free_frames, dest)
        if taken:
            self.counters.inc("membership.broadcast.piggybacked", len(taken))
        return taken

    # -- timers and arming -------------------------------------------------------------

    def _scale(self) -> int:
        return self.awareness + 1 if self.config.lifeguard else 1

    def _arm(self, t: float) -> None:
        """Start the timers that have become needed (each is idle when there is no work)."""
        self._changed = False
        cfg = self.config
        if self._peers:
            if self._next_probe is None and not self._observer and not self.leaving:
                self._next_probe = t + self.rng.uniform(0.0, cfg.probe_interval_s)
            if self._next_push_pull is None and not self.leaving:
                self._next_push_pull = t + self._push_pull_interval() * self.rng.uniform(0.5, 1.0)
        if self._bq and self._next_gossip is None and not self._observer:
            # The next tick of this node's gossip clock (a fixed random phase), so an update
            # waits half a round on average before it goes out, as with a free-running ticker.
            interval = cfg.gossip_interval_s
            ticks = math.floor((t - self._gossip_phase) / interval) + 1
            nxt = self._gossip_phase + ticks * interval
            while nxt <= t:  # float rounding on an exact tick
                nxt += interval
            self._next_gossip = nxt
        if self._next_maint is None and (len(self._nodes) > 1 or self._tombstones):
            self._next_maint = t + self._maint_interval

    def _push_pull_interval(self) -> float:
        interval = self.config.push_pull_interval(self._n_active)
        if self._observer:
            interval = min(interval, self.config.observer_expiry_s / 3, self._observer_refresh)
        return interval

    # -- probing ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFFFFFF
        return self._seq

    def _probe_tick(self, now: Now) -> None:
        """End the current probe (suspect its target if unanswered) and start the next."""
        if self._probe is not None:
            self._conclude(now, self._probe)
            self._probe = None
        if self._observer or self.leaving:
            self._next_probe = None
            return
        target = self._next_target()
        if target is None:
            self._next_probe = None
            return
        scale = self._scale()
        t = now.mono
        self._next_probe = t + self.config.probe_interval_s * scale
        seq = self._next_seq()
        self._probe = _Probe(seq, target.node_id, t, t + self.config.probe_timeout_s * scale)
        addr = (target.ann.host, target.ann.port)
        self._out.append((addr, SwimPing(seq, target.node_id)))
        self.counters.inc("membership.probes.sent")
        s = target.suspicion
        if s is not None:
            # Buddy system: tell the suspect it is suspected, so it can refute at once.
            self._out.append((addr, Suspect(target.node_id, target.incarnation, s.accuser)))

    def _next_target(self) -> _Node | None:
        nodes = self._nodes
        for _ in range(2):
            lst = self._probe_list
            while self._probe_pos < len(lst):
                node_id = lst[self._probe_pos]
                self._probe_pos += 1
                if node_id in self._peers:
                    return nodes[node_id]
            # End of a pass: reshuffle the current members (SWIM 4.3).
            self._probe_list = list(self._peers.items)
            self.rng.shuffle(self._probe_list)
            self._probe_pos = 0
            if not self._probe_list:
                return None
        return None

    def _indirect(self, now: Now, probe: _Probe) -> None:
        """No direct ack in time: ask ``indirect_checks`` relays to ping the target."""
        target = self._nodes.get(probe.target)
        if target is None or target.state not in (ALIVE, SUSPECT_STATE):
            return
        k = self.config.indirect_checks
        relays = self._sample_peers(k, exclude=probe.target)
        frame = PingReq(probe.seq, probe.target, target.ann.host, target.ann.port)
        for relay_id in relays:
            relay = self._nodes[relay_id]
            self._out.append(((relay.ann.host, relay.ann.port), frame))
        probe.nacks_expected = len(relays) if self.config.lifeguard else 0
        self.counters.inc("membership.probes.indirect")
        self.counters.inc("membership.ping_req.sent", len(relays))

    def _sample_peers(self, k: int, exclude: NodeId | None = None) -> list[NodeId]:
        items = self._peers.items
        if k <= 0 or not items:
            return []
        n = min(len(items), k + (1 if exclude is not None else 0))
        picked = self.rng.sample(items, n)
        return [p for p in picked if p != exclude][:k]

    def _conclude(self, now: Now, probe: _Probe) -> None:
        """The probe interval ended: success lowers awareness, failure suspects the target."""
        if probe.acked:
            return
        self.counters.inc("membership.probes.failed")
        if probe.nacks_expected > 0:
            self._adjust_awareness(probe.nacks_expected - probe.nacks)
        else:
            self._adjust_awareness(1)
        target = self._nodes.get(probe.target)
        if target is None or target.state not in (ALIVE, SUSPECT_STATE):
            return
        log.debug(
            "probe of %s failed (%d/%d nacks): suspect",
            short_id(probe.target),
            probe.nacks,
            probe.nacks_expected,
        )
        self._suspect(now, target.node_id, target.incarnation, self.node_id)

    def _adjust_awareness(self, delta: int) -> None:
        if not self.config.lifeguard or delta == 0:
            return
        value = max(0, min(self.config.awareness_max, self.awareness + delta))
        if value != self.awareness:
            self.awareness = value
            direction = "up" if delta > 0 else "down"
            self.counters.inc(f"membership.awareness.{direction}")

    def _on_ping(self, now: Now, sender: NodeId, addr: Address, frame: SwimPing) -> None:
        if frame.target != self.node_id:
            self.counters.inc("membership.ping.wrong_target")
            return
        self._out.append((addr, SwimAck(frame.seq)))

    def _on_ack(self, now: Now, sender: NodeId, addr: Address, frame: SwimAck) -> None:
        probe = self._probe
        if probe is not None and probe.seq == frame.seq:
            if not probe.acked:
                probe.acked = True
                self.counters.inc("membership.probes.acked")
                self._adjust_awareness(-1)
                if sender == probe.target and probe.target in self._nodes:
                    # A direct ack: the ping's round trip (a relayed one also holds the
                    # relay's two hops, so it is not a sample of this path).
                    self._rtt_sample(probe.target, now.mono - probe.start)
            return
        retried = self._retry_pings.pop(frame.seq, None) if self._retry_pings else None
        if retried is not None:
            node = self._nodes.get(retried)
            if node is not None and node.state is FAILED and sender == retried:
                # A member we declared failed answers: exchange state, so it can refute.
                self.counters.inc("membership.dead_retry.answered")
                self._initiate_push_pull(now, addr, 0)
            return
        relay = self._relays.pop(frame.seq, None)
        if relay is not None:
            self._out.append((relay.requester, SwimAck(relay.requester_seq)))
            self.counters.inc("membership.relay.acks_forwarded")
            return
        self.counters.inc("membership.ack.unexpected")

    def _on_ping_req(self, now: Now, sender: NodeId, addr: Address, frame: PingReq) -> None:
        """Relay a probe: ping ``frame.target`` at the address of its own latest record.

        A relay pings only a member in its table (other than itself and observers), and
        only at that member's signed address; the requested host and port are ignored
        (counted when they differ). So a holder of the cluster key cannot aim this node's
        pings at an arbitrary host:port. A refused ping-req is counted
        (``membership.relay.refused``) and, with Lifeguard, answered by a nack at once: the
        path to the requester works, the relay just has no one to ping.
        """
        target = self._nodes.get(frame.target)
        if target is None or target is self._self or target.ann.observer:
            self.counters.inc("membership.relay.refused")
            if self.config.lifeguard:
                self._out.append((addr, Nack(frame.seq)))
                self.counters.inc("membership.nacks.sent")
            return
        ann = target.ann
        if ann.host != frame.host or ann.port != frame.port:
            self.counters.inc("membership.relay.address_replaced")
        relays = self._relays
        if len(relays) >= self.config.max_relayed_probes:
            relays.popitem(last=False)
            self.counters.inc("membership.relay.forgotten")
        seq = self._next_seq()
        deadline = now.mono + self.config.probe_timeout_s * NACK_FRACTION
        relays[seq] = _Relay(addr, frame.seq, deadline)
        self._out.append(((ann.host, ann.port), SwimPing(seq, frame.target)))
        self.counters.inc("membership.relay.pings")

    def _expire_relays(self, t: float) -> None:
        relays = self._relays
        while relays:
            seq, relay = next(iter(relays.items()))
            if relay.deadline > t:
                break
            del relays[seq]
            if self.config.lifeguard:
                self._out.append((relay.requester, Nack(relay.requester_seq)))
                self.counters.inc("membership.nacks.sent")

    def _on_nack(self, now: Now, sender: NodeId, addr: Address, frame: Nack) -> None:
        probe = self._probe
        if probe is not None and probe.seq == frame.seq:
            probe.nacks += 1
            self.counters.inc("membership.nacks.received")
        else:
            self.counters.inc("membership.nacks.unexpected")

    # -- suspicion ------------------------------------------------------------------------

    def _opinion_target(self, now: Now, node_id: NodeId, incarnation: int) -> _Node | None:
        """The member a suspect/dead opinion may act on, or None (refuted or counted).

        About ourselves: refute. Unknown member, stale incarnation, an observer, or an
        incarnation above the member's latest announcement: ignored and counted.
        """
        if node_id == self.node_id:
            self._refute(now, incarnation)
            return None
        node = self._nodes.get(node_id)
        if node is None:
            self.counters.inc("membership.opinion.unknown")
            return None
        if incarnation < node.incarnation or node.ann.observer:
            self.counters.inc("membership.opinion.stale")
            return None
        if incarnation > node.ann.incarnation:
            # No one can have seen an incarnation the member never announced to us: a
            # forgery (or news we lack; the member's record, or our own probe, follows).
            self.counters.inc("membership.opinion.future_incarnation")
            return None
        return node

    def _suspect(self, now: Now, node_id: NodeId, incarnation: int, accuser: NodeId) -> None:
        """Apply a suspect opinion (ours or heard); see the incarnation rules."""
        node = self._opinion_target(now, node_id, incarnation)
        if node is None:
            return
        state = node.state
        if state is SUSPECT_STATE:
            s = node.suspicion
            if (
                s is not None
                and accuser != s.accuser
                and accuser not in s.confirmers
                and len(s.confirmers) < s.expected
            ):
                s.confirmers.add(accuser)
                self._reschedule(node_id, s)
                self.counters.inc("membership.suspicion.confirmations")
                self._broadcast(node_id, Suspect(node_id, incarnation, accuser))
            return
        if state is not ALIVE:
            return
        t = now.mono
        n = self._n_active
        cfg = self.config
        low = cfg.suspicion_min_s(n)
        high = cfg.suspicion_max_s(n)
        expected = cfg.suspicion_mult - 2
        if n - 2 < expected or not cfg.lifeguard:
            expected = 0
        s = _Suspicion(accuser, t, low, high, max(expected, 0), set(), 0.0)
        node.incarnation = incarnation
        node.suspicion = s
        self._set_state(node, SUSPECT_STATE, t)
        self._reschedule(node_id, s)
        self.counters.inc("membership.suspicion.started")
        self._events.append(MemberSuspect(node.member, accuser))
        self._broadcast(node_id, Suspect(node_id, incarnation, accuser))
        log.debug(
            "suspect %s incarnation %d by %s, timeout %.3fs",
            short_id(node_id),
            incarnation,
            short_id(accuser),
            s.deadline - t,
        )

    def _reschedule(self, node_id: NodeId, s: _Suspicion) -> None:
        deadline = s.start + suspicion_timeout(s.low, s.high, len(s.confirmers), s.expected)
        s.deadline = deadline
        self._heap_serial += 1
        heapq.heappush(self._suspicion_heap, (deadline, self._heap_serial, node_id))

    def suspicion_deadline(self, node_id: NodeId) -> float | None:
        """When the suspicion of ``node_id`` times out (None if it is not suspect)."""
        node = self._nodes.get(node_id)
        s = node.suspicion if node is not None else None
        return None if s is None else s.deadline

    def _suspicion_due(self, now: Now, node_id: NodeId) -> None:
        node = self._nodes.get(node_id)
        if node is None or node.state is not SUSPECT_STATE:
            return
        s = node.suspicion
        if s is None or s.deadline > now.mono:
            return
        log.debug("suspicion of %s timed out: failed", short_id(node_id))
        self._declare_failed(now, node, node.incarnation, self.node_id)

    def _declare_failed(self, now: Now, node: _Node, incarnation: int, accuser: NodeId) -> None:
        node.incarnation = incarnation
        self._set_state(node, FAILED, now.mono)
        self.counters.inc("membership.failed")
        self._events.append(MemberFailed(node.member))
        self._broadcast(node.node_id, Dead(node.node_id, incarnation, accuser))

    def _dead(self, now: Now, node_id: NodeId, incarnation: int, accuser: NodeId) -> None:
        """Apply a dead opinion (see the incarnation rules)."""
        node = self._opinion_target(now, node_id, incarnation)
        if node is None:
            return
        if node.state is FAILED or node.state is LEFT:
            return
        self._declare_failed(now, node, incarnation, accuser)

    def _on_suspect_frame(self, now: Now, sender: NodeId, addr: Address, frame: Suspect) -> None:
        self._suspect(now, frame.node_id, frame.incarnation, frame.accuser)

    def _on_dead_frame(self, now: Now, sender: NodeId, addr: Address, frame: Dead) -> None:
        self._dead(now, frame.node_id, frame.incarnation, frame.accuser)

    def _refute(self, now: Now, incarnation: int, *, signed: bool = False) -> None:
        """We heard ourselves suspected or declared dead: a newer signed record (or LEFT).

        An *opinion* about this node at an incarnation above its own is ignored and
        counted (``membership.opinion.future_incarnation``): no node can have seen that
        incarnation, and following it would let a holder of the cluster key push this
        node's incarnation to the top of its range, where it could no longer refute.
        Only a record signed by this node's own key (an earlier life) is outbid.
        """
        own = self._self
        if self.leaving:
            self._broadcast(self.node_id, own.ann)
            return
        if incarnation < own.incarnation:
            return  # an opinion about an older life: our newer record already answers it
        if incarnation > own.incarnation and not signed:
            self.counters.inc("membership.opinion.future_incarnation")
            return
        if incarnation >= MAX_INCARNATION:
            self.counters.inc("membership.refutations.exhausted")
            return
        self.counters.inc("membership.refutations")
        self._adjust_awareness(1)
        self._adopt_own(now, self._sign(incarnation + 1, ALIVE))
        log.debug("refuted a suspicion at incarnation %d", incarnation)

    # -- announcements ---------------------------------------------------------------------

    def _sign(self, incarnation: int, state: MemberState) -> Announcement:
        return Announcement.sign(
            self.identity,
            incarnation=incarnation,
            state=state,
            address=self._address,
            name=self._name,
            metadata=self._metadata,
            observer=self._observer,
            extensions=self._extensions,
        )

    def _adopt_own(self, now: Now, ann: Announcement) -> None:
        own = self._self
        own.ann = ann
        own.incarnation = ann.incarnation
        own.since = now.mono
        self._table_version += 1
        own.refresh()
        self._broadcast(self.node_id, ann)

    def _on_announcement_frame(
        self, now: Now, sender: NodeId, addr: Address, frame: Announcement
    ) -> None:
        self._announcement(now, frame, origin=addr)

    def _announcement(
        self,
        now: Now,
        ann: Announcement,
        *,
        origin: Address | None = None,
        pulled: bool = False,
    ) -> _Node | None:
        """Apply a member's own record; returns the member if it is (now) known.

        A record that changes the table is queued for dissemination (not back to
        ``origin`` next); ``pulled``: it came from a push-pull table, not as its sender's
        own record (spec 10.3; queued as :meth:`_broadcast` says).
        """
        node_id = ann.node_id
        node = self._nodes.get(node_id)
        if node is not None and (node.ann is ann or node.ann.record == ann.record):
            return node  # the record we hold (already verified): a relayed copy
        counters = self.counters
        if node_id == self.node_id:
            if ann.incarnation >= self._self.incarnation and ann.verify():
                # A record of ours we did not make in this life: outbid it.
                self._refute(now, ann.incarnation, signed=True)
            return node
        if node is None:
            if ann.state is LEFT:
                return None
            tomb = self._tombstones.get(node_id)
            if tomb is not None and ann.incarnation <= tomb[0]:
                counters.inc("membership.announcement.reaped")
                return None
            if len(self._nodes) >= self.config.max_members:
                counters.inc("membership.members.refused_full")
                return None
            if not self._acceptable(ann):
                return None
            node = _Node(ann, ALIVE, now.mono)
            self._nodes[node_id] = node
            self._tombstones.pop(node_id, None)
            self._set_state(node, ALIVE, now.mono, new=True)
            self._events.append(MemberJoined(node.member))
            self._broadcast(node_id, ann, origin=origin, pulled=pulled)
            log.debug("member %s joined at %s:%d", short_id(node_id), ann.host, ann.port)
            if self._listeners:
                self._notify(node)
            return node
        inc = node.incarnation
        if ann.state is LEFT:
            if ann.incarnation < inc or node.state is LEFT:
                counters.inc("membership.announcement.stale")
                return node
        elif ann.incarnation <= inc:
            counters.inc("membership.announcement.stale")
            return node
        if ann.public_key != node.ann.public_key or not self._acceptable(ann):
            return node
        old = node.ann
        old_state = node.state
        node.ann = ann
        node.incarnation = ann.incarnation
        if ann.state is LEFT:
            self._set_state(node, LEFT, now.mono)
            self._events.append(MemberLeft(node.member))
        elif old_state is ALIVE:
            self._table_version += 1
            node.refresh()
            if (old.host, old.port, old.name, old.metadata) != (
                ann.host,
                ann.port,
                ann.name,
                ann.metadata,
            ):
                self._events.append(MemberUpdated(node.member))
        elif old_state is SUSPECT_STATE:
            self._set_state(node, ALIVE, now.mono)
            self._events.append(MemberAlive(node.member))
        else:
            self._set_state(node, ALIVE, now.mono)
            self._events.append(MemberJoined(node.member))
        if old.observer != ann.observer:
            self._reclassify(node)
        self._broadcast(node_id, ann, origin=origin, pulled=pulled)
        if self._listeners:
            self._notify(node)
        return node

    def _notify(self, node: _Node) -> None:
        member = node.member
        for callback in self._listeners:
            callback(member)

    def _acceptable(self, ann: Announcement) -> bool:
        if len(ann.metadata) > self.config.max_metadata_bytes:
            self.counters.inc("membership.announcement.metadata_too_large")
            return False
        if ann.extensions and extension_bytes(ann.extensions) > self.config.max_extension_bytes:
            self.counters.inc("membership.announcement.extensions_too_large")
            return False
        if not ann.verify():
            self.counters.inc("membership.announcement.bad_signature")
            log.debug("announcement for %s: bad signature, dropped", short_id(ann.node_id))
            return False
        return True

    def _reclassify(self, node: _Node) -> None:
        self._set_state(node, node.state, node.since)

    def _set_state(self, node: _Node, state: MemberState, t: float, *, new: bool = False) -> None:
        """Move ``node`` (never self) to ``state``; keeps N, the peer and failed sets in step."""
        node_id = node.node_id
        self._changed = True
        if node.state is not state or new:
            node.since = t
        node.state = state
        if state is not SUSPECT_STATE:
            node.suspicion = None
        if (state is ALIVE or state is SUSPECT_STATE) and not node.ann.observer:
            if self._peers.add(node_id):
                self._n_active += 1
                # SWIM 4.3: a new member goes to a random place in the probe order (and
                # in the gossip order, so the current pass of either reaches it).
                lst = self._probe_list
                lst.insert(self.rng.randint(self._probe_pos, len(lst)), node_id)
                lst = self._gossip_list
                lst.insert(self.rng.randint(self._gossip_pos, len(lst)), node_id)
        elif self._peers.discard(node_id):
            self._n_active -= 1
        if state is FAILED:
            if self._failed.add(node_id) and not self._observer:
                self._schedule_retry(node, t, self.config.dead_retry_interval_s)
        else:
            self._failed.discard(node_id)
        if state is LEFT:
            self._left.add(node_id)
        else:
            self._left.discard(node_id)
        if node.ann.observer:
            self._watchers.add(node_id)
        else:
            self._watchers.discard(node_id)
        self._table_version += 1
        node.refresh()

    # -- dissemination --------------------------------------------------------------------

    def _broadcast(
        self, key: NodeId, frame: Frame, *, origin: Address | None = None, pulled: bool = False
    ) -> None:
        """Queue an update about member ``key`` (replacing any queued one about it).

        The queue is kept in levels by times sent (``levels[n]``: updates sent ``n`` times,
        in the order they reached that level), so taking the least-sent updates never
        sorts. A new update is **hot** for :meth:`_hot_window` seconds: hot updates are
        taken before all others (least-sent first among them too), so fresh news does not
        wait behind a backlog (spec 9.1). When full, the oldest entry of the highest level
        is dropped (not hot ones first). ``origin``: where the update came from (not sent
        back there next). ``pulled``: a record learned from a push-pull, not its sender's
        own: never hot, it starts ``PULLED_SENDS`` sends below the retransmit limit, so it
        is passed on that many times for redundancy but ranks behind every fresher update
        and is dropped first from a full queue.
        """
        encoded = cbor.encode(frame.to_cbor())
        self._bq_serial += 1
        serial = self._bq_serial
        if pulled:
            tier = self._levels
            start = max(0, self._retransmit_limit() - PULLED_SENDS)
            while len(tier) <= start:
                tier.append({})
        else:
            tier = self._hot
            start = 0
            self._hot_fifo.append((self._t + self._hot_window(), serial, key))
            if len(self._hot_fifo) > 2 * self.config.max_broadcasts:
                self._cool()
        b = self._bq.get(key)
        if b is not None:
            del b.tier[b.sent][key]
            b.frame, b.encoded, b.sent, b.serial = frame, encoded, start, serial
        else:
            if len(self._bq) >= self.config.max_broadcasts:
                self._drop_broadcast(self._most_sent())
                self.counters.inc("membership.broadcast.dropped_full")
            b = _Broadcast(key, frame, encoded, serial)
            b.sent = start
            self._bq[key] = b
        b.tier = tier
        b.last_dest = origin
        b.subject = (frame.host, frame.port) if isinstance(frame, Announcement) else None
        if len(encoded) < self._bq_min:
            self._bq_min = len(encoded)
        tier[start][key] = b
        self._changed = True

    def _most_sent(self) -> _Broadcast:
        """The update a full queue drops: the first to reach the highest level (not hot
        ones while others are queued)."""
        for tier in (self._levels, self._hot):
            for level in reversed(tier):
                if level:
                    return next(iter(level.values()))
        raise AssertionError("the broadcast queue is empty")

    def _hot_window(self) -> float:
        """How long a new update stays hot (``MembershipConfig.hot_window_s``)."""
        n = self._n_active
        if n != self._hot_n:
            self._hot_n = n
            self._hot_s = self.config.hot_window_s(n)
        return self._hot_s

    def _cool(self) -> None:
        """Move the updates whose hot window ended to the other levels (same send count).

        The window list is bounded (2 x ``max_broadcasts``; beyond, the oldest entries
        cool early)."""
        fifo = self._hot_fifo
        t = self._t
        bq = self._bq
        levels = self._levels
        most = 2 * self.config.max_broadcasts
        while fifo and (fifo[0][0] <= t or len(fifo) > most):
            _, serial, key = fifo.popleft()
            b = bq.get(key)
            if b is None or b.serial != serial or b.tier is levels:
                continue
            del b.tier[b.sent][key]
            while len(levels) <= b.sent:
                levels.append({})
            levels[b.sent][key] = b
            b.tier = levels

    def _retransmit_limit(self) -> int:
        n = self._n_active
        if n != self._limit_n:
            self._limit_n = n
            self._limit = self.config.retransmit_limit(n)
        return self._limit

    def _drop_broadcast(self, b: _Broadcast) -> None:
        del self._bq[b.key]
        del b.tier[b.sent][b.key]

    def _take_broadcasts(
        self, room: int, free_frames: int, dest: Address
    ) -> list[tuple[Frame, bytes]]:
        """The least-sent updates (newest first among equals) that fit ``room`` bytes and
        ``free_frames`` frames, not just sent to ``dest``; each counts as sent once.

        Examines at most ``SCAN_LIMIT`` updates, and stops after ``MISS_LIMIT`` that do not
        fit; returns at once when ``room`` is below every queued update's size.
        """
        if room < self._bq_min:
            return _EMPTY
        if self._hot_fifo and self._hot_fifo[0][0] <= self._t:
            self._cool()
        limit = self._retransmit_limit()
        taken: list[_Broadcast] = []
        budget = SCAN_LIMIT
        misses = MISS_LIMIT
        smallest = 1 << 30  # of the updates examined and not taken
        complete = False
        for level in self._hot + self._levels:
            if not level:
                continue
            for b in reversed(level.values()):
                size = len(b.encoded)
                if size <= room and b.last_dest != dest and b.subject != dest:
                    taken.append(b)
                    room -= size
                    if (
                        len(taken) >= free_frames
                        or room < MIN_PIGGYBACK_ROOM
                        or room < self._bq_min
                    ):
                        budget = 0  # nothing queued can fit any more
                        break
                else:
                    if size < smallest:
                        smallest = size
                    if size > room:
                        misses -= 1
                        if misses <= 0:
                            budget = 0
                            break
                budget -= 1
                if budget <= 0:
                    break
            if budget <= 0:
                break
        else:
            complete = True  # every queued update was examined
        if not taken:
            if complete:
                self._bq_min = smallest
            return _EMPTY
        out: list[tuple[Frame, bytes]] = []
        for b in taken:
            out.append((b.frame, b.encoded))
            key = b.key
            levels = b.tier
            del levels[b.sent][key]
            b.sent += 1
            b.last_dest = dest
            if b.sent >= (limit if b.limit is None else max(limit, b.limit)):
                del self._bq[key]
            else:
                if b.sent >= len(levels):
                    levels.append({})
                levels[b.sent][key] = b
        if complete:  # the bound is exact again
            for b in taken:
                if b.key in self._bq and len(b.encoded) < smallest:
                    smallest = len(b.encoded)
            self._bq_min = smallest
        return out

    def probe_rtts(self) -> dict[NodeId, float]:
        """The smoothed probe round-trip time (seconds) to each member with at least
        ``RTT_MIN_SAMPLES`` directly acked probes (from the ping's send to its ack, both at
        the core's ``now``): the mean of the first ``RTT_SMOOTHING`` samples, then an
        exponential average with weight 1/``RTT_SMOOTHING`` (as TCP's SRTT), so one noisy
        sample does not stand for the path. Bounded by the member table: a forgotten
        member's entry goes with it."""
        return {k: v[1] for k, v in self._probe_rtt.items() if v[0] >= RTT_MIN_SAMPLES}

    def _rtt_sample(self, node_id: NodeId, rtt: float) -> None:
        count, srtt = self._probe_rtt.get(node_id, (0, 0.0))
        weight = min(count + 1, RTT_SMOOTHING)
        self._probe_rtt[node_id] = (count + 1, srtt + (rtt - srtt) / weight)

    def pending_broadcasts(self) -> int:
        """How many updates are queued for dissemination."""
        return len(self._bq)

    def _gossip_round(self) -> None:
        """Send the least-sent updates to ``gossip_nodes`` random members."""
        if not self._bq:
            return
        targets = self._gossip_targets(self.config.gossip_nodes)
        max_frames = self.limits.max_frames
        self._gossip_dests.clear()
        for target_id in targets:
            node = self._nodes[target_id]
            addr = (node.ann.host, node.ann.port)
            taken = self._take_broadcasts(self.budget, max_frames, addr)
            if not taken:
                continue  # all it has is this target's own record or just from it
            self._gossip_dests.add(addr)
            for frame, _ in taken:
                self._out.append((addr, frame))
            self.counters.inc("membership.broadcast.gossiped", len(taken))

    def _gossip_targets(self, k: int) -> list[NodeId]:
        """``k`` distinct members, taken in turn from a list reshuffled at each pass.

        Consecutive rounds reach different members (uniform random choice would send
        some updates twice to one member while missing another).
        """
        out: list[NodeId] = []
        peers = self._peers
        k = min(k, len(peers))
        while len(out) < k:
            if self._gossip_pos >= len(self._gossip_list):
                self._gossip_list = list(peers.items)
                self.rng.shuffle(self._gossip_list)
                self._gossip_pos = 0
            node_id = self._gossip_list[self._gossip_pos]
            self._gossip_pos += 1
            if node_id in peers and node_id not in out:
                out.append(node_id)
        return out

    # -- push-pull, join, dead retry ------------------------------------------------------

    def _state_chunks(self, exchange: int, reply: bool) -> list[PushPull]:
        """This node's table as push-pull chunks (self first; bounded per exchange).

        The split into chunks is cached until the table changes (``_table_version``), so
        push-pulls in a quiet cluster cost O(chunks), not O(N); a truncated table (a
        random subset each time) is never cached.
        """
        cache = self._chunk_cache
        if cache is not None and cache[0] == self._table_version:
            parts = cache[1]
        else:
            parts = self._split_table()
        last = len(parts) - 1
        return [PushPull(exchange, i, reply, i == last, part) for i, part in enumerate(parts)]

    def _split_table(self) -> list[list[PushPullEntry]]:
        own = self._self
        entries = [own] + [n for n in self._nodes.values() if n is not own]
        total = sum(len(n.ann.record) + 64 + ENTRY_OVERHEAD for n in entries)
        cap = self.config.push_pull_max_bytes
        truncated = total > cap
        if truncated:
            rest = entries[1:]
            self.rng.shuffle(rest)
            entries = [own, *rest]
            self.counters.inc("membership.push_pull.truncated")
        parts: list[list[PushPullEntry]] = []
        current: list[PushPullEntry] = []
        size = 0
        sent = 0
        chunk_bytes = self.chunk_bytes
        for node in entries:
            ann = node.ann
            entry_size = len(ann.record) + len(ann.signature) + ENTRY_OVERHEAD
            if sent + entry_size > cap:
                break
            if current and size + entry_size > chunk_bytes:
                parts.append(current)
                current, size = [], 0
            current.append(PushPullEntry(ann, node.state))
            size += entry_size
            sent += entry_size
        parts.append(current)
        self._chunk_cache = None if truncated else (self._table_version, parts)
        return parts

    def _push_pull(self, now: Now, addr: Address, reply: bool, exchange: int) -> None:
        chunks = self._state_chunks(exchange, reply)
        for chunk in chunks:
            self._out.append((addr, chunk))
        self.counters.inc("membership.push_pull.sent")
        self.counters.inc("membership.push_pull.chunks_sent", len(chunks))

    def _on_push_pull(self, now: Now, sender: NodeId, addr: Address, frame: PushPull) -> None:
        self.counters.inc("membership.push_pull.chunks_received")
        origin = self._nodes.get(sender)
        if origin is not None:
            origin.last_heard = now.mono
        for entry in frame.entries:
            ann = entry.announcement
            state = entry.state
            # Only the sender's own record is fresh news: the rest of its table is what
            # the cluster has mostly gossiped already (a joiner re-gossiping the whole
            # table it pulled would bury real news under N old records, spec 9.1).
            pulled = ann.node_id != sender
            if (state is FAILED or state is LEFT) and ann.node_id not in self._nodes:
                if self._observer and ann.node_id != self.node_id and not ann.observer:
                    self._learn_gone(now, ann, state)  # an observer reads the whole state
                continue
            if state is ALIVE or state is LEFT:
                self._announcement(now, ann, origin=addr, pulled=pulled)
                continue
            node = self._announcement(now, ann, origin=addr, pulled=pulled)
            if node is not None or ann.node_id == self.node_id:
                self._suspect(now, ann.node_id, ann.incarnation, sender)
        if frame.reply:
            # The first chunk of an exchange to arrive (any index) triggers the answer,
            # once: a lost chunk 0 does not leave the initiator without an answer.
            answered = self._pp_answered
            key = (sender, frame.exchange)
            if key not in answered:
                if len(answered) >= MAX_ANSWERED_EXCHANGES:
                    answered.popitem(last=False)
                answered[key] = None
                self.counters.inc("membership.push_pull.answered")
                self._push_pull(now, addr, False, frame.exchange)
            return
        if self._pp_pending.pop(frame.exchange, None) is not None:
            self.counters.inc("membership.push_pull.completed")
        if frame.exchange in self._join_exchanges and self._join_chunk(frame):
            self._join_exchanges.clear()
            self._next_join = None
            self._seeds = ()
            self.joined = True
            # The whole table just came in: the first periodic push-pull is due a full
            # push_pull_interval(N) from now, not from when N was the first chunk's size.
            self._next_push_pull = None
            self._changed = True  # re-armed by handle_message
            self.counters.inc("membership.join.answered")
            log.debug("join answered by %s", short_id(sender))
            if not self._observer and not self.leaving:
                # Now that it knows the cluster, it gossips its own record too (as
                # memberlist does), not only through the seeds: a member that missed the
                # seeds' gossip during a join wave would otherwise wait for a push-pull.
                self._broadcast(self.node_id, self._self.ann)
                # ... for a whole pass of its gossip list (N - 1 sends on top of the usual
                # limit): every member then hears from it directly at least once, and one
                # that missed its record anyway pulls it (_note_unknown).
                self._bq[self.node_id].limit = self._n_active - 1 + self._retransmit_limit()

    def _join_chunk(self, frame: PushPull) -> bool:
        """Note one chunk of the join answer; True once every chunk of it has come.

        A join is answered only when chunks 0..last all arrived (in any order): with a
        middle chunk lost, the records it held would otherwise wait for a periodic
        push-pull (a minute at N = 50), so the join is retried at its backoff instead
        (counted ``membership.join.incomplete``; ``MAX_JOIN_CHUNKS`` indices are kept).
        """
        got = self._join_got
        if frame.exchange != self._join_got_exchange:
            self._join_got_exchange = frame.exchange
            got.clear()
            self._join_last = None
        if len(got) < MAX_JOIN_CHUNKS:
            got.add(frame.index)
        if frame.last:
            self._join_last = frame.index
        last = self._join_last
        if last is None:
            return False
        if len(got) == last + 1 and max(got) == last:
            return True
        if frame.last:
            self.counters.inc("membership.join.incomplete")
        return False

    def _learn_gone(self, now: Now, ann: Announcement, state: MemberState) -> None:
        """An observer adds a member it did not know in the failed or left state a peer's
        table holds it in (spec 13); not queued for dissemination, never retried."""
        node_id = ann.node_id
        tomb = self._tombstones.get(node_id)
        if tomb is not None and ann.incarnation <= tomb[0]:
            self.counters.inc("membership.announcement.reaped")
            return
        if len(self._nodes) >= self.config.max_members:
            self.counters.inc("membership.members.refused_full")
            return
        if not self._acceptable(ann):
            return
        node = _Node(ann, state, now.mono)
        self._nodes[node_id] = node
        self._set_state(node, state, now.mono, new=True)
        self._events.append(MemberLeft(node.member) if state is LEFT else MemberFailed(node.member))

    def _join(self, now: Now, addresses: tuple[Address, ...]) -> None:
        seeds = tuple(a for a in addresses if a != self._address)
        seeds = seeds[: self.config.max_join_addresses]
        if len(addresses) > self.config.max_join_addresses:
            self.counters.inc("membership.join.addresses_dropped")
        if self.leaving:
            return
        if not seeds:
            self.joined = True
            return
        self._seeds = seeds
        self._join_turn = self.rng.randrange(len(seeds))
        self._join_backoff = self.config.join_retry_s
        self._join_attempt(now)

    def _join_attempt(self, now: Now) -> None:
        """Push our state to every seed and pull from one; retry until answered.

        Every seed learns us at once (our state is one record), but only one seed per
        attempt, in turn, is asked for its whole table: a join costs one full state, not
        one per seed. Retries come at a doubling, jittered backoff and ask the next seed.
        """
        if not self._seeds or self.leaving:
            self._next_join = None
            return
        self._join_exchanges.clear()
        turn = self._join_turn % len(self._seeds)
        self._join_turn += 1
        for i, addr in enumerate(self._seeds):
            exchange = self.rng.getrandbits(48)
            if i == turn:
                self._join_exchanges.add(exchange)
            self._push_pull(now, addr, i == turn, exchange)
        self.counters.inc("membership.join.attempts")
        backoff = self._join_backoff
        self._next_join = now.mono + backoff * self.rng.uniform(1.0, 1.25)
        self._join_backoff = min(backoff * 2, self.config.join_retry_max_s)

    def _note_unknown(self, now: Now, sender: NodeId, addr: Address) -> None:
        """A frame came from a member not in the table (its record was missed: every copy
        gossiped went elsewhere or was lost): pull from it a probe interval from now unless
        its record arrives meanwhile, and at most once per cooldown."""
        if sender == self.node_id or sender in self._unknown:
            return
        last = self._unknown_pulled.get(sender)
        cooldown = UNKNOWN_PULL_COOLDOWN_MULT * self.config.probe_interval_s
        if last is not None and now.mono - last < cooldown:
            return
        if len(self._unknown) >= MAX_UNKNOWN_SENDERS:
            self._unknown.popitem(last=False)
            self.counters.inc("membership.unknown_sender.dropped")
        self._unknown[sender] = addr
        if self._next_unknown is None:
            self._next_unknown = now.mono + UNKNOWN_PULL_DELAY_MULT * self.config.probe_interval_s

    def _pull_unknown(self, now: Now) -> None:
        """Push-pull with each noted sender that is still not in the table."""
        pulled = self._unknown_pulled
        for sender, addr in self._unknown.items():
            if sender in self._nodes:
                self.counters.inc("membership.unknown_sender.learned")
                continue
            if len(pulled) >= MAX_UNKNOWN_SENDERS:
                pulled.popitem(last=False)
                self.counters.inc("membership.unknown_sender.dropped")
            pulled.pop(sender, None)
            pulled[sender] = now.mono
            self.counters.inc("membership.unknown_sender.pulled")
            log.debug("pulling from %s at %s:%d: not in the table", short_id(sender), *addr)
            self._initiate_push_pull(now, addr, 0)
        self._unknown.clear()

    def _periodic_push_pull(self, now: Now) -> None:
        if self._observer:
            self._observer_refresh *= 2
        picked = self._sample_peers(1)
        if picked:
            node = self._nodes[picked[0]]
            self._initiate_push_pull(now, (node.ann.host, node.ann.port), 0)
        self._next_push_pull = None

    def _initiate_push_pull(self, now: Now, addr: Address, attempts: int) -> None:
        """Start a push-pull with ``addr`` and await its answer (sent again if none comes).

        Bounded: at most ``MAX_PENDING_PUSH_PULLS`` are awaited; beyond, the oldest is
        given up (counted ``membership.push_pull.given_up``).
        """
        exchange = self.rng.getrandbits(48)
        pending = self._pp_pending
        if len(pending) >= MAX_PENDING_PUSH_PULLS:
            pending.popitem(last=False)
            self.counters.inc("membership.push_pull.given_up")
        deadline = now.mono + PUSH_PULL_TIMEOUT_MULT * self.config.probe_timeout_s
        pending[exchange] = _PendingPushPull(addr, attempts, deadline)
        self._push_pull(now, addr, True, exchange)

    def _expire_push_pulls(self, now: Now) -> None:
        """Send again (fresh exchange) each push-pull whose answer did not come in time."""
        pending = self._pp_pending
        t = now.mono
        while pending:
            exchange, p = next(iter(pending.items()))
            if p.deadline > t:
                break
            del pending[exchange]
            if p.attempts >= PUSH_PULL_RETRIES or self.leaving:
                self.counters.inc("membership.push_pull.unanswered")
                continue
            self.counters.inc("membership.push_pull.retried")
            self._initiate_push_pull(now, p.addr, p.attempts + 1)

    def _schedule_retry(self, node: _Node, t: float, gap: float) -> None:
        """Plan the next dead-retry ping of ``node`` ``gap`` (jittered) from ``t``."""
        node.retry_gap = gap
        node.retry_at = t + gap * self.rng.uniform(*RETRY_JITTER)
        heap = self._retry_heap
        if len(heap) > 2 * len(self._failed) + 64:
            # Drop entries of members no longer failed or rescheduled (lazy deletion).
            nodes = self._nodes
            heap[:] = [
                e
                for e in heap
                if (n := nodes.get(e[2])) is not None and n.state is FAILED and n.retry_at == e[0]
            ]
            heapq.heapify(heap)
        self._heap_serial += 1
        heapq.heappush(heap, (node.retry_at, self._heap_serial, node.node_id))

    def _dead_retry(self, now: Now) -> None:
        """Ping each failed member whose retry is due, then back off (spec 12.2).

        Each failed member is retried on its own schedule: first ``dead_retry_interval_s``
        after its failure, then at a gap that doubles up to ``dead_retry_max_interval_s``,
        each gap multiplied by a random factor in ``RETRY_JITTER``, until
        ``dead_retry_for_s`` after its failure. Only a ping (a few bytes to a node that is
        most likely gone); if it answers, the ack triggers a push-pull with it
        (:meth:`_on_ack`), which merges the two views.
        """
        heap = self._retry_heap
        t = now.mono
        cfg = self.config
        if self.leaving or self._observer:
            heap.clear()  # an observer never probes, failed members included
            return
        while heap and heap[0][0] <= t:
            due, _, node_id = heapq.heappop(heap)
            node = self._nodes.get(node_id)
            if node is None or node.state is not FAILED or node.retry_at != due:
                continue  # recovered, reaped, or rescheduled since
            if t - node.since >= cfg.dead_retry_for_s:
                self.counters.inc("membership.dead_retry.expired")
                continue
            self.counters.inc("membership.dead_retries")
            seq = self._next_seq()
            retries = self._retry_pings
            if len(retries) >= MAX_RETRY_PINGS:
                retries.popitem(last=False)
            retries[seq] = node_id
            self._out.append(((node.ann.host, node.ann.port), SwimPing(seq, node_id)))
            self._schedule_retry(node, t, min(node.retry_gap * 2, cfg.dead_retry_max_interval_s))

    # -- leave, reaping --------------------------------------------------------------------

    def _leave(self, now: Now) -> None:
        if self.leaving:
            return
        self.leaving = True
        self._seeds = ()
        self._next_join = None
        self._next_probe = None
        self._next_push_pull = None
        self._retry_heap.clear()
        self._pp_pending.clear()
        self._probe = None
        own = self._self
        ann = self._sign(own.incarnation + 1, LEFT)
        own.ann = ann
        own.incarnation = ann.incarnation
        if not self._observer:
            self._n_active -= 1
        own.state = LEFT
        own.since = now.mono
        self._table_version += 1
        own.refresh()
        if self._peers:
            self._broadcast(self.node_id, ann)
            # The leave round: the LEFT record goes straight to gossip_nodes members, whatever
            # the retransmit limit (with N = 3 and the local profile it is 2, and the node is
            # usually closed right after this round), then rides the queue like any update.
            for target_id in self._gossip_targets(self.config.gossip_nodes):
                node = self._nodes[target_id]
                self._out.append(((node.ann.host, node.ann.port), ann))
            self._gossip_round()
        log.debug("leaving: LEFT announcement at incarnation %d", ann.incarnation)

    def _maintenance(self, now: Now) -> None:
        """Reap failed and left members, observers that left, and observers gone silent."""
        t = now.mono
        reap_before = t - self.config.reap_after_s
        silent_before = t - self.config.observer_expiry_s
        # Only the failed, left and observer members can be due: O(those), not O(N).
        nodes = self._nodes
        candidates = dict.fromkeys(self._failed.items)
        candidates.update(dict.fromkeys(self._left.items))
        candidates.update(dict.fromkeys(self._watchers.items))
        gone = [
            n
            for n in (nodes[k] for k in candidates)
            if n is not self._self
            and (
                ((n.state is FAILED or n.state is LEFT) and n.since <= reap_before)
                or (n.ann.observer and n.state is ALIVE and n.last_heard <= silent_before)
                or (n.ann.observer and n.state is LEFT)  # nothing to retry: forget at once
            )
        ]
        for node in gone:
            self._forget(node, t)
        tombs = self._tombstones
        while tombs:
            key, (_, until) = next(iter(tombs.items()))
            if until > t:
                break
            del tombs[key]

    def _forget(self, node: _Node, t: float) -> None:
        if self._peers.discard(node.node_id):
            self._n_active -= 1
        self._failed.discard(node.node_id)
        self._left.discard(node.node_id)
        self._watchers.discard(node.node_id)
        self._probe_rtt.pop(node.node_id, None)
        del self._nodes[node.node_id]
        self._table_version += 1
        b = self._bq.get(node.node_id)
        if b is not None:
            self._drop_broadcast(b)
        tombs = self._tombstones
        if len(tombs) >= self.config.max_members:
            tombs.popitem(last=False)
            self.counters.inc("membership.tombstones.dropped")
        tombs[node.node_id] = (node.incarnation, t + self.config.reap_after_s)
        self.counters.inc("membership.reaped")
        self._events.append(MemberReaped(node.node_id))
        log.debug("reaped %s", short_id(node.node_id))


__all__ = ["SwimMembership"]
