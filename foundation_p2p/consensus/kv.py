"""The replicated key-value store: the built-in Raft state machine (``spec/consensus-kv.md``).

Keys and values are byte strings; keys are ordered bytewise, so ``range`` reads return
keys in order. Commands and results are deterministic CBOR arrays:

- command: ``[1, session, op]``; ``session`` is ``null`` or ``[client_id, seq, acked]``
  (:mod:`foundation_p2p.consensus.sessions`), ``op`` one of ``[0, key]`` get,
  ``[1, key, value]`` put, ``[2, key]`` delete, ``[3, key, expected, new]``
  compare-and-swap (``expected`` ``null``: the key must be absent; ``new`` ``null``:
  delete), ``[4, start, end, limit]`` range (keys in ``[start, end)``, ``end`` ``null``:
  to the last key; at most ``limit`` pairs, 0 meaning the store's maximum), ``[5]``
  register a session, ``[6]`` close the command's session;
- result: ``[0, payload]`` on success (get: the value or ``null``; put and delete: the
  previous value or ``null``; cas: ``[swapped, current value or null]``; range:
  ``[[key, value]...], more]``; register: the new client id; close: ``null``), or
  ``[code, message]`` with code 1 ``session_expired``, 2 ``stale_sequence``,
  3 ``too_many_pending``, 4 ``bad_command``, 5 ``limit``. A refused command changes
  nothing.

:class:`KVStore` applies encoded commands (``apply``), answers read-only operations
without the log (``query``, for ReadIndex and lease reads), and snapshots/restores its
whole state, sessions included, deterministically: the snapshot is
``[1, applied_index, evictions, [[key, value]...], [session...]]`` with keys sorted and
sessions least recently used first, each ``[client_id, last_index, acked, [[seq,
result]...]]``.

Building commands: :func:`encode_get`, :func:`encode_put`, ... take an optional
:class:`SessionRef`; :func:`decode_result` turns a result back into a :class:`KVResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import cbor2
from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from foundation_p2p.consensus.fastcbor import read_bytes, read_head, uint_head
from foundation_p2p.consensus.sessions import (
    Session,
    SessionLimits,
    SessionTable,
    SessionVerdict,
)
from foundation_p2p.consensus.state_machine import AppliedIndex
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError

COMMAND_VERSION = 1
SNAPSHOT_VERSION = 1


class Op(IntEnum):
    """The operation codes of ``spec/consensus-kv.md``."""

    GET = 0
    PUT = 1
    DELETE = 2
    CAS = 3
    RANGE = 4
    REGISTER = 5
    CLOSE = 6


class Status(IntEnum):
    """Result codes: 0 is success, the others a refusal (nothing changed)."""

    OK = 0
    SESSION_EXPIRED = 1
    STALE_SEQUENCE = 2
    TOO_MANY_PENDING = 3
    BAD_COMMAND = 4
    LIMIT = 5


_VERDICT_STATUS = {
    SessionVerdict.SESSION_EXPIRED: Status.SESSION_EXPIRED,
    SessionVerdict.STALE_SEQUENCE: Status.STALE_SEQUENCE,
    SessionVerdict.TOO_MANY_PENDING: Status.TOO_MANY_PENDING,
}
_READ_OPS = (Op.GET, Op.RANGE)
_OPS = tuple(Op)  # by code: Op(code) without the enum lookup
# The members as module constants: on Python 3.11 ``Op.PUT`` is a descriptor call on
# the enum class, several times slower than a global (the apply path reads them often).
_GET, _PUT, _DELETE, _CAS, _RANGE, _REGISTER, _CLOSE = _OPS
_ARITY = {
    Op.GET: 1,
    Op.PUT: 2,
    Op.DELETE: 1,
    Op.CAS: 3,
    Op.RANGE: 3,
    Op.REGISTER: 0,
    Op.CLOSE: 0,
}
"""Arguments each operation takes."""
_ARITY_BY_CODE = tuple(_ARITY[op] for op in _OPS)


@dataclass(frozen=True, slots=True)
class KVLimits:
    """Bounds on what one command and the store may hold."""

    max_key_bytes: int = 4096
    max_value_bytes: int = 1024 * 1024
    max_command_bytes: int = 1024 * 1024 + 8192
    """Largest encoded command accepted."""
    max_range_items: int = 10_000
    """Most pairs one range read returns (``limit`` 0 means this)."""
    max_snapshot_bytes: int = 1 << 30
    sessions: SessionLimits = field(default_factory=SessionLimits)

    def __post_init__(self) -> None:
        for name in (
            "max_key_bytes",
            "max_value_bytes",
            "max_command_bytes",
            "max_range_items",
            "max_snapshot_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"KVLimits.{name}: must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class SessionRef:
    """The session fields a client puts in a command."""

    client_id: int
    seq: int
    acked: int = 0


@dataclass(frozen=True, slots=True)
class KVResult:
    """A decoded result."""

    status: Status
    value: Any = None
    """The payload on success (see the module docstring), the message on a refusal."""

    @property
    def ok(self) -> bool:
        """True on success."""
        return self.status == Status.OK


# -- strict CBOR ----------------------------------------------------------------------


def _loads(data: bytes, max_bytes: int, what: str) -> Any:
    """Decode one deterministic CBOR item of at most ``max_bytes`` (no maps, no tags)."""
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedError(f"{what}: not bytes")
    if len(data) > max_bytes:
        raise LimitError(f"{what}: {len(data)} bytes exceed the limit of {max_bytes}")
    try:
        value = cbor2.loads(data, max_depth=8, allow_indefinite=False)
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # cbor2 raises many types; all mean "not our CBOR"
        raise MalformedError(f"{what}: not well-formed CBOR: {type(exc).__name__}") from None
    if again != data:
        raise MalformedError(f"{what}: not deterministic CBOR (or trailing bytes)")
    return value


def _dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def _is_uint(v: Any) -> bool:
    return type(v) is int and 0 <= v < (1 << 64)


# -- building commands and reading results --------------------------------------------


def _session_field(session: SessionRef | None) -> list[int] | None:
    if session is None:
        return None
    return [session.client_id, session.seq, session.acked]


def encode_command(op: list[Any], session: SessionRef | None = None) -> bytes:
    """A command: ``[1, session, op]``."""
    return _dumps([COMMAND_VERSION, _session_field(session), op])


def encode_get(key: bytes, session: SessionRef | None = None) -> bytes:
    """A ``get`` command."""
    return encode_command([Op.GET, key], session)


def encode_put(key: bytes, value: bytes, session: SessionRef | None = None) -> bytes:
    """A ``put`` command."""
    return encode_command([Op.PUT, key, value], session)


def encode_delete(key: bytes, session: SessionRef | None = None) -> bytes:
    """A ``delete`` command."""
    return encode_command([Op.DELETE, key], session)


def encode_cas(
    key: bytes, expected: bytes | None, new: bytes | None, session: SessionRef | None = None
) -> bytes:
    """A compare-and-swap command (``None`` for absent)."""
    return encode_command([Op.CAS, key, expected, new], session)


def encode_range(
    start: bytes, end: bytes | None = None, limit: int = 0, session: SessionRef | None = None
) -> bytes:
    """A range read of keys in ``[start, end)``."""
    return encode_command([Op.RANGE, start, end, limit], session)


def encode_register() -> bytes:
    """The command that opens a session (its result is the client id)."""
    return encode_command([Op.REGISTER])


def encode_close(session: SessionRef) -> bytes:
    """The command that ends ``session``."""
    return encode_command([Op.CLOSE], session)


def decode_result(data: bytes) -> KVResult:
    """A result's status and payload (``WireError`` if it is not a result)."""
    value = _loads(data, 1 << 31, "kv result")
    if not (isinstance(value, list) and len(value) == 2 and _is_uint(value[0])):
        raise MalformedError("kv result: not [status, payload]")
    try:
        status = Status(value[0])
    except ValueError:
        raise MalformedError(f"kv result: unknown status {value[0]}") from None
    payload = value[1]
    if status is not Status.OK and not isinstance(payload, str):
        raise MalformedError("kv result: a refusal's payload must be its message")
    return KVResult(status, payload)


_OK_NULL = b"\x82\x00\xf6"  # [0, null]


def _ok(payload: Any) -> bytes:
    # [0, null] and [0, bytes] by hand (the same bytes as cbor2's canonical encoding)
    if payload is None:
        return _OK_NULL
    if type(payload) is bytes:
        return b"".join((b"\x82\x00", uint_head(2, len(payload)), payload))  # one copy
    return _dumps([Status.OK, payload])


def _refuse(status: Status, message: str) -> bytes:
    return _dumps([status, f"{status.name.lower()}: {message}"])


# -- the store ------------------------------------------------------------------------


@dataclass(slots=True)
class _Parsed:  # not frozen: built once per command applied, and a frozen init is slower
    session: SessionRef | None
    op: Op
    args: list[Any]


class KVStore:
    """The key-value state machine; see the module docstring."""

    def __init__(self, limits: KVLimits | None = None) -> None:
        self.limits = limits or KVLimits()
        self._data: SortedDict = SortedDict()
        self.sessions = SessionTable(self.limits.sessions)
        self._applied = AppliedIndex()
        self.refused: dict[str, int] = {}
        """Commands refused, by status name (not in snapshots: a per-replica metric)."""

    # -- the StateMachine protocol ----------------------------------------------------

    @property
    def applied_index(self) -> int:
        """The index of the last entry applied (or of the snapshot restored)."""
        return self._applied.index

    def apply(self, index: int, command: bytes) -> bytes:
        """Apply the command committed at ``index``; its encoded result. Never raises
        for bad command bytes (a ``bad_command`` or ``limit`` result)."""
        self._applied.advance(index)
        try:
            parsed = self._parse(command)
        except LimitError as exc:
            return self._count(_refuse(Status.LIMIT, str(exc)), Status.LIMIT)
        except WireError as exc:
            return self._count(_refuse(Status.BAD_COMMAND, str(exc)), Status.BAD_COMMAND)
        if parsed.op == _REGISTER:
            if parsed.session is not None:
                return self._count(
                    _refuse(Status.BAD_COMMAND, "register takes no session"), Status.BAD_COMMAND
                )
            client_id, _ = self.sessions.register(index)
            return _ok(client_id)
        session = parsed.session
        if session is None:
            if parsed.op == _CLOSE:
                return self._count(
                    _refuse(Status.BAD_COMMAND, "close needs a session"), Status.BAD_COMMAND
                )
            return self._execute(parsed)
        verdict, kept = self.sessions.check(session.client_id, session.seq, session.acked, index)
        if verdict == SessionVerdict.DUPLICATE:
            assert kept is not None
            self.refused["duplicate"] = self.refused.get("duplicate", 0) + 1
            return kept
        if verdict != SessionVerdict.APPLY:
            status = _VERDICT_STATUS[verdict]
            return self._count(
                _refuse(status, f"client {session.client_id} seq {session.seq}"), status
            )
        if parsed.op == _CLOSE:
            self.sessions.close(session.client_id)
            return _ok(None)
        result = self._execute(parsed)
        if parsed.op not in _READ_OPS:  # a retried read may run again (sessions.py)
            self.sessions.record(session.client_id, session.seq, result)
        return result

    def _count(self, result: bytes, status: Status) -> bytes:
        name = status.name.lower()
        self.refused[name] = self.refused.get(name, 0) + 1
        return result

    def query(self, op: bytes) -> bytes:
        """Answer a read-only command (get or range; its session is ignored) from the
        current state without the log: for ReadIndex / lease reads, once the applied
        index has reached the read's index. Not a state change, so no session effect."""
        try:
            parsed = self._parse(op)
        except LimitError as exc:
            return _refuse(Status.LIMIT, str(exc))
        except WireError as exc:
            return _refuse(Status.BAD_COMMAND, str(exc))
        if parsed.op not in _READ_OPS:
            return _refuse(Status.BAD_COMMAND, f"{parsed.op.name.lower()} is not a read")
        return self._execute(parsed)

    def snapshot(self) -> bytes:
        """The whole state, deterministic CBOR (see the module docstring)."""
        sessions = [
            [s.client_id, s.last_index, s.acked, [[q, r] for q, r in sorted(s.results.items())]]
            for s in self.sessions.sessions()
        ]
        return _dumps(
            [
                SNAPSHOT_VERSION,
                self._applied.index,
                self.sessions.evictions,
                [[k, v] for k, v in self._data.items()],
                sessions,
            ]
        )

    def restore(self, data: bytes) -> None:
        """Replace the state by a snapshot's; a ``WireError`` names the problem and leaves
        the state unchanged."""
        value = _loads(data, self.limits.max_snapshot_bytes, "kv snapshot")
        if not (isinstance(value, list) and len(value) == 5):
            raise MalformedError("kv snapshot: not an array of 5")
        version, applied, evictions, pairs, sessions = value
        if version != SNAPSHOT_VERSION:
            raise MalformedError(f"kv snapshot: unsupported version {version!r}")
        if not (_is_uint(applied) and _is_uint(evictions)):
            raise MalformedError("kv snapshot: applied index and evictions must be uints")
        if not isinstance(pairs, list) or not isinstance(sessions, list):
            raise MalformedError("kv snapshot: pairs and sessions must be arrays")
        data_map = SortedDict()
        prev: bytes | None = None
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise MalformedError("kv snapshot: a pair is not [key, value]")
            k, v = pair
            self._check_key(k, "kv snapshot")
            self._check_value(v, "kv snapshot")
            if prev is not None and k <= prev:
                raise MalformedError("kv snapshot: keys not in strictly increasing order")
            prev = k
            data_map[k] = v
        if len(sessions) > self.limits.sessions.max_sessions:
            raise LimitError(
                f"kv snapshot: {len(sessions)} sessions exceed max_sessions "
                f"({self.limits.sessions.max_sessions})"
            )
        loaded: list[Session] = []
        seen: set[int] = set()
        for s in sessions:
            if not (isinstance(s, list) and len(s) == 4):
                raise MalformedError("kv snapshot: a session is not [id, last, acked, results]")
            cid, last, acked, results = s
            if not (_is_uint(cid) and _is_uint(last) and _is_uint(acked)) or cid in seen:
                raise MalformedError("kv snapshot: a session's id, index or acked is invalid")
            seen.add(cid)
            if not isinstance(results, list):
                raise MalformedError("kv snapshot: a session's results are not an array")
            if len(results) > self.limits.sessions.max_results_per_session:
                raise LimitError("kv snapshot: a session keeps more results than the limit")
            kept: dict[int, bytes] = {}
            for item in results:
                if not (
                    isinstance(item, list)
                    and len(item) == 2
                    and _is_uint(item[0])
                    and item[0] > acked
                    and isinstance(item[1], bytes)
                ):
                    raise MalformedError("kv snapshot: a kept result is not [seq > acked, bytes]")
                if kept and item[0] <= max(kept):
                    raise MalformedError("kv snapshot: kept results not in increasing seq order")
                kept[item[0]] = item[1]
            loaded.append(Session(cid, last, acked, kept, sum(map(len, kept.values()))))
        self._data = data_map
        self.sessions.load(loaded, evictions)
        self._applied = AppliedIndex(applied)

    # -- direct reads (tests, the facade's local view) --------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` in the applied state (no linearizability by itself)."""
        value: bytes | None = self._data.get(key)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every pair, keys in order."""
        return list(self._data.items())

    # -- parsing and executing --------------------------------------------------------

    def _check_key(self, k: Any, what: str) -> None:
        if not isinstance(k, bytes):
            raise MalformedError(f"{what}: a key must be a byte string")
        if len(k) > self.limits.max_key_bytes:
            raise LimitError(f"{what}: key of {len(k)} bytes exceeds {self.limits.max_key_bytes}")

    def _check_value(self, v: Any, what: str) -> None:
        if not isinstance(v, bytes):
            raise MalformedError(f"{what}: a value must be a byte string")
        if len(v) > self.limits.max_value_bytes:
            raise LimitError(
                f"{what}: value of {len(v)} bytes exceeds {self.limits.max_value_bytes}"
            )

    def _parse(self, command: bytes) -> _Parsed:
        fast = self._parse_fast(command)
        if fast is not None:
            return fast
        value = _loads(command, self.limits.max_command_bytes, "kv command")
        if not (isinstance(value, list) and len(value) == 3):
            raise MalformedError("kv command: not [version, session, op]")
        version, session, op = value
        if version != COMMAND_VERSION:
            raise MalformedError(f"kv command: unsupported version {version!r}")
        ref: SessionRef | None = None
        if session is not None:
            if not (
                isinstance(session, list)
                and len(session) == 3
                and all(_is_uint(x) for x in session)
                and session[1] >= 1
            ):
                raise MalformedError("kv command: session is not [client_id, seq >= 1, acked]")
            ref = SessionRef(session[0], session[1], session[2])
        if not (isinstance(op, list) and op and _is_uint(op[0])):
            raise MalformedError("kv command: op is not an array starting with its code")
        try:
            code = Op(op[0])
        except ValueError:
            raise MalformedError(f"kv command: unknown op {op[0]}") from None
        args = op[1:]
        want = _ARITY[code]
        if len(args) != want:
            raise MalformedError(f"kv command: {code.name.lower()} takes {want} arguments")
        what = f"kv {code.name.lower()}"
        if code in (Op.GET, Op.PUT, Op.DELETE, Op.CAS):
            self._check_key(args[0], what)
        if code == Op.PUT:
            self._check_value(args[1], what)
        elif code == Op.CAS:
            for v in args[1:]:
                if v is not None:
                    self._check_value(v, what)
        elif code == Op.RANGE:
            self._check_key(args[0], what)
            if args[1] is not None:
                self._check_key(args[1], what)
            if not _is_uint(args[2]):
                raise MalformedError(f"{what}: limit must be an unsigned integer")
        return _Parsed(ref, code, args)

    def _parse_fast(self, data: bytes) -> _Parsed | None:
        """:meth:`_parse` for a well-formed command in deterministic CBOR, read by hand
        (``fastcbor``); ``None`` for anything else, which :meth:`_parse` then decodes
        with ``cbor2`` and accepts or refuses with the precise error. Accepts nothing
        that path refuses."""
        limits = self.limits
        n = len(data)
        if type(data) is not bytes or n > limits.max_command_bytes or n < 5:
            return None
        if data[0] != 0x83 or data[1] != COMMAND_VERSION:
            return None
        ref: SessionRef | None = None
        b = data[2]
        if b == 0xF6:
            pos = 3
        elif b == 0x83:
            h1 = read_head(data, 3, 0)
            if h1 is None:
                return None
            h2 = read_head(data, h1[1], 0)
            if h2 is None or h2[0] < 1:
                return None
            h3 = read_head(data, h2[1], 0)
            if h3 is None:
                return None
            ref = SessionRef(h1[0], h2[0], h3[0])
            pos = h3[1]
        else:
            return None
        if pos + 2 > n:
            return None
        b = data[pos]
        code = data[pos + 1]  # an op code below 24 is one byte of major type 0
        if b >> 5 != 4 or code > 6:
            return None
        op = _OPS[code]
        want = _ARITY_BY_CODE[code]
        if (b & 0x1F) != want + 1:
            return None
        pos += 2
        args: list[Any] = []
        for _ in range(want):
            if pos >= n:
                return None
            b = data[pos]
            if b == 0xF6:
                args.append(None)
                pos += 1
                continue
            major = b >> 5
            if major == 2:
                string = read_bytes(data, pos)
                if string is None:
                    return None
                args.append(string[0])
                pos = string[1]
            elif major == 0:
                number = read_head(data, pos, 0)
                if number is None:
                    return None
                args.append(number[0])
                pos = number[1]
            else:
                return None
        if pos != n:
            return None
        # the checks of _parse; a failing one takes the slow path for its error
        max_key = limits.max_key_bytes
        max_value = limits.max_value_bytes
        if op <= _CAS or op == _RANGE:
            k = args[0]
            if type(k) is not bytes or len(k) > max_key:
                return None
        if op == _PUT:
            v = args[1]
            if type(v) is not bytes or len(v) > max_value:
                return None
        elif op == _CAS:
            for v in args[1:]:
                if v is not None and (type(v) is not bytes or len(v) > max_value):
                    return None
        elif op == _RANGE:
            end = args[1]
            if end is not None and (type(end) is not bytes or len(end) > max_key):
                return None
            if type(args[2]) is not int:
                return None
        return _Parsed(ref, op, args)

    def _execute(self, p: _Parsed) -> bytes:
        data = self._data
        args = p.args
        if p.op == _GET:
            return _ok(data.get(args[0]))
        if p.op == _PUT:
            prev = data.get(args[0])
            data[args[0]] = args[1]
            return _ok(prev)
        if p.op == _DELETE:
            return _ok(data.pop(args[0], None))
        if p.op == _CAS:
            key, expected, new = args
            current = data.get(key)
            if current != expected:
                return _ok([False, current])
            if new is None:
                data.pop(key, None)
            else:
                data[key] = new
            return _ok([True, new])
        # RANGE
        start, end, limit = args
        cap = self.limits.max_range_items
        limit = cap if limit == 0 else min(limit, cap)
        out: list[list[bytes]] = []
        more = False
        for k in data.irange(start, end, inclusive=(True, False)):
            if len(out) == limit:
                more = True
                break
            out.append([k, data[k]])
        return _ok([out, more])
