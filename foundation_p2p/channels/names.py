"""The four standard channels, their stream priorities, and custom topic names.

A *channel* is a stream class: each connection between two nodes carries one stream per
channel, scheduled by urgency (RFC 9218: 0 is the most urgent, 7 the least) and by the
incremental flag (an incremental stream shares its urgency level round-robin, a
non-incremental one is sent to completion in stream-id order). A *topic* is the name an
application publishes and subscribes under; every topic rides one channel. The four
standard channel names are topics too, riding their own channel.

Topic names (``spec/channels.md`` section 2): 1 to :data:`MAX_TOPIC_BYTES` ASCII
characters from ``[A-Za-z0-9._:/-]``, starting with a letter or digit. The restricted
charset keeps names printable in logs, unambiguous on the wire (one byte per character)
and safe as counter-name suffixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

from foundation_p2p.errors import ConfigError

MAX_TOPIC_BYTES = 64
"""Longest topic name, in bytes (= characters: the charset is ASCII)."""

_TOPIC_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]*\Z")


@dataclass(frozen=True, slots=True)
class Channel:
    """One standard channel: its name, wire number and stream priority."""

    name: str
    """``control``, ``events``, ``data`` or ``telemetry``."""
    number: int
    """Its number on the wire (spec/channels.md section 1): 0..3."""
    urgency: int
    """RFC 9218 urgency of its stream: 0 (most urgent) .. 7."""
    incremental: bool
    """RFC 9218 incremental flag of its stream."""

    def __str__(self) -> str:
        return self.name


CONTROL = Channel("control", 0, urgency=0, incremental=False)
"""Small urgent messages (heartbeats, commands): sent before anything else, each whole."""
EVENTS = Channel("events", 1, urgency=2, incremental=True)
"""Ordinary application messages: the default channel."""
DATA = Channel("data", 2, urgency=6, incremental=True)
"""Bulk transfers (messages above 10 KiB): least urgent, never delays the others."""
TELEMETRY = Channel("telemetry", 3, urgency=4, incremental=True)
"""Metric samples: after events, before bulk data."""

STANDARD_CHANNELS: tuple[Channel, ...] = (CONTROL, EVENTS, DATA, TELEMETRY)
"""The four standard channels, by wire number."""

CHANNELS_BY_NAME: MappingProxyType[str, Channel] = MappingProxyType(
    {c.name: c for c in STANDARD_CHANNELS}
)
"""Standard channels by name."""


def topic_problem(name: object) -> str | None:
    """Why ``name`` is not a valid topic name, or ``None`` if it is."""
    if type(name) is not str:
        return f"expected a string, got {type(name).__name__}"
    if not name:
        return "empty"
    if len(name) > MAX_TOPIC_BYTES:
        return f"{len(name)} characters exceeds {MAX_TOPIC_BYTES}"
    if _TOPIC_RE.match(name) is None:
        if not name.isascii():
            return "non-ASCII character"
        if not name[0].isalnum():
            return f"must start with a letter or digit, not {name[0]!r}"
        bad = next(ch for ch in name if not (ch.isalnum() or ch in "._:/-"))
        return f"character {bad!r} not allowed (letters, digits and . _ : / - only)"
    return None


def check_topic(name: object, *, what: str = "topic") -> str:
    """Return ``name`` if it is a valid topic name, else raise ``ConfigError`` naming why."""
    problem = topic_problem(name)
    if problem is not None:
        raise ConfigError(f"{what} {name!r}: {problem}")
    return name  # type: ignore[return-value]


def channel_named(name: object) -> Channel:
    """The standard channel called ``name``; ``ConfigError`` if there is none."""
    if isinstance(name, Channel):
        return name
    channel = CHANNELS_BY_NAME.get(name) if isinstance(name, str) else None
    if channel is None:
        raise ConfigError(
            f"channel {name!r}: not a standard channel (control, events, data, telemetry)"
        )
    return channel


class TopicMap:
    """Which channel each topic rides: standard names their own, custom topics as defined.

    A custom topic not defined with :meth:`define` rides :data:`EVENTS` (the seed's
    default). At most ``max_topics`` custom topics can be defined (``ConfigError``
    beyond); the map is local to a node, since every record names its topic and the
    channel is the stream it arrives on.
    """

    def __init__(self, *, max_topics: int = 1024) -> None:
        if max_topics < 0:
            raise ConfigError(f"TopicMap.max_topics: must be >= 0, got {max_topics}")
        self.max_topics = max_topics
        self._custom: dict[str, Channel] = {}

    def define(self, topic: str, channel: Channel | str) -> None:
        """Map the custom ``topic`` onto ``channel`` (redefining it is allowed)."""
        check_topic(topic)
        ch = channel_named(channel)
        if topic in CHANNELS_BY_NAME:
            if CHANNELS_BY_NAME[topic] is not ch:
                raise ConfigError(f"topic {topic!r}: a standard channel rides only itself")
            return
        if topic not in self._custom and len(self._custom) >= self.max_topics:
            raise ConfigError(
                f"topic {topic!r}: already {self.max_topics} custom topics (max_topics)"
            )
        self._custom[topic] = ch

    def channel_of(self, topic: str) -> Channel:
        """The channel ``topic`` rides (``ConfigError`` for an invalid name)."""
        ch = CHANNELS_BY_NAME.get(topic)
        if ch is not None:
            return ch
        ch = self._custom.get(topic)
        if ch is not None:
            return ch
        check_topic(topic)
        return EVENTS

    def defined(self) -> dict[str, str]:
        """The custom topics defined so far, name -> channel name, sorted by name."""
        return {t: self._custom[t].name for t in sorted(self._custom)}


def channel_stream_id(channel: Channel, *, initiator: bool) -> int:
    """The stream id carrying ``channel`` from a publisher (spec/channels.md section 1).

    The publisher's first four unidirectional streams, one per channel in number order:
    ``4n + 2`` if it initiated the connection, ``4n + 3`` if it responded.
    """
    return 4 * channel.number + (2 if initiator else 3)


def channel_of_stream(stream_id: int) -> Channel | None:
    """The channel a received unidirectional stream carries, or ``None`` if it is not a
    channel stream (bidirectional, or id 16 and up)."""
    if type(stream_id) is not int or not 0 <= stream_id < 16 or not stream_id & 0x2:
        return None
    return STANDARD_CHANNELS[stream_id >> 2]
