"""Send and receive streams: ordered byte streams with retransmission and reassembly.

RFC 9000 sections 2-4, sans-I/O. A :class:`SendStream` holds the bytes the application
wrote until the peer acknowledges them and hands out chunks to put in STREAM frames, lost
ranges first. A :class:`RecvStream` reassembles STREAM frames arriving in any order, with
duplicates and overlaps, into the in-order bytes the application reads. Both are bounded:
the send buffer by ``max_buffer`` (``write`` takes what fits), the receive buffer by the
flow-control window we advertised (a peer that sends beyond it is a connection error).

Stream ids (RFC 9000 section 2.1): the two low bits give the kind. Our connections are
peer-to-peer, so where the RFC says *client* we say the connection's *initiator* (the side
that started the handshake) and *server* its *responder*.

Range sets are kept as flat sorted lists ``[start0, end0, start1, end1, ...]`` of disjoint,
non-adjacent half-open ranges; one ``bisect`` pair and one slice assignment add or remove a
range (:func:`range_add`, :func:`range_remove`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from enum import IntEnum

from foundation_p2p.errors import ConfigError
from foundation_p2p.transport.errors import ErrorCode, TransportError
from foundation_p2p.transport.flow import FlowCredit, FlowWindow

__all__ = [
    "MAX_STREAM_ID",
    "MAX_STREAM_OFFSET",
    "ByteRing",
    "RecvState",
    "RecvStream",
    "SendState",
    "SendStream",
    "StreamClosedError",
    "StreamKind",
    "is_bidirectional",
    "is_initiator_stream",
    "make_stream_id",
    "range_add",
    "range_remove",
    "stream_index",
    "stream_kind",
]

#: Stream ids and offsets are QUIC variable-length integers: at most 2**62 - 1.
MAX_STREAM_ID = (1 << 62) - 1
MAX_STREAM_OFFSET = (1 << 62) - 1

#: Default bound on the lost ranges a SendStream queues for retransmission (pairs).
DEFAULT_MAX_LOST_RANGES = 256
#: Default bound on the separate out-of-order byte ranges a RecvStream holds (pairs).
DEFAULT_MAX_RECV_RANGES = 4096


class StreamKind(IntEnum):
    """The two low bits of a stream id (RFC 9000 section 2.1, client = initiator)."""

    INITIATOR_BIDI = 0
    RESPONDER_BIDI = 1
    INITIATOR_UNI = 2
    RESPONDER_UNI = 3


class SendState(IntEnum):
    """The sending part's state (RFC 9000 section 3.1), derived from what happened to it."""

    READY = 0  # created; nothing sent yet
    SEND = 1  # sending (or retransmitting) data
    DATA_SENT = 2  # every byte and the FIN sent; only retransmissions remain
    DATA_RECVD = 3  # every byte and the FIN acknowledged (terminal)
    RESET_SENT = 4  # abandoned; RESET_STREAM sent
    RESET_RECVD = 5  # the RESET_STREAM was acknowledged (terminal)


class RecvState(IntEnum):
    """The receiving part's state (RFC 9000 section 3.2), derived from what happened to it."""

    RECV = 0  # receiving; final size unknown
    SIZE_KNOWN = 1  # FIN received; bytes below it still missing
    DATA_RECVD = 2  # every byte up to the final size received
    DATA_READ = 3  # the application read them all (terminal)
    RESET_RECVD = 4  # RESET_STREAM received
    RESET_READ = 5  # the application saw the reset (a read after it; terminal)


def _check_id(stream_id: int) -> None:
    if not 0 <= stream_id <= MAX_STREAM_ID:
        raise ConfigError(f"stream id {stream_id} is outside 0..2**62-1")


def stream_kind(stream_id: int) -> StreamKind:
    """Return the kind of a stream id: who opened it, and whether it is bidirectional."""
    _check_id(stream_id)
    return StreamKind(stream_id & 0x3)


def is_bidirectional(stream_id: int) -> bool:
    """Return True for a bidirectional stream id (bit 0x2 clear)."""
    return not stream_id & 0x2


def is_initiator_stream(stream_id: int) -> bool:
    """Return True when the connection's initiator opened this stream (bit 0x1 clear)."""
    return not stream_id & 0x1


def stream_index(stream_id: int) -> int:
    """Return the stream's sequence number among the streams of its kind (id >> 2)."""
    _check_id(stream_id)
    return stream_id >> 2


def make_stream_id(kind: StreamKind, index: int) -> int:
    """Return the id of the ``index``-th stream (from 0) of ``kind``."""
    stream_id = (index << 2) | int(kind)
    _check_id(stream_id)
    return stream_id


def range_add(ranges: list[int], start: int, end: int) -> None:
    """Add ``[start, end)`` to a flat sorted range list, merging overlapping and adjacent ones."""
    if start >= end:
        return
    i = bisect_left(ranges, start)
    j = bisect_right(ranges, end)
    if i & 1:
        if j & 1:
            ranges[i:j] = ()
        else:
            ranges[i:j] = (end,)
    elif j & 1:
        ranges[i:j] = (start,)
    else:
        ranges[i:j] = (start, end)


def range_remove(ranges: list[int], start: int, end: int) -> None:
    """Remove ``[start, end)`` from a flat sorted range list, splitting a range it cuts."""
    if start >= end:
        return
    i = bisect_left(ranges, start)
    j = bisect_right(ranges, end)
    if i & 1:
        if j & 1:
            ranges[i:j] = (start, end)
        else:
            ranges[i:j] = (start,)
    elif j & 1:
        ranges[i:j] = (end,)
    else:
        ranges[i:j] = ()


def _coalesce_smallest_gap(ranges: list[int]) -> None:
    """Merge the two neighbouring ranges with the smallest gap between them (one fewer range)."""
    best = 1
    best_gap = ranges[2] - ranges[1]
    for k in range(3, len(ranges) - 1, 2):
        gap = ranges[k + 1] - ranges[k]
        if gap < best_gap:
            best, best_gap = k, gap
    del ranges[best : best + 2]


class ByteRing:
    """A ring buffer of bytes, grown on demand up to ``max_size``: the streams' storage.

    Positions are relative to the front. :meth:`write` puts bytes at a position (past the
    end leaves a gap whose contents are undefined until written), :meth:`read` copies bytes
    out, :meth:`drop` releases the front. Nothing moves on :meth:`drop` and memory is
    allocated only when the ring grows (doubling, at most ``max_size``); an emptied ring
    larger than ``SHRINK_BYTES`` is released. This avoids what ``bytearray`` does when
    bytes are deleted from its front and appended at its end: a fresh allocation and a
    copy of everything held each time it outgrows its allocation.
    """

    SHRINK_BYTES = 64 * 1024
    MIN_BYTES = 4096

    __slots__ = ("_cap", "_ring", "_start", "_view", "length", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.length = 0
        self._start = 0
        self._cap = 0
        self._ring = bytearray()
        self._view = memoryview(self._ring)

    def __len__(self) -> int:
        return self.length

    def _grow(self, need: int) -> None:
        if need > self.max_size:
            raise ConfigError(f"ring of {self.max_size} bytes cannot hold {need}")
        cap = self._cap
        new_cap = min(self.max_size, max(cap * 2, self.MIN_BYTES))
        if new_cap < need:
            new_cap = need
        new = bytearray(new_cap)
        n = self.length
        start = self._start
        view = self._view
        if start + n <= cap:
            new[:n] = view[start : start + n]
        else:
            first = cap - start
            new[:first] = view[start:]
            new[first:n] = view[: n - first]
        view.release()
        self._ring = new
        self._view = memoryview(new)
        self._start = 0
        self._cap = new_cap

    def write(self, pos: int, data: bytes | memoryview) -> None:
        """Write ``data`` at position ``pos``; the length grows to cover it."""
        n = len(data)
        end = pos + n
        if end > self._cap:
            self._grow(end)
        cap = self._cap
        i = self._start + pos
        if i >= cap:
            i -= cap
        if i + n <= cap:
            self._view[i : i + n] = data
        else:
            first = cap - i
            src = memoryview(data)
            self._view[i:] = src[:first]
            self._view[: n - first] = src[first:]
        if end > self.length:
            self.length = end

    def read(self, pos: int, n: int) -> bytes:
        """Return a copy of ``n`` bytes from position ``pos``."""
        cap = self._cap
        i = self._start + pos
        if i >= cap:
            i -= cap
        if i + n <= cap:
            return self._view[i : i + n].tobytes()
        first = cap - i
        return self._view[i:].tobytes() + self._view[: n - first].tobytes()

    def drop(self, n: int) -> None:
        """Release ``n`` bytes from the front."""
        length = self.length - n
        if length <= 0:
            self.length = 0
            self._start = 0
            if self._cap > self.SHRINK_BYTES:
                self.clear()
            return
        self.length = length
        start = self._start + n
        if start >= self._cap:
            start -= self._cap
        self._start = start

    def clear(self) -> None:
        """Release everything, memory included."""
        self._view.release()
        self._ring = bytearray()
        self._view = memoryview(self._ring)
        self._cap = 0
        self._start = 0
        self.length = 0


class StreamClosedError(ConfigError):
    """The application wrote to a stream it already finished or reset."""


class SendStream:
    """The sending half of a stream: buffered bytes until acknowledged, lost ranges resent.

    The buffer is a :class:`ByteRing` holding offsets ``[base, written)``: everything
    written and not yet acknowledged from the front (an acknowledgement above a hole is
    remembered in a range list until the hole is filled). It never holds more than
    ``max_buffer`` bytes: :meth:`write` accepts what fits and returns the count
    (backpressure: the caller keeps the rest; counted in ``short_writes``).
    :meth:`next_chunk` hands out lost ranges first (no new credit needed), then new bytes
    bounded by the stream's :class:`FlowCredit` and the connection's.

    Bounds: the lost ranges are at most ``max_lost_ranges``; beyond that the two closest are
    merged, resending the few bytes between them (harmless: a receiver drops duplicates),
    counted in ``lost_ranges_coalesced``. Acknowledged ranges above the first hole are
    bounded by the number of packets in flight (one range per acknowledged chunk at most),
    which the loss recovery bounds. Counters: ``retransmitted_bytes``.

    After :meth:`reset` nothing more is sent; the connection sends RESET_STREAM with
    ``reset_code`` and ``final_size``.
    """

    __slots__ = (
        "_acked",
        "_base",
        "_buf",
        "_fin_acked",
        "_fin_lost",
        "_fin_sent",
        "_fin_written",
        "_lost",
        "_reset_acked",
        "_sent_end",
        "credit",
        "final_size",
        "lost_ranges_coalesced",
        "max_buffer",
        "max_lost_ranges",
        "reset_code",
        "retransmitted_bytes",
        "short_writes",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: int,
        *,
        max_buffer: int,
        credit: FlowCredit,
        max_lost_ranges: int = DEFAULT_MAX_LOST_RANGES,
    ) -> None:
        _check_id(stream_id)
        if max_buffer <= 0:
            raise ConfigError(f"max_buffer must be > 0, got {max_buffer}")
        if max_lost_ranges < 1:
            raise ConfigError(f"max_lost_ranges must be >= 1, got {max_lost_ranges}")
        self.stream_id = stream_id
        self.max_buffer = max_buffer
        self.max_lost_ranges = max_lost_ranges
        self.credit = credit
        self._buf = ByteRing(max_buffer)
        self._base = 0  # offset of _buf's front: everything below is acknowledged
        self._sent_end = 0  # first offset never sent
        self._lost: list[int] = []  # ranges to resend, all within [_base, _sent_end)
        self._acked: list[int] = []  # acknowledged ranges above _base
        self._fin_written = False
        self._fin_sent = False
        self._fin_acked = False
        self._fin_lost = False
        self.final_size: int | None = None
        self.reset_code: int | None = None
        self._reset_acked = False
        self.retransmitted_bytes = 0
        self.lost_ranges_coalesced = 0
        self.short_writes = 0

    # -- the application side ------------------------------------------------------------

    def write(self, data: bytes, end: bool = False) -> int:
        """Buffer as much of ``data`` as fits and return the count; ``end`` finishes the stream.

        The stream is finished only if all of ``data`` was taken (a partial write leaves
        ``end`` for the caller's next call with the rest). Writing after the end or a reset
        raises :class:`StreamClosedError`.
        """
        if self.reset_code is not None:
            raise StreamClosedError(f"stream {self.stream_id} was reset")
        if self._fin_written:
            raise StreamClosedError(f"stream {self.stream_id} was already finished")
        buf = self._buf
        held = buf.length
        room = self.max_buffer - held
        n = len(data)
        if self._base + held + n > MAX_STREAM_OFFSET:
            raise ConfigError(f"stream {self.stream_id} would exceed the maximum offset 2**62-1")
        if n > room:
            n = room
            self.short_writes += 1
            if n:
                buf.write(held, memoryview(data)[:n])
        else:
            if n:
                buf.write(held, data)
            if end:
                self._fin_written = True
                self.final_size = self._base + held + n
        return n

    def writable(self) -> int:
        """Return how many bytes :meth:`write` would accept now."""
        return self.max_buffer - self._buf.length

    @property
    def buffered(self) -> int:
        """Bytes held: written and not yet acknowledged from the front."""
        return self._buf.length

    @property
    def bytes_sent(self) -> int:
        """The first offset never sent (the highest offset sent, as a size)."""
        return self._sent_end

    @property
    def bytes_acked(self) -> int:
        """All bytes below this offset are acknowledged."""
        return self._base

    def reset(self, error_code: int) -> None:
        """Abandon the stream: drop the buffer and send nothing more (RESET_STREAM follows).

        The final size is what was sent so far. A stream already finished (all acknowledged)
        or already reset is left as it is.
        """
        if self.reset_code is not None or self.finished:
            return
        self.reset_code = error_code
        self.final_size = self._sent_end
        self._buf.clear()
        self._base = self._sent_end
        self._lost.clear()
        self._acked.clear()
        self._fin_lost = False

    # -- the connection side -------------------------------------------------------------

    def has_data(self) -> bool:
        """Return True when :meth:`next_chunk` has something to send under the stream's credit.

        (Connection-level credit is the connection's to check: it is shared by all streams.)
        """
        if self.reset_code is not None:
            return False
        if self._lost or (self._fin_lost and not self._fin_acked):
            return True
        write_end = self._base + self._buf.length
        if self._sent_end < write_end:
            return self.credit.used < self.credit.limit
        return self._fin_written and not self._fin_sent

    def next_chunk(self, max_len: int, conn_credit: FlowCredit) -> tuple[int, bytes, bool] | None:
        """Return the next ``(offset, data, fin)`` to put in a STREAM frame, or None.

        Lost ranges come first and use no credit again; then new bytes, at most ``max_len``,
        bounded by this stream's credit and ``conn_credit`` (both consumed). When new bytes
        wait but a credit is exhausted, that credit is marked blocked (see
        :meth:`FlowCredit.blocked_at`). A bare FIN is ``(final_size, b"", True)``.
        """
        if self.reset_code is not None:
            return None
        lost = self._lost
        if lost:
            base = self._base
            start = lost[0]
            end = lost[1]
            n = end - start
            if n > max_len:
                n = max_len
            if n > 0:
                stop = start + n
                if stop == end:
                    del lost[:2]
                else:
                    lost[0] = stop
                data = self._buf.read(start - base, n)
                fin = stop == self.final_size and self._fin_sent and not self._fin_acked
                if fin:
                    self._fin_lost = False
                self.retransmitted_bytes += n
                return start, data, fin
        if self._fin_lost and not self._fin_acked and not lost:
            self._fin_lost = False
            final = self.final_size
            assert final is not None
            return final, b"", True
        sent = self._sent_end
        buf = self._buf
        base = self._base
        write_end = base + buf.length
        if sent < write_end:
            credit = self.credit
            avail = credit.limit - credit.used
            if avail <= 0:
                credit.note_blocked()
                return None
            cavail = conn_credit.limit - conn_credit.used
            if cavail <= 0:
                conn_credit.note_blocked()
                return None
            n = write_end - sent
            if n > max_len:
                n = max_len
            if n > avail:
                n = avail
            if n > cavail:
                n = cavail
            if n <= 0:
                return None
            credit.used += n
            conn_credit.used += n
            stop = sent + n
            self._sent_end = stop
            data = buf.read(sent - base, n)
            fin = stop == write_end and self._fin_written
            if fin:
                self._fin_sent = True
            return sent, data, fin
        if self._fin_written and not self._fin_sent:
            self._fin_sent = True
            return sent, b"", True
        return None

    def on_acked(self, offset: int, length: int, fin: bool) -> None:
        """The STREAM frame ``(offset, length, fin)`` was acknowledged: free what we can."""
        if self.reset_code is not None:
            return
        if fin:
            self._fin_acked = True
            self._fin_lost = False
        end = offset + length
        base = self._base
        if end <= base or length <= 0:
            return  # nothing to free (a FIN alone frees no bytes)
        if end > self._sent_end:
            raise ConfigError(
                f"stream {self.stream_id}: acknowledged range ends at {end}, "
                f"beyond what was sent ({self._sent_end})"
            )
        acked = self._acked
        if offset <= base and not acked:
            new_base = end
        else:
            range_add(acked, offset if offset > base else base, end)
            if acked[0] > base:
                new_base = base
            else:
                new_base = acked[1]
                del acked[:2]
        if self._lost:
            range_remove(self._lost, offset, end)
        if new_base > base:
            self._buf.drop(new_base - base)
            self._base = new_base

    def on_lost(self, offset: int, length: int, fin: bool) -> None:
        """The STREAM frame ``(offset, length, fin)`` was declared lost: queue it to resend.

        Bytes acknowledged meanwhile (by another copy) are not queued again.
        """
        if self.reset_code is not None:
            return
        if fin and not self._fin_acked:
            self._fin_lost = True
        end = offset + length
        base = self._base
        if end <= base or length <= 0:
            return
        if end > self._sent_end:
            raise ConfigError(
                f"stream {self.stream_id}: lost range ends at {end}, "
                f"beyond what was sent ({self._sent_end})"
            )
        if offset < base:
            offset = base
        lost = self._lost
        acked = self._acked
        if acked and end > acked[0]:
            # Queue only the parts of [offset, end) not acknowledged since.
            i = bisect_right(acked, offset)
            pos = offset
            if i & 1:  # offset is inside an acknowledged range
                pos = acked[i]
                i += 1
            while pos < end:
                stop = acked[i] if i < len(acked) and acked[i] < end else end
                if stop > pos:
                    range_add(lost, pos, stop)
                if i + 1 >= len(acked):
                    break
                pos = acked[i + 1]
                i += 2
        else:
            range_add(lost, offset, end)
        while len(lost) > 2 * self.max_lost_ranges:
            _coalesce_smallest_gap(lost)
            self.lost_ranges_coalesced += 1

    @property
    def fin_written(self) -> bool:
        """True once the application ended the stream (``write(..., end=True)`` took all)."""
        return self._fin_written

    @property
    def finished(self) -> bool:
        """True once every byte and the FIN are acknowledged."""
        return self._fin_acked and self.reset_code is None and self._base == self.final_size

    def on_reset_acked(self) -> None:
        """The peer acknowledged our RESET_STREAM: the sending part is done (Reset Recvd)."""
        if self.reset_code is not None:
            self._reset_acked = True

    @property
    def state(self) -> SendState:
        """The RFC 9000 section 3.1 state this sending part is in."""
        if self.reset_code is not None:
            return SendState.RESET_RECVD if self._reset_acked else SendState.RESET_SENT
        if self.finished:
            return SendState.DATA_RECVD
        if self._fin_sent:
            return SendState.DATA_SENT
        if self._sent_end > 0:
            return SendState.SEND
        return SendState.READY

    def __repr__(self) -> str:
        return (
            f"SendStream(id={self.stream_id}, acked={self._base}, sent={self._sent_end}, "
            f"written={self._base + self._buf.length}, lost_ranges={len(self._lost) // 2}, "
            f"fin_written={self._fin_written}, reset={self.reset_code})"
        )


class RecvStream:
    """The receiving half of a stream: reassembly of STREAM frames into in-order bytes.

    The buffer is a :class:`ByteRing` from the first unread offset (or, while nothing else
    is buffered, the one in-order frame's bytes object, handed to :meth:`read` uncopied);
    frames beyond a hole are written in place (the hole filled when its bytes come) and
    their ranges kept in a range list, bounded by ``max_ranges`` (a peer making us track
    more separate ranges is closed with PROTOCOL_VIOLATION; an honest sender has about one
    range per lost packet).
    The buffer never exceeds the advertised window: every frame is checked against
    :class:`FlowWindow` ``flow`` (and, given one, the connection's window ``conn_flow``)
    before anything is stored. Duplicates and overlaps are trimmed; ``duplicate_bytes``
    counts the bytes that arrived again below the contiguous point (a re-sent copy of bytes
    held out of order overwrites them in place, uncounted).

    Final size (RFC 9000 section 4.5): set by a FIN or RESET_STREAM; a different final size,
    a final size below data already received, or data beyond it is FINAL_SIZE_ERROR.
    Reading (or a reset, or :meth:`discard`) moves ``flow.consumed`` and, when present,
    ``conn_flow.consumed``; a reset returns the connection credit of the bytes it drops.
    """

    __slots__ = (
        "_buf",
        "_contig_end",
        "_discarding",
        "_head",
        "_ranges",
        "_read_off",
        "_reset_seen",
        "conn_flow",
        "duplicate_bytes",
        "final_size",
        "flow",
        "max_ranges",
        "reset_code",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: int,
        *,
        window: int,
        max_window: int | None = None,
        conn_flow: FlowWindow | None = None,
        max_ranges: int = DEFAULT_MAX_RECV_RANGES,
    ) -> None:
        _check_id(stream_id)
        if max_ranges < 1:
            raise ConfigError(f"max_ranges must be >= 1, got {max_ranges}")
        self.stream_id = stream_id
        self.flow = FlowWindow(window, max_window=max_window)
        self.conn_flow = conn_flow
        self.max_ranges = max_ranges
        self._buf = ByteRing(self.flow.max_window)
        # Unread in-order bytes kept as the frame's own object while _buf is empty (no
        # copy on the common path); when set, _buf and _ranges are empty.
        self._head = b""
        self._read_off = 0  # offset of _head[0] or _buf[0]: everything below was read
        self._contig_end = 0  # every byte below is received
        self._ranges: list[int] = []  # received ranges above _contig_end
        self._discarding = False
        self._reset_seen = False
        self.final_size: int | None = None
        self.reset_code: int | None = None
        self.duplicate_bytes = 0

    def _final_size_error(self, reason: str) -> TransportError:
        return TransportError(ErrorCode.FINAL_SIZE_ERROR, f"stream {self.stream_id}: {reason}")

    def on_frame(self, offset: int, data: bytes, fin: bool) -> None:
        """Take one STREAM frame's bytes; any order, duplicates and overlaps allowed.

        Raises TransportError FINAL_SIZE_ERROR (final size changed, or data beyond it) or
        FLOW_CONTROL_ERROR (beyond the advertised limit of the stream or the connection).
        Checks come first: a frame that raises changes nothing.
        """
        n = len(data)
        end = offset + n
        final = self.final_size
        flow = self.flow
        highest = flow.highest
        if final is not None:
            if end > final:
                raise self._final_size_error(f"data up to {end} beyond the final size {final}")
            if fin and end != final:
                raise self._final_size_error(f"final size changed from {final} to {end}")
        elif fin and end < highest:
            raise self._final_size_error(
                f"final size {end} is below data already received up to {highest}"
            )
        if end > highest:
            if end > flow.limit:
                flow.check_received(end)
            conn = self.conn_flow
            if conn is not None:
                conn.on_received_bytes(end - highest)
            flow.highest = end
        if fin:
            self.final_size = end
        if self.reset_code is not None:
            return
        if self._discarding:
            self._discard_to(flow.highest)
            return
        contig = self._contig_end
        if end <= contig:
            self.duplicate_bytes += n
            return
        ranges = self._ranges
        if offset <= contig and not ranges:
            # In order (the common case): keep the frame's bytes object itself when nothing
            # else is buffered (read() hands it out without a copy), else append what is new.
            buf = self._buf
            if offset == contig and not buf.length and not self._head and type(data) is bytes:
                self._head = data
            else:
                if self._head:
                    self._flush_head()
                pos = contig - self._read_off
                if offset < contig:
                    self.duplicate_bytes += contig - offset
                    buf.write(pos, memoryview(data)[contig - offset :])
                else:
                    buf.write(pos, data)
            self._contig_end = end
            return
        if self._head:
            self._flush_head()
        self._store(offset, data, end, contig, ranges)

    def _flush_head(self) -> None:
        """Move the unread bytes held as one frame's object into the buffer (it is empty)."""
        self._buf.write(0, self._head)
        self._head = b""

    def _store(self, offset: int, data: bytes, end: int, contig: int, ranges: list[int]) -> None:
        """Write a frame at its place in the buffer and merge its range (the general path)."""
        start = offset
        chunk: bytes | memoryview = data
        if offset < contig:
            self.duplicate_bytes += contig - offset
            start = contig
            chunk = memoryview(data)[contig - offset :]
        self._buf.write(start - self._read_off, chunk)
        if start > contig:
            range_add(ranges, start, end)
            if len(ranges) > 2 * self.max_ranges:
                raise TransportError(
                    ErrorCode.PROTOCOL_VIOLATION,
                    f"stream {self.stream_id}: more than {self.max_ranges} separate "
                    "out-of-order byte ranges",
                )
            return
        contig = end
        while ranges and ranges[0] <= contig:
            if ranges[1] > contig:
                contig = ranges[1]
            del ranges[:2]
        self._contig_end = contig

    def read(self, max_bytes: int = -1) -> bytes:
        """Return the in-order bytes available now (at most ``max_bytes`` when >= 0)."""
        n = self._contig_end - self._read_off
        if 0 <= max_bytes < n:
            n = max_bytes
        if n <= 0:
            if self.reset_code is not None:
                self._reset_seen = True
            return b""
        head = self._head
        if head:
            if n == len(head):
                out = head
                self._head = b""
            else:
                out = head[:n]
                self._head = head[n:]
        else:
            buf = self._buf
            out = buf.read(0, n)
            buf.drop(n)
        self._read_off += n
        self.flow.consumed += n
        conn = self.conn_flow
        if conn is not None:
            conn.consumed += n
        return out

    @property
    def readable(self) -> bool:
        """True when :meth:`read` returns bytes, the stream ended, or it was reset."""
        return self._contig_end > self._read_off or self.at_end

    @property
    def at_end(self) -> bool:
        """True when every byte up to the final size was read, or the stream was reset."""
        return self.reset_code is not None or self._read_off == self.final_size

    @property
    def state(self) -> RecvState:
        """The RFC 9000 section 3.2 state this receiving part is in."""
        if self.reset_code is not None:
            return RecvState.RESET_READ if self._reset_seen else RecvState.RESET_RECVD
        final = self.final_size
        if final is None:
            return RecvState.RECV
        if self._read_off == final:
            return RecvState.DATA_READ
        if self._contig_end == final:
            return RecvState.DATA_RECVD
        return RecvState.SIZE_KNOWN

    @property
    def available(self) -> int:
        """In-order bytes received and not yet read."""
        return self._contig_end - self._read_off

    @property
    def buffered(self) -> int:
        """Bytes the buffer holds (in-order, out-of-order and zero-filled holes)."""
        return len(self._head) + self._buf.length

    @property
    def bytes_read(self) -> int:
        """The offset up to which the application has read."""
        return self._read_off

    def max_data_update(self, now: float | None = None, rtt: float | None = None) -> int | None:
        """Return a new MAX_STREAM_DATA limit to advertise, or None (see FlowWindow.update).

        None once the final size is known: the peer needs no more credit.
        """
        if self.final_size is not None or self.reset_code is not None:
            return None
        return self.flow.update(now, rtt)

    def on_reset(self, error_code: int, final_size: int) -> None:
        """The peer reset the stream (RESET_STREAM): check the final size, drop the buffer.

        Unread bytes are discarded and count as consumed, returning their connection credit.
        Raises FINAL_SIZE_ERROR or FLOW_CONTROL_ERROR like :meth:`on_frame`.
        """
        known = self.final_size
        flow = self.flow
        highest = flow.highest
        if known is not None and final_size != known:
            raise self._final_size_error(f"reset final size {final_size}, known {known}")
        if final_size < highest:
            raise self._final_size_error(
                f"reset final size {final_size} is below data received up to {highest}"
            )
        if self.reset_code is not None:
            return
        if self._read_off == known:
            return  # Data Read is terminal: everything was delivered; nothing to interrupt
        if final_size > highest:
            flow.check_received(final_size)
            conn = self.conn_flow
            if conn is not None:
                conn.on_received_bytes(final_size - highest)
            flow.highest = final_size
        self.final_size = final_size
        self.reset_code = error_code
        self._discard_to(final_size)

    def discard(self) -> None:
        """Stop reading (the application sends STOP_SENDING): drop buffered and future bytes.

        Bytes already received and later ones are accounted as consumed at once, so the
        peer's credit keeps flowing until it resets the stream or finishes it.
        """
        self._discarding = True
        self._discard_to(self.flow.highest)

    def _discard_to(self, offset: int) -> None:
        dropped = offset - self._read_off
        if dropped > 0:
            self.flow.consumed += dropped
            if self.conn_flow is not None:
                self.conn_flow.consumed += dropped
        self._read_off = offset
        self._contig_end = offset
        self._buf.clear()
        self._head = b""
        self._ranges.clear()

    def __repr__(self) -> str:
        return (
            f"RecvStream(id={self.stream_id}, read={self._read_off}, "
            f"contiguous={self._contig_end}, highest={self.flow.highest}, "
            f"ranges={len(self._ranges) // 2}, final={self.final_size}, "
            f"reset={self.reset_code})"
        )
