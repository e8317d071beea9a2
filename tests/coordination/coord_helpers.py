"""Shared builders for the coordination tests: fixed identities and command bytes."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from foundation_p2p.coordination.auction import AuctionMachine
from foundation_p2p.coordination.commitments import Reveal, SealedBid, seal_bid
from foundation_p2p.coordination.wire import (
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


def aid(n: int) -> bytes:
    """A 16-byte auction or proposal id."""
    return n.to_bytes(16, "big")


def secret(rng: random.Random) -> Callable[[int], bytes]:
    return rng.randbytes


def open_cmd(a: bytes, rule: int = 2, reserve: int = 0, units: int = 1) -> bytes:
    return encode_command(OpenAuction(a, ("cpu",), rule, reserve, units))


def commit_cmd(bid: SealedBid) -> bytes:
    return encode_command(
        CommitBid(bid.auction_id, bid.bidder, bid.public_key, bid.commitment, bid.signature)
    )


def reveal_cmd(r: Reveal) -> bytes:
    return encode_command(RevealBid(r.auction_id, r.bidder, r.amount, r.nonce))


def close_cmd(a: bytes) -> bytes:
    return encode_command(CloseCommit(a))


def final_cmd(a: bytes) -> bytes:
    return encode_command(Finalize(a))


class Log:
    """A machine plus the next log index; ``run`` applies and returns the decoded result."""

    def __init__(self, machine: AuctionMachine | None = None) -> None:
        self.m = machine if machine is not None else AuctionMachine()
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
        bid, r = seal_bid(IDS[i], a, amount, rng.randbytes)
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
    out = [Voter(IDS[i].node_id, IDS[i].public_key, w) for i, w in zip(idx, ws, strict=True)]
    return tuple(sorted(out, key=lambda v: v.voter))
