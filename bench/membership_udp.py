"""Time to detect a killed node on 127.0.0.1: our 5-node cluster against PyPI ``swim-protocol``.

Both clusters run five real processes on the loopback interface. Once every node sees the
four others alive, one node is killed with SIGKILL and the four survivors are watched:

- ours: ``python -m foundation_p2p node run --join ...`` with a ``[membership]`` table of
  the chosen profile (``local`` by default); a survivor has detected the death when it
  prints ``event MemberFailed node_id=<the killed node's id>`` on stderr;
- ``swim-protocol`` (``swimprotocol`` 0.6, asyncio, UDP transport): this script runs each
  node itself (``--swim-node``), printing one ``status NAME STATUS`` line per member change;
  a survivor has detected the death when it reports the killed node ``OFFLINE``.

Comparable settings: ``swim-protocol`` gets our probe interval, probe timeout and number of
indirect probes, the rest of our probe period for its ping-req timeout, and our *minimum*
Lifeguard suspicion timeout (``suspicion_mult x max(1, log10 N) x probe_interval``) as its
fixed ``suspect_timeout``. Lifeguard's timeout starts higher and shrinks toward that
minimum with independent confirmations, so the setting favours ``swim-protocol``.

Reported per implementation (seconds from the SIGKILL, as the parent process sees the
lines arrive): ``first_suspect_s`` (the first survivor to suspect the killed node: SWIM's
expected e/(e-1) probe periods until it is probed, plus the probe timeout and the
indirect probe), ``first_detect_s`` (the first survivor to report the death),
``full_detect_s`` (the last of the four), each the median over the trials, with every
trial's figures in ``per_trial``. Every wait is bounded (``--trial-timeout``). Our nodes
are started one by one, each joining every node started before it (one push-pull each),
so the cluster is whole before the kill without depending on gossip; formation is not
measured.

Usage: ``python bench/membership_udp.py [--quick] [--trials N] [--profile P]``; prints
one JSON object as its last line. ``run(quick)`` returns the same dict (``bench/membership.py``
imports it).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLUSTER_SIZE = 5
"""Nodes per cluster (the issue's real-UDP figure)."""
DEFAULT_PROFILE = "local"
"""Membership profile of our nodes (fast timers for one machine)."""
TRIAL_TIMEOUT_S = 30.0
"""Longest a trial may take (start, settle, detect) before it counts as failed."""
HOST = "127.0.0.1"
READY_RE = re.compile(r"^ready node_id=([0-9a-f]{32}) name=\S+ address=(\S+) ")
"""The ``node run`` ready line: node id and bound address."""


# -- child processes, read line by line ------------------------------------------------


class Child:
    """A child process whose stdout and stderr lines are kept with their arrival times."""

    def __init__(self, args: list[str], cwd: str | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._open = 2
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    def wait_for(
        self, pattern: str | re.Pattern[str], deadline: float, since: float = 0.0
    ) -> tuple[float, re.Match[str]]:
        """The arrival time and match of the first line arrived at ``since`` or later that
        matches ``pattern``; TimeoutError at ``deadline``."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        scanned = 0
        with self._cond:
            while True:
                for at, line in self.lines[scanned:]:
                    m = rx.search(line) if at >= since else None
                    if m:
                        return at, m
                scanned = len(self.lines)
                last = [line for _, line in self.lines[-5:]]
                if self._open == 0:
                    raise RuntimeError(
                        f"process exited ({self.proc.poll()}) before {rx.pattern!r}; "
                        f"last lines {last}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matching {rx.pattern!r}; last lines {last}")
                self._cond.wait(left)

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def free_ports(n: int) -> list[int]:
    """``n`` ports free for UDP and TCP on 127.0.0.1 right now (``swim-protocol`` binds both)."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < n:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind((HOST, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            held += [udp, tcp]
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def wait_all(
    children: list[Child], step: Callable[[int, Child, float], float], deadline: float
) -> list[float]:
    """Run ``step(i, child, deadline)`` for each child in its own thread; their results."""
    results: list[float | BaseException] = [0.0] * len(children)

    def one(i: int, c: Child) -> None:
        try:
            results[i] = step(i, c, deadline)
        except BaseException as exc:  # reported to the caller below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(children)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out: list[float] = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        out.append(r)
    return out


# -- our cluster -----------------------------------------------------------------------


def our_settings(profile: str) -> dict[str, Any]:
    """The membership settings of ``profile`` for a cluster of :data:`CLUSTER_SIZE`."""
    from foundation_p2p.config import NodeConfig
    from foundation_p2p.membership.config import MembershipConfig

    cfg = MembershipConfig.from_node_config(NodeConfig(extra={"membership": {"profile": profile}}))
    return {
        "profile": profile,
        "probe_interval_s": cfg.probe_interval_s,
        "probe_timeout_s": cfg.probe_timeout_s,
        "indirect_checks": cfg.indirect_checks,
        "suspicion_min_s": round(cfg.suspicion_min_s(CLUSTER_SIZE), 3),
        "suspicion_max_s": round(cfg.suspicion_max_s(CLUSTER_SIZE), 3),
        "gossip_interval_s": cfg.gossip_interval_s,
        "lifeguard": cfg.lifeguard,
    }


def our_trial(profile: str, root: Path, key_file: Path, timeout_s: float) -> dict[str, Any]:
    """Start five ``node run`` processes, kill one, time the survivors' MemberFailed lines."""
    deadline = time.monotonic() + timeout_s
    config = root / "node.toml"
    config.write_text(f'[membership]\nprofile = "{profile}"\n')
    children: list[Child] = []
    try:
        ids: list[str] = []
        addresses: list[str] = []
        for i in range(CLUSTER_SIZE):
            args = [
                sys.executable, "-m", "foundation_p2p", "node", "run",
                "--bind", f"{HOST}:0", "--name", f"n{i}", "--config", str(config),
                "--cluster-key-file", str(key_file), "--log-level", "WARNING",
            ]  # fmt: skip
            # Each node joins every node started before it: a push-pull with each, so the
            # cluster is whole without waiting for gossip (formation is not measured).
            for address in addresses:
                args += ["--join", address]
            child = Child(args)
            children.append(child)
            _, m = child.wait_for(READY_RE, deadline)
            ids.append(m.group(1))
            addresses.append(m.group(2))

        def sees_all(i: int, c: Child, dl: float) -> float:
            for j, other in enumerate(ids):
                if j != i:
                    c.wait_for(rf"^event MemberJoined node_id={other} ", dl)
            return 0.0

        wait_all(children, sees_all, deadline)
        victim = children[-1]
        victim_id = ids[-1]
        killed_at = time.monotonic()
        victim.kill()
        survivors = children[:-1]
        pattern = re.compile(rf"^event MemberFailed node_id={victim_id} ")
        seen = wait_all(
            survivors,
            lambda i, c, dl: c.wait_for(pattern, dl, since=killed_at)[0] - killed_at,
            deadline,
        )
        suspect = re.compile(rf"^event MemberSuspect node_id={victim_id} ")
        suspected = [c.wait_for(suspect, deadline, since=killed_at)[0] - killed_at
                     for c in survivors]  # fmt: skip
        return {
            "first_suspect_s": min(suspected),
            "first_detect_s": min(seen),
            "full_detect_s": max(seen),
            "per_node_s": seen,
        }
    finally:
        for c in children:
            c.kill()


def run_ours(trials: int, profile: str, timeout_s: float) -> dict[str, Any]:
    """``trials`` runs of :func:`our_trial`; medians and every trial."""
    from foundation_p2p.crypto.keyring import Keyring

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-membership-udp-") as tmp:
        root = Path(tmp)
        key_file = root / "cluster.key"
        key_file.write_text(Keyring.generate(os.urandom).to_text())
        for _ in range(trials):
            results.append(our_trial(profile, root, key_file, timeout_s))
    return _summary(results) | {"settings": our_settings(profile)}


# -- swim-protocol ---------------------------------------------------------------------


def swim_settings(ours: dict[str, Any]) -> dict[str, Any]:
    """``swimprotocol.BaseConfig`` keywords comparable to our settings (see the docstring)."""
    return {
        "ping_interval": ours["probe_interval_s"],
        "ping_timeout": ours["probe_timeout_s"],
        "ping_req_count": ours["indirect_checks"],
        "ping_req_timeout": max(
            ours["probe_interval_s"] - ours["probe_timeout_s"], ours["probe_timeout_s"]
        ),
        "suspect_timeout": ours["suspicion_min_s"],
        "sync_interval": ours["gossip_interval_s"],
    }


def swim_node_main(name: str, peers: list[str], settings: dict[str, Any]) -> int:
    """Run one ``swim-protocol`` node until SIGTERM; one ``status NAME STATUS`` line per change."""
    import asyncio

    from swimprotocol.members import Member, Members
    from swimprotocol.udp import UdpTransport
    from swimprotocol.udp.config import UdpConfig
    from swimprotocol.worker import Worker

    async def main() -> int:
        config = UdpConfig(
            secret="bench-membership-udp", local_name=name, peers=peers, **settings
        )
        members = Members(config)
        worker = Worker(config, members)
        transport = UdpTransport(config, worker)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, done.set)

        async def report(member: Member) -> None:
            print(f"status {member.name} {member.status.name}", flush=True)

        async with transport, worker, members.listener.on_notify(report):
            print(f"ready {name}", flush=True)
            await done.wait()
        return 0

    return asyncio.run(main())


def swim_trial(settings: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Five ``swim-protocol`` nodes; kill one; time the survivors' ``OFFLINE`` lines."""
    deadline = time.monotonic() + timeout_s
    ports = free_ports(CLUSTER_SIZE)
    names = [f"{HOST}:{p}" for p in ports]
    children: list[Child] = []
    try:
        for i, name in enumerate(names):
            peers = [names[0]] if i else [names[1]]
            args = [
                sys.executable, __file__, "--swim-node", name,
                "--swim-settings", json.dumps(settings),
            ] + [a for p in peers for a in ("--swim-peer", p)]  # fmt: skip
            child = Child(args)
            children.append(child)
            child.wait_for(r"^ready ", deadline)

        def sees_all(i: int, c: Child, dl: float) -> float:
            for j, other in enumerate(names):
                if j != i:
                    c.wait_for(rf"^status {re.escape(other)} ONLINE$", dl)
            return 0.0

        wait_all(children, sees_all, deadline)
        victim = children[-1]
        killed_at = time.monotonic()
        victim.kill()
        pattern = re.compile(rf"^status {re.escape(names[-1])} OFFLINE$")
        seen = wait_all(
            children[:-1],
            lambda i, c, dl: c.wait_for(pattern, dl, since=killed_at)[0] - killed_at,
            deadline,
        )
        suspect = re.compile(rf"^status {re.escape(names[-1])} SUSPECT$")
        suspected = [c.wait_for(suspect, deadline, since=killed_at)[0] - killed_at
                     for c in children[:-1]]  # fmt: skip
        return {
            "first_suspect_s": min(suspected),
            "first_detect_s": min(seen),
            "full_detect_s": max(seen),
            "per_node_s": seen,
        }
    finally:
        for c in children:
            c.kill()


def run_swim(trials: int, ours: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """``trials`` runs of :func:`swim_trial`, or why it could not run."""
    try:
        import swimprotocol  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"swim-protocol is not installed ({exc}); pip install swim-protocol"}
    settings = swim_settings(ours)
    results = [swim_trial(settings, timeout_s) for _ in range(trials)]
    return _summary(results) | {
        "version": importlib.metadata.version("swim-protocol"),
        "settings": settings,
    }


# -- driver ----------------------------------------------------------------------------


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "trials": len(results),
        "first_suspect_s": round(statistics.median(r["first_suspect_s"] for r in results), 3),
        "first_detect_s": round(statistics.median(r["first_detect_s"] for r in results), 3),
        "full_detect_s": round(statistics.median(r["full_detect_s"] for r in results), 3),
        "per_trial": [
            {k: round(v, 3) if isinstance(v, float) else [round(x, 3) for x in v]
             for k, v in r.items()}
            for r in results
        ],
    }  # fmt: skip


def run(
    quick: bool,
    *,
    trials: int | None = None,
    profile: str = DEFAULT_PROFILE,
    timeout_s: float = TRIAL_TIMEOUT_S,
) -> dict[str, Any]:
    """Time-to-detect a SIGKILLed node, ours and ``swim-protocol``'s, on 127.0.0.1.

    ``quick``: 2 trials each (else 7). Returns ``{"ours": {...}, "swim_protocol": {...}}``
    with medians (see the module docstring); ``swim_protocol`` holds ``skipped`` with the
    reason if the package is missing or failed to run.
    """
    n = trials if trials is not None else (2 if quick else 7)
    started = time.monotonic()
    ours = run_ours(n, profile, timeout_s)
    try:
        swim = run_swim(n, ours["settings"], timeout_s)
    except (TimeoutError, RuntimeError, OSError) as exc:
        swim = {"skipped": f"swim-protocol failed to run: {exc}"}
    return {
        "benchmark": "membership_udp",
        "cluster_size": CLUSTER_SIZE,
        "ours": ours,
        "swim_protocol": swim,
        "wall_s": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: the benchmark, or (``--swim-node``) one ``swim-protocol`` node."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 trials instead of 7")
    parser.add_argument("--trials", type=int, help="trials per implementation")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="our membership profile")
    parser.add_argument("--trial-timeout", type=float, default=TRIAL_TIMEOUT_S)
    parser.add_argument("--swim-node", metavar="HOST:PORT", help=argparse.SUPPRESS)
    parser.add_argument("--swim-peer", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--swim-settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.swim_node:
        return swim_node_main(args.swim_node, args.swim_peer, json.loads(args.swim_settings))
    result = run(
        args.quick, trials=args.trials, profile=args.profile, timeout_s=args.trial_timeout
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
