"""Fuzz targets of the health decoders (``spec/health.md``), in the shape of
``fuzz/targets.py``: each takes arbitrary bytes; the only allowed outcomes are "decoded"
(with the target's round-trip property) or a :class:`~foundation_p2p.errors.WireError`.

- ``health-summary``: ``decode_summary``; a decoded summary re-encodes byte-exact, within
  ``MAX_SUMMARY_BYTES``.
- ``health-frames``: the bytes as a gossip plaintext (``decode_frames``, strict); every
  decoded health frame re-encodes to the same summary, and the frames are handed to a
  ``HealthGossip`` table (which must take any decoded frame without raising; the newest
  version per node is what it holds).

``fuzz/targets.py`` is meant to list these in its ``TARGETS`` (:data:`HEALTH_TARGETS`)
and to seed them with :func:`health_seeds`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import WireError
from foundation_p2p.health.gossip import HealthGossip, SummaryFrame
from foundation_p2p.health.summary import (
    MAX_SUMMARY_BYTES,
    HealthSummary,
    decode_summary,
    encode_summary,
)
from foundation_p2p.wire.frames import decode_frames

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "health.json"
_LOCAL = bytes(16)


def fuzz_health_summary(data: bytes) -> None:
    """``decode_summary``: decoded summaries re-encode byte-exact."""
    try:
        s = decode_summary(data)
    except WireError:
        return
    again = encode_summary(s)
    assert again == data, "a decoded summary does not re-encode to its bytes"
    assert len(again) <= MAX_SUMMARY_BYTES


class _NoMembers:
    """The membership surface HealthGossip reads, with nobody in it."""

    node_id = _LOCAL
    leaving = False

    def member(self, node_id: bytes) -> None:
        return None

    def members(self) -> list[object]:
        return []


def fuzz_health_frames(data: bytes) -> None:
    """Decoded health frames round-trip, and a gossip table takes them without raising."""
    try:
        decoded = decode_frames(data, check_canonical=True)
    except WireError:
        return
    gossip = HealthGossip(
        _NoMembers(),  # type: ignore[arg-type]
        epoch=1, rng=random.Random(0), counters=Counters(),
    )
    newest: dict[bytes, HealthSummary] = {}
    now = Now(1.0, 1.0)
    for frame in decoded.frames:
        if not isinstance(frame, SummaryFrame):
            continue
        s = frame.summary
        assert decode_summary(encode_summary(s)) == s
        gossip.handle_message(now, b"\x01" * 16, ("127.0.0.1", 1), frame)
        if s.node_id != _LOCAL and (s.node_id not in newest or s.newer_than(newest[s.node_id])):
            newest[s.node_id] = s
    assert gossip.summaries() == newest, "the table does not hold the newest summaries"
    gossip.handle_timer(Now(2.0, 2.0))
    assert gossip.take_outgoing() == []  # nobody to send to


HEALTH_TARGETS: dict[str, Callable[[bytes], None]] = {
    "health-summary": fuzz_health_summary,
    "health-frames": fuzz_health_frames,
}


def health_seeds(target: str) -> list[bytes]:
    """Seed inputs for ``target`` from ``spec/vectors/health.json``."""
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    if target == "health-summary":
        hexes = [e["hex"] for e in vectors["summary"]]
        hexes += [e["hex"] for e in vectors["invalid_summary"]]
        return [bytes.fromhex(h) for h in hexes]
    if target == "health-frames":
        frames = [bytes.fromhex(e["frame_hex"]) for e in vectors["summary"]]
        return [b"\x81" + f for f in frames] + [bytes([0x80 | len(frames)]) + b"".join(frames)]
    raise KeyError(f"no health fuzz target {target!r}")
