"""Channels when the peer or the membership misbehaves (issue 11's 10 % loss soak, replayed
deterministically on NodeCore in memory, virtual time):

- the subscriber stops a channel stream (STOP_SENDING) while the publisher has records for
  it: the publisher drops them (counted), closes the connection, and a later record goes
  over a new connection; nothing raises out of the pump;
- the membership declares a member failed while its connection still carries a record:
  the member is not forgotten mid-stream (the receive framing would restart inside a
  record and break the stream: the WireError the soak saw);
- our channel streams cannot be the connection's first unidirectional streams: the
  connection is closed and replaced instead of warning every second for good;
- a connection ends while membership holds the peer alive: the retry redials it without
  waiting for a record (which was skipped while unreachable), with a doubling backoff.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any

from test_channels_node import B, cluster

from foundation_p2p.addresses import NodeId
from foundation_p2p.channels.names import DATA, channel_stream_id
from foundation_p2p.errors import ConfigError
from foundation_p2p.membership.state import Member, MemberState


def test_a_stop_sending_on_a_channel_stream_never_crashes_the_publisher() -> None:
    net, a, b, _ = cluster()
    sub = b.channels.subscribe("data")
    assert net.run(lambda: a.channels.core.subscribers_of("data") == [b.node_id])
    a.channels.broadcast(net.stamp(), "data", [0, b""])
    assert net.run(lambda: len(sub) == 1)
    sub.take()
    payload = random.Random(7).randbytes(100_000)
    for i in range(1, 41):  # 4 MB: most of it waits for stream credit
        a.channels.broadcast(net.stamp(), "data", [i, payload])
    assert sum(len(q) for q in a.channels._out[b.node_id].pending) > 5
    conn_b = b.transport.connection(a.node_id)
    assert conn_b is not None
    old_cid = conn_b.local_cid
    sid = channel_stream_id(DATA, initiator=not conn_b.is_client)
    conn_b.stop_sending(sid)  # what b does when a record fails to decode
    # before the fix: ConfigError "stream 10: no open sending side" out of the pump
    assert net.run(lambda: a.counters["channels.connections_closed.stream_stopped"] == 1, 10.0)
    assert a.counters["channels.send.dropped_stream_stopped"] > 0
    # the channel comes back on a new connection (the retry redials)
    start = net.now
    assert net.run(lambda: net.now >= start + a.channels.retry_after_s + 0.1)
    sub.take()
    a.channels.broadcast(net.stamp(), "data", [99, b"after"])
    assert net.run(lambda: len(sub) >= 1, 10.0)
    assert sub.take()[-1].value == [99, b"after"]
    conn_b = b.transport.connection(a.node_id)
    assert conn_b is not None and conn_b.local_cid != old_cid


class _SaysFailed:
    """The membership, except that it reports ``failed`` as FAILED (a flap under loss)."""

    def __init__(self, inner: Any, failed: NodeId) -> None:
        self._inner = inner
        self._failed = failed

    def member(self, node_id: NodeId) -> Member | None:
        m: Member | None = self._inner.member(node_id)
        if m is not None and node_id == self._failed:
            return dataclasses.replace(m, state=MemberState.FAILED)
        return m

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_member_declared_failed_mid_record_is_not_forgotten_while_connected() -> None:
    net, a, b, _ = cluster()
    sub = a.channels.subscribe("data")
    assert net.run(lambda: b.channels.core.subscribers_of("data") == [a.node_id])
    big = random.Random(8).randbytes(3_000_000)
    b.channels.broadcast(net.stamp(), "data", [0, big])
    b.channels.broadcast(net.stamp(), "data", [1, b"next"])
    # part of the record arrived at a, then a's membership says b failed (a flap)
    def mid_record() -> bool:
        peer = a.channels.core._peers.get(b.node_id)
        return peer is not None and any(d is not None and not d.at_boundary
                                        for d in peer.decoders)

    assert net.run(mid_record, 10.0)
    a.channels.membership = _SaysFailed(a.channels.membership, b.node_id)  # type: ignore[assignment]
    a.channels._next_maint = net.now  # the maintenance tick is due
    assert net.run(lambda: len(sub) == 2, 30.0)
    assert [d.value[0] for d in sub.take()] == [0, 1]
    assert a.counters["channels.forget_deferred_connected"] >= 1
    assert not [k for k in a.counters.snapshot() if k.startswith("channels.receive.dropped")]


def test_misnumbered_channel_streams_replace_the_connection() -> None:
    net, a, b, _ = cluster()
    sub = b.channels.subscribe("data")
    assert net.run(lambda: a.channels.core.subscribers_of("data") == [b.node_id])
    a.channels.broadcast(net.stamp(), "data", [0, b""])
    assert net.run(lambda: len(sub) == 1)
    sub.take()
    # our sending state is lost while the connection runs (what forgetting a flapping
    # member did): the next record would open streams 18, 22... on the same connection
    del a.channels._out[b.node_id]
    a.channels.broadcast(net.stamp(), "data", [1, b""])
    assert a.counters["channels.connections_closed.misnumbered"] == 1
    start = net.now
    assert net.run(lambda: net.now >= start + a.channels.retry_after_s + 0.1)
    a.channels.broadcast(net.stamp(), "data", [2, b""])
    assert net.run(lambda: len(sub) >= 1, 10.0)
    assert sub.take()[-1].value == [2, b""]
    assert a.counters["channels.connections_closed.misnumbered"] == 1  # not every second
    assert B in net.cores


def test_a_peer_alive_in_membership_is_redialled_after_its_connection_ends() -> None:
    net, a, b, _ = cluster()
    sub = b.channels.subscribe("data")
    assert net.run(lambda: a.channels.core.subscribers_of("data") == [b.node_id])
    a.channels.broadcast(net.stamp(), "data", [0, b""])
    assert net.run(lambda: len(sub) == 1)
    sub.take()
    dials = a.counters["transport.dials"] + b.counters["transport.dials"]
    b.transport.close(a.node_id, 0, "test")  # the connection ends; both stay members
    assert net.run(lambda: a.transport.connection(b.node_id) is None, 5.0)
    # no record is published meanwhile: the retry alone dials again
    assert net.run(lambda: a.counters["channels.redials"] + b.counters["channels.redials"] >= 1,
                   5.0)
    assert a.counters["transport.dials"] + b.counters["transport.dials"] > dials

    def connected() -> bool:
        conn = a.transport.connection(b.node_id)
        return conn is not None and conn.is_established

    assert net.run(connected, 5.0)
    assert a.counters["channels.send.skipped_unreachable"] == 0
    a.channels.broadcast(net.stamp(), "data", [1, b"again"])
    assert net.run(lambda: len(sub) == 1, 5.0)
    assert sub.take()[0].value == [1, b"again"]


def test_failed_redials_back_off_up_to_retry_max_s() -> None:
    net, a, b, _ = cluster()
    out_of_reach: list[float] = []
    real = a.channels._connect

    def refuse(now: Any, node_id: NodeId) -> Any:
        if node_id == b.node_id:
            out_of_reach.append(net.now)
            raise ConfigError("test: no route")
        return real(now, node_id)

    a.channels._connect = refuse
    a.channels.direct_broadcast(net.stamp(), b.node_id, "x", 0)  # first failure
    assert net.run(lambda: len(out_of_reach) >= 6, 60.0)
    gaps = [round(y - x, 1) for x, y in itertools.pairwise(out_of_reach)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0], gaps
    assert max(gaps) <= a.channels.retry_max_s + 0.1


def test_a_bad_record_with_the_stream_end_never_raises_out_of_the_receiver() -> None:
    net, a, b, _ = cluster()
    sub = a.channels.subscribe("data")
    assert net.run(lambda: b.channels.core.subscribers_of("data") == [a.node_id])
    b.channels.broadcast(net.stamp(), "data", [0, b""])
    assert net.run(lambda: len(sub) == 1)
    conn = b.transport.connection(a.node_id)
    assert conn is not None
    sid = b.channels._out[a.node_id].sids[DATA.number]
    # a hostile peer: garbage on its channel stream, then the stream's end at once
    b.transport.send(net.now, a.node_id, sid, b"\xff" * 64, end=True)
    assert net.run(lambda: any(k.startswith("channels.receive.dropped.")
                               for k in a.counters.snapshot()), 5.0)
    # before the fix: ConfigError "stream 10: no open receiving side" (STOP_SENDING on a
    # stream that had already ended) out of take_transport_events
    assert a.transport.connection(b.node_id) is not None
