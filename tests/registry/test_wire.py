"""The registry's sync messages: round trips, and decoders that raise only WireErrors naming
the problem."""

from __future__ import annotations

import contextlib
import random

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.errors import LimitError, MalformedError, WireError
from foundation_p2p.registry.crdt import DotContext, Entry, RegistryState, add_delta
from foundation_p2p.registry.hlc import Stamp
from foundation_p2p.registry.wire import (
    MAX_MESSAGE_BYTES,
    Delta,
    SyncCheck,
    SyncRemoved,
    SyncReply,
    SyncRequest,
    check_name,
    decode_message,
    decode_message_bytes,
    encode_message,
)
from foundation_p2p.wire import cbor

A, B = b"\x01" * 16, b"\x02" * 16


def sample_entry(name: str = "svc", counter: int = 1) -> Entry:
    return Entry(name, {"port": 1}, {"zone": "eu"}, A, Stamp(1_000, 2, A))


def round_trip(msg: object) -> object:
    data = cbor.encode(encode_message(msg))  # type: ignore[arg-type]
    again = decode_message_bytes(data)
    assert cbor.encode(encode_message(again)) == data
    return again


def test_every_message_type_round_trips() -> None:
    delta = add_delta((A, 1), sample_entry(), [(B, 4)])
    got = round_trip(Delta(delta))
    assert isinstance(got, Delta) and got.state == delta
    req = round_trip(SyncRequest(7, DotContext({A: 3}, [(B, 9)]), list(range(32))))
    assert isinstance(req, SyncRequest) and req.context == DotContext({A: 3}, [(B, 9)])
    rep = round_trip(SyncReply(7, [((A, 1), sample_entry())], None, {3: 9, 1000: 1}, True))
    assert isinstance(rep, SyncReply) and rep.bucket_digests == {3: 9, 1000: 1} and rep.more
    assert rep.entries == [((A, 1), sample_entry())]
    chk = round_trip(SyncCheck(1, [(A, 1), (B, 2)]))
    assert isinstance(chk, SyncCheck) and chk.dots == [(A, 1), (B, 2)]
    rem = round_trip(SyncRemoved(1, []))
    assert isinstance(rem, SyncRemoved) and rem.dots == []


def test_stamp_node_is_the_writer() -> None:
    got = round_trip(Delta(add_delta((B, 1), sample_entry())))
    assert isinstance(got, Delta)
    (entry,) = got.state.entries["svc"].values()
    assert entry.stamp == Stamp(1_000, 2, B)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1, [["n", A, 1, 0, 0, None, 0, {}]], [[], []]], "outside the context"),
        ([2, 1, [[], []], [0] * 32, 5], "expected 4 fields"),
        ([4, -1, []], "outside 0..4294967295"),
        ([4, 1, [[A, 1.5]]], "counter: expected an unsigned integer"),
        ([3, 1, [], None, [], False], "reply digests: expected a map"),
        ([1, [], [[[A, 1], [A, 2]], []]], "not in ascending order"),
    ],
)
def test_decode_errors_name_the_problem(value: object, problem: str) -> None:
    with pytest.raises(MalformedError, match=problem):
        decode_message(value)


def test_value_bound_is_the_configured_one() -> None:
    big = [1, [["n", A, 1, 0, 0, None, "x" * 200, {}]], [[[A, 1]], []]]
    decode_message(big)
    with pytest.raises(LimitError, match="exceeds 100"):
        decode_message(big, max_value_bytes=100)


def test_oversized_input_is_a_limit_error() -> None:
    with pytest.raises(LimitError):
        decode_message_bytes(b"\x80" * (MAX_MESSAGE_BYTES + 1))


def test_large_messages_beyond_a_datagram_decode() -> None:
    entries = [[f"n{i:05d}", A, i + 1, 0, 0, None, "v" * 40, {}] for i in range(2000)]
    value = [1, entries, [[[A, 2000]], []]]
    data = cbor.encode(value)
    assert len(data) > 65_507
    msg = decode_message_bytes(data)
    assert isinstance(msg, Delta) and len(msg.state.entries) == 2000


def test_names_are_checked() -> None:
    assert check_name("ok/name") == "ok/name"
    with pytest.raises(MalformedError, match="lone surrogate"):
        check_name("\ud800")
    with pytest.raises(MalformedError, match="U\\+007F"):
        check_name("a\x7fb")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_a_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_message_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 40))
def test_mutated_valid_messages_decode_or_raise_a_wire_error(seed: int, flips: int) -> None:
    rng = random.Random(seed)
    state = RegistryState()
    state.join(add_delta((A, 1), sample_entry("a")))
    state.join(add_delta((B, 3), sample_entry("b")))
    data = bytearray(cbor.encode(encode_message(Delta(state))))
    for _ in range(flips):
        data[rng.randrange(len(data))] = rng.randrange(256)
    try:
        msg = decode_message_bytes(bytes(data))
    except WireError:
        return
    assert cbor.encode(encode_message(msg)) == bytes(data)


def test_non_plain_cbor_is_refused() -> None:
    tagged = cbor2.dumps([1, [["n", A, 1, 0, 0, None, cbor2.CBORTag(99, 1), {}]], [[[A, 1]], []]])
    with pytest.raises(MalformedError):
        decode_message_bytes(tagged)
