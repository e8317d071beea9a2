"""Benchmark sealed-bid auctions against bare Raft commits: 3 real nodes on 127.0.0.1.

Three ``foundation-p2p node run --app coordination:app_main`` processes (this file is the
app; no data directory, so the Raft log is in memory on both sides of the comparison) form a
Raft group (tick 50 ms). Each node starts one coordination agent (a supervised singleton
bidding a fixed amount). The node started last is the *driver*; once all three agents are
registered it measures, in this order and in the same run:

- ``commit_latency_ms``: ``--commits`` sequential ``node.kv.put`` of 16 bytes (one Raft
  commit each, proposed from the driver), p50 / p99 / mean;
- ``auction_latency_ms``: ``--auctions`` sequential
  ``node.coordination.coordinate_resource_allocation`` over the three agents (second price),
  from the open to the result applied on the driver, p50 / p99 / mean. One auction is an
  open, three commits (in parallel), a close, three reveals (in parallel) and a finalize;
- ``auctions_per_s``: ``--burst`` auctions run ``--concurrency`` at a time, completed
  auctions divided by the wall time.

``ratio_p50`` is auction p50 / commit p50 (the log rounds an auction costs, plus the
agents' handler calls and the driver's waits). The driver prints one ``BENCH {json}`` line;
this script prints a summary and the JSON object as its last line. ``--quick`` takes well
under a minute.

Usage: ``python bench/coordination.py [--quick] [--commits N] [--auctions N] [--burst N]
[--concurrency N]``.
"""

from __future__ import annotations

import argparse
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

TOML = """
probe_interval_s = 0.1
probe_timeout_s = 0.1

[consensus]
tick_interval_s = 0.05
election_tick = 10
bootstrap_expect = 3
request_timeout_s = 5.0
"""
NODES = 3
HERE = os.path.dirname(os.path.abspath(__file__))


# -- the app each node runs ---------------------------------------------------------------


class FixedBidder:
    """An agent that bids the amount it was started with and votes yes."""

    def __init__(self, args: Any) -> None:
        self.amount = int(args["amount"])

    def bid(self, auction: Any) -> int | None:
        return self.amount

    def vote(self, proposal: Any) -> int:
        return 1

    def offer(self, negotiation: Any) -> Any:
        from foundation_p2p.coordination.negotiation import Accept

        return Accept()


def make_agent(args: Any) -> FixedBidder:
    """The agent factory (``coordination:make_agent``, importable on every node)."""
    return FixedBidder(args)


def summarize(samples_s: list[float]) -> dict[str, Any]:
    """p50 / p99 / mean in milliseconds of ``samples_s`` (seconds), and the count."""
    ms = sorted(s * 1000 for s in samples_s)
    if not ms:
        return {"n": 0}
    p99 = ms[min(len(ms) - 1, max(0, round(0.99 * len(ms)) - 1))]
    return {"n": len(ms), "p50": round(statistics.median(ms), 2), "p99": round(p99, 2),
            "mean": round(statistics.fmean(ms), 2)}


async def app_main(node: Any) -> None:
    """Start this node's agent; the driver measures and prints ``BENCH {json}``."""
    import trio

    amount = int(os.environ["CB_AMOUNT"])
    coord = node.coordination
    coord.start_coordination_agent("coordination:make_agent", {"amount": amount},
                                   name=f"bench-bidder-{amount}", capabilities=["cpu"])
    if os.environ.get("CB_DRIVER") != "1":
        return
    commits = int(os.environ["CB_COMMITS"])
    auctions = int(os.environ["CB_AUCTIONS"])
    burst = int(os.environ["CB_BURST"])
    concurrency = int(os.environ["CB_CONCURRENCY"])
    await node.consensus.wait_leader()
    agents = await coord.wait_agents(NODES, "cpu", timeout_s=120.0)
    ids = [a.agent_id for a in agents]
    # warm-up, retried while the group settles (a leader change right after formation
    # makes a first put or auction fail; the measured rounds below are not retried)
    for attempt in range(20):
        try:
            await node.kv.put(b"warm-up", b"x")
            await coord.coordinate_resource_allocation(ids, ["cpu"], timeout_s=60.0)
            break
        except Exception as exc:  # ConsensusError, CoordinationError...: retry, bounded
            print(f"warm-up attempt {attempt + 1} failed: {exc!r}", file=sys.stderr, flush=True)
            await trio.sleep(0.5)
    else:
        raise RuntimeError("the warm-up never succeeded in 20 attempts")

    commit_s = []
    for i in range(commits):
        t0 = time.perf_counter()
        await node.kv.put(b"bench-%d" % i, b"0123456789abcdef")
        commit_s.append(time.perf_counter() - t0)

    auction_s = []
    prices = set()
    for _ in range(auctions):
        t0 = time.perf_counter()
        result = await coord.coordinate_resource_allocation(ids, ["cpu"], timeout_s=60.0)
        auction_s.append(time.perf_counter() - t0)
        prices.add((result.winners[0][1], result.price))

    done = 0
    failed = 0
    limiter = trio.Semaphore(concurrency)

    async def one() -> None:
        nonlocal done, failed
        async with limiter:
            try:
                await coord.coordinate_resource_allocation(ids, ["cpu"], timeout_s=60.0)
                done += 1
            except Exception:
                failed += 1

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(burst):
            nursery.start_soon(one)
    wall = time.perf_counter() - t0
    commit = summarize(commit_s)
    auction = summarize(auction_s)
    out = {
        "commit_latency_ms": commit,
        "auction_latency_ms": auction,
        "ratio_p50": round(auction["p50"] / commit["p50"], 2) if commit.get("p50") else None,
        "auctions_per_s": round(done / wall, 2) if wall > 0 else None,
        "burst": {"auctions": burst, "completed": done, "failed": failed,
                  "concurrency": concurrency, "wall_s": round(wall, 3)},
        "winning_bid_and_price": sorted(prices),
        "driver_is_leader": node.consensus.is_leader(),
    }
    print("BENCH " + json.dumps(out, sort_keys=True), flush=True)


# -- the driver script ----------------------------------------------------------------------


class _Proc:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env=env)
        self.buf = b""

    def wait_for(self, prefix: str, deadline: float) -> str:
        assert self.p.stdout is not None
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([self.p.stdout], [], [], max(left, 0))
                if left <= 0 or not ready:
                    raise TimeoutError(f"no {prefix!r} line in time")
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"node exited before printing {prefix!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode()
            if text.startswith(prefix):
                return text


def run(*, commits: int, auctions: int, burst: int, concurrency: int,
        limit_s: float) -> dict[str, Any]:
    """Start the three nodes, wait for the driver's measurements, stop the nodes."""
    from foundation_p2p.crypto.keyring import Keyring

    workdir = tempfile.mkdtemp(prefix="bench-coordination-")
    procs: list[_Proc] = []
    try:
        config = os.path.join(workdir, "node.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(TOML)
        key = os.path.join(workdir, "cluster.key")
        with open(key, "w", encoding="utf-8") as f:
            f.write(Keyring.generate(os.urandom).to_text())
        os.chmod(key, 0o600)
        deadline = time.monotonic() + limit_s
        port = None
        for i in range(NODES):
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
            env.update(CB_AMOUNT=str(10 * (i + 1)), CB_DRIVER="1" if i == NODES - 1 else "0",
                       CB_COMMITS=str(commits), CB_AUCTIONS=str(auctions),
                       CB_BURST=str(burst), CB_CONCURRENCY=str(concurrency))
            args = [sys.executable, "-m", "foundation_p2p", "node", "run", "--config", config,
                    "--cluster-key-file", key, "--bind", "127.0.0.1:0",
                    "--app", "coordination:app_main", "--log-level", "error"]
            if port is not None:
                args += ["--join", f"127.0.0.1:{port}"]
            procs.append(_Proc(args, env))
            ready = procs[-1].wait_for("ready ", deadline)
            if port is None:
                address = dict(w.split("=", 1) for w in ready.split()[1:])["address"]
                port = int(address.rsplit(":", 1)[1])
        line = procs[-1].wait_for("BENCH ", deadline)
        result: dict[str, Any] = json.loads(line[len("BENCH "):])
        return result
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.p.wait(15)
            except subprocess.TimeoutExpired:
                p.p.kill()
                p.p.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the arguments, run, print a summary and the JSON line; the result."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: well under a minute")
    ap.add_argument("--commits", type=int, default=None, help="sequential puts (300; quick 50)")
    ap.add_argument("--auctions", type=int, default=None,
                    help="sequential auctions (100; quick 15)")
    ap.add_argument("--burst", type=int, default=None, help="auctions in the burst (200; 30)")
    ap.add_argument("--concurrency", type=int, default=10, help="burst auctions in flight")
    ap.add_argument("--limit", type=float, default=None, help="overall time bound in seconds")
    args = ap.parse_args(argv)
    quick = args.quick
    commits = args.commits if args.commits is not None else (50 if quick else 300)
    auctions = args.auctions if args.auctions is not None else (15 if quick else 100)
    burst = args.burst if args.burst is not None else (30 if quick else 200)
    limit = args.limit if args.limit is not None else (55.0 if quick else 600.0)
    for name, v in (("commits", commits), ("auctions", auctions), ("burst", burst),
                    ("concurrency", args.concurrency)):
        if v <= 0:
            ap.error(f"--{name} must be positive, got {v}")
    result = run(commits=commits, auctions=auctions, burst=burst,
                 concurrency=args.concurrency, limit_s=limit)
    result["settings"] = {"commits": commits, "auctions": auctions, "burst": burst,
                          "concurrency": args.concurrency, "nodes": NODES, "quick": quick,
                          "python": platform.python_version(), "cpus": os.cpu_count()}
    c, a = result["commit_latency_ms"], result["auction_latency_ms"]
    print(f"commit latency ms: p50 {c['p50']} p99 {c['p99']} (n={c['n']})")
    print(f"auction latency ms: p50 {a['p50']} p99 {a['p99']} (n={a['n']}); "
          f"ratio p50 {result['ratio_p50']}")
    print(f"auctions/s: {result['auctions_per_s']} ({result['burst']})")
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
