"""Unit tests of the deterministic CBOR layer (``foundation_p2p.wire.cbor``)."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.errors import LimitError, MalformedError, WireError
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import WireLimits

MAX_U64 = (1 << 64) - 1

plain_keys = st.one_of(st.integers(0, 23), st.text(max_size=30))
plain = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(1 << 64), MAX_U64),
        st.text(max_size=40),
        st.binary(max_size=40),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(plain_keys, children, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(plain)
def test_plain_values_round_trip_byte_exact(value: Any) -> None:
    data = cbor.encode(value)
    assert cbor.decode(data) == value
    assert cbor.encode(cbor.decode(data)) == data


def _bytewise_order(keys: list[Any]) -> list[Any]:
    return sorted(keys, key=lambda k: cbor2.dumps(k))


def _length_first_order(keys: list[Any]) -> list[Any]:
    return sorted(keys, key=lambda k: (len(cbor2.dumps(k)), cbor2.dumps(k)))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.sets(plain_keys, max_size=12))
def test_length_first_and_bytewise_orders_agree_for_small_uints_and_text(keys: set[Any]) -> None:
    # spec/wire.md: for keys that are uints 0..23 or text strings the RFC 8949 4.2.3
    # (length-first) and 4.2.1 (bytewise) orders are the same, so either reading holds.
    ordered = _length_first_order(list(keys))
    assert ordered == _bytewise_order(list(keys))
    encoded = cbor.encode(dict.fromkeys(keys, 0))
    assert list(cbor.decode(encoded)) == ordered


def test_length_first_and_bytewise_orders_differ_for_other_keys() -> None:
    keys = [24, -1]
    assert _length_first_order(keys) == [-1, 24]
    assert _bytewise_order(keys) == [24, -1]
    assert cbor.encode({24: "u", -1: "n"}) == bytes.fromhex("a2 20 616e 1818 6175".replace(" ", ""))
    with pytest.raises(MalformedError, match="deterministic"):
        cbor.decode(bytes.fromhex("a21818617520616e"))


@pytest.mark.parametrize(
    ("hexdata", "problem"),
    [
        ("1801", "deterministic"),
        ("a2020101 02".replace(" ", ""), "deterministic"),
        ("a201010102", "Duplicate|duplicate"),
        ("9f01ff", "indefinite"),
        ("62c328", "well-formed"),
        ("0102", "deterministic"),
    ],
)
def test_decode_errors_name_the_problem(hexdata: str, problem: str) -> None:
    with pytest.raises(MalformedError, match=problem):
        cbor.decode(bytes.fromhex(hexdata))


def test_decode_limits_are_the_callers() -> None:
    limits = WireLimits(max_packet_bytes=8, max_depth=2)
    assert cbor.decode(b"\x81\x81\x00", limits) == [[0]]
    with pytest.raises(LimitError, match="deeper than 2"):
        cbor.decode(b"\x81\x81\x81\x00", limits)
    with pytest.raises(LimitError, match="exceeds the limit of 8"):
        cbor.decode(cbor.encode(b"123456789"), limits)


def test_check_canonical_false_accepts_non_shortest_forms() -> None:
    assert cbor.decode(b"\x18\x01", check_canonical=False) == 1
    with pytest.raises(MalformedError):
        cbor.decode(b"\x18\x01")


def test_decode_lets_out_only_wire_errors_for_odd_items() -> None:
    for data in (b"\xff", b"\x1c", b"\xf8\x10", b"\x5a\xff\xff\xff\xff", b"\xc1\x61a", b""):
        with pytest.raises(WireError):
            cbor.decode(data)


def test_encode_refuses_what_is_not_cbor() -> None:
    with pytest.raises(MalformedError, match="cannot encode object"):
        cbor.encode(object())
    with pytest.raises(MalformedError, match="cannot encode dict"):
        cbor.encode({"a": object()})


@pytest.mark.parametrize(
    ("value", "error", "problem"),
    [
        ([[[[0]]]], LimitError, "nesting deeper than 3"),
        (list(range(5)), LimitError, "5 elements exceeds 4"),
        ({"a": "x" * 11}, LimitError, "text longer than 10"),
        ([b"y" * 11], LimitError, "byte string longer than 10"),
        ([{1, 2}], MalformedError, "set is not plain CBOR"),
        ({"k": object()}, MalformedError, "object is not plain CBOR"),
    ],
)
def test_check_plain_enforces_limits_and_types(value: Any, error: type, problem: str) -> None:
    limits = WireLimits(max_depth=3, max_collection_items=4, max_text_bytes=10, max_bytes_bytes=10)
    with pytest.raises(error, match=problem):
        cbor.check_plain(value, limits, what="meta")


def test_check_plain_accepts_values_at_the_limits() -> None:
    limits = WireLimits(max_depth=3, max_collection_items=4, max_text_bytes=10, max_bytes_bytes=10)
    cbor.check_plain([[["x" * 10, b"y" * 10, 1.5, None]]], limits)
    cbor.check_plain({"a": [1, 2, 3, 4]}, limits)
    # A text of 10 characters but 20 UTF-8 bytes is over a 10-byte limit.
    with pytest.raises(LimitError):
        cbor.check_plain("\u00e9" * 10, limits)


def _reference_accepts(data: bytes) -> bool:
    """The definition: decoded, then re-encoded in canonical mode, gives the input back."""
    try:
        value = cbor2.loads(data, max_depth=16, allow_indefinite=False, allow_duplicate_keys=False)
        return bool(cbor2.dumps(value, canonical=True) == data)
    except Exception:
        return False


def _accepts(data: bytes) -> bool:
    try:
        cbor.decode(data)
    except WireError:
        return False
    return True


_tricky = st.sampled_from(
    [
        bytes.fromhex(h)
        for h in (
            "a2616201616102",
            "a2616101616202",
            "d90102820201",
            "d90102820102",
            "f93c00",
            "fb3ff0000000000000",
            "fa3f800000",
            "c249010000000000000000",
            "8201a1616101",
            "82 01 a2 0201 0102".replace(" ", ""),
            "4401a0fb02",
            "62c3a9",
        )
    ]
)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(
    st.one_of(
        _tricky,
        st.binary(max_size=24),
        st.builds(lambda a, b: a + b, _tricky, st.binary(max_size=4)),
    )
)
def test_the_fast_canonical_check_agrees_with_the_definition(data: bytes) -> None:
    # cbor.decode re-encodes in plain mode when the input has no map, tag or float head
    # byte; this checks that shortcut never accepts or refuses differently.
    assert _accepts(data) == _reference_accepts(data)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(plain)
def test_the_fast_canonical_check_agrees_on_encoded_values(value: Any) -> None:
    data = cbor.encode(value)
    assert _accepts(data) and _reference_accepts(data)
    # A needless 1-byte argument on the first head byte, where one is possible.
    if data[0] & 0x1F < 24:
        widened = bytes([(data[0] & 0xE0) | 24, data[0] & 0x1F]) + data[1:]
        assert not _accepts(widened)
        assert not _reference_accepts(widened)


@pytest.mark.parametrize(
    "hexdata",
    [
        "fb3ff8000000000000",  # 1.5 as a double: the preferred form is a half
        "81fb3ff8000000000000",  # the same inside an array
        "a181fb3ff800000000000001",  # inside an array used as a map key (a tuple once decoded)
        "a1fb3ff800000000000001",  # as a map key itself
        "c7fb3ff8000000000000",  # inside an unassigned tag (7)
    ],
)
def test_a_float_wider_than_its_preferred_form_is_refused_anywhere(hexdata: str) -> None:
    with pytest.raises(MalformedError, match=r"shortest|deterministic"):
        cbor.decode(bytes.fromhex(hexdata))


def test_a_float_in_its_preferred_form_is_accepted() -> None:
    assert cbor.decode(bytes.fromhex("f93e00")) == 1.5
    assert cbor.decode(bytes.fromhex("fb3fb999999999999a")) == 0.1  # needs all 8 bytes


def test_infinities_beside_a_wide_float_are_accepted() -> None:
    """An 8-byte float that needs 8 bytes beside NaN/inf (always 2 bytes) is deterministic."""
    for value in ([float("inf"), 16777217.0], [-float("inf"), 1.1], [1.1, float("inf")]):
        assert cbor.decode(cbor.encode(value)) == value
    # ... while 1.0 written in 8 bytes next to an infinity is still refused.
    with pytest.raises(MalformedError):
        cbor.decode(bytes.fromhex("82f97c00fb3ff0000000000000"))
