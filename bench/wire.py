"""Benchmark the gossip packet path against the bare floor of its two libraries.

Measures, in one run and on the same bytes:

- ``seal_encode``: ``GossipProtection.seal(encode_frames(frames))`` (typed frames to a
  sealed datagram, header and all);
- ``open_decode``: ``GossipProtection.open(packet)`` then ``decode_frames(plaintext)``
  (datagram to typed frames: header parse, key lookup, replay check, AEAD, strict CBOR);
- ``bare_seal``: ``cbor2.dumps(value)`` + ``ChaCha20Poly1305.encrypt(nonce, plaintext, aad)``;
- ``bare_open``: ``ChaCha20Poly1305.decrypt(nonce, sealed, aad)`` + ``cbor2.loads(plaintext)``;

and prints one JSON object as its last line: packets per second (median of several
repetitions) and the ratios ``bare / ours`` (how many times slower we are than the floor).

The typical packet is a ping plus a few piggybacked membership-style frames (node id,
incarnation, address, metadata as an opaque CBOR byte string), about 300-600 bytes.
Membership frames do not exist yet, so this script registers a stand-in frame type (200),
decoded the way hot-path frames should be (one combined type and bound test).

Usage: ``python bench/wire.py [--quick] [--repeat N] [--seconds S] [--stages]``;
``--stages`` adds the time of each stage of open+decode (``open_stages_us``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import cbor2
import cryptography
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.protection import GossipProtection, derive_subkey, nonce_for
from foundation_p2p.errors import MalformedError
from foundation_p2p.wire.frames import (
    FRAME_TYPES,
    MAX_UINT64,
    Frame,
    Ping,
    decode_frames,
    encode_frames,
    register_frame,
)
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits
from foundation_p2p.wire.packet import parse_packet

BENCH_FRAME_TYPE = 200


@dataclass(slots=True)
class MemberUpdate:
    """Stand-in for a SWIM alive/suspect update: ``[200, id, incarnation, host, port, meta]``."""

    TYPE: ClassVar[int] = BENCH_FRAME_TYPE
    node_id: bytes
    incarnation: int
    host: str
    port: int
    meta: bytes
    """Node metadata as an opaque byte string (CBOR inside), as memberlist carries it:
    gossip relays it without decoding; the application decodes it when it reads it."""

    def to_cbor(self) -> list[Any]:
        return [BENCH_FRAME_TYPE, self.node_id, self.incarnation, self.host, self.port, self.meta]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> MemberUpdate:
        # Written the way hot-path frames should be: one unpacking, one combined type and
        # bound test, the error message built only on failure. Bounds in characters are
        # chosen so that 4 UTF-8 bytes a character still fit the byte limits.
        if len(items) != 6:
            raise MalformedError(f"member_update: expected 6 elements, got {len(items)}")
        _, node_id, incarnation, host, port, meta = items
        if not (
            type(node_id) is bytes
            and len(node_id) == 16
            and type(incarnation) is int
            and 0 <= incarnation <= MAX_UINT64
            and type(host) is str
            and len(host) <= 63
            and type(port) is int
            and 0 <= port <= 65535
            and type(meta) is bytes
            and len(meta) <= 1024
        ):
            raise MalformedError("member_update: a field has the wrong type or size")
        return cls(node_id, incarnation, host, port, meta)


def typical_frames(updates: int = 5) -> list[Frame]:
    """A ping and ``updates`` member updates, as a node piggybacks gossip on a probe."""
    frames: list[Frame] = [Ping(123_456)]
    for i in range(updates):
        frames.append(
            MemberUpdate(
                bytes([i]) * 16,
                1000 + i,
                f"10.0.{i}.17",
                7946,
                cbor2.dumps(
                    {"name": f"node-{i:03d}", "role": "worker", "zone": "eu-west-1a"},
                    canonical=True,
                ),
            )
        )
    return frames


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` of wall time."""
    n = 0
    batch = 200
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds in all")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (median taken)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement")
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also time each stage of open+decode (where the time goes), in microseconds",
    )
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 7)
    seconds = args.seconds or (0.15 if args.quick else 0.5)

    if BENCH_FRAME_TYPE not in FRAME_TYPES:
        register_frame(MemberUpdate)
    key = bytes(range(32))
    keyring = Keyring(key)
    sender_id = bytes.fromhex("00112233445566778899aabbccddeeff")
    epoch = 1_790_000_000_000
    frames = typical_frames()

    sender = GossipProtection(keyring, sender_id, epoch)
    plaintext = encode_frames(frames)
    packet = sender.seal(plaintext)
    header, aad, sealed = parse_packet(packet)

    # The receiver's replay window would refuse the same packet twice, so the open path
    # is measured on a fresh window each time: a cleared guard keeps the cost of one
    # check + accept on a known sender, as in steady state.
    receiver = GossipProtection(keyring, bytes(16), epoch)
    receiver.open(packet)
    guard = receiver.replay

    def seal_encode() -> bytes:
        sender.next_packet_number = 0
        return sender.seal(encode_frames(frames))

    def open_decode() -> object:
        guard._senders.clear()
        _, pt = receiver.open(packet)
        return decode_frames(pt, DEFAULT_LIMITS)

    # The same work with nothing but the two libraries, on the same bytes.
    value = [f.to_cbor() for f in frames]
    aead = ChaCha20Poly1305(derive_subkey(key, sender_id, epoch))
    nonce = nonce_for(header.packet_number)
    dumps, loads = cbor2.dumps, cbor2.loads
    assert dumps(value) == plaintext  # the value is already in canonical key order

    def bare_seal() -> bytes:
        return aead.encrypt(nonce, dumps(value), aad)

    def bare_open() -> object:
        return loads(aead.decrypt(nonce, sealed, aad))

    assert bare_seal() == sealed
    assert open_decode() is not None and decode_frames(plaintext).frames == frames

    runs: dict[str, list[float]] = {
        "seal_encode": [],
        "bare_seal": [],
        "open_decode": [],
        "bare_open": [],
    }
    fns = {
        "seal_encode": seal_encode,
        "bare_seal": bare_seal,
        "open_decode": open_decode,
        "bare_open": bare_open,
    }
    for _ in range(repeat):
        for name, fn in fns.items():  # interleaved so drift hits all four alike
            runs[name].append(rate(fn, seconds))
    med = {name: statistics.median(v) for name, v in runs.items()}
    result = {
        "bench": "wire",
        "packet_bytes": len(packet),
        "plaintext_bytes": len(plaintext),
        "frames": len(frames),
        "repeat": repeat,
        "seconds_per_run": seconds,
        "seal_encode_per_s": round(med["seal_encode"]),
        "open_decode_per_s": round(med["open_decode"]),
        "bare_seal_per_s": round(med["bare_seal"]),
        "bare_open_per_s": round(med["bare_open"]),
        "seal_ratio": round(med["bare_seal"] / med["seal_encode"], 2),
        "open_ratio": round(med["bare_open"] / med["open_decode"], 2),
        "goal_ratio_max": 4.0,
        "python": platform.python_version(),
        "cbor2": _version("cbor2"),
        "cryptography": cryptography.__version__,
    }
    result["goal_met"] = result["seal_ratio"] <= 4.0 and result["open_ratio"] <= 4.0
    if args.stages:
        result["open_stages_us"] = _stages(packet, plaintext, receiver, repeat, seconds)
    print(json.dumps(result, sort_keys=True))
    return 0


def _stages(
    packet: bytes, plaintext: bytes, receiver: GossipProtection, repeat: int, seconds: float
) -> dict[str, float]:
    """Median microseconds of each stage of ``open_decode``, and of the bare floor."""
    header, aad, sealed = parse_packet(packet)
    aead = receiver._opener(header.key_id, header.sender, header.boot_epoch)
    nonce = nonce_for(header.packet_number)
    guard = receiver.replay
    value = cbor2.loads(plaintext)
    limits = DEFAULT_LIMITS

    def replay() -> None:
        guard._senders.clear()
        guard.check(header.sender, header.boot_epoch, header.packet_number)
        guard.accept(header.sender, header.boot_epoch, header.packet_number)

    stages: dict[str, Callable[[], object]] = {
        "parse_packet": lambda: parse_packet(packet),
        "replay_check_accept": replay,
        "aead_decrypt": lambda: aead.decrypt(nonce, sealed, aad),
        "cbor_loads_plaintext": lambda: cbor2.loads(plaintext),
        "cbor_canonical_reencode": lambda: cbor2.dumps(value, canonical=True),
        "cbor_plain_reencode": lambda: cbor2.dumps(value),
        "typed_from_cbor": lambda: [FRAME_TYPES[f[0]].from_cbor(f, limits) for f in value],
        "bare_floor_open": lambda: cbor2.loads(aead.decrypt(nonce, sealed, aad)),
    }
    out = {}
    for name, fn in stages.items():
        out[name] = round(1e6 / statistics.median(rate(fn, seconds) for _ in range(repeat)), 2)
    return out


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    sys.exit(main())
