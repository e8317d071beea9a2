"""Unit tests of the keyring (file format, errors, rotation) and of node identities."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from foundation_p2p.crypto.identity import Identity, node_id_from_public_key, verify_signature
from foundation_p2p.crypto.keyring import HEADER_LINE, Keyring, key_id
from foundation_p2p.crypto.protection import GossipProtection
from foundation_p2p.errors import KeyringError, StorageError, UnknownKeyError
from foundation_p2p.wire import cbor

K1 = bytes(range(32))
K2 = bytes(range(32, 64))
K3 = bytes(range(64, 96))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


# -- keyring -----------------------------------------------------------------------------


def test_key_id_is_32_bits_and_depends_on_the_key() -> None:
    ids = {key_id(k) for k in (K1, K2, K3)}
    assert len(ids) == 3
    assert all(0 <= i < 1 << 32 for i in ids)


def test_text_round_trip_keeps_primary_and_accepted_in_order() -> None:
    ring = Keyring(K1, [K2, K3])
    text = ring.to_text()
    assert text.splitlines() == [
        HEADER_LINE,
        f"primary {b64(K1)}",
        f"accept {b64(K2)}",
        f"accept {b64(K3)}",
    ]
    again = Keyring.from_text(text)
    assert (again.primary, again.accepted, again.key_ids()) == (K1, [K2, K3], ring.key_ids())


def test_generate_draws_the_key_from_the_byte_source() -> None:
    ring = Keyring.generate(lambda n: bytes([7]) * n)
    assert ring.primary == bytes([7]) * 32
    assert ring.key_for(ring.primary_id) == ring.primary
    assert ring.key_for(ring.primary_id ^ 1) is None


def test_the_primary_listed_again_as_accepted_counts_once() -> None:
    ring = Keyring(K1, [K1, K2])
    assert ring.accepted == [K2]
    assert len(ring.key_ids()) == 2


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("", "ring.txt: ", "empty keyring file"),
        (f"{HEADER_LINE}\n", "ring.txt: ", "no primary key"),
        (f"nonsense\nprimary {b64(K1)}\n", "ring.txt:1: ", "expected the header"),
        (
            f"{HEADER_LINE}\n# c\n\nprimary {b64(K1)}\nprimary {b64(K2)}\n",
            "ring.txt:5: ",
            "a second primary key",
        ),
        (
            f"{HEADER_LINE}\nprimary {b64(K1)}\naccept {b64(K2)[:-4]}\n",
            "ring.txt:3: ",
            "must be 32 bytes, this one is 30",
        ),
        (f"{HEADER_LINE}\nprimary %%%\n", "ring.txt:2: ", "not valid base64"),
        (f"{HEADER_LINE}\nkey {b64(K1)}\n", "ring.txt:2: ", "expected 'primary <base64>'"),
    ],
)
def test_keyring_errors_name_file_line_and_problem(text: str, where: str, problem: str) -> None:
    with pytest.raises(KeyringError) as info:
        Keyring.from_text(text, source="ring.txt")
    assert str(info.value).startswith(where)
    assert problem in str(info.value)


def test_from_file_reads_and_names_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "cluster.keyring"
    path.write_text(Keyring(K1, [K2]).to_text(), encoding="utf-8")
    assert Keyring.from_file(str(path)).accepted == [K2]
    with pytest.raises(KeyringError, match=r"missing\.keyring: cannot read the keyring"):
        Keyring.from_file(str(tmp_path / "missing.keyring"))
    binary = tmp_path / "binary.keyring"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(KeyringError, match="not UTF-8"):
        Keyring.from_file(str(binary))
    bad = tmp_path / "bad.keyring"
    bad.write_text(f"{HEADER_LINE}\nprimary short\n", encoding="utf-8")
    with pytest.raises(KeyringError, match=rf"^{bad}:2: "):
        Keyring.from_file(str(bad))


def test_constructor_refuses_wrong_key_sizes() -> None:
    with pytest.raises(KeyringError, match="primary key must be 32 bytes"):
        Keyring(K1[:31])
    with pytest.raises(KeyringError, match="accepted key 2 must be 32 bytes"):
        Keyring(K1, [K2, b"short"])


def _sealer(ring: Keyring, who: int, epoch: int = 1) -> GossipProtection:
    return GossipProtection(ring, bytes([who]) * 16, epoch)


def test_rotation_steps_keep_every_pair_of_nodes_talking() -> None:
    # spec/keyring.md, "Rotation": add the new key as accepted everywhere, then make it
    # primary everywhere, then remove the old key. At each step, nodes at adjacent steps
    # open each other's packets.
    steps = [Keyring(K1), Keyring(K1, [K2]), Keyring(K2, [K1]), Keyring(K2)]
    for i, a in enumerate(steps):
        for j, b in enumerate(steps):
            if abs(i - j) > 1:
                continue
            sender = _sealer(a, 1)
            receiver = _sealer(b, 2)
            receiver.open(sender.seal(b"\x80"))


def test_after_rotation_the_new_key_seals_and_the_old_key_still_opens() -> None:
    old_ring = Keyring(K1)
    old_node = _sealer(old_ring, 1)
    rotating = _sealer(old_ring, 2)
    rotating.set_keyring(old_ring.rotated(K2))
    packet = rotating.seal(b"\x80")
    header, _ = _sealer(Keyring(K2), 3).open(packet)
    assert header.key_id == key_id(K2)
    # A packet sealed with the old key still opens at the rotated node...
    rotating.open(old_node.seal(b"\x80"))
    # ...and is refused once the old key is removed.
    rotating.set_keyring(Keyring(K2))
    with pytest.raises(UnknownKeyError):
        rotating.open(old_node.seal(b"\x80"))


def test_a_node_without_the_new_key_refuses_its_packets() -> None:
    new_node = _sealer(Keyring(K2), 1)
    with pytest.raises(UnknownKeyError, match="not in the keyring"):
        _sealer(Keyring(K1), 2).open(new_node.seal(b"\x80"))


# -- identity ----------------------------------------------------------------------------


def test_identity_from_a_byte_source_and_its_node_id() -> None:
    source = random.Random(5)
    identity = Identity.generate(source.randbytes)
    assert len(identity.seed) == 32 and len(identity.public_key) == 32
    assert identity.node_id == node_id_from_public_key(identity.public_key)
    assert len(identity.node_id) == 16
    again = Identity(identity.seed)
    assert again.node_id == identity.node_id
    other = Identity.generate(source.randbytes)
    assert other.node_id != identity.node_id


def test_identity_file_round_trip_is_the_cbor_pair() -> None:
    identity = Identity(bytes(range(32)))
    stored = identity.to_bytes()
    assert cbor.decode(stored) == [1, bytes(range(32))]
    assert Identity.from_bytes(stored).public_key == identity.public_key


def test_identity_file_errors_name_the_source() -> None:
    with pytest.raises(StorageError, match=r"^data/identity: not an identity file"):
        Identity.from_bytes(b"\x01", source="data/identity")
    with pytest.raises(StorageError, match=r"^data/identity: not an identity file: "):
        Identity.from_bytes(b"\x82\x01", source="data/identity")


def test_signatures_verify_only_for_the_signed_bytes_and_key() -> None:
    a = Identity(bytes(range(32)))
    b = Identity(bytes(range(1, 33)))
    sig = a.sign(b"join n1")
    assert verify_signature(a.public_key, sig, b"join n1")
    assert not verify_signature(a.public_key, sig, b"join n2")
    assert not verify_signature(b.public_key, sig, b"join n1")
    assert not verify_signature(b"short", sig, b"join n1")


def test_identity_refuses_a_wrong_seed_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Identity(bytes(31))
