"""The client protocol: codec, and an observer's requests served by the group."""

from __future__ import annotations

import pytest
from test_subsystem_harness import Cluster, nid

from foundation_p2p.consensus import kv
from foundation_p2p.consensus.client import (
    ClientOutcome,
    ConsensusClient,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, MalformedError


def test_request_and_response_roundtrip() -> None:
    r = decode_request(encode_request(7, "propose", b"cmd"))
    assert (r.request_id, r.op, r.payload) == (7, "propose", b"cmd")
    assert decode_request(encode_request(8, "read", b"q")).op == "read"
    resp = decode_response(encode_response(7, "no_leader", None, nid(3)))
    assert (resp.request_id, resp.status, resp.value, resp.leader) == (7, "no_leader", None, nid(3))
    with pytest.raises(ConfigError):
        encode_request(1, "delete", b"")


@pytest.mark.parametrize(
    "bad",
    [
        [1, -1, 0, b""],
        [1, 1, 2, b""],
        [1, 1, 0, "text"],
        [2, 1, 0, b""],
        [1, 1, 0],
        "x",
        [1, True, 0, b""],
    ],
)
def test_bad_requests_are_refused(bad: object) -> None:
    with pytest.raises(MalformedError):
        decode_request(bad)


@pytest.mark.parametrize(
    "bad",
    [
        [2, 1, 9, None, None],
        [2, 1, 0, "v", None],
        [2, 1, 0, None, b"short"],
        [1, 1, 0, None, None],
        [2, 1, 0, None],
    ],
)
def test_bad_responses_are_refused(bad: object) -> None:
    with pytest.raises(MalformedError):
        decode_response(bad)


def run_client(
    c: Cluster, client: ConsensusClient, rid: int, timeout: float = 5.0
) -> ClientOutcome:
    got: list[ClientOutcome] = []

    def done() -> bool:
        client.handle_timer(c.now)
        got.extend(client.take_outcomes())
        return any(o.request_id == rid for o in got)

    c.run_until(done, timeout)
    return next(o for o in got if o.request_id == rid)


def test_observer_writes_and_reads_through_any_member() -> None:
    c = Cluster(3)
    leader = c.wait_leader()
    c.run(0.5)
    follower = next(m for m in c.members.values() if m is not leader)
    obs = nid(200)
    client = ConsensusClient(
        obs, messenger=c.add_observer(obs), members=[follower.id], counters=Counters()
    )
    out = run_client(c, client, client.request(c.now, "propose", kv.encode_put(b"o", b"1")))
    assert out.status == "ok"
    assert kv.decode_result(out.value or b"").ok
    assert client.leader == leader.id
    read = run_client(c, client, client.request(c.now, "read", kv.encode_get(b"o")))
    assert read.status == "ok"
    assert kv.decode_result(read.value or b"").value == b"1"
    c.run(0.3)
    assert all(c.kv_of(m) == {b"o": b"1"} for m in c.members.values())


def test_observer_retries_another_member_when_one_is_not_member() -> None:
    # node 4 is not eligible and never joins: it answers not_member, the client moves on
    c = Cluster(4, eligible=[1, 2, 3])
    c.wait_leader()
    c.run(0.5)
    obs = nid(201)
    client = ConsensusClient(
        obs,
        messenger=c.add_observer(obs),
        members=[nid(4), nid(1), nid(2)],
        counters=Counters(),
    )
    out = run_client(c, client, client.request(c.now, "propose", kv.encode_put(b"r", b"2")))
    assert out.status == "ok"


def test_observer_request_to_dead_member_is_indeterminate() -> None:
    c = Cluster(3)
    c.wait_leader()
    c.crash(nid(3))
    obs = nid(202)
    client = ConsensusClient(
        obs, messenger=c.add_observer(obs), members=[nid(3)], counters=Counters(), timeout_s=0.5
    )
    rid = client.request(c.now, "propose", kv.encode_put(b"x", b"y"))
    assert run_client(c, client, rid).status == "indeterminate"
    rid = client.request(c.now, "read", kv.encode_get(b"x"))
    assert run_client(c, client, rid).status == "dropped"


def test_client_bounds_pending_requests() -> None:
    c = Cluster(1)
    obs = nid(203)
    client = ConsensusClient(
        obs, messenger=c.add_observer(obs), members=[nid(1)], counters=Counters(), max_pending=2
    )
    for _ in range(3):
        client.request(c.now, "propose", b"")
    assert [o.status for o in client.take_outcomes()] == ["overloaded"]
    with pytest.raises(ConfigError):
        ConsensusClient(obs, messenger=c.add_observer(nid(204)), members=[], counters=Counters())


def _example_snapshot() -> bytes:
    """The spec's ``raft-snapshot`` example: run (01..., 5) applied tickets 7 and 9 at
    indexes 9 and 10 with floor 6, over an empty KV store."""
    from foundation_p2p.consensus.dedup import ProposalWindows, encode_snapshot

    w = ProposalWindows()
    w.admit(9, nid(1), 5, 7, 6)
    w.admit(10, nid(1), 5, 9, 6)
    return encode_snapshot(w, kv.KVStore().snapshot())


def _schema(rule: str) -> object:
    import pycddl

    with open("spec/consensus-client.cddl") as f:
        text = f.read()
    return pycddl.Schema(f"cddl-root = {rule}\n{text}")


def test_messages_match_the_cddl() -> None:
    import cbor2
    import pycddl

    from foundation_p2p.consensus.bootstrap import ACK, COMMIT, PREPARE, RELEASE, BootstrapMessage
    from foundation_p2p.consensus.messages import Message, MessageType, encode_message
    from foundation_p2p.consensus.subsystem import encode_envelope

    schema = _schema("raft-service-message")
    raft = encode_message(Message(MessageType.HEARTBEAT, to=nid(1), sender=nid(2), term=3))
    good = [
        [0, raft],
        encode_request(5, "propose", kv.encode_put(b"k", b"v")),
        encode_request(6, "read", kv.encode_get(b"k")),
        encode_response(5, "ok", b"\x82\x00\xf6", None),
        encode_response(6, "no_leader", None, nid(3)),
        BootstrapMessage(PREPARE, 5, 1, frozenset({nid(1), nid(2), nid(3)})).encode(),
        BootstrapMessage(COMMIT, 5, 1, frozenset({nid(1)})).encode(),
        BootstrapMessage(ACK, 2**63 - 1, 2**64 - 1).encode(),
        BootstrapMessage(RELEASE, 0, 0).encode(),
    ]
    for msg in good:
        schema.validate_cbor(cbor2.dumps(msg, canonical=True))  # type: ignore[attr-defined]
    for bad in ([4, b""], [1, 5, 2, b""], [2, 5, 9, None, None], [3, [b"x"]],
                [3, 0, 5, 1, [nid(1)]], [3, [4, 5, 1, []]], [3, [0, 5, 1]]):
        with pytest.raises(pycddl.ValidationError):
            schema.validate_cbor(cbor2.dumps(bad, canonical=True))  # type: ignore[attr-defined]
    env = _schema("proposal-envelope")
    env.validate_cbor(encode_envelope(nid(1), 2**62, 3, b"c"))  # type: ignore[attr-defined]
    env.validate_cbor(encode_envelope(nid(1), 2**62, 3, b"c", 2))  # type: ignore[attr-defined]


def test_spec_examples_match_the_encoders() -> None:
    import re

    import cbor2

    from foundation_p2p.consensus.bootstrap import ACK, PREPARE, BootstrapMessage
    from foundation_p2p.consensus.subsystem import encode_envelope

    put = kv.encode_put(b"k", b"v")
    expected = {
        "request-propose-put": cbor2.dumps(encode_request(7, "propose", put), canonical=True),
        "request-read-get": cbor2.dumps(
            encode_request(8, "read", kv.encode_get(b"k")), canonical=True
        ),
        "response-ok": cbor2.dumps(
            encode_response(7, "ok", bytes.fromhex("8200f6"), None), canonical=True
        ),
        "response-no-leader": cbor2.dumps(
            encode_response(9, "no_leader", None, nid(2)), canonical=True
        ),
        "bootstrap-prepare": cbor2.dumps(
            BootstrapMessage(PREPARE, 5, 1, frozenset({nid(1), nid(2), nid(3)})).encode(),
            canonical=True,
        ),
        "bootstrap-ack": cbor2.dumps(BootstrapMessage(ACK, 5, 1).encode(), canonical=True),
        "proposal-envelope": encode_envelope(nid(1), 5, 7, put, 6),
        "raft-snapshot": _example_snapshot(),
    }
    with open("spec/consensus-client.md") as f:
        text = f.read()
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| .* \| `([0-9a-f]+)` \|$", text, re.M))
    assert set(rows) == set(expected)
    for name, data in expected.items():
        assert rows[name] == data.hex(), name
    schema = _schema("raft-service-message")
    _schema("raft-snapshot").validate_cbor(  # type: ignore[attr-defined]
        bytes.fromhex(rows["raft-snapshot"])
    )
    for name in expected:
        if name not in ("proposal-envelope", "raft-snapshot"):
            schema.validate_cbor(bytes.fromhex(rows[name]))  # type: ignore[attr-defined]


def test_a_hinted_leader_that_dies_is_forgotten_after_one_timeout() -> None:
    # found by the netns KV test: the client kept the dead leader as its hint, so every
    # later request timed out as indeterminate
    c = Cluster(3)
    leader = c.wait_leader()
    c.run(0.5)
    obs = nid(203)
    client = ConsensusClient(
        obs, messenger=c.add_observer(obs), members=[m.id for m in c.members.values()],
        counters=Counters(), timeout_s=0.5,
    )
    out = run_client(c, client, client.request(c.now, "propose", kv.encode_put(b"a", b"1")))
    assert out.status == "ok" and client.leader == leader.id
    c.crash(leader.id)
    rid = client.request(c.now, "propose", kv.encode_put(b"a", b"2"))
    assert run_client(c, client, rid).status == "indeterminate"
    assert client.leader is None and client.members[-1] == leader.id
    assert client.counters["raft.client.leader_forgotten"] == 1
    c.wait_leader()
    c.run(0.5)
    out = run_client(c, client, client.request(c.now, "propose", kv.encode_put(b"a", b"3")))
    assert out.status == "ok"
