"""Ed25519 node identities and the node id derived from them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from foundation_p2p.addresses import NODE_ID_BYTES, NodeId
from foundation_p2p.errors import StorageError, WireError
from foundation_p2p.wire import cbor

_NODE_ID_LABEL = b"foundation-p2p node id v1"
IDENTITY_FORMAT = 1


def node_id_from_public_key(public_key: bytes) -> NodeId:
    """The node id: the first 16 bytes of SHA-256(label || Ed25519 public key)."""
    return hashlib.sha256(_NODE_ID_LABEL + public_key).digest()[:NODE_ID_BYTES]


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """A node's Ed25519 key pair. Stored as CBOR ``[1, seed: bstr .size 32]``."""

    __slots__ = ("_private", "node_id", "public_key", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self.seed = seed
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.node_id: NodeId = node_id_from_public_key(self.public_key)

    @classmethod
    def generate(cls, secret_bytes: Callable[[int], bytes]) -> Identity:
        """A new identity from 32 bytes of ``secret_bytes`` (``os.urandom`` in production)."""
        return cls(secret_bytes(32))

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def to_bytes(self) -> bytes:
        """The stored form (keep it secret: it is the private key)."""
        return cbor.encode([IDENTITY_FORMAT, self.seed])

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "identity") -> Identity:
        """Load the stored form; anything else raises :class:`StorageError` naming ``source``."""
        try:
            value = cbor.decode(data)
        except WireError as exc:
            raise StorageError(f"{source}: not an identity file: {exc}") from None
        if (
            type(value) is not list
            or len(value) != 2
            or type(value[0]) is not int
            or value[0] != IDENTITY_FORMAT
            or type(value[1]) is not bytes
            or len(value[1]) != 32
        ):
            raise StorageError(f"{source}: not an identity file (expected [1, 32-byte seed])")
        return cls(value[1])

    def __repr__(self) -> str:
        return f"Identity(node_id={self.node_id.hex()})"


__all__ = ["Identity", "node_id_from_public_key", "verify_signature"]
