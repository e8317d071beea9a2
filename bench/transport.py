"""Benchmark our transport over real UDP on 127.0.0.1 against aioquic, in the same run.

Every run starts a fresh server process and a fresh client process (``multiprocessing``,
fork), each with its own UDP socket on 127.0.0.1; the parent only orchestrates and collects
results through pipes. Our side is a small blocking loop around
:class:`~foundation_p2p.transport.connection.Connection` (:class:`UdpLoop`): ``select`` on
the socket until ``next_deadline()`` (or the application's next tick), drain the socket
into ``receive_datagram``, ``handle_timer`` when due, let the application read events and
write, then send ``take_datagrams`` (which stops when the pacer says wait: pacing is
honoured, its release time is ``next_deadline``). aioquic runs its own asyncio client and
server (``aioquic.asyncio.connect`` / ``serve``, a self-signed certificate made here with
``cryptography``, ``max_datagram_size`` 1200).

Three parts, each with its baseline measured in the same run (figures are medians over
``--runs`` runs, 3 by default; ours and the baseline alternate):

1. ``throughput``: one stream, 50 MB (``--quick``: 5 MB) client -> server; the server
   hashes what arrives (SHA-256) and answers with the digest on the same stream, which the
   parent checks against the expected digest. MB/s = bytes / (digest received - stream
   opened), on the client's clock. Same windows both sides (4 MiB connection, 1 MiB
   stream; our window auto-tuning off). aioquic's send buffer is unbounded: the whole
   transfer is queued at once (ours takes what its 1 MiB stream buffer accepts). Our loop
   reads up to 256 waiting datagrams per turn before it lets the connection send (so one
   ACK answers a batch); ``ours_drain1`` reads one datagram per turn, as aioquic's asyncio
   protocol handles each datagram and transmits, and is reported beside it. A further run
   of ours under cProfile gives the top functions of each side. CPU per MB (both
   processes) is reported too: on a loaded machine the wall figures follow the share of
   CPU the processes get.
2. ``hol`` (head-of-line blocking): a 16-byte ``control`` record (sequence number and the
   time it was due) every 10 ms while ``data`` saturates with 16 KiB records; the receiver
   measures each control record's latency (same host, one monotonic clock). ``streams``:
   control on its own urgency-0 stream, data on another (urgency 3). ``one_stream``: the
   same records through ONE ordered stream of the same transport with the same config
   (the one-TCP-connection situation; a control record queues behind the data already
   accepted in the stream's send buffer, as behind a TCP socket's). At 0% and at 2% loss,
   plus ``light``: bulk at 100 kB/s (1000-byte records every 10 ms) at 2% loss, where a
   tail would come from ack delay rather than queueing. Each case also reports the
   sender's probe timeouts: at 2% loss NewReno's window is two or three packets, and when
   the ACK for them (or the last of them) is lost nothing is left to detect the loss by
   until the probe timeout, whose ``max_ack_delay`` term (25 ms) then sets the control
   tail (traced in virtual time with ``tests/transport/pair.py``). Loss injection
   (``--loss-injection``): ``nft`` (the default when running as root with ``ip`` and
   ``nft`` installed) runs each case in a network namespace the benchmark creates, with
   its own loopback and an nftables rule in the input hook that drops that share of UDP
   datagrams (``numgen random mod 100 < N drop``), in both directions, handshake
   included; the namespaces are deleted when the part ends. ``wrapper`` (the fallback)
   is a seeded random drop wrapped around each side's socket send. The JSON names the
   one used.
3. ``handshake``: time from ``Connection.connect`` to established (client side, the
   responder in its own process) over real UDP, then CPU per handshake (client CPU of the
   handshake plus the server process's CPU over the series, divided by the count); against
   aioquic's TLS 1.3 handshake (``connect`` until it returns). Each side uses a per-boot
   Noise static key, as a node does.

Every socket (ours and aioquic's) gets ``--socket-buffer`` bytes of kernel buffer (4 MiB
by default, so that a CPU-starved receiver does not lose datagrams in the kernel at
"0% loss"; at 0% loss a full congestion window then queues in that buffer, which is what
the control latency at 0% shows).

Usage: ``python bench/transport.py [--quick] [--runs N] [--parts throughput,hol,handshake]
[--no-profile] [--socket-buffer BYTES] [--loss-injection auto|nft|wrapper]``.
Goals (issue 5): throughput ours >= aioquic; hol p99 at 2% loss at least 10x lower with
streams than one stream; handshake median <= 10 ms. The last stdout line is one JSON
object; ``goals_met`` says which were met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import hashlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import pstats
import random
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from foundation_p2p.crypto.handshake import NoiseStatic
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import WireError
from foundation_p2p.transport.config import TransportConfig
from foundation_p2p.transport.connection import (
    Connection,
    ConnectionClosed,
    Event,
    StreamDataReceived,
)

HOST = "127.0.0.1"
DATAGRAM = 1200
CONN_WINDOW = 4 * 1024 * 1024
STREAM_WINDOW = 1024 * 1024
CLUSTER_KEY = bytes(range(32))
BLOCK = random.Random(5).randbytes(1 << 20)
"""The transfer's bytes: this 1 MiB block repeated (the receiver hashes all of it)."""
SOCKET_BUFFER = 4 * 1024 * 1024
DRAIN_MAX = 256
"""Datagrams read from the socket per loop turn at most (then timers and sending run)."""
CONTROL_EVERY_S = 0.010
DATA_RECORD = 16 * 1024
LIGHT_RECORD = 1000
REC_DATA = 0
REC_CONTROL = 1
CONTROL_PAYLOAD = struct.Struct(">Id")  # sequence number, time it was due (monotonic)

CONFIG = TransportConfig(
    max_datagram_bytes=DATAGRAM,
    initial_max_data=CONN_WINDOW,
    max_data_window=CONN_WINDOW,
    initial_max_stream_data=STREAM_WINDOW,
    max_stream_data_window=STREAM_WINDOW,
    stream_send_buffer_bytes=STREAM_WINDOW,
)


class BenchError(RuntimeError):
    """A run failed (timeout, closed connection, wrong bytes); the message says which."""


def expected_digest(total: int) -> str:
    """SHA-256 of ``total`` bytes of ``BLOCK`` repeated."""
    h = hashlib.sha256()
    full, rest = divmod(total, len(BLOCK))
    for _ in range(full):
        h.update(BLOCK)
    h.update(BLOCK[:rest])
    return h.hexdigest()


def set_socket_buffer(size: int) -> None:
    """Set the kernel buffer every later run's sockets ask for (processes are forked)."""
    global SOCKET_BUFFER
    SOCKET_BUFFER = size


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # *BUFFORCE as root
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise BenchError("no samples")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _profile_top(prof: cProfile.Profile, n: int = 12) -> list[str]:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime")
    rows = []
    for func, (_cc, nc, tt, ct, _callers) in sorted(
        stats.stats.items(), key=lambda kv: kv[1][2], reverse=True  # type: ignore[attr-defined]
    )[:n]:
        filename, line, name = func
        where = f"{os.path.basename(filename)}:{line}({name})" if line else name
        rows.append(f"{tt:.3f}s tot {ct:.3f}s cum {nc} calls {where}")
    return rows


# --- our connection over a UDP socket ---------------------------------------------------


class App:
    """What :class:`UdpLoop` drives: ``step`` after every turn, ``wake_at`` for ticks."""

    done = False
    wake_at: float | None = None

    def step(self, now: float, conn: Connection, events: list[Event]) -> None:
        raise NotImplementedError


class UdpLoop:
    """Drives one :class:`Connection` over a non-blocking UDP socket (client or server).

    The client passes its connection and its socket already connected to the server; the
    server passes ``conn=None`` and accepts the first initial packet (then connects its
    socket to that peer). ``loss`` drops that share of sent datagrams with a seeded draw.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: Connection | None,
        *,
        loss: float = 0.0,
        seed: int = 1,
        identity: Identity | None = None,
        static: NoiseStatic | None = None,
        drain: int = DRAIN_MAX,
    ) -> None:
        self.sock = sock
        self.drain = drain
        self.conn = conn
        self.loss = loss
        self.rng = random.Random(seed)
        self.identity = identity
        self.static = static
        self.keyring = Keyring(CLUSTER_KEY)
        self.dropped = 0
        self.sent = 0
        self.received = 0
        self.send_errors = 0
        self.rejected = 0
        self.refused = 0

    def send_all(self, datagrams: list[bytes]) -> None:
        send = self.sock.send
        loss = self.loss
        rng = self.rng
        for data in datagrams:
            if loss and rng.random() < loss:
                self.dropped += 1
                continue
            try:
                send(data)
                self.sent += 1
            except OSError:  # full socket buffer (ENOBUFS/EAGAIN): the datagram is lost
                self.send_errors += 1

    def _accept(self, now: float, data: bytes, addr: Any) -> None:
        assert self.identity is not None
        try:
            self.conn = Connection.accept(
                now, data, self.identity, self.keyring, os.urandom, config=CONFIG,
                static=self.static,
            )
        except WireError:
            self.rejected += 1
            return
        self.sock.connect(addr)

    def run(self, app: App, limit_s: float, stop: Any = None) -> None:
        """Turn until ``app.done`` (or until ``stop``, a pipe, becomes readable while the
        loop waits); raises :class:`BenchError` after ``limit_s`` seconds."""
        sock = self.sock
        waitables: list[Any] = [sock] if stop is None else [sock, stop]
        recvfrom = sock.recvfrom
        monotonic = time.monotonic
        t_end = monotonic() + limit_s
        batch: list[tuple[bytes, Any]] = []
        while not app.done:
            now = monotonic()
            if now >= t_end:
                raise BenchError(f"our loop: not done after {limit_s} s")
            conn = self.conn
            deadline = conn.next_deadline() if conn is not None else None
            wake = app.wake_at
            if wake is not None and (deadline is None or wake < deadline):
                deadline = wake
            timeout = 0.05 if deadline is None else min(0.05, deadline - now)
            if timeout > 0:
                ready, _, _ = select.select(waitables, [], [], timeout)
                if stop is not None and stop in ready:
                    return
            batch.clear()
            for _ in range(self.drain):
                try:
                    batch.append(recvfrom(65536))
                except BlockingIOError:
                    break
                except ConnectionRefusedError:  # ICMP: the peer's socket is gone
                    self.refused += 1
                    break
            now = monotonic()
            if batch:
                self.received += len(batch)
                for data, addr in batch:
                    if self.conn is None:
                        self._accept(now, data, addr)
                    else:
                        self.conn.receive_datagram(now, data)
            conn = self.conn
            if conn is None:
                continue
            due = conn.next_deadline()
            if due is not None and due <= now:
                conn.handle_timer(now)
            app.step(now, conn, conn.take_events())
            self.send_all(conn.take_datagrams(now))

    def close(self) -> None:
        """Close the connection and send its CONNECTION_CLOSE once."""
        conn = self.conn
        if conn is not None and not conn.is_closed and conn.state_name != "draining":
            conn.close()
            self.send_all(conn.take_datagrams(time.monotonic()))
        self.sock.close()


def _check_closed(events: list[Event]) -> None:
    for event in events:
        if type(event) is ConnectionClosed:
            raise BenchError(f"connection closed early: {event}")


class BulkSender(App):
    """Client: one stream of ``total`` bytes, then wait for the server's digest."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sid: int | None = None
        self.sent = 0
        self.end_sent = False
        self.reply = b""
        self.t_start = 0.0
        self.t_done = 0.0
        self.view = memoryview(BLOCK)

    def step(self, now: float, conn: Connection, events: list[Event]) -> None:
        for event in events:
            if type(event) is StreamDataReceived and event.stream_id == self.sid:
                self.reply += event.data
                if event.end:
                    self.t_done = now
                    self.done = True
        _check_closed(events)
        sid = self.sid
        if sid is None:
            if not conn.is_established:
                return
            sid = self.sid = conn.open_stream()
            self.t_start = now
        total = self.total
        view = self.view
        size = len(view)
        while self.sent < total:
            room = conn.writable(sid)
            if room <= 0:
                break
            offset = self.sent % size
            n = min(room, total - self.sent, size - offset)
            accepted = conn.send(sid, bytes(view[offset : offset + n]))
            self.sent += accepted
            if accepted < n:
                break
        if self.sent >= total and not self.end_sent:
            conn.send(sid, b"", end=True)
            self.end_sent = True


class BulkReceiver(App):
    """Server: hash one stream; at its end answer with the digest; done when closed."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.bytes = 0

    def step(self, now: float, conn: Connection, events: list[Event]) -> None:
        for event in events:
            if type(event) is StreamDataReceived:
                self.hash.update(event.data)
                self.bytes += len(event.data)
                if event.end:
                    conn.send(event.stream_id, self.hash.hexdigest().encode(), end=True)
            elif type(event) is ConnectionClosed:
                self.done = True


class HolSender(App):
    """Client: control records every 10 ms and data records, for ``duration`` seconds.

    ``mode`` ``streams``: control on an urgency-0 stream, data on an urgency-3 one;
    ``one``: both through one stream (urgency 3). ``rate`` None saturates (a 16 KiB data
    record whenever the data stream's send buffer takes one); else 1000-byte records at
    that many bytes per second. Each stream has an application queue (``pending``) holding
    at most one record beyond what the transport accepted.
    """

    def __init__(self, mode: str, duration: float, rate: float | None) -> None:
        self.mode = mode
        self.duration = duration
        self.rate = rate
        self.sids: list[int] = []
        self.pending: dict[int, bytearray] = {}
        self.ctrl = self.data = -1
        self.start = 0.0
        self.next_tick = 0.0
        self.seq = 0
        self.data_made = 0
        self.ended = False
        self.reply = b""
        self.data_record = bytes([REC_DATA]) + DATA_RECORD.to_bytes(3, "big") + BLOCK[
            :DATA_RECORD
        ]
        self.light_record = bytes([REC_DATA]) + LIGHT_RECORD.to_bytes(3, "big") + BLOCK[
            :LIGHT_RECORD
        ]

    def _flush(self, conn: Connection, sid: int) -> bool:
        """Write the stream's queue; True when it is empty afterwards."""
        buf = self.pending[sid]
        if buf:
            accepted = conn.send(sid, bytes(buf))
            del buf[:accepted]
        return not buf

    def step(self, now: float, conn: Connection, events: list[Event]) -> None:
        for event in events:
            if type(event) is StreamDataReceived and self.sids and event.stream_id == self.sids[0]:
                self.reply += event.data
                if event.end:
                    self.done = True
        _check_closed(events)
        if not self.sids:
            if not conn.is_established:
                return
            if self.mode == "streams":
                self.ctrl = conn.open_stream(urgency=0)
                self.data = conn.open_stream(urgency=3)
                self.sids = [self.ctrl, self.data]
            else:
                self.ctrl = self.data = conn.open_stream(urgency=3)
                self.sids = [self.ctrl]
            self.pending = {sid: bytearray() for sid in self.sids}
            self.start = self.next_tick = now
        end = self.start + self.duration
        ctrl_buf = self.pending[self.ctrl]
        while self.next_tick <= now and self.next_tick < end:
            payload = CONTROL_PAYLOAD.pack(self.seq, self.next_tick)
            ctrl_buf += bytes([REC_CONTROL]) + len(payload).to_bytes(3, "big") + payload
            self.seq += 1
            self.next_tick += CONTROL_EVERY_S
        self.wake_at = self.next_tick if self.next_tick < end else None
        empty = self._flush(conn, self.ctrl)
        if self.data != self.ctrl:
            empty = self._flush(conn, self.data)
        data_buf = self.pending[self.data]
        if now < end:
            if self.rate is None:
                for _ in range(STREAM_WINDOW // DATA_RECORD + 2):  # bounded: the buffer fills
                    if not empty:
                        break
                    data_buf += self.data_record
                    self.data_made += DATA_RECORD
                    empty = self._flush(conn, self.data)
            else:
                while self.data_made + LIGHT_RECORD <= self.rate * (now - self.start):
                    data_buf += self.light_record
                    self.data_made += LIGHT_RECORD
                self._flush(conn, self.data)
        elif not self.ended and all(not self.pending[sid] for sid in self.sids):
            for sid in self.sids:
                conn.send(sid, b"", end=True)
            self.ended = True


class HolReceiver(App):
    """Server: parse records on every stream, time the control ones; answer when all ended."""

    def __init__(self, streams: int) -> None:
        self.streams = streams
        self.buffers: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.latencies: list[float] = []
        self.data_bytes = 0
        self.first_data = 0.0
        self.last_data = 0.0
        self.replied = False
        self.stats: dict[str, int] = {}

    def step(self, now: float, conn: Connection, events: list[Event]) -> None:
        for event in events:
            if type(event) is StreamDataReceived:
                buf = self.buffers.setdefault(event.stream_id, bytearray())
                buf += event.data
                pos = 0
                while len(buf) - pos >= 4:
                    kind = buf[pos]
                    length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
                    if len(buf) - pos - 4 < length:
                        break
                    if kind == REC_CONTROL:
                        _seq, due = CONTROL_PAYLOAD.unpack_from(buf, pos + 4)
                        self.latencies.append(time.monotonic() - due)
                    else:
                        if not self.data_bytes:
                            self.first_data = now
                        self.data_bytes += length
                        self.last_data = now
                    pos += 4 + length
                del buf[:pos]
                if event.end:
                    self.ended.add(event.stream_id)
            elif type(event) is ConnectionClosed:
                self.done = True
        if not self.replied and len(self.ended) >= self.streams:
            self.stats = conn.stats()
            conn.send(min(self.ended), b"ok", end=True)
            self.replied = True


def _child(pipe: multiprocessing.connection.Connection, body: Callable[[], Any]) -> None:
    try:
        pipe.send(body())
    except BaseException as exc:  # report, the parent raises
        pipe.send({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
    finally:
        pipe.close()


def _ours_server(
    pipe: multiprocessing.connection.Connection, make_app: Callable[[], App], loss: float,
    seed: int, limit: float, profile: bool, drain: int = DRAIN_MAX,
) -> None:
    def body() -> dict[str, Any]:
        sock = _udp_socket()
        pipe.send(sock.getsockname()[1])
        rng = random.Random(seed + 7)
        identity = Identity.generate(rng.randbytes)
        loop = UdpLoop(
            sock, None, loss=loss, seed=seed + 1, identity=identity,
            static=NoiseStatic.generate(identity, os.urandom), drain=drain,
        )
        app = make_app()
        prof = cProfile.Profile() if profile else None
        cpu0 = time.process_time()
        if prof is not None:
            prof.enable()
        loop.run(app, limit, stop=pipe)
        if prof is not None:
            prof.disable()
        result: dict[str, Any] = {
            "cpu_s": time.process_time() - cpu0, "dropped": loop.dropped,
            "send_errors": loop.send_errors, "app": app.__dict__.copy(),
        }
        result["app"].pop("hash", None)
        if isinstance(app, BulkReceiver):
            result["digest"] = app.hash.hexdigest()
        if loop.conn is not None:
            result["stats"] = loop.conn.stats()
        if prof is not None:
            result["profile"] = _profile_top(prof)
        loop.close()
        return result

    _child(pipe, body)


def _ours_client(
    pipe: multiprocessing.connection.Connection, port: int, make_app: Callable[[], App],
    loss: float, seed: int, limit: float, profile: bool, drain: int = DRAIN_MAX,
) -> None:
    def body() -> dict[str, Any]:
        sock = _udp_socket()
        sock.connect((HOST, port))
        rng = random.Random(seed + 3)
        identity = Identity.generate(rng.randbytes)
        static = NoiseStatic.generate(identity, os.urandom)
        app = make_app()
        prof = cProfile.Profile() if profile else None
        cpu0 = time.process_time()
        if prof is not None:
            prof.enable()
        conn = Connection.connect(
            time.monotonic(), identity, Keyring(CLUSTER_KEY), os.urandom, config=CONFIG,
            static=static,
        )
        loop = UdpLoop(sock, conn, loss=loss, seed=seed + 2, drain=drain)
        loop.send_all(conn.take_datagrams(time.monotonic()))
        loop.run(app, limit)
        if prof is not None:
            prof.disable()
        result: dict[str, Any] = {
            "cpu_s": time.process_time() - cpu0, "dropped": loop.dropped,
            "send_errors": loop.send_errors, "stats": conn.stats(),
            "srtt_ms": conn.smoothed_rtt * 1000,
        }
        if isinstance(app, BulkSender):
            result.update(
                t_start=app.t_start, t_done=app.t_done, reply=app.reply.decode(errors="replace")
            )
        if prof is not None:
            result["profile"] = _profile_top(prof)
        loop.close()
        return result

    _child(pipe, body)


def _run_pair(
    server: Callable[..., None], server_args: tuple[Any, ...],
    client: Callable[..., None], client_args: tuple[Any, ...], limit: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the server process, then the client process with the server's port; return
    (client result, server result). The server is told ``stop`` once the client is done."""
    ctx = multiprocessing.get_context("fork")
    s_parent, s_child = ctx.Pipe()
    c_parent, c_child = ctx.Pipe()
    sp = ctx.Process(target=server, args=(s_child, *server_args), daemon=True)
    sp.start()
    procs = [sp]
    try:
        if not s_parent.poll(10):
            raise BenchError("server did not start within 10 s")
        port = s_parent.recv()
        if isinstance(port, dict):
            raise BenchError(f"server failed: {port}")
        cp = ctx.Process(target=client, args=(c_child, port, *client_args), daemon=True)
        cp.start()
        procs.append(cp)
        if not c_parent.poll(limit + 10):
            raise BenchError(f"client gave no result within {limit + 10} s")
        c_res = c_parent.recv()
        with contextlib.suppress(OSError):  # the server may have ended already
            s_parent.send("stop")
        if not s_parent.poll(limit + 10):
            raise BenchError(f"server gave no result within {limit + 10} s")
        s_res = s_parent.recv()
        for res, who in ((c_res, "client"), (s_res, "server")):
            if "error" in res:
                raise BenchError(f"{who}: {res['error']}\n{res.get('trace', '')}")
        return c_res, s_res
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)


# --- aioquic ----------------------------------------------------------------------------


def _aioquic_config(is_client: bool) -> Any:
    import ssl

    from aioquic.quic.configuration import QuicConfiguration

    conf = QuicConfiguration(
        is_client=is_client, alpn_protocols=["bench"], max_datagram_size=DATAGRAM,
        max_data=CONN_WINDOW, max_stream_data=STREAM_WINDOW,
        server_name="bench" if is_client else None,
    )
    if is_client:
        conf.verify_mode = ssl.CERT_NONE
    else:
        conf.certificate, conf.private_key = _self_signed()
    return conf


def _self_signed() -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bench")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _grow_buffers(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)


def _aioquic_server(pipe: multiprocessing.connection.Connection, limit: float) -> None:
    """Serve until the parent says stop: hash each stream, answer with the digest."""

    async def main() -> dict[str, Any]:
        from aioquic.asyncio.server import serve

        conf = _aioquic_config(False)
        results: list[dict[str, Any]] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            h = hashlib.sha256()
            n = 0
            while True:
                chunk = await reader.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
            writer.write(h.hexdigest().encode())
            writer.write_eof()
            results.append({"bytes": n, "digest": h.hexdigest()})

        tasks: set[asyncio.Task[None]] = set()

        def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(handle(reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        # find a free port with a probe socket, then serve on it
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
        probe.close()
        server = await serve(HOST, port, configuration=conf, stream_handler=on_stream)
        _grow_buffers(server._transport)
        cpu0 = time.process_time()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(pipe.fileno(), stop.set)
        pipe.send(port)
        try:
            await asyncio.wait_for(stop.wait(), limit)
        finally:
            loop.remove_reader(pipe.fileno())
            server.close()
        return {"cpu_s": time.process_time() - cpu0, "streams": results}

    _child(pipe, lambda: asyncio.run(main()))


def _aioquic_bulk_client(
    pipe: multiprocessing.connection.Connection, port: int, total: int, limit: float
) -> None:
    async def main() -> dict[str, Any]:
        from aioquic.asyncio.client import connect

        async with connect(HOST, port, configuration=_aioquic_config(True)) as client:
            _grow_buffers(client._transport)
            cpu0 = time.process_time()
            reader, writer = await client.create_stream()
            t_start = time.monotonic()
            full, rest = divmod(total, len(BLOCK))
            for _ in range(full):
                writer.write(BLOCK)
            writer.write(BLOCK[:rest])
            writer.write_eof()
            reply = await asyncio.wait_for(reader.read(), limit)
            t_done = time.monotonic()
            cpu = time.process_time() - cpu0
        return {"t_start": t_start, "t_done": t_done, "reply": reply.decode(), "cpu_s": cpu}

    _child(pipe, lambda: asyncio.run(main()))


def _aioquic_handshake_client(
    pipe: multiprocessing.connection.Connection, port: int, count: int, limit: float
) -> None:
    async def main() -> dict[str, Any]:
        from aioquic.asyncio.client import connect

        conf = _aioquic_config(True)
        times: list[float] = []
        cpu = 0.0
        t_end = time.monotonic() + limit
        for _ in range(count):
            if time.monotonic() > t_end:
                raise BenchError("aioquic handshakes: time limit")
            t0, c0 = time.perf_counter(), time.process_time()
            async with connect(HOST, port, configuration=conf) as client:
                t1, c1 = time.perf_counter(), time.process_time()
                times.append(t1 - t0)
                cpu += c1 - c0
                client.close()
        return {"times": times, "cpu_s": cpu}

    _child(pipe, lambda: asyncio.run(main()))


# --- our handshakes ---------------------------------------------------------------------


class _Established(App):
    def step(self, now: float, conn: Connection, events: list[Event]) -> None:
        _check_closed(events)
        if conn.is_established:
            self.done = True


def _ours_handshake_server(pipe: multiprocessing.connection.Connection, limit: float) -> None:
    """Accept any number of connections (demultiplexed by connection id) until stop."""

    def body() -> dict[str, Any]:
        sock = _udp_socket()
        identity = Identity.generate(os.urandom)
        static = NoiseStatic.generate(identity, os.urandom)
        keyring = Keyring(CLUSTER_KEY)
        conns: dict[bytes, tuple[Connection, Any]] = {}
        max_conns = 64  # bounded: the oldest is forgotten beyond (clients close their own)
        accepted = closed = rejected = 0
        pipe.send(sock.getsockname()[1])
        cpu0 = time.process_time()
        t_end = time.monotonic() + limit
        while time.monotonic() < t_end:
            waitables: list[Any] = [sock, pipe]
            ready, _, _ = select.select(waitables, [], [], 0.05)
            if pipe in ready:
                break
            for _ in range(DRAIN_MAX):
                try:
                    data, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                now = time.monotonic()
                if len(data) > 2 and data[2] == 2:  # initial packet
                    try:
                        conn = Connection.accept(
                            now, data, identity, keyring, os.urandom, config=CONFIG,
                            static=static,
                        )
                    except WireError:
                        rejected += 1
                        continue
                    accepted += 1
                    conns[conn.local_cid] = (conn, addr)
                    if len(conns) > max_conns:
                        del conns[next(iter(conns))]
                else:
                    entry = conns.get(data[4:12])
                    if entry is None:
                        continue
                    conn, addr = entry
                    conn.receive_datagram(now, data)
                for event in conn.take_events():
                    if type(event) is ConnectionClosed:
                        closed += 1
                for out in conn.take_datagrams(now):
                    sock.sendto(out, addr)
                if conn.state_name in ("draining", "closed"):
                    conns.pop(conn.local_cid, None)
        return {"cpu_s": time.process_time() - cpu0, "accepted": accepted, "closed": closed,
                "rejected": rejected}

    _child(pipe, body)


def _ours_handshake_client(
    pipe: multiprocessing.connection.Connection, port: int, count: int, limit: float
) -> None:
    def body() -> dict[str, Any]:
        identity = Identity.generate(os.urandom)
        static = NoiseStatic.generate(identity, os.urandom)
        keyring = Keyring(CLUSTER_KEY)
        times: list[float] = []
        cpu = 0.0
        t_end = time.monotonic() + limit
        for _ in range(count):
            remaining = t_end - time.monotonic()
            if remaining <= 0:
                raise BenchError("our handshakes: time limit")
            t0, c0 = time.perf_counter(), time.process_time()  # socket included, as aioquic's
            sock = _udp_socket()
            sock.connect((HOST, port))
            conn = Connection.connect(
                time.monotonic(), identity, keyring, os.urandom, config=CONFIG, static=static
            )
            loop = UdpLoop(sock, conn)
            loop.send_all(conn.take_datagrams(time.monotonic()))
            loop.run(_Established(), remaining)
            t1, c1 = time.perf_counter(), time.process_time()
            times.append(t1 - t0)
            cpu += c1 - c0
            loop.close()
        return {"times": times, "cpu_s": cpu}

    _child(pipe, body)


# --- the three parts --------------------------------------------------------------------


def throughput_once(
    impl: str, total: int, limit: float = 120.0, drain: int = DRAIN_MAX
) -> dict[str, Any]:
    """One transfer of ``total`` bytes; checks the digest; returns MB/s and CPU.

    ``drain``: for ours, datagrams read per loop turn at most (1: one datagram, then
    timers, events and sending, as aioquic's asyncio protocol does per datagram).
    """
    if impl == "ours":
        c, s = _run_pair(
            _ours_server, (BulkReceiver, 0.0, 1, limit, False, drain),
            _ours_client, (lambda: BulkSender(total), 0.0, 1, limit, False, drain), limit,
        )
        got = s["digest"]
        received = s["app"]["bytes"]
        extra = {"retransmits": c["stats"].get("retransmits", 0),
                 "packets_sent": c["stats"].get("packets.sent", 0),
                 "send_errors": c["send_errors"] + s["send_errors"]}
    else:
        c, s = _run_pair(
            _aioquic_server, (limit,), _aioquic_bulk_client, (total, limit), limit
        )
        if len(s["streams"]) != 1:
            raise BenchError(f"aioquic server saw {len(s['streams'])} streams")
        got = s["streams"][0]["digest"]
        received = s["streams"][0]["bytes"]
        extra = {}
    want = expected_digest(total)
    if got != want or c["reply"] != want or received != total:
        raise BenchError(f"{impl}: bytes not intact ({received} of {total}, digest {got})")
    seconds = c["t_done"] - c["t_start"]
    return {"mb_per_s": total / seconds / 1e6, "seconds": seconds,
            "client_cpu_s": c["cpu_s"], "server_cpu_s": s["cpu_s"], "intact": True, **extra}


def throughput_profile(total: int, limit: float = 120.0) -> dict[str, Any]:
    """One run of ours with cProfile on both sides: the top functions by own time."""
    c, s = _run_pair(
        _ours_server, (BulkReceiver, 0.0, 1, limit, True),
        _ours_client, (lambda: BulkSender(total), 0.0, 1, limit, True), limit,
    )
    return {"bytes": total, "sender_top": c["profile"], "receiver_top": s["profile"]}


NETNS_PREFIX = "fp2p-bench-hol"
"""Network namespaces made by the ``nft`` loss injection are named ``<prefix>-<pid>-<pct>``."""


def nft_available() -> str | None:
    """Why the ``nft`` loss injection cannot run here, or ``None`` if it can."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_SYS_ADMIN)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            package = "iproute2" if tool == "ip" else "nftables"
            return f"{tool!r} is not installed (Debian package {package})"
    return None


class LossyNamespace:
    """A network namespace with its own loopback, where an nftables input rule drops
    ``percent`` % of UDP datagrams (both directions: every datagram is delivered through
    the input hook). A context manager: the namespace is deleted on exit."""

    def __init__(self, percent: int) -> None:
        if not 0 <= percent <= 100:
            raise BenchError(f"loss percent {percent} is not in 0..100")
        self.percent = percent
        self.name = f"{NETNS_PREFIX}-{os.getpid()}-{percent}"

    def __enter__(self) -> LossyNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        try:
            subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"],
                           check=True, capture_output=True)
            if self.percent:
                rules = (
                    "table inet fp2p_bench_loss {\n"
                    "  chain input { type filter hook input priority 0; "
                    f"meta l4proto udp numgen random mod 100 < {self.percent} drop; }}\n"
                    "}\n"
                )
                subprocess.run(["ip", "netns", "exec", self.name, "nft", "-f", "-"],
                               input=rules, text=True, check=True, capture_output=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def hol_once(self, mode: str, duration: float, rate: float | None, seed: int,
                 limit: float = 60.0) -> dict[str, Any]:
        """:func:`hol_once` in a child process inside the namespace (no wrapper loss)."""
        case = json.dumps({"mode": mode, "duration": duration, "rate": rate, "seed": seed,
                           "limit": limit})
        proc = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, os.path.abspath(__file__),
             "--hol-case", case, "--socket-buffer", str(SOCKET_BUFFER)],
            capture_output=True, text=True, timeout=limit + 30,
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise BenchError(f"hol case in namespace {self.name} failed: {proc.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


def hol_once(
    mode: str, loss: float, duration: float, rate: float | None, seed: int, limit: float = 60.0
) -> dict[str, Any]:
    """One head-of-line run; latencies of the control records in ms."""
    c, s = _run_pair(
        _ours_server, (lambda: HolReceiver(2 if mode == "streams" else 1), loss, seed, limit,
                       False),
        _ours_client, (lambda: HolSender(mode, duration, rate), loss, seed, limit, False),
        limit,
    )
    app = s["app"]
    lat = [x * 1000 for x in app["latencies"]]
    expected = int(duration / CONTROL_EVERY_S)
    if not expected - 1 <= len(lat) <= expected + 1:
        raise BenchError(f"hol {mode}: {len(lat)} control records, expected about {expected}")
    span = app["last_data"] - app["first_data"]
    return {
        "p50_ms": _percentile(lat, 0.5), "p99_ms": _percentile(lat, 0.99), "max_ms": max(lat),
        "control_records": len(lat), "sender_srtt_ms": c["srtt_ms"],
        "data_mb_per_s": app["data_bytes"] / span / 1e6 if span > 0 else 0.0,
        "dropped_datagrams": c["dropped"] + s["dropped"],
        "retransmits": c["stats"].get("retransmits", 0) + s["stats"].get("retransmits", 0),
        "sender_probe_timeouts": c["stats"].get("recovery.probe_timeouts", 0),
        "sender_send_blocked_congestion": c["stats"].get("send_blocked.congestion", 0),
    }


def handshake_once(impl: str, count: int, limit: float = 60.0) -> dict[str, Any]:
    """``count`` handshakes in sequence; times in ms and CPU per handshake (both sides)."""
    if impl == "ours":
        c, s = _run_pair(
            _ours_handshake_server, (limit,), _ours_handshake_client, (count, limit), limit
        )
    else:
        c, s = _run_pair(_aioquic_server, (limit,), _aioquic_handshake_client, (count, limit),
                         limit)
    times = [t * 1000 for t in c["times"]]
    return {"times_ms": times, "cpu_ms_per_handshake": (c["cpu_s"] + s["cpu_s"]) / count * 1000,
            "client_cpu_ms": c["cpu_s"] / count * 1000}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def part_throughput(total: int, runs: int, profile: bool) -> dict[str, Any]:
    ours: list[dict[str, Any]] = []
    ours1: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(runs):
        ours.append(throughput_once("ours", total))
        print(f"throughput ours: {ours[-1]}", file=sys.stderr)
        ours1.append(throughput_once("ours", total, drain=1))
        print(f"throughput ours drain=1: {ours1[-1]}", file=sys.stderr)
        theirs.append(throughput_once("aioquic", total))
        print(f"throughput aioquic: {theirs[-1]}", file=sys.stderr)
    o = _median([r["mb_per_s"] for r in ours])
    a = _median([r["mb_per_s"] for r in theirs])
    o1 = _median([r["mb_per_s"] for r in ours1])
    out: dict[str, Any] = {
        "bytes": total, "datagram_bytes": DATAGRAM, "runs": runs, "intact": True,
        "ours_mb_per_s": o, "aioquic_mb_per_s": a, "ratio_ours_over_aioquic": round(o / a, 3),
        "ours_drain": DRAIN_MAX,
        "ours_drain1_mb_per_s": o1, "ratio_ours_drain1_over_aioquic": round(o1 / a, 3),
        "ours_runs_mb_per_s": [round(r["mb_per_s"], 2) for r in ours],
        "ours_drain1_runs_mb_per_s": [round(r["mb_per_s"], 2) for r in ours1],
        "aioquic_runs_mb_per_s": [round(r["mb_per_s"], 2) for r in theirs],
        "ours_cpu_s_per_mb": _median(
            [(r["client_cpu_s"] + r["server_cpu_s"]) / (total / 1e6) for r in ours]
        ),
        "ours_drain1_cpu_s_per_mb": _median(
            [(r["client_cpu_s"] + r["server_cpu_s"]) / (total / 1e6) for r in ours1]
        ),
        "aioquic_cpu_s_per_mb": _median(
            [(r["client_cpu_s"] + r["server_cpu_s"]) / (total / 1e6) for r in theirs]
        ),
        "ours_retransmits": [r["retransmits"] for r in ours],
        "ours_send_errors": [r["send_errors"] for r in ours],
        "aioquic_send_buffer": "unbounded: the whole transfer queued at once",
        "goal_ours_at_least_aioquic": o >= a,
        "goal_ours_drain1_at_least_aioquic": o1 >= a,
    }
    if profile:
        out["profile"] = throughput_profile(min(total, 10_000_000))
    return out


def part_hol(duration: float, runs: int, injection: str = "auto") -> dict[str, Any]:
    """The head-of-line part; ``injection`` is ``auto``, ``nft`` or ``wrapper``."""
    why_not = nft_available()
    if injection == "nft" and why_not is not None:
        raise BenchError(f"--loss-injection nft: {why_not}")
    use_nft = injection == "nft" or (injection == "auto" and why_not is None)
    with contextlib.ExitStack() as stack:
        spaces: dict[float, LossyNamespace] = {}
        if use_nft:
            for loss in (0.0, 0.02):
                spaces[loss] = stack.enter_context(LossyNamespace(round(loss * 100)))
        return _part_hol(duration, runs, spaces, why_not)


def _part_hol(
    duration: float, runs: int, spaces: dict[float, LossyNamespace], why_not: str | None
) -> dict[str, Any]:
    cases = [
        ("streams", 0.0, None), ("one_stream", 0.0, None),
        ("streams", 0.02, None), ("one_stream", 0.02, None),
        ("light_streams", 0.02, 100_000.0),
    ]
    out: dict[str, Any] = {
        "control_every_ms": CONTROL_EVERY_S * 1000, "data_record_bytes": DATA_RECORD,
        "duration_s": duration, "runs": runs,
        "loss_injection": (
            "nft: numgen random drop rule in the input hook of a network namespace per loss "
            "level (both directions)" if spaces else
            "wrapper: seeded random drop around each side's socket send (both directions)"
            + (f"; nft not used: {why_not}" if why_not else "")
        ),
        "light_rate_bytes_per_s": 100_000,
    }
    for run in range(runs):
        for name, loss, rate in cases:
            mode = "one" if name == "one_stream" else "streams"
            if spaces:
                res = spaces[loss].hol_once(mode, duration, rate, seed=100 + run)
            else:
                res = hol_once(mode, loss, duration, rate, seed=100 + run)
            print(f"hol {name} loss={loss}: {res}", file=sys.stderr)
            key = f"{name}_loss{int(loss * 100)}"
            out.setdefault(key, []).append(res)
    summary: dict[str, Any] = {}
    for key in [k for k in out if isinstance(out[k], list)]:
        rs = out.pop(key)
        summary[key] = {
            "p50_ms": _median([r["p50_ms"] for r in rs]),
            "p99_ms": _median([r["p99_ms"] for r in rs]),
            "max_ms": _median([r["max_ms"] for r in rs]),
            "data_mb_per_s": _median([r["data_mb_per_s"] for r in rs]),
            "sender_srtt_ms": _median([r["sender_srtt_ms"] for r in rs]),
            "retransmits": [r["retransmits"] for r in rs],
            "sender_probe_timeouts": [r["sender_probe_timeouts"] for r in rs],
            "dropped_datagrams": [r["dropped_datagrams"] for r in rs],
            "runs_p99_ms": [round(r["p99_ms"], 2) for r in rs],
        }
    out.update(summary)
    for loss in (0, 2):
        o, b = summary[f"streams_loss{loss}"], summary[f"one_stream_loss{loss}"]
        out[f"p99_ratio_one_stream_over_streams_loss{loss}"] = round(b["p99_ms"] / o["p99_ms"], 2)
    out["goal_p99_10x_lower_at_2pct"] = out["p99_ratio_one_stream_over_streams_loss2"] >= 10
    return out


def part_handshake(count: int, runs: int) -> dict[str, Any]:
    res: dict[str, list[dict[str, Any]]] = {"ours": [], "aioquic": []}
    for _ in range(runs):
        for impl in ("ours", "aioquic"):
            r = handshake_once(impl, count)
            print(f"handshake {impl}: median {statistics.median(r['times_ms']):.2f} ms, "
                  f"cpu {r['cpu_ms_per_handshake']:.2f} ms", file=sys.stderr)
            res[impl].append(r)
    out: dict[str, Any] = {"per_run": count, "runs": runs}
    for impl, rs in res.items():
        pooled = [t for r in rs for t in r["times_ms"]]
        out[impl] = {
            "median_ms": _median([statistics.median(r["times_ms"]) for r in rs]),
            "p99_ms": round(_percentile(pooled, 0.99), 3),
            "cpu_ms_per_handshake": _median([r["cpu_ms_per_handshake"] for r in rs]),
            "client_cpu_ms_per_handshake": _median([r["client_cpu_ms"] for r in rs]),
        }
    out["ratio_ours_over_aioquic_median"] = round(
        out["ours"]["median_ms"] / out["aioquic"]["median_ms"], 3
    )
    out["goal_ours_at_most_10ms"] = out["ours"]["median_ms"] <= 10.0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, within a minute")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--parts", default="throughput,hol,handshake")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument(
        "--socket-buffer", type=int, default=SOCKET_BUFFER, help="SO_RCVBUF/SO_SNDBUF bytes"
    )
    parser.add_argument(
        "--loss-injection", choices=("auto", "nft", "wrapper"), default="auto",
        help="how the hol part loses datagrams (auto: nft in a namespace when root, else wrapper)",
    )
    parser.add_argument("--hol-case", help=argparse.SUPPRESS)  # internal: one case, in a netns
    args = parser.parse_args(argv)
    if args.hol_case:
        set_socket_buffer(args.socket_buffer)
        case = json.loads(args.hol_case)
        print(json.dumps(hol_once(case["mode"], 0.0, case["duration"], case["rate"],
                                  case["seed"], case["limit"])))
        return
    if args.socket_buffer < 4096:
        parser.error("--socket-buffer must be at least 4096")
    set_socket_buffer(args.socket_buffer)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    parts = set(args.parts.split(","))
    unknown = parts - {"throughput", "hol", "handshake"}
    if unknown:
        parser.error(f"unknown parts: {sorted(unknown)}")
    try:
        import aioquic
    except ImportError:
        print(json.dumps({"bench": "transport", "error": "aioquic is not installed"}))
        return
    t0 = time.monotonic()
    result: dict[str, Any] = {
        "bench": "transport", "quick": args.quick, "python": platform.python_version(),
        "baseline": f"aioquic {aioquic.__version__}", "host": HOST,
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "socket_buffer_bytes": SOCKET_BUFFER,
    }
    if "throughput" in parts:
        total = 5_000_000 if args.quick else 50_000_000
        result["throughput"] = part_throughput(total, args.runs, not args.no_profile)
    if "hol" in parts:
        result["hol"] = part_hol(1.0 if args.quick else 5.0, args.runs, args.loss_injection)
    if "handshake" in parts:
        result["handshake"] = part_handshake(10 if args.quick else 50, args.runs)
    goals = {}
    for part in ("throughput", "hol", "handshake"):
        for k, v in result.get(part, {}).items():
            if k.startswith("goal_"):
                goals[f"{part}.{k[5:]}"] = v
    result["goals_met"] = goals
    result["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
