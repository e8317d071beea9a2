"""Fuzz targets of the transport wire (``spec/transport.md``), shaped like ``fuzz/targets.py``.

Each target takes arbitrary bytes. The allowed outcomes are "decoded" (and then the
target's round-trip property must hold) or a :class:`~foundation_p2p.errors.WireError`;
anything else escaping is a finding. ``TARGETS`` maps names to functions; registering
them with the atheris runner and the Hypothesis suite is ``fuzz/targets.py``'s business.
Seeds: ``fuzz/targets.py``'s ``seeds`` already walks every ``hex`` and ``plaintext`` of
``spec/vectors/*.json``, ``transport.json`` included.

- ``transport-frames``: ``decode_frames``; decoded frames re-encode to exactly the input.
- ``transport-handshake-packet``: ``parse_handshake``; a parsed handshake packet re-encodes
  to exactly the input (initial packets: their fields and padding length).
- ``transport-one-rtt``: ``parse_one_rtt``; the AAD is the header re-encoded and the
  packet is the AAD, the ``sealed`` head and ``sealed``.
- ``transport-open``: ``parse_one_rtt`` + ``PacketProtection.open`` with the keys of
  ``spec/vectors/transport.json`` + ``decode_frames`` (the seeds reach the AEAD).
- ``transport-connection``: ``Connection.receive_datagram`` on an established connection
  and ``Connection.accept`` on a fresh one: neither raises; the established connection
  stays established unless the input authenticated (it cannot, without the keys).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import WireError
from foundation_p2p.transport.connection import Connection
from foundation_p2p.transport.frames import bstr_head, decode_frames, encode_frames
from foundation_p2p.transport.packet import (
    ConnPacketType,
    PacketProtection,
    encode_handshake,
    one_rtt_prefix,
    parse_handshake,
    parse_one_rtt,
)

_VECTOR_KEY = bytes(range(0x10, 0x30))  # spec/vectors/transport.json's 1-RTT key and IV
_VECTOR_IV = bytes(range(0xA0, 0xAC))
_OPENER = PacketProtection(bytes(32), bytes(12), _VECTOR_KEY, _VECTOR_IV)


def fuzz_transport_frames(data: bytes) -> None:
    """``decode_frames``: decoded frames re-encode to exactly the input."""
    try:
        frames = decode_frames(data)
    except WireError:
        return
    assert encode_frames(frames) == data, "frames do not re-encode to the input"


def fuzz_transport_handshake_packet(data: bytes) -> None:
    """``parse_handshake``: a parsed packet re-encodes to the input."""
    try:
        packet = parse_handshake(data)
    except WireError:
        return
    if packet.ptype == ConnPacketType.HANDSHAKE:
        assert packet.dcid is not None
        assert encode_handshake(packet.dcid, packet.scid, packet.noise) == data
    else:
        assert packet.key_id is not None and data[0] == 0x86
        assert packet.noise in data and packet.scid in data


def fuzz_transport_one_rtt(data: bytes) -> None:
    """``parse_one_rtt``: the packet is exactly AAD || sealed head || sealed."""
    try:
        dcid, pn, aad, sealed = parse_one_rtt(data)
    except WireError:
        return
    assert aad == one_rtt_prefix(dcid, pn), "AAD differs from the re-encoded header"
    assert aad + bstr_head(len(sealed)) + sealed == data


def fuzz_transport_open(data: bytes) -> None:
    """Parse, open with the vectors' key and decode; only ``WireError`` may escape."""
    try:
        _dcid, pn, aad, sealed = parse_one_rtt(data)
        plaintext = _OPENER.open(pn, aad, sealed)
        decode_frames(plaintext)
    except WireError:
        return


class _Established:
    """An established connection pair, built once (lossless in-memory exchange)."""

    def __init__(self) -> None:
        rng = random.Random(7)

        def secret_bytes(n: int) -> bytes:
            return rng.randbytes(n)

        self.secret_bytes = secret_bytes
        self.keyring = Keyring(bytes(range(32)))
        self.server_identity = Identity.generate(secret_bytes)
        client_identity = Identity.generate(secret_bytes)
        self.now = 0.0
        self.client = Connection.connect(self.now, client_identity, self.keyring, secret_bytes)
        (initial,) = self.client.take_datagrams(self.now)
        self.server = Connection.accept(
            self.now, initial, self.server_identity, self.keyring, secret_bytes
        )
        for _ in range(10):
            for d in self.server.take_datagrams(self.now):
                self.client.receive_datagram(self.now, d)
            for d in self.client.take_datagrams(self.now):
                self.server.receive_datagram(self.now, d)
        assert self.client.is_established and self.server.is_established


_PAIR: list[_Established] = []


def fuzz_transport_connection(data: bytes) -> None:
    """``receive_datagram`` and ``accept`` never raise anything but (for accept) WireError."""
    if not _PAIR:
        _PAIR.append(_Established())
    pair = _PAIR[0]
    authenticated = pair.server.receive_datagram(pair.now, data)
    assert not authenticated, "a datagram without the keys authenticated"
    pair.server.take_datagrams(pair.now)
    assert pair.server.is_established
    try:
        Connection.accept(pair.now, data, pair.server_identity, pair.keyring, pair.secret_bytes)
    except WireError:
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "transport-frames": fuzz_transport_frames,
    "transport-handshake-packet": fuzz_transport_handshake_packet,
    "transport-one-rtt": fuzz_transport_one_rtt,
    "transport-open": fuzz_transport_open,
    "transport-connection": fuzz_transport_connection,
}
"""Target name -> function, for ``fuzz/targets.py`` to merge into its ``TARGETS``."""
