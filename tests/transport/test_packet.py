"""Connection packets (``foundation_p2p.transport.packet``): layouts, parsing, protection."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from foundation_p2p.errors import (
    AuthenticationError,
    MalformedError,
    UnsupportedVersionError,
    WireError,
)
from foundation_p2p.transport.packet import (
    ONE_RTT_OVERHEAD,
    ConnPacketType,
    PacketProtection,
    encode_handshake,
    encode_initial,
    packet_type,
    parse_handshake,
    parse_one_rtt,
)

CID_A = bytes(range(8))
CID_B = bytes(range(8, 16))
KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
IV_1 = bytes(range(100, 112))
IV_2 = bytes(range(200, 212))


def _canonical(value: object) -> bytes:
    return cbor2.dumps(value, canonical=True)


def test_initial_and_handshake_layouts_are_canonical_cbor() -> None:
    noise = bytes(range(32))
    initial = encode_initial(0xE648E1D1, CID_A, noise)
    assert len(initial) == 1200
    assert initial == _canonical([1, 2, 0xE648E1D1, CID_A, noise, bytes(1146)])  # 51 + 3 + 1146
    for min_bytes in range(0, 1400):
        packet = encode_initial(5, CID_A, noise, min_bytes)
        assert len(packet) >= min_bytes
        assert len(packet) <= max(min_bytes + 1, 48)
        assert parse_handshake(packet).noise == noise
    assert encode_handshake(CID_A, CID_B, noise) == _canonical([1, 3, CID_A, CID_B, noise])
    parsed = parse_handshake(encode_initial(7, CID_A, noise))
    assert (parsed.ptype, parsed.key_id, parsed.dcid, parsed.scid, parsed.noise) == (
        2, 7, None, CID_A, noise
    )
    parsed = parse_handshake(encode_handshake(CID_A, CID_B, noise))
    assert (parsed.ptype, parsed.key_id, parsed.dcid, parsed.scid) == (3, None, CID_A, CID_B)


def test_packet_type_demultiplexes_gossip_and_connection_packets() -> None:
    assert packet_type(_canonical([1, 1, b"x" * 16, 5, 6, 7, b"y" * 16])) == ConnPacketType.GOSSIP
    assert packet_type(encode_initial(1, CID_A, b"n")) == ConnPacketType.INITIAL
    assert packet_type(encode_handshake(CID_A, CID_B, b"n")) == ConnPacketType.HANDSHAKE
    prot = PacketProtection(KEY_1, IV_1, KEY_2, IV_2)
    assert packet_type(prot.seal(CID_A, 0, b"\x81\x01")) == ConnPacketType.ONE_RTT
    with pytest.raises(UnsupportedVersionError):
        packet_type(_canonical([2, 4, CID_A, 0, b"x" * 16]))
    with pytest.raises(MalformedError):
        packet_type(_canonical([1, 9, CID_A, 0, b"x" * 16]))
    with pytest.raises(MalformedError):
        packet_type(b"\x01\x01\x01")


def test_one_rtt_packet_is_sealed_with_iv_xor_pn_and_the_header_as_aad() -> None:
    client = PacketProtection(KEY_1, IV_1, KEY_2, IV_2)
    server = PacketProtection(KEY_2, IV_2, KEY_1, IV_1)
    pn = 70000
    packet = client.seal(CID_B, pn, b"\x81\x01")
    header = [1, 4, CID_B, pn]
    prefix = _canonical(header)[1:]  # the array head of 4 replaced by one of 5 below
    aad = b"\x85" + prefix
    nonce = (int.from_bytes(IV_1, "big") ^ pn).to_bytes(12, "big")
    sealed = ChaCha20Poly1305(KEY_1).encrypt(nonce, b"\x81\x01", aad)
    assert packet == _canonical([1, 4, CID_B, pn, sealed])
    dcid, got_pn, got_aad, got_sealed = parse_one_rtt(packet)
    assert (dcid, got_pn, got_aad, got_sealed) == (CID_B, pn, aad, sealed)
    assert server.open(got_pn, got_aad, got_sealed) == b"\x81\x01"
    assert len(packet) <= ONE_RTT_OVERHEAD + 2


def test_a_tampered_one_rtt_packet_fails_authentication() -> None:
    client = PacketProtection(KEY_1, IV_1, KEY_2, IV_2)
    server = PacketProtection(KEY_2, IV_2, KEY_1, IV_1)
    packet = bytearray(client.seal(CID_B, 3, b"\x81\x01" * 10))
    for index in (5, len(packet) - 1, len(packet) - 20):
        bad = bytearray(packet)
        bad[index] ^= 1
        _dcid, pn, aad, sealed = parse_one_rtt(bytes(bad))
        with pytest.raises(AuthenticationError):
            server.open(pn, aad, sealed)
    # the wrong direction's key cannot open it either
    _dcid, pn, aad, sealed = parse_one_rtt(bytes(packet))
    with pytest.raises(AuthenticationError):
        client.open(pn, aad, sealed)


@pytest.mark.parametrize(
    "data",
    [
        _canonical([1, 2, 1, CID_A[:7], b"n", b""]),  # short cid
        _canonical([1, 2, 1, CID_A, b"n"]),  # 5 elements
        _canonical([1, 2, 1, CID_A, b"n", 0]),  # padding not bytes
        _canonical([1, 2, 1 << 33, CID_A, b"n", b""]),  # key id too large
        _canonical([1, 3, CID_A, CID_B, "text"]),  # noise not bytes
        _canonical([1, 3, CID_A, CID_B, b"n"]) + b"\x00",  # trailing byte
        _canonical([1, 3, CID_A, CID_B, b"nnnn"])[:-1],  # truncated
        _canonical([1, 4, CID_A, 0, b"x" * 16]),  # a 1-RTT packet is not a handshake
    ],
)
def test_bad_handshake_packets_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_handshake(data)


@pytest.mark.parametrize(
    "data",
    [
        _canonical([1, 4, CID_A, 0, b"x" * 15]),  # sealed shorter than the tag
        _canonical([1, 4, CID_A, 1 << 62, b"x" * 16]),  # pn too large
        _canonical([1, 4, CID_A, 0, b"x" * 16]) + b"\x00",
        _canonical([1, 4, CID_A, 0, b"x" * 20])[:-1],
        b"\x85\x01\x04\x48" + CID_A + b"\x18\x05" + b"\x50" + b"x" * 16,  # non-shortest pn
    ],
)
def test_bad_one_rtt_packets_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_one_rtt(data)


def test_oversize_noise_message_is_a_limit_error() -> None:
    with pytest.raises(WireError) as info:
        parse_handshake(encode_handshake(CID_A, CID_B, b"n" * 5000), max_noise_bytes=4096)
    assert info.value.code == "limit"


@given(st.binary(max_size=120))
def test_parsers_raise_only_wire_errors(data: bytes) -> None:
    for parse in (packet_type, parse_handshake, parse_one_rtt):
        with contextlib.suppress(WireError):
            parse(data)
