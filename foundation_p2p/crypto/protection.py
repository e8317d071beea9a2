"""Gossip packet protection: ChaCha20-Poly1305 with per-sender subkeys.

Each sender seals with its own subkey ``HKDF-SHA256(cluster key, salt, info = node id ||
boot epoch)`` and uses the packet number as the nonce (4 zero bytes || 8-byte big-endian
packet number). Since the boot epoch is new at every start and the packet number never
repeats within an epoch, no two packets under one cluster key share a (key, nonce) pair,
across restarts and across any number of nodes. The clear-text header is the associated
data. ``spec/wire.md`` section "Packet protection" is the normative text.
"""

from __future__ import annotations

from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from foundation_p2p.addresses import NodeId
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.replay import ReplayGuard
from foundation_p2p.errors import AuthenticationError, ConfigError, UnknownKeyError
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits
from foundation_p2p.wire.packet import GossipHeader, assemble_packet, parse_packet

SUBKEY_SALT = b"foundation-p2p gossip subkey v1"
MAX_PACKET_NUMBER = (1 << 64) - 1


def derive_subkey(cluster_key: bytes, node_id: NodeId, boot_epoch: int) -> bytes:
    """The sender's sealing key: HKDF-SHA256(cluster_key, salt, node_id || epoch as u64be)."""
    info = node_id + boot_epoch.to_bytes(8, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SUBKEY_SALT, info=info).derive(
        cluster_key
    )


def nonce_for(packet_number: int) -> bytes:
    """The 12-byte AEAD nonce for a packet number."""
    return b"\x00\x00\x00\x00" + packet_number.to_bytes(8, "big")


class GossipProtection:
    """Seals this node's gossip packets and opens everyone's.

    ``seal`` numbers packets from 0 within this boot epoch. ``open`` checks, in order:
    the header (version, shape), the key id, the replay window, the AEAD tag; only then
    does it record the packet number. Every refusal is a ``WireError`` subclass whose
    ``code`` names the reason; the caller counts it and drops the packet.
    """

    def __init__(
        self,
        keyring: Keyring,
        node_id: NodeId,
        boot_epoch: int,
        *,
        limits: WireLimits = DEFAULT_LIMITS,
        max_tracked_senders: int = 4096,
        replay_window: int = 256,
        max_cached_subkeys: int = 1024,
    ) -> None:
        if max_cached_subkeys <= 0:
            raise ConfigError("GossipProtection: max_cached_subkeys must be positive")
        self.keyring = keyring
        self.node_id = node_id
        self.boot_epoch = boot_epoch
        self.limits = limits
        self.next_packet_number = 0
        self.replay = ReplayGuard(max_tracked_senders, replay_window)
        self._max_cached = max_cached_subkeys
        self._openers: OrderedDict[tuple[int, bytes, int], ChaCha20Poly1305] = OrderedDict()
        self._sealer = ChaCha20Poly1305(derive_subkey(keyring.primary, node_id, boot_epoch))
        self._sealer_key_id = keyring.primary_id

    def set_keyring(self, keyring: Keyring) -> None:
        """Switch to a new keyring (rotation); cached subkeys of removed keys are dropped."""
        self.keyring = keyring
        self._openers.clear()
        self._sealer = ChaCha20Poly1305(
            derive_subkey(keyring.primary, self.node_id, self.boot_epoch)
        )
        self._sealer_key_id = keyring.primary_id

    def seal(self, plaintext: bytes) -> bytes:
        """A complete gossip packet carrying ``plaintext`` (encoded frames)."""
        pn = self.next_packet_number
        if pn > MAX_PACKET_NUMBER:
            raise ConfigError("packet numbers exhausted for this boot epoch; restart the node")
        self.next_packet_number = pn + 1
        header = GossipHeader(self.node_id, self.boot_epoch, self._sealer_key_id, pn)
        prefix = header.encode_prefix()
        sealed = self._sealer.encrypt(nonce_for(pn), plaintext, prefix)
        return assemble_packet(prefix, sealed)

    def _opener(self, kid: int, sender: NodeId, epoch: int) -> ChaCha20Poly1305:
        cache_key = (kid, sender, epoch)
        aead = self._openers.get(cache_key)
        if aead is not None:
            self._openers.move_to_end(cache_key)
            return aead
        key = self.keyring.key_for(kid)
        if key is None:
            raise UnknownKeyError(f"key id {kid:#010x} is not in the keyring")
        aead = ChaCha20Poly1305(derive_subkey(key, sender, epoch))
        self._openers[cache_key] = aead
        if len(self._openers) > self._max_cached:
            self._openers.popitem(last=False)
        return aead

    def open(self, data: bytes) -> tuple[GossipHeader, bytes]:
        """Authenticate a received packet; return its header and plaintext frames."""
        header, aad, sealed = parse_packet(data, self.limits)
        aead = self._opener(header.key_id, header.sender, header.boot_epoch)
        self.replay.check(header.sender, header.boot_epoch, header.packet_number)
        try:
            plaintext = aead.decrypt(nonce_for(header.packet_number), sealed, aad)
        except InvalidTag:
            raise AuthenticationError("AEAD authentication failed") from None
        self.replay.accept(header.sender, header.boot_epoch, header.packet_number)
        return header, plaintext
