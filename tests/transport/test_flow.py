"""Flow control credit (RFC 9000 section 4): FlowCredit (sender) and FlowWindow (receiver)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation_p2p.errors import ConfigError
from foundation_p2p.transport.errors import ErrorCode, TransportError
from foundation_p2p.transport.flow import FlowCredit, FlowWindow

# -- FlowCredit: the sender's side ---------------------------------------------------------


def test_sender_never_has_credit_beyond_the_advertised_limit() -> None:
    credit = FlowCredit(1000)
    credit.consume(600)
    assert credit.available() == 400
    with pytest.raises(ConfigError):
        credit.consume(401)
    credit.consume(400)
    assert credit.available() == 0


def test_sender_ignores_limits_that_do_not_increase() -> None:
    # RFC 9000 4.1: "A sender MUST ignore any MAX_STREAM_DATA or MAX_DATA frames that do
    # not increase flow control limits."
    credit = FlowCredit(1000)
    assert credit.raise_limit(2000) is True
    assert credit.raise_limit(1500) is False
    assert credit.raise_limit(2000) is False
    assert credit.limit == 2000


def test_blocked_is_reported_once_per_limit() -> None:
    # RFC 9000 4.1: a sender SHOULD send DATA_BLOCKED when it has data to write but is
    # blocked by flow control limits; one report per limit is enough.
    credit = FlowCredit(100)
    credit.note_blocked()  # not blocked yet: credit left
    assert credit.blocked_at() is None
    credit.consume(100)
    credit.note_blocked()
    assert credit.blocked_at() == 100
    credit.note_blocked()
    assert credit.blocked_at() is None  # once per limit
    credit.raise_limit(300)
    assert credit.blocked_at() is None  # not blocked any more
    credit.consume(200)
    credit.note_blocked()
    assert credit.blocked_at() == 300


def test_a_raised_limit_cancels_a_pending_blocked_report() -> None:
    credit = FlowCredit(10)
    credit.consume(10)
    credit.note_blocked()
    credit.raise_limit(20)
    assert credit.blocked_at() is None


# -- FlowWindow: the receiver's side -------------------------------------------------------


def test_data_beyond_the_advertised_limit_is_a_flow_control_error() -> None:
    # RFC 9000 4.1: "A receiver MUST close the connection with an error of type
    # FLOW_CONTROL_ERROR if the sender violates the advertised connection or stream data
    # limits."
    window = FlowWindow(1000)
    window.on_received(1000)
    with pytest.raises(TransportError) as info:
        window.on_received(1001)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    assert window.highest == 1000


def test_received_offsets_below_the_highest_change_nothing() -> None:
    window = FlowWindow(1000)
    window.on_received(800)
    window.on_received(300)
    assert window.highest == 800


def test_connection_level_accounts_the_growth_of_each_stream() -> None:
    conn = FlowWindow(1000)
    conn.on_received_bytes(600)  # stream A grew by 600
    conn.on_received_bytes(400)  # stream B grew by 400
    assert conn.highest == 1000
    with pytest.raises(TransportError):
        conn.on_received_bytes(1)


def test_no_update_until_half_the_window_is_consumed() -> None:
    window = FlowWindow(1000)
    window.on_received(1000)
    window.on_consumed(499)
    assert not window.update_due()
    assert window.update() is None
    window.on_consumed(1)
    assert window.update_due()
    assert window.update() == 1500  # consumed + window
    assert not window.update_due()
    assert window.update() is None  # already advertised
    assert window.updates == 1


def test_consuming_more_than_received_is_a_local_error() -> None:
    window = FlowWindow(100)
    window.on_received(50)
    with pytest.raises(ConfigError):
        window.on_consumed(51)


def test_autotuning_doubles_the_window_when_updates_come_within_two_rtts() -> None:
    window = FlowWindow(1000, max_window=3000)
    window.on_received(1000)
    window.on_consumed(1000)
    assert window.update(now=10.0, rtt=0.1) == 2000  # first update: no history
    window.on_received(2000)
    window.on_consumed(1000)
    # 0.15 s later < 2 RTTs: the window is the bottleneck, so it grows.
    assert window.update(now=10.15, rtt=0.1) == 2000 + 2000
    assert window.window == 2000 and window.grown == 1
    window.on_received(4000)
    window.on_consumed(2000)
    assert window.update(now=10.2, rtt=0.1) == 4000 + 3000  # bounded by max_window
    assert window.window == 3000


def test_autotuning_leaves_the_window_alone_when_updates_are_slow() -> None:
    window = FlowWindow(1000, max_window=8000)
    window.on_received(1000)
    window.on_consumed(600)
    window.update(now=1.0, rtt=0.1)
    window.on_received(1600)
    window.on_consumed(600)
    window.update(now=2.0, rtt=0.1)
    assert window.window == 1000 and window.grown == 0


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        FlowWindow(0)
    with pytest.raises(ConfigError):
        FlowWindow(100, max_window=50)
    with pytest.raises(ConfigError):
        FlowCredit(-1)


@given(
    window=st.integers(1, 10_000),
    steps=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), max_size=60),
)
def test_the_unread_bytes_never_exceed_the_window(
    window: int, steps: list[tuple[int, int]]
) -> None:
    # Whatever the peer sends (within the limit: anything beyond raises) and whatever the
    # application reads, received-but-unread bytes stay within the window, and the credit
    # the sender sees always matches the receiver's limit.
    flow = FlowWindow(window)
    credit = FlowCredit(flow.limit)
    for send, read in steps:
        n = min(send, credit.available())
        credit.consume(n)
        flow.on_received(credit.used)
        flow.on_consumed(min(read, flow.highest - flow.consumed))
        new = flow.update()
        if new is not None:
            credit.raise_limit(new)
        assert flow.highest - flow.consumed <= window
        assert flow.limit - flow.consumed <= window
        assert credit.limit == flow.limit
