"""Fuzz targets of the coordination decoders (``spec/coordination.md``), in the shape of
``fuzz/targets.py``: each takes arbitrary bytes; the only allowed outcomes are "decoded"
(with the target's property) or a :class:`~foundation_p2p.errors.WireError`.

- ``coordination-command``: ``decode_command``; a decoded command re-encodes to exactly the
  input (every command has one encoding).
- ``coordination-machine``: the bytes applied as an entry to a ``CoordinationMachine``
  holding auctions in each phase and an open proposal; ``apply`` never raises, its result
  is ``[0|1, detail]`` or ``[2, code, message]``, and a snapshot restored into a fresh
  machine gives the same snapshot.
- ``coordination-snapshot``: ``CoordinationMachine.restore``; a failed restore leaves the
  machine as it was, a successful one is stable (restoring its snapshot again gives the
  same bytes).

The coordinator registers ``COORDINATION_TARGETS`` in ``fuzz/targets.py`` and seeds them
with :func:`coordination_seeds`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.wire import command_to_wire, decode_command
from foundation_p2p.errors import WireError
from foundation_p2p.wire import cbor

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "coordination.json"


@cache
def _vectors() -> dict[str, list[dict[str, object]]]:
    data: dict[str, list[dict[str, object]]] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def _logs() -> list[list[bytes]]:
    v = _vectors()
    return [[bytes.fromhex(h) for h in e["log"]]  # type: ignore[attr-defined]
            for e in v["auction"] + v["vote"] + v.get("negotiation", [])]


def fuzz_coordination_command(data: bytes) -> None:
    """``decode_command``: a decoded command re-encodes to exactly the input."""
    try:
        cmd = decode_command(data)
    except WireError:
        return
    assert cbor.encode(command_to_wire(cmd)) == data, "command does not re-encode"


@cache
def _loaded_snapshot() -> bytes:
    """A machine with every vector auction log applied except its last entries (so
    auctions sit in the commit, reveal and done phases) and an open proposal."""
    m = CoordinationMachine()
    index = 0
    for n, log in enumerate(_logs()):
        for cmd in log[: len(log) - (n % 3)]:
            index += 1
            m.apply(index, cmd)
    return m.snapshot()


def fuzz_coordination_machine(data: bytes) -> None:
    """``apply`` never raises; its result is well-formed; snapshots survive restore."""
    m = CoordinationMachine()
    m.restore(_loaded_snapshot())
    out = cbor.decode(m.apply(10_000, data))
    assert type(out) is list and out and out[0] in (0, 1, 2), f"bad result {out!r}"
    assert len(out) == (3 if out[0] == 2 else 2), f"bad result {out!r}"
    snap = m.snapshot()
    fresh = CoordinationMachine()
    fresh.restore(snap)
    assert fresh.snapshot() == snap, "snapshot not stable across restore"


def fuzz_coordination_snapshot(data: bytes) -> None:
    """``restore``: all-or-nothing, and a restored state's snapshot is a fixed point."""
    m = CoordinationMachine()
    m.restore(_loaded_snapshot())
    try:
        m.restore(data)
    except WireError:
        assert m.snapshot() == _loaded_snapshot(), "a failed restore changed the state"
        return
    snap = m.snapshot()
    again = CoordinationMachine()
    again.restore(snap)
    assert again.snapshot() == snap, "restored snapshot is not stable"


COORDINATION_TARGETS: dict[str, Callable[[bytes], None]] = {
    "coordination-command": fuzz_coordination_command,
    "coordination-machine": fuzz_coordination_machine,
    "coordination-snapshot": fuzz_coordination_snapshot,
}


def coordination_seeds(target: str) -> list[bytes]:
    """Seed inputs for ``target`` from ``spec/vectors/coordination.json``."""
    v = _vectors()
    if target in ("coordination-command", "coordination-machine"):
        hexes = [str(e["hex"]) for e in v["command"] + v["invalid_command"]]
        return [bytes.fromhex(h) for h in hexes] + [c for log in _logs() for c in log]
    if target == "coordination-snapshot":
        out = [_loaded_snapshot()]
        for log in _logs():
            m = CoordinationMachine()
            for i, cmd in enumerate(log, 1):
                m.apply(i, cmd)
            out.append(m.snapshot())
            out.append(m.auctions.snapshot())
        return out
    raise KeyError(target)
