"""Keys, identities and packet protection (``spec/wire.md``, ``spec/keyring.md``)."""

from foundation_p2p.crypto.identity import Identity, node_id_from_public_key, verify_signature
from foundation_p2p.crypto.keyring import Keyring, key_id
from foundation_p2p.crypto.protection import GossipProtection, derive_subkey, nonce_for
from foundation_p2p.crypto.replay import ReplayGuard, ReplayWindow

__all__ = [
    "GossipProtection",
    "Identity",
    "Keyring",
    "ReplayGuard",
    "ReplayWindow",
    "derive_subkey",
    "key_id",
    "node_id_from_public_key",
    "nonce_for",
    "verify_signature",
]
