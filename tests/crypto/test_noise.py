"""Noise (``foundation_p2p/crypto/noise.py``): interop with ``noiseprotocol`` and failures.

Interop: our :class:`HandshakeState` against PyPI ``noiseprotocol`` (an independent
implementation) in both roles, with transport messages both ways after ``split``. Then the
failure cases: a wrong PSK, a flipped bit anywhere in any handshake message, truncation,
random bytes; each fails with :class:`AuthenticationError` or :class:`MalformedError` only,
and leaves the state as it was (the genuine message still completes the handshake).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st
from noise.connection import Keypair, NoiseConnection

from foundation_p2p.crypto.noise import (
    MAX_MESSAGE_LEN,
    MAX_NONCE,
    PROTOCOL_NAME,
    CipherState,
    HandshakeState,
    x25519_public,
)
from foundation_p2p.errors import AuthenticationError, ConfigError, MalformedError, WireError

PSK = bytes(range(100, 132))
PROLOGUE = b"test prologue"


def _counter_bytes(start: int) -> Callable[[int], bytes]:
    """Deterministic ``secret_bytes`` for tests: distinct 32-byte values."""
    state = [start]

    def secret_bytes(n: int) -> bytes:
        state[0] += 1
        return (state[0].to_bytes(4, "big") * ((n + 3) // 4))[:n]

    return secret_bytes


def ours(
    initiator: bool, *, psk: bytes = PSK, seed: int = 0, max_failures: int = 8
) -> HandshakeState:
    secret = _counter_bytes(1000 * seed + (0 if initiator else 500))
    return HandshakeState(
        initiator=initiator,
        prologue=PROLOGUE,
        s=secret(32),
        psk=psk,
        secret_bytes=secret,
        max_failures=max_failures,
    )


def theirs(initiator: bool, *, psk: bytes = PSK) -> NoiseConnection:
    conn = NoiseConnection.from_name(PROTOCOL_NAME.encode())
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_psks(psk=psk)
    conn.set_prologue(PROLOGUE)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, os.urandom(32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        conn.start_handshake()
    return conn


def complete_pair(psk_i: bytes = PSK, psk_r: bytes = PSK) -> tuple[HandshakeState, HandshakeState]:
    i, r = ours(True, psk=psk_i), ours(False, psk=psk_r)
    r.read_message(i.write_message(b""))
    i.read_message(r.write_message(b"resp"))
    r.read_message(i.write_message(b"init"))
    return i, r


def transcript() -> list[bytes]:
    """The three messages of one handshake between two of ours."""
    i, r = ours(True), ours(False)
    m1 = i.write_message(b"")
    r.read_message(m1)
    m2 = r.write_message(b"responder payload")
    i.read_message(m2)
    m3 = i.write_message(b"initiator payload")
    return [m1, m2, m3]


def test_ours_as_initiator_against_noiseprotocol_responder() -> None:
    i, r = ours(True), theirs(False)
    assert bytes(r.read_message(i.write_message(b"hello"))) == b"hello"
    assert i.read_message(bytes(r.write_message(b"from them"))) == b"from them"
    assert bytes(r.read_message(i.write_message(b"from us"))) == b"from us"
    assert i.complete and r.handshake_finished
    assert i.handshake_hash == bytes(r.get_handshake_hash())
    assert i.remote_static is not None
    send, recv = i.split()
    for n in range(5):
        assert bytes(r.decrypt(send.encrypt_with_ad(b"", b"up %d" % n))) == b"up %d" % n
        assert recv.decrypt_with_ad(b"", bytes(r.encrypt(b"down %d" % n))) == b"down %d" % n


def test_ours_as_responder_against_noiseprotocol_initiator() -> None:
    i, r = theirs(True), ours(False)
    assert r.read_message(bytes(i.write_message(b""))) == b""
    assert bytes(i.read_message(r.write_message(b"resp identity"))) == b"resp identity"
    assert r.read_message(bytes(i.write_message(b"init identity"))) == b"init identity"
    assert r.complete and i.handshake_finished
    assert r.handshake_hash == bytes(i.get_handshake_hash())
    recv, send = r.split()
    for n in range(5):
        assert recv.decrypt_with_ad(b"", bytes(i.encrypt(b"up %d" % n))) == b"up %d" % n
        assert bytes(i.decrypt(send.encrypt_with_ad(b"", b"down %d" % n))) == b"down %d" % n


def test_interop_detects_a_different_prologue() -> None:
    # The interop tests can fail: a prologue that differs by one byte breaks message 1.
    i, r = ours(True), theirs(False)
    r.set_prologue(b"test prologuE")
    r.noise_protocol.initialise_handshake_state()
    with pytest.raises(InvalidTag):
        r.read_message(i.write_message(b""))


def test_wrong_psk_fails_with_authentication_error_only() -> None:
    i, r = ours(True), ours(False, psk=bytes(32))
    r.read_message(i.write_message(b""))
    i.read_message(r.write_message(b"x"))  # the PSK is mixed only in message 3 (psk3)
    with pytest.raises(AuthenticationError) as info:
        r.read_message(i.write_message(b"y"))
    assert info.value.code == "auth_failed"
    assert not r.complete


def test_wrong_psk_against_noiseprotocol_fails_cleanly_too() -> None:
    i, r = theirs(True, psk=bytes(32)), ours(False)
    r.read_message(bytes(i.write_message(b"")))
    i.read_message(r.write_message(b""))
    with pytest.raises(AuthenticationError):
        r.read_message(bytes(i.write_message(b"")))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_flipped_bit_anywhere_in_a_message_fails_cleanly(index: int) -> None:
    messages = transcript()
    for pos in range(len(messages[index])):
        for bit in (0, 7):
            i, r = ours(True), ours(False)
            readers = [r, i, r]
            # Replay the transcript up to the message under test.
            for k in range(index):
                (i if k % 2 == 0 else r).write_message(
                    [b"", b"responder payload", b"initiator payload"][k]
                )
                readers[k].read_message(messages[k])
            (i if index % 2 == 0 else r).write_message(
                [b"", b"responder payload", b"initiator payload"][index]
            )
            bad = bytearray(messages[index])
            bad[pos] ^= 1 << bit
            with pytest.raises((AuthenticationError, MalformedError)):
                readers[index].read_message(bytes(bad))
            # The failed read changed nothing: the genuine message is still accepted.
            readers[index].read_message(messages[index])


def test_truncated_messages_fail_cleanly() -> None:
    messages = transcript()
    # Shorter than the keys and tag of its pattern: MalformedError, named.
    i, r = ours(True, max_failures=10_000), ours(False, max_failures=10_000)
    i.write_message(b"")
    for size in (0, 1, 31, 32, 47):
        with pytest.raises(MalformedError, match="too short"):
            r.read_message(messages[0][:size])
    r.read_message(messages[0])
    r.write_message(b"responder payload")
    for size in range(len(messages[1])):
        with pytest.raises((MalformedError, AuthenticationError)):
            i.read_message(messages[1][:size])
    for size in (0, 31, 32 + 47):
        with pytest.raises(MalformedError):
            i.read_message(messages[1][:size])
    assert i.read_message(messages[1]) == b"responder payload"


LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    ((1 << 255) - 20).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    ((1 << 255) - 19).to_bytes(32, "little"),  # p: 0 written the long way
    (1 << 255).to_bytes(32, "little"),  # 0 with the top bit set: X25519 ignores that bit
]


@pytest.mark.parametrize("point", LOW_ORDER, ids=range(len(LOW_ORDER)))
def test_a_low_order_key_is_refused_on_reading(point: bytes) -> None:
    # Message 1's tag key comes from the (public) ephemeral, so anyone can forge it; the
    # point is refused when read, not later when the responder's DH would give zeros.
    from foundation_p2p.crypto.noise import SymmetricState, hkdf

    r = ours(False)
    with pytest.raises(MalformedError, match="low-order"):
        r.read_message(point + bytes(16))
    # A correctly tagged message 1 with that point: still refused, and before any DH.
    ss = SymmetricState(PROTOCOL_NAME.encode())
    ss.mix_hash(PROLOGUE)
    ss.mix_hash(point)
    ss.mix_key(point)
    forged = point + ss.encrypt_and_hash(b"")
    with pytest.raises(MalformedError, match="ephemeral key is a low-order"):
        r.read_message(forged)
    assert r.read_message(transcript()[0]) == b""
    assert len(hkdf(bytes(32), b"", 3)) == 3
    # cryptography agrees these are the points whose DH is all zeros.
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    with pytest.raises(ValueError):
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(point))


def test_oversized_and_out_of_turn_messages() -> None:
    r = ours(False)
    with pytest.raises(MalformedError, match="at most 65535"):
        r.read_message(bytes(MAX_MESSAGE_LEN + 1))
    i = ours(True)
    with pytest.raises(MalformedError, match="none was expected"):
        i.read_message(bytes(48))
    with pytest.raises(ConfigError, match="out of turn"):
        r.write_message(b"")


def test_too_many_failures_end_the_handshake() -> None:
    m1 = transcript()[0]
    r = ours(False)
    for _ in range(r.max_failures):
        with pytest.raises(AuthenticationError):
            r.read_message(bytes([9]) * 48)
    assert r.failed
    with pytest.raises(AuthenticationError, match="failed"):
        r.read_message(m1)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=400), st.integers(0, 2))
def test_random_bytes_into_read_message_raise_only_wire_errors(data: bytes, stage: int) -> None:
    i, r = ours(True), ours(False)
    reader = r
    if stage >= 1:
        r.read_message(i.write_message(b""))
        reader = i
    if stage == 2:
        i.read_message(r.write_message(b"p"))
        reader = r
    before = reader.handshake_hash
    try:
        reader.read_message(data)
    except WireError:
        assert reader.handshake_hash == before
        return
    # Only a message that happens to be valid could pass; random bytes essentially never are.
    raise AssertionError("random bytes accepted as a handshake message")


# -- CipherState ----------------------------------------------------------------------


def test_cipher_state_without_key_passes_bytes_through() -> None:
    cs = CipherState()
    assert not cs.has_key()
    assert cs.encrypt_with_ad(b"ad", b"plain") == b"plain"
    assert cs.decrypt_with_ad(b"ad", b"plain") == b"plain"


def test_decrypt_failure_leaves_the_nonce() -> None:
    a, b = CipherState(bytes(32)), CipherState(bytes(32))
    ct = a.encrypt_with_ad(b"", b"one")
    with pytest.raises(AuthenticationError):
        b.decrypt_with_ad(b"", ct[:-1] + bytes([ct[-1] ^ 1]))
    assert b.n == 0
    assert b.decrypt_with_ad(b"", ct) == b"one" and b.n == 1
    with pytest.raises(MalformedError, match="at least 16"):
        b.decrypt_with_ad(b"", b"short")


def test_rekey_matches_noiseprotocol() -> None:
    i, r = complete_pair()
    send, _ = i.split()
    theirs_recv, _ = r.split()
    send.rekey()
    theirs_recv.rekey()
    assert theirs_recv.decrypt_with_ad(b"", send.encrypt_with_ad(b"", b"after")) == b"after"
    # And against the independent implementation's rekey.
    ni, nr = theirs(True), ours(False)
    nr.read_message(bytes(ni.write_message(b"")))
    ni.read_message(nr.write_message(b""))
    nr.read_message(bytes(ni.write_message(b"")))
    recv, _ = nr.split()
    ni.rekey_outbound_cipher()
    recv.rekey()
    assert recv.decrypt_with_ad(b"", bytes(ni.encrypt(b"rekeyed"))) == b"rekeyed"


def test_the_reserved_nonce_is_never_used() -> None:
    cs = CipherState(bytes(32), n=MAX_NONCE - 1)
    cs.encrypt_with_ad(b"", b"last")
    with pytest.raises(ConfigError, match="exhausted"):
        cs.encrypt_with_ad(b"", b"one too many")


def test_configuration_errors_are_named() -> None:
    with pytest.raises(ConfigError, match="psk"):
        HandshakeState(
            initiator=True, prologue=b"", s=bytes(32), psk=b"short", secret_bytes=os.urandom
        )
    with pytest.raises(ConfigError, match="static key"):
        HandshakeState(initiator=True, prologue=b"", s=None, psk=PSK, secret_bytes=os.urandom)
    with pytest.raises(ConfigError, match="unsupported"):
        HandshakeState(
            initiator=True,
            prologue=b"",
            s=bytes(32),
            psk=None,
            secret_bytes=os.urandom,
            protocol_name="Noise_X1K_25519_ChaChaPoly_SHA256",
        )
    with pytest.raises(ConfigError, match="split before"):
        ours(True).split()
    assert len(x25519_public(bytes(32))) == 32


def test_ephemeral_keys_come_from_secret_bytes() -> None:
    drawn: list[int] = []

    def secret_bytes(n: int) -> bytes:
        drawn.append(n)
        return bytes([7]) * n

    i = HandshakeState(
        initiator=True, prologue=b"", s=bytes(32), psk=PSK, secret_bytes=secret_bytes
    )
    m1 = i.write_message(b"")
    assert drawn == [32]
    assert m1[:32] == x25519_public(bytes([7]) * 32)
