"""Unit tests of gossip packet protection: sealing, opening, and nonce uniqueness."""

from __future__ import annotations

import random

import pytest

from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring, key_id
from foundation_p2p.crypto.protection import (
    MAX_PACKET_NUMBER,
    GossipProtection,
    derive_subkey,
    nonce_for,
)
from foundation_p2p.errors import (
    AuthenticationError,
    ConfigError,
    MalformedError,
    ReplayError,
    UnknownKeyError,
    WireError,
)
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Ack, Ping, decode_frames, encode_frames
from foundation_p2p.wire.packet import parse_packet

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
EPOCH = 1_790_000_000_000
ALICE = bytes.fromhex("a1" * 16)
BOB = bytes.fromhex("b0" * 16)


def node(who: bytes = ALICE, epoch: int = EPOCH, key: bytes = KEY, **kw: int) -> GossipProtection:
    return GossipProtection(Keyring(key), who, epoch, **kw)


def test_seal_then_open_gives_the_frames_back() -> None:
    plaintext = encode_frames([Ping(1), Ack(2)])
    packet = node().seal(plaintext)
    header, opened = node(BOB).open(packet)
    assert (header.sender, header.boot_epoch, header.key_id, header.packet_number) == (
        ALICE,
        EPOCH,
        key_id(KEY),
        0,
    )
    assert opened == plaintext
    assert decode_frames(opened).frames == [Ping(1), Ack(2)]


def test_packet_numbers_count_from_zero_in_each_epoch() -> None:
    sender = node()
    numbers = [parse_packet(sender.seal(b"\x80"))[0].packet_number for _ in range(5)]
    assert numbers == [0, 1, 2, 3, 4]
    assert sender.next_packet_number == 5


def test_packet_numbers_never_wrap() -> None:
    sender = node()
    sender.next_packet_number = MAX_PACKET_NUMBER
    sender.seal(b"\x80")
    with pytest.raises(ConfigError, match="packet numbers exhausted"):
        sender.seal(b"\x80")


def test_wrong_key_is_unknown_key() -> None:
    packet = node(key=OTHER_KEY).seal(b"\x80")
    with pytest.raises(UnknownKeyError):
        node(BOB).open(packet)


def test_every_single_bit_flip_is_refused() -> None:
    packet = node().seal(encode_frames([Ping(7)]))
    codes: set[str] = set()
    for index in range(len(packet)):
        for bit in range(8):
            tampered = bytearray(packet)
            tampered[index] ^= 1 << bit
            receiver = node(BOB)
            with pytest.raises(WireError) as info:
                receiver.open(bytes(tampered))
            codes.add(info.value.code)
            assert len(receiver.replay) == 0
    # Flips in the sealed bytes fail authentication; flips in the header break its
    # shape, its version, its key id, or (in sender, epoch, pn) the AEAD again.
    assert "auth_failed" in codes
    assert codes <= {"auth_failed", "malformed", "unsupported_version", "unknown_key", "limit"}


def test_a_flipped_ciphertext_bit_is_auth_failed() -> None:
    packet = bytearray(node().seal(encode_frames([Ping(7)])))
    packet[-20] ^= 0x01
    with pytest.raises(AuthenticationError):
        node(BOB).open(bytes(packet))


def test_every_truncation_is_refused() -> None:
    packet = node().seal(encode_frames([Ping(7), Ack(8)]))
    for length in range(len(packet)):
        with pytest.raises(WireError) as info:
            node(BOB).open(packet[:length])
        # A shorter datagram is never well-formed CBOR for this layout.
        assert info.value.code == "malformed"


def test_a_shortened_sealed_field_is_auth_failed() -> None:
    # Re-encode the packet with the last ciphertext byte removed: well-formed, but the
    # tag no longer matches.
    items = cbor.decode(node().seal(encode_frames([Ping(7)])))
    items[6] = items[6][:-1]
    with pytest.raises(AuthenticationError):
        node(BOB).open(cbor.encode(items))


def test_a_replayed_packet_is_refused_and_the_original_still_counted_once() -> None:
    sender, receiver = node(), node(BOB)
    first = sender.seal(b"\x80")
    second = sender.seal(b"\x80")
    receiver.open(first)
    with pytest.raises(ReplayError):
        receiver.open(first)
    receiver.open(second)
    with pytest.raises(ReplayError):
        receiver.open(second)


def test_a_forged_packet_does_not_consume_its_packet_number() -> None:
    sender, receiver = node(), node(BOB)
    packet = sender.seal(b"\x80")
    forged = bytearray(packet)
    forged[-1] ^= 0x80
    with pytest.raises(AuthenticationError):
        receiver.open(bytes(forged))
    receiver.open(packet)


def test_two_boot_epochs_of_one_identity_never_share_a_key_and_nonce() -> None:
    identity = Identity(bytes(range(32)))
    first = node(identity.node_id, EPOCH)
    second = node(identity.node_id, EPOCH + 1)  # the restart
    assert derive_subkey(KEY, identity.node_id, EPOCH) != derive_subkey(
        KEY, identity.node_id, EPOCH + 1
    )
    used: set[tuple[bytes, bytes]] = set()
    for protection, epoch in ((first, EPOCH), (second, EPOCH + 1)):
        subkey = derive_subkey(KEY, identity.node_id, epoch)
        for _ in range(50):
            header = parse_packet(protection.seal(b"\x80"))[0]
            pair = (subkey, nonce_for(header.packet_number))
            assert pair not in used
            used.add(pair)
    # And a receiver that saw the first epoch accepts the restarted sender at pn 0 again.
    receiver = node(BOB)
    receiver.open(node(identity.node_id, EPOCH).seal(b"\x80"))
    receiver.open(node(identity.node_id, EPOCH + 1).seal(b"\x80"))


def test_a_thousand_senders_sharing_one_cluster_key_never_share_a_key_and_nonce() -> None:
    source = random.Random(1000)
    subkeys: set[bytes] = set()
    pairs: set[tuple[bytes, bytes]] = set()
    for _ in range(1000):
        identity = Identity.generate(source.randbytes)
        # Nodes started in the same millisecond share a boot epoch: only the node id differs.
        subkey = derive_subkey(KEY, identity.node_id, EPOCH)
        subkeys.add(subkey)
        for pn in range(3):
            pairs.add((subkey, nonce_for(pn)))
    assert len(subkeys) == 1000
    assert len(pairs) == 3000


def test_nonce_layout() -> None:
    assert nonce_for(0) == bytes(12)
    assert nonce_for(0x0102) == bytes(10) + b"\x01\x02"
    assert nonce_for(MAX_PACKET_NUMBER) == bytes(4) + b"\xff" * 8


def test_subkey_cache_is_bounded() -> None:
    receiver = node(BOB, max_cached_subkeys=2)
    for i in range(5):
        receiver.open(node(bytes([i]) * 16).seal(b"\x80"))
        assert len(receiver._openers) <= 2
    with pytest.raises(ConfigError):
        node(max_cached_subkeys=0)


def test_open_checks_the_header_before_the_key() -> None:
    packet = cbor.encode([1, 1, ALICE[:15], EPOCH, key_id(OTHER_KEY), 0, bytes(16)])
    with pytest.raises(MalformedError):
        node(BOB).open(packet)
