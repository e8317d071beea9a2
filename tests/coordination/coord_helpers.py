"""Shared builders for the coordination tests: fixed node identities, agent ids, bindings
and command bytes.

Agent ``i`` (id ``AG[i]``) is hosted by node ``IDS[i]``: :func:`bind_agents` records those
bindings in a machine's table (outside the log, so log indexes stay those of the test).
``AG[i]`` is ``IDS[i].node_id``: any 16 bytes make an agent id; these keep the expected
values readable."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from foundation_p2p.coordination.auction import AuctionMachine
from foundation_p2p.coordination.bindings import BindingTable
from foundation_p2p.coordination.commitments import Reveal, SealedBid, seal_bid, sign_binding
from foundation_p2p.coordination.wire import (
    Bind,
    CloseCommit,
    CommitBid,
    Finalize,
    OpenAuction,
    RevealBid,
    encode_command,
)
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.wire import cbor

IDS = [Identity(hashlib.sha256(b"coordination test agent %d" % i).digest()) for i in range(12)]
AG = [ident.node_id for ident in IDS]


def bind(agent: int, node: int, epoch: int = 1) -> Bind:
    """Node ``IDS[node]`` binds agent ``AG[agent]`` at ``epoch``."""
    return Bind(AG[agent], IDS[node].node_id, IDS[node].public_key, epoch,
                sign_binding(IDS[node], AG[agent], epoch))


def bind_cmd(agent: int, node: int, epoch: int = 1) -> bytes:
    return encode_command(bind(agent, node, epoch))


def bind_agents(table: BindingTable) -> None:
    """Bind every agent ``i`` to node ``i`` (epoch 1), straight into ``table``."""
    for i in range(len(IDS)):
        out = cbor.decode(table.apply(1, bind(i, i)))
        assert out[0] == 0, out


def aid(n: int) -> bytes:
    """A 16-byte auction or proposal id."""
    return n.to_bytes(16, "big")


def secret(rng: random.Random) -> Callable[[int], bytes]:
    return rng.randbytes


def open_cmd(a: bytes, rule: int = 2, reserve: int = 0, units: int = 1) -> bytes:
    return encode_command(OpenAuction(a, ("cpu",), rule, reserve, units))


def commit_cmd(bid: SealedBid) -> bytes:
    return encode_command(
        CommitBid(bid.auction_id, bid.bidder, bid.node_id, bid.commitment, bid.signature)
    )


def reveal_cmd(r: Reveal) -> bytes:
    return encode_command(RevealBid(r.auction_id, r.bidder, r.amount, r.nonce))


def close_cmd(a: bytes) -> bytes:
    return encode_command(CloseCommit(a))


def final_cmd(a: bytes) -> bytes:
    return encode_command(Finalize(a))


class Log:
    """A machine plus the next log index; ``run`` applies and returns the decoded result."""

    def __init__(self, machine: AuctionMachine | None = None, *, bound: bool = True) -> None:
        self.m = machine if machine is not None else AuctionMachine()
        if bound:
            bind_agents(self.m.bindings)
        self.index = 0
        self.entries: list[bytes] = []

    def run(self, command: bytes) -> list[object]:
        self.index += 1
        self.entries.append(command)
        out = cbor.decode(self.m.apply(self.index, command))
        assert isinstance(out, list)
        return out


def run_auction(
    bids: dict[int, int], rule: int = 2, reserve: int = 0, units: int = 1, seed: int = 0,
    reveal: set[int] | None = None,
) -> tuple[Log, list[object]]:
    """Open, commit ``bids`` (agent index -> amount), close, reveal (those in ``reveal``,
    default all), finalize; the log and the finalize result."""
    rng = random.Random(seed)
    log = Log()
    a = aid(1)
    assert log.run(open_cmd(a, rule, reserve, units))[0] == 0
    reveals = []
    for i, amount in bids.items():
        bid, r = seal_bid(IDS[i], AG[i], a, amount, rng.randbytes)
        assert log.run(commit_cmd(bid))[0] == 0
        reveals.append((i, r))
    assert log.run(close_cmd(a))[0] == 0
    for i, r in reveals:
        if reveal is None or i in reveal:
            assert log.run(reveal_cmd(r))[0] == 0
    out = log.run(final_cmd(a))
    assert out[0] == 0
    return log, out



def voters(idx: list[int], weights: list[int] | None = None) -> tuple[object, ...]:
    """Eligible voters (sorted by id) for agents ``idx``."""
    from foundation_p2p.coordination.wire import Voter

    ws = weights or [1] * len(idx)
    out = [Voter(AG[i], w) for i, w in zip(idx, ws, strict=True)]
    return tuple(sorted(out, key=lambda v: v.voter))
