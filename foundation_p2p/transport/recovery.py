"""Loss recovery: RTT estimation, loss detection and the probe timeout (RFC 9002 sections 5-6).

One packet-number space, the 1-RTT one (the connection retransmits its handshake itself).
The connection hands every packet it sends to :meth:`LossRecovery.on_packet_sent`, every
ACK frame it receives to :meth:`LossRecovery.on_ack_received`, and calls
:meth:`LossRecovery.on_timeout` when :meth:`LossRecovery.deadline` passes. Each answer says
which packets were newly acknowledged and which are lost, handing back the opaque
``payload`` the connection attached to each, so it can retransmit what they carried.

Rules implemented (RFC 9002 numbering):

- 5.1-5.3: an RTT sample is taken when the largest acknowledged packet is newly
  acknowledged and at least one newly acknowledged packet is ack-eliciting; the peer's
  ack delay is capped by ``max_ack_delay`` and subtracted only when that does not take the
  sample below ``min_rtt``; ``smoothed_rtt``/``rttvar`` follow the usual EWMA, and the first
  sample resets them.
- 6.1: a packet is lost when a packet sent at least ``packet_threshold`` (3) later is
  acknowledged, or when it was sent ``time_threshold * max(smoothed_rtt, latest_rtt)``
  (9/8, at least ``granularity``) before now and a later packet is acknowledged; the loss
  timer is armed for the earliest time an unacknowledged packet will cross that line.
- 6.2: with nothing waiting on the loss timer and ack-eliciting packets in flight, the probe
  timeout ``smoothed_rtt + max(4 * rttvar, granularity) + max_ack_delay`` doubles with each
  consecutive expiry (``pto_count``) and is reset by an acknowledgement of new packets.
- 7.6: persistent congestion is established when two ack-eliciting packets sent after the
  first RTT sample are declared lost, nothing sent between them is acknowledged, and their
  send times are more than ``3 * (smoothed_rtt + max(4 * rttvar, granularity) +
  max_ack_delay)`` apart; the controller then collapses its window and ``min_rtt`` is reset
  to the latest sample (section 5.2). The two packets are looked for among those declared
  lost together (one ACK frame or one loss timer), as appendix B.8 does; losses declared
  on different occasions are not paired.

Not done: spurious-loss detection (a packet declared lost and acknowledged later is only
ignored), ECN, and the handshake's packet-number spaces.

Cost: the tracked packets live in a dict keyed by packet number plus a deque of their
numbers in send order. Acknowledged ranges are walked only from the oldest tracked packet
up (a range wider than the tracked set walks the tracked set instead), and loss detection
stops at the first packet that is not lost, so a packet costs O(1) amortised from send to
acknowledgement or loss, whatever the peer's ACK frames repeat.

Bound: at most ``max_tracked`` packets are tracked. :meth:`LossRecovery.can_track` turns
False at that bound and the connection stops sending new ack-eliciting data (acks, probes
and retransmissions of what was declared lost free space or may go on). Past the bound, a
packet that is not ack-eliciting is sent untracked (counted in ``untracked_packets``; only
its acknowledgement, which nobody waits for, is lost) and ack-eliciting packets (PTO probes)
are accepted up to ``probe_headroom`` more; beyond that :meth:`LossRecovery.on_packet_sent`
raises ``ValueError``: the connection ignored ``can_track()``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence

from foundation_p2p.transport.congestion import CongestionController
from foundation_p2p.transport.errors import ErrorCode, TransportError

log = logging.getLogger("foundation_p2p.transport.recovery")

DEFAULT_INITIAL_RTT_S = 0.1
"""Seconds: RTT assumed before the first sample (our peers are cluster members on LAN/WAN)."""

PERSISTENT_CONGESTION_THRESHOLD = 3
"""RFC 9002 ``kPersistentCongestionThreshold``: in probe timeouts."""

MAX_PTO_BACKOFF_EXPONENT = 30
"""The probe timeout doubles at most this many times (2**30 PTOs outlast any idle timeout)."""

DEFAULT_MAX_TRACKED = 8192
"""Packets tracked at most: about 10 MB of 1200-byte datagrams in flight."""


class SentPacket:
    """One sent packet as loss recovery tracks it.

    ``pn``: packet number; ``time_sent``: when it was sent (seconds); ``size``: bytes on the
    wire; ``ack_eliciting``: it carries a frame the peer must acknowledge; ``in_flight``: it
    counts toward bytes in flight (ack-eliciting or padding); ``payload``: the connection's
    own record of what the packet carried, handed back when acknowledged or lost;
    ``pmtu_probe``: a path MTU probe (:mod:`~foundation_p2p.transport.pmtu`), whose loss is
    not reported to the congestion controller as congestion.
    """

    __slots__ = ("ack_eliciting", "in_flight", "payload", "pmtu_probe", "pn", "size", "time_sent")

    def __init__(
        self,
        pn: int,
        time_sent: float,
        size: int,
        ack_eliciting: bool = True,
        in_flight: bool = True,
        payload: object = None,
        pmtu_probe: bool = False,
    ) -> None:
        self.pn = pn
        self.time_sent = time_sent
        self.size = size
        self.ack_eliciting = ack_eliciting
        self.in_flight = in_flight
        self.payload = payload
        self.pmtu_probe = pmtu_probe

    def __repr__(self) -> str:
        return (
            f"SentPacket(pn={self.pn}, time_sent={self.time_sent}, size={self.size}, "
            f"ack_eliciting={self.ack_eliciting}, in_flight={self.in_flight})"
        )


class RttEstimator:
    """Round-trip time estimate of one path (RFC 9002 section 5).

    ``rttvar`` is updated from the previous ``smoothed_rtt``, as appendix A.7 and RFC 6298
    do (section 5.3's prose updates ``smoothed_rtt`` first; the difference is second order).

    Before the first sample ``smoothed_rtt = initial_rtt``, ``rttvar = initial_rtt / 2``,
    ``latest_rtt = min_rtt = 0`` and ``has_sample`` is False.
    """

    __slots__ = (
        "granularity",
        "has_sample",
        "initial_rtt",
        "latest_rtt",
        "min_rtt",
        "rttvar",
        "smoothed_rtt",
    )

    def __init__(
        self, initial_rtt: float = DEFAULT_INITIAL_RTT_S, granularity: float = 0.001
    ) -> None:
        if not initial_rtt > 0:
            raise ValueError(f"initial_rtt must be positive, got {initial_rtt}")
        if not granularity > 0:
            raise ValueError(f"granularity must be positive, got {granularity}")
        self.initial_rtt = initial_rtt
        self.granularity = granularity
        self.has_sample = False
        self.latest_rtt = 0.0
        self.min_rtt = 0.0
        self.smoothed_rtt = initial_rtt
        self.rttvar = initial_rtt / 2

    def update(self, latest_rtt: float, ack_delay: float, max_ack_delay: float) -> None:
        """Take one RTT sample: ``latest_rtt`` measured, ``ack_delay`` reported by the peer."""
        if latest_rtt < 0.0:
            latest_rtt = 0.0
        self.latest_rtt = latest_rtt
        if not self.has_sample:
            # The first sample erases the initial values.
            self.has_sample = True
            self.min_rtt = latest_rtt
            self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            return
        if latest_rtt < self.min_rtt:
            self.min_rtt = latest_rtt
        if ack_delay > max_ack_delay:
            ack_delay = max_ack_delay
        elif ack_delay < 0.0:
            ack_delay = 0.0
        adjusted = latest_rtt
        if latest_rtt >= self.min_rtt + ack_delay:
            adjusted = latest_rtt - ack_delay
        srtt = self.smoothed_rtt
        diff = srtt - adjusted
        self.rttvar = 0.75 * self.rttvar + 0.25 * (diff if diff >= 0.0 else -diff)
        self.smoothed_rtt = 0.875 * srtt + 0.125 * adjusted

    def pto(self, max_ack_delay: float) -> float:
        """The probe timeout before backoff: srtt + max(4 * rttvar, granularity) + max_ack_delay."""
        v = 4.0 * self.rttvar
        if v < self.granularity:
            v = self.granularity
        return self.smoothed_rtt + v + max_ack_delay


class AckOutcome:
    """What an acknowledgement or a loss timer changed.

    ``acked``: packets newly acknowledged, ascending packet numbers; ``lost``: packets
    declared lost, ascending; ``rtt_sample``: the RTT sample taken (seconds), if any;
    ``persistent_congestion``: the losses established persistent congestion.
    """

    __slots__ = ("acked", "lost", "persistent_congestion", "rtt_sample")

    def __init__(
        self,
        acked: list[SentPacket],
        lost: list[SentPacket],
        rtt_sample: float | None,
        persistent_congestion: bool = False,
    ) -> None:
        self.acked = acked
        self.lost = lost
        self.rtt_sample = rtt_sample
        self.persistent_congestion = persistent_congestion

    def __repr__(self) -> str:
        return (
            f"AckOutcome(acked={[p.pn for p in self.acked]}, lost={[p.pn for p in self.lost]}, "
            f"rtt_sample={self.rtt_sample}, persistent_congestion={self.persistent_congestion})"
        )


class LossRecovery:
    """Loss detection and probe timeouts for one packet-number space (RFC 9002 section 6, A).

    Drives the congestion controller ``cc``: packets sent, acknowledged and lost that count
    toward bytes in flight are reported to it. Times are monotonic seconds passed in; the
    ``time_sent`` of successive packets must not go back.

    Counters (plain int attributes, see :meth:`stats`): ``packets_sent``, ``packets_acked``,
    ``packets_lost``, ``lost_by_packet_threshold``, ``lost_by_time_threshold``,
    ``loss_timer_expiries``, ``probe_timeouts``, ``persistent_congestion_events``,
    ``untracked_packets``, ``pmtu_probes_lost`` (path MTU probes declared lost:
    taken out of flight without a congestion event, and never part of persistent
    congestion).
    """

    def __init__(
        self,
        cc: CongestionController,
        *,
        max_ack_delay: float = 0.025,
        packet_threshold: int = 3,
        time_threshold: float = 9 / 8,
        granularity: float = 0.001,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        probe_headroom: int = 64,
        initial_rtt: float = DEFAULT_INITIAL_RTT_S,
    ) -> None:
        if max_ack_delay < 0:
            raise ValueError(f"max_ack_delay must not be negative, got {max_ack_delay}")
        if packet_threshold < 1:
            raise ValueError(f"packet_threshold must be at least 1, got {packet_threshold}")
        if not time_threshold >= 1.0:
            raise ValueError(f"time_threshold must be at least 1, got {time_threshold}")
        if max_tracked < 2:
            raise ValueError(f"max_tracked must be at least 2, got {max_tracked}")
        if probe_headroom < 2:
            raise ValueError(f"probe_headroom must be at least 2, got {probe_headroom}")
        self.cc = cc
        self.rtt = RttEstimator(initial_rtt, granularity)
        self.max_ack_delay = max_ack_delay
        self.packet_threshold = packet_threshold
        self.time_threshold = time_threshold
        self.granularity = granularity
        self.max_tracked = max_tracked
        self.probe_headroom = probe_headroom

        self._sent: dict[int, SentPacket] = {}
        self._order: deque[int] = deque()  # tracked pns in send order, removed ones lazily
        self.bytes_in_flight = 0
        self._ack_eliciting_in_flight = 0
        self._time_of_last_ack_eliciting = 0.0
        self._last_time_sent = float("-inf")
        self._largest_sent = -1
        self.largest_acked: int | None = None
        self._loss_time: float | None = None
        self._first_rtt_sample_time: float | None = None
        self.pto_count = 0

        self.packets_sent = 0
        self.packets_acked = 0
        self.packets_lost = 0
        self.lost_by_packet_threshold = 0
        self.lost_by_time_threshold = 0
        self.loss_timer_expiries = 0
        self.probe_timeouts = 0
        self.persistent_congestion_events = 0
        self.untracked_packets = 0
        self.pmtu_probes_lost = 0

    # -- queries ---------------------------------------------------------------------------

    def can_track(self) -> bool:
        """True while a new ack-eliciting packet may be sent (fewer than ``max_tracked``)."""
        return len(self._sent) < self.max_tracked

    @property
    def tracked(self) -> int:
        """Packets sent and neither acknowledged nor declared lost."""
        return len(self._sent)

    @property
    def ack_eliciting_in_flight(self) -> int:
        """Ack-eliciting in-flight packets not yet acknowledged or lost."""
        return self._ack_eliciting_in_flight

    @property
    def loss_time(self) -> float | None:
        """When the earliest pending packet crosses the time threshold (the loss timer)."""
        return self._loss_time

    def outstanding(self) -> list[SentPacket]:
        """The tracked packets in send order (a copy; for tests and diagnostics)."""
        sent = self._sent
        return [sent[pn] for pn in self._order if pn in sent]

    def deadline(self) -> float | None:
        """When :meth:`on_timeout` is due: the loss time, else the PTO, else ``None``."""
        if self._loss_time is not None:
            return self._loss_time
        if self._ack_eliciting_in_flight == 0:
            return None
        shift = self.pto_count
        if shift > MAX_PTO_BACKOFF_EXPONENT:
            shift = MAX_PTO_BACKOFF_EXPONENT
        return self._time_of_last_ack_eliciting + self.rtt.pto(self.max_ack_delay) * (1 << shift)

    def persistent_congestion_duration(self) -> float:
        """3 * (smoothed_rtt + max(4 * rttvar, granularity) + max_ack_delay) (section 7.6.1)."""
        return PERSISTENT_CONGESTION_THRESHOLD * self.rtt.pto(self.max_ack_delay)

    def stats(self) -> dict[str, int]:
        """The counters, by name (``recovery.*``)."""
        return {
            "recovery.packets_sent": self.packets_sent,
            "recovery.packets_acked": self.packets_acked,
            "recovery.packets_lost": self.packets_lost,
            "recovery.lost_by_packet_threshold": self.lost_by_packet_threshold,
            "recovery.lost_by_time_threshold": self.lost_by_time_threshold,
            "recovery.loss_timer_expiries": self.loss_timer_expiries,
            "recovery.probe_timeouts": self.probe_timeouts,
            "recovery.persistent_congestion_events": self.persistent_congestion_events,
            "recovery.untracked_packets": self.untracked_packets,
            "recovery.pmtu_probes_lost": self.pmtu_probes_lost,
        }

    # -- events ----------------------------------------------------------------------------

    def on_packet_sent(self, p: SentPacket) -> None:
        """Track a packet just sent (appendix A.5).

        Raises ``ValueError`` when its packet number does not grow, its send time goes back,
        or the tracking bound plus the probe headroom is exceeded.
        """
        pn = p.pn
        if pn <= self._largest_sent:
            raise ValueError(
                f"packet number {pn} not above the last one sent ({self._largest_sent})"
            )
        t = p.time_sent
        if t < self._last_time_sent:
            raise ValueError(
                f"packet {pn} sent at {t}, before the previous one ({self._last_time_sent})"
            )
        self._largest_sent = pn
        self._last_time_sent = t
        sent = self._sent
        if len(sent) >= self.max_tracked:
            if not p.ack_eliciting:
                self.untracked_packets += 1
                return
            if len(sent) >= self.max_tracked + self.probe_headroom:
                raise ValueError(
                    f"{len(sent)} packets tracked: over max_tracked={self.max_tracked} plus "
                    f"probe_headroom={self.probe_headroom} (the connection must check can_track())"
                )
        sent[pn] = p
        self._order.append(pn)
        self.packets_sent += 1
        if p.in_flight:
            self.bytes_in_flight += p.size
            if p.ack_eliciting:
                self._ack_eliciting_in_flight += 1
                self._time_of_last_ack_eliciting = t
            self.cc.on_packet_sent(p.size, t)

    def on_ack_received(
        self, ranges: Sequence[tuple[int, int]], ack_delay: float, now: float
    ) -> AckOutcome:
        """Process an ACK frame's ranges (inclusive ``(low, high)``, descending) (appendix A.7).

        ``ack_delay`` is the peer's reported delay in seconds. Raises
        :class:`~foundation_p2p.transport.errors.TransportError` (``FRAME_ENCODING_ERROR``)
        for ranges that are empty, overlapping or not descending, and (``PROTOCOL_VIOLATION``)
        for an acknowledgement of a packet never sent.
        """
        if not ranges:
            raise TransportError(ErrorCode.FRAME_ENCODING_ERROR, "ACK frame without ranges")
        largest = ranges[0][1]
        if largest > self._largest_sent:
            raise TransportError(
                ErrorCode.PROTOCOL_VIOLATION, f"ACK of packet {largest}, which was never sent"
            )
        sent = self._sent
        order = self._order
        # The oldest tracked packet: ranges wholly below it acknowledge nothing new and are
        # neither walked nor checked (peers repeat old ranges in every ACK frame).
        floor = order[0] if order else largest + 1
        todo: list[tuple[int, int]] = []
        prev_low = largest + 1
        for r in ranges:
            lo, hi = r
            if lo > hi or lo < 0:
                raise TransportError(ErrorCode.FRAME_ENCODING_ERROR, f"bad ACK range {lo}..{hi}")
            if hi >= prev_low:
                raise TransportError(
                    ErrorCode.FRAME_ENCODING_ERROR, "ACK ranges overlap or are not descending"
                )
            prev_low = lo
            if hi < floor:
                break
            todo.append(r)
        if self.largest_acked is None or largest > self.largest_acked:
            self.largest_acked = largest

        acked: list[SentPacket] = []
        pop = sent.pop
        append = acked.append
        for lo, hi in reversed(todo):
            if lo < floor:
                lo = floor
            if hi - lo < len(sent):
                for pn in range(lo, hi + 1):
                    p = pop(pn, None)
                    if p is not None:
                        append(p)
            else:
                # A range wider than what is tracked (packet numbers were skipped): walk
                # the tracked packets instead, so the cost stays O(tracked).
                for pn in [pn for pn in order if lo <= pn <= hi]:
                    p = pop(pn, None)
                    if p is not None:
                        append(p)
        if not acked:
            return AckOutcome(acked, [], None)

        bif = self.bytes_in_flight
        ae_in_flight = 0
        n_in_flight = 0
        for p in acked:
            if p.in_flight:
                n_in_flight += 1
                bif -= p.size
                if p.ack_eliciting:
                    ae_in_flight += 1
        self.bytes_in_flight = bif
        self._ack_eliciting_in_flight -= ae_in_flight
        self.packets_acked += len(acked)

        rtt_sample: float | None = None
        newest = acked[-1]
        if newest.pn == largest and (ae_in_flight or any(p.ack_eliciting for p in acked)):
            rtt_sample = now - newest.time_sent
            self.rtt.update(rtt_sample, ack_delay, self.max_ack_delay)
            if self._first_rtt_sample_time is None:
                self._first_rtt_sample_time = now

        while order and order[0] not in sent:
            order.popleft()
        lost, persistent = self._detect_lost(now)
        if lost:
            self._report_lost(lost, now, persistent)
        if n_in_flight:
            in_flight_acked = (
                acked if n_in_flight == len(acked) else [p for p in acked if p.in_flight]
            )
            self.cc.on_packets_acked(in_flight_acked, now, self.rtt)
        self.pto_count = 0
        return AckOutcome(acked, lost, rtt_sample, persistent)

    def on_timeout(self, now: float) -> AckOutcome | int:
        """Handle the loss-detection timer (appendix A.9).

        Returns the packets the loss timer declares lost, or the number of probe packets
        to send now on a probe timeout (2 when two or more ack-eliciting packets are in
        flight, else 1; each is an ack-eliciting packet, new data or a retransmission of
        the oldest outstanding data, a PING if there is nothing, sent even when the
        congestion window is full). Returns 0 when nothing is due at ``now``.
        """
        if self._loss_time is not None:
            if now < self._loss_time:
                return 0
            self.loss_timer_expiries += 1
            lost, persistent = self._detect_lost(now)
            if lost:
                self._report_lost(lost, now, persistent)
            return AckOutcome([], lost, None, persistent)
        due = self.deadline()
        if due is None or now < due:
            return 0
        self.pto_count += 1
        self.probe_timeouts += 1
        return 2 if self._ack_eliciting_in_flight >= 2 else 1

    def on_close(self) -> None:
        """Forget every tracked packet and timer (the connection is closing)."""
        self._sent.clear()
        self._order.clear()
        self.bytes_in_flight = 0
        self._ack_eliciting_in_flight = 0
        self._loss_time = None
        self.pto_count = 0

    # -- internals -------------------------------------------------------------------------

    def _detect_lost(self, now: float) -> tuple[list[SentPacket], bool]:
        """Remove and return the packets lost by now, and whether that is persistent congestion.

        Appendix A.10. Walks the tracked packets in send order and stops at the first one
        that is not lost: a later packet was sent later and has a higher number, so it
        cannot be lost either. Also re-arms the loss timer.
        """
        self._loss_time = None
        largest_acked = self.largest_acked
        order = self._order
        if largest_acked is None or not order or order[0] > largest_acked:
            return [], False
        rtt = self.rtt
        loss_delay = rtt.latest_rtt if rtt.latest_rtt > rtt.smoothed_rtt else rtt.smoothed_rtt
        loss_delay *= self.time_threshold
        if loss_delay < self.granularity:
            loss_delay = self.granularity
        # A packet is lost by time when time_sent + loss_delay <= now: the same sum the loss
        # timer is armed with, so the timer firing at exactly that sum always declares the
        # packet lost (``time_sent > now - loss_delay`` can round the other way and re-arm
        # the timer at the same instant, forever).
        threshold_pn = largest_acked - self.packet_threshold
        first_sample = self._first_rtt_sample_time
        pc_duration = self.persistent_congestion_duration() if first_sample is not None else 0.0
        run_start: float | None = None  # send time of the first loss in the current run
        persistent = False
        sent = self._sent
        lost: list[SentPacket] = []
        by_packets = 0
        for pn in order:
            if pn > largest_acked:
                break
            p = sent.get(pn)
            if p is None:
                run_start = None  # acknowledged: persistent congestion needs no ack between
                continue
            if pn <= threshold_pn:
                by_packets += 1
            else:
                due = p.time_sent + loss_delay
                if due > now:
                    self._loss_time = due
                    break
            del sent[pn]
            lost.append(p)
            if (
                first_sample is not None
                and p.ack_eliciting
                and p.time_sent > first_sample
                and not p.pmtu_probe
            ):
                if run_start is None:
                    run_start = p.time_sent
                elif p.time_sent - run_start > pc_duration:
                    persistent = True
        if lost:
            while order and order[0] not in sent:
                order.popleft()
            self.lost_by_packet_threshold += by_packets
            self.lost_by_time_threshold += len(lost) - by_packets
        return lost, persistent

    def _report_lost(self, lost: list[SentPacket], now: float, persistent: bool) -> None:
        """Take lost packets out of flight and tell the congestion controller.

        Path MTU probes are counted apart (``pmtu_probes_lost``), not in
        ``packets_lost``: that one feeds the node's loss-rate health signal, and a probe
        lost for its size says nothing about the path's loss rate."""
        probes = 0
        in_flight: list[SentPacket] = []
        bif = self.bytes_in_flight
        ae = 0
        cc = self.cc
        for p in lost:
            if p.in_flight:
                bif -= p.size
                if p.ack_eliciting:
                    ae += 1
                if p.pmtu_probe:
                    # a probe too large for the path is not congestion (RFC 9000 section
                    # 14.4): it only leaves the controller's bytes in flight
                    probes += 1
                    cc.on_discarded(p.size)
                else:
                    in_flight.append(p)
        self.pmtu_probes_lost += probes
        self.packets_lost += len(lost) - probes
        self.bytes_in_flight = bif
        self._ack_eliciting_in_flight -= ae
        if persistent:
            self.persistent_congestion_events += 1
            self.rtt.min_rtt = self.rtt.latest_rtt
            log.debug("persistent congestion: %d packets lost", len(lost))
        if in_flight:
            self.cc.on_packets_lost(in_flight, now, persistent)
