"""``ChannelsCore``: fan-out only to subscribers, per-publisher order, overflow policies,
unreachable peers, announced topic sets (spec/channels.md sections 5 and 6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.channels.codec import ChannelLimits, RecordDecoder, encode_record
from foundation_p2p.channels.core import ChannelsCore, OutgoingRecord
from foundation_p2p.channels.gossip import WILDCARD, WILDCARD_VALUE, TopicSet
from foundation_p2p.channels.names import CONTROL, DATA, EVENTS, TopicMap
from foundation_p2p.errors import ConfigError, LimitError, MalformedError

A, B, C, D = (bytes([i]) * 16 for i in (1, 2, 3, 4))


def cluster(*ids: bytes) -> dict[bytes, ChannelsCore]:
    return {i: ChannelsCore(i, epoch=100) for i in ids}


def gossip_all(cores: dict[bytes, ChannelsCore]) -> None:
    """Every core's announced set applied at every other (what the membership carries)."""
    for src, core in cores.items():
        value = core.topics_value()
        for dst, other in cores.items():
            if dst != src:
                other.apply_topics(src, value)


def deliver(cores: dict[bytes, ChannelsCore], sender: bytes, sends: list[OutgoingRecord]) -> None:
    for s in sends:
        cores[s.node_id].receive(sender, s.channel, s.header + s.body)


def test_broadcast_goes_only_to_nodes_with_subscribers() -> None:
    cores = cluster(A, B, C, D)
    sb = cores[B].subscribe("orders")
    sd = cores[D].subscribe("orders")
    cores[C].subscribe("other")
    gossip_all(cores)
    sends = cores[A].broadcast("orders", {"id": 1})
    assert [s.node_id for s in sends] == [B, D]
    assert all(s.channel is EVENTS for s in sends)
    deliver(cores, A, sends)
    for sub in (sb, sd):
        [d] = sub.take()
        assert (d.topic, d.channel, d.publisher, d.seq, d.value) == (
            "orders",
            "events",
            A,
            0,
            {"id": 1},
        )
    assert cores[A].counters["channels.sent.records"] == 2
    assert cores[C].counters["channels.received.records"] == 0


def test_broadcast_delivers_locally_too_and_broadcast_from_skips_the_sender() -> None:
    core = ChannelsCore(A, epoch=1)
    s1, s2 = core.subscribe("t"), core.subscribe("t")
    assert core.broadcast("t", "x") == []
    assert [d.value for d in s1.take()] == ["x"] and [d.value for d in s2.take()] == ["x"]
    core.broadcast_from(s1, "t", "y")
    assert s1.take() == [] and [d.value for d in s2.take()] == ["y"]
    assert s2.take() == []


def test_local_broadcast_sends_nothing() -> None:
    cores = cluster(A, B)
    cores[B].subscribe("t")
    sub = cores[A].subscribe("t")
    gossip_all(cores)
    assert cores[A].local_broadcast("t", 5) == 1
    assert [d.value for d in sub.take()] == [5]
    assert cores[A].counters["channels.sent.records"] == 0


def test_direct_broadcast_targets_one_node_whatever_its_topics() -> None:
    cores = cluster(A, B, C)
    sb = cores[B].subscribe("t")
    sa = cores[A].subscribe("t")
    cores[C].subscribe("t")
    gossip_all(cores)
    sends = cores[A].direct_broadcast(B, "t", "only b")
    assert [s.node_id for s in sends] == [B]
    deliver(cores, A, sends)
    assert [d.value for d in sb.take()] == ["only b"]
    assert sa.take() == []  # not delivered on the publishing node
    # Nobody on C listens to "u", but a direct broadcast still goes; C counts it.
    sends = cores[A].direct_broadcast(C, "u", 1)
    deliver(cores, A, sends)
    assert cores[C].counters["channels.receive.no_subscriber"] == 1
    # To ourselves: local delivery only.
    assert cores[A].direct_broadcast(A, "t", 2) == []
    assert [d.value for d in sa.take()] == [2]


def test_topics_ride_their_channel() -> None:
    tm = TopicMap()
    tm.define("video", "data")
    cores = {A: ChannelsCore(A, epoch=1, topic_map=tm), B: ChannelsCore(B, epoch=1)}
    cores[B].subscribe("video")
    cores[B].subscribe("control")
    gossip_all(cores)
    assert [s.channel for s in cores[A].broadcast("video", b"frame")] == [DATA]
    assert [s.channel for s in cores[A].broadcast(CONTROL, "ping")] == [CONTROL]


def test_messages_from_one_publisher_arrive_in_order_with_sequence_numbers() -> None:
    cores = cluster(A, B)
    sub = cores[B].subscribe("t", max_queued=1000)
    gossip_all(cores)
    stream = b""
    for i in range(100):
        [s] = cores[A].broadcast("t", i)
        assert s.seq == i
        stream += s.record
    # The stream arrives in arbitrary chunks; order and sequence numbers are kept.
    for i in range(0, len(stream), 7):
        cores[B].receive(A, "events", stream[i : i + 7])
    got = sub.take()
    assert [d.value for d in got] == list(range(100))
    assert [d.seq for d in got] == list(range(100))


def test_sequences_are_per_peer_and_channel() -> None:
    cores = cluster(A, B, C)
    cores[B].subscribe("events")
    cores[B].subscribe("control")
    cores[C].subscribe("events")
    gossip_all(cores)
    cores[A].broadcast("events", 1)
    cores[A].broadcast("events", 2)
    assert [s.seq for s in cores[A].broadcast("control", 3)] == [0]
    assert [(s.node_id, s.seq) for s in cores[A].broadcast("events", 4)] == [(B, 2), (C, 2)]


def test_receiver_counts_gaps_duplicates_and_restarts() -> None:
    core = ChannelsCore(B, epoch=1)
    sub = core.subscribe("t", max_queued=100)
    for seq in (0, 1, 4, 3, 4, 5, 0, 1):
        core.receive(A, EVENTS, encode_record("t", seq, seq))
    assert [d.seq for d in sub.take()] == [0, 1, 4, 5, 0, 1]
    c = core.counters
    assert c["channels.receive.seq_gaps"] == 1
    assert c["channels.receive.seq_gap_messages"] == 2
    assert c["channels.receive.seq_duplicates"] == 2
    assert c["channels.receive.seq_restarts"] == 1


def test_unreachable_peer_gets_nothing_and_the_receiver_sees_the_gap() -> None:
    cores = cluster(A, B)
    sub = cores[B].subscribe("t")
    gossip_all(cores)
    deliver(cores, A, cores[A].broadcast("t", 0))
    cores[A].set_reachable(B, False)
    assert cores[A].broadcast("t", 1) == []
    assert cores[A].counters["channels.send.skipped_unreachable"] == 1
    cores[A].set_reachable(B, True)
    deliver(cores, A, cores[A].broadcast("t", 2))
    assert [d.value for d in sub.take()] == [0, 2]
    assert cores[B].counters["channels.receive.seq_gap_messages"] == 1


@pytest.mark.parametrize(
    ("policy", "kept", "counter"),
    [
        ("drop_oldest", [7, 8, 9], "channels.queue.dropped_oldest"),
        ("drop_newest", [0, 1, 2], "channels.queue.dropped_newest"),
    ],
)
def test_full_queue_overflow_policy_is_applied_and_counted(
    policy: str, kept: list[int], counter: str
) -> None:
    core = ChannelsCore(A, epoch=1)
    sub = core.subscribe("t", max_queued=3, overflow=policy)
    for i in range(10):
        core.local_broadcast("t", i)
    assert len(sub) == 3
    assert [d.value for d in sub.take()] == kept
    assert sub.dropped == 7 and core.counters[counter] == 7


def test_take_woken_reports_queues_that_became_non_empty() -> None:
    core = ChannelsCore(A, epoch=1)
    s1, s2 = core.subscribe("a"), core.subscribe("b")
    core.local_broadcast("a", 1)
    core.local_broadcast("a", 2)
    assert core.take_woken() == [s1]
    assert core.take_woken() == []
    core.local_broadcast("b", 1)
    assert core.take_woken() == [s2]


def test_unsubscribe_updates_the_topic_set_and_gossip() -> None:
    cores = cluster(A, B)
    sub = cores[B].subscribe("t")
    gossip_all(cores)
    assert cores[A].subscribers_of("t") == [B]
    cores[B].unsubscribe(sub)
    assert cores[B].local_topics() == []
    gossip_all(cores)
    assert cores[A].subscribers_of("t") == []
    assert cores[A].broadcast("t", 1) == []


def test_the_latest_announced_set_wins_and_none_clears_it() -> None:
    core = ChannelsCore(A, epoch=1)
    assert core.apply_topics(B, cbor_list("x"))
    assert not core.apply_topics(B, cbor_list("x"))  # the same bytes: nothing to do
    assert core.apply_topics(B, cbor_list("y"))
    assert core.subscribers_of("x") == [] and core.subscribers_of("y") == [B]
    assert core.apply_topics(B, None)
    assert core.subscribers_of("y") == [] and core.remote_topics(B) is None
    assert not core.apply_topics(C, None)  # no peer entry made for a node without topics
    assert list(core.peers()) == [B]
    core.forget_node(B)
    assert list(core.peers()) == []


def test_a_wildcard_node_gets_every_topic() -> None:
    core = ChannelsCore(A, epoch=1)
    core.apply_topics(B, WILDCARD_VALUE)
    core.apply_topics(C, cbor_list("x"))
    assert core.remote_topics(B) == WILDCARD
    assert core.subscribers_of("x") == [B, C] and core.subscribers_of("zzz") == [B]
    assert [r.node_id for r in core.broadcast("zzz", 1)] == [B]
    core.forget_node(B)
    assert core.subscribers_of("zzz") == []


def test_a_set_that_does_not_decode_is_counted_and_clears_the_held_one() -> None:
    core = ChannelsCore(A, epoch=1)
    core.apply_topics(B, cbor_list("x"))
    with pytest.raises(MalformedError):
        core.apply_topics(B, b"\x82\x61b\x61a")  # ["b", "a"]: out of order
    assert core.counters["channels.topics.malformed"] == 1
    assert core.subscribers_of("x") == []


def cbor_list(*topics: str) -> bytes:
    from foundation_p2p.wire import cbor

    return cbor.encode(sorted(topics))


def test_peer_table_is_bounded() -> None:
    core = ChannelsCore(A, epoch=1, max_remote_nodes=2)
    assert core.set_remote_topics(B, TopicSet(("t",)))
    assert core.set_remote_topics(C, TopicSet(("t",)))
    assert not core.set_remote_topics(D, TopicSet(("t",)))
    assert core.counters["channels.topics.refused_peers_full"] == 1
    assert core.receive(D, EVENTS, encode_record("t", 0, 1)) == 0
    assert core.counters["channels.receive.refused_peers_full"] == 1
    with pytest.raises(ConfigError, match="peer table full"):
        core.direct_broadcast(D, "t", 1)
    core.forget_node(C)
    assert core.set_remote_topics(D, TopicSet(("t",)))


def test_subscription_bounds() -> None:
    core = ChannelsCore(A, epoch=1, max_topics_per_node=2, max_subscriptions_per_topic=2)
    core.subscribe("a")
    core.subscribe("a")
    with pytest.raises(ConfigError, match="max_subscriptions_per_topic"):
        core.subscribe("a")
    core.subscribe("b")
    with pytest.raises(ConfigError, match="max_topics_per_node"):
        core.subscribe("c")
    with pytest.raises(ConfigError, match="overflow"):
        core.subscribe("a", overflow="block")
    with pytest.raises(ConfigError, match="topic"):
        core.subscribe("no spaces")


def test_malformed_stream_is_counted_raised_then_dropped_until_reset() -> None:
    core = ChannelsCore(B, epoch=1)
    sub = core.subscribe("t")
    with pytest.raises(MalformedError):
        core.receive(A, EVENTS, b"\x00\x00\x00\x01\x80\x00\x00\x00\x00\x00\x00\x00\x01t\x01")
    assert core.counters["channels.receive.dropped.malformed"] == 1
    assert core.receive(A, EVENTS, encode_record("t", 0, 1)) == 0
    assert core.counters["channels.receive.dropped_broken"] == 1
    core.stream_reset(A, EVENTS)
    assert core.receive(A, EVENTS, encode_record("t", 0, 1)) == 1
    assert [d.value for d in sub.take()] == [1]


def test_stream_reset_drops_a_partial_record_and_counts_it() -> None:
    core = ChannelsCore(B, epoch=1)
    sub = core.subscribe("t")
    record = encode_record("t", 0, "whole")
    core.receive(A, EVENTS, record[:10])
    core.stream_reset(A)
    assert core.counters["channels.receive.partial_dropped"] == 1
    core.receive(A, EVENTS, record)
    assert [d.value for d in sub.take()] == ["whole"]


def test_broadcast_refuses_non_plain_and_oversize_messages_even_without_subscribers() -> None:
    core = ChannelsCore(A, epoch=1)
    with pytest.raises(MalformedError):
        core.broadcast("t", {1, 2})
    with pytest.raises(LimitError):
        ChannelsCore(A, epoch=1, limits=ChannelLimits(max_message_bytes=100)).broadcast(
            "t", b"x" * 200
        )


def test_one_body_is_shared_by_every_recipient() -> None:
    cores = cluster(A, B, C)
    cores[B].subscribe("data")
    cores[C].subscribe("data")
    gossip_all(cores)
    payload = b"p" * 100_000
    sends = cores[A].broadcast("data", payload, compression=False)
    assert sends[0].body is sends[1].body is payload
    decoded = RecordDecoder().feed(sends[1].record)
    assert decoded[0].value == payload


def test_compression_flag_per_message() -> None:
    cores = cluster(A, B)
    sub = cores[B].subscribe("t")
    gossip_all(cores)
    [s] = cores[A].broadcast("t", "z" * 10_000, compression=True)
    assert len(s.body) < 200
    deliver(cores, A, [s])
    assert sub.take()[0].value == "z" * 10_000
    cores[A].broadcast("t", 1, compression=True)
    assert cores[A].counters["channels.send.compression_skipped"] == 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from(["control", "events"])), max_size=60),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10),
)
def test_order_kept_and_every_skipped_message_counted_as_a_gap(
    plan: list[tuple[bool, str]], chunk_sizes: list[int]
) -> None:
    """Per publisher and channel: delivered messages are in publication order, never
    twice, and the messages an unreachable spell withheld are exactly the gaps counted,
    except a leading spell (the first record seen may carry any number: counted as
    ``seq_joined``) and a trailing one (no later record reveals it)."""
    cores = cluster(A, B)
    subs = {t: cores[B].subscribe(t, max_queued=1000) for t in ("control", "events")}
    gossip_all(cores)
    streams: dict[str, bytearray] = {"control": bytearray(), "events": bytearray()}
    published: dict[str, list[tuple[int, bool]]] = {"control": [], "events": []}
    for i, (reachable, topic) in enumerate(plan):
        cores[A].set_reachable(B, reachable)
        for s in cores[A].broadcast(topic, i):
            streams[s.channel.name] += s.header + s.body
        published[topic].append((i, reachable))
    for topic, data in streams.items():
        pos, k = 0, 0
        while pos < len(data):
            step = chunk_sizes[k % len(chunk_sizes)]
            cores[B].receive(A, topic, bytes(data[pos : pos + step]))
            pos, k = pos + step, k + 1
    expected_gaps = expected_joined = 0
    for topic, sub in subs.items():
        got = [d.value for d in sub.take()]
        assert got == [i for i, reachable in published[topic] if reachable]
        flags = [reachable for _, reachable in published[topic]]
        sent_at = [j for j, r in enumerate(flags) if r]
        if sent_at:
            expected_gaps += sum(1 for r in flags[sent_at[0] : sent_at[-1]] if not r)
            expected_joined += sent_at[0] > 0
    assert cores[B].counters["channels.receive.seq_gap_messages"] == expected_gaps
    assert cores[B].counters["channels.receive.seq_joined"] == expected_joined
    assert cores[B].counters["channels.receive.seq_duplicates"] == 0
