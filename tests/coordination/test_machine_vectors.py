"""The composite state machine against ``spec/vectors/coordination.json`` ('envelope',
'composite_snapshot') and ``spec/coordination.cddl`` (checked by ``pycddl``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pycddl
import pytest

from foundation_p2p.consensus import kv
from foundation_p2p.consensus.machines import MachineSet, decode_envelope, envelope, is_envelope

SPEC = Path(__file__).resolve().parents[2] / "spec"
VECTORS: dict[str, Any] = json.loads((SPEC / "vectors" / "coordination.json").read_text("utf-8"))
CDDL = (SPEC / "coordination.cddl").read_text(encoding="utf-8")


def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"cddl-vector-root = {rule}\n{CDDL}")


@pytest.mark.parametrize("entry", VECTORS["envelope"], ids=lambda e: e["name"])
def test_envelopes(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    command = bytes.fromhex(entry["command"])
    if entry["machine_id"] == 0:
        assert not is_envelope(data)
        assert kv.KVStore().apply(1, data) == MachineSet().apply(1, data)
        return
    assert envelope(entry["machine_id"], command) == data
    assert decode_envelope(data) == (entry["machine_id"], command)
    schema(entry["cddl"]).validate_cbor(data)
    with pytest.raises(pycddl.ValidationError):
        schema(entry["cddl"]).validate_cbor(kv.encode_put(b"k", b"v"))


@pytest.mark.parametrize("entry", VECTORS["composite_snapshot"], ids=lambda e: e["name"])
def test_composite_snapshots(entry: dict[str, Any]) -> None:
    m = MachineSet()
    log = [bytes.fromhex(h) for h in entry["log"]]
    m.apply(1, log[0])
    assert m.snapshot().hex() == entry["bare_kv_before_open"]
    m.apply(2, log[1])
    snap = m.snapshot()
    assert snap.hex() == entry["hex"]
    schema(entry["cddl"]).validate_cbor(snap)
    other = MachineSet()
    other.restore(snap)
    assert other.snapshot() == snap
