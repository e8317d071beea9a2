"""The history fuzz targets (``fuzz/targets_history.py``) driven by Hypothesis: mutations of
their seeds and random bytes; the targets accept only "parsed" or the parsers' own errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation_p2p.history import pair_events, parse_jepsen, parse_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "foundation_fuzz_targets_history", ROOT / "fuzz" / "targets_history.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load()
NAMES = sorted(targets.HISTORY_TARGETS)


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    seed = bytearray(draw(st.sampled_from(targets.history_seeds(name))))
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup_line", "drop_line"]))
        if not seed:
            break
        at = draw(st.integers(min_value=0, max_value=len(seed) - 1))
        if op == "flip":
            seed[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "cut":
            del seed[at:]
        elif op == "insert":
            seed[at:at] = draw(st.sampled_from(
                [b"[", b"]", b"{", b"}", b'"', b"\n", b" ", b":", b"nil", b"-1", b"1e999",
                 b"\xff", b":ok", b":invoke", b'"ok"', b'"invoke"', b"null"]))
        else:
            lines = bytes(seed).split(b"\n")
            i = at % len(lines)
            if op == "dup_line":
                lines.insert(i, lines[i])
            else:
                del lines[i]
            seed = bytearray(b"\n".join(lines))
    return bytes(seed)


@pytest.mark.parametrize("name", NAMES)
def test_every_seed_parses_pairs_and_runs(name: str) -> None:
    parse = parse_jepsen if name == "history-jepsen" else parse_jsonl
    for seed in targets.history_seeds(name):
        assert pair_events(parse(seed))  # a seed that does not parse would explore nothing
        targets.HISTORY_TARGETS[name](seed)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_seeds_give_a_result_or_a_wire_error(name: str, data: st.DataObject) -> None:
    targets.HISTORY_TARGETS[name](data.draw(mutated(name)))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_give_a_result_or_a_wire_error(name: str, raw: bytes) -> None:
    targets.HISTORY_TARGETS[name](raw)
