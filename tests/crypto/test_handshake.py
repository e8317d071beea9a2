"""The node-level handshake (``foundation_p2p/crypto/handshake.py``, ``spec/handshake.md``).

Each test names the sentence of the spec it checks. Failures must be the project's
``WireError`` subclasses, and a rejected message must leave the handshake able to take
the genuine one.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.crypto.handshake import (
    MESSAGE_SIZES,
    STATIC_SIGNING_CONTEXT,
    Handshake,
    NoiseStatic,
    TrafficKeys,
    UnexpectedPeerError,
    decode_identity_payload,
    derive_psk,
    encode_identity_payload,
    prologue_for,
)
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import (
    AuthenticationError,
    ConfigError,
    MalformedError,
    SignatureError,
    UnknownKeyError,
    WireError,
)
from foundation_p2p.wire import cbor

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ALICE = Identity(bytes(range(0x40, 0x60)))
BOB = Identity(bytes(range(0x60, 0x80)))
MALLORY = Identity(bytes(range(0x80, 0xA0)))


def secret(seed: int) -> Callable[[int], bytes]:
    """Deterministic key material for tests (production passes ``os.urandom``)."""
    counter = [seed]

    def secret_bytes(n: int) -> bytes:
        counter[0] += 1
        return (counter[0].to_bytes(4, "big") * 8)[:n]

    return secret_bytes


def copy_binding(forged: NoiseStatic, genuine: NoiseStatic) -> None:
    """Make ``forged`` announce ``genuine``'s identity, epoch and signature."""
    forged.identity_public_key = genuine.identity_public_key
    forged.boot_epoch = genuine.boot_epoch
    forged.signature = genuine.signature


def run(init: Handshake, resp: Handshake) -> list[bytes]:
    """Drive both sides to completion; the three messages."""
    m1 = init.next_message()
    assert m1 is not None
    resp.receive(m1)
    m2 = resp.next_message()
    assert m2 is not None
    init.receive(m2)
    m3 = init.next_message()
    assert m3 is not None
    resp.receive(m3)
    return [m1, m2, m3]


def pair(
    ring_i: Keyring | None = None, ring_r: Keyring | None = None, expected: bytes | None = None
) -> tuple[Handshake, Handshake]:
    ring_i = ring_i or Keyring(KEY)
    ring_r = ring_r or Keyring(KEY)
    init = Handshake.initiate(ALICE, ring_i, secret(1), expected)
    resp = Handshake.respond(BOB, ring_r, secret(2), init.key_id)
    return init, resp


def test_a_handshake_authenticates_both_node_ids_and_agrees_on_keys() -> None:
    init, resp = pair(expected=BOB.node_id)
    messages = run(init, resp)
    assert [len(m) for m in messages] == list(MESSAGE_SIZES) == [48, 223, 191]
    assert init.complete and resp.complete
    assert init.peer_node_id == BOB.node_id and resp.peer_node_id == ALICE.node_id
    assert init.peer_identity_key == BOB.public_key
    assert resp.peer_identity_key == ALICE.public_key
    a, b = init.keys(), resp.keys()
    assert isinstance(a, TrafficKeys)
    assert (a.send_key, a.send_iv, a.recv_key, a.recv_iv) == (
        b.recv_key,
        b.recv_iv,
        b.send_key,
        b.send_iv,
    )
    assert a.send_key != a.recv_key and a.send_iv != a.recv_iv
    assert len(a.send_key) == 32 and len(a.send_iv) == 12
    assert a.handshake_hash == b.handshake_hash
    # The keys work as the connection uses them: nonce = iv XOR packet number.
    pn = 7
    nonce = bytes(x ^ y for x, y in zip(a.send_iv, pn.to_bytes(12, "big"), strict=True))
    sealed = ChaCha20Poly1305(a.send_key).encrypt(nonce, b"data", b"header")
    assert ChaCha20Poly1305(b.recv_key).decrypt(nonce, sealed, b"header") == b"data"
    assert init.next_message() is None and resp.next_message() is None


def test_next_message_is_none_when_it_is_the_peers_turn() -> None:
    init, resp = pair()
    assert resp.next_message() is None
    m1 = init.next_message()
    assert init.next_message() is None
    assert m1 is not None
    resp.receive(m1)
    with pytest.raises(ConfigError, match="before the handshake is complete"):
        resp.keys()


def test_psk_is_hkdf_of_the_cluster_key_and_the_prologue_binds_the_key_id() -> None:
    ring = Keyring(KEY)
    init, resp = pair()
    assert init.psk == resp.psk == derive_psk(KEY) != KEY
    assert init.key_id == ring.primary_id
    assert init.prologue == b"foundation-p2p transport v1" + ring.primary_id.to_bytes(4, "big")
    assert prologue_for(ring.primary_id) == init.prologue


def test_a_prologue_with_another_key_id_fails_the_handshake() -> None:
    # "The prologue binds the key id": same PSK, a different announced id -> message 2 fails.
    init = Handshake(
        initiator=True,
        identity=ALICE,
        cluster_key=KEY,
        key_id=1,
        secret_bytes=secret(1),
        expected_peer=None,
        static=None,
    )
    resp = Handshake(
        initiator=False,
        identity=BOB,
        cluster_key=KEY,
        key_id=2,
        secret_bytes=secret(2),
        expected_peer=None,
        static=None,
    )
    m1 = init.next_message()
    assert m1 is not None
    with pytest.raises(AuthenticationError):
        resp.receive(m1)


def test_wrong_cluster_key_fails_cleanly_at_the_responder() -> None:
    # Same key id, different key (a misconfiguration): the PSK enters in message 3.
    init = Handshake(
        initiator=True,
        identity=ALICE,
        cluster_key=OTHER_KEY,
        key_id=Keyring(KEY).primary_id,
        secret_bytes=secret(1),
        expected_peer=None,
        static=None,
    )
    resp = Handshake.respond(BOB, Keyring(KEY), secret(2), init.key_id)
    m1 = init.next_message()
    assert m1 is not None
    resp.receive(m1)
    m2 = resp.next_message()
    assert m2 is not None
    init.receive(m2)
    m3 = init.next_message()
    assert m3 is not None
    # spec 3.2: the initiator completes on writing message 3 without knowing that the
    # responder holds the cluster key; its connection stays unconfirmed.
    assert init.complete
    with pytest.raises(AuthenticationError) as info:
        resp.receive(m3)
    assert type(info.value) is AuthenticationError and info.value.code == "auth_failed"
    assert not resp.complete and resp.peer_node_id is None


def test_unknown_key_id_is_refused() -> None:
    init = Handshake.initiate(ALICE, Keyring(OTHER_KEY), secret(1))
    with pytest.raises(UnknownKeyError, match="not in this node's keyring") as info:
        Handshake.respond(BOB, Keyring(KEY), secret(2), init.key_id)
    assert info.value.code == "unknown_key"


def test_a_rotated_keyring_picks_the_announced_key() -> None:
    old, new = KEY, OTHER_KEY
    ring_i = Keyring(new, [old])  # already rotated
    ring_r = Keyring(old, [new])  # not yet: still accepts the new key
    init, resp = pair(ring_i, ring_r)
    assert init.key_id == Keyring(new).primary_id
    run(init, resp)
    assert resp.psk == derive_psk(new)
    assert init.keys().send_key == resp.keys().recv_key


def test_a_forged_identity_signature_fails_with_signature_error() -> None:
    # Mallory replays Bob's identity payload with her own Noise static key.
    bob_static = NoiseStatic.generate(BOB, secret(10))
    forged = NoiseStatic.generate(MALLORY, secret(11))
    copy_binding(forged, bob_static)
    init = Handshake.initiate(ALICE, Keyring(KEY), secret(1))
    resp = Handshake.respond(MALLORY, Keyring(KEY), secret(2), init.key_id, static=forged)
    m1 = init.next_message()
    assert m1 is not None
    resp.receive(m1)
    m2 = resp.next_message()
    assert m2 is not None
    with pytest.raises(SignatureError, match="does not verify") as info:
        init.receive(m2)
    assert info.value.code == "bad_signature"
    assert init.peer_node_id is None and init.next_message() is None


def test_a_signature_without_the_context_label_fails() -> None:
    # The signature covers the label || static key || epoch, not the bare static key.
    static = NoiseStatic.generate(BOB, secret(10), 7)
    static.signature = BOB.sign(static.public + (7).to_bytes(8, "big"))
    init = Handshake.initiate(ALICE, Keyring(KEY), secret(1))
    resp = Handshake.respond(BOB, Keyring(KEY), secret(2), init.key_id, static=static)
    m1 = init.next_message()
    assert m1 is not None
    resp.receive(m1)
    m2 = resp.next_message()
    assert m2 is not None
    with pytest.raises(SignatureError):
        init.receive(m2)


def test_a_forged_initiator_identity_fails_at_the_responder() -> None:
    alice_static = NoiseStatic.generate(ALICE, secret(10))
    forged = NoiseStatic.generate(MALLORY, secret(11))
    copy_binding(forged, alice_static)
    init = Handshake.initiate(MALLORY, Keyring(KEY), secret(1), static=forged)
    resp = Handshake.respond(BOB, Keyring(KEY), secret(2), init.key_id)
    m1 = init.next_message()
    assert m1 is not None
    resp.receive(m1)
    m2 = resp.next_message()
    assert m2 is not None
    init.receive(m2)
    m3 = init.next_message()
    assert m3 is not None
    with pytest.raises(SignatureError):
        resp.receive(m3)
    assert not resp.complete


def test_expected_peer_mismatch_is_refused_and_the_genuine_peer_still_accepted() -> None:
    # Alice dials Bob; Mallory (who has the cluster key) answers first.
    init = Handshake.initiate(ALICE, Keyring(KEY), secret(1), BOB.node_id)
    mallory = Handshake.respond(MALLORY, Keyring(KEY), secret(3), init.key_id)
    bob = Handshake.respond(BOB, Keyring(KEY), secret(2), init.key_id)
    m1 = init.next_message()
    assert m1 is not None
    mallory.receive(m1)
    bob.receive(m1)
    forged = mallory.next_message()
    genuine = bob.next_message()
    assert forged is not None and genuine is not None
    with pytest.raises(UnexpectedPeerError, match=f"expected {BOB.node_id.hex()}") as info:
        init.receive(forged)
    assert info.value.code == "unexpected_peer"
    assert isinstance(info.value, AuthenticationError)
    assert init.next_message() is None  # still waiting for message 2
    init.receive(genuine)
    m3 = init.next_message()
    assert m3 is not None
    bob.receive(m3)
    assert init.peer_node_id == BOB.node_id and bob.peer_node_id == ALICE.node_id


@pytest.mark.parametrize("index", [0, 1, 2])
def test_truncated_or_padded_messages_are_malformed(index: int) -> None:
    init, resp = pair()
    messages = run(*pair())
    receivers = [resp, init, resp]
    for k in range(index):
        (init if k % 2 == 0 else resp).next_message()
        receivers[k].receive(messages[k])
    (init if index % 2 == 0 else resp).next_message()
    for bad in (messages[index][:-1], messages[index][:10], b"", messages[index] + b"\x00"):
        with pytest.raises(MalformedError, match=f"message {index + 1} is"):
            receivers[index].receive(bad)
    receivers[index].receive(messages[index])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_flipped_bit_in_any_message_fails_cleanly(index: int) -> None:
    messages = run(*pair())
    for pos in range(0, len(messages[index]), 3):
        init, resp = pair()
        receivers = [resp, init, resp]
        for k in range(index):
            (init if k % 2 == 0 else resp).next_message()
            receivers[k].receive(messages[k])
        (init if index % 2 == 0 else resp).next_message()
        bad = bytearray(messages[index])
        bad[pos] ^= 0x10
        with pytest.raises((AuthenticationError, MalformedError)):
            receivers[index].receive(bytes(bad))
        receivers[index].receive(messages[index])


def test_a_duplicate_of_the_last_message_is_ignored_and_last_sent_is_kept() -> None:
    init, resp = pair()
    m1 = init.next_message()
    assert m1 is not None
    resp.receive(m1)
    m2 = resp.next_message()
    resp.receive(m1)  # the initiator retransmitted: answer with last_sent()
    assert resp.duplicates == 1 and resp.last_sent() == m2


def test_a_message_out_of_turn_is_malformed() -> None:
    init, _ = pair()
    with pytest.raises(MalformedError, match="none was expected"):
        init.receive(bytes(MESSAGE_SIZES[1]))
    done_i, done_r = pair()
    messages = run(done_i, done_r)
    with pytest.raises(MalformedError, match="none was expected"):
        done_r.receive(messages[2][:-1] + bytes([messages[2][-1] ^ 1]))
    done_r.receive(messages[2])  # a copy of the last message: ignored
    assert done_r.duplicates == 1 and done_r.complete


def test_message_1_must_carry_an_empty_payload() -> None:
    from foundation_p2p.crypto.noise import HandshakeState

    init, resp = pair()
    noise = HandshakeState(
        initiator=True,
        prologue=init.prologue,
        s=os.urandom(32),
        psk=init.psk,
        secret_bytes=os.urandom,
    )
    m1 = noise.write_message(b"")
    assert len(m1) == MESSAGE_SIZES[0]
    with_payload = HandshakeState(
        initiator=True,
        prologue=init.prologue,
        s=os.urandom(32),
        psk=init.psk,
        secret_bytes=os.urandom,
    ).write_message(b"x")
    with pytest.raises(MalformedError):
        resp.receive(with_payload)
    resp.receive(m1)


def test_too_many_rejected_messages_fail_the_handshake() -> None:
    init, resp = pair()
    m1 = init.next_message()
    assert m1 is not None
    for n in range(resp.max_failures):
        with pytest.raises(AuthenticationError):
            resp.receive(bytes([n + 9]) * MESSAGE_SIZES[0])
    assert resp.failed
    with pytest.raises(AuthenticationError, match="failed"):
        resp.receive(m1)
    assert resp.next_message() is None


def test_the_noise_static_is_per_boot_when_given_and_fresh_otherwise() -> None:
    static = NoiseStatic.generate(ALICE, os.urandom)
    a = Handshake.initiate(ALICE, Keyring(KEY), os.urandom, static=static)
    b = Handshake.initiate(ALICE, Keyring(KEY), os.urandom, static=static)
    c = Handshake.initiate(ALICE, Keyring(KEY), os.urandom)
    d = Handshake.initiate(ALICE, Keyring(KEY), os.urandom)
    assert a.local_static == b.local_static == static.public
    assert len({static.public, c.local_static, d.local_static}) == 3
    # It is not derived from the identity key.
    fields = decode_identity_payload(static.payload(bytes(16)))
    assert fields.identity_public_key == ALICE.public_key and static.public != ALICE.public_key
    assert len(fields.signature) == 64 and STATIC_SIGNING_CONTEXT.endswith(b"\x00")


@pytest.mark.parametrize(
    "value",
    [
        [bytes(32)],
        [bytes(32), bytes(64), 1],
        [bytes(31), bytes(64)],
        [bytes(32), bytes(63)],
        ["x" * 32, bytes(64)],
        {1: 2},
        [bytes(32), bytes(8), bytes(64)],
        [bytes(32), bytes(8), bytes(64), bytes(15)],
        [bytes(32), 7, bytes(64), bytes(16)],
        [bytes(32), bytes(7), bytes(64), bytes(17)],
        [bytes(32), bytes(8), bytes(64), bytes(16), b""],
    ],
)
def test_identity_payload_shape_errors_are_malformed(value: object) -> None:
    with pytest.raises(MalformedError, match="identity payload"):
        decode_identity_payload(cbor.encode(value))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 2), st.binary(max_size=300), st.booleans())
def test_random_bytes_into_receive_raise_only_wire_errors(
    stage: int, data: bytes, exact_size: bool
) -> None:
    init, resp = pair()
    receivers = [resp, init, resp]
    messages = run(*pair())
    for k in range(stage):
        (init if k % 2 == 0 else resp).next_message()
        receivers[k].receive(messages[k])
    (init if stage % 2 == 0 else resp).next_message()
    if exact_size:
        data = (data + bytes(MESSAGE_SIZES[stage]))[: MESSAGE_SIZES[stage]]
    try:
        receivers[stage].receive(data)
    except WireError:
        receivers[stage].receive(messages[stage])  # unharmed
        return
    raise AssertionError("random bytes accepted")


# -- fuzz/targets_handshake.py: tests/fuzz runs its seeds and mutations; here, that it can fail


def _load_fuzz_targets() -> ModuleType:
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "foundation_fuzz_targets_handshake", root / "fuzz" / "targets_handshake.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


FUZZ = _load_fuzz_targets()


def test_fuzz_target_flags_a_forgery(monkeypatch: pytest.MonkeyPatch) -> None:
    # The harness can fail: a receive() that accepts anything is caught as a forgery.
    FUZZ._NODE.clear()
    monkeypatch.setattr(Handshake, "receive", lambda self, data: None)
    with pytest.raises(AssertionError, match="forged"):
        FUZZ.fuzz_handshake_receive(b"not a handshake message")
    FUZZ._NODE.clear()


# -- boot epoch and stateless reset token in the identity payload (spec/handshake.md 4) ---


def test_each_side_learns_the_peers_boot_epoch_and_reset_token() -> None:
    a_static = NoiseStatic.generate(ALICE, secret(10), 1_700_000_000_123)
    b_static = NoiseStatic.generate(BOB, secret(11), 5)
    init = Handshake.initiate(ALICE, Keyring(KEY), secret(1), BOB.node_id, static=a_static,
                              reset_token=b"A" * 16)
    resp = Handshake.respond(BOB, Keyring(KEY), secret(2), init.key_id, static=b_static,
                             reset_token=b"B" * 16)
    assert init.peer_epoch is None and resp.peer_reset_token is None
    run(init, resp)
    assert (init.peer_epoch, init.peer_reset_token) == (5, b"B" * 16)
    assert (resp.peer_epoch, resp.peer_reset_token) == (1_700_000_000_123, b"A" * 16)


def test_the_boot_epoch_is_signed_with_the_static_binding() -> None:
    # A replayed binding of an older boot, with the epoch rewritten, does not verify.
    static = NoiseStatic.generate(BOB, secret(10), 5)
    static.boot_epoch = 6
    init = Handshake.initiate(ALICE, Keyring(KEY), secret(1))
    resp = Handshake.respond(BOB, Keyring(KEY), secret(2), init.key_id, static=static)
    m1 = init.next_message()
    assert m1 is not None
    resp.receive(m1)
    m2 = resp.next_message()
    assert m2 is not None
    with pytest.raises(SignatureError, match="boot epoch"):
        init.receive(m2)
    assert init.peer_epoch is None


def test_without_a_reset_token_a_random_one_is_announced() -> None:
    init, resp = pair()
    run(init, resp)
    assert init.reset_token is not None and len(init.reset_token) == 16
    assert resp.peer_reset_token == init.reset_token
    init2, resp2 = pair()
    init2._secret_bytes = os.urandom  # another draw: another token
    run(init2, resp2)
    assert resp2.peer_reset_token != resp.peer_reset_token


@pytest.mark.parametrize("token", [b"", bytes(15), bytes(17)])
def test_a_reset_token_must_be_16_bytes(token: bytes) -> None:
    with pytest.raises(ConfigError, match="16 bytes"):
        Handshake.initiate(ALICE, Keyring(KEY), secret(1), reset_token=token)
    with pytest.raises(ConfigError, match="16 bytes"):
        NoiseStatic.generate(ALICE, secret(1)).payload(token)


def test_a_boot_epoch_beyond_64_bits_is_refused() -> None:
    with pytest.raises(ConfigError, match="64-bit"):
        NoiseStatic.generate(ALICE, secret(1), 1 << 64)
    assert len(encode_identity_payload(bytes(32), (1 << 64) - 1, bytes(64), bytes(16))) == 127
