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
- ``transport-endpoint``: ``TransportEndpoint.handle_datagram`` on an endpoint holding one
  established connection (section 11.3): it never raises; the connection ends only for a
  datagram whose last 16 bytes are the reset token its peer announced (a forged reset is
  impossible without it); whatever the endpoint answers is a 31-byte stateless reset, only
  to a 1-RTT-shaped input longer than that. (Registration in ``fuzz/targets.py``'s
  ``TARGETS`` is pending; ``tests/transport/test_restart.py`` runs it under Hypothesis.)
"""

from __future__ import annotations

import random
from collections.abc import Callable

from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import WireError
from foundation_p2p.transport.connection import Connection
from foundation_p2p.transport.endpoint import TransportEndpoint
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


class _Endpoints:
    """Two endpoints with one established connection, built once (in-memory exchange)."""

    ADDR_A = ("10.0.0.1", 1)
    ADDR_B = ("10.0.0.2", 1)

    def __init__(self) -> None:
        rng = random.Random(11)

        def secret_bytes(n: int) -> bytes:
            return rng.randbytes(n)

        keyring = Keyring(bytes(range(32)))
        self.a = TransportEndpoint(Identity.generate(secret_bytes), keyring, secret_bytes,
                                   epoch=1)
        self.b = TransportEndpoint(Identity.generate(secret_bytes), keyring, secret_bytes,
                                   epoch=2)
        self.now = 0.0
        self.a.connect(self.now, self.b.node_id, self.ADDR_B)
        for _ in range(10):
            for _addr, d in self.a.take_datagrams(self.now):
                self.b.handle_datagram(self.now, self.ADDR_A, d)
            for _addr, d in self.b.take_datagrams(self.now):
                self.a.handle_datagram(self.now, self.ADDR_B, d)
        conn = self.a.connection(self.b.node_id)
        assert conn is not None and conn.is_established and conn.peer_reset_token is not None
        self.token = conn.peer_reset_token
        self.a.take_events()


_ENDPOINTS: list[_Endpoints] = []


def fuzz_transport_endpoint(data: bytes) -> None:
    """``TransportEndpoint.handle_datagram``: never raises; only the peer's reset token
    ends the connection; answers are 31-byte resets to longer 1-RTT-shaped inputs."""
    if not _ENDPOINTS:
        _ENDPOINTS.append(_Endpoints())
    pair = _ENDPOINTS[0]
    pair.now += 0.001
    pair.a.handle_datagram(pair.now, pair.ADDR_B, data)
    held = pair.a.connection(pair.b.node_id)
    ours = held.remote_cid if held is not None else None
    for _addr, out in pair.a.take_datagrams(pair.now):
        if out[4:12] != ours:  # not the connection's own packet: a stateless reset
            assert len(out) == 31 and out[:4] == b"\x85\x01\x04\x48", "not a reset"
            assert len(data) > 31 and data[:4] == b"\x85\x01\x04\x48", "reset to a small input"
    conn = pair.a.connection(pair.b.node_id)
    if conn is None or not conn.is_established:
        assert data[-16:] == pair.token, "the connection ended without its reset token"
        _ENDPOINTS.clear()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "transport-frames": fuzz_transport_frames,
    "transport-handshake-packet": fuzz_transport_handshake_packet,
    "transport-one-rtt": fuzz_transport_one_rtt,
    "transport-open": fuzz_transport_open,
    "transport-connection": fuzz_transport_connection,
    "transport-endpoint": fuzz_transport_endpoint,
}
"""Target name -> function, for ``fuzz/targets.py`` to merge into its ``TARGETS``."""
