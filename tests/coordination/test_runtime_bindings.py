"""Bindings on three in-process Trio nodes over 127.0.0.1 UDP (spec/coordination.md 2.1):
an agent's instance binds it to its node through Raft; a member node signing a bid or a
vote for an agent bound to another node is refused on every replica; after a move the old
host is refused; the supervisor's replicated child arguments carry no secret."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack

import trio
from test_runtime_coordination import WAIT_S, Bidder, start_three

from foundation_p2p.coordination.agents import bind_command
from foundation_p2p.coordination.commitments import seal_bid, sign_vote
from foundation_p2p.coordination.wire import (
    CastVote,
    CommitBid,
    OpenAuction,
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
