"""The multicast beacon codec against ``spec/vectors/discovery.json`` and the CDDL."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pycddl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.discovery.beacon import (
    MAX_BEACON_BYTES,
    Beacon,
    beacon_subkey,
    open_beacon,
    seal_beacon,
)
from foundation_p2p.errors import LimitError, UnknownKeyError, WireError

SPEC = Path(__file__).resolve().parents[2] / "spec"
VECTORS: dict[str, Any] = json.loads((SPEC / "vectors" / "discovery.json").read_text("utf-8"))
CDDL = (SPEC / "discovery.cddl").read_text(encoding="utf-8")
KEYRING = Keyring(
    bytes.fromhex(VECTORS["keyring"]["primary"]),
    [bytes.fromhex(k) for k in VECTORS["keyring"]["accepted"]],
)


def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"cddl-vector-root = {rule}\n{CDDL}")


def content_of(entry: dict[str, Any]) -> Beacon:
    node, cluster, host, port, version = entry["content"]
    return Beacon(bytes.fromhex(node["bytes"]), cluster, host, port, version)


@pytest.mark.parametrize("entry", VECTORS["beacon"], ids=lambda e: e["name"])
def test_vector_beacon_opens_to_its_content(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    schema(entry["cddl"]).validate_cbor(data)
    schema("beacon-content").validate_cbor(bytes.fromhex(entry["content_hex"]))
    assert open_beacon(data, KEYRING) == content_of(entry)
    assert beacon_subkey(bytes.fromhex(entry["key"])).hex() == entry["beacon_key"]


@pytest.mark.parametrize("entry", VECTORS["beacon"], ids=lambda e: e["name"])
def test_sealing_with_the_vector_nonce_gives_the_vector_bytes(entry: dict[str, Any]) -> None:
    keyring = Keyring(bytes.fromhex(entry["key"]))
    nonce = bytes.fromhex(entry["nonce"])
    data = seal_beacon(content_of(entry), keyring, lambda n: nonce[:n])
    assert data.hex() == entry["hex"]


@pytest.mark.parametrize("entry", VECTORS["invalid_beacon"], ids=lambda e: e["name"])
def test_invalid_vector_is_refused_with_its_code(entry: dict[str, Any]) -> None:
    with pytest.raises(WireError) as caught:
        open_beacon(bytes.fromhex(entry["hex"]), KEYRING)
    assert caught.value.code == entry["error"], caught.value


def test_wrong_key_is_unknown_and_key_rotation_keeps_old_beacons_opening() -> None:
    old, new = os.urandom(32), os.urandom(32)
    data = seal_beacon(Beacon(bytes(16), "c", "10.0.0.1", 7946, "v"), Keyring(old), os.urandom)
    with pytest.raises(UnknownKeyError):
        open_beacon(data, Keyring(new))
    assert open_beacon(data, Keyring(new, [old])).host == "10.0.0.1"


def test_each_beacon_gets_a_fresh_nonce() -> None:
    beacon = Beacon(bytes(16), "c", "10.0.0.1", 7946, "v")
    assert seal_beacon(beacon, KEYRING, os.urandom) != seal_beacon(beacon, KEYRING, os.urandom)


def test_a_beacon_too_long_to_send_is_refused() -> None:
    with pytest.raises(LimitError):
        seal_beacon(Beacon(bytes(16), "c", "h" * 300, 1, "v"), KEYRING, os.urandom)


@given(st.binary(max_size=MAX_BEACON_BYTES + 20))
def test_garbage_gives_only_wire_errors(data: bytes) -> None:
    with contextlib.suppress(WireError):
        open_beacon(data, KEYRING)


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(index: int, bit: int) -> None:
    data = bytearray(
        seal_beacon(Beacon(bytes(16), "c", "10.0.0.1", 7946, "v"), KEYRING, os.urandom)
    )
    data[index % len(data)] ^= 1 << bit
    with pytest.raises(WireError):
        open_beacon(bytes(data), KEYRING)


def test_generator_reproduces_the_committed_vectors() -> None:
    done = subprocess.run(
        [sys.executable, str(SPEC / "vectors" / "generate_discovery.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
