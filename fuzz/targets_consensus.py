"""Fuzz targets of the Raft core (``spec/consensus.md``), in the shape of ``fuzz/targets.py``:
each takes arbitrary bytes; the only allowed outcomes are "decoded" (with the target's
round-trip property) or a :class:`~foundation_p2p.errors.WireError`.

- ``raft-message``: ``decode_message``; a decoded message re-encodes to exactly its bytes.
- ``raft-conf-change``: ``decode_conf_change``; a decoded change re-encodes exactly.
- ``raft-step``: the bytes decoded as a message addressed to a node of a 3-node group (as
  follower, and again as a freshly elected leader) and stepped into it: the state machine
  must take any well-formed message without raising, and stay within its invariants
  (commit index within the log, applied <= committed).

``fuzz/targets.py`` lists these targets in its ``TARGETS`` and seeds them with
:func:`consensus_seeds` first (see ``tests/consensus/test_consensus_fuzz.py``, which also
runs them under Hypothesis).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from foundation_p2p.consensus.confchange import decode_conf_change, encode_conf_change
from foundation_p2p.consensus.memory_storage import MemoryStorage
from foundation_p2p.consensus.messages import (
    Message,
    MessageLimits,
    MessageType,
    decode_message,
    encode_message,
)
from foundation_p2p.consensus.raft import RaftConfig, StateRole
from foundation_p2p.consensus.rawnode import RawNode
from foundation_p2p.consensus.types import ConfState
from foundation_p2p.errors import WireError

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "consensus.json"

# Small bounds keep an iteration cheap; the parsing paths are the same.
_LIMITS = MessageLimits(max_message_bytes=1 << 16)
_A = bytes.fromhex("a1" * 16)
_B = bytes.fromhex("b2" * 16)
_C = bytes.fromhex("c3" * 16)


def fuzz_raft_message(data: bytes) -> None:
    """``decode_message``: a decoded message re-encodes byte-exact."""
    try:
        m = decode_message(data, _LIMITS)
    except WireError:
        return
    assert encode_message(m) == data, "raft message not canonical"


def fuzz_raft_conf_change(data: bytes) -> None:
    """``decode_conf_change``: a decoded change re-encodes byte-exact."""
    try:
        cc = decode_conf_change(data)
    except WireError:
        return
    assert encode_conf_change(cc) == data, "conf change not canonical"


def _drain(node: RawNode, storage: MemoryStorage) -> None:
    """Play the driver: persist and apply every Ready (messages are dropped)."""
    while node.has_ready():
        rd = node.ready()
        if rd.snapshot is not None:
            storage.apply_snapshot(*rd.snapshot)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        node.advance(rd)


def _node(leader: bool) -> tuple[RawNode, MemoryStorage]:
    storage = MemoryStorage()
    storage.bootstrap(ConfState(voters=frozenset({_A, _B, _C})))
    node = RawNode(RaftConfig(id=_A, pre_vote=False), storage, random.Random(0))
    _drain(node, storage)
    if leader:
        node.campaign()
        node.step(Message(MessageType.VOTE_RESP, to=_A, sender=_B, term=node.raft.term))
        assert node.raft.role is StateRole.LEADER
        _drain(node, storage)
    return node, storage


def fuzz_raft_step(data: bytes) -> None:
    """A well-formed message never makes the core raise; its invariants hold after it."""
    try:
        m = decode_message(data, _LIMITS)
    except WireError:
        return
    for leader in (False, True):
        node, storage = _node(leader)
        m.to = _A
        node.step(m)
        r = node.raft
        assert r.log.applied <= r.log.committed <= r.log.last_index()
        _drain(node, storage)
        assert r.log.applied <= r.log.committed <= r.log.last_index()
        assert storage.last_index() == r.log.last_index()


CONSENSUS_TARGETS: dict[str, Callable[[bytes], None]] = {
    "raft-message": fuzz_raft_message,
    "raft-conf-change": fuzz_raft_conf_change,
    "raft-step": fuzz_raft_step,
}


def consensus_seeds(target: str) -> list[bytes]:
    """Seed inputs for ``target`` from ``spec/vectors/consensus.json``."""
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    if target in ("raft-message", "raft-step"):
        hexes = [e["hex"] for e in vectors["message"]]
        hexes += [e["hex"] for e in vectors["invalid_message"]]
    elif target == "raft-conf-change":
        hexes = [e["hex"] for e in vectors["conf_change"]]
    else:
        raise KeyError(target)
    return [bytes.fromhex(h) for h in hexes]
