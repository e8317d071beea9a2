"""The CRDT registry core: local operation speed, and bytes synced by delta anti-entropy
against full-state sync of the same changes.

Prints one JSON object as its last line:

- ``local``: one ``RegistryCore``: register, lookup and unregister of ``n`` names, each in
  operations per second, next to a plain ``dict`` doing the same work (refuse a duplicate,
  store value/metadata/owner; get; delete) — the floor — and the ratio dict / registry
  (how many times slower the registry is);
- ``sync``: 20 in-process ``RegistryCore`` replicas pumped by this script (no simulator, no
  transport): ``names`` names registered across them in batches, each batch's messages
  delivered with ``loss`` (deltas and sync messages dropped at random), then anti-entropy
  alone until every replica holds the same state. ``delta_bytes_per_name`` is every
  registry byte sent (``registry.synced_bytes`` summed over the replicas: eager deltas plus
  anti-entropy) per name; ``full_state_bytes_per_name`` is what a state-based CRDT would
  have sent for the same run: the sender's whole encoded state (``state_bytes``, as it is
  when the messages are taken) in place of every delta message and every sync reply
  (requests, checks and removals counted as free). ``ratio`` = full / delta.
  ``full_state_sync_only_bytes_per_name`` / ``ratio_sync_only`` count only the replies
  replaced by the whole state (no deltas at all): the cheapest state-based variant, which
  also spreads changes only once a second per node, so it is slower than ours.
  ``anti_entropy_s`` is the virtual time from the last batch to convergence (sync
  interval 1 s);
- ``failed_starts``: horde#200: one name registered and unregistered 10,000 times on one
  replica of three (synced every 100 cycles): ``state_bytes`` of each replica after 100
  and after 10,000 cycles.

- ``simulated``: the time for the names to converge across 20 *simulated* nodes, transport,
  membership and all (the simulator's ``registry-names-soak.toml``: 10,000 names and
  10,000 failed start attempts; ``--quick``: ``registry-names.toml``, 2,000 of each), run
  as ``foundation-p2p sim run FILE --seed 1 --json`` in a child process:
  ``registry.convergence_s`` (virtual seconds from the last registration until every node
  holds the same state), the state size before and after the failed attempts, the synced
  bytes per name (transport framing excluded) and the run's wall time.

Run: ``.venv/bin/python bench/registry.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, _ROOT)

from foundation_p2p.clock import Now  # noqa: E402
from foundation_p2p.counters import Counters  # noqa: E402
from foundation_p2p.registry.config import RegistryConfig  # noqa: E402
from foundation_p2p.registry.core import RegistryCore  # noqa: E402

WALL0 = 1_790_000_000.0


def node_id(i: int) -> bytes:
    return (i + 1).to_bytes(2, "big") * 8


# -- local operations -----------------------------------------------------------------


def _local_round(n: int) -> dict[str, tuple[float, float]]:
    """One timed round on fresh structures: op -> (registry seconds, dict seconds)."""
    names = [f"worker/{i:06d}" for i in range(n)]
    now = Now(0.0, WALL0)
    me = node_id(0)
    reg = RegistryCore(me, config=RegistryConfig(max_delta_buffer=n + 1, max_changes=n + 1),
                       counters=Counters(), rng=random.Random(1))
    floor: dict[str, tuple[Any, dict[str, Any], bytes | None]] = {}

    def reg_register() -> None:
        for i, name in enumerate(names):
            reg.register(now, name, i, {"zone": "a"})

    def reg_lookup() -> None:
        for name in names:
            reg.lookup(name)

    def reg_unregister() -> None:
        for name in names:
            reg.unregister(now, name)

    def dict_register() -> None:
        for i, name in enumerate(names):
            if name in floor:
                raise KeyError(name)
            floor[name] = (i, {"zone": "a"}, me)

    def dict_lookup() -> None:
        for name in names:
            floor.get(name)

    def dict_unregister() -> None:
        for name in names:
            floor.pop(name, None)

    def timed(fn: Any) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    out = {}
    for op, ours, theirs in (
        ("register", reg_register, dict_register),
        ("lookup", reg_lookup, dict_lookup),
        ("unregister", reg_unregister, dict_unregister),
    ):
        out[op] = (timed(ours), timed(theirs))
    return out


def local_ops(n: int, rounds: int = 3) -> dict[str, Any]:
    """Best of ``rounds`` rounds for each operation, registry and dict alike."""
    best: dict[str, list[float]] = {}
    for _ in range(rounds):
        for op, (t_ours, t_dict) in _local_round(n).items():
            b = best.setdefault(op, [t_ours, t_dict])
            b[0], b[1] = min(b[0], t_ours), min(b[1], t_dict)
    out: dict[str, Any] = {"n": n, "rounds": rounds}
    for op, (t_ours, t_dict) in best.items():
        out[op] = {
            "registry_ops_per_s": round(n / t_ours),
            "dict_ops_per_s": round(n / t_dict),
            "ratio": round(t_ours / t_dict, 1),
        }
    return out


# -- delta vs full-state sync -----------------------------------------------------------


class Cluster:
    """Replicas pumped in-process; every message may be dropped with probability ``loss``."""

    def __init__(self, n: int, seed: int) -> None:
        ids = [node_id(i) for i in range(n)]
        self.cores = [
            RegistryCore(nid, config=RegistryConfig(), counters=Counters(),
                         rng=random.Random(seed * 100 + i))
            for i, nid in enumerate(ids)
        ]
        self.by_id = {c.node_id: c for c in self.cores}
        for c in self.cores:
            c.set_peers(ids)
        self.rng = random.Random(seed)
        self.t = 0.0
        self.full_delta_bytes = 0
        self.full_reply_bytes = 0

    def now(self) -> Now:
        return Now(self.t, WALL0 + self.t)

    def pump(self, loss: float) -> None:
        while True:
            batch = []
            for core in self.cores:
                size = core.state_bytes()
                for peer, msg in core.take_messages():
                    # A state-based CRDT sends its whole state where we send a delta or a
                    # sync reply (the state as it is when the messages are taken).
                    if msg[0] == 1:
                        self.full_delta_bytes += size
                    elif msg[0] == 3:
                        self.full_reply_bytes += size
                    if loss and self.rng.random() < loss:
                        continue
                    batch.append((peer, core.node_id, msg))
            if not batch:
                return
            for peer, src, msg in batch:
                self.by_id[peer].handle_message(self.now(), src, msg)

    def tick(self, dt: float) -> None:
        self.t += dt
        for core in self.cores:
            deadline = core.next_deadline()
            if deadline is not None and deadline <= self.t:
                core.handle_timer(self.now())

    def converged(self) -> bool:
        first = self.cores[0].state.canonical()
        return all(c.state.canonical() == first for c in self.cores[1:])


def sync_bytes(names: int, batches: int, loss: float, seed: int = 7) -> dict[str, Any]:
    cluster = Cluster(20, seed)
    per_batch = max(1, names // batches)
    made = 0
    start = time.perf_counter()
    while made < names:
        for _ in range(min(per_batch, names - made)):
            core = cluster.cores[made % len(cluster.cores)]
            core.register(cluster.now(), f"svc/{made:06d}", {"n": made}, {"zone": made % 3})
            made += 1
        cluster.pump(loss)
        cluster.tick(0.1)
        cluster.pump(loss)
    end_of_writes = cluster.t
    while not cluster.converged():
        for _ in range(10):
            cluster.tick(0.1)
            cluster.pump(0.0)
        if cluster.t - end_of_writes > 600:
            raise RuntimeError("no convergence within 600 virtual seconds")
    delta_total = sum(c.counters["registry.synced_bytes"] for c in cluster.cores)
    full = cluster.full_delta_bytes + cluster.full_reply_bytes
    counters: dict[str, int] = {}
    for c in cluster.cores:
        for k, v in c.counters.items():
            counters[k] = counters.get(k, 0) + v
    return {
        "replicas": len(cluster.cores),
        "names": names,
        "batches": batches,
        "loss": loss,
        "delta_bytes_per_name": round(delta_total / names, 1),
        "full_state_bytes_per_name": round(full / names, 1),
        "ratio": round(full / delta_total, 1),
        "full_state_sync_only_bytes_per_name": round(cluster.full_reply_bytes / names, 1),
        "ratio_sync_only": round(cluster.full_reply_bytes / delta_total, 2),
        "delta_part_bytes": counters.get("registry.delta_bytes", 0),
        "anti_entropy_part_bytes": counters.get("registry.sync_bytes", 0),
        "anti_entropy_s": round(cluster.t - end_of_writes, 1),
        "sync_rounds": counters.get("registry.sync.started", 0),
        "state_bytes": cluster.cores[0].state_bytes(),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def failed_starts(cycles: int = 10_000) -> dict[str, Any]:
    cluster = Cluster(3, 1)
    a = cluster.cores[0]
    a.register(cluster.now(), "other", 1)
    cluster.pump(0.0)
    after_100: list[int] = []
    for i in range(cycles):
        a.register(cluster.now(), "flaky/singleton", {"attempt": i})
        a.unregister(cluster.now(), "flaky/singleton")
        if i % 100 == 99:
            cluster.pump(0.0)
        if i == 99:
            after_100 = [c.state_bytes() for c in cluster.cores]
    cluster.pump(0.0)
    return {
        "cycles": cycles,
        "state_bytes_after_100": after_100,
        "state_bytes_after_all": [c.state_bytes() for c in cluster.cores],
    }


def simulated(quick: bool) -> dict[str, Any]:
    """Run the simulator's names scenario in a child process and keep its registry figures."""
    import subprocess

    name = "registry-names.toml" if quick else "registry-names-soak.toml"
    path = os.path.join(_ROOT, "simulator", "scenarios", name)
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "sim", "run", path, "--seed", "1", "--json"],
        capture_output=True, text=True, cwd=_ROOT, timeout=1800,
    )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return {"scenario": name, "error": proc.stderr[-2000:]}
    result = json.loads(lines[-1])
    metrics = result.get("metrics", {})
    names = None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for line in text.splitlines():
        if line.strip().startswith("names"):
            names = int(line.split("=", 1)[1].strip().replace("_", ""))
    out: dict[str, Any] = {
        "scenario": name, "ok": result.get("ok"), "nodes": result.get("nodes"),
        "names": names, "wall_s": result.get("wall_seconds"),
        "invariants_failed": sorted(k for k, v in result.get("invariants", {}).items()
                                    if not v.get("ok")),
    }
    for key, value in sorted(metrics.items()):
        if key.startswith("registry."):
            out[key] = value
    synced = metrics.get("registry.synced_bytes")
    if names and synced:
        out["synced_bytes_per_name_per_node"] = round(synced / names / (result["nodes"] - 1), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (seconds)")
    args = parser.parse_args(argv)
    quick = args.quick
    report: dict[str, Any] = {
        "bench": "registry",
        "quick": quick,
        "python": platform.python_version(),
        "local": local_ops(5_000 if quick else 50_000),
        "sync": sync_bytes(1_000 if quick else 10_000, 10 if quick else 50, loss=0.05),
        "failed_starts": failed_starts(),
        "simulated": simulated(quick),
    }
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
