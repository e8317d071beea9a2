"""``NegotiationMachine``: alternating-offers negotiations between agents on any nodes,
replicated through the log (``spec/coordination.md`` section 8).

An ``OpenNegotiation`` entry names the two parties (agent ids), a round limit and a
deadline in log entries after its own. Each party's node submits the party's moves as
``NegotiationMove`` entries signed with the node's key; a move counts only if, at its log
position, the party is bound to that node (the shared
:class:`~foundation_p2p.coordination.bindings.BindingTable`; else ``not_bound`` /
``not_host``) and the signature verifies with the bound key (else ``bad_signature``).
Every replica feeds the moves, in log order and with their log index as position, to the
same :class:`~foundation_p2p.coordination.negotiation.Negotiation`, so every node ends with
the same agreement or the same typed failure.

Checks on a move, in order: unknown id (``unknown_negotiation``); exactly the move already
applied (a retry: a duplicate); negotiation over (``closed``, or ``late`` after its
deadline); the party is not one of the two (``not_party``); binding and signature; a round
other than the current one (``wrong_round``: a stale or early move, nothing changes). Then
``Negotiation.move``: out of turn ends it ``invalid_move``, reject ``rejected``, an offer
beyond the round limit ``round_limit``, a move after the deadline ``deadline``.

The deadline also passes with ``CloseNegotiation`` or the first entry, of any kind, whose
index is greater than ``opened_at + deadline`` (:meth:`expire`): an undecided negotiation
then fails ``deadline``.

Outcome value: ``[negotiation_id, status, value, offered_by, accepted_by, rounds,
decided_at]`` with status ``"agreed"`` or a failure reason (``rejected``, ``round_limit``,
``deadline``, ``invalid_move``); value, offered_by and accepted_by ``null`` on failure.

Bounds (counted): at most ``max_active`` undecided negotiations (more refused ``full``),
``max_results`` decided ones kept (the oldest evicted; commands naming it then get
``unknown_negotiation``), ``round_limit`` <= 1024 offers each, and a deadline heap of at
most ``2 * max_active + 16`` items (decided ones swept out in bulk).
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from foundation_p2p.counters import Counters
from foundation_p2p.crypto.identity import verify_signature
from foundation_p2p.errors import MalformedError

from .bindings import BindingTable
from .commitments import move_signed_bytes
from .negotiation import Accept, Negotiation, Offer, Reject
from .wire import (
    ACCEPT_MOVE,
    OFFER_MOVE,
    CloseNegotiation,
    NegotiationMove,
    OpenNegotiation,
    applied,
    command_from_wire,
    command_to_wire,
    duplicate,
    refused,
)

log = logging.getLogger("foundation_p2p.coordination")

AGREED = "agreed"


@dataclass(frozen=True, slots=True)
class NegotiationOutcome:
    """How a replicated negotiation ended (identical on every replica)."""

    negotiation_id: bytes
    status: str
    """``"agreed"`` or a failure reason."""
    value: int | None
    offered_by: bytes | None
    accepted_by: bytes | None
    rounds: int
    decided_at: int
    detail: str = field(default="", compare=False)

    def to_wire(self) -> list[Any]:
        """The CBOR value (without ``detail``, which is a local message)."""
        return [self.negotiation_id, self.status, self.value, self.offered_by,
                self.accepted_by, self.rounds, self.decided_at]


@dataclass(slots=True)
class Bargain:
    """One negotiation's replicated state."""

    spec: OpenNegotiation
    opened_at: int
    state: Negotiation
    moves: list[tuple[int, NegotiationMove]] = field(default_factory=list)
    closed_at: int = 0
    """The index of the close (or of the deadline, when a later entry expired it)."""
    outcome: NegotiationOutcome | None = None

    @property
    def deadline_index(self) -> int:
        return self.opened_at + self.spec.deadline


def _as_move(cmd: NegotiationMove) -> Offer | Accept | Reject:
    if cmd.kind == OFFER_MOVE:
        return Offer(cmd.value)
    return Accept() if cmd.kind == ACCEPT_MOVE else Reject()


def _new_state(spec: OpenNegotiation, opened_at: int) -> Negotiation:
    return Negotiation(spec.negotiation_id, spec.initiator, spec.responder,
                       subject=spec.subject, deadline=opened_at + spec.deadline,
                       round_limit=spec.round_limit)


class NegotiationMachine:
    """The negotiation state machine (see the module docstring).

    Equivalent lower-level calls: :func:`wire.decode_command`, ``BindingTable.check``,
    :func:`~foundation_p2p.crypto.identity.verify_signature` over
    :func:`~foundation_p2p.coordination.commitments.move_signed_bytes`, then
    ``Negotiation.move(party, move, index)``.
    """

    def __init__(self, *, max_active: int = 1024, max_results: int = 4096,
                 bindings: BindingTable | None = None) -> None:
        self.bindings = bindings if bindings is not None else BindingTable()
        self.max_active = max_active
        self.max_results = max_results
        self.bargains: OrderedDict[bytes, Bargain] = OrderedDict()
        self.decided: OrderedDict[bytes, None] = OrderedDict()
        self.evicted = 0
        self.counters = Counters()
        self._deadlines: list[tuple[int, bytes]] = []

    def outcome(self, negotiation_id: bytes) -> NegotiationOutcome | None:
        """The outcome of a decided negotiation still held, else ``None``."""
        b = self.bargains.get(negotiation_id)
        return None if b is None else b.outcome

    def _refuse(self, code: str, message: str) -> bytes:
        self.counters.inc(f"coordination.negotiation.refused.{code}")
        return refused(code, message)

    def _dup(self, detail: Any) -> bytes:
        self.counters.inc("coordination.negotiation.duplicates")
        return duplicate(detail)

    def apply(self, index: int, cmd: OpenNegotiation | NegotiationMove | CloseNegotiation
              ) -> bytes:
        """Apply a decoded negotiation command at log ``index`` (after :meth:`expire`)."""
        self.expire(index)
        if isinstance(cmd, OpenNegotiation):
            return self._open(index, cmd)
        b = self.bargains.get(cmd.negotiation_id)
        if b is None:
            return self._refuse("unknown_negotiation",
                                f"no negotiation {cmd.negotiation_id.hex()}")
        if isinstance(cmd, CloseNegotiation):
            if b.outcome is not None:
                return self._dup(b.outcome.to_wire())
            b.state.close("deadline", f"no agreement by entry {index}")
            b.closed_at = index
            return applied(self._decide(b, index).to_wire())
        return self._move(index, b, cmd)

    def expire(self, index: int) -> None:
        """Fail ``deadline`` every undecided negotiation whose deadline is before ``index``."""
        while self._deadlines and self._deadlines[0][0] < index:
            at, nid = heapq.heappop(self._deadlines)
            b = self.bargains.get(nid)
            if b is not None and b.outcome is None:
                b.state.close("deadline", f"no agreement by entry {at}")
                b.closed_at = at
                self._decide(b, at)

    def _open(self, index: int, cmd: OpenNegotiation) -> bytes:
        old = self.bargains.get(cmd.negotiation_id)
        if old is not None:
            if old.spec == cmd:
                return self._dup(None)
            return self._refuse("exists", f"negotiation {cmd.negotiation_id.hex()} exists")
        if len(self.bargains) - len(self.decided) >= self.max_active:
            return self._refuse("full", f"{self.max_active} negotiations already open")
        b = Bargain(cmd, index, _new_state(cmd, index))
        self.bargains[cmd.negotiation_id] = b
        heapq.heappush(self._deadlines, (b.deadline_index, cmd.negotiation_id))
        return applied(None)

    def _move(self, index: int, b: Bargain, cmd: NegotiationMove) -> bytes:
        if any(m == cmd for _, m in b.moves):
            return self._dup(None if b.outcome is None else b.outcome.to_wire())
        if b.outcome is not None:
            code = "late" if index > b.deadline_index else "closed"
            return self._refuse(code, f"negotiation already {b.outcome.status}")
        if cmd.party not in b.state.parties:
            return self._refuse("not_party", "the agent is not a party to the negotiation")
        binding, code, message = self.bindings.check(cmd.party, cmd.node_id)
        if binding is None:
            return self._refuse(code, message)
        if not verify_signature(binding.public_key, cmd.signature, move_signed_bytes(
                cmd.negotiation_id, cmd.party, cmd.node_id, cmd.round, cmd.kind, cmd.value)):
            return self._refuse("bad_signature", "move not signed by the key of the node "
                                "hosting the party, for this negotiation, round and move")
        if cmd.round != b.state.round:
            return self._refuse("wrong_round", f"the negotiation is at round {b.state.round}, "
                                f"not {cmd.round}")
        b.moves.append((index, cmd))
        b.state.move(cmd.party, _as_move(cmd), index)
        if b.state.done:
            return applied(self._decide(b, index).to_wire())
        return applied(None)

    def _decide(self, b: Bargain, at: int) -> NegotiationOutcome:
        nid = b.spec.negotiation_id
        out = b.outcome = self._outcome_of(b, at)
        self.counters.inc(f"coordination.negotiation.{out.status}")
        self.decided[nid] = None
        if len(self._deadlines) > 2 * self.max_active + 16:
            self._deadlines = [(d, k) for d, k in self._deadlines
                               if k in self.bargains and self.bargains[k].outcome is None]
            heapq.heapify(self._deadlines)
        while len(self.decided) > self.max_results:
            old, _ = self.decided.popitem(last=False)
            del self.bargains[old]
            self.evicted += 1
            self.counters.inc("coordination.negotiation.results_evicted")
        log.debug("negotiation %s: %s at %d", nid.hex(), out.status, at)
        return out

    # -- snapshots -------------------------------------------------------------------

    def to_wire(self) -> list[Any]:
        """``[evicted, [* [open, opened_at, [* [index, move]], closed_at]], decided]``
        (``decided``: the decided ids in the order they were decided)."""
        items = [[command_to_wire(b.spec), b.opened_at,
                  [[i, command_to_wire(m)] for i, m in b.moves], b.closed_at]
                 for b in self.bargains.values()]
        return [self.evicted, items, list(self.decided)]

    def restore_wire(self, value: Any) -> None:
        """Replace the state by a snapshot's part (moves replayed through
        ``Negotiation.move``; signatures not checked again); :class:`MalformedError` and
        the state unchanged if it is not one."""
        if type(value) is not list or len(value) != 3:
            raise MalformedError("negotiation snapshot: expected [evicted, items, decided]")
        evicted, items, order = value
        if type(evicted) is not int or evicted < 0 or type(items) is not list:
            raise MalformedError("negotiation snapshot: bad eviction count or items")
        bargains: OrderedDict[bytes, Bargain] = OrderedDict()
        for item in items:
            if type(item) is not list or len(item) != 4:
                raise MalformedError("negotiation snapshot: an item is not an array of 4")
            spec, at, moves, closed_at = item
            cmd = command_from_wire(spec)
            if (not isinstance(cmd, OpenNegotiation) or type(at) is not int or at < 1
                    or type(moves) is not list or type(closed_at) is not int or closed_at < 0
                    or cmd.negotiation_id in bargains):
                raise MalformedError("negotiation snapshot: bad negotiation")
            b = Bargain(cmd, at, _new_state(cmd, at))
            for m in moves:
                if type(m) is not list or len(m) != 2 or type(m[0]) is not int:
                    raise MalformedError("negotiation snapshot: a move is not [index, move]")
                mv = command_from_wire(m[1])
                if (not isinstance(mv, NegotiationMove)
                        or mv.negotiation_id != cmd.negotiation_id or b.state.done
                        or mv.party not in b.state.parties):
                    raise MalformedError("negotiation snapshot: a move of another kind, "
                                         "negotiation or party, or after the end")
                b.moves.append((m[0], mv))
                b.state.move(mv.party, _as_move(mv), m[0])
                if b.state.done:
                    b.outcome = self._outcome_of(b, m[0])
            if closed_at:
                if b.state.done:
                    raise MalformedError("negotiation snapshot: closed after its end")
                b.state.close("deadline", f"no agreement by entry {closed_at}")
                b.closed_at = closed_at
                b.outcome = self._outcome_of(b, closed_at)
            bargains[cmd.negotiation_id] = b
        done = {k for k, b in bargains.items() if b.outcome is not None}
        if (type(order) is not list or any(type(k) is not bytes for k in order)
                or len(order) != len(done) or set(order) != done):
            raise MalformedError("negotiation snapshot: the decided order does not list the "
                                 "decided")
        self.bargains = bargains
        self.decided = OrderedDict((k, None) for k in order)
        self._deadlines = [(b.deadline_index, k) for k, b in bargains.items()
                           if b.outcome is None]
        heapq.heapify(self._deadlines)
        self.evicted = evicted

    @staticmethod
    def _outcome_of(b: Bargain, at: int) -> NegotiationOutcome:
        st, nid = b.state, b.spec.negotiation_id
        if st.agreement is not None:
            a = st.agreement
            return NegotiationOutcome(nid, AGREED, a.value, a.offered_by, a.accepted_by,
                                      a.round, at)
        assert st.failure is not None
        return NegotiationOutcome(nid, st.failure.reason, None, None, None, st.round, at,
                                  st.failure.detail)
