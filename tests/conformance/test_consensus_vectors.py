"""Conformance: the Raft message codec against ``spec/vectors/consensus.json`` and the CDDL.

The committed JSON file is the source of truth; nothing here regenerates it except the
``--check`` run, which proves the file is what its generator writes. Every valid message
is also validated against ``spec/consensus.cddl`` by ``pycddl`` (an independent validator),
under its own rule and under ``raft-message``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pycddl
import pytest
from vector_json import ids

from foundation_p2p.consensus.confchange import (
    ConfChange,
    ConfChangeOp,
    decode_conf_change,
    encode_conf_change,
)
from foundation_p2p.consensus.messages import (
    Message,
    MessageType,
    decode_message,
    encode_message,
)
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind, SnapshotMeta
from foundation_p2p.errors import WireError

SPEC = Path(__file__).resolve().parents[2] / "spec"
VECTORS: dict[str, Any] = json.loads((SPEC / "vectors" / "consensus.json").read_text("utf-8"))
assert VECTORS["format"] == 1
CDDL = (SPEC / "consensus.cddl").read_text(encoding="utf-8")


@cache
def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"cddl-vector-root = {rule}\n{CDDL}")


def message_of(v: dict[str, Any]) -> Message:
    """The Message a vector's JSON fields describe (built without the decoder)."""
    f = v["fields"]
    m = Message(
        MessageType[v["type"]],
        to=bytes.fromhex(v["to"]),
        sender=bytes.fromhex(v["from"]),
        term=v["term"],
    )
    for name in ("log_term", "index", "commit", "reject", "reject_hint"):
        if name in f:
            setattr(m, name, f[name])
    if "context" in f:
        m.context = bytes.fromhex(f["context"])
    if "entries" in f:
        m.entries = [
            Entry(e["term"], e["index"], EntryKind(e["kind"]), bytes.fromhex(e["data"]))
            for e in f["entries"]
        ]
    if "snapshot" in f:
        s = f["snapshot"]
        m.snapshot = SnapshotMeta(
            s["index"],
            s["term"],
            ConfState(
                voters=frozenset(bytes.fromhex(x) for x in s["voters"]),
                learners=frozenset(bytes.fromhex(x) for x in s["learners"]),
                voters_outgoing=frozenset(bytes.fromhex(x) for x in s["voters_outgoing"]),
            ),
        )
    if "offset" in f:
        m.snap_offset = f["offset"]
    if "total" in f:
        m.snap_total = f["total"]
    if "data" in f:
        m.snap_data = bytes.fromhex(f["data"])
    return m


def test_one_vector_per_wire_message_type() -> None:
    wire_types = {t.name for t in MessageType if t.value < 32}
    assert {v["type"] for v in VECTORS["message"]} == wire_types


@pytest.mark.parametrize("vector", VECTORS["message"], ids=ids(VECTORS["message"]))
def test_valid_message_decodes_and_encodes_exactly(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    expected = message_of(vector)
    assert decode_message(data) == expected
    assert encode_message(expected) == data


@pytest.mark.parametrize("vector", VECTORS["message"], ids=ids(VECTORS["message"]))
def test_valid_message_matches_the_cddl(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    schema(vector["cddl"]).validate_cbor(data)
    schema("raft-message").validate_cbor(data)


@pytest.mark.parametrize(
    "vector", VECTORS["invalid_message"], ids=ids(VECTORS["invalid_message"])
)
def test_invalid_message_is_refused_with_its_error(vector: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        decode_message(bytes.fromhex(vector["hex"]))
    assert info.value.code == vector["error"], str(info.value)


@pytest.mark.parametrize("vector", VECTORS["conf_change"], ids=ids(VECTORS["conf_change"]))
def test_conf_change_data(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    cc = ConfChange(tuple((ConfChangeOp(op), bytes.fromhex(n)) for op, n in vector["ops"]))
    assert decode_conf_change(data) == cc
    assert encode_conf_change(cc) == data
    schema("conf-change").validate_cbor(data)


def test_generator_reproduces_the_committed_vectors() -> None:
    done = subprocess.run(
        [sys.executable, str(SPEC / "vectors" / "generate_consensus.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
