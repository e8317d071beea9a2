"""Conformance: the registry code against ``spec/vectors/registry.json`` and the CDDL.

The committed JSON file is the source of truth; the generator is run only with ``--check``
(it must reproduce the file). Valid messages and states are also validated against
``spec/registry.cddl`` by ``pycddl`` (an independent validator).
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest
from vector_json import from_json, ids

from foundation_p2p.errors import LimitError, MalformedError, WireError
from foundation_p2p.registry.crdt import DotContext, bucket_of, item_hash, retract_delta
from foundation_p2p.registry.wire import (
    Delta,
    SyncCheck,
    SyncRemoved,
    SyncReply,
    SyncRequest,
    context_from_wire,
    context_to_wire,
    decode_message_bytes,
    encode_message,
    state_from_wire,
    state_to_wire,
)
from foundation_p2p.wire import cbor

SPEC = Path(__file__).resolve().parents[2] / "spec"
VECTORS: dict[str, Any] = json.loads((SPEC / "vectors" / "registry.json").read_text("utf-8"))
assert VECTORS["format"] == 1
CDDL = (SPEC / "registry.cddl").read_text(encoding="utf-8")
ERRORS: dict[str, type[WireError]] = {"malformed": MalformedError, "limit": LimitError}


@cache
def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"cddl-vector-root = {rule}\n{CDDL}")


def test_the_generator_reproduces_the_committed_file() -> None:
    done = subprocess.run(
        [sys.executable, str(SPEC / "vectors" / "generate_registry.py"), "--check"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("entry", VECTORS["buckets"], ids=ids(VECTORS["buckets"]))
def test_buckets_and_item_hashes(entry: dict[str, Any]) -> None:
    dot = tuple(from_json(entry["dot"]))
    assert bucket_of(entry["text"]) == entry["bucket"]
    assert entry["bucket"] // 32 == entry["group"]
    assert item_hash(entry["text"], dot) == entry["item_hash"]  # type: ignore[arg-type]


@pytest.mark.parametrize("entry", VECTORS["context"], ids=ids(VECTORS["context"]))
def test_context_compaction(entry: dict[str, Any]) -> None:
    dots = [tuple(d) for d in from_json(entry["dots"])]
    ctx = DotContext(cloud=dots)  # type: ignore[arg-type]
    assert cbor.encode(context_to_wire(ctx)).hex() == entry["hex"]
    decoded = context_from_wire(cbor.decode(bytes.fromhex(entry["hex"])))
    assert decoded == ctx and sorted(decoded.dots()) == sorted(dots)
    schema(entry["cddl"]).validate_cbor(bytes.fromhex(entry["hex"]))


@pytest.mark.parametrize("entry", VECTORS["state"], ids=ids(VECTORS["state"]))
def test_states_and_digests(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    state = state_from_wire(cbor.decode(data))
    assert cbor.encode(state_to_wire(state)) == data
    assert state.group_digests() == entry["group_digests"]
    schema(entry["cddl"]).validate_cbor(data)


@pytest.mark.parametrize("entry", VECTORS["join"], ids=ids(VECTORS["join"]))
def test_join(entry: dict[str, Any]) -> None:
    a = state_from_wire(cbor.decode(bytes.fromhex(entry["a"])))
    b = state_from_wire(cbor.decode(bytes.fromhex(entry["b"])))
    for left, right in ((a, b), (b, a)):
        out = left.copy()
        out.join(right)
        assert cbor.encode(state_to_wire(out)).hex() == entry["joined"]


KINDS = {"delta": Delta, "sync-request": SyncRequest, "sync-reply": SyncReply,
         "sync-check": SyncCheck, "sync-removed": SyncRemoved}


@pytest.mark.parametrize("entry", VECTORS["message"], ids=ids(VECTORS["message"]))
def test_valid_message(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    msg = decode_message_bytes(data)
    assert type(msg) is KINDS[entry["cddl"]]
    assert cbor2.loads(data) == from_json(entry["value"])
    assert cbor.encode(encode_message(msg)) == data
    schema(entry["cddl"]).validate_cbor(data)


def test_retract_delta_builds_the_retract_vector() -> None:
    """``retract_delta`` (what ``RegistryCore`` ships after losing a conflict) encodes as
    the spec's vector: the winner's entry and dot, plus the losing dot."""
    (vector,) = (v for v in VECTORS["message"] if v["name"].startswith("delta: retract"))
    data = bytes.fromhex(vector["hex"])
    msg = decode_message_bytes(data)
    assert isinstance(msg, Delta)
    ((win_dot, name),) = msg.state.dot_names.items()
    winner = msg.state.entries[name][win_dot]
    (loser,) = (d for d in msg.state.ctx.dots() if d != win_dot)
    assert loser[0] != win_dot[0]  # the loser's writer ships another writer's entry
    built = retract_delta([loser], [(win_dot, winner)])
    assert cbor.encode(encode_message(Delta(built))) == data


@pytest.mark.parametrize(
    "entry", VECTORS["invalid_message"], ids=ids(VECTORS["invalid_message"])
)
def test_invalid_message(entry: dict[str, Any]) -> None:
    error = ERRORS[entry["error"]]
    with pytest.raises(error) as info:
        decode_message_bytes(bytes.fromhex(entry["hex"]))
    assert type(info.value) is error
