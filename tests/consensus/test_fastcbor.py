"""The hand-rolled CBOR of the apply path gives the same answers as the cbor2 path.

``fastcbor`` and ``KVStore._parse_fast`` must encode exactly what cbor2's canonical mode
encodes, and read only what the general (cbor2 decode + re-encode) path accepts, with the
same result; everything else must be left to that path (``None``).
"""

from __future__ import annotations

import random

import cbor2
import pytest

from foundation_p2p.consensus import kv
from foundation_p2p.consensus.fastcbor import encode_bytes, encode_uint, read_bytes, read_head
from foundation_p2p.consensus.kv import KVLimits, KVStore, SessionRef, _ok
from foundation_p2p.errors import WireError

BOUNDARIES = [0, 1, 23, 24, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 64) - 1]


class SlowKV(KVStore):
    """The store with the hand-rolled reader switched off: the general path only."""

    def _parse_fast(self, data: bytes) -> None:  # type: ignore[override]
        return None


def test_encoders_match_cbor2() -> None:
    rng = random.Random(1)
    values = BOUNDARIES + [rng.randrange(1 << rng.randrange(1, 65)) for _ in range(500)]
    for n in values:
        assert encode_uint(n) == cbor2.dumps(n, canonical=True)
        assert read_head(encode_uint(n), 0, 0) == (n, len(encode_uint(n)))
    for size in (0, 1, 23, 24, 255, 256, 65535, 65536, 70000):
        b = bytes(rng.randrange(256) for _ in range(size))
        assert encode_bytes(b) == cbor2.dumps(b, canonical=True)
        assert read_bytes(encode_bytes(b) + b"x", 0) == (b, len(encode_bytes(b)))
    with pytest.raises(OverflowError):
        encode_uint(1 << 64)


def test_readers_refuse_non_shortest_and_truncated_heads() -> None:
    assert read_head(b"\x18\x17", 0, 0) is None  # 23 in two bytes
    assert read_head(b"\x19\x00\xff", 0, 0) is None
    assert read_head(b"\x1a\x00\x00\xff\xff", 0, 0) is None
    assert read_head(b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff", 0, 0) is None
    assert read_head(b"\x1c", 0, 0) is None  # reserved
    assert read_head(b"\x1f", 0, 0) is None  # indefinite
    assert read_head(b"\x19\x01", 0, 0) is None  # truncated
    assert read_head(b"\x41", 0, 0) is None  # a byte string, not a uint
    assert read_head(b"", 0, 0) is None
    assert read_bytes(b"\x43ab", 0) is None  # shorter than announced
    assert read_bytes(b"\x5f\x41a\xff", 0) is None  # indefinite
    assert read_bytes(b"\x58\x01a", 0) is None  # length 1 in two bytes


@pytest.mark.parametrize(
    "payload", [None, b"", b"v", b"x" * 23, b"x" * 24, b"x" * 300, b"x" * 70000, 5, [True, b"a"]]
)
def test_ok_result_matches_cbor2(payload: object) -> None:
    assert _ok(payload) == cbor2.dumps([0, payload], canonical=True)


def _commands(rng: random.Random) -> list[bytes]:
    def key() -> bytes:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 24, 300])))

    def value() -> bytes:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 24, 256, 2048])))

    def session() -> SessionRef | None:
        if rng.random() < 0.5:
            return None
        return SessionRef(rng.choice(BOUNDARIES), rng.choice(BOUNDARIES[1:]),
                          rng.choice(BOUNDARIES))

    out = []
    for _ in range(300):
        s = session()
        op = rng.randrange(7)
        if op == 0:
            out.append(kv.encode_get(key(), s))
        elif op == 1:
            out.append(kv.encode_put(key(), value(), s))
        elif op == 2:
            out.append(kv.encode_delete(key(), s))
        elif op == 3:
            out.append(kv.encode_cas(key(), rng.choice([None, value()]),
                                     rng.choice([None, value()]), s))
        elif op == 4:
            out.append(kv.encode_range(key(), rng.choice([None, key()]),
                                       rng.choice(BOUNDARIES), s))
        elif op == 5:
            out.append(kv.encode_register())
        else:
            out.append(kv.encode_close(s or SessionRef(1, 1, 0)))
    return out


def _slow(store: KVStore, data: bytes) -> object:
    try:
        return store._parse(data)
    except WireError as exc:
        return type(exc)


def test_the_fast_reader_takes_every_well_formed_command_with_the_same_result() -> None:
    rng = random.Random(7)
    fast, slow = KVStore(), SlowKV()
    for c in _commands(rng):
        got = fast._parse_fast(c)
        assert got is not None, c.hex()
        assert got == slow._parse(c)


def test_the_fast_reader_never_accepts_what_the_general_path_refuses() -> None:
    rng = random.Random(11)
    small = KVLimits(max_key_bytes=24, max_value_bytes=256, max_command_bytes=600)
    fast, slow = KVStore(small), SlowKV(small)
    commands = _commands(rng)
    tried = accepted = 0
    for c in commands:
        variants = [c[:-1], c + b"\x00", c[:3]]
        for _ in range(20):
            b = bytearray(c)
            for _ in range(rng.randrange(1, 3)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            variants.append(bytes(b))
        # the same values in non-shortest forms
        value = cbor2.loads(c)
        variants.append(b"\x98\x03" + c[1:])  # array of 3 with a one-byte length
        if value[1] is not None:
            variants.append(c[:2] + b"\x98\x03" + c[3:])
        for v in [c, *variants]:
            tried += 1
            got = fast._parse_fast(v)
            expected = _slow(slow, v)
            if got is not None:
                accepted += 1
                assert got == expected, v.hex()
            else:
                # left to the general path: the store's answer is that path's
                assert _slow(fast, v) == expected
    assert accepted > len(commands) // 2  # the well-formed ones under the small limits
    assert tried > 20 * len(commands)


def test_apply_results_are_unchanged() -> None:
    rng = random.Random(3)
    fast, slow = KVStore(), SlowKV()
    for i, c in enumerate(_commands(rng), start=1):
        assert fast.apply(i, c) == slow.apply(i, c)
    assert fast.snapshot() == slow.snapshot()


def test_a_proposal_carries_the_envelope_encode_envelope_builds() -> None:
    from test_subsystem_harness import Cluster

    from foundation_p2p.consensus.subsystem import ConsensusConfig, encode_envelope

    c = Cluster(1, config=ConsensusConfig(bootstrap_expect=1, min_voters=1))
    leader = c.wait_leader()
    seen: list[bytes] = []
    leader.sub.on_apply = lambda e, who: seen.append(e.data)
    commands = [kv.encode_put(b"k", b"v" * n) for n in (0, 1, 23, 24, 255, 256, 70000)]
    tickets = [leader.sub.propose(c.now, cmd) for cmd in commands]
    c.run(0.5)
    sub = leader.sub
    # proposed together: each one's floor is the ticket before the oldest pending one
    assert seen == [encode_envelope(sub.node_id, sub.boot_id, t, cmd, tickets[0] - 1)
                    for t, cmd in zip(tickets, commands, strict=True)]


def test_fast_builders_make_the_same_frozen_objects() -> None:
    import dataclasses

    from foundation_p2p.consensus.subsystem import Outcome, _ok_outcome
    from foundation_p2p.consensus.types import Entry, EntryKind, make_entry

    e = make_entry(3, 9, EntryKind.CONF_CHANGE, b"d")
    assert e == Entry(3, 9, EntryKind.CONF_CHANGE, b"d")
    assert hash(e) == hash(Entry(3, 9, EntryKind.CONF_CHANGE, b"d"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.term = 4  # type: ignore[misc]
    o = _ok_outcome(7, b"r")
    assert o == Outcome(7, "ok", value=b"r") and o.ok and o.leader is None and o.reason == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.status = "x"  # type: ignore[misc]


def test_encode_messages_shares_append_bodies_and_gives_the_same_bytes() -> None:
    from foundation_p2p.consensus.messages import (
        Message,
        MessageType,
        decode_message,
        encode_message,
        encode_messages,
    )
    from foundation_p2p.consensus.types import Entry, EntryKind

    rng = random.Random(9)
    ids = [bytes([i]) * 16 for i in range(1, 6)]
    for _ in range(50):
        log = [Entry(rng.choice(BOUNDARIES[1:]), 100 + i, EntryKind(rng.randrange(3)),
                     rng.randbytes(rng.choice([0, 5, 300])))
               for i in range(rng.randrange(1, 40))]
        msgs = []
        for to in ids[1:]:
            lo = rng.choice([0, 0, len(log) // 2, len(log)])
            msgs.append(Message(MessageType.APP, to=to, sender=ids[0], term=rng.choice(BOUNDARIES),
                                log_term=rng.choice(BOUNDARIES), index=99 + lo,
                                commit=rng.choice(BOUNDARIES), entries=log[lo:]))
            if rng.random() < 0.3:
                msgs.append(Message(MessageType.HEARTBEAT, to=to, sender=ids[0], term=3,
                                    commit=7, context=b"c"))
        got = encode_messages(msgs)
        assert got == [encode_message(m) for m in msgs]
        for m, data in zip(msgs, got, strict=True):
            assert decode_message(data) == m

