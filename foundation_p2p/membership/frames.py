"""The membership frames (SWIM + Lifeguard), frame types 16..23 (spec/membership.md).

| type | frame          | CDDL                                                                     |
|------|----------------|--------------------------------------------------------------------------|
| 16   | swim-ping      | ``[16, seq: uint, target: node-id]``                                     |
| 17   | swim-ack       | ``[17, seq: uint]``                                                      |
| 18   | ping-req       | ``[18, seq: uint, target: node-id, host: tstr, port: uint]``             |
| 19   | nack           | ``[19, seq: uint]``                                                      |
| 20   | announcement   | ``[20, record: bstr, signature: bstr .size 64]``                         |
| 21   | suspect        | ``[21, node: node-id, incarnation: uint, accuser: node-id]``             |
| 22   | dead           | ``[22, node: node-id, incarnation: uint, accuser: node-id]``             |
| 23   | push-pull      | ``[23, exchange: uint, index: uint, reply: bool, last: bool, entries]``  |

``record`` is the CBOR encoding of ``[node_id, public_key, incarnation, state, host, port,
name, metadata: bstr, observer: bool, ? extensions: {* uint => bstr}]`` and ``signature``
the Ed25519 signature by the member's identity of :data:`SIGNING_CONTEXT` followed by
``record``. ``metadata`` is the application's; ``extensions`` are the node's own
subsystems' (key 1: the channels' topic set), written only when not empty, so a record
without extensions is the 9-element record of before. An announcement is the
only way a member enters a table, and it is relayed verbatim (never re-encoded), so a
holder of the cluster key cannot speak for another node. Suspect and dead are opinions
about others, unsigned. A push-pull entry is ``[record, signature, state]``: the member's
latest announcement plus the state the sender holds it in.

Hot-path frames are unfrozen slotted dataclasses validated with one combined test; the
error message is built only on failure.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import cbor2

from foundation_p2p.addresses import NODE_ID_BYTES, Address, NodeId
from foundation_p2p.crypto.identity import Identity, node_id_from_public_key, verify_signature
from foundation_p2p.errors import LimitError, MalformedError
from foundation_p2p.membership.state import MemberState
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import MAX_UINT64, register_frame
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits

SIGNING_CONTEXT = b"foundation-p2p membership announcement v1\x00"
"""Prefix of the signed bytes, so an announcement signature means nothing elsewhere."""

MAX_HOST_CHARS = 253
"""Longest host text in a ping-req or announcement, in characters (a DNS name's maximum)."""
MAX_NAME_CHARS = 64
"""Longest member name (characters)."""
MAX_METADATA_WIRE = 60_000
"""Largest metadata a frame may carry at all; each node applies its own lower bound."""
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
MAX_RECORD_BYTES = MAX_METADATA_WIRE + 512
"""Largest announcement record accepted."""
MAX_EXTENSIONS = 16
"""Most extension entries one record may carry."""
MAX_EXTENSION_KEY = 0xFFFF
"""Largest extension key."""
MAX_EXTENSIONS_WIRE = 60_000
"""Largest total of extension value bytes a record may carry at all; each node applies its
own lower bound (``max_extension_bytes``)."""
EXTENSION_TOPICS = 1
"""Extension key of the channels' topic set (spec/channels.md section 6)."""

PING, ACK, PING_REQ, NACK, ANNOUNCEMENT, SUSPECT, DEAD, PUSH_PULL = range(16, 24)


class _Codec:
    """``encode``/``decode`` of one frame on its own, for every membership frame."""

    __slots__ = ()

    def to_cbor(self) -> list[Any]:
        raise NotImplementedError

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        raise NotImplementedError

    def encode(self) -> bytes:
        """This frame alone, as deterministic CBOR."""
        return cbor.encode(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Self:
        """One frame of this type, strictly decoded (deterministic CBOR only)."""
        items = cbor.decode(data, limits)
        if (
            type(items) is not list
            or not items
            or type(items[0]) is not int
            or items[0] != getattr(cls, "TYPE", None)
        ):
            raise MalformedError(f"{cls.__name__}: not a frame of this type")
        return cls.from_cbor(items, limits)


def _trailing_bytes(data: bytes) -> bool:
    """True if ``data`` holds more than one CBOR item (``cbor2.loads`` ignores the rest)."""
    stream = io.BytesIO(data)
    try:
        cbor2.CBORDecoder(stream).decode()
    except Exception:  # already decoded once: cannot fail here, but never let it escape
        return True
    return stream.tell() != len(data)


def _is_uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_UINT64


def _is_id(v: Any) -> bool:
    return type(v) is bytes and len(v) == NODE_ID_BYTES


@register_frame
@dataclass(slots=True)
class SwimPing(_Codec):
    """Probe: asks ``target`` to answer with a :class:`SwimAck` of the same ``seq``.

    A node acks only pings naming its own id, so a new process at a failed member's old
    address does not answer for it. CDDL: ``swim-ping = [16, seq: uint, target: node-id]``.
    """

    TYPE: ClassVar[int] = PING
    seq: int
    target: NodeId

    def to_cbor(self) -> list[Any]:
        return [PING, self.seq, self.target]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        if len(items) != 3 or not (_is_uint(items[1]) and _is_id(items[2])):
            raise MalformedError("swim-ping: expected [16, seq: uint, target: 16-byte id]")
        return cls(items[1], items[2])


@register_frame
@dataclass(slots=True)
class SwimAck(_Codec):
    """Answers a :class:`SwimPing` (directly, or forwarded by a relay with the requester's
    ``seq``). CDDL: ``swim-ack = [17, seq: uint]``."""

    TYPE: ClassVar[int] = ACK
    seq: int

    def to_cbor(self) -> list[Any]:
        return [ACK, self.seq]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        if len(items) != 2 or not _is_uint(items[1]):
            raise MalformedError("swim-ack: expected [17, seq: uint]")
        return cls(items[1])


@register_frame
@dataclass(slots=True)
class PingReq(_Codec):
    """Asks a relay to ping ``target`` at ``(host, port)`` and forward its ack (``seq``
    is the requester's); a Lifeguard relay answers :class:`Nack` if the target is silent.

    CDDL: ``ping-req = [18, seq: uint, target: node-id, host: tstr, port: uint .le 65535]``.
    """

    TYPE: ClassVar[int] = PING_REQ
    seq: int
    target: NodeId
    host: str
    port: int

    def to_cbor(self) -> list[Any]:
        return [PING_REQ, self.seq, self.target, self.host, self.port]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        if len(items) != 5:
            raise MalformedError(f"ping-req: expected 5 elements, got {len(items)}")
        _, seq, target, host, port = items
        if not (
            _is_uint(seq)
            and _is_id(target)
            and type(host) is str
            and 0 < len(host) <= MAX_HOST_CHARS
            and type(port) is int
            and 0 <= port <= 65535
        ):
            raise MalformedError("ping-req: a field has the wrong type or size")
        return cls(seq, target, host, port)

    @property
    def address(self) -> Address:
        """The target's address."""
        return (self.host, self.port)


@register_frame
@dataclass(slots=True)
class Nack(_Codec):
    """A relay's answer that the target it pinged for ``seq`` did not ack in time
    (Lifeguard: proves the relay and the path to it work). CDDL: ``nack = [19, seq: uint]``."""

    TYPE: ClassVar[int] = NACK
    seq: int

    def to_cbor(self) -> list[Any]:
        return [NACK, self.seq]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        if len(items) != 2 or not _is_uint(items[1]):
            raise MalformedError("nack: expected [19, seq: uint]")
        return cls(items[1])


@register_frame
@dataclass(slots=True)
class Announcement(_Codec):
    """A member's own signed record (alive or left), relayed verbatim.

    ``record`` and ``signature`` are the wire bytes; the other fields are decoded from
    ``record`` (shape checked at decode; the signature is checked by
    :meth:`verify`, once per new record). CDDL: ``announcement = [20, record: bstr,
    signature: bstr .size 64]``, ``record = [node_id, public_key: bstr .size 32,
    incarnation: uint, state: 0 / 3, host: tstr, port: uint, name: tstr, metadata: bstr,
    observer: bool, ? extensions: {* uint .le 65535 => bstr}]``.
    """

    TYPE: ClassVar[int] = ANNOUNCEMENT
    record: bytes
    signature: bytes
    node_id: NodeId
    public_key: bytes
    incarnation: int
    state: MemberState
    host: str
    port: int
    name: str
    metadata: bytes
    observer: bool
    extensions: dict[int, bytes]
    """The record's extensions (empty when the record has none); never mutated."""
    verified: bool | None = field(default=None, compare=False, repr=False)
    """The result of :meth:`verify` once computed (None before)."""

    def to_cbor(self) -> list[Any]:
        return [ANNOUNCEMENT, self.record, self.signature]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        if len(items) != 3:
            raise MalformedError(f"announcement: expected 3 elements, got {len(items)}")
        return cls.parse(items[1], items[2], limits)

    @classmethod
    def parse(cls, record: Any, signature: Any, limits: WireLimits = DEFAULT_LIMITS) -> Self:
        """Decode and shape-check a record and its signature (not the signature itself).

        Parsed announcements are kept in a bounded process-wide cache keyed by the exact
        bytes (:data:`PARSE_CACHE_SIZE` entries and :data:`PARSE_CACHE_BYTES` bytes, oldest
        evicted first; only for the default limits), so a record relayed many
        times is decoded, and its signature verified, once: every peer relays the same
        bytes, and a simulator runs many nodes in one process. The cached object is never
        mutated except for its ``verified`` memo, a pure function of the same bytes.
        """
        global _parsed_bytes
        if limits is not DEFAULT_LIMITS or type(record) is not bytes:
            return cls._parse(record, signature, limits)  # cached only under the defaults
        # Keyed by the signature (64 bytes, cheap to hash), checked against the record
        # bytes on a hit: a replayed signature over other bytes is parsed on its own.
        cached = _PARSED.get(signature) if type(signature) is bytes else None
        if cached is not None and cached.record == record:
            return cached  # type: ignore[return-value]
        ann = cls._parse(record, signature, limits)
        if cached is not None:
            return ann  # keep the first record under this signature
        size = len(record) + 64
        while _PARSED and (
            len(_PARSED) >= PARSE_CACHE_SIZE or _parsed_bytes + size > PARSE_CACHE_BYTES
        ):
            oldest = next(iter(_PARSED))
            _parsed_bytes -= len(_PARSED.pop(oldest).record) + 64
        _PARSED[signature] = ann
        _parsed_bytes += size
        return ann

    @classmethod
    def _parse(cls, record: Any, signature: Any, limits: WireLimits) -> Self:
        if not (
            type(record) is bytes
            and len(record) <= MAX_RECORD_BYTES
            and type(signature) is bytes
            and len(signature) == SIGNATURE_BYTES
        ):
            raise MalformedError("announcement: record or signature has the wrong type or size")
        # The signature covers the bytes as sent, so a record need not be deterministic
        # CBOR (spec/membership.md); but it must be exactly one item, nothing after it.
        fields = cbor.decode(record, limits, check_canonical=False)
        if len(cbor.encode(fields)) != len(record) and _trailing_bytes(record):
            raise MalformedError("announcement.record: bytes after the record")
        if type(fields) is not list or not 9 <= len(fields) <= 10:
            raise MalformedError("announcement.record: expected an array of 9 or 10 elements")
        node_id, public_key, inc, state, host, port, name, metadata, observer = fields[:9]
        if not (
            _is_id(node_id)
            and type(public_key) is bytes
            and len(public_key) == PUBLIC_KEY_BYTES
            and _is_uint(inc)
            and (state == 0 or state == 3)
            and type(state) is int
            and type(host) is str
            and 0 < len(host) <= MAX_HOST_CHARS
            and type(port) is int
            and 0 <= port <= 65535
            and type(name) is str
            and len(name) <= MAX_NAME_CHARS
            and type(metadata) is bytes
            and type(observer) is bool
        ):
            raise MalformedError("announcement.record: a field has the wrong type or size")
        if len(metadata) > MAX_METADATA_WIRE:
            raise LimitError(f"announcement.metadata: {len(metadata)} bytes exceeds the limit")
        extensions = _check_extensions(fields[9]) if len(fields) == 10 else _NO_EXTENSIONS
        return cls(
            record,
            signature,
            node_id,
            public_key,
            inc,
            MemberState.ALIVE if state == 0 else MemberState.LEFT,
            host,
            port,
            name,
            metadata,
            observer,
            extensions,
        )

    @classmethod
    def sign(
        cls,
        identity: Identity,
        *,
        incarnation: int,
        state: MemberState,
        address: Address,
        name: str,
        metadata: bytes,
        observer: bool,
        extensions: Mapping[int, bytes] | None = None,
    ) -> Announcement:
        """Build and sign this node's own record (``state`` ALIVE or LEFT)."""
        if state not in (MemberState.ALIVE, MemberState.LEFT):
            raise ValueError(f"an announcement is ALIVE or LEFT, not {state.name}")
        record = cls.encode_record(
            identity,
            incarnation=incarnation,
            state=state,
            address=address,
            name=name,
            metadata=metadata,
            observer=observer,
            extensions=extensions,
        )
        signature = identity.sign(SIGNING_CONTEXT + record)
        return cls.parse(record, signature)

    @staticmethod
    def encode_record(
        identity: Identity,
        *,
        incarnation: int,
        state: MemberState,
        address: Address,
        name: str,
        metadata: bytes,
        observer: bool,
        extensions: Mapping[int, bytes] | None = None,
    ) -> bytes:
        """The record bytes :meth:`sign` signs (deterministic CBOR; the extensions element
        only when there are extensions)."""
        fields: list[Any] = [
            identity.node_id,
            identity.public_key,
            incarnation,
            state.value,
            address[0],
            address[1],
            name,
            metadata,
            observer,
        ]
        if extensions:
            fields.append(dict(extensions))
        return cbor.encode(fields)

    def verify(self) -> bool:
        """True if the node id derives from the public key and the signature is valid."""
        if self.verified is None:
            self.verified = node_id_from_public_key(
                self.public_key
            ) == self.node_id and verify_signature(
                self.public_key, self.signature, SIGNING_CONTEXT + self.record
            )
        return self.verified

    @property
    def address(self) -> Address:
        """The member's announced address."""
        return (self.host, self.port)


_NO_EXTENSIONS: dict[int, bytes] = {}


def extension_bytes(extensions: Mapping[int, bytes]) -> int:
    """The size counted against ``max_extension_bytes``: the sum of the value lengths."""
    return sum(len(v) for v in extensions.values())


def _check_extensions(value: Any) -> dict[int, bytes]:
    """The record's extensions element: ``{* uint .le 65535 => bstr}``, bounded."""
    if type(value) is not dict:
        raise MalformedError("announcement.record: extensions must be a map")
    if len(value) > MAX_EXTENSIONS:
        raise LimitError(
            f"announcement.extensions: {len(value)} entries exceeds the limit {MAX_EXTENSIONS}"
        )
    total = 0
    for key, item in value.items():
        if type(key) is not int or not 0 <= key <= MAX_EXTENSION_KEY:
            raise MalformedError(
                f"announcement.extensions: key {key!r} is not a uint of at most 65535"
            )
        if type(item) is not bytes:
            raise MalformedError(f"announcement.extensions: value of key {key} is not a bstr")
        total += len(item)
    if total > MAX_EXTENSIONS_WIRE:
        raise LimitError(f"announcement.extensions: {total} bytes exceeds the limit")
    return value if value else _NO_EXTENSIONS


@dataclass(slots=True)
class _Opinion(_Codec):
    """``[TYPE, node, incarnation, accuser]``: an unsigned opinion about another member."""

    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    node_id: NodeId
    incarnation: int
    accuser: NodeId

    def to_cbor(self) -> list[Any]:
        return [self.TYPE, self.node_id, self.incarnation, self.accuser]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        if len(items) != 4 or not (_is_id(items[1]) and _is_uint(items[2]) and _is_id(items[3])):
            raise MalformedError(
                f"{cls.NAME}: expected [{cls.TYPE}, node: id, incarnation: uint, accuser: id]"
            )
        return cls(items[1], items[2], items[3])


@register_frame
@dataclass(slots=True)
class Suspect(_Opinion):
    """``accuser`` suspects ``node`` at ``incarnation`` (it missed a probe).

    CDDL: ``suspect = [21, node: node-id, incarnation: uint, accuser: node-id]``.
    """

    TYPE: ClassVar[int] = SUSPECT
    NAME: ClassVar[str] = "suspect"


@register_frame
@dataclass(slots=True)
class Dead(_Opinion):
    """``accuser`` declared ``node`` failed at ``incarnation`` (suspicion timed out).

    CDDL: ``dead = [22, node: node-id, incarnation: uint, accuser: node-id]``.
    """

    TYPE: ClassVar[int] = DEAD
    NAME: ClassVar[str] = "dead"


@dataclass(slots=True)
class PushPullEntry:
    """One member in a push-pull chunk: its announcement and the state the sender holds."""

    announcement: Announcement
    state: MemberState

    def to_cbor(self) -> list[Any]:
        a = self.announcement
        return [a.record, a.signature, self.state.value]


@register_frame
@dataclass(slots=True)
class PushPull(_Codec):
    """One chunk of a full-state exchange.

    ``exchange`` is chosen by the initiator and echoed by the answer; ``index`` counts
    chunks from 0; ``reply`` asks the receiver to answer with its own state (set by the
    initiator); ``last`` marks the final chunk. CDDL: ``push-pull = [23, exchange: uint,
    index: uint, reply: bool, last: bool, entries: [* [record: bstr, signature: bstr .size
    64, state: 0..3]]]``.
    """

    TYPE: ClassVar[int] = PUSH_PULL
    exchange: int
    index: int
    reply: bool
    last: bool
    entries: list[PushPullEntry]

    def to_cbor(self) -> list[Any]:
        return [
            PUSH_PULL,
            self.exchange,
            self.index,
            self.reply,
            self.last,
            [e.to_cbor() for e in self.entries],
        ]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        if len(items) != 6:
            raise MalformedError(f"push-pull: expected 6 elements, got {len(items)}")
        _, exchange, index, reply, last, raw = items
        if not (
            _is_uint(exchange)
            and _is_uint(index)
            and type(reply) is bool
            and type(last) is bool
            and type(raw) is list
        ):
            raise MalformedError("push-pull: a field has the wrong type")
        if len(raw) > limits.max_collection_items:
            raise LimitError(f"push-pull: {len(raw)} entries exceeds the limit")
        entries: list[PushPullEntry] = []
        for item in raw:
            if type(item) is not list or len(item) != 3:
                raise MalformedError("push-pull entry: expected [record, signature, state]")
            code = item[2]
            if type(code) is not int or not 0 <= code <= 3:
                raise MalformedError("push-pull entry: state must be 0..3")
            announcement = Announcement.parse(item[0], item[1], limits)
            entries.append(PushPullEntry(announcement, _STATES[code]))
        return cls(exchange, index, reply, last, entries)


PARSE_CACHE_SIZE = 8192
"""Most parsed announcements kept (see :meth:`Announcement.parse`)."""
PARSE_CACHE_BYTES = 8 * 1024 * 1024
"""Most record bytes the cache holds (a peer's record sizes never decide our memory);
the oldest entries are evicted first when either bound is reached."""
_PARSED: dict[bytes, Announcement] = {}
_parsed_bytes = 0

_STATES = (MemberState.ALIVE, MemberState.SUSPECT, MemberState.FAILED, MemberState.LEFT)

MEMBERSHIP_FRAME_TYPES: tuple[int, ...] = tuple(range(16, 24))
"""Frame types the membership subsystem receives."""

__all__ = [
    "EXTENSION_TOPICS",
    "MAX_EXTENSIONS",
    "MAX_EXTENSIONS_WIRE",
    "MAX_EXTENSION_KEY",
    "MEMBERSHIP_FRAME_TYPES",
    "SIGNING_CONTEXT",
    "Announcement",
    "Dead",
    "Nack",
    "PingReq",
    "PushPull",
    "PushPullEntry",
    "Suspect",
    "SwimAck",
    "SwimPing",
    "extension_bytes",
]
