"""Prometheus exposition: names, HELP/TYPE lines, label escaping, values; parsed back by a
strict parser written here and by prometheus_client's."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation_p2p.clock import Now
from foundation_p2p.health.monitor import HealthMonitor
from foundation_p2p.health.prometheus import (
    Family,
    escape_label_value,
    format_value,
    health_families,
    metric_name,
    render,
)
from foundation_p2p.health.summary import HealthSummary
from foundation_p2p.membership.state import Member, MemberState

_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)\Z')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|\Z)')


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse(text: str) -> dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]]:
    """name -> (type, help, samples); asserts HELP then TYPE precede every family."""
    assert text.endswith("\n")
    out: dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]] = {}
    lines = text[:-1].split("\n")
    i = 0
    while i < len(lines):
        h = lines[i].split(" ", 3)
        t = lines[i + 1].split(" ")
        assert h[:2] == ["#", "HELP"] and t[:2] == ["#", "TYPE"] and h[2] == t[2]
        name = h[2]
        assert name not in out, f"family {name} repeated"
        samples: list[tuple[dict[str, str], float]] = []
        i += 2
        while i < len(lines) and not lines[i].startswith("#"):
            m = _SAMPLE.match(lines[i])
            assert m, lines[i]
            assert m.group(1) == name
            labels: dict[str, str] = {}
            body = m.group(3) or ""
            pos = 0
            while pos < len(body):
                lm = _LABEL.match(body, pos)
                assert lm, body[pos:]
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
            samples.append((labels, float(m.group(4))))
            i += 1
        out[name] = (t[3], h[3] if len(h) > 3 else "", samples)
    return out


def test_counters_and_gauges_round_trip() -> None:
    text = render({"packets.received": 12, "packets.dropped.auth_failed": 3},
                  {"health.loop_lag_ms": 1.5, "transport.connections": 2},
                  helps={"packets.received": "Datagrams received.\nAll kinds \\ both."})
    parsed = parse(text)
    assert parsed["foundation_p2p_packets_received_total"] == (
        "counter", "Datagrams received.\\nAll kinds \\\\ both.", [({}, 12.0)])
    assert parsed["foundation_p2p_packets_dropped_auth_failed_total"][2] == [({}, 3.0)]
    assert parsed["foundation_p2p_health_loop_lag_ms"][:1] == ("gauge",)
    assert parsed["foundation_p2p_health_loop_lag_ms"][2] == [({}, 1.5)]
    assert list(parsed) == sorted(parsed)


def test_colliding_counter_names_are_summed_not_repeated() -> None:
    parsed = parse(render({"a.b": 1, "a_b": 2, "a-b": 4}))
    assert parsed == {"foundation_p2p_a_b_total": ("counter", "Counter a-b.", [({}, 7.0)])}


def test_gauge_colliding_with_counter_or_family_is_refused() -> None:
    with pytest.raises(ValueError, match="collides"):
        render({"x": 1}, {"x_total": 2.0})
    with pytest.raises(ValueError, match="given twice"):
        render({"x": 1}, families=[Family("foundation_p2p_x_total", "gauge", "h")])
    with pytest.raises(ValueError, match="bad label name"):
        Family("f", "gauge", "h").add(1, **{"__reserved": "x"})


def test_values() -> None:
    assert format_value(3) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.nan) == "NaN"
    assert format_value(math.inf) == "+Inf" and format_value(-math.inf) == "-Inf"
    assert metric_name("membership.suspicion.started", counter=True) == (
        "foundation_p2p_membership_suspicion_started_total")


@given(st.text(max_size=40))
def test_any_label_value_survives_escaping(value: str) -> None:
    fam = Family("foundation_p2p_t", "gauge", "t").add(1, node=value, other="x")
    parsed = parse(render(families=[fam]))
    assert parsed["foundation_p2p_t"][2] == [({"node": value, "other": "x"}, 1.0)]
    assert "\n" not in escape_label_value(value)


def test_prometheus_client_parses_our_output() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    fam = Family("foundation_p2p_health_node_status", "gauge", "st").add(
        2, node='we"ird\\name\n', node_id="ab")
    text = render({"packets.received": 5}, {"g.x": 0.5}, families=[fam])
    got = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert got["foundation_p2p_packets_received"].type == "counter"
    assert got["foundation_p2p_packets_received"].samples[0].value == 5
    sample = got["foundation_p2p_health_node_status"].samples[0]
    assert sample.labels == {"node": 'we"ird\\name\n', "node_id": "ab"}
    assert sample.value == 2


def test_health_families_from_a_report() -> None:
    def member(i: int, state: MemberState) -> Member:
        return Member(bytes([i]) * 16, f"n{i}", ("127.0.0.1", i), 1, state, b"", False,
                      bytes(32), 0.0)

    report = HealthMonitor().report(
        Now(5.0, 0.0), local=bytes([1]) * 16,
        members=[member(1, MemberState.ALIVE), member(2, MemberState.SUSPECT)],
        summaries={bytes([1]) * 16: HealthSummary(bytes([1]) * 16, 1, 1)},
        received_at={bytes([1]) * 16: 5.0}, counters={}, rtt_samples=[0.004],
    )
    parsed = parse(render(families=health_families(report)))
    assert parsed["foundation_p2p_health_status"][2] == [({}, 1.0)]
    assert parsed["foundation_p2p_health_node_status"][2] == [
        ({"node": "n1", "node_id": "01" * 16}, 0.0),
        ({"node": "n2", "node_id": "02" * 16}, 1.0),
    ]
    assert parsed["foundation_p2p_health_latency_ms_p50"][2] == [({}, 4.0)]
    assert "foundation_p2p_health_packets_per_s" not in parsed  # not measurable yet
