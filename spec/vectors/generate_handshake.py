"""Regenerate ``spec/vectors/handshake.json``: a full connection handshake with fixed keys.

Usage: ``python spec/vectors/generate_handshake.py [--check]``. With ``--check`` nothing is
written; the script exits 1 if the committed file differs from what it would write.

The bytes come from an independent Noise implementation, PyPI ``noiseprotocol``, driven
with the inputs of ``spec/handshake.md``; the PSK, prologue, identity payloads, signatures
and traffic keys are built here from ``cbor2`` and ``cryptography`` (HKDF, Ed25519,
X25519). Nothing from ``foundation_p2p`` is imported, so the vector is a second opinion
on ``foundation_p2p/crypto/noise.py`` and ``handshake.py`` (which
``tests/conformance/test_noise_vectors.py`` checks against it byte for byte).

All keys here are fixed, public test values: never use them for anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from noise.connection import Keypair, NoiseConnection

HERE = Path(__file__).resolve().parent
OUT = HERE / "handshake.json"
FORMAT = 1
PROTOCOL = b"Noise_XXpsk3_25519_ChaChaPoly_SHA256"

# Fixed inputs (spec/handshake.md): public test values only.
CLUSTER_KEY = bytes(range(0x00, 0x20))  # KEY_A of spec/vectors/packets.json
INIT_IDENTITY_SEED = bytes(range(0x40, 0x60))
RESP_IDENTITY_SEED = bytes(range(0x60, 0x80))
INIT_STATIC = hashlib.sha256(b"foundation-p2p vectors: initiator noise static").digest()
RESP_STATIC = hashlib.sha256(b"foundation-p2p vectors: responder noise static").digest()
INIT_EPHEMERAL = hashlib.sha256(b"foundation-p2p vectors: initiator noise ephemeral").digest()
RESP_EPHEMERAL = hashlib.sha256(b"foundation-p2p vectors: responder noise ephemeral").digest()
TRANSPORT_PLAINTEXT = b"first packet payload after the handshake"
INIT_EPOCH = 1_767_225_600_000  # 2026-01-01T00:00:00Z in milliseconds
RESP_EPOCH = 1_767_225_599_999
# each side's connection id, whose stateless reset token its payload announces
INIT_CID = bytes.fromhex("c1c1c1c1c1c1c1c1")
RESP_CID = bytes.fromhex("5e5e5e5e5e5e5e5e")


def hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def key_id(key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(b"foundation-p2p key id v1" + key).digest()[:4], "big")


def node_id(public_key: bytes) -> bytes:
    return hashlib.sha256(b"foundation-p2p node id v1" + public_key).digest()[:16]


def x25519_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def reset_key(seed: bytes) -> bytes:
    """The stateless reset key of an identity seed (spec/transport.md section 12)."""
    return hkdf(seed, b"foundation-p2p stateless reset v1", 32)


def reset_token(seed: bytes, cid: bytes) -> bytes:
    return hmac.new(reset_key(seed), cid, hashlib.sha256).digest()[:16]


def identity_payload(
    seed: bytes, noise_static_public: bytes, epoch: bytes, token: bytes
) -> tuple[bytes, bytes, bytes]:
    """``(payload, identity public key, signature)`` per spec/handshake.md."""
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes_raw()
    signature = private.sign(b"foundation-p2p noise static v2\x00" + noise_static_public + epoch)
    payload = cbor2.dumps([public, epoch, signature, token], canonical=True)
    return payload, public, signature


def noise_side(initiator: bool, psk: bytes, prologue: bytes) -> NoiseConnection:
    conn = NoiseConnection.from_name(PROTOCOL)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_psks(psk=psk)
    conn.set_prologue(prologue)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, INIT_STATIC if initiator else RESP_STATIC)
    conn.set_keypair_from_private_bytes(
        Keypair.EPHEMERAL, INIT_EPHEMERAL if initiator else RESP_EPHEMERAL
    )
    with warnings.catch_warnings():  # "a fixed ephemeral is for testing only": it is
        warnings.simplefilter("ignore", UserWarning)
        conn.start_handshake()
    return conn


def build() -> dict[str, Any]:
    kid = key_id(CLUSTER_KEY)
    psk = hkdf(CLUSTER_KEY, b"foundation-p2p noise psk v1", 32)
    prologue = b"foundation-p2p transport v1" + kid.to_bytes(4, "big")
    init_pub, resp_pub = x25519_public(INIT_STATIC), x25519_public(RESP_STATIC)
    init_epoch, resp_epoch = INIT_EPOCH.to_bytes(8, "big"), RESP_EPOCH.to_bytes(8, "big")
    init_token = reset_token(INIT_IDENTITY_SEED, INIT_CID)
    resp_token = reset_token(RESP_IDENTITY_SEED, RESP_CID)
    init_payload, init_id_pub, init_sig = identity_payload(
        INIT_IDENTITY_SEED, init_pub, init_epoch, init_token
    )
    resp_payload, resp_id_pub, resp_sig = identity_payload(
        RESP_IDENTITY_SEED, resp_pub, resp_epoch, resp_token
    )

    init, resp = noise_side(True, psk, prologue), noise_side(False, psk, prologue)
    m1 = bytes(init.write_message(b""))
    assert bytes(resp.read_message(m1)) == b""
    m2 = bytes(resp.write_message(resp_payload))
    assert bytes(init.read_message(m2)) == resp_payload
    m3 = bytes(init.write_message(init_payload))
    assert bytes(resp.read_message(m3)) == init_payload
    assert init.handshake_finished and resp.handshake_finished
    handshake_hash = bytes(init.get_handshake_hash())
    assert handshake_hash == bytes(resp.get_handshake_hash())
    proto = init.noise_protocol
    k_i2r = bytes(proto.cipher_state_encrypt.k)
    k_r2i = bytes(proto.cipher_state_decrypt.k)
    i2r = hkdf(k_i2r, b"foundation-p2p traffic v1", 44)
    r2i = hkdf(k_r2i, b"foundation-p2p traffic v1", 44)
    # One Noise transport message each way, for a reader checking its split (n = 0).
    t_i2r = bytes(init.encrypt(TRANSPORT_PLAINTEXT))
    assert bytes(resp.decrypt(t_i2r)) == TRANSPORT_PLAINTEXT
    t_r2i = bytes(resp.encrypt(TRANSPORT_PLAINTEXT))
    assert bytes(init.decrypt(t_r2i)) == TRANSPORT_PLAINTEXT

    def side(
        seed: bytes, static: bytes, eph: bytes, id_pub: bytes, epoch: int, cid: bytes
    ) -> dict[str, Any]:
        return {
            "identity_seed": seed.hex(),
            "identity_public_key": id_pub.hex(),
            "boot_epoch": epoch,
            "connection_id": cid.hex(),
            "reset_key": reset_key(seed).hex(),
            "noise_static": static.hex(),
            "noise_static_public": x25519_public(static).hex(),
            "noise_ephemeral": eph.hex(),
            "noise_ephemeral_public": x25519_public(eph).hex(),
        }

    return {
        "format": FORMAT,
        "description": (
            "A connection handshake (spec/handshake.md) with fixed keys, generated by "
            "spec/vectors/generate_handshake.py from noiseprotocol and cryptography."
        ),
        "protocol": PROTOCOL.decode(),
        "inputs": {
            "cluster_key": CLUSTER_KEY.hex(),
            "key_id": kid,
            "initiator": side(
                INIT_IDENTITY_SEED, INIT_STATIC, INIT_EPHEMERAL, init_id_pub, INIT_EPOCH, INIT_CID
            ),
            "responder": side(
                RESP_IDENTITY_SEED, RESP_STATIC, RESP_EPHEMERAL, resp_id_pub, RESP_EPOCH, RESP_CID
            ),
        },
        "derived": {
            "psk": psk.hex(),
            "prologue": prologue.hex(),
            "initiator_node_id": node_id(init_id_pub).hex(),
            "responder_node_id": node_id(resp_id_pub).hex(),
        },
        "messages": [
            {
                "name": "message 1: initiator -> responder (e)",
                "length": len(m1),
                "hex": m1.hex(),
                "payload": None,
            },
            {
                "name": "message 2: responder -> initiator (e, ee, s, es)",
                "length": len(m2),
                "hex": m2.hex(),
                "payload": {
                    "cbor": resp_payload.hex(),
                    "identity_public_key": resp_id_pub.hex(),
                    "boot_epoch": RESP_EPOCH,
                    "signature": resp_sig.hex(),
                    "reset_token": resp_token.hex(),
                },
            },
            {
                "name": "message 3: initiator -> responder (s, se, psk)",
                "length": len(m3),
                "hex": m3.hex(),
                "payload": {
                    "cbor": init_payload.hex(),
                    "identity_public_key": init_id_pub.hex(),
                    "boot_epoch": INIT_EPOCH,
                    "signature": init_sig.hex(),
                    "reset_token": init_token.hex(),
                },
            },
        ],
        "traffic_keys": {
            "handshake_hash": handshake_hash.hex(),
            "split": {"initiator_to_responder": k_i2r.hex(), "responder_to_initiator": k_r2i.hex()},
            "initiator_to_responder": {"key": i2r[:32].hex(), "iv": i2r[32:].hex()},
            "responder_to_initiator": {"key": r2i[:32].hex(), "iv": r2i[32:].hex()},
        },
        "noise_transport": {
            "transport_plaintext": TRANSPORT_PLAINTEXT.hex(),
            "initiator_to_responder": t_i2r.hex(),
            "responder_to_initiator": t_r2i.hex(),
        },
    }


def main(argv: list[str]) -> int:
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text("utf-8") != text:
            print(f"{OUT} differs from what the generator writes", file=sys.stderr)
            return 1
        print(f"{OUT.name}: up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
