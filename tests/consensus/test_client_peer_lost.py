"""The observer's client after ``on_peer_lost``: reads are sent again, proposals are not.

The messenger drops what a connection held when it ends or is replaced (both sides dial
when a member restarts, one connection is closed) and calls ``on_peer_lost``. Before, a
read lost that way waited its whole timeout and ended ``dropped`` (the soak of issue 11
saw the same loss on a member's forwarded requests, /work/helpers/s5/S_to_R.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from foundation_p2p.addresses import NodeId
from foundation_p2p.clock import Now
from foundation_p2p.consensus.client import (
    ConsensusClient,
    decode_request,
    encode_response,
)
from foundation_p2p.counters import Counters


def nid(i: int) -> NodeId:
    return bytes([i]) * 16


class FakeMessenger:
    """Records sends; ``refuse`` holds peers whose sends are refused (unreachable)."""

    def __init__(self) -> None:
        self.sent: list[tuple[NodeId, Any]] = []
        self.refuse: set[NodeId] = set()
        self.on_message: Callable[[Now, NodeId, Any], None] | None = None
        self.on_peer_lost: Callable[[NodeId], None] | None = None

    def register(
        self,
        service: int,
        on_message: Callable[[Now, NodeId, Any], None],
        on_peer_lost: Callable[[NodeId], None] | None = None,
    ) -> None:
        self.on_message, self.on_peer_lost = on_message, on_peer_lost

    def send(self, now: Now, node_id: NodeId, service: int, message: Any) -> bool:
        if node_id in self.refuse:
            return False
        self.sent.append((node_id, message))
        return True


def make() -> tuple[ConsensusClient, FakeMessenger]:
    m = FakeMessenger()
    c = ConsensusClient(nid(9), messenger=m, members=[nid(1), nid(2), nid(3)],
                        counters=Counters(), timeout_s=5.0)
    return c, m


def test_a_read_lost_with_its_connection_is_sent_again_and_answered() -> None:
    c, m = make()
    now = Now(10.0, 1000.0)
    rid = c.request(now, "read", b"q")
    assert [peer for peer, _ in m.sent] == [nid(1)]
    assert m.on_peer_lost is not None and m.on_message is not None
    m.on_peer_lost(nid(1))  # the connection was replaced: the first copy may be lost
    assert [peer for peer, _ in m.sent] == [nid(1), nid(1)]
    assert decode_request(m.sent[1][1]).request_id == rid
    m.on_message(Now(10.1, 1000.1), nid(1), encode_response(rid, "ok", b"v", nid(1)))
    m.on_message(Now(10.2, 1000.2), nid(1), encode_response(rid, "ok", b"v", nid(1)))
    c.handle_timer(Now(11.0, 1001.0))
    assert [(o.request_id, o.status, o.value) for o in c.take_outcomes()] == [(rid, "ok", b"v")]
    assert c.counters["raft.client.read_resent"] == 1
    assert c.counters["raft.client.stale_response"] == 1  # the second answer


def test_a_read_whose_member_is_unreachable_goes_to_the_next_member() -> None:
    c, m = make()
    rid = c.request(Now(10.0, 1000.0), "read", b"q")
    m.refuse.add(nid(1))
    assert m.on_peer_lost is not None
    m.on_peer_lost(nid(1))
    assert [peer for peer, _ in m.sent] == [nid(1), nid(2)]
    assert decode_request(m.sent[1][1]).request_id == rid


def test_a_proposal_is_not_sent_again_it_may_still_apply() -> None:
    c, m = make()
    c.request(Now(10.0, 1000.0), "propose", b"cmd")
    assert m.on_peer_lost is not None
    m.on_peer_lost(nid(1))
    m.on_peer_lost(nid(2))  # and a peer it was not sent to changes nothing
    assert len(m.sent) == 1
    c.handle_timer(Now(15.0, 1005.0))
    assert [o.status for o in c.take_outcomes()] == ["indeterminate"]
