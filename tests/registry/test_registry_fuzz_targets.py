"""The registry fuzz targets (``fuzz/targets_registry.py``): their seeds and a few thousand
mutations pass, and each property can fail."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "foundation_fuzz_targets_registry", ROOT / "fuzz" / "targets_registry.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load()


@pytest.mark.parametrize("name", sorted(targets.REGISTRY_TARGETS))
def test_seeds_and_mutations_pass(name: str) -> None:
    target = targets.REGISTRY_TARGETS[name]
    seeds = targets.registry_seeds(name)
    assert seeds
    rng = random.Random(name)
    for seed in seeds:
        target(seed)
        for _ in range(60):
            data = bytearray(seed)
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(3)
                if op == 0 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif op == 1 and data:
                    del data[rng.randrange(len(data))]
                else:
                    data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
            target(bytes(data))


def test_the_message_target_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    good = targets.registry_seeds("registry-message")[0]
    monkeypatch.setattr(targets, "encode_message", lambda msg: [1, [], [[], []]])
    with pytest.raises(AssertionError, match="re-encode"):
        targets.fuzz_registry_message(good)


def test_the_state_target_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = targets.registry_seeds("registry-state")
    good = next(s for s in seeds if len(s) > 40)
    monkeypatch.setattr(targets, "item_hash", lambda name, dot: 1)
    with pytest.raises(AssertionError, match="bucket digests"):
        targets.fuzz_registry_state(good)


def test_the_core_target_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    delta = next(
        s for s, e in zip(targets.registry_seeds("registry-core"), range(100), strict=False)
        if s[1] == 0x01
    )
    monkeypatch.setattr(targets, "bucket_of", lambda name: 0)
    with pytest.raises(AssertionError):
        targets.fuzz_registry_core(delta)
