"""Benchmark our Raft against PySyncObj: 3 nodes on 127.0.0.1, side by side in one run.

Each side is a cluster of three OS processes (this file run with ``--child``), driven over
a line protocol on stdin/stdout:

- **ours**: three ``open_node`` nodes (one Trio loop each, real UDP, the transport's
  encryption), a ``[consensus]`` table (tick 50 ms, election 10 ticks: timeouts drawn in
  0.5-1.0 s), the KV store as the state machine. ``ours`` keeps the Raft log in memory
  (no data directory: no fsync); ``ours_fsync`` keeps it in the WAL under a data
  directory (one ``fdatasync`` per group commit), reported on its own lines;
- **theirs**: three PySyncObj ``SyncObj`` processes with ``password`` (its encryption),
  no journal file (no fsync, memory only), election timeouts 0.5-1.0 s and heartbeats
  every 50 ms to match ours, a replicated ``put(key, value)`` into a dict.

Measured, repetitions interleaved (ours then theirs, then the other order) on the same
running clusters, medians reported with every sample:

- ``commits_per_s`` for 10 B, 200 B and 2 KiB values: the leader proposes ``--count``
  puts asynchronously (callbacks, at most ``--window`` in flight, as PySyncObj's own
  benchmark sends from its leader) and counts acknowledged commits per second until all
  are acknowledged or ``--seconds`` pass; with each, the leader's CPU per 1000 commits
  and, for our sides, the leader's UDP datagrams per commit (in and out) and its UDP
  system calls per commit (several datagrams leave in one ``sendmsg`` with segmentation
  offload);
- ``latency``: ``--seq`` puts of 200 B one at a time from the leader, p50 / p99 in ms;
- ``failover``: a fresh cluster per sample; SIGKILL of the leader, then the survivors
  retry one put each until one commits; the time from the kill to that commit.

Each figure is also given as the ratio ours/theirs (for latency and failover below 1.0
is better; for commits/s above 1.0 is). The last line is one JSON object.

Usage: ``python bench/consensus.py [--quick] [--runs N] [--count N] [--window N]
[--failovers N] [--no-fsync-line]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

SIZES = (10, 200, 2048)
ELECTION_MIN_S = 0.5
ELECTION_MAX_S = 1.0
HEARTBEAT_S = 0.05
PASSWORD = "bench-consensus-password"
SOCKET_BUFFER_BYTES = int(os.environ.get("PB_SOCKBUF", 4 << 20))


# -- the child processes ------------------------------------------------------------------


def _socket_buffers(node: Any, size: int) -> None:
    """Set the node's UDP receive and send buffers to ``size`` bytes (best effort: as root
    past ``net.core.rmem_max`` with ``SO_RCVBUFFORCE``)."""
    import socket

    sock = node._sock
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, size)


def _ours_child(key_file: str, data_dir: str, join: str, datagram_bytes: int) -> None:
    """One of our nodes: ``open_node`` with ``[consensus]``, answering the line protocol."""
    import trio

    from foundation_p2p.config import NodeConfig
    from foundation_p2p.consensus import kv
    from foundation_p2p.consensus.subsystem import Outcome
    from foundation_p2p.runtime import open_node
    from foundation_p2p.runtime.consensus import ConsensusError
    from foundation_p2p.runtime.node import machine_now

    async def main() -> None:
        cfg = NodeConfig(
            bind=("127.0.0.1", 0),
            data_dir=data_dir or None,
            cluster_key_file=key_file,
            join=((join.split(":")[0], int(join.split(":")[1])),) if join else (),
            extra={
                **({"transport": {"max_datagram_bytes": datagram_bytes}} if datagram_bytes else {}),
                "consensus": {
                    "tick_interval_s": HEARTBEAT_S,
                    "election_tick": round(ELECTION_MIN_S / HEARTBEAT_S),
                    "bootstrap_expect": 3,
                    "request_timeout_s": 10.0,
                    "max_pending_requests": 100_000,
                }
            },
        )
        async with open_node(cfg) as node:
            _socket_buffers(node, SOCKET_BUFFER_BYTES)
            out = trio.lowlevel.FdStream(os.dup(1))
            inp = trio.lowlevel.FdStream(os.dup(0))

            async def say(text: str) -> None:
                await out.send_all((text + "\n").encode())

            await say(f"READY {node.address[1]}")
            sub = node.consensus.subsystem

            async def burst(count: int, size: int, window: int, limit: float) -> str:
                value = os.urandom(size)
                commands = [kv.encode_put(b"k%d" % (i % 1000), value) for i in range(64)]
                state = {"inflight": 0, "ok": 0, "failed": 0}
                room = trio.Event()

                def done(outcome: Outcome) -> None:
                    state["inflight"] -= 1
                    if outcome.status == "ok":
                        state["ok"] += 1
                    else:
                        state["failed"] += 1
                    room.set()

                sent = 0
                start = time.perf_counter()
                deadline = start + limit
                while time.perf_counter() < deadline:
                    if sent < count and state["inflight"] < window:
                        now = machine_now()
                        n = min(count - sent, window - state["inflight"])
                        for i in range(n):
                            state["inflight"] += 1
                            sub.propose(now, commands[(sent + i) % 64], on_done=done)
                        sent += n
                        node.wake()
                    if state["ok"] + state["failed"] >= count:
                        break
                    room = trio.Event()
                    with trio.move_on_at(trio.current_time() + deadline - time.perf_counter()):
                        await room.wait()
                elapsed = time.perf_counter() - start
                return f"BURST {state['ok']} {state['failed']} {elapsed:.6f}"

            async def sequential(count: int, size: int, limit: float) -> str:
                value = os.urandom(size)
                lat: list[str] = []
                deadline = time.perf_counter() + limit
                failed = 0
                for i in range(count):
                    if time.perf_counter() > deadline:
                        break
                    t0 = time.perf_counter()
                    try:
                        await node.consensus.propose(kv.encode_put(b"s%d" % (i % 100), value))
                    except ConsensusError:
                        failed += 1
                        continue
                    lat.append(f"{(time.perf_counter() - t0) * 1e6:.0f}")
                return f"SEQ {failed} " + (",".join(lat) or "-")

            async def until_commit(limit: float) -> str:
                # one attempt every 10 ms (each stays pending until it commits or times
                # out); the wall time of the first one acknowledged
                won: list[float] = []
                got = trio.Event()

                def done(outcome: Outcome) -> None:
                    if outcome.status == "ok" and not won:
                        won.append(time.time())
                        got.set()

                with trio.move_on_after(limit):
                    while not won:
                        sub.propose(machine_now(), kv.encode_put(b"f", b"x"), on_done=done)
                        node.wake()
                        with trio.move_on_after(0.01):
                            await got.wait()
                return f"COMMIT {won[0]:.6f}" if won else "ERR timeout"

            buf = b""
            while True:
                data = await inp.receive_some(4096)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    w = line.decode().split()
                    try:
                        if w[0] == "status":
                            st = node.consensus.status()
                            role = "none" if st is None else st.role.value
                            voters = 0 if st is None else len(st.voters)
                            await say(f"STATUS {role} {voters}")
                        elif w[0] == "burst":
                            await say(await burst(int(w[1]), int(w[2]), int(w[3]), float(w[4])))
                        elif w[0] == "seq":
                            await say(await sequential(int(w[1]), int(w[2]), float(w[3])))
                        elif w[0] == "commit":
                            await say(await until_commit(float(w[1])))
                        elif w[0] == "counters":
                            snap = {
                                k: v for k, v in node.core.counters.snapshot().items()
                                if k.startswith(tuple(w[1:]) or ("",))
                            }
                            await say("COUNTERS " + json.dumps(snap, sort_keys=True))
                        elif w[0] == "conns":
                            st = node.consensus.status()
                            stats = {}
                            for peer in (st.voters if st is not None else ()):
                                conn = node.transport.connection(peer)
                                if conn is not None:
                                    stats[peer.hex()[:8]] = {
                                        k: v for k, v in conn.stats().items()
                                        if v and ("lost" in k or "retrans" in k or "pto" in k
                                                  or "sent" in k)
                                    }
                            await say("CONNS " + json.dumps(stats, sort_keys=True))
                        elif w[0] == "applied":
                            st = node.consensus.status()
                            await say(f"APPLIED {0 if st is None else st.applied}")
                        else:
                            await say(f"ERR unknown {w[0]}")
                    except ConsensusError as exc:
                        await say(f"ERR {type(exc).__name__} {exc}")

    trio.run(main)


def _theirs_child(port: int, others: str) -> None:
    """One PySyncObj node: a replicated dict, answering the same line protocol."""
    import threading

    from pysyncobj import SyncObj, SyncObjConf, replicated  # type: ignore[import-untyped]

    class Store(SyncObj):  # type: ignore[misc]
        def __init__(self, addr: str, partners: list[str]) -> None:
            conf = SyncObjConf(
                password=PASSWORD,
                raftMinTimeout=ELECTION_MIN_S,
                raftMaxTimeout=ELECTION_MAX_S,
                appendEntriesPeriod=HEARTBEAT_S,
                commandsQueueSize=200_000,
                dynamicMembershipChange=False,
            )
            super().__init__(addr, partners, conf)
            self.data: dict[bytes, bytes] = {}
            self.applied = 0

        @replicated  # type: ignore[misc]
        def put(self, key: bytes, value: bytes) -> bytes | None:
            self.applied += 1
            old = self.data.get(key)
            self.data[key] = value
            return old

    obj = Store(f"127.0.0.1:{port}", [f"127.0.0.1:{p}" for p in others.split(",")])

    def say(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def burst(count: int, size: int, window: int, limit: float) -> str:
        value = os.urandom(size)
        lock = threading.Condition()
        state = {"inflight": 0, "ok": 0, "failed": 0}

        def done(result: Any, error: Any) -> None:
            with lock:
                state["inflight"] -= 1
                state["ok" if error == 0 else "failed"] += 1
                lock.notify()

        sent = 0
        start = time.perf_counter()
        deadline = start + limit
        with lock:
            while time.perf_counter() < deadline:
                while sent < count and state["inflight"] < window:
                    state["inflight"] += 1
                    obj.put(b"k%d" % (sent % 1000), value, callback=done)
                    sent += 1
                if state["ok"] + state["failed"] >= count:
                    break
                lock.wait(max(0.0, deadline - time.perf_counter()))
        elapsed = time.perf_counter() - start
        return f"BURST {state['ok']} {state['failed']} {elapsed:.6f}"

    def sequential(count: int, size: int, limit: float) -> str:
        value = os.urandom(size)
        lat: list[str] = []
        deadline = time.perf_counter() + limit
        failed = 0
        for i in range(count):
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            try:
                obj.put(b"s%d" % (i % 100), value, sync=True, timeout=10)
            except Exception:  # SyncObjException: timeout or refused
                failed += 1
                continue
            lat.append(f"{(time.perf_counter() - t0) * 1e6:.0f}")
        return f"SEQ {failed} " + (",".join(lat) or "-")

    def until_commit(limit: float) -> str:
        # one attempt every 10 ms, as for ours; the wall time of the first one acknowledged
        won: list[float] = []
        got = threading.Event()

        def done(result: Any, error: Any) -> None:
            if error == 0 and not won:
                won.append(time.time())
                got.set()

        deadline = time.perf_counter() + limit
        while not got.is_set() and time.perf_counter() < deadline:
            obj.put(b"f", b"x", callback=done)
            got.wait(0.01)
        return f"COMMIT {won[0]:.6f}" if won else "ERR timeout"

    say(f"READY {port}")
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "status":
            leader = obj._getLeader()
            role = "leader" if obj._isLeader() else ("follower" if leader else "none")
            say(f"STATUS {role} 3")
        elif w[0] == "burst":
            say(burst(int(w[1]), int(w[2]), int(w[3]), float(w[4])))
        elif w[0] == "seq":
            say(sequential(int(w[1]), int(w[2]), float(w[3])))
        elif w[0] == "commit":
            say(until_commit(float(w[1])))
        elif w[0] == "applied":
            say(f"APPLIED {obj.applied}")
        else:
            say(f"ERR unknown {w[0]}")


# -- the driver -------------------------------------------------------------------------


class Proc:
    """A child process spoken to line by line."""

    def __init__(self, args: list[str], stderr: Any = None) -> None:
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
        )
        words = self.line(30.0).split()
        if not words or words[0] != "READY":
            raise RuntimeError(f"child did not start: {words}")
        self.port = int(words[1])

    def line(self, timeout: float) -> str:
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("no answer from the node process")
        text = self.p.stdout.readline().decode().strip()
        if not text:
            raise RuntimeError("the node process ended")
        return text

    def send(self, command: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write((command + "\n").encode())
        self.p.stdin.flush()

    def ask(self, command: str, timeout: float = 60.0) -> str:
        self.send(command)
        return self.line(timeout)

    def cpu_s(self) -> float:
        """User plus system CPU seconds this process used so far (all its threads)."""
        try:
            with open(f"/proc/{self.p.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def close(self) -> None:
        if self.p.poll() is None:
            assert self.p.stdin is not None
            try:
                self.p.stdin.close()
                self.p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()


class Cluster:
    """Three node processes of one side (``ours``, ``ours_fsync`` or ``theirs``)."""

    def __init__(self, side: str, workdir: str, datagram_bytes: int = 0) -> None:
        self.side = side
        self.procs: list[Proc] = []
        os.makedirs(workdir, exist_ok=True)
        if side == "theirs":
            ports = _free_tcp_ports(3)
            for i, port in enumerate(ports):
                others = ",".join(str(p) for j, p in enumerate(ports) if j != i)
                self.procs.append(Proc(["theirs", str(port), others]))
        else:
            from foundation_p2p.crypto.keyring import Keyring

            key = os.path.join(workdir, "cluster.key")
            with open(key, "w", encoding="utf-8") as f:
                f.write(Keyring.generate(os.urandom).to_text())
            os.chmod(key, 0o600)
            dirs = [
                os.path.join(workdir, f"n{i}") if side == "ours_fsync" else "" for i in range(3)
            ]
            dg = str(datagram_bytes)
            first = Proc(["ours", key, dirs[0] or "-", "-", dg])
            self.procs.append(first)
            for d in dirs[1:]:
                self.procs.append(Proc(["ours", key, d or "-", f"127.0.0.1:{first.port}", dg]))

    def leader(self, limit_s: float = 60.0) -> Proc:
        """The process that leads, once one does and every process knows the group."""
        end = time.monotonic() + limit_s
        seen: list[str] = []
        while time.monotonic() < end:
            alive = [p for p in self.procs if p.p.poll() is None]
            seen = [p.ask("status") for p in alive]
            leaders = [p for p, s in zip(alive, seen, strict=True) if s.split()[1] == "leader"]
            knowing = [s for s in seen if s.split()[1] != "none"]
            if len(leaders) == 1 and 2 * len(knowing) > len(self.procs):
                return leaders[0]
            time.sleep(0.05)
        raise TimeoutError(f"{self.side}: no leader within {limit_s} s: {seen}")

    def close(self) -> None:
        for p in self.procs:
            p.close()


def _free_tcp_ports(n: int) -> list[int]:
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def commits_once(
    cluster: Cluster, size: int, count: int, window: int, limit: float
) -> dict[str, Any]:
    """One burst of ``count`` puts of ``size`` bytes from the leader; commits per second."""
    leader = cluster.leader()
    ours = cluster.side != "theirs"
    udp0 = _udp_counters(leader) if ours else {}
    cpu0 = [p.cpu_s() for p in cluster.procs]
    words = leader.ask(f"burst {count} {size} {window} {limit}", timeout=limit + 60).split()
    cpu = [p.cpu_s() - c for p, c in zip(cluster.procs, cpu0, strict=True)]
    udp1 = _udp_counters(leader) if ours else {}
    if words[0] != "BURST":
        raise RuntimeError(f"{cluster.side}: burst failed: {words}")
    ok, failed, elapsed = int(words[1]), int(words[2]), float(words[3])
    lead_cpu = cpu[cluster.procs.index(leader)]
    result = {
        "ok": ok,
        "failed": failed,
        "seconds": round(elapsed, 4),
        "commits_per_s": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "leader_cpu_ms_per_1000": round(lead_cpu / ok * 1e6, 1) if ok else 0.0,
        "cluster_cpu_ms_per_1000": round(sum(cpu) / ok * 1e6, 1) if ok else 0.0,
    }
    if ours and ok:
        # the leader's UDP system calls per commit: datagrams in and out (several leave
        # in one sendmsg with segmentation offload: the sends are counted apart)
        d = {k: udp1.get(k, 0) - udp0.get(k, 0) for k in udp1}
        sends = d.get("udp.datagrams_sent", 0) - d.get("udp.gso_datagrams", 0) + d.get(
            "udp.gso_sends", 0
        )
        result["leader_datagrams_per_commit"] = round(
            (d.get("udp.datagrams_sent", 0) + d.get("udp.datagrams_received", 0)) / ok, 3
        )
        result["leader_udp_syscalls_per_commit"] = round(
            (sends + d.get("udp.datagrams_received", 0)) / ok, 3
        )
    return result


def _udp_counters(proc: Proc) -> dict[str, int]:
    """One of our node processes' ``udp.*`` counters (the child's ``counters`` command)."""
    words = proc.ask("counters udp.").split(" ", 1)
    if words[0] != "COUNTERS":
        raise RuntimeError(f"counters failed: {words}")
    return {k: int(v) for k, v in json.loads(words[1]).items()}


def latency_once(cluster: Cluster, count: int, limit: float) -> dict[str, Any]:
    """``count`` puts of 200 B one after another from the leader; p50/p99 in ms."""
    leader = cluster.leader()
    words = leader.ask(f"seq {count} 200 {limit}", timeout=limit + 60).split()
    if words[0] != "SEQ" or len(words) < 3:
        raise RuntimeError(f"{cluster.side}: seq failed: {words}")
    lat = sorted(int(x) / 1000.0 for x in words[2].split(",") if x != "-")
    return {
        "count": len(lat),
        "failed": int(words[1]),
        "p50_ms": round(_percentile(lat, 50), 3),
        "p99_ms": round(_percentile(lat, 99), 3),
    }


def failover_once(
    side: str, workdir: str, limit: float = 30.0, datagram_bytes: int = 0
) -> dict[str, Any]:
    """A fresh cluster: SIGKILL of its leader, then the time until a survivor commits."""
    cluster = Cluster(side, workdir, datagram_bytes)
    try:
        leader = cluster.leader()
        leader.ask("commit 10")
        survivors = [p for p in cluster.procs if p is not leader]
        killed_at = time.time()
        leader.kill()
        for p in survivors:
            p.send(f"commit {limit}")
        times = []
        for p in survivors:
            words = p.line(limit + 30).split()
            if words[0] == "COMMIT":
                times.append(float(words[1]))
        if not times:
            raise RuntimeError(f"{side}: no commit after the leader was killed")
        return {"failover_s": round(min(times) - killed_at, 4)}
    finally:
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _dist_version(name: str) -> str:
    """The installed version of distribution ``name`` (``"unknown"`` if not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _pmtu_ceiling() -> int:
    """``[transport] pmtu_max_bytes`` as our nodes run it (the default)."""
    from foundation_p2p.transport.config import TransportConfig

    return TransportConfig().pmtu_max_bytes


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4) if values else 0.0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def run(
    *,
    runs: int,
    count: int,
    window: int,
    seconds: float,
    seq: int,
    failovers: int,
    fsync_line: bool,
    workdir: str,
    datagram_bytes: int = 0,
) -> dict[str, Any]:
    """Everything, interleaved; the JSON-ready result."""
    sides = ["ours", "theirs"] + (["ours_fsync"] if fsync_line else [])
    clusters = {s: Cluster(s, os.path.join(workdir, s), datagram_bytes) for s in sides}
    samples: dict[str, Any] = {
        s: {"commits": {str(z): [] for z in SIZES}, "latency": []} for s in sides
    }
    try:
        for c in clusters.values():
            c.leader().ask("commit 10")  # the group works before timing starts
            commits_once(c, 200, max(1, count // 4), window, seconds)  # warm-up, not counted
        for r in range(runs):
            order = sides if r % 2 == 0 else list(reversed(sides))
            for size in SIZES:
                for s in order:
                    samples[s]["commits"][str(size)].append(
                        commits_once(clusters[s], size, count, window, seconds)
                    )
            for s in order:
                samples[s]["latency"].append(latency_once(clusters[s], seq, seconds))
        for s in sides:
            applied = [p.ask("applied").split()[1] for p in clusters[s].procs]
            samples[s]["applied_per_node"] = [int(a) for a in applied]
    finally:
        for c in clusters.values():
            c.close()
    fo: dict[str, list[float]] = {s: [] for s in ("ours", "theirs")}
    fo_errors: dict[str, list[str]] = {s: [] for s in ("ours", "theirs")}
    for r in range(failovers):
        order = ["ours", "theirs"] if r % 2 == 0 else ["theirs", "ours"]
        for s in order:
            try:
                fo[s].append(
                    failover_once(
                        s, os.path.join(workdir, f"fo-{s}-{r}"), datagram_bytes=datagram_bytes
                    )["failover_s"]
                )
            except (RuntimeError, TimeoutError) as exc:
                # a node process that died or a cluster that never formed: counted, named
                fo_errors[s].append(str(exc))

    result: dict[str, Any] = {"commits_per_s": {}, "latency_ms": {}, "failover_s": {}}
    for size in SIZES:
        row: dict[str, Any] = {}
        for s in sides:
            runs_s = samples[s]["commits"][str(size)]
            row[s] = _median([x["commits_per_s"] for x in runs_s])
            row[f"{s}_samples"] = [x["commits_per_s"] for x in runs_s]
            row[f"{s}_failed"] = sum(x["failed"] for x in runs_s)
            row[f"{s}_leader_cpu_ms_per_1000"] = _median(
                [x["leader_cpu_ms_per_1000"] for x in runs_s]
            )
            if s != "theirs":  # PySyncObj speaks TCP: no datagrams to count
                for key in ("leader_datagrams_per_commit", "leader_udp_syscalls_per_commit"):
                    row[f"{s}_{key}"] = _median([x[key] for x in runs_s if key in x])
        row["ratio"] = _ratio(row["ours"], row["theirs"])
        if fsync_line:
            row["ratio_fsync"] = _ratio(row["ours_fsync"], row["theirs"])
        result["commits_per_s"][f"{size}B"] = row
    for q in ("p50_ms", "p99_ms"):
        row = {s: _median([x[q] for x in samples[s]["latency"]]) for s in sides}
        for s in sides:
            row[f"{s}_failed"] = sum(x["failed"] for x in samples[s]["latency"])
        row["ratio"] = _ratio(row["ours"], row["theirs"])
        if fsync_line:
            row["ratio_fsync"] = _ratio(row["ours_fsync"], row["theirs"])
        result["latency_ms"][q] = row
    result["failover_s"] = {
        "ours": _median(fo["ours"]),
        "theirs": _median(fo["theirs"]),
        "ours_samples": fo["ours"],
        "theirs_samples": fo["theirs"],
        "ratio": _ratio(_median(fo["ours"]), _median(fo["theirs"])),
        "election_timeout_s": [ELECTION_MIN_S, ELECTION_MAX_S],
        "errors": fo_errors,
    }
    result["applied_per_node"] = {s: samples[s]["applied_per_node"] for s in sides}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the arguments, run, print a summary and the JSON line; the result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    ap.add_argument("--runs", type=int, default=None, help="repetitions (default 3; quick 1)")
    ap.add_argument("--count", type=int, default=None, help="puts per burst (10000; quick 2000)")
    ap.add_argument("--window", type=int, default=1000, help="puts in flight at most")
    ap.add_argument("--seconds", type=float, default=None, help="time bound of one burst")
    ap.add_argument("--seq", type=int, default=None, help="sequential puts (200; quick 100)")
    ap.add_argument("--failovers", type=int, default=None, help="failover samples (3; quick 1)")
    ap.add_argument("--no-fsync-line", action="store_true", help="skip ours with the WAL")
    ap.add_argument("--dir", default=None, help="where the WAL data directories go")
    ap.add_argument(
        "--datagram-bytes",
        type=int,
        default=0,
        help="ours: [transport] max_datagram_bytes (default: the transport's 1200)",
    )
    args = ap.parse_args(argv)
    quick = args.quick
    runs = args.runs if args.runs is not None else (1 if quick else 3)
    count = args.count if args.count is not None else (2000 if quick else 10000)
    seconds = args.seconds if args.seconds is not None else (10.0 if quick else 30.0)
    seq = args.seq if args.seq is not None else (100 if quick else 200)
    failovers = args.failovers if args.failovers is not None else (1 if quick else 3)
    for name, v in (("runs", runs), ("count", count), ("seq", seq), ("window", args.window)):
        if v <= 0:
            ap.error(f"--{name} must be positive, got {v}")
    if failovers < 0:
        ap.error("--failovers must be >= 0")
    if args.datagram_bytes and not 1200 <= args.datagram_bytes <= 65507:
        ap.error(f"--datagram-bytes must be in 1200..65507, got {args.datagram_bytes}")
    workdir = tempfile.mkdtemp(prefix="bench-consensus-", dir=args.dir)
    try:
        result = run(
            runs=runs,
            count=count,
            window=args.window,
            seconds=seconds,
            seq=seq,
            failovers=failovers,
            fsync_line=not args.no_fsync_line,
            workdir=workdir,
            datagram_bytes=args.datagram_bytes,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    result["settings"] = {
        "runs": runs,
        "count": count,
        "window": args.window,
        "seconds": seconds,
        "seq": seq,
        "failovers": failovers,
        "python": platform.python_version(),
        "pysyncobj": _dist_version("pysyncobj"),
        "cpus": os.cpu_count(),
        "wal_dir": args.dir or tempfile.gettempdir(),
        "ours_datagram_bytes": args.datagram_bytes or 1200,
        # connections start at the size above and raise it by path-MTU discovery up to:
        "ours_pmtu_max_bytes": _pmtu_ceiling(),
        "socket_buffer_bytes": SOCKET_BUFFER_BYTES,
        "load_average_at_end": list(os.getloadavg()),
    }
    for size, row in result["commits_per_s"].items():
        print(
            f"commits/s {size:>6}: ours {row['ours']:>9} theirs {row['theirs']:>9} "
            f"ratio {row['ratio']}  leader CPU us/commit: ours "
            f"{row['ours_leader_cpu_ms_per_1000']} theirs {row['theirs_leader_cpu_ms_per_1000']}"
            f"  ours leader datagrams/commit {row.get('ours_leader_datagrams_per_commit')}"
            + (f"  ours+fsync {row['ours_fsync']} ({row['ratio_fsync']})"
               if "ours_fsync" in row else "")
        )
    for q, row in result["latency_ms"].items():
        print(f"latency {q}: ours {row['ours']} theirs {row['theirs']} ratio {row['ratio']}")
    fo = result["failover_s"]
    print(f"failover s: ours {fo['ours']} theirs {fo['theirs']} ratio {fo['ratio']}")
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "ours":
            key, data_dir, join, datagram = sys.argv[3:7]
            _ours_child(
                key, "" if data_dir == "-" else data_dir, "" if join == "-" else join,
                int(datagram),
            )
        else:
            _theirs_child(int(sys.argv[3]), sys.argv[4])
    else:
        main()
