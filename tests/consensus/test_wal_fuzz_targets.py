"""The WAL and KV fuzz targets (fuzz/targets_wal.py) on the vector seeds and on Hypothesis
mutations of them, and checks that each target can fail."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.consensus import wal_format as fmt

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fuzz"))

import targets_wal  # noqa: E402


def _seeds() -> list[bytes]:
    data = json.loads((ROOT / "spec" / "vectors" / "wal.json").read_text("utf-8"))
    out: list[bytes] = []
    stack: list[object] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if k == "hex" and isinstance(v, str):
                    out.append(bytes.fromhex(v))
                else:
                    stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(set(out))


SEEDS = _seeds()


@pytest.mark.parametrize("name", sorted(targets_wal.WAL_TARGETS))
def test_targets_accept_every_seed(name: str) -> None:
    target = targets_wal.WAL_TARGETS[name]
    for seed in SEEDS:
        target(seed)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4),
    st.integers(0, 1 << 16),
    st.sampled_from(sorted(targets_wal.WAL_TARGETS)),
)
def test_targets_survive_mutated_seeds(
    seed: bytes, flips: list[tuple[int, int]], cut: int, name: str
) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    targets_wal.WAL_TARGETS[name](bytes(data[: cut % (len(data) + 1)]))


def test_the_record_target_catches_a_codec_that_does_not_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = next(s for s in SEEDS if s[4:5] == b"\x02" and len(s) > 26)  # an entry record
    monkeypatch.setattr(fmt, "encode_record", lambda record: b"broken")
    with pytest.raises(AssertionError, match="re-encode"):
        targets_wal.fuzz_wal_record(raw)


def test_the_segment_target_catches_a_recovery_that_is_not_idempotent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from foundation_p2p.consensus import wal

    segment = next(s for s in SEEDS if s.startswith(bytes.fromhex("0000001901")) and len(s) > 200)
    torn = segment[:-3]
    original = wal.WalStorage._cut_torn_tail

    def cut_one_byte_late(
        self: wal.WalStorage, name: str, seg: object, offset: int, size: int, why: str
    ) -> None:
        original(self, name, seg, min(offset + 1, size), size, why)  # type: ignore[arg-type]

    monkeypatch.setattr(wal.WalStorage, "_cut_torn_tail", cut_one_byte_late)
    with pytest.raises(AssertionError, match="cut more"):
        targets_wal.fuzz_wal_segment(torn)
