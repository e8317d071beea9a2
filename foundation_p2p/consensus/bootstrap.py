"""Forming a Raft group once: who the initial voters are, and when a node may bootstrap.

The rule (issue 7, item 4; in the shape of Consul's ``bootstrap_expect``), specified in
``spec/consensus.md`` (section "Bootstrap protocol"):

- A node that holds **any** persisted Raft state (a term, a vote, an entry, a snapshot)
  never bootstraps: it restarts the group it belongs to. A node that has seen the group
  (a Raft message from a member, or a member announcing membership extension 2 = 2)
  never bootstraps either: it joins with an empty log. The subsystem enforces both.
- Otherwise the initial voters are the ``expect`` smallest node ids among the eligible
  members alive (:func:`initial_voters`): a pure function of the set seen, so nodes with
  the same view compute the same voters, in any order of arrival.
- Views differ while membership converges, so the set is agreed in two phases by one
  **coordinator**: a node that sees at least ``expect`` eligible members and is the
  smallest of them (:class:`BootstrapProtocol`):

  1. The coordinator sends ``PREPARE(nonce, round, voters)`` to the other voters. Each
     time its computed set changes it starts a new round and sends ``RELEASE`` to the
     members it dropped; when it stops being the smallest it releases everyone.
  2. A node *promises* (answers ``ACK``) a prepare that names it and that is, by its own
     view plus the prepared voters, the smallest ``expect`` ids (so it knows of no
     smaller eligible node the coordinator missed). It promises one coordinator at a
     time: a prepare from another one is refused (counted ``raft.bootstrap.conflicts``)
     until that coordinator releases it, moves to a later round, or is removed from its
     view by membership (failed or left). A node that promises stops coordinating.
  3. When every other voter promised the current round the coordinator *commits*: it
     writes the first entry and sends ``COMMIT`` to the voters; a voter still promised to
     that round writes the same entry. A voter that missed the commit receives entry 1
     from the leader like a joining node (the subsystem's join path).

  Once only: two coordinators can commit sets that share a member only if that member
  promised both, and it promises a second one only after the first abandoned the round
  (its own ``RELEASE`` or a later round) or membership declared it failed. The remaining
  window is a coordinator that commits and then fails before any ``COMMIT`` or Raft
  message reaches its voters (and is declared failed): written down in the spec. As
  views converge the smallest eligible node becomes the only coordinator, every other
  coordinator releases its promises, so the group forms (live) and from the same set on
  every run with the same membership (deterministic).

Bootstrapping writes the same first entry on every founding voter
(``confchange.bootstrap_entry``: index 1, term 1, the voters) with hard state term 1,
commit 1, durably, before the Raft node starts.

Bounds: a node keeps at most one heard prepare per coordinator and at most
``max_peers`` of them, and at most ``max_peers`` members to release; beyond that a prepare
is dropped (counted ``raft.bootstrap.dropped.peers``) and the coordinator resends it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from foundation_p2p.addresses import NodeId
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, MalformedError

KIND_BOOTSTRAP = 3
"""The Raft service message kind of every bootstrap message (``spec/consensus-client.md``)."""

PREPARE = 0
"""``[3, [0, nonce, round, [voters...]]]``: a coordinator asks the voters to promise."""
ACK = 1
"""``[3, [1, nonce, round, []]]``: a voter promises the coordinator's round."""
RELEASE = 2
"""``[3, [2, nonce, round, []]]``: the coordinator abandoned every round up to ``round``."""
COMMIT = 3
"""``[3, [3, nonce, round, [voters...]]]``: the coordinator bootstraps ``voters``."""

_OP_NAMES = {PREPARE: "prepare", ACK: "ack", RELEASE: "release", COMMIT: "commit"}
_U63 = 1 << 63
_U64 = 1 << 64
MAX_VOTERS = 64
"""The largest voter list a prepare or commit may carry (``expect`` is 1, 3 or 5)."""


def initial_voters(candidates: Iterable[NodeId], expect: int) -> frozenset[NodeId] | None:
    """The ``expect`` smallest node ids among ``candidates`` (bytewise order), or ``None``
    while there are fewer than ``expect``."""
    if type(expect) is not int or expect < 1:
        raise ConfigError(f"bootstrap_expect: must be a positive integer, got {expect!r}")
    ids = sorted(set(candidates))
    if len(ids) < expect:
        return None
    return frozenset(ids[:expect])


@dataclass(frozen=True, slots=True)
class BootstrapMessage:
    """One decoded bootstrap message: ``[3, [op, nonce, round, voters]]`` (``voters``
    empty for ACK and RELEASE)."""

    op: int
    nonce: int
    round: int
    voters: frozenset[NodeId] = frozenset()

    def encode(self) -> list[Any]:
        """The Raft service message (a CBOR-ready list)."""
        return [KIND_BOOTSTRAP, [self.op, self.nonce, self.round, sorted(self.voters)]]


def decode_bootstrap(message: Any) -> BootstrapMessage:
    """Decode a Raft service message of kind 3; :class:`MalformedError` naming the problem."""
    if (
        type(message) is not list
        or len(message) != 2
        or message[0] != KIND_BOOTSTRAP
        or type(message[1]) is not list
        or len(message[1]) != 4
    ):
        raise MalformedError("raft service: bootstrap: expected [3, [op, nonce, round, voters]]")
    op, nonce, rnd, ids = message[1]
    if type(op) is not int or op not in _OP_NAMES:
        raise MalformedError(f"raft service: bootstrap: unknown op {op!r}")
    if type(nonce) is not int or not 0 <= nonce < _U63:
        raise MalformedError("raft service: bootstrap: nonce must be a 63-bit unsigned integer")
    if type(rnd) is not int or not 0 <= rnd < _U64:
        raise MalformedError("raft service: bootstrap: round must be a 64-bit unsigned integer")
    name = _OP_NAMES[op]
    if type(ids) is not list or not all(type(v) is bytes and len(v) == 16 for v in ids):
        raise MalformedError(f"raft service: bootstrap {name}: voters must be 16-byte node ids")
    if op in (ACK, RELEASE):
        if ids:
            raise MalformedError(f"raft service: bootstrap {name}: expected no voters")
        return BootstrapMessage(op, nonce, rnd)
    if not 1 <= len(ids) <= MAX_VOTERS:
        raise MalformedError(f"raft service: bootstrap {name}: expected 1..{MAX_VOTERS} voters")
    if any(ids[i] >= ids[i + 1] for i in range(len(ids) - 1)):
        raise MalformedError(f"raft service: bootstrap {name}: voters must be sorted, unique")
    return BootstrapMessage(op, nonce, rnd, frozenset(ids))


@dataclass(frozen=True, slots=True)
class _Promise:
    coordinator: NodeId
    nonce: int
    round: int
    voters: frozenset[NodeId]


class BootstrapProtocol:
    """One node's side of the two-phase bootstrap (see the module docstring).

    Sans-I/O: inputs are :meth:`set_candidates` (the eligible alive members, this node
    included) and :meth:`receive` (a decoded message from an authenticated peer), each
    with the monotonic time; outputs are :meth:`poll` (messages to send now, as
    ``(peer, message)``), :meth:`next_deadline` and :meth:`ready` (the voter set to write
    once decided). The driver (``ConsensusSubsystem``) stops calling it once the node
    started, has Raft state, or saw the group.
    """

    def __init__(
        self,
        node_id: NodeId,
        expect: int,
        *,
        nonce: int,
        resend_s: float = 0.5,
        counters: Counters | None = None,
        max_peers: int = 1024,
    ) -> None:
        if type(expect) is not int or expect < 1:
            raise ConfigError(f"bootstrap_expect: must be a positive integer, got {expect!r}")
        if type(nonce) is not int or not 0 <= nonce < _U63:
            raise ConfigError("bootstrap nonce: must be a 63-bit unsigned integer")
        if not resend_s > 0:
            raise ConfigError(f"bootstrap_resend_s: must be positive, got {resend_s!r}")
        self.node_id = node_id
        self.expect = expect
        self.nonce = nonce
        self.resend_s = resend_s
        self.counters = counters if counters is not None else Counters()
        self.max_peers = max_peers
        self.view: frozenset[NodeId] = frozenset({node_id})
        """The eligible alive members as last seen (this node included)."""
        self.round = 0
        """This node's latest coordinator round (0: never coordinated)."""
        self.coordinating: frozenset[NodeId] | None = None
        """The voters of the current round while this node coordinates, else ``None``."""
        self.acks: set[NodeId] = set()
        """Voters that promised the current round."""
        self.promise: _Promise | None = None
        """The coordinator round this node promised, if any."""
        self.decided: frozenset[NodeId] | None = None
        """The voter set to bootstrap with, once committed (final)."""
        self._heard: dict[NodeId, BootstrapMessage] = {}
        self._to_release: set[NodeId] = set()
        self._out: list[tuple[NodeId, BootstrapMessage]] = []
        self._dirty = False
        self._next_send: float | None = None

    # -- inputs ----------------------------------------------------------------------------

    def set_candidates(self, now: float, candidates: Iterable[NodeId]) -> None:
        """The eligible alive members as seen now (this node is added if missing)."""
        self.view = frozenset(candidates) | {self.node_id}
        p = self.promise
        if p is not None and p.coordinator not in self.view:
            # membership removed the coordinator (failed or left): free again
            self.counters.inc("raft.bootstrap.released.coordinator_gone")
            self.promise = None
        for c in [c for c in self._heard if c not in self.view]:
            del self._heard[c]
        self._update(now)

    def receive(self, now: float, peer: NodeId, msg: BootstrapMessage) -> None:
        """A bootstrap message from ``peer`` (already decoded: :func:`decode_bootstrap`)."""
        if self.decided is not None or peer == self.node_id:
            return
        if msg.op == PREPARE:
            self._on_prepare(peer, msg)
        elif msg.op == ACK:
            if (
                self.coordinating is not None
                and msg.nonce == self.nonce
                and msg.round == self.round
                and peer in self.coordinating
            ):
                self.acks.add(peer)
            else:
                self.counters.inc("raft.bootstrap.stale.ack")
        elif msg.op == RELEASE:
            h = self._heard.get(peer)
            if h is not None and h.nonce == msg.nonce and h.round <= msg.round:
                del self._heard[peer]
            p = self.promise
            if (
                p is not None
                and p.coordinator == peer
                and p.nonce == msg.nonce
                and p.round <= msg.round
            ):
                self.promise = None
                self.counters.inc("raft.bootstrap.released")
        else:  # COMMIT
            p = self.promise
            if (
                p is not None
                and p.coordinator == peer
                and p.nonce == msg.nonce
                and p.round == msg.round
                and p.voters == msg.voters
            ):
                self.decided = msg.voters
                self.counters.inc("raft.bootstrap.committed")
                return
            self.counters.inc("raft.bootstrap.stale.commit")
        self._update(now)

    def _on_prepare(self, peer: NodeId, msg: BootstrapMessage) -> None:
        voters = msg.voters
        if (
            self.node_id not in voters
            or len(voters) != self.expect
            or min(voters) != peer
        ):
            self.counters.inc("raft.bootstrap.refused.malformed")
            return
        old = self._heard.get(peer)
        if old is not None and old.nonce == msg.nonce and old.round > msg.round:
            self.counters.inc("raft.bootstrap.stale.prepare")
            return
        if old is None and len(self._heard) >= self.max_peers:
            self.counters.inc("raft.bootstrap.dropped.peers")
            return
        self._heard[peer] = msg
        p = self.promise
        if p is not None and p.coordinator == peer:
            if p.nonce != msg.nonce or p.round < msg.round:
                # the coordinator restarted or moved on: that promise is void
                self.promise = None
            elif p.round == msg.round:
                self._out.append((peer, BootstrapMessage(ACK, msg.nonce, msg.round)))
        elif p is not None:
            self.counters.inc("raft.bootstrap.conflicts")

    # -- the state machine -----------------------------------------------------------------

    def _fits(self, coordinator: NodeId, voters: frozenset[NodeId]) -> bool:
        """A prepare this node may promise: from a member it sees alive, naming this node,
        and the smallest ``expect`` ids of this node's view together with the voters."""
        return (
            coordinator in self.view
            and self.node_id in voters
            and len(voters) == self.expect
            and min(voters) == coordinator
            and initial_voters(self.view | voters, self.expect) == voters
        )

    def _update(self, now: float) -> None:
        if self.decided is not None:
            return
        if self.promise is None:
            for c in sorted(self._heard):
                h = self._heard[c]
                if self._fits(c, h.voters):
                    self.promise = _Promise(c, h.nonce, h.round, h.voters)
                    self.counters.inc("raft.bootstrap.promised")
                    self._out.append((c, BootstrapMessage(ACK, h.nonce, h.round)))
                    break
        want: frozenset[NodeId] | None = None
        if self.promise is None:
            voters = initial_voters(self.view, self.expect)
            if voters is not None and min(voters) == self.node_id:
                want = voters
        if want != self.coordinating:
            if self.coordinating is not None:
                dropped = self.coordinating - (want or frozenset()) - {self.node_id}
                for n in sorted(dropped):
                    if len(self._to_release) < self.max_peers:
                        self._to_release.add(n)
                    else:
                        self.counters.inc("raft.bootstrap.dropped.peers")
            if want is not None:
                self.round += 1
                self.counters.inc("raft.bootstrap.rounds")
                self._to_release -= want
            self.coordinating = want
            self.acks = set()
            self._dirty = True
        mine = self.coordinating
        if mine is not None and self.acks >= mine - {self.node_id}:
            self.decided = mine
            self.counters.inc("raft.bootstrap.committed")
            self._dirty = True

    # -- outputs ---------------------------------------------------------------------------

    @property
    def proposal(self) -> frozenset[NodeId] | None:
        """The voter set this node stands for now: the one it commits, coordinates or
        promised (``None``: none yet)."""
        if self.decided is not None:
            return self.decided
        if self.coordinating is not None:
            return self.coordinating
        return self.promise.voters if self.promise is not None else None

    @property
    def conflicts(self) -> int:
        """Prepares refused because this node had promised another coordinator."""
        return self.counters["raft.bootstrap.conflicts"]

    def ready(self) -> frozenset[NodeId] | None:
        """The voter set to bootstrap with, once committed (this node writes entry 1)."""
        return self.decided

    def poll(self, now: float) -> list[tuple[NodeId, list[Any]]]:
        """The messages to send now, as ``(peer, Raft service message)``: answers at once,
        the coordinator's prepares or commit and pending releases on change and then every
        ``resend_s``."""
        out = [(peer, m.encode()) for peer, m in self._out]
        self._out.clear()
        due = self._next_send is not None and now >= self._next_send
        if not (self._dirty or due):
            return out
        self._dirty = False
        c = self.coordinating
        if c is not None and self.decided == c:
            msg = BootstrapMessage(COMMIT, self.nonce, self.round, c)
            out.extend((n, msg.encode()) for n in sorted(c - {self.node_id}))
        elif c is not None:
            msg = BootstrapMessage(PREPARE, self.nonce, self.round, c)
            out.extend((n, msg.encode()) for n in sorted(c - {self.node_id} - self.acks))
        if self._to_release and self.decided is None:
            rel = BootstrapMessage(RELEASE, self.nonce, self.round)
            out.extend((n, rel.encode()) for n in sorted(self._to_release))
        busy = self.decided is None and (c is not None or bool(self._to_release))
        self._next_send = now + self.resend_s if busy else None
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to resend (``None``: nothing pending)."""
        if self._out or self._dirty:
            return self._next_send if self._next_send is not None else 0.0
        return self._next_send
