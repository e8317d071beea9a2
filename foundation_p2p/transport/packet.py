"""Connection packets: the handshake packets and the protected 1-RTT packet.

They share the gossip packet's first two elements (version 1, then the packet type), so one
look at a datagram's first three bytes demultiplexes gossip from connections
(:func:`packet_type`). Layouts (``spec/transport.md`` section 2)::

    initial   = [1, 2, key-id: uint, scid: bstr .size 8, noise: bstr, padding: bstr]
    handshake = [1, 3, dcid: bstr .size 8, scid: bstr .size 8, noise: bstr] messages 2 and 3
    one-rtt   = [1, 4, dcid: bstr .size 8, pn: uint, sealed: bstr]

The initial packet carries Noise message 1 and is padded to at least ``MIN_INITIAL_BYTES``
(1200) with zero bytes, as QUIC pads its client Initial: a responder answers only datagrams
that large, so it never sends more than it received before the client proves its address
(RFC 9000 section 8.1). Handshake packets carry messages 2 and 3.

Handshake packets are not sealed: the Noise messages protect themselves (and message 1
carries nothing secret). A 1-RTT packet's ``sealed`` is ChaCha20-Poly1305 under the
direction's key from :class:`~foundation_p2p.crypto.handshake.TrafficKeys`, nonce = the
12-byte IV XOR the packet number (left-padded), associated data = every byte before the
``sealed`` byte string's head.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from foundation_p2p.errors import (
    AuthenticationError,
    LimitError,
    MalformedError,
    UnsupportedVersionError,
)
from foundation_p2p.transport.frames import _bstr, _uint, bstr_head, uint_bytes

PROTOCOL_VERSION = 1
CID_BYTES = 8
"""Connection ids are 8 random bytes chosen by the side that receives on them."""
AEAD_TAG_BYTES = 16
MAX_PACKET_NUMBER = (1 << 62) - 1
MAX_KEY_ID = (1 << 32) - 1
MAX_DATAGRAM_BYTES = 65_507
MIN_INITIAL_BYTES = 1200
"""An initial packet is at least this long (anti-amplification padding)."""


class ConnPacketType(IntEnum):
    """Packet types of protocol version 1 (1 is gossip, ``spec/wire.md``)."""

    GOSSIP = 1
    INITIAL = 2
    HANDSHAKE = 3
    ONE_RTT = 4


ONE_RTT_OVERHEAD = 3 + 1 + CID_BYTES + 9 + 3 + AEAD_TAG_BYTES
"""Upper bound on a 1-RTT packet's bytes beyond its plaintext (with a 9-byte pn)."""


def packet_type(data: bytes) -> int:
    """The packet type of a datagram of protocol version 1 (gossip or a connection packet).

    Reads only the first three bytes: an array head, version 1, a small type. Raises
    :class:`UnsupportedVersionError` when element 0 is another small uint and
    :class:`MalformedError` otherwise. The packet's own parser checks the rest.
    """
    if len(data) < 3 or data[0] & 0xE0 != 0x80:
        raise MalformedError("packet: not a CBOR array")
    if data[1] != PROTOCOL_VERSION:
        if data[1] < 24:
            raise UnsupportedVersionError(
                f"packet: unsupported protocol version {data[1]}", data[1]
            )
        raise MalformedError("packet: the version must be a small unsigned integer")
    ptype = data[2]
    if not 1 <= ptype <= 4:
        raise MalformedError(f"packet: unknown packet type (CBOR byte {ptype:#04x})")
    return ptype


@dataclass(slots=True)
class HandshakePacket:
    """A parsed INITIAL or HANDSHAKE packet (nothing in it is authenticated yet)."""

    ptype: int
    key_id: int | None
    """INITIAL only: the cluster key whose PSK the client used."""
    dcid: bytes | None
    """HANDSHAKE only: the receiver's connection id."""
    scid: bytes
    """The sender's connection id: where the receiver addresses its replies."""
    noise: bytes
    """The Noise handshake message."""


def encode_initial(
    key_id: int, scid: bytes, noise: bytes, min_bytes: int = MIN_INITIAL_BYTES
) -> bytes:
    """``[1, 2, key-id, scid, noise, padding]``: the client's first packet, padded with
    zero bytes to at least ``min_bytes``."""
    if len(scid) != CID_BYTES or not 0 <= key_id <= MAX_KEY_ID:
        raise MalformedError("initial packet: bad connection id or key id")
    body = b"\x86\x01\x02" + uint_bytes(key_id) + b"\x48" + scid + bstr_head(len(noise)) + noise
    need = min_bytes - len(body)
    # the smallest padding whose bytes plus its own head reach ``need`` (the head grows with
    # the length, so at a head-size boundary the packet ends up one byte longer)
    pad = max(0, need - 5)
    while pad + len(bstr_head(pad)) < need:
        pad += 1
    return body + bstr_head(pad) + bytes(pad)


def encode_handshake(dcid: bytes, scid: bytes, noise: bytes) -> bytes:
    """``[1, 3, dcid, scid, noise]``: Noise messages 2 and 3."""
    if len(scid) != CID_BYTES or len(dcid) != CID_BYTES:
        raise MalformedError("handshake packet: connection ids must be 8 bytes")
    return b"\x85\x01\x03\x48" + dcid + b"\x48" + scid + bstr_head(len(noise)) + noise


def _cid(data: bytes, pos: int) -> tuple[bytes, int]:
    cid, pos = _bstr(data, pos)
    if len(cid) != CID_BYTES:
        raise MalformedError(f"packet: connection id of {len(cid)} bytes, expected 8")
    return cid, pos


def parse_handshake(data: bytes, max_noise_bytes: int = 4096) -> HandshakePacket:
    """Parse an INITIAL or HANDSHAKE packet; raises only ``WireError`` subclasses.

    The size rule for initial packets (``MIN_INITIAL_BYTES``) is the receiver's to apply.
    """
    if len(data) > MAX_DATAGRAM_BYTES:
        raise LimitError(f"packet: {len(data)} bytes exceeds {MAX_DATAGRAM_BYTES}")
    ptype = packet_type(data)
    if ptype == ConnPacketType.INITIAL:
        if data[0] != 0x86:
            raise MalformedError("initial packet: expected a 6-element array")
    elif ptype == ConnPacketType.HANDSHAKE:
        if data[0] != 0x85:
            raise MalformedError("handshake packet: expected a 5-element array")
    else:
        raise MalformedError(f"packet type {ptype} is not a handshake packet")
    try:
        pos = 3
        key_id: int | None = None
        dcid: bytes | None = None
        if ptype == ConnPacketType.INITIAL:
            key_id, pos = _uint(data, pos)
            if key_id > MAX_KEY_ID:
                raise MalformedError("initial packet: key id larger than 32 bits")
        else:
            dcid, pos = _cid(data, pos)
        scid, pos = _cid(data, pos)
        noise, pos = _bstr(data, pos)
        if ptype == ConnPacketType.INITIAL:
            _padding, pos = _bstr(data, pos)
    except IndexError:
        raise MalformedError("handshake packet: truncated") from None
    if pos != len(data):
        raise MalformedError("handshake packet: trailing bytes after the last element")
    if len(noise) > max_noise_bytes:
        raise LimitError(f"handshake packet: noise message longer than {max_noise_bytes}")
    return HandshakePacket(ptype, key_id, dcid, scid, noise)


def one_rtt_prefix(dcid: bytes, pn: int) -> bytes:
    """The 1-RTT packet bytes before ``sealed``'s head: the associated data."""
    return b"\x85\x01\x04\x48" + dcid + uint_bytes(pn)


def parse_one_rtt(data: bytes) -> tuple[bytes, int, bytes, bytes]:
    """Split a 1-RTT packet into ``(dcid, pn, aad, sealed)``; nothing is authenticated yet.

    Raises :class:`MalformedError` (or :class:`LimitError` for an oversize datagram).
    """
    if len(data) > MAX_DATAGRAM_BYTES:
        raise LimitError(f"packet: {len(data)} bytes exceeds {MAX_DATAGRAM_BYTES}")
    if data[:4] != b"\x85\x01\x04\x48" or len(data) < 14 + AEAD_TAG_BYTES:
        raise MalformedError("1-RTT packet: bad header")
    try:
        pn, pos = _uint(data, 12)
        aad_end = pos
        sealed, pos = _bstr(data, pos)
    except IndexError:
        raise MalformedError("1-RTT packet: truncated") from None
    if pos != len(data):
        raise MalformedError("1-RTT packet: trailing bytes after sealed")
    if pn > MAX_PACKET_NUMBER:
        raise MalformedError("1-RTT packet: packet number exceeds 2^62-1")
    if len(sealed) < AEAD_TAG_BYTES:
        raise MalformedError("1-RTT packet: sealed shorter than the AEAD tag")
    return data[4:12], pn, data[:aad_end], sealed


class PacketProtection:
    """Seals and opens 1-RTT packets of one direction pair (ChaCha20-Poly1305).

    ``nonce = iv XOR pn`` (the packet number left-padded to 12 bytes, as QUIC does); each
    direction has its own key and IV, so the two sides never share a (key, nonce) pair.
    """

    __slots__ = ("_open", "_recv_iv", "_seal", "_send_iv")

    def __init__(self, send_key: bytes, send_iv: bytes, recv_key: bytes, recv_iv: bytes) -> None:
        if len(send_iv) != 12 or len(recv_iv) != 12:
            raise MalformedError("packet protection: IVs must be 12 bytes")
        self._seal = ChaCha20Poly1305(send_key)
        self._open = ChaCha20Poly1305(recv_key)
        self._send_iv = int.from_bytes(send_iv, "big")
        self._recv_iv = int.from_bytes(recv_iv, "big")

    def seal(self, dcid: bytes, pn: int, plaintext: bytes) -> bytes:
        """A complete 1-RTT packet carrying ``plaintext`` (encoded frames)."""
        prefix = b"\x85\x01\x04\x48" + dcid + uint_bytes(pn)
        nonce = (self._send_iv ^ pn).to_bytes(12, "big")
        sealed = self._seal.encrypt(nonce, plaintext, prefix)
        return prefix + bstr_head(len(sealed)) + sealed

    def open(self, pn: int, aad: bytes, sealed: bytes) -> bytes:
        """The plaintext of a received packet; :class:`AuthenticationError` if it fails."""
        try:
            return self._open.decrypt((self._recv_iv ^ pn).to_bytes(12, "big"), sealed, aad)
        except InvalidTag:
            raise AuthenticationError("1-RTT packet: AEAD authentication failed") from None
