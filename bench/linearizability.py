"""Benchmark the linearizability checker (``foundation_p2p/history``).

Prints one JSON object as its last line:

- ``jepsen_etcd``: the 102 real Jepsen etcd histories of ``../shared/data/jepsen-etcd/``
  (read from there, never copied): parse and check time of every file (the best of
  ``--repeat`` runs per file), per-file median and max, the slowest file, the total, model
  steps per second, and how many verdicts agree with ``VERDICTS`` (must be 102); or
  ``{"skipped": reason}`` where the folder is absent;
- ``synthetic_kv``: a KV history made by clients driving a real sequential store (random
  overlap, about 8 % timeouts that take effect later or never, unique written values), N
  operations over K keys: the check's time and operations per second (it must be
  linearizable), and the same history with one read corrupted (must not be);
- ``synthetic_kv_small_domain``: the checker's weak spot, reported as measured: the same
  with values 0..4 and 5 keys (thousands of operations per key, hundreds of timeouts
  each). The clean history is decided; proving the corrupted one is not linearizable
  can exhaust the step budget (``unknown``).

No baseline runs here: Porcupine (Go) and Knossos (Clojure) need toolchains this
environment does not have, so only our own figures are reported.
Run: ``.venv/bin/python bench/linearizability.py [--quick] [--repeat R]``
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from foundation_p2p.history import (
    Budget,
    Event,
    KvModel,
    Operation,
    RegisterModel,
    Verdict,
    check,
    pair_events,
    parse_history,
)
from foundation_p2p.history.checker import DEFAULT_MAX_STEPS
from foundation_p2p.history.model import EVENT_TYPE_BY_NAME, Value

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jepsen-etcd"


def bench_jepsen(repeat: int) -> dict[str, Any]:
    """Parse and check every Jepsen etcd history; best-of-``repeat`` time per file."""
    verdicts_file = DATA / "VERDICTS"
    if not verdicts_file.exists():
        return {"skipped": f"no Jepsen etcd data at {DATA}"}
    expected = {}
    for line in verdicts_file.read_text("utf-8").splitlines():
        if line.strip():
            name, word = line.split()
            expected[name] = word
    parse_s: dict[str, float] = {}
    check_s: dict[str, float] = {}
    steps = 0
    agree = 0
    for name in sorted(expected):
        data = (DATA / name).read_bytes()
        best_parse = best_check = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            ops = parse_history(data, format="jepsen", source=name)
            t1 = time.perf_counter()
            result = check(ops, RegisterModel(), source=name)
            t2 = time.perf_counter()
            best_parse = min(best_parse, t1 - t0)
            best_check = min(best_check, t2 - t1)
        parse_s[name] = best_parse
        check_s[name] = best_check
        steps += result.steps
        agree += result.verdict.value == expected[name]
    total = {n: parse_s[n] + check_s[n] for n in expected}
    slowest = max(total, key=total.__getitem__)
    check_total = sum(check_s.values())
    return {
        "files": len(expected),
        "verdicts_agree": agree,
        "total_s": round(sum(total.values()), 4),
        "parse_total_s": round(sum(parse_s.values()), 4),
        "check_total_s": round(check_total, 4),
        "per_file_median_s": round(statistics.median(total.values()), 5),
        "per_file_max_s": round(total[slowest], 5),
        "slowest_file": slowest,
        "model_steps": steps,
        "steps_per_s": round(steps / check_total) if check_total else None,
        "repeat": repeat,
    }


def synthetic_kv_history(
    n_ops: int, keys: int, clients: int, seed: int, *, unique: bool = True
) -> list[Event]:
    """Clients driving a real sequential KV store: each operation takes effect at a random
    instant inside its interval; 5 % time out (and take effect later, or never)."""
    rng = random.Random(seed)
    store: dict[str, Value] = {}
    events: list[Event] = []
    now = 0.0
    pending: dict[int, tuple[str, str, Value, bool, Value]] = {}  # process -> op, applied
    floating: list[tuple[str, str, Value]] = []
    next_process = clients
    idle = list(range(clients))
    started = 0

    def emit(process: int, kind: str, f: str, key: str, value: Value) -> None:
        events.append(Event(process, EVENT_TYPE_BY_NAME[kind], f, key, value, now, 0))

    written = 0
    history_of: dict[str, list[Value]] = {}

    def apply(f: str, key: str, arg: Value) -> tuple[bool, Value]:
        took = True
        if f == "get":
            return True, store.get(key)
        if f == "put":
            store[key] = arg
        elif f == "delete":
            store.pop(key, None)
        else:
            assert isinstance(arg, tuple)
            took = store.get(key) == arg[0]
            if took:
                store[key] = arg[1]
        history_of.setdefault(key, [None]).append(store.get(key))
        return took, None

    while started < n_ops or pending:
        now += rng.expovariate(1000.0)
        action = rng.random()
        if idle and started < n_ops and action < 0.4:
            process = idle.pop(rng.randrange(len(idle)))
            key = f"k{rng.randrange(keys)}"
            f = rng.choice(["get", "get", "put", "cas", "delete"])
            arg: Value = None
            written += 1
            if f == "put":
                arg = written if unique else rng.randrange(5)
            elif f == "cas":
                if unique:
                    recent = history_of.get(key, [None])
                    arg = (rng.choice(recent[-3:]), written)
                else:
                    arg = (rng.choice([None, 0, 1, 2, 3, 4]), rng.randrange(5))
            pending[process] = (f, key, arg, False, None)
            emit(process, "invoke", f, key, arg)
            started += 1
        elif pending and action < 0.7:
            process = rng.choice(sorted(pending))
            f, key, arg, applied, result = pending[process]
            if not applied:
                took, result = apply(f, key, arg)
                pending[process] = (f, key, arg, True, result if took else False)
        elif pending:
            process = rng.choice(sorted(pending))
            f, key, arg, applied, result = pending[process]
            if rng.random() < 0.05:
                del pending[process]
                emit(process, "info", f, key, None)
                if not applied and f != "get":
                    floating.append((f, key, arg))
                idle.append(next_process)
                next_process += 1
            elif applied:
                del pending[process]
                if result is False:
                    emit(process, "fail", f, key, arg)
                else:
                    emit(process, "ok", f, key, result if f == "get" else arg)
                idle.append(process)
        if floating and rng.random() < 0.01:
            apply(*floating.pop(rng.randrange(len(floating))))
    return [replace(e, line=i + 1) for i, e in enumerate(events)]


def bench_synthetic(
    n_ops: int, keys: int, *, unique: bool = True, max_steps: int = DEFAULT_MAX_STEPS
) -> dict[str, Any]:
    """Check a generated linearizable KV history, then one corrupted read of it."""
    ops = pair_events(synthetic_kv_history(n_ops, keys, clients=16, seed=7, unique=unique))
    t0 = time.perf_counter()
    good = check(ops, KvModel(), budget=Budget(max_steps=max_steps))
    good_s = time.perf_counter() - t0
    reads = [op for op in ops if op.f == "get" and op.status == "ok"]
    victim = reads[len(reads) // 2]
    bad_ops: list[Operation] = [
        replace(op, output="never written") if op is victim else op for op in ops
    ]
    t0 = time.perf_counter()
    bad = check(bad_ops, KvModel(), budget=Budget(max_steps=max_steps))
    bad_s = time.perf_counter() - t0
    return {
        "operations": len(ops),
        "keys": keys,
        "values": "unique" if unique else "0..4",
        "max_steps": max_steps,
        "indeterminate": sum(op.status == "info" for op in ops),
        "verdict": good.verdict.value,
        "check_s": round(good_s, 4),
        "ops_per_s": round(len(ops) / good_s),
        "steps": good.steps,
        "corrupted_verdict": bad.verdict.value,
        "corrupted_check_s": round(bad_s, 4),
        "ok": good.verdict is Verdict.LINEARIZABLE and bad.verdict is Verdict.NOT_LINEARIZABLE,
    }


def main() -> int:
    """Run both parts and print the JSON report as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, 10k ops")
    parser.add_argument("--repeat", type=int, default=None, help="runs per Jepsen file")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 5)
    jepsen = bench_jepsen(repeat)
    print(f"jepsen_etcd: {jepsen}", file=sys.stderr)
    synthetic = bench_synthetic(10_000 if args.quick else 100_000, 100)
    print(f"synthetic_kv: {synthetic}", file=sys.stderr)
    # The weak spot: few values, long keys, many timeouts. Reported, not required to pass.
    small = bench_synthetic(
        10_000 if args.quick else 20_000,
        5,
        unique=False,
        max_steps=1_000_000 if args.quick else 5_000_000,
    )
    print(f"synthetic_kv_small_domain: {small}", file=sys.stderr)
    report = {
        "bench": "linearizability",
        "quick": args.quick,
        "python": platform.python_version(),
        "jepsen_etcd": jepsen,
        "synthetic_kv": synthetic,
        "synthetic_kv_small_domain": small,
        "baseline": "none: Porcupine (Go) and Knossos (Clojure) not run here",
    }
    print(json.dumps(report, sort_keys=True))
    ok = jepsen.get("verdicts_agree", 102) == jepsen.get("files", 102) and synthetic["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
