"""Replay of arbitrary record sequences against a reference written from
spec/consensus-wal.md section 4: the WAL recovers exactly the reference's state, or refuses
the log as corrupt exactly when the reference says it is."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from foundation_p2p.consensus import wal_format as fmt
from foundation_p2p.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from foundation_p2p.consensus.wal import WalStorage, segment_name, snapshot_name
from foundation_p2p.errors import StorageError
from simulator.vfs import MemoryVfs

NODE = st.sampled_from([bytes([i]) * 16 for i in range(3)])
CONF = st.builds(ConfState, voters=st.frozensets(NODE, max_size=2))


@st.composite
def record_lists(draw: st.DrawFn) -> list[fmt.Record]:
    """Mostly well-formed logs (next entries, overwrites, markers at or after the last
    one), with an occasional gap, stale marker or jump, so both outcomes are common."""
    out: list[fmt.Record] = []
    last = 0
    snap = 0
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.integers(0, 8))
        if kind <= 5:
            roll = draw(st.integers(0, 19))
            if roll < 14:
                index = last + 1
            elif roll < 19:
                index = draw(st.integers(1, last + 1))
            else:
                index = last + draw(st.integers(2, 4))
            out.append(Entry(draw(st.integers(0, 3)), index, data=draw(st.binary(max_size=3))))
            last = index
        elif kind <= 6:
            out.append(
                draw(st.builds(HardState, st.integers(0, 3), st.none() | NODE, st.integers(0, 9)))
            )
        else:
            index = draw(st.integers(min(max(0, snap - 1), last + 2), last + 2))
            mode = draw(st.sampled_from(fmt.SnapshotMode))
            meta = SnapshotMeta(index, draw(st.integers(0, 3)), draw(CONF))
            out.append(fmt.SnapshotMarker(meta, mode))
            snap = max(snap, index)
            if mode == fmt.SnapshotMode.INSTALL or index > last:
                last = index
    return out


RECORDS = record_lists()


class Corrupt(Exception):
    pass


def reference(records: list[fmt.Record]) -> tuple[SnapshotMeta, list[Entry], HardState, ConfState]:
    """Section 4 of spec/consensus-wal.md, written again."""
    snap = SnapshotMeta(0, 0)
    hard = HardState()
    conf = ConfState()
    log: list[Entry] = []
    for r in records:
        if isinstance(r, Entry):
            if r.index <= snap.index:
                continue
            if not log or r.index < log[0].index:
                log = [r]
            elif r.index <= log[-1].index + 1:
                log = [e for e in log if e.index < r.index] + [r]
            else:
                raise Corrupt("gap")
        elif isinstance(r, HardState):
            hard = r
        elif isinstance(r, fmt.SnapshotMarker):
            if r.meta.index < snap.index:
                raise Corrupt("older marker")
            log = (
                []
                if r.mode == fmt.SnapshotMode.INSTALL
                else [e for e in log if e.index > r.meta.index]
            )
            snap = r.meta
            conf = r.meta.conf
    if log and log[0].index != snap.index + 1:
        raise Corrupt("missing entries")
    if hard.commit < snap.index:  # reported as at least the snapshot's index
        hard = HardState(hard.term, hard.vote, snap.index)
    return snap, log, hard, conf


@settings(max_examples=400, deadline=None)
@given(RECORDS)
def test_replay_matches_the_reference(records: list[fmt.Record]) -> None:
    vfs = MemoryVfs()
    body = fmt.encode_segment_header(fmt.SegmentHeader(0, 1)) + b"".join(
        fmt.encode_record(r) for r in records
    )
    for r in records:
        if isinstance(r, fmt.SnapshotMarker) and r.meta.index:
            f = vfs.open_append(snapshot_name(r.meta.index, r.meta.term), create=True)
            f.write(fmt.encode_snapshot_data(fmt.SnapshotData(r.meta.index, r.meta.term, b"s")))
    f = vfs.open_append(segment_name(0), create=True)
    f.write(body)
    try:
        want = reference(records)
    except Corrupt:
        event("corrupt")
        try:
            WalStorage.open(vfs)
        except StorageError:
            return
        raise AssertionError("the WAL accepted a log the reference calls corrupt") from None
    wal = WalStorage.open(vfs)
    snap, log, hard, conf = want
    event(
        f"accepted, {'empty' if not log else 'entries'}, snapshot {'yes' if snap.index else 'no'}"
    )
    assert wal.snapshot()[0] == snap
    assert (wal.first_index(), wal.last_index()) == (
        snap.index + 1,
        log[-1].index if log else snap.index,
    )
    assert wal.entries(snap.index + 1, wal.last_index() + 1) == log
    assert wal.initial_state() == (hard, conf)
