"""Stateless reset (``spec/transport.md`` section 11.3; RFC 9000 section 10.3, adapted).

A node that restarted holds none of its previous boot's connections. When a 1-RTT packet
arrives for a connection id it does not know, it answers with a *stateless reset*: a
packet shaped like a 1-RTT packet whose last 16 bytes are the reset token of that
connection id. Only this node can compute the token, and its peer learned it, inside the
encrypted and authenticated handshake payload, when the connection was set up; on a match
the peer closes that connection at once instead of probing a dead boot for seconds.

- :class:`ResetKey`: the node's reset key, HKDF-SHA256 over its persisted Ed25519 identity
  seed (so it survives restarts, and no other node, not even a cluster member, can forge a
  token); ``token(cid)`` = the first 16 bytes of HMAC-SHA256(key, cid).
- :func:`encode_reset`: the reset packet, exactly :data:`RESET_BYTES` (31) bytes::

      [1, 4, random: bstr .size 8, pn: uint (0..23), [filler: 1 byte || token: 16 bytes]]

  the same layout as a 1-RTT packet (``packet.py``), so nothing but its receiver's token
  table tells it apart from one.
- :func:`reset_token_of`: the trailing 16 bytes a receiver looks up.
- :class:`ResetLimiter`: a token bucket bounding how many resets a node sends.

Rules (enforced by :class:`~foundation_p2p.transport.endpoint.TransportEndpoint`): a reset
answers only a 1-RTT packet longer than :data:`RESET_BYTES` (so it is always smaller than
what triggered it, and a reset, or anything that could be one, is never answered: two
nodes cannot loop); at most ``burst`` resets at once and ``rate`` per second on average
(excess counted and not sent).
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from foundation_p2p.crypto.identity import Identity
from foundation_p2p.errors import ConfigError
from foundation_p2p.transport.packet import CID_BYTES

RESET_KEY_INFO = b"foundation-p2p stateless reset v1"
"""HKDF info of the reset key (salt empty, input the 32-byte identity seed)."""
RESET_TOKEN_BYTES = 16
RESET_BYTES = 31
"""A stateless reset's exact size: 4 + 8 (random cid) + 1 (pn) + 1 + 1 + 16 (token)."""
_HEAD = b"\x85\x01\x04\x48"
_SEALED_HEAD = b"\x51"  # bstr of 17 bytes


class ResetKey:
    """A node's stateless reset key; :meth:`token` is the token of one of its cids.

    Equivalent lower-level calls: ``HKDF-SHA256(seed, salt=None, info=RESET_KEY_INFO, 32)``
    then ``hmac.new(key, cid, sha256).digest()[:16]``.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("stateless reset: the key is 32 bytes")
        self._key = key

    @classmethod
    def from_seed(cls, seed: bytes) -> ResetKey:
        """The reset key of an Ed25519 identity seed (32 bytes)."""
        if len(seed) != 32:
            raise ConfigError("stateless reset: an identity seed is 32 bytes")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=RESET_KEY_INFO)
        return cls(hkdf.derive(seed))

    @classmethod
    def from_identity(cls, identity: Identity) -> ResetKey:
        """The reset key of a node identity (the same across its restarts)."""
        return cls.from_seed(identity.seed)

    def token(self, cid: bytes) -> bytes:
        """The 16-byte reset token of our connection id ``cid``."""
        if len(cid) != CID_BYTES:
            raise ConfigError("stateless reset: a connection id is 8 bytes")
        return hmac.new(self._key, cid, hashlib.sha256).digest()[:RESET_TOKEN_BYTES]


def encode_reset(token: bytes, unpredictable: bytes) -> bytes:
    """The reset packet carrying ``token``; ``unpredictable``: 10 random bytes (8 for the
    connection id field, 1 for the packet number, 1 of filler)."""
    if len(token) != RESET_TOKEN_BYTES or len(unpredictable) != 10:
        raise ConfigError("stateless reset: a 16-byte token and 10 random bytes")
    pn = bytes([unpredictable[8] % 24])
    out = _HEAD + unpredictable[:8] + pn + _SEALED_HEAD + unpredictable[9:10] + token
    assert len(out) == RESET_BYTES
    return out


def reset_token_of(datagram: bytes) -> bytes | None:
    """The token a datagram would carry if it were a reset (its last 16 bytes), or None
    when it is too short to be one (shorter than :data:`RESET_BYTES`)."""
    if len(datagram) < RESET_BYTES:
        return None
    return datagram[-RESET_TOKEN_BYTES:]


class ResetLimiter:
    """Token bucket: at most ``burst`` resets at once, ``rate`` per second on average.

    Bounded (two numbers). ``allow(now)`` takes one token or returns False; the caller
    counts the refusals (``transport.reset.rate_limited``).
    """

    __slots__ = ("_level", "_stamp", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0 or burst < 1:
            raise ConfigError("stateless reset: rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._level = float(burst)
        self._stamp: float | None = None

    def allow(self, now: float) -> bool:
        """Take one reset from the bucket at ``now`` (seconds); False when it is empty."""
        if self._stamp is not None and now > self._stamp:
            self._level = min(float(self.burst), self._level + (now - self._stamp) * self.rate)
        if self._stamp is None or now > self._stamp:
            self._stamp = now
        if self._level >= 1.0:
            self._level -= 1.0
            return True
        return False


__all__ = [
    "RESET_BYTES",
    "RESET_KEY_INFO",
    "RESET_TOKEN_BYTES",
    "ResetKey",
    "ResetLimiter",
    "encode_reset",
    "reset_token_of",
]
