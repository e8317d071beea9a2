"""Fuzz targets: one per decoder, shared by atheris (``fuzz/atheris_main.py``) and Hypothesis.

Each target takes arbitrary bytes. The only allowed outcomes are "decoded" (and then the
result must satisfy the target's round-trip property) or the project's own error for that
input: :class:`~foundation_p2p.errors.WireError` for wire bytes, ``KeyringError`` for a
keyring file, ``StorageError`` for an identity file. Anything else escaping a target (an
``IndexError``, a ``cbor2`` exception, an ``AssertionError`` from a broken round trip) is
a finding.

Seeds come from ``spec/vectors/*.json``: every ``hex`` field, and every keyring ``text``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.protection import GossipProtection
from foundation_p2p.errors import KeyringError, StorageError, WireError
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Ack, Ping, decode_frames, encode_frames
from foundation_p2p.wire.packet import parse_packet

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors"

# The keyring of spec/vectors/packets.json, so that seeded packets reach the AEAD.
_KEY_A = bytes(range(0x00, 0x20))
_KEY_B = bytes(range(0x20, 0x40))
_KEYRING = Keyring(_KEY_A, [_KEY_B])


def fuzz_cbor(data: bytes) -> None:
    """``cbor.decode``: a decoded item re-encodes to exactly the input."""
    try:
        value = cbor.decode(data)
    except WireError:
        return
    assert cbor.encode(value) == data, "decoded CBOR does not re-encode byte-exact"


def fuzz_frames(data: bytes) -> None:
    """``decode_frames``, liberal and strict: the strict decoder accepts only what the
    liberal one accepts, with the same frames, and such input re-encodes exactly (when
    no frame was skipped)."""
    try:
        decoded = decode_frames(data)
    except WireError:
        decoded = None
    try:
        strict = decode_frames(data, check_canonical=True)
    except WireError:
        strict = None
    if decoded is None:
        assert strict is None, "the strict decoder accepted what the liberal one refused"
        return
    assert len(decoded.frames) + decoded.unknown <= 64
    if strict is not None:
        assert strict.frames == decoded.frames and strict.unknown == decoded.unknown
        if strict.unknown == 0:
            assert encode_frames(strict.frames) == data, "frame list does not re-encode"


def fuzz_ping(data: bytes) -> None:
    """``Ping.decode``: a decoded ping re-encodes to exactly the input."""
    try:
        frame = Ping.decode(data)
    except WireError:
        return
    assert frame.encode() == data


def fuzz_ack(data: bytes) -> None:
    """``Ack.decode``: a decoded ack re-encodes to exactly the input."""
    try:
        frame = Ack.decode(data)
    except WireError:
        return
    assert frame.encode() == data


def fuzz_packet(data: bytes) -> None:
    """``parse_packet``: the associated data is the header re-encoded, then the sealed bytes."""
    try:
        header, aad, sealed = parse_packet(data)
    except WireError:
        return
    assert header.encode_prefix() == aad, "associated data differs from the header"
    assert data.startswith(aad) and data.endswith(sealed)
    assert len(header.sender) == 16 and len(sealed) >= 16


def fuzz_open(data: bytes) -> None:
    """``GossipProtection.open`` then ``decode_frames``, on a fresh receiver."""
    protection = GossipProtection(_KEYRING, bytes(16), 1)
    try:
        header, plaintext = protection.open(data)
    except WireError:
        assert len(protection.replay) == 0, "a refused packet changed the replay state"
        return
    assert protection.replay.epoch_of(header.sender) == header.boot_epoch
    try:
        protection.open(data)
    except WireError as exc:
        assert exc.code == "replay", exc.code
    else:
        raise AssertionError("the same packet opened twice")
    try:
        decode_frames(plaintext)
    except WireError:
        return


def fuzz_keyring(data: bytes) -> None:
    """``Keyring.from_text`` on the input as UTF-8 text (invalid sequences replaced)."""
    text = data.decode("utf-8", "replace")
    try:
        ring = Keyring.from_text(text, source="fuzz.keyring")
    except KeyringError as exc:
        assert str(exc).startswith("fuzz.keyring"), "a keyring error must name the file"
        return
    again = Keyring.from_text(ring.to_text())
    assert (again.primary, again.accepted) == (ring.primary, ring.accepted)


def fuzz_identity(data: bytes) -> None:
    """``Identity.from_bytes``: a loaded identity stores back to exactly the input."""
    try:
        identity = Identity.from_bytes(data, source="fuzz.identity")
    except StorageError:
        return
    assert identity.to_bytes() == data


TARGETS: dict[str, Callable[[bytes], None]] = {
    "cbor": fuzz_cbor,
    "frames": fuzz_frames,
    "ping": fuzz_ping,
    "ack": fuzz_ack,
    "packet": fuzz_packet,
    "open": fuzz_open,
    "keyring": fuzz_keyring,
    "identity": fuzz_identity,
}
"""Target name -> function (``--target NAME``)."""


def _walk(value: Any, key: str) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)


def seeds(target: str, *, max_bytes: int = 70_000) -> list[bytes]:
    """Seed inputs for ``target`` from ``spec/vectors/*.json``, in a stable order."""
    out: list[bytes] = []
    for path in sorted(VECTORS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if target == "keyring":
            out.extend(t.encode() for t in _walk(data, "text") if isinstance(t, str))
        else:
            for h in _walk(data, "hex"):
                if isinstance(h, str):
                    out.append(bytes.fromhex(h))
            for h in _walk(data, "plaintext"):
                if isinstance(h, str):
                    out.append(bytes.fromhex(h))
    unique = list(dict.fromkeys(b for b in out if len(b) <= max_bytes))
    return unique or [b""]
