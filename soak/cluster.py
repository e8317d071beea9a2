"""A real 5-node cluster on 127.0.0.1 under churn, measured per node per minute.

``python -m soak.cluster --minutes 10`` (``make soak`` runs it with ``SOAK_CLUSTER_MINUTES``).
It starts ``--nodes`` processes of ``foundation-p2p node run`` (one UDP port each on
127.0.0.1, kept across restarts; a data directory each; one cluster keyring; a
``[consensus]`` table: one Raft group of the five with a snapshot every
``SNAPSHOT_EVERY`` entries so the log is compacted several times per run) with the
application :mod:`soak.app` (channel, KV and registry traffic; a stats line every
``--sample-s``). Every ``--churn-s`` it SIGKILLs one node of ``--churn`` (round robin)
and restarts it at once with the same data directory and port.

Every ``--sample-s`` it reads, for every running node process: the resident memory
(``VmRSS`` in /proc/PID/status), the open file descriptors (entries of /proc/PID/fd), and
the app's latest stats line (live Trio tasks, ops done, ops failed). It reads each node's
stderr for lines logged at ERROR (and tracebacks).

Errors (each one fails the run): a stderr line at ERROR or a traceback; an app op that
failed, unless it was in flight during the group's formation (until ``--election-window-s``
after every node was ready) or within ``--election-window-s`` of the SIGKILL of the node
that led the group at that moment (each node's stats lines report its Raft view changes:
the leader at a kill is the one most other nodes believed in) -- a failure after a
follower's kill or restart, or after a leader change nobody caused, is an error; a node
process that ended without being killed; a node that did not print its ready line within
``START_TIMEOUT_S``. Ops in flight when the final stop began (SIGTERM: the nodes leave)
are counted apart (``shutdown_failures``). Failures are judged once the run is over.

Verdict: for every node lifetime (one process) that spans the run's second minute and its
last minute, the last minute's maximum RSS is within ``--mem-tolerance`` (10%) of the
second minute's; and zero errors. Output: a table (node, lifetime, minute, max RSS MiB,
max fds, max tasks, ops, expected failures, errors), then the errors, then one JSON
object as the last line. Exit status 0 on success, 1 on failure, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from foundation_p2p.crypto.keyring import Keyring

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 60.0
"""Longest wait for a node process's ready line (interpreter start and imports, loaded)."""
SNAPSHOT_EVERY = 500
ELECTION_WINDOW_S = 3.0
"""How long after the leader's SIGKILL a failed op is expected (``--election-window-s``).
With ``tick_interval_s = 0.05`` and ``election_tick = 10`` a follower notices the silence
after its randomized election timeout, 0.5 to 1.0 s; pre-vote and vote are a round trip
each on loopback; a split vote costs one more timeout (up to 1.0 s); the followers then
learn the new leader from its first heartbeat. That is at most ~2 s; 1 s more is the
margin for this loaded 2-CPU machine. An op in flight then fails by ``request_timeout_s``
(it was forwarded to the dead leader) or at once (``no_leader``). A follower's kill or
restart leaves a quorum and its leader in place: no op may fail for it."""
CONFIG = """\
[membership]
profile = "local"
probe_interval_s = 0.2
probe_timeout_s = 0.15
indirect_checks = 2
suspicion_mult = 8
retransmit_mult = 4
push_pull_interval_s = 2.0

[consensus]
tick_interval_s = 0.05
election_tick = 10
bootstrap_expect = {nodes}
request_timeout_s = 3.0
snapshot_every = {snapshot_every}
"""
_ERROR_LINE = re.compile(r"^\S+ (ERROR|CRITICAL) |^Traceback ")


@dataclass
class Life:
    """One process of one node: from its start to its kill (or the run's end)."""

    node: str
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    ended: float | None = None
    killed: bool = False
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class NodeSlot:
    name: str
    port: int
    data_dir: str
    out_path: str
    err_path: str
    stats_path: str
    lives: list[Life] = field(default_factory=list)
    err_offset: int = 0
    stats_offset: int = 0
    last_stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Failure:
    """An app op that failed, as reported in a stats line (wall times)."""

    node: str
    life: int
    minute: int
    started: float
    ended: float
    kind: str
    error: str


class Soak:
    """The cluster, its churn and its measurements (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, root: str) -> None:
        self.args = args
        self.root = root
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.errors: list[str] = []
        self.expected_failures = 0
        self.stopping: float | None = None
        """Wall time the final stop began (ops in flight then or later fail by design)."""
        self.shutdown_failures = 0
        self.formation: tuple[float, float] = (time.time(), time.time())
        """Wall times from the first start to every node ready (the group forms)."""
        self.kills: list[tuple[float, str]] = []
        """``(wall time, node)`` of every SIGKILL."""
        self.failures: list[Failure] = []
        self.views: dict[str, list[tuple[float, int, str | None]]] = {}
        """Per node, its Raft view changes ``(wall, term, leader short id)`` (app.py)."""
        self.ids: dict[str, str] = {}
        """Node name -> short node id (from its stats lines)."""
        self.leader_kills: list[dict[str, Any]] = []
        self.stalls: list[tuple[float, str, int, int, int]] = []
        """``(wall, node, lag ms, ms on CPU, ms waiting for a CPU)`` of every loop stall."""
        self.rx_gaps: list[tuple[float, str, int, int]] = []
        """``(wall, node, gap ms, handle_timer calls)`` of every pump read gap."""
        self.minute_rows: dict[tuple[str, int, int], dict[str, Any]] = {}
        key_path = os.path.join(root, "cluster.key")
        with open(key_path, "w", encoding="utf-8") as f:
            f.write(Keyring.generate(os.urandom).to_text())
        self.key_path = key_path
        self.config_path = os.path.join(root, "node.toml")
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(CONFIG.format(nodes=args.nodes, snapshot_every=SNAPSHOT_EVERY))
        ports = _free_udp_ports(args.nodes)
        self.slots = [
            NodeSlot(
                name=f"n{i + 1}", port=ports[i], data_dir=os.path.join(root, f"n{i + 1}"),
                out_path=os.path.join(root, f"n{i + 1}.out"),
                err_path=os.path.join(root, f"n{i + 1}.err"),
                stats_path=os.path.join(root, f"n{i + 1}.stats.jsonl"),
            )
            for i in range(args.nodes)
        ]

    # -- processes ----------------------------------------------------------------------

    def start(self, slot: NodeSlot) -> Life:
        """Start ``slot``'s node process (same port and data directory every time)."""
        joins = [a for s in self.slots if s is not slot for a in ("--join", f"127.0.0.1:{s.port}")]
        cmd = [
            sys.executable, "-m", "foundation_p2p", "node", "run",
            "--bind", f"127.0.0.1:{slot.port}", "--name", slot.name,
            "--data-dir", slot.data_dir, "--cluster-key-file", self.key_path,
            "--config", self.config_path, "--app", "soak.app:run",
            "--log-level", self.args.log_level, *joins,
        ]
        env = dict(os.environ, SOAK_STATS=slot.stats_path, SOAK_NAME=slot.name,
                   SOAK_REPORT_S=str(self.args.sample_s),
                   SOAK_DEBUG_LOGGERS=self.args.debug_loggers,
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(slot.out_path, "ab") as out, open(slot.err_path, "ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=env, cwd=REPO)
        life = Life(slot.name, len(slot.lives) + 1, proc, time.monotonic())
        slot.lives.append(life)
        return life

    def wait_ready(self, slot: NodeSlot) -> None:
        """Until the current process printed its ready line (one per start)."""
        want = len(slot.lives)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with open(slot.out_path, encoding="utf-8", errors="replace") as f:
                if sum(1 for line in f if line.startswith("ready ")) >= want:
                    return
            if slot.lives[-1].proc.poll() is not None:
                break
            time.sleep(0.1)
        self.error(slot.name, f"no ready line within {START_TIMEOUT_S:g} s of its start")

    def kill(self, slot: NodeSlot) -> None:
        life = slot.lives[-1]
        life.killed = True
        life.proc.send_signal(signal.SIGKILL)
        life.proc.wait()
        life.ended = time.monotonic()

    def stop_all(self) -> None:
        """SIGTERM every node (it leaves), SIGKILL what is still running after 10 s."""
        if self.stopping is None:
            self.stopping = time.time()
        lives = [s.lives[-1] for s in self.slots if s.lives and s.lives[-1].ended is None]
        for life in lives:
            life.killed = True
            life.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for life in lives:
            try:
                life.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                life.proc.kill()
                life.proc.wait()
            life.ended = time.monotonic()

    # -- measurement --------------------------------------------------------------------

    def error(self, node: str, text: str) -> None:
        self.errors.append(f"t={time.monotonic() - self.t0:7.1f}s {node}: {text}")

    def minute(self, t: float | None = None) -> int:
        """The run's minute (0-based) at monotonic ``t`` (default now); the final sample,
        taken at the very end, counts in the last minute."""
        m = int(((t if t is not None else time.monotonic()) - self.t0) // 60)
        last: int = max(0, math.ceil(self.args.minutes) - 1)
        return min(m, last)

    def sample(self) -> None:
        """One sample of every running node; stderr and stats lines read so far."""
        now = time.monotonic()
        for slot in self.slots:
            self._read_stderr(slot)
            self._read_stats(slot)
            if not slot.lives:
                continue
            life = slot.lives[-1]
            if life.ended is not None:
                continue
            if life.proc.poll() is not None:
                life.ended = now
                self.error(slot.name, f"process ended by itself (exit {life.proc.returncode})")
                continue
            rss, fds = _proc_rss_fds(life.proc.pid)
            if rss is None:
                continue
            stats = slot.last_stats if slot.last_stats.get("pid") == life.proc.pid else {}
            sample = {"t": now, "rss": rss, "fds": fds, "tasks": stats.get("tasks")}
            life.samples.append(sample)
            row = self._row(slot.name, life.index, self.minute(now))
            row["rss"] = max(row["rss"], rss)
            row["fds"] = max(row["fds"], fds)
            if stats.get("tasks") is not None:
                row["tasks"] = max(row["tasks"], int(stats["tasks"]))

    def _row(self, node: str, life: int, minute: int) -> dict[str, Any]:
        key = (node, life, minute)
        if key not in self.minute_rows:
            self.minute_rows[key] = {"rss": 0, "fds": 0, "tasks": 0, "ops": 0,
                                     "expected": 0, "errors": 0}
        return self.minute_rows[key]

    def _read_stderr(self, slot: NodeSlot) -> None:
        try:
            with open(slot.err_path, "rb") as f:
                f.seek(slot.err_offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        slot.err_offset += end
        life = len(slot.lives)
        for raw in data[:end].splitlines():
            line = raw.decode("utf-8", "replace")
            if _ERROR_LINE.search(line):
                self.error(slot.name, f"stderr: {line[:300]}")
                self._row(slot.name, life, self.minute())["errors"] += 1

    def _read_stats(self, slot: NodeSlot) -> None:
        try:
            with open(slot.stats_path, "rb") as f:
                f.seek(slot.stats_offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        slot.stats_offset += end
        for raw in data[:end].splitlines():
            stats = json.loads(raw)
            prev = slot.last_stats if slot.last_stats.get("pid") == stats["pid"] else {}
            slot.last_stats = stats
            life = next((x.index for x in slot.lives if x.proc.pid == stats["pid"]),
                        len(slot.lives))
            row = self._row(slot.name, life, self.minute())
            ops_before = sum(prev.get("ops", {}).values())
            row["ops"] += sum(stats["ops"].values()) - ops_before
            if "id" in stats:
                self.ids[slot.name] = stats["id"]
            self.views.setdefault(slot.name, []).extend(
                (float(w), int(term), leader) for w, term, leader in stats.get("leaders", ())
            )
            for wall, lag, run, wait in stats.get("stalls", ()):
                self.stalls.append((wall, slot.name, lag, run, wait))
            for wall, gap, timers, _lag in stats.get("rx_gaps", ()):
                self.rx_gaps.append((wall, slot.name, gap, timers))
            for started, ended, kind, err in stats["fails"]:
                self.failures.append(
                    Failure(slot.name, life, self.minute(), started, ended, kind, err)
                )

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        formed_from = time.time()
        for slot in self.slots:
            self.start(slot)
        for slot in self.slots:
            self.wait_ready(slot)
        self.t0 = time.monotonic()  # minutes count from a running cluster
        self.formation = (formed_from, time.time())
        end = self.t0 + args.minutes * 60
        next_sample = self.t0
        next_churn = self.t0 + args.churn_s
        churn = [s for s in self.slots if s.name in args.churn]
        turn = 0
        restarts = 0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_sample:
                self.sample()
                next_sample += args.sample_s
            if churn and now >= next_churn:
                slot = churn[turn % len(churn)]
                turn += 1
                self.kills.append((time.time(), slot.name))
                self.kill(slot)
                self.start(slot)
                self.wait_ready(slot)
                restarts += 1
                next_churn += args.churn_s
            time.sleep(max(0.0, min(next_sample, next_churn if churn else end, end)
                           - time.monotonic()))
        self.sample()
        self.stop_all()
        for slot in self.slots:
            self._read_stderr(slot)
            self._read_stats(slot)
        self.judge_failures()
        return self.verdict(restarts)

    # -- judging failed ops -------------------------------------------------------------

    def leader_at(self, wall: float, exclude: str | None = None) -> str | None:
        """The leader (short id) most nodes other than ``exclude`` believed in at ``wall``
        (each node's last view change at or before it); None if none known."""
        votes: dict[str, int] = {}
        for name, views in self.views.items():
            if name == exclude:
                continue
            before = [v for v in views if v[0] <= wall]
            if before and before[-1][2] is not None:
                leader = before[-1][2]
                votes[leader] = votes.get(leader, 0) + 1
        return max(sorted(votes), key=lambda k: votes[k]) if votes else None

    def election_s(self, wall: float, dead: str) -> float | None:
        """Seconds from ``wall`` until every node but ``dead`` saw a leader other than
        ``dead`` (its first view change after ``wall`` naming one); None if one never did."""
        worst = 0.0
        for name, views in self.views.items():
            if self.ids.get(name) == dead:
                continue
            seen = next((v[0] for v in views if v[0] >= wall and v[2] not in (None, dead)),
                        None)
            if seen is None:
                return None
            worst = max(worst, seen - wall)
        return worst

    def judge_failures(self) -> None:
        """Count every failed op as expected, shutdown or error (see the module docstring):
        expected only if in flight during the group's formation (to ``--election-window-s``
        after every node was ready) or within ``--election-window-s`` of the SIGKILL of the
        node that led the group then; every other failure, after a follower's kill or
        restart too, is an error."""
        w = self.args.election_window_s
        windows = [(self.formation[0], self.formation[1] + w)]
        for wall, name in self.kills:
            dead = self.ids.get(name)
            if dead is None or self.leader_at(wall, exclude=name) != dead:
                continue
            windows.append((wall, wall + w))
            took = self.election_s(wall, dead)
            self.leader_kills.append({
                "t": round(wall - self.formation[1], 1), "node": name,
                "new_leader_seen_by_all_s": None if took is None else round(took, 2),
            })
        for f in sorted(self.failures, key=lambda f: f.started):
            row = self._row(f.node, f.life, f.minute)
            if self.stopping is not None and f.ended >= self.stopping:
                # in flight when the nodes began leaving (SIGTERM): the group winds down
                self.shutdown_failures += 1
            elif any(f.started <= end and f.ended >= start for start, end in windows):
                self.expected_failures += 1
                row["expected"] += 1
            else:
                row["errors"] += 1
                self.errors.append(
                    f"t={f.started - self.formation[1]:7.1f}s {f.node}: {f.kind} failed "
                    f"after {f.ended - f.started:.1f} s outside a leader-election window: "
                    f"{f.error} (leader then: {self.leader_at(f.started)}; "
                    f"{self.evidence(f.started - 1.0, f.ended)})"
                )

    def evidence(self, start: float, end: float) -> str:
        """The longest loop stall and pump read gap any node reported in [start, end]
        (a stall ends at its wall time; see soak/app.py), for the error lines."""
        stall = max((x for x in self.stalls if start <= x[0] <= end + 1.0),
                    key=lambda x: x[2], default=None)
        gap = max((x for x in self.rx_gaps if start <= x[0] <= end + 1.0),
                  key=lambda x: x[2], default=None)
        parts = []
        if stall is not None:
            parts.append(f"longest stall {stall[1]} {stall[2]} ms, {stall[4]} ms of it "
                         f"waiting for a CPU")
        if gap is not None:
            parts.append(f"longest read gap {gap[1]} {gap[2]} ms over {gap[3]} timer rounds")
        return "; ".join(parts) or "no stall or read gap reported"

    def stall_summary(self) -> dict[str, Any]:
        """Per node: the longest loop stall (ms, and ms waiting for a CPU), stalls of an
        election timeout (500 ms) or more, the longest pump read gap and its timer rounds."""
        out: dict[str, Any] = {}
        for slot in self.slots:
            mine = [x for x in self.stalls if x[1] == slot.name]
            gaps = [x for x in self.rx_gaps if x[1] == slot.name]
            worst = max(mine, key=lambda x: x[2], default=None)
            gap = max(gaps, key=lambda x: x[2], default=None)
            out[slot.name] = {
                "longest_stall_ms": [worst[2], worst[4]] if worst else None,
                "stalls_over_500ms": sum(1 for x in mine if x[2] >= 500),
                "longest_read_gap_ms": [gap[2], gap[3]] if gap else None,
            }
        return out

    def verdict(self, restarts: int) -> dict[str, Any]:
        last = max(0, math.ceil(self.args.minutes) - 1)
        memory: dict[str, Any] = {}
        flat = True
        for node, life in sorted({(n, li) for n, li, _m in self.minute_rows}):
            second = self.minute_rows.get((node, life, 1))
            final = self.minute_rows.get((node, life, last))
            if last <= 1 or second is None or final is None or not second["rss"]:
                continue
            ratio = final["rss"] / second["rss"]
            ok = ratio <= 1 + self.args.mem_tolerance
            flat = flat and ok
            memory[f"{node}#{life}"] = {
                "second_minute_rss": second["rss"], "last_minute_rss": final["rss"],
                "ratio": round(ratio, 4), "fds": [second["fds"], final["fds"]],
                "tasks": [second["tasks"], final["tasks"]], "flat": ok,
            }
        if not memory:
            self.errors.append("no node lifetime spans the second and the last minute "
                               "(run at least 3 minutes, and leave a node out of the churn)")
        ops = sum(r["ops"] for r in self.minute_rows.values())
        return {
            "ok": flat and not self.errors, "minutes": self.args.minutes,
            "nodes": self.args.nodes, "restarts": restarts, "ops": ops,
            "expected_failures": self.expected_failures,
            "shutdown_failures": self.shutdown_failures, "errors": len(self.errors),
            "leader_kills": self.leader_kills, "stalls": self.stall_summary(),
            "memory_flat": flat, "memory": memory, "data_dir": self.root,
        }

    def table(self) -> str:
        lines = [f"{'node':<5} {'life':>4} {'min':>3} {'rss MiB':>8} {'fds':>4} "
                 f"{'tasks':>5} {'ops':>6} {'expected':>8} {'errors':>6}"]
        for (node, life, minute), r in sorted(self.minute_rows.items()):
            lines.append(f"{node:<5} {life:>4} {minute + 1:>3} {r['rss'] / 2**20:>8.1f} "
                         f"{r['fds']:>4} {r['tasks']:>5} {r['ops']:>6} {r['expected']:>8} "
                         f"{r['errors']:>6}")
        return "\n".join(lines)


def _free_udp_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _proc_rss_fds(pid: int) -> tuple[int | None, int]:
    """Resident bytes (VmRSS) and open descriptors of ``pid``; (None, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None, 0
    return rss, fds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m soak.cluster", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="run time (default 10)")
    p.add_argument("--nodes", type=int, default=5, help="node processes (default 5)")
    p.add_argument("--churn-s", type=float, default=30.0,
                   help="seconds between two kill+restart (default 30; 0: no churn)")
    p.add_argument("--churn", default="n5",
                   help="comma-separated nodes killed in turn (default n5: the other "
                   "nodes live the whole run, so their memory is judged)")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--election-window-s", type=float, default=ELECTION_WINDOW_S,
                   help="failed ops in flight this long after the leader's SIGKILL (or the "
                   f"group's formation) are expected (default {ELECTION_WINDOW_S:g})")
    p.add_argument("--mem-tolerance", type=float, default=0.10,
                   help="last minute's max RSS over the second minute's, at most 1 + this")
    p.add_argument("--log-level", type=str.upper, default="WARNING",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="the nodes' --log-level (default WARNING; their stderr is in nX.err)")
    p.add_argument("--debug-loggers", default="", metavar="NAMES",
                   help="comma-separated loggers set to DEBUG in every node (diagnosis, e.g. "
                   "foundation_p2p.consensus)")
    p.add_argument("--keep", metavar="DIR", help="put data and logs in DIR and keep them")
    args = p.parse_args(argv)
    if (not args.minutes > 0 or args.nodes < 3 or args.sample_s <= 0 or args.churn_s < 0
            or args.election_window_s < 0):
        p.error("--minutes > 0, --nodes >= 3, --sample-s > 0, --churn-s >= 0, "
                "--election-window-s >= 0")
    names = [s for s in args.churn.split(",") if s] if args.churn_s > 0 else []
    bad = [s for s in names if s not in {f"n{i + 1}" for i in range(args.nodes)}]
    if bad:
        p.error(f"--churn: no node named {', '.join(bad)} (nodes are n1..n{args.nodes})")
    args.churn = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.keep or tempfile.mkdtemp(prefix="soak-cluster-")
    os.makedirs(root, exist_ok=True)
    soak = Soak(args, root)
    try:
        result = soak.run()
    except BaseException:
        soak.stop_all()
        raise
    print(soak.table())
    for line in soak.errors[:50]:
        print("ERROR", line)
    if len(soak.errors) > 50:
        print(f"... and {len(soak.errors) - 50} more errors")
    print("verdict:", "PASS" if result["ok"] else "FAIL",
          f"({result['restarts']} restarts, {result['ops']} ops, "
          f"{result['expected_failures']} expected churn failures, {result['errors']} errors)")
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
