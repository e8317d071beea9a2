"""Regenerate ``spec/vectors/discovery.json`` deterministically.

Usage: ``python spec/vectors/generate_discovery.py [--check]``. With ``--check`` nothing is
written; the script exits 1 if the committed file differs from what it would write.

Like the other generators, this script never calls the project's code: beacons are built
with ``cbor2``, HKDF and ChaCha20-Poly1305 from ``spec/discovery.md`` section 4.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from generate import FORMAT, KEY_A, KEY_B, KEY_WRONG, dumps, key_id, render, to_json

HERE = Path(__file__).resolve().parent
FILE = "discovery.json"
SALT = b"foundation-p2p discovery beacon v1"
NODE = bytes(range(0x10, 0x20))
NONCE_1 = bytes(range(0xA0, 0xAC))
NONCE_2 = bytes(range(0xB0, 0xBC))


def beacon_key(cluster_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=b"").derive(cluster_key)


def seal(cluster_key: bytes, nonce: bytes, content: list[Any], kid: int | None = None) -> bytes:
    kid = key_id(cluster_key) if kid is None else kid
    plaintext = dumps(content)
    sealed = ChaCha20Poly1305(beacon_key(cluster_key)).encrypt(nonce, plaintext, dumps([1, kid]))
    return dumps([1, kid, nonce, sealed])


def valid_vectors() -> list[dict[str, Any]]:
    cases = [
        ("ipv4 address", KEY_A, NONCE_1, [NODE, "default", "10.0.0.7", 7946, "0.1.0"]),
        ("source address (empty host)", KEY_A, NONCE_2, [NODE, "blue", "", 45000, "0.1.0"]),
        ("second key of the ring", KEY_B, NONCE_1, [NODE, "default", "fd00::7", 1, ""]),
    ]
    out = []
    for name, key, nonce, content in cases:
        data = seal(key, nonce, content)
        out.append(
            {
                "name": name,
                "cddl": "beacon",
                "key": key.hex(),
                "beacon_key": beacon_key(key).hex(),
                "nonce": nonce.hex(),
                "content": to_json(content),
                "content_hex": dumps(content).hex(),
                "hex": data.hex(),
            }
        )
    return out


def invalid_vectors() -> list[dict[str, Any]]:
    good = [NODE, "default", "10.0.0.7", 7946, "0.1.0"]
    sealed_a = seal(KEY_A, NONCE_1, good)
    altered = bytearray(sealed_a)
    altered[-1] ^= 0x01
    inner = seal(KEY_A, NONCE_1, [NODE, "default", "10.0.0.7", 0, "0.1.0"])
    short_node = seal(KEY_A, NONCE_1, [NODE[:15], "default", "10.0.0.7", 7946, "0.1.0"])
    long_host = seal(KEY_A, NONCE_1, [NODE, "default", "h" * 254, 7946, "0.1.0"])
    cases = [
        ("sealed under a key not in the ring", seal(KEY_WRONG, NONCE_1, good), "unknown_key"),
        (
            "key id of KEY_A, sealed under another key",
            seal(KEY_WRONG, NONCE_1, good, kid=key_id(KEY_A)),
            "auth_failed",
        ),
        ("one bit of the tag flipped", bytes(altered), "auth_failed"),
        ("version 2", dumps([2, key_id(KEY_A), NONCE_1, b"\x00" * 16]), "unsupported_version"),
        ("three elements", dumps([1, key_id(KEY_A), NONCE_1]), "malformed"),
        ("nonce of 11 bytes", dumps([1, key_id(KEY_A), NONCE_1[:11], b"\x00" * 16]), "malformed"),
        ("not an array", dumps({"beacon": 1}), "malformed"),
        ("port 0 inside", inner, "malformed"),
        ("node id of 15 bytes inside", short_node, "malformed"),
        ("host longer than 253 bytes inside", long_host, "malformed"),
        ("over 512 bytes", dumps([1, key_id(KEY_A), NONCE_1, b"\x00" * 500]), "limit"),
    ]
    return [{"name": n, "hex": d.hex(), "error": e} for n, d, e in cases]


def build() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "about": (
            "Vectors for spec/discovery.md section 4 (the multicast beacon). 'beacon': "
            "sealing 'content' (its encoding is 'content_hex') under 'key' with 'nonce' gives "
            "'hex'; 'beacon_key' is the HKDF output. A keyring holding KEY_A (primary) and "
            "KEY_B opens every 'beacon' to its 'content'. 'invalid_beacon': opening 'hex' "
            "with that keyring must fail with 'error' (the wire.md error codes)."
        ),
        "keyring": {"primary": KEY_A.hex(), "accepted": [KEY_B.hex()]},
        "beacon": valid_vectors(),
        "invalid_beacon": invalid_vectors(),
    }


def main(argv: list[str]) -> int:
    text = render(build())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{FILE} is stale: run python spec/vectors/generate_discovery.py")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
