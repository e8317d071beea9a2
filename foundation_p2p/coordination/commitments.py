"""Sealed bids and signed votes: the commitment hash, its signature and reveal checks.

Byte layouts (``spec/coordination.md`` section 2):

- commitment = SHA-256(``COMMIT_LABEL`` || auction_id (16) || bidder (16) || amount (8, big
  endian) || len(nonce) (1) || nonce), with a nonce of 16..64 bytes;
- commit signature = Ed25519 over ``COMMIT_SIGN_LABEL`` || auction_id || bidder || commitment;
- vote signature = Ed25519 over ``VOTE_SIGN_LABEL`` || proposal_id || voter || choice (1).

The auction id sits inside both the hash and the signed bytes, so a commitment (or its
signed commit command) copied from another auction is refused. The bidder id is the node
id of the signing key (:func:`foundation_p2p.crypto.identity.node_id_from_public_key`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from foundation_p2p.addresses import NODE_ID_BYTES
from foundation_p2p.crypto.identity import Identity, node_id_from_public_key, verify_signature
from foundation_p2p.errors import ConfigError

COMMIT_LABEL = b"foundation-p2p auction commitment v1\x00"
COMMIT_SIGN_LABEL = b"foundation-p2p auction commit signature v1\x00"
VOTE_SIGN_LABEL = b"foundation-p2p vote signature v1\x00"
ID_BYTES = 16
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64
MAX_AMOUNT = (1 << 64) - 1


def _check_id(value: bytes, what: str) -> None:
    if type(value) is not bytes or len(value) != ID_BYTES:
        raise ConfigError(f"{what} must be {ID_BYTES} bytes")


def commitment_hash(auction_id: bytes, bidder: bytes, amount: int, nonce: bytes) -> bytes:
    """The 32-byte commitment to ``amount`` by ``bidder`` in ``auction_id``.

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


def commit_signed_bytes(auction_id: bytes, bidder: bytes, commitment: bytes) -> bytes:
    """The bytes a bidder signs for its commit command."""
    return COMMIT_SIGN_LABEL + auction_id + bidder + commitment


def vote_signed_bytes(proposal_id: bytes, voter: bytes, choice: int) -> bytes:
    """The bytes a voter signs for its vote (``choice`` 0 no, 1 yes, 2 abstain)."""
    return VOTE_SIGN_LABEL + proposal_id + voter + bytes([choice])


@dataclass(frozen=True, slots=True)
class SealedBid:
    """What a bidder publishes in the commit phase: no amount, only its commitment."""

    auction_id: bytes
    bidder: bytes
    public_key: bytes
    commitment: bytes
    signature: bytes

    def verify(self) -> bool:
        """True if the key is the bidder's (node id of the key) and the signature holds."""
        return (
            len(self.public_key) == 32
            and len(self.bidder) == NODE_ID_BYTES
            and node_id_from_public_key(self.public_key) == self.bidder
            and verify_signature(
                self.public_key,
                self.signature,
                commit_signed_bytes(self.auction_id, self.bidder, self.commitment),
            )
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
    identity: Identity,
    auction_id: bytes,
    amount: int,
    secret_bytes: Callable[[int], bytes],
    *,
    nonce_bytes: int = 32,
) -> tuple[SealedBid, Reveal]:
    """A signed sealed bid for ``amount`` and the reveal that opens it later.

    The nonce is ``secret_bytes(nonce_bytes)`` (16..64; ``os.urandom`` in production).
    Equivalent lower-level calls: :func:`commitment_hash`, :func:`commit_signed_bytes`,
    ``identity.sign``.
    """
    if not MIN_NONCE_BYTES <= nonce_bytes <= MAX_NONCE_BYTES:
        raise ConfigError(f"nonce_bytes must be {MIN_NONCE_BYTES}..{MAX_NONCE_BYTES}")
    nonce = secret_bytes(nonce_bytes)
    if len(nonce) != nonce_bytes:
        raise ConfigError(f"secret_bytes({nonce_bytes}) returned {len(nonce)} bytes")
    bidder = identity.node_id
    commitment = commitment_hash(auction_id, bidder, amount, nonce)
    signature = identity.sign(commit_signed_bytes(auction_id, bidder, commitment))
    return (
        SealedBid(auction_id, bidder, identity.public_key, commitment, signature),
        Reveal(auction_id, bidder, amount, nonce),
    )


def sign_vote(identity: Identity, proposal_id: bytes, choice: int) -> bytes:
    """The signature of ``identity``'s vote ``choice`` on ``proposal_id``."""
    _check_id(proposal_id, "proposal id")
    if choice not in (0, 1, 2):
        raise ConfigError(f"vote choice must be 0 (no), 1 (yes) or 2 (abstain), not {choice!r}")
    return identity.sign(vote_signed_bytes(proposal_id, identity.node_id, choice))
