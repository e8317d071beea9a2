"""Regenerate ``spec/vectors/wal.json`` deterministically.

Usage: ``python spec/vectors/generate_wal.py [--check]``. With ``--check`` nothing is
written; the script exits 1 if the committed file differs from what it would write.

Like the other generators, this script never calls the project's encoders: records are
built with ``struct``, ``zlib`` and ``cbor2`` from the layout of ``spec/consensus-wal.md``
section 2, segment files from section 3, and the KV commands, results and snapshot from
``spec/consensus-kv.md``.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import FORMAT, MAX_U64, dumps, render, to_json

HERE = Path(__file__).resolve().parent
FILE = "wal.json"

SEGMENT_HEADER, ENTRY, HARD_STATE, SNAPSHOT, SNAPSHOT_DATA = 1, 2, 3, 4, 6
NODE_A = bytes(range(0x10, 0x20))
NODE_B = bytes(range(0x20, 0x30))
NODE_C = bytes(range(0x30, 0x40))


def record(rtype: int, body: bytes) -> bytes:
    """Header (length u32, type u8, CRC-32 of length+type+body u32), then the body."""
    head = struct.pack(">IB", len(body), rtype)
    return head + struct.pack(">I", zlib.crc32(head + body)) + body


def conf_body(voters: list[bytes], learners: list[bytes], outgoing: list[bytes]) -> bytes:
    return dumps([sorted(voters), sorted(learners), sorted(outgoing)])


def conf_json(voters: list[bytes], learners: list[bytes], outgoing: list[bytes]) -> Any:
    return {
        "voters": [v.hex() for v in sorted(voters)],
        "learners": [v.hex() for v in sorted(learners)],
        "voters_outgoing": [v.hex() for v in sorted(outgoing)],
    }


def segment_header(seq: int, first_index: int) -> tuple[bytes, Any]:
    body = struct.pack(">8sBQQ", b"fp2p-wal", 1, seq, first_index)
    return record(SEGMENT_HEADER, body), {
        "type": "segment_header",
        "segment": seq,
        "first_index": first_index,
    }


def entry(term: int, index: int, kind: int, data: bytes) -> tuple[bytes, Any]:
    body = struct.pack(">QQB", term, index, kind) + data
    return record(ENTRY, body), {
        "type": "entry",
        "term": term,
        "index": index,
        "kind": kind,
        "data": data.hex(),
    }


def hard_state(term: int, commit: int, vote: bytes | None) -> tuple[bytes, Any]:
    body = struct.pack(">QQB", term, commit, vote is not None) + (vote or b"")
    return record(HARD_STATE, body), {
        "type": "hard_state",
        "term": term,
        "commit": commit,
        "vote": vote.hex() if vote else None,
    }


def snapshot_marker(
    index: int, term: int, mode: int, conf: tuple[list[bytes], list[bytes], list[bytes]]
) -> tuple[bytes, Any]:
    body = struct.pack(">QQB", index, term, mode) + conf_body(*conf)
    return record(SNAPSHOT, body), {
        "type": "snapshot",
        "index": index,
        "term": term,
        "mode": mode,
        "conf": conf_json(*conf),
    }


def snapshot_data(index: int, term: int, data: bytes) -> tuple[bytes, Any]:
    body = struct.pack(">QQ", index, term) + data
    return record(SNAPSHOT_DATA, body), {
        "type": "snapshot_data",
        "index": index,
        "term": term,
        "data": data.hex(),
    }


def valid_records() -> list[dict[str, Any]]:
    cases = [
        ("segment header, segment 0, first index 1", segment_header(0, 1)),
        ("segment header, largest values", segment_header(MAX_U64, MAX_U64)),
        ("entry: a normal command", entry(1, 1, 0, b"put k v")),
        ("entry: the empty no-op of a new leader", entry(7, 42, 2, b"")),
        ("entry: a configuration change", entry(3, 9, 1, b"\x01\x02")),
        ("entry: largest term and index", entry(MAX_U64, MAX_U64, 0, b"\xff")),
        ("hard state without a vote", hard_state(0, 0, None)),
        ("hard state with a vote", hard_state(5, 17, NODE_A)),
        ("snapshot marker, compact", snapshot_marker(100, 4, 0, ([NODE_B, NODE_A], [], []))),
        (
            "snapshot marker, install, joint configuration with a learner",
            snapshot_marker(250, 6, 1, ([NODE_A, NODE_C], [NODE_B], [NODE_A])),
        ),
        ("snapshot marker, empty configuration", snapshot_marker(1, 1, 0, ([], [], []))),
        (
            "snapshot marker, three voters",
            snapshot_marker(9, 2, 0, ([NODE_C, NODE_A, NODE_B], [], [])),
        ),
        ("snapshot data", snapshot_data(100, 4, b"state machine bytes")),
    ]
    return [{"name": name, "record": value, "hex": raw.hex()} for name, (raw, value) in cases]


def invalid_records() -> list[dict[str, Any]]:
    good = entry(2, 3, 0, b"abc")[0]
    flipped = bytearray(good)
    flipped[-1] ^= 0x01
    head_flip = bytearray(good)
    head_flip[4] = HARD_STATE  # the type changed: the CRC covers it
    unknown_type = record(99, b"")
    bad_kind = record(ENTRY, struct.pack(">QQB", 1, 1, 7))
    index_zero = record(ENTRY, struct.pack(">QQB", 1, 0, 0))
    bad_vote = record(HARD_STATE, struct.pack(">QQB", 1, 1, 1) + b"\x00" * 15)
    bad_magic = record(SEGMENT_HEADER, struct.pack(">8sBQQ", b"fp2p-wax", 1, 0, 1))
    bad_version = record(SEGMENT_HEADER, struct.pack(">8sBQQ", b"fp2p-wal", 2, 0, 1))
    unsorted = record(SNAPSHOT, struct.pack(">QQB", 1, 1, 0) + dumps([[NODE_B, NODE_A], [], []]))
    reserved = record(5, conf_body([], [], []))
    bad_mode = record(SNAPSHOT, struct.pack(">QQB", 1, 1, 2) + conf_body([], [], []))
    huge = struct.pack(">IBI", 0x7FFFFFFF, ENTRY, 0)
    cases: list[tuple[str, bytes, str, str]] = [
        ("empty input: truncated header", b"", "malformed", "a header takes 9"),
        ("a header cut short", good[:5], "malformed", "a header takes 9"),
        ("a body cut short", good[:-1], "malformed", "only 19 left"),
        ("last body byte flipped", bytes(flipped), "malformed", "CRC mismatch"),
        ("type byte changed", bytes(head_flip), "malformed", "CRC mismatch"),
        ("length over the 64 MiB limit", huge, "limit", "exceeds the limit"),
        ("unknown record type", unknown_type, "malformed", "unknown record type 99"),
        ("reserved record type 5", reserved, "malformed", "unknown record type 5"),
        ("unknown entry kind", bad_kind, "malformed", "unknown entry kind 7"),
        ("entry index 0", index_zero, "malformed", "index 0"),
        ("vote of 15 bytes", bad_vote, "malformed", "expected 33"),
        ("segment header magic", bad_magic, "malformed", "magic"),
        ("segment header version 2", bad_version, "malformed", "unsupported version 2"),
        ("configuration ids not sorted", unsorted, "malformed", "not sorted"),
        ("snapshot mode 2", bad_mode, "malformed", "unknown mode 2"),
        ("trailing byte after a record", good + b"\x00", "malformed", "bytes after the record"),
    ]
    return [
        {"name": name, "hex": raw.hex(), "error": code, "message_contains": text}
        for name, raw, code, text in cases
    ]


def segments() -> list[dict[str, Any]]:
    """Whole segment files (segment 0) and what recovering them gives."""
    head = segment_header(0, 1)[0]
    prelude = head + hard_state(0, 0, None)[0]
    e1, e2, e3 = (entry(1, i, 0, b"cmd%d" % i)[0] for i in (1, 2, 3))
    e2b = entry(2, 2, 0, b"new2")[0]
    hs = hard_state(1, 1, NODE_A)[0]
    hs2 = hard_state(2, 2, NODE_B)[0]
    clean = prelude + e1 + e2 + e3 + hs
    overwrite = prelude + e1 + e2 + e3 + hs + e2b + hs2
    corrupt = bytearray(clean)
    corrupt[len(prelude) + len(e1) + 12] ^= 0x20  # inside entry 2, entry 3 follows
    out = [
        {
            "name": "clean: three entries and a hard state",
            "hex": clean.hex(),
            "entries": [[1, 1, "cmd1"], [2, 1, "cmd2"], [3, 1, "cmd3"]],
            "hard_state": {"term": 1, "commit": 1, "vote": NODE_A.hex()},
            "torn_tail_bytes": 0,
        },
        {
            "name": "overwrite: a record for index 2 replaces entries 2 and 3",
            "hex": overwrite.hex(),
            "entries": [[1, 1, "cmd1"], [2, 2, "new2"]],
            "hard_state": {"term": 2, "commit": 2, "vote": NODE_B.hex()},
            "torn_tail_bytes": 0,
        },
        {
            "name": "torn tail: the hard state record cut after 10 bytes",
            "hex": (prelude + e1 + e2 + e3 + hs[:10]).hex(),
            "entries": [[1, 1, "cmd1"], [2, 1, "cmd2"], [3, 1, "cmd3"]],
            "hard_state": {"term": 0, "commit": 0, "vote": None},
            "torn_tail_bytes": 10,
        },
        {
            "name": "torn tail: zero-filled blocks after entry 2",
            "hex": (prelude + e1 + e2 + bytes(64)).hex(),
            "entries": [[1, 1, "cmd1"], [2, 1, "cmd2"]],
            "hard_state": {"term": 0, "commit": 0, "vote": None},
            "torn_tail_bytes": 64,
        },
        {
            "name": "corruption: a flipped bit in entry 2 with entry 3 after it",
            "hex": bytes(corrupt).hex(),
            "error_offset": len(prelude) + len(e1),
        },
    ]
    return out


def kv_vectors() -> dict[str, Any]:
    session = [42, 7, 5]
    commands = [
        ("get", [1, None, [0, b"k"]]),
        ("put", [1, None, [1, b"k", b"v"]]),
        ("delete with a session", [1, session, [2, b"k"]]),
        ("cas: create only if absent", [1, session, [3, b"k", None, b"v"]]),
        ("cas: delete if equal", [1, None, [3, b"k", b"v", None]]),
        ("range [a, c), at most 10", [1, None, [4, b"a", b"c", 10]]),
        ("range from a to the end, the store's maximum", [1, None, [4, b"a", None, 0]]),
        ("register", [1, None, [5]]),
        ("close a session", [1, session, [6]]),
    ]
    results = [
        ("get: found", [0, b"v"]),
        ("get: absent", [0, None]),
        ("cas: swapped", [0, [True, b"v"]]),
        ("cas: not swapped, current value", [0, [False, b"other"]]),
        ("range: two pairs, more", [0, [[[b"a", b"1"], [b"b", b"2"]], True]]),
        ("register: client id", [0, 8]),
        ("refused: session expired", [1, "session_expired: client 42 seq 7"]),
    ]
    snapshot = [1, 12, 0, [[b"a", b"1"], [b"b", b"2"]], [[8, 12, 1, [[2, dumps([0, None])]]]]]
    return {
        "commands": [{"name": n, "value": to_json(v), "hex": dumps(v).hex()} for n, v in commands],
        "results": [{"name": n, "value": to_json(v), "hex": dumps(v).hex()} for n, v in results],
        "snapshot": {"value": to_json(snapshot), "hex": dumps(snapshot).hex()},
    }


def build() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "description": (
            "Write-ahead log records (spec/consensus-wal.md section 2): decoding 'hex' gives "
            "'record' and encoding 'record' gives 'hex'. 'invalid_record': decoding 'hex' "
            "raises a WireError with code 'error' whose message contains "
            "'message_contains'. 'segment': the bytes of segment file 0000000000000000.wal "
            "alone in a directory; recovery gives 'entries' ([index, term, data as text]) "
            "and 'hard_state' after cutting 'torn_tail_bytes', or refuses it as corrupt at "
            "'error_offset'. 'kv': commands, results and a snapshot of the KV state machine "
            "(spec/consensus-kv.md) as deterministic CBOR, with their JSON form "
            "(spec/README.md)."
        ),
        "record": valid_records(),
        "invalid_record": invalid_records(),
        "segment": segments(),
        "kv": kv_vectors(),
    }


def main(argv: list[str]) -> int:
    text = render(build())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{FILE} is stale: run python spec/vectors/generate_wal.py")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
