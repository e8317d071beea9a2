"""Smoke test of ``bench/transport.py``: each part runs over 127.0.0.1 at a tiny size.

Skipped where aioquic (the baseline) is not installed. Checks that the bytes arrive intact,
that every control record is timed, and that the JSON line comes out; not the figures.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("aioquic")

BENCH = Path(__file__).resolve().parent.parent / "bench" / "transport.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_transport", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_transport"] = module
    spec.loader.exec_module(module)
    return module


bt = _load()


@pytest.mark.parametrize("impl", ["ours", "aioquic"])
def test_throughput_moves_the_bytes_intact(impl: str) -> None:
    result = bt.throughput_once(impl, 1_000_000, limit=30.0)
    assert result["intact"] is True
    assert result["mb_per_s"] > 0
    assert result["client_cpu_s"] > 0


def test_expected_digest_covers_every_byte() -> None:
    assert bt.expected_digest(len(bt.BLOCK) + 1) != bt.expected_digest(len(bt.BLOCK))


@pytest.mark.parametrize("mode", ["streams", "one"])
def test_hol_times_every_control_record_under_loss(mode: str) -> None:
    result = bt.hol_once(mode, 0.02, 0.3, None, seed=3, limit=30.0)
    assert 29 <= result["control_records"] <= 31
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["data_mb_per_s"] > 0


def test_handshake_part_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    bt.main(["--quick", "--runs", "1", "--parts", "handshake"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert len(result["handshake"]["ours"]) == 4
    assert result["handshake"]["ours"]["median_ms"] > 0
    assert result["handshake"]["aioquic"]["median_ms"] > 0
    assert "handshake.ours_at_most_10ms" in result["goals_met"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        bt.main(["--parts", "nonsense"])


def _in_namespace(ns: str, code: str) -> str:
    import subprocess

    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return proc.stdout.strip()


_COUNT_DELIVERED = """
import socket
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 0))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(("127.0.0.1", 0))
b.settimeout(0.02)
n = 0
for _ in range(400):
    a.sendto(b"x", b.getsockname())
    try:
        b.recv(16)
        n += 1
    except TimeoutError:
        pass
print(n)
"""


@pytest.mark.parametrize("percent", [0, 50])
def test_the_lossy_namespace_drops_about_its_share_and_is_removed(percent: int) -> None:
    bt = _load()
    why = bt.nft_available()
    if why is not None:
        pytest.skip(f"nft loss injection unavailable: {why}")
    import subprocess

    with bt.LossyNamespace(percent) as ns:
        delivered = int(_in_namespace(ns.name, _COUNT_DELIVERED))
        name = ns.name
    if percent == 0:
        assert delivered == 400
    else:  # binomial(400, 0.5): 140..260 holds with overwhelming probability
        assert 140 <= delivered <= 260, delivered
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in listed
