"""Regenerate ``spec/vectors/membership.json`` deterministically.

Usage: ``python spec/vectors/generate_membership.py [--check]``. With ``--check`` nothing
is written; the script exits 1 if the committed file differs from what it would write.

Like ``generate.py`` (whose primitives it reuses), this script never calls the project's
encoders: it builds every byte from ``cbor2``, ``hashlib`` and the ``cryptography``
Ed25519 primitives, following ``spec/membership.md``. Ed25519 signatures are
deterministic (RFC 8032), so fixed seeds give fixed signatures. The formula values are
computed here with ``math`` from the formulas of ``spec/membership.md``, sections 7, 9
and 10, not read from the code.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import (
    EPOCH,
    FORMAT,
    KEY_A,
    MAX_U64,
    SEED_1,
    SEED_2,
    dumps,
    node_id,
    public_key,
    render,
    seal_packet,
    to_json,
)

HERE = Path(__file__).resolve().parent
FILE = "membership.json"

SEED_3 = bytes(range(0x80, 0xA0))
SIGNING_CONTEXT = b"foundation-p2p membership announcement v1\x00"
MAX_METADATA_WIRE = 60_000
MAX_RECORD_BYTES = MAX_METADATA_WIRE + 512
STATE_NAMES = ["alive", "suspect", "failed", "left"]

# Frame type numbers (spec/membership.md, section 3).
PING, ACK, PING_REQ, NACK, ANNOUNCEMENT, SUSPECT, DEAD, PUSH_PULL = range(16, 24)


def sign(seed: bytes, data: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(data)


def record_value(
    seed: bytes,
    *,
    incarnation: int,
    state: int,
    host: str,
    port: int,
    name: str,
    metadata: bytes,
    observer: bool,
    node: bytes | None = None,
    key: bytes | None = None,
    extensions: dict[int, bytes] | None = None,
) -> list[Any]:
    pk = public_key(seed) if key is None else key
    nid = node_id(pk) if node is None else node
    value: list[Any] = [nid, pk, incarnation, state, host, port, name, metadata, observer]
    if extensions:  # spec/membership.md 3.5: the element is written only when not empty
        value.append(extensions)
    return value


def announcement_json(record: bytes, signature: bytes) -> dict[str, Any]:
    """The frame's JSON form: wire fields plus the decoded record fields."""
    fields = cbor2.loads(record)
    nid, pk, inc, state, host, port, name, metadata, observer = fields[:9]
    extensions = fields[9] if len(fields) == 10 else {}
    return {
        "type": "announcement",
        "record": record.hex(),
        "signature": signature.hex(),
        "node_id": nid.hex(),
        "public_key": pk.hex(),
        "incarnation": inc,
        "state": STATE_NAMES[state],
        "host": host,
        "port": port,
        "name": name,
        "metadata": metadata.hex(),
        "observer": observer,
        "extensions": [[k, v.hex()] for k, v in sorted(extensions.items())],
    }


def signed(seed: bytes, value: list[Any]) -> tuple[bytes, bytes]:
    record = dumps(value)
    return record, sign(seed, SIGNING_CONTEXT + record)


# -- signing ---------------------------------------------------------------------------


ANNOUNCEMENTS: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "alive at incarnation 0: a node's first announcement",
        SEED_1,
        dict(
            incarnation=0,
            state=0,
            host="127.0.0.1",
            port=7946,
            name="n1",
            metadata=b"",
            observer=False,
        ),
    ),
    (
        "alive with CBOR metadata on IPv6",
        SEED_2,
        dict(
            incarnation=5,
            state=0,
            host="::1",
            port=40001,
            name="db-2",
            metadata=dumps({"role": "db", "zone": "eu-1"}),
            observer=False,
        ),
    ),
    (
        "left: a graceful leave",
        SEED_2,
        dict(
            incarnation=6,
            state=3,
            host="::1",
            port=40001,
            name="db-2",
            metadata=b"",
            observer=False,
        ),
    ),
    (
        "an observer with an empty name",
        SEED_3,
        dict(
            incarnation=0,
            state=0,
            host="192.0.2.7",
            port=0,
            name="",
            metadata=b"",
            observer=True,
        ),
    ),
    (
        "1024 bytes of metadata (the default max_metadata_bytes)",
        SEED_1,
        dict(
            incarnation=7,
            state=0,
            host="node-1.example.com",
            port=65535,
            name="n1",
            metadata=bytes(i % 251 for i in range(1024)),
            observer=False,
        ),
    ),
    (
        "a non-ASCII name, 64 characters",
        SEED_3,
        dict(
            incarnation=1,
            state=0,
            host="10.0.0.3",
            port=7946,
            name="n\u00f6de-" + "\u00e9" * 59,
            metadata=b"\xa0",
            observer=False,
        ),
    ),
    (
        "alive with extension 1, a channels topic set (spec/channels.md section 6)",
        SEED_2,
        dict(
            incarnation=9,
            state=0,
            host="10.0.0.2",
            port=7946,
            name="db-2",
            metadata=b"",
            observer=False,
            extensions={1: dumps(["events", "room:1"])},
        ),
    ),
    (
        "alive with two extensions: a wildcard topic set (key 1) and key 300",
        SEED_3,
        dict(
            incarnation=2,
            state=0,
            host="10.0.0.3",
            port=7946,
            name="n3",
            metadata=dumps({"zone": "b"}),
            observer=False,
            extensions={300: b"\x00\x01", 1: dumps(True)},
        ),
    ),
    (
        "incarnation 2^64-1",
        SEED_1,
        dict(
            incarnation=MAX_U64,
            state=0,
            host="h" * 253,
            port=1,
            name="n1",
            metadata=b"",
            observer=False,
        ),
    ),
]


def signing_vectors() -> list[dict[str, Any]]:
    out = []
    for name, seed, fields in ANNOUNCEMENTS:
        value = record_value(seed, **fields)
        record, signature = signed(seed, value)
        assert len(signature) == 64
        out.append(
            {
                "name": name,
                "seed": seed.hex(),
                "public_key": public_key(seed).hex(),
                "node_id": node_id(public_key(seed)).hex(),
                "record_value": to_json(value),
                "record": record.hex(),
                "signed_bytes": (SIGNING_CONTEXT + record).hex(),
                "signature": signature.hex(),
                "hex": dumps([ANNOUNCEMENT, record, signature]).hex(),
                "cddl": "announcement",
            }
        )
    return out


def forged_vectors() -> list[dict[str, Any]]:
    """Well-formed announcements that must fail verification (``bad_signature``)."""
    base = record_value(SEED_1, **ANNOUNCEMENTS[0][2])
    record, signature = signed(SEED_1, base)

    def flip(data: bytes, index: int, bit: int = 0) -> bytes:
        out = bytearray(data)
        out[index] ^= 1 << bit
        return bytes(out)

    moved = list(base)
    moved[5] = 7947  # port changed after signing
    other_id = list(base)
    other_id[0] = node_id(public_key(SEED_2))  # a node id that is not H(public key)
    other_key = list(base)
    other_key[1] = public_key(SEED_2)  # key of node 2 under node 1's id, signed by node 1
    impostor = record_value(SEED_2, **ANNOUNCEMENTS[0][2])  # node 2's record...
    forged: list[tuple[str, bytes, bytes]] = [
        ("one bit flipped in the signature", record, flip(signature, 10)),
        ("the record changed after signing (port)", dumps(moved), signature),
        (
            "node id not derived from the public key (signed correctly by that key)",
            dumps(other_id),
            sign(SEED_1, SIGNING_CONTEXT + dumps(other_id)),
        ),
        (
            "another node's public key under this node id, signed by this node",
            dumps(other_key),
            sign(SEED_1, SIGNING_CONTEXT + dumps(other_key)),
        ),
        (
            "a record of node 2 signed by node 1 (a cluster member speaking for another)",
            dumps(impostor),
            sign(SEED_1, SIGNING_CONTEXT + dumps(impostor)),
        ),
        ("signed without the context prefix", record, sign(SEED_1, record)),
        ("an all-zero signature", record, bytes(64)),
        (
            "a higher incarnation with the signature of incarnation 0 (replayed signature)",
            dumps([*base[:2], 1, *base[3:]]),
            signature,
        ),
    ]
    out = []
    for name, rec, sig in forged:
        out.append(
            {
                "name": name,
                "hex": dumps([ANNOUNCEMENT, rec, sig]).hex(),
                "error": "bad_signature",
                "cddl": "announcement",
            }
        )
    return out


# -- frames ----------------------------------------------------------------------------


def frame_vectors() -> list[dict[str, Any]]:
    id1 = node_id(public_key(SEED_1))
    id2 = node_id(public_key(SEED_2))
    id3 = node_id(public_key(SEED_3))
    a0_rec, a0_sig = signed(SEED_1, record_value(SEED_1, **ANNOUNCEMENTS[0][2]))
    a1_rec, a1_sig = signed(SEED_2, record_value(SEED_2, **ANNOUNCEMENTS[1][2]))
    a3_rec, a3_sig = signed(SEED_3, record_value(SEED_3, **ANNOUNCEMENTS[3][2]))
    frames: list[tuple[str, dict[str, Any], list[Any], str]] = [
        (
            "swim-ping seq 1",
            {"type": "swim-ping", "seq": 1, "target": id2.hex()},
            [PING, 1, id2],
            "swim-ping",
        ),
        (
            "swim-ping seq 2^64-1",
            {"type": "swim-ping", "seq": MAX_U64, "target": id3.hex()},
            [PING, MAX_U64, id3],
            "swim-ping",
        ),
        ("swim-ack seq 1", {"type": "swim-ack", "seq": 1}, [ACK, 1], "swim-ack"),
        ("swim-ack seq 300", {"type": "swim-ack", "seq": 300}, [ACK, 300], "swim-ack"),
        (
            "ping-req through a relay, IPv4",
            {"type": "ping-req", "seq": 9, "target": id2.hex(), "host": "10.0.0.2", "port": 7946},
            [PING_REQ, 9, id2, "10.0.0.2", 7946],
            "ping-req",
        ),
        (
            "ping-req, IPv6 host without brackets, port 0",
            {"type": "ping-req", "seq": 0, "target": id3.hex(), "host": "fe80::1", "port": 0},
            [PING_REQ, 0, id3, "fe80::1", 0],
            "ping-req",
        ),
        (
            "ping-req, a 253-character DNS name, port 65535",
            {
                "type": "ping-req",
                "seq": 70000,
                "target": id1.hex(),
                "host": "a" * 253,
                "port": 65535,
            },
            [PING_REQ, 70000, id1, "a" * 253, 65535],
            "ping-req",
        ),
        ("nack seq 9", {"type": "nack", "seq": 9}, [NACK, 9], "nack"),
        (
            "suspect: node 2 at incarnation 5, accused by node 1",
            {"type": "suspect", "node": id2.hex(), "incarnation": 5, "accuser": id1.hex()},
            [SUSPECT, id2, 5, id1],
            "suspect",
        ),
        (
            "dead: node 3 at incarnation 0, declared by node 2",
            {"type": "dead", "node": id3.hex(), "incarnation": 0, "accuser": id2.hex()},
            [DEAD, id3, 0, id2],
            "dead",
        ),
        (
            "dead at incarnation 2^64-1",
            {"type": "dead", "node": id3.hex(), "incarnation": MAX_U64, "accuser": id1.hex()},
            [DEAD, id3, MAX_U64, id1],
            "dead",
        ),
        (
            "announcement: node 1 alive at incarnation 0",
            announcement_json(a0_rec, a0_sig),
            [ANNOUNCEMENT, a0_rec, a0_sig],
            "announcement",
        ),
        (
            "announcement: an observer",
            announcement_json(a3_rec, a3_sig),
            [ANNOUNCEMENT, a3_rec, a3_sig],
            "announcement",
        ),
        (
            "push-pull: the initiator's only chunk, two entries",
            {
                "type": "push-pull",
                "exchange": 77,
                "index": 0,
                "reply": True,
                "last": True,
                "entries": [
                    {**announcement_json(a0_rec, a0_sig), "held": "alive"},
                    {**announcement_json(a1_rec, a1_sig), "held": "suspect"},
                ],
            },
            [PUSH_PULL, 77, 0, True, True, [[a0_rec, a0_sig, 0], [a1_rec, a1_sig, 1]]],
            "push-pull",
        ),
        (
            "push-pull: an answer chunk that is not the last, one failed entry",
            {
                "type": "push-pull",
                "exchange": 77,
                "index": 3,
                "reply": False,
                "last": False,
                "entries": [{**announcement_json(a3_rec, a3_sig), "held": "failed"}],
            },
            [PUSH_PULL, 77, 3, False, False, [[a3_rec, a3_sig, 2]]],
            "push-pull",
        ),
        (
            "push-pull: an empty last chunk",
            {
                "type": "push-pull",
                "exchange": 0,
                "index": 1,
                "reply": False,
                "last": True,
                "entries": [],
            },
            [PUSH_PULL, 0, 1, False, True, []],
            "push-pull",
        ),
    ]
    out = []
    for name, frame, value, rule in frames:
        data = dumps(value)
        assert cbor2.loads(data) == value
        out.append(
            {"name": name, "hex": data.hex(), "frame": frame, "value": to_json(value), "cddl": rule}
        )
    return out


def frame_list_vectors() -> list[dict[str, Any]]:
    id1 = node_id(public_key(SEED_1))
    id2 = node_id(public_key(SEED_2))
    a0_rec, a0_sig = signed(SEED_1, record_value(SEED_1, **ANNOUNCEMENTS[0][2]))
    lists: list[tuple[str, list[Any], list[dict[str, Any]], int]] = [
        (
            "buddy system: a ping to a suspect carries the suspicion",
            [[PING, 4, id2], [SUSPECT, id2, 5, id1]],
            [
                {"type": "swim-ping", "seq": 4, "target": id2.hex()},
                {"type": "suspect", "node": id2.hex(), "incarnation": 5, "accuser": id1.hex()},
            ],
            0,
        ),
        (
            "an ack with a piggybacked announcement",
            [[ACK, 4], [ANNOUNCEMENT, a0_rec, a0_sig]],
            [{"type": "swim-ack", "seq": 4}, announcement_json(a0_rec, a0_sig)],
            0,
        ),
        (
            "static prober and membership frames in one packet",
            [[1, 3], [PING, 3, id2], [2, 8]],
            [
                {"type": "ping", "seq": 3},
                {"type": "swim-ping", "seq": 3, "target": id2.hex()},
                {"type": "ack", "seq": 8},
            ],
            0,
        ),
        (
            "reserved membership type 24 is skipped and counted",
            [[24, "later"], [NACK, 1]],
            [{"type": "nack", "seq": 1}],
            1,
        ),
    ]
    return [
        {
            "name": n,
            "hex": dumps(v).hex(),
            "value": to_json(v),
            "frames": f,
            "unknown": u,
            "cddl": "membership-frames",
        }
        for n, v, f, u in lists
    ]


def invalid_frame_vectors() -> list[dict[str, Any]]:
    id1 = node_id(public_key(SEED_1))
    id2 = node_id(public_key(SEED_2))
    good = record_value(SEED_1, **ANNOUNCEMENTS[0][2])
    rec, sig = signed(SEED_1, good)

    def rec_with(index: int, value: Any) -> bytes:
        changed = list(good)
        changed[index] = value
        return dumps(changed)

    def ann(record: Any, signature: Any = sig) -> list[Any]:
        return [ANNOUNCEMENT, record, signature]

    big_meta = record_value(SEED_1, **{**ANNOUNCEMENTS[0][2], "metadata": bytes(60_001)})
    huge_meta = record_value(SEED_1, **{**ANNOUNCEMENTS[0][2], "metadata": bytes(MAX_RECORD_BYTES)})
    entry = [rec, sig, 0]
    # (decoder, name, bytes, error, rejected by the CDDL rule?)
    cases: list[tuple[str, str, bytes, str, bool]] = [
        # swim-ping
        ("swim-ping", "target of 15 bytes", dumps([PING, 1, id2[:15]]), "malformed", True),
        ("swim-ping", "target of 17 bytes", dumps([PING, 1, id2 + b"\x00"]), "malformed", True),
        ("swim-ping", "target is text", dumps([PING, 1, "n2"]), "malformed", True),
        (
            "swim-ping",
            "no target (a static-prober ping shape)",
            dumps([PING, 1]),
            "malformed",
            True,
        ),
        ("swim-ping", "an extra element", dumps([PING, 1, id2, 0]), "malformed", True),
        ("swim-ping", "seq is negative", dumps([PING, -1, id2]), "malformed", True),
        (
            "swim-ping",
            "seq is a bignum above 2^64-1",
            b"\x83\x10\xc2\x49\x01" + bytes(8) + dumps(id2),
            "malformed",
            True,
        ),
        (
            "swim-ping",
            "seq with a non-shortest argument",
            b"\x83\x10\x18\x01" + dumps(id2),
            "malformed",
            False,
        ),
        (
            "swim-ping",
            "swim-ack bytes given to the swim-ping decoder",
            dumps([ACK, 1]),
            "malformed",
            True,
        ),
        (
            "swim-ping",
            "frame type as the float 16.0",
            b"\x83\xf9\x4c\x00\x01" + dumps(id2),
            "malformed",
            True,
        ),
        # swim-ack, nack
        ("swim-ack", "seq missing", dumps([ACK]), "malformed", True),
        ("swim-ack", "seq is text", dumps([ACK, "1"]), "malformed", True),
        ("swim-ack", "a target as in swim-ping", dumps([ACK, 1, id2]), "malformed", True),
        ("nack", "seq is null", dumps([NACK, None]), "malformed", True),
        ("nack", "seq is a float", dumps([NACK, 1.5]), "malformed", True),
        # ping-req
        ("ping-req", "empty host", dumps([PING_REQ, 1, id2, "", 7946]), "malformed", True),
        (
            "ping-req",
            "host of 254 characters",
            dumps([PING_REQ, 1, id2, "a" * 254, 7946]),
            "malformed",
            False,
        ),
        ("ping-req", "port 65536", dumps([PING_REQ, 1, id2, "h", 65536]), "malformed", True),
        ("ping-req", "port negative", dumps([PING_REQ, 1, id2, "h", -1]), "malformed", True),
        ("ping-req", "host as bytes", dumps([PING_REQ, 1, id2, b"h", 1]), "malformed", True),
        ("ping-req", "no port", dumps([PING_REQ, 1, id2, "h"]), "malformed", True),
        ("ping-req", "target of 8 bytes", dumps([PING_REQ, 1, id2[:8], "h", 1]), "malformed", True),
        # suspect, dead
        ("suspect", "node of 15 bytes", dumps([SUSPECT, id2[:15], 1, id1]), "malformed", True),
        ("suspect", "accuser missing", dumps([SUSPECT, id2, 1]), "malformed", True),
        ("suspect", "incarnation negative", dumps([SUSPECT, id2, -3, id1]), "malformed", True),
        ("dead", "accuser is text", dumps([DEAD, id2, 1, "n1"]), "malformed", True),
        ("dead", "incarnation is true", dumps([DEAD, id2, True, id1]), "malformed", True),
        (
            "dead",
            "suspect bytes given to the dead decoder",
            dumps([SUSPECT, id2, 1, id1]),
            "malformed",
            True,
        ),
        # announcement
        ("announcement", "signature of 63 bytes", dumps(ann(rec, sig[:63])), "malformed", True),
        ("announcement", "signature missing", dumps([ANNOUNCEMENT, rec]), "malformed", True),
        (
            "announcement",
            "record inline as an array, not a byte string",
            dumps(ann(good)),
            "malformed",
            True,
        ),
        ("announcement", "record is not CBOR", dumps(ann(b"\xff\xfe")), "malformed", True),
        (
            "announcement",
            "record with trailing bytes",
            dumps(ann(rec + b"\x00")),
            "malformed",
            True,
        ),
        ("announcement", "record of 8 fields", dumps(ann(dumps(good[:8]))), "malformed", True),
        (
            "announcement",
            "record state 1 (suspect): a node never announces that",
            dumps(ann(rec_with(3, 1))),
            "malformed",
            True,
        ),
        ("announcement", "record state 2 (failed)", dumps(ann(rec_with(3, 2))), "malformed", True),
        (
            "announcement",
            "public key of 31 bytes",
            dumps(ann(rec_with(1, bytes(31)))),
            "malformed",
            True,
        ),
        (
            "announcement",
            "node id of 15 bytes",
            dumps(ann(rec_with(0, id1[:15]))),
            "malformed",
            True,
        ),
        ("announcement", "empty host", dumps(ann(rec_with(4, ""))), "malformed", True),
        ("announcement", "port 70000", dumps(ann(rec_with(5, 70000))), "malformed", True),
        (
            "announcement",
            "name of 65 characters",
            dumps(ann(rec_with(6, "n" * 65))),
            "malformed",
            False,
        ),
        ("announcement", "metadata as text", dumps(ann(rec_with(7, "m"))), "malformed", True),
        ("announcement", "observer as 0", dumps(ann(rec_with(8, 0))), "malformed", True),
        ("announcement", "incarnation negative", dumps(ann(rec_with(2, -1))), "malformed", True),
        ("announcement", "metadata of 60001 bytes", dumps(ann(dumps(big_meta))), "limit", True),
        (
            "announcement",
            "extensions not a map",
            dumps(ann(dumps([*good, [1, b"x"]]))),
            "malformed",
            True,
        ),
        (
            "announcement",
            "extension key 65536",
            dumps(ann(dumps([*good, {65536: b"x"}]))),
            "malformed",
            True,
        ),
        (
            "announcement",
            "extension value as text",
            dumps(ann(dumps([*good, {1: "events"}]))),
            "malformed",
            True,
        ),
        (
            "announcement",
            "record of 11 fields",
            dumps(ann(dumps([*good, {}, False]))),
            "malformed",
            True,
        ),
        (
            "announcement",
            "17 extensions",
            dumps(ann(dumps([*good, {k: b"" for k in range(17)}]))),
            "limit",
            False,
        ),
        (
            "announcement",
            "60001 bytes of extensions",
            dumps(ann(dumps([*good, {1: bytes(30_000), 2: bytes(30_001)}]))),
            "limit",
            False,
        ),
        (
            "announcement",
            f"record longer than {MAX_RECORD_BYTES} bytes",
            dumps(ann(dumps(huge_meta))),
            "malformed",
            True,
        ),
        # push-pull
        ("push-pull", "5 elements", dumps([PUSH_PULL, 1, 0, True, True]), "malformed", True),
        ("push-pull", "reply as 1", dumps([PUSH_PULL, 1, 0, 1, True, []]), "malformed", True),
        (
            "push-pull",
            "entries not an array",
            dumps([PUSH_PULL, 1, 0, True, True, {}]),
            "malformed",
            True,
        ),
        (
            "push-pull",
            "an entry of 2 elements",
            dumps([PUSH_PULL, 1, 0, True, True, [[rec, sig]]]),
            "malformed",
            True,
        ),
        (
            "push-pull",
            "an entry with state 4",
            dumps([PUSH_PULL, 1, 0, True, True, [[rec, sig, 4]]]),
            "malformed",
            True,
        ),
        (
            "push-pull",
            "an entry with a broken record",
            dumps([PUSH_PULL, 1, 0, True, True, [entry, [b"\x01", sig, 0]]]),
            "malformed",
            True,
        ),
        (
            "push-pull",
            "4097 entries: one more than max_collection_items",
            dumps([PUSH_PULL, 1, 0, True, True, [[0]] * 4097]),
            "limit",
            True,
        ),
    ]
    out = []
    for decoder, name, data, code, rejects in cases:
        item: dict[str, Any] = {"decoder": decoder, "name": name, "hex": data.hex(), "error": code}
        if rejects:
            item["cddl_rejects"] = decoder
        out.append(item)
    return out


def invalid_frame_list_vectors() -> list[dict[str, Any]]:
    id1 = node_id(public_key(SEED_1))
    id2 = node_id(public_key(SEED_2))
    rec, sig = signed(SEED_1, record_value(SEED_1, **ANNOUNCEMENTS[0][2]))
    cases = [
        (
            "a good announcement then a malformed suspect: nothing is acted on",
            dumps([[ANNOUNCEMENT, rec, sig], [SUSPECT, id2, 1]]),
            "malformed",
        ),
        (
            "a swim-ping without its target among good frames",
            dumps([[1, 1], [PING, 1], [ACK, 1]]),
            "malformed",
        ),
        (
            "a forged-looking but well-formed suspect after a bad nack",
            dumps([[NACK, -1], [SUSPECT, id2, 1, id1]]),
            "malformed",
        ),
    ]
    out = [
        {"name": n, "hex": d.hex(), "error": c, "cddl_rejects": "membership-frames"}
        for n, d, c in cases
    ]
    # Not one CBOR item (spec/wire.md section 9, rule 5): refused by every decoder, the
    # liberal one included. (pycddl ignores trailing bytes, so no "cddl_rejects".)
    out.append(
        {
            "name": "a membership frame list followed by a stray byte",
            "hex": (dumps([[PING, 1, id2], [NACK, 1]]) + b"\x00").hex(),
            "error": "malformed",
        }
    )
    return out


def non_deterministic_record_vectors() -> list[dict[str, Any]]:
    """Records that are well-formed CBOR but not deterministic: accepted as received."""
    good = record_value(SEED_1, **ANNOUNCEMENTS[0][2])
    canonical = dumps(good)
    # The port 7946 (0x19 1f0a) written with a 4-byte argument instead of 2.
    wide = canonical.replace(b"\x19\x1f\x0a", b"\x1a\x00\x00\x1f\x0a", 1)
    assert wide != canonical and cbor2.loads(wide) == good
    signature = sign(SEED_1, SIGNING_CONTEXT + wide)
    return [
        {
            "name": "port with a 4-byte argument, signed over the bytes as sent",
            "record": wide.hex(),
            "signature": signature.hex(),
            "hex": dumps([ANNOUNCEMENT, wide, signature]).hex(),
            "verifies": True,
            "canonical_record": canonical.hex(),
        }
    ]


# -- a sealed packet carrying membership frames ----------------------------------------


def packet_vectors() -> list[dict[str, Any]]:
    id1 = node_id(public_key(SEED_1))
    id2 = node_id(public_key(SEED_2))
    rec, sig = signed(SEED_1, record_value(SEED_1, **ANNOUNCEMENTS[0][2]))
    frames = [[PING, 1, id2], [ANNOUNCEMENT, rec, sig], [SUSPECT, id2, 0, id1]]
    entry = {"name": "a probe of node 2 with node 1's announcement piggybacked"}
    entry.update(seal_packet(KEY_A, id1, EPOCH, 0, dumps(frames)))
    entry["frames"] = to_json(frames)
    entry["cddl"] = "gossip-packet"
    return [entry]


# -- transitions: scripted sequences with hand-written expectations ---------------------

SEED_4 = bytes(range(0xC0, 0xE0))
SEED_RECEIVER = bytes(range(0xA0, 0xC0))


def _ann(
    seed: bytes, incarnation: int, *, state: int = 0, metadata: bytes = b"", observer: bool = False
) -> list[Any]:
    value = record_value(
        seed,
        incarnation=incarnation,
        state=state,
        host="10.0.0." + str(seed[0] // 32),
        port=7946,
        name="n" + str(seed[0] // 32),
        metadata=metadata,
        observer=observer,
    )
    record, signature = signed(seed, value)
    return [ANNOUNCEMENT, record, signature]


def transition_vectors() -> dict[str, Any]:
    """Scripted inputs to one receiver and what the spec says must follow.

    The expectations are written by hand from spec/membership.md (sections 2, 5, 7, 10
    and 12), not computed: they are a second opinion on the state machine.
    """
    n1, n2, n3, n4 = (node_id(public_key(s)) for s in (SEED_1, SEED_2, SEED_3, SEED_4))
    me = node_id(public_key(SEED_RECEIVER))
    names = {n1: "n1", n2: "n2", n3: "n3", n4: "n4", me: "receiver"}
    setup = [_ann(SEED_2, 0), _ann(SEED_3, 0), _ann(SEED_4, 0)]  # N = 4 with n1

    def step(
        t: float,
        frames: list[list[Any]] | None,
        expect: dict[bytes, Any],
        events: list[tuple[str, bytes]],
        sender: bytes = n2,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"t": t}
        if frames is not None:
            out["from"] = sender.hex()
            out["frames"] = dumps(frames).hex()
        out["expect"] = [
            {"node": k.hex(), "who": names[k]}
            | ({"state": None} if v is None else {"state": v[0], "incarnation": v[1]})
            for k, v in expect.items()
        ]
        out["events"] = [[name, k.hex()] for name, k in events]
        return out

    def sus(node: bytes, inc: int, accuser: bytes) -> list[Any]:
        return [SUSPECT, node, inc, accuser]

    def dead(node: bytes, inc: int, accuser: bytes) -> list[Any]:
        return [DEAD, node, inc, accuser]

    def start(t: float = 0.0) -> dict[str, Any]:
        return step(
            t,
            [*setup, _ann(SEED_1, 0)],
            {n1: ("alive", 0)},
            [
                ("MemberJoined", n2),
                ("MemberJoined", n3),
                ("MemberJoined", n4),
                ("MemberJoined", n1),
            ],
        )

    A, S, F, L = "alive", "suspect", "failed", "left"
    seqs: list[dict[str, Any]] = [
        {
            "name": "an alive announcement adds a member",
            "steps": [step(0, [_ann(SEED_1, 5)], {n1: (A, 5)}, [("MemberJoined", n1)])],
        },
        {
            "name": "an alive announcement at an equal or lower incarnation is stale",
            "steps": [
                step(0, [_ann(SEED_1, 5)], {n1: (A, 5)}, [("MemberJoined", n1)]),
                step(1, [_ann(SEED_1, 4)], {n1: (A, 5)}, []),
                step(2, [_ann(SEED_1, 5, metadata=b"\x01")], {n1: (A, 5)}, []),
            ],
        },
        {
            "name": "a higher incarnation with new metadata is an update",
            "steps": [
                step(0, [_ann(SEED_1, 0)], {n1: (A, 0)}, [("MemberJoined", n1)]),
                step(1, [_ann(SEED_1, 1, metadata=b"\xa0")], {n1: (A, 1)}, [("MemberUpdated", n1)]),
            ],
        },
        {
            "name": "suspect at the known incarnation, then a refutation",
            "steps": [
                start(),
                step(1, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(2, [_ann(SEED_1, 1)], {n1: (A, 1)}, [("MemberAlive", n1)]),
            ],
        },
        {
            "name": "suspect at a lower incarnation is stale",
            "steps": [
                step(0, [_ann(SEED_1, 1)], {n1: (A, 1)}, [("MemberJoined", n1)]),
                step(1, [sus(n1, 0, n2)], {n1: (A, 1)}, []),
            ],
        },
        {
            "name": "an opinion above the member's announced incarnation is ignored",
            "steps": [
                start(),
                step(1, [sus(n1, 3, n2)], {n1: (A, 0)}, []),
                step(2, [dead(n1, MAX_U64, n2)], {n1: (A, 0)}, []),
                step(3, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(4, [_ann(SEED_1, 1)], {n1: (A, 1)}, [("MemberAlive", n1)]),
                step(5, [dead(n1, 2, n3)], {n1: (A, 1)}, []),
            ],
        },
        {
            "name": "dead overrides alive at the same incarnation; only a higher one rejoins",
            "steps": [
                start(),
                step(1, [dead(n1, 0, n2)], {n1: (F, 0)}, [("MemberFailed", n1)]),
                step(2, [_ann(SEED_1, 0)], {n1: (F, 0)}, []),
                step(3, [sus(n1, 0, n3)], {n1: (F, 0)}, []),
                step(4, [_ann(SEED_1, 1)], {n1: (A, 1)}, [("MemberJoined", n1)]),
            ],
        },
        {
            "name": "a left announcement: no suspicion or failure after it, rejoin above it",
            "steps": [
                start(),
                step(1, [_ann(SEED_1, 1, state=3)], {n1: (L, 1)}, [("MemberLeft", n1)]),
                step(2, [sus(n1, 1, n2), dead(n1, 1, n3)], {n1: (L, 1)}, []),
                step(3, [_ann(SEED_1, 1)], {n1: (L, 1)}, []),
                step(4, [_ann(SEED_1, 2)], {n1: (A, 2)}, [("MemberJoined", n1)]),
            ],
        },
        {
            "name": "a left announcement at the same incarnation overrides failed",
            "steps": [
                start(),
                step(1, [dead(n1, 0, n2)], {n1: (F, 0)}, [("MemberFailed", n1)]),
                step(2, [_ann(SEED_1, 0, state=3)], {n1: (L, 0)}, [("MemberLeft", n1)]),
            ],
        },
        {
            "name": "opinions and left announcements about unknown members change nothing",
            "steps": [
                step(
                    0, [sus(n1, 0, n2), dead(n1, 0, n2), _ann(SEED_1, 0, state=3)], {n1: None}, []
                ),
            ],
        },
        {
            "name": "suspicion timeout without confirmations is max (N = 4: 24 s)",
            "steps": [
                start(),
                step(10, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(33.9, None, {n1: (S, 0)}, []),
                step(34, None, {n1: (F, 0)}, [("MemberFailed", n1)]),
            ],
        },
        {
            "name": "one confirmation: timeout 24 - 20 ln 2 / ln 3 = 11.381 s",
            "steps": [
                start(),
                step(10, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(11, [sus(n1, 0, n3)], {n1: (S, 0)}, [], sender=n3),
                step(21.3, None, {n1: (S, 0)}, []),
                step(21.4, None, {n1: (F, 0)}, [("MemberFailed", n1)]),
            ],
        },
        {
            "name": "k = 2 confirmations bring the timeout down to min (4 s)",
            "steps": [
                start(),
                step(10, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(11, [sus(n1, 0, n3)], {n1: (S, 0)}, [], sender=n3),
                step(12, [sus(n1, 0, n4)], {n1: (S, 0)}, [], sender=n4),
                step(13.9, None, {n1: (S, 0)}, []),
                step(14, None, {n1: (F, 0)}, [("MemberFailed", n1)]),
            ],
        },
        {
            "name": "the first accuser again, or one accuser twice, is not a confirmation",
            "steps": [
                start(),
                step(10, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(11, [sus(n1, 0, n2), sus(n1, 0, n3)], {n1: (S, 0)}, []),
                step(12, [sus(n1, 0, n3)], {n1: (S, 0)}, [], sender=n3),
                step(21.3, None, {n1: (S, 0)}, []),
                step(21.4, None, {n1: (F, 0)}, [("MemberFailed", n1)]),
            ],
        },
        {
            "name": "a confirmation after the shortened timeout has passed fails the member",
            "steps": [
                start(),
                step(10, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(22, None, {n1: (S, 0)}, []),
                step(23, [sus(n1, 0, n3)], {n1: (F, 0)}, [("MemberFailed", n1)], sender=n3),
            ],
        },
        {
            "name": "a dead ends a suspicion at once",
            "steps": [
                start(),
                step(10, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(11, [dead(n1, 0, n3)], {n1: (F, 0)}, [("MemberFailed", n1)], sender=n3),
                step(40, None, {n1: (F, 0)}, []),
            ],
        },
        {
            "name": "lifeguard off: the timeout is min (4 s) and confirmations change nothing",
            "config": {"lifeguard": False},
            "steps": [
                start(),
                step(10, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(13.9, [sus(n1, 0, n3)], {n1: (S, 0)}, [], sender=n3),
                step(14, None, {n1: (F, 0)}, [("MemberFailed", n1)]),
            ],
        },
        {
            "name": "N = 3: k is 0 (N - 2 < suspicion_mult - 2), the timeout is min",
            "steps": [
                step(
                    0,
                    [_ann(SEED_2, 0), _ann(SEED_3, 0), _ann(SEED_1, 0)],
                    {n1: (A, 0)},
                    [("MemberJoined", n2), ("MemberJoined", n3), ("MemberJoined", n1)],
                ),
                step(10, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
                step(13.9, None, {n1: (S, 0)}, []),
                step(14, None, {n1: (F, 0)}, [("MemberFailed", n1)]),
            ],
        },
        {
            "name": "a failed member is forgotten after reap_after_s; its old record stays out",
            "steps": [
                start(),
                step(1, [dead(n1, 0, n2)], {n1: (F, 0)}, [("MemberFailed", n1)]),
                step(3600, None, {n1: (F, 0)}, []),
                step(3612, None, {n1: None}, [("MemberReaped", n1)]),
                step(3613, [_ann(SEED_1, 0)], {n1: None}, []),
                step(3614, [_ann(SEED_1, 1)], {n1: (A, 1)}, [("MemberJoined", n1)]),
            ],
        },
        {
            "name": "opinions about an observer are ignored",
            "steps": [
                step(0, [_ann(SEED_3, 2, observer=True)], {n3: (A, 2)}, [("MemberJoined", n3)]),
                step(1, [sus(n3, 2, n2), dead(n3, 2, n2)], {n3: (A, 2)}, []),
            ],
        },
        {
            "name": "push-pull: entries merge as announcements; suspect/failed only suspect; "
            "the observer receiver keeps a stranger that failed or left",
            "steps": [
                step(
                    0,
                    [
                        [
                            PUSH_PULL,
                            9,
                            0,
                            False,
                            True,
                            [
                                [*_ann(SEED_1, 0)[1:], 2],
                                [*_ann(SEED_2, 0)[1:], 0],
                            ],
                        ]
                    ],
                    {n1: (F, 0), n2: (A, 0)},
                    [("MemberFailed", n1), ("MemberJoined", n2)],
                ),
                step(
                    1,
                    [
                        [
                            PUSH_PULL,
                            9,
                            1,
                            False,
                            True,
                            [
                                [*_ann(SEED_3, 0)[1:], 0],
                                [*_ann(SEED_4, 0)[1:], 0],
                                [*_ann(SEED_1, 1)[1:], 1],
                            ],
                        ]
                    ],
                    {n1: (S, 1)},
                    [
                        ("MemberJoined", n3),
                        ("MemberJoined", n4),
                        ("MemberJoined", n1),
                        ("MemberSuspect", n1),
                    ],
                ),
                step(
                    2,
                    [[PUSH_PULL, 10, 0, False, True, [[*_ann(SEED_3, 0)[1:], 2]]]],
                    {n3: (S, 0)},
                    [("MemberSuspect", n3)],
                ),
            ],
        },
        {
            "name": "push-pull: the observer receiver keeps a stranger that left, as left",
            "steps": [
                step(
                    0,
                    [[PUSH_PULL, 11, 0, False, True, [[*_ann(SEED_4, 2, state=3)[1:], 3]]]],
                    {n4: (L, 2)},
                    [("MemberLeft", n4)],
                ),
            ],
        },
        {
            "name": "an opinion about the receiver at incarnation 2^64-1 does not break it",
            "steps": [
                start(),
                step(1, [dead(me, MAX_U64, n2)], {me: (A, 0)}, []),
                step(2, [sus(n1, 0, n2)], {n1: (S, 0)}, [("MemberSuspect", n1)]),
            ],
        },
        {
            "name": "the receiver refutes an opinion at its own incarnation, ignores higher ones",
            "steps": [
                start(),
                step(1, [sus(me, 0, n2)], {me: (A, 1)}, []),
                step(2, [dead(me, 7, n2)], {me: (A, 1)}, []),
                step(3, [sus(me, 2, n3)], {me: (A, 1)}, []),
                step(4, [sus(me, 0, n3)], {me: (A, 1)}, []),
                step(5, [dead(me, 1, n3)], {me: (A, 2)}, []),
            ],
        },
        {
            "name": "a signed record of the receiver above its incarnation is outbid",
            "steps": [
                start(),
                step(1, [_ann(SEED_RECEIVER, 5)], {me: (A, 6)}, []),
                step(2, [_ann(SEED_RECEIVER, 3)], {me: (A, 6)}, []),
            ],
        },
    ]
    return {
        "receiver": {
            "seed": SEED_RECEIVER.hex(),
            "node_id": me.hex(),
            "address": ["127.0.0.1", 7946],
            "incarnation": 0,
            "config": {"profile": "lan", "observer": True},
        },
        "sequences": seqs,
    }


# -- formulas --------------------------------------------------------------------------


PROFILES = {
    "lan": {
        "probe_interval_s": 1.0,
        "suspicion_mult": 4,
        "suspicion_max_mult": 6,
        "retransmit_mult": 4,
        "push_pull_interval_s": 30.0,
        "gossip_interval_s": 0.2,
        "gossip_nodes": 3,
        "dead_retry_interval_s": 5.0,
        "dead_retry_max_interval_s": 60.0,
    },
    "wan": {
        "probe_interval_s": 5.0,
        "suspicion_mult": 6,
        "suspicion_max_mult": 6,
        "retransmit_mult": 4,
        "push_pull_interval_s": 60.0,
        "gossip_interval_s": 0.5,
        "gossip_nodes": 4,
        "dead_retry_interval_s": 15.0,
        "dead_retry_max_interval_s": 300.0,
    },
    "local": {
        "probe_interval_s": 1.0,
        "suspicion_mult": 3,
        "suspicion_max_mult": 6,
        "retransmit_mult": 2,
        "push_pull_interval_s": 15.0,
        "gossip_interval_s": 0.1,
        "gossip_nodes": 3,
        "dead_retry_interval_s": 2.0,
        "dead_retry_max_interval_s": 30.0,
    },
}


def dead_retry_gaps(p: dict[str, Any], count: int) -> list[float]:
    gaps, gap = [], p["dead_retry_interval_s"]
    for _ in range(count):
        gaps.append(gap)
        gap = min(gap * 2, p["dead_retry_max_interval_s"])
    return gaps


def suspicion_min(p: dict[str, Any], n: int) -> float:
    return float(p["suspicion_mult"] * max(1.0, math.log10(max(n, 1))) * p["probe_interval_s"])


def formula_vectors() -> dict[str, Any]:
    per_n = []
    for profile, p in PROFILES.items():
        for n in (1, 2, 5, 10, 32, 33, 64, 100, 1000, 10_000):
            low = suspicion_min(p, n)
            scale = 1 if n <= 32 else math.ceil(math.log2(n) - math.log2(32)) + 1
            limit = p["retransmit_mult"] * max(1, math.ceil(math.log10(n + 1)))
            per_n.append(
                {
                    "profile": profile,
                    "n": n,
                    "suspicion_min_s": low,
                    "suspicion_max_s": p["suspicion_max_mult"] * low,
                    "suspicion_max_s_without_lifeguard": low,
                    "retransmit_limit": limit,
                    "push_pull_interval_s": p["push_pull_interval_s"] * scale,
                    "hot_window_s": (math.ceil(limit / p["gossip_nodes"]) + 1)
                    * p["gossip_interval_s"],
                    "dead_retry_gaps_s": dead_retry_gaps(p, 8),
                }
            )
    timeouts = []
    for low, high, k in ((4.0, 24.0, 3), (8.0, 48.0, 2), (12.0, 72.0, 5), (4.0, 24.0, 0)):
        for confirmations in range(0, k + 2):
            if k < 1:
                value = low
            else:
                frac = math.log(confirmations + 1) / math.log(k + 1)
                value = max(low, high - (high - low) * frac)
            timeouts.append(
                {
                    "min_s": low,
                    "max_s": high,
                    "expected": k,
                    "confirmations": confirmations,
                    "timeout_s": value,
                }
            )
    packet_room = []
    for max_packet_bytes, share, chunk in (
        (1400, 0.25, 1100),
        (512, 0.25, 1100),
        (65_507, 0.5, 60_000),
        (1400, 0.0, 200),
    ):
        budget = max_packet_bytes - 64 - 3
        packet_room.append(
            {
                "max_packet_bytes": max_packet_bytes,
                "user_payload_share": share,
                "push_pull_chunk_bytes": chunk,
                "budget": budget,
                "piggyback_cap": math.floor(budget * (1 - share)),
                "chunk_bytes": max(64, min(chunk, budget - 32)),
            }
        )
    return {"per_n": per_n, "suspicion_timeout": timeouts, "packet_room": packet_room}


# -- driver ----------------------------------------------------------------------------


def membership_vectors() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "about": "Membership frames (spec/membership.md). 'signing': announcements built "
        "from an Ed25519 seed: the record (deterministic CBOR of 'record_value'), the "
        "signed bytes (context || record), the signature, the whole frame 'hex'. "
        "'forged_announcement': well-formed announcement frames that decode and must fail "
        "verification with 'error'. 'frame': one frame, decoded by its own class and "
        "re-encoded byte-exact ('frame' is its JSON description; a push-pull entry's "
        "'held' is the state the sender holds it in). 'frame_list': decode_frames(hex) "
        "gives 'frames' and skips 'unknown'. 'invalid_frame': the named decoder raises "
        "'error'. 'invalid_frame_list': decode_frames raises 'error'. "
        "'non_deterministic_record': accepted and verified over the bytes as sent. "
        "'packet': a sealed gossip packet (keyring and replay as in packets.json) whose "
        "plaintext holds membership frames. 'formulas': timeouts, retransmit limits and "
        "push-pull intervals of spec/membership.md sections 7, 9 and 10 (seconds). "
        "'transitions': one receiver (an observer, so that its own probes do not interfere; "
        "'config' overrides per sequence) is given, step by step, the frames of 'frames' "
        "from 'from' at time 't' (seconds), with every timer due by 't' run before and "
        "after; 'expect' is the state and incarnation of each listed member afterwards "
        "(state null: not in the table), 'events' the membership events of the step.",
        "signing_context": SIGNING_CONTEXT.hex(),
        "signing": signing_vectors(),
        "forged_announcement": forged_vectors(),
        "frame": frame_vectors(),
        "frame_list": frame_list_vectors(),
        "invalid_frame": invalid_frame_vectors(),
        "invalid_frame_list": invalid_frame_list_vectors(),
        "non_deterministic_record": non_deterministic_record_vectors(),
        "packet": packet_vectors(),
        "formulas": formula_vectors(),
        "transitions": transition_vectors(),
    }


def main(argv: list[str]) -> int:
    text = render(membership_vectors())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"out of date: {FILE}", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
