"""Unit tests of the gossip packet header (``foundation_p2p.wire.packet``) and ``WireLimits``."""

from __future__ import annotations

from typing import Any

import pytest

from foundation_p2p.errors import (
    ConfigError,
    LimitError,
    MalformedError,
    UnsupportedVersionError,
)
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits
from foundation_p2p.wire.packet import (
    PROTOCOL_VERSION,
    GossipHeader,
    PacketType,
    assemble_packet,
    parse_packet,
)

SENDER = bytes(range(16))
MAX_U64 = (1 << 64) - 1


def header(**changes: Any) -> GossipHeader:
    fields: dict[str, Any] = {
        "sender": SENDER,
        "boot_epoch": 1_790_000_000_000,
        "key_id": 0xDEADBEEF,
        "packet_number": 7,
    }
    fields.update(changes)
    return GossipHeader(**fields)


def test_version_and_type_numbers() -> None:
    assert PROTOCOL_VERSION == 1
    assert PacketType.GOSSIP == 1


@pytest.mark.parametrize("sealed_len", [16, 23, 24, 255, 256, 65_535 - 100, 65_400])
def test_assemble_then_parse_at_every_length_class(sealed_len: int) -> None:
    h = header()
    prefix = h.encode_prefix()
    sealed = bytes([0xAB]) * sealed_len
    packet = assemble_packet(prefix, sealed)
    # The packet is exactly the CBOR array the spec describes.
    assert packet == cbor.encode([1, 1, SENDER, h.boot_epoch, h.key_id, 7, sealed])
    parsed, aad, got = parse_packet(packet)
    assert parsed == h
    assert aad == prefix
    assert got == sealed


@pytest.mark.parametrize(
    "h",
    [
        header(boot_epoch=0, key_id=0, packet_number=0),
        header(boot_epoch=MAX_U64, key_id=(1 << 32) - 1, packet_number=MAX_U64),
        header(boot_epoch=24, key_id=256, packet_number=65_536),
    ],
)
def test_header_field_extremes(h: GossipHeader) -> None:
    packet = assemble_packet(h.encode_prefix(), bytes(16))
    assert parse_packet(packet)[0] == h


def test_unknown_version_carries_the_version() -> None:
    packet = cbor.encode([9, 1, SENDER, 1, 1, 1, bytes(16)])
    with pytest.raises(UnsupportedVersionError) as info:
        parse_packet(packet)
    assert info.value.version == 9
    assert info.value.code == "unsupported_version"


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([1, 1, SENDER, 1, 1, 1], "expected 7 elements"),
        ([1, 3, SENDER, 1, 1, 1, bytes(16)], "unknown packet type"),
        ([1, True, SENDER, 1, 1, 1, bytes(16)], "unknown packet type"),
        ([1, 1, SENDER[:8], 1, 1, 1, bytes(16)], "packet.sender: expected 16 bytes"),
        ([1, 1, SENDER, -1, 1, 1, bytes(16)], "packet.epoch"),
        ([1, 1, SENDER, 1, 1 << 32, 1, bytes(16)], "packet.key_id: larger than 32 bits"),
        ([1, 1, SENDER, 1, 1, "1", bytes(16)], "packet.pn"),
        ([1, 1, SENDER, 1, 1, 1, bytes(15)], "shorter than the AEAD tag"),
        (["1", 1, SENDER, 1, 1, 1, bytes(16)], "version must be an unsigned integer"),
        ({"v": 1}, "not a CBOR array"),
    ],
)
def test_parse_errors_name_the_field(items: Any, problem: str) -> None:
    with pytest.raises(MalformedError, match=problem):
        parse_packet(cbor.encode(items))


def test_oversize_datagram_is_a_limit_error_before_decoding() -> None:
    with pytest.raises(LimitError, match="65508 bytes exceeds 65507"):
        parse_packet(b"\x87" + bytes(65_507))
    small = WireLimits(max_packet_bytes=100)
    packet = assemble_packet(header().encode_prefix(), bytes(80))
    with pytest.raises(LimitError):
        parse_packet(packet, small)


def test_empty_and_non_array_datagrams_are_malformed() -> None:
    for data in (b"", b"\x01", b"\xa0", b"\xff"):
        with pytest.raises(MalformedError):
            parse_packet(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_packet_bytes", 0),
        ("max_packet_bytes", 65_508),
        ("max_depth", -1),
        ("max_frames", True),
        ("max_text_bytes", 1.5),
        ("max_collection_items", 0),
        ("max_bytes_bytes", 0),
    ],
)
def test_wire_limits_validate_each_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"WireLimits.{field}"):
        WireLimits(**{field: value})


def test_default_limits_are_the_specs() -> None:
    assert (
        WireLimits(
            max_packet_bytes=65_507,
            max_depth=16,
            max_frames=64,
            max_collection_items=4096,
            max_text_bytes=4096,
            max_bytes_bytes=65_507,
        )
        == DEFAULT_LIMITS
    )
