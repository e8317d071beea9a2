"""``foundation-p2p sim run|replay|sweep``: reports, exit statuses, replay commands."""

from __future__ import annotations

import glob
import json
import os
import shlex
import subprocess
import sys
from typing import Any

import pytest

from simulator import cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCENARIOS = os.path.join(ROOT, "simulator", "scenarios")
CI_SCENARIOS = sorted(
    p for p in glob.glob(os.path.join(SCENARIOS, "*.toml")) if not p.endswith("-soak.toml")
)
REPORT_KEYS = {
    "ok", "seed", "scenario", "nodes", "mode", "virtual_seconds", "wall_seconds", "events",
    "trace_digest", "invariants", "metrics",
}

ISOLATED = """\
# n3 is cut off at 5 s and never healed, so its probes go unanswered to the end.
name = "isolated"
duration = "20s"
[cluster]
nodes = 3
[[fault]]
at = "5s"
op = "isolate"
node = "n3"
[[workload]]
kind = "ping"
"""

HEALTHY = """\
name = "healthy"
duration = "10s"
[cluster]
nodes = 3
[[workload]]
kind = "ping"
"""


def foundation_p2p(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command line (``python -m foundation_p2p``) in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "foundation_p2p", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )


def write(tmp_path: Any, name: str, text: str) -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    ("snippet", "named"),
    [
        ('durration = "60s"\n', "durration: unknown key"),
        ('duration = "60 seconds"\n', "duration: '60 seconds' has an unknown unit"),
        ('[[fault]]\nat = "1s"\nop = "crash"\nnode = "n7"\n',
         "fault[0].node: unknown node name 'n7'"),
        ('[[fault]]\nat = "1s"\nop = "meteor"\n', "fault[0].op: unknown fault op 'meteor'"),
    ],
    ids=["invalid-key", "bad-duration", "unknown-node", "unknown-fault-op"],
)
def test_sim_run_refuses_an_invalid_scenario_with_exit_2_naming_it(
    tmp_path: Any, snippet: str, named: str
) -> None:
    if snippet.startswith("[["):
        text = HEALTHY + snippet
    else:
        text = snippet + HEALTHY.replace('duration = "10s"\n', "")
    path = write(tmp_path, "bad.toml", text)
    done = foundation_p2p("sim", "run", path, "--json")
    assert done.returncode == 2, done.stderr
    assert path in done.stderr and named in done.stderr
    assert done.stdout == ""


def test_sim_run_refuses_a_later_capability_with_exit_2_naming_it(tmp_path: Any) -> None:
    from simulator import capabilities

    pending = [p for p in capabilities.PENDING if p.category == capabilities.INVARIANT]
    if not pending:
        pytest.skip("every invariant has landed: nothing is pending to refuse")
    name, cap = pending[0].name.replace("*", "x"), pending[0].capability
    text = HEALTHY + f'[check]\ninvariants = ["{name}"]\n'
    if "[check]" in HEALTHY:
        text = HEALTHY.replace("[check]\n", f'[check]\ninvariants = ["{name}"]\n', 1)
    path = write(tmp_path, "later.toml", text)
    done = foundation_p2p("sim", "run", path)
    assert done.returncode == 2, done.stderr
    assert f"invariant '{name}' needs {cap}" in done.stderr


def test_sim_run_json_report_has_the_design_keys_and_exit_0(tmp_path: Any) -> None:
    path = os.path.join(SCENARIOS, "partition-heal.toml")
    done = foundation_p2p("sim", "run", path, "--seed", "7", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= REPORT_KEYS
    assert "replay" not in report
    assert report["ok"] is True and report["seed"] == 7 and report["scenario"] == "partition-heal"
    assert report["nodes"] == 5 and report["mode"] == "bytes"
    assert report["virtual_seconds"] == pytest.approx(60.0)
    assert report["events"] > 0 and len(report["trace_digest"]) == 64
    for name, res in report["invariants"].items():
        assert "." in name and set(res) == {"ok", "detail"} and res["ok"] is True
    assert "net.partition_respected" in report["invariants"]
    assert report["metrics"]["net.dropped_partition"] > 0


def test_failing_invariant_exits_1_with_a_replay_command_that_reproduces_it(
    tmp_path: Any,
) -> None:
    path = write(tmp_path, "isolated.toml", ISOLATED)
    done = foundation_p2p("sim", "run", path, "--seed", "3", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["invariants"]["probe.reachable"]["ok"] is False
    assert "n3" in report["invariants"]["probe.reachable"]["detail"]
    assert report["replay"] == f"foundation-p2p sim run {shlex.quote(path)} --seed 3 --mode bytes"
    argv = shlex.split(report["replay"])
    assert argv[0] == "foundation-p2p"
    again = foundation_p2p(*argv[1:], "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["trace_digest"] == report["trace_digest"]


def test_human_report_names_the_failure_and_the_replay(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "isolated.toml", ISOLATED)
    status, out, _ = run_main(capsys, "sim", "run", path, "--mode", "messages")
    assert status == 1
    assert "FAIL  probe.reachable" in out
    assert "result: FAILED, 1 invariant(s) failed: probe.reachable" in out
    assert f"replay: foundation-p2p sim run {path} --seed 1 --mode messages" in out
    assert "mode messages" in out


def test_seed_and_mode_options_override_the_file(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "healthy.toml", HEALTHY)
    status, out, _ = run_main(capsys, "sim", "run", path, "--json", "--seed", "42",
                              "--mode", "messages")
    assert status == 0
    report = json.loads(out)
    assert (report["seed"], report["mode"]) == (42, "messages")
    _, out2, _ = run_main(capsys, "sim", "run", path, "--json", "--seed", "43",
                          "--mode", "messages")
    assert json.loads(out2)["trace_digest"] != report["trace_digest"]


def test_trace_replays_to_the_same_digest_and_a_tampered_one_does_not(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = os.path.join(SCENARIOS, "crash-restart.toml")
    trace = os.path.join(str(tmp_path), "run.jsonl")
    status, out, _ = run_main(capsys, "sim", "run", path, "--seed", "5", "--json",
                              "--trace", trace)
    assert status == 0
    digest = json.loads(out)["trace_digest"]

    status, out, _ = run_main(capsys, "sim", "replay", trace, "--json")
    assert status == 0
    replayed = json.loads(out)
    assert replayed["matches"] is True and replayed["trace_digest"] == digest
    assert set(replayed) >= REPORT_KEYS and "divergence" not in replayed

    with open(trace, encoding="utf-8") as f:
        lines = f.readlines()
    lines[len(lines) // 2] = lines[len(lines) // 2].replace('"t":"', '"t":"9', 1)
    tampered = write(tmp_path, "tampered.jsonl", "".join(lines))
    status, out, _ = run_main(capsys, "sim", "replay", tampered, "--json")
    assert status == 1
    report = json.loads(out)
    assert report["matches"] is False and report["divergence"]
    assert report["replay"] == f"foundation-p2p sim replay {tampered}"

    status, out, _ = run_main(capsys, "sim", "replay", trace)
    assert status == 0 and "replay matches the trace: yes" in out


def test_replay_of_a_file_that_is_not_a_trace_exits_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = write(tmp_path, "x.jsonl", "hello\n")
    status, _, err = run_main(capsys, "sim", "replay", bogus)
    assert status == 2 and "cannot replay" in err and "not JSON" in err
    status, _, err = run_main(capsys, "sim", "replay", os.path.join(str(tmp_path), "none"))
    assert status == 2 and "no such trace file" in err


def test_sweep_json_lists_passed_and_failed_seeds_with_replays(tmp_path: Any) -> None:
    path = write(tmp_path, "isolated.toml", ISOLATED)
    done = foundation_p2p("sim", "sweep", path, "--seeds", "1..3", "--jobs", "2", "--json")
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert {"ok", "seeds", "passed", "failed", "wall_seconds"} <= set(summary)
    assert summary["ok"] is False and summary["seeds"] == 3 and summary["passed"] == 0
    assert [f["seed"] for f in summary["failed"]] == [1, 2, 3]
    for entry in summary["failed"]:
        assert entry["failed_invariants"] == ["probe.reachable"]
        assert entry["replay"] == (
            f"foundation-p2p sim run {shlex.quote(path)} --seed {entry['seed']} --mode bytes"
        )


def test_sweep_of_a_healthy_scenario_passes_every_seed(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "healthy.toml", HEALTHY)
    status, out, _ = run_main(capsys, "sim", "sweep", path, "--seeds", "10..13", "--jobs", "1",
                              "--json", "--mode", "messages")
    assert status == 0
    summary = json.loads(out)
    assert summary["ok"] is True and summary["passed"] == 4 and summary["failed"] == []
    assert summary["seed_range"] == [10, 13] and summary["mode"] == "messages"


def test_random_faults_sweep_replays_name_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = os.path.join(SCENARIOS, "random-faults.toml")
    status, out, _ = run_main(capsys, "sim", "sweep", path, "--seeds", "1..3", "--jobs", "1",
                              "--random-faults", "--json")
    summary = json.loads(out)
    assert summary["random_faults"] is True and summary["seeds"] == 3
    assert status == (0 if summary["ok"] else 1)
    for entry in summary["failed"]:
        assert "--random-faults" in entry["replay"]
    status, out, _ = run_main(capsys, "sim", "run", path, "--seed", "2", "--random-faults",
                              "--json")
    report = json.loads(out)
    assert report["metrics"]["faults.applied"] > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["sim", "sweep", "{healthy}", "--seeds", "5..1"], "5 is above 1"),
        (["sim", "sweep", "{healthy}", "--seeds", "7"], "not a range"),
        (["sim", "sweep", "{healthy}", "--seeds", "1..2", "--jobs", "0"], "out of range"),
        (["sim", "run", "{healthy}", "--mode", "packets"], "invalid choice"),
        (["sim", "run", "{healthy}", "--seed", "-3"], "out of range"),
        (["sim", "run", "{healthy}", "--history", "{tmp}/h.jsonl"], "no kind = \"kv\""),
        (["sim", "run", "{healthy}", "--trace", "/nonexistent/dir/t.jsonl"],
         "directory does not exist"),
        (["sim", "run", "{tmp}/missing.toml"], "cannot read"),
        (["sim"], "required"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    healthy = write(tmp_path, "healthy.toml", HEALTHY)
    argv = [a.format(healthy=healthy, tmp=str(tmp_path)) for a in args]
    status, out, err = run_main(capsys, *argv)
    assert status == 2
    assert fragment in err
    assert out == ""


def test_a_crash_of_the_code_under_test_exits_3_with_the_seed(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from foundation_p2p.node import NodeCore

    def broken(self: NodeCore, now: Any, addr: Any, data: bytes) -> None:
        raise RuntimeError("boom in handle_datagram")

    monkeypatch.setattr(NodeCore, "handle_datagram", broken)
    path = write(tmp_path, "healthy.toml", HEALTHY)
    status, out, _ = run_main(capsys, "sim", "run", path, "--seed", "9", "--json")
    assert status == 3
    report = json.loads(out)
    assert report["ok"] is False and report["seed"] == 9
    assert "boom in handle_datagram" in report["internal_error"]
    assert report["replay"].endswith("--seed 9 --mode bytes")


@pytest.mark.parametrize("path", CI_SCENARIOS, ids=os.path.basename)
def test_every_ci_sized_shipped_scenario_runs_green(
    path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_main(capsys, "sim", "run", path, "--json")
    report = json.loads(out)
    failed = {k: v["detail"] for k, v in report["invariants"].items() if not v["ok"]}
    assert status == 0, failed
    assert report["virtual_seconds"] > 0 and report["events"] > 0


def test_progress_line_is_silent_for_short_runs_then_reports() -> None:
    import io

    stream = io.StringIO()
    progress = cli.ProgressLine(60.0, stream)
    progress(1.0, 60.0)
    assert stream.getvalue() == ""
    progress.started -= 10.0
    progress.next_line = 0.0
    progress(30.0, 60.0)
    line = stream.getvalue()
    assert line.startswith("sim: 30.0/60.0 virtual s (50%)") and "s wall" in line
    progress(31.0, 60.0)
    assert stream.getvalue() == line  # at most one line every PROGRESS_EVERY_S


def test_sim_sweep_budget_stops_starting_seeds_and_fails_naming_how_many_ran(
    tmp_path: Any,
) -> None:
    path = write(tmp_path, "healthy.toml", HEALTHY)
    # a budget far below one seed's wall time: only the first seeds in flight run
    done = foundation_p2p("sim", "sweep", path, "--seeds", "1..500", "--jobs", "1",
                          "--budget", "1ms", "--json")
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] is False and summary["failed"] == []
    assert summary["seeds"] < 500 and summary["unrun"] == 500 - summary["seeds"]
    assert f"ran out after {summary['seeds']} of 500 seeds" in done.stderr
    # a budget that suffices changes nothing
    done = foundation_p2p("sim", "sweep", path, "--seeds", "1..2", "--budget", "10m", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["seeds"] == 2 and summary["unrun"] == 0
    done = foundation_p2p("sim", "sweep", path, "--seeds", "1..2", "--budget=-1s")
    assert done.returncode == 2 and "--budget" in done.stderr
