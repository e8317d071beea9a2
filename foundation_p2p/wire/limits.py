"""Hard limits enforced while decoding (``spec/wire.md``, section "Limits")."""

from __future__ import annotations

from dataclasses import dataclass

from foundation_p2p.errors import ConfigError


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Bounds every decoder enforces before it builds a message object.

    A peer's bytes never decide how much memory we use: each field below caps one
    dimension, and any input beyond it raises :class:`~foundation_p2p.errors.LimitError`.
    """

    max_packet_bytes: int = 65_507
    """Largest datagram accepted (the UDP/IPv4 payload maximum); larger is dropped."""
    max_depth: int = 16
    """Deepest container nesting accepted anywhere in a CBOR value."""
    max_frames: int = 64
    """Most frames one packet may carry."""
    max_collection_items: int = 4096
    """Most elements in any array or map."""
    max_text_bytes: int = 4096
    """Longest text string (node names, topics, reasons)."""
    max_bytes_bytes: int = 65_507
    """Longest byte string (payloads are bounded by the packet anyway)."""

    def __post_init__(self) -> None:
        for name in (
            "max_packet_bytes",
            "max_depth",
            "max_frames",
            "max_collection_items",
            "max_text_bytes",
            "max_bytes_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"WireLimits.{name}: must be a positive integer, got {value!r}")
        if self.max_packet_bytes > 65_507:
            raise ConfigError(
                f"WireLimits.max_packet_bytes: {self.max_packet_bytes} exceeds 65507 (UDP)"
            )


DEFAULT_LIMITS = WireLimits()
