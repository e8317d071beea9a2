"""``foundation-p2p health``: usage errors exit 2 naming the flag; no member exits 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from foundation_p2p.crypto.keyring import Keyring


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "foundation_p2p", "health", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.key"
    path.write_text(Keyring.generate(os.urandom).to_text())
    return path


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        ([], "--join"),
        (["--join", "nowhere"], "--join"),
        (["--join", "127.0.0.1:7946", "--timeout", "nan"], "--timeout"),
        (["--join", "127.0.0.1:7946", "--timeout", "0"], "--timeout"),
        (["--join", "127.0.0.1:7946", "--bind", "x:y"], "--bind"),
        (["--join", "127.0.0.1:7946"], "--cluster-key-file"),
    ],
)
def test_usage_errors_exit_2_naming_the_flag(tmp_path: Path, args: list[str], flag: str) -> None:
    done = run(args, tmp_path)
    assert done.returncode == 2, done
    assert flag in done.stderr, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


def test_a_missing_key_file_exits_2_naming_it(tmp_path: Path) -> None:
    done = run(["--join", "127.0.0.1:7946", "--cluster-key-file", str(tmp_path / "nope")],
               tmp_path)
    assert done.returncode == 2
    assert "nope" in done.stderr and "Traceback" not in done.stderr


def test_no_member_answering_exits_1(tmp_path: Path, key: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # a bound port nobody answers on
        port = s.getsockname()[1]
        done = run(["--join", f"127.0.0.1:{port}", "--cluster-key-file", str(key),
                    "--timeout", "0.5", "--json"], tmp_path)
    assert done.returncode == 1, done
    assert "no peer answered within 0.5 s" in done.stderr
    assert done.stdout == ""


def test_help_names_the_json_shape(tmp_path: Path) -> None:
    done = run(["--help"], tmp_path)
    assert done.returncode == 0
    assert "--json" in done.stdout and "--watch" in done.stdout and "recommendations" in done.stdout
