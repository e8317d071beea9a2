"""Replay every input ``make fuzz`` saved under ``tests/fuzz/regressions/``.

Each file ``<target>-<sha1 prefix>.bin`` is a minimized input that once made its target
fail (an exception other than the project's own error, or a broken round trip); a
``.timeout`` file is an input that once ran longer than the fuzzer's per-input limit, and
is replayed in a subprocess that must finish within :data:`TIMEOUT_S`. Each runs
against the unguarded target: a fixed finding passes; an open one (listed in
``fuzz/known_findings.py``) is a strict xfail naming the finding, so that the fix shows up
as an unexpected pass and the entry must then leave ``OPEN``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGRESSIONS = Path(__file__).resolve().parent / "regressions"


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load("foundation_fuzz_targets", ROOT / "fuzz" / "targets.py")
known_findings = _load("foundation_fuzz_known_findings", ROOT / "fuzz" / "known_findings.py")
atheris_main = _load("foundation_fuzz_atheris_main", ROOT / "fuzz" / "atheris_main.py")

FILES = sorted([*REGRESSIONS.glob("*.bin"), *REGRESSIONS.glob("*.timeout")])
TIMEOUT_S = 20.0
"""How long a saved slow input may take (the fuzzer flagged it past 10 s)."""


def _target_of(path: Path) -> str:
    return path.stem.rsplit("-", 1)[0]


_REPLAY = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("t", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with open(sys.argv[3], "rb") as f:
    module.TARGETS[sys.argv[2]](f.read())
"""


def _cases() -> list[object]:
    out: list[object] = []
    for path in FILES:
        name = _target_of(path)
        finding = known_findings.known(name, path.read_bytes())
        marks = []
        if finding is not None:
            problem = next(f.problem for f in known_findings.OPEN if f.id == finding)
            reason = f"open finding {finding}: {problem}"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        out.append(pytest.param(path, id=path.name, marks=marks))
    return out


@pytest.mark.parametrize("path", _cases())
def test_saved_input_is_handled(path: Path) -> None:
    name = _target_of(path)
    assert name in targets.TARGETS, f"{path.name}: no target {name!r}"
    if path.suffix == ".timeout":
        cmd = [sys.executable, "-c", _REPLAY, str(ROOT / "fuzz" / "targets.py"), name, str(path)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{path.name}: still running after {TIMEOUT_S} s") from None
        assert done.returncode == 0, done.stderr[-2000:]
        return
    targets.TARGETS[name](path.read_bytes())


def test_every_open_finding_has_a_saved_input() -> None:
    for finding in known_findings.OPEN:
        saved = [
            p for p in FILES if _target_of(p) == finding.target and finding.hits(p.read_bytes())
        ]
        assert saved, f"open finding {finding.id} has no input under {REGRESSIONS}"


def test_minimize_keeps_the_failure_and_shrinks() -> None:
    # A target failing on any input holding b"\xff" after b"AB": the minimized input is
    # exactly the three bytes that matter, and fails the same way.
    def target(data: bytes) -> None:
        i = data.find(b"AB")
        if i >= 0 and b"\xff" in data[i:]:
            raise IndexError("a decoder bug")

    data = b"x" * 100 + b"AB" + b"y" * 50 + b"\xff" + b"z" * 30
    small = atheris_main.minimize(target, data, budget_s=10.0)
    assert small == b"AB\xff"
    with pytest.raises(IndexError):
        target(small)


def test_a_saved_input_is_named_by_target_and_content(tmp_path: Path) -> None:
    path = atheris_main.save_regression("node-config", b"\xff", tmp_path)
    assert path.name.startswith("node-config-") and path.suffix == ".bin"
    slow = atheris_main.save_regression("raft-step", b"\x00", tmp_path, kind="timeout")
    assert slow.suffix == ".timeout" and _target_of(slow) == "raft-step"
    assert _target_of(path) == "node-config"
    assert path.read_bytes() == b"\xff"
