"""Smoke test of ``bench/transport.py``: each part runs over 127.0.0.1 at a tiny size.

Skipped where aioquic (the baseline) is not installed. Checks that the bytes arrive intact,
that every control record is timed, and that the JSON line comes out; not the figures.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("aioquic")

BENCH = Path(__file__).resolve().parent.parent / "bench" / "transport.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_transport", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_transport"] = module
    spec.loader.exec_module(module)
    return module


bt = _load()


@pytest.mark.parametrize("impl", ["ours", "aioquic"])
def test_throughput_moves_the_bytes_intact(impl: str) -> None:
    result = bt.throughput_once(impl, 1_000_000, limit=30.0)
    assert result["intact"] is True
    assert result["mb_per_s"] > 0
    assert result["client_cpu_s"] > 0


def test_expected_digest_covers_every_byte() -> None:
    assert bt.expected_digest(len(bt.BLOCK) + 1) != bt.expected_digest(len(bt.BLOCK))


@pytest.mark.parametrize("mode", ["streams", "one"])
def test_hol_times_every_control_record_under_loss(mode: str) -> None:
    result = bt.hol_once(mode, 0.02, 0.3, None, seed=3, limit=30.0)
    assert 29 <= result["control_records"] <= 31
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["data_mb_per_s"] > 0


def test_handshake_part_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    bt.main(["--quick", "--runs", "1", "--parts", "handshake"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert len(result["handshake"]["ours"]) == 4
    assert result["handshake"]["ours"]["median_ms"] > 0
    assert result["handshake"]["aioquic"]["median_ms"] > 0
    assert "handshake.ours_at_most_10ms" in result["goals_met"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        bt.main(["--parts", "nonsense"])
