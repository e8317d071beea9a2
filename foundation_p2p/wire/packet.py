"""The gossip packet: a CBOR array holding the header and the sealed frames.

Layout (``spec/wire.md``, section "Gossip packet")::

    gossip-packet = [version: 1, type: 1, sender: bstr .size 16, epoch: uint,
                     key-id: uint, pn: uint, sealed: bstr]

The associated data of the AEAD is every byte of the packet before the ``sealed`` byte
string's head: the array head and the six header fields exactly as sent. Receivers read
the version first; an array whose first element is another version raises
:class:`~foundation_p2p.errors.UnsupportedVersionError` and is dropped and counted (no
answer is sent: an unauthenticated reply could be used to reflect traffic).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from foundation_p2p.addresses import NODE_ID_BYTES
from foundation_p2p.errors import LimitError, MalformedError, UnsupportedVersionError
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import MAX_UINT64, expect_bytes, expect_uint
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits

PROTOCOL_VERSION = 1
"""The one protocol version this code speaks (``spec/README.md``, "Versions")."""

AEAD_TAG_BYTES = 16
MAX_KEY_ID = (1 << 32) - 1


class PacketType(IntEnum):
    """Packet types of protocol version 1."""

    GOSSIP = 1
    """Cluster-key sealed gossip (membership, health summaries)."""


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~4x, per packet
class GossipHeader:
    """The clear-text header of a gossip packet, authenticated as associated data."""

    sender: bytes
    """The sender's node id (16 bytes)."""
    boot_epoch: int
    """The sender's boot epoch: strictly larger at every start of the same identity."""
    key_id: int
    """Which keyring key sealed the packet (``Keyring.key_id``)."""
    packet_number: int
    """Per (sender, epoch) counter; also the AEAD nonce. Never repeats within an epoch."""

    def encode_prefix(self) -> bytes:
        """The packet bytes before ``sealed``: the AEAD associated data."""
        return (
            b"\x87"
            + cbor.encode(PROTOCOL_VERSION)
            + cbor.encode(int(PacketType.GOSSIP))
            + (
                cbor.encode(self.sender)
                + cbor.encode(self.boot_epoch)
                + cbor.encode(self.key_id)
                + cbor.encode(self.packet_number)
            )
        )


def _bstr_head_len(length: int) -> int:
    if length < 24:
        return 1
    if length < 0x100:
        return 2
    if length < 0x10000:
        return 3
    if length < 0x100000000:
        return 5
    return 9


def _bstr_head(length: int) -> bytes:
    if length < 24:
        return bytes([0x40 | length])
    if length < 0x100:
        return bytes([0x58, length])
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    return b"\x5a" + length.to_bytes(4, "big")


def assemble_packet(prefix: bytes, sealed: bytes) -> bytes:
    """Join a header prefix (from :meth:`GossipHeader.encode_prefix`) and sealed bytes."""
    return prefix + _bstr_head(len(sealed)) + sealed


def _uint_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """The shortest-form unsigned integer at ``pos`` and the position after it, or None."""
    head = data[pos]
    if head < 24:
        return head, pos + 1
    if head == 0x18:
        value = data[pos + 1]
        return (value, pos + 2) if value >= 24 else None
    if head == 0x19:
        value = int.from_bytes(data[pos + 1 : pos + 3], "big")
        return (value, pos + 3) if value >= 0x100 else None
    if head == 0x1A:
        value = int.from_bytes(data[pos + 1 : pos + 5], "big")
        return (value, pos + 5) if value >= 0x10000 else None
    if head == 0x1B:
        value = int.from_bytes(data[pos + 1 : pos + 9], "big")
        return (value, pos + 9) if value >= 0x100000000 else None
    return None


_V1_GOSSIP_START = b"\x87\x01\x01\x50"  # array(7), version 1, type gossip, bstr(16)


def _parse_v1_header(data: bytes) -> tuple[GossipHeader, bytes, bytes] | None:
    """Read a well-formed version-1 gossip packet directly from its bytes, or return None.

    The hot path: byte-for-byte the layout of ``spec/wire.md``, every integer in its
    shortest form, the sealed byte string filling the rest of the datagram. Any deviation
    returns None and the caller takes the general path.
    """
    if len(data) < 24 + AEAD_TAG_BYTES or data[:4] != _V1_GOSSIP_START:
        return None
    try:
        epoch = _uint_at(data, 20)
        if epoch is None:
            return None
        key_id = _uint_at(data, epoch[1])
        if key_id is None or key_id[0] > MAX_KEY_ID:
            return None
        pn = _uint_at(data, key_id[1])
        if pn is None:
            return None
        pos = pn[1]
        head = data[pos]
        if 0x40 <= head < 0x58:
            length, start = head - 0x40, pos + 1
        elif head == 0x58:
            length, start = data[pos + 1], pos + 2
            if length < 24:
                return None
        elif head == 0x59:
            length, start = int.from_bytes(data[pos + 1 : pos + 3], "big"), pos + 3
            if length < 0x100:
                return None
        elif head == 0x5A:
            length, start = int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
            if length < 0x10000:
                return None
        else:
            return None
    except IndexError:
        return None
    if start + length != len(data) or length < AEAD_TAG_BYTES:
        return None
    header = GossipHeader(data[4:20], epoch[0], key_id[0], pn[0])
    return header, data[:pos], data[start:]


def parse_packet(
    data: bytes, limits: WireLimits = DEFAULT_LIMITS
) -> tuple[GossipHeader, bytes, bytes]:
    """Split a received datagram into ``(header, associated_data, sealed)``.

    Raises :class:`LimitError` for an oversize datagram, :class:`UnsupportedVersionError`
    for another protocol version, and :class:`MalformedError` for anything else wrong.
    Nothing is authenticated yet: the caller opens ``sealed`` before trusting the header.
    """
    if len(data) > limits.max_packet_bytes:
        raise LimitError(f"packet: {len(data)} bytes exceeds {limits.max_packet_bytes}")
    fast = _parse_v1_header(data)
    if fast is not None:
        return fast
    # Anything the fast path does not recognise goes through the general decoder, which
    # names the problem precisely (or accepts it: the two agree on every valid packet).
    if not data or data[0] & 0xE0 != 0x80:
        raise MalformedError("packet: not a CBOR array")
    value = cbor.decode(data, limits)
    if type(value) is not list or not value:
        raise MalformedError("packet: not a CBOR array")
    version = value[0]
    if type(version) is not int or version < 0:
        raise MalformedError("packet: the version must be an unsigned integer")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersionError(f"packet: unsupported protocol version {version!r}", version)
    if len(value) != 7:
        raise MalformedError(f"packet: expected 7 elements, got {len(value)}")
    if value[1] != PacketType.GOSSIP or type(value[1]) is not int:
        raise MalformedError(f"packet: unknown packet type {value[1]!r}")
    sender = expect_bytes(value[2], "packet.sender", size=NODE_ID_BYTES)
    epoch = expect_uint(value[3], "packet.epoch")
    key_id = expect_uint(value[4], "packet.key_id")
    if key_id > MAX_KEY_ID:
        raise MalformedError("packet.key_id: larger than 32 bits")
    pn = expect_uint(value[5], "packet.pn")
    if pn > MAX_UINT64:
        raise MalformedError("packet.pn: larger than 64 bits")
    sealed = expect_bytes(value[6], "packet.sealed")
    if len(sealed) < AEAD_TAG_BYTES:
        raise MalformedError(f"packet.sealed: {len(sealed)} bytes is shorter than the AEAD tag")
    aad = data[: len(data) - len(sealed) - _bstr_head_len(len(sealed))]
    return GossipHeader(sender, epoch, key_id, pn), aad, sealed


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~4x, per packet
class GossipPacket:
    """A gossip packet's decoded content: who sent it and its frames.

    The simulator's ``messages`` mode hands these between nodes directly, skipping
    encoding and sealing; ``bytes`` mode (the production path) never builds them on the
    receive side.
    """

    sender: bytes
    """The sender's node id."""
    boot_epoch: int
    """The sender's boot epoch."""
    frames: tuple[object, ...]
    """The frames, in order (objects of the classes in ``FRAME_TYPES``)."""
