"""The Raft fuzz targets of ``fuzz/targets_consensus.py`` under Hypothesis: seeds from
``spec/vectors/consensus.json`` and mutations of them (bit flips, truncation, insertion,
byte replacement), plus plain random bytes. The targets decide what is allowed."""

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
        "foundation_fuzz_targets_consensus", ROOT / "fuzz" / "targets_consensus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load()
NAMES = sorted(fuzz.CONSENSUS_TARGETS)


@st.composite
def mutated(draw: st.DrawFn, target: str) -> bytes:
    seeds = fuzz.consensus_seeds(target)
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == 0 and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == 1:
            del data[pos:]
        elif kind == 2:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_pass(name: str) -> None:
    for seed in fuzz.consensus_seeds(name):
        fuzz.CONSENSUS_TARGETS[name](seed)


@pytest.mark.parametrize("name", NAMES)
def test_mutated_inputs(name: str) -> None:
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=mutated(name))
    def run(data: bytes) -> None:
        fuzz.CONSENSUS_TARGETS[name](data)

    run()


@pytest.mark.parametrize("name", NAMES)
def test_random_bytes(name: str) -> None:
    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.binary(max_size=200))
    def run(data: bytes) -> None:
        fuzz.CONSENSUS_TARGETS[name](data)

    run()
