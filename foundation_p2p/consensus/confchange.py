"""Configuration changes: what a ``CONF_CHANGE`` entry carries and how it applies.

A change is a list of operations (add a voter, add a learner, remove a node). Applying it
to a configuration follows Raft section 6 / Ongaro's thesis chapter 4:

- If at most one voter is added or removed, the change is *simple*: the new voter set
  replaces the old one directly. Any two majorities of configurations that differ by one
  voter overlap, so this is safe *as long as changes happen one at a time*; the leader
  enforces that by refusing a change while an earlier one is not yet applied
  (``Raft.pending_conf_index``, the thesis's rule in 4.1).
- Otherwise the change enters *joint consensus*: ``voters_outgoing`` keeps the old voters
  and every decision needs a majority of both sets. The leader leaves the joint
  configuration automatically (an entry with no operations) once it has applied it.

Why both: single-server changes cover the common case (replace a failed node one step at
a time), and joint consensus makes the few multi-voter changes (swapping two voters at
once, demoting while promoting) safe without ordering tricks.

Operations are idempotent (adding a present voter or removing an absent node changes
nothing), so replaying the committed log after a restart applies cleanly. A result with
no voter, or entering joint consensus while already joint, raises
:class:`ConfChangeError` (the leader checks before it proposes; a follower applying a
committed change that fails keeps its configuration and counts it).

A new group starts from :func:`bootstrap_entry` (the initial members as one change at
index 1, the only change allowed to add several voters without joint consensus: there is
no earlier configuration to overlap with).

The entry data is the CBOR array ``[[op, node_id], ...]`` (op 0 = add voter, 1 = add
learner, 2 = remove); the empty array means "leave joint consensus".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import cbor2

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind
from foundation_p2p.errors import ConfigError, LimitError, MalformedError

MAX_CONF_CHANGE_OPS = 1024
NODE_ID_BYTES = 16


class ConfChangeError(ConfigError):
    """A configuration change that cannot apply; the message says why."""


class ConfChangeOp(IntEnum):
    """One operation of a change (its number is the wire's)."""

    ADD_VOTER = 0
    ADD_LEARNER = 1
    REMOVE = 2


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A configuration change: operations applied together; none = leave joint."""

    ops: tuple[tuple[ConfChangeOp, NodeId], ...] = ()

    @property
    def leave_joint(self) -> bool:
        """True for the entry that ends joint consensus."""
        return not self.ops


def encode_conf_change(cc: ConfChange) -> bytes:
    """The entry data for ``cc``."""
    return cbor2.dumps([[int(op), node] for op, node in cc.ops], canonical=True)


def decode_conf_change(data: bytes) -> ConfChange:
    """Decode a ``CONF_CHANGE`` entry's data; raises only ``WireError`` subclasses."""
    if len(data) > 64 + MAX_CONF_CHANGE_OPS * 24:
        raise LimitError(f"conf change: {len(data)} bytes is too large")
    try:
        # a conf change is [[op, node_id], ...]: depth 2 (a deeper value, e.g. maps nested as
        # map keys, would make the canonical re-encoding below take exponential time)
        value: Any = cbor2.loads(data, max_depth=3, allow_indefinite=False)
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:
        raise MalformedError(f"conf change: not decodable CBOR: {type(exc).__name__}") from None
    if again != data:
        raise MalformedError("conf change: not deterministic CBOR")
    if type(value) is not list:
        raise MalformedError("conf change: expected an array of [op, node_id]")
    if len(value) > MAX_CONF_CHANGE_OPS:
        raise LimitError(f"conf change: {len(value)} operations exceeds {MAX_CONF_CHANGE_OPS}")
    ops: list[tuple[ConfChangeOp, NodeId]] = []
    for i, item in enumerate(value):
        if type(item) is not list or len(item) != 2:
            raise MalformedError(f"conf change[{i}]: expected [op, node_id]")
        op, node = item
        if type(op) is not int or op not in (0, 1, 2):
            raise MalformedError(f"conf change[{i}].op: unknown operation {op!r}")
        if type(node) is not bytes or len(node) != NODE_ID_BYTES:
            raise MalformedError(f"conf change[{i}].node_id: expected {NODE_ID_BYTES} bytes")
        ops.append((ConfChangeOp(op), node))
    return ConfChange(tuple(ops))


def bootstrap_entry(conf: ConfState) -> Entry:
    """The first entry of a new group: index 1, term 1, adding the initial members.

    Every founding member stores this same entry (and a hard state of term 1, commit 1)
    before starting, as etcd raft's bootstrap does; a node that joins later starts empty and
    receives it from the leader like any other entry, so it learns the configuration by
    replaying the log (or from a snapshot once the log is compacted).
    """
    if conf.voters_outgoing:
        raise ConfChangeError("bootstrap: the initial configuration cannot be joint")
    if not conf.voters:
        raise ConfChangeError("bootstrap: the initial configuration needs a voter")
    ops = tuple((ConfChangeOp.ADD_VOTER, n) for n in sorted(conf.voters)) + tuple(
        (ConfChangeOp.ADD_LEARNER, n) for n in sorted(conf.learners)
    )
    return Entry(1, 1, EntryKind.CONF_CHANGE, encode_conf_change(ConfChange(ops)))


def apply_conf_change(conf: ConfState, cc: ConfChange) -> ConfState:
    """The configuration after ``cc`` (see the module docstring for the rules)."""
    joint = bool(conf.voters_outgoing)
    if cc.leave_joint:
        if not joint:
            return conf  # idempotent: already left (a replay after restart)
        return ConfState(voters=conf.voters, learners=conf.learners)
    voters = set(conf.voters)
    learners = set(conf.learners)
    for op, node in cc.ops:
        if op is ConfChangeOp.ADD_VOTER:
            learners.discard(node)
            voters.add(node)
        elif op is ConfChangeOp.ADD_LEARNER:
            voters.discard(node)
            learners.add(node)
        else:
            voters.discard(node)
            learners.discard(node)
    if not voters:
        raise ConfChangeError("conf change: the result has no voter")
    changed = len(voters.symmetric_difference(conf.voters))
    if not conf.voters and not joint:
        # Bootstrap (the first entry of a new group, see bootstrap_entry): nothing to
        # overlap with, so the whole initial configuration applies at once.
        return ConfState(voters=frozenset(voters), learners=frozenset(learners))
    if changed == 0 and not joint:
        return ConfState(voters=frozenset(voters), learners=frozenset(learners))
    if joint:
        if changed == 0 and learners == set(conf.learners):
            return conf  # idempotent replay of the change that entered this joint state
        raise ConfChangeError(
            "conf change: already in joint consensus; leave it before the next change"
        )
    if changed == 1:
        return ConfState(voters=frozenset(voters), learners=frozenset(learners))
    demoted = learners & conf.voters
    if demoted:
        raise ConfChangeError(
            "conf change: a voter cannot become a learner in a joint change "
            "(demote it in its own single change)"
        )
    return ConfState(
        voters=frozenset(voters), learners=frozenset(learners), voters_outgoing=conf.voters
    )
