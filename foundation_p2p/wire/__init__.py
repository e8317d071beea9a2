"""The wire format: deterministic CBOR, the gossip packet, frames, limits.

Normative description: ``spec/wire.md`` and ``spec/wire.cddl``.
"""

from foundation_p2p.wire.cbor import check_plain, decode, encode
from foundation_p2p.wire.frames import (
    FRAME_TYPES,
    Ack,
    DecodedFrames,
    Frame,
    Ping,
    decode_frames,
    encode_frames,
    register_frame,
)
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits
from foundation_p2p.wire.packet import (
    PROTOCOL_VERSION,
    GossipHeader,
    PacketType,
    assemble_packet,
    parse_packet,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FRAME_TYPES",
    "PROTOCOL_VERSION",
    "Ack",
    "DecodedFrames",
    "Frame",
    "GossipHeader",
    "PacketType",
    "Ping",
    "WireLimits",
    "assemble_packet",
    "check_plain",
    "decode",
    "decode_frames",
    "encode",
    "encode_frames",
    "parse_packet",
    "register_frame",
]
