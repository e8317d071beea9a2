"""Membership over real UDP: five ``foundation-p2p node run`` processes on 127.0.0.1.

One story, in the order an operator would see it: the five nodes find each other; one is
killed with SIGKILL and every survivor reports it failed within the suspicion window;
one is stopped with SIGTERM and is reported left, not failed; it restarts from the same
data directory on another port and is the same member (same node id, new address,
higher incarnation). Each node's view is read from its ``event ...`` lines on stderr, the
cluster's through ``foundation-p2p members --json``. Every wait is bounded; the timings
come from the ``[membership]`` table below (the ``local`` profile, faster probes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.membership.config import MembershipConfig

N = 5
MEMBERSHIP = {
    "profile": "local",
    "probe_interval_s": 0.2,
    "probe_timeout_s": 0.1,
    # The local profile's retransmit_mult (2) often lets a join's announcement die out
    # before it reaches every node of a 5-node cluster, leaving the rest to the periodic
    # push-pull (7.5-15 s in that profile): memberlist's LAN value and a 2 s push-pull
    # keep the cluster's formation short. Detection does not depend on either.
    "retransmit_mult": 4,
    "push_pull_interval_s": 2.0,
}
MEMBERSHIP_TOML = "[membership]\n" + "".join(
    f"{k} = {json.dumps(v)}\n" for k, v in MEMBERSHIP.items()
)
SETTINGS = MembershipConfig.from_node_config(NodeConfig(extra={"membership": MEMBERSHIP}))
START_S = 15.0
"""Bound on starting a process and on the cluster finding itself (imports dominate)."""
DETECTION_WINDOW_S = (
    (N - 1) * SETTINGS.probe_interval_s  # a full round-robin pass before its turn
    + SETTINGS.probe_interval_s  # the failed probe itself
    + SETTINGS.suspicion_max_s(N)  # Lifeguard's longest suspicion (no confirmations)
    + 1.0  # dissemination and scheduling slack on a loaded test machine
)
"""The longest a survivor may take to report a SIGKILLed node failed."""

READY_RE = re.compile(r"^ready node_id=(?P<id>[0-9a-f]{32}) name=\S+ address=(?P<address>\S+) ")
FAILED_RE = re.compile(r"^event MemberFailed node_id=(?P<id>[0-9a-f]{32}) ")


class NodeProcess:
    """One ``python -m foundation_p2p node run``; its lines kept with their arrival times."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "foundation_p2p", "node", "run", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._open = 2
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()
        self.node_id = ""
        self.address = ""

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> tuple[float, re.Match[str]]:
        """The arrival time and match of the first line (ever) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for at, line in self.lines[seen:]:
                    m = pattern.search(line)
                    if m:
                        return at, m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self._open == 0:
                    tail = "\n".join(line for _, line in self.lines[-15:])
                    raise AssertionError(
                        f"{self.name}: no line matching {pattern.pattern!r} "
                        f"({'exited' if self._open == 0 else 'timed out'}); last lines:\n{tail}"
                    )
                self._cond.wait(left)

    def matches(self, pattern: re.Pattern[str]) -> list[re.Match[str]]:
        """Every line so far that matches ``pattern``."""
        with self._cond:
            return [m for _, line in self.lines if (m := pattern.search(line))]

    def started(self) -> None:
        """Wait for the ready line; remember the node id and address."""
        _, m = self.wait_for(READY_RE, START_S)
        self.node_id, self.address = m.group("id"), m.group("address")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def member_event(kind: str, node_id: str) -> re.Pattern[str]:
    """An event line about ``node_id``, with the member's fields as groups."""
    return re.compile(
        rf"^event {kind} node_id={node_id} name=(?P<name>\S*) address=(?P<address>\S+) "
        r"incarnation=(?P<inc>\d+) state=(?P<state>\w+) "
    )


@pytest.fixture
def cluster_files(tmp_path: Path) -> Path:
    (tmp_path / "cluster.key").write_text(Keyring.generate(os.urandom).to_text())
    (tmp_path / "node.toml").write_text(MEMBERSHIP_TOML)
    return tmp_path


@pytest.fixture
def procs() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for p in started:
        p.kill()


def start_node(
    root: Path, procs: list[NodeProcess], name: str, join: str | None
) -> NodeProcess:
    args = [
        "--bind", "127.0.0.1:0", "--name", name, "--data-dir", str(root / name),
        "--config", str(root / "node.toml"), "--cluster-key-file", str(root / "cluster.key"),
    ]  # fmt: skip
    if join is not None:
        args += ["--join", join]
    proc = NodeProcess(name, args)
    procs.append(proc)
    return proc


def cluster_view(root: Path, join: str) -> dict[str, dict[str, Any]]:
    """``members --json`` through ``join``: the non-observer members by node id."""
    args = [
        sys.executable, "-m", "foundation_p2p", "members", "--join", join,
        "--cluster-key-file", str(root / "cluster.key"), "--json", "--timeout", "5",
    ]  # fmt: skip
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=START_S,
    )
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    return {r["node_id"]: r for r in records if not r["observer"]}


def test_five_processes_detect_a_kill_report_a_leave_and_keep_a_restarted_identity(
    cluster_files: Path, procs: list[NodeProcess]
) -> None:
    root = cluster_files
    seed = start_node(root, procs, "n0", None)
    seed.started()
    nodes = [seed] + [start_node(root, procs, f"n{i}", seed.address) for i in range(1, N)]
    for node in nodes[1:]:
        node.started()
    ids = {node.node_id for node in nodes}
    assert len(ids) == N

    # Everyone sees everyone (MemberJoined for each of the four others).
    for node in nodes:
        for other in nodes:
            if other is not node:
                node.wait_for(member_event("MemberJoined", other.node_id), START_S)
    view = cluster_view(root, seed.address)
    assert set(view) == ids
    assert {r["state"] for r in view.values()} == {"alive"}
    assert {r["name"] for r in view.values()} == {f"n{i}" for i in range(N)}

    # SIGKILL n4: every survivor reports it failed within the suspicion window.
    victim = nodes[4]
    killed_at = time.monotonic()
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    survivors = nodes[:4]
    for node in survivors:
        at, m = node.wait_for(member_event("MemberFailed", victim.node_id), DETECTION_WINDOW_S)
        assert at - killed_at <= DETECTION_WINDOW_S
        assert m.group("state") == "failed"
    view = cluster_view(root, seed.address)
    assert {k for k, r in view.items() if r["state"] == "alive"} == ids - {victim.node_id}
    assert victim.node_id not in view or view[victim.node_id]["state"] == "failed"

    # SIGTERM n3: the others report it left, never failed; it exits 0.
    leaver = nodes[3]
    leaver.proc.send_signal(signal.SIGTERM)
    assert leaver.proc.wait(timeout=START_S) == 0
    left_inc = 0
    for node in nodes[:3]:
        _, m = node.wait_for(member_event("MemberLeft", leaver.node_id), START_S)
        assert m.group("state") == "left"
        left_inc = max(left_inc, int(m.group("inc")))
    # A fresh observer is told only of live members and of those it already knew
    # (push-pull skips failed and left entries of unknown members), so the killed and the
    # left node are simply no longer alive in the cluster's view.
    view = cluster_view(root, seed.address)
    assert {k for k, r in view.items() if r["state"] == "alive"} == ids - {
        victim.node_id,
        leaver.node_id,
    }
    assert view.get(leaver.node_id, {"state": "left"})["state"] == "left"

    # n3 restarts from the same data directory on another port: the same member.
    old_address = leaver.address
    again = start_node(root, procs, "n3", seed.address)
    again.started()
    assert again.node_id == leaver.node_id
    assert again.address != old_address
    rejoined = re.compile(
        rf"^event MemberJoined node_id={leaver.node_id} name=n3 "
        rf"address={re.escape(again.address)} incarnation=(?P<inc>\d+) "
    )
    for node in nodes[:3]:
        _, m = node.wait_for(rejoined, START_S)
        assert int(m.group("inc")) > left_inc
    view = cluster_view(root, seed.address)
    back = view[leaver.node_id]
    assert back["state"] == "alive"
    assert back["address"] == again.address
    assert back["incarnation"] > left_inc

    # No survivor ever declared a live node failed (the killed one is the only failure).
    for node in nodes[:3]:
        failed = {m.group("id") for m in node.matches(FAILED_RE)}
        assert failed == {victim.node_id}, (node.name, failed)
