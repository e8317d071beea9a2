"""Reads forwarded to the leader are asked again when that leader's connection is lost or
a new leader is known (issue 11: a forwarded ReadIndex lost with a replaced connection
left the read waiting for its whole request timeout)."""

from __future__ import annotations

from typing import Any

import cbor2
from test_subsystem_harness import Cluster, Member

from foundation_p2p.consensus import kv
from foundation_p2p.consensus.messages import MessageType, decode_message
from foundation_p2p.consensus.subsystem import SERVICE_RAFT, ConsensusConfig, Outcome


def _drop_read_index(c: Cluster) -> int:
    """Remove the queued ReadIndex requests (lost on the way); how many."""
    kept: list[Any] = []
    dropped = 0
    for item in c.queue:
        message = cbor2.loads(item[3])
        if message[0] == 0 and decode_message(message[1]).type is MessageType.READ_INDEX:
            dropped += 1
            continue
        kept.append(item)
    c.queue = kept
    return dropped


def _outcome(m: Member, ticket: int) -> Outcome | None:
    m.results.extend(m.sub.take_results())
    return next((o for o in m.results if o.ticket == ticket), None)


def _setup() -> tuple[Cluster, Member, Member]:
    c = Cluster(3, config=ConsensusConfig(request_timeout_s=5.0))
    leader = c.wait_leader()
    assert c.put(leader, b"a", b"1").ok
    follower = next(m for m in c.members.values() if m is not leader)
    c.run_until(lambda: follower.sub.raw is not None
                and follower.sub.raw.raft.leader == leader.id)
    return c, leader, follower


def test_a_lost_forwarded_read_waits_until_the_leader_is_reported_lost() -> None:
    c, leader, follower = _setup()
    ticket = follower.sub.read(c.now, b"a")
    assert _drop_read_index(c) == 1
    c.run(1.0)
    assert _outcome(follower, ticket) is None  # nobody re-sends it by itself
    on_peer_lost = follower.messenger.handlers[SERVICE_RAFT][1]
    on_peer_lost(leader.id)
    assert follower.sub.counters["raft.reads.reforwarded"] == 1
    out = c.wait_outcome(follower, ticket, timeout=1.0)
    assert out.ok and kv.decode_result(out.value or b"").value == b"1"


def test_losing_another_peer_re_asks_nothing() -> None:
    c, leader, follower = _setup()
    other = next(m for m in c.members.values() if m not in (leader, follower))
    ticket = follower.sub.read(c.now, b"a")
    follower.messenger.handlers[SERVICE_RAFT][1](other.id)
    assert follower.sub.counters["raft.reads.reforwarded"] == 0
    assert c.wait_outcome(follower, ticket, timeout=1.0).ok


def test_a_read_forwarded_to_a_leader_that_dies_is_asked_of_the_next_one() -> None:
    c, leader, follower = _setup()
    ticket = follower.sub.read(c.now, b"a")
    assert _drop_read_index(c) == 1
    c.crash(leader.id)
    out = c.wait_outcome(follower, ticket, timeout=4.0)  # within the request timeout
    assert out.ok, out
    assert kv.decode_result(out.value or b"").value == b"1"
    assert follower.sub.counters["raft.reads.reforwarded"] >= 1
