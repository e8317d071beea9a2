"""Standard channels, their stream priorities, topic names and the topic map."""

from __future__ import annotations

import pytest

from foundation_p2p.channels.names import (
    CONTROL,
    DATA,
    EVENTS,
    MAX_TOPIC_BYTES,
    STANDARD_CHANNELS,
    TELEMETRY,
    TopicMap,
    channel_named,
    channel_of_stream,
    channel_stream_id,
    check_topic,
)
from foundation_p2p.errors import ConfigError


def test_control_before_events_before_telemetry_before_data() -> None:
    assert CONTROL.urgency < EVENTS.urgency < TELEMETRY.urgency < DATA.urgency
    assert all(0 <= c.urgency <= 7 for c in STANDARD_CHANNELS)
    assert [c.number for c in STANDARD_CHANNELS] == [0, 1, 2, 3]
    assert [c.name for c in STANDARD_CHANNELS] == ["control", "events", "data", "telemetry"]
    assert not CONTROL.incremental and DATA.incremental


@pytest.mark.parametrize("name", ["a", "orders", "app.orders/eu-1:v2", "9lives", "x" * 64])
def test_valid_topics(name: str) -> None:
    assert check_topic(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("x" * (MAX_TOPIC_BYTES + 1), "65 characters exceeds 64"),
        ("ordres é", "non-ASCII"),
        (".hidden", "must start with a letter or digit"),
        ("a b", "character ' ' not allowed"),
        ("a*", "character '\\*' not allowed"),
        (b"bytes", "expected a string"),
    ],
)
def test_invalid_topics_name_the_problem(name: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        check_topic(name)


def test_topic_map_defaults_custom_topics_to_events() -> None:
    tm = TopicMap()
    assert tm.channel_of("orders") is EVENTS
    assert tm.channel_of("data") is DATA
    tm.define("video", "data")
    tm.define("heartbeat", CONTROL)
    assert tm.channel_of("video") is DATA and tm.channel_of("heartbeat") is CONTROL
    assert tm.defined() == {"heartbeat": "control", "video": "data"}
    with pytest.raises(ConfigError, match="standard channel rides only itself"):
        tm.define("control", "data")
    with pytest.raises(ConfigError, match="not a standard channel"):
        tm.define("x", "bulk")
    with pytest.raises(ConfigError, match="character"):
        tm.channel_of("bad topic")


def test_topic_map_is_bounded() -> None:
    tm = TopicMap(max_topics=2)
    tm.define("a", "data")
    tm.define("b", "data")
    tm.define("a", "control")  # redefinition does not count
    with pytest.raises(ConfigError, match="already 2 custom topics"):
        tm.define("c", "data")


def test_channel_named() -> None:
    assert channel_named("telemetry") is TELEMETRY
    assert channel_named(TELEMETRY) is TELEMETRY
    with pytest.raises(ConfigError):
        channel_named(3)


def test_channel_streams_are_the_first_four_unidirectional_streams() -> None:
    assert [channel_stream_id(c, initiator=True) for c in STANDARD_CHANNELS] == [2, 6, 10, 14]
    assert [channel_stream_id(c, initiator=False) for c in STANDARD_CHANNELS] == [3, 7, 11, 15]
    for c in STANDARD_CHANNELS:
        for initiator in (True, False):
            assert channel_of_stream(channel_stream_id(c, initiator=initiator)) is c
    for not_channel in (0, 1, 4, 5, 16, 18, 19, -1):
        assert channel_of_stream(not_channel) is None
