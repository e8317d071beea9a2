"""The node-level handshake of a transport connection, over Noise ``XXpsk3``.

``spec/handshake.md`` is the normative text. In short:

- protocol ``Noise_XXpsk3_25519_ChaChaPoly_SHA256`` (:mod:`foundation_p2p.crypto.noise`);
- PSK = HKDF-SHA256(cluster key, salt empty, info ``b"foundation-p2p noise psk v1"``), 32
  bytes; the initiator uses its keyring's primary key and announces its ``key_id`` in the
  clear (the connection carries it), the responder picks that key or refuses with
  :class:`~foundation_p2p.errors.UnknownKeyError`;
- prologue ``b"foundation-p2p transport v1" || key_id as 4 bytes big endian``;
- message 1 carries an empty payload; messages 2 (responder) and 3 (initiator) carry the
  identity payload, deterministic CBOR ``[identity_public_key, boot_epoch, signature,
  reset_token]``: the Ed25519 key; the sender's boot epoch as 8 bytes big endian; the
  signature over ``b"foundation-p2p noise static v2\\x00" || Noise static public key ||
  boot_epoch``; and the stateless reset token of the sender's connection id (16 bytes,
  ``spec/transport.md`` section 11.3). The Noise DH operations prove possession of the
  static key; the signature ties the static key and the boot to the identity, so the
  verified peer node id is ``node_id_from_public_key(identity_public_key)`` and its boot
  epoch is known (a connection to an older boot of a peer is recognisably stale). The
  token is per connection and not signed: the Noise payload encryption authenticates it
  as coming from the holder of the static key;
- traffic keys: for each direction, ``key || iv = HKDF-SHA256(split key, salt empty, info
  b"foundation-p2p traffic v1", 44 bytes)``.

The Noise static key is not derived from the identity: :class:`NoiseStatic` is a fresh
X25519 key drawn from ``secret_bytes``, normally once per node boot (the node creates one
and hands it to every handshake), else once per handshake when none is given. It is then
unlinkable to the node id for anyone without the cluster key (see the spec's privacy
section), and its signature is computed once per boot, not per handshake.

Sans-I/O: :class:`Handshake` takes and returns bytes; the connection moves them, times
out and retransmits. Errors from the peer's bytes are :class:`~foundation_p2p.errors.WireError`
subclasses only (``MalformedError``, ``AuthenticationError``, ``SignatureError``,
``UnknownKeyError`` and :class:`UnexpectedPeerError`); a rejected message leaves the
handshake as it was, and after ``max_failures`` rejected messages it fails for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from foundation_p2p.addresses import NodeId
from foundation_p2p.crypto.identity import Identity, node_id_from_public_key, verify_signature
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.noise import PROTOCOL_NAME, HandshakeState, x25519_public
from foundation_p2p.errors import (
    AuthenticationError,
    ConfigError,
    MalformedError,
    SignatureError,
    UnknownKeyError,
    WireError,
)
from foundation_p2p.wire import cbor

logger = logging.getLogger("foundation_p2p.crypto")

PSK_INFO = b"foundation-p2p noise psk v1"
PROLOGUE_LABEL = b"foundation-p2p transport v1"
STATIC_SIGNING_CONTEXT = b"foundation-p2p noise static v2\x00"
TRAFFIC_INFO = b"foundation-p2p traffic v1"
KEY_BYTES = 32
IV_BYTES = 12
EPOCH_BYTES = 8
RESET_TOKEN_BYTES = 16
MAX_EPOCH = (1 << 64) - 1
IDENTITY_PAYLOAD_BYTES = 127
"""``[bstr .size 32, bstr .size 8, bstr .size 64, bstr .size 16]`` in deterministic CBOR:
1 + (2 + 32) + (1 + 8) + (2 + 64) + (1 + 16)."""
MESSAGE_SIZES = (48, 48 + 32 + IDENTITY_PAYLOAD_BYTES + 16, 48 + IDENTITY_PAYLOAD_BYTES + 16)
"""The exact sizes of messages 1, 2 and 3 (48, 223, 191 bytes)."""


class UnexpectedPeerError(AuthenticationError):
    """The handshake authenticated a node other than the one the initiator dialled."""

    code = "unexpected_peer"


def derive_psk(cluster_key: bytes) -> bytes:
    """The Noise PSK of a cluster key: HKDF-SHA256(key, salt empty, ``PSK_INFO``), 32 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PSK_INFO).derive(cluster_key)


def prologue_for(key_id: int) -> bytes:
    """The Noise prologue: ``PROLOGUE_LABEL || key_id`` (4 bytes, big endian)."""
    if not 0 <= key_id < 1 << 32:
        raise ConfigError("handshake: a key id is a 32-bit unsigned integer")
    return PROLOGUE_LABEL + key_id.to_bytes(4, "big")


def derive_traffic(split_key: bytes) -> tuple[bytes, bytes]:
    """One direction's ``(key, iv)``: HKDF-SHA256(split key, salt empty, ``TRAFFIC_INFO``)."""
    okm = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES + IV_BYTES, salt=None, info=TRAFFIC_INFO
    ).derive(split_key)
    return okm[:KEY_BYTES], okm[KEY_BYTES:]


@dataclass(frozen=True, slots=True)
class IdentityPayload:
    """A decoded identity payload (nothing verified yet; see :func:`verify_identity_payload`)."""

    identity_public_key: bytes
    boot_epoch: int
    signature: bytes
    reset_token: bytes


def signed_static_binding(noise_static: bytes, boot_epoch: int) -> bytes:
    """What the identity signature covers: ``STATIC_SIGNING_CONTEXT || noise static ||
    boot epoch (8 bytes, big endian)``."""
    if not 0 <= boot_epoch <= MAX_EPOCH:
        raise ConfigError("handshake: a boot epoch is a 64-bit unsigned integer")
    return STATIC_SIGNING_CONTEXT + noise_static + boot_epoch.to_bytes(EPOCH_BYTES, "big")


def encode_identity_payload(
    identity_public_key: bytes, boot_epoch: int, signature: bytes, reset_token: bytes
) -> bytes:
    """The identity payload: deterministic CBOR ``[identity_public_key, boot_epoch (8
    bytes, big endian), signature, reset_token]``."""
    if not 0 <= boot_epoch <= MAX_EPOCH:
        raise ConfigError("handshake: a boot epoch is a 64-bit unsigned integer")
    return cbor.encode(
        [identity_public_key, boot_epoch.to_bytes(EPOCH_BYTES, "big"), signature, reset_token]
    )


def decode_identity_payload(payload: bytes) -> IdentityPayload:
    """The fields of an identity payload; anything else raises :class:`MalformedError`
    naming the problem."""
    if len(payload) != IDENTITY_PAYLOAD_BYTES:
        raise MalformedError(
            f"handshake: the identity payload is {IDENTITY_PAYLOAD_BYTES} bytes, got {len(payload)}"
        )
    try:
        value = cbor.decode(payload)
    except WireError as exc:
        raise MalformedError(f"handshake: the identity payload is not CBOR: {exc}") from None
    if (
        type(value) is not list
        or len(value) != 4
        or any(
            type(item) is not bytes or len(item) != size
            for item, size in zip(value, (32, EPOCH_BYTES, 64, RESET_TOKEN_BYTES), strict=True)
        )
    ):
        raise MalformedError(
            "handshake: the identity payload must be [identity key (32 bytes), boot epoch "
            "(8 bytes), signature (64 bytes), reset token (16 bytes)]"
        )
    return IdentityPayload(value[0], int.from_bytes(value[1], "big"), value[2], value[3])


def verify_identity_payload(payload: bytes, noise_static: bytes) -> tuple[NodeId, IdentityPayload]:
    """Check an identity payload against the peer's Noise static public key; returns
    ``(node_id, fields)``. Raises :class:`MalformedError` or :class:`SignatureError`."""
    fields = decode_identity_payload(payload)
    signed = signed_static_binding(noise_static, fields.boot_epoch)
    if not verify_signature(fields.identity_public_key, fields.signature, signed):
        raise SignatureError(
            "handshake: the peer's identity signature over its Noise static key and boot "
            "epoch does not verify"
        )
    return node_id_from_public_key(fields.identity_public_key), fields


class NoiseStatic:
    """A Noise static X25519 key of one node boot, and the signature binding it (and the
    boot epoch) to the node's identity.

    Create one per node boot (:meth:`generate`) and pass it to every :class:`Handshake`:
    the Ed25519 signature is then computed once, not per handshake; :meth:`payload` adds
    a connection's reset token.
    """

    __slots__ = ("boot_epoch", "identity_public_key", "private", "public", "signature")

    def __init__(self, identity: Identity, private: bytes, boot_epoch: int = 0) -> None:
        self.private = private
        self.public = x25519_public(private)
        self.boot_epoch = boot_epoch
        self.identity_public_key = identity.public_key
        self.signature = identity.sign(signed_static_binding(self.public, boot_epoch))

    @classmethod
    def generate(
        cls, identity: Identity, secret_bytes: Callable[[int], bytes], boot_epoch: int = 0
    ) -> NoiseStatic:
        """A fresh static key from 32 bytes of ``secret_bytes``, for the boot
        ``boot_epoch`` (0, the oldest possible, where there is no node boot: benchmarks,
        standalone handshakes)."""
        return cls(identity, secret_bytes(32), boot_epoch)

    def payload(self, reset_token: bytes) -> bytes:
        """The identity payload carrying ``reset_token`` (16 bytes)."""
        if len(reset_token) != RESET_TOKEN_BYTES:
            raise ConfigError("handshake: a reset token is 16 bytes")
        return encode_identity_payload(
            self.identity_public_key, self.boot_epoch, self.signature, reset_token
        )


@dataclass(slots=True)
class TrafficKeys:
    """What the connection uses after the handshake (``spec/handshake.md``, "Traffic keys").

    32-byte ChaCha20-Poly1305 keys and 12-byte static IVs, one pair per direction; a
    packet's nonce is ``iv XOR packet number`` (left-padded to 12 bytes), as in QUIC.
    """

    send_key: bytes
    recv_key: bytes
    send_iv: bytes
    recv_iv: bytes
    handshake_hash: bytes


class Handshake:
    """One side of a connection handshake (sans-I/O).

    Initiator: ``m1 = next_message()``; ``receive(m2)``; ``m3 = next_message()``; complete.
    Responder: ``receive(m1)``; ``m2 = next_message()``; ``receive(m3)``; complete.
    ``next_message()`` returns ``None`` when it is not this side's turn.

    Equivalent lower-level calls: :func:`derive_psk` and :func:`prologue_for` set up a
    :class:`~foundation_p2p.crypto.noise.HandshakeState`; its ``write_message`` and
    ``read_message`` carry the payloads of :class:`NoiseStatic` and
    :func:`verify_identity_payload`; :func:`derive_traffic` turns ``split()`` into
    :class:`TrafficKeys`.

    ``receive`` of an exact copy of the last message already accepted is ignored (counted
    in ``duplicates``): the peer retransmitted, and :meth:`last_sent` gives the message
    to answer with. Any rejected message raises and changes nothing; ``max_failures``
    of them (default 8) end the handshake (``failed``).

    ``reset_token``: the stateless reset token this side announces (its connection's, set
    before this side writes message 2 or 3); when still ``None`` then, 16 bytes of
    ``secret_bytes`` are used, a token nobody can compute (no reset for that
    handshake's connection). Once the peer's payload is verified: ``peer_node_id``,
    ``peer_identity_key``, ``peer_epoch`` (its boot epoch) and ``peer_reset_token``.
    """

    __slots__ = (
        "_expected_peer",
        "_failures",
        "_last_received",
        "_last_sent",
        "_noise",
        "_secret_bytes",
        "_static",
        "duplicates",
        "failed",
        "initiator",
        "key_id",
        "max_failures",
        "peer_epoch",
        "peer_identity_key",
        "peer_node_id",
        "peer_reset_token",
        "prologue",
        "psk",
        "reset_token",
    )

    def __init__(
        self,
        *,
        initiator: bool,
        identity: Identity,
        cluster_key: bytes,
        key_id: int,
        secret_bytes: Callable[[int], bytes],
        expected_peer: NodeId | None,
        static: NoiseStatic | None,
        max_failures: int = 8,
        reset_token: bytes | None = None,
    ) -> None:
        if max_failures < 1:
            raise ConfigError("handshake: max_failures must be at least 1")
        if reset_token is not None and len(reset_token) != RESET_TOKEN_BYTES:
            raise ConfigError("handshake: a reset token is 16 bytes")
        if static is None:
            static = NoiseStatic.generate(identity, secret_bytes)
        self._static = static
        self._secret_bytes = secret_bytes
        self.reset_token = reset_token
        self.initiator = initiator
        self.key_id = key_id
        self.psk = derive_psk(cluster_key)
        self.prologue = prologue_for(key_id)
        self._expected_peer = expected_peer
        self._noise = HandshakeState(
            initiator=initiator,
            prologue=self.prologue,
            s=static.private,
            psk=self.psk,
            secret_bytes=secret_bytes,
            protocol_name=PROTOCOL_NAME,
            max_failures=max_failures,
        )
        self.max_failures = max_failures
        self._failures = 0
        self.failed = False
        self.duplicates = 0
        self._last_sent: bytes | None = None
        self._last_received: bytes | None = None
        self.peer_node_id: NodeId | None = None
        self.peer_identity_key: bytes | None = None
        self.peer_epoch: int | None = None
        self.peer_reset_token: bytes | None = None

    @classmethod
    def initiate(
        cls,
        identity: Identity,
        keyring: Keyring,
        secret_bytes: Callable[[int], bytes],
        expected_peer: NodeId | None = None,
        *,
        static: NoiseStatic | None = None,
        max_failures: int = 8,
        reset_token: bytes | None = None,
    ) -> Handshake:
        """The initiator's side, with the keyring's primary key (``key_id`` goes in clear).

        ``expected_peer``: the node id dialled; a different authenticated peer raises
        :class:`UnexpectedPeerError` when message 2 is received.
        """
        return cls(
            initiator=True,
            identity=identity,
            cluster_key=keyring.primary,
            key_id=keyring.primary_id,
            secret_bytes=secret_bytes,
            expected_peer=expected_peer,
            static=static,
            max_failures=max_failures,
            reset_token=reset_token,
        )

    @classmethod
    def respond(
        cls,
        identity: Identity,
        keyring: Keyring,
        secret_bytes: Callable[[int], bytes],
        key_id: int,
        *,
        static: NoiseStatic | None = None,
        max_failures: int = 8,
        reset_token: bytes | None = None,
    ) -> Handshake:
        """The responder's side, for the cluster key ``key_id`` the initiator announced;
        raises :class:`UnknownKeyError` when the keyring does not hold it."""
        key = keyring.key_for(key_id)
        if key is None:
            raise UnknownKeyError(
                f"handshake: cluster key id {key_id:#010x} is not in this node's keyring"
            )
        return cls(
            initiator=False,
            identity=identity,
            cluster_key=key,
            key_id=key_id,
            secret_bytes=secret_bytes,
            expected_peer=None,
            static=static,
            max_failures=max_failures,
            reset_token=reset_token,
        )

    @property
    def complete(self) -> bool:
        """True once this side has sent or received the last message (and the peer's
        identity verified)."""
        return self._noise.complete

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash (final once ``complete``)."""
        return self._noise.handshake_hash

    @property
    def local_static(self) -> bytes:
        """This side's Noise static public key."""
        return self._static.public

    @property
    def peer_static(self) -> bytes | None:
        """The peer's Noise static public key, once received."""
        return self._noise.remote_static

    def last_sent(self) -> bytes | None:
        """The last message this side wrote (for a retransmission), or ``None``."""
        return self._last_sent

    def next_message(self) -> bytes | None:
        """The next message to send, or ``None`` when it is the peer's turn (or done)."""
        noise = self._noise
        if self.failed or not noise.my_turn_to_write:
            return None
        if noise.message_index == 0:
            payload = b""
        else:
            if self.reset_token is None:
                self.reset_token = self._secret_bytes(RESET_TOKEN_BYTES)
            payload = self._static.payload(self.reset_token)
        message = noise.write_message(payload)
        self._last_sent = message
        if noise.complete:
            logger.debug("handshake complete (initiator) with %s", self._peer_text())
        return message

    def receive(self, data: bytes) -> None:
        """Take the peer's next message. Raises only ``WireError`` subclasses, and then
        the handshake is as it was before the call."""
        if self.failed:
            raise AuthenticationError("handshake: failed after too many rejected messages")
        data = bytes(data)
        if data == self._last_received:
            self.duplicates += 1
            return
        noise = self._noise
        if noise.complete or noise.my_turn_to_write:
            raise MalformedError("handshake: a message arrived when none was expected")
        index = noise.message_index
        if len(data) != MESSAGE_SIZES[index]:
            raise MalformedError(
                f"handshake: message {index + 1} is {MESSAGE_SIZES[index]} bytes, got {len(data)}"
            )
        saved = noise.snapshot()
        try:
            payload = noise.read_message(data)
        except WireError:
            self._note_failure()
            raise
        try:
            if index == 0:
                if payload:
                    raise MalformedError("handshake: message 1 must carry an empty payload")
            else:
                peer_static = noise.remote_static
                assert peer_static is not None
                node_id, fields = verify_identity_payload(payload, peer_static)
                if self._expected_peer is not None and node_id != self._expected_peer:
                    raise UnexpectedPeerError(
                        f"handshake: the peer is node {node_id.hex()}, "
                        f"expected {self._expected_peer.hex()}"
                    )
                self.peer_node_id = node_id
                self.peer_identity_key = fields.identity_public_key
                self.peer_epoch = fields.boot_epoch
                self.peer_reset_token = fields.reset_token
        except WireError:
            noise.restore(saved)
            noise.note_failure()
            self._note_failure()
            raise
        self._last_received = data
        if noise.complete:
            logger.debug("handshake complete (responder) with %s", self._peer_text())

    def _note_failure(self) -> None:
        self._failures += 1
        if self._failures >= self.max_failures:
            self.failed = True

    def _peer_text(self) -> str:
        return self.peer_node_id.hex() if self.peer_node_id is not None else "?"

    def split_keys(self) -> tuple[bytes, bytes]:
        """The raw keys of Noise ``Split()``: (initiator->responder, responder->initiator)."""
        c1, c2 = self._noise.split()
        assert c1.k is not None and c2.k is not None
        return c1.k, c2.k

    def keys(self) -> TrafficKeys:
        """This side's :class:`TrafficKeys` (send = its own direction); only once complete."""
        if not self.complete:
            raise ConfigError("handshake: keys() before the handshake is complete")
        k1, k2 = self.split_keys()
        i2r_key, i2r_iv = derive_traffic(k1)
        r2i_key, r2i_iv = derive_traffic(k2)
        if self.initiator:
            return TrafficKeys(i2r_key, r2i_key, i2r_iv, r2i_iv, self.handshake_hash)
        return TrafficKeys(r2i_key, i2r_key, r2i_iv, i2r_iv, self.handshake_hash)


__all__ = [
    "EPOCH_BYTES",
    "IDENTITY_PAYLOAD_BYTES",
    "MESSAGE_SIZES",
    "PROLOGUE_LABEL",
    "PSK_INFO",
    "RESET_TOKEN_BYTES",
    "STATIC_SIGNING_CONTEXT",
    "TRAFFIC_INFO",
    "Handshake",
    "IdentityPayload",
    "NoiseStatic",
    "TrafficKeys",
    "UnexpectedPeerError",
    "decode_identity_payload",
    "derive_psk",
    "derive_traffic",
    "encode_identity_payload",
    "prologue_for",
    "signed_static_binding",
    "verify_identity_payload",
]
