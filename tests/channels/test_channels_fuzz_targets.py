"""The channels fuzz targets (``fuzz/targets_channels.py``) under Hypothesis: mutated
vector seeds and random bytes; the targets accept only "decoded with its property" or a
WireError."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "foundation_fuzz_targets_channels", ROOT / "fuzz" / "targets_channels.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load()


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(targets.channel_seeds(name))))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 3))
        i = draw(st.integers(0, len(data)))
        if op == 0 and data and i < len(data):
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            del data[i:]
        elif op == 2:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif data and i < len(data):
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.parametrize("name", sorted(targets.CHANNEL_TARGETS))
def test_seeds_pass(name: str) -> None:
    for seed in targets.channel_seeds(name):
        targets.CHANNEL_TARGETS[name](seed)


@pytest.mark.parametrize("name", sorted(targets.CHANNEL_TARGETS))
def test_mutations(name: str) -> None:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated(name))
    def run(data: bytes) -> None:
        targets.CHANNEL_TARGETS[name](data)

    run()


def test_the_record_target_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder that disagreed with the decoder would be caught: the property is real."""
    good = targets.channel_seeds("channel-records")[0]
    targets.fuzz_channel_records(good)
    monkeypatch.setattr(targets, "encode_record", lambda *a, **k: b"not the record")
    with pytest.raises(AssertionError, match="re-encode"):
        targets.fuzz_channel_records(good)
