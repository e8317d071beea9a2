"""Alternating-offers negotiation: agreements emerge from strategies; every failure is typed."""

from __future__ import annotations

import pytest

from foundation_p2p.coordination.negotiation import (
    Accept,
    LinearConcession,
    Move,
    Negotiation,
    NegotiationFailed,
    NegotiationView,
    Offer,
    Reject,
    run_negotiation,
)
from foundation_p2p.errors import ConfigError

A, B = b"A" * 16, b"B" * 16
NID = bytes(16)


def negotiate(seller: LinearConcession, buyer: LinearConcession, *, deadline: int = 10,
              round_limit: int = 20) -> Negotiation:
    n = Negotiation(NID, A, B, subject="gpu-hours", deadline=deadline, round_limit=round_limit)
    return run_negotiation(n, {A: seller, B: buyer})


def test_overlapping_reservations_reach_an_agreement_between_them() -> None:
    n = negotiate(LinearConcession(100, 60), LinearConcession(20, 80))
    deal = n.result()
    assert 60 <= deal.value <= 80
    assert {deal.offered_by, deal.accepted_by} == {A, B}


def test_the_outcome_depends_on_the_strategies() -> None:
    soft = negotiate(LinearConcession(100, 60), LinearConcession(20, 80)).result().value
    hard = negotiate(LinearConcession(100, 70), LinearConcession(20, 80)).result().value
    assert hard > soft


def test_disjoint_reservations_fail_at_the_deadline() -> None:
    n = negotiate(LinearConcession(100, 70), LinearConcession(20, 50), deadline=6)
    with pytest.raises(NegotiationFailed) as err:
        n.result()
    assert err.value.reason == "deadline"


def test_the_round_limit_ends_an_endless_exchange() -> None:
    n = negotiate(LinearConcession(100, 70), LinearConcession(20, 50), deadline=1000,
                  round_limit=8)
    with pytest.raises(NegotiationFailed) as err:
        n.result()
    assert err.value.reason == "round_limit" and len(n.history) == 8


class Scripted:
    def __init__(self, *moves: object) -> None:
        self.moves = list(moves)

    def offer(self, negotiation: NegotiationView) -> Move:
        return self.moves.pop(0)  # type: ignore[return-value]


def test_reject_is_a_typed_failure() -> None:
    n = Negotiation(NID, A, B, deadline=10, round_limit=10)
    run_negotiation(n, {A: Scripted(Offer(5)), B: Scripted(Reject("too low"))})
    with pytest.raises(NegotiationFailed, match="too low") as err:
        n.result()
    assert err.value.reason == "rejected"


def test_accept_without_an_offer_and_garbage_are_invalid_moves() -> None:
    for first in (Accept(), "yes please", Offer("5")):  # type: ignore[arg-type]
        n = Negotiation(NID, A, B, deadline=10, round_limit=10)
        run_negotiation(n, {A: Scripted(first), B: Scripted()})
        with pytest.raises(NegotiationFailed) as err:
            n.result()
        assert err.value.reason == "invalid_move"


def test_out_of_turn_moves_are_invalid() -> None:
    n = Negotiation(NID, A, B, deadline=10, round_limit=10)
    n.move(B, Offer(3), 0)
    assert n.failure is not None and n.failure.reason == "invalid_move"


def test_accept_takes_the_other_partys_last_offer() -> None:
    n = Negotiation(NID, A, B, deadline=10, round_limit=10)
    run_negotiation(n, {A: Scripted(Offer(9), Offer(7)), B: Scripted(Offer(5), Accept())})
    deal = n.result()
    assert (deal.value, deal.offered_by, deal.accepted_by, deal.round) == (7, A, B, 3)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError):
        Negotiation(NID, A, A, deadline=1, round_limit=1)
    with pytest.raises(ConfigError):
        Negotiation(NID, A, B, deadline=1, round_limit=0)
    n = Negotiation(NID, A, B, deadline=1, round_limit=1)
    with pytest.raises(ConfigError):
        n.result()
