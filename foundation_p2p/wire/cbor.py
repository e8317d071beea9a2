"""Deterministic CBOR through ``cbor2``.

Encoding is cbor2's canonical mode: preferred (shortest) serialization, definite lengths
only, and map keys in *length-first* order (RFC 8949 section 4.2.3, the RFC 7049
"canonical CBOR" order), not the bytewise order of section 4.2.1. Every map the protocol
defines is keyed by unsigned integers below 24 or by text strings, and for such key sets
the two orders coincide; ``spec/wire.md`` states this.

Decoding is strict: indefinite lengths, duplicate map keys, nesting deeper than the limit,
and any input whose re-encoding differs from the bytes received (non-shortest integers,
unsorted keys, tags, undefined, non-shortest floats) raise
:class:`~foundation_p2p.errors.MalformedError`. Nothing else escapes: every error from
``cbor2`` becomes a :class:`~foundation_p2p.errors.WireError`.
"""

from __future__ import annotations

import re
from typing import Any

import cbor2

from foundation_p2p.errors import LimitError, MalformedError, WireError
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits

_dumps = cbor2.dumps
_loads = cbor2.loads

_CANONICAL_MODE_MATTERS = re.compile(rb"[\xa0-\xbf\xc0-\xdb\xf9-\xfb]")
"""Head bytes of maps, tags and floats.

cbor2's canonical mode changes the encoding of exactly these items (map and set order,
float width); everything else it encodes as plain mode does. Every such item in the
input starts with one of these bytes, so input without them holds none, and its plain
re-encoding is already the canonical one. A match inside a string only costs the slower
canonical re-encoding, never a wrong answer.
"""


def encode(value: Any) -> bytes:
    """Encode ``value`` as deterministic CBOR (cbor2 ``canonical=True``)."""
    try:
        return _dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
        raise MalformedError(f"cannot encode {type(value).__name__}: {exc}") from None


def decode(
    data: bytes, limits: WireLimits = DEFAULT_LIMITS, *, check_canonical: bool = True
) -> Any:
    """Decode one deterministic CBOR item that fills ``data`` exactly.

    Raises :class:`LimitError` when ``data`` is longer than ``limits.max_packet_bytes``
    or nests deeper than ``limits.max_depth``, and :class:`MalformedError` for anything
    not well-formed or not deterministic. Collection counts and string lengths are
    checked by the typed decoders that read the value (they know each field's bound).
    """
    if len(data) > limits.max_packet_bytes:
        raise LimitError(f"{len(data)} bytes exceeds the limit of {limits.max_packet_bytes}")
    try:
        value = _loads(
            data,
            max_depth=limits.max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except cbor2.CBORDecodeError as exc:
        text = str(exc)
        if "depth" in text:
            raise LimitError(f"nesting deeper than {limits.max_depth}") from None
        raise MalformedError(f"not well-formed CBOR: {text}") from None
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError, KeyError) as exc:
        raise MalformedError(f"not decodable CBOR: {type(exc).__name__}: {exc}") from None
    if check_canonical:
        try:
            if _CANONICAL_MODE_MATTERS.search(data) is None:
                again = _dumps(value)  # same bytes as canonical=True here, 2-3x faster
            else:
                again = _dumps(value, canonical=True)
        except Exception as exc:  # a decoded value that cannot be re-encoded is not ours
            raise MalformedError(f"value of type {type(value).__name__} is not plain CBOR") from exc
        if again != data:
            raise MalformedError("not deterministic CBOR (RFC 8949 section 4.2, length-first keys)")
    return value


def utf8_longer_than(text: str, limit: int) -> bool:
    """True if ``text`` takes more than ``limit`` bytes in UTF-8 (encoding only if needed).

    A character takes 1 to 4 bytes, so ``len(text)`` bounds the size from both sides
    before anything is encoded; lone surrogates (which CBOR text cannot carry) count
    as 3 bytes rather than raising.
    """
    n = len(text)
    if n > limit:
        return True
    if n * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def check_plain(value: Any, limits: WireLimits = DEFAULT_LIMITS, *, what: str = "value") -> None:
    """Check that ``value`` is plain CBOR data within ``limits``, or raise a ``WireError``.

    Plain data is ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, ``list``
    (or ``tuple``) and ``dict``; nothing else (no tags, no sets, no objects). Containers
    may nest at most ``limits.max_depth`` deep and hold at most
    ``limits.max_collection_items`` elements; strings respect their length limits. Used on
    application values (metadata, channel messages) both before encoding, so a local
    caller learns of a limit at once, and after decoding the fields the spec types as any.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, (bool, int, float)):
            continue
        if isinstance(item, str):
            if utf8_longer_than(item, limits.max_text_bytes):
                raise LimitError(f"{what}: text longer than {limits.max_text_bytes} bytes")
        elif isinstance(item, bytes):
            if len(item) > limits.max_bytes_bytes:
                raise LimitError(f"{what}: byte string longer than {limits.max_bytes_bytes}")
        elif isinstance(item, (list, tuple, dict)):
            if depth >= limits.max_depth:
                raise LimitError(f"{what}: nesting deeper than {limits.max_depth}")
            if len(item) > limits.max_collection_items:
                raise LimitError(
                    f"{what}: {len(item)} elements exceeds {limits.max_collection_items}"
                )
            if isinstance(item, dict):
                for k, v in item.items():
                    stack.append((k, depth + 1))
                    stack.append((v, depth + 1))
            else:
                stack.extend((x, depth + 1) for x in item)
        else:
            raise MalformedError(f"{what}: {type(item).__name__} is not plain CBOR data")
