"""A node's subscribed topic set, as it rides the node's membership record
(``spec/channels.md`` section 6).

The set is the value of membership announcement extension 1
(:data:`~foundation_p2p.membership.frames.EXTENSION_TOPICS`, ``spec/membership.md``
section 3.5): signed by the node, relayed verbatim by every member, ordered by the
record's incarnation (so the set itself carries no version). The value is deterministic
CBOR, one of:

- an array of topics, sorted (ASCII order) and distinct, at most ``max_topics``:
  ``encode_topics(topics)``; a node with no subscription announces no extension at all;
- ``true`` (:data:`WILDCARD_VALUE`): *every topic*, announced when the array would not
  fit the membership's extension bound; publishers then send it every topic and the
  receiver filters (what nobody subscribes to is counted
  ``channels.receive.no_subscriber``). Never a silent truncation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from foundation_p2p.channels.names import check_topic, topic_problem
from foundation_p2p.errors import ConfigError, LimitError, MalformedError
from foundation_p2p.wire import cbor

DEFAULT_MAX_TOPICS = 64
"""Most topics one node may announce as a list."""
WILDCARD_VALUE = b"\xf5"
"""The wildcard set: CBOR ``true``, "send me every topic"."""


@dataclass(frozen=True, slots=True)
class TopicSet:
    """One node's announced topics."""

    topics: tuple[str, ...] = ()
    """The topics, sorted and distinct (empty for the wildcard)."""
    wildcard: bool = False
    """True: the node wants every topic (it filters on receipt)."""

    def holds(self, topic: str) -> bool:
        """True if a record on ``topic`` is to be sent to the node."""
        return self.wildcard or topic in self.topics


WILDCARD = TopicSet((), True)
"""The wildcard set."""


def max_encoded_bytes(max_topics: int = DEFAULT_MAX_TOPICS) -> int:
    """The longest encoding of a list of ``max_topics`` topics (< 65536 topics): an array
    head of at most 3 bytes, and per topic a 2-byte text head and 64 bytes."""
    return 3 + 66 * max_topics


def encode_topics(topics: Iterable[str], *, max_topics: int = DEFAULT_MAX_TOPICS) -> bytes:
    """Encode a topic list (sorted and deduplicated here); ``ConfigError`` on bad input."""
    names = sorted({check_topic(t) for t in topics})
    if len(names) > max_topics:
        raise ConfigError(f"encode_topics: {len(names)} topics exceeds max_topics {max_topics}")
    return cbor.encode(names)


def decode_topics(data: bytes, *, max_topics: int = DEFAULT_MAX_TOPICS) -> TopicSet:
    """Decode a topic set (a list or the wildcard); ``WireError`` naming the problem for
    anything not as specified."""
    if type(data) is not bytes:
        raise MalformedError("topic set: expected bytes")
    if len(data) > max_encoded_bytes(max_topics):
        raise LimitError(f"topic set: {len(data)} bytes is too long for {max_topics} topics")
    if data == WILDCARD_VALUE:
        return WILDCARD
    names = cbor.decode(data)
    if type(names) is not list:
        raise MalformedError("topic set: expected an array of topics or true (every topic)")
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
    return TopicSet(tuple(names))
