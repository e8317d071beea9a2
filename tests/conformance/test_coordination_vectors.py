"""Conformance: the coordination code against ``spec/vectors/coordination.json`` and the CDDL.

The committed JSON file is the source of truth; the generator is run only with ``--check``.
Valid commands, results and outcomes are also validated against ``spec/coordination.cddl``
by ``pycddl`` (an independent validator).
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
from vector_json import from_json, ids

from foundation_p2p.coordination.agents import AgentRecord
from foundation_p2p.coordination.commitments import (
    SealedBid,
    bind_signed_bytes,
    commit_signed_bytes,
    commitment_hash,
    move_signed_bytes,
    vote_signed_bytes,
)
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.wire import command_to_wire, decode_command
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.errors import LimitError, MalformedError, WireError
from foundation_p2p.wire import cbor

SPEC = Path(__file__).resolve().parents[2] / "spec"
VECTORS: dict[str, Any] = json.loads((SPEC / "vectors" / "coordination.json").read_text("utf-8"))
assert VECTORS["format"] == 1
CDDL = (SPEC / "coordination.cddl").read_text(encoding="utf-8")
ERRORS: dict[str, type[WireError]] = {"malformed": MalformedError, "limit": LimitError}


@cache
def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"cddl-vector-root = {rule}\n{CDDL}")


def test_the_generator_reproduces_the_committed_file() -> None:
    done = subprocess.run(
        [sys.executable, str(SPEC / "vectors" / "generate_coordination.py"), "--check"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("entry", VECTORS["commitment"], ids=ids(VECTORS["commitment"]))
def test_commitments(entry: dict[str, Any]) -> None:
    got = commitment_hash(bytes.fromhex(entry["auction_id"]), bytes.fromhex(entry["bidder"]),
                          entry["amount"], bytes.fromhex(entry["nonce"]))
    assert got.hex() == entry["commitment"]


@pytest.mark.parametrize("entry", VECTORS["signature"], ids=ids(VECTORS["signature"]))
def test_signatures(entry: dict[str, Any]) -> None:
    ident = Identity(bytes.fromhex(entry["seed"]))
    assert ident.public_key.hex() == entry["public_key"]
    assert ident.node_id.hex() == entry["node_id"]
    signed = bytes.fromhex(entry["signed"])
    agent, node = bytes.fromhex(entry["agent_id"]), ident.node_id
    if entry["name"] == "commit":
        auction, c = signed[-80:-64], signed[-32:]
        assert commit_signed_bytes(auction, agent, node, c) == signed
        bid = SealedBid(auction, agent, node, c, bytes.fromhex(entry["signature"]))
        assert bid.verify(ident.public_key)
    elif entry["name"].startswith("bind"):
        epoch = int.from_bytes(signed[-8:], "big")
        assert bind_signed_bytes(agent, node, epoch) == signed
    elif entry["name"].startswith("move"):
        nid, rnd, kind = signed[-59:-43], signed[-11:-9], signed[-9]
        value = int.from_bytes(signed[-8:], "big")
        assert move_signed_bytes(nid, agent, node, int.from_bytes(rnd, "big"), kind,
                                 value) == signed
    else:
        pid, choice = signed[-49:-33], signed[-1]
        assert vote_signed_bytes(pid, agent, node, choice) == signed
    assert ident.sign(signed).hex() == entry["signature"]  # Ed25519 is deterministic


@pytest.mark.parametrize("entry", VECTORS["command"], ids=ids(VECTORS["command"]))
def test_valid_commands(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    cmd = decode_command(data)
    assert command_to_wire(cmd) == from_json(entry["value"])
    assert cbor.encode(command_to_wire(cmd)) == data
    schema(entry["cddl"]).validate_cbor(data)
    schema("command").validate_cbor(data)


@pytest.mark.parametrize("entry", VECTORS["invalid_command"],
                         ids=ids(VECTORS["invalid_command"]))
def test_invalid_commands(entry: dict[str, Any]) -> None:
    with pytest.raises(ERRORS[entry["error"]]):
        decode_command(bytes.fromhex(entry["hex"]))


def run_log(entry: dict[str, Any]) -> tuple[CoordinationMachine, list[bytes]]:
    m = CoordinationMachine()
    results = []
    for index, (hex_cmd, expect) in enumerate(zip(entry["log"], entry["expect"], strict=True),
                                              1):
        out = m.apply(index, bytes.fromhex(hex_cmd))
        schema("result").validate_cbor(out)
        value = cbor.decode(out)
        assert (value[0] if value[0] < 2 else value[1]) == expect, (index, value)
        results.append(out)
    return m, results


@pytest.mark.parametrize("entry", VECTORS["auction"], ids=ids(VECTORS["auction"]))
def test_auction_logs(entry: dict[str, Any]) -> None:
    _, results = run_log(entry)
    assert results[-1].hex() == entry["result_hex"]
    assert cbor.decode(results[-1])[1] == from_json(entry["result"])
    schema("auction-result").validate_cbor(cbor.encode(from_json(entry["result"])))


@pytest.mark.parametrize("entry", VECTORS["vote"], ids=ids(VECTORS["vote"]))
def test_vote_logs(entry: dict[str, Any]) -> None:
    m, _ = run_log(entry)
    pid = bytes.fromhex(entry["log"][0])[3:19]
    out = m.votes.outcome(pid)
    assert out is not None and out.to_wire() == from_json(entry["outcome"])
    schema("vote-outcome").validate_cbor(cbor.encode(out.to_wire()))


def test_agent_records_match_the_cddl() -> None:
    rec = AgentRecord.create("a", bytes(range(16)), ["gpu"], ["auction"], {"cpu": 2})
    schema("agent-record").validate_cbor(cbor.encode(rec.to_value()))
