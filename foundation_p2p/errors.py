"""The project's exception tree.

One root, :class:`FoundationError`. Bytes that come from outside (a datagram, a file
written by another program) raise :class:`WireError` or one of its subclasses, and nothing
else: every decoder catches what its libraries raise and turns it into a ``WireError``
naming the problem. A misuse of the API or an invalid configuration raises
:class:`ConfigError` (also a :class:`ValueError`), naming the field and the problem.

Each ``WireError`` subclass has a stable ``code`` (used by ``spec/vectors`` and by the
drop counters of :class:`foundation_p2p.node.NodeCore`).
"""

from __future__ import annotations


class FoundationError(Exception):
    """Root of every error raised by foundation-p2p."""


class ConfigError(FoundationError, ValueError):
    """A configuration value, file or API argument is invalid; the message names it."""


class WireError(FoundationError):
    """Bytes from outside could not be accepted. The only error a decoder lets out."""

    code = "malformed"


class MalformedError(WireError):
    """Not well-formed CBOR, not deterministic CBOR, or not the shape the spec gives."""

    code = "malformed"


class LimitError(WireError):
    """A size, count, length or nesting limit of ``spec/wire.md`` was exceeded."""

    code = "limit"


class UnsupportedVersionError(WireError):
    """The packet names a protocol version this node does not speak."""

    code = "unsupported_version"

    def __init__(self, message: str, version: object = None) -> None:
        super().__init__(message)
        self.version = version


class UnknownKeyError(WireError):
    """The packet was sealed with a cluster key that is not in this node's keyring."""

    code = "unknown_key"


class AuthenticationError(WireError):
    """AEAD authentication failed: wrong key, truncated or altered bytes."""

    code = "auth_failed"


class ReplayError(WireError):
    """The packet number was already seen, or is older than the replay window."""

    code = "replay"


class StaleEpochError(WireError):
    """The packet comes from an older boot epoch of a sender than one already seen."""

    code = "stale_epoch"


class SignatureError(WireError):
    """An Ed25519 signature on a node's own announcement did not verify."""

    code = "bad_signature"


class KeyringError(ConfigError):
    """A keyring file is unreadable or malformed; the message names the file and line."""


class StorageError(FoundationError):
    """Durable state on disk is unreadable or corrupt; the message names the file."""
