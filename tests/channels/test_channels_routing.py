"""Routing rules (spec/channels.md section 3), one test per sentence of the seed:
high priority -> control; larger than 10 KiB -> data; telemetry-shaped -> telemetry;
otherwise events. And ``explain`` for each."""

from __future__ import annotations

import cbor2
import pytest

from foundation_p2p.channels.names import CONTROL, DATA, EVENTS, TELEMETRY
from foundation_p2p.channels.routing import (
    LARGE_MESSAGE_BYTES,
    encoded_size,
    explain,
    is_telemetry_shaped,
    route_message,
)
from foundation_p2p.errors import ConfigError, WireError

SAMPLE = {"metric": "cpu.load", "value": 0.75, "timestamp": 1_700_000_000}


def test_high_priority_goes_on_control() -> None:
    assert route_message({"cmd": "stop"}, priority="high") is CONTROL


def test_high_priority_wins_over_size_and_shape() -> None:
    assert route_message(b"x" * 100_000, priority="high") is CONTROL
    assert route_message(SAMPLE, priority="high") is CONTROL


def test_larger_than_10_kib_goes_on_data() -> None:
    assert LARGE_MESSAGE_BYTES == 10240
    # A byte string of n bytes encodes in n + 3 bytes (n < 65536).
    assert route_message(b"x" * (10240 - 3)) is EVENTS  # exactly 10 KiB: not larger
    assert route_message(b"x" * (10240 - 2)) is DATA  # one byte more
    assert route_message({"blob": "y" * 20_000}) is DATA


def test_size_wins_over_telemetry_shape() -> None:
    big_sample = dict(SAMPLE, tags=["t" * 100] * 200)
    assert is_telemetry_shaped(big_sample)
    assert route_message(big_sample) is DATA


def test_telemetry_shaped_goes_on_telemetry() -> None:
    assert route_message(SAMPLE) is TELEMETRY
    assert route_message(dict(SAMPLE, unit="s", tags={"host": "a"})) is TELEMETRY
    assert route_message({"metric": "m", "value": 3, "timestamp": 1.5}) is TELEMETRY


@pytest.mark.parametrize(
    "message",
    [
        {"metric": "m", "value": 1},  # no timestamp
        {"metric": "", "value": 1, "timestamp": 1},  # empty name
        {"metric": "m", "value": True, "timestamp": 1},  # a bool is not a number
        {"metric": "m", "value": "1", "timestamp": 1},
        {"metric": 7, "value": 1, "timestamp": 1},
        [{"metric": "m", "value": 1, "timestamp": 1}],  # a list of samples
        "metric value timestamp",
    ],
)
def test_not_telemetry_shaped_goes_on_events(message: object) -> None:
    assert not is_telemetry_shaped(message)
    assert route_message(message) is EVENTS


def test_otherwise_events() -> None:
    assert route_message("hello") is EVENTS
    assert route_message(None) is EVENTS
    assert route_message({"a": 1}, priority="low") is EVENTS


def test_encoded_size_matches_cbor_for_strings_and_values() -> None:
    for value in [
        b"",
        b"x" * 23,
        b"x" * 24,
        b"x" * 300,
        b"x" * 70_000,
        "abc",
        "é" * 30,
        {"a": [1, 2.5, None]},
        2**40,
    ]:
        assert encoded_size(value) == len(cbor2.dumps(value, canonical=True)), value


def test_explain_names_the_rule_and_sizes() -> None:
    d = explain(b"x" * 20_000)
    assert (d.channel, d.rule, d.encoded_bytes, d.threshold_bytes) == (DATA, "size", 20_003, 10240)
    assert str(d) == "data: rule size: 20003 encoded bytes > 10240"
    d = explain(SAMPLE)
    assert (d.channel, d.rule, d.telemetry_shaped) == (TELEMETRY, "telemetry", True)
    d = explain("hi", priority="high")
    assert (d.channel, d.rule, d.telemetry_shaped) == (CONTROL, "priority", None)
    assert "priority=high" in str(d)
    d = explain({"a": 1})
    assert (d.rule, d.telemetry_shaped) == ("default", False)
    for decision in (explain("x"), explain(SAMPLE), explain(b"z" * 11_000), explain(1, "high")):
        text = str(decision)
        assert "\n" not in text and text.startswith(decision.channel.name + ": rule ")


def test_unknown_priority_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="priority 'urgent'"):
        route_message("x", priority="urgent")


def test_message_that_is_not_cbor_data_is_refused() -> None:
    with pytest.raises(WireError):
        route_message({1, 2})
