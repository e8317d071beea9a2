"""``python -m foundation_p2p.demo`` (what ``make demo`` runs) works and ends by itself."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def test_demo_runs_every_section_and_exits_by_itself(tmp_path: Path) -> None:
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "foundation_p2p.demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 15
    out = r.stdout
    for expected in (
        "== 1. Authenticated probes over UDP",
        "n1 -> n2",
        "the same packet again (a replay)    packets.dropped.replay +1",
        "sealed with a key n1 does not have  packets.dropped.unknown_key +1",
        "one bit flipped in the ciphertext   packets.dropped.auth_failed +1",
        "truncated to half its length        packets.dropped.malformed +1",
        "protocol version 2                  packets.dropped.unsupported_version +1",
        "n3 has the same node id",
        "(n3 packets refused as stale or replayed: 0)",
        "== 4. Membership",
        "n4 killed with SIGKILL",
        "MemberFailed",
        "n1 reports MemberLeft, not failed",
        "done: every node left and closed its socket.",
    ):
        assert expected in out, out
    assert "(nothing dropped!)" not in out
    assert "Traceback" not in r.stderr
