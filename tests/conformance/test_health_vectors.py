"""spec/vectors/health.json against the code (``foundation_p2p.health``) and
``spec/health.cddl``: valid summaries decode to their fields and re-encode byte-exact,
also inside frame 49; invalid ones fail with their error code; the generator reproduces
the committed file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pycddl
import pytest
from vector_json import from_json, ids

from foundation_p2p.errors import WireError
from foundation_p2p.health.gossip import SummaryFrame
from foundation_p2p.health.summary import decode_summary, encode_summary
from foundation_p2p.wire.frames import decode_frames, encode_frames

SPEC = Path(__file__).resolve().parents[2] / "spec"
VECTORS = json.loads((SPEC / "vectors" / "health.json").read_text(encoding="utf-8"))
CDDL = (SPEC / "health.cddl").read_text(encoding="utf-8")


def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"cddl-vector-root = {rule}\n{CDDL}")


@pytest.mark.parametrize("entry", VECTORS["summary"], ids=ids(VECTORS["summary"]))
def test_valid_summary(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    s = decode_summary(data)
    fields = dict(entry["fields"])
    assert s.node_id.hex() == fields.pop("node_id")
    assert (s.epoch, s.version) == (fields.pop("epoch"), fields.pop("version"))
    assert s.figures() == fields
    assert encode_summary(s) == data
    assert s.to_cbor() == from_json(entry["value"])
    schema(entry["cddl"]).validate_cbor(data)
    frame_bytes = bytes.fromhex(entry["frame_hex"])
    schema("health-summary-frame").validate_cbor(frame_bytes)
    decoded = decode_frames(b"\x81" + frame_bytes, check_canonical=True)
    assert decoded.frames == [SummaryFrame(s)]
    assert encode_frames([SummaryFrame(s)]) == b"\x81" + frame_bytes


@pytest.mark.parametrize(
    "entry", VECTORS["invalid_summary"], ids=ids(VECTORS["invalid_summary"])
)
def test_invalid_summary(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    with pytest.raises(WireError) as info:
        decode_summary(data)
    assert info.value.code == entry["error"]


@pytest.mark.parametrize(
    "entry",
    [e for e in VECTORS["invalid_summary"] if "bound" in e["name"] or "format" in e["name"]],
    ids=lambda e: e["name"],
)
def test_cddl_refuses_out_of_bound_summaries(entry: dict[str, Any]) -> None:
    with pytest.raises(pycddl.ValidationError):
        schema("health-summary").validate_cbor(bytes.fromhex(entry["hex"]))


def test_generator_reproduces_the_committed_vectors() -> None:
    done = subprocess.run(
        [sys.executable, str(SPEC / "vectors" / "generate_health.py"), "--check"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
