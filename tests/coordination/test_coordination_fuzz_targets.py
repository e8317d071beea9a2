"""The coordination fuzz targets (``fuzz/targets_coordination.py``): their seeds and a few
thousand mutations pass, and each property can fail."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from foundation_p2p.coordination import machine as machine_module
from foundation_p2p.coordination import wire as wire_module

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "foundation_fuzz_targets_coordination", ROOT / "fuzz" / "targets_coordination.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load()


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(3)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1 and data:
            del data[rng.randrange(len(data))]
        else:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
    return bytes(data)


@pytest.mark.parametrize("name", sorted(targets.COORDINATION_TARGETS))
def test_seeds_and_mutations_pass(name: str) -> None:
    target = targets.COORDINATION_TARGETS[name]
    seeds = targets.coordination_seeds(name)
    assert seeds
    rng = random.Random(name)
    for seed in seeds:
        target(seed)
        for _ in range(25):
            target(mutate(seed, rng))


def test_the_command_property_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = targets.coordination_seeds("coordination-command")[0]
    monkeypatch.setattr(targets, "command_to_wire", lambda cmd: [0])
    with pytest.raises(AssertionError):
        targets.fuzz_coordination_command(seed)


def test_the_snapshot_property_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = targets.coordination_seeds("coordination-snapshot")[0]
    real = machine_module.CoordinationMachine.snapshot
    calls = iter(range(1_000_000))

    def unstable(self: machine_module.CoordinationMachine) -> bytes:
        return real(self) + (b"" if next(calls) < 2 else b"\x00")

    monkeypatch.setattr(machine_module.CoordinationMachine, "snapshot", unstable)
    targets._loaded_snapshot.cache_clear()
    try:
        with pytest.raises(AssertionError):
            targets.fuzz_coordination_snapshot(seed)
    finally:
        targets._loaded_snapshot.cache_clear()


def test_the_machine_never_raises_on_a_refused_command() -> None:
    junk = wire_module.refused("x", "y")
    targets.fuzz_coordination_machine(junk)
