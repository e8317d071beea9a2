"""Streams (RFC 9000 sections 2-4): stream ids, SendStream, RecvStream, final size.

The RFC's sentences are paraphrased in each test's comment; the hypothesis properties
push byte strings through a lossy, duplicating, reordering pipe.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.errors import ConfigError
from foundation_p2p.transport.errors import ErrorCode, TransportError
from foundation_p2p.transport.flow import FlowCredit, FlowWindow
from foundation_p2p.transport.scheduler import StreamScheduler
from foundation_p2p.transport.streams import (
    ByteRing,
    RecvState,
    RecvStream,
    SendState,
    SendStream,
    StreamClosedError,
    StreamKind,
    is_bidirectional,
    is_initiator_stream,
    make_stream_id,
    range_add,
    range_remove,
    stream_index,
    stream_kind,
)

BIG = 1 << 40


def unlimited() -> FlowCredit:
    return FlowCredit(BIG)


def sender(max_buffer: int = 1 << 20, credit: int = BIG) -> SendStream:
    return SendStream(0, max_buffer=max_buffer, credit=FlowCredit(credit))


# -- stream ids (RFC 9000 2.1) -------------------------------------------------------------


def test_the_low_bit_names_the_initiator_and_the_second_bit_the_direction() -> None:
    # RFC 9000 2.1: bit 0x01 is the initiator (client-initiated streams are even), bit 0x02
    # tells bidirectional (0) from unidirectional (1).
    assert stream_kind(0) is StreamKind.INITIATOR_BIDI
    assert stream_kind(1) is StreamKind.RESPONDER_BIDI
    assert stream_kind(2) is StreamKind.INITIATOR_UNI
    assert stream_kind(3) is StreamKind.RESPONDER_UNI
    assert stream_kind(4 * 7 + 3) is StreamKind.RESPONDER_UNI
    assert is_initiator_stream(8) and not is_initiator_stream(9)
    assert is_bidirectional(5) and not is_bidirectional(6)


def test_stream_ids_of_one_kind_count_up_by_four() -> None:
    ids = [make_stream_id(StreamKind.RESPONDER_UNI, i) for i in range(4)]
    assert ids == [3, 7, 11, 15]
    assert [stream_index(i) for i in ids] == [0, 1, 2, 3]


def test_stream_ids_beyond_62_bits_are_refused() -> None:
    with pytest.raises(ConfigError):
        stream_kind(1 << 62)
    with pytest.raises(ConfigError):
        make_stream_id(StreamKind.INITIATOR_BIDI, 1 << 60)


# -- range lists ---------------------------------------------------------------------------


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 60), st.integers(0, 20)), max_size=40))
def test_range_list_matches_a_set_of_integers(ops: list[tuple[bool, int, int]]) -> None:
    ranges: list[int] = []
    model: set[int] = set()
    for add, start, length in ops:
        if add:
            range_add(ranges, start, start + length)
            model.update(range(start, start + length))
        else:
            range_remove(ranges, start, start + length)
            model.difference_update(range(start, start + length))
        covered = {x for k in range(0, len(ranges), 2) for x in range(ranges[k], ranges[k + 1])}
        assert covered == model
        # disjoint, sorted, non-empty, non-adjacent
        assert all(ranges[k] < ranges[k + 1] for k in range(len(ranges) - 1))


# -- the byte ring under both streams -------------------------------------------------------


@given(
    max_size=st.integers(1, 20_000),
    ops=st.lists(
        st.tuples(st.sampled_from(["append", "write", "drop"]), st.integers(0, 9000)),
        max_size=80,
    ),
)
def test_byte_ring_behaves_like_a_bytearray(max_size: int, ops: list[tuple[str, int]]) -> None:
    ring = ByteRing(max_size)
    model = bytearray()
    counter = 0
    for op, n in ops:
        if op == "drop":
            k = min(n, len(model))
            ring.drop(k)
            del model[:k]
        else:
            pos = len(model) if op == "append" else min(n // 3, len(model))
            size = min(n, max_size - pos)
            data = bytes((counter + i) % 251 for i in range(size))
            counter += 1
            ring.write(pos, data)
            model[pos : pos + size] = data
        assert len(ring) == len(model)
        if model:
            assert ring.read(0, len(model)) == bytes(model)
            mid = len(model) // 2
            assert ring.read(mid, len(model) - mid) == bytes(model[mid:])


def test_byte_ring_refuses_to_grow_past_its_bound() -> None:
    ring = ByteRing(10)
    ring.write(0, b"x" * 10)
    with pytest.raises(ConfigError):
        ring.write(10, b"y")


# -- SendStream ----------------------------------------------------------------------------


def test_write_accepts_what_fits_and_acks_free_space() -> None:
    s = sender(max_buffer=1000)
    assert s.write(b"a" * 600) == 600
    assert s.write(b"b" * 600) == 400  # backpressure: the caller keeps the rest
    assert s.short_writes == 1
    assert s.writable() == 0
    off, data, fin = s.next_chunk(700, unlimited()) or (0, b"", False)
    assert (off, len(data), fin) == (0, 700, False)
    s.on_acked(0, 700, False)
    assert s.writable() == 700 and s.buffered == 300
    assert s.write(b"c" * 200) == 200


def test_a_partial_write_does_not_finish_the_stream() -> None:
    s = sender(max_buffer=10)
    assert s.write(b"x" * 20, end=True) == 10
    assert s.final_size is None
    off, data, _fin = s.next_chunk(100, unlimited()) or (0, b"", False)
    s.on_acked(off, len(data), False)
    assert s.write(b"x" * 10, end=True) == 10
    assert s.final_size == 20


def test_chunks_carry_increasing_offsets_and_fin_on_the_last() -> None:
    s = sender()
    s.write(b"0123456789", end=True)
    conn = unlimited()
    assert s.next_chunk(4, conn) == (0, b"0123", False)
    assert s.next_chunk(4, conn) == (4, b"4567", False)
    assert s.next_chunk(4, conn) == (8, b"89", True)
    assert s.next_chunk(4, conn) is None
    assert not s.has_data()


def test_fin_alone_is_a_zero_length_chunk_at_the_final_size() -> None:
    s = sender()
    s.write(b"abc")
    conn = unlimited()
    assert s.next_chunk(10, conn) == (0, b"abc", False)
    s.write(b"", end=True)
    assert s.has_data()
    assert s.next_chunk(10, conn) == (3, b"", True)


def test_lost_ranges_are_resent_first_and_use_no_credit_again() -> None:
    s = SendStream(4, max_buffer=1 << 20, credit=FlowCredit(1000))
    s.write(b"x" * 500 + b"y" * 700)
    conn = FlowCredit(1000)
    assert s.next_chunk(400, conn) == (0, b"x" * 400, False)
    assert s.next_chunk(400, conn) == (400, b"x" * 100 + b"y" * 300, False)
    s.on_lost(0, 400, False)
    assert s.next_chunk(300, conn) == (0, b"x" * 300, False)
    assert s.next_chunk(300, conn) == (300, b"x" * 100, False)
    assert s.credit.used == 800 and conn.used == 800
    assert s.retransmitted_bytes == 400
    assert s.next_chunk(400, conn) == (800, b"y" * 200, False)  # 200 credit left
    assert s.next_chunk(400, conn) is None


def test_adjacent_lost_ranges_merge_into_one_chunk() -> None:
    s = sender()
    s.write(b"a" * 300)
    conn = unlimited()
    for _ in range(3):
        s.next_chunk(100, conn)
    s.on_lost(200, 100, False)
    s.on_lost(0, 100, False)
    s.on_lost(100, 100, False)
    assert s.next_chunk(1000, conn) == (0, b"a" * 300, False)


def test_bytes_acknowledged_by_another_copy_are_not_resent() -> None:
    s = sender()
    s.write(bytes(range(100)))
    conn = unlimited()
    s.next_chunk(100, conn)  # packet 1: [0, 100)
    s.on_lost(0, 100, False)
    assert s.next_chunk(30, conn) == (0, bytes(range(30)), False)  # packet 2: [0, 30)
    s.on_acked(0, 30, False)
    s.on_acked(50, 20, False)  # something else acked [50, 70) ... and a late loss report:
    s.on_lost(0, 100, False)
    got = []
    while (chunk := s.next_chunk(100, conn)) is not None:
        got.append((chunk[0], len(chunk[1])))
    assert got == [(30, 20), (70, 30)]


def test_send_is_bounded_by_stream_and_connection_credit_and_reports_blocked() -> None:
    s = SendStream(0, max_buffer=1 << 20, credit=FlowCredit(100))
    s.write(b"z" * 1000)
    conn = FlowCredit(60)
    assert s.next_chunk(1000, conn) == (0, b"z" * 60, False)
    assert s.next_chunk(1000, conn) is None
    assert conn.blocked_at() == 60 and s.credit.blocked_at() is None
    conn.raise_limit(1000)
    assert s.next_chunk(1000, conn) == (60, b"z" * 40, False)
    assert s.next_chunk(1000, conn) is None
    assert s.credit.blocked_at() == 100  # STREAM_DATA_BLOCKED at 100
    assert not s.has_data()  # blocked by its own credit: not ready for the scheduler
    s.credit.raise_limit(2000)
    assert s.has_data()


def test_the_stream_is_finished_only_when_all_data_and_the_fin_are_acked() -> None:
    s = sender()
    s.write(b"hello", end=True)
    conn = unlimited()
    off, data, fin = s.next_chunk(3, conn) or (0, b"", False)
    off2, data2, fin2 = s.next_chunk(3, conn) or (0, b"", False)
    assert fin2 and not fin
    s.on_acked(off2, len(data2), fin2)
    assert not s.finished
    s.on_acked(off, len(data), fin)
    assert s.finished and s.buffered == 0


def test_a_fin_alone_acked_before_its_data_frees_nothing_and_raises_nothing() -> None:
    # found by bench/transport.py at 2% loss: the zero-length FIN frame's ack arrived
    # while the data before it was unacknowledged, and on_acked indexed an empty range list
    s = sender()
    s.write(b"abc")
    conn = unlimited()
    assert s.next_chunk(10, conn) == (0, b"abc", False)
    s.write(b"", end=True)
    assert s.next_chunk(10, conn) == (3, b"", True)
    s.on_acked(3, 0, True)
    assert not s.finished and s.buffered == 3
    s.on_acked(0, 3, False)
    assert s.finished and s.buffered == 0


def test_a_lost_fin_is_sent_again_alone_when_its_data_was_acked() -> None:
    s = sender()
    s.write(b"abc")
    conn = unlimited()
    s.next_chunk(10, conn)
    s.write(b"", end=True)
    assert s.next_chunk(10, conn) == (3, b"", True)
    s.on_acked(0, 3, False)
    s.on_lost(3, 0, True)
    assert s.has_data()
    assert s.next_chunk(10, conn) == (3, b"", True)
    s.on_acked(3, 0, True)
    assert s.finished


def test_a_lost_last_chunk_is_resent_with_its_fin() -> None:
    s = sender()
    s.write(b"abcdef", end=True)
    conn = unlimited()
    s.next_chunk(3, conn)
    s.next_chunk(3, conn)
    s.on_lost(3, 3, True)
    assert s.next_chunk(10, conn) == (3, b"def", True)
    assert s.next_chunk(10, conn) is None


def test_reset_fixes_the_final_size_at_what_was_sent_and_stops_sending() -> None:
    # RFC 9000 4.5: on RESET_STREAM the final size is the amount of data sent (the flow
    # control credit consumed).
    s = sender()
    s.write(b"q" * 100)
    s.next_chunk(40, unlimited())
    s.reset(7)
    assert s.reset_code == 7 and s.final_size == 40
    assert not s.has_data() and s.next_chunk(100, unlimited()) is None
    s.on_lost(0, 40, False)
    assert s.next_chunk(100, unlimited()) is None
    with pytest.raises(StreamClosedError):
        s.write(b"more")


def test_writing_after_the_end_is_refused() -> None:
    s = sender()
    s.write(b"done", end=True)
    with pytest.raises(StreamClosedError):
        s.write(b"!")


def test_acks_beyond_what_was_sent_are_a_local_bug() -> None:
    s = sender()
    s.write(b"abc")
    s.next_chunk(2, unlimited())
    with pytest.raises(ConfigError):
        s.on_acked(0, 3, False)


def test_the_lost_range_list_is_bounded_by_merging_the_closest_ranges() -> None:
    s = SendStream(0, max_buffer=1 << 20, credit=FlowCredit(BIG), max_lost_ranges=4)
    s.write(bytes(1000))
    conn = unlimited()
    for _ in range(100):
        s.next_chunk(10, conn)
    for k in (0, 100, 200, 300, 400, 410):  # six holes, at most four ranges
        s.on_lost(k, 5, False)
    assert s.lost_ranges_coalesced == 2
    sent = []
    while (chunk := s.next_chunk(1000, conn)) is not None:
        sent.append((chunk[0], len(chunk[1])))
    assert len(sent) == 4
    covered = {x for off, n in sent for x in range(off, off + n)}
    for k in (0, 100, 200, 300, 400, 410):
        assert set(range(k, k + 5)) <= covered


# -- RecvStream ----------------------------------------------------------------------------


def test_data_is_delivered_in_order_whatever_the_arrival_order() -> None:
    # RFC 9000 2.2: endpoints MUST deliver stream data as an ordered byte stream.
    r = RecvStream(1, window=1000)
    r.on_frame(6, b"ghi", False)
    assert r.read() == b"" and not r.readable
    r.on_frame(3, b"def", False)
    assert r.read() == b""
    r.on_frame(0, b"abc", False)
    assert r.readable
    assert r.read() == b"abcdefghi"


def test_duplicate_and_overlapping_data_is_discarded() -> None:
    # RFC 9000 2.2: data already received at an offset can be discarded.
    r = RecvStream(1, window=1000)
    r.on_frame(0, b"abcd", False)
    r.on_frame(2, b"cdef", False)
    r.on_frame(0, b"ab", False)
    r.on_frame(8, b"ij", False)
    r.on_frame(7, b"hij", False)
    r.on_frame(4, b"efgh", False)
    assert r.read() == b"abcdefghij"
    assert r.duplicate_bytes == 2 + 2 + 2  # below the contiguous point


def test_read_takes_at_most_max_bytes() -> None:
    r = RecvStream(1, window=1000)
    r.on_frame(0, b"abcdef", True)
    assert r.read(4) == b"abcd"
    assert not r.at_end
    assert r.read(4) == b"ef"
    assert r.at_end and r.readable


def test_data_beyond_the_stream_window_is_a_flow_control_error() -> None:
    # RFC 9000 4.1: a receiver MUST close with FLOW_CONTROL_ERROR on a violated limit.
    r = RecvStream(1, window=100)
    r.on_frame(50, b"x" * 50, False)
    with pytest.raises(TransportError) as info:
        r.on_frame(90, b"x" * 11, False)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    assert r.flow.highest == 100


def test_data_beyond_the_connection_window_is_a_flow_control_error_and_changes_nothing() -> None:
    conn = FlowWindow(150)
    a = RecvStream(0, window=100, conn_flow=conn)
    b = RecvStream(4, window=100, conn_flow=conn)
    a.on_frame(0, b"a" * 100, False)
    b.on_frame(0, b"b" * 50, False)
    with pytest.raises(TransportError) as info:
        b.on_frame(50, b"b" * 1, False)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    assert b.flow.highest == 50 and conn.highest == 150
    assert a.read() == b"a" * 100
    assert conn.consumed == 100


def test_the_receive_buffer_never_exceeds_the_window_and_credit_follows_reads() -> None:
    r = RecvStream(1, window=1000)
    r.on_frame(900, b"x" * 100, False)  # a hole of 900 bytes before it
    assert r.buffered == 1000
    r.on_frame(0, b"y" * 900, False)
    assert r.read(600) == b"y" * 600
    assert r.max_data_update() == 1600
    r.on_frame(1000, b"z" * 600, False)
    assert r.buffered <= 1000


def test_a_changed_final_size_is_a_final_size_error() -> None:
    # RFC 9000 4.5: once a final size is known it cannot change; FINAL_SIZE_ERROR.
    r = RecvStream(1, window=1000)
    r.on_frame(0, b"abc", True)
    with pytest.raises(TransportError) as info:
        r.on_frame(0, b"abcd", True)
    assert info.value.code == ErrorCode.FINAL_SIZE_ERROR
    with pytest.raises(TransportError):
        r.on_frame(0, b"ab", True)
    r.on_frame(0, b"abc", True)  # the same final size again is fine
    with pytest.raises(TransportError):
        r.on_reset(0, 4)


def test_data_beyond_the_final_size_is_a_final_size_error_even_after_reading_all() -> None:
    # RFC 9000 4.5: data at or beyond the final size is FINAL_SIZE_ERROR, even after the
    # stream is closed.
    r = RecvStream(1, window=1000)
    r.on_frame(0, b"abc", True)
    assert r.read() == b"abc" and r.at_end
    with pytest.raises(TransportError) as info:
        r.on_frame(3, b"d", False)
    assert info.value.code == ErrorCode.FINAL_SIZE_ERROR
    r.on_frame(3, b"", False)  # nothing at or beyond it: fine


def test_a_final_size_below_data_already_received_is_a_final_size_error() -> None:
    r = RecvStream(1, window=1000)
    r.on_frame(10, b"x" * 10, False)
    with pytest.raises(TransportError) as info:
        r.on_frame(0, b"y" * 15, True)
    assert info.value.code == ErrorCode.FINAL_SIZE_ERROR
    with pytest.raises(TransportError):
        r.on_reset(0, 19)


def test_a_reset_beyond_the_window_is_a_flow_control_error() -> None:
    r = RecvStream(1, window=100)
    with pytest.raises(TransportError) as info:
        r.on_reset(3, 101)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR


def test_a_reset_drops_the_buffer_and_returns_the_connection_credit() -> None:
    # RFC 9000 4.5: the receiver uses the final size to account for all bytes of the
    # stream in its connection-level flow controller.
    conn = FlowWindow(1000)
    r = RecvStream(1, window=1000, conn_flow=conn)
    r.on_frame(0, b"a" * 100, False)
    r.on_frame(300, b"c" * 100, False)
    r.on_reset(42, 500)
    assert r.reset_code == 42 and r.at_end and r.readable
    assert r.read() == b"" and r.buffered == 0
    assert conn.highest == 500 and conn.consumed == 500
    assert r.max_data_update() is None
    r.on_reset(42, 500)  # a repeated RESET_STREAM is harmless
    r.on_frame(400, b"d" * 100, False)  # late data within the final size: dropped
    assert r.buffered == 0
    with pytest.raises(TransportError):
        r.on_frame(450, b"e" * 100, False)


def test_discard_drops_buffered_and_later_bytes_but_keeps_credit_flowing() -> None:
    conn = FlowWindow(10_000)
    r = RecvStream(1, window=100, conn_flow=conn)
    r.on_frame(0, b"a" * 80, False)
    r.discard()
    assert r.buffered == 0 and r.flow.consumed == 80
    assert r.max_data_update() == 180
    r.on_frame(80, b"b" * 100, False)
    assert r.buffered == 0 and conn.consumed == 180


def test_too_many_separate_ranges_close_the_connection() -> None:
    r = RecvStream(1, window=1000, max_ranges=3)
    for k in (10, 20, 30):
        r.on_frame(k, b"x", False)
    with pytest.raises(TransportError) as info:
        r.on_frame(40, b"x", False)
    assert info.value.code == ErrorCode.PROTOCOL_VIOLATION


def test_no_window_update_once_the_final_size_is_known() -> None:
    r = RecvStream(1, window=100)
    r.on_frame(0, b"x" * 100, True)
    r.read()
    assert r.max_data_update() is None


# -- stream states (RFC 9000 section 3) ------------------------------------------------------


def test_sending_part_walks_ready_send_data_sent_data_recvd() -> None:
    # RFC 9000 3.1: a new stream is Ready; the first STREAM frame sent moves it to Send;
    # with the FIN sent it is in Data Sent, where only retransmissions happen; once all
    # data is acknowledged it is in Data Recvd, a terminal state.
    s = sender()
    assert s.state is SendState.READY
    s.write(b"abcdef", end=True)
    assert s.state is SendState.READY
    conn = unlimited()
    first = s.next_chunk(3, conn)
    assert first is not None and s.state is SendState.SEND
    second = s.next_chunk(3, conn)
    assert second is not None and second[2] and s.state is SendState.DATA_SENT
    s.on_lost(0, 3, False)
    assert s.next_chunk(10, conn) == (0, b"abc", False)  # retransmission in Data Sent
    assert s.state is SendState.DATA_SENT
    s.on_acked(0, 3, False)
    s.on_acked(3, 3, True)
    assert s.state is SendState.DATA_RECVD


def test_sending_part_can_be_reset_from_ready_send_or_data_sent() -> None:
    # RFC 9000 3.1: from Ready, Send or Data Sent the application can abandon the stream
    # (Reset Sent); once the RESET_STREAM is acknowledged it is in Reset Recvd (terminal).
    for sends in (0, 1, 2):
        s = sender()
        s.write(b"abcdef", end=True)
        for _ in range(sends):
            s.next_chunk(3, unlimited())
        s.reset(9)
        assert s.state is SendState.RESET_SENT
        assert s.final_size == 3 * sends
        s.on_reset_acked()
        assert s.state is SendState.RESET_RECVD


def test_a_fully_acknowledged_stream_cannot_be_reset() -> None:
    # RFC 9000 3.1: Data Recvd is terminal.
    s = sender()
    s.write(b"ab", end=True)
    off, data, fin = s.next_chunk(10, unlimited()) or (0, b"", False)
    s.on_acked(off, len(data), fin)
    s.reset(1)
    assert s.state is SendState.DATA_RECVD and s.reset_code is None


def test_receiving_part_walks_recv_size_known_data_recvd_data_read() -> None:
    # RFC 9000 3.2: a FIN makes the final size known (Size Known); with every byte up to
    # it received the part is in Data Recvd; once the application read it all, Data Read.
    r = RecvStream(1, window=100)
    assert r.state is RecvState.RECV
    r.on_frame(3, b"def", True)
    assert r.state is RecvState.SIZE_KNOWN
    r.on_frame(0, b"abc", False)
    assert r.state is RecvState.DATA_RECVD
    assert r.read(4) == b"abcd" and r.state is RecvState.DATA_RECVD
    assert r.read() == b"ef" and r.state is RecvState.DATA_READ


def test_a_reset_in_recv_or_size_known_leads_to_reset_recvd_then_reset_read() -> None:
    # RFC 9000 3.2: a RESET_STREAM in Recv or Size Known moves the part to Reset Recvd;
    # once the application learns of it, Reset Read.
    for fin in (False, True):
        r = RecvStream(1, window=100)
        r.on_frame(5, b"xyz", fin)
        r.on_reset(4, 8)
        assert r.state is RecvState.RESET_RECVD
        assert r.read() == b""
        assert r.state is RecvState.RESET_READ


def test_a_reset_after_everything_was_read_changes_nothing() -> None:
    # RFC 9000 3.2: Data Read is terminal.
    r = RecvStream(1, window=100)
    r.on_frame(0, b"abc", True)
    r.read()
    r.on_reset(4, 3)
    assert r.state is RecvState.DATA_READ and r.reset_code is None
    with pytest.raises(TransportError):
        r.on_reset(4, 5)  # still a final size error


# -- the pipe: SendStream -> lossy, duplicating, reordering network -> RecvStream -----------


def run_pipe(
    payload: bytes,
    seed: int,
    *,
    window: int,
    conn_window: int,
    max_buffer: int,
    loss: float,
    dup: float,
) -> tuple[bytes, int]:
    """Move ``payload`` through a hostile network; return (bytes read, peak buffered)."""
    rng = random.Random(seed)
    conn_recv = FlowWindow(conn_window)
    recv = RecvStream(0, window=window, conn_flow=conn_recv)
    conn_credit = FlowCredit(conn_window)
    send = SendStream(0, max_buffer=max_buffer, credit=FlowCredit(window))
    in_flight: list[tuple[int, bytes, bool]] = []
    delayed: list[tuple[int, bytes, bool]] = []  # copies that arrive late, never acked
    late_acks: list[tuple[int, int, bool]] = []  # acks that come after the loss was declared
    written = 0
    ended = False
    out = bytearray()
    peak = 0
    for _step in range(20_000 + 20 * len(payload)):
        if not ended and rng.random() < 0.5:
            piece = payload[written : written + rng.randint(0, 3000)]
            end = written + len(piece) == len(payload)
            taken = send.write(piece, end=end)
            written += taken
            ended = end and taken == len(piece)
        if rng.random() < 0.6:
            chunk = send.next_chunk(rng.randint(1, 1500), conn_credit)
            if chunk is not None:
                # RFC 9000 2.2: the data at a given offset never changes when sent again.
                assert chunk[1] == payload[chunk[0] : chunk[0] + len(chunk[1])]
                in_flight.append(chunk)
        if in_flight and rng.random() < 0.7:
            off, data, fin = in_flight.pop(rng.randrange(len(in_flight)))
            fate = rng.random()
            if fate < loss:  # declared lost: the sender queues it again
                kind = rng.random()
                if kind < 0.3:
                    recv.on_frame(off, data, fin)  # it did arrive; only the ack was lost
                elif kind < 0.5:
                    delayed.append((off, data, fin))  # it arrives late
                elif kind < 0.7:
                    recv.on_frame(off, data, fin)  # it arrived and its ack comes late
                    late_acks.append((off, len(data), fin))
                send.on_lost(off, len(data), fin)
            else:
                recv.on_frame(off, data, fin)
                if rng.random() < dup:
                    delayed.append((off, data, fin))
                send.on_acked(off, len(data), fin)
        if late_acks and rng.random() < 0.2:
            send.on_acked(*late_acks.pop(rng.randrange(len(late_acks))))
        if delayed and rng.random() < 0.2:
            off, data, fin = delayed.pop(rng.randrange(len(delayed)))
            recv.on_frame(off, data, fin)
        peak = max(peak, recv.buffered)
        assert recv.buffered <= window
        assert recv.flow.highest - recv.flow.consumed <= window
        assert conn_recv.highest - conn_recv.consumed <= conn_window
        if rng.random() < 0.4:
            out += recv.read(rng.randint(0, 4000))
            update = recv.max_data_update()
            if update is not None:
                send.credit.raise_limit(update)
            update = conn_recv.update()
            if update is not None:
                conn_credit.raise_limit(update)
        if recv.at_end and send.finished and not in_flight and not late_acks:
            break
    else:
        raise AssertionError(f"no progress: {send!r} {recv!r}")
    return bytes(out), peak


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=20_000),
    seed=st.integers(0, 2**32 - 1),
    window=st.integers(1, 8000),
    max_buffer=st.integers(1, 8000),
    loss=st.sampled_from([0.0, 0.05, 0.3]),
    dup=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_bytes_arrive_exact_and_in_order_through_a_hostile_network(
    payload: bytes, seed: int, window: int, max_buffer: int, loss: float, dup: float
) -> None:
    out, _peak = run_pipe(
        payload,
        seed,
        window=window,
        conn_window=window * 2,
        max_buffer=max_buffer,
        loss=loss,
        dup=dup,
    )
    assert out == payload


def test_a_large_transfer_with_loss_and_reordering_is_byte_exact() -> None:
    payload = random.Random(7).randbytes(300_000)
    out, peak = run_pipe(
        payload, 11, window=64_000, conn_window=100_000, max_buffer=50_000, loss=0.1, dup=0.1
    )
    assert out == payload
    assert 0 < peak <= 64_000


def run_shared_pipe(
    payloads: list[bytes], urgencies: list[int], seed: int, *, window: int, conn_window: int
) -> list[bytes]:
    """Several streams share connection credit; the scheduler picks who sends each chunk."""
    rng = random.Random(seed)
    conn_credit = FlowCredit(conn_window)
    conn_recv = FlowWindow(conn_window)
    scheduler = StreamScheduler(fair_share=4)
    ids = [4 * k for k in range(len(payloads))]
    sends = {sid: SendStream(sid, max_buffer=3000, credit=FlowCredit(window)) for sid in ids}
    recvs = {sid: RecvStream(sid, window=window, conn_flow=conn_recv) for sid in ids}
    for sid, urgency in zip(ids, urgencies, strict=True):
        scheduler.add(sid, urgency=urgency, incremental=bool(sid & 4))
    written = dict.fromkeys(ids, 0)
    ended = dict.fromkeys(ids, False)
    out = {sid: bytearray() for sid in ids}
    in_flight: list[tuple[int, int, bytes, bool]] = []
    for _step in range(100_000):
        for sid, payload in zip(ids, payloads, strict=True):
            if not ended[sid] and rng.random() < 0.3:
                piece = payload[written[sid] : written[sid] + rng.randint(0, 2000)]
                end = written[sid] + len(piece) == len(payload)
                taken = sends[sid].write(piece, end=end)
                written[sid] += taken
                ended[sid] = end and taken == len(piece)
            scheduler.set_ready(sid, sends[sid].has_data())
        picked = scheduler.next()
        if picked is not None:
            chunk = sends[picked].next_chunk(rng.randint(1, 1200), conn_credit)
            if chunk is not None:
                in_flight.append((picked, *chunk))
        if in_flight and rng.random() < 0.8:
            sid, off, data, fin = in_flight.pop(rng.randrange(len(in_flight)))
            if rng.random() < 0.1:
                sends[sid].on_lost(off, len(data), fin)
            else:
                recvs[sid].on_frame(off, data, fin)
                sends[sid].on_acked(off, len(data), fin)
        assert conn_recv.highest - conn_recv.consumed <= conn_window
        assert sum(r.buffered for r in recvs.values()) <= conn_window
        sid = ids[rng.randrange(len(ids))]
        out[sid] += recvs[sid].read(rng.randint(0, 3000))
        update = recvs[sid].max_data_update()
        if update is not None:
            sends[sid].credit.raise_limit(update)
        update = conn_recv.update()
        if update is not None:
            conn_credit.raise_limit(update)
        if not in_flight and all(r.at_end for r in recvs.values()):
            break
    else:
        raise AssertionError("no progress")
    return [bytes(out[sid]) for sid in ids]


@settings(max_examples=30, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=6000), min_size=1, max_size=4),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    window=st.integers(500, 5000),
)
def test_streams_sharing_connection_credit_each_arrive_exact(
    payloads: list[bytes], data: st.DataObject, seed: int, window: int
) -> None:
    # RFC 9000 2.2: delivered in order within a stream, independently across streams; the
    # connection window bounds what all of them together make us buffer.
    urgencies = data.draw(
        st.lists(st.integers(0, 7), min_size=len(payloads), max_size=len(payloads))
    )
    got = run_shared_pipe(payloads, urgencies, seed, window=window, conn_window=window + 700)
    assert got == payloads
