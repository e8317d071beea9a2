"""HealthSummary codec: Hypothesis round trips, every refusal names its problem with the
project's error, clamping, ordering; the health fuzz targets on their seeds and on
random bytes."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation_p2p.errors import LimitError, MalformedError, UnsupportedVersionError, WireError
from foundation_p2p.health.summary import (
    FIELD_LIMITS,
    MAX_SUMMARY_BYTES,
    HealthSummary,
    decode_summary,
    encode_summary,
)
from foundation_p2p.wire import cbor

U64 = (1 << 64) - 1


def _fuzz_module() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "fuzz" / "targets_health.py"
    spec = importlib.util.spec_from_file_location("targets_health", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("targets_health", module)
    spec.loader.exec_module(module)
    return module


FUZZ = _fuzz_module()

summaries = st.builds(
    HealthSummary,
    node_id=st.binary(min_size=16, max_size=16),
    epoch=st.integers(0, U64),
    version=st.integers(0, U64),
    **{name: st.integers(0, limit) for name, limit in FIELD_LIMITS.items()},
)


@given(summaries)
def test_round_trip_within_the_size_bound(s: HealthSummary) -> None:
    data = encode_summary(s)
    assert len(data) <= MAX_SUMMARY_BYTES
    assert decode_summary(data) == s


@given(summaries, st.sampled_from(sorted(FIELD_LIMITS)), st.integers(1, 1 << 40))
def test_a_figure_above_its_bound_is_refused_by_name(
    s: HealthSummary, name: str, excess: int
) -> None:
    items = s.to_cbor()
    index = 4 + list(FIELD_LIMITS).index(name)
    items[index] = FIELD_LIMITS[name] + excess
    with pytest.raises(LimitError, match=name):
        decode_summary(cbor.encode(items))


@given(summaries, st.sampled_from(sorted(FIELD_LIMITS)), st.integers(1, 1 << 40))
def test_the_encoder_clamps_out_of_range_figures(
    s: HealthSummary, name: str, excess: int
) -> None:
    big = replace(s, **{name: FIELD_LIMITS[name] + excess})
    assert getattr(decode_summary(encode_summary(big)), name) == FIELD_LIMITS[name]
    neg = replace(s, **{name: -excess})
    assert getattr(decode_summary(encode_summary(neg)), name) == 0


def test_refusals_name_the_problem() -> None:
    good = HealthSummary(bytes(16), 1, 1).to_cbor()
    with pytest.raises(UnsupportedVersionError, match="format 3"):
        decode_summary(cbor.encode([3, *good[1:]]))
    with pytest.raises(MalformedError, match=r"expected 15\.\.15 elements"):
        decode_summary(cbor.encode(good[:10]))
    with pytest.raises(MalformedError, match="node-id"):
        decode_summary(cbor.encode([1, b"x", *good[2:]]))
    with pytest.raises(MalformedError, match="version"):
        decode_summary(cbor.encode([*good[:3], "1", *good[4:]]))
    with pytest.raises(LimitError, match="exceeds 128"):
        decode_summary(b"\x00" * 129)
    with pytest.raises(WireError):
        decode_summary(b"\xff")


def test_order_is_epoch_then_version() -> None:
    a = HealthSummary(bytes(16), 5, 100)
    assert HealthSummary(bytes(16), 5, 101).newer_than(a)
    assert HealthSummary(bytes(16), 6, 1).newer_than(a)
    assert not HealthSummary(bytes(16), 4, 1000).newer_than(a)
    assert not a.newer_than(a)


def test_encoding_refuses_a_bad_node_id() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        encode_summary(HealthSummary(b"short", 1, 1))


@pytest.mark.parametrize("target", sorted(FUZZ.HEALTH_TARGETS))
def test_fuzz_targets_accept_their_seeds(target: str) -> None:
    seeds = FUZZ.health_seeds(target)
    assert seeds
    for seed in seeds:
        FUZZ.HEALTH_TARGETS[target](seed)


@given(st.binary(max_size=200), st.sampled_from(["health-summary", "health-frames"]))
def test_fuzz_targets_on_random_bytes(data: bytes, target: str) -> None:
    FUZZ.HEALTH_TARGETS[target](data)


@given(st.lists(summaries, max_size=6))
def test_frames_target_on_valid_frame_lists(items: list[HealthSummary]) -> None:
    frames = [cbor.encode([49, s.to_cbor()]) for s in items]
    FUZZ.HEALTH_TARGETS["health-frames"](bytes([0x80 | len(frames)]) + b"".join(frames))
