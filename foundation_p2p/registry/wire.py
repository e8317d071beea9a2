"""The registry's sync messages as CBOR values (``spec/registry.md``, ``spec/registry.cddl``).

Every message is an array whose first element is its type:

========  ==============================================================  ================
type      fields                                                          sent by
========  ==============================================================  ================
1 delta   ``[1, entries, context]``                                       writer, eagerly
2 request ``[2, sid, context, group_digests]``                            sync initiator
3 reply   ``[3, sid, entries, context / null, {bucket: digest}, more]``   sync responder
4 check   ``[4, sid, dots]``                                              sync initiator
5 removed ``[5, sid, dots]``                                              sync responder
========  ==============================================================  ================

An entry is ``[name, writer, counter, wall_ms, logical, owner / null, value, metadata]``
(its dot is ``(writer, counter)``, its stamp ``(wall_ms, logical, writer)``); a context is
``[[[node, top], ...], [[node, counter], ...]]`` (version vector, dot cloud), both lists
sorted.

The messenger hands :func:`decode_message` an already decoded CBOR value;
:func:`decode_message_bytes` decodes bytes first (for the fuzz targets and vectors). Both
raise only :class:`~foundation_p2p.errors.WireError` subclasses, naming the problem.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import cbor2

from foundation_p2p.errors import LimitError, MalformedError
from foundation_p2p.registry.crdt import BUCKETS, GROUPS, Dot, DotContext, Entry, RegistryState
from foundation_p2p.registry.hlc import Stamp
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import WireLimits

MSG_DELTA = 1
MSG_SYNC_REQUEST = 2
MSG_SYNC_REPLY = 3
MSG_SYNC_CHECK = 4
MSG_SYNC_REMOVED = 5

MAX_NAME_BYTES = 255
"""Longest name in UTF-8 bytes."""
MAX_ITEMS = 65_536
"""Most entries, dots, vector slots or cloud dots in one list of one message."""
MAX_MESSAGE_BYTES = 1 << 20
"""Largest encoded message :func:`decode_message_bytes` accepts (1 MiB)."""
MAX_VALUE_BYTES = 65_536
"""Default bound on one entry's encoded value (and on its encoded metadata)."""
MAX_U64 = (1 << 64) - 1
MAX_SID = (1 << 32) - 1

VALUE_LIMITS = WireLimits(max_text_bytes=65_507, max_collection_items=4096, max_depth=13)
"""Structure bounds on values and metadata (``check_plain``); the byte bound is separate.
A value sits three arrays deep in a message (message, entries, entry), and a messenger
record nests at most 16 deep (``spec/messaging.md``), hence 13."""
MAX_DEPTH = 16
"""Deepest nesting in a whole message (the messenger's bound)."""


@dataclass(frozen=True, slots=True)
class Delta:
    """Type 1: a writer's mutations, shipped eagerly; joined as a state."""

    state: RegistryState
    """The delta: its entries and its context (the written and the removed dots)."""


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Type 2: "here is what I have seen and my digests; send me what I lack"."""

    sid: int
    """Sync id chosen by the initiator, echoed in the replies."""
    context: DotContext
    """The initiator's whole causal context."""
    group_digests: list[int]
    """:data:`~foundation_p2p.registry.crdt.GROUPS` 64-bit digests of the initiator."""


@dataclass(frozen=True, slots=True)
class SyncReply:
    """Type 3: the responder's live entries the initiator has not seen, and its bucket
    digests of the groups that differ."""

    sid: int
    """The request's sync id."""
    entries: list[tuple[Dot, Entry]]
    """Live entries whose dot is not in the request's context (up to the size cap)."""
    context: DotContext | None
    """The responder's whole context when ``entries`` is complete, else None."""
    bucket_digests: dict[int, int]
    """Bucket -> the responder's digest, for every bucket of the differing groups."""
    more: bool
    """True if the size cap cut ``entries`` short: the initiator asks again at once."""


@dataclass(frozen=True, slots=True)
class SyncCheck:
    """Type 4: the initiator's live dots in buckets that still differ after the reply."""

    sid: int
    """The sync id."""
    dots: list[Dot]
    """Live dots of the initiator the responder may have removed."""


@dataclass(frozen=True, slots=True)
class SyncRemoved:
    """Type 5: which of the checked dots the responder has seen and no longer holds."""

    sid: int
    """The sync id."""
    dots: list[Dot]
    """Dots to remove at the initiator."""


Message = Delta | SyncRequest | SyncReply | SyncCheck | SyncRemoved
"""Any registry sync message."""


# -- validation helpers ----------------------------------------------------------------


def check_name(name: object, *, what: str = "name") -> str:
    """Return ``name`` if it is a valid registry name, else raise a ``WireError``.

    Valid: a text string of 1..255 UTF-8 bytes with no control characters (Unicode
    category Cc) and no lone surrogates.
    """
    if not isinstance(name, str):
        raise MalformedError(f"{what}: expected text, got {type(name).__name__}")
    if not name:
        raise MalformedError(f"{what}: empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedError(f"{what}: not valid UTF-8 (lone surrogate)") from None
    if size > MAX_NAME_BYTES:
        raise LimitError(f"{what}: {size} bytes exceeds {MAX_NAME_BYTES}")
    if not name.isprintable():
        for ch in name:
            if unicodedata.category(ch) == "Cc":
                raise MalformedError(f"{what}: control character U+{ord(ch):04X}")
    return name


def check_value(value: Any, max_bytes: int, *, what: str) -> int:
    """Check an application value is plain CBOR within bounds; returns its encoded size."""
    cbor.check_plain(value, VALUE_LIMITS, what=what)
    size = len(cbor.encode(value))
    if size > max_bytes:
        raise LimitError(f"{what}: {size} bytes encoded exceeds {max_bytes}")
    return size


def check_metadata(metadata: Any, max_bytes: int, *, what: str = "metadata") -> dict[str, Any]:
    """Check metadata is a map with text keys, plain CBOR within bounds."""
    if not isinstance(metadata, dict):
        raise MalformedError(f"{what}: expected a map, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str):
            raise MalformedError(f"{what}: key {key!r} is not text")
    check_value(metadata, max_bytes, what=what)
    return metadata


def _list(value: Any, what: str, max_items: int = MAX_ITEMS) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError(f"{what}: expected an array, got {type(value).__name__}")
    if len(value) > max_items:
        raise LimitError(f"{what}: {len(value)} items exceeds {max_items}")
    return value


def _uint(value: Any, what: str, maximum: int = MAX_U64, minimum: int = 0) -> int:
    if type(value) is not int:
        raise MalformedError(f"{what}: expected an unsigned integer, got {type(value).__name__}")
    if value < minimum or value > maximum:
        raise MalformedError(f"{what}: {value} outside {minimum}..{maximum}")
    return value


def _node(value: Any, what: str) -> bytes:
    if type(value) is not bytes:
        raise MalformedError(f"{what}: expected a 16-byte node id, got {type(value).__name__}")
    if len(value) != 16:
        raise MalformedError(f"{what}: node id of {len(value)} bytes, expected 16")
    return value


# -- encoding --------------------------------------------------------------------------


def dot_to_wire(dot: Dot) -> list[Any]:
    """``[node_id, counter]``."""
    return [dot[0], dot[1]]


def dot_from_wire(value: Any, what: str = "dot") -> Dot:
    """Decode ``[node_id, counter]`` (counter >= 1)."""
    items = _list(value, what, 2)
    if len(items) != 2:
        raise MalformedError(f"{what}: expected [node, counter], got {len(items)} items")
    return (_node(items[0], f"{what} node"), _uint(items[1], f"{what} counter", minimum=1))


def entry_to_wire(dot: Dot, entry: Entry) -> list[Any]:
    """``[name, writer, counter, wall_ms, logical, owner / null, value, metadata]``."""
    stamp = entry.stamp
    return [
        entry.name,
        dot[0],
        dot[1],
        stamp.wall_ms,
        stamp.logical,
        entry.owner,
        entry.value,
        entry.metadata,
    ]


def entry_from_wire(
    value: Any, what: str = "entry", *, max_value_bytes: int = MAX_VALUE_BYTES
) -> tuple[Dot, Entry]:
    """Decode one entry, checking every field (see :func:`entry_to_wire`)."""
    items = _list(value, what, 8)
    if len(items) != 8:
        raise MalformedError(f"{what}: expected 8 fields, got {len(items)}")
    name = check_name(items[0], what=f"{what} name")
    writer = _node(items[1], f"{what} writer")
    counter = _uint(items[2], f"{what} counter", minimum=1)
    wall_ms = _uint(items[3], f"{what} wall_ms")
    logical = _uint(items[4], f"{what} logical", maximum=(1 << 32) - 1)
    owner = None if items[5] is None else _node(items[5], f"{what} owner")
    check_value(items[6], max_value_bytes, what=f"{what} value")
    metadata = check_metadata(items[7], max_value_bytes, what=f"{what} metadata")
    stamp = Stamp(wall_ms, logical, writer)
    return (writer, counter), Entry(name, items[6], metadata, owner, stamp)


def context_to_wire(ctx: DotContext) -> list[Any]:
    """``[[[node, top], ...], [[node, counter], ...]]``, both sorted."""
    return [
        [[node, top] for node, top in sorted(ctx.vv.items())],
        [[node, counter] for node, counter in sorted(ctx.cloud)],
    ]


def context_from_wire(value: Any, what: str = "context") -> DotContext:
    """Decode a causal context in its compact form: vector nodes ascending, cloud dots
    ascending, none covered by the vector nor next after it (so every context has one
    encoding)."""
    items = _list(value, what, 2)
    if len(items) != 2:
        raise MalformedError(f"{what}: expected [vector, cloud], got {len(items)} items")
    vv: dict[bytes, int] = {}
    previous: bytes | None = None
    for i, slot in enumerate(_list(items[0], f"{what} vector")):
        pair = _list(slot, f"{what} vector[{i}]", 2)
        if len(pair) != 2:
            raise MalformedError(f"{what} vector[{i}]: expected [node, top]")
        node = _node(pair[0], f"{what} vector[{i}] node")
        top = _uint(pair[1], f"{what} vector[{i}] top", minimum=1)
        if previous is not None and node <= previous:
            raise MalformedError(f"{what} vector: nodes not in ascending order at {i}")
        previous = node
        vv[node] = top
    ctx = DotContext(vv)
    prev_dot: Dot | None = None
    for i, raw in enumerate(_list(items[1], f"{what} cloud")):
        dot = dot_from_wire(raw, f"{what} cloud[{i}]")
        if prev_dot is not None and dot <= prev_dot:
            raise MalformedError(f"{what} cloud: dots not in ascending order at {i}")
        prev_dot = dot
        top = ctx.vv.get(dot[0], 0)
        if dot[1] <= top:
            raise MalformedError(f"{what} cloud[{i}]: dot already covered by the vector")
        if dot[1] == top + 1:
            raise MalformedError(f"{what} cloud[{i}]: dot belongs in the vector (not compact)")
        ctx.cloud.add(dot)
    return ctx


def entries_from_wire(
    value: Any, what: str = "entries", *, max_value_bytes: int = MAX_VALUE_BYTES
) -> list[tuple[Dot, Entry]]:
    """Decode a list of entries, strictly ascending by (name, dot) (so one dot never
    appears twice and every list has one encoding)."""
    out: list[tuple[Dot, Entry]] = []
    seen: set[Dot] = set()
    previous: tuple[str, Dot] | None = None
    for i, raw in enumerate(_list(value, what)):
        dot, entry = entry_from_wire(raw, f"{what}[{i}]", max_value_bytes=max_value_bytes)
        if dot in seen:
            raise MalformedError(f"{what}[{i}]: dot {dot[0].hex()}:{dot[1]} appears twice")
        key = (entry.name, dot)
        if previous is not None and key <= previous:
            raise MalformedError(f"{what}[{i}]: entries not in ascending (name, dot) order")
        previous = key
        seen.add(dot)
        out.append((dot, entry))
    return out


def state_entries(state: RegistryState) -> list[tuple[Dot, Entry]]:
    """Every live ``(dot, entry)`` of ``state``, by name then dot."""
    entries = state.entries
    return [
        (dot, entries[name][dot]) for name in state.sorted_names() for dot in sorted(entries[name])
    ]


def state_to_wire(state: RegistryState) -> list[Any]:
    """The whole state as ``[entries, context]`` (what a state-based CRDT would ship)."""
    return [[entry_to_wire(d, e) for d, e in state_entries(state)], context_to_wire(state.ctx)]


def state_from_wire(value: Any, what: str = "state") -> RegistryState:
    """Decode ``[entries, context]``; every entry's dot must be in the context."""
    items = _list(value, what, 2)
    if len(items) != 2:
        raise MalformedError(f"{what}: expected [entries, context], got {len(items)} items")
    entries = entries_from_wire(items[0], f"{what} entries")
    ctx = context_from_wire(items[1], f"{what} context")
    state = RegistryState()
    for dot, entry in entries:
        if not ctx.contains(dot):
            raise MalformedError(f"{what}: entry {entry.name!r} has a dot outside the context")
        state._add_live(entry.name, dot, entry)
    state.ctx = ctx
    return state


def _dots_from_wire(value: Any, what: str) -> list[Dot]:
    out = [dot_from_wire(raw, f"{what}[{i}]") for i, raw in enumerate(_list(value, what))]
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise MalformedError(f"{what}[{i}]: dots not in ascending order (or repeated)")
    return out


def encode_message(msg: Message) -> list[Any]:
    """The CBOR value of ``msg`` (hand it to the messenger, or to ``cbor.encode``)."""
    if isinstance(msg, Delta):
        return [MSG_DELTA, *state_to_wire(msg.state)]
    if isinstance(msg, SyncRequest):
        return [MSG_SYNC_REQUEST, msg.sid, context_to_wire(msg.context), list(msg.group_digests)]
    if isinstance(msg, SyncReply):
        return [
            MSG_SYNC_REPLY,
            msg.sid,
            [entry_to_wire(d, e) for d, e in msg.entries],
            None if msg.context is None else context_to_wire(msg.context),
            dict(sorted(msg.bucket_digests.items())),
            msg.more,
        ]
    if isinstance(msg, SyncCheck):
        return [MSG_SYNC_CHECK, msg.sid, [dot_to_wire(d) for d in msg.dots]]
    return [MSG_SYNC_REMOVED, msg.sid, [dot_to_wire(d) for d in msg.dots]]


_FIELDS = {MSG_DELTA: 3, MSG_SYNC_REQUEST: 4, MSG_SYNC_REPLY: 6, MSG_SYNC_CHECK: 3,
           MSG_SYNC_REMOVED: 3}


def decode_message(value: Any, *, max_value_bytes: int = MAX_VALUE_BYTES) -> Message:
    """Turn a decoded CBOR value into a :data:`Message`, checking every field and bound.

    Raises :class:`~foundation_p2p.errors.MalformedError` or
    :class:`~foundation_p2p.errors.LimitError` naming the problem, and nothing else.
    """
    items = _list(value, "registry message", 8)
    if not items:
        raise MalformedError("registry message: empty array")
    kind = items[0]
    if type(kind) is not int or kind not in _FIELDS:
        raise MalformedError(f"registry message: unknown type {kind!r}")
    if len(items) != _FIELDS[kind]:
        raise MalformedError(
            f"registry message type {kind}: expected {_FIELDS[kind]} fields, got {len(items)}"
        )
    if kind == MSG_DELTA:
        state = RegistryState(indexed=False)
        entries = entries_from_wire(items[1], "delta entries", max_value_bytes=max_value_bytes)
        ctx = context_from_wire(items[2], "delta context")
        for dot, entry in entries:
            if not ctx.contains(dot):
                raise MalformedError(f"delta: entry {entry.name!r} has a dot outside the context")
            state._add_live(entry.name, dot, entry)
        state.ctx = ctx
        return Delta(state)
    sid = _uint(items[1], "sync id", MAX_SID)
    if kind == MSG_SYNC_REQUEST:
        ctx = context_from_wire(items[2], "request context")
        digests = _list(items[3], "request digests", GROUPS)
        if len(digests) != GROUPS:
            raise MalformedError(f"request digests: expected {GROUPS}, got {len(digests)}")
        return SyncRequest(
            sid, ctx, [_uint(d, f"request digest[{i}]") for i, d in enumerate(digests)]
        )
    if kind == MSG_SYNC_REPLY:
        entries = entries_from_wire(items[2], "reply entries", max_value_bytes=max_value_bytes)
        context = None if items[3] is None else context_from_wire(items[3], "reply context")
        raw = items[4]
        if not isinstance(raw, dict):
            raise MalformedError(f"reply digests: expected a map, got {type(raw).__name__}")
        if len(raw) > BUCKETS:
            raise LimitError(f"reply digests: {len(raw)} buckets exceeds {BUCKETS}")
        buckets = {
            _uint(b, "reply bucket", BUCKETS - 1): _uint(h, f"reply digest of bucket {b!r}")
            for b, h in raw.items()
        }
        more = items[5]
        if type(more) is not bool:
            raise MalformedError(f"reply more: expected a boolean, got {type(more).__name__}")
        return SyncReply(sid, entries, context, buckets, more)
    dots = _dots_from_wire(items[2], "check dots" if kind == MSG_SYNC_CHECK else "removed dots")
    return SyncCheck(sid, dots) if kind == MSG_SYNC_CHECK else SyncRemoved(sid, dots)


def decode_message_bytes(data: bytes, *, max_value_bytes: int = MAX_VALUE_BYTES) -> Message:
    """Decode deterministic CBOR bytes (at most :data:`MAX_MESSAGE_BYTES`), then
    :func:`decode_message`.

    ``cbor.decode`` bounds its input by a datagram's size; a registry message travels on a
    stream, so this decodes with ``cbor2`` under the same rules (definite lengths, no
    duplicate keys, bounded depth) and refuses any input whose deterministic re-encoding
    differs from the bytes received.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise LimitError(f"registry message: {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        value = cbor2.loads(
            data, max_depth=MAX_DEPTH, allow_indefinite=False, allow_duplicate_keys=False
        )
        again = cbor2.dumps(value, canonical=True)
    except cbor2.CBORDecodeError as exc:
        if "depth" in str(exc):
            raise LimitError(f"registry message: nesting deeper than {MAX_DEPTH}") from None
        raise MalformedError(f"registry message: not well-formed CBOR: {exc}") from None
    except Exception as exc:
        raise MalformedError(
            f"registry message: not decodable CBOR ({type(exc).__name__}: {exc})"
        ) from None
    if again != data:
        raise MalformedError("registry message: not deterministic CBOR (RFC 8949 section 4.2)")
    return decode_message(value, max_value_bytes=max_value_bytes)


def message_size(value: Any) -> int:
    """Encoded size in bytes of a message value."""
    return len(cbor.encode(value))
