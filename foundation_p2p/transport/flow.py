"""Flow control credit: the send side and the receive side of MAX_DATA / MAX_STREAM_DATA.

RFC 9000 section 4. A receiver advertises, per stream and per connection, the highest
offset it is willing to receive (the *limit*); a sender never sends a byte at or beyond
it. :class:`FlowCredit` is the sender's view of one such limit, :class:`FlowWindow` the
receiver's. The same two classes serve both levels: the connection keeps one pair for
MAX_DATA and each stream one pair for MAX_STREAM_DATA. At connection level the
"offset" is the sum over all streams of their highest offset
(:meth:`FlowWindow.on_received_bytes` adds the increase of one stream).

Window update rule (:meth:`FlowWindow.update`): a new limit, ``consumed + window``, is
advertised once the application has read at least half of the window since the last
advertisement, that is once the credit the peer still has drops to half the window or
below. Optional auto-tuning: when :meth:`FlowWindow.update` is given ``now`` and the
smoothed ``rtt`` and two updates come less than two RTTs apart (the window, not the
application, is what limits the transfer), the window doubles, up to ``max_window``.

Both classes are sans-I/O and allocation-free on their hot paths: plain ints, ``__slots__``.
"""

from __future__ import annotations

from foundation_p2p.errors import ConfigError
from foundation_p2p.transport.errors import ErrorCode, TransportError

__all__ = ["FlowCredit", "FlowWindow"]

#: Auto-tuning doubles the window when two updates come closer than this many RTTs.
AUTOTUNE_RTTS = 2.0


class FlowCredit:
    """How much a peer lets us send: the sending side of one flow-control limit.

    ``limit`` is the peer's last advertised limit (an absolute offset), ``used`` the offset
    we have sent up to (new bytes only: retransmissions use no credit again).
    :meth:`raise_limit` applies a MAX_DATA / MAX_STREAM_DATA frame (a frame that does not
    raise the limit is ignored, RFC 9000 section 4.1). When a sender has bytes to send but
    no credit it calls :meth:`note_blocked`; :meth:`blocked_at` then hands the limit to put
    in a DATA_BLOCKED / STREAM_DATA_BLOCKED frame, once per limit.
    """

    __slots__ = ("_blocked_limit", "_reported_limit", "limit", "used")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ConfigError(f"flow control limit must be >= 0, got {limit}")
        self.limit = limit
        self.used = 0
        self._blocked_limit = -1
        self._reported_limit = -1

    def available(self) -> int:
        """Return how many new bytes may still be sent under the current limit."""
        return self.limit - self.used

    def consume(self, n: int) -> None:
        """Account ``n`` new bytes as sent; more than :meth:`available` is a local bug."""
        if n < 0 or n > self.limit - self.used:
            raise ConfigError(f"cannot consume {n} bytes of flow credit, {self.available()} left")
        self.used += n

    def raise_limit(self, new_limit: int) -> bool:
        """Apply an advertised limit; return True when it raised ours (lower ones are ignored)."""
        if new_limit > self.limit:
            self.limit = new_limit
            return True
        return False

    def note_blocked(self) -> None:
        """Record that a sender had data to send but no credit left under this limit."""
        if self.used >= self.limit:
            self._blocked_limit = self.limit

    def blocked_at(self) -> int | None:
        """Return the limit we are blocked at, once per limit (for DATA_BLOCKED), else None.

        None also when the limit was raised since :meth:`note_blocked` (no longer blocked).
        """
        limit = self._blocked_limit
        if limit == self.limit and limit != self._reported_limit:
            self._reported_limit = limit
            return limit
        return None

    def __repr__(self) -> str:
        return f"FlowCredit(limit={self.limit}, used={self.used})"


class FlowWindow:
    """The receiving side of one flow-control limit: what we advertised and what came in.

    ``limit`` is the highest offset we have advertised (initially ``window``), ``highest``
    the highest offset received, ``consumed`` what the application has read (or what was
    discarded on its behalf). Invariant: ``consumed <= highest <= limit`` and
    ``limit - consumed <= max_window``, so a peer can never make us buffer more than the
    window. A peer exceeding ``limit`` gets ``TransportError(FLOW_CONTROL_ERROR)``
    (RFC 9000 section 4.1). ``updates`` counts advertised limits, ``grown`` auto-tuning steps.
    """

    __slots__ = (
        "_last_update_at",
        "consumed",
        "grown",
        "highest",
        "limit",
        "max_window",
        "updates",
        "window",
    )

    def __init__(self, window: int, *, max_window: int | None = None) -> None:
        if window <= 0:
            raise ConfigError(f"flow control window must be > 0, got {window}")
        if max_window is None:
            max_window = window
        if max_window < window:
            raise ConfigError(f"max_window {max_window} is below the window {window}")
        self.window = window
        self.max_window = max_window
        self.limit = window
        self.highest = 0
        self.consumed = 0
        self.updates = 0
        self.grown = 0
        self._last_update_at: float | None = None

    def on_received(self, end_offset: int) -> None:
        """Account data received up to ``end_offset`` (absolute); beyond ``limit`` is an error."""
        if end_offset > self.highest:
            if end_offset > self.limit:
                raise TransportError(
                    ErrorCode.FLOW_CONTROL_ERROR,
                    f"data up to offset {end_offset} exceeds the advertised limit {self.limit}",
                )
            self.highest = end_offset

    def on_received_bytes(self, n: int) -> None:
        """Account ``n`` more bytes of highest offset (the connection level: a stream's growth)."""
        if n > 0:
            self.on_received(self.highest + n)

    def check_received(self, end_offset: int) -> None:
        """Raise FLOW_CONTROL_ERROR if ``end_offset`` exceeds ``limit``, changing nothing."""
        if end_offset > self.limit:
            raise TransportError(
                ErrorCode.FLOW_CONTROL_ERROR,
                f"data up to offset {end_offset} exceeds the advertised limit {self.limit}",
            )

    def on_consumed(self, n: int) -> None:
        """Account ``n`` bytes read by the application (or discarded for it)."""
        if n < 0 or self.consumed + n > self.highest:
            raise ConfigError(
                f"cannot consume {n} bytes: {self.highest - self.consumed} received and unread"
            )
        self.consumed += n

    def update_due(self) -> bool:
        """Return True when :meth:`update` would advertise a new limit now."""
        return (self.limit - self.consumed) * 2 <= self.window

    def update(self, now: float | None = None, rtt: float | None = None) -> int | None:
        """Return the new limit to advertise (MAX_DATA / MAX_STREAM_DATA), or None.

        A new limit ``consumed + window`` once the peer's remaining credit is at most half the
        window. With ``now`` and ``rtt`` given, two updates less than ``AUTOTUNE_RTTS`` RTTs
        apart double the window first (bounded by ``max_window``).
        """
        if (self.limit - self.consumed) * 2 > self.window:
            return None
        if now is not None and rtt is not None:
            last = self._last_update_at
            if (
                last is not None
                and now - last < AUTOTUNE_RTTS * rtt
                and self.window < self.max_window
            ):
                self.window = min(self.window * 2, self.max_window)
                self.grown += 1
            self._last_update_at = now
        self.limit = self.consumed + self.window
        self.updates += 1
        return self.limit

    def __repr__(self) -> str:
        return (
            f"FlowWindow(window={self.window}, limit={self.limit}, highest={self.highest}, "
            f"consumed={self.consumed})"
        )
