"""``HealthSummary``: the compact, bounded account of itself a node gossips (spec/health.md).

A summary is one CBOR array of unsigned integers after the node id::

    [1, node-id, epoch, version, awareness, awareness-max, loop-lag-ms, drop-permille,
     retransmit-permille, queue-depth, raft-role, raft-lag, registry-lag-ms, rss-kib,
     cpu-permille]

``(epoch, version)`` orders the summaries of one node: ``epoch`` is the node's boot epoch
and ``version`` a counter of the health subsystem's own, bumped at every publication. It
is not the SWIM incarnation (that number belongs to suspicion and refutation). Each
figure has a hard upper bound (:data:`FIELD_LIMITS`); an encoder clamps to it (a figure
past its bound means "at least this"), a decoder refuses what exceeds it
(``LimitError``). An encoded summary is at most :data:`MAX_SUMMARY_BYTES` bytes.

:func:`encode_summary` / :func:`decode_summary` are the byte-level codec;
:meth:`HealthSummary.to_cbor` / :meth:`HealthSummary.from_cbor` work on the decoded array
(what the frame of :mod:`foundation_p2p.health.gossip` carries).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from typing import Any

from foundation_p2p.addresses import NodeId
from foundation_p2p.errors import LimitError, UnsupportedVersionError
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import expect_bytes, expect_shape, expect_uint
from foundation_p2p.wire.limits import DEFAULT_LIMITS

SUMMARY_FORMAT = 1
"""The summary array's format number (its first element)."""
MAX_SUMMARY_BYTES = 128
"""Hard bound of one encoded summary (the largest legal one is 76 bytes)."""
U32 = (1 << 32) - 1


class RaftRole(enum.IntEnum):
    """The node's Raft role as a summary carries it (0 when it runs no Raft group)."""

    NONE = 0
    FOLLOWER = 1
    CANDIDATE = 2
    LEADER = 3
    LEARNER = 4


FIELD_LIMITS: dict[str, int] = {
    "awareness": 255,
    "awareness_max": 255,
    "loop_lag_ms": U32,
    "drop_permille": 1000,
    "retransmit_permille": 1000,
    "queue_depth": U32,
    "raft_role": max(RaftRole),
    "raft_lag": U32,
    "registry_lag_ms": U32,
    "rss_kib": U32,
    "cpu_permille": 64_000,
}
"""Upper bound of every figure (inclusive). ``cpu_permille`` may pass 1000 on many cores."""

_FIGURES = tuple(FIELD_LIMITS)
_ARITY = 4 + len(_FIGURES)


@dataclass(frozen=True, slots=True)
class HealthSummary:
    """What one node says about its own health, at ``(epoch, version)``.

    Rates are per mille of the last measurement window (``drop_permille``: packets
    dropped per 1000 received; ``retransmit_permille``: connection packets declared lost
    per 1000 sent). ``queue_depth`` is the deepest of the node's bounded queues.
    """

    node_id: NodeId
    epoch: int
    version: int
    awareness: int = 0
    awareness_max: int = 0
    loop_lag_ms: int = 0
    drop_permille: int = 0
    retransmit_permille: int = 0
    queue_depth: int = 0
    raft_role: int = RaftRole.NONE
    raft_lag: int = 0
    registry_lag_ms: int = 0
    rss_kib: int = 0
    cpu_permille: int = 0

    def newer_than(self, other: HealthSummary) -> bool:
        """True if this summary supersedes ``other`` (same node, larger (epoch, version))."""
        return (self.epoch, self.version) > (other.epoch, other.version)

    def clamped(self) -> HealthSummary:
        """This summary with every figure clamped into ``0..FIELD_LIMITS[name]``."""
        changes: dict[str, Any] = {
            name: min(max(int(getattr(self, name)), 0), limit)
            for name, limit in FIELD_LIMITS.items()
        }
        return replace(self, **changes)

    def figures(self) -> dict[str, int]:
        """The figures by name (everything but node id, epoch and version)."""
        return {name: getattr(self, name) for name in _FIGURES}

    def to_cbor(self) -> list[Any]:
        """The summary array (figures clamped to their bounds)."""
        c = self.clamped()
        if len(c.node_id) != 16:
            raise ValueError("health summary: node id must be 16 bytes")
        if not (0 <= c.epoch <= (1 << 64) - 1 and 0 <= c.version <= (1 << 64) - 1):
            raise ValueError("health summary: epoch and version must be uint64")
        return [SUMMARY_FORMAT, c.node_id, c.epoch, c.version, *(getattr(c, n) for n in _FIGURES)]

    @classmethod
    def from_cbor(cls, value: Any) -> HealthSummary:
        """Validate a decoded summary array; raises ``MalformedError``, ``LimitError`` or
        ``UnsupportedVersionError`` naming the offending field."""
        if type(value) is list and value and type(value[0]) is int \
                and value[0] != SUMMARY_FORMAT:
            raise UnsupportedVersionError(
                f"health summary: format {value[0]} is not supported (only {SUMMARY_FORMAT})"
            )
        items = expect_shape(value, "health summary", _ARITY, _ARITY)
        expect_uint(items[0], "health summary format")
        node_id = expect_bytes(items[1], "health summary node-id", size=16)
        epoch = expect_uint(items[2], "health summary epoch")
        version = expect_uint(items[3], "health summary version")
        figures: dict[str, int] = {}
        for name, raw in zip(_FIGURES, items[4:], strict=True):
            v = expect_uint(raw, f"health summary {name}")
            if v > FIELD_LIMITS[name]:
                raise LimitError(f"health summary {name}: {v} exceeds {FIELD_LIMITS[name]}")
            figures[name] = v
        return cls(node_id, epoch, version, **figures)


def encode_summary(summary: HealthSummary) -> bytes:
    """The deterministic CBOR encoding of ``summary`` (at most ``MAX_SUMMARY_BYTES``)."""
    return cbor.encode(summary.to_cbor())


def decode_summary(data: bytes) -> HealthSummary:
    """Strictly decode one summary; raises only ``WireError`` subclasses."""
    if len(data) > MAX_SUMMARY_BYTES:
        raise LimitError(f"health summary: {len(data)} bytes exceeds {MAX_SUMMARY_BYTES}")
    return HealthSummary.from_cbor(cbor.decode(data, DEFAULT_LIMITS))


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(HealthSummary))
"""Every field of :class:`HealthSummary`, in wire order after the format number."""

__all__ = [
    "FIELD_LIMITS",
    "FIELD_NAMES",
    "MAX_SUMMARY_BYTES",
    "SUMMARY_FORMAT",
    "HealthSummary",
    "RaftRole",
    "decode_summary",
    "encode_summary",
]
