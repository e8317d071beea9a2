"""Conformance: the WAL record codec, recovery and the KV encoding against
``spec/vectors/wal.json``.

The committed JSON file is the source of truth; the last test checks that its generator
(which builds the bytes without the project's encoders) still reproduces it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest
from vector_json import from_json, ids

from foundation_p2p.consensus import kv
from foundation_p2p.consensus import wal_format as fmt
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind, HardState, SnapshotMeta
from foundation_p2p.consensus.wal import WalStorage, segment_name
from foundation_p2p.errors import StorageError, WireError
from simulator.vfs import MemoryVfs

VECTORS_DIR = Path(__file__).resolve().parents[2] / "spec" / "vectors"
VECTORS: dict[str, Any] = json.loads((VECTORS_DIR / "wal.json").read_text("utf-8"))
assert VECTORS["format"] == 1


def _conf(value: dict[str, list[str]]) -> ConfState:
    return ConfState(
        voters=frozenset(bytes.fromhex(v) for v in value["voters"]),
        learners=frozenset(bytes.fromhex(v) for v in value["learners"]),
        voters_outgoing=frozenset(bytes.fromhex(v) for v in value["voters_outgoing"]),
    )


def expected_record(v: dict[str, Any]) -> fmt.Record:
    kind = v["type"]
    if kind == "segment_header":
        return fmt.SegmentHeader(v["segment"], v["first_index"])
    if kind == "entry":
        return Entry(v["term"], v["index"], EntryKind(v["kind"]), bytes.fromhex(v["data"]))
    if kind == "hard_state":
        vote = bytes.fromhex(v["vote"]) if v["vote"] else None
        return HardState(v["term"], vote, v["commit"])
    if kind == "snapshot":
        meta = SnapshotMeta(v["index"], v["term"], _conf(v["conf"]))
        return fmt.SnapshotMarker(meta, fmt.SnapshotMode(v["mode"]))
    if kind == "snapshot_data":
        return fmt.SnapshotData(v["index"], v["term"], bytes.fromhex(v["data"]))
    raise AssertionError(kind)


@pytest.mark.parametrize("vector", VECTORS["record"], ids=ids(VECTORS["record"]))
def test_valid_records(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    want = expected_record(vector["record"])
    assert fmt.decode_record(raw) == want
    assert fmt.encode_record(want) == raw


@pytest.mark.parametrize("vector", VECTORS["invalid_record"], ids=ids(VECTORS["invalid_record"]))
def test_invalid_records(vector: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        fmt.decode_record(bytes.fromhex(vector["hex"]))
    assert info.value.code == vector["error"]
    assert vector["message_contains"] in str(info.value)


@pytest.mark.parametrize("vector", VECTORS["segment"], ids=ids(VECTORS["segment"]))
def test_segment_recovery(vector: dict[str, Any]) -> None:
    vfs = MemoryVfs()
    f = vfs.open_append(segment_name(0), create=True)
    f.write(bytes.fromhex(vector["hex"]))
    f.sync()
    vfs.sync_dir()
    if "error_offset" in vector:
        with pytest.raises(StorageError, match=f"corrupt at offset {vector['error_offset']}:"):
            WalStorage.open(vfs)
        return
    wal = WalStorage.open(vfs)
    got = [[e.index, e.term, e.data.decode()] for e in wal.entries(1, wal.last_index() + 1)]
    assert got == vector["entries"]
    hs = vector["hard_state"]
    vote = bytes.fromhex(hs["vote"]) if hs["vote"] else None
    assert wal.initial_state()[0] == HardState(hs["term"], vote, hs["commit"])
    assert wal.report.torn_tail_bytes == vector["torn_tail_bytes"]


def _session(value: Any) -> kv.SessionRef | None:
    return None if value is None else kv.SessionRef(*value)


def test_kv_commands_match_the_encoders() -> None:
    """Each command vector is what the module's builder produces and what the store parses."""
    builders = {
        0: lambda op, s: kv.encode_get(op[1], s),
        1: lambda op, s: kv.encode_put(op[1], op[2], s),
        2: lambda op, s: kv.encode_delete(op[1], s),
        3: lambda op, s: kv.encode_cas(op[1], op[2], op[3], s),
        4: lambda op, s: kv.encode_range(op[1], op[2], op[3], s),
        5: lambda op, s: kv.encode_register(),
        6: lambda op, s: kv.encode_close(s),
    }
    for vector in VECTORS["kv"]["commands"]:
        raw = bytes.fromhex(vector["hex"])
        value = from_json(vector["value"])
        assert cbor2.loads(raw) == value
        _, session, op = value
        assert builders[op[0]](op, _session(session)) == raw, vector["name"]


def test_kv_results_decode() -> None:
    for vector in VECTORS["kv"]["results"]:
        result = kv.decode_result(bytes.fromhex(vector["hex"]))
        status, payload = from_json(vector["value"])
        assert (result.status, result.value) == (status, payload), vector["name"]


def test_kv_snapshot_restores_and_re_encodes() -> None:
    raw = bytes.fromhex(VECTORS["kv"]["snapshot"]["hex"])
    store = kv.KVStore()
    store.restore(raw)
    assert store.items() == [(b"a", b"1"), (b"b", b"2")]
    assert store.applied_index == 12
    session = store.sessions.get(8)
    assert session is not None and session.acked == 1 and list(session.results) == [2]
    assert store.snapshot() == raw


def test_generator_reproduces_the_committed_vectors() -> None:
    done = subprocess.run(
        [sys.executable, str(VECTORS_DIR / "generate_wal.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
