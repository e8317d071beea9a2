"""RFC 9002 sections 5-6 and 7.6, sentence by sentence, against ``transport.recovery``.

Each test quotes the rule it checks (raft_paper_test style). Section numbers are RFC 9002's.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.transport.congestion import NewReno
from foundation_p2p.transport.errors import ErrorCode, TransportError
from foundation_p2p.transport.recovery import (
    AckOutcome,
    LossRecovery,
    RttEstimator,
    SentPacket,
)

MDS = 1200
MAD = 0.025  # max_ack_delay


class RecordingController:
    """A congestion controller that records what recovery tells it (and never blocks)."""

    def __init__(self) -> None:
        self.congestion_window = 1 << 30
        self.sent: list[int] = []
        self.acked: list[list[int]] = []
        self.lost: list[tuple[list[int], bool]] = []

    def on_packet_sent(self, size: int, now: float) -> None:
        self.sent.append(size)

    def on_packets_acked(self, acked: list[SentPacket], now: float, rtt: RttEstimator) -> None:
        self.acked.append([p.pn for p in acked])

    def on_packets_lost(self, lost: list[SentPacket], now: float, persistent: bool) -> None:
        self.lost.append(([p.pn for p in lost], persistent))

    def can_send(self, bytes_in_flight: int, size: int) -> bool:
        return True


def make(**kw: object) -> tuple[LossRecovery, RecordingController]:
    cc = RecordingController()
    return LossRecovery(cc, **kw), cc  # type: ignore[arg-type]


def send(r: LossRecovery, pn: int, t: float, *, size: int = MDS, ae: bool = True) -> SentPacket:
    p = SentPacket(pn, t, size, ack_eliciting=ae, in_flight=ae, payload=("pkt", pn))
    r.on_packet_sent(p)
    return p


def ack(r: LossRecovery, *pns: int, now: float, delay: float = 0.0) -> AckOutcome:
    """Acknowledge exactly ``pns``, built into descending inclusive ranges."""
    ranges: list[tuple[int, int]] = []
    for pn in sorted(set(pns), reverse=True):
        if ranges and ranges[-1][0] == pn + 1:
            ranges[-1] = (pn, ranges[-1][1])
        else:
            ranges.append((pn, pn))
    return r.on_ack_received(ranges, delay, now)


def pns(packets: list[SentPacket]) -> list[int]:
    return [p.pn for p in packets]


# -- 5. Estimating the round-trip time -----------------------------------------------------


def test_before_any_sample_the_estimator_uses_the_initial_rtt() -> None:
    """5.3: "Before any RTT samples are available for a new path or when the estimator is
    reset, the estimator is initialized using the initial RTT"; A.4: smoothed_rtt =
    kInitialRtt, rttvar = kInitialRtt / 2."""
    rtt = RttEstimator(initial_rtt=0.1)
    assert rtt.smoothed_rtt == 0.1
    assert rtt.rttvar == 0.05
    assert not rtt.has_sample


def test_first_sample_sets_smoothed_rtt_rttvar_and_min_rtt() -> None:
    """5.3: "On the first RTT sample after initialization, smoothed_rtt and rttvar are set
    as follows: smoothed_rtt = latest_rtt; rttvar = latest_rtt / 2". 5.2: "min_rtt MUST be
    set to the latest_rtt on the first RTT sample." The ack delay plays no part."""
    rtt = RttEstimator(initial_rtt=0.1)
    rtt.update(0.04, ack_delay=0.02, max_ack_delay=MAD)
    assert rtt.smoothed_rtt == 0.04
    assert rtt.rttvar == 0.02
    assert rtt.min_rtt == 0.04
    assert rtt.latest_rtt == 0.04


def test_later_samples_follow_the_ewma() -> None:
    """5.3 and A.7: rttvar = 3/4 * rttvar + 1/4 * abs(smoothed_rtt - adjusted_rtt);
    smoothed_rtt = 7/8 * smoothed_rtt + 1/8 * adjusted_rtt (appendix order: rttvar from the
    previous smoothed_rtt, as in RFC 6298)."""
    rtt = RttEstimator()
    rtt.update(0.05, 0.0, MAD)
    rtt.update(0.1, 0.0, MAD)
    assert rtt.rttvar == pytest.approx(0.75 * 0.025 + 0.25 * 0.05)
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.05 + 0.125 * 0.1)
    rtt.update(0.03, 0.0, MAD)
    assert rtt.min_rtt == 0.03


def test_ack_delay_is_subtracted_when_the_result_stays_at_or_above_min_rtt() -> None:
    """5.3: "if (latest_rtt >= min_rtt + ack_delay): adjusted_rtt = latest_rtt - ack_delay"."""
    rtt = RttEstimator()
    rtt.update(0.05, 0.0, MAD)  # min_rtt = 0.05
    rtt.update(0.08, 0.02, MAD)  # adjusted 0.06
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.05 + 0.125 * 0.06)


def test_ack_delay_is_not_subtracted_below_min_rtt() -> None:
    """5.3: an endpoint "MUST NOT subtract the acknowledgment delay from the RTT sample if
    the resulting value is smaller than the min_rtt"."""
    rtt = RttEstimator()
    rtt.update(0.05, 0.0, MAD)
    rtt.update(0.06, 0.02, MAD)  # 0.04 would be below min_rtt: the sample is used as is
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.05 + 0.125 * 0.06)


def test_ack_delay_is_capped_by_max_ack_delay() -> None:
    """5.3: an endpoint "MUST use the lesser of the acknowledgment delay and the peer's
    max_ack_delay after the handshake is confirmed"."""
    rtt = RttEstimator()
    rtt.update(0.05, 0.0, MAD)
    rtt.update(0.2, 0.1, MAD)  # only 0.025 of the reported 0.1 is subtracted
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.05 + 0.125 * 0.175)


def test_min_rtt_ignores_ack_delay() -> None:
    """5.2: "An endpoint uses only locally observed times in computing the min_rtt and does
    not adjust for acknowledgment delays reported by the peer." """
    rtt = RttEstimator()
    rtt.update(0.05, 0.0, MAD)
    rtt.update(0.04, 0.01, MAD)
    assert rtt.min_rtt == 0.04


def test_rtt_sample_is_the_time_since_the_largest_acknowledged_was_sent() -> None:
    """5.1: "latest_rtt = ack_time - send_time_of_largest_acked"."""
    r, _ = make()
    send(r, 0, 1.0)
    send(r, 1, 1.01)
    out = ack(r, 0, 1, now=1.06)
    assert out.rtt_sample == pytest.approx(0.05)
    assert r.rtt.latest_rtt == pytest.approx(0.05)


def test_no_rtt_sample_unless_the_largest_acknowledged_is_newly_acknowledged() -> None:
    """5.1: "To avoid generating multiple RTT samples for a single packet, an ACK frame
    SHOULD NOT be used to update RTT estimates if it does not newly acknowledge the largest
    acknowledged packet." """
    r, _ = make()
    send(r, 0, 1.0)
    send(r, 1, 1.0)
    assert ack(r, 1, now=1.05).rtt_sample is not None
    late = r.on_ack_received([(1, 1), (0, 0)], 0.0, 1.052)  # newly acks 0 only
    assert pns(late.acked) == [0]
    assert late.rtt_sample is None
    assert r.rtt.latest_rtt == pytest.approx(0.05)


def test_no_rtt_sample_when_only_non_ack_eliciting_packets_are_newly_acknowledged() -> None:
    """5.1: "An RTT sample MUST NOT be generated on receiving an ACK frame that does not
    newly acknowledge at least one ack-eliciting packet." """
    r, _ = make()
    send(r, 0, 1.0, ae=False)
    out = ack(r, 0, now=1.3, delay=0.2)
    assert pns(out.acked) == [0]
    assert out.rtt_sample is None
    assert not r.rtt.has_sample


# -- 6.1 Acknowledgment-based detection ------------------------------------------------------


def test_packet_threshold_is_three() -> None:
    """6.1.1: "The RECOMMENDED initial value for the packet reordering threshold
    (kPacketThreshold) is 3"; a packet is lost when a packet at least that many numbers
    later is acknowledged."""
    r, cc = make()
    for pn in range(5):
        send(r, pn, 1.0 + pn * 0.001)
    out = ack(r, 2, now=1.02)
    assert out.lost == []  # 2 is only two above 0
    out = ack(r, 3, now=1.021)
    assert pns(out.lost) == [0]
    assert out.lost[0].payload == ("pkt", 0)
    out = ack(r, 4, now=1.022)
    assert pns(out.lost) == [1]
    assert r.lost_by_packet_threshold == 2
    assert cc.lost == [([0], False), ([1], False)]


def test_time_threshold_is_nine_eighths_of_the_larger_of_smoothed_and_latest_rtt() -> None:
    """6.1.2: the time threshold is "max(kTimeThreshold * max(smoothed_rtt, latest_rtt),
    kGranularity)", and "The RECOMMENDED time threshold (kTimeThreshold), expressed as an
    RTT multiplier, is 9/8." A packet sent longer ago than that, before an acknowledged one,
    is lost."""
    r, _ = make()
    send(r, 0, 0.0)
    ack(r, 0, now=0.1)  # srtt = latest = 0.1: loss delay 0.1125
    send(r, 1, 1.0)
    send(r, 2, 1.05)
    out = ack(r, 2, now=1.1)  # latest_rtt 0.05, srtt 0.09375: delay = 9/8 * 0.09375
    assert out.lost == []
    delay = 9 / 8 * r.rtt.smoothed_rtt
    assert r.loss_time == pytest.approx(1.0 + delay)
    assert r.deadline() == pytest.approx(1.0 + delay)
    assert r.on_timeout(1.0 + delay - 1e-6) == 0
    fired = r.on_timeout(1.0 + delay)
    assert isinstance(fired, AckOutcome)
    assert pns(fired.lost) == [1]
    assert r.lost_by_time_threshold == 1
    assert r.deadline() is None


def test_time_threshold_uses_latest_rtt_when_it_is_larger() -> None:
    """6.1.2: "max(smoothed_rtt, latest_rtt)": a latest sample above smoothed_rtt widens the
    window before a packet is declared lost."""
    r, _ = make()
    send(r, 0, 0.0)
    ack(r, 0, now=0.1)
    send(r, 1, 1.0)
    send(r, 2, 1.01)
    ack(r, 2, now=1.31)  # latest 0.3 > smoothed
    assert r.rtt.latest_rtt > r.rtt.smoothed_rtt
    assert r.loss_time == pytest.approx(1.0 + 9 / 8 * 0.3)


def test_time_threshold_is_at_least_the_granularity() -> None:
    """6.1.2: "max(..., kGranularity)": with a tiny RTT the loss delay is 1 ms."""
    r, _ = make()
    send(r, 0, 0.0)
    ack(r, 0, now=0.0001)
    send(r, 1, 1.0)
    send(r, 2, 1.0)
    ack(r, 2, now=1.0001)
    assert r.loss_time == pytest.approx(1.001)


def test_loss_timer_is_armed_for_the_earliest_pending_packet() -> None:
    """6.1.2: "If packets sent prior to the largest acknowledged packet cannot yet be
    declared lost, then a timer SHOULD be set for the remaining time." The timer is the
    earliest of their loss times (A.10: loss_time = min over the pending packets)."""
    r, _ = make()
    send(r, 0, 0.0)
    ack(r, 0, now=0.1)
    send(r, 1, 1.0)
    send(r, 2, 1.02)
    send(r, 3, 1.04)
    ack(r, 3, now=1.1)
    delay = 9 / 8 * max(r.rtt.smoothed_rtt, r.rtt.latest_rtt)
    assert r.deadline() == pytest.approx(1.0 + delay)
    out = r.on_timeout(1.0 + delay)
    assert isinstance(out, AckOutcome)
    assert pns(out.lost) == [1]
    assert r.deadline() == pytest.approx(1.02 + delay)  # re-armed for the next one
    out = r.on_timeout(1.02 + delay)
    assert isinstance(out, AckOutcome)
    assert pns(out.lost) == [2]


def test_an_ack_that_acknowledges_nothing_new_changes_nothing() -> None:
    """A.7: "if (newly_acked_packets.empty()): return" — no loss detection, no RTT sample."""
    r, _ = make()
    for pn in range(5):
        send(r, pn, 0.0)
    ack(r, 4, now=0.1)
    lost_before = r.packets_lost
    out = ack(r, 4, now=5.0)
    assert out.acked == [] and out.lost == [] and out.rtt_sample is None
    assert r.packets_lost == lost_before


# -- 6.2 Probe timeout ----------------------------------------------------------------------


def test_pto_is_smoothed_rtt_plus_four_rttvar_plus_max_ack_delay() -> None:
    """6.2.1: "PTO = smoothed_rtt + max(4*rttvar, kGranularity) + max_ack_delay"; the timer
    runs from the last ack-eliciting packet sent."""
    r, _ = make()
    send(r, 0, 0.0)
    ack(r, 0, now=0.05)
    send(r, 1, 1.0)
    send(r, 2, 1.2)
    assert r.deadline() == pytest.approx(1.2 + 0.05 + 4 * 0.025 + MAD)


def test_pto_variance_term_is_at_least_the_granularity() -> None:
    """6.2.1: "The PTO period MUST be at least kGranularity to avoid the timer expiring
    immediately." With rttvar ~ 0 the variance term is kGranularity."""
    rtt = RttEstimator()
    rtt.update(0.01, 0.0, 0.0)
    for _ in range(200):
        rtt.update(0.01, 0.0, 0.0)
    assert 4 * rtt.rttvar < 0.001
    assert rtt.pto(0.0) == pytest.approx(rtt.smoothed_rtt + 0.001)


def test_before_any_sample_the_pto_uses_the_initial_rtt() -> None:
    """6.2.2: before a sample the PTO comes from the initial RTT: 0.1 + 4 * 0.05 + mad."""
    r, _ = make()
    send(r, 0, 2.0)
    assert r.deadline() == pytest.approx(2.0 + 0.1 + 0.2 + MAD)


def test_pto_doubles_on_each_expiry_and_resets_on_an_acknowledgment() -> None:
    """6.2.1: "When a PTO timer expires, the PTO backoff MUST be increased, resulting in the
    PTO period being set to twice its current value." "The PTO backoff factor is reset when
    an acknowledgment is received"."""
    r, _ = make()
    send(r, 0, 0.0)
    ack(r, 0, now=0.05)
    pto = r.rtt.pto(MAD)
    send(r, 1, 1.0)
    assert r.deadline() == pytest.approx(1.0 + pto)
    assert r.on_timeout(1.0 + pto - 1e-6) == 0
    assert r.on_timeout(1.0 + pto) == 1
    assert r.pto_count == 1
    assert r.deadline() == pytest.approx(1.0 + 2 * pto)
    assert r.on_timeout(1.0 + 2 * pto) == 1
    assert r.pto_count == 2
    assert r.deadline() == pytest.approx(1.0 + 4 * pto)
    send(r, 2, 1.0 + 2 * pto)  # the probe restarts the timer, still backed off
    assert r.deadline() == pytest.approx(1.0 + 2 * pto + 4 * pto)
    ack(r, 2, now=1.0 + 2 * pto + 0.05)
    assert r.pto_count == 0
    assert r.probe_timeouts == 2


def test_pto_sends_one_or_two_probes() -> None:
    """6.2.4: "When a PTO timer expires, a sender MUST send at least one ack-eliciting
    packet in the packet number space as a probe. An endpoint MAY send up to two full-sized
    datagrams containing ack-eliciting packets": two when two or more are outstanding."""
    r, _ = make()
    send(r, 0, 0.0)
    assert r.on_timeout(10.0) == 1
    send(r, 1, 10.0)
    assert r.on_timeout(100.0) == 2


def test_pto_is_not_armed_without_ack_eliciting_packets_in_flight() -> None:
    """A.8: "Don't arm timer if there are no ack-eliciting packets in flight"; 6.2.1: the
    timer is scheduled "When an ack-eliciting packet is transmitted"."""
    r, _ = make()
    assert r.deadline() is None
    send(r, 0, 0.0, ae=False)
    assert r.deadline() is None
    assert r.on_timeout(100.0) == 0
    send(r, 1, 0.1)
    assert r.deadline() is not None
    ack(r, 1, now=0.2)
    assert r.deadline() is None
    assert r.pto_count == 0


# -- 7.6 Persistent congestion --------------------------------------------------------------


def _sampled(**kw: object) -> tuple[LossRecovery, RecordingController]:
    """A recovery with one RTT sample of 50 ms taken at t = 0.05."""
    r, cc = make(**kw)
    send(r, 0, 0.0)
    ack(r, 0, now=0.05)
    return r, cc


def test_persistent_congestion_when_two_losses_span_more_than_the_duration() -> None:
    """7.6.1: the duration is "(smoothed_rtt + max(4*rttvar, kGranularity) + max_ack_delay)
    * kPersistentCongestionThreshold" (3). 7.6.2: "A sender establishes persistent
    congestion after the receipt of an acknowledgment if two packets that are ack-eliciting
    are declared lost, and: ... none of the packets sent between the send times of these
    two packets are acknowledged; the duration between the send times of these two packets
    exceeds the persistent congestion duration ...; and a prior RTT sample existed when
    these two packets were sent." """
    r, cc = _sampled()
    duration = r.persistent_congestion_duration()
    assert duration == pytest.approx(3 * (0.05 + 0.1 + MAD))
    t = 1.0
    for pn in range(1, 6):
        send(r, pn, t)
        t += duration / 3
    send(r, 6, t)
    out = ack(r, 6, now=t + 0.05)
    assert pns(out.lost) == [1, 2, 3, 4, 5]
    assert out.persistent_congestion
    assert cc.lost == [([1, 2, 3, 4, 5], True)]
    assert r.persistent_congestion_events == 1


def test_persistent_congestion_collapses_the_window_to_the_minimum() -> None:
    """7.6.2: "When persistent congestion is declared, the sender's congestion window MUST
    be reduced to the minimum congestion window (kMinimumWindow)"."""
    cc = NewReno()
    r = LossRecovery(cc)
    send(r, 0, 0.0)
    ack(r, 0, now=0.05)
    duration = r.persistent_congestion_duration()
    for pn in range(1, 5):
        send(r, pn, 1.0 + pn * duration / 2)
    send(r, 5, 10.0, ae=False)  # an ACK-only packet: its acknowledgement grows nothing
    out = ack(r, 5, now=10.05)
    assert out.persistent_congestion
    assert cc.congestion_window == 2 * MDS
    assert cc.persistent_congestion_events == 1


def test_no_persistent_congestion_when_a_packet_between_is_acknowledged() -> None:
    """7.6.2: "none of the packets sent between the send times of these two packets are
    acknowledged". An acknowledged packet in the middle breaks the span."""
    r, cc = _sampled()
    duration = r.persistent_congestion_duration()
    times = [1.0 + i * duration / 3 for i in range(7)]
    for pn, t in zip(range(1, 8), times, strict=True):
        send(r, pn, t)
    out = ack(r, 4, 7, now=times[-1] + 0.05)  # 4 sits between 1..3 and 5..6
    assert pns(out.lost) == [1, 2, 3, 5, 6]
    assert not out.persistent_congestion
    assert cc.lost == [([1, 2, 3, 5, 6], False)]


def test_no_persistent_congestion_when_the_span_is_too_short() -> None:
    """7.6.2: "the duration between the send times of these two packets exceeds the
    persistent congestion duration"."""
    r, _ = _sampled()
    duration = r.persistent_congestion_duration()
    for pn in range(1, 5):
        send(r, pn, 1.0 + pn * duration / 4 * 0.99)
    send(r, 5, 5.0)
    out = ack(r, 5, now=5.05)
    assert pns(out.lost) == [1, 2, 3, 4]
    assert not out.persistent_congestion


def test_no_persistent_congestion_without_a_prior_rtt_sample() -> None:
    """7.6.2: "The persistent congestion period SHOULD NOT start until there is at least
    one RTT sample." Packets sent before the first sample do not count."""
    r, _ = make()
    for pn in range(5):
        send(r, pn, pn * 10.0)
    send(r, 5, 60.0)
    out = ack(r, 5, now=60.05)
    assert pns(out.lost) == [0, 1, 2, 3, 4]
    assert not out.persistent_congestion


def test_min_rtt_is_reset_to_the_newest_sample_after_persistent_congestion() -> None:
    """5.2: "Endpoints SHOULD set the min_rtt to the newest RTT sample after persistent
    congestion is established." """
    r, _ = _sampled()
    assert r.rtt.min_rtt == pytest.approx(0.05)
    duration = r.persistent_congestion_duration()
    send(r, 1, 1.0)
    send(r, 2, 1.0 + duration * 3)  # the 0.2 s sample below lengthens the duration
    for pn in (3, 4, 5):
        send(r, pn, 1.0 + duration * 3)
    out = ack(r, 5, now=1.0 + duration * 3 + 0.2)
    assert pns(out.lost) == [1, 2]
    assert out.persistent_congestion
    assert r.rtt.min_rtt == pytest.approx(0.2)


# -- bookkeeping, validation, bounds --------------------------------------------------------


def test_acknowledged_and_lost_packets_leave_bytes_in_flight() -> None:
    """A.5/A.7/A.10: bytes in flight count in-flight packets until acknowledged or lost."""
    r, cc = make()
    send(r, 0, 0.0, size=1000)
    send(r, 1, 0.0, size=500, ae=False)  # not in flight
    send(r, 2, 0.0, size=700)
    send(r, 3, 0.0, size=300)
    send(r, 4, 0.0, size=200)
    assert r.bytes_in_flight == 2200
    assert cc.sent == [1000, 700, 300, 200]
    out = ack(r, 4, now=0.1)
    assert pns(out.lost) == [0, 1]
    assert r.bytes_in_flight == 1000
    assert cc.lost == [([0], False)]  # the controller hears only of in-flight packets


def test_a_packet_declared_lost_is_not_acknowledged_again() -> None:
    """Each packet ends acknowledged or lost exactly once (a late ack of a lost one is
    ignored: its data was already handed back for retransmission)."""
    r, _ = make()
    for pn in range(4):
        send(r, pn, 0.0)
    assert pns(ack(r, 3, now=0.1).lost) == [0]
    late = ack(r, 0, 3, now=0.2)
    assert late.acked == []


def test_ack_of_a_packet_never_sent_is_a_protocol_violation() -> None:
    """RFC 9000 13.1: "An endpoint SHOULD treat receipt of an acknowledgment for a packet it
    did not send as a connection error of type PROTOCOL_VIOLATION"."""
    r, _ = make()
    send(r, 0, 0.0)
    with pytest.raises(TransportError) as e:
        ack(r, 1, now=0.1)
    assert e.value.code == ErrorCode.PROTOCOL_VIOLATION


@pytest.mark.parametrize(
    "ranges",
    [[], [(3, 2)], [(0, 3), (5, 6)], [(2, 4), (4, 4)], [(-1, 2)]],
    ids=["empty", "inverted", "ascending", "overlapping", "negative"],
)
def test_malformed_ack_ranges_are_frame_encoding_errors(ranges: list[tuple[int, int]]) -> None:
    """RFC 9000 19.3.1: ranges descend and do not overlap; anything else is refused before
    any state changes."""
    r, _ = make()
    for pn in range(10):
        send(r, pn, 0.0)
    with pytest.raises(TransportError) as e:
        r.on_ack_received(ranges, 0.0, 1.0)
    assert e.value.code == ErrorCode.FRAME_ENCODING_ERROR
    assert r.tracked == 10


def test_packet_numbers_must_grow_and_send_times_must_not_go_back() -> None:
    r, _ = make()
    send(r, 5, 1.0)
    with pytest.raises(ValueError, match="packet number 5"):
        send(r, 5, 1.0)
    with pytest.raises(ValueError, match="before the previous"):
        send(r, 6, 0.5)


def test_tracking_is_bounded_with_headroom_for_probes() -> None:
    """Bound: can_track() is False at max_tracked; non-ack-eliciting packets past it go
    untracked (counted); ack-eliciting probes may exceed it by probe_headroom, no more."""
    r, _ = make(max_tracked=4, probe_headroom=2)
    for pn in range(4):
        assert r.can_track()
        send(r, pn, 0.0)
    assert not r.can_track()
    send(r, 4, 0.0, ae=False)
    assert r.untracked_packets == 1 and r.tracked == 4
    send(r, 5, 0.0)
    send(r, 6, 0.0)
    with pytest.raises(ValueError, match="can_track"):
        send(r, 7, 0.0)
    ack(r, 0, 1, 2, 3, 5, 6, now=0.1)
    assert r.tracked == 0 and r.can_track()


def test_skipped_packet_numbers_and_huge_ranges_cost_only_the_tracked_packets() -> None:
    """An ACK range far wider than what is tracked walks the tracked packets, not the range
    (a range of 10**15 numbers would never finish otherwise)."""
    r, _ = make()
    send(r, 0, 0.0)
    send(r, 10**15, 0.0)
    out = r.on_ack_received([(0, 10**15)], 0.0, 0.1)
    assert pns(out.acked) == [0, 10**15]


class CountingDict(dict[int, SentPacket]):
    """A dict that counts ``pop`` calls and fails past a budget."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget
        self.pops = 0

    def pop(self, key: int, default: object = None) -> SentPacket:
        self.pops += 1
        assert self.pops <= self.budget, "ACK processing walks more than the new packets"
        return super().pop(key, default)  # type: ignore[arg-type]


def test_repeated_cumulative_ranges_cost_o1_per_packet() -> None:
    """Peers repeat their oldest ranges in every ACK frame (the first range often runs down
    to packet 0): each packet must cost O(1) amortised, not a walk from 0 per ACK."""
    r, _ = make(max_tracked=1 << 16)
    counting = CountingDict(budget=3 * 20_000)
    r._sent = counting
    lag = 50
    for pn in range(20_000):
        send(r, pn, pn * 1e-4)
        if pn % 2 == 1 and pn >= lag:
            r.on_ack_received([(0, pn - lag)], 0.0, pn * 1e-4)
    assert r.packets_acked == 20_000 - lag
    assert counting.pops <= 2 * 20_000


def test_on_close_forgets_everything() -> None:
    r, _ = make()
    for pn in range(3):
        send(r, pn, 0.0)
    ack(r, 2, now=0.01)
    r.on_close()
    assert r.tracked == 0 and r.bytes_in_flight == 0
    assert r.deadline() is None
    assert r.outstanding() == []


def test_stats_count_what_happened() -> None:
    r, _ = make()
    for pn in range(5):
        send(r, pn, 0.0)
    ack(r, 4, now=0.1)
    r.on_timeout(10.0)
    s = r.stats()
    assert s["recovery.packets_sent"] == 5
    assert s["recovery.packets_acked"] == 1
    assert s["recovery.packets_lost"] == 4
    assert s["recovery.lost_by_packet_threshold"] == 2
    assert s["recovery.lost_by_time_threshold"] == 2


# -- property: conservation ----------------------------------------------------------------

op = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 1500), st.booleans(), st.integers(0, 3)),
    st.tuples(st.just("ack"), st.lists(st.integers(0, 60), max_size=12), st.floats(0, 0.05)),
    st.tuples(st.just("wait"), st.floats(0.0, 0.5)),
    st.tuples(st.just("timeout")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=80), st.integers(2, 40))
def test_every_packet_ends_acked_lost_or_outstanding_exactly_once(
    ops: list[tuple[object, ...]], max_tracked: int
) -> None:
    """For any interleaving of sends, ACK frames (any subset of what was sent, arbitrary
    delays), waiting and timer expiries: bytes in flight equals the sum of the in-flight
    outstanding sizes and never goes negative (in recovery and in NewReno alike), and each
    packet sent is acknowledged, lost or still outstanding, exactly once."""
    cc = NewReno()
    r = LossRecovery(cc, max_tracked=max_tracked, probe_headroom=2)
    now = 0.0
    next_pn = 0
    sent: dict[int, SentPacket] = {}
    acked: set[int] = set()
    lost: set[int] = set()

    def settle(out: AckOutcome) -> None:
        for p in out.acked:
            assert p.pn not in acked and p.pn not in lost
            acked.add(p.pn)
        for p in out.lost:
            assert p.pn not in acked and p.pn not in lost
            lost.add(p.pn)

    for o in ops:
        kind = o[0]
        if kind == "send":
            _, size, ae, skip = o
            assert isinstance(size, int) and isinstance(ae, bool) and isinstance(skip, int)
            if ae and not r.can_track():
                continue
            next_pn += skip
            p = SentPacket(next_pn, now, size, ack_eliciting=ae, in_flight=ae)
            r.on_packet_sent(p)
            if r.tracked and r.outstanding()[-1] is p:
                sent[next_pn] = p
            next_pn += 1
        elif kind == "ack":
            _, chosen, delay = o
            assert isinstance(chosen, list) and isinstance(delay, float)
            numbers = sorted({n for n in chosen if n < next_pn}, reverse=True)
            if not numbers:
                continue
            ranges: list[tuple[int, int]] = []
            for n in numbers:
                if ranges and ranges[-1][0] == n + 1:
                    ranges[-1] = (n, ranges[-1][1])
                else:
                    ranges.append((n, n))
            now += 0.001
            settle(r.on_ack_received(ranges, delay, now))
        elif kind == "wait":
            w = o[1]
            assert isinstance(w, float)
            now += w
        else:
            d = r.deadline()
            if d is not None:
                now = max(now, d)
                out = r.on_timeout(now)
                if isinstance(out, AckOutcome):
                    settle(out)
                else:
                    assert out in (1, 2)
        outstanding = r.outstanding()
        in_flight = sum(p.size for p in outstanding if p.in_flight)
        assert r.bytes_in_flight == in_flight >= 0
        assert cc.bytes_in_flight == in_flight
        assert r.ack_eliciting_in_flight == sum(1 for p in outstanding if p.ack_eliciting)
        assert cc.minimum_window <= cc.congestion_window <= cc.max_window
        assert len(outstanding) <= max_tracked + 2
        open_pns = {p.pn for p in outstanding}
        assert not (open_pns & acked) and not (open_pns & lost) and not (acked & lost)
        assert open_pns | acked | lost == set(sent)


def test_the_loss_timer_firing_at_its_deadline_always_declares_the_loss() -> None:
    """A.10: the loss timer is armed at time_sent + loss_delay; firing exactly then must
    declare the packet lost. Comparing time_sent with ``now - loss_delay`` instead rounds
    the other way for some floats and re-arms the timer at the same instant forever; this
    test walks send times until it has met such floats, and checks every one."""
    rng = random.Random(7)
    rounding_cases = 0
    for _ in range(400):
        t1 = rng.uniform(1.0, 1000.0)
        rtt = rng.uniform(0.01, 0.8)
        r, _ = make()
        send(r, 0, 0.0)
        ack(r, 0, now=rtt)
        send(r, 1, t1)
        send(r, 2, t1 + 0.001)
        ack(r, 2, now=t1 + 0.001 + rtt)
        due = r.loss_time
        assert due is not None and r.deadline() == due
        delay = max(r.rtt.latest_rtt, r.rtt.smoothed_rtt) * r.time_threshold
        assert due == t1 + delay
        if due - delay < t1:  # now - loss_delay rounds below the send time
            rounding_cases += 1
        fired = r.on_timeout(due)
        assert isinstance(fired, AckOutcome) and pns(fired.lost) == [1], t1
    assert rounding_cases > 0
