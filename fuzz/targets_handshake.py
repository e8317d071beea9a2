"""Fuzz targets for the connection handshake (``spec/handshake.md``), shaped like ``targets.py``.

Each target takes arbitrary bytes. Allowed outcomes: the project's ``WireError`` (and then
the reader's state is unharmed: the genuine message is still accepted), or acceptance of
exactly the genuine message of ``spec/vectors/handshake.json`` (anything else accepted would
be a forgery). Anything else escaping (an ``IndexError``, a ``ValueError`` from
``cryptography``, an ``AssertionError`` from a broken property) is a finding.

- ``handshake-receive``: ``Handshake.receive`` at each of the three steps (responder
  before message 1, initiator before message 2, responder before message 3), on readers
  built from the vector's fixed keys, so mutations of the vector's messages get deep;
- ``noise-read``: ``HandshakeState.read_message`` at the same three steps, raw Noise (no
  size check in front), and a failed read leaves the handshake hash unchanged;
- ``identity-payload``: ``decode_identity_payload`` (a decoded payload re-encodes to the
  input) and ``verify_identity_payload`` against the vector's static keys.

Readers are reused across inputs (a refused message changes nothing, which is one of the
properties checked) and rebuilt after a genuine message is accepted.

Seeds: the ``hex`` messages and ``cbor`` payloads of ``spec/vectors/handshake.json``.
Registration: ``fuzz/targets.py`` lists these targets in its ``TARGETS`` (``make fuzz``
runs them under atheris, ``tests/fuzz`` under Hypothesis).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foundation_p2p.crypto.handshake import (
    Handshake,
    NoiseStatic,
    decode_identity_payload,
    encode_identity_payload,
    verify_identity_payload,
)
from foundation_p2p.crypto.identity import Identity, node_id_from_public_key
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.noise import HandshakeState
from foundation_p2p.errors import WireError
from foundation_p2p.transport.reset import ResetKey

VECTOR = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "handshake.json"
_DATA: dict[str, Any] = json.loads(VECTOR.read_text(encoding="utf-8"))
_IN = _DATA["inputs"]
_MESSAGES = [bytes.fromhex(m["hex"]) for m in _DATA["messages"]]
_RING = Keyring(bytes.fromhex(_IN["cluster_key"]))
_BIG = 1 << 60  # readers are reused: no failure limit


def _fixed(hex_value: str) -> Callable[[int], bytes]:
    value = bytes.fromhex(hex_value)

    def secret_bytes(n: int) -> bytes:
        assert n == 32
        return value

    return secret_bytes


def _sides() -> tuple[Handshake, Handshake]:
    i, r = _IN["initiator"], _IN["responder"]
    ident_i, ident_r = (
        Identity(bytes.fromhex(i["identity_seed"])),
        Identity(bytes.fromhex(r["identity_seed"])),
    )
    init = Handshake.initiate(
        ident_i,
        _RING,
        _fixed(i["noise_ephemeral"]),
        ident_r.node_id,
        static=NoiseStatic(ident_i, bytes.fromhex(i["noise_static"]), i["boot_epoch"]),
        max_failures=_BIG,
        reset_token=ResetKey.from_identity(ident_i).token(bytes.fromhex(i["connection_id"])),
    )
    resp = Handshake.respond(
        ident_r,
        _RING,
        _fixed(r["noise_ephemeral"]),
        init.key_id,
        static=NoiseStatic(ident_r, bytes.fromhex(r["noise_static"]), r["boot_epoch"]),
        max_failures=_BIG,
        reset_token=ResetKey.from_identity(ident_r).token(bytes.fromhex(r["connection_id"])),
    )
    return init, resp


def _reader_at(step: int) -> Handshake:
    """A node-level reader about to receive message ``step + 1`` of the vector."""
    init, resp = _sides()
    m1 = init.next_message()
    if step == 0:
        return resp
    assert m1 == _MESSAGES[0]
    resp.receive(m1)
    assert resp.next_message() == _MESSAGES[1]
    if step == 1:
        return init
    init.receive(_MESSAGES[1])
    assert init.next_message() == _MESSAGES[2]
    return resp


def _noise_at(step: int) -> HandshakeState:
    """A raw Noise reader about to read message ``step + 1`` of the vector."""
    node = _reader_at(step)
    noise = node._noise
    noise.max_failures = _BIG
    return noise


_NODE: dict[int, Handshake] = {}
_NOISE: dict[int, HandshakeState] = {}


def fuzz_handshake_receive(data: bytes) -> None:
    """``Handshake.receive`` at each step: refused with a WireError (and the reader's state
    unchanged), ignored as a duplicate of the message before, or the genuine message."""
    for step in range(3):
        reader = _NODE.get(step) or _reader_at(step)
        _NODE[step] = reader
        before = (reader.handshake_hash, reader._noise.message_index, reader.peer_node_id,
                  reader.peer_epoch, reader.peer_reset_token)
        duplicates = reader.duplicates
        try:
            reader.receive(data)
        except WireError:
            assert not reader.failed
            after = (reader.handshake_hash, reader._noise.message_index, reader.peer_node_id,
                     reader.peer_epoch, reader.peer_reset_token)
            assert after == before, "a refused message changed the handshake"
            continue
        if reader.duplicates != duplicates:
            assert step == 2 and data == _MESSAGES[0]
            continue
        del _NODE[step]
        assert data == _MESSAGES[step], f"message {step + 1}: a forged message was accepted"
        if step > 0:
            assert reader.peer_node_id is not None
            side = _IN["responder" if step == 1 else "initiator"]
            assert reader.peer_epoch == side["boot_epoch"]


def fuzz_noise_read(data: bytes) -> None:
    """``HandshakeState.read_message`` at each step: a WireError leaves the handshake
    hash as it was; acceptance only of the genuine message."""
    for step in range(3):
        reader = _NOISE.get(step) or _noise_at(step)
        _NOISE[step] = reader
        before = reader.handshake_hash
        try:
            reader.read_message(data)
        except WireError:
            assert reader.handshake_hash == before, "a refused message changed the state"
            continue
        del _NOISE[step]
        assert data == _MESSAGES[step], f"message {step + 1}: a forged message was accepted"


_STATICS = [bytes.fromhex(_IN[r]["noise_static_public"]) for r in ("initiator", "responder")]


def fuzz_identity_payload(data: bytes) -> None:
    """``decode_identity_payload`` (round trip) and ``verify_identity_payload`` (a node id
    that is the hash of the key, or a WireError)."""
    try:
        f = decode_identity_payload(data)
    except WireError:
        return
    again = encode_identity_payload(f.identity_public_key, f.boot_epoch, f.signature,
                                    f.reset_token)
    assert again == data, "payload does not re-encode"
    for static in _STATICS:
        try:
            node_id, fields = verify_identity_payload(data, static)
        except WireError:
            continue
        assert fields == f and node_id == node_id_from_public_key(f.identity_public_key)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "handshake-receive": fuzz_handshake_receive,
    "noise-read": fuzz_noise_read,
    "identity-payload": fuzz_identity_payload,
}
"""Target name -> function."""


def seeds(target: str) -> list[bytes]:
    """Seed inputs from ``spec/vectors/handshake.json``: the messages, then the payloads."""
    out = list(_MESSAGES)
    for m in _DATA["messages"]:
        if m["payload"] is not None:
            out.append(bytes.fromhex(m["payload"]["cbor"]))
    if target == "identity-payload":
        out = out[3:] + out[:3]
    return list(dict.fromkeys(out))
