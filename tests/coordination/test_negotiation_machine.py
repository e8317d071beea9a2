"""Replicated negotiations (spec/coordination.md 8): moves signed by the party's bound
node, applied in log order with log positions, ending in the same agreement or typed
failure on every replica."""

from __future__ import annotations

import pytest
from coord_helpers import AG, IDS, aid, bind_cmd

from foundation_p2p.coordination.commitments import sign_move
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.negotiation_machine import NegotiationMachine
from foundation_p2p.coordination.wire import (
    CloseNegotiation,
    NegotiationMove,
    OpenNegotiation,
    decode_command,
    encode_command,
)
from foundation_p2p.errors import WireError
from foundation_p2p.wire import cbor

N = aid(30)


class Log:
    def __init__(self, m: CoordinationMachine | None = None) -> None:
        self.m = m if m is not None else CoordinationMachine()
        self.index = 0
        self.entries: list[bytes] = []

    def run(self, command: bytes) -> list[object]:
        self.index += 1
        self.entries.append(command)
        out = cbor.decode(self.m.apply(self.index, command))
        assert isinstance(out, list)
        return out

    def code(self, command: bytes) -> object:
        out = self.run(command)
        return out[0] if out[0] in (0, 1) else out[1]


def open_neg(limit: int = 8, deadline: int = 50, nid: bytes = N) -> bytes:
    return encode_command(OpenNegotiation(nid, "cpu-hours", AG[0], AG[1], limit, deadline))


def move(party: int, rnd: int, kind: int, value: int = 0, node: int | None = None,
         nid: bytes = N) -> bytes:
    host = party if node is None else node
    return encode_command(NegotiationMove(nid, AG[party], IDS[host].node_id, rnd, kind, value,
                                          sign_move(IDS[host], AG[party], nid, rnd, kind,
                                                    value)))


def started(limit: int = 8, deadline: int = 50) -> Log:
    log = Log()
    log.run(bind_cmd(0, 0))
    log.run(bind_cmd(1, 1))
    assert log.code(open_neg(limit, deadline)) == 0
    return log


def outcome(log: Log) -> list[object]:
    out = log.m.negotiations.outcome(N)
    assert out is not None
    return out.to_wire()


def test_offers_alternate_and_an_accept_agrees() -> None:
    log = started()
    assert log.code(move(0, 0, 0, 100)) == 0
    assert log.code(move(0, 0, 0, 100)) == 1, "a retry"
    assert log.code(move(1, 1, 0, 60)) == 0
    assert log.code(move(0, 2, 0, 80)) == 0
    assert log.run(move(1, 3, 1))[0] == 0
    assert outcome(log) == [N, "agreed", 80, AG[0], AG[1], 3, 8]
    assert log.code(move(0, 3, 0, 1)) == "closed"
    q = cbor.decode(log.m.query(cbor.encode([9, N])))
    assert q == [0, outcome(log)]


def test_moves_are_refused_unless_signed_by_the_partys_bound_node() -> None:
    log = started()
    assert log.code(move(0, 0, 0, 100, node=1)) == "not_host"
    assert log.code(move(2, 0, 0, 100)) == "not_party"
    forged = decode_command(move(0, 0, 0, 100))
    assert isinstance(forged, NegotiationMove)
    assert log.code(encode_command(NegotiationMove(
        N, AG[0], IDS[0].node_id, 0, 0, 101, forged.signature))) == "bad_signature"
    replay = decode_command(move(0, 0, 0, 100, nid=aid(31)))
    assert isinstance(replay, NegotiationMove)
    assert log.code(encode_command(NegotiationMove(
        N, AG[0], IDS[0].node_id, 0, 0, 100, replay.signature))) == "bad_signature"
    assert log.code(move(0, 1, 0, 100)) == "wrong_round"
    assert log.m.negotiations.bargains[N].moves == []
    # the responder moves to node 4: its old host's moves are refused from then on
    assert log.code(move(0, 0, 0, 100)) == 0
    assert log.code(bind_cmd(1, 4, 2)) == 0
    assert log.code(move(1, 1, 0, 70)) == "not_host"
    assert log.code(move(1, 1, 0, 70, node=4)) == 0
    unbound = Log()
    unbound.run(open_neg())
    assert unbound.code(move(0, 0, 0, 1)) == "not_bound"


@pytest.mark.parametrize(("moves", "reason"), [
    ([(0, 0, 0, 100), (1, 1, 2, 0)], "rejected"),
    ([(0, 0, 1, 0)], "invalid_move"),  # accept with no offer to accept
    ([(1, 0, 0, 5)], "invalid_move"),  # the responder moves first
    ([(0, 0, 0, 9), (1, 1, 0, 8), (0, 2, 0, 7)], "round_limit"),
])
def test_failures_are_typed(moves: list[tuple[int, int, int, int]], reason: str) -> None:
    log = started(limit=2)
    for party, rnd, kind, value in moves:
        assert log.run(move(party, rnd, kind, value))[0] == 0
    assert outcome(log)[1] == reason
    assert log.m.negotiations.counters[f"coordination.negotiation.{reason}"] == 1


def test_the_deadline_passes_in_log_order() -> None:
    log = started(deadline=2)  # opened at 3: moves at 4 and 5 count
    assert log.code(move(0, 0, 0, 100)) == 0
    assert log.code(move(1, 1, 0, 90)) == 0
    assert log.code(open_neg(nid=aid(40))) == 0, "any entry after the deadline ends it"
    assert outcome(log) == [N, "deadline", None, None, None, 2, 5]
    assert log.code(move(0, 2, 1)) == "late"
    closing = started()
    assert closing.code(move(0, 0, 0, 100)) == 0
    assert closing.run(encode_command(CloseNegotiation(N)))[0] == 0
    assert outcome(closing)[1:2] == ["deadline"]
    assert closing.run(encode_command(CloseNegotiation(N)))[0] == 1
    assert closing.code(encode_command(CloseNegotiation(aid(99)))) == "unknown_negotiation"


def test_replicas_agree_through_snapshots_and_bad_snapshots_change_nothing() -> None:
    log = started()
    log.run(move(0, 0, 0, 100))
    log.run(move(1, 1, 0, 60))
    log.run(open_neg(nid=aid(41)))
    log.run(encode_command(CloseNegotiation(aid(41))))
    snap = log.m.snapshot()
    other = CoordinationMachine()
    other.restore(snap)
    assert other.snapshot() == snap
    assert other.negotiations.outcome(aid(41)) == log.m.negotiations.outcome(aid(41))
    for cmd in (move(0, 2, 0, 80), move(1, 3, 1)):
        log.index += 1
        assert other.apply(log.index, cmd) == log.m.apply(log.index, cmd)
    assert other.negotiations.outcome(N) == log.m.negotiations.outcome(N) is not None
    value = cbor.decode(snap)
    for bad in (cbor.encode([*value[:5], [0, [], [b"x" * 16]]]),
                cbor.encode([*value[:5], [0, "x", []]]),
                cbor.encode([*value[:5], [0, [[value[5][1][0][0], 3, [[4, [18, N]]], 0]],
                                          []]])):
        with pytest.raises(WireError):
            other.restore(bad)
    assert other.snapshot() == log.m.snapshot()


def test_open_negotiations_are_bounded() -> None:
    m = CoordinationMachine()
    m.negotiations = NegotiationMachine(max_active=2, max_results=1, bindings=m.bindings)
    log = Log(m)
    assert log.code(open_neg(nid=aid(1))) == 0
    assert log.code(open_neg(nid=aid(1))) == 1
    assert log.code(open_neg(limit=3, nid=aid(1))) == "exists"
    assert log.code(open_neg(nid=aid(2))) == 0
    assert log.code(open_neg(nid=aid(3))) == "full"
    log.run(encode_command(CloseNegotiation(aid(1))))
    log.run(encode_command(CloseNegotiation(aid(2))))
    assert m.negotiations.counters["coordination.negotiation.results_evicted"] == 1
    assert m.negotiations.outcome(aid(1)) is None and m.negotiations.outcome(aid(2))
    with pytest.raises(WireError):
        decode_command(cbor.encode([9, N, "s", AG[0], AG[0], 1, 1]))  # one party twice
    with pytest.raises(WireError):
        decode_command(cbor.encode([10, N, AG[0], IDS[0].node_id, 0, 1, 5, bytes(64)]))
