"""The cluster keyring: 32-byte keys, one primary for sealing, older ones still accepted.

File format (``spec/keyring.md``): UTF-8 text, one item per line::

    foundation-p2p keyring v1
    # comments and blank lines are ignored
    primary <base64 of 32 bytes>
    accept  <base64 of 32 bytes>     # zero or more older keys, still opened

Rotation, memberlist's way: add the new key as ``accept`` on every node, then make it
``primary`` on every node, then remove the old one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence

from foundation_p2p.errors import KeyringError

KEY_BYTES = 32
HEADER_LINE = "foundation-p2p keyring v1"
_KEY_ID_LABEL = b"foundation-p2p key id v1"


def key_id(key: bytes) -> int:
    """The 32-bit id of a cluster key: the first 4 bytes of SHA-256(label || key)."""
    return int.from_bytes(hashlib.sha256(_KEY_ID_LABEL + key).digest()[:4], "big")


class Keyring:
    """Cluster keys by id. ``primary`` seals; every key in the ring opens."""

    __slots__ = ("_by_id", "primary", "primary_id")

    def __init__(self, primary: bytes, accepted: Sequence[bytes] = ()) -> None:
        for i, key in enumerate([primary, *accepted]):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                what = "primary key" if i == 0 else f"accepted key {i}"
                raise KeyringError(f"keyring: {what} must be {KEY_BYTES} bytes")
        self.primary = primary
        self.primary_id = key_id(primary)
        self._by_id: dict[int, bytes] = {}
        for key in [primary, *accepted]:
            kid = key_id(key)
            if kid in self._by_id and self._by_id[kid] != key:
                raise KeyringError("keyring: two different keys share one key id")
            self._by_id[kid] = key

    def key_for(self, kid: int) -> bytes | None:
        """The key with this id, or ``None`` if it is not in the ring."""
        return self._by_id.get(kid)

    @property
    def accepted(self) -> list[bytes]:
        """The keys other than the primary, in file order."""
        return [k for k in self._by_id.values() if k != self.primary]

    def key_ids(self) -> list[int]:
        """Ids of every key in the ring, primary first."""
        return list(self._by_id)

    def rotated(self, new_primary: bytes) -> Keyring:
        """A ring with ``new_primary`` sealing and every current key still accepted."""
        return Keyring(new_primary, [k for k in self._by_id.values() if k != new_primary])

    @classmethod
    def generate(cls, secret_bytes: Callable[[int], bytes]) -> Keyring:
        """A ring with one fresh primary key drawn from ``secret_bytes`` (``os.urandom``)."""
        return cls(secret_bytes(KEY_BYTES))

    def to_text(self) -> str:
        """The keyring file's text."""
        lines = [HEADER_LINE, f"primary {base64.b64encode(self.primary).decode()}"]
        lines += [f"accept {base64.b64encode(k).decode()}" for k in self.accepted]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, *, source: str = "<keyring>") -> Keyring:
        """Parse a keyring file's text; errors name ``source``, the line and the problem."""
        primary: bytes | None = None
        accepted: list[bytes] = []
        seen_header = False
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if not seen_header:
                if line != HEADER_LINE:
                    raise KeyringError(
                        f"{source}:{number}: expected the header {HEADER_LINE!r}, got {line[:40]!r}"
                    )
                seen_header = True
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            if word not in ("primary", "accept") or not rest:
                raise KeyringError(
                    f"{source}:{number}: expected 'primary <base64>' or 'accept <base64>'"
                )
            try:
                key = base64.b64decode(rest, validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(f"{source}:{number}: the key is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise KeyringError(
                    f"{source}:{number}: a key must be {KEY_BYTES} bytes, this one is {len(key)}"
                )
            if word == "primary":
                if primary is not None:
                    raise KeyringError(f"{source}:{number}: a second primary key")
                primary = key
            else:
                accepted.append(key)
        if not seen_header:
            raise KeyringError(f"{source}: empty keyring file (no {HEADER_LINE!r} header)")
        if primary is None:
            raise KeyringError(f"{source}: no primary key")
        return cls(primary, accepted)

    @classmethod
    def from_file(cls, path: str) -> Keyring:
        """Read a keyring file; an unreadable file raises :class:`KeyringError` naming it."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(1 << 20)
        except OSError as exc:
            raise KeyringError(f"{path}: cannot read the keyring: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise KeyringError(f"{path}: the keyring is not UTF-8 text") from None
        return cls.from_text(text, source=path)
