"""Which channel a message goes on: the seed's routing rules, and an explanation of each.

The rules, tried in this order (``spec/channels.md`` section 3); the first that matches
decides:

1. ``priority="high"`` -> ``control`` (whatever the size: the caller asked for it);
2. the message's encoded size is larger than :data:`LARGE_MESSAGE_BYTES` (10 KiB)
   -> ``data``;
3. the message is *telemetry-shaped* (:func:`is_telemetry_shaped`) -> ``telemetry``;
4. otherwise -> ``events``.

The encoded size is the length of the message's deterministic CBOR encoding, the body
the codec would put on the stream before any compression (for a byte string: its length
plus its CBOR head, 1 to 9 bytes). It is computed without encoding for byte and text
strings, so routing a 50 MB byte string costs no copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from foundation_p2p.channels.codec import DEFAULT_CHANNEL_LIMITS
from foundation_p2p.channels.names import CONTROL, DATA, EVENTS, TELEMETRY, Channel
from foundation_p2p.errors import ConfigError
from foundation_p2p.wire import cbor

LARGE_MESSAGE_BYTES = 10 * 1024
"""Messages whose encoding is larger than this (strictly) go on ``data``."""

PRIORITIES = ("high", "normal", "low")
"""Accepted ``priority`` values. Only ``high`` changes the route."""

TELEMETRY_KEYS = ("metric", "value", "timestamp")
"""Keys a telemetry-shaped message must have."""


def _head_bytes(n: int) -> int:
    if n < 24:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    if n < 0x100000000:
        return 5
    return 9


def encoded_size(message: Any) -> int:
    """Length of ``message``'s deterministic CBOR encoding (strings: computed, not encoded).

    Raises the error of :func:`cbor.check_plain` for a value that is not plain CBOR data
    within the default channel limits.
    """
    t = type(message)
    if t is bytes:
        n = len(message)
        return _head_bytes(n) + n
    if t is str and message.isascii():
        n = len(message)
        return _head_bytes(n) + n
    cbor.check_plain(message, DEFAULT_CHANNEL_LIMITS.value_limits, what="message")
    return len(cbor.encode(message))


def _is_number(x: object) -> bool:
    return type(x) is int or type(x) is float


def is_telemetry_shaped(message: Any) -> bool:
    """True if ``message`` is a metric sample.

    Precisely: a ``dict`` that has the text keys ``metric``, ``value`` and ``timestamp``,
    where ``metric`` is a non-empty text string, and ``value`` and ``timestamp`` are
    numbers (CBOR integers or floats; booleans are not numbers). Other keys (``tags``,
    ``unit``...) may be present. Nothing else is telemetry-shaped: not a list of samples,
    not a map missing one key.
    """
    if type(message) is not dict:
        return False
    metric = message.get("metric")
    return (
        type(metric) is str
        and metric != ""
        and _is_number(message.get("value"))
        and _is_number(message.get("timestamp"))
    )


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Why a message goes on the channel it goes on (the result of :func:`explain`)."""

    channel: Channel
    """The channel chosen."""
    rule: str
    """The rule that fired: ``priority``, ``size``, ``telemetry`` or ``default``."""
    priority: str
    """The priority asked for."""
    encoded_bytes: int
    """The message's encoded size (see the module docstring)."""
    threshold_bytes: int
    """The size threshold of the ``size`` rule (:data:`LARGE_MESSAGE_BYTES`)."""
    telemetry_shaped: bool | None
    """Whether the message is telemetry-shaped; ``None`` if an earlier rule decided."""

    def __str__(self) -> str:
        if self.rule == "priority":
            why = f"priority={self.priority} goes on control before size or shape are considered"
        elif self.rule == "size":
            why = f"{self.encoded_bytes} encoded bytes > {self.threshold_bytes}"
        elif self.rule == "telemetry":
            why = (
                f"telemetry-shaped (metric/value/timestamp), "
                f"{self.encoded_bytes} bytes <= {self.threshold_bytes}"
            )
        else:
            why = (
                f"priority={self.priority}, {self.encoded_bytes} bytes <= "
                f"{self.threshold_bytes}, not telemetry-shaped"
            )
        return f"{self.channel.name}: rule {self.rule}: {why}"


def _check_priority(priority: object) -> str:
    if priority not in PRIORITIES:
        raise ConfigError(f"priority {priority!r}: expected one of {', '.join(PRIORITIES)}")
    return priority


def explain(message: Any, priority: str = "normal") -> RoutingDecision:
    """Route ``message`` and say why: which rule fired, the sizes, the channel.

    Raises ``ConfigError`` for an unknown priority, and the error of
    :func:`foundation_p2p.wire.cbor.check_plain` for a message that is not plain CBOR
    data (a ``WireError``: ``MalformedError`` or ``LimitError``).
    """
    prio = _check_priority(priority)
    size = encoded_size(message)
    if prio == "high":
        return RoutingDecision(CONTROL, "priority", prio, size, LARGE_MESSAGE_BYTES, None)
    if size > LARGE_MESSAGE_BYTES:
        return RoutingDecision(DATA, "size", prio, size, LARGE_MESSAGE_BYTES, None)
    if is_telemetry_shaped(message):
        return RoutingDecision(TELEMETRY, "telemetry", prio, size, LARGE_MESSAGE_BYTES, True)
    return RoutingDecision(EVENTS, "default", prio, size, LARGE_MESSAGE_BYTES, False)


def route_message(message: Any, priority: str = "normal") -> Channel:
    """The channel for ``message``: ``explain(message, priority).channel``."""
    return explain(message, priority).channel
