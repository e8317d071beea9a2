"""Sealed bids, votes and agent bindings: the commitment hash, node signatures, reveals.

Byte layouts (``spec/coordination.md`` section 2):

- commitment = SHA-256(``COMMIT_LABEL`` || auction_id (16) || bidder (16) || amount (8, big
  endian) || len(nonce) (1) || nonce), with a nonce of 16..64 bytes;
- commit signature = Ed25519 over ``COMMIT_SIGN_LABEL`` || auction_id || bidder (agent id)
  || node_id || commitment;
- vote signature = Ed25519 over ``VOTE_SIGN_LABEL`` || proposal_id || voter (agent id) ||
  node_id || choice (1);
- binding signature = Ed25519 over ``BIND_SIGN_LABEL`` || agent_id || node_id || epoch (8,
  big endian);
- negotiation move signature = Ed25519 over ``MOVE_SIGN_LABEL`` || negotiation_id || party
  (agent id) || node_id || round (2, big endian) || kind (1) || value (8, big endian).

Every signature is made with the key of the node hosting the agent (the node's
:class:`~foundation_p2p.crypto.identity.Identity`, the one membership uses): an agent has
an id (16 random bytes, not a secret) and no key of its own. The replicated log binds each
agent id to one node (``bindings.py``); a commit or vote is taken only if, at its log
position, its agent is bound to the node named in it and the signature verifies with that
node's bound key. The auction (or proposal) id inside the signed bytes makes a command
copied into another auction fail verification; the node id makes it worthless once the
agent is bound elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from foundation_p2p.crypto.identity import Identity, verify_signature
from foundation_p2p.errors import ConfigError

COMMIT_LABEL = b"foundation-p2p auction commitment v1\x00"
COMMIT_SIGN_LABEL = b"foundation-p2p auction commit signature v2\x00"
VOTE_SIGN_LABEL = b"foundation-p2p vote signature v2\x00"
BIND_SIGN_LABEL = b"foundation-p2p agent binding v1\x00"
MOVE_SIGN_LABEL = b"foundation-p2p negotiation move v1\x00"
ID_BYTES = 16
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64
MAX_AMOUNT = (1 << 64) - 1
MAX_EPOCH = (1 << 64) - 1


def _check_id(value: bytes, what: str) -> None:
    if type(value) is not bytes or len(value) != ID_BYTES:
        raise ConfigError(f"{what} must be {ID_BYTES} bytes")


def new_agent_id(secret_bytes: Callable[[int], bytes]) -> bytes:
    """A fresh 16-byte agent id from ``secret_bytes`` (``os.urandom`` in production). It is
    an identifier, not a secret: it may travel in replicated child arguments."""
    value = secret_bytes(ID_BYTES)
    _check_id(value, "agent id")
    return value


def commitment_hash(auction_id: bytes, bidder: bytes, amount: int, nonce: bytes) -> bytes:
    """The 32-byte commitment to ``amount`` by agent ``bidder`` in ``auction_id``.

    :class:`ConfigError` for an id that is not 16 bytes, an amount outside ``0..2**64-1``
    or a nonce outside 16..64 bytes.
    """
    _check_id(auction_id, "auction id")
    _check_id(bidder, "bidder id")
    if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
        raise ConfigError(f"bid amount must be an integer in 0..2**64-1, not {amount!r}")
    if type(nonce) is not bytes or not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise ConfigError(f"nonce must be {MIN_NONCE_BYTES}..{MAX_NONCE_BYTES} bytes")
    data = (
        COMMIT_LABEL + auction_id + bidder + amount.to_bytes(8, "big")
        + bytes([len(nonce)]) + nonce
    )
    return hashlib.sha256(data).digest()


def commit_signed_bytes(auction_id: bytes, bidder: bytes, node_id: bytes,
                        commitment: bytes) -> bytes:
    """The bytes the hosting node ``node_id`` signs for agent ``bidder``'s commit."""
    return COMMIT_SIGN_LABEL + auction_id + bidder + node_id + commitment


def vote_signed_bytes(proposal_id: bytes, voter: bytes, node_id: bytes, choice: int) -> bytes:
    """The bytes the hosting node signs for agent ``voter``'s vote (``choice`` 0 no, 1 yes,
    2 abstain)."""
    return VOTE_SIGN_LABEL + proposal_id + voter + node_id + bytes([choice])


def bind_signed_bytes(agent_id: bytes, node_id: bytes, epoch: int) -> bytes:
    """The bytes node ``node_id`` signs to bind ``agent_id`` to itself at ``epoch``."""
    return BIND_SIGN_LABEL + agent_id + node_id + epoch.to_bytes(8, "big")


def move_signed_bytes(negotiation_id: bytes, party: bytes, node_id: bytes, round_: int,
                      kind: int, value: int) -> bytes:
    """The bytes the hosting node signs for agent ``party``'s negotiation move."""
    return (MOVE_SIGN_LABEL + negotiation_id + party + node_id + round_.to_bytes(2, "big")
            + bytes([kind]) + value.to_bytes(8, "big"))


def sign_move(node: Identity, agent_id: bytes, negotiation_id: bytes, round_: int, kind: int,
              value: int) -> bytes:
    """The hosting ``node``'s signature of agent ``agent_id``'s move (kind 0 offer of
    ``value``, 1 accept, 2 reject) in round ``round_`` of ``negotiation_id``."""
    _check_id(agent_id, "agent id")
    _check_id(negotiation_id, "negotiation id")
    if kind not in (0, 1, 2) or type(kind) is not int:
        raise ConfigError(f"move kind must be 0 (offer), 1 (accept) or 2 (reject), not {kind!r}")
    if type(value) is not int or not 0 <= value <= MAX_AMOUNT or (kind != 0 and value):
        raise ConfigError(f"move value must be 0..2**64-1 (0 unless an offer), not {value!r}")
    if type(round_) is not int or not 0 <= round_ <= 1024:
        raise ConfigError(f"move round must be 0..1024, not {round_!r}")
    return node.sign(move_signed_bytes(negotiation_id, agent_id, node.node_id, round_, kind,
                                       value))


@dataclass(frozen=True, slots=True)
class SealedBid:
    """What a bidder publishes in the commit phase: no amount, only its commitment, signed
    by the node hosting the bidding agent."""

    auction_id: bytes
    bidder: bytes
    node_id: bytes
    commitment: bytes
    signature: bytes

    def verify(self, public_key: bytes) -> bool:
        """True if the signature holds under ``public_key`` (the key the agent is bound to;
        whether that key is ``node_id``'s is the binding's check)."""
        return len(public_key) == 32 and verify_signature(
            public_key, self.signature,
            commit_signed_bytes(self.auction_id, self.bidder, self.node_id, self.commitment),
        )


@dataclass(frozen=True, slots=True)
class Reveal:
    """What the bidder publishes once the commit phase is closed. Keep it private until then."""

    auction_id: bytes
    bidder: bytes
    amount: int
    nonce: bytes

    def matches(self, commitment: bytes) -> bool:
        """True if this reveal opens ``commitment`` (never raises: bad fields do not match)."""
        try:
            return commitment_hash(self.auction_id, self.bidder, self.amount, self.nonce) == (
                commitment
            )
        except ConfigError:
            return False


def seal_bid(
    node: Identity,
    agent_id: bytes,
    auction_id: bytes,
    amount: int,
    secret_bytes: Callable[[int], bytes],
    *,
    nonce_bytes: int = 32,
) -> tuple[SealedBid, Reveal]:
    """Agent ``agent_id``'s sealed bid for ``amount``, signed by its hosting ``node``'s key,
    and the reveal that opens it later.

    The nonce is ``secret_bytes(nonce_bytes)`` (16..64; ``os.urandom`` in production).
    Equivalent lower-level calls: :func:`commitment_hash`, :func:`commit_signed_bytes`,
    ``node.sign``.
    """
    _check_id(agent_id, "agent id")
    if not MIN_NONCE_BYTES <= nonce_bytes <= MAX_NONCE_BYTES:
        raise ConfigError(f"nonce_bytes must be {MIN_NONCE_BYTES}..{MAX_NONCE_BYTES}")
    nonce = secret_bytes(nonce_bytes)
    if len(nonce) != nonce_bytes:
        raise ConfigError(f"secret_bytes({nonce_bytes}) returned {len(nonce)} bytes")
    commitment = commitment_hash(auction_id, agent_id, amount, nonce)
    signature = node.sign(commit_signed_bytes(auction_id, agent_id, node.node_id, commitment))
    return (
        SealedBid(auction_id, agent_id, node.node_id, commitment, signature),
        Reveal(auction_id, agent_id, amount, nonce),
    )


def sign_vote(node: Identity, agent_id: bytes, proposal_id: bytes, choice: int) -> bytes:
    """The hosting ``node``'s signature of agent ``agent_id``'s vote ``choice`` on
    ``proposal_id``."""
    _check_id(proposal_id, "proposal id")
    _check_id(agent_id, "agent id")
    if choice not in (0, 1, 2) or type(choice) is not int:
        raise ConfigError(f"vote choice must be 0 (no), 1 (yes) or 2 (abstain), not {choice!r}")
    return node.sign(vote_signed_bytes(proposal_id, agent_id, node.node_id, choice))


def sign_binding(node: Identity, agent_id: bytes, epoch: int) -> bytes:
    """``node``'s signature binding ``agent_id`` to itself at ``epoch`` (1..2**64-1)."""
    _check_id(agent_id, "agent id")
    if type(epoch) is not int or not 1 <= epoch <= MAX_EPOCH:
        raise ConfigError(f"binding epoch must be an integer in 1..2**64-1, not {epoch!r}")
    return node.sign(bind_signed_bytes(agent_id, node.node_id, epoch))
