"""Bindings on three in-process Trio nodes over 127.0.0.1 UDP (spec/coordination.md 2.1):
an agent's instance binds it to its node through Raft; a member node signing a bid or a
vote for an agent bound to another node is refused on every replica; after a move the old
host is refused; the supervisor's replicated child arguments carry no secret."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack

import pytest
import trio
from test_runtime_coordination import WAIT_S, Bidder, start_three

from foundation_p2p.coordination.agents import bind_command
from foundation_p2p.coordination.commitments import seal_bid, sign_vote
from foundation_p2p.coordination.wire import (
    CastVote,
    CommitBid,
    OpenAuction,
    OpenNegotiation,
    Propose,
    Voter,
    encode_command,
)
from foundation_p2p.registry.supervisor import SPEC_PREFIX
from foundation_p2p.runtime import Node


def commit_for(node: Node, agent: bytes, auction: bytes, amount: int,
               claimed: bytes | None = None) -> bytes:
    """A commit for ``agent`` signed by ``node``'s identity, naming ``claimed`` (default:
    ``node``) as the signer."""
    bid, _ = seal_bid(node.core.identity, agent, auction, amount, os.urandom)
    return encode_command(CommitBid(auction, agent, claimed or bid.node_id, bid.commitment,
                                    bid.signature))


def vote_for(node: Node, agent: bytes, pid: bytes) -> bytes:
    ident = node.core.identity
    return encode_command(CastVote(pid, agent, ident.node_id, 1,
                                   sign_vote(ident, agent, pid, 1)))


async def test_only_the_bound_node_signs_for_an_agent() -> None:
    async with AsyncExitStack() as stack:
        nodes = await start_three(stack)
        for n in nodes:
            n.coordination.define_agent(Bidder)
        rec = nodes[0].coordination.start_coordination_agent(
            Bidder, {"amount": 25}, name="bound", capabilities=["disk"])
        with trio.fail_after(WAIT_S):
            for n in nodes:
                await n.coordination.wait_agents(1, "disk")
        agent = rec.agent_id
        host = next(n for n in nodes
                    if agent in {a.agent_id for a in n.coordination.local_agents})
        other, third = [n for n in nodes if n is not host]

        def bound_to(n: Node, node: Node) -> bool:
            b = n.coordination.machine.bindings.get(agent)
            return b is not None and b.node_id == node.node_id

        with trio.fail_after(WAIT_S):
            for n in nodes:
                await n.wait_until(lambda n=n: bound_to(n, host))  # type: ignore[misc]

        # the replicated child arguments: target, handler args and the record, no key
        for n in nodes:
            spec = n.registry.lookup(SPEC_PREFIX + "agent-" + agent.hex())
            assert spec is not None
            args = spec.value["args"] if isinstance(spec.value, dict) else None
            assert isinstance(args, dict) and set(args) == {"target", "args", "record"}, args

        # an auction for this agent: its host's agent commits; another member cannot
        aid = os.urandom(16)
        opened = await other.coordination.submit(
            encode_command(OpenAuction(aid, ("disk",), 1, 0, 1, (agent,))))
        assert opened[0] == 0
        refused = await other.coordination.submit(commit_for(other, agent, aid, 999))
        assert refused[:2] == [2, "not_host"], refused
        posing = await other.coordination.submit(
            commit_for(other, agent, aid, 999, claimed=host.node_id))
        assert posing[:2] == [2, "bad_signature"], posing
        with trio.fail_after(WAIT_S):
            await third.wait_until(
                lambda: agent in third.coordination.machine.auctions.auctions[aid].commits)
        for n in nodes:
            with trio.fail_after(WAIT_S):
                await n.wait_until(
                    lambda n=n: agent in n.coordination.machine.auctions.auctions[aid].commits)
            taken = n.coordination.machine.auctions.auctions[aid].commits[agent]
            assert taken.node_id == host.node_id, "the host's commit, on every replica"

        # a vote: another member's vote for the agent is refused
        pid = os.urandom(16)
        dummy = os.urandom(16)
        proposed = await other.coordination.submit(encode_command(Propose(
            pid, "grow?", 1, 0, tuple(sorted((Voter(agent, 1), Voter(dummy, 1)),
                                             key=lambda v: v.voter)), 1_000_000)))
        assert proposed[0] == 0
        assert (await other.coordination.submit(vote_for(other, agent, pid)))[:2] == [
            2, "not_host"]

        # the agent moves to `other` (a bind it signs): the old host is refused from then on
        epoch = await other.coordination.bind(agent)
        assert epoch >= 2
        with trio.fail_after(WAIT_S):
            for n in nodes:
                await n.wait_until(lambda n=n: bound_to(n, other))  # type: ignore[misc]
        aid3 = os.urandom(16)
        assert (await third.coordination.submit(
            encode_command(OpenAuction(aid3, ("disk",), 1, 0, 1, (agent,)))))[0] == 0
        old = await host.coordination.submit(commit_for(host, agent, aid3, 7))
        assert old[:2] == [2, "not_host"], old
        new = await other.coordination.submit(commit_for(other, agent, aid3, 8))
        assert new[0] == 0, new
        pid2 = os.urandom(16)
        assert (await third.coordination.submit(encode_command(Propose(
            pid2, "shrink?", 1, 0, (Voter(agent, 1),), 1_000_000))))[0] == 0
        assert (await host.coordination.submit(vote_for(host, agent, pid2)))[:2] == [
            2, "not_host"]
        assert (await other.coordination.submit(vote_for(other, agent, pid2)))[0] == 0
        # the first binding replayed is stale; the host takes the agent back with a new epoch
        stale = await third.coordination.submit(bind_command(host.core.identity, agent, 1))
        assert stale[:2] == [2, "stale"], stale
        assert await host.coordination.bind(agent) == epoch + 1
        for n in nodes:
            assert n.counters["coordination.binding.failed"] == 0


async def test_a_negotiation_between_agents_on_two_nodes_goes_through_the_log() -> None:
    from test_runtime_coordination import Trader

    from foundation_p2p.coordination.commitments import sign_move
    from foundation_p2p.coordination.negotiation import NegotiationFailed
    from foundation_p2p.coordination.wire import NegotiationMove

    async with AsyncExitStack() as stack:
        nodes = await start_three(stack)
        for n in nodes:
            n.coordination.define_agent(Trader)
        # agents land by rendezvous placement of their random ids: start three at a time
        # until two nodes host some (all of 15 on one node: probability 3**-14)
        started = 0
        hosting: list[Node] = []
        while len(hosting) < 2 and started < 15:
            for i in range(3):
                nodes[i].coordination.start_coordination_agent(Trader, {"amount": 0})
            started += 3
            with trio.fail_after(WAIT_S):
                await nodes[0].coordination.wait_agents(started)
                await nodes[0].wait_until(
                    lambda k=started: sum(len(n.coordination.local_agents) for n in nodes) == k)
            hosting = [n for n in nodes if n.coordination.local_agents]
        assert len(hosting) >= 2
        with trio.fail_after(WAIT_S):
            for n in nodes:  # the caller checks the parties are registered
                await n.coordination.wait_agents(started)
        a = hosting[0].coordination.local_agents[0].agent_id
        b = hosting[1].coordination.local_agents[0].agent_id
        caller = nodes[2]
        agreement = await caller.coordination.negotiate(a, b, subject="cpu", round_limit=40,
                                                        deadline_s=WAIT_S)
        assert 50 <= agreement.value <= 80
        assert {agreement.offered_by, agreement.accepted_by} == {a, b}
        nid = agreement.negotiation_id
        with trio.fail_after(WAIT_S):
            for n in nodes:
                await n.wait_until(
                    lambda n=n: n.coordination.machine.negotiations.outcome(nid) is not None)
        machines = [n.coordination.machine.negotiations for n in nodes]
        outcomes = {tuple(m.outcome(nid).to_wire()) for m in machines}  # type: ignore[union-attr]
        assert len(outcomes) == 1, outcomes
        bargain = nodes[0].coordination.machine.negotiations.bargains[nid]
        assert {m.node_id for _, m in bargain.moves} == {hosting[0].node_id,
                                                           hosting[1].node_id}

        with pytest.raises(NegotiationFailed) as info:
            await caller.coordination.negotiate(a, b, round_limit=1, deadline_s=WAIT_S)
        assert info.value.reason == "round_limit"

        # a node not hosting the party cannot move for it
        outsider = next(n for n in nodes if n is not hosting[0])
        nid2 = os.urandom(16)
        await outsider.coordination.submit(encode_command(OpenNegotiation(
            nid2, "x", a, b, 4, 1_000_000)))
        ident = outsider.core.identity
        forged = await outsider.coordination.submit(encode_command(NegotiationMove(
            nid2, a, ident.node_id, 0, 0, 1, sign_move(ident, a, nid2, 0, 0, 1))))
        assert forged[:2] == [2, "not_host"], forged
