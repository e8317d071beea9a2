"""``AuctionMachine``: sealed-bid commit-reveal auctions as a replicated state machine.

Every replica applies the same committed commands (``wire.py``) in log order and so
computes the same results: the log position of a command, not a clock, decides whether a
commit came before the commit phase closed. An auction moves through three phases:

``commit`` (opened; signed commitments accepted) -> ``reveal`` (after ``CloseCommit``;
reveals checked against commitments; commits refused as late and reported) -> ``done``
(after ``Finalize``; the result is fixed).

A commit names its bidder (an agent id) and the node that signed it; it is taken only if,
at its log position, the agent is bound to that node in the shared :class:`BindingTable`
(else refused ``not_bound`` / ``not_host``) and the signature verifies with the bound key
(else ``bad_signature``). A retried commit identical to one already taken is a duplicate
whatever the bindings say since. ``Bind`` commands applied to this machine alone (outside
a :class:`~foundation_p2p.coordination.machine.CoordinationMachine`) go to its table.

Results (:func:`compute_result`): bids whose reveal opened their commitment are valid;
those below the reserve never win. Ties are broken by the lower commitment hash (replicated
data no bidder can choose after seeing others). First-price: the highest bid pays its bid.
Second-price: the winner pays max(second-highest valid bid, reserve). Multi-unit with ``k``
units: the ``k`` highest win and all pay the (k+1)-th highest valid bid, or the reserve if
there is none. Unrevealed and mismatched bids count as no bid and are listed in the result.

Bounds (each refusal or eviction is counted in ``counters``): at most ``max_active``
auctions not yet finalized (an open beyond is refused ``full``), ``max_bidders`` commits per
auction (beyond: refused ``full``), ``max_bidders`` late bidders recorded per auction (more
are counted, not listed), and ``max_results`` finalized auctions kept (the oldest is evicted;
commands naming it are then refused ``unknown_auction``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from foundation_p2p.consensus.state_machine import AppliedIndex
from foundation_p2p.counters import Counters
from foundation_p2p.errors import MalformedError, WireError
from foundation_p2p.wire import cbor

from .bindings import BindingTable
from .commitments import Reveal, SealedBid
from .wire import (
    FIRST_PRICE,
    MULTI_UNIT,
    Bind,
    CloseCommit,
    CommitBid,
    Finalize,
    OpenAuction,
    RevealBid,
    applied,
    command_from_wire,
    command_to_wire,
    decode_command,
    decode_snapshot,
    duplicate,
    refused,
)

log = logging.getLogger("foundation_p2p.coordination")

COMMIT_PHASE, REVEAL_PHASE, DONE = 0, 1, 2
PHASE_NAMES = ("commit", "reveal", "done")
SNAPSHOT_VERSION = 1
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class AuctionResult:
    """The outcome of a finalized auction, identical on every replica.

    ``winners`` are ``(bidder, bid)`` pairs in rank order; ``price`` is what each winner
    pays (``None`` when nobody won). The four lists name bidders, sorted by id.
    """

    auction_id: bytes
    rule: int
    winners: tuple[tuple[bytes, int], ...]
    price: int | None
    unrevealed: tuple[bytes, ...]
    mismatched: tuple[bytes, ...]
    below_reserve: tuple[bytes, ...]
    late: tuple[bytes, ...]

    def to_wire(self) -> list[Any]:
        """The CBOR value (the ``detail`` of a ``Finalize`` result)."""
        return [
            self.auction_id, self.rule, [[b, a] for b, a in self.winners], self.price,
            list(self.unrevealed), list(self.mismatched), list(self.below_reserve),
            list(self.late),
        ]

    @classmethod
    def from_wire(cls, value: Any) -> AuctionResult:
        """The result of its CBOR value; :class:`MalformedError` if it is not one."""
        if type(value) is not list or len(value) != 8:
            raise MalformedError("auction result: expected an array of 8")
        aid, rule, winners, price, unrev, mism, below, late = value

        def ids(v: Any) -> tuple[bytes, ...]:
            if type(v) is not list or any(type(x) is not bytes or len(x) != 16 for x in v):
                raise MalformedError("auction result: expected an array of 16-byte ids")
            return tuple(v)

        if type(aid) is not bytes or type(rule) is not int or type(winners) is not list:
            raise MalformedError("auction result: bad id, rule or winners")
        if price is not None and (type(price) is not int or price < 0):
            raise MalformedError("auction result: bad price")
        pairs = []
        for w in winners:
            if type(w) is not list or len(w) != 2 or type(w[1]) is not int:
                raise MalformedError("auction result: a winner is not [bidder, bid]")
            pairs.append((ids([w[0]])[0], w[1]))
        return cls(aid, rule, tuple(pairs), price, ids(unrev), ids(mism), ids(below), ids(late))


@dataclass(slots=True)
class Auction:
    """One auction's replicated state (bid amounts only after their reveal)."""

    spec: OpenAuction
    opened_at: int
    phase: int = COMMIT_PHASE
    commits: dict[bytes, CommitBid] = field(default_factory=dict)
    reveals: dict[bytes, RevealBid] = field(default_factory=dict)
    mismatched: set[bytes] = field(default_factory=set)
    late: set[bytes] = field(default_factory=set)
    late_unlisted: int = 0
    finalized_at: int = 0
    result: AuctionResult | None = None


def compute_result(a: Auction) -> AuctionResult:
    """The deterministic outcome of auction ``a`` from its commits and reveals."""
    spec = a.spec
    valid = [(r.amount, a.commits[b].commitment, b) for b, r in a.reveals.items()]
    eligible = sorted((v for v in valid if v[0] >= spec.reserve), key=lambda v: (-v[0], v[1]))
    below = tuple(sorted(v[2] for v in valid if v[0] < spec.reserve))
    k = spec.units if spec.rule == MULTI_UNIT else 1
    winners = eligible[:k]
    price: int | None
    if not winners:
        price = None
    elif spec.rule == FIRST_PRICE:
        price = winners[0][0]
    else:  # second-price is the one-unit case of the uniform (k+1)-th price
        price = max(eligible[k][0], spec.reserve) if len(eligible) > k else spec.reserve
    return AuctionResult(
        spec.auction_id, spec.rule, tuple((w[2], w[0]) for w in winners), price,
        tuple(sorted(set(a.commits) - set(a.reveals) - a.mismatched)),
        tuple(sorted(a.mismatched - set(a.reveals))), below, tuple(sorted(a.late)),
    )


class AuctionMachine:
    """The auction state machine (``StateMachine`` protocol of ``consensus.state_machine``).

    Equivalent lower-level calls: :func:`wire.decode_command`, then the phase rules above
    and :func:`compute_result` at ``Finalize``.
    """

    def __init__(
        self, *, max_active: int = 1024, max_bidders: int = 1024, max_results: int = 4096,
        bindings: BindingTable | None = None,
    ) -> None:
        self.bindings = bindings if bindings is not None else BindingTable()
        """The agent -> node bindings (shared with the vote machine in a
        ``CoordinationMachine``; its own otherwise, and then not in :meth:`snapshot`)."""
        self.max_active = max_active
        self.max_bidders = max_bidders
        self.max_results = max_results
        self.auctions: OrderedDict[bytes, Auction] = OrderedDict()
        self.finished: OrderedDict[bytes, None] = OrderedDict()
        self.evicted = 0
        self.counters = Counters()
        self._applied = AppliedIndex()

    # -- queries ---------------------------------------------------------------------

    def phase(self, auction_id: bytes) -> str | None:
        """``"commit"``, ``"reveal"``, ``"done"`` or ``None`` for an unknown auction."""
        a = self.auctions.get(auction_id)
        return None if a is None else PHASE_NAMES[a.phase]

    def result(self, auction_id: bytes) -> AuctionResult | None:
        """The result of a finalized auction still held, else ``None``."""
        a = self.auctions.get(auction_id)
        return None if a is None else a.result

    @property
    def applied_index(self) -> int:
        """The index of the last applied entry."""
        return self._applied.index

    # -- StateMachine ----------------------------------------------------------------

    def apply(self, index: int, command: bytes) -> bytes:
        """Apply the command at log ``index``; never raises for any ``command`` bytes."""
        self._applied.advance(index)
        try:
            cmd = decode_command(command)
        except WireError as exc:
            return self._refuse("malformed", str(exc))
        if isinstance(cmd, OpenAuction):
            return self._open(index, cmd)
        if isinstance(cmd, Bind):
            return self.bindings.apply(index, cmd)
        if not isinstance(cmd, CommitBid | CloseCommit | RevealBid | Finalize):
            return self._refuse("unknown_command", "not an auction command")
        a = self.auctions.get(cmd.auction_id)
        if a is None:
            return self._refuse("unknown_auction", f"no auction {cmd.auction_id.hex()}")
        if isinstance(cmd, CommitBid):
            return self._commit(a, cmd)
        if isinstance(cmd, RevealBid):
            return self._reveal(a, cmd)
        if isinstance(cmd, CloseCommit):
            if a.phase != COMMIT_PHASE:
                return self._dup("commit phase already closed")
            a.phase = REVEAL_PHASE
            return applied(len(a.commits))
        if a.phase == DONE:
            return self._dup(a.result.to_wire() if a.result else None)
        if a.phase == COMMIT_PHASE:
            return self._refuse("wrong_phase", "finalize before the commit phase closed")
        a.phase, a.finalized_at = DONE, index
        a.result = compute_result(a)
        self._finish(cmd.auction_id)
        log.debug("auction %s finalized at %d", cmd.auction_id.hex(), index)
        return applied(a.result.to_wire())

    def _refuse(self, code: str, message: str) -> bytes:
        self.counters.inc(f"coordination.auction.refused.{code}")
        return refused(code, message)

    def _dup(self, detail: Any) -> bytes:
        self.counters.inc("coordination.auction.duplicates")
        return duplicate(detail)

    def _open(self, index: int, cmd: OpenAuction) -> bytes:
        old = self.auctions.get(cmd.auction_id)
        if old is not None:
            if old.spec == cmd:
                return self._dup(None)
            return self._refuse("exists", f"auction {cmd.auction_id.hex()} already exists")
        if len(self.auctions) - len(self.finished) >= self.max_active:
            return self._refuse("full", f"{self.max_active} auctions already active")
        self.auctions[cmd.auction_id] = Auction(cmd, index)
        return applied(None)

    def _commit(self, a: Auction, cmd: CommitBid) -> bytes:
        if a.commits.get(cmd.bidder) == cmd:
            # a retried submission of a commit already taken: a duplicate in any phase
            # (never "late": its first copy counts), even if the agent moved since
            return self._dup(None)
        if a.spec.bidders and cmd.bidder not in a.spec.bidders:
            return self._refuse("not_invited", "the bidder is not among the auction's bidders")
        binding, code, message = self.bindings.check(cmd.bidder, cmd.node_id)
        if binding is None:
            return self._refuse(code, message)
        bid = SealedBid(cmd.auction_id, cmd.bidder, cmd.node_id, cmd.commitment,
                        cmd.signature)
        if not bid.verify(binding.public_key):
            return self._refuse("bad_signature", "commit not signed by the key of the node "
                                "hosting the bidder, for this auction")
        if a.phase != COMMIT_PHASE:
            if cmd.bidder not in a.late:
                if len(a.late) < self.max_bidders:
                    a.late.add(cmd.bidder)
                else:
                    a.late_unlisted += 1
                    self.counters.inc("coordination.auction.late_unlisted")
            return self._refuse("late", "commit after the commit phase closed")
        if cmd.bidder in a.commits:
            return self._refuse("conflict", "the bidder already committed another bid")
        if len(a.commits) >= self.max_bidders:
            return self._refuse("full", f"{self.max_bidders} bids already committed")
        a.commits[cmd.bidder] = cmd
        return applied(None)

    def _reveal(self, a: Auction, cmd: RevealBid) -> bytes:
        if a.phase == COMMIT_PHASE:
            return self._refuse("wrong_phase", "reveal before the commit phase closed")
        if a.phase == DONE:
            return self._refuse("late", "reveal after the auction was finalized")
        commit = a.commits.get(cmd.bidder)
        if commit is None:
            return self._refuse("no_commitment", "the bidder committed no bid")
        old = a.reveals.get(cmd.bidder)
        if old is not None:
            return self._dup(None) if old == cmd else self._refuse(
                "already_revealed", "the bid was already revealed")
        if not Reveal(cmd.auction_id, cmd.bidder, cmd.amount, cmd.nonce).matches(
            commit.commitment
        ):
            a.mismatched.add(cmd.bidder)
            return self._refuse("mismatch", "the reveal does not open the commitment")
        a.reveals[cmd.bidder] = cmd
        return applied(None)

    def _finish(self, auction_id: bytes) -> None:
        self.finished[auction_id] = None
        while len(self.finished) > self.max_results:
            old, _ = self.finished.popitem(last=False)
            del self.auctions[old]
            self.evicted += 1
            self.counters.inc("coordination.auction.results_evicted")

    # -- snapshots -------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as deterministic CBOR: ``[1, applied, evicted, auctions]`` with
        each auction ``[open, opened_at, phase, commits, reveals, mismatched, late,
        late_unlisted, finalized_at]`` (commands in their wire form, sorted by bidder)."""
        out = []
        for a in self.auctions.values():
            out.append([
                command_to_wire(a.spec), a.opened_at, a.phase,
                [command_to_wire(a.commits[b]) for b in sorted(a.commits)],
                [command_to_wire(a.reveals[b]) for b in sorted(a.reveals)],
                sorted(a.mismatched), sorted(a.late), a.late_unlisted, a.finalized_at,
            ])
        return cbor.encode([SNAPSHOT_VERSION, self._applied.index, self.evicted, out])

    def restore(self, data: bytes) -> None:
        """Replace the state by a snapshot's (a ``WireError`` naming the problem if ``data``
        is not one, and then the state is unchanged). Structure and consistency (every
        reveal opens its commitment) are checked; commit signatures are not (the replica
        that took the snapshot checked them)."""
        value = decode_snapshot(data, MAX_SNAPSHOT_BYTES, "auction snapshot")
        if type(value) is not list or len(value) != 4 or value[0] != SNAPSHOT_VERSION:
            raise MalformedError("auction snapshot: expected [1, applied, evicted, auctions]")
        _, index, evicted, items = value
        if type(index) is not int or index < 0 or type(evicted) is not int or evicted < 0:
            raise MalformedError("auction snapshot: bad applied index or eviction count")
        if type(items) is not list:
            raise MalformedError("auction snapshot: auctions must be an array")
        auctions: OrderedDict[bytes, Auction] = OrderedDict()
        for item in items:
            a = _auction_from_wire(item)
            if a.spec.auction_id in auctions:
                raise MalformedError("auction snapshot: an auction appears twice")
            auctions[a.spec.auction_id] = a
        done = sorted((a.finalized_at, k) for k, a in auctions.items() if a.phase == DONE)
        self.auctions = auctions
        self.finished = OrderedDict((k, None) for _, k in done)
        self.evicted = evicted
        self._applied = AppliedIndex(index)


def _auction_from_wire(item: Any) -> Auction:
    if type(item) is not list or len(item) != 9:
        raise MalformedError("auction snapshot: an auction is not an array of 9")
    spec, opened_at, phase, commits, reveals, mism, late, unlisted, fin = item
    cmd = command_from_wire(spec)
    if not isinstance(cmd, OpenAuction):
        raise MalformedError("auction snapshot: not an open command")
    for n in (opened_at, phase, unlisted, fin):
        if type(n) is not int or n < 0:
            raise MalformedError("auction snapshot: bad counter")
    if phase > DONE or (phase == DONE) != (fin > 0):
        raise MalformedError("auction snapshot: bad phase")
    a = Auction(cmd, opened_at, phase, late_unlisted=unlisted, finalized_at=fin)
    for what, src, dst in (("commit", commits, a.commits), ("reveal", reveals, a.reveals)):
        if type(src) is not list:
            raise MalformedError(f"auction snapshot: {what}s must be an array")
        for c in src:
            got = command_from_wire(c)
            if not isinstance(got, CommitBid | RevealBid) or got.auction_id != cmd.auction_id:
                raise MalformedError(f"auction snapshot: a {what} of another kind or auction")
            if dst and got.bidder <= max(dst):
                raise MalformedError(f"auction snapshot: {what}s not sorted by distinct bidder")
            dst[got.bidder] = got  # type: ignore[assignment]
    for b, r in a.reveals.items():
        c2 = a.commits.get(b)
        if c2 is None or not isinstance(r, RevealBid) or not Reveal(
            r.auction_id, r.bidder, r.amount, r.nonce
        ).matches(c2.commitment):
            raise MalformedError("auction snapshot: a reveal without its commitment")
    for what, src2, dst2 in (("mismatched", mism, a.mismatched), ("late", late, a.late)):
        if type(src2) is not list or any(type(b) is not bytes or len(b) != 16 for b in src2):
            raise MalformedError(f"auction snapshot: {what} must be an array of ids")
        if src2 != sorted(set(src2)):
            raise MalformedError(f"auction snapshot: {what} not sorted without repeats")
        dst2.update(src2)
    if phase == DONE:
        a.result = compute_result(a)
    return a
