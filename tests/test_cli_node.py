"""The ``foundation-p2p`` command: ``keygen`` and ``node run`` as real subprocesses."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation_p2p.cli import build_parser, main
from foundation_p2p.crypto.keyring import Keyring

WAIT_S = 10.0
READY_RE = re.compile(
    r"^ready node_id=(?P<id>[0-9a-f]{32}) name=(?P<name>\S+) "
    r"address=(?P<address>\S+) advertise=(?P<advertise>\S+) epoch=(?P<epoch>\d+)$"
)


def _default_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM back to their default dispositions."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class NodeProcess:
    """``python -m foundation_p2p ...`` with its stdout and stderr read line by line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "foundation_p2p", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # the tests send SIGINT and SIGTERM on purpose: the child gets the default
            # dispositions even if something in this pytest process left SIGINT ignored
            # (Python keeps an inherited SIG_IGN for SIGINT, so the child would never see
            # KeyboardInterrupt; found by a `health --watch` that outlived its SIGINT)
            preexec_fn=_default_signals,
        )
        self.lines: dict[str, queue.Queue[str | None]] = {
            "stdout": queue.Queue(),
            "stderr": queue.Queue(),
        }
        self.seen: dict[str, list[str]] = {"stdout": [], "stderr": []}
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._pump, args=(name,), daemon=True).start()

    def _pump(self, name: str) -> None:
        stream = getattr(self.proc, name)
        for line in stream:
            self.lines[name].put(line.rstrip("\n"))
        self.lines[name].put(None)

    def expect(self, name: str, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        """The first new line of ``name`` matching ``pattern``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name} line matching {pattern!r}; saw {self.seen}")
            try:
                line = self.lines[name].get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{name} closed before {pattern!r}; saw {self.seen}")
            self.seen[name].append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def rest(self, name: str, timeout: float = 5.0) -> list[str]:
        """The lines of ``name`` not read yet, up to its end (for a process that exited);
        stops early after ``timeout``."""
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines[name].get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            out.append(line)
        return out

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=WAIT_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.key"
    path.write_text(Keyring.generate(os.urandom).to_text())
    return path


@pytest.fixture
def processes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for p in started:
        p.kill()


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foundation_p2p", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )


# -- keygen ----------------------------------------------------------------------------


def test_keygen_writes_a_valid_private_keyring_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "k"
    first = run_cli(["keygen", "--out", str(out)], tmp_path)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    ring = Keyring.from_file(str(out))
    assert len(ring.primary) == 32 and ring.accepted == []

    again = run_cli(["keygen", "--out", str(out)], tmp_path)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert Keyring.from_file(str(out)).primary == ring.primary  # untouched

    forced = run_cli(["keygen", "--out", str(out), "--force"], tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert Keyring.from_file(str(out)).primary != ring.primary
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["k"]  # no temporary file left behind


def test_keygen_into_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    assert main(["keygen", "--out", str(tmp_path / "no" / "k")]) == 2


# -- node run: startup and shutdown ----------------------------------------------------


def test_node_run_prints_its_ready_line_and_exits_0_on_sigterm(
    tmp_path: Path, key_file: Path, processes: list[NodeProcess]
) -> None:
    data_dir = tmp_path / "data"
    node = NodeProcess(
        ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", str(key_file),
         "--data-dir", str(data_dir), "--name", "alpha"],
        tmp_path,
    )
    processes.append(node)
    ready = node.expect("stdout", READY_RE.pattern)
    assert ready["name"] == "alpha"
    host, _, port = ready["address"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert ready["advertise"] == ready["address"]
    assert (data_dir / "identity").exists()
    started = time.monotonic()
    assert node.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    rest, _ = node.proc.communicate(timeout=WAIT_S)
    assert not rest.strip(), "exactly one line on stdout"
    node.expect("stderr", "SIGTERM: leaving")

    # Same data dir again: same node id, a larger epoch.
    again = NodeProcess(
        ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", str(key_file),
         "--data-dir", str(data_dir)],
        tmp_path,
    )
    processes.append(again)
    second = again.expect("stdout", READY_RE.pattern)
    assert second["id"] == ready["id"] and int(second["epoch"]) > int(ready["epoch"])
    assert again.stop(signal.SIGINT) == 0


def test_two_node_run_processes_log_peer_acked_events(
    tmp_path: Path, key_file: Path, processes: list[NodeProcess]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text("probe_interval_s = 0.1\nprobe_timeout_s = 0.1\nname = \"from-config\"\n")
    first = NodeProcess(
        ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", str(key_file),
         "--config", str(config), "--name", "one"],
        tmp_path,
    )
    processes.append(first)
    a = first.expect("stdout", READY_RE.pattern)
    assert a["name"] == "one"  # the flag overrides the config file
    second = NodeProcess(
        ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", str(key_file),
         "--config", str(config), "--join", a["address"]],
        tmp_path,
    )
    processes.append(second)
    b = second.expect("stdout", READY_RE.pattern)
    assert b["name"] == "from-config"
    event = second.expect(
        "stderr", r"^event PeerAcked node_id=(\w+) address=(\S+) rtt_ms=(\d+\.\d+)$"
    )
    assert event[1] == a["id"] and event[2] == a["address"]
    back = first.expect("stderr", r"^event PeerAcked node_id=(\w+) address=(\S+) ")
    assert back[1] == b["id"] and back[2] == b["address"]
    assert second.stop() == 0
    assert first.stop() == 0


def test_node_run_runs_the_app_inside_the_node(
    tmp_path: Path, key_file: Path, processes: list[NodeProcess]
) -> None:
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            """
            import trio

            async def main(node):
                print(f"app running in {node.node_id.hex()}", flush=True)
                await trio.sleep_forever()
            """
        )
    )
    node = NodeProcess(
        ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", str(key_file),
         "--app", "myapp:main"],
        tmp_path,
    )
    processes.append(node)
    ready = node.expect("stdout", READY_RE.pattern)
    app = node.expect("stdout", r"^app running in (\w+)$")
    assert app[1] == ready["id"]
    assert node.stop() == 0


# -- node run: errors ------------------------------------------------------------------


def test_node_run_with_an_unknown_flag_exits_2(tmp_path: Path, key_file: Path) -> None:
    r = run_cli(["node", "run", "--bind", "127.0.0.1:0", "--bogus"], tmp_path)
    assert r.returncode == 2
    assert "unrecognized arguments: --bogus" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "127.0.0.1:99999"], "--bind: port 99999"),
        (["--bind", "localhost"], "--bind: 'localhost' is not HOST:PORT"),
        (["--bind", "127.0.0.1:0", "--join", "nowhere"], "--join: 'nowhere' is not HOST:PORT"),
        ([], "--bind HOST:PORT is required"),
        (["--bind", "127.0.0.1:0", "--app", "no_such_module_here:main"], "no module named"),
        (["--bind", "127.0.0.1:0", "--app", "json"], "'json' is not module:callable"),
        (["--bind", "127.0.0.1:0", "--app", "json:nope"], "json has no attribute 'nope'"),
        (["--bind", "127.0.0.1:0", "--config", "missing.toml"], "missing.toml: cannot read"),
    ],
)
def test_node_run_usage_errors_exit_2_with_one_clear_line(
    tmp_path: Path,
    key_file: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In-process: these fail before any logging setup or socket.
    monkeypatch.chdir(tmp_path)
    assert main(["node", "run", "--cluster-key-file", str(key_file), *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1


def test_node_run_without_a_key_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node", "run", "--bind", "127.0.0.1:0"]) == 2
    assert "--cluster-key-file F is required" in capsys.readouterr().err


def test_node_run_with_an_unreadable_key_file_exits_2_naming_it(tmp_path: Path) -> None:
    r = run_cli(
        ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", "absent.key"], tmp_path
    )
    assert r.returncode == 2
    assert "absent.key: cannot read the keyring" in r.stderr


def test_node_run_with_a_malformed_key_file_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("foundation-p2p keyring v1\nprimary not-base64!\n")
    r = run_cli(
        ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", "bad.key"], tmp_path
    )
    assert r.returncode == 2
    assert "bad.key:2: the key is not valid base64" in r.stderr


def test_node_run_on_a_port_in_use_exits_1(tmp_path: Path, key_file: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        r = run_cli(
            ["node", "run", "--bind", f"127.0.0.1:{port}", "--cluster-key-file", str(key_file)],
            tmp_path,
        )
    assert r.returncode == 1
    assert f"cannot bind UDP 127.0.0.1:{port}: address already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_node_run_on_a_locked_data_dir_exits_2(
    tmp_path: Path, key_file: Path, processes: list[NodeProcess]
) -> None:
    args = ["node", "run", "--bind", "127.0.0.1:0", "--cluster-key-file", str(key_file),
            "--data-dir", str(tmp_path / "d")]
    first = NodeProcess(args, tmp_path)
    processes.append(first)
    first.expect("stdout", READY_RE.pattern)
    r = run_cli(args, tmp_path)
    assert r.returncode == 2
    assert "in use by another running node" in r.stderr
    assert first.stop() == 0


# -- the parser ------------------------------------------------------------------------


def test_every_leaf_command_sets_func_and_seed_is_not_taken() -> None:
    parser = build_parser()
    for argv in (["keygen", "--out", "x"], ["node", "run"]):
        args = parser.parse_args(argv)
        assert callable(args.func)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["node", "run", "--seed", "1"])
    assert info.value.code == 2


def test_python_dash_m_shows_help(tmp_path: Path) -> None:
    r = run_cli(["--help"], tmp_path)
    assert r.returncode == 0
    assert "keygen" in r.stdout and "node" in r.stdout


def test_the_cli_works_without_the_simulator_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name.startswith("simulator") else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["sim", "run", "x.toml"])
    assert callable(parser.parse_args(["keygen", "--out", "k"]).func)


def test_a_simulator_cli_that_fails_to_import_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    real_import = importlib.import_module

    def import_module(name: str, package: str | None = None) -> object:
        if name == "simulator.cli":
            raise ImportError("simulator.cli is broken")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(ImportError, match="broken"):
        build_parser()
