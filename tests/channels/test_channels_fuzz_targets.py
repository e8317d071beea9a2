"""The channels fuzz targets (``fuzz/targets_channels.py``) can fail. Their seeds and
mutations run with every other target in ``tests/fuzz/test_fuzz_targets.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

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


def test_the_record_target_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder that disagreed with the decoder would be caught: the property is real."""
    good = targets.channel_seeds("channel-records")[0]
    targets.fuzz_channel_records(good)
    monkeypatch.setattr(targets, "encode_record", lambda *a, **k: b"not the record")
    with pytest.raises(AssertionError, match="re-encode"):
        targets.fuzz_channel_records(good)
