"""Agent records in the registry's shape, and find-by-capability over registry entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from coord_helpers import AG, IDS, bind_agents

from foundation_p2p.clock import Now
from foundation_p2p.coordination.agents import (
    AgentRecord,
    find_by_capability,
    record_from_value,
)
from foundation_p2p.errors import LimitError, MalformedError
from foundation_p2p.registry.core import RegistryCore


@dataclass
class E:
    name: str
    value: Any


def rec(i: int, caps: list[str], protocols: tuple[str, ...] = ("auction", "vote")) -> AgentRecord:
    return AgentRecord.create(f"agent-{i}", AG[i], caps, protocols, {"cpu": i})


def test_a_record_round_trips_through_its_registry_value() -> None:
    r = rec(0, ["gpu", "cpu", "gpu"])
    assert r.capabilities == ("cpu", "gpu") and r.agent_id == IDS[0].node_id
    name, value, meta = r.to_registry()
    assert name == "agent/" + IDS[0].node_id.hex() and meta["capabilities"] == ["cpu", "gpu"]
    assert record_from_value(value) == r


def test_find_by_capability_filters_sorts_and_counts_malformed() -> None:
    entries = [E(*rec(i, ["gpu"] if i % 2 else ["cpu"]).to_registry()[:2]) for i in range(6)]
    entries.append(E("agent/ff", [1, b"x"]))
    entries.append(E("service/x", "not an agent"))
    found, bad = find_by_capability(entries, "gpu")
    assert [r.agent_id for r in found] == sorted(IDS[i].node_id for i in (1, 3, 5))
    assert bad == 1
    found, _ = find_by_capability(entries, "gpu", protocol="negotiation")
    assert found == []


def test_an_entry_under_another_agents_name_is_skipped() -> None:
    value = rec(0, ["gpu"]).to_value()
    found, bad = find_by_capability([E("agent/" + IDS[1].node_id.hex(), value)], "gpu")
    assert found == [] and bad == 1


def test_bad_values_name_the_problem() -> None:
    good = rec(0, ["gpu"]).to_value()
    cases = [
        (good[:3], MalformedError),
        ([*good[:1], AG[1][:15], *good[2:]], MalformedError),  # not a 16-byte id
        ([1, *good[1:]], MalformedError),  # version 1 (agent keys) is gone
        ([*good[:3], ["b", "a"], *good[4:]], MalformedError),  # unsorted
        ([*good[:3], ["x" * 200], *good[4:]], LimitError),
        ([*good[:5], [["cpu", -1]]], MalformedError),
    ]
    for value, err in cases:
        with pytest.raises(err):
            record_from_value(value)


def test_records_register_and_are_found_through_a_registry_core() -> None:
    core = RegistryCore(IDS[0].node_id)
    now = Now(1.0, 1_790_000_000.0)
    for i in range(4):
        core.register(now, *rec(i, ["gpu"] if i < 2 else ["cpu"]).to_registry())
    found, bad = find_by_capability(core.select("agent/"), "gpu")
    assert {r.agent_id for r in found} == {IDS[0].node_id, IDS[1].node_id} and bad == 0


class Bidder:
    def __init__(self, amount: Any, choice: Any = 1) -> None:
        self.amount = amount
        self.choice = choice

    def bid(self, auction: Any) -> Any:
        return self.amount if "cpu" in auction.resources else None

    def vote(self, proposal: Any) -> Any:
        return self.choice

    def offer(self, negotiation: Any) -> Any:
        raise AssertionError("not asked")


def test_handlers_drive_a_sealed_auction_and_a_vote() -> None:
    import random

    from foundation_p2p.coordination.agents import (
        auction_view,
        bid_commands,
        proposal_view,
        vote_command,
    )
    from foundation_p2p.coordination.machine import CoordinationMachine
    from foundation_p2p.coordination.wire import (
        CloseCommit,
        Finalize,
        OpenAuction,
        Propose,
        Voter,
        encode_command,
    )
    from foundation_p2p.errors import ConfigError
    from foundation_p2p.wire import cbor

    m = CoordinationMachine()
    bind_agents(m.bindings)
    index = 0

    def run(cmd: bytes) -> Any:
        nonlocal index
        index += 1
        return cbor.decode(m.apply(index, cmd))

    spec = OpenAuction(b"a" * 16, ("cpu",), 2, 0, 1)
    run(encode_command(spec))
    view = auction_view(spec)
    rng = random.Random(1)
    pairs = [bid_commands(Bidder(amt), view, AG[i], IDS[i], rng.randbytes)
             for i, amt in enumerate((5, 9, 7))]
    assert bid_commands(Bidder(3), auction_view(OpenAuction(b"b" * 16, ("gpu",), 2, 0, 1)),
                        AG[0], IDS[0], rng.randbytes) is None
    for p in pairs:
        assert p is not None and run(p[0])[0] == 0
        fields = cbor.decode(p[0])
        assert fields[0] == 2 and all(type(f) is bytes for f in fields[1:])  # no amount
    run(encode_command(CloseCommit(b"a" * 16)))
    for p in pairs:
        assert p is not None and run(p[1])[0] == 0
    res = run(encode_command(Finalize(b"a" * 16)))
    assert res[1][2] == [[IDS[1].node_id, 9]] and res[1][3] == 7
    with pytest.raises(ConfigError):
        bid_commands(Bidder(-1), view, AG[0], IDS[0], rng.randbytes)
    prop = Propose(b"p" * 16, "go", 1, 0, (Voter(AG[0], 1),), 9)
    run(encode_command(prop))
    out = run(vote_command(Bidder(0, 1), proposal_view(prop), AG[0], IDS[0]))
    assert out[0] == 0 and m.votes.decision(b"p" * 16) is True
    with pytest.raises(ConfigError):
        vote_command(Bidder(0, 7), proposal_view(prop), AG[0], IDS[0])
