"""Regenerate ``spec/vectors/channels.json`` deterministically.

Usage: ``python spec/vectors/generate_channels.py [--check]``. With ``--check`` nothing is
written; the script exits 1 if the committed file differs from what it would write.

Like the other generators, this script never calls the project's encoders: records are
built with ``struct``, ``cbor2`` and ``zlib`` from the layout of ``spec/channels.md``
section 4, topic sets with ``cbor2`` from section 6, and the routing expectations from the
rules of section 3 written out again here.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import cbor2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import FORMAT, MAX_U64, dumps, render, to_json

HERE = Path(__file__).resolve().parent
FILE = "channels.json"

COMPRESSED = 0x01
BINARY = 0x02
LARGE_MESSAGE_BYTES = 10 * 1024

CHANNELS = [
    {
        "name": name,
        "number": n,
        "urgency": u,
        "incremental": inc,
        "stream_id_initiator": 4 * n + 2,
        "stream_id_responder": 4 * n + 3,
    }
    for name, n, u, inc in [
        ("control", 0, 0, False),
        ("events", 1, 2, True),
        ("data", 2, 6, True),
        ("telemetry", 3, 4, True),
    ]
]


def record(topic: bytes, seq: int, flags: int, body: bytes) -> bytes:
    """Header (body_length u32, flags u8, seq u64, topic_length u8), topic, body."""
    return struct.pack(">IBQB", len(body), flags, seq, len(topic)) + topic + body


def body_of(value: Any, compress: bool) -> tuple[int, bytes]:
    if isinstance(value, bytes):
        flags, body = BINARY, value
    else:
        flags, body = 0, dumps(value)
    if compress:
        flags, body = flags | COMPRESSED, zlib.compress(body, 6)
    return flags, body


VALID: list[tuple[str, str, int, Any, bool]] = [
    ("an integer on events", "events", 0, 1, False),
    ("a map with text keys in length-first order", "orders", 7, {"id": 42, "sku": "a-1"}, False),
    ("a nested array, null and a float", "app.x/y:z-1", 2**32, [None, [1.5, True]], False),
    (
        "16 nested arrays: the deepest accepted",
        "events",
        8,
        [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]],
        False,
    ),
    ("a byte string travels BINARY, without a CBOR head", "data", 1, b"\x00\x01\x02\xff", False),
    ("an empty byte string", "data", 2, b"", False),
    ("the largest sequence number and a 64-character topic", "t" * 64, MAX_U64, "x", False),
    ("a compressed text", "events", 3, "compress me " * 20, True),
    ("a compressed byte string (COMPRESSED | BINARY)", "data", 4, b"\xab" * 300, True),
    (
        "a telemetry sample",
        "telemetry",
        5,
        {"value": 0.5, "metric": "cpu", "timestamp": 1_790_000_000},
        False,
    ),
]


def valid_records() -> list[dict[str, Any]]:
    out = []
    for name, topic, seq, value, compress in VALID:
        flags, body = body_of(value, compress)
        out.append(
            {
                "name": name,
                "topic": topic,
                "seq": seq,
                "flags": flags,
                "value": to_json(cbor2.loads(dumps(value))),
                "hex": record(topic.encode(), seq, flags, body).hex(),
            }
        )
    return out


def stream() -> dict[str, Any]:
    parts = [record(b"events", i, *body_of(v, i == 2)) for i, v in enumerate([1, "two", "3" * 40])]
    return {
        "name": "three records back to back; any split of the bytes gives the same records",
        "hex": b"".join(parts).hex(),
        "records": [
            {"topic": "events", "seq": i, "value": to_json(v)}
            for i, v in enumerate([1, "two", "3" * 40])
        ],
    }


def invalid_records() -> list[dict[str, Any]]:
    one = dumps(1)
    items: list[tuple[str, bytes, str, int | None]] = [
        ("unknown flag bit 0x04", record(b"t", 0, 0x04, one), "malformed", None),
        ("topic length 0", record(b"", 0, 0, one), "malformed", None),
        ("topic length 65", record(b"t" * 65, 0, 0, one), "malformed", None),
        ("topic with a space", record(b"a b", 0, 0, one), "malformed", None),
        ("topic starting with a dot", record(b".a", 0, 0, one), "malformed", None),
        ("topic with a non-ASCII byte", record(b"\xc3\xa9", 0, 0, one), "malformed", None),
        ("empty CBOR body", record(b"t", 0, 0, b""), "malformed", None),
        ("non-shortest integer", record(b"t", 0, 0, b"\x18\x01"), "malformed", None),
        ("two CBOR items in one body", record(b"t", 0, 0, b"\x01\x02"), "malformed", None),
        (
            "map keys out of length-first order",
            record(b"t", 0, 0, b"\xa2\x62bb\x01\x61a\x02"),
            "malformed",
            None,
        ),
        ("indefinite-length array", record(b"t", 0, 0, b"\x9f\x01\xff"), "malformed", None),
        ("a tag (epoch time)", record(b"t", 0, 0, b"\xc1\x01"), "malformed", None),
        ("a tag that re-encodes unchanged", record(b"t", 0, 0, b"\xd8\x64\x01"), "malformed", None),
        ("undefined", record(b"t", 0, 0, b"\x81\xf7"), "malformed", None),
        ("a simple value", record(b"t", 0, 0, b"\xf0"), "malformed", None),
        (
            "a CBOR byte string without the BINARY flag",
            record(b"t", 0, 0, b"\x43abc"),
            "malformed",
            None,
        ),
        (
            "COMPRESSED body that is not zlib",
            record(b"t", 0, COMPRESSED, b"nope"),
            "malformed",
            None,
        ),
        (
            "COMPRESSED body truncated",
            record(b"t", 0, COMPRESSED, zlib.compress(one)[:-2]),
            "malformed",
            None,
        ),
        (
            "bytes after the zlib stream",
            record(b"t", 0, COMPRESSED, zlib.compress(one) + b"\x00"),
            "malformed",
            None,
        ),
        (
            "17 nested arrays: deeper than 16",
            record(b"t", 0, 0, b"\x81" * 16 + b"\x80"),
            "limit",
            None,
        ),
        (
            "body_length above max_message_bytes (1000), refused from the header",
            struct.pack(">IBQB", 1001, 0, 0, 1) + b"t",
            "limit",
            1000,
        ),
        (
            "zlib stream inflating beyond max_message_bytes (1000)",
            record(b"t", 0, COMPRESSED | BINARY, zlib.compress(bytes(100_000), 9)),
            "limit",
            1000,
        ),
        ("record truncated inside the body", record(b"t", 0, 0, one)[:-1], "malformed", None),
        ("record truncated inside the header", record(b"t", 0, 0, one)[:9], "malformed", None),
    ]
    out = []
    for name, data, error, limit in items:
        entry: dict[str, Any] = {"name": name, "hex": data.hex(), "error": error}
        if limit is not None:
            entry["max_message_bytes"] = limit
        out.append(entry)
    return out


def topic_sets() -> dict[str, Any]:
    """Values of membership announcement extension 1 (section 6): a sorted list of
    distinct topics, or ``true`` for every topic (the wildcard)."""
    valid: list[tuple[str, Any]] = [
        ("no topics (a sender announces no extension instead)", []),
        ("two topics, sorted", ["events", "orders"]),
        ("sorted in byte order", ["Z", "a", "b.c", "z"]),
        ("the wildcard: every topic", True),
    ]
    invalid: list[tuple[str, Any, str]] = [
        ("false", False, "malformed"),
        ("the old [epoch, version, topics] shape", [1, 1, ["a"]], "malformed"),
        ("topics not sorted", ["b", "a"], "malformed"),
        ("a topic repeated", ["a", "a"], "malformed"),
        ("an invalid topic name", ["a b"], "malformed"),
        ("65 topics (max_topics 64)", [f"t{i:03d}" for i in range(65)], "limit"),
    ]
    return {
        "valid": [
            {
                "name": n,
                "wildcard": t is True,
                "topics": [] if t is True else t,
                "hex": dumps(t).hex(),
                "cddl": "topic-set",
            }
            for n, t in valid
        ],
        "invalid": [{"name": n, "hex": dumps(v).hex(), "error": err} for n, v, err in invalid],
    }


def routing() -> list[dict[str, Any]]:
    sample = {"metric": "cpu", "value": 0.5, "timestamp": 1_790_000_000}
    cases: list[tuple[str, Any, str]] = [
        ("high priority goes on control", {"cmd": "stop"}, "high"),
        ("high priority wins over size", b"x" * 20_000, "high"),
        ("exactly 10 KiB encoded: not larger", b"x" * (LARGE_MESSAGE_BYTES - 3), "normal"),
        ("one byte over 10 KiB goes on data", b"x" * (LARGE_MESSAGE_BYTES - 2), "normal"),
        ("telemetry-shaped goes on telemetry", sample, "normal"),
        ("telemetry-shaped with extra keys", dict(sample, unit="%"), "low"),
        ("a boolean value is not a number", dict(sample, value=True), "normal"),
        ("a sample missing its timestamp", {"metric": "cpu", "value": 1}, "normal"),
        ("anything else goes on events", "hello", "normal"),
    ]
    out = []
    for name, message, priority in cases:
        size = len(dumps(message))
        shaped = (
            isinstance(message, dict)
            and isinstance(message.get("metric"), str)
            and message["metric"] != ""
            and type(message.get("value")) in (int, float)
            and type(message.get("timestamp")) in (int, float)
        )
        if priority == "high":
            channel, rule = "control", "priority"
        elif size > LARGE_MESSAGE_BYTES:
            channel, rule = "data", "size"
        elif shaped:
            channel, rule = "telemetry", "telemetry"
        else:
            channel, rule = "events", "default"
        entry: dict[str, Any] = {"name": name, "priority": priority}
        if isinstance(message, bytes) and len(message) > 64:
            entry["message_bytes_repeat"] = [message[:1].hex(), len(message)]
        else:
            entry["message"] = to_json(message)
        entry.update(channel=channel, rule=rule, encoded_bytes=size)
        out.append(entry)
    return out


def build() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "about": (
            "Channels (spec/channels.md). 'channels': the four standard channels and their "
            "stream priorities (section 1). 'topic_names': valid and invalid topic names "
            "(section 2). 'routing': route_message(message, priority) gives 'channel' by "
            "'rule'; 'encoded_bytes' is the message's deterministic CBOR length; a long byte "
            "string is written 'message_bytes_repeat': [byte hex, count] (section 3). "
            "'record': one record (section 4): decoding 'hex' gives 'topic', 'seq', 'flags' "
            "and 'value'; a record without the COMPRESSED flag is also the exact encoding of "
            "that message (compressed ones are decode-only: zlib output may differ between "
            "encoders). 'stream': records back to back. 'invalid_record': decoding 'hex' "
            "(with 'max_message_bytes' where given, else the default 64 MiB) raises "
            "'error'. 'topic_set': announced topic sets, the value of membership "
            "announcement extension 1 (section 6), valid (with their 'cddl' rule of "
            "spec/channels.cddl) and invalid ones with their 'error'."
        ),
        "channels": CHANNELS,
        "topic_names": {
            "valid": ["a", "events", "app.orders/eu-1:v2", "9", "x" * 64],
            "invalid": ["", "x" * 65, ".a", "-a", "a b", "a*b", "caf\u00e9", "a\nb"],
        },
        "routing": routing(),
        "record": valid_records(),
        "stream": stream(),
        "invalid_record": invalid_records(),
        "topic_set": topic_sets(),
    }


def main(argv: list[str]) -> int:
    text = render(build())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{FILE} is stale: run python spec/vectors/generate_channels.py")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
