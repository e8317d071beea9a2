"""Benchmark the write-ahead log on the real disk: group commit against one fsync per entry.

In one run, on one temporary directory (``--dir``, default the system temp dir; say which
file system it is on, since ``fsync`` costs from ~10 us on tmpfs to ~10 ms on a disk
without a write cache), with entries of ``--entry-bytes`` (default 200) and a hard state
saved with each one, as a Raft follower does:

- ``per_entry_fsync``: ``save`` one entry, then ``sync`` (one ``fdatasync``) before the
  next: what a node without group commit does;
- ``group_commit``: ``save`` one entry at a time, ``sync`` once per ``--batch`` saves
  (default 64): many proposals waiting on one fsync, as the Raft driver does when
  proposals arrive while the previous sync runs;
- ``group_commit_4096``: the same with 4096 saves per sync, where the cost per append
  (encoding, CRC, indexing) rather than the fsync is the limit;
- ``recovery``: reopen that log (read, CRC-check and index every record).

Each mode runs for ``--seconds`` (or ``--entries``, whichever ends first). Reports
appends per second, fsyncs per second and microseconds per fsync for both modes, the
ratio of appends per second (group / per-entry) and recovery in entries per second.
Prints one JSON object as its last line.

Usage: ``python bench/wal.py [--quick] [--dir PATH] [--entry-bytes N] [--batch N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

from foundation_p2p.consensus.types import Entry, HardState
from foundation_p2p.consensus.wal import WalStorage
from foundation_p2p.runtime.vfs import OsVfs

VOTE = bytes(range(16))


def filesystem_of(path: str) -> str:
    """The file system type of ``path`` from /proc/mounts (best effort)."""
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return "unknown"
    real = os.path.realpath(path)
    best = ("", "unknown")
    for fields in mounts:
        if (
            len(fields) >= 3
            and (real == fields[1] or real.startswith(fields[1].rstrip("/") + "/"))
            and len(fields[1]) > len(best[0])
        ):
            best = (fields[1], fields[2])
    return best[1]


def run_mode(
    path: str, batch: int, entry_bytes: int, seconds: float, max_entries: int
) -> dict[str, Any]:
    """Append entries for ``seconds``; ``sync`` after every ``batch`` saves."""
    vfs = OsVfs(path)
    wal = WalStorage.open(vfs)
    payload = os.urandom(entry_bytes)
    fsyncs_before = wal.counters["wal.fsyncs"]
    index = 0
    started = time.perf_counter()
    deadline = started + seconds
    while index < max_entries:
        for _ in range(batch):
            index += 1
            wal.save(HardState(1, VOTE, index - 1), [Entry(1, index, data=payload)])
        wal.sync()
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    fsyncs = wal.counters["wal.fsyncs"] - fsyncs_before
    wal.close()
    vfs.close()
    return {
        "batch": batch,
        "entries": index,
        "seconds": round(elapsed, 3),
        "appends_per_s": round(index / elapsed),
        "fsyncs": fsyncs,
        "fsyncs_per_s": round(fsyncs / elapsed),
        "us_per_fsync_incl_write": round(elapsed / max(fsyncs, 1) * 1e6, 1),
        "mb_per_s": round(index * entry_bytes / elapsed / 1e6, 2),
    }


def run_recovery(path: str) -> dict[str, Any]:
    vfs = OsVfs(path)
    started = time.perf_counter()
    wal = WalStorage.open(vfs)
    elapsed = time.perf_counter() - started
    entries = wal.last_index() - wal.first_index() + 1
    wal.close()
    vfs.close()
    return {
        "entries": entries,
        "seconds": round(elapsed, 3),
        "entries_per_s": round(entries / elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 3 s in all")
    parser.add_argument("--dir", default=None, help="parent directory for the logs")
    parser.add_argument("--entry-bytes", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=None, help="per mode (default 5)")
    parser.add_argument("--entries", type=int, default=2_000_000, help="per mode, at most")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0)
    root = tempfile.mkdtemp(prefix="fp2p-bench-wal-", dir=args.dir)
    try:
        single = run_mode(os.path.join(root, "single"), 1, args.entry_bytes, seconds, args.entries)
        print(
            f"one fsync per entry: {single['appends_per_s']} appends/s, "
            f"{single['fsyncs_per_s']} fsyncs/s",
            file=sys.stderr,
        )
        group = run_mode(
            os.path.join(root, "group"), args.batch, args.entry_bytes, seconds, args.entries
        )
        print(
            f"group commit ({args.batch}): {group['appends_per_s']} appends/s, "
            f"{group['fsyncs_per_s']} fsyncs/s",
            file=sys.stderr,
        )
        large = run_mode(os.path.join(root, "large"), 4096, args.entry_bytes, seconds, args.entries)
        print(
            f"group commit (4096, CPU-bound): {large['appends_per_s']} appends/s",
            file=sys.stderr,
        )
        recovery = run_recovery(os.path.join(root, "large"))
        print(f"recovery: {recovery['entries_per_s']} entries/s", file=sys.stderr)
        report = {
            "bench": "wal",
            "quick": args.quick,
            "python": platform.python_version(),
            "dir": root,
            "filesystem": filesystem_of(root),
            "entry_bytes": args.entry_bytes,
            "per_entry_fsync": single,
            "group_commit": group,
            "group_commit_4096": large,
            "ratio_appends_group_to_per_entry": round(
                group["appends_per_s"] / max(single["appends_per_s"], 1), 2
            ),
            "recovery": recovery,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
