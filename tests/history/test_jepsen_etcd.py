"""The checker against the 102 real Jepsen etcd histories and their published verdicts
(``../shared/data/jepsen-etcd/``: 23 linearizable, 79 not; Knossos and Porcupine agree).

Each file must be decided, in agreement with ``VERDICTS``, within seconds. The slowest file
is printed. Two controls show the verdicts depend on the semantics the spec gives: reading
``info`` as "took effect before its completion line", or ``fail`` as "took effect", changes
some verdicts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from foundation_p2p.history import Operation, RegisterModel, Verdict, check, read_history

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "jepsen-etcd"
VERDICTS_FILE = DATA / "VERDICTS"
PER_FILE_LIMIT_S = 5.0

needs_data = pytest.mark.skipif(
    not VERDICTS_FILE.exists(),
    reason=f"the Jepsen etcd histories are not at {DATA} (CI has ../shared/data beside the "
    "checkout; a plain clone does not)",
)


def _verdicts() -> dict[str, Verdict]:
    if not VERDICTS_FILE.exists():
        return {}
    out = {}
    for line in VERDICTS_FILE.read_text("utf-8").splitlines():
        if line.strip():
            name, word = line.split()
            out[name] = {"linearizable": Verdict.LINEARIZABLE,
                         "not-linearizable": Verdict.NOT_LINEARIZABLE}[word]
    return out


VERDICTS = _verdicts()
_TIMES: dict[str, float] = {}


@needs_data
def test_the_verdict_file_lists_102_histories_23_linearizable() -> None:
    assert len(VERDICTS) == 102
    assert sum(v is Verdict.LINEARIZABLE for v in VERDICTS.values()) == 23
    assert all((DATA / name).exists() for name in VERDICTS)


@needs_data
@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_the_checker_agrees_with_the_published_verdict(name: str) -> None:
    ops = read_history(DATA / name, format="jepsen")
    started = time.perf_counter()
    result = check(ops, RegisterModel(), source=name)
    elapsed = time.perf_counter() - started
    _TIMES[name] = elapsed
    assert result.verdict is VERDICTS[name], result.summary()
    assert elapsed < PER_FILE_LIMIT_S
    if result.verdict is Verdict.NOT_LINEARIZABLE:
        (exp,) = result.explanations
        assert exp.blocked.op.status == "ok" and exp.blocked.ret is not None


@needs_data
def test_zz_print_the_slowest_file(capsys: pytest.CaptureFixture[str]) -> None:
    if len(_TIMES) < len(VERDICTS):  # run alone (-k): time every file here
        for name in VERDICTS:
            started = time.perf_counter()
            check(read_history(DATA / name), RegisterModel())
            _TIMES[name] = time.perf_counter() - started
    slowest = max(_TIMES, key=_TIMES.__getitem__)
    with capsys.disabled():
        print(f"\n[jepsen-etcd] {len(_TIMES)} histories in {sum(_TIMES.values()):.2f} s; "
              f"slowest {slowest} {_TIMES[slowest]:.3f} s")
    assert _TIMES[slowest] < PER_FILE_LIMIT_S


def _verdicts_with(transform: Callable[[Operation], Operation]) -> dict[str, Verdict]:
    out = {}
    for name in VERDICTS:
        ops = [transform(op) for op in read_history(DATA / name)]
        out[name] = check(ops, RegisterModel()).verdict
    return out


@needs_data
def test_control_info_read_as_completed_at_its_line_changes_verdicts() -> None:
    def as_completed(op: Operation) -> Operation:
        if op.status == "info" and op.ret_line is not None:
            return dataclasses.replace(op, status="ok", ret=float(op.ret_line))
        return op

    changed = [n for n, v in _verdicts_with(as_completed).items() if v is not VERDICTS[n]]
    assert changed, "the info semantics made no difference: the test data would not catch it"


@needs_data
def test_control_fail_read_as_applied_changes_verdicts() -> None:
    def as_applied(op: Operation) -> Operation:
        return dataclasses.replace(op, status="ok") if op.status == "fail" else op

    changed = [n for n, v in _verdicts_with(as_applied).items() if v is not VERDICTS[n]]
    assert changed
