"""Benchmark the stream hot paths against aioquic's stream sender/receiver on the same bytes.

Measures, for a transfer of ``--megabytes`` (default 50 MB) in 1150-byte chunks, the cost
per chunk of:

- ``send``: ``SendStream.write`` (64 KiB pieces whenever the 1 MiB buffer has room), then
  per chunk ``SendStream.next_chunk`` + ``SendStream.on_acked`` (acknowledged in order, in
  batches of 16 chunks, like a receiver acking every other packet);
- ``recv``: per chunk ``RecvStream.on_frame`` + ``RecvStream.read``, in order;
- ``recv_reordered``: the same with every 32nd chunk delivered 8 chunks late (so the
  out-of-order path and the reassembly run);
- ``send_lossy``: ``send`` with every 50th chunk declared lost (``on_lost``) and resent.

and ``scheduler_next_us``: one ``StreamScheduler.next`` with four streams of urgencies 0,
2, 3 and 7 ready (no baseline: aioquic has no stream scheduler of its own).

Baselines in the same run on the same chunks:

- ``aioquic``: ``aioquic.quic.stream.QuicStreamSender`` (``write`` / ``get_frame`` /
  ``on_data_delivery``) and ``QuicStreamReceiver.handle_frame`` (which hands in-order data
  back itself, so it stands for on_frame + read), when the package is importable;
- ``floor``: a bare ``bytearray`` append / slice / delete loop with no bookkeeping at all
  (one copy in, one copy out). Ours beats it on receive: an in-order frame's bytes object
  is handed to ``read`` uncopied.

Ours does more per chunk than aioquic's stream objects: flow-control credit (stream and
connection) on send, the flow window and ``max_data_update`` on receive; aioquic does
those in its connection.

Times are CPU time of this process (``time.process_time``), so other load on the
machine does not inflate them; the cyclic garbage collector is off while a run is timed
(as ``timeit`` does). Every run checks the bytes came out intact. Prints one
JSON object as its last line: microseconds per chunk (median of the repetitions) for each
path and implementation, and the ratios ``aioquic / ours`` (above 1: ours is faster).

Usage: ``python bench/streams.py [--quick] [--megabytes N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from foundation_p2p.transport.flow import FlowCredit
from foundation_p2p.transport.scheduler import StreamScheduler
from foundation_p2p.transport.streams import RecvStream, SendStream

CHUNK = 1150
WRITE_PIECE = 64 * 1024
MAX_BUFFER = 1 << 20
ACK_BATCH = 16
BIG = 1 << 60

try:
    from aioquic.quic.packet import QuicStreamFrame
    from aioquic.quic.packet_builder import QuicDeliveryState
    from aioquic.quic.stream import QuicStreamReceiver, QuicStreamSender

    HAVE_AIOQUIC = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_AIOQUIC = False


def make_payload(size: int) -> bytes:
    """Return ``size`` deterministic, incompressible-looking bytes."""
    block = hashlib.sha256(b"bench/streams").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def chunks_of(payload: bytes) -> list[tuple[int, bytes, bool]]:
    """Return the payload as the (offset, data, fin) chunks a sender would produce."""
    n = len(payload)
    return [(off, payload[off : off + CHUNK], off + CHUNK >= n) for off in range(0, n, CHUNK)]


def reorder(chunks: list[tuple[int, bytes, bool]]) -> list[tuple[int, bytes, bool]]:
    """Deliver every 32nd chunk 8 chunks late."""
    out = list(chunks)
    for k in range(0, len(out) - 8, 32):
        out.insert(k + 8, out.pop(k))
    return out


# -- ours ----------------------------------------------------------------------------------


def ours_send(payload: bytes, lose_every: int = 0) -> tuple[float, int, bytes]:
    """Return (seconds, chunks, digest of the bytes sent in offset order)."""
    stream = SendStream(0, max_buffer=MAX_BUFFER, credit=FlowCredit(BIG))
    conn = FlowCredit(BIG)
    total = len(payload)
    written = 0
    in_flight: list[tuple[int, int, bool]] = []
    received = bytearray(total)
    lost: set[int] = set()
    chunks = 0
    t0 = time.process_time()
    while not stream.finished:
        if written < total and stream.writable() >= WRITE_PIECE:
            piece = payload[written : written + WRITE_PIECE]
            written += stream.write(piece, end=written + len(piece) == total)
        chunk = stream.next_chunk(CHUNK, conn)
        if chunk is not None:
            off, data, fin = chunk
            chunks += 1
            received[off : off + len(data)] = data
            in_flight.append((off, len(data), fin))
        if len(in_flight) >= ACK_BATCH or (chunk is None and in_flight):
            for off, n, fin in in_flight:
                # Chunk 7 of every ``lose_every`` is lost once: declared lost, resent, acked.
                if (
                    lose_every
                    and (off // CHUNK) % lose_every == 7
                    and off < total - CHUNK
                    and off not in lost
                ):
                    lost.add(off)
                    stream.on_lost(off, n, fin)
                    continue
                stream.on_acked(off, n, fin)
            in_flight.clear()
    elapsed = time.process_time() - t0
    return elapsed, chunks, hashlib.sha256(received).digest()


def ours_recv(chunks: list[tuple[int, bytes, bool]], total: int) -> tuple[float, int, bytes]:
    stream = RecvStream(0, window=MAX_BUFFER * 4)
    out: list[bytes] = []
    append = out.append
    t0 = time.process_time()
    for off, data, fin in chunks:
        stream.on_frame(off, data, fin)
        piece = stream.read()
        if piece:
            append(piece)
        stream.max_data_update()
    elapsed = time.process_time() - t0
    assert stream.at_end
    return elapsed, len(chunks), hashlib.sha256(b"".join(out)).digest()


# -- aioquic -------------------------------------------------------------------------------


def aioquic_send(payload: bytes, lose_every: int = 0) -> tuple[float, int, bytes]:
    sender = QuicStreamSender(0, True)
    total = len(payload)
    written = 0
    in_flight: list[tuple[int, int, bool]] = []
    received = bytearray(total)
    lost: set[int] = set()
    chunks = 0
    acked = QuicDeliveryState.ACKED
    lost_state = QuicDeliveryState.LOST
    t0 = time.process_time()
    while not sender.is_finished:
        if written < total and len(sender._buffer) <= MAX_BUFFER - WRITE_PIECE:
            piece = payload[written : written + WRITE_PIECE]
            written += len(piece)
            sender.write(piece, end_stream=written == total)
        frame = sender.get_frame(CHUNK, BIG)
        if frame is not None:
            chunks += 1
            off = frame.offset
            n = len(frame.data)
            received[off : off + n] = frame.data
            in_flight.append((off, off + n, frame.fin))
        if len(in_flight) >= ACK_BATCH or (frame is None and in_flight):
            for start, stop, fin in in_flight:
                if (
                    lose_every
                    and (start // CHUNK) % lose_every == 7
                    and start < total - CHUNK
                    and start not in lost
                ):
                    lost.add(start)
                    sender.on_data_delivery(lost_state, start, stop, fin)
                    continue
                sender.on_data_delivery(acked, start, stop, fin)
            in_flight.clear()
    elapsed = time.process_time() - t0
    return elapsed, chunks, hashlib.sha256(received).digest()


def aioquic_recv(chunks: list[tuple[int, bytes, bool]], total: int) -> tuple[float, int, bytes]:
    receiver = QuicStreamReceiver(0, True)
    frames = [QuicStreamFrame(data=data, fin=fin, offset=off) for off, data, fin in chunks]
    out: list[bytes] = []
    append = out.append
    t0 = time.process_time()
    for frame in frames:
        event = receiver.handle_frame(frame)
        if event is not None and event.data:
            append(event.data)
    elapsed = time.process_time() - t0
    assert receiver.is_finished
    return elapsed, len(chunks), hashlib.sha256(b"".join(out)).digest()


# -- the floor -----------------------------------------------------------------------------


def floor_send(payload: bytes, lose_every: int = 0) -> tuple[float, int, bytes]:
    """Append pieces to a bytearray, slice chunks out, delete acknowledged bytes."""
    buf = bytearray()
    total = len(payload)
    base = 0
    written = 0
    sent = 0
    received = bytearray(total)
    chunks = 0
    t0 = time.process_time()
    while base < total:
        if written < total and len(buf) <= MAX_BUFFER - WRITE_PIECE:
            piece = payload[written : written + WRITE_PIECE]
            buf += piece
            written += len(piece)
        if sent < written:
            stop = min(sent + CHUNK, written)
            data = bytes(buf[sent - base : stop - base])
            received[sent:stop] = data
            sent = stop
            chunks += 1
        if sent - base >= ACK_BATCH * CHUNK or sent == written:
            del buf[: sent - base]
            base = sent
    elapsed = time.process_time() - t0
    return elapsed, chunks, hashlib.sha256(received).digest()


def floor_recv(chunks: list[tuple[int, bytes, bool]], total: int) -> tuple[float, int, bytes]:
    buf = bytearray()
    out: list[bytes] = []
    append = out.append
    t0 = time.process_time()
    for _off, data, _fin in chunks:
        buf += data
        append(bytes(buf))
        del buf[:]
    elapsed = time.process_time() - t0
    return elapsed, len(chunks), hashlib.sha256(b"".join(out)).digest()


def scheduler_next_us(picks: int) -> float:
    """Return the CPU microseconds of one ``StreamScheduler.next`` with 4 streams ready."""
    scheduler = StreamScheduler()
    for sid, urgency in ((0, 0), (4, 2), (8, 3), (12, 7)):
        scheduler.add(sid, urgency=urgency)
        scheduler.set_ready(sid, True)
    t0 = time.process_time()
    for _ in range(picks):
        scheduler.next()
    return round((time.process_time() - t0) / picks * 1e6, 3)


def measure(
    fn: Callable[[], tuple[float, int, bytes]], repeat: int, expected: bytes, name: str
) -> float:
    """Return the median microseconds per chunk of ``repeat`` runs, checking the digest."""
    samples = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()  # as timeit does: the 50 MB of chunk objects held make collections costly
        try:
            seconds, chunks, digest = fn()
        finally:
            gc.enable()
        if digest != expected:
            raise SystemExit(f"{name}: the bytes did not come out intact")
        samples.append(seconds / chunks * 1e6)
    return round(statistics.median(samples), 3)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the JSON result as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 MB, one repetition")
    parser.add_argument("--megabytes", type=float, default=None, help="transfer size (MB)")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (median taken)")
    args = parser.parse_args(argv)
    megabytes = args.megabytes or (5.0 if args.quick else 50.0)
    repeat = args.repeat or (1 if args.quick else 3)
    total = int(megabytes * 1_000_000)
    payload = make_payload(total)
    expected = hashlib.sha256(payload).digest()
    chunks = chunks_of(payload)
    late = reorder(chunks)

    impls: dict[str, dict[str, Callable[[], tuple[float, int, bytes]]]] = {
        "ours": {
            "send": lambda: ours_send(payload),
            "send_lossy": lambda: ours_send(payload, lose_every=50),
            "recv": lambda: ours_recv(chunks, total),
            "recv_reordered": lambda: ours_recv(late, total),
        },
        "floor": {
            "send": lambda: floor_send(payload),
            "recv": lambda: floor_recv(chunks, total),
        },
    }
    if HAVE_AIOQUIC:
        impls["aioquic"] = {
            "send": lambda: aioquic_send(payload),
            "send_lossy": lambda: aioquic_send(payload, lose_every=50),
            "recv": lambda: aioquic_recv(chunks, total),
            "recv_reordered": lambda: aioquic_recv(late, total),
        }
    us_per_chunk: dict[str, dict[str, float]] = {}
    for impl, paths in impls.items():
        us_per_chunk[impl] = {}
        for path, fn in paths.items():
            us = measure(fn, repeat, expected, f"{impl} {path}")
            us_per_chunk[impl][path] = us
            print(f"{impl:8s} {path:15s} {us:8.3f} us/chunk", file=sys.stderr)
    result: dict[str, Any] = {
        "bench": "streams",
        "bytes": total,
        "chunk_bytes": CHUNK,
        "chunks": len(chunks),
        "repeat": repeat,
        "python": platform.python_version(),
        "us_per_chunk": us_per_chunk,
        "scheduler_next_us": scheduler_next_us(20_000 if args.quick else 200_000),
        "aioquic": None,
    }
    if HAVE_AIOQUIC:
        import aioquic

        ours = us_per_chunk["ours"]
        theirs = us_per_chunk["aioquic"]
        result["aioquic"] = aioquic.__version__
        result["aioquic_over_ours"] = {
            path: round(theirs[path] / ours[path], 2) for path in theirs if ours.get(path)
        }
    result["floor_over_ours"] = {
        path: round(us_per_chunk["floor"][path] / us_per_chunk["ours"][path], 2)
        for path in us_per_chunk["floor"]
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
