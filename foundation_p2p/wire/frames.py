"""Frames: the typed units a gossip packet carries (``spec/wire.md``, section "Frames").

A gossip packet's plaintext is a CBOR array of frames; each frame is a CBOR array whose
first element is its frame type. Every frame class has ``to_cbor()`` (the array) and
``from_cbor(items, limits)`` (validated construction), plus ``encode()``/``decode()`` for a
frame on its own. Later capabilities (membership, health) register their frame types in
:data:`FRAME_TYPES`; a frame type a receiver does not know is skipped and counted, so new
frame types can be added within one protocol version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, TypeVar

from foundation_p2p.errors import LimitError, MalformedError
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import DEFAULT_LIMITS, WireLimits

MAX_UINT64 = (1 << 64) - 1

F = TypeVar("F", bound="Frame")


class Frame(Protocol):
    """What every frame class provides."""

    TYPE: ClassVar[int]

    def to_cbor(self) -> list[Any]: ...


class FrameCodec(Protocol):
    """A frame class as a decoder sees it."""

    TYPE: ClassVar[int]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Frame: ...


FRAME_TYPES: dict[int, type[FrameCodec]] = {}
"""Frame type number -> frame class. Numbers are assigned in ``spec/wire.md``."""


def register_frame(cls: type[F]) -> type[F]:
    """Class decorator: add a frame class to :data:`FRAME_TYPES` under its ``TYPE``."""
    number = cls.TYPE
    if number in FRAME_TYPES:
        raise ValueError(f"frame type {number} registered twice")
    FRAME_TYPES[number] = cls  # type: ignore[assignment]
    return cls


def expect_uint(value: Any, what: str) -> int:
    """Return ``value`` if it is an unsigned 64-bit integer, else raise ``MalformedError``."""
    if type(value) is not int or not 0 <= value <= MAX_UINT64:
        raise MalformedError(f"{what}: expected an unsigned integer, got {type(value).__name__}")
    return value


def expect_bytes(
    value: Any, what: str, *, size: int | None = None, limit: int | None = None
) -> bytes:
    """Return ``value`` if it is a byte string of the given exact size or below the limit."""
    if type(value) is not bytes:
        raise MalformedError(f"{what}: expected a byte string, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise MalformedError(f"{what}: expected {size} bytes, got {len(value)}")
    if limit is not None and len(value) > limit:
        raise LimitError(f"{what}: {len(value)} bytes exceeds {limit}")
    return value


def expect_text(value: Any, what: str, limit: int) -> str:
    """Return ``value`` if it is a text string of at most ``limit`` UTF-8 bytes."""
    if type(value) is not str:
        raise MalformedError(f"{what}: expected a text string, got {type(value).__name__}")
    n = len(value)  # 1 to 4 UTF-8 bytes a character: encode only when that is unclear
    if n > limit or (n * 4 > limit and cbor.utf8_longer_than(value, limit)):
        raise LimitError(f"{what}: longer than {limit} bytes")
    return value


def expect_shape(items: Any, what: str, low: int, high: int) -> list[Any]:
    """Return ``items`` if it is an array with ``low``..``high`` elements."""
    if type(items) is not list:
        raise MalformedError(f"{what}: expected an array, got {type(items).__name__}")
    if not low <= len(items) <= high:
        raise MalformedError(f"{what}: expected {low}..{high} elements, got {len(items)}")
    return items


def expect_frame(items: Any, frame_type: int, what: str, low: int, high: int) -> list[Any]:
    """Return ``items`` if it is an array of ``low``..``high`` elements led by ``frame_type``."""
    checked = expect_shape(items, what, low, high)
    if type(checked[0]) is not int or checked[0] != frame_type:
        raise MalformedError(f"{what}: frame type must be {frame_type}, got {checked[0]!r}")
    return checked


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~4x, per packet
class _SeqFrame:
    """A frame holding one sequence number: ``[TYPE, seq: uint]`` (Ping and Ack)."""

    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    seq: int

    def to_cbor(self) -> list[Any]:
        return [self.TYPE, self.seq]

    @classmethod
    def from_cbor(cls, items: list[Any], limits: WireLimits) -> Self:
        expect_frame(items, cls.TYPE, cls.NAME, 2, 2)
        return cls(expect_uint(items[1], f"{cls.NAME}.seq"))

    def encode(self) -> bytes:
        """This frame alone, as deterministic CBOR."""
        return cbor.encode(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Self:
        """One frame of this type, strictly decoded (deterministic CBOR only)."""
        return cls.from_cbor(cbor.decode(data, limits), limits)


@register_frame
@dataclass(slots=True)
class Ping(_SeqFrame):
    """Asks the receiver to answer with an :class:`Ack` carrying the same ``seq``
    (sender-chosen, echoed in the ack).

    CDDL: ``ping = [1, seq: uint]``.
    """

    TYPE: ClassVar[int] = 1
    NAME: ClassVar[str] = "ping"


@register_frame
@dataclass(slots=True)
class Ack(_SeqFrame):
    """Answers a :class:`Ping`; ``seq`` is the ping's.

    CDDL: ``ack = [2, seq: uint]``.
    """

    TYPE: ClassVar[int] = 2
    NAME: ClassVar[str] = "ack"


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~4x, per packet
class DecodedFrames:
    """The frames of one packet, and how many frames of unknown type were skipped."""

    frames: list[Frame]
    unknown: int


def encode_frames(frames: list[Frame]) -> bytes:
    """Encode frames as the plaintext of a gossip packet (a CBOR array of frames)."""
    return cbor.encode([f.to_cbor() for f in frames])


def decode_frames(
    data: bytes, limits: WireLimits = DEFAULT_LIMITS, *, check_canonical: bool = False
) -> DecodedFrames:
    """Decode a gossip packet's plaintext into frames; raises only ``WireError``.

    Frames of an unknown type are skipped and counted (``unknown``); a known frame that
    is malformed rejects the whole packet, so nothing it carried is applied.

    The plaintext has already been authenticated by the AEAD, so by default it is held to
    well-formedness, shape, types and limits but not re-checked for deterministic
    encoding (spec/wire.md section 9: that check costs a full re-encoding, about a quarter
    of the receive path, and protects nothing here). ``check_canonical=True`` applies the
    strict rule of every other decoder.
    """
    value = cbor.decode(data, limits, check_canonical=check_canonical)
    if type(value) is not list:
        raise MalformedError("frames: expected an array of frames")
    if len(value) > limits.max_frames:
        raise LimitError(f"frames: {len(value)} frames exceeds the limit of {limits.max_frames}")
    frames: list[Frame] = []
    unknown = 0
    types = FRAME_TYPES
    for items in value:
        if type(items) is not list or not items:
            raise MalformedError("frame: expected a non-empty array")
        kind = items[0]
        if type(kind) is not int or kind < 0:
            raise MalformedError("frame: the frame type must be an unsigned integer")
        codec = types.get(kind)
        if codec is None:
            unknown += 1
            continue
        frames.append(codec.from_cbor(items, limits))
    return DecodedFrames(frames, unknown)
