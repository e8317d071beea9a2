"""Fuzz targets of the channels decoders (``spec/channels.md``), in the shape of
``fuzz/targets.py``: each takes arbitrary bytes; the only allowed outcomes are "decoded"
(with the target's round-trip property) or a :class:`~foundation_p2p.errors.WireError`.

- ``channel-records``: the bytes as one channel stream, fed to ``RecordDecoder`` whole and
  again split at a point the input chooses (its first byte); both feeds must agree, and
  every record decoded without compression must re-encode to exactly its bytes.
- ``channel-topic-set``: ``decode_topics`` (the value of membership announcement
  extension 1); a decoded set re-encodes byte-exact.

``fuzz/targets.py`` lists these targets in its ``TARGETS`` and seeds them with
:func:`channel_seeds` first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from foundation_p2p.channels.codec import (
    COMPRESSED,
    ChannelLimits,
    ChannelMessage,
    RecordDecoder,
    encode_record,
)
from foundation_p2p.channels.gossip import WILDCARD_VALUE, decode_topics, encode_topics
from foundation_p2p.errors import WireError

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "channels.json"

# Small bounds keep a fuzz iteration cheap; the parsing paths are the same.
_LIMITS = ChannelLimits(max_message_bytes=1 << 16)


def _decode_all(chunks: list[bytes]) -> tuple[list[ChannelMessage], str | None]:
    decoder = RecordDecoder(_LIMITS)
    out: list[ChannelMessage] = []
    try:
        for chunk in chunks:
            out += decoder.feed(chunk)
        decoder.end_of_stream()
    except WireError as exc:
        return out, exc.code
    return out, None


def fuzz_channel_records(data: bytes) -> None:
    """``RecordDecoder.feed``: split-independent, and uncompressed records re-encode."""
    whole, error = _decode_all([data])
    cut = data[0] % (len(data) + 1) if data else 0
    split, split_error = _decode_all([data[:cut], data[cut:]])
    assert error == split_error, f"whole feed: {error}, split at {cut}: {split_error}"
    # A split feed raises at the same record; records decoded before it match.
    assert [(m.topic, m.seq, m.flags) for m in whole] == [
        (m.topic, m.seq, m.flags) for m in split
    ], "records differ between a whole and a split feed"
    pos = 0
    for m in whole:
        if not m.flags & COMPRESSED:
            again = encode_record(m.topic, m.seq, m.value, limits=_LIMITS)
            assert again == data[pos : pos + m.record_bytes], "record does not re-encode"
        pos += m.record_bytes


def fuzz_channel_topic_set(data: bytes) -> None:
    """``decode_topics``: a decoded set re-encodes to exactly the input."""
    try:
        ts = decode_topics(data)
    except WireError:
        return
    again = WILDCARD_VALUE if ts.wildcard else encode_topics(ts.topics)
    assert again == data, "topic set not canonical"


CHANNEL_TARGETS: dict[str, Callable[[bytes], None]] = {
    "channel-records": fuzz_channel_records,
    "channel-topic-set": fuzz_channel_topic_set,
}


def channel_seeds(target: str) -> list[bytes]:
    """Seed inputs for ``target`` from ``spec/vectors/channels.json``."""
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    if target == "channel-records":
        hexes = [e["hex"] for e in vectors["record"]]
        hexes += [vectors["stream"]["hex"]]
        hexes += [e["hex"] for e in vectors["invalid_record"]]
    elif target == "channel-topic-set":
        hexes = [e["hex"] for e in vectors["topic_set"]["valid"]]
        hexes += [e["hex"] for e in vectors["topic_set"]["invalid"]]
    else:
        raise KeyError(target)
    return [bytes.fromhex(h) for h in hexes]
