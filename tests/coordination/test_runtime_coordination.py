"""``node.coordination`` on three in-process Trio nodes over 127.0.0.1 UDP: agents started
through the supervisor and found in the registry, a sealed-bid auction whose result every
node computes alike, a vote, a timed-out vote, a negotiation."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus.machines import decode_envelope
from foundation_p2p.consensus.subsystem import decode_envelope as raft_envelope
from foundation_p2p.coordination.negotiation import (
    Accept,
    LinearConcession,
    NegotiationFailed,
    Offer,
    Reject,
)
from foundation_p2p.coordination.voting import ConsensusTimeout
from foundation_p2p.coordination.wire import (
    CloseCommit,
    OpenAuction,
    RevealBid,
    decode_command,
    encode_command,
)
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError, WireError
from foundation_p2p.runtime import Node, open_node
from foundation_p2p.runtime.coordination import CoordinationError, parse_vote_rule
from foundation_p2p.wire import cbor

CONSENSUS = {"tick_interval_s": 0.02, "election_tick": 10, "bootstrap_expect": 3}
WAIT_S = 30.0


class Bidder:
    """A test agent: bids its fixed amount, votes its fixed choice, concedes linearly."""

    def __init__(self, args: Any) -> None:
        self.amount = args["amount"]
        self.choice = args.get("vote", 1)
        self.nego = LinearConcession(args.get("start", 100), args.get("reservation", 50))
        self.silent = args.get("silent", False)

    def bid(self, auction: Any) -> int | None:
        return self.amount

    def vote(self, proposal: Any) -> int:
        if self.silent:
            raise RuntimeError("this agent never votes")
        return int(self.choice)

    def offer(self, negotiation: Any) -> Offer | Accept | Reject:
        return self.nego.offer(negotiation)


def config(join: tuple[Any, ...] = ()) -> NodeConfig:
    return NodeConfig(bind=("127.0.0.1", 0), probe_interval_s=0.05, probe_timeout_s=0.05,
                      join=join, extra={"consensus": dict(CONSENSUS)})


async def start_three(stack: AsyncExitStack) -> list[Node]:
    keyring = Keyring.generate(os.urandom)
    first = await stack.enter_async_context(open_node(config(), keyring=keyring))
    nodes = [first]
    for _ in range(2):
        nodes.append(await stack.enter_async_context(
            open_node(config(join=(first.address,)), keyring=keyring)))
    with trio.fail_after(WAIT_S):
        for n in nodes:
            await n.consensus.wait_leader()
    return nodes


def test_vote_rule_parsing() -> None:
    assert parse_vote_rule("quorum(2)") == (4, 2)
    assert parse_vote_rule("majority") == (1, 0)
    with pytest.raises(ConfigError):
        parse_vote_rule("plurality")
    with pytest.raises(ConfigError):
        parse_vote_rule("majority", 3)


async def test_auction_vote_and_negotiation_agree_on_every_node() -> None:
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack)
        records = []
        for i, amount in enumerate((30, 70, 50)):
            records.append(nodes[i].coordination.start_coordination_agent(
                Bidder, {"amount": amount}, name=f"bidder-{i}", capabilities=["cpu"]))
        for n in nodes:
            n.coordination.define_agent(Bidder)  # any node may host them
        with trio.fail_after(WAIT_S):
            for n in nodes:
                await n.coordination.wait_agents(3, "cpu")
        ids = [r.agent_id for r in records]
        found = {r.agent_id for r in nodes[2].coordination.find_agents("cpu")}
        assert found == set(ids)
        assert nodes[0].coordination.find_agents("gpu") == []

        result = await nodes[0].coordination.coordinate_resource_allocation(
            ids, ["cpu"], reserve=10, timeout_s=WAIT_S)
        assert result.winners == ((records[1].agent_id, 70),)
        assert result.price == 50, "second price"
        with trio.fail_after(WAIT_S):
            for n in nodes:
                assert await n.coordination.wait_result(result.auction_id) == result
        assert all(n.coordination.results[result.auction_id] == result for n in nodes)

        # a first-price auction opened by another node, open to anyone
        aid = await nodes[2].coordination.open_auction(
            ["cpu"], rule="first-price", commit_timeout_s=1.5, reveal_timeout_s=5.0)
        first = await nodes[1].coordination.wait_result(aid, WAIT_S)
        assert first.winners == ((records[1].agent_id, 70),) and first.price == 70

        assert await nodes[1].coordination.coordinate_consensus(ids, "upgrade?", timeout=WAIT_S)
        with pytest.raises(CoordinationError):
            await nodes[1].coordination.coordinate_consensus([os.urandom(16)], "x")


class Trader(Bidder):
    """Sells when it opens the negotiation (even rounds), buys when it answers."""

    def offer(self, negotiation: Any) -> Offer | Accept | Reject:
        seller = negotiation.round % 2 == 0
        strategy = LinearConcession(100, 50) if seller else LinearConcession(20, 80)
        return strategy.offer(negotiation)


async def test_negotiation_between_two_agents_on_one_node_agrees_or_fails_typed() -> None:
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack)
        for n in nodes:
            n.coordination.define_agent(Trader)
        for i in range(4):  # four agents on three nodes: some node hosts two
            nodes[i % 3].coordination.start_coordination_agent(Trader, {"amount": 0})
        with trio.fail_after(WAIT_S):
            await nodes[0].coordination.wait_agents(4)
            await nodes[0].wait_until(
                lambda: sum(len(n.coordination.local_agents) for n in nodes) == 4)
        host = max(nodes, key=lambda n: len(n.coordination.local_agents))
        a, b = host.coordination.local_agents[:2]
        agreement = await host.coordination.negotiate(a.agent_id, b.agent_id, round_limit=40)
        assert 50 <= agreement.value <= 80
        with pytest.raises(NegotiationFailed) as info:
            await host.coordination.negotiate(a.agent_id, b.agent_id, round_limit=1)
        assert info.value.reason == "round_limit"
        with pytest.raises(CoordinationError):
            await host.coordination.negotiate(a.agent_id, os.urandom(16))


async def test_a_vote_with_a_silent_agent_times_out_with_the_typed_error() -> None:
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack)
        rec = [nodes[0].coordination.start_coordination_agent(
                   Bidder, {"amount": 1, "silent": True}, capabilities=["x"]),
               nodes[0].coordination.start_coordination_agent(
                   Bidder, {"amount": 1, "vote": 1}, capabilities=["x"])]
        for n in nodes:
            n.coordination.define_agent(Bidder)
        with trio.fail_after(WAIT_S):
            await nodes[1].coordination.wait_agents(2, "x")
        with pytest.raises(ConsensusTimeout):
            await nodes[1].coordination.coordinate_consensus(
                [r.agent_id for r in rec], "all of us?", rule="unanimous", timeout=2.0)


async def test_no_bid_amount_is_in_the_raft_log_before_its_reveal() -> None:
    """Scan every node's Raft log: the CBOR encoding of each (distinctive) amount appears
    only in that bid's reveal entry, which comes after the commit phase closed."""
    amounts = (0x5EA1ED00C0FFEE01, 0x5EA1ED00C0FFEE02, 0x5EA1ED00C0FFEE03)
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack)
        for n in nodes:
            n.coordination.define_agent(Bidder)
        records = [nodes[i].coordination.start_coordination_agent(Bidder, {"amount": a})
                   for i, a in enumerate(amounts)]
        with trio.fail_after(WAIT_S):
            for n in nodes:  # every node's registry shows the three (any may open)
                await n.coordination.wait_agents(3)
        result = await nodes[1].coordination.coordinate_resource_allocation(
            [r.agent_id for r in records], ["cpu"], timeout_s=WAIT_S)
        assert result.winners == ((records[2].agent_id, amounts[2]),)
        assert result.price == amounts[1]
        for n in nodes:
            storage = n.raft_storage
            assert storage is not None
            # every node has applied (so stored) the whole auction, finalize included
            await n.coordination.wait_result(result.auction_id, timeout_s=WAIT_S)
            closed_at = None
            seen = 0
            for e in storage.entries(storage.first_index(), storage.last_index() + 1):
                try:
                    command = raft_envelope(e.data)[3]
                    _, inner = decode_envelope(command)
                    cmd = decode_command(inner)
                except WireError:
                    continue
                if isinstance(cmd, CloseCommit) and cmd.auction_id == result.auction_id:
                    closed_at = e.index
                for a in amounts:
                    if cbor.encode(a) in e.data:
                        assert isinstance(cmd, RevealBid) and cmd.amount == a, e.index
                        assert closed_at is not None and e.index > closed_at
                        seen += 1
            assert seen == 3, "each amount appears once, in its reveal"


async def test_an_auction_whose_opener_never_drives_it_is_taken_over() -> None:
    """Opened by a bare submit (as if the opener died right after): other nodes close and
    finalize it after ``stall_timeout_s``, and every node gets the same result."""
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack)
        for n in nodes:
            n.coordination.stall_timeout_s = 1.0
            n.coordination.define_agent(Bidder)
        records = [nodes[i].coordination.start_coordination_agent(Bidder, {"amount": a})
                   for i, a in enumerate((5, 9, 7))]
        with trio.fail_after(WAIT_S):
            for n in nodes:  # every node's registry shows the three (any may open)
                await n.coordination.wait_agents(3)
        aid = os.urandom(16)
        opened = await nodes[0].coordination.submit(encode_command(OpenAuction(
            aid, ("cpu",), 2, 0, 1, tuple(sorted(r.agent_id for r in records)))))
        assert opened[0] == 0
        results = [await n.coordination.wait_result(aid, WAIT_S) for n in nodes]
        assert len(set(results)) == 1
        assert results[0].winners == ((records[1].agent_id, 9),) and results[0].price == 7
        assert sum(n.counters["coordination.stall.takeovers"] for n in nodes) >= 2
