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

import io
from typing import Any

import cbor2

from foundation_p2p.errors import LimitError, MalformedError, WireError
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits

_dumps = cbor2.dumps
_loads = cbor2.loads
_Decoder = cbor2.CBORDecoder



def _length_first(key: Any) -> tuple[int, bytes]:
    encoded = _dumps(key)
    return (len(encoded), encoded)


def _check_map_order(first: Any, second: Any) -> dict[Any, Any]:
    """cbor2 ``object_hook``: refuse a map whose keys are not in length-first order.

    cbor2 5 calls the hook as ``(decoder, dict)``, cbor2 6 as ``(dict, immutable)``; the
    hook takes whichever argument is the map and returns it unchanged.

    A decoded ``dict`` keeps the order of the wire, so the keys as listed are the keys
    as sent. Unsigned integer keys sort numerically and short ASCII text keys by
    (length, text), which is length-first order; anything else is compared by its
    encoding.
    """
    mapping: dict[Any, Any] = first if type(first) is dict else second
    if len(mapping) > 1:
        keys = list(mapping)
        first_key = keys[0]
        ordered: bool | None = None
        try:
            if type(first_key) is str and "".join(keys).isascii():
                # ASCII text: length-first order is (length, text); two C-level sorts.
                ordered = keys == sorted(sorted(keys), key=len)
            elif type(first_key) is int and min(keys) >= 0 and bool not in map(type, keys):
                ordered = keys == sorted(keys)
        except TypeError:  # mixed key types: compare encodings below
            ordered = None
        if ordered is None:
            ordered = keys == sorted(keys, key=_length_first)
        if not ordered:
            raise MalformedError(
                "not deterministic CBOR: map keys not in length-first order (RFC 8949 4.2.3)"
            )
    return mapping


def _has_wide_float(value: Any) -> bool:
    """True if ``value`` holds a float whose preferred encoding is shorter than 8 bytes."""
    stack = [value]
    while stack:
        item = stack.pop()
        t = type(item)
        if t is float:
            # cbor2 writes NaN and the infinities in 2 bytes in every mode, so the plain
            # re-encoding already proved their width; only finite floats can be too wide.
            if item - item == 0.0 and len(_dumps(item, canonical=True)) != 9:
                return True
        elif t is list or t is tuple or t is frozenset:  # cbor2 makes map keys immutable
            stack.extend(item)
        elif t is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        elif t is cbor2.CBORTag:
            stack.append(item.value)
    return False


def encode(value: Any) -> bytes:
    """Encode ``value`` as deterministic CBOR (cbor2 ``canonical=True``)."""
    try:
        return _dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
        raise MalformedError(f"cannot encode {type(value).__name__}: {exc}") from None


def decode(
    data: bytes,
    limits: WireLimits = DEFAULT_LIMITS,
    *,
    check_canonical: bool = True,
    max_bytes: int | None = None,
) -> Any:
    """Decode one deterministic CBOR item that fills ``data`` exactly.

    Raises :class:`LimitError` when ``data`` is longer than ``max_bytes`` (by default
    ``limits.max_packet_bytes``, at most a UDP datagram) or nests deeper than
    ``limits.max_depth``, and :class:`MalformedError` for anything not well-formed or not
    deterministic. ``max_bytes`` is for data that is not a packet and was bounded where it
    came from (a Raft snapshot, which may be megabytes). Collection counts and string
    lengths are checked by the typed decoders that read the value (they know each field's
    bound).
    """
    bound = limits.max_packet_bytes if max_bytes is None else max_bytes
    if len(data) > bound:
        raise LimitError(f"{len(data)} bytes exceeds the limit of {bound}")
    try:
        if check_canonical:
            value = _loads(
                data,
                max_depth=limits.max_depth,
                allow_indefinite=False,
                allow_duplicate_keys=False,
                object_hook=_check_map_order,
            )
        else:
            # cbor2.loads ignores bytes after the first item; the strict path catches them
            # in its re-encoding comparison, this one by asking where the decoder stopped.
            stream = io.BytesIO(data)
            value = _Decoder(
                stream,
                max_depth=limits.max_depth,
                allow_indefinite=False,
                allow_duplicate_keys=False,
            ).decode()
            if stream.tell() != len(data):
                raise MalformedError(
                    f"{len(data) - stream.tell()} bytes after the end of the CBOR item"
                )
    except cbor2.CBORDecodeError as exc:
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, WireError):  # raised by our object hook, wrapped by cbor2
            raise inner from None
        text = str(exc)
        if "depth" in text:
            raise LimitError(f"nesting deeper than {limits.max_depth}") from None
        raise MalformedError(f"not well-formed CBOR: {text}") from None
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError, KeyError) as exc:
        raise MalformedError(f"not decodable CBOR: {type(exc).__name__}: {exc}") from None
    if check_canonical:
        # Plain re-encoding reproduces every item as cbor2's canonical mode would, except
        # map order (checked by the object hook, since plain mode keeps the wire order)
        # and float width (plain mode always writes 8 bytes). So: equal bytes prove the
        # input deterministic unless it holds an 8-byte float that has a shorter preferred
        # form; unequal bytes get the full canonical comparison (a narrow float is legal).
        try:
            again = _dumps(value)
            if again == data:
                if b"\xfb" in data and _has_wide_float(value):
                    raise MalformedError("a float not in its shortest form (RFC 8949 4.2.2)")
                return value
            again = _dumps(value, canonical=True)
        except WireError:
            raise
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
