"""Conformance: the channels code against ``spec/vectors/channels.json`` and the CDDL.

The committed JSON file is the source of truth; nothing here regenerates it. Valid topic
sets and record bodies are also validated against ``spec/channels.cddl`` by ``pycddl``
(an independent validator), and the invalid topic names must be refused by it as well.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest
from vector_json import from_json, ids

from foundation_p2p.channels.codec import (
    COMPRESSED,
    ChannelLimits,
    RecordDecoder,
    decode_record,
    encode_record,
)
from foundation_p2p.channels.gossip import WILDCARD_VALUE, decode_topics, encode_topics
from foundation_p2p.channels.names import (
    STANDARD_CHANNELS,
    channel_of_stream,
    channel_stream_id,
    check_topic,
    topic_problem,
)
from foundation_p2p.channels.routing import explain
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError

SPEC = Path(__file__).resolve().parents[2] / "spec"
VECTORS: dict[str, Any] = json.loads((SPEC / "vectors" / "channels.json").read_text("utf-8"))
assert VECTORS["format"] == 1
CDDL = (SPEC / "channels.cddl").read_text(encoding="utf-8")
ERRORS: dict[str, type[WireError]] = {"malformed": MalformedError, "limit": LimitError}


@cache
def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"cddl-vector-root = {rule}\n{CDDL}")


def test_standard_channels() -> None:
    got = [
        {
            "name": c.name,
            "number": c.number,
            "urgency": c.urgency,
            "incremental": c.incremental,
            "stream_id_initiator": channel_stream_id(c, initiator=True),
            "stream_id_responder": channel_stream_id(c, initiator=False),
        }
        for c in STANDARD_CHANNELS
    ]
    assert got == VECTORS["channels"]
    for entry in VECTORS["channels"]:
        for key in ("stream_id_initiator", "stream_id_responder"):
            channel = channel_of_stream(entry[key])
            assert channel is not None and channel.name == entry["name"]


@pytest.mark.parametrize("name", VECTORS["topic_names"]["valid"])
def test_valid_topic_names(name: str) -> None:
    assert check_topic(name) == name
    schema("topic").validate_cbor(cbor2.dumps(name))


@pytest.mark.parametrize("name", VECTORS["topic_names"]["invalid"])
def test_invalid_topic_names(name: str) -> None:
    assert topic_problem(name) is not None
    with pytest.raises(ConfigError):
        check_topic(name)
    with pytest.raises(pycddl.ValidationError):
        schema("topic").validate_cbor(cbor2.dumps(name))


def _routing_message(entry: dict[str, Any]) -> Any:
    if "message_bytes_repeat" in entry:
        byte_hex, count = entry["message_bytes_repeat"]
        return bytes.fromhex(byte_hex) * count
    return from_json(entry["message"])


@pytest.mark.parametrize("entry", VECTORS["routing"], ids=ids(VECTORS["routing"]))
def test_routing(entry: dict[str, Any]) -> None:
    decision = explain(_routing_message(entry), priority=entry["priority"])
    assert decision.channel.name == entry["channel"]
    assert decision.rule == entry["rule"]
    assert decision.encoded_bytes == entry["encoded_bytes"]


@pytest.mark.parametrize("entry", VECTORS["record"], ids=ids(VECTORS["record"]))
def test_valid_record(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    m = decode_record(data)
    value = from_json(entry["value"])
    assert (m.topic, m.seq, m.flags, m.record_bytes) == (
        entry["topic"],
        entry["seq"],
        entry["flags"],
        len(data),
    )
    assert m.value == value and type(m.value) is type(value)
    if not entry["flags"] & COMPRESSED:
        assert encode_record(entry["topic"], entry["seq"], value) == data
    if type(value) is not bytes:
        schema("channel-message").validate_cbor(cbor2.dumps(value, canonical=True))


def test_stream_split_anywhere() -> None:
    entry = VECTORS["stream"]
    data = bytes.fromhex(entry["hex"])
    want = [(r["topic"], r["seq"], from_json(r["value"])) for r in entry["records"]]
    for cut in range(len(data) + 1):
        d = RecordDecoder()
        got = d.feed(data[:cut]) + d.feed(data[cut:])
        assert [(m.topic, m.seq, m.value) for m in got] == want
        d.end_of_stream()


@pytest.mark.parametrize("entry", VECTORS["invalid_record"], ids=ids(VECTORS["invalid_record"]))
def test_invalid_record(entry: dict[str, Any]) -> None:
    limits = ChannelLimits(max_message_bytes=entry.get("max_message_bytes", 64 * 1024 * 1024))
    data = bytes.fromhex(entry["hex"])
    error = ERRORS[entry["error"]]
    with pytest.raises(error) as info:
        decode_record(data, limits)
    assert type(info.value) is error
    # The incremental decoder refuses the same bytes fed one at a time (or, for a
    # truncated record, holds them without a record and refuses the end of the stream).
    d = RecordDecoder(limits)
    with pytest.raises(error):
        for i in range(len(data)):
            assert d.feed(data[i : i + 1]) == []
        d.end_of_stream()


@pytest.mark.parametrize(
    "entry", VECTORS["topic_set"]["valid"], ids=ids(VECTORS["topic_set"]["valid"])
)
def test_valid_topic_set(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    ts = decode_topics(data)
    assert (ts.wildcard, list(ts.topics)) == (entry["wildcard"], entry["topics"])
    again = WILDCARD_VALUE if entry["wildcard"] else encode_topics(entry["topics"])
    assert again == data
    schema(entry["cddl"]).validate_cbor(data)


@pytest.mark.parametrize(
    "entry", VECTORS["topic_set"]["invalid"], ids=ids(VECTORS["topic_set"]["invalid"])
)
def test_invalid_topic_set(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    with pytest.raises(ERRORS[entry["error"]]):
        decode_topics(data)
    # Order and distinctness are beyond CDDL; every other invalid set breaks its shape.
    # pycddl 0.6 does not check an array's elements inside a type choice, so an array is
    # also checked against the list rule alone.
    if "sorted" not in entry["name"] and "repeated" not in entry["name"]:
        rule = "topic-list" if data[:1] != b"\xf4" else "topic-set"
        with pytest.raises(pycddl.ValidationError):
            schema(rule).validate_cbor(data)


def test_generator_is_in_sync() -> None:
    """The committed vectors are what the generator writes (it never calls our encoders)."""
    import subprocess
    import sys

    script = SPEC / "vectors" / "generate_channels.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
