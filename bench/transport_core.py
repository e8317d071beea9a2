"""Benchmark the connection core: one bulk transfer between two in-memory connections.

Both connections run in this process and every datagram goes through the same virtual-time
pipe (a fixed one-way delay; ``--loss`` drops that share of datagrams, the same seeded draw
for both, once the first datagram got through), so the CPU time measured is the whole cost
of the transfer on both sides: packet building, sealing, opening, frame coding, acks, recovery,
congestion control, pacing, flow control, stream buffers. Time is virtual: the loop jumps
to the next datagram arrival or connection deadline (no sleeping), and the figure is
bytes moved per second of process CPU time.

Runs, in the same process and on the same pipe:

- ``ours``: :class:`foundation_p2p.transport.connection.Connection` pair (Noise handshake,
  then one stream);
- ``aioquic``: aioquic's ``QuicConnection`` pair (TLS 1.3 handshake with a self-signed
  certificate, then one stream), the baseline, with the same datagram size and the same
  flow-control windows (4 MiB connection, 1 MiB stream; our window auto-tuning off).

Prints one JSON object as its last line: MB/s of CPU for each, the ratio ``ours /
aioquic``, microseconds of CPU per packet (all datagrams both sides sent), and the packet
counts, and ``time_skips``: how often the loop let 1 ms of virtual time pass because a
connection's timer stayed due without effect (aioquic does this under loss; ours never
should). ``ours_pmtu``: ours again with path MTU discovery up to each ``--pmtu`` ceiling
(16384 by default; the pipe has no MTU, so the connections reach it): what datagram size
buys on loopback. Usage: ``python bench/transport_core.py [--quick] [--mb N]
[--delay-ms D] [--loss P] [--pmtu BYTES]...`` (50 MB by default, 5 MB with ``--quick``).
"""

from __future__ import annotations

import argparse
import heapq
import json
import platform
import random
import sys
import time
from typing import Any

from transport import _self_signed  # bench/transport.py: the same self-signed certificate

from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.transport.config import TransportConfig
from foundation_p2p.transport.connection import Connection, StreamDataReceived

DATAGRAM = 1200
CONN_WINDOW = 4 * 1024 * 1024
STREAM_WINDOW = 1024 * 1024
WRITE_CHUNK = 256 * 1024


def run_ours(
    total: int, delay: float, seed: int = 1, loss: float = 0.0, pmtu_max: int = DATAGRAM
) -> dict[str, Any]:
    """Move ``total`` bytes over one stream between two of our connections.

    ``pmtu_max``: path MTU discovery's ceiling (the pipe has no MTU, so the connections
    reach it); the default, ``DATAGRAM``, keeps them at 1200 bytes like aioquic."""
    rng = random.Random(seed)
    drop = random.Random(seed + 1000)

    def secret_bytes(n: int) -> bytes:
        return rng.randbytes(n)

    keyring = Keyring(bytes(range(32)))
    config = TransportConfig(
        max_datagram_bytes=DATAGRAM,
        initial_max_data=CONN_WINDOW,
        max_data_window=CONN_WINDOW,
        initial_max_stream_data=STREAM_WINDOW,
        max_stream_data_window=STREAM_WINDOW,
        stream_send_buffer_bytes=STREAM_WINDOW,
        pmtu_max_bytes=pmtu_max,
    )
    a_id, b_id = Identity.generate(secret_bytes), Identity.generate(secret_bytes)
    payload = memoryview(rng.randbytes(min(total, 8 * 1024 * 1024)))
    start_cpu = time.process_time()
    now = 0.0
    client = Connection.connect(now, a_id, keyring, secret_bytes, config=config)
    server: Connection | None = None
    queue: list[tuple[float, int, bool, bytes]] = []
    seq = 0
    sent = received = 0
    packets = 0
    sid: int | None = None
    end_sent = False
    stuck = time_skips = 0
    while received < total:
        for data in client.take_datagrams(now):
            if loss and server is not None and drop.random() < loss:
                continue
            seq += 1
            heapq.heappush(queue, (now + delay, seq, True, data))
        if server is not None:
            for data in server.take_datagrams(now):
                if loss and drop.random() < loss:
                    continue
                seq += 1
                heapq.heappush(queue, (now + delay, seq, False, data))
        times = [queue[0][0]] if queue else []
        for conn in (client, server):
            if conn is not None:
                d = conn.next_deadline()
                if d is not None:
                    times.append(d)
        if not times:
            raise RuntimeError("ours: stalled")
        t = min(times)
        if t > now:
            now = t
            stuck = 0
        else:
            stuck += 1
            if stuck > 100:  # a timer that stays due without effect: let real time pass
                now += 0.001
                stuck = 0
                time_skips += 1
        while queue and queue[0][0] <= now:
            _, _, to_server, data = heapq.heappop(queue)
            packets += 1
            if to_server:
                if server is None:
                    server = Connection.accept(
                        now, data, b_id, keyring, secret_bytes, config=config
                    )
                else:
                    server.receive_datagram(now, data)
            else:
                client.receive_datagram(now, data)
        for conn in (client, server):
            if conn is not None:
                d = conn.next_deadline()
                if d is not None and d <= now:
                    conn.handle_timer(now)
        client.take_events()
        if sid is None and client.is_established:
            sid = client.open_stream()
        if sid is not None and sent < total:
            room = client.writable(sid)
            while room > 0 and sent < total:
                offset = sent % len(payload)
                n = min(room, total - sent, len(payload) - offset, WRITE_CHUNK)
                accepted = client.send(sid, payload[offset : offset + n])
                sent += accepted
                room -= accepted
                if accepted < n:
                    break
        if sid is not None and sent >= total and not end_sent:
            client.send(sid, b"", end=True)
            end_sent = True
        if server is not None:
            for event in server.take_events():
                if type(event) is StreamDataReceived:
                    received += len(event.data)
    cpu = time.process_time() - start_cpu
    stats = client.stats()
    return {
        "cpu_s": round(cpu, 3),
        "virtual_s": round(now, 3),
        "mb_per_s": round(total / cpu / 1e6, 2),
        "packets": packets,
        "us_per_packet": round(cpu / packets * 1e6, 1),
        "retransmits": stats.get("retransmits", 0),
        "time_skips": time_skips,
        "datagram_bytes": client.max_datagram_size,
    }


def run_aioquic(total: int, delay: float, seed: int = 1, loss: float = 0.0) -> dict[str, Any]:
    """The same transfer between two aioquic ``QuicConnection`` objects."""
    drop = random.Random(seed + 1000)
    import ssl

    from aioquic.quic import events
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    cert, key = _self_signed()
    common = {
        "alpn_protocols": ["bench"],
        "max_datagram_size": DATAGRAM,
        "max_data": CONN_WINDOW,
        "max_stream_data": STREAM_WINDOW,
    }
    client_conf = QuicConfiguration(is_client=True, server_name="bench", **common)
    client_conf.verify_mode = ssl.CERT_NONE
    server_conf = QuicConfiguration(is_client=False, **common)
    server_conf.certificate = cert
    server_conf.private_key = key
    payload = memoryview(random.Random(1).randbytes(min(total, 8 * 1024 * 1024)))
    client_addr, server_addr = ("10.0.0.1", 1000), ("10.0.0.2", 2000)

    start_cpu = time.process_time()
    now = 0.0
    client = QuicConnection(configuration=client_conf)
    client.connect(server_addr, now)
    server: QuicConnection | None = None
    queue: list[tuple[float, int, bool, bytes]] = []
    seq = 0
    sent = received = 0
    packets = 0
    sid: int | None = None
    established = False
    end_sent = False
    stuck = time_skips = 0
    while received < total:
        for data, _ in client.datagrams_to_send(now):
            if loss and server is not None and drop.random() < loss:
                continue
            seq += 1
            heapq.heappush(queue, (now + delay, seq, True, data))
        if server is not None:
            for data, _ in server.datagrams_to_send(now):
                if loss and drop.random() < loss:
                    continue
                seq += 1
                heapq.heappush(queue, (now + delay, seq, False, data))
        times = [queue[0][0]] if queue else []
        for conn in (client, server):
            if conn is not None:
                d = conn.get_timer()
                if d is not None:
                    times.append(d)
        if not times:
            raise RuntimeError("aioquic: stalled")
        t = min(times)
        if t > now:
            now = t
            stuck = 0
        else:
            stuck += 1
            if stuck > 100:  # a timer that stays due without effect: let real time pass
                now += 0.001
                stuck = 0
                time_skips += 1
        while queue and queue[0][0] <= now:
            _, _, to_server, data = heapq.heappop(queue)
            packets += 1
            if to_server:
                if server is None:
                    from aioquic.buffer import Buffer
                    from aioquic.quic.packet import pull_quic_header

                    header = pull_quic_header(Buffer(data=data), host_cid_length=8)
                    server = QuicConnection(
                        configuration=server_conf,
                        original_destination_connection_id=header.destination_cid,
                    )
                server.receive_datagram(data, client_addr, now)
            else:
                client.receive_datagram(data, server_addr, now)
        for conn in (client, server):
            if conn is not None:
                d = conn.get_timer()
                if d is not None and d <= now:
                    conn.handle_timer(now)
        while (event := client.next_event()) is not None:
            if isinstance(event, events.HandshakeCompleted):
                established = True
        if established and sid is None:
            sid = client.get_next_available_stream_id()
        if sid is not None and sent < total:
            # aioquic's send buffer is unbounded: keep about one stream window queued
            stream = client._streams.get(sid)
            queued = 0 if stream is None else sent - stream.sender._buffer_start
            while queued < STREAM_WINDOW and sent < total:
                offset = sent % len(payload)
                n = min(total - sent, len(payload) - offset, WRITE_CHUNK)
                client.send_stream_data(sid, bytes(payload[offset : offset + n]))
                sent += n
                queued += n
        if sid is not None and sent >= total and not end_sent:
            client.send_stream_data(sid, b"", end_stream=True)
            end_sent = True
        if server is not None:
            while (event := server.next_event()) is not None:
                if isinstance(event, events.StreamDataReceived):
                    received += len(event.data)
    cpu = time.process_time() - start_cpu
    return {
        "cpu_s": round(cpu, 3),
        "virtual_s": round(now, 3),
        "mb_per_s": round(total / cpu / 1e6, 2),
        "packets": packets,
        "us_per_packet": round(cpu / packets * 1e6, 1),
        "time_skips": time_skips,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 MB instead of 50 MB")
    parser.add_argument("--mb", type=float, default=None, help="megabytes to move")
    parser.add_argument("--delay-ms", type=float, default=1.0, help="one-way pipe delay")
    parser.add_argument(
        "--loss", type=float, default=0.0, help="share of datagrams dropped after the first"
    )
    parser.add_argument(
        "--pmtu", type=int, action="append", default=None, metavar="BYTES",
        help="also run ours with path MTU discovery up to BYTES (repeatable; default: 16384)",
    )
    args = parser.parse_args(argv)
    mb = args.mb if args.mb is not None else (5.0 if args.quick else 50.0)
    total = int(mb * 1_000_000)
    delay = args.delay_ms / 1000
    ours = run_ours(total, delay, loss=args.loss)
    print(f"ours:    {ours}", file=sys.stderr)
    pmtu_runs: dict[str, Any] = {}
    for ceiling in args.pmtu or [16384]:
        run = run_ours(total, delay, loss=args.loss, pmtu_max=ceiling)
        pmtu_runs[str(ceiling)] = run
        print(f"ours, pmtu up to {ceiling}: {run}", file=sys.stderr)
    try:
        import aioquic

        baseline: dict[str, Any] | None = run_aioquic(total, delay, loss=args.loss)
        baseline_name = f"aioquic {aioquic.__version__}"
        print(f"aioquic: {baseline}", file=sys.stderr)
    except ImportError:
        baseline = None
        baseline_name = "aioquic (not installed)"
    result: dict[str, Any] = {
        "bench": "transport_core",
        "bytes": total,
        "datagram_bytes": DATAGRAM,
        "one_way_delay_ms": args.delay_ms,
        "loss": args.loss,
        "python": platform.python_version(),
        "ours": ours,
        "baseline": baseline_name,
        "aioquic": baseline,
        "ratio_ours_over_aioquic": (
            round(ours["mb_per_s"] / baseline["mb_per_s"], 2) if baseline else None
        ),
        "ours_pmtu": pmtu_runs,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
