"""A singleton over real UDP: three ``foundation-p2p node run --app`` processes on 127.0.0.1.

Each process runs ``tests/runtime/singleton_app.py``: it defines the service ``ticker``
and starts the singleton ``ticker`` once the three nodes see each other. Exactly one
process runs it; every process's ``lookup_singleton`` names that one. The owner is killed
with SIGKILL; the singleton runs again on exactly one survivor within the failure
detection window plus one registry sync interval, and both survivors' lookups name the
new owner. The failover time measured is printed. The survivors then get SIGTERM and exit
cleanly. Every wait is bounded; timings come from the ``[membership]`` and ``[registry]``
tables below.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_membership_udp import NodeProcess

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.membership.config import MembershipConfig

N = 3
MEMBERSHIP = {
    "profile": "local",
    "probe_interval_s": 0.2,
    "probe_timeout_s": 0.1,
    "retransmit_mult": 4,
    "push_pull_interval_s": 2.0,
}
REGISTRY = {"sync_interval_s": 0.5}
CONFIG_TOML = (
    "[membership]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in MEMBERSHIP.items())
    + "[registry]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in REGISTRY.items())
)
SETTINGS = MembershipConfig.from_node_config(NodeConfig(extra={"membership": MEMBERSHIP}))
START_S = 20.0
"""Bound on starting the processes, forming the cluster and placing the singleton."""
FAILOVER_BOUND_S = (
    (N - 1) * SETTINGS.probe_interval_s  # a full round-robin pass before its turn
    + SETTINGS.probe_interval_s  # the failed probe itself
    + SETTINGS.suspicion_max_s(N)  # Lifeguard's longest suspicion (no confirmations)
    + REGISTRY["sync_interval_s"]  # one registry sync interval
    + 1.5  # dissemination, process scheduling and slack on a loaded test machine
)
"""The longest the singleton may take to run again after its node is killed."""

RUNNING_RE = re.compile(r"^singleton-running name=ticker node=(?P<id>[0-9a-f]{32}) ")
EXITED_RE = re.compile(r"^singleton-exited name=ticker$")


def runs_now(node: NodeProcess) -> bool:
    """Whether ``node`` runs the singleton now: more starts than exits printed."""
    return len(node.matches(RUNNING_RE)) > len(node.matches(EXITED_RE))


LOOKUP_RE = re.compile(r"^lookup name=ticker owner=(?P<owner>[0-9a-f]{32}|None)$")


def current_lookup(node: NodeProcess) -> str | None:
    """What ``lookup_singleton`` names on ``node`` now: its last ``lookup`` line (the app
    prints one on every change)."""
    found = node.matches(LOOKUP_RE)
    return found[-1].group("owner") if found else None


def settled_owner(nodes: list[NodeProcess], deadline: float) -> NodeProcess:
    """Wait, by ``deadline``, until exactly one of ``nodes`` runs the singleton and every
    node's current lookup names that one; return it.

    A single check of "who runs now" is not enough: while the nodes meet, two may start it,
    the registry's conflict rule stops one, and between a stop and the next start a moment
    can pass where none runs, or where an early lookup line still names the loser."""
    while True:
        running = [n for n in nodes if runs_now(n)]
        if len(running) == 1 and all(current_lookup(n) == running[0].node_id for n in nodes):
            return running[0]
        left = deadline - time.monotonic()
        assert left > 0, (
            f"not settled: {len(running)} processes run the singleton; lookups name "
            f"{[current_lookup(n) for n in nodes]}"
        )
        with nodes[0]._cond:  # woken by any line of the first; the others every 50 ms
            nodes[0]._cond.wait(min(left, 0.05))


@pytest.fixture
def procs() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for p in started:
        p.kill()


def start(root: Path, procs: list[NodeProcess], name: str, join: str | None) -> NodeProcess:
    args = [
        "--bind", "127.0.0.1:0", "--name", name, "--data-dir", str(root / name),
        "--config", str(root / "node.toml"), "--cluster-key-file", str(root / "cluster.key"),
        "--app", "singleton_app:main",
    ]  # fmt: skip
    if join is not None:
        args += ["--join", join]
    proc = NodeProcess(name, args)
    procs.append(proc)
    return proc


def first_running(nodes: list[NodeProcess], deadline: float) -> tuple[NodeProcess, float]:
    """The first of ``nodes`` to print ``singleton-running`` (and when), by ``deadline``."""
    while True:
        for node in nodes:
            with node._cond:
                for at, line in node.lines:
                    if RUNNING_RE.search(line):
                        return node, at
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no process printed singleton-running in time")
        with nodes[0]._cond:  # woken by any line of the first; the others every 50 ms
            nodes[0]._cond.wait(min(left, 0.05))


def first_running_after(
    nodes: list[NodeProcess], before: dict[str, int], deadline: float
) -> tuple[NodeProcess, float]:
    """The first of ``nodes`` to print a ``singleton-running`` beyond the ``before``
    counts (and when), by ``deadline``."""
    while True:
        for node in nodes:
            with node._cond:
                starts = [at for at, line in node.lines if RUNNING_RE.search(line)]
            if len(starts) > before[node.name]:
                return node, starts[before[node.name]]
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no survivor printed singleton-running in time")
        with nodes[0]._cond:
            nodes[0]._cond.wait(min(left, 0.05))


def test_a_killed_singleton_owner_is_replaced_by_exactly_one_survivor(
    tmp_path: Path, procs: list[NodeProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    here = str(Path(__file__).parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("SINGLETON_APP_NODES", str(N))
    (tmp_path / "cluster.key").write_text(Keyring.generate(os.urandom).to_text())
    (tmp_path / "node.toml").write_text(CONFIG_TOML)
    seed = start(tmp_path, procs, "n0", None)
    seed.started()
    nodes = [seed] + [start(tmp_path, procs, f"n{i}", seed.address) for i in range(1, N)]
    for node in nodes[1:]:
        node.started()
    assert len({node.node_id for node in nodes}) == N

    # The singleton runs; once every lookup names the same node, only that one runs it.
    # (While the three are still meeting, a node that sees the spec before it sees every
    # member may place it on itself; the registry's NameConflict stops the extra one.)
    first_running(nodes, time.monotonic() + START_S)
    owner = settled_owner(nodes, time.monotonic() + START_S)
    before = {n.name: len(n.matches(RUNNING_RE)) for n in nodes}

    # Kill the owner: one survivor runs it within the bound; both survivors' lookups agree.
    killed_at = time.monotonic()
    owner.proc.send_signal(signal.SIGKILL)
    owner.proc.wait()
    survivors = [n for n in nodes if n is not owner]
    successor, started_at = first_running_after(survivors, before, killed_at + FAILOVER_BOUND_S)
    failover = started_at - killed_at
    print(f"\nsingleton failover over real UDP: {failover:.3f} s (bound {FAILOVER_BOUND_S:.1f} s)")
    assert failover <= FAILOVER_BOUND_S
    assert settled_owner(survivors, time.monotonic() + FAILOVER_BOUND_S) is successor

    # SIGTERM: the survivors hand off and leave cleanly.
    for node in survivors:
        node.proc.send_signal(signal.SIGTERM)
    for node in survivors:
        code = node.proc.wait(timeout=START_S)
        assert code == 0, "\n".join(line for _, line in node.lines[-20:])
