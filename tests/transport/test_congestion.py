"""RFC 9002 section 7 and appendix B, sentence by sentence, against ``transport.congestion``.

Each test quotes the rule it checks (raft_paper_test style).
"""

from __future__ import annotations

import itertools

import pytest

from foundation_p2p.transport.congestion import CongestionController, NewReno, Pacer
from foundation_p2p.transport.recovery import AckOutcome, LossRecovery, RttEstimator, SentPacket

MDS = 1200


def packets(first_pn: int, n: int, t: float, size: int = MDS) -> list[SentPacket]:
    return [SentPacket(first_pn + i, t, size) for i in range(n)]


def sent(cc: NewReno, ps: list[SentPacket]) -> list[SentPacket]:
    for p in ps:
        cc.on_packet_sent(p.size, p.time_sent)
    return ps


def test_newreno_satisfies_the_controller_protocol() -> None:
    cc: CongestionController = NewReno()
    assert cc.congestion_window > 0


# -- 7.2 Initial and minimum congestion window ------------------------------------------------


@pytest.mark.parametrize(
    ("mds", "initial"), [(1200, 12000), (1472, 14720), (1500, 14720), (9000, 18000)]
)
def test_initial_window_is_ten_datagrams_limited_to_14720_or_two_datagrams(
    mds: int, initial: int
) -> None:
    """7.2: "Endpoints SHOULD use an initial congestion window of ten times the maximum
    datagram size (max_datagram_size), while limiting the window to the larger of 14,720
    bytes or twice the maximum datagram size." """
    cc = NewReno(max_datagram_size=mds)
    assert cc.congestion_window == initial
    assert cc.in_slow_start


def test_minimum_window_is_two_datagrams() -> None:
    """7.2: "The RECOMMENDED value [of the minimum congestion window] is 2 *
    max_datagram_size." """
    assert NewReno().minimum_window == 2 * MDS
    assert NewReno(max_datagram_size=1500).minimum_window == 3000


def test_a_packet_is_sent_only_when_it_fits_in_the_window() -> None:
    """7: "An endpoint MUST NOT send a packet if it would cause bytes_in_flight (...) to be
    larger than the congestion window, unless the packet is sent on a PTO timer
    expiration"."""
    cc = NewReno()
    assert cc.can_send(12000 - MDS, MDS)
    assert not cc.can_send(12000 - MDS + 1, MDS)


# -- 7.3.1 Slow start ---------------------------------------------------------------------------


def test_slow_start_grows_by_the_bytes_acknowledged() -> None:
    """7.3.1: "While a sender is in slow start, the congestion window increases by the
    number of bytes acknowledged when each acknowledgment is processed." """
    cc = NewReno()
    rtt = RttEstimator()
    ps = sent(cc, packets(0, 10, 0.0))
    cc.on_packets_acked(ps[:2], 0.1, rtt)
    assert cc.congestion_window == 12000 + 2 * MDS
    cc.on_packets_acked(ps[2:3], 0.1, rtt)
    assert cc.congestion_window == 12000 + 3 * MDS


def test_slow_start_doubles_the_window_each_round_trip() -> None:
    """7.3.1: "This results in exponential growth of the congestion window." A sender that
    fills the window each round trip doubles it each round trip."""
    cc = NewReno()
    rtt = RttEstimator()
    pn = 0
    t = 0.0
    windows = [cc.congestion_window]
    for _ in range(5):
        n = cc.congestion_window // MDS
        ps = sent(cc, packets(pn, n, t))
        pn += n
        t += 0.1
        for i in range(0, n, 2):  # an ACK every two packets, all within the round trip
            cc.on_packets_acked(ps[i : i + 2], t, rtt)
        windows.append(cc.congestion_window)
    assert windows == [12000 * 2**k for k in range(6)]


def test_the_window_does_not_grow_when_the_sender_does_not_fill_it() -> None:
    """7.8: "When bytes in flight is smaller than the congestion window and sending is not
    pacing limited, the congestion window is underutilized. (...) the congestion window
    SHOULD NOT be increased in either slow start or congestion avoidance." """
    cc = NewReno()
    rtt = RttEstimator()
    t = 0.0
    for pn in range(50):  # one packet at a time, each acknowledged before the next
        (p,) = sent(cc, packets(pn, 1, t))
        t += 0.1
        cc.on_packets_acked([p], t, rtt)
    assert cc.congestion_window == 12000
    assert cc.underused_acks == 50


# -- 7.3.2 Recovery ---------------------------------------------------------------------------


def test_a_loss_halves_the_window_and_sets_ssthresh() -> None:
    """7.3.2: "On entering a recovery period, a sender MUST set the slow start threshold to
    half the value of the congestion window when loss is detected. The congestion window
    MUST be set to the reduced value of the slow start threshold before exiting the recovery
    period." """
    cc = NewReno()
    ps = sent(cc, packets(0, 10, 0.0))
    cc.on_packets_lost(ps[:1], 0.2, persistent=False)
    assert cc.ssthresh == 6000
    assert cc.congestion_window == 6000
    assert not cc.in_slow_start
    assert cc.recovery_start_time == 0.2


def test_the_window_never_drops_below_the_minimum() -> None:
    """7.2 / B.6: congestion_window = max(ssthresh, kMinimumWindow)."""
    cc = NewReno()
    for pn in range(6):
        ps = sent(cc, packets(pn, 1, float(pn)))
        cc.on_packets_lost(ps, pn + 1.0, persistent=False)
    assert cc.congestion_window == 2 * MDS


def test_one_reduction_per_recovery_period() -> None:
    """7.3.2: "The recovery period aims to limit congestion window reduction to once per
    round trip. Therefore, during a recovery period, the congestion window does not change
    in response to new losses"; B.6: a loss of a packet sent before the period began does
    not start a new one."""
    cc = NewReno()
    ps = sent(cc, packets(0, 10, 1.0))
    cc.on_packets_lost(ps[0:1], 1.2, persistent=False)
    assert cc.congestion_window == 6000
    cc.on_packets_lost(ps[1:3], 1.25, persistent=False)  # sent at 1.0, before 1.2
    assert cc.congestion_window == 6000
    assert cc.congestion_events == 1
    later = sent(cc, packets(10, 1, 1.3))  # sent after the period began
    cc.on_packets_lost(later, 1.5, persistent=False)
    assert cc.congestion_window == 3000
    assert cc.congestion_events == 2


def test_no_growth_until_a_packet_sent_in_the_recovery_period_is_acknowledged() -> None:
    """7.3.2: "A recovery period ends and the sender enters congestion avoidance when a
    packet sent during the recovery period is acknowledged." Until then acknowledgments of
    older packets do not grow the window."""
    cc = NewReno()
    rtt = RttEstimator()
    ps = sent(cc, packets(0, 10, 1.0))
    cc.on_packets_lost(ps[0:1], 1.2, persistent=False)
    cc.on_packets_acked(ps[1:9], 1.25, rtt)
    assert cc.congestion_window == 6000
    assert cc.in_recovery(1.0) and not cc.in_recovery(1.3)
    new = sent(cc, packets(10, 5, 1.3))
    cc.on_packets_acked(new, 1.4, rtt)
    assert cc.congestion_window > 6000


def test_recovery_through_loss_recovery_is_keyed_on_when_the_lost_packet_was_sent() -> None:
    """B.6 via LossRecovery: losses detected later among packets sent before the recovery
    period began do not reduce the window again."""
    cc = NewReno()
    r = LossRecovery(cc)
    for pn in range(20):
        r.on_packet_sent(SentPacket(pn, 0.0 + pn * 0.001, MDS))
    r.on_ack_received([(4, 4)], 0.0, 0.1)  # 0 and 1 lost: recovery starts at 0.1
    assert cc.congestion_window == 6000
    r.on_ack_received([(10, 10), (4, 4)], 0.0, 0.11)  # more old losses: no new reduction
    assert cc.congestion_window == 6000
    assert cc.congestion_events == 1


# -- 7.3.3 Congestion avoidance ------------------------------------------------------------------


def test_congestion_avoidance_adds_one_datagram_per_window_acknowledged() -> None:
    """7.3.3: "Slow start exits to congestion avoidance. Congestion avoidance in NewReno
    uses an additive increase multiplicative decrease (AIMD) approach that MUST limit the
    increase to the congestion window to at most one maximum datagram size for each
    congestion window that is acknowledged." """
    cc = NewReno()
    rtt = RttEstimator()
    ps = sent(cc, packets(0, 10, 0.0))
    cc.on_packets_lost(ps[:1], 0.05, persistent=False)  # cwnd = ssthresh = 6000
    t = 0.1
    pn = 10
    for rounds in range(1, 4):
        cwnd = cc.congestion_window
        n = cwnd // MDS
        batch = sent(cc, packets(pn, n, t))
        pn += n
        t += 0.1
        for p in batch:
            cc.on_packets_acked([p], t, rtt)
        assert cc.congestion_window == 6000 + rounds * MDS


# -- 7.6 Persistent congestion -------------------------------------------------------------------


def test_persistent_congestion_collapses_to_the_minimum_window_and_restarts_slow_start() -> None:
    """7.6.2: "When persistent congestion is declared, the sender's congestion window MUST
    be reduced to the minimum congestion window (kMinimumWindow)"; B.8: the recovery period
    is reset, so the next acknowledgments grow the window in slow start."""
    cc = NewReno()
    rtt = RttEstimator()
    ps = sent(cc, packets(0, 10, 0.0))
    cc.on_packets_lost(ps[:5], 2.0, persistent=True)
    assert cc.congestion_window == 2 * MDS
    assert cc.recovery_start_time is None
    assert cc.in_slow_start
    assert cc.persistent_congestion_events == 1
    fresh = sent(cc, packets(10, 2, 2.1))
    cc.on_packets_acked(fresh, 2.2, rtt)
    assert cc.congestion_window == 4 * MDS


def test_the_window_is_bounded() -> None:
    cc = NewReno(max_window=20000)
    rtt = RttEstimator()
    for k in range(5):
        ps = sent(cc, packets(k * 100, 20, float(k)))
        cc.on_packets_acked(ps, k + 0.5, rtt)
    assert cc.congestion_window == 20000
    with pytest.raises(ValueError, match="max_window"):
        NewReno(max_window=1000)
    with pytest.raises(ValueError, match="max_datagram_size"):
        NewReno(max_datagram_size=500)


# -- 7.7 Pacing -------------------------------------------------------------------------------


class FixedWindow:
    """A controller with a window set by the test."""

    def __init__(self, cwnd: int) -> None:
        self.congestion_window = cwnd

    def on_packet_sent(self, size: int, now: float) -> None:
        pass

    def on_packets_acked(self, acked: list[SentPacket], now: float, rtt: RttEstimator) -> None:
        pass

    def on_packets_lost(self, lost: list[SentPacket], now: float, persistent: bool) -> None:
        pass

    def can_send(self, bytes_in_flight: int, size: int) -> bool:
        return True


def sampled_rtt(value: float) -> RttEstimator:
    rtt = RttEstimator()
    rtt.update(value, 0.0, 0.0)
    return rtt


def paced_sends(pacer: Pacer, n: int, start: float = 0.0) -> list[float]:
    """Send ``n`` packets as early as the pacer allows; return their send times."""
    now = start
    times = []
    for _ in range(n):
        t = pacer.next_send_time(now, MDS)
        now = max(now, t)
        pacer.on_sent(now, MDS)
        times.append(now)
    return times


def test_pacing_rate_is_n_times_the_window_over_smoothed_rtt() -> None:
    """7.7: "rate = N * congestion_window / smoothed_rtt" (...) "Using a value for N that is
    small, but at least 1 (for example, 1.25) ensures that variations in RTT do not result
    in underutilization of the congestion window." """
    pacer = Pacer(FixedWindow(120000), sampled_rtt(0.1))
    assert pacer.n == 1.25
    assert pacer.rate() == pytest.approx(1.25 * 120000 / 0.1)


def test_pacing_spreads_a_window_over_a_round_trip() -> None:
    """7.7: "a sender SHOULD pace sending of all in-flight packets based on input from the
    congestion controller"; with N = 1.25 a window of 100 packets leaves in about 0.8 RTT
    after the burst allowance, not at once."""
    rtt = 0.1
    pacer = Pacer(FixedWindow(100 * MDS), sampled_rtt(rtt))
    times = paced_sends(pacer, 100)
    assert times[:10] == [0.0] * 10  # the burst allowance
    span = times[-1] - times[0]
    assert span == pytest.approx(90 * MDS / (1.25 * 100 * MDS / rtt))
    assert 0.7 * rtt < span < rtt
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times[10:])}
    assert gaps == {round(rtt / 1.25 / 100, 9)}


def test_pacing_burst_allowance_is_refilled_by_idle_time() -> None:
    """7.7: senders may send a limited burst; after idling at least a burst's worth of time
    the next ten packets leave at once again, and never more than ten."""
    pacer = Pacer(FixedWindow(12000), sampled_rtt(0.1))
    paced_sends(pacer, 20)
    later = paced_sends(pacer, 11, start=100.0)
    assert later[:10] == [100.0] * 10
    assert later[10] > 100.0


def test_pacing_before_an_rtt_sample_uses_the_initial_rtt() -> None:
    """7.7 / 5.3: before a sample, smoothed_rtt is the initial RTT (0.1 s here)."""
    pacer = Pacer(FixedWindow(12000), RttEstimator(initial_rtt=0.1))
    assert pacer.rate() == pytest.approx(1.25 * 12000 / 0.1)
    times = paced_sends(pacer, 12)
    assert times[11] - times[10] == pytest.approx(MDS / (1.25 * 12000 / 0.1))


def test_pacing_follows_the_congestion_window() -> None:
    """7.7: the rate is read from the controller at each decision: halving the window
    halves the rate."""
    w = FixedWindow(24000)
    pacer = Pacer(w, sampled_rtt(0.1))
    paced_sends(pacer, 10)
    fast = pacer.next_send_time(0.0, MDS)
    w.congestion_window = 12000
    slow = pacer.next_send_time(0.0, MDS)
    assert slow == pytest.approx(2 * fast)


def test_pacer_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="pacing gain"):
        Pacer(FixedWindow(12000), RttEstimator(), n=0)
    with pytest.raises(ValueError, match="burst_packets"):
        Pacer(FixedWindow(12000), RttEstimator(), burst_packets=0)


# -- the pieces together: a NewReno sender over a bottleneck link ----------------------------


def run_bottleneck(
    *, seconds: float, rate_bps: float, one_way_s: float, queue_packets: int
) -> dict[str, float]:
    """Drive LossRecovery + NewReno + Pacer over a drop-tail bottleneck in virtual time.

    The receiver acknowledges every second packet at once (its ACK frame lists its latest
    32 ranges); acknowledgments travel back without loss or queueing.
    """
    import heapq

    cc = NewReno()
    rec = LossRecovery(cc)
    pacer = Pacer(cc, rec.rtt)
    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def push(t: float, kind: str, data: object = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, data))

    link_free = 0.0
    tx_s = MDS / rate_bps
    next_pn = 0
    received: set[int] = set()
    runs: list[list[int]] = []
    since_ack = 0
    dropped: set[int] = set()
    declared_lost: set[int] = set()
    max_in_flight_over_cwnd = 0
    timer_gen = 0
    wake_at: float | None = None
    probes = 0

    def transmit(now: float, probe: bool) -> None:
        nonlocal next_pn, link_free, max_in_flight_over_cwnd
        pn = next_pn
        next_pn += 1
        rec.on_packet_sent(SentPacket(pn, now, MDS))
        pacer.on_sent(now, MDS)
        if not probe:
            over = rec.bytes_in_flight - cc.congestion_window
            max_in_flight_over_cwnd = max(max_in_flight_over_cwnd, over)
        backlog = max(0.0, link_free - now) / tx_s
        if backlog >= queue_packets:
            dropped.add(pn)
            return
        link_free = max(link_free, now) + tx_s
        push(link_free + one_way_s, "arrive", pn)

    def pump(now: float) -> None:
        nonlocal probes, wake_at
        while probes > 0:
            probes -= 1
            transmit(now, True)
        while rec.can_track() and cc.can_send(rec.bytes_in_flight, MDS):
            at = pacer.next_send_time(now, MDS)
            if at > now:
                if wake_at is None or wake_at <= now:
                    wake_at = at
                    push(at, "wake")
                return
            transmit(now, False)

    def arm(now: float) -> None:
        nonlocal timer_gen
        timer_gen += 1
        d = rec.deadline()
        if d is not None:
            push(max(d, now), "timer", timer_gen)

    def settle(out: AckOutcome) -> None:
        for p in out.lost:
            declared_lost.add(p.pn)

    pump(0.0)
    arm(0.0)
    while events:
        now, _, kind, data = heapq.heappop(events)
        if now > seconds:
            break
        if kind == "arrive":
            assert isinstance(data, int)
            received.add(data)
            if runs and runs[-1][1] == data - 1:
                runs[-1][1] = data
            else:
                runs.append([data, data])
                del runs[:-32]
            since_ack += 1
            if since_ack >= 2:
                since_ack = 0
                push(now + one_way_s, "ack", [(lo, hi) for lo, hi in reversed(runs)])
            continue
        if kind == "ack":
            assert isinstance(data, list)
            settle(rec.on_ack_received(data, 0.0, now))
        elif kind == "timer":
            if data != timer_gen:
                continue
            out = rec.on_timeout(now)
            if isinstance(out, AckOutcome):
                settle(out)
            else:
                probes += out
        pump(now)
        arm(now)
    return {
        "utilisation": len(received) * MDS / (seconds * rate_bps),
        "dropped": len(dropped),
        "spurious": len(declared_lost - dropped),
        "undetected": len({pn for pn in dropped if pn < next_pn - 200} - declared_lost),
        "max_over_cwnd": max_in_flight_over_cwnd,
        "congestion_events": cc.congestion_events,
        "persistent": cc.persistent_congestion_events,
        "srtt": rec.rtt.smoothed_rtt,
        "min_rtt": rec.rtt.min_rtt,
    }


def test_a_newreno_sender_fills_a_bottleneck_and_recovers_every_drop() -> None:
    """Section 7 as a whole: over a 10 Mbit/s link with a 40 ms RTT and a one-BDP drop-tail
    queue, the sender keeps the link busy (>= 85% over 20 s, slow start included), never has
    more than the window in flight outside probes, declares every dropped packet lost, and
    declares no delivered packet lost."""
    stats = run_bottleneck(seconds=20.0, rate_bps=1.25e6, one_way_s=0.02, queue_packets=42)
    assert stats["utilisation"] >= 0.85, stats
    assert stats["dropped"] > 0 and stats["congestion_events"] > 1, stats
    assert stats["undetected"] == 0, stats
    assert stats["spurious"] == 0, stats
    assert stats["max_over_cwnd"] <= 0, stats
    assert stats["persistent"] == 0, stats
    assert 0.04 <= stats["min_rtt"] < 0.045, stats
    assert 0.04 <= stats["srtt"] <= 0.04 + 42 * MDS / 1.25e6 + 0.01, stats
