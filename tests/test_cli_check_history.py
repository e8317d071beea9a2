"""``foundation-p2p check-history``: verdicts as exit statuses (0 linearizable, 1 not, 2 bad
input or usage, 3 unknown), text and JSON output, format and model selection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from foundation_p2p.cli import main

ROOT = Path(__file__).resolve().parents[1]
JEPSEN = ROOT.parent / "shared" / "data" / "jepsen-etcd"

GOOD_JSONL = "\n".join([
    '{"process": 0, "type": "invoke", "f": "put", "key": "a", "value": "x", "time": 0.0}',
    '{"process": 1, "type": "invoke", "f": "get", "key": "a", "time": 0.1}',
    '{"process": 0, "type": "ok", "f": "put", "key": "a", "value": "x", "time": 0.2}',
    '{"process": 1, "type": "ok", "f": "get", "key": "a", "value": null, "time": 0.3}',
    '{"process": 1, "type": "invoke", "f": "get", "key": "a", "time": 0.4}',
    '{"process": 1, "type": "ok", "f": "get", "key": "a", "value": "x", "time": 0.5}',
]) + "\n"
STALE_JSONL = GOOD_JSONL + "\n".join([
    '{"process": 2, "type": "invoke", "f": "get", "key": "a", "time": 0.6}',
    '{"process": 2, "type": "ok", "f": "get", "key": "a", "value": null, "time": 0.7}',
]) + "\n"
JEPSEN_NOT = (
    "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
    "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
    "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 1\t:ok\t:read\t2\n"
)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return str(path)


def test_a_linearizable_kv_history_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "h.jsonl", GOOD_JSONL)
    assert main(["check-history", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: linearizable (kv model, 3 operations, 1 key,")


def test_a_stale_read_exits_1_and_names_the_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "h.jsonl", STALE_JSONL)
    assert main(["check-history", path]) == 1
    out = capsys.readouterr().out
    assert "not linearizable" in out
    assert "could not be placed: process 2 get 'a' -> ok (lines 7-8)" in out
    assert "it read nil but the value was 'x'" in out


def test_json_output_is_one_deterministic_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "h.jsonl", STALE_JSONL)
    assert main(["check-history", path, "--json"]) == 1
    first = capsys.readouterr().out
    assert main(["check-history", path, "--json"]) == 1
    assert capsys.readouterr().out == first
    (line,) = first.splitlines()
    obj = json.loads(line)
    assert obj["verdict"] == "not-linearizable" and obj["model"] == "kv"
    (part,) = obj["partitions"]
    assert part["key"] == "a"
    assert part["explanation"]["blocked"]["invoke_line"] == 7
    assert [op["index"] for op in part["explanation"]["prefix"]] == [1, 0, 2]


def test_a_jepsen_log_is_detected_and_checked_as_a_register(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "etcd.log", JEPSEN_NOT)
    assert main(["check-history", path]) == 1
    assert "(register model," in capsys.readouterr().out
    assert main(["check-history", path, "--format", "jepsen", "--model", "register"]) == 1


def test_the_wrong_model_is_bad_input_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "etcd.log", JEPSEN_NOT)
    assert main(["check-history", path, "--model", "kv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"foundation-p2p: error: {path}:1: function 'write' is not a kv")


def test_malformed_input_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "h.jsonl", GOOD_JSONL + '{"process": 1, "type": "ok"\n')
    assert main(["check-history", path]) == 2
    assert f"{path}:7: invalid JSON" in capsys.readouterr().err
    path = _write(tmp_path, "h2.log", JEPSEN_NOT)
    assert main(["check-history", path, "--format", "jsonl"]) == 2
    assert f"{path}:1: invalid JSON" in capsys.readouterr().err


def test_a_missing_file_and_bad_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.jsonl")
    assert main(["check-history", missing]) == 2
    assert f"{missing}: cannot read: No such file or directory" in capsys.readouterr().err
    path = _write(tmp_path, "h.jsonl", GOOD_JSONL)
    assert main(["check-history", path, "--max-steps", "0"]) == 2
    assert "--max-steps must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["check-history", path, "--model", "queue"])
    assert info.value.code == 2


def _long_jepsen(n: int) -> str:
    # n sequential write/read pairs: every operation costs at least one step.
    lines = []
    for v in range(n):
        lines += [f"0\t:invoke\t:write\t{v}", f"0\t:ok\t:write\t{v}",
                  "1\t:invoke\t:read\tnil", f"1\t:ok\t:read\t{v}"]
    return "\n".join(lines) + "\n"


def test_an_exhausted_budget_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "long.log", _long_jepsen(600))
    assert main(["check-history", path, "--max-steps", "1000"]) == 3
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: unknown (register model")
    assert "unknown: budget of 1000 steps exceeded" in out
    assert main(["check-history", path]) == 0


def test_an_exceeded_time_limit_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "long.log", _long_jepsen(600))
    assert main(["check-history", path, "--timeout", "1e-9", "--json"]) == 3
    obj = json.loads(capsys.readouterr().out)
    assert obj["verdict"] == "unknown" and "time limit" in obj["reason"]


@pytest.mark.skipif(not (JEPSEN / "VERDICTS").exists(), reason=f"no Jepsen data at {JEPSEN}")
def test_the_installed_command_on_real_jepsen_files() -> None:
    for name, want in [("etcd_002.log", 0), ("etcd_000.log", 1)]:
        proc = subprocess.run(
            [sys.executable, "-m", "foundation_p2p", "check-history", str(JEPSEN / name)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == want, proc.stderr
