"""Multicast discovery beacons: sealed with the cluster key, opened or refused.

A beacon says "node N of cluster C, version V, gossips at HOST:PORT". It is the deterministic
CBOR array ``[1, key_id, nonce, sealed]``: ``sealed`` is ChaCha20-Poly1305 under
``HKDF-SHA256(cluster key, salt = "foundation-p2p discovery beacon v1", info = "")`` with the
12-byte random ``nonce`` and the encoding of ``[1, key_id]`` as associated data; the
plaintext is ``[node_id, cluster, host, port, version]``. ``spec/discovery.md`` is the
normative text, ``spec/discovery.cddl`` the grammar, ``spec/vectors/discovery.json`` the
vectors. Pure code: the nonce's randomness is handed in (``secret_bytes``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from foundation_p2p.addresses import NodeId
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import (
    AuthenticationError,
    LimitError,
    MalformedError,
    UnknownKeyError,
    UnsupportedVersionError,
)
from foundation_p2p.wire.cbor import decode, encode
from foundation_p2p.wire.limits import WireLimits

BEACON_VERSION = 1
BEACON_SALT = b"foundation-p2p discovery beacon v1"
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_BEACON_BYTES = 512
"""Largest beacon sent or accepted; a longer datagram is refused with ``LimitError``."""
MAX_HOST_BYTES = 253
MAX_LABEL_BYTES = 63
MAX_VERSION_BYTES = 32
_LIMITS = WireLimits(max_packet_bytes=MAX_BEACON_BYTES, max_depth=2)


@dataclass(frozen=True)
class Beacon:
    """What one beacon announces."""

    node_id: NodeId
    """The sender's node id (16 bytes)."""
    cluster: str
    """The sender's cluster label."""
    host: str
    """The host the sender gossips at; ``""`` or a wildcard means "the datagram's source"."""
    port: int
    """The sender's gossip UDP port."""
    version: str
    """The sender's software version (informational)."""


def beacon_subkey(cluster_key: bytes) -> bytes:
    """The beacon sealing key: HKDF-SHA256(cluster_key, BEACON_SALT, info = empty)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=BEACON_SALT, info=b"").derive(
        cluster_key
    )


def _aad(kid: int) -> bytes:
    return encode([BEACON_VERSION, kid])


def seal_beacon(beacon: Beacon, keyring: Keyring, secret_bytes: Callable[[int], bytes]) -> bytes:
    """The datagram announcing ``beacon``, sealed with the keyring's primary key.

    ``secret_bytes(12)`` gives the nonce (``os.urandom`` at run time): nonces are random,
    so two beacons under one key collide with probability about n²/2⁹⁷.
    Raises :class:`~foundation_p2p.errors.ConfigError` subclasses never; raises
    ``LimitError`` if the beacon's texts are too long to fit.
    """
    _check_fields(beacon, LimitError)
    nonce = secret_bytes(NONCE_BYTES)
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise ValueError("secret_bytes(12) must return 12 bytes")
    kid = keyring.primary_id
    plaintext = encode([beacon.node_id, beacon.cluster, beacon.host, beacon.port, beacon.version])
    sealed = ChaCha20Poly1305(beacon_subkey(keyring.primary)).encrypt(nonce, plaintext, _aad(kid))
    data = encode([BEACON_VERSION, kid, nonce, sealed])
    if len(data) > MAX_BEACON_BYTES:
        raise LimitError(f"beacon: {len(data)} bytes exceeds {MAX_BEACON_BYTES}")
    return data


def open_beacon(data: bytes, keyring: Keyring) -> Beacon:
    """Authenticate and decode a beacon datagram.

    Raises only :class:`~foundation_p2p.errors.WireError` subclasses, each naming the
    problem: ``LimitError`` (too long), ``MalformedError`` (not the layout),
    ``UnsupportedVersionError``, ``UnknownKeyError`` (a key id not in the ring),
    ``AuthenticationError`` (the tag does not verify: wrong key or altered bytes).
    """
    value = decode(data, _LIMITS)
    if not isinstance(value, list) or not value:
        raise MalformedError("beacon: not a CBOR array")
    if value[0] != BEACON_VERSION or isinstance(value[0], bool):
        raise UnsupportedVersionError(f"beacon: version {value[0]!r} is not 1")
    if len(value) != 4:
        raise MalformedError(f"beacon: {len(value)} elements, expected 4")
    _, kid, nonce, sealed = value
    if not isinstance(kid, int) or isinstance(kid, bool) or not 0 <= kid < 1 << 32:
        raise MalformedError("beacon: key id is not a 32-bit unsigned integer")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise MalformedError("beacon: nonce is not 12 bytes")
    if not isinstance(sealed, bytes) or len(sealed) < TAG_BYTES:
        raise MalformedError("beacon: sealed part is shorter than the tag")
    key = keyring.key_for(kid)
    if key is None:
        raise UnknownKeyError(f"beacon: key id {kid:#010x} is not in the keyring")
    try:
        plaintext = ChaCha20Poly1305(beacon_subkey(key)).decrypt(nonce, sealed, _aad(kid))
    except InvalidTag:
        raise AuthenticationError("beacon: the tag does not verify") from None
    fields_ = decode(plaintext, _LIMITS)
    if not isinstance(fields_, list) or len(fields_) != 5:
        raise MalformedError(
            "beacon: sealed content is not [node_id, cluster, host, port, version]"
        )
    node_id, cluster, host, port, version = fields_
    if not isinstance(node_id, bytes) or len(node_id) != 16:
        raise MalformedError("beacon: node id is not 16 bytes")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65_535:
        raise MalformedError(f"beacon: port {port!r} is not 1..65535")
    for what, text in (("cluster", cluster), ("host", host), ("version", version)):
        if not isinstance(text, str):
            raise MalformedError(f"beacon: {what} is not a text")
    beacon = Beacon(NodeId(node_id), cluster, host, port, version)
    _check_fields(beacon, MalformedError)
    return beacon


def _check_fields(beacon: Beacon, error: Any) -> None:
    for what, text, limit in (
        ("cluster", beacon.cluster, MAX_LABEL_BYTES),
        ("host", beacon.host, MAX_HOST_BYTES),
        ("version", beacon.version, MAX_VERSION_BYTES),
    ):
        if len(text.encode()) > limit:
            raise error(f"beacon: {what} is longer than {limit} bytes")
