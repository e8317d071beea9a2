"""Health over real UDP: three ``foundation-p2p node run --admin 127.0.0.1:0`` processes.

Their ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus text, parsed) answer;
``foundation-p2p health --json --join ...`` lists all three with their status; a node
SIGSTOPped for less than the suspicion timeout is reported degraded by the others with a
reason, then healthy again after SIGCONT. Every wait is for a condition, bounded.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_cli_node import NodeProcess, key_file, processes, run_cli  # noqa: F401

ADMIN_RE = re.compile(
    r"^ready node_id=(?P<id>[0-9a-f]{32}) name=(?P<name>\S+) address=(?P<address>\S+) "
    r"advertise=\S+ epoch=\d+ admin=(?P<admin>http://127\.0\.0\.1:\d+)$"
)
CONFIG = """\
[membership]
profile = "local"
probe_interval_s = 0.2
probe_timeout_s = 0.1
suspicion_mult = 30
[health]
interval_s = 0.2
"""
"""Fast probes and health rounds; a suspicion lasts at least 30 probe periods (6 s), so a
stop of a few seconds is suspected, never declared failed."""


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.headers.get("content-type", ""), resp.read().decode()


def health(admin: str) -> dict[str, Any]:
    status, ctype, body = get(admin + "/health")
    assert status == 200 and ctype.startswith("application/json")
    data: dict[str, Any] = json.loads(body)
    return data


def wait_for(what: str, cond: Callable[[], bool], timeout: float) -> float:
    """Poll ``cond`` every 0.1 s until true; the seconds it took; fail after ``timeout``."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def parse_prometheus(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition (``name{labels}`` -> value), strictly."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line == "" or re.match(r"^# (HELP|TYPE) \w+ ", line), line
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
        assert m, f"bad sample line {line!r}"
        out[m[1]] = float(m[2])
    return out


def start_three(tmp_path: Path, key: Path, procs: list[NodeProcess]) -> list[dict[str, str]]:
    conf = tmp_path / "node.toml"
    conf.write_text(CONFIG)
    nodes: list[dict[str, str]] = []
    for name in ("a", "b", "c"):
        args = ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", str(key),
                "--config", str(conf), "--name", name, "--admin", "127.0.0.1:0"]
        if nodes:
            args += ["--join", nodes[0]["address"]]
        p = NodeProcess(args, tmp_path)
        procs.append(p)
        nodes.append(p.expect("stdout", ADMIN_RE.pattern).groupdict())
    return nodes


def statuses(admin: str) -> dict[str, str]:
    return {n["name"]: n["status"] for n in health(admin)["nodes"]}


def test_three_node_processes_answer_health_metrics_and_the_health_command(
    tmp_path: Path, key_file: Path, processes: list[NodeProcess]  # noqa: F811
) -> None:
    t0 = time.monotonic()
    nodes = start_three(tmp_path, key_file, processes)
    t_ready = time.monotonic() - t0
    all_healthy = {"a": "healthy", "b": "healthy", "c": "healthy"}
    t_conv = wait_for("every admin endpoint reports a, b and c healthy",
                      lambda: all(statuses(n["admin"]) == all_healthy for n in nodes), 20.0)
    report = health(nodes[1]["admin"])
    assert report["status"] == "healthy" and report["reasons"] == []
    by_name = {n["name"]: n for n in report["nodes"]}
    assert by_name["c"]["address"] == nodes[2]["address"]
    assert by_name["a"]["node_id"] == nodes[0]["id"]
    # the gossiped summaries carry the runtime's own figures
    assert by_name["a"]["summary"]["rss_kib"] > 1000
    fig = report["figures"]
    assert fig["packets_per_s"] is not None and fig["packets_per_s"] > 0, fig

    status, ctype, text = get(nodes[0]["admin"] + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    samples = parse_prometheus(text)
    assert samples["foundation_p2p_packets_received_total"] > 0
    assert samples["foundation_p2p_membership_alive_count"] == 3
    for name in ("a", "b", "c"):
        key = next(k for k in samples
                   if k.startswith("foundation_p2p_health_node_status") and f'node="{name}"' in k)
        assert samples[key] == 0  # 0 healthy, 1 degraded, 2 critical

    conf = tmp_path / "node.toml"
    t1 = time.monotonic()
    done = run_cli(["health", "--json", "--join", nodes[0]["address"], "--cluster-key-file",
                    str(key_file), "--config", str(conf)], tmp_path)
    t_cli = time.monotonic() - t1
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {n["name"]: n["status"] for n in out["nodes"]} == all_healthy
    assert out["status"] == "healthy" and out["recommendations"] == []
    assert {n["address"] for n in out["nodes"]} == {n["address"] for n in nodes}

    # --watch: one report a second until interrupted, then exit 0
    watch = NodeProcess(["health", "--watch", "--json", "--join", nodes[1]["address"],
                         "--cluster-key-file", str(key_file), "--config", str(conf)], tmp_path)
    processes.append(watch)
    first = json.loads(watch.expect("stdout", r"^\{").string)
    second = json.loads(watch.expect("stdout", r"^\{").string)
    assert first["status"] == second["status"] == "healthy"
    assert len(second["nodes"]) == 3
    # SIGINT: the observer leaves (at most leave_timeout_s) and exits 0; bounded generously,
    # as a loaded CI machine once took more than 10 s to let it finish
    watch.proc.send_signal(signal.SIGINT)
    returncode = watch.proc.wait(timeout=30.0)
    assert returncode == 0, "\n".join(watch.rest("stderr"))
    print(f"ready {t_ready:.2f} s, all healthy {t_conv:.2f} s later, health CLI {t_cli:.2f} s")


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_stopped_node_is_reported_degraded_then_healthy_after_sigcont(
    tmp_path: Path, key_file: Path, processes: list[NodeProcess]  # noqa: F811
) -> None:
    nodes = start_three(tmp_path, key_file, processes)
    admin_a = nodes[0]["admin"]
    all_healthy = {"a": "healthy", "b": "healthy", "c": "healthy"}
    # every node must know c before it stops: b learns of c only by gossip (c joined
    # through a), and a stopped c can no longer tell it (a loaded machine once stopped c
    # before b's report listed it)
    wait_for("every admin endpoint reports a, b and c healthy",
             lambda: all(statuses(n["admin"]) == all_healthy for n in nodes), 20.0)
    stopped = processes[2]
    stopped.proc.send_signal(signal.SIGSTOP)
    seen: dict[str, Any] = {}
    b_seen: dict[str, Any] = {}
    try:
        def c_degraded() -> bool:
            if not seen:
                report = health(admin_a)
                c = next(n for n in report["nodes"] if n["name"] == "c")
                # suspected by membership (a stale summary may say degraded first on a
                # loaded machine; the point here is Lifeguard's suspicion, not failure)
                if c["status"] != "healthy" and c["state"] == "suspect":
                    seen.update(c)
            if not b_seen:  # b's own view, read while c is still stopped
                c = next(n for n in health(nodes[1]["admin"])["nodes"] if n["name"] == "c")
                if c["status"] != "healthy":
                    b_seen.update(c)
            return bool(seen and b_seen)

        # well inside the 6 s suspicion timeout: suspected, not declared failed
        t_degraded = wait_for("a and b report c degraded", c_degraded, 4.0)
    finally:
        stopped.proc.send_signal(signal.SIGCONT)
    assert seen["status"] == "degraded", seen
    assert seen["state"] == "suspect"
    assert any(r.startswith("suspected by membership for") for r in seen["reasons"]), seen
    assert b_seen["status"] == "degraded", b_seen
    t_back = wait_for("a and b report c healthy again after SIGCONT",
                      lambda: statuses(admin_a)["c"] == "healthy"
                      and statuses(nodes[1]["admin"])["c"] == "healthy", 20.0)
    print(f"c degraded at a after {t_degraded:.2f} s stopped; healthy {t_back:.2f} s after "
          "SIGCONT")
