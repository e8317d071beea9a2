"""Benchmark the connection handshake against PyPI ``noiseprotocol`` in the same run.

Measures, in one process, both sides of a complete handshake (three messages, then the
keys), interleaved so drift hits all variants alike:

- ``ours_noise``: our :class:`~foundation_p2p.crypto.noise.HandshakeState` running
  ``Noise_XXpsk3_25519_ChaChaPoly_SHA256`` with payloads the size of the identity payload
  (127 bytes) in messages 2 and 3, then ``split()``;
- ``noiseprotocol``: the same pattern, payloads and split with ``noiseprotocol``'s
  ``NoiseConnection`` (the apples-to-apples baseline; ``ratio`` = ours / theirs);
- ``ours_node``: the node-level :class:`~foundation_p2p.crypto.handshake.Handshake` as the
  transport runs it: PSK and prologue from the keyring, identity payloads, two Ed25519
  verifications, traffic keys, with a per-boot ``NoiseStatic`` (``ours_node_fresh_static``:
  a new static key and signature per handshake instead).

Each figure is the median over rounds of wall time per complete handshake (both sides;
one side costs about half) and CPU time (``time.process_time``) per handshake. Goal (issue
5): ours at most 10 ms. On a shared machine the CPU figures are the stable ones; the
JSON carries the load average so that a wall time inflated by other processes shows. The
round trip time of a real network is not included (``bench/transport.py`` measures the
handshake over UDP).

Usage: ``python bench/handshake.py [--quick] [--rounds N] [--per-round N]``; the last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import cryptography
from noise.connection import Keypair, NoiseConnection

from foundation_p2p.crypto.handshake import IDENTITY_PAYLOAD_BYTES, Handshake, NoiseStatic
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.noise import PROTOCOL_NAME, HandshakeState

PSK = bytes(range(32))
PROLOGUE = b"foundation-p2p transport v1\x00\x00\x00\x01"
PAYLOAD = bytes(IDENTITY_PAYLOAD_BYTES)


def ours_noise() -> None:
    """Both sides of one XXpsk3 handshake with our HandshakeState."""
    i = HandshakeState(
        initiator=True, prologue=PROLOGUE, s=os.urandom(32), psk=PSK, secret_bytes=os.urandom
    )
    r = HandshakeState(
        initiator=False, prologue=PROLOGUE, s=os.urandom(32), psk=PSK, secret_bytes=os.urandom
    )
    r.read_message(i.write_message(b""))
    i.read_message(r.write_message(PAYLOAD))
    r.read_message(i.write_message(PAYLOAD))
    assert i.split()[0].k == r.split()[0].k


def _theirs(initiator: bool) -> NoiseConnection:
    conn = NoiseConnection.from_name(PROTOCOL_NAME.encode())
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_psks(psk=PSK)
    conn.set_prologue(PROLOGUE)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, os.urandom(32))
    conn.start_handshake()
    return conn


def theirs_noise() -> None:
    """Both sides of the same handshake with noiseprotocol (split happens inside)."""
    i, r = _theirs(True), _theirs(False)
    r.read_message(i.write_message(b""))
    i.read_message(r.write_message(PAYLOAD))
    r.read_message(i.write_message(PAYLOAD))
    assert i.handshake_finished and r.handshake_finished


def make_node(fresh_static: bool) -> Callable[[], None]:
    """Both sides of one node-level handshake, as the transport runs it."""
    alice, bob = Identity(bytes(range(32, 64))), Identity(bytes(range(64, 96)))
    ring = Keyring(PSK)
    alice_static = NoiseStatic.generate(alice, os.urandom)
    bob_static = NoiseStatic.generate(bob, os.urandom)

    def run() -> None:
        a = alice_static if not fresh_static else None
        b = bob_static if not fresh_static else None
        init = Handshake.initiate(alice, ring, os.urandom, bob.node_id, static=a)
        resp = Handshake.respond(bob, ring, os.urandom, init.key_id, static=b)
        m1 = init.next_message()
        assert m1 is not None
        resp.receive(m1)
        m2 = resp.next_message()
        assert m2 is not None
        init.receive(m2)
        m3 = init.next_message()
        assert m3 is not None
        resp.receive(m3)
        assert init.keys().send_key == resp.keys().recv_key

    return run


def measure(fn: Callable[[], None], n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) per call over ``n`` calls."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - w0) / n, (time.process_time() - c0) / n


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a second or two in all")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (median taken)")
    parser.add_argument("--per-round", type=int, default=None, help="handshakes per round")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 15)
    per_round = args.per_round or (20 if args.quick else 100)
    if rounds < 1 or per_round < 1:
        parser.error("--rounds and --per-round must be positive")

    warnings.simplefilter("ignore", UserWarning)
    variants: dict[str, Callable[[], None]] = {
        "ours_noise": ours_noise,
        "noiseprotocol": theirs_noise,
        "ours_node": make_node(fresh_static=False),
        "ours_node_fresh_static": make_node(fresh_static=True),
    }
    for fn in variants.values():  # warm up (imports, caches)
        measure(fn, 3)
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            w, c = measure(fn, per_round)
            wall[name].append(w)
            cpu[name].append(c)
    ms = {k: round(statistics.median(v) * 1e3, 3) for k, v in wall.items()}
    cpu_ms = {k: round(statistics.median(v) * 1e3, 3) for k, v in cpu.items()}
    for name in variants:
        print(f"{name:24s} {ms[name]:8.3f} ms/handshake  cpu {cpu_ms[name]:8.3f} ms", flush=True)
    result = {
        "bench": "handshake",
        "protocol": PROTOCOL_NAME,
        "unit": "ms per complete handshake, both sides in one process",
        "ms_p50": ms,
        "cpu_ms_p50": cpu_ms,
        "ours_ms": ms["ours_node"],
        "ours_cpu_ms": cpu_ms["ours_node"],
        "noiseprotocol_ms": ms["noiseprotocol"],
        "ratio_ours_noise_to_noiseprotocol": round(ms["ours_noise"] / ms["noiseprotocol"], 3),
        "ratio_ours_node_to_noiseprotocol": round(ms["ours_node"] / ms["noiseprotocol"], 3),
        "goal_ms": 10.0,
        "goal_met": ms["ours_node"] <= 10.0,
        "rounds": rounds,
        "per_round": per_round,
        "quick": args.quick,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
