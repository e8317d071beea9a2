"""Alternating-offers bargaining between two agents, with a deadline and a round limit.

Sans-I/O and deterministic: :class:`Negotiation` checks each move and holds the outcome;
:func:`run_negotiation` drives two handlers (``offer(view) -> Offer | Accept | Reject``)
turn by turn. The initiator moves first; then the parties alternate. A move is an
:class:`Offer` (a counter-offer: an integer value, e.g. a price), :class:`Accept` (agrees
to the other party's last offer: only valid when there is one) or :class:`Reject`
(breaks off). The negotiation ends in an :class:`Agreement` or a failure, raised by
:meth:`Negotiation.result` as :class:`NegotiationFailed` whose ``reason`` is one of
``rejected``, ``round_limit`` (``round_limit`` offers made without agreement),
``deadline`` (a move at a position after ``deadline``; positions are log indexes when the
moves are replicated, round numbers in :func:`run_negotiation`) or ``invalid_move``.

The history is bounded by ``round_limit`` (at most 1024 offers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from foundation_p2p.errors import ConfigError, FoundationError

log = logging.getLogger("foundation_p2p.coordination")

MAX_ROUNDS = 1024
REASONS = ("rejected", "round_limit", "deadline", "invalid_move")


@dataclass(frozen=True, slots=True)
class Offer:
    """A (counter-)offer of ``value``."""

    value: int


@dataclass(frozen=True, slots=True)
class Accept:
    """Agree to the other party's last offer."""


@dataclass(frozen=True, slots=True)
class Reject:
    """Break off the negotiation."""

    reason: str = ""


Move = Offer | Accept | Reject


@dataclass(frozen=True, slots=True)
class Agreement:
    """Both parties agreed on ``value`` (offered by ``offered_by``) in round ``round``."""

    negotiation_id: bytes
    value: int
    offered_by: bytes
    accepted_by: bytes
    round: int


class NegotiationFailed(FoundationError):
    """The negotiation ended without agreement; ``reason`` is one of ``REASONS``."""

    def __init__(self, negotiation_id: bytes, reason: str, detail: str) -> None:
        super().__init__(f"negotiation {negotiation_id.hex()}: {reason}: {detail}")
        self.negotiation_id = negotiation_id
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class NegotiationView:
    """What a party sees when it is its turn."""

    negotiation_id: bytes
    subject: str
    me: bytes
    other: bytes
    round: int
    deadline: int
    round_limit: int
    history: tuple[tuple[bytes, int], ...]
    """Every offer so far as ``(party, value)``, oldest first."""

    @property
    def last_offer(self) -> int | None:
        """The other party's pending offer (the last offer, if it was theirs)."""
        if self.history and self.history[-1][0] == self.other:
            return self.history[-1][1]
        return None


class Negotiator(Protocol):
    """An agent's negotiation handler."""

    def offer(self, negotiation: NegotiationView) -> Move:
        """The agent's move when it is its turn."""
        ...


class Negotiation:
    """The state of one negotiation; :meth:`move` applies a party's move in turn order."""

    def __init__(self, negotiation_id: bytes, initiator: bytes, responder: bytes, *,
                 subject: str = "", deadline: int, round_limit: int) -> None:
        if initiator == responder:
            raise ConfigError("a negotiation needs two different parties")
        if not 1 <= round_limit <= MAX_ROUNDS:
            raise ConfigError(f"round_limit must be 1..{MAX_ROUNDS}")
        if deadline < 0:
            raise ConfigError("deadline must be a position >= 0")
        self.negotiation_id = negotiation_id
        self.parties = (initiator, responder)
        self.subject = subject
        self.deadline = deadline
        self.round_limit = round_limit
        self.history: list[tuple[bytes, int]] = []
        self.round = 0
        self.agreement: Agreement | None = None
        self.failure: NegotiationFailed | None = None

    @property
    def done(self) -> bool:
        """True once agreed or failed."""
        return self.agreement is not None or self.failure is not None

    @property
    def turn(self) -> bytes:
        """The party whose move is next."""
        return self.parties[self.round % 2]

    def view(self, party: bytes) -> NegotiationView:
        """What ``party`` sees now."""
        other = self.parties[1] if party == self.parties[0] else self.parties[0]
        return NegotiationView(self.negotiation_id, self.subject, party, other, self.round,
                               self.deadline, self.round_limit, tuple(self.history))

    def _fail(self, reason: str, detail: str) -> None:
        self.failure = NegotiationFailed(self.negotiation_id, reason, detail)
        log.debug("%s", self.failure)

    def move(self, party: bytes, move: object, position: int) -> None:
        """Apply ``party``'s ``move`` made at ``position``. A move out of turn, after the
        end, or not an Offer/Accept/Reject ends the negotiation ``invalid_move``."""
        if self.done:
            raise ConfigError("the negotiation is over")
        if position > self.deadline:
            return self._fail("deadline", f"move at {position} after deadline {self.deadline}")
        if party != self.turn:
            return self._fail("invalid_move", "move out of turn")
        if isinstance(move, Reject):
            return self._fail("rejected", move.reason or "rejected by the other party")
        if isinstance(move, Accept):
            if not self.history or self.history[-1][0] == party:
                return self._fail("invalid_move", "accept without an offer to accept")
            by, value = self.history[-1]
            self.agreement = Agreement(self.negotiation_id, value, by, party, self.round)
            return None
        if not isinstance(move, Offer) or type(move.value) is not int:
            return self._fail("invalid_move", f"not an Offer, Accept or Reject: {move!r}")
        if len(self.history) >= self.round_limit:
            return self._fail("round_limit", f"{self.round_limit} offers without agreement")
        self.history.append((party, move.value))
        self.round += 1
        return None

    def close(self, reason: str, detail: str) -> None:
        """End the negotiation without agreement (e.g. ``deadline`` when its deadline
        passed with no move: a close entry or any later entry of the log)."""
        if self.done:
            raise ConfigError("the negotiation is over")
        if reason not in REASONS:
            raise ConfigError(f"negotiation failure reason must be one of {REASONS}")
        self._fail(reason, detail)

    def result(self) -> Agreement:
        """The agreement; raises :class:`NegotiationFailed`, or :class:`ConfigError` while
        it is still going."""
        if self.failure is not None:
            raise self.failure
        if self.agreement is None:
            raise ConfigError("the negotiation is still going")
        return self.agreement


def run_negotiation(
    negotiation: Negotiation, handlers: dict[bytes, Negotiator],
    position: Callable[[int], int] = lambda r: r,
) -> Negotiation:
    """Ask the party whose turn it is for its move until the negotiation ends.

    ``position(round)`` is the position of the round's move (default: the round number).
    Ends after at most ``round_limit + 1`` moves. Equivalent lower-level calls:
    ``negotiation.move(p, handlers[p].offer(negotiation.view(p)), position(round))``.
    """
    while not negotiation.done:
        party = negotiation.turn
        negotiation.move(party, handlers[party].offer(negotiation.view(party)),
                         position(negotiation.round))
    return negotiation


class LinearConcession:
    """A time-dependent strategy: offers move linearly from ``start`` to ``reservation``
    by the deadline; accepts an offer at least as good as its own next offer. A seller
    has ``start > reservation`` (wants more), a buyer ``start < reservation``."""

    def __init__(self, start: int, reservation: int) -> None:
        self.start = start
        self.reservation = reservation

    def _target(self, view: NegotiationView) -> int:
        span = max(1, min(view.deadline, view.round_limit))
        t = min(1.0, view.round / span)
        return round(self.start + (self.reservation - self.start) * t)

    def offer(self, negotiation: NegotiationView) -> Move:
        """Accept a good enough pending offer, else offer the next concession."""
        mine = self._target(negotiation)
        theirs = negotiation.last_offer
        seller = self.start >= self.reservation
        if theirs is not None and (theirs >= mine if seller else theirs <= mine):
            return Accept()
        return Offer(mine)
