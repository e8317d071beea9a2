"""Benchmark loss recovery's hot path against aioquic's, on the same packet sequence.

Measures the cost per packet of ``on_packet_sent`` plus ``on_ack_received`` (one ACK frame
every two packets) for a bulk transfer of 1200-byte datagrams, through:

- ``ours``: :class:`foundation_p2p.transport.recovery.LossRecovery` with
  :class:`~foundation_p2p.transport.congestion.NewReno`;
- ``ours_paced``: the same plus :class:`~foundation_p2p.transport.congestion.Pacer`'s
  ``next_send_time`` and ``on_sent`` for each packet (what the connection calls too);
- ``aioquic``: aioquic's ``QuicPacketRecovery`` (reno), one application-data space, the
  baseline, when ``aioquic`` is importable (else the JSON says it is missing).

The sequence: packet ``i`` is sent at ``i * 120 us`` (10 MB/s); the ACK sent with every
second packet acknowledges what arrived up to ``--inflight`` packets earlier (so that many
are in flight, RTT = inflight * 120 us). The receiver's ACK frame lists its most recent
ranges (at most 32), the first running down to the oldest packet it holds contiguously, as
real receivers do. Scenarios: no loss, and 1% of packets dropped (every 100th, never
acknowledged, found lost by the packet threshold). Packets and ACK ranges are built before
the clock starts for every implementation: only the recovery calls are timed.

Prints one JSON object as its last line: microseconds per packet for each (median of
``--repeat`` runs), the ratio ``aioquic / ours``, and the acked/lost counts of each (they
must agree on which packets were lost).

Usage: ``python bench/recovery.py [--quick] [--packets N] [--inflight W] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from foundation_p2p.transport.congestion import NewReno, Pacer
from foundation_p2p.transport.recovery import AckOutcome, LossRecovery, SentPacket

MDS = 1200
SEND_INTERVAL_S = MDS / 10e6
MAX_ACK_RANGES = 32


def build_sequence(
    n: int, inflight: int, drop_every: int | None
) -> tuple[list[float], list[list[tuple[int, int]] | None]]:
    """Send times and, per packet, the ACK frame ranges (descending) sent with it, or None."""
    times = [i * SEND_INTERVAL_S for i in range(n)]
    acks: list[list[tuple[int, int]] | None] = [None] * n
    received: list[list[int]] = []  # ascending [lo, hi] runs held by the receiver
    delivered = 0  # packets < delivered have reached the receiver
    for i in range(n):
        if i % 2 != 1:
            continue
        upto = i - inflight
        while delivered <= upto:
            pn = delivered
            delivered += 1
            if drop_every is not None and pn % drop_every == drop_every - 1:
                continue
            if received and received[-1][1] == pn - 1:
                received[-1][1] = pn
            else:
                received.append([pn, pn])
                if len(received) > MAX_ACK_RANGES:
                    del received[0]
        if received:
            acks[i] = [(lo, hi) for lo, hi in reversed(received)]
    return times, acks


def run_ours(
    times: list[float], acks: list[list[tuple[int, int]] | None], paced: bool
) -> tuple[float, int, int]:
    """Seconds spent, packets acked, packets lost."""
    cc = NewReno()
    rec = LossRecovery(cc, max_tracked=1 << 20)
    pacer = Pacer(cc, rec.rtt)
    packets = [SentPacket(i, t, MDS) for i, t in enumerate(times)]
    sent = rec.on_packet_sent
    on_ack = rec.on_ack_received
    acked = lost = 0
    start = time.perf_counter()
    for i, p in enumerate(packets):
        if paced:
            pacer.next_send_time(p.time_sent, MDS)
            pacer.on_sent(p.time_sent, MDS)
        sent(p)
        ranges = acks[i]
        if ranges is not None:
            out: AckOutcome = on_ack(ranges, 0.0, p.time_sent)
            acked += len(out.acked)
            lost += len(out.lost)
    elapsed = time.perf_counter() - start
    return elapsed, acked, lost


def run_aioquic(
    times: list[float], acks: list[list[tuple[int, int]] | None]
) -> tuple[float, int, int]:
    """The same sequence through aioquic's QuicPacketRecovery (reno)."""
    from aioquic.quic.packet import QuicPacketType
    from aioquic.quic.packet_builder import QuicDeliveryState, QuicSentPacket
    from aioquic.quic.rangeset import RangeSet
    from aioquic.quic.recovery import QuicPacketRecovery, QuicPacketSpace
    from aioquic.tls import Epoch

    counts = {"acked": 0, "lost": 0}

    def delivered(state: QuicDeliveryState) -> None:
        counts["acked" if state == QuicDeliveryState.ACKED else "lost"] += 1

    rec = QuicPacketRecovery(
        congestion_control_algorithm="reno",
        initial_rtt=0.1,
        max_datagram_size=MDS,
        peer_completed_address_validation=True,
        send_probe=lambda: None,
    )
    rec.handshake_confirmed = True
    space = QuicPacketSpace(is_application_data=True)
    rec.spaces = [space]
    packets = []
    for i, t in enumerate(times):
        p = QuicSentPacket(
            epoch=Epoch.ONE_RTT,
            in_flight=True,
            is_ack_eliciting=True,
            is_crypto_packet=False,
            packet_number=i,
            packet_type=QuicPacketType.ONE_RTT,
            sent_time=t,
            sent_bytes=MDS,
        )
        p.delivery_handlers.append((delivered, ()))
        packets.append(p)
    rangesets: list[Any] = [
        None if r is None else RangeSet([range(lo, hi + 1) for lo, hi in reversed(r)]) for r in acks
    ]
    on_sent = rec.on_packet_sent
    on_ack = rec.on_ack_received
    start = time.perf_counter()
    for i, p in enumerate(packets):
        on_sent(packet=p, space=space)
        rs = rangesets[i]
        if rs is not None:
            on_ack(ack_rangeset=rs, ack_delay=0.0, now=times[i], space=space)
    elapsed = time.perf_counter() - start
    return elapsed, counts["acked"], counts["lost"]


def measure(
    fn: Callable[[], tuple[float, int, int]], repeat: int, n: int
) -> dict[str, float | int]:
    runs = [fn() for _ in range(repeat)]
    us = statistics.median(r[0] for r in runs) / n * 1e6
    return {"us_per_packet": round(us, 3), "acked": runs[0][1], "lost": runs[0][2]}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k packets, one run")
    parser.add_argument("--packets", type=int, default=None, help="packets sent (100000)")
    parser.add_argument("--inflight", type=int, default=100, help="packets in flight")
    parser.add_argument("--repeat", type=int, default=None, help="runs per figure (median)")
    args = parser.parse_args(argv)
    n = args.packets or (20_000 if args.quick else 100_000)
    repeat = args.repeat or (1 if args.quick else 3)

    try:
        import aioquic

        baseline: str | None = f"aioquic {aioquic.__version__}"
    except ImportError:
        baseline = None

    report: dict[str, Any] = {
        "bench": "recovery",
        "packets": n,
        "inflight": args.inflight,
        "ack_every": 2,
        "repeat": repeat,
        "python": platform.python_version(),
        "baseline": baseline or "missing: aioquic is not importable",
        "scenarios": {},
    }
    for name, drop in (("no_loss", None), ("loss_1pct", 100)):
        times, acks = build_sequence(n, args.inflight, drop)
        row: dict[str, Any] = {
            "ours": measure(partial(run_ours, times, acks, False), repeat, n),
            "ours_paced": measure(partial(run_ours, times, acks, True), repeat, n),
        }
        if baseline is not None:
            row["aioquic"] = measure(partial(run_aioquic, times, acks), repeat, n)
            row["ratio_aioquic_over_ours"] = round(
                row["aioquic"]["us_per_packet"] / row["ours"]["us_per_packet"], 2
            )
        report["scenarios"][name] = row
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
