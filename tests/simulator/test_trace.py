"""The canonical trace: line format, header, digest, and replay with divergence reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.state import Member, MemberState
from simulator.model import ClusterSpec, FaultSpec, Scenario, WorkloadSpec
from simulator.scenario import parse_scenario_text
from simulator.trace import (
    TRACE_FORMAT,
    TraceSink,
    canonical,
    fmt_time,
    jsonable,
    member_event_line,
    member_facts,
    read_header,
)
from simulator.world import replay_trace, run_scenario

TEXT = """
name = "trace-test"
seed = 5
duration = "10s"

[cluster]
nodes = 4

[network]
latency = "1ms..10ms"
loss = 0.05

[[fault]]
at = "3s"
op = "crash"
node = "n2"
for = "2s"

[[workload]]
kind = "ping"
"""


def test_lines_are_canonical_json_with_fixed_precision_times() -> None:
    assert canonical({"b": 1, "a": "x"}) == '{"a":"x","b":1}'
    assert fmt_time(1.5) == "1.500000000"
    assert jsonable({"addr": ("n1", 7946), "id": b"\x01\x02", "rtt": 0.25, "n": [1, None]}) == {
        "addr": "n1:7946", "id": "0102", "rtt": "0.250000000", "n": [1, None],
    }


def test_digest_is_the_sha256_of_the_trace_bytes_with_or_without_a_file(tmp_path: Path) -> None:
    sc = parse_scenario_text(TEXT, source="<test>")
    path = tmp_path / "t.jsonl"
    with_file = run_scenario(sc, trace_path=str(path))
    without = run_scenario(sc)
    data = path.read_bytes()
    assert with_file.trace_digest == hashlib.sha256(data).hexdigest() == without.trace_digest
    header = json.loads(data.split(b"\n", 1)[0])
    assert header["format"] == TRACE_FORMAT == 2
    assert header["scenario_text"] == TEXT
    assert header["seed"] == 5
    assert header["options"] == {"mode": "bytes", "random_faults": False, "overrides": {}}
    assert with_file.metrics["sim.trace_lines"] == data.count(b"\n")


def test_a_trace_replays_on_its_own_to_the_same_digest(tmp_path: Path) -> None:
    sc = parse_scenario_text(TEXT, source="<test>")
    path = tmp_path / "t.jsonl"
    original = run_scenario(sc, seed=77, mode="messages", random_faults=True,
                            trace_path=str(path))
    header = read_header(str(path))
    assert header["options"]["overrides"] == {"seed": 77, "mode": "messages"}
    result, matches, divergence = replay_trace(str(path))
    assert matches and divergence is None
    assert result.trace_digest == original.trace_digest
    assert result.seed == 77 and result.mode == "messages"


def test_replay_names_the_first_differing_line(tmp_path: Path) -> None:
    sc = parse_scenario_text(TEXT, source="<test>")
    path = tmp_path / "t.jsonl"
    run_scenario(sc, trace_path=str(path))
    lines = path.read_text().splitlines(keepends=True)
    lines[40] = lines[40].replace('"t":"', '"t":"9')
    path.write_text("".join(lines))
    _, matches, divergence = replay_trace(str(path))
    assert not matches
    assert divergence is not None and divergence.startswith("line 41 differs")
    assert lines[40].strip() in divergence


def test_replay_reports_a_truncated_trace(tmp_path: Path) -> None:
    sc = parse_scenario_text(TEXT, source="<test>")
    path = tmp_path / "t.jsonl"
    run_scenario(sc, trace_path=str(path))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-5]))
    _, matches, divergence = replay_trace(str(path))
    assert not matches
    assert divergence is not None and f"line {len(lines) - 4} differs" in divergence
    assert "<end of file>" in divergence


def test_replay_of_a_directly_built_scenario(tmp_path: Path) -> None:
    sc = Scenario(name="direct", text="", duration_s=5.0, cluster=ClusterSpec(nodes=3),
                  workloads=(WorkloadSpec("ping"),),
                  faults=(FaultSpec(at_s=1.0, op="pause", node="@random", for_s=1.0),))
    path = tmp_path / "t.jsonl"
    original = run_scenario(sc, trace_path=str(path))
    result, matches, _ = replay_trace(str(path), scenario=sc)
    assert matches and result.trace_digest == original.trace_digest


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("not json\n", "line 1 is not JSON"),
        ('{"a": 1}\n', "not a trace header"),
        ('{"format": 99}\n', "trace format 99 is not supported"),
        ('{"format": 2, "seed": 1, "options": {}}\n', "scenario_text"),
    ],
)
def test_read_header_refuses_what_is_not_a_trace(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_header(str(path))


def test_sink_compares_against_expected_lines() -> None:
    sink = TraceSink(expected=iter(["a\n", "b\n", "c\n"]))
    for text in ("a", "x", "c"):
        sink.line(text)
    sink.finish()
    assert sink.divergence == "line 2 differs:\n  trace:  b\n  replay: x"


def _member(name: str = "n3", state: MemberState = MemberState.ALIVE, *,
            host: str = "n3", observer: bool = False) -> Member:
    return Member(
        node_id=bytes(range(16)), name=name, address=(host, 7946), incarnation=4, state=state,
        metadata=b"\xa1\x01\x02", observer=observer, public_key=b"\x07" * 32, since_mono=12.5,
    )


def test_a_member_record_is_traced_as_compact_facts() -> None:
    facts = member_facts(_member(state=MemberState.SUSPECT))
    assert facts == {
        "addr": "n3:7946", "id": bytes(range(16)).hex(), "inc": 4, "meta": 3, "name": "n3",
        "obs": False, "state": "suspect",
    }
    # The event's data holds the facts, not the key, the metadata bytes or since_mono.
    data = jsonable(MemberFailed(_member(state=MemberState.FAILED)))
    assert data == {"member": dict(facts, state="failed")}
    assert "07" * 32 not in canonical(data)


@pytest.mark.parametrize(
    "ev",
    [
        MemberJoined(_member()),
        MemberUpdated(_member(observer=True)),
        MemberSuspect(_member(state=MemberState.SUSPECT), accuser=b"\xee" * 16),
        MemberAlive(_member()),
        MemberFailed(_member(state=MemberState.FAILED)),
        MemberLeft(_member(state=MemberState.LEFT)),
        MemberReaped(bytes(range(16))),
        MemberJoined(_member(name='we"ird\\name \u00e9')),
        MemberJoined(_member(host="::1")),
    ],
)
@pytest.mark.parametrize("node", ["n1", "odd \"node\""])
def test_member_event_line_is_the_canonical_line(ev: object, node: str) -> None:
    want = canonical(
        {"data": jsonable(ev), "ev": "event", "node": node, "t": "1.000000000",
         "type": type(ev).__name__}
    )
    got = member_event_line(node, "1.000000000", ev)
    assert got == want
    assert json.loads(got)["type"] == type(ev).__name__


def test_a_membership_trace_says_what_happened_and_replays(tmp_path: Path) -> None:
    """Member records are traced as facts (who, where, incarnation, state), and a trace
    full of them still replays line for line to the same digest."""
    text = TEXT.replace('kind = "ping"', 'kind = "membership"')
    sc = parse_scenario_text(text, source="<test>")
    path = tmp_path / "m.jsonl"
    original = run_scenario(sc, trace_path=str(path))
    failed = []
    for raw in path.read_text().splitlines()[1:]:
        line = json.loads(raw)
        if line.get("type") == "MemberFailed":
            failed.append(line)
    # n2 crashed at 3 s for 2 s: someone marked it failed, or it was back in time.
    for line in failed:
        member = line["data"]["member"]
        assert member["state"] == "failed"
        assert set(member) == {"addr", "id", "inc", "meta", "name", "obs", "state"}
    joined = [r for r in path.read_text().splitlines() if '"type":"MemberJoined"' in r]
    assert len(joined) >= 4 * 3  # every node learned the three others
    result, matches, divergence = replay_trace(str(path))
    assert matches, divergence
    assert result.trace_digest == original.trace_digest
