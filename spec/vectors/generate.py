"""Regenerate the test vectors of ``spec/vectors/`` deterministically.

Usage: ``python spec/vectors/generate.py [--check]``. With ``--check`` nothing is written;
the script exits 1 if any committed file differs from what it would write.

The committed JSON files are the source of truth: the conformance tests check the code
against them and never run this script. This script builds its bytes on its own, from
``cbor2``, ``hashlib`` and the ``cryptography`` primitives (HKDF, ChaCha20-Poly1305,
Ed25519) following ``spec/wire.md`` and ``spec/keyring.md``, without calling the
project's encoders, so a vector is a second opinion rather than a copy of the code's output.

The JSON form of a decoded CBOR value (``spec/README.md``, "Test vectors"): integers are
JSON numbers, text strings are JSON strings, ``true``/``false``/``null`` are themselves,
arrays are JSON arrays, a byte string is ``{"bytes": "<hex>"}``, a map is
``{"map": [[key, value], ...]}`` in encoded order, a float is ``{"float": <number>}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = Path(__file__).resolve().parent
FORMAT = 1

# Fixed inputs: never secrets, only for vectors.
KEY_A = bytes(range(0x00, 0x20))
KEY_B = bytes(range(0x20, 0x40))
KEY_WRONG = hashlib.sha256(b"foundation-p2p vectors: a key no keyring holds").digest()
SEED_1 = bytes(range(0x40, 0x60))
SEED_2 = bytes(range(0x60, 0x80))
EPOCH = 1_790_000_000_000
MAX_U64 = (1 << 64) - 1
MAX_PACKET_BYTES = 65_507


# -- primitives, written from the spec ------------------------------------------------


def dumps(value: Any) -> bytes:
    """Deterministic CBOR (length-first map keys, shortest forms)."""
    return cbor2.dumps(value, canonical=True)


def node_id(public_key: bytes) -> bytes:
    return hashlib.sha256(b"foundation-p2p node id v1" + public_key).digest()[:16]


def public_key(seed: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def key_id(key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(b"foundation-p2p key id v1" + key).digest()[:4], "big")


def subkey(key: bytes, sender: bytes, epoch: int) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"foundation-p2p gossip subkey v1",
        info=sender + epoch.to_bytes(8, "big"),
    )
    return hkdf.derive(key)


def nonce(pn: int) -> bytes:
    return bytes(4) + pn.to_bytes(8, "big")


def bstr_head(n: int) -> bytes:
    return dumps(b"\x00" * n)[: len(dumps(b"\x00" * n)) - n]


def seal_packet(
    key: bytes, sender: bytes, epoch: int, pn: int, plaintext: bytes, *, version: int = 1
) -> dict[str, Any]:
    """Everything a reader needs to reproduce one sealed gossip packet."""
    kid = key_id(key)
    aad = b"\x87" + b"".join(dumps(x) for x in (version, 1, sender, epoch, kid, pn))
    sk = subkey(key, sender, epoch)
    sealed = ChaCha20Poly1305(sk).encrypt(nonce(pn), plaintext, aad)
    packet = aad + bstr_head(len(sealed)) + sealed
    assert cbor2.loads(packet) == [version, 1, sender, epoch, kid, pn, sealed]
    assert dumps(cbor2.loads(packet)) == packet
    return {
        "key": key.hex(),
        "key_id": kid,
        "sender": sender.hex(),
        "epoch": epoch,
        "pn": pn,
        "subkey": sk.hex(),
        "nonce": nonce(pn).hex(),
        "aad": aad.hex(),
        "plaintext": plaintext.hex(),
        "sealed": sealed.hex(),
        "hex": packet.hex(),
    }


def to_json(value: Any) -> Any:
    """The JSON form of a decoded CBOR value (see the module docstring)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"float": value}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {"map": [[to_json(k), to_json(v)] for k, v in value.items()]}
    raise TypeError(type(value))


def h(text: str) -> str:
    """Hex with spaces removed (so vectors can be written in readable groups here)."""
    return text.replace(" ", "")


# -- cbor.json -------------------------------------------------------------------------


def cbor_vectors() -> dict[str, Any]:
    valid_values: list[tuple[str, Any]] = [
        ("uint 0", 0),
        ("uint 23, the largest one-byte integer", 23),
        ("uint 24, the smallest with a 1-byte argument", 24),
        ("uint 255", 255),
        ("uint 256", 256),
        ("uint 65535", 65535),
        ("uint 65536", 65536),
        ("uint 2^32", 1 << 32),
        ("uint 2^64-1, the largest uint", MAX_U64),
        ("nint -1", -1),
        ("nint -24", -24),
        ("nint -25", -25),
        ("nint -2^64, the smallest nint", -(1 << 64)),
        ("empty text", ""),
        ("text", "foundation"),
        ("text with a non-ASCII character", "n\u00f6de"),
        ("empty bytes", b""),
        ("bytes", bytes.fromhex("00ff10")),
        ("23-byte bytes (length in the head)", bytes(23)),
        ("24-byte bytes (1-byte length)", bytes(24)),
        ("empty array", []),
        ("nested arrays", [1, [2, 3], [[4]]]),
        ("false", False),
        ("true", True),
        ("null", None),
        ("empty map", {}),
        ("map with uint keys", {1: "a", 2: "b", 10: "c"}),
        ("map with text keys, shorter first", {"b": 1, "aa": 2, "ab": 3}),
        (
            "map keys in length-first order: -1 (0x20) before 24 (0x18 0x18); "
            "RFC 8949 4.2.1 bytewise order would put 24 first",
            {-1: "n", 24: "u"},
        ),
        ("map keys in length-first order: 'z' before 1000", {"z": 0, 1000: 1}),
        ("float 1.5 as half precision", 1.5),
        ("float 100000.0 as single precision", 100000.0),
        ("float 1.1 as double precision", 1.1),
        ("depth 16: the deepest nesting accepted", _nest(16)),
    ]
    valid = []
    for name, value in valid_values:
        data = dumps(value)
        assert cbor2.loads(data) == value
        valid.append({"name": name, "hex": data.hex(), "value": to_json(value)})
    invalid = [
        ("uint 1 with a 1-byte argument", "1801", "malformed"),
        ("uint 1 with a 2-byte argument", "190001", "malformed"),
        ("uint 1 with a 4-byte argument", "1a00000001", "malformed"),
        ("uint 1 with an 8-byte argument", "1b0000000000000001", "malformed"),
        ("uint 255 with a 2-byte argument", "1900ff", "malformed"),
        ("nint -1 with a 1-byte argument", "3800", "malformed"),
        ("byte string length in a needless 1-byte argument", "5801ff", "malformed"),
        ("text length in a needless 1-byte argument", "780161", "malformed"),
        ("array length in a needless 1-byte argument", "980101", "malformed"),
        ("map with keys out of order", "a2 02 01 01 02", "malformed"),
        ("map with text keys out of length-first order", "a2 626161 01 6162 02", "malformed"),
        ("map in RFC 8949 4.2.1 bytewise order {24, -1}", "a2 1818 6175 20 616e", "malformed"),
        ("map with a duplicate key", "a2 01 01 01 02", "malformed"),
        ("indefinite-length array", "9f 01 02 ff", "malformed"),
        ("indefinite-length map", "bf 01 02 ff", "malformed"),
        ("indefinite-length byte string", "5f 41 01 ff", "malformed"),
        ("indefinite-length text string", "7f 61 61 ff", "malformed"),
        ("float 1.0 as single precision (not the shortest)", "fa 3f800000", "malformed"),
        ("float 1.0 as double precision (not the shortest)", "fb 3ff0000000000000", "malformed"),
        ("self-described CBOR tag 55799", "d9d9f7 01", "malformed"),
        ("simple value below 32 in two bytes", "f8 10", "malformed"),
        ("reserved additional information 28", "1c", "malformed"),
        ("lone break byte", "ff", "malformed"),
        ("empty input", "", "malformed"),
        ("truncated: array of 2 with 1 element", "82 01", "malformed"),
        ("truncated: byte string claims 4 GiB", "5a ffffffff 00", "malformed"),
        ("truncated: uint missing its argument", "19 01", "malformed"),
        ("trailing bytes after one item", "01 02", "malformed"),
        ("text that is not UTF-8", "62 c328", "malformed"),
        ("depth 17: one deeper than the limit", _nest_hex(17), "limit"),
        ("depth 1000", _nest_hex(1000), "limit"),
        (
            f"{MAX_PACKET_BYTES + 1} bytes: larger than max_packet_bytes",
            (bytes([0x5A]) + (MAX_PACKET_BYTES - 4).to_bytes(4, "big")).hex()
            + "00" * (MAX_PACKET_BYTES - 4),
            "limit",
        ),
    ]
    out = []
    for name, text, code in invalid:
        out.append({"name": name, "hex": h(text), "error": code})
    big = bytes.fromhex(out[-1]["hex"])
    assert len(big) == MAX_PACKET_BYTES + 1
    return {
        "format": FORMAT,
        "about": "The deterministic CBOR layer (spec/wire.md, 'Deterministic CBOR'): "
        "decode(hex) gives value and encode(value) gives hex for 'valid'; "
        "decode(hex) raises the named error code for 'invalid'.",
        "valid": valid,
        "invalid": out,
    }


def _nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _nest_hex(depth: int) -> str:
    return "81" * depth + "00"


# -- frames.json -----------------------------------------------------------------------


def frame_vectors() -> dict[str, Any]:
    frames = [
        ("ping seq 0", {"type": "ping", "seq": 0}, [1, 0]),
        ("ping seq 1", {"type": "ping", "seq": 1}, [1, 1]),
        ("ping seq 1000", {"type": "ping", "seq": 1000}, [1, 1000]),
        ("ping seq 2^64-1", {"type": "ping", "seq": MAX_U64}, [1, MAX_U64]),
        ("ack seq 0", {"type": "ack", "seq": 0}, [2, 0]),
        ("ack seq 70000", {"type": "ack", "seq": 70000}, [2, 70000]),
        ("ack seq 2^64-1", {"type": "ack", "seq": MAX_U64}, [2, MAX_U64]),
    ]
    valid_frames = [
        {"name": n, "hex": dumps(v).hex(), "frame": f, "value": to_json(v), "cddl": "frame"}
        for n, f, v in frames
    ]
    lists: list[tuple[str, list[Any], list[dict[str, Any]], int]] = [
        ("no frames", [], [], 0),
        ("one ping", [[1, 7]], [{"type": "ping", "seq": 7}], 0),
        (
            "ack then ping (an answer piggybacked on a probe)",
            [[2, 7], [1, 8]],
            [{"type": "ack", "seq": 7}, {"type": "ping", "seq": 8}],
            0,
        ),
        (
            "a frame of unknown type 99 is skipped and counted",
            [[99, "future", {"k": b"\x01"}], [1, 9]],
            [{"type": "ping", "seq": 9}],
            1,
        ),
        (
            "unknown frame types 3 and 2^64-1, nothing known",
            [[3], [MAX_U64, 1, 2]],
            [],
            2,
        ),
        (
            "64 frames: the most a packet may carry",
            [[1, i] for i in range(64)],
            [{"type": "ping", "seq": i} for i in range(64)],
            0,
        ),
    ]
    valid_lists = [
        {
            "name": n,
            "hex": dumps(v).hex(),
            "value": to_json(v),
            "frames": f,
            "unknown": u,
            "cddl": "frames",
        }
        for n, v, f, u in lists
    ]
    # Inside an authenticated plaintext, a receiver accepts encodings that are valid CBOR
    # but not deterministic (spec/wire.md section 9, "Where determinism is checked"); the
    # strict decoder (check_canonical=True) refuses the same bytes.
    liberal_lists = [
        ("ack seq non-shortest", "81 82 02 1805", [{"type": "ack", "seq": 5}]),
        ("ping seq as a 4-byte argument", "81 82 01 1a00000007", [{"type": "ping", "seq": 7}]),
    ]
    non_deterministic_lists = [
        {"name": n, "hex": h.replace(" ", ""), "frames": f, "strict_error": "malformed"}
        for n, h, f in liberal_lists
    ]
    invalid_lists = [
        ("not an array", "01", "malformed"),
        ("a map instead of an array", "a0", "malformed"),
        ("a frame that is not an array", "81 01", "malformed"),
        ("an empty frame", "81 80", "malformed"),
        ("frame type is text", "81 82 6131 01", "malformed"),
        ("frame type is negative", "81 82 20 01", "malformed"),
        ("frame type is true", "81 82 f5 01", "malformed"),
        ("ping with no seq", "81 81 01", "malformed"),
        ("ping with an extra element", "81 83 01 01 01", "malformed"),
        ("ping seq negative", "81 82 01 20", "malformed"),
        ("ping seq is text", "81 82 01 6131", "malformed"),
        (
            "ping seq is a bignum (tag 2) above 2^64-1",
            "81 82 01 c2 49 010000000000000000",
            "malformed",
        ),
        ("ping seq is a float", "81 82 01 f93c00", "malformed"),
        ("ping seq is null", "81 82 01 f6", "malformed"),
        ("a bad ping after a good one rejects the whole list", "82 82 01 01 82 01 20", "malformed"),
        ("65 frames: one more than the limit", "98 41" + "8201 00" * 65, "limit"),
        ("depth 17 inside an unknown frame", "81 82 18 63" + "81" * 15 + "00", "limit"),
        ("indefinite-length frame list", "9f 82 01 01 ff", "malformed"),
        ("truncated frame list", "82 82 01 01", "malformed"),
        ("a stray byte after the frame list", "81 82 01 01 00", "malformed"),
    ]
    frame_list_cddl_rejects = {
        "not an array",
        "a map instead of an array",
        "a frame that is not an array",
        "an empty frame",
        "frame type is text",
        "frame type is negative",
        "frame type is true",
        "ping with no seq",
        "ping with an extra element",
        "ping seq negative",
        "ping seq is text",
        "ping seq is a float",
        "ping seq is null",
        "a bad ping after a good one rejects the whole list",
    }
    single_invalid = [
        ("ping", "ack bytes given to the ping decoder", "82 02 05", "malformed"),
        ("ack", "ping bytes given to the ack decoder", "82 01 05", "malformed"),
        ("ping", "ping with frame type true", "82 f5 05", "malformed"),
        ("ping", "ping that is a map", "a1 01 05", "malformed"),
        ("ack", "ack seq above 2^64-1", "82 02 c2 49 010000000000000000", "malformed"),
        ("ack", "ack with three elements", "83 02 05 05", "malformed"),
        ("ping", "ping with a non-shortest seq", "82 01 1817", "malformed"),
        ("ping", "ping truncated", "82 01", "malformed"),
    ]
    return {
        "format": FORMAT,
        "about": "Frames (spec/wire.md, 'Frames'). 'frame': one frame, decoded by its own "
        "class (Ping.decode/Ack.decode) and re-encoded byte-exact. 'frame_list': a gossip "
        "packet's plaintext, decode_frames(hex) gives 'frames' and the count of skipped "
        "unknown frames. 'non_deterministic_frame_list': valid CBOR that is not deterministic: "
        "decode_frames accepts it (authenticated plaintext), decode_frames(check_canonical=True) "
        "raises 'strict_error'. 'invalid_frame_list' and 'invalid_frame': the error code raised.",
        "frame": valid_frames,
        "frame_list": valid_lists,
        "non_deterministic_frame_list": non_deterministic_lists,
        "invalid_frame_list": [
            {"name": n, "hex": h(x), "error": c}
            | ({"cddl_rejects": "frames"} if n in frame_list_cddl_rejects else {})
            for n, x, c in invalid_lists
        ],
        "invalid_frame": [
            {"decoder": d, "name": n, "hex": h(x), "error": c} for d, n, x, c in single_invalid
        ],
    }


# -- packets.json ----------------------------------------------------------------------


def packet_vectors() -> dict[str, Any]:
    sender_1 = node_id(public_key(SEED_1))
    sender_2 = node_id(public_key(SEED_2))
    keyring = {"primary": KEY_A.hex(), "accept": [KEY_B.hex()]}

    def frames_plaintext(frames: list[list[Any]]) -> bytes:
        return dumps(frames)

    valid_specs: list[tuple[str, bytes, bytes, int, int, list[list[Any]]]] = [
        ("first packet of a boot epoch: one ping", KEY_A, sender_1, EPOCH, 0, [[1, 1]]),
        ("ack and ping, pn 1", KEY_A, sender_1, EPOCH, 1, [[2, 41], [1, 2]]),
        ("sealed with the accepted (older) key", KEY_B, sender_1, EPOCH, 2, [[1, 3]]),
        ("another sender, same key, same epoch and pn", KEY_A, sender_2, EPOCH, 0, [[1, 1]]),
        ("the same sender after a restart (epoch + 1)", KEY_A, sender_1, EPOCH + 1, 0, [[1, 1]]),
        ("large packet number 2^40 + 5", KEY_A, sender_2, EPOCH, (1 << 40) + 5, [[2, 9]]),
        ("packet number 2^64-1, the last one", KEY_A, sender_2, EPOCH + 7, MAX_U64, [[1, 1]]),
        ("no frames", KEY_A, sender_2, EPOCH + 8, 0, []),
        ("with an unknown frame type", KEY_A, sender_2, EPOCH + 9, 0, [[77, b"x"], [1, 4]]),
    ]
    valid = []
    for name, key, sender, epoch, pn, frames in valid_specs:
        entry = {"name": name}
        entry.update(seal_packet(key, sender, epoch, pn, frames_plaintext(frames)))
        entry["frames"] = to_json(frames)
        entry["cddl"] = "gossip-packet"
        valid.append(entry)

    good = bytes.fromhex(valid[1]["hex"])
    aad_len = len(bytes.fromhex(valid[1]["aad"]))

    def flip(data: bytes, index: int, bit: int = 0) -> bytes:
        out = bytearray(data)
        out[index] ^= 1 << bit
        return bytes(out)

    header = (sender_1, EPOCH, key_id(KEY_A), 5)

    def raw(items: list[Any]) -> bytes:
        return dumps(items)

    tag16 = bytes(16)
    invalid: list[tuple[str, bytes, str]] = [
        ("empty datagram", b"", "malformed"),
        ("not an array: a CBOR uint", b"\x01", "malformed"),
        ("not CBOR at all", b"GET / HTTP/1.1\r\n", "malformed"),
        ("truncated by one byte", good[:-1], "malformed"),
        ("truncated inside the header", good[: aad_len - 3], "malformed"),
        ("truncated to the array head only", good[:1], "malformed"),
        ("one extra byte after the packet", good + b"\x00", "malformed"),
        ("bit flipped in the ciphertext", flip(good, aad_len + 3), "auth_failed"),
        ("bit flipped in the tag (last byte)", flip(good, len(good) - 1, 7), "auth_failed"),
        (
            "bit flipped in the sender (associated data and subkey change)",
            flip(good, 4),
            "auth_failed",
        ),
        (
            "bit flipped in the packet number (nonce and associated data change)",
            flip(good, aad_len - 1),
            "auth_failed",
        ),
        (
            "sealed with a key that is not in the keyring",
            bytes.fromhex(seal_packet(KEY_WRONG, sender_1, EPOCH, 3, dumps([[1, 1]]))["hex"]),
            "unknown_key",
        ),
        (
            "key id of the right key, sealed with another key",
            _forge_key_id(sender_1, key_id(KEY_A)),
            "auth_failed",
        ),
        ("protocol version 2", raw([2, 1, *header, tag16]), "unsupported_version"),
        ("protocol version 0", raw([0, 1, *header, tag16]), "unsupported_version"),
        ("protocol version 2 with another layout", raw([2, "hello"]), "unsupported_version"),
        ("version is text", raw(["1", 1, *header, tag16]), "malformed"),
        ("version is negative", raw([-1, 1, *header, tag16]), "malformed"),
        ("packet type 2 (not gossip)", raw([1, 2, *header, tag16]), "malformed"),
        ("6 elements", raw([1, 1, *header]), "malformed"),
        ("8 elements", raw([1, 1, *header, tag16, 0]), "malformed"),
        ("sender of 15 bytes", raw([1, 1, sender_1[:15], *header[1:], tag16]), "malformed"),
        ("sender of 17 bytes", raw([1, 1, sender_1 + b"\x00", *header[1:], tag16]), "malformed"),
        ("sender is text", raw([1, 1, "n1", *header[1:], tag16]), "malformed"),
        ("negative epoch", raw([1, 1, sender_1, -1, *header[2:], tag16]), "malformed"),
        ("key id above 32 bits", raw([1, 1, sender_1, EPOCH, 1 << 32, 5, tag16]), "malformed"),
        (
            "packet number is a bignum above 2^64-1",
            b"\x87\x01\x01"
            + dumps(sender_1)
            + dumps(EPOCH)
            + dumps(header[2])
            + bytes.fromhex("c249010000000000000000")
            + dumps(tag16),
            "malformed",
        ),
        ("sealed shorter than the 16-byte tag", raw([1, 1, *header, bytes(15)]), "malformed"),
        ("sealed is text", raw([1, 1, *header, "x" * 16]), "malformed"),
        (
            "epoch with a non-shortest argument",
            b"\x87\x01\x01"
            + dumps(sender_1)
            + b"\x1b"
            + (5).to_bytes(8, "big")
            + dumps(header[2])
            + dumps(5)
            + dumps(tag16),
            "malformed",
        ),
        (
            f"{MAX_PACKET_BYTES + 1} bytes: larger than a UDP datagram may be",
            _oversize_packet(sender_1),
            "limit",
        ),
    ]
    # Well-formed CBOR whose shape breaks the `gossip-packet` rule: a CDDL validator must
    # refuse these too (the others are not well-formed, not deterministic, or authentic
    # in shape and refused only by the cryptography).
    cddl_rejects = {
        "not an array: a CBOR uint",
        "protocol version 2",
        "protocol version 0",
        "protocol version 2 with another layout",
        "version is text",
        "version is negative",
        "packet type 2 (not gossip)",
        "6 elements",
        "8 elements",
        "sender of 15 bytes",
        "sender of 17 bytes",
        "sender is text",
        "negative epoch",
        "key id above 32 bits",
        "sealed shorter than the 16-byte tag",
        "sealed is text",
    }
    invalid_out = []
    for n, d, c in invalid:
        entry: dict[str, Any] = {"name": n, "hex": d.hex(), "error": c}
        if n in cddl_rejects:
            entry["cddl_rejects"] = "gossip-packet"
        invalid_out.append(entry)
    assert {e["name"] for e in invalid_out} >= cddl_rejects
    authentic_garbage = seal_packet(KEY_A, sender_1, EPOCH, 4, b"\xff\x00")
    invalid_out.append(
        {
            "name": "authentic packet whose plaintext is not a frame list",
            "hex": authentic_garbage["hex"],
            "error": "malformed",
            "stage": "decode_frames",
        }
    )

    def step(key: bytes, sender: bytes, epoch: int, pn: int, expect: str) -> dict[str, Any]:
        packet = seal_packet(key, sender, epoch, pn, dumps([[1, pn & 0xFFFF]]))
        return {"epoch": epoch, "pn": pn, "hex": packet["hex"], "expect": expect}

    s1 = sender_1
    sequences = [
        {
            "name": "the same packet twice: the second is a replay",
            "steps": [step(KEY_A, s1, EPOCH, 0, "ok"), step(KEY_A, s1, EPOCH, 0, "replay")],
        },
        {
            "name": "out of order within the window is accepted once",
            "steps": [
                step(KEY_A, s1, EPOCH, 5, "ok"),
                step(KEY_A, s1, EPOCH, 3, "ok"),
                step(KEY_A, s1, EPOCH, 4, "ok"),
                step(KEY_A, s1, EPOCH, 3, "replay"),
                step(KEY_A, s1, EPOCH, 6, "ok"),
            ],
        },
        {
            "name": "older than the 256-packet window is refused",
            "steps": [
                step(KEY_A, s1, EPOCH, 300, "ok"),
                step(KEY_A, s1, EPOCH, 45, "ok"),
                step(KEY_A, s1, EPOCH, 44, "replay"),
            ],
        },
        {
            "name": "a newer epoch retires the window; the older epoch is then refused",
            "steps": [
                step(KEY_A, s1, EPOCH, 9, "ok"),
                step(KEY_A, s1, EPOCH + 1, 0, "ok"),
                step(KEY_A, s1, EPOCH, 10, "stale_epoch"),
                step(KEY_A, s1, EPOCH + 1, 0, "replay"),
                step(KEY_A, s1, EPOCH + 1, 1, "ok"),
            ],
        },
        {
            "name": "a forged packet does not move the window",
            "steps": [
                step(KEY_A, s1, EPOCH, 1, "ok"),
                {
                    "epoch": EPOCH,
                    "pn": 2,
                    "hex": flip(bytes.fromhex(step(KEY_A, s1, EPOCH, 2, "ok")["hex"]), -1).hex(),
                    "expect": "auth_failed",
                },
                step(KEY_A, s1, EPOCH, 2, "ok"),
            ],
        },
        {
            "name": "two senders have separate windows",
            "steps": [
                step(KEY_A, s1, EPOCH, 0, "ok"),
                step(KEY_A, sender_2, EPOCH, 0, "ok"),
                step(KEY_A, sender_2, EPOCH, 0, "replay"),
            ],
        },
    ]
    return {
        "format": FORMAT,
        "about": "Sealed gossip packets (spec/wire.md, 'Gossip packet' and 'Packet "
        "protection'). The receiver's keyring is 'keyring' (hex keys), its replay window "
        "256 packets. 'valid': open(hex) succeeds with that header, 'plaintext', and "
        "decode_frames(plaintext) gives 'frames'; sealing 'plaintext' as 'sender' at "
        "'epoch' with packet number 'pn' and key 'key' gives 'hex' byte for byte. "
        "'invalid': a fresh receiver refuses hex with the error code ('stage' "
        "decode_frames: opening succeeds and decoding the plaintext fails). 'sequences': "
        "steps opened in order by one receiver, each with its expected outcome.",
        "keyring": keyring,
        "replay_window": 256,
        "valid": valid,
        "invalid": invalid_out,
        "sequences": sequences,
    }


def _forge_key_id(sender: bytes, kid: int) -> bytes:
    """A packet naming ``kid`` but sealed under KEY_WRONG's subkey."""
    aad = b"\x87" + b"".join(dumps(x) for x in (1, 1, sender, EPOCH, kid, 11))
    sealed = ChaCha20Poly1305(subkey(KEY_WRONG, sender, EPOCH)).encrypt(
        nonce(11), dumps([[1, 1]]), aad
    )
    return aad + bstr_head(len(sealed)) + sealed


def _oversize_packet(sender: bytes) -> bytes:
    prefix = b"\x87" + b"".join(dumps(x) for x in (1, 1, sender, EPOCH, key_id(KEY_A), 0))
    room = MAX_PACKET_BYTES + 1 - len(prefix) - 3
    packet = prefix + bstr_head(room) + bytes(room)
    assert len(packet) == MAX_PACKET_BYTES + 1, len(packet)
    return packet


# -- keys.json: keyring, identity, boot epoch ------------------------------------------


def key_vectors() -> dict[str, Any]:
    sender_1 = node_id(public_key(SEED_1))
    identities = []
    for seed in (SEED_1, SEED_2, bytes(32)):
        pk = public_key(seed)
        value = [1, seed]
        identities.append(
            {
                "seed": seed.hex(),
                "public_key": pk.hex(),
                "node_id": node_id(pk).hex(),
                "hex": dumps(value).hex(),
                "value": to_json(value),
                "cddl": "identity-file",
            }
        )
    key_ids = [{"key": k.hex(), "key_id": key_id(k)} for k in (KEY_A, KEY_B, KEY_WRONG)]
    subkeys = [
        {"key": k.hex(), "sender": s.hex(), "epoch": e, "subkey": subkey(k, s, e).hex()}
        for k, s, e in (
            (KEY_A, sender_1, EPOCH),
            (KEY_A, sender_1, EPOCH + 1),
            (KEY_B, sender_1, EPOCH),
            (KEY_A, bytes(16), 0),
            (KEY_A, bytes(16), MAX_U64),
        )
    ]
    nonces = [{"pn": pn, "nonce": nonce(pn).hex()} for pn in (0, 1, 256, MAX_U64)]
    b64a = base64.b64encode(KEY_A).decode()
    b64b = base64.b64encode(KEY_B).decode()
    keyrings_valid = [
        {
            "name": "one primary key",
            "text": f"foundation-p2p keyring v1\nprimary {b64a}\n",
            "primary": KEY_A.hex(),
            "accept": [],
        },
        {
            "name": "during a rotation: new primary, old key accepted, comments and blanks",
            "text": (
                "# written by foundation-p2p keygen\n\nfoundation-p2p keyring v1\n"
                f"accept {b64a}   # the key being retired\nprimary {b64b}\n\n"
            ),
            "primary": KEY_B.hex(),
            "accept": [KEY_A.hex()],
        },
        {
            "name": "CRLF line ends and extra spaces",
            "text": f"foundation-p2p keyring v1\r\n  primary   {b64a}  \r\n",
            "primary": KEY_A.hex(),
            "accept": [],
        },
    ]
    short = base64.b64encode(bytes(31)).decode()
    keyrings_invalid = [
        ("empty file", "", None),
        ("only comments", "# nothing here\n\n", None),
        ("wrong header", f"foundation-p2p keyring v2\nprimary {b64a}\n", 1),
        ("key before the header", f"primary {b64a}\nfoundation-p2p keyring v1\n", 1),
        ("no primary key", f"foundation-p2p keyring v1\naccept {b64a}\n", None),
        ("two primary keys", f"foundation-p2p keyring v1\nprimary {b64a}\nprimary {b64b}\n", 3),
        ("unknown word", f"foundation-p2p keyring v1\nsecondary {b64a}\n", 2),
        ("word without a key", "foundation-p2p keyring v1\nprimary\n", 2),
        ("key that is not base64", "foundation-p2p keyring v1\nprimary not*base64!\n", 2),
        ("key of 31 bytes", f"foundation-p2p keyring v1\n\nprimary {short}\n", 3),
    ]
    identity_invalid = [
        ("empty", b""),
        ("format 2", dumps([2, SEED_1])),
        ("format is true (equal to 1 in Python, not a uint)", dumps([True, SEED_1])),
        ("seed of 31 bytes", dumps([1, SEED_1[:31]])),
        ("seed of 33 bytes", dumps([1, SEED_1 + b"\x00"])),
        ("three elements", dumps([1, SEED_1, 0])),
        ("a map", dumps({1: SEED_1})),
        ("seed as text", dumps([1, "x" * 32])),
        ("seed length in a needless 2-byte argument", b"\x82\x01\x59\x00\x20" + SEED_1),
        ("truncated", dumps([1, SEED_1])[:-1]),
    ]
    epochs = [0, 1, EPOCH, MAX_U64]
    boot_epoch_records = [
        {"epoch": e, "hex": dumps(e).hex(), "cddl": "boot-epoch-record"} for e in epochs
    ]
    boot_epoch_rule = [
        {
            "name": "first start: the wall clock in ms",
            "wall_ms": EPOCH,
            "last": None,
            "epoch": EPOCH,
        },
        {
            "name": "restart later: the wall clock",
            "wall_ms": EPOCH + 5000,
            "last": EPOCH,
            "epoch": EPOCH + 5000,
        },
        {
            "name": "clock stepped back: last + 1",
            "wall_ms": EPOCH - 60_000,
            "last": EPOCH,
            "epoch": EPOCH + 1,
        },
        {
            "name": "two starts in one millisecond: last + 1",
            "wall_ms": EPOCH,
            "last": EPOCH,
            "epoch": EPOCH + 1,
        },
    ]
    return {
        "format": FORMAT,
        "about": "Key material and durable records (spec/keyring.md, spec/wire.md 'Node "
        "id', 'Packet protection', 'Boot epoch'). Every derived value is computed from "
        "the fixed inputs shown.",
        "key_id": key_ids,
        "subkey": subkeys,
        "nonce": nonces,
        "identity": identities,
        "invalid_identity": [
            {"name": n, "hex": d.hex(), "error": "StorageError"} for n, d in identity_invalid
        ],
        "keyring": keyrings_valid,
        "invalid_keyring": [
            {"name": n, "text": t, "error": "KeyringError", "line": line}
            for n, t, line in keyrings_invalid
        ],
        "boot_epoch_record": boot_epoch_records,
        "invalid_boot_epoch_record": [
            {"name": "negative", "hex": dumps(-1).hex(), "error": "StorageError"},
            {"name": "text", "hex": dumps("1").hex(), "error": "StorageError"},
            {"name": "non-shortest", "hex": "1800", "error": "StorageError"},
            {"name": "empty", "hex": "", "error": "StorageError"},
        ],
        "boot_epoch_rule": boot_epoch_rule,
    }


# -- driver ----------------------------------------------------------------------------


FILES = {
    "cbor.json": cbor_vectors,
    "frames.json": frame_vectors,
    "packets.json": packet_vectors,
    "keys.json": key_vectors,
}


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in FILES.items():
        text = render(build())
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
