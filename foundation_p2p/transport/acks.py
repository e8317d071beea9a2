"""Receive-side acknowledgement tracking: packet-number ranges, duplicates, ACK timing.

:class:`AckTracker` remembers which 1-RTT packet numbers arrived, as disjoint inclusive
ranges (oldest first), and decides when an ACK frame is due (RFC 9000 section 13.2):

- at once when an ack-eliciting packet arrives out of order (a gap below it, or it fills
  a gap): the sender's loss detection needs to hear about gaps quickly;
- at once when ``threshold`` ack-eliciting packets have arrived since the last ACK
  (every 2nd by default);
- otherwise at most ``max_ack_delay`` after the first unacknowledged ack-eliciting packet.

Packets that are not ack-eliciting (only ACK / CONNECTION_CLOSE) are recorded but never
cause an ACK by themselves. The same ranges serve duplicate detection: a packet number
inside a recorded range, or at or below the *floor*, is a replay.

Bounds: at most ``max_ranges`` ranges are kept. When a new gap would exceed that, the
oldest range is forgotten and the floor rises to its top, so numbers below it count as
already received (a late packet there is refused; its data was or will be retransmitted
in a new packet). Each forgotten range is counted in :attr:`ranges_dropped`. An ACK frame
reports at most ``max_ranges_sent`` ranges, the newest.
"""

from __future__ import annotations

from bisect import bisect_left

from foundation_p2p.errors import ReplayError
from foundation_p2p.transport.frames import AckFrame


class AckTracker:
    """Received packet numbers as ranges, duplicate checks, and when to send an ACK."""

    __slots__ = (
        "_deadline",
        "_eliciting_since_ack",
        "_highs",
        "_immediate",
        "_largest_time",
        "_lows",
        "duplicates",
        "floor",
        "max_ack_delay",
        "max_ranges",
        "max_ranges_sent",
        "ranges_dropped",
        "threshold",
    )

    def __init__(
        self,
        *,
        max_ack_delay: float = 0.025,
        threshold: int = 2,
        max_ranges: int = 256,
        max_ranges_sent: int = 32,
    ) -> None:
        self.max_ack_delay = max_ack_delay
        self.threshold = threshold
        self.max_ranges = max_ranges
        self.max_ranges_sent = max_ranges_sent
        # parallel lists, ascending; range i is [_lows[i], _highs[i]]
        self._lows: list[int] = []
        self._highs: list[int] = []
        self.floor = -1
        """Every packet number at or below this counts as received (forgotten ranges)."""
        self.ranges_dropped = 0
        """Ranges forgotten because ``max_ranges`` was reached."""
        self.duplicates = 0
        """Packet numbers refused by :meth:`check` as already received or too old."""
        self._largest_time = 0.0
        self._eliciting_since_ack = 0
        self._immediate = False
        self._deadline: float | None = None

    @property
    def largest(self) -> int | None:
        """The largest packet number received, or None."""
        return self._highs[-1] if self._highs else None

    def ranges(self) -> list[tuple[int, int]]:
        """All tracked ranges, newest first, as inclusive ``(low, high)``."""
        return list(zip(reversed(self._lows), reversed(self._highs), strict=True))

    def check(self, pn: int) -> None:
        """Raise :class:`ReplayError` if ``pn`` was received already or is below the floor."""
        highs = self._highs
        if highs and pn > highs[-1]:
            return
        if pn <= self.floor:
            self.duplicates += 1
            raise ReplayError(f"packet number {pn} is older than the tracked ranges")
        i = bisect_left(highs, pn)
        if i < len(highs) and self._lows[i] <= pn:
            self.duplicates += 1
            raise ReplayError(f"packet number {pn} was already received")

    def on_received(self, pn: int, ack_eliciting: bool, now: float) -> None:
        """Record an authenticated packet (after :meth:`check`) and schedule the ACK."""
        lows, highs = self._lows, self._highs
        out_of_order = False
        if not highs:
            lows.append(pn)
            highs.append(pn)
            out_of_order = pn != self.floor + 1
            self._largest_time = now
        elif pn == highs[-1] + 1:  # the common case: next in order
            highs[-1] = pn
            self._largest_time = now
        elif pn > highs[-1]:
            lows.append(pn)
            highs.append(pn)
            out_of_order = True
            self._largest_time = now
        else:
            out_of_order = True
            i = bisect_left(highs, pn)  # first range with high >= pn; pn < lows[i]
            joins_below = i > 0 and highs[i - 1] == pn - 1
            joins_above = lows[i] == pn + 1
            if joins_below and joins_above:
                highs[i - 1] = highs[i]
                del lows[i], highs[i]
            elif joins_below:
                highs[i - 1] = pn
            elif joins_above:
                lows[i] = pn
            else:
                lows.insert(i, pn)
                highs.insert(i, pn)
        if len(lows) > self.max_ranges:
            self.floor = highs[0]
            del lows[0], highs[0]
            self.ranges_dropped += 1
        if ack_eliciting:
            self._eliciting_since_ack += 1
            if out_of_order or self._eliciting_since_ack >= self.threshold:
                self._immediate = True
            elif self._deadline is None:
                self._deadline = now + self.max_ack_delay

    def ack_deadline(self) -> float | None:
        """When an ACK must be sent: ``-inf`` for at once, a time, or None (nothing owed)."""
        if self._immediate:
            return float("-inf")
        return self._deadline

    def ack_wanted(self, now: float) -> bool:
        """True if an ACK is due at ``now``."""
        if self._immediate:
            return True
        return self._deadline is not None and now >= self._deadline

    def has_unacked(self) -> bool:
        """True if some ack-eliciting packet has not been acknowledged yet."""
        return self._eliciting_since_ack > 0

    def build_ack(self, now: float) -> AckFrame | None:
        """The ACK frame to send now (newest ranges), or None if nothing was received.

        Changes nothing: call :meth:`on_ack_sent` once the frame is actually sent.
        """
        highs = self._highs
        if not highs:
            return None
        lows = self._lows
        if len(highs) == 1:
            ranges = [(lows[0], highs[0])]
        else:
            n = min(len(highs), self.max_ranges_sent)
            ranges = [(lows[-1 - k], highs[-1 - k]) for k in range(n)]
        delay_us = max(0, round((now - self._largest_time) * 1_000_000))
        return AckFrame(ranges, delay_us)

    def on_ack_sent(self) -> None:
        """An ACK frame left in a packet: nothing is owed until the next ack-eliciting packet."""
        self._immediate = False
        self._deadline = None
        self._eliciting_since_ack = 0
