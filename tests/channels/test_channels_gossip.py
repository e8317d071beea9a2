"""Topic-set gossip encoding (spec/channels.md section 6)."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.channels.gossip import (
    TopicSet,
    decode_topics,
    encode_topics,
    max_encoded_bytes,
)
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError


def test_round_trip_sorted_and_deduplicated() -> None:
    data = encode_topics(7, 3, ["b", "a", "b", "events"])
    assert data == cbor2.dumps([7, 3, ["a", "b", "events"]], canonical=True)
    assert decode_topics(data) == TopicSet(7, 3, ("a", "b", "events"))


def test_largest_set_fits_its_bound() -> None:
    names = [f"{i:02d}" + "x" * 62 for i in range(64)]
    data = encode_topics(2**64 - 1, 2**64 - 1, names)
    assert len(data) == 4245 <= max_encoded_bytes(64)
    assert decode_topics(data).topics == tuple(sorted(names))


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([1, 2], MalformedError, "expected"),
        ([1, -2, []], MalformedError, "unsigned"),
        ([1, 2, "a"], MalformedError, "array"),
        ([1, 2, ["b", "a"]], MalformedError, "out of order"),
        ([1, 2, ["a", "a"]], MalformedError, "repeated"),
        ([1, 2, ["a b"]], MalformedError, "not allowed"),
        ([1, 2, [1]], MalformedError, "expected a string"),
        ([1, 2, [f"t{i:03d}" for i in range(65)]], LimitError, "65 topics"),
    ],
)
def test_invalid_sets(value: object, error: type[WireError], match: str) -> None:
    with pytest.raises(error, match=match):
        decode_topics(cbor2.dumps(value, canonical=True))


def test_encode_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="max_topics"):
        encode_topics(1, 1, [f"t{i}" for i in range(3)], max_topics=2)
    with pytest.raises(ConfigError, match="epoch"):
        encode_topics(-1, 1, [])
    with pytest.raises(ConfigError, match="topic"):
        encode_topics(1, 1, [""])


def test_too_long_input_is_refused_before_decoding() -> None:
    with pytest.raises(LimitError):
        decode_topics(b"\x00" * 5000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_wire_errors(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_topics(data)
