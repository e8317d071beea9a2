"""``python -m foundation_p2p.demo`` (what ``make demo`` runs) works and ends by itself.

The demo starts five node processes over UDP on 127.0.0.1 and checks, step by step, what
it shows (it exits 1 naming the step that did not see what it expected); this test runs it
whole and checks that every step printed its result.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DEMO_LIMIT_S = 240
"""Generous bound on the whole run (about 25 s alone; the suite runs tests in parallel on
a shared machine). Speed is not asserted here."""


def test_demo_runs_every_section_and_exits_by_itself(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "foundation_p2p.demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEMO_LIMIT_S,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for expected in (
        "== 1. Five nodes over UDP on 127.0.0.1: membership converges",
        "the five formed one Raft group (5 voters)",
        "== 2. Channels",
        "control        40",
        "== 3. Health",
        "(gossiped summaries, no round trip): cluster",
        "its event loop lags",
        "n5 is healthy again",
        "== 4. A singleton",
        "killed with SIGKILL: no goodbye, no handoff",
        "(the supervisors noticed the failure through membership and placed it again)",
        "== 5. KV through Raft",
        "reads them back (linearizable reads): k1=v1, k2=v2, k3=v3, k4=v4",
        "== 6. An auction among agents",
        "winner agent-3 (bid 90) pays 70, the second-highest bid",
        "every live node's replica computed the same winner and price",
        "the same packet again (a replay)    packets.dropped.replay +1",
        "sealed with another cluster's key   packets.dropped.unknown_key +1",
        "one bit flipped in the ciphertext   packets.dropped.auth_failed +1",
        "truncated to half its length        packets.dropped.malformed +1",
        "protocol version 2                  packets.dropped.unsupported_version +1",
        "== 8. The killed nodes restart",
        "same node id, Raft log from its WAL, a follower of",
        "membership: 5 members alive again",
        "done: every node left the cluster gracefully and its process exited.",
    ):
        # compared with runs of spaces folded (table columns are padded to their widest cell)
        assert " ".join(expected.split()) in " ".join(out.split()), (expected, out)
    # the membership table: five rows, one per node
    assert len(re.findall(r"^   n[1-5] +\d+ +127\.0\.0\.1:\d+ ", out, re.M)) == 5, out
    assert "Traceback" not in r.stderr, r.stderr


def test_demo_reports_a_failed_step_and_exits_1(tmp_path: Path) -> None:
    """A step that does not see what it expects ends the demo with status 1 and a message
    naming the step (here: a node process that cannot start, because the interpreter it
    is started with does not exist)."""
    code = (
        "import sys, foundation_p2p.demo as d\n"
        "d.sys.executable = '/nonexistent/python'\n"
        "sys.exit(d.main([]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "demo failed: step 1 (Five nodes over UDP on 127.0.0.1" in r.stderr, r.stderr


README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE_MARKER = "<!-- readme-example: embed"


def readme_example() -> str:
    """The Python block that follows the embedding example's marker in README.md."""
    text = README.read_text(encoding="utf-8")
    start = text.index(EXAMPLE_MARKER)
    body = text.index("```python\n", start) + len("```python\n")
    return text[body : text.index("```\n", body)]


def test_the_readme_embedding_example_runs(tmp_path: Path) -> None:
    """README's "Embedding a node in a Trio application" is a complete program: it runs,
    prints what the README says it prints, and exits 0."""
    script = tmp_path / "app.py"
    script.write_text(readme_example(), encoding="utf-8")
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=DEMO_LIMIT_S)
    assert r.returncode == 0, r.stdout + r.stderr
    for expected in (
        "members: ['a', 'b', 'c']",
        "c received {'order': 42} on events",
        "c reads b'db1:5432'",
        "reporter runs on",
        "auction: the agent that bid 50 wins and pays 40",
        "health: ",
    ):
        assert expected in r.stdout, (expected, r.stdout, r.stderr)
