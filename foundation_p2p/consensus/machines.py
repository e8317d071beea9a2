"""One Raft group, several state machines: the KV store plus enveloped machines.

:class:`MachineSet` is the state machine a node's Raft member runs (``spec/consensus.md``,
"The composite state machine"). The key-value store stays the default machine: a command
that is not an envelope goes to :class:`~foundation_p2p.consensus.kv.KVStore` byte for byte
as before (KV commands, results, snapshots and their vectors are unchanged). Any other
machine's command travels in an *envelope*, the deterministic CBOR array

    ``[machine_id, command]``  (machine_id a uint >= 1, command a byte string)

whose first byte is always ``0x82`` (an array of two). A KV command is an array of three
(``0x83``), so no envelope is ever a valid KV command and no KV command is ever routed
elsewhere. Machine 1 is the coordination machine
(:class:`~foundation_p2p.coordination.machine.CoordinationMachine`).

- ``apply``: an envelope's command goes to its machine, whose result is the entry's result;
  an envelope naming no registered machine, or malformed, gets the KV refusal
  ``[4, "bad_command: envelope: ..."]`` and changes nothing but the applied index. After every
  entry, each other machine with an ``observe(index)`` method is told the index (the
  coordination machine counts vote deadlines in log entries, KV entries included).
  Listeners (:meth:`MachineSet.add_listener`) see every routed command and its result.
- ``query``: an enveloped query goes to its machine's ``query``; others to the KV store.
- ``snapshot``: while no other machine has applied a command, the bare KV snapshot;
  otherwise ``[2, kv_snapshot, [[machine_id, snapshot]...]]`` (ids ascending; both inner
  snapshots as byte strings). ``restore`` takes either; a bare KV snapshot resets the other
  machines to their initial state. A bad snapshot raises ``WireError`` and changes nothing.

It is a :class:`KVStore` subclass so that code reading the KV state directly
(``state_machine.get(key)``) keeps working. Equivalent lower-level calls: ``KVStore.apply``
/ ``KVStore.query`` for bare commands, ``machine.apply(index, inner)`` / ``machine.query``
for enveloped ones, and :func:`envelope` / :func:`decode_envelope` to build and read them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import cbor2

from foundation_p2p.consensus.kv import KVLimits, KVStore, Status
from foundation_p2p.consensus.state_machine import StateMachine
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError
from foundation_p2p.wire import cbor

log = logging.getLogger("foundation_p2p.consensus")

ENVELOPE_HEAD = 0x82
"""The first byte of every envelope (a CBOR array of two)."""
COMPOSITE_SNAPSHOT_VERSION = 2
MACHINE_COORDINATION = 1
"""The machine id of the coordination machine."""
MAX_MACHINE_ID = 255
MAX_ENVELOPE_BYTES = 1024 * 1024 + 8192
MAX_LISTENERS = 16

Listener = Callable[[int, bytes, bytes], None]
"""``listener(index, command, result)`` for a routed command (the envelope's inner bytes)."""


def envelope(machine_id: int, command: bytes) -> bytes:
    """The Raft command carrying ``command`` to machine ``machine_id`` (1..255)."""
    if type(machine_id) is not int or not 1 <= machine_id <= MAX_MACHINE_ID:
        raise ConfigError(f"machine id must be an integer in 1..{MAX_MACHINE_ID}, "
                          f"not {machine_id!r}")
    if not isinstance(command, bytes):
        raise ConfigError("an enveloped command must be bytes")
    return cbor.encode([machine_id, command])


def coordination_envelope(command: bytes) -> bytes:
    """``envelope(MACHINE_COORDINATION, command)``: a coordination command (from
    ``coordination.wire.encode_command``) ready for ``consensus.propose``."""
    return envelope(MACHINE_COORDINATION, command)


def is_envelope(data: bytes) -> bool:
    """True if ``data`` is routed as an envelope (its first byte is ``0x82``)."""
    return len(data) > 0 and data[0] == ENVELOPE_HEAD


def decode_envelope(data: bytes) -> tuple[int, bytes]:
    """``(machine_id, command)`` of an envelope; a ``WireError`` names what is wrong."""
    if not is_envelope(data):
        raise MalformedError("envelope: not a CBOR array of two")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise LimitError(f"envelope: {len(data)} bytes exceed {MAX_ENVELOPE_BYTES}")
    try:
        value = cbor2.loads(data, max_depth=2, allow_indefinite=False)
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # cbor2 raises many types: all mean "not an envelope"
        raise MalformedError(f"envelope: not well-formed CBOR: {type(exc).__name__}") from None
    if again != data:
        raise MalformedError("envelope: not deterministic CBOR (or trailing bytes)")
    if not (isinstance(value, list) and len(value) == 2):
        raise MalformedError("envelope: not [machine_id, command]")
    machine_id, command = value
    if type(machine_id) is not int or not 1 <= machine_id <= MAX_MACHINE_ID:
        raise MalformedError(f"envelope: machine id must be 1..{MAX_MACHINE_ID}")
    if type(command) is not bytes:
        raise MalformedError("envelope: the command must be a byte string")
    return machine_id, command


def _default_factories() -> dict[int, Callable[[], StateMachine]]:
    from foundation_p2p.coordination.machine import CoordinationMachine

    return {MACHINE_COORDINATION: CoordinationMachine}


def _refusal(message: str) -> bytes:
    return cbor.encode([int(Status.BAD_COMMAND), f"bad_command: envelope: {message}"])


class MachineSet(KVStore):
    """The KV store plus enveloped machines behind one ``StateMachine``; see the module
    docstring."""

    def __init__(
        self,
        factories: Mapping[int, Callable[[], StateMachine]] | None = None,
        *,
        limits: KVLimits | None = None,
    ) -> None:
        super().__init__(limits)
        chosen = dict(factories) if factories is not None else _default_factories()
        for mid in chosen:
            if type(mid) is not int or not 1 <= mid <= MAX_MACHINE_ID:
                raise ConfigError(f"MachineSet: machine id {mid!r} is not in 1..{MAX_MACHINE_ID}")
        self._factories = dict(sorted(chosen.items()))
        self.machines: dict[int, StateMachine] = {m: f() for m, f in self._factories.items()}
        """The other machines by id (the KV store is ``self``); fixed at construction
        (``restore`` changes their states, never the objects)."""
        self._observers: tuple[tuple[int, Callable[[int], None]], ...] = tuple(
            (mid, m.observe) for mid, m in self.machines.items()  # type: ignore[attr-defined]
            if getattr(m, "observe", None) is not None
        )
        """``(machine_id, observe)`` of the machines that have one, looked up once."""
        self._listeners: list[tuple[int, Listener]] = []

    def machine(self, machine_id: int) -> StateMachine:
        """The machine registered as ``machine_id`` (``ConfigError`` if none)."""
        m = self.machines.get(machine_id)
        if m is None:
            raise ConfigError(f"no state machine {machine_id} in this group")
        return m

    def add_listener(self, machine_id: int, listener: Listener) -> Callable[[], None]:
        """Call ``listener(index, command, result)`` after each command applied to
        ``machine_id``; returns the function that removes it. At most 16 listeners
        (``ConfigError`` beyond). A listener must not raise (what it raises is logged and
        counted as ``refused["listener_error"]``, the apply itself stands)."""
        self.machine(machine_id)
        if len(self._listeners) >= MAX_LISTENERS:
            raise ConfigError(f"MachineSet: at most {MAX_LISTENERS} listeners")
        item = (machine_id, listener)
        self._listeners.append(item)

        def remove() -> None:
            if item in self._listeners:
                self._listeners.remove(item)

        return remove

    # -- the StateMachine protocol ----------------------------------------------------

    def apply(self, index: int, command: bytes) -> bytes:
        """Apply the entry at ``index``: to the KV store, or to the machine its envelope
        names; never raises for any bytes."""
        if not is_envelope(command):
            result = super().apply(index, command)
            self._observe(index, None)
            return result
        self._applied.advance(index)
        try:
            machine_id, inner = decode_envelope(command)
        except WireError as exc:
            self.refused["bad_envelope"] = self.refused.get("bad_envelope", 0) + 1
            self._observe(index, None)
            return _refusal(str(exc).removeprefix("envelope: "))
        target = self.machines.get(machine_id)
        if target is None:
            self.refused["bad_envelope"] = self.refused.get("bad_envelope", 0) + 1
            self._observe(index, None)
            return _refusal(f"no state machine {machine_id}")
        self._observe(index, machine_id)
        result = target.apply(index, inner)
        for mid, listener in list(self._listeners):
            if mid == machine_id:
                try:
                    listener(index, inner, result)
                except Exception:
                    self.refused["listener_error"] = self.refused.get("listener_error", 0) + 1
                    log.exception("state machine listener failed at entry %d", index)
        return result

    def _observe(self, index: int, skip: int | None) -> None:
        for mid, observe in self._observers:
            if mid != skip:
                observe(index)

    def query(self, op: bytes) -> bytes:
        """Answer a read-only query: an enveloped one by its machine's ``query``, any
        other by the KV store."""
        if not is_envelope(op):
            return super().query(op)
        try:
            machine_id, inner = decode_envelope(op)
        except WireError as exc:
            return _refusal(str(exc).removeprefix("envelope: "))
        target = self.machines.get(machine_id)
        query = getattr(target, "query", None)
        if query is None:
            return _refusal(f"state machine {machine_id} answers no queries")
        result: bytes = query(inner)
        return result

    def snapshot(self) -> bytes:
        """The bare KV snapshot while no other machine has state, else
        ``[2, kv_snapshot, [[machine_id, snapshot]...]]``."""
        kv_snap = super().snapshot()
        if all(getattr(m, "applied_index", 0) == 0 for m in self.machines.values()):
            return kv_snap
        return cbor.encode([COMPOSITE_SNAPSHOT_VERSION, kv_snap,
                            [[mid, m.snapshot()] for mid, m in self.machines.items()]])

    def restore(self, data: bytes) -> None:
        """Replace every machine's state by a snapshot's (bare KV or composite); a
        ``WireError`` names the problem and leaves every state unchanged."""
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise MalformedError("snapshot: empty or not bytes")
        if data[0] != 0x83:  # not [2, kv, machines]: a bare KV snapshot (or garbage)
            fresh = {mid: f().snapshot() for mid, f in self._factories.items()}
            self._restore_all(bytes(data), fresh)
            return
        value = _load_composite(bytes(data), self.limits.max_snapshot_bytes)
        _, kv_snap, items = value
        parts: dict[int, bytes] = {}
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and type(item[0]) is int
                    and type(item[1]) is bytes):
                raise MalformedError("composite snapshot: an item is not [machine_id, bytes]")
            if item[0] not in self._factories:
                raise MalformedError(f"composite snapshot: no state machine {item[0]} here")
            if parts and item[0] <= max(parts):
                raise MalformedError("composite snapshot: machine ids not ascending")
            parts[item[0]] = item[1]
        for mid, f in self._factories.items():
            if mid not in parts:
                parts[mid] = f().snapshot()
        self._restore_all(kv_snap, parts)

    def _restore_all(self, kv_snap: bytes, parts: dict[int, bytes]) -> None:
        for mid, snap in parts.items():  # a trial on fresh machines first: all or nothing
            self._factories[mid]().restore(snap)
        super().restore(kv_snap)  # checks everything before changing anything
        for mid, snap in parts.items():
            self.machines[mid].restore(snap)


def _load_composite(data: bytes, max_bytes: int) -> list[Any]:
    if len(data) > max_bytes:
        raise LimitError(f"composite snapshot: {len(data)} bytes exceed {max_bytes}")
    try:
        value = cbor2.loads(data, max_depth=4, allow_indefinite=False)
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # cbor2 raises many types: all mean "not a snapshot"
        raise MalformedError(
            f"composite snapshot: not well-formed CBOR: {type(exc).__name__}") from None
    if again != data:
        raise MalformedError("composite snapshot: not deterministic CBOR (or trailing bytes)")
    if not (isinstance(value, list) and len(value) == 3
            and value[0] == COMPOSITE_SNAPSHOT_VERSION and type(value[1]) is bytes
            and isinstance(value[2], list)):
        raise MalformedError("composite snapshot: not [2, kv snapshot, [[id, bytes]...]]")
    return value
