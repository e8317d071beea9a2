"""Proposal windows (``consensus.dedup``) and re-sent proposals: a proposal lost on its
way to the leader is sent again, and every member applies an envelope once
(``spec/consensus-client.md`` section 2.1)."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_subsystem_harness import Cluster, Member, nid

from foundation_p2p.clock import Now
from foundation_p2p.consensus.dedup import (
    ProposalWindows,
    decode_snapshot,
    encode_snapshot,
)
from foundation_p2p.consensus.messages import MessageType, decode_message
from foundation_p2p.consensus.subsystem import ConsensusConfig, decode_envelope
from foundation_p2p.consensus.types import EntryKind
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, MalformedError

P = nid(7)

# -- the windows ---------------------------------------------------------------------------


def test_a_copy_is_skipped_and_the_floor_forgets_what_it_covers() -> None:
    w = ProposalWindows()
    assert w.admit(1, P, 5, 1, 0)
    assert w.admit(2, P, 5, 2, 0)
    assert not w.admit(3, P, 5, 1, 0), "ticket 1 again: a copy"
    assert w.admit(4, P, 5, 1, 0) is False
    assert w.admit(5, P, 6, 1, 0), "another boot of the same node is another run"
    assert w.admit(6, nid(8), 5, 1, 0), "another proposer"
    assert w.admit(7, P, 5, 4, 2)  # floor 2: tickets 1 and 2 are done
    assert w.windows[(P, 5)].done == {4}
    assert w.windows[(P, 5)].floor == 2
    assert not w.admit(8, P, 5, 2, 2), "at or below the floor: a copy"
    assert w.admit(9, P, 5, 3, 1), "a lower floor never lowers the window's"
    assert w.windows[(P, 5)].floor == 2


def test_full_window_raises_its_floor_and_too_many_runs_evict_the_oldest() -> None:
    c = Counters()
    w = ProposalWindows(max_windows=3, max_tickets=4)
    w.counters = c
    for t in range(1, 7):
        assert w.admit(t, P, 1, t, 0)
    assert w.windows[(P, 1)].done == {3, 4, 5, 6}
    assert w.windows[(P, 1)].floor == 2
    assert c["raft.windows.floor_raised"] == 2
    assert not w.admit(7, P, 1, 1, 0), "below the raised floor"
    w.admit(8, nid(2), 1, 1, 0)
    w.admit(9, nid(3), 1, 1, 0)
    w.admit(10, P, 1, 7, 0)  # P's run is now the most recent
    w.admit(11, nid(4), 1, 1, 0)  # a fourth run: nid(2)'s (last index 8) goes
    assert set(w.windows) == {(P, 1), (nid(3), 1), (nid(4), 1)}
    assert c["raft.windows.evicted"] == 1
    assert w.admit(12, nid(2), 1, 1, 0), "a forgotten run's copy applies again"


def _reference(ops: list[tuple[int, int, int, int]]) -> list[bool]:
    """What the windows must decide, with unbounded memory: an envelope is first iff its
    ticket was never seen for its run and is above every floor its run announced before."""
    seen: dict[tuple[int, int], set[int]] = {}
    floors: dict[tuple[int, int], int] = {}
    out = []
    for p, b, t, f in ops:
        key = (p, b)
        first = t not in seen.setdefault(key, set()) and t > floors.get(key, 0)
        seen[key].add(t)
        floors[key] = max(floors.get(key, 0), f)
        out.append(first)
    return out


_ops = st.lists(
    st.tuples(
        st.integers(1, 3), st.integers(0, 1), st.integers(1, 30), st.integers(0, 30)
    ).map(lambda x: (x[0], x[1], x[2], min(x[3], x[2] - 1))),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, cut=st.integers(0, 120))
def test_windows_match_the_reference_model_across_a_snapshot(
    ops: list[tuple[int, int, int, int]], cut: int
) -> None:
    expected = _reference(ops)
    w = ProposalWindows()
    got = []
    for i, (p, b, t, f) in enumerate(ops, start=1):
        if i == cut:
            data = encode_snapshot(w, b"machine")
            w, machine = decode_snapshot(data)
            assert machine == b"machine"
            assert encode_snapshot(w, b"machine") == data, "deterministic"
        got.append(w.admit(i, nid(p), b, t, f))
    assert got == expected


def test_snapshot_refusals_name_the_fault_and_bare_data_is_an_earlier_machine_snapshot() -> None:
    windows, machine = decode_snapshot(b"\x85\x01\x00\x00\x80\x80")
    assert len(windows) == 0 and machine == b"\x85\x01\x00\x00\x80\x80"
    head = encode_snapshot(ProposalWindows(), b"")[:5]

    def tagged(value: Any) -> bytes:
        return head + cbor2.dumps(value)

    for value, message in [
        ([2, [], b""], "expected \\[1, windows"),
        ([1, [], "x"], "expected \\[1, windows"),
        ([True, [], b""], "expected \\[1, windows"),
        ([1, {}, b""], "expected an array"),
        ([1, [[P, 1, 5, 1, [5]]], b""], "at or below its floor"),
        ([1, [[P, 1, 0, 1, [2]], [P, 1, 0, 2, [3]]], b""], "a proposer run twice"),
        ([1, [[b"short", 1, 0, 1, []]], b""], "expected \\[proposer"),
        ([1, [[P, -1, 0, 1, []]], b""], "expected \\[proposer"),
    ]:
        with pytest.raises(MalformedError, match=message):
            decode_snapshot(tagged(value))
    with pytest.raises(MalformedError, match="not deterministic CBOR"):
        decode_snapshot(head + b"\xff")
    good = encode_snapshot(ProposalWindows(), b"m")
    with pytest.raises(MalformedError, match="not deterministic CBOR"):
        decode_snapshot(good + b"\x00")  # a byte after the item
    with pytest.raises(MalformedError, match="not deterministic CBOR"):
        decode_snapshot(head + bytes.fromhex("83 1a00000001 80 41 6d".replace(" ", "")))
    with pytest.raises(MalformedError, match="at most"):
        ProposalWindows.decode([[P, 1, 0, 1, [1, 2, 3]]], max_tickets=2)


def test_a_snapshot_far_larger_than_a_datagram_round_trips() -> None:
    """A Raft snapshot is not a packet: the strict decoder must take it at any size. (The
    full-size auction-partition-soak scenario caught a decoder bounded at 65,507 bytes, a
    UDP datagram: ConfigError on every snapshot of more, seen by no CI-sized test.)"""
    w = ProposalWindows()
    index = 0
    for run in range(300):
        for ticket in range(1, 40, 2):  # gaps, so every window keeps its done set
            index += 1
            assert w.admit(index, nid(run % 250), run, ticket, 0)
    machine = bytes(range(256)) * 4096  # 1 MiB
    data = encode_snapshot(w, machine)
    assert len(data) > 1_000_000
    again, machine_again = decode_snapshot(data)
    assert machine_again == machine
    assert encode_snapshot(again, machine_again) == data
    assert len(again) == len(w) == 300


def test_retry_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="proposal_retry_s"):
        ConsensusConfig(proposal_retry_s=-1)
    with pytest.raises(ConfigError, match="proposal_retry_s"):
        ConsensusConfig(proposal_retry_s="1")  # type: ignore[arg-type]


# -- on a cluster -------------------------------------------------------------------------


def _lose_props(member: Member, count: int) -> list[int]:
    """Make ``member``'s messenger accept and then lose its next ``count`` PROP messages (a
    connection closed with them as a duplicate); the list counts those lost."""
    lost: list[int] = []
    send = member.messenger.send

    def lossy(now: Now, node_id: bytes, service: int, message: Any) -> bool:
        if (
            len(lost) < count
            and message[0] == 0
            and decode_message(message[1]).type is MessageType.PROP
        ):
            lost.append(1)
            return True
        return send(now, node_id, service, message)

    member.messenger.send = lossy  # type: ignore[method-assign]
    return lost


def _follower(c: Cluster, leader: Member) -> Member:
    follower = next(m for m in c.members.values() if m is not leader)
    c.run_until(lambda: follower.sub.raw is not None and follower.sub.raw.raft.leader == leader.id)
    return follower


@pytest.mark.parametrize("retry", [0.0, 0.5])
def test_a_lost_forwarded_proposal_is_sent_again_and_applies(retry: float) -> None:
    config = ConsensusConfig(
        bootstrap_expect=3, stabilization_s=1.0, request_timeout_s=3.0, proposal_retry_s=retry
    )
    c = Cluster(3, config=config)
    leader = c.wait_leader()
    follower = _follower(c, leader)
    lost = _lose_props(follower, 1)
    out = c.put(follower, b"k", b"v")
    assert lost == [1]
    if not retry:
        # without re-sending, the lost proposal ends indeterminate and never applies
        assert out.status == "indeterminate"
        assert b"k" not in c.kv_of(leader)
        return
    assert out.ok, out
    assert follower.sub.counters["raft.requests.resent"] >= 1
    c.run(0.5)
    for m in c.members.values():
        assert c.kv_of(m) == {b"k": b"v"}


def test_copies_in_the_log_apply_once_on_every_member() -> None:
    config = ConsensusConfig(
        bootstrap_expect=3,
        stabilization_s=1.0,
        request_timeout_s=3.0,
        proposal_retry_s=0.02,  # re-sent before the answer can come back: copies
    )
    c = Cluster(3, config=config, seed=3)
    leader = c.wait_leader()
    follower = _follower(c, leader)
    results = [c.put(follower, b"k%d" % i, b"%d" % i) for i in range(20)]
    assert all(o.ok for o in results)
    c.run(1.0)
    in_log = [
        e
        for e in leader.storage.entries(
            leader.storage.first_index(), leader.storage.last_index() + 1
        )
        if e.kind is EntryKind.NORMAL and e.data
    ]
    dups = {m.sub.counters["raft.apply.duplicates"] for m in c.members.values()}
    applied = {m.sub.counters["raft.applied"] for m in c.members.values()}
    assert len(dups) == 1, "every member skipped the same copies"
    copies = dups.pop()
    assert copies >= 1, "the retry is shorter than a commit: copies reached the log"
    assert len(in_log) == 20 + copies
    assert applied == {20}, "each put applied once on every member"
    for m in c.members.values():
        assert c.kv_of(m) == {b"k%d" % i: b"%d" % i for i in range(20)}


def test_a_late_copy_is_skipped_by_members_restored_from_a_snapshot() -> None:
    config = ConsensusConfig(
        bootstrap_expect=3, stabilization_s=1.0, request_timeout_s=3.0, snapshot_every=4
    )
    c = Cluster(3, config=config, seed=5)
    leader = c.wait_leader()
    follower = _follower(c, leader)
    captured: list[bytes] = []
    leader.sub.on_apply = lambda e, who: captured.append(e.data)
    for i in range(6):
        assert c.put(follower, b"k%d" % i, b"v%d" % i).ok
    c.run(0.5)
    assert all(m.sub.counters["raft.snapshots.taken"] >= 1 for m in c.members.values())
    envelope = captured[0]
    proposer, _, _, _, floor = decode_envelope(envelope)
    assert proposer == follower.id and floor is not None
    # every member restarts from its WAL: the snapshot (with the windows) and the log after
    for node in list(c.members):
        c.crash(node)
    for node in list(c.members):
        assert len(c.restart(node).sub.windows) == 1
    leader = c.wait_leader()
    before = {m.id: m.sub.counters["raft.applied"] for m in c.members.values()}
    # an old copy arrives now (as if it had waited in a buffer): skipped everywhere
    assert leader.sub.raw is not None
    leader.sub.raw.propose(envelope)
    c.run(1.0)
    for m in c.members.values():
        assert m.sub.counters["raft.apply.duplicates"] == 1
        assert m.sub.counters["raft.applied"] == before[m.id]
    assert c.put(leader, b"after", b"x").ok, "a fresh proposal still applies"
