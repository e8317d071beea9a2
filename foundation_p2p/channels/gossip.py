"""A node's subscribed topic set, encoded for gossip (``spec/channels.md`` section 6).

``encode_topics(epoch, version, topics)`` gives the deterministic CBOR array
``[epoch, version, [topic, ...]]``: ``epoch`` is the node's boot epoch, ``version`` counts
changes of its topic set since that boot, and the topics are sorted (ASCII order) and
distinct. ``(epoch, version)`` orders two sets of one node: a receiver keeps the set with
the larger pair and ignores an older one that arrives late. At most ``max_topics`` topics
of at most 64 bytes each: a set takes at most :func:`max_encoded_bytes` bytes (4,245 with
the default 64 topics).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from foundation_p2p.channels.names import check_topic, topic_problem
from foundation_p2p.errors import ConfigError, LimitError, MalformedError
from foundation_p2p.wire import cbor

DEFAULT_MAX_TOPICS = 64
"""Most topics one node may announce."""

_MAX_U64 = 2**64 - 1


@dataclass(frozen=True, slots=True)
class TopicSet:
    """One node's announced topics."""

    epoch: int
    """The node's boot epoch when it announced them."""
    version: int
    """Changes of the set since that boot."""
    topics: tuple[str, ...]
    """The topics, sorted and distinct."""

    def newer_than(self, other: TopicSet | None) -> bool:
        """True if this set supersedes ``other`` (``(epoch, version)`` is larger)."""
        return other is None or (self.epoch, self.version) > (other.epoch, other.version)


def max_encoded_bytes(max_topics: int = DEFAULT_MAX_TOPICS) -> int:
    """The longest encoding of a set of ``max_topics`` topics (< 65536 topics).

    Array heads (1 + at most 3 bytes), two u64 (9 bytes each), and per topic a 2-byte
    text head and 64 bytes.
    """
    return 22 + 66 * max_topics


def encode_topics(
    epoch: int, version: int, topics: Iterable[str], *, max_topics: int = DEFAULT_MAX_TOPICS
) -> bytes:
    """Encode a topic set (sorted and deduplicated here); ``ConfigError`` on bad input."""
    for name, value in (("epoch", epoch), ("version", version)):
        if type(value) is not int or not 0 <= value <= _MAX_U64:
            raise ConfigError(f"encode_topics: {name} {value!r} is not a u64")
    names = sorted({check_topic(t) for t in topics})
    if len(names) > max_topics:
        raise ConfigError(f"encode_topics: {len(names)} topics exceeds max_topics {max_topics}")
    return cbor.encode([epoch, version, names])


def decode_topics(data: bytes, *, max_topics: int = DEFAULT_MAX_TOPICS) -> TopicSet:
    """Decode a topic set; ``WireError`` naming the problem for anything not as specified."""
    if len(data) > max_encoded_bytes(max_topics):
        raise LimitError(f"topic set: {len(data)} bytes is too long for {max_topics} topics")
    value = cbor.decode(data)
    if type(value) is not list or len(value) != 3:
        raise MalformedError("topic set: expected [epoch, version, topics]")
    epoch, version, names = value
    if type(epoch) is not int or epoch < 0 or type(version) is not int or version < 0:
        raise MalformedError("topic set: epoch and version must be unsigned integers")
    if type(names) is not list:
        raise MalformedError("topic set: topics must be an array")
    if len(names) > max_topics:
        raise LimitError(f"topic set: {len(names)} topics exceeds {max_topics}")
    previous = ""
    for name in names:
        problem = topic_problem(name)
        if problem is not None:
            raise MalformedError(f"topic set: topic {name!r}: {problem}")
        if name <= previous:
            raise MalformedError(f"topic set: {name!r} out of order or repeated")
        previous = name
    return TopicSet(epoch, version, tuple(names))
