"""Hand-rolled encoding and reading of the few deterministic CBOR shapes on Raft's hot path.

Every committed entry is encoded once by its proposer and read by each member's apply:
the proposal envelope ``[proposer, boot, ticket, command]`` (``spec/consensus-client.md``)
and, inside it, the KV command ``[1, session, op]`` (``spec/consensus-kv.md``) and its
result ``[status, payload]``. Going through ``cbor2`` for these costs a generic encode,
or a decode *plus a re-encode* to prove the input deterministic (RFC 8949 section 4.2),
per entry and per member. The functions here produce or accept exactly the deterministic
bytes of those shapes and nothing else:

- the encoders return the same bytes as ``cbor2.dumps(value, canonical=True)`` (the
  test suite compares them on random values);
- the readers return ``None`` for anything that is not such a shortest-form, definite-
  length item ending exactly at the end of the input; the caller then takes its general
  ``cbor2`` path, which accepts or refuses the input and names the fault exactly as
  before. A reader never accepts bytes that the general path refuses.

Equivalent lower-level calls: ``cbor2.dumps(value, canonical=True)``; ``cbor2.loads``
followed by the re-encoding check of ``foundation_p2p.consensus.kv``.
"""

from __future__ import annotations

_MAX_UINT64 = (1 << 64) - 1


def uint_head(major: int, n: int) -> bytes:
    """The shortest head of major type ``major`` (0 uint, 2 byte string, 4 array) with
    argument ``n`` (0 <= n < 2**64)."""
    m = major << 5
    if n < 24:
        return bytes((m | n,))
    if n < 0x100:
        return bytes((m | 24, n))
    if n < 0x10000:
        return bytes((m | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((m | 26,)) + n.to_bytes(4, "big")
    if n <= _MAX_UINT64:
        return bytes((m | 27,)) + n.to_bytes(8, "big")
    raise OverflowError(f"{n} does not fit a CBOR head")


def encode_uint(n: int) -> bytes:
    """``cbor2.dumps(n)`` for an unsigned integer below 2**64."""
    return uint_head(0, n)


def encode_bytes(b: bytes) -> bytes:
    """``cbor2.dumps(b)`` for a byte string."""
    return uint_head(2, len(b)) + b


def read_head(data: bytes, pos: int, major: int) -> tuple[int, int] | None:
    """``(argument, position after the head)`` of a shortest-form head of major type
    ``major`` at ``pos``, or ``None`` (another type, a non-shortest or indefinite length,
    or the input ends)."""
    if pos >= len(data):
        return None
    b = data[pos]
    if b >> 5 != major:
        return None
    info = b & 0x1F
    if info < 24:
        return info, pos + 1
    if info == 24:
        if pos + 2 > len(data):
            return None
        n = data[pos + 1]
        return (n, pos + 2) if n >= 24 else None
    if info == 25:
        end = pos + 3
        least = 0x100
    elif info == 26:
        end = pos + 5
        least = 0x10000
    elif info == 27:
        end = pos + 9
        least = 0x100000000
    else:
        return None
    if end > len(data):
        return None
    n = int.from_bytes(data[pos + 1 : end], "big")
    return (n, end) if n >= least else None


def read_bytes(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """``(byte string, position after it)`` at ``pos`` (shortest-form head), or None."""
    head = read_head(data, pos, 2)
    if head is None:
        return None
    n, start = head
    end = start + n
    if end > len(data):
        return None
    return data[start:end], end
