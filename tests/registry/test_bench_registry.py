"""Smoke test of ``bench/registry.py`` at a tiny size: each part runs and its figures hold
what the bench claims (delta sync cheaper than full state, bounded state after churn)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("foundation_bench_registry",
                                                  ROOT / "bench" / "registry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_local_ops_report_both_rates() -> None:
    out = bench.local_ops(300, rounds=1)
    for op in ("register", "lookup", "unregister"):
        assert out[op]["registry_ops_per_s"] > 0 and out[op]["dict_ops_per_s"] > 0


def test_delta_sync_is_cheaper_than_full_state_and_converges() -> None:
    out = bench.sync_bytes(300, 5, loss=0.1, seed=3)
    assert out["ratio"] > 2
    assert out["anti_entropy_part_bytes"] > 0 and out["delta_part_bytes"] > 0


def test_failed_starts_leave_state_bounded() -> None:
    out = bench.failed_starts(1_000)
    assert max(out["state_bytes_after_all"]) <= max(out["state_bytes_after_100"]) + 4


def test_main_prints_one_json_object_last(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "local_ops", lambda n: {"n": n})
    monkeypatch.setattr(bench, "sync_bytes", lambda *a, **k: {"names": a[0]})
    monkeypatch.setattr(bench, "failed_starts", lambda: {"cycles": 0})
    assert bench.main(["--quick"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert report["quick"] is True and report["sync"] == {"names": 1000}
