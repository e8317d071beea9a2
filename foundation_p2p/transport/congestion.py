"""Congestion control: the controller interface, NewReno, and the pacer (RFC 9002 section 7).

:class:`~foundation_p2p.transport.recovery.LossRecovery` owns ``bytes_in_flight`` and tells a
:class:`CongestionController` what was sent, acknowledged and lost; the connection asks
``can_send(bytes_in_flight, size)`` before sending a new ack-eliciting packet and the
:class:`Pacer` when. The controller sits behind the :class:`CongestionController` protocol so
that CUBIC or BBR can be added beside :class:`NewReno` without touching recovery.

Sans-I/O: every time is a float (monotonic seconds) handed in by the caller.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from foundation_p2p.transport.recovery import RttEstimator, SentPacket

log = logging.getLogger("foundation_p2p.transport.congestion")

DEFAULT_MAX_DATAGRAM_SIZE = 1200
"""Bytes: the datagram size the transport sends (QUIC's minimum maximum datagram size)."""

LOSS_REDUCTION_FACTOR = 0.5
"""RFC 9002 ``kLossReductionFactor``: the window is halved on a congestion event."""

DEFAULT_MAX_WINDOW_BYTES = 16 * 1024 * 1024
"""Upper bound on the congestion window (the window is a counter, but bounded like a buffer)."""


class CongestionController(Protocol):
    """What loss recovery and the connection need from a congestion controller.

    ``on_packet_sent`` is called for every packet that counts toward bytes in flight;
    ``on_packets_acked`` and ``on_packets_lost`` with the in-flight packets among those newly
    acknowledged or declared lost (ascending packet numbers). ``persistent`` tells that the
    losses establish persistent congestion (RFC 9002 section 7.6). ``on_discarded`` takes a
    packet out of flight that is neither acknowledged nor a congestion signal (a lost path
    MTU probe).
    """

    congestion_window: int

    def on_packet_sent(self, size: int, now: float) -> None: ...

    def on_packets_acked(self, acked: list[SentPacket], now: float, rtt: RttEstimator) -> None: ...

    def on_packets_lost(self, lost: list[SentPacket], now: float, persistent: bool) -> None: ...

    def can_send(self, bytes_in_flight: int, size: int) -> bool: ...

    def on_discarded(self, size: int) -> None: ...


class NewReno:
    """NewReno congestion control as RFC 9002 section 7 and appendix B describe it.

    - Slow start: the window starts at ``min(10 * mds, max(14720, 2 * mds))`` and grows by
      the bytes acknowledged (doubling per round trip while the sender fills it).
    - A congestion event (a packet declared lost) starts a *recovery period* unless the lost
      packet was sent before the current period began: ``ssthresh = cwnd / 2``, the window
      drops to ``max(ssthresh, minimum window)``, and stays there until a packet sent after
      the period began is acknowledged (one reduction per round trip of losses).
    - Congestion avoidance (``cwnd >= ssthresh``): one ``max_datagram_size`` per window of
      bytes acknowledged, counted exactly in bytes (no per-ack rounding drift).
    - Persistent congestion: the window collapses to the minimum, ``2 * mds``, and the
      recovery period is forgotten, so the sender slow-starts again.
    - Under-use (RFC 9002 section 7.8): the window does not grow on an acknowledgement when
      the most bytes in flight over this round trip and the previous one stayed well below
      it (the sender was limited by the application or flow control, not by the network):
      below half the window in slow start, more than three datagrams below it in congestion
      avoidance. A round trip ends when a packet sent after it began is acknowledged. Bytes
      in flight are counted here from the calls above, as :class:`LossRecovery` counts them.

    The window never exceeds ``max_window`` (bytes). Counters: ``congestion_events``,
    ``persistent_congestion_events``, ``underused_acks`` (acks that did not grow the window
    because it was not filled).
    """

    __slots__ = (
        "_bytes_in_flight",
        "_ca_acked_bytes",
        "_hwm",
        "_hwm_prev_round",
        "_recovery_start_time",
        "_round_start",
        "congestion_events",
        "congestion_window",
        "max_datagram_size",
        "max_window",
        "minimum_window",
        "persistent_congestion_events",
        "ssthresh",
        "underused_acks",
    )

    def __init__(
        self,
        *,
        max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE,
        max_window: int = DEFAULT_MAX_WINDOW_BYTES,
    ) -> None:
        if max_datagram_size < 1200:
            raise ValueError(f"max_datagram_size must be at least 1200, got {max_datagram_size}")
        mds = max_datagram_size
        self.max_datagram_size = mds
        self.minimum_window = 2 * mds
        initial = min(10 * mds, max(14720, 2 * mds))
        if max_window < initial:
            raise ValueError(f"max_window {max_window} is below the initial window {initial}")
        self.max_window = max_window
        self.congestion_window = initial
        self.ssthresh: float = float("inf")
        self._recovery_start_time: float | None = None
        self._ca_acked_bytes = 0
        self._bytes_in_flight = 0
        self._hwm = 0
        self._hwm_prev_round = 0
        self._round_start = float("-inf")
        self.congestion_events = 0
        self.underused_acks = 0
        self.persistent_congestion_events = 0

    @property
    def bytes_in_flight(self) -> int:
        """Bytes sent and not yet acknowledged, lost or discarded, as this controller counts."""
        return self._bytes_in_flight

    @property
    def in_slow_start(self) -> bool:
        """True while the window is below the slow start threshold."""
        return self.congestion_window < self.ssthresh

    @property
    def recovery_start_time(self) -> float | None:
        """When the current recovery period began (``None``: never, or reset)."""
        return self._recovery_start_time

    def in_recovery(self, time_sent: float) -> bool:
        """True when a packet sent at ``time_sent`` belongs to the current recovery period."""
        start = self._recovery_start_time
        return start is not None and time_sent <= start

    def can_send(self, bytes_in_flight: int, size: int) -> bool:
        """True when a packet of ``size`` bytes fits in the window (RFC 9002 section 7)."""
        return bytes_in_flight + size <= self.congestion_window

    def on_packet_sent(self, size: int, now: float) -> None:
        """Count an in-flight packet (for the under-use rule)."""
        b = self._bytes_in_flight + size
        self._bytes_in_flight = b
        if b > self._hwm:
            self._hwm = b

    def on_packets_acked(self, acked: list[SentPacket], now: float, rtt: RttEstimator) -> None:
        """Grow the window for newly acknowledged in-flight packets (appendix B.5).

        ``acked`` is in send order (ascending packet numbers, so ascending send times).
        """
        if not acked:
            return
        total = 0
        for p in acked:
            total += p.size
        used = self._hwm_prev_round if self._hwm_prev_round > self._hwm else self._hwm
        self._bytes_in_flight = max(0, self._bytes_in_flight - total)
        newest_sent = acked[-1].time_sent
        if newest_sent >= self._round_start:
            # A packet sent after the round began is acknowledged: one round trip is over.
            self._hwm_prev_round = self._hwm
            self._hwm = self._bytes_in_flight
            self._round_start = now
        cwnd = self.congestion_window
        mds = self.max_datagram_size
        if cwnd >= self.max_window:
            return
        ss = cwnd < self.ssthresh
        # Section 7.8: a window the sender does not fill must not grow. "Filled" is judged on
        # the most bytes in flight over this round trip and the previous one; in slow start
        # half the window counts as filled (the window doubles within the round).
        if ss:
            if 2 * used < cwnd:
                self.underused_acks += 1
                return
        elif used + 3 * mds < cwnd:
            self.underused_acks += 1
            return
        start = self._recovery_start_time
        grow = total
        if start is not None and acked[0].time_sent <= start:
            if newest_sent <= start:
                return  # all sent before the recovery period began: no growth
            grow = 0
            for p in acked:
                if p.time_sent > start:
                    grow += p.size
        if ss:
            cwnd += grow
        else:
            acc = self._ca_acked_bytes + grow
            if acc >= cwnd:
                steps = acc // cwnd
                acc -= steps * cwnd
                cwnd += steps * mds
            self._ca_acked_bytes = acc
        self.congestion_window = min(cwnd, self.max_window)

    def on_packets_lost(self, lost: list[SentPacket], now: float, persistent: bool) -> None:
        """Enter recovery for the latest lost packet; collapse on persistent congestion."""
        if not lost:
            return
        total = 0
        last_sent = lost[0].time_sent
        for p in lost:
            total += p.size
            if p.time_sent > last_sent:
                last_sent = p.time_sent
        self._bytes_in_flight = max(0, self._bytes_in_flight - total)
        start = self._recovery_start_time
        if start is None or last_sent > start:
            # Appendix B.6: a new recovery period, keyed on now; a later loss of a packet
            # sent before now does not reduce the window again.
            self._recovery_start_time = now
            self.ssthresh = self.congestion_window * LOSS_REDUCTION_FACTOR
            self.congestion_window = max(int(self.ssthresh), self.minimum_window)
            self._ca_acked_bytes = 0
            self.congestion_events += 1
        if persistent:
            self.congestion_window = self.minimum_window
            self._recovery_start_time = None
            self._ca_acked_bytes = 0
            self.persistent_congestion_events += 1
            log.debug("persistent congestion: window collapses to %d", self.minimum_window)

    def on_discarded(self, size: int) -> None:
        """Forget an in-flight packet that is neither acknowledged nor lost (it was dropped)."""
        self._bytes_in_flight = max(0, self._bytes_in_flight - size)

    def set_max_datagram_size(self, mds: int) -> None:
        """Follow a change of the datagram size (path MTU discovery, RFC 9002 section 7.2).

        The minimum window becomes ``2 * mds``, and the window is at least that. While no
        congestion event has happened (``ssthresh`` still infinite), the window is also at
        least the initial window recomputed for the new size, as section 7.2 recommends:
        otherwise a raise to 16 KiB would leave the 14,720-byte initial window unable to
        hold one full packet. A smaller size leaves the window as it is.
        """
        if mds < 1200:
            raise ValueError(f"max_datagram_size must be at least 1200, got {mds}")
        old = self.max_datagram_size
        self.max_datagram_size = mds
        self.minimum_window = 2 * mds
        cwnd = self.congestion_window
        if mds > old and self.ssthresh == float("inf"):
            initial = min(10 * mds, max(14720, 2 * mds))
            if cwnd < initial:
                cwnd = initial
        if cwnd < self.minimum_window:
            cwnd = self.minimum_window
        if self.max_window < self.minimum_window:
            self.max_window = self.minimum_window  # the bound must hold two datagrams
        self.congestion_window = min(cwnd, self.max_window)


class Pacer:
    """Spreads a congestion window over a round trip (RFC 9002 section 7.7), a token bucket.

    Rate: ``n * congestion_window / smoothed_rtt`` bytes per second (``n = 1.25`` so that
    pacing alone does not keep the window from being filled), read from the controller and
    the RTT estimator at each call, so it follows their changes. Before the first RTT sample
    the estimator's ``smoothed_rtt`` is its ``initial_rtt``. The bucket holds at most
    ``burst_packets * max_datagram_size`` bytes (the burst allowance, 10 packets by default)
    and starts full; a send takes its size out and may leave the bucket negative, which the
    next sends wait out.

    Usage: ``t = pacer.next_send_time(now, size)``; if ``t <= now`` send and call
    ``pacer.on_sent(now, size)``, else set a timer for ``t``.
    """

    __slots__ = ("_burst_packets", "_capacity", "_cc", "_last", "_rtt", "_tokens", "n")

    def __init__(
        self,
        cc: CongestionController,
        rtt: RttEstimator,
        *,
        n: float = 1.25,
        burst_packets: int = 10,
        max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE,
    ) -> None:
        if n <= 0:
            raise ValueError(f"pacing gain n must be positive, got {n}")
        if burst_packets < 1:
            raise ValueError(f"burst_packets must be at least 1, got {burst_packets}")
        self._cc = cc
        self._rtt = rtt
        self.n = n
        self._burst_packets = burst_packets
        self._capacity = float(burst_packets * max_datagram_size)
        self._tokens = self._capacity
        self._last: float | None = None

    def set_max_datagram_size(self, mds: int) -> None:
        """Follow a change of the datagram size: the burst allowance is ``burst_packets``
        datagrams of the new size (tokens above the new capacity are dropped)."""
        self._capacity = float(self._burst_packets * mds)
        if self._tokens > self._capacity:
            self._tokens = self._capacity

    def rate(self) -> float:
        """The pacing rate now, in bytes per second."""
        rtt = self._rtt
        srtt = rtt.smoothed_rtt
        if srtt < rtt.granularity:
            srtt = rtt.granularity
        return self.n * self._cc.congestion_window / srtt

    def _tokens_at(self, now: float) -> float:
        """The bucket's content at ``now`` (not stored)."""
        tokens = self._tokens
        last = self._last
        capacity = self._capacity
        if tokens < capacity and last is not None and now > last:
            tokens += (now - last) * self.rate()
            if tokens > capacity:
                tokens = capacity
        return tokens

    def next_send_time(self, now: float, size: int) -> float:
        """When a packet of ``size`` bytes may be sent: ``<= now`` means at once."""
        if self._tokens >= size:
            return now  # the bucket only fills with time
        tokens = self._tokens_at(now)
        if tokens >= size:
            return now
        return now + (size - tokens) / self.rate()

    def on_sent(self, now: float, size: int) -> None:
        """Take a sent packet's bytes out of the bucket."""
        self._tokens = self._tokens_at(now) - size
        if self._last is None or now > self._last:
            self._last = now
