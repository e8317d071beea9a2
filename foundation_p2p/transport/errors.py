"""Connection errors: what a peer did wrong, with the code a CONNECTION_CLOSE carries.

The numeric codes follow RFC 9000 section 20.1 so that a reader who knows QUIC reads ours
at once; ``spec/transport.md`` lists the ones this transport uses. A ``TransportError``
raised while handling a peer's packet closes the connection with that code; it never
escapes the connection to the node.
"""

from __future__ import annotations

from enum import IntEnum

from foundation_p2p.errors import FoundationError


class ErrorCode(IntEnum):
    """Transport error codes carried by CONNECTION_CLOSE (RFC 9000 section 20.1 numbering)."""

    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    CONNECTION_REFUSED = 0x2
    FLOW_CONTROL_ERROR = 0x3
    STREAM_LIMIT_ERROR = 0x4
    STREAM_STATE_ERROR = 0x5
    FINAL_SIZE_ERROR = 0x6
    FRAME_ENCODING_ERROR = 0x7
    TRANSPORT_PARAMETER_ERROR = 0x8
    PROTOCOL_VIOLATION = 0xA
    CRYPTO_BUFFER_EXCEEDED = 0xD
    KEY_UPDATE_ERROR = 0xE
    AEAD_LIMIT_REACHED = 0xF


class TransportError(FoundationError):
    """A peer broke the transport's rules; the connection closes with :attr:`code`.

    ``reason`` names the problem (it is sent in CONNECTION_CLOSE, truncated to the spec's
    limit), ``frame_type`` the frame that triggered it, when there is one.
    """

    def __init__(self, code: ErrorCode, reason: str, frame_type: int | None = None) -> None:
        super().__init__(f"{code.name}: {reason}")
        self.code = code
        self.reason = reason
        self.frame_type = frame_type
