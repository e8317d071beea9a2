"""Smoke test of ``bench/coordination.py``: a tiny run over 127.0.0.1 prints the JSON shape
(commit and auction latencies, auctions per second, their ratio); not the figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench" / "coordination.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_coordination", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_coordination"] = module
    spec.loader.exec_module(module)
    return module


bc = _load()


def test_summarize_gives_percentiles_in_ms() -> None:
    out = bc.summarize([0.001 * i for i in range(1, 101)])
    assert out["n"] == 100 and out["p50"] == 50.5 and out["p99"] == 99.0
    assert bc.summarize([]) == {"n": 0}


def test_a_tiny_run_prints_the_json_shape_last() -> None:
    r = subprocess.run(
        [sys.executable, str(BENCH), "--commits", "3", "--auctions", "2", "--burst", "3",
         "--concurrency", "2", "--limit", "90"],
        capture_output=True, text=True, timeout=150, check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["commit_latency_ms"]["n"] == 3 and result["auction_latency_ms"]["n"] == 2
    for part in ("commit_latency_ms", "auction_latency_ms"):
        assert 0 < result[part]["p50"] <= result[part]["p99"]
    assert result["burst"]["completed"] + result["burst"]["failed"] == 3
    assert result["auctions_per_s"] > 0 and result["ratio_p50"] > 0
    # agents bid 10, 20, 30: second price, every auction alike
    assert result["winning_bid_and_price"] == [[30, 20]]
