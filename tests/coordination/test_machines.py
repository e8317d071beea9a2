"""The composite state machine (``consensus/machines.py``): KV unchanged, envelopes routed,
snapshots of all machines together, queries routed."""

from __future__ import annotations

import random

import pytest
from coord_helpers import (
    AG,
    IDS,
    aid,
    bind_cmd,
    close_cmd,
    commit_cmd,
    final_cmd,
    open_cmd,
    reveal_cmd,
)

from foundation_p2p.consensus import kv
from foundation_p2p.consensus.machines import (
    MACHINE_COORDINATION,
    MachineSet,
    coordination_envelope,
    decode_envelope,
    envelope,
)
from foundation_p2p.coordination.commitments import seal_bid, sign_vote
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.wire import CastVote, Propose, Voter, encode_command
from foundation_p2p.errors import ConfigError, WireError
from foundation_p2p.wire import cbor


def _kv_commands(rng: random.Random, n: int) -> list[bytes]:
    out: list[bytes] = []
    keys = [b"a", b"b", b"c", b"d"]
    for _ in range(n):
        k = rng.choice(keys)
        choice = rng.randrange(6)
        if choice == 0:
            out.append(kv.encode_put(k, rng.randbytes(4)))
        elif choice == 1:
            out.append(kv.encode_get(k))
        elif choice == 2:
            out.append(kv.encode_delete(k))
        elif choice == 3:
            out.append(kv.encode_cas(k, None, b"x"))
        elif choice == 4:
            out.append(kv.encode_range(b"", None, 2))
        else:
            out.append(rng.randbytes(rng.randrange(0, 12)))  # garbage, refused alike
    return out


def test_kv_commands_give_byte_identical_results_and_snapshots() -> None:
    rng = random.Random(7)
    plain, comp = kv.KVStore(), MachineSet()
    for i, cmd in enumerate(_kv_commands(rng, 400), start=1):
        if cmd[:1] == b"\x82":
            continue  # a random 0x82 prefix is an envelope by definition (refused either way)
        assert comp.apply(i, cmd) == plain.apply(i, cmd)
    assert comp.snapshot() == plain.snapshot(), "untouched machines: the bare KV snapshot"
    assert comp.query(kv.encode_range(b"")) == plain.query(kv.encode_range(b""))


def test_an_envelope_is_never_a_valid_kv_command() -> None:
    env = coordination_envelope(open_cmd(aid(1)))
    assert env[0] == 0x82
    result = kv.decode_result(kv.KVStore().apply(1, env))
    assert result.status == kv.Status.BAD_COMMAND
    assert decode_envelope(env) == (MACHINE_COORDINATION, open_cmd(aid(1)))


@pytest.mark.parametrize(
    "data",
    [b"\x82", cbor.encode([0, b"x"]), cbor.encode([300, b"x"]), cbor.encode([1, "text"]),
     cbor.encode([1, b"x"]) + b"\x00", b"\x82\x01\x5f"],
)
def test_bad_envelopes_are_refused_without_change(data: bytes) -> None:
    m = MachineSet()
    with pytest.raises(WireError):
        decode_envelope(data)
    result = kv.decode_result(m.apply(1, data))
    assert result.status == kv.Status.BAD_COMMAND and "envelope" in result.value
    assert m.applied_index == 1 and m.refused["bad_envelope"] == 1
    assert m.snapshot()[0] == 0x85, "still the bare KV snapshot"


def test_unknown_machine_and_bad_ids() -> None:
    m = MachineSet()
    assert b"no state machine 7" in m.apply(1, envelope(7, b"\x80"))
    with pytest.raises(ConfigError):
        envelope(0, b"")
    with pytest.raises(ConfigError):
        m.machine(9)


def _auction_through(m: MachineSet, start: int) -> tuple[int, list[bytes]]:
    rng = random.Random(1)
    a = aid(5)
    cmds = [bind_cmd(0, 0), bind_cmd(1, 1), open_cmd(a, rule=2, reserve=3)]
    sealed = [seal_bid(IDS[i], AG[i], a, amt, rng.randbytes) for i, amt in enumerate((10, 20))]
    cmds += [commit_cmd(b) for b, _ in sealed] + [close_cmd(a)]
    cmds += [reveal_cmd(r) for _, r in sealed] + [final_cmd(a)]
    results = []
    i = start
    for c in cmds:
        results.append(m.apply(i, coordination_envelope(c)))
        i += 1
        m.apply(i, kv.encode_put(b"k%d" % i, b"v"))  # interleaved KV entries
        i += 1
    return i, results


def test_routed_commands_listeners_snapshot_and_restore() -> None:
    m = MachineSet()
    seen: list[int] = []
    remove = m.add_listener(MACHINE_COORDINATION, lambda i, c, r: seen.append(i))
    m.apply(1, kv.encode_put(b"x", b"1"))
    nxt, results = _auction_through(m, 2)
    assert all(cbor.decode(r)[0] == 0 for r in results)
    assert seen == list(range(2, nxt, 2))
    remove()
    coord = m.machine(MACHINE_COORDINATION)
    assert isinstance(coord, CoordinationMachine)
    res = coord.auctions.result(aid(5))
    assert res is not None and res.price == 10
    snap = m.snapshot()
    assert snap[0] == 0x83, "composite once coordination has state"
    other = MachineSet()
    other.restore(snap)
    assert other.snapshot() == snap and other.get(b"x") == b"1"
    assert other.applied_index == m.applied_index
    query = coordination_envelope(cbor.encode([1, aid(5)]))
    assert other.query(query) == m.query(query)
    assert cbor.decode(m.query(query))[1][0] == "done"
    # a bare KV snapshot resets the coordination state
    other.restore(kv.KVStore().snapshot())
    assert cbor.decode(other.query(query))[1] == [None, None]


def test_bad_snapshots_leave_everything_unchanged() -> None:
    m = MachineSet()
    _auction_through(m, 1)
    before = m.snapshot()
    for bad in (b"", b"\x83\x02", cbor.encode([2, b"junk", []]),
                cbor.encode([2, kv.KVStore().snapshot(), [[1, b"junk"]]]),
                cbor.encode([2, kv.KVStore().snapshot(), [[9, b""]]]),
                cbor.encode([3, kv.KVStore().snapshot(), []])):
        with pytest.raises(WireError):
            m.restore(bad)
        assert m.snapshot() == before


def test_votes_expire_on_kv_entries() -> None:
    m = MachineSet()
    pid = aid(9)
    voters = tuple(Voter(AG[i], 1) for i in range(3))
    m.apply(1, coordination_envelope(encode_command(Propose(pid, "s", 1, 0, voters, 4))))
    m.apply(2, coordination_envelope(bind_cmd(0, 0)))
    m.apply(3, coordination_envelope(encode_command(
        CastVote(pid, AG[0], IDS[0].node_id, 1, sign_vote(IDS[0], AG[0], pid, 1)))))
    coord = m.machine(MACHINE_COORDINATION)
    assert isinstance(coord, CoordinationMachine)
    assert coord.votes.proposals[pid].votes, "the vote by a bound agent counted"
    for i in range(4, 9):
        m.apply(i, kv.encode_put(b"k", b"v"))
    outcome = coord.votes.outcome(pid)
    assert outcome is not None, "the deadline passed during KV entries"
    assert outcome.status == "timeout"


def test_an_auction_restricted_to_invited_bidders() -> None:
    from foundation_p2p.coordination.wire import OpenAuction, decode_command

    a = aid(11)
    invited = tuple(sorted([IDS[0].node_id, IDS[1].node_id]))
    open_bytes = encode_command(OpenAuction(a, ("cpu",), 2, 0, 1, invited))
    assert decode_command(open_bytes) == OpenAuction(a, ("cpu",), 2, 0, 1, invited)
    assert encode_command(OpenAuction(a, ("cpu",), 2, 0, 1)) == open_cmd(a), "unchanged wire"
    with pytest.raises(WireError):
        decode_command(cbor.encode([1, a, ["cpu"], 2, 0, 1, []]))
    with pytest.raises(WireError):
        decode_command(cbor.encode([1, a, ["cpu"], 2, 0, 1, list(reversed(invited))]))
    m = MachineSet()
    m.apply(1, coordination_envelope(open_bytes))
    m.apply(2, coordination_envelope(bind_cmd(0, 0)))
    m.apply(3, coordination_envelope(bind_cmd(2, 2)))
    rng = random.Random(2)
    outsider, _ = seal_bid(IDS[2], AG[2], a, 5, rng.randbytes)
    insider, _ = seal_bid(IDS[0], AG[0], a, 5, rng.randbytes)
    assert cbor.decode(m.apply(4, coordination_envelope(commit_cmd(outsider))))[1] == (
        "not_invited")
    assert cbor.decode(m.apply(5, coordination_envelope(commit_cmd(insider))))[0] == 0
