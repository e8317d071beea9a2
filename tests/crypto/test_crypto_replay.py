"""Unit tests of the replay window and the per-sender replay guard."""

from __future__ import annotations

import pytest

from foundation_p2p.crypto.replay import ReplayGuard, ReplayWindow
from foundation_p2p.errors import ConfigError, ReplayError, StaleEpochError

A = b"A" * 16
B = b"B" * 16
C = b"C" * 16


def take(window: ReplayWindow, pn: int) -> None:
    window.check(pn)
    window.accept(pn)


def test_in_order_packets_are_accepted() -> None:
    window = ReplayWindow(64)
    for pn in range(200):
        take(window, pn)
    assert window.highest == 199


def test_out_of_order_within_the_window_is_accepted_once() -> None:
    window = ReplayWindow(64)
    for pn in (10, 7, 9, 8, 3):
        take(window, pn)
    for pn in (10, 7, 9, 8, 3):
        with pytest.raises(ReplayError, match="already received"):
            window.check(pn)
    take(window, 4)


def test_a_duplicate_of_the_highest_is_refused() -> None:
    window = ReplayWindow(64)
    take(window, 0)
    with pytest.raises(ReplayError):
        window.check(0)


def test_older_than_the_window_is_refused() -> None:
    window = ReplayWindow(64)
    take(window, 100)
    take(window, 37)  # offset 63: the oldest still inside
    with pytest.raises(ReplayError, match="older than the replay window"):
        window.check(36)  # offset 64


def test_a_large_jump_slides_the_window_and_forgets_old_bits() -> None:
    window = ReplayWindow(64)
    take(window, 5)
    take(window, 5 + 1000)
    with pytest.raises(ReplayError, match="older"):
        window.check(5)
    take(window, 1000)
    assert window.bitmap < 1 << 64


def test_check_changes_nothing() -> None:
    window = ReplayWindow(64)
    window.check(5)
    window.check(5)
    assert window.highest == -1
    take(window, 5)


def test_guard_keeps_one_window_per_sender() -> None:
    guard = ReplayGuard(10, 64)
    guard.accept(A, 1, 0)
    guard.check(B, 1, 0)
    guard.accept(B, 1, 0)
    with pytest.raises(ReplayError):
        guard.check(A, 1, 0)
    with pytest.raises(ReplayError):
        guard.check(B, 1, 0)


def test_a_newer_epoch_retires_the_window() -> None:
    guard = ReplayGuard(10, 64)
    guard.accept(A, 1, 500)
    guard.check(A, 2, 0)  # pn 0 is fine in a new epoch
    guard.accept(A, 2, 0)
    assert guard.epoch_of(A) == 2
    with pytest.raises(ReplayError):
        guard.check(A, 2, 0)
    guard.check(A, 2, 1)


def test_an_older_epoch_is_refused() -> None:
    guard = ReplayGuard(10, 64)
    guard.accept(A, 5, 0)
    with pytest.raises(StaleEpochError, match="boot epoch 4 is older than 5"):
        guard.check(A, 4, 99)
    assert StaleEpochError("x").code == "stale_epoch"


def test_eviction_is_bounded_and_counted() -> None:
    guard = ReplayGuard(2, 64)
    guard.accept(A, 1, 0)
    guard.accept(B, 1, 0)
    guard.accept(A, 1, 1)  # A heard most recently: B is the least recent
    guard.accept(C, 1, 0)
    assert len(guard) == 2
    assert guard.evicted == 1
    assert guard.epoch_of(B) is None
    assert guard.epoch_of(A) == 1
    # The forgotten sender's old packet is accepted again: the documented cost of eviction.
    guard.check(B, 1, 0)


def test_guard_refuses_non_positive_sizes() -> None:
    with pytest.raises(ConfigError):
        ReplayGuard(0, 64)
    with pytest.raises(ConfigError):
        ReplayGuard(1, 0)
