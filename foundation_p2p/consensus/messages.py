"""Raft messages: the values the core exchanges, and their CBOR wire codec.

A :class:`Message` is what :meth:`~foundation_p2p.consensus.raft.Raft.step` takes and what
:class:`~foundation_p2p.consensus.raft.Ready` hands out to send. Message types numbered
from 1 to 15 travel between nodes; the ones from 32 up (:data:`LOCAL_TYPES`) are inputs a
node gives itself (a tick that starts an election, a report that a peer is unreachable)
and have no wire form.

The wire form (``spec/consensus.md``, ``spec/consensus.cddl``) is a deterministic CBOR
array ``[type, to, from, term, ...]`` whose tail depends on the type. :func:`decode_message`
raises only :class:`~foundation_p2p.errors.WireError` subclasses and names the field at
fault; it also checks what the core relies on (node ids of 16 bytes, consecutive entry
indexes in an append, a snapshot chunk inside its snapshot).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

import cbor2

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind, SnapshotMeta, make_entry
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError

NODE_ID_BYTES = 16
MAX_UINT64 = (1 << 64) - 1


class MessageType(IntEnum):
    """What a message asks or answers (the number is the wire's first element)."""

    PROP = 1
    """A proposal forwarded to the leader (``entries``)."""
    APP = 2
    """AppendEntries: entries after (``index``, ``log_term``), and the leader's ``commit``."""
    APP_RESP = 3
    """AppendEntries answer: ``index`` accepted up to, or ``reject`` with a ``reject_hint``."""
    VOTE = 4
    """RequestVote for ``term`` with the candidate's last (``index``, ``log_term``)."""
    VOTE_RESP = 5
    """RequestVote answer (``reject`` false = granted)."""
    PRE_VOTE = 6
    """A pre-vote (Ongaro's thesis 9.6) for ``term`` (the term the sender would campaign in)."""
    PRE_VOTE_RESP = 7
    """A pre-vote answer."""
    SNAP = 8
    """One snapshot chunk: ``snapshot`` metadata, bytes at ``snap_offset`` of ``snap_total``."""
    SNAP_RESP = 9
    """Snapshot chunk answer: bytes received so far (``snap_offset``) of snapshot ``index``."""
    HEARTBEAT = 10
    """Leader heartbeat with ``commit`` and a ReadIndex ``context``."""
    HEARTBEAT_RESP = 11
    """Heartbeat answer echoing ``context``."""
    TRANSFER_LEADER = 12
    """Ask the leader to hand leadership to ``sender`` (the transferee)."""
    TIMEOUT_NOW = 13
    """Leader to transferee: campaign now, even before an election timeout."""
    READ_INDEX = 14
    """A linearizable read request carrying the client's ``context``."""
    READ_INDEX_RESP = 15
    """The read index (``index``) for ``context``."""
    # Local inputs (never on the wire).
    HUP = 32
    """Start an election (the election timer fired or the application asked)."""
    BEAT = 33
    """Leader: send heartbeats now."""
    CHECK_QUORUM = 34
    """Leader: check that a quorum was active during the last election timeout."""
    UNREACHABLE = 35
    """The transport could not reach ``sender``: fall back to probing it."""
    SNAP_STATUS = 36
    """The transport failed (``reject``) or finished sending a snapshot to ``sender``."""


class M:
    """The :class:`MessageType` members as plain class attributes (``M.APP is MessageType.APP``).
    Reading a member off an enum class goes through the enum metaclass's
    ``__getattr__`` hook on Python 3.11, several times slower; hot paths use these."""

    PROP: Final = MessageType.PROP
    APP: Final = MessageType.APP
    APP_RESP: Final = MessageType.APP_RESP
    VOTE: Final = MessageType.VOTE
    VOTE_RESP: Final = MessageType.VOTE_RESP
    PRE_VOTE: Final = MessageType.PRE_VOTE
    PRE_VOTE_RESP: Final = MessageType.PRE_VOTE_RESP
    SNAP: Final = MessageType.SNAP
    SNAP_RESP: Final = MessageType.SNAP_RESP
    HEARTBEAT: Final = MessageType.HEARTBEAT
    HEARTBEAT_RESP: Final = MessageType.HEARTBEAT_RESP
    TRANSFER_LEADER: Final = MessageType.TRANSFER_LEADER
    TIMEOUT_NOW: Final = MessageType.TIMEOUT_NOW
    READ_INDEX: Final = MessageType.READ_INDEX
    READ_INDEX_RESP: Final = MessageType.READ_INDEX_RESP
    HUP: Final = MessageType.HUP
    BEAT: Final = MessageType.BEAT
    CHECK_QUORUM: Final = MessageType.CHECK_QUORUM
    UNREACHABLE: Final = MessageType.UNREACHABLE
    SNAP_STATUS: Final = MessageType.SNAP_STATUS


LOCAL_TYPES = frozenset(
    {
        M.HUP,
        M.BEAT,
        M.CHECK_QUORUM,
        M.UNREACHABLE,
        M.SNAP_STATUS,
    }
)

RESPONSE_TYPES = frozenset(
    {
        M.APP_RESP,
        M.VOTE_RESP,
        M.PRE_VOTE_RESP,
        M.SNAP_RESP,
        M.HEARTBEAT_RESP,
        M.READ_INDEX_RESP,
    }
)


@dataclass(slots=True)
class Message:
    """One Raft message; fields a type does not use keep their defaults."""

    type: MessageType
    to: NodeId = b""
    """The receiver."""
    sender: NodeId = b""
    """The sender (for ``TRANSFER_LEADER``, the transferee)."""
    term: int = 0
    """The sender's term (0 for a local message or a proposal)."""
    log_term: int = 0
    """``APP``: the term of ``index``; ``VOTE``/``PRE_VOTE``: the last entry's term;
    ``APP_RESP`` rejection: the term at ``reject_hint`` on the follower."""
    index: int = 0
    """``APP``: the entry preceding ``entries``; ``VOTE``: the last index; ``APP_RESP``:
    the index matched (or the rejected one); ``READ_INDEX_RESP``: the read index;
    ``SNAP_RESP``: the snapshot's index."""
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    """The leader's commit index (``APP``, ``HEARTBEAT``)."""
    reject: bool = False
    reject_hint: int = 0
    """``APP_RESP`` rejection: the follower's best guess of the last index that may match."""
    context: bytes = b""
    """``READ_INDEX``/``HEARTBEAT``: the read request's context; ``VOTE``: ``b"transfer"``
    when a leader transfer asked for the election."""
    snapshot: SnapshotMeta | None = None
    """``SNAP``: the snapshot's metadata."""
    snap_offset: int = 0
    """``SNAP``: where ``snap_data`` starts; ``SNAP_RESP``: bytes received in order so far."""
    snap_total: int = 0
    """``SNAP``: the snapshot's total size in bytes."""
    snap_data: bytes = b""
    """``SNAP``: the chunk."""


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """Bounds the decoder enforces before it builds a :class:`Message` (``LimitError``)."""

    max_message_bytes: int = 16 << 20
    """Largest encoded message (an append batch or a snapshot chunk, with headers)."""
    max_entries: int = 65_536
    """Most entries in one ``APP`` or ``PROP``."""
    max_entry_bytes: int = 8 << 20
    """Largest ``data`` of one entry."""
    max_context_bytes: int = 1024
    """Largest ``context``."""
    max_chunk_bytes: int = 8 << 20
    """Largest snapshot chunk."""
    max_conf_nodes: int = 1024
    """Most node ids in each set of a configuration."""

    def __post_init__(self) -> None:
        for name in (
            "max_message_bytes",
            "max_entries",
            "max_entry_bytes",
            "max_context_bytes",
            "max_chunk_bytes",
            "max_conf_nodes",
        ):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(
                    f"MessageLimits.{name}: must be a positive integer, got {value!r}"
                )


DEFAULT_MESSAGE_LIMITS = MessageLimits()
_MAX_DEPTH = 6  # message > entries > entry, or message > meta > node set


# ---------------------------------------------------------------------------------------
# Encoding


def _entry_wire(e: Entry) -> list[Any]:
    return [e.term, e.index, int(e.kind), e.data]


def _conf_wire(c: ConfState) -> list[Any]:
    return [sorted(c.voters), sorted(c.learners), sorted(c.voters_outgoing)]


def encode_message(m: Message) -> bytes:
    """The deterministic CBOR bytes of ``m`` (``ConfigError`` for a local message type)."""
    t = m.type
    head: list[Any] = [int(t), m.to, m.sender, m.term]
    if t == M.PROP:
        tail: list[Any] = [[_entry_wire(e) for e in m.entries]]
    elif t == M.APP:
        tail = [m.log_term, m.index, m.commit, [_entry_wire(e) for e in m.entries]]
    elif t == M.APP_RESP:
        tail = [m.index, m.reject, m.reject_hint, m.log_term]
    elif t in (M.VOTE, M.PRE_VOTE):
        tail = [m.log_term, m.index, m.context]
    elif t in (M.VOTE_RESP, M.PRE_VOTE_RESP):
        tail = [m.reject]
    elif t == M.SNAP:
        meta = m.snapshot if m.snapshot is not None else SnapshotMeta(0, 0)
        tail = [
            [meta.index, meta.term, _conf_wire(meta.conf)],
            m.snap_offset,
            m.snap_total,
            m.snap_data,
        ]
    elif t == M.SNAP_RESP:
        tail = [m.index, m.snap_offset, m.reject]
    elif t == M.HEARTBEAT:
        tail = [m.commit, m.context]
    elif t in (M.HEARTBEAT_RESP, M.READ_INDEX):
        tail = [m.context]
    elif t in (M.TRANSFER_LEADER, M.TIMEOUT_NOW):
        tail = []
    elif t == M.READ_INDEX_RESP:
        tail = [m.index, m.context]
    else:
        raise ConfigError(f"message type {t.name} is local and has no wire form")
    try:
        return cbor2.dumps(head + tail, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"cannot encode a {t.name} message: {exc}") from None


def encode_messages(messages: list[Message]) -> list[bytes]:
    """``[encode_message(m) for m in messages]``, with the entries of appends that carry
    the same entries (a leader's round to several followers) encoded once.

    An append's encoding is the head ``[type, to, from, term, log_term, index, commit]``
    followed by the entries array: every element is an integer or a byte string, so the
    8-element array is the 7-element head's bytes with its first byte ``0x87`` made
    ``0x88``, then the entries array's bytes (the same bytes ``cbor2`` writes for the
    whole list). Appends share an encoding when they hold the very same entry objects.
    """
    out: list[bytes] = []
    if sum(m.type is M.APP for m in messages) < 2:
        return [encode_message(m) for m in messages]
    # keyed by the entries' identities: they are alive (held by the messages) meanwhile
    shared: dict[tuple[int, ...], bytes] = {}
    for m in messages:
        entries = m.entries
        if m.type is not M.APP or not entries:
            out.append(encode_message(m))
            continue
        key = tuple(map(id, entries))
        body = shared.get(key)
        try:
            if body is None:
                body = shared[key] = cbor2.dumps([_entry_wire(e) for e in entries],
                                                 canonical=True)
            head = cbor2.dumps(
                [int(M.APP), m.to, m.sender, m.term, m.log_term, m.index, m.commit],
                canonical=True,
            )
        except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"cannot encode a APP message: {exc}") from None
        out.append(b"".join((b"\x88", memoryview(head)[1:], body)))
    return out


# ---------------------------------------------------------------------------------------
# Decoding

# Number of elements after the 4-element header, per type.
_TAIL_LENGTH: dict[int, int] = {
    M.PROP: 1,
    M.APP: 4,
    M.APP_RESP: 4,
    M.VOTE: 3,
    M.PRE_VOTE: 3,
    M.VOTE_RESP: 1,
    M.PRE_VOTE_RESP: 1,
    M.SNAP: 4,
    M.SNAP_RESP: 3,
    M.HEARTBEAT: 2,
    M.HEARTBEAT_RESP: 1,
    M.TRANSFER_LEADER: 0,
    M.TIMEOUT_NOW: 0,
    M.READ_INDEX: 1,
    M.READ_INDEX_RESP: 2,
}


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_UINT64:
        raise MalformedError(f"{what}: expected an unsigned integer, got {type(value).__name__}")
    return value


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise MalformedError(f"{what}: expected a boolean, got {type(value).__name__}")
    return value


def _bytes(value: Any, what: str, limit: int) -> bytes:
    if type(value) is not bytes:
        raise MalformedError(f"{what}: expected a byte string, got {type(value).__name__}")
    if len(value) > limit:
        raise LimitError(f"{what}: {len(value)} bytes exceeds the limit of {limit}")
    return value


def _node_id(value: Any, what: str) -> NodeId:
    if type(value) is not bytes:
        raise MalformedError(
            f"{what}: expected a node id (byte string), got {type(value).__name__}"
        )
    if len(value) != NODE_ID_BYTES:
        raise MalformedError(f"{what}: a node id has {NODE_ID_BYTES} bytes, got {len(value)}")
    return value


def _array(value: Any, what: str, limit: int) -> list[Any]:
    if type(value) is not list:
        raise MalformedError(f"{what}: expected an array, got {type(value).__name__}")
    if len(value) > limit:
        raise LimitError(f"{what}: {len(value)} elements exceeds the limit of {limit}")
    return value


_KINDS = (EntryKind.NORMAL, EntryKind.CONF_CHANGE, EntryKind.NOOP)


def _entry_slow(raw: Any, name: str, limits: MessageLimits) -> Entry:
    """One entry, checked field by field (names the field at fault)."""
    if type(raw) is not list or len(raw) != 4:
        raise MalformedError(f"{name}: expected an array [term, index, kind, data]")
    term = _uint(raw[0], f"{name}.term")
    index = _uint(raw[1], f"{name}.index")
    kind_number = _uint(raw[2], f"{name}.kind")
    data = _bytes(raw[3], f"{name}.data", limits.max_entry_bytes)
    if kind_number >= len(_KINDS):
        raise MalformedError(f"{name}.kind: unknown entry kind {kind_number}")
    return Entry(term, index, _KINDS[kind_number], data)


def _entries(value: Any, what: str, limits: MessageLimits, after: int | None) -> list[Entry]:
    items = _array(value, what, limits.max_entries)
    out: list[Entry] = []
    max_data = limits.max_entry_bytes
    for i, raw in enumerate(items):
        # Fast path for the common, well-formed entry; anything odd takes the slow path,
        # which raises the precise error.
        if (
            type(raw) is list
            and len(raw) == 4
            and type(raw[0]) is int
            and type(raw[1]) is int
            and type(raw[2]) is int
            and type(raw[3]) is bytes
            and 0 <= raw[0] <= MAX_UINT64
            and 0 <= raw[1] <= MAX_UINT64
            and 0 <= raw[2] < 3
            and len(raw[3]) <= max_data
        ):
            e = make_entry(raw[0], raw[1], _KINDS[raw[2]], raw[3])
        else:
            e = _entry_slow(raw, f"{what}[{i}]", limits)
        if after is not None and (e.term == 0 or e.index != after + 1 + i):
            raise MalformedError(
                f"{what}[{i}]: expected index {after + 1 + i} with a term >= 1, "
                f"got index {e.index} term {e.term}"
            )
        out.append(e)
    return out


def _node_set(value: Any, what: str, limits: MessageLimits) -> frozenset[NodeId]:
    items = _array(value, what, limits.max_conf_nodes)
    ids = [_node_id(v, f"{what}[{i}]") for i, v in enumerate(items)]
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise MalformedError(f"{what}: node ids must be sorted and distinct")
    return frozenset(ids)


def _strict_cbor(data: bytes, limits: MessageLimits) -> Any:
    if len(data) > limits.max_message_bytes:
        raise LimitError(
            f"raft message: {len(data)} bytes exceeds the limit of {limits.max_message_bytes}"
        )
    try:
        value = cbor2.loads(
            data, max_depth=_MAX_DEPTH, allow_indefinite=False, allow_duplicate_keys=False
        )
    except cbor2.CBORDecodeError as exc:
        if "depth" in str(exc):
            raise LimitError(f"raft message: nesting deeper than {_MAX_DEPTH}") from None
        raise MalformedError(f"raft message: not well-formed CBOR: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError, KeyError) as exc:
        raise MalformedError(f"raft message: not decodable CBOR: {type(exc).__name__}") from None
    # Re-encoding must give the input back: that refuses trailing bytes, non-shortest
    # integers and lengths, and tags. (No map or float is valid in a message, so the plain
    # encoder, which keeps map order and writes 8-byte floats, is enough: the typed checks
    # that follow refuse those values anyway.)
    try:
        again = cbor2.dumps(value)
    except Exception:
        raise MalformedError(f"raft message: {type(value).__name__} is not plain CBOR") from None
    if again != data:
        raise MalformedError(
            "raft message: not deterministic CBOR (RFC 8949 section 4.2), "
            "or bytes after the item"
        )
    return value


def decode_message(data: bytes, limits: MessageLimits = DEFAULT_MESSAGE_LIMITS) -> Message:
    """Decode one message; raises only ``WireError`` subclasses naming the problem."""
    value = _strict_cbor(data, limits)
    try:
        return _message_from(value, limits)
    except WireError:
        raise
    except Exception as exc:  # pragma: no cover - a bug here is a finding, not a crash
        raise MalformedError(f"raft message: {type(exc).__name__}: {exc}") from None


def _message_from(value: Any, limits: MessageLimits) -> Message:
    if type(value) is not list or len(value) < 4:
        raise MalformedError("raft message: expected an array [type, to, from, term, ...]")
    number = value[0]
    if type(number) is not int or number not in _TAIL_LENGTH:
        raise MalformedError(f"raft message: unknown message type {number!r}")
    t = MessageType(number)
    want = 4 + _TAIL_LENGTH[number]
    if len(value) != want:
        raise MalformedError(f"{t.name}: expected {want} elements, got {len(value)}")
    m = Message(
        t,
        to=_node_id(value[1], f"{t.name}.to"),
        sender=_node_id(value[2], f"{t.name}.from"),
        term=_uint(value[3], f"{t.name}.term"),
    )
    tail = value[4:]
    name = t.name
    if t == M.PROP:
        m.entries = _entries(tail[0], f"{name}.entries", limits, None)
    elif t == M.APP:
        m.log_term = _uint(tail[0], f"{name}.log_term")
        m.index = _uint(tail[1], f"{name}.index")
        m.commit = _uint(tail[2], f"{name}.commit")
        m.entries = _entries(tail[3], f"{name}.entries", limits, m.index)
    elif t == M.APP_RESP:
        m.index = _uint(tail[0], f"{name}.index")
        m.reject = _bool(tail[1], f"{name}.reject")
        m.reject_hint = _uint(tail[2], f"{name}.reject_hint")
        m.log_term = _uint(tail[3], f"{name}.log_term")
    elif t in (M.VOTE, M.PRE_VOTE):
        m.log_term = _uint(tail[0], f"{name}.log_term")
        m.index = _uint(tail[1], f"{name}.index")
        m.context = _bytes(tail[2], f"{name}.context", limits.max_context_bytes)
    elif t in (M.VOTE_RESP, M.PRE_VOTE_RESP):
        m.reject = _bool(tail[0], f"{name}.reject")
    elif t == M.SNAP:
        meta = tail[0]
        if type(meta) is not list or len(meta) != 3:
            raise MalformedError(f"{name}.snapshot: expected an array [index, term, conf]")
        conf = meta[2]
        if type(conf) is not list or len(conf) != 3:
            raise MalformedError(
                f"{name}.snapshot.conf: expected an array [voters, learners, voters_outgoing]"
            )
        m.snapshot = SnapshotMeta(
            _uint(meta[0], f"{name}.snapshot.index"),
            _uint(meta[1], f"{name}.snapshot.term"),
            ConfState(
                voters=_node_set(conf[0], f"{name}.snapshot.conf.voters", limits),
                learners=_node_set(conf[1], f"{name}.snapshot.conf.learners", limits),
                voters_outgoing=_node_set(conf[2], f"{name}.snapshot.conf.voters_outgoing", limits),
            ),
        )
        m.snap_offset = _uint(tail[1], f"{name}.offset")
        m.snap_total = _uint(tail[2], f"{name}.total")
        m.snap_data = _bytes(tail[3], f"{name}.data", limits.max_chunk_bytes)
        if m.snap_offset + len(m.snap_data) > m.snap_total:
            raise MalformedError(
                f"{name}: chunk [{m.snap_offset}, {m.snap_offset + len(m.snap_data)}) "
                f"runs past the snapshot's {m.snap_total} bytes"
            )
        if m.snapshot.index == 0:
            raise MalformedError(f"{name}.snapshot.index: a snapshot starts at index 1 or later")
    elif t == M.SNAP_RESP:
        m.index = _uint(tail[0], f"{name}.index")
        m.snap_offset = _uint(tail[1], f"{name}.offset")
        m.reject = _bool(tail[2], f"{name}.reject")
    elif t == M.HEARTBEAT:
        m.commit = _uint(tail[0], f"{name}.commit")
        m.context = _bytes(tail[1], f"{name}.context", limits.max_context_bytes)
    elif t in (M.HEARTBEAT_RESP, M.READ_INDEX):
        m.context = _bytes(tail[0], f"{name}.context", limits.max_context_bytes)
    elif t == M.READ_INDEX_RESP:
        m.index = _uint(tail[0], f"{name}.index")
        m.context = _bytes(tail[1], f"{name}.context", limits.max_context_bytes)
    return m


def entry_bytes(entries: list[Entry]) -> int:
    """The payload size of ``entries`` as the flow-control bounds count it (``data`` bytes)."""
    return sum([len(e.data) for e in entries])
