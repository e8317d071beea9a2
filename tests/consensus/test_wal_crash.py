"""Crash the write-ahead log at every file-system operation (simulator/vfs.py) and recover.

A fixed workload (saves with rollovers, overwrites of a conflicting suffix, syncs,
compactions) runs on a :class:`MemoryVfs` whose ``crash_at`` stops it at operation n; the
disk then loses everything not durable (optionally keeping a torn or zero-filled part of
the last write) and the log is reopened. For every n the recovered log must be one of the
states the workload passed through *after its last completed sync*: every synced record is
there, nothing half-written is, and what follows the last sync is a whole-record prefix of
what was saved after it. The recovered log must then accept new writes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from foundation_p2p.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from foundation_p2p.consensus.wal import WalOptions, WalStorage
from simulator.vfs import MemoryVfs, SimulatedCrash

OPTS = WalOptions(segment_bytes=4096, max_cache_bytes=1500)
VOTER = bytes(range(16))


@dataclass(frozen=True)
class Save:
    hard: HardState
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Sync:
    pass


@dataclass(frozen=True)
class Compact:
    index: int


@dataclass(frozen=True)
class Install:
    """A snapshot from the leader, saved with the entries that follow it."""

    index: int
    term: int
    hard: HardState
    entries: tuple[Entry, ...]


Op = Save | Sync | Compact | Install
State = tuple[int, int, tuple[Entry, ...], HardState]
"""(snapshot index, snapshot term, entries after it, hard state)."""


def workload(seed: int, saves: int = 70) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    last = 0
    snap = 0
    term = 1
    for _ in range(saves):
        start = last + 1
        if last > snap + 2 and rng.random() < 0.15:
            start = rng.randint(snap + 1, last)  # a follower overwriting a conflicting suffix
            term += 1
        n = rng.randint(1, 4)
        batch = tuple(
            Entry(term, i, data=rng.randbytes(rng.randint(0, 200))) for i in range(start, start + n)
        )
        last = start + n - 1
        ops.append(Save(HardState(term, VOTER, max(snap, start - 1)), batch))
        if rng.random() < 0.4:
            ops.append(Sync())
        if rng.random() < 0.06 and last > snap + 5:
            snap = rng.randint(snap + 1, last - 3)
            ops.append(Compact(snap))
        elif rng.random() < 0.03:
            term += 1
            snap = last + rng.randint(-2, 6) if last - 2 > snap else last + 3
            after = tuple(Entry(term, i, data=b"i%d" % i) for i in range(snap + 1, snap + 3))
            last = snap + 2
            ops.append(Install(snap, term, HardState(term, None, snap), after))
    ops.append(Sync())
    return ops


class Model:
    """The log's state, one record at a time."""

    def __init__(self) -> None:
        self.snap = SnapshotMeta(0, 0)
        self.log: dict[int, Entry] = {}
        self.hard = HardState()

    def state(self) -> State:
        hard = self.hard
        if hard.commit < self.snap.index:  # the WAL reports the snapshot index as committed
            hard = HardState(hard.term, hard.vote, self.snap.index)
        return (self.snap.index, self.snap.term, tuple(self.log[i] for i in sorted(self.log)), hard)

    def steps(self, op: Op) -> list[State]:
        """The states after each record ``op`` writes, in order."""
        out: list[State] = []
        if isinstance(op, Save):
            for e in op.entries:
                for i in [i for i in self.log if i >= e.index]:
                    del self.log[i]
                self.log[e.index] = e
                out.append(self.state())
            self.hard = op.hard
            out.append(self.state())
        elif isinstance(op, Compact):
            self.snap = SnapshotMeta(op.index, self.log[op.index].term, ConfState())
            self.log = {i: e for i, e in self.log.items() if i > op.index}
            out.append(self.state())
        elif isinstance(op, Install):
            self.snap = SnapshotMeta(op.index, op.term, ConfState())
            self.log = {}
            out.append(self.state())
            out.extend(self.steps(Save(op.hard, op.entries)))
        return out


def snapshot_of(state: State) -> bytes:
    return b"state@%d" % state[0]


def run(ops: list[Op], vfs: MemoryVfs) -> tuple[int, int]:
    """Run ``ops`` until done or crashed: (ops completed, ops known durable)."""
    durable = 0
    done = 0
    try:
        wal = WalStorage.open(vfs, OPTS)
        for k, op in enumerate(ops):
            if isinstance(op, Save):
                wal.save(op.hard, list(op.entries))
            elif isinstance(op, Sync):
                wal.sync()
                durable = k + 1
            elif isinstance(op, Install):
                meta = SnapshotMeta(op.index, op.term)
                wal.save(op.hard, list(op.entries), snapshot=(meta, b"state@%d" % op.index))
            else:
                wal.create_snapshot(op.index, ConfState(), b"state@%d" % op.index)
                durable = k + 1
            done = k + 1
    except SimulatedCrash:
        pass
    return done, durable


def acceptable_states(ops: list[Op], durable: int, done: int) -> list[State]:
    """Every state from the one after op ``durable - 1`` through the records of the op
    that was interrupted (``done``)."""
    model = Model()
    for op in ops[:durable]:
        model.steps(op)
    out = [model.state()]
    for op in ops[durable : done + 1]:
        out.extend(model.steps(op))
    return out


def recovered_state(wal: WalStorage) -> State:
    meta, data = wal.snapshot()
    if meta.index:
        assert data == b"state@%d" % meta.index
    entries = tuple(wal.entries(wal.first_index(), wal.last_index() + 1))
    return (meta.index, meta.term, entries, wal.initial_state()[0])


def total_ops(ops: list[Op]) -> int:
    vfs = MemoryVfs()
    done, durable = run(ops, vfs)
    assert done == durable == len(ops)
    return vfs.ops


@pytest.mark.parametrize("mode", ["clean", "torn", "zero_tail"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crash_at_every_operation_recovers_every_synced_record(seed: int, mode: str) -> None:
    ops = workload(seed)
    n_ops = total_ops(ops)
    assert n_ops > 100
    assert any(isinstance(op, Compact) for op in ops)
    assert any(isinstance(op, Install) for op in ops)
    rng = random.Random(seed * 1000 + len(mode))
    torn_seen = 0
    for crash_at in range(1, n_ops + 1):
        vfs = MemoryVfs()
        vfs.crash_at = crash_at
        done, durable = run(ops, vfs)
        report = vfs.crash(rng, torn=mode != "clean", zero_tail=mode == "zero_tail")
        wal = WalStorage.open(vfs, OPTS)
        torn_seen += wal.counters["wal.torn_tails"]
        got = recovered_state(wal)
        allowed = acceptable_states(ops, durable, done)
        assert got in allowed, (
            f"seed {seed} {mode}: crash at operation {crash_at} (op {done}, durable through "
            f"{durable}, {report}) recovered snapshot {got[0]}, {len(got[2])} entries, {got[3]}"
        )
        # The recovered log keeps working: append, sync, reopen.
        nxt = wal.last_index() + 1
        wal.save(HardState(99, None, 0), [Entry(99, nxt, data=b"after the crash")])
        wal.sync()
        wal.close()
        again = WalStorage.open(vfs, OPTS)
        assert again.last_index() == nxt
        assert again.entries(nxt, nxt + 1) == [Entry(99, nxt, data=b"after the crash")]
        assert again.counters["wal.torn_tails"] == 0
    if mode != "clean":
        assert torn_seen > 0, "no crash left a torn tail: the test would not see one"


def test_a_crash_right_after_sync_loses_nothing() -> None:
    ops = workload(3)
    vfs = MemoryVfs()
    done, durable = run(ops, vfs)
    assert done == durable
    vfs.crash(random.Random(0), torn=True)
    model = Model()
    for op in ops:
        model.steps(op)
    assert recovered_state(WalStorage.open(vfs, OPTS)) == model.state()
