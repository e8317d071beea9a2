"""soak/cluster.py and soak/app.py without a cluster: arguments, measurements, verdicts."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

REPO = str(Path(__file__).resolve().parent.parent)
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # soak/ is a top-level directory, not an installed package

from soak import app, cluster  # noqa: E402


def _soak(tmp_path: Path, *argv: str) -> cluster.Soak:
    return cluster.Soak(cluster.parse_args(["--keep", str(tmp_path), *argv]), str(tmp_path))


def test_bad_arguments_are_refused_with_the_problem_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        cluster.parse_args(["--churn", "n9"])
    assert exc.value.code == 2
    assert "no node named n9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cluster.parse_args(["--minutes", "0"])
    assert cluster.parse_args(["--churn-s", "0"]).churn == []
    assert cluster.parse_args([]).churn == ["n5"]


def test_proc_measures_our_own_process() -> None:
    rss, fds = cluster._proc_rss_fds(os.getpid())
    assert rss is not None and rss > 10 * 2**20
    with open(os.devnull) as _f:
        assert cluster._proc_rss_fds(os.getpid())[1] == fds + 1
    assert cluster._proc_rss_fds(2**22 + 12345) == (None, 0)


async def test_count_tasks_sees_every_live_task() -> None:
    before = app.count_tasks()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(trio.sleep_forever)
        await trio.sleep(0)
        assert app.count_tasks() == before + 3
        nursery.cancel_scope.cancel()


def _rows(soak: cluster.Soak, node: str, life: int, rss: dict[int, int]) -> None:
    for minute, value in rss.items():
        soak._row(node, life, minute)["rss"] = value


def test_verdict_judges_memory_per_lifetime_spanning_second_and_last_minute(
    tmp_path: Path,
) -> None:
    soak = _soak(tmp_path, "--minutes", "5")
    _rows(soak, "n1", 1, {0: 100, 1: 200, 4: 219})  # +9.5%: flat
    _rows(soak, "n5", 3, {4: 500})  # a restarted life: not judged
    result = soak.verdict(restarts=0)
    assert result["ok"] and result["memory"]["n1#1"]["flat"]
    assert list(result["memory"]) == ["n1#1"]
    _rows(soak, "n2", 1, {1: 200, 4: 221})  # +10.5%: grew
    result = soak.verdict(restarts=0)
    assert not result["ok"] and not result["memory"]["n2#1"]["flat"]


def test_verdict_fails_without_a_judged_lifetime(tmp_path: Path) -> None:
    soak = _soak(tmp_path, "--minutes", "2")
    _rows(soak, "n1", 1, {0: 100, 1: 100})
    result = soak.verdict(restarts=0)
    assert not result["ok"] and "no node lifetime spans" in soak.errors[0]


def _line(name: str, pid: int, t: float, **extra: Any) -> str:
    line = {"t": t, "name": name, "pid": pid, "id": f"id{name}", "tasks": 9, "ops": {},
            "fails": [], "leaders": []}
    line.update(extra)
    return json.dumps(line) + "\n"


def test_failed_ops_are_expected_only_around_the_leaders_kill(tmp_path: Path) -> None:
    soak = _soak(tmp_path, "--election-window-s", "3")
    now = time.time()
    soak.formation = (now - 300, now - 290)
    k1, k2 = now - 200, now - 100  # n5 killed while it led; then n5 killed as a follower
    soak.kills = [(k1, "n5"), (k2, "n5")]
    for slot in soak.slots:
        views = [[now - 289, 2, "idn5"]]
        if slot.name != "n5":
            views.append([k1 + 0.8, 3, None])
            views.append([k1 + 1.2, 3, "idn1"])
        fails = []
        if slot.name == "n2":
            fails = [
                [now - 291, now - 288, "kv_put", "Indeterminate: formation"],
                [k1 - 1, k1 + 2, "kv_put", "Indeterminate: in flight at the kill"],
                [k1 + 2.9, k1 + 5.9, "kv_put", "Indeterminate: started in the window"],
                [k1 + 3.5, k1 + 6.5, "kv_put", "Indeterminate: after the window"],
                [k2 + 0.5, k2 + 3.5, "kv_get", "ConsensusError: a follower's kill"],
                [now - 10, now - 9, "kv_put", "NotLeader: stopping"],
            ]
        stalls = [[k1 + 4.0, 820, 30, 790]] if slot.name == "n3" else []
        line = _line(slot.name, 4242, now, leaders=views, fails=fails, stalls=stalls)
        Path(slot.stats_path).write_text(line + '{"partial')
        soak._read_stats(slot)
        assert slot.stats_offset == len(line)  # the partial line waits
    assert soak.leader_at(k1 - 1, exclude="n5") == "idn5"
    assert soak.leader_at(k2, exclude="n5") == "idn1"
    assert soak.election_s(k1, "idn5") == pytest.approx(1.2)
    soak.stopping = now - 9.5
    soak.judge_failures()
    assert soak.expected_failures == 3
    assert soak.shutdown_failures == 1
    assert len(soak.errors) == 2, soak.errors
    assert "after the window" in soak.errors[0] and "leader then: idn1" in soak.errors[0]
    assert "longest stall n3 820 ms, 790 ms of it waiting for a CPU" in soak.errors[0]
    assert "a follower's kill" in soak.errors[1] and "no stall" in soak.errors[1]
    assert soak.stall_summary()["n3"]["longest_stall_ms"] == [820, 790]
    assert soak.stall_summary()["n3"]["stalls_over_500ms"] == 1
    assert soak.leader_kills == [
        {"t": -200.0 + 290.0, "node": "n5", "new_leader_seen_by_all_s": 1.2}
    ]


def test_error_lines_on_stderr_are_errors(tmp_path: Path) -> None:
    soak = _soak(tmp_path)
    slot = soak.slots[1]
    Path(slot.err_path).write_text(
        "2026-01-01T00:00:00.000Z WARNING foundation_p2p.x: fine\n"
        "2026-01-01T00:00:00.000Z ERROR foundation_p2p.y: broken\n"
        "Traceback (most recent call last):\n"
        "event member_joined ...\n"
    )
    soak._read_stderr(slot)
    assert len(soak.errors) == 2
    assert "ERROR foundation_p2p.y: broken" in soak.errors[0]
