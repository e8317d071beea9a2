"""The CoordinationMachine replicated by the real consensus subsystem (in-memory cluster of
``tests/consensus/test_subsystem_harness.py``): a sealed-bid auction run through Raft
gives the same result on all three nodes. (Crash/restart is not covered here: the harness's
restart builds a KV store, it takes no state-machine factory.)"""

from __future__ import annotations

import random

from consensus.test_subsystem_harness import Cluster
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

from foundation_p2p.consensus.state_machine import StateMachine
from foundation_p2p.coordination.auction import AuctionResult
from foundation_p2p.coordination.commitments import seal_bid
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.wire import cbor


def test_an_auction_through_raft_agrees_on_every_node() -> None:
    c = Cluster(3, seed=5)
    for m in c.members.values():
        machine: StateMachine = CoordinationMachine()
        m.sub.state_machine = machine
    leader = c.wait_leader()
    rng = random.Random(3)
    a = aid(42)

    def submit(cmd: bytes) -> list[object]:
        out = c.wait_outcome(leader, leader.sub.propose(c.now, cmd))
        assert out.ok, out
        value = cbor.decode(out.value or b"")
        assert isinstance(value, list)
        return value

    for i in range(3):  # agent i is hosted by node IDS[i]: bound through the log
        assert submit(bind_cmd(i, i))[0] == 0
    assert submit(open_cmd(a, rule=2, reserve=5))[0] == 0
    sealed = [seal_bid(IDS[i], AG[i], a, amount, rng.randbytes)
              for i, amount in enumerate((30, 70, 50))]
    for bid, _ in sealed:
        assert submit(commit_cmd(bid))[0] == 0
    assert submit(commit_cmd(sealed[0][0]))[0] == 1  # a retried submission
    assert submit(close_cmd(a))[0] == 0
    for _, reveal in sealed[:2]:  # the third bidder never reveals
        assert submit(reveal_cmd(reveal))[0] == 0
    final = submit(final_cmd(a))
    result = AuctionResult.from_wire(final[1])
    assert result.winners == ((IDS[1].node_id, 70),) and result.price == 30
    assert result.unrevealed == (IDS[2].node_id,)
    c.run(1.0)
    results = set()
    for m in c.members.values():
        sm = m.sub.state_machine
        assert isinstance(sm, CoordinationMachine)
        results.add(sm.auctions.result(a))
    assert results == {result}
