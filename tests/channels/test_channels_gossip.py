"""The announced topic set's encoding (spec/channels.md section 6): membership
announcement extension 1."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.channels.gossip import (
    WILDCARD,
    WILDCARD_VALUE,
    TopicSet,
    decode_topics,
    encode_topics,
    max_encoded_bytes,
)
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError


def test_round_trip_sorted_and_deduplicated() -> None:
    data = encode_topics(["b", "a", "b", "events"])
    assert data == cbor2.dumps(["a", "b", "events"], canonical=True)
    assert decode_topics(data) == TopicSet(("a", "b", "events"))
    assert decode_topics(data).holds("a") and not decode_topics(data).holds("c")


def test_the_wildcard_is_cbor_true_and_holds_every_topic() -> None:
    assert cbor2.dumps(True) == WILDCARD_VALUE
    assert decode_topics(WILDCARD_VALUE) == WILDCARD
    assert WILDCARD.holds("anything") and WILDCARD.topics == ()


def test_largest_set_fits_its_bound() -> None:
    names = [f"{i:02d}" + "x" * 62 for i in range(64)]
    data = encode_topics(names)
    assert len(data) == 4226 <= max_encoded_bytes(64)
    assert decode_topics(data).topics == tuple(sorted(names))


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (False, MalformedError, "expected an array of topics or true"),
        ({"a": 1}, MalformedError, "expected an array"),
        ("a", MalformedError, "array"),
        (["b", "a"], MalformedError, "out of order"),
        (["a", "a"], MalformedError, "repeated"),
        (["a b"], MalformedError, "not allowed"),
        ([1], MalformedError, "expected a string"),
        ([f"t{i:03d}" for i in range(65)], LimitError, "65 topics"),
    ],
)
def test_invalid_sets(value: object, error: type[WireError], match: str) -> None:
    with pytest.raises(error, match=match):
        decode_topics(cbor2.dumps(value, canonical=True))


def test_encode_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="max_topics"):
        encode_topics([f"t{i}" for i in range(3)], max_topics=2)
    with pytest.raises(ConfigError, match="topic"):
        encode_topics([""])


def test_too_long_input_is_refused_before_decoding() -> None:
    with pytest.raises(LimitError):
        decode_topics(b"\x00" * 5000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_wire_errors(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_topics(data)
