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


@pytest.mark.parametrize("entry", VECTORS["negotiation"], ids=lambda e: e["name"])
def test_negotiation_logs(entry: dict[str, Any]) -> None:
    """'negotiation': each entry's status or refusal code, then the outcome (CDDL
    ``negotiation-outcome``), identical after a snapshot round trip."""
    from foundation_p2p.coordination.machine import CoordinationMachine
    from foundation_p2p.wire import cbor

    m = CoordinationMachine()
    nid = None
    for index, (hex_cmd, expect) in enumerate(zip(entry["log"], entry["expect"], strict=True),
                                              1):
        data = bytes.fromhex(hex_cmd)
        out = m.apply(index, data)
        schema("result").validate_cbor(out)
        value = cbor.decode(out)
        assert (value[0] if value[0] < 2 else value[1]) == expect, (index, value)
        cmd = cbor.decode(data)
        if cmd[0] == 9:
            nid = cmd[1]
    assert nid is not None
    outcome = m.negotiations.outcome(nid)
    assert outcome is not None
    wire = outcome.to_wire()
    assert wire == _plain(entry["outcome"])
    schema("negotiation-outcome").validate_cbor(cbor.encode(wire))
    other = CoordinationMachine()
    other.restore(m.snapshot())
    assert other.negotiations.outcome(nid) == outcome


def _plain(value: Any) -> Any:
    """The value of the vectors' JSON form (byte strings are ``{"bytes": hex}``)."""
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return bytes.fromhex(value["bytes"])
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
