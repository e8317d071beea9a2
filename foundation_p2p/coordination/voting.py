"""``VoteMachine``: signed votes on proposals, decided in log order on every replica.

A proposal (``Propose``) names its rule, its eligible voters (agent id, weight) and a
deadline: the number of log entries after its own during which votes count. A vote
(``CastVote``) names its voter (an agent id) and the node hosting it, and is signed with
that node's key over the proposal id, the voter, the node id and the choice
(``commitments.vote_signed_bytes``), so it cannot be moved to another proposal. It counts
only if, at its log position, the voter is bound to that node in the shared
:class:`~foundation_p2p.coordination.bindings.BindingTable` (else ``not_bound`` /
``not_host``) and the signature verifies with the bound key (else ``bad_signature``).
The first vote of a voter stands: a different one is refused
``conflict``, the same one again is a duplicate.

Rules, with ``W`` the total weight (each voter weighs 1 except under ``weighted``) and
``rem`` the weight of voters who have not voted yet:

- majority / weighted: accepted when ``2*yes > W``; rejected once ``2*(yes+rem) <= W``;
- supermajority: accepted when ``3*yes >= 2*W``; rejected once ``3*(yes+rem) < 2*W``;
- unanimous: accepted when ``yes == W``; rejected at the first no or abstention;
- quorum(n): at least ``n`` voters must vote (yes, no or abstain); then accepted if
  ``yes > no``. Decided early once ``n`` have voted and the missing votes cannot change it.

A proposal is decided as soon as its outcome no longer depends on missing votes. When the
deadline passes (the first entry applied after it, or a ``CloseVote``) an undecided
proposal ends ``quorum_not_met`` (quorum rule, fewer than ``n`` votes) or ``timeout``;
:meth:`VoteMachine.decision` raises :class:`QuorumNotMet` / :class:`ConsensusTimeout`.

Bounds: at most ``max_active`` undecided proposals (more are refused ``full``),
``max_results`` decided ones kept (the oldest evicted, counted), and a deadline heap of at
most ``2 * max_active + 16`` items (decided proposals are swept out of it in bulk).
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from foundation_p2p.consensus.state_machine import AppliedIndex
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.identity import verify_signature
from foundation_p2p.errors import FoundationError, MalformedError, WireError
from foundation_p2p.wire import cbor

from .bindings import BindingTable
from .commitments import vote_signed_bytes
from .wire import (
    ABSTAIN,
    NO,
    QUORUM,
    SUPERMAJORITY,
    UNANIMOUS,
    WEIGHTED,
    YES,
    Bind,
    CastVote,
    CloseVote,
    Propose,
    applied,
    command_from_wire,
    command_to_wire,
    decode_command,
    decode_snapshot,
    duplicate,
    refused,
)

log = logging.getLogger("foundation_p2p.coordination")

ACCEPTED, REJECTED, TIMEOUT, QUORUM_NOT_MET = "accepted", "rejected", "timeout", "quorum_not_met"
STATUSES = (ACCEPTED, REJECTED, TIMEOUT, QUORUM_NOT_MET)
SNAPSHOT_VERSION = 1
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """How a proposal ended: ``status`` is one of ``STATUSES``; tallies are weights."""

    proposal_id: bytes
    status: str
    yes: int
    no: int
    abstain: int
    voters: int
    decided_at: int

    def to_wire(self) -> list[Any]:
        """The CBOR value (the ``detail`` of the result that decided it)."""
        return [self.proposal_id, STATUSES.index(self.status), self.yes, self.no,
                self.abstain, self.voters, self.decided_at]

    @classmethod
    def from_wire(cls, value: Any) -> VoteOutcome:
        """The outcome of its CBOR value; :class:`MalformedError` if it is not one."""
        if (type(value) is not list or len(value) != 7 or type(value[0]) is not bytes
                or any(type(v) is not int or v < 0 for v in value[1:])
                or value[1] >= len(STATUSES)):
            raise MalformedError("vote outcome: expected [id, status, yes, no, abstain, "
                                 "voters, decided_at]")
        return cls(value[0], STATUSES[value[1]], *value[2:])


class ConsensusTimeout(FoundationError):
    """The deadline passed before the votes decided the proposal."""

    def __init__(self, outcome: VoteOutcome) -> None:
        super().__init__(
            f"proposal {outcome.proposal_id.hex()}: no decision by the deadline "
            f"(yes {outcome.yes}, no {outcome.no}, abstain {outcome.abstain})"
        )
        self.outcome = outcome


class QuorumNotMet(FoundationError):
    """Fewer voters than the quorum voted before the deadline."""

    def __init__(self, outcome: VoteOutcome, quorum: int) -> None:
        super().__init__(
            f"proposal {outcome.proposal_id.hex()}: {outcome.voters} of the {quorum} "
            "votes needed"
        )
        self.outcome = outcome
        self.quorum = quorum


@dataclass(slots=True)
class Proposal:
    """One proposal's replicated state."""

    spec: Propose
    proposed_at: int
    votes: dict[bytes, CastVote] = field(default_factory=dict)
    outcome: VoteOutcome | None = None
    final: bool = False  # decided at the deadline/close rather than early

    @property
    def deadline_index(self) -> int:
        return self.proposed_at + self.spec.deadline


def decide(p: Proposal, at: int, *, final: bool) -> VoteOutcome | None:
    """The outcome of ``p``'s votes so far, or ``None`` while missing votes could change it.

    With ``final`` (the deadline has passed) an outcome that still depends on missing votes
    is ``timeout``, except under quorum(n): with ``n`` votes cast the cast votes decide,
    with fewer it is ``quorum_not_met``."""
    spec = p.spec
    weight = {v.voter: (v.weight if spec.rule == WEIGHTED else 1) for v in spec.eligible}
    total = sum(weight.values())
    tally = {YES: 0, NO: 0, ABSTAIN: 0}
    for v in p.votes.values():
        tally[v.choice] += weight[v.voter]
    yes, no = tally[YES], tally[NO]
    rem = total - sum(tally.values())
    cast = len(p.votes)
    status: str | None = None
    if spec.rule == QUORUM:
        if cast >= spec.quorum:
            if yes > no + rem or (final and yes > no):
                status = ACCEPTED
            elif yes + rem <= no or final:
                status = REJECTED
        elif final:
            status = QUORUM_NOT_MET
    elif spec.rule == SUPERMAJORITY:
        status = ACCEPTED if 3 * yes >= 2 * total else (
            REJECTED if 3 * (yes + rem) < 2 * total else None)
    elif spec.rule == UNANIMOUS:
        status = ACCEPTED if yes == total else (REJECTED if yes + rem < total else None)
    else:  # majority, weighted
        status = ACCEPTED if 2 * yes > total else (
            REJECTED if 2 * (yes + rem) <= total else None)
    if status is None and final:
        status = TIMEOUT
    if status is None:
        return None
    return VoteOutcome(spec.proposal_id, status, yes, no, tally[ABSTAIN], cast, at)


class VoteMachine:
    """The voting state machine (``StateMachine`` protocol of ``consensus.state_machine``).

    Equivalent lower-level calls: :func:`wire.decode_command`, signature checks with
    :func:`~foundation_p2p.crypto.identity.verify_signature`, then :func:`decide`.
    """

    def __init__(self, *, max_active: int = 1024, max_results: int = 4096,
                 bindings: BindingTable | None = None) -> None:
        self.bindings = bindings if bindings is not None else BindingTable()
        """The agent -> node bindings (shared with the auction machine in a
        ``CoordinationMachine``; its own otherwise, and then not in :meth:`snapshot`)."""
        self.max_active = max_active
        self.max_results = max_results
        self.proposals: OrderedDict[bytes, Proposal] = OrderedDict()
        self.decided: OrderedDict[bytes, None] = OrderedDict()
        self.evicted = 0
        self.counters = Counters()
        self._deadlines: list[tuple[int, bytes]] = []
        self._applied = AppliedIndex()

    def outcome(self, proposal_id: bytes) -> VoteOutcome | None:
        """The outcome of a decided proposal still held, else ``None``."""
        p = self.proposals.get(proposal_id)
        return None if p is None else p.outcome

    def decision(self, proposal_id: bytes) -> bool | None:
        """``True``/``False`` for an accepted/rejected proposal, ``None`` while undecided
        (or unknown); raises :class:`ConsensusTimeout` or :class:`QuorumNotMet`."""
        p = self.proposals.get(proposal_id)
        if p is None or p.outcome is None:
            return None
        if p.outcome.status == TIMEOUT:
            raise ConsensusTimeout(p.outcome)
        if p.outcome.status == QUORUM_NOT_MET:
            raise QuorumNotMet(p.outcome, p.spec.quorum)
        return p.outcome.status == ACCEPTED

    @property
    def applied_index(self) -> int:
        """The index of the last applied entry."""
        return self._applied.index

    def apply(self, index: int, command: bytes) -> bytes:
        """Apply the command at log ``index`` (first closing every proposal whose deadline
        is before it); never raises for any ``command`` bytes."""
        self._applied.advance(index)
        self.expire(index)
        try:
            cmd = decode_command(command)
        except WireError as exc:
            return self._refuse("malformed", str(exc))
        if isinstance(cmd, Propose):
            return self._propose(index, cmd)
        if isinstance(cmd, Bind):
            return self.bindings.apply(index, cmd)
        if not isinstance(cmd, CastVote | CloseVote):
            return self._refuse("unknown_command", "not a voting command")
        p = self.proposals.get(cmd.proposal_id)
        if p is None:
            return self._refuse("unknown_proposal", f"no proposal {cmd.proposal_id.hex()}")
        if isinstance(cmd, CloseVote):
            if p.outcome is not None:
                return self._dup(p.outcome.to_wire())
            return applied(self._close(p, index, final=True).to_wire())
        return self._vote(index, p, cmd)

    def expire(self, index: int) -> None:
        """Close every undecided proposal whose deadline is before ``index``."""
        while self._deadlines and self._deadlines[0][0] < index:
            at, pid = heapq.heappop(self._deadlines)
            p = self.proposals.get(pid)
            if p is not None and p.outcome is None:
                self._close(p, at, final=True)

    def _refuse(self, code: str, message: str) -> bytes:
        self.counters.inc(f"coordination.vote.refused.{code}")
        return refused(code, message)

    def _dup(self, detail: Any) -> bytes:
        self.counters.inc("coordination.vote.duplicates")
        return duplicate(detail)

    def _close(self, p: Proposal, at: int, *, final: bool) -> VoteOutcome:
        out = decide(p, at, final=final)
        assert out is not None
        p.outcome, p.final = out, final
        self.counters.inc(f"coordination.vote.{out.status}")
        self.decided[p.spec.proposal_id] = None
        if len(self._deadlines) > 2 * self.max_active + 16:
            # decided proposals stay in the heap until their deadline: drop them in bulk so
            # the heap stays within twice the undecided bound
            self._deadlines = [(d, k) for d, k in self._deadlines
                               if k in self.proposals and self.proposals[k].outcome is None]
            heapq.heapify(self._deadlines)
        while len(self.decided) > self.max_results:
            old, _ = self.decided.popitem(last=False)
            del self.proposals[old]
            self.evicted += 1
            self.counters.inc("coordination.vote.results_evicted")
        log.debug("proposal %s: %s at %d", p.spec.proposal_id.hex(), out.status, at)
        return out

    def _propose(self, index: int, cmd: Propose) -> bytes:
        old = self.proposals.get(cmd.proposal_id)
        if old is not None:
            if old.spec == cmd:
                return self._dup(None)
            return self._refuse("exists", f"proposal {cmd.proposal_id.hex()} already exists")
        if cmd.deadline < 1:
            return self._refuse("bad_deadline", "the deadline must be at least one entry")
        if len(self.proposals) - len(self.decided) >= self.max_active:
            return self._refuse("full", f"{self.max_active} proposals already open")
        p = Proposal(cmd, index)
        self.proposals[cmd.proposal_id] = p
        heapq.heappush(self._deadlines, (p.deadline_index, cmd.proposal_id))
        return applied(None)

    def _vote(self, index: int, p: Proposal, cmd: CastVote) -> bytes:
        old = p.votes.get(cmd.voter)
        if old is not None and old == cmd:
            return self._dup(None)
        if p.outcome is not None:
            code = "late" if index > p.deadline_index else "closed"
            return self._refuse(code, f"proposal already {p.outcome.status}")
        voter = next((v for v in p.spec.eligible if v.voter == cmd.voter), None)
        if voter is None:
            return self._refuse("not_eligible", "the voter is not eligible")
        binding, code, message = self.bindings.check(cmd.voter, cmd.node_id)
        if binding is None:
            return self._refuse(code, message)
        if not verify_signature(binding.public_key, cmd.signature, vote_signed_bytes(
                cmd.proposal_id, cmd.voter, cmd.node_id, cmd.choice)):
            return self._refuse("bad_signature", "vote not signed by the key of the node "
                                "hosting the voter, for this proposal and choice")
        if old is not None:
            return self._refuse("conflict", "the voter already cast another vote")
        p.votes[cmd.voter] = cmd
        out = decide(p, index, final=False)
        if out is not None:
            self._close(p, index, final=False)
            return applied(out.to_wire())
        return applied(None)

    def snapshot(self) -> bytes:
        """The whole state as deterministic CBOR: ``[1, applied, evicted, proposals,
        decided]``, each proposal ``[propose, proposed_at, votes, decided_at, final]`` (votes
        in wire form, sorted by voter; ``decided_at`` 0 while undecided) and ``decided`` the
        decided ids in the order they were decided (the eviction order)."""
        out = []
        for p in self.proposals.values():
            out.append([
                command_to_wire(p.spec), p.proposed_at,
                [command_to_wire(p.votes[v]) for v in sorted(p.votes)],
                p.outcome.decided_at if p.outcome else 0, p.final,
            ])
        return cbor.encode(
            [SNAPSHOT_VERSION, self._applied.index, self.evicted, out, list(self.decided)]
        )

    def restore(self, data: bytes) -> None:
        """Replace the state by a snapshot's (a ``WireError`` naming the problem if ``data``
        is not one, and then the state is unchanged). Structure and consistency are
        checked, signatures are not (the replica that took the snapshot checked them)."""
        value = decode_snapshot(data, MAX_SNAPSHOT_BYTES, "vote snapshot")
        if type(value) is not list or len(value) != 5 or value[0] != SNAPSHOT_VERSION:
            raise MalformedError("vote snapshot: expected [1, applied, evicted, proposals, "
                                 "decided]")
        _, index, evicted, items, order = value
        if type(index) is not int or index < 0 or type(evicted) is not int or evicted < 0:
            raise MalformedError("vote snapshot: bad applied index or eviction count")
        if type(items) is not list:
            raise MalformedError("vote snapshot: proposals must be an array")
        proposals: OrderedDict[bytes, Proposal] = OrderedDict()
        for item in items:
            if type(item) is not list or len(item) != 5:
                raise MalformedError("vote snapshot: a proposal is not an array of 5")
            spec, at, votes, decided_at, final = item
            cmd = command_from_wire(spec)
            if (not isinstance(cmd, Propose) or type(at) is not int or at < 0
                    or type(decided_at) is not int or decided_at < 0
                    or type(final) is not bool or type(votes) is not list):
                raise MalformedError("vote snapshot: bad proposal")
            p = Proposal(cmd, at)
            for v in votes:
                vote = command_from_wire(v)
                if not isinstance(vote, CastVote) or vote.proposal_id != cmd.proposal_id:
                    raise MalformedError("vote snapshot: a vote of another kind or proposal")
                if p.votes and vote.voter <= max(p.votes):
                    raise MalformedError("vote snapshot: votes not sorted by distinct voter")
                if all(e.voter != vote.voter for e in cmd.eligible):
                    raise MalformedError("vote snapshot: a vote by a voter not eligible")
                p.votes[vote.voter] = vote
            if decided_at:
                p.outcome, p.final = decide(p, decided_at, final=final), final
                if p.outcome is None:
                    raise MalformedError("vote snapshot: a decided proposal's votes decide "
                                         "nothing")
            if cmd.proposal_id in proposals:
                raise MalformedError("vote snapshot: a proposal appears twice")
            proposals[cmd.proposal_id] = p
        done = {k for k, p in proposals.items() if p.outcome}
        if (type(order) is not list or any(type(k) is not bytes for k in order)
                or len(order) != len(done) or set(order) != done):
            raise MalformedError("vote snapshot: the decided order does not list the decided")
        self.proposals = proposals
        self.decided = OrderedDict((k, None) for k in order)
        self._deadlines = [(p.deadline_index, k) for k, p in proposals.items()
                           if p.outcome is None]
        heapq.heapify(self._deadlines)
        self.evicted = evicted
        self._applied = AppliedIndex(index)
