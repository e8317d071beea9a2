"""Regenerate ``spec/vectors/transport.json`` deterministically.

Usage: ``python spec/vectors/generate_transport.py [--check]``. With ``--check`` nothing
is written; the script exits 1 if the committed file differs from what it would write.

This script never calls the project's encoders: every byte is built from ``cbor2``
(canonical mode) and the ``cryptography`` ChaCha20-Poly1305 primitive, following
``spec/transport.md``. The ACK ranges are computed here from the gap/range rule of
section 4, not read from the code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
FILE = "transport.json"
FORMAT = 1

CID_CLIENT = bytes.fromhex("c1c1c1c1c1c1c1c1")
CID_SERVER = bytes.fromhex("5e5e5e5e5e5e5e5e")
SEND_KEY = bytes(range(0x10, 0x30))
SEND_IV = bytes(range(0xA0, 0xAC))
KEY_ID = 0xE648E1D1  # key_id of 00 01 .. 1f (spec/wire.md section 2's example)


def dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def ack_list(largest: int, delay: int, ranges: list[tuple[int, int]]) -> list[Any]:
    """The ACK frame array for inclusive ranges, newest first (spec section 4)."""
    low, high = ranges[0]
    assert high == largest
    out: list[Any] = [2, largest, delay, high - low]
    prev_low = low
    for low, high in ranges[1:]:
        out += [prev_low - high - 2, high - low]
        prev_low = low
    return out


def frame_vectors() -> list[dict[str, Any]]:
    """One entry per frame layout: the JSON description, the CDDL rule, the bytes."""
    entries: list[tuple[str, str, dict[str, Any], list[Any]]] = [
        ("PING", "ping", {"type": "PING"}, [1]),
        (
            "ACK with one range",
            "ack",
            {"type": "ACK", "ranges": [[0, 9]], "ack_delay_us": 1500},
            ack_list(9, 1500, [(0, 9)]),
        ),
        (
            "ACK with three ranges",
            "ack",
            {"type": "ACK", "ranges": [[95, 100], [80, 90], [70, 70]], "ack_delay_us": 25000},
            ack_list(100, 25000, [(95, 100), (80, 90), (70, 70)]),
        ),
        (
            "ACK of a large packet number",
            "ack",
            {"type": "ACK", "ranges": [[1 << 40, (1 << 40) + 3]], "ack_delay_us": 0},
            ack_list((1 << 40) + 3, 0, [(1 << 40, (1 << 40) + 3)]),
        ),
        (
            "RESET_STREAM",
            "reset-stream",
            {"type": "RESET_STREAM", "stream_id": 4, "error_code": 7, "final_size": 70000},
            [4, 4, 7, 70000],
        ),
        (
            "STOP_SENDING",
            "stop-sending",
            {"type": "STOP_SENDING", "stream_id": 1, "error_code": 0},
            [5, 1, 0],
        ),
        (
            "STREAM at offset 0 without fin",
            "stream",
            {"type": "STREAM", "stream_id": 0, "offset": 0, "fin": False, "data": "68656c6c6f"},
            [8, 0, 0, False, b"hello"],
        ),
        (
            "STREAM with fin at a 4-byte offset",
            "stream",
            {
                "type": "STREAM",
                "stream_id": 6,
                "offset": 1_000_000,
                "fin": True,
                "data": "00" * 30,
            },
            [8, 6, 1_000_000, True, bytes(30)],
        ),
        (
            "STREAM with only fin",
            "stream",
            {"type": "STREAM", "stream_id": 3, "offset": 12, "fin": True, "data": ""},
            [8, 3, 12, True, b""],
        ),
        ("MAX_DATA", "max-data", {"type": "MAX_DATA", "maximum": 4194304}, [16, 4194304]),
        (
            "MAX_STREAM_DATA",
            "max-stream-data",
            {"type": "MAX_STREAM_DATA", "stream_id": 8, "maximum": 2097152},
            [17, 8, 2097152],
        ),
        (
            "MAX_STREAMS bidirectional",
            "max-streams",
            {"type": "MAX_STREAMS", "uni": False, "maximum": 101},
            [18, False, 101],
        ),
        (
            "MAX_STREAMS unidirectional",
            "max-streams",
            {"type": "MAX_STREAMS", "uni": True, "maximum": 16},
            [18, True, 16],
        ),
        ("DATA_BLOCKED", "data-blocked", {"type": "DATA_BLOCKED", "limit": 262144}, [20, 262144]),
        (
            "STREAM_DATA_BLOCKED",
            "stream-data-blocked",
            {"type": "STREAM_DATA_BLOCKED", "stream_id": 4, "limit": 65536},
            [21, 4, 65536],
        ),
        (
            "CONNECTION_CLOSE by the application",
            "connection-close",
            {"type": "CONNECTION_CLOSE", "error_code": 0, "frame_type": None, "reason": "bye"},
            [28, 0, None, "bye"],
        ),
        (
            "CONNECTION_CLOSE for a flow-control violation",
            "connection-close",
            {
                "type": "CONNECTION_CLOSE",
                "error_code": 3,
                "frame_type": 8,
                "reason": "data beyond the limit",
            },
            [28, 3, 8, "data beyond the limit"],
        ),
        ("HANDSHAKE_DONE", "handshake-done", {"type": "HANDSHAKE_DONE"}, [30]),
        (
            "DATAGRAM",
            "datagram",
            {"type": "DATAGRAM", "data": "0102030405"},
            [48, bytes([1, 2, 3, 4, 5])],
        ),
        (
            "PARAMETERS (the defaults)",
            "parameters",
            {
                "type": "PARAMETERS",
                "max_data": 4194304,
                "max_stream_data": 1048576,
                "max_streams_bidi": 100,
                "max_streams_uni": 100,
            },
            [64, 4194304, 1048576, 100, 100],
        ),
    ]
    return [
        {"name": name, "cddl": rule, "frame": desc, "hex": dumps(value).hex()}
        for name, rule, desc, value in entries
    ]


def frame_sequences(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several frames in one payload: their encodings concatenated (a CBOR sequence)."""
    by_name = {f["name"]: f for f in frames}
    picks = [
        ["ACK with one range", "STREAM at offset 0 without fin"],
        ["PARAMETERS (the defaults)", "HANDSHAKE_DONE", "MAX_DATA", "PING"],
        ["ACK with three ranges", "DATAGRAM", "STREAM with fin at a 4-byte offset"],
    ]
    return [
        {
            "name": " + ".join(names),
            "frames": [by_name[n]["frame"] for n in names],
            "hex": "".join(by_name[n]["hex"] for n in names),
        }
        for names in picks
    ]


def invalid_frames() -> list[dict[str, Any]]:
    """Payloads the frame decoder must refuse, with the error code."""
    cases: list[tuple[str, bytes, str]] = [
        ("empty payload", b"", "malformed"),
        ("not an array", dumps(1), "malformed"),
        ("empty array", dumps([]), "malformed"),
        ("unknown frame type", dumps([7]), "malformed"),
        ("PING with an extra element", dumps([1, 0]), "malformed"),
        ("frame type not in shortest form", b"\x81\x18\x01", "malformed"),
        ("STREAM fin not a boolean", dumps([8, 0, 0, 1, b"a"]), "malformed"),
        ("STREAM data runs past the payload", dumps([8, 0, 0, False, b"abc"])[:-1], "malformed"),
        ("STREAM offset not in shortest form", b"\x85\x08\x00\x19\x00\x05\xf4\x40", "malformed"),
        ("STREAM offset above 2^62-1", dumps([8, 0, 1 << 62, False, b""]), "malformed"),
        ("ACK first range below packet 0", dumps([2, 5, 0, 6]), "malformed"),
        ("ACK later range below packet 0", dumps([2, 5, 0, 1, 3, 0]), "malformed"),
        ("ACK with an unpaired gap", dumps([2, 5, 0, 1, 0]), "malformed"),
        ("ACK with 1001 ranges", dumps([2, 10**9, 0, 0] + [0, 0] * 1000), "limit"),
        ("CONNECTION_CLOSE reason not UTF-8", b"\x84\x18\x1c\x00\xf6\x62\xff\xfe", "malformed"),
        ("CONNECTION_CLOSE reason of 1025 bytes", dumps([28, 0, None, "r" * 1025]), "limit"),
        ("MAX_DATA as a float", b"\x82\x10\xfb\x00\x00\x00\x00\x00\x00\x00\x00", "malformed"),
        ("MAX_DATA negative", dumps([16, -1]), "malformed"),
        ("indefinite-length array", b"\x9f\x01\xff", "malformed"),
        ("257 frames", dumps([1]) * 257, "limit"),
        ("valid frame then garbage", dumps([1]) + b"\xff", "malformed"),
    ]
    return [{"name": n, "hex": h.hex(), "error": e} for n, h, e in cases]


def _initial(key_id: int, scid: bytes, noise: bytes, min_bytes: int = 1200) -> bytes:
    body_len = len(dumps([1, 2, key_id, scid, noise, b""])) - 1  # without the padding
    pad = 0
    while body_len + len(dumps(bytes(pad))) < min_bytes:
        pad += 1
    packet = dumps([1, 2, key_id, scid, noise, bytes(pad)])
    assert len(packet) in (min_bytes, min_bytes + 1)
    return packet


def packet_vectors(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """Handshake packets and a sealed 1-RTT packet with its key, IV, nonce and AAD."""
    noise_1 = bytes(range(32))  # stand-ins: the Noise messages are handshake.md's business
    noise_2 = bytes(range(100, 100 + 48))
    initial = _initial(KEY_ID, CID_CLIENT, noise_1)
    handshake = dumps([1, 3, CID_CLIENT, CID_SERVER, noise_2])
    plaintext = bytes.fromhex(frames[0]["hex"] + frames[6]["hex"])  # ACK + STREAM
    one_rtt = []
    for pn in (0, 1, 70000):
        aad = b"\x85" + dumps([1, 4, CID_SERVER, pn])[1:]  # the 5-element head, then 4 fields
        nonce = (int.from_bytes(SEND_IV, "big") ^ pn).to_bytes(12, "big")
        sealed = ChaCha20Poly1305(SEND_KEY).encrypt(nonce, plaintext, aad)
        packet = dumps([1, 4, CID_SERVER, pn, sealed])
        assert packet.startswith(aad)
        one_rtt.append(
            {
                "name": f"1-RTT packet, pn {pn}",
                "cddl": "one-rtt-packet",
                "dcid": CID_SERVER.hex(),
                "pn": pn,
                "key": SEND_KEY.hex(),
                "iv": SEND_IV.hex(),
                "nonce": nonce.hex(),
                "aad": aad.hex(),
                "plaintext": plaintext.hex(),
                "hex": packet.hex(),
            }
        )
    return {
        "handshake": [
            {
                "name": "initial packet (padded to 1200 bytes)",
                "cddl": "initial-packet",
                "type": 2,
                "key_id": KEY_ID,
                "scid": CID_CLIENT.hex(),
                "dcid": None,
                "noise": noise_1.hex(),
                "hex": initial.hex(),
            },
            {
                "name": "handshake packet (message 2, server to client)",
                "cddl": "handshake-packet",
                "type": 3,
                "key_id": None,
                "scid": CID_SERVER.hex(),
                "dcid": CID_CLIENT.hex(),
                "noise": noise_2.hex(),
                "hex": handshake.hex(),
            },
        ],
        "one_rtt": one_rtt,
    }


RESET_SEEDS = (bytes(range(0x60, 0x80)), bytes(range(0x40, 0x60)))
"""Identity seeds (those of spec/vectors/handshake.json's responder and initiator)."""


def stateless_resets() -> list[dict[str, Any]]:
    """Section 11.3: the reset key of an identity seed, the token of a connection id, and
    the 31-byte reset packet with fixed stand-ins for its random bytes."""
    out = []
    cases = [
        (RESET_SEEDS[0], CID_SERVER, bytes(range(0xD0, 0xD8)), 5, 0x77),
        (RESET_SEEDS[0], CID_CLIENT, bytes(8), 0, 0x00),
        (RESET_SEEDS[1], CID_SERVER, bytes(range(0xE0, 0xE8)), 23, 0xFF),
    ]
    for seed, cid, random_cid, pn, filler in cases:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None,
            info=b"foundation-p2p stateless reset v1",
        ).derive(seed)
        token = hmac.new(key, cid, hashlib.sha256).digest()[:16]
        packet = dumps([1, 4, random_cid, pn, bytes([filler]) + token])
        assert len(packet) == 31
        out.append(
            {
                "name": f"reset for cid {cid.hex()} (seed {seed[:2].hex()}..), pn {pn}",
                "cddl": "stateless-reset",
                "identity_seed": seed.hex(),
                "reset_key": key.hex(),
                "cid": cid.hex(),
                "token": token.hex(),
                "random": (random_cid + bytes([pn, filler])).hex(),
                "hex": packet.hex(),
            }
        )
    return out


def invalid_packets() -> list[dict[str, Any]]:
    """Packets a parser must refuse: ``parser`` names which (handshake or one_rtt)."""
    cid = CID_SERVER
    cases: list[tuple[str, str, bytes, str]] = [
        ("initial without padding", "handshake", dumps([1, 2, 1, cid, b"n"]), "malformed"),
        ("initial with a 7-byte cid", "handshake", dumps([1, 2, 1, cid[:7], b"n", b""]),
         "malformed"),
        ("initial key id above 2^32", "handshake", dumps([1, 2, 1 << 32, cid, b"n", b""]),
         "malformed"),
        ("handshake noise as text", "handshake", dumps([1, 3, cid, cid, "n"]), "malformed"),
        ("handshake with a trailing byte", "handshake", dumps([1, 3, cid, cid, b"n"]) + b"\x00",
         "malformed"),
        ("version 2", "handshake", dumps([2, 3, cid, cid, b"n"]), "unsupported_version"),
        ("1-RTT sealed shorter than the tag", "one_rtt", dumps([1, 4, cid, 0, bytes(15)]),
         "malformed"),
        ("1-RTT pn of 2^62", "one_rtt", dumps([1, 4, cid, 1 << 62, bytes(16)]), "malformed"),
        ("1-RTT pn not in shortest form", "one_rtt",
         b"\x85\x01\x04\x48" + cid + b"\x18\x05\x50" + bytes(16), "malformed"),
        ("1-RTT truncated", "one_rtt", dumps([1, 4, cid, 0, bytes(20)])[:-1], "malformed"),
        ("1-RTT with 6 elements", "one_rtt", dumps([1, 4, cid, 0, bytes(16), 0]), "malformed"),
    ]
    return [{"name": n, "parser": p, "hex": h.hex(), "error": e} for n, p, h, e in cases]


def padding_vectors() -> dict[str, Any]:
    """PADDING frames and a path MTU probe packet (sections 4 and 8.1): kept apart from
    'frames' so that a decoder predating PADDING is tested on the rest unchanged."""
    frames = [
        {"name": f"PADDING of {n} bytes", "cddl": "padding-frame", "length": n,
         "hex": dumps([0, bytes(n)]).hex()}
        for n in (0, 3, 1400)
    ]
    invalid = [
        {"name": n, "hex": h.hex(), "error": e}
        for n, h, e in [
            ("PADDING without its byte string", dumps([0]), "malformed"),
            ("PADDING with an integer for the bytes", dumps([0, 5]), "malformed"),
            ("PADDING running past the payload", dumps([0, bytes(10)])[:-1], "malformed"),
            ("PADDING with a filler byte that is not zero", dumps([0, b"\x00\x01\x00"]),
             "malformed"),
        ]
    ]
    # A probe of exactly 1472 bytes (an IPv4 path with a 1500-byte MTU): PING + PADDING,
    # sealed as any 1-RTT packet. prefix (4 + cid + pn) + sealed head (3) + tag (16) +
    # PING (2) + PADDING head (2 + 3) + filler = 1472.
    pn = 9
    size = 1472
    aad = b"\x85" + dumps([1, 4, CID_SERVER, pn])[1:]
    filler = size - len(aad) - 3 - 16 - 2 - 5
    plaintext = dumps([1]) + dumps([0, bytes(filler)])
    nonce = (int.from_bytes(SEND_IV, "big") ^ pn).to_bytes(12, "big")
    sealed = ChaCha20Poly1305(SEND_KEY).encrypt(nonce, plaintext, aad)
    packet = dumps([1, 4, CID_SERVER, pn, sealed])
    assert len(packet) == size and packet.startswith(aad)
    probe = {
        "name": f"path MTU probe of {size} bytes, pn {pn}",
        "cddl": "one-rtt-packet",
        "size": size,
        "dcid": CID_SERVER.hex(),
        "pn": pn,
        "key": SEND_KEY.hex(),
        "iv": SEND_IV.hex(),
        "padding_length": filler,
        "plaintext": plaintext.hex(),
        "hex": packet.hex(),
    }
    return {"frames": frames, "invalid_frames": invalid, "probe": probe}


def build() -> dict[str, Any]:
    frames = frame_vectors()
    return {
        "format": FORMAT,
        "about": (
            "Connection packets and frames (spec/transport.md). 'frames': one frame each; "
            "'frame' is its JSON description (byte strings as hex, ACK 'ranges' as inclusive "
            "[low, high] pairs, newest first), 'cddl' the rule of spec/transport.cddl it "
            "matches; decode_frames(hex) gives exactly that frame and encoding it gives hex. "
            "'frame_sequences': several frames in one payload. 'invalid_frames': "
            "decode_frames(hex) raises the WireError with code 'error'. 'packets': "
            "'handshake' packets parse to the listed fields; 'one_rtt' packets are sealed "
            "with ChaCha20-Poly1305 under 'key', nonce = iv XOR pn, AAD = 'aad' (the bytes "
            "before sealed), and open to 'plaintext'. 'invalid_packets': the named parser "
            "raises the WireError with code 'error'. 'stateless_resets' (section 11.3): "
            "reset_key = HKDF-SHA256(identity_seed, salt empty, info 'foundation-p2p "
            "stateless reset v1'), token = HMAC-SHA256(reset_key, cid)[:16], and the reset "
            "packet [1, 4, random[0:8], random[8], random[9:10] || token] (31 bytes). "
            "'padding' (sections 4 and 8.1): PADDING 'frames' ('length' filler bytes), "
            "'invalid_frames' as above, and 'probe': a path MTU probe, PING + PADDING "
            "sealed like 'one_rtt' to exactly 'size' bytes."
        ),
        "frames": frames,
        "frame_sequences": frame_sequences(frames),
        "invalid_frames": invalid_frames(),
        "packets": packet_vectors(frames),
        "invalid_packets": invalid_packets(),
        "stateless_resets": stateless_resets(),
        "padding": padding_vectors(),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render(build())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text() != text:
            print(f"{FILE} is stale: run python spec/vectors/generate_transport.py")
            return 1
        return 0
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
