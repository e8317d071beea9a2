"""spec/registry.md section 6, sentence by sentence: what each anti-entropy message carries."""

from __future__ import annotations

from typing import Any

from registry_net import RegistryNet

from foundation_p2p.registry.core import RegistryCore
from foundation_p2p.registry.wire import (
    SyncCheck,
    SyncRemoved,
    SyncReply,
    SyncRequest,
    decode_message,
)


def start(initiator: RegistryCore, net: RegistryNet) -> Any:
    """Make ``initiator`` start a round now; return its request value."""
    initiator.handle_timer(net.now())
    net.t += 5.0
    initiator.handle_timer(net.now())
    msgs = initiator.take_messages()
    requests = [m for _, m in msgs if m[0] == 2]
    assert len(requests) == 1
    return requests[0]


def exchange(src: RegistryCore, dst: RegistryCore, value: Any, net: RegistryNet) -> list[Any]:
    dst.handle_message(net.now(), src.node_id, value)
    return [m for _, m in dst.take_messages()]


def test_a_reply_never_carries_what_the_request_context_holds() -> None:
    net = RegistryNet(2)
    a, b = net.cores
    for i in range(20):
        a.register(net.now(), f"shared/{i}", i)
    net.pump()
    for i in range(5):
        a.register(net.now(), f"new/{i}", i)
    a.take_messages()  # b misses these
    req = start(b, net)
    (rep_value,) = exchange(b, a, req, net)
    rep = decode_message(rep_value)
    assert isinstance(rep, SyncReply)
    assert sorted(e.name for _, e in rep.entries) == [f"new/{i}" for i in range(5)]
    assert rep.context is not None and not rep.more


def test_equal_replicas_exchange_a_request_and_an_empty_reply() -> None:
    net = RegistryNet(2)
    a, b = net.cores
    for i in range(50):
        a.register(net.now(), f"n/{i}", i)
    net.pump()
    req = start(b, net)
    (rep_value,) = exchange(b, a, req, net)
    rep = decode_message(rep_value)
    assert isinstance(rep, SyncReply)
    assert rep.entries == [] and rep.bucket_digests == {} and rep.context is None
    assert exchange(a, b, rep_value, net) == []
    assert not b.syncing_with(a.node_id)


def test_check_carries_only_dots_of_buckets_that_still_differ() -> None:
    net = RegistryNet(2)
    a, b = net.cores
    for i in range(40):
        a.register(net.now(), f"n/{i}", i)
    net.pump()
    a.unregister(net.now(), "n/7")
    a.take_messages()  # the removal is lost
    req = start(b, net)
    (rep_value,) = exchange(b, a, req, net)
    (chk_value,) = exchange(a, b, rep_value, net)
    chk = decode_message(chk_value)
    assert isinstance(chk, SyncCheck)
    dot_of_7 = next(d for d, n in b.state.dot_names.items() if n == "n/7")
    assert dot_of_7 in chk.dots
    assert len(chk.dots) < 40  # not the whole state: only the differing buckets
    (rem_value,) = exchange(b, a, chk_value, net)
    rem = decode_message(rem_value)
    assert isinstance(rem, SyncRemoved) and rem.dots == [dot_of_7]
    assert exchange(a, b, rem_value, net) == []
    assert b.lookup("n/7") is None and net.converged()


def test_removed_applies_only_dots_the_initiator_checked() -> None:
    net = RegistryNet(2)
    a, b = net.cores
    for i in range(10):
        a.register(net.now(), f"n/{i}", i)
    net.pump()
    a.unregister(net.now(), "n/1")
    a.take_messages()
    req = start(b, net)
    (rep_value,) = exchange(b, a, req, net)
    (chk_value,) = exchange(a, b, rep_value, net)
    chk = decode_message(chk_value)
    assert isinstance(chk, SyncCheck)
    unasked = next(d for d, n in b.state.dot_names.items() if n == "n/9" and d not in chk.dots)
    forged = sorted({*chk.dots, unasked})
    b.handle_message(net.now(), a.node_id, [5, chk.sid, [[n, c] for n, c in forged]])
    assert b.lookup("n/9") is not None
    assert b.counters["registry.sync.unasked_dots"] == 1


def test_a_request_names_its_sid_and_all_32_group_digests() -> None:
    net = RegistryNet(2)
    req = decode_message(start(net.cores[0], net))
    assert isinstance(req, SyncRequest) and len(req.group_digests) == 32
