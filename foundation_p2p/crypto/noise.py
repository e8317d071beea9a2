"""The Noise protocol framework (revision 34) for ``Noise_XXpsk3_25519_ChaChaPoly_SHA256``.

Written from the Noise specification (noiseprotocol.org, revision 34): section 5.1
:class:`CipherState`, 5.2 :class:`SymmetricState`, 5.3 :class:`HandshakeState`; X25519
(section 12.1), ChaCha20-Poly1305 with the nonce ``32 zero bits || n as 64-bit little
endian`` (12.3), SHA-256 with HMAC-based HKDF (12.5, 4.3). The primitives come from
``cryptography`` (X25519, ChaCha20Poly1305, SHA-256, HMAC).

The transport uses one protocol, ``Noise_XXpsk3_25519_ChaChaPoly_SHA256`` (the default of
:class:`HandshakeState`). The class also runs the other one- and two-way fundamental
patterns (``N K X NN NK NX XN XK XX KN KK KX IN IK IX``) with any ``pskN`` modifiers, so
that the published cacophony vectors of those patterns check the same code byte for byte;
the deferred patterns (``X1K`` ...) are not implemented.

Sans-I/O: no clock, no global randomness. Ephemeral keys come from the ``secret_bytes``
callable handed in (``os.urandom`` in production), or are fixed by the caller (vectors).

Errors: bytes from the peer raise only :class:`~foundation_p2p.errors.MalformedError`
(wrong length, a message too large, a low-order X25519 public key) or
:class:`~foundation_p2p.errors.AuthenticationError` (a ChaCha20-Poly1305 tag did not
verify: wrong PSK, wrong keys, altered bytes). A failed :meth:`HandshakeState.read_message`
leaves the state exactly as it was before the call (so a forged or damaged datagram does
not kill the handshake; the genuine message can still be read). Misuse of the API (writing
out of turn, a key of the wrong size) raises :class:`~foundation_p2p.errors.ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from foundation_p2p.errors import AuthenticationError, ConfigError, MalformedError

PROTOCOL_NAME = "Noise_XXpsk3_25519_ChaChaPoly_SHA256"
MAX_MESSAGE_LEN = 65535
"""Noise section 3: every handshake and transport message is at most 65535 bytes."""
DHLEN = 32
HASHLEN = 32
TAGLEN = 16
KEYLEN = 32
PSKLEN = 32
MAX_NONCE = (1 << 64) - 1
"""Section 5.1: the nonce 2^64-1 is reserved (used only by ``rekey``)."""
_ZEROS32 = bytes(32)

# Noise section 7.4 (one-way) and 7.5 (interactive fundamental patterns): pre-messages
# (initiator's, responder's), then the message patterns, initiator first and alternating.
_Pattern = tuple[tuple[tuple[str, ...], tuple[str, ...]], tuple[tuple[str, ...], ...]]
_PATTERNS: dict[str, _Pattern] = {
    "N": (((), ("s",)), (("e", "es"),)),
    "K": ((("s",), ("s",)), (("e", "es", "ss"),)),
    "X": (((), ("s",)), (("e", "es", "s", "ss"),)),
    "NN": (((), ()), (("e",), ("e", "ee"))),
    "NK": (((), ("s",)), (("e", "es"), ("e", "ee"))),
    "NX": (((), ()), (("e",), ("e", "ee", "s", "es"))),
    "XN": (((), ()), (("e",), ("e", "ee"), ("s", "se"))),
    "XK": (((), ("s",)), (("e", "es"), ("e", "ee"), ("s", "se"))),
    "XX": (((), ()), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "KN": ((("s",), ()), (("e",), ("e", "ee", "se"))),
    "KK": ((("s",), ("s",)), (("e", "es", "ss"), ("e", "ee", "se"))),
    "KX": ((("s",), ()), (("e",), ("e", "ee", "se", "s", "es"))),
    "IN": (((), ()), (("e", "s"), ("e", "ee", "se"))),
    "IK": (((), ("s",)), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "IX": (((), ()), (("e", "s"), ("e", "ee", "se", "s", "es"))),
}


def _parse_name(name: str) -> tuple[_Pattern, bool]:
    """The pattern of a protocol name ``Noise_<pattern>_25519_ChaChaPoly_SHA256`` with its
    ``pskN`` modifiers applied (section 9.2), and whether it is a PSK pattern."""
    parts = name.split("_")
    if len(parts) != 5 or parts[0] != "Noise" or parts[2:] != ["25519", "ChaChaPoly", "SHA256"]:
        raise ConfigError(f"noise: unsupported protocol name {name!r}")
    text = parts[1]
    match = re.fullmatch(r"([A-Z]+)((?:psk[0-9]+)(?:\+psk[0-9]+)*)?", text)
    if match is None or match.group(1) not in _PATTERNS:
        raise ConfigError(f"noise: unsupported handshake pattern in {name!r}")
    base = match.group(1)
    modifiers = text[len(base) :]
    pre, messages = _PATTERNS[base]
    msgs = [list(m) for m in messages]
    psk = False
    if modifiers:
        for mod in modifiers.split("+"):
            if not mod.startswith("psk") or not mod[3:].isdigit():
                raise ConfigError(f"noise: unsupported modifier {mod!r} in {name!r}")
            index = int(mod[3:])
            if index > len(msgs):
                raise ConfigError(f"noise: {mod} beyond the pattern's messages in {name!r}")
            if index == 0:
                msgs[0].insert(0, "psk")
            else:
                msgs[index - 1].append("psk")
            psk = True
    return (pre, tuple(tuple(m) for m in msgs)), psk


def _nonce(n: int) -> bytes:
    """Section 12.3: 32 bits of zeros, then ``n`` as a 64-bit little-endian integer."""
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _hash(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = _hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
    """Noise section 4.3 HKDF: two or three 32-byte outputs from HMAC-SHA256."""
    temp = _hmac_sha256(chaining_key, ikm)
    out1 = _hmac_sha256(temp, b"\x01")
    out2 = _hmac_sha256(temp, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, _hmac_sha256(temp, out2 + b"\x03")


_P25519 = (1 << 255) - 19
_LOW_ORDER_U = frozenset(
    (
        0,
        1,
        _P25519 - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    )
)
"""The u-coordinates (mod p) of the points of order 1, 2, 4 or 8 on Curve25519 and its
twist: X25519 with any of them gives the all-zero shared secret."""


def check_public_key(public: bytes, what: str) -> None:
    """Refuse a peer's X25519 public key of small order (section 12.1 allows either
    behaviour; we refuse at once, on reading, rather than at the DH that follows)."""
    u = (int.from_bytes(public, "little") & ((1 << 255) - 1)) % _P25519
    if u in _LOW_ORDER_U:
        raise MalformedError(f"noise: the peer's {what} is a low-order X25519 point")


def x25519_public(private: bytes) -> bytes:
    """The X25519 public key of a 32-byte private key."""
    if len(private) != DHLEN:
        raise ConfigError(f"noise: an X25519 private key is {DHLEN} bytes, not {len(private)}")
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


class _KeyPair:
    """An X25519 key pair: the ``cryptography`` private key object and the raw public key."""

    __slots__ = ("key", "public")

    def __init__(self, private: bytes) -> None:
        if len(private) != DHLEN:
            raise ConfigError(f"noise: an X25519 private key is {DHLEN} bytes, not {len(private)}")
        self.key = X25519PrivateKey.from_private_bytes(private)
        self.public = self.key.public_key().public_bytes_raw()

    def dh(self, public: bytes) -> bytes:
        """X25519 with a peer's public key; a low-order point is a malformed key."""
        try:
            return self.key.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError:
            raise MalformedError(
                "noise: the peer's X25519 public key is a low-order point (all-zero shared secret)"
            ) from None


class CipherState:
    """Noise section 5.1: a ChaCha20-Poly1305 key ``k`` (or none) and the nonce ``n``.

    Without a key, encryption and decryption pass the bytes through unchanged (as the
    spec says). ``encrypt_with_ad`` refuses to use the reserved nonce 2^64-1;
    ``decrypt_with_ad`` raises :class:`AuthenticationError` on a bad tag and then leaves
    ``n`` unchanged.
    """

    __slots__ = ("_aead", "k", "n")

    def __init__(self, k: bytes | None = None, n: int = 0) -> None:
        self.k: bytes | None = None
        self._aead: ChaCha20Poly1305 | None = None
        if k is not None:
            self.initialize_key(k)
        self.n = n

    def initialize_key(self, k: bytes | None) -> None:
        """``InitializeKey(key)``: set the key (or none) and reset ``n`` to 0."""
        if k is not None and len(k) != KEYLEN:
            raise ConfigError(f"noise: a cipher key is {KEYLEN} bytes, not {len(k)}")
        self.k = k
        self._aead = ChaCha20Poly1305(k) if k is not None else None
        self.n = 0

    def has_key(self) -> bool:
        """``HasKey()``."""
        return self.k is not None

    def set_nonce(self, n: int) -> None:
        """``SetNonce(nonce)``."""
        if not 0 <= n <= MAX_NONCE:
            raise ConfigError("noise: a nonce is a 64-bit unsigned integer")
        self.n = n

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """``EncryptWithAd(ad, plaintext)``: ciphertext || 16-byte tag, then ``n += 1``."""
        aead = self._aead
        if aead is None:
            return plaintext
        if self.n >= MAX_NONCE:
            raise ConfigError("noise: the cipher state's nonces are exhausted (rekey or stop)")
        out = aead.encrypt(_nonce(self.n), plaintext, ad)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """``DecryptWithAd(ad, ciphertext)``: the plaintext, then ``n += 1``; a bad tag raises
        :class:`AuthenticationError` and leaves ``n`` as it was."""
        aead = self._aead
        if aead is None:
            return ciphertext
        if self.n >= MAX_NONCE:
            raise AuthenticationError("noise: the cipher state's nonces are exhausted")
        if len(ciphertext) < TAGLEN:
            raise MalformedError(
                f"noise: a ciphertext is at least {TAGLEN} bytes (the tag), got {len(ciphertext)}"
            )
        try:
            out = aead.decrypt(_nonce(self.n), ciphertext, ad)
        except InvalidTag:
            raise AuthenticationError(
                "noise: ChaCha20-Poly1305 authentication failed (wrong key or altered bytes)"
            ) from None
        self.n += 1
        return out

    def rekey(self) -> None:
        """``Rekey()``: ``k = first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes)``;
        ``n`` is unchanged (section 11.3)."""
        aead = self._aead
        if aead is None:
            raise ConfigError("noise: rekey without a key")
        self.k = aead.encrypt(_nonce(MAX_NONCE), _ZEROS32, b"")[:KEYLEN]
        self._aead = ChaCha20Poly1305(self.k)


class SymmetricState:
    """Noise section 5.2: the chaining key ``ck``, the handshake hash ``h``, a CipherState."""

    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name + bytes(HASHLEN - len(protocol_name))
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        """``MixKey(input_key_material)``."""
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher.initialize_key(temp_k)

    def mix_hash(self, data: bytes) -> None:
        """``MixHash(data)``: ``h = SHA-256(h || data)``."""
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        """``MixKeyAndHash(input_key_material)`` (the ``psk`` token)."""
        self.ck, temp_h, temp_k = hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher.initialize_key(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """``EncryptAndHash(plaintext)``: encrypt with ``h`` as associated data, mix the result."""
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """``DecryptAndHash(ciphertext)``."""
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """``Split()``: the two transport CipherStates (initiator->responder first)."""
        temp_k1, temp_k2 = hkdf(self.ck, b"", 2)
        return CipherState(temp_k1), CipherState(temp_k2)


class HandshakeState:
    """Noise section 5.3: runs one handshake, by default ``Noise_XXpsk3_25519_ChaChaPoly_SHA256``.

    ``s`` is this side's static X25519 private key, ``psk`` the 32-byte pre-shared key,
    ``e`` a fixed ephemeral private key (test vectors only; otherwise 32 bytes are drawn
    from ``secret_bytes`` when the ``e`` token is written). ``rs`` (the peer's static
    public key) is needed only by patterns with a responder pre-message (``IK``, ``NK``...),
    and for the initiator's pre-message of ``K`` patterns on the responder side.

    Messages alternate, initiator first. ``write_message``/``read_message`` out of turn
    raise :class:`ConfigError`. When the last message has been written or read,
    ``complete`` is true and :meth:`split` gives the transport CipherStates. A failed
    ``read_message`` (only :class:`MalformedError` or :class:`AuthenticationError`) leaves
    the state as it was before the call. ``max_failures`` failed reads (default 8) end the
    handshake for good: a further read raises :class:`AuthenticationError` (bounded online
    guessing; the connection then starts a new handshake).
    """

    __slots__ = (
        "_e",
        "_failures",
        "_index",
        "_messages",
        "_psk",
        "_s",
        "_secret_bytes",
        "_ss",
        "complete",
        "failed",
        "initiator",
        "max_failures",
        "protocol_name",
        "re",
        "rs",
    )

    def __init__(
        self,
        *,
        initiator: bool,
        prologue: bytes,
        s: bytes | None,
        psk: bytes | None,
        secret_bytes: Callable[[int], bytes],
        e: bytes | None = None,
        rs: bytes | None = None,
        protocol_name: str = PROTOCOL_NAME,
        max_failures: int = 8,
    ) -> None:
        ((pre_i, pre_r), messages), uses_psk = _parse_name(protocol_name)
        if uses_psk:
            if psk is None or len(psk) != PSKLEN:
                raise ConfigError(f"noise: {protocol_name} needs a {PSKLEN}-byte psk")
        elif psk is not None:
            raise ConfigError(f"noise: {protocol_name} takes no psk")
        self.protocol_name = protocol_name
        self.initiator = initiator
        self._messages = messages
        self._psk = psk
        self._secret_bytes = secret_bytes
        self._s = _KeyPair(s) if s is not None else None
        self._e = _KeyPair(e) if e is not None else None
        if rs is not None and len(rs) != DHLEN:
            raise ConfigError(f"noise: a remote static key is {DHLEN} bytes")
        if rs is not None:
            try:
                check_public_key(rs, "static key")
            except MalformedError as exc:
                raise ConfigError(str(exc)) from None
        self.rs: bytes | None = rs
        self.re: bytes | None = None
        self._ss = SymmetricState(protocol_name.encode("ascii"))
        self._index = 0
        self._failures = 0
        self.max_failures = max_failures
        self.complete = False
        self.failed = False
        self._ss.mix_hash(prologue)
        # Pre-messages (section 7.1): the initiator's public keys, then the responder's.
        for owner_is_initiator, tokens in ((True, pre_i), (False, pre_r)):
            mine = owner_is_initiator == initiator
            for token in tokens:
                if token != "s":
                    raise ConfigError("noise: only 's' pre-messages are supported")
                if mine:
                    if self._s is None:
                        raise ConfigError(f"noise: {protocol_name} needs this side's static key")
                    self._ss.mix_hash(self._s.public)
                else:
                    if self.rs is None:
                        raise ConfigError(f"noise: {protocol_name} needs the peer's static key")
                    self._ss.mix_hash(self.rs)
        needs_s = any(
            (t == "s" and (i % 2 == 0) == initiator)
            or (t in ("es", "se", "ss") and self._dh_uses_own_static(t))
            for i, m in enumerate(messages)
            for t in m
        )
        if needs_s and self._s is None:
            raise ConfigError(f"noise: {protocol_name} needs this side's static key (s)")

    def _dh_uses_own_static(self, token: str) -> bool:
        if token == "ss":
            return True
        # es: initiator's ephemeral with responder's static; se: the reverse.
        return (token == "es") != self.initiator

    @property
    def handshake_hash(self) -> bytes:
        """``h``: after completion, the handshake hash (channel binding, section 11.2)."""
        return self._ss.h

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static X25519 public key, once received (or given as ``rs``)."""
        return self.rs

    @property
    def message_index(self) -> int:
        """The 0-based index of the next handshake message (to write or to read)."""
        return self._index

    @property
    def my_turn_to_write(self) -> bool:
        """True when the next handshake message is this side's to write."""
        return not self.complete and (self._index % 2 == 0) == self.initiator

    def write_message(self, payload: bytes) -> bytes:
        """``WriteMessage(payload)``: the next handshake message carrying ``payload``."""
        if self.failed:
            raise ConfigError("noise: the handshake has failed")
        if not self.my_turn_to_write:
            raise ConfigError("noise: write_message out of turn (or after completion)")
        ss = self._ss
        out: list[bytes] = []
        for token in self._messages[self._index]:
            if token == "e":
                if self._e is None:
                    self._e = _KeyPair(self._secret_bytes(DHLEN))
                out.append(self._e.public)
                ss.mix_hash(self._e.public)
                if self._psk is not None:
                    ss.mix_key(self._e.public)
            elif token == "s":
                assert self._s is not None
                out.append(ss.encrypt_and_hash(self._s.public))
            elif token == "psk":
                assert self._psk is not None
                ss.mix_key_and_hash(self._psk)
            else:
                ss.mix_key(self._dh(token))
        out.append(ss.encrypt_and_hash(payload))
        message = b"".join(out)
        if len(message) > MAX_MESSAGE_LEN:
            raise ConfigError(
                f"noise: the message would be {len(message)} bytes, over {MAX_MESSAGE_LEN}"
            )
        self._advance()
        return message

    def read_message(self, message: bytes) -> bytes:
        """``ReadMessage(message)``: the payload; raises only :class:`MalformedError` or
        :class:`AuthenticationError`, and then leaves the state as it was."""
        if self.failed:
            raise AuthenticationError("noise: the handshake has failed (too many bad messages)")
        if self.complete or (self._index % 2 == 0) == self.initiator:
            raise MalformedError("noise: a handshake message arrived when none was expected")
        if len(message) > MAX_MESSAGE_LEN:
            raise MalformedError(f"noise: a message is at most {MAX_MESSAGE_LEN} bytes")
        saved = self.snapshot()
        try:
            payload = self._read(bytes(message))
        except (MalformedError, AuthenticationError):
            self.restore(saved)
            self.note_failure()
            raise
        self._advance()
        return payload

    def snapshot(self) -> tuple[object, ...]:
        """The mutable state, for :meth:`restore` (a reader that rejects a message after
        Noise accepted it, e.g. a payload signature that does not verify, undoes it)."""
        ss = self._ss
        return (ss.h, ss.ck, ss.cipher.k, ss.cipher.n, self.re, self.rs, self._index, self.complete)

    def restore(self, saved: tuple[object, ...]) -> None:
        """Put back the state of :meth:`snapshot` (the failure count is kept)."""
        ss = self._ss
        h, ck, k, n, re_, rs, index, complete = saved
        assert isinstance(h, bytes) and isinstance(ck, bytes) and isinstance(n, int)
        assert k is None or isinstance(k, bytes)
        assert re_ is None or isinstance(re_, bytes)
        assert rs is None or isinstance(rs, bytes)
        assert isinstance(index, int) and isinstance(complete, bool)
        ss.h, ss.ck = h, ck
        ss.cipher.initialize_key(k)
        ss.cipher.n = n
        self.re, self.rs, self._index, self.complete = re_, rs, index, complete

    def note_failure(self) -> None:
        """Count one rejected message; at ``max_failures`` the handshake fails for good."""
        self._failures += 1
        if self._failures >= self.max_failures:
            self.failed = True

    def _read(self, message: bytes) -> bytes:
        ss = self._ss
        pos = 0
        tokens = self._messages[self._index]
        for token in tokens:
            if token == "e":
                if len(message) - pos < DHLEN:
                    raise MalformedError(
                        f"noise: message {self._index + 1} is too short for an ephemeral key"
                    )
                re_ = message[pos : pos + DHLEN]
                check_public_key(re_, "ephemeral key")
                self.re = re_
                pos += DHLEN
                ss.mix_hash(self.re)
                if self._psk is not None:
                    ss.mix_key(self.re)
            elif token == "s":
                size = DHLEN + TAGLEN if ss.cipher.has_key() else DHLEN
                if len(message) - pos < size:
                    raise MalformedError(
                        f"noise: message {self._index + 1} is too short for a static key"
                    )
                rs = ss.decrypt_and_hash(message[pos : pos + size])
                check_public_key(rs, "static key")
                self.rs = rs
                pos += size
            elif token == "psk":
                assert self._psk is not None
                ss.mix_key_and_hash(self._psk)
            else:
                ss.mix_key(self._dh(token))
        rest = message[pos:]
        if ss.cipher.has_key() and len(rest) < TAGLEN:
            raise MalformedError(
                f"noise: message {self._index + 1} is too short for its payload tag "
                f"({len(message)} bytes)"
            )
        return ss.decrypt_and_hash(rest)

    def _dh(self, token: str) -> bytes:
        """The DH of token ``ee``, ``es``, ``se`` or ``ss`` from this side's point of view."""
        if token == "ee":
            mine, theirs = self._e, self.re
        elif token == "ss":
            mine, theirs = self._s, self.rs
        elif (token == "es") == self.initiator:
            mine, theirs = self._e, self.rs  # initiator's es, responder's se
        else:
            mine, theirs = self._s, self.re  # initiator's se, responder's es
        if mine is None or theirs is None:
            raise ConfigError(f"noise: token {token!r} without the keys it needs")
        return mine.dh(theirs)

    def _advance(self) -> None:
        self._index += 1
        if self._index == len(self._messages):
            self.complete = True

    def split(self) -> tuple[CipherState, CipherState]:
        """The transport CipherStates ``(initiator->responder, responder->initiator)``."""
        if not self.complete:
            raise ConfigError("noise: split before the handshake is complete")
        return self._ss.split()


__all__ = [
    "MAX_MESSAGE_LEN",
    "PROTOCOL_NAME",
    "CipherState",
    "HandshakeState",
    "SymmetricState",
    "check_public_key",
    "hkdf",
    "x25519_public",
]
