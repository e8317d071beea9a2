"""Fuzz targets of the registry decoders (``spec/registry.md``), in the shape of
``fuzz/targets.py``: each takes arbitrary bytes; the only allowed outcomes are "decoded"
(with the target's property) or a :class:`~foundation_p2p.errors.WireError`.

- ``registry-message``: ``decode_message_bytes``; a decoded message re-encodes to exactly
  the input (every message has one encoding).
- ``registry-state``: ``state_from_wire`` of the decoded CBOR; a decoded state re-encodes
  byte-exact, joining it with itself changes nothing, and every live dot is in its context.
- ``registry-core``: the decoded CBOR handed to ``RegistryCore.handle_message`` of a replica
  holding a few entries (as the messenger would); only a ``WireError`` may escape, and the
  replica's invariants hold afterwards (live dots in the context, indexes consistent).

``fuzz/targets.py`` lists these targets in its ``TARGETS`` and seeds them with
:func:`registry_seeds` first.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import cbor2

from foundation_p2p.clock import Now
from foundation_p2p.errors import WireError
from foundation_p2p.registry.core import RegistryCore
from foundation_p2p.registry.crdt import RegistryState, bucket_of, item_hash
from foundation_p2p.registry.wire import (
    decode_message_bytes,
    encode_message,
    state_from_wire,
    state_to_wire,
)
from foundation_p2p.wire import cbor

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "registry.json"

_PEER = bytes(range(0x10, 0x20))
_NOW = Now(1.0, 1_790_000_000.0)


def fuzz_registry_message(data: bytes) -> None:
    """``decode_message_bytes``: a decoded message re-encodes to exactly the input."""
    try:
        msg = decode_message_bytes(data)
    except WireError:
        return
    assert cbor.encode(encode_message(msg)) == data, "message does not re-encode"


def check_state(state: RegistryState) -> None:
    """The invariants of a replica: live dots in the context, and every index agreeing."""
    buckets = [0] * len(state.buckets)
    count = 0
    for name, slot in state.entries.items():
        assert slot, f"empty slot for {name!r}"
        assert name in state.names, f"{name!r} missing from the sorted index"
        for dot, entry in slot.items():
            count += 1
            assert entry.name == name, "entry filed under another name"
            assert state.ctx.contains(dot), "live dot outside the context"
            assert state.dot_names.get(dot) == name, "dot index disagrees"
            buckets[bucket_of(name)] ^= item_hash(name, dot)
    assert count == len(state.dot_names), "dot index has extra dots"
    assert len(state.names) == len(state.entries), "sorted index has extra names"
    assert buckets == state.buckets, "bucket digests disagree with the entries"


def fuzz_registry_state(data: bytes) -> None:
    """``state_from_wire``: round trip, idempotent join, invariants."""
    try:
        state = state_from_wire(cbor.decode(data))
    except WireError:
        return
    assert cbor.encode(state_to_wire(state)) == data, "state does not re-encode"
    check_state(state)
    again = state.copy()
    again.join(state)
    assert again == state, "join with itself changed the state"


def _replica() -> RegistryCore:
    core = RegistryCore(bytes(range(0x30, 0x40)), rng=random.Random(0))
    core.set_peers([_PEER])
    core.register(_NOW, "svc/web", {"port": 80})
    core.register(_NOW, "spec", "x", owner=None)
    core.register(_NOW, "gone", 1)
    core.unregister(_NOW, "gone")
    core.take_messages()
    return core


def fuzz_registry_core(data: bytes) -> None:
    """``RegistryCore.handle_message`` on any decoded CBOR: WireError or a valid replica."""
    try:
        value = cbor2.loads(data)
    except Exception:  # not CBOR at all: the messenger would have refused it
        return
    core = _replica()
    try:
        core.handle_message(_NOW, _PEER, value)
    except WireError:
        return
    check_state(core.state)
    for _peer, msg in core.take_messages():
        fuzz_registry_message(cbor.encode(msg))


REGISTRY_TARGETS: dict[str, Callable[[bytes], None]] = {
    "registry-message": fuzz_registry_message,
    "registry-state": fuzz_registry_state,
    "registry-core": fuzz_registry_core,
}


def registry_seeds(target: str) -> list[bytes]:
    """Seed inputs for ``target`` from ``spec/vectors/registry.json``."""
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    if target in ("registry-message", "registry-core"):
        hexes = [e["hex"] for e in vectors["message"]]
        hexes += [e["hex"] for e in vectors["invalid_message"]]
    elif target == "registry-state":
        hexes = [e["hex"] for e in vectors["state"]]
        hexes += [h for e in vectors["join"] for h in (e["a"], e["b"], e["joined"])]
    else:
        raise KeyError(target)
    return [bytes.fromhex(h) for h in hexes]
