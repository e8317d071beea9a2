"""Regenerate ``spec/vectors/consensus.json`` deterministically.

Usage: ``python spec/vectors/generate_consensus.py [--check]``. With ``--check`` nothing is
written; the script exits 1 if the committed file differs from what it would write.

Like the other generators, this one never calls the project's encoders: every message is
built with ``cbor2`` from the layout of ``spec/consensus.md`` section 3 (and
``spec/consensus.cddl``), so the vectors check the code against the spec, not against
itself.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import FORMAT, MAX_U64, dumps, render

HERE = Path(__file__).resolve().parent
FILE = "consensus.json"

A = bytes.fromhex("a1" * 16)
B = bytes.fromhex("b2" * 16)
C = bytes.fromhex("c3" * 16)

TYPES = {
    "PROP": 1,
    "APP": 2,
    "APP_RESP": 3,
    "VOTE": 4,
    "VOTE_RESP": 5,
    "PRE_VOTE": 6,
    "PRE_VOTE_RESP": 7,
    "SNAP": 8,
    "SNAP_RESP": 9,
    "HEARTBEAT": 10,
    "HEARTBEAT_RESP": 11,
    "TRANSFER_LEADER": 12,
    "TIMEOUT_NOW": 13,
    "READ_INDEX": 14,
    "READ_INDEX_RESP": 15,
}


def entry_json(term: int, index: int, kind: int, data: bytes) -> dict[str, Any]:
    return {"term": term, "index": index, "kind": kind, "data": data.hex()}


def entry_wire(e: dict[str, Any]) -> list[Any]:
    return [e["term"], e["index"], e["kind"], bytes.fromhex(e["data"])]


def message(name: str, to: bytes, frm: bytes, term: int, **fields: Any) -> dict[str, Any]:
    """One valid vector: the fields (JSON) and the bytes built from them by the layout."""
    t = TYPES[name]
    head: list[Any] = [t, to, frm, term]
    f = fields
    if name == "PROP":
        tail: list[Any] = [[entry_wire(e) for e in f["entries"]]]
    elif name == "APP":
        tail = [f["log_term"], f["index"], f["commit"], [entry_wire(e) for e in f["entries"]]]
    elif name == "APP_RESP":
        tail = [f["index"], f["reject"], f["reject_hint"], f["log_term"]]
    elif name in ("VOTE", "PRE_VOTE"):
        tail = [f["log_term"], f["index"], bytes.fromhex(f["context"])]
    elif name in ("VOTE_RESP", "PRE_VOTE_RESP"):
        tail = [f["reject"]]
    elif name == "SNAP":
        s = f["snapshot"]
        conf = [
            [bytes.fromhex(x) for x in s["voters"]],
            [bytes.fromhex(x) for x in s["learners"]],
            [bytes.fromhex(x) for x in s["voters_outgoing"]],
        ]
        tail = [[s["index"], s["term"], conf], f["offset"], f["total"], bytes.fromhex(f["data"])]
    elif name == "SNAP_RESP":
        tail = [f["index"], f["offset"], f["reject"]]
    elif name == "HEARTBEAT":
        tail = [f["commit"], bytes.fromhex(f["context"])]
    elif name in ("HEARTBEAT_RESP", "READ_INDEX"):
        tail = [bytes.fromhex(f["context"])]
    elif name in ("TRANSFER_LEADER", "TIMEOUT_NOW"):
        tail = []
    else:  # READ_INDEX_RESP
        tail = [f["index"], bytes.fromhex(f["context"])]
    return {
        "name": name.lower(),
        "cddl": name.lower().replace("_", "-"),
        "type": name,
        "to": to.hex(),
        "from": frm.hex(),
        "term": term,
        "fields": fields,
        "hex": dumps(head + tail).hex(),
    }


def valid() -> list[dict[str, Any]]:
    conf_change = dumps([[0, C], [2, A]])
    return [
        message("PROP", B, A, 0, entries=[entry_json(0, 0, 0, b"put x=1")]),
        message(
            "APP",
            B,
            A,
            7,
            log_term=6,
            index=41,
            commit=40,
            entries=[
                entry_json(7, 42, 2, b""),
                entry_json(7, 43, 0, b"\x00\x01"),
                entry_json(7, 44, 1, conf_change),
            ],
        ),
        message("APP_RESP", A, B, 7, index=44, reject=False, reject_hint=0, log_term=0),
        message("VOTE", B, C, 8, log_term=7, index=44, context=b"transfer".hex()),
        message("VOTE_RESP", C, B, 8, reject=False),
        message("PRE_VOTE", A, C, 9, log_term=7, index=44, context=""),
        message("PRE_VOTE_RESP", C, A, 8, reject=True),
        message(
            "SNAP",
            C,
            A,
            MAX_U64,
            snapshot={
                "index": 1000,
                "term": 6,
                "voters": [A.hex(), B.hex()],
                "learners": [C.hex()],
                "voters_outgoing": [],
            },
            offset=4096,
            total=4100,
            data="deadbeef",
        ),
        message("SNAP_RESP", A, C, 7, index=1000, offset=4100, reject=False),
        message("HEARTBEAT", B, A, 7, commit=44, context="0102"),
        message("HEARTBEAT_RESP", A, B, 7, context="0102"),
        message("TRANSFER_LEADER", A, C, 0),
        message("TIMEOUT_NOW", C, A, 7),
        message("READ_INDEX", A, B, 0, context="72656164"),
        message("READ_INDEX_RESP", B, A, 7, index=44, context="72656164"),
    ]


def invalid() -> list[dict[str, Any]]:
    def bad(name: str, value: Any, error: str, raw: bytes | None = None) -> dict[str, Any]:
        return {"name": name, "hex": (raw if raw is not None else dumps(value)).hex(),
                "error": error}

    return [
        bad("not an array", {1: 2}, "malformed"),
        bad("too short", [2, B, A], "malformed"),
        bad("unknown type 16", [16, B, A, 1], "malformed"),
        bad("local type 32 (HUP) has no wire form", [32, B, A, 1], "malformed"),
        bad("a node id of 15 bytes", [13, B[:15], A, 1], "malformed"),
        bad("term is negative", [13, B, A, -1], "malformed"),
        bad("term above 2^64-1", [13, B, A, MAX_U64 + 1], "malformed"),
        bad("one element too many", [13, B, A, 1, 0], "malformed"),
        bad("reject is not a boolean", [5, B, A, 1, 0], "malformed"),
        bad("append entries do not follow index", [2, B, A, 1, 1, 5, 0, [[1, 7, 0, b""]]],
            "malformed"),
        bad("append entry of term 0", [2, B, A, 1, 1, 5, 0, [[0, 6, 0, b""]]], "malformed"),
        bad("unknown entry kind 3", [1, B, A, 0, [[0, 0, 3, b""]]], "malformed"),
        bad("entry is not [term, index, kind, data]", [1, B, A, 0, [[0, 0, 0]]], "malformed"),
        bad("context over 1024 bytes", [11, B, A, 1, b"x" * 1025], "limit"),
        bad(
            "snapshot chunk past its total",
            [8, B, A, 1, [5, 1, [[A], [], []]], 10, 11, b"ab"],
            "malformed",
        ),
        bad("snapshot at index 0", [8, B, A, 1, [0, 0, [[A], [], []]], 0, 0, b""], "malformed"),
        bad(
            "voter set not sorted",
            [8, B, A, 1, [5, 1, [[B, A], [], []]], 0, 0, b""],
            "malformed",
        ),
        bad("indefinite-length array", None, "malformed",
            raw=b"\x9f" + dumps(13) + dumps(B) + dumps(A) + dumps(1) + b"\xff"),
        bad("non-shortest integer", None, "malformed",
            raw=b"\x84" + b"\x18\x0d" + dumps(B) + dumps(A) + dumps(1)),
        bad("bytes after the item", None, "malformed",
            raw=dumps([13, B, A, 1]) + b"\x00"),
        bad("truncated", None, "malformed", raw=dumps([13, B, A, 1])[:-1]),
    ]


def conf_changes() -> list[dict[str, Any]]:
    def vec(name: str, ops: list[tuple[int, bytes]]) -> dict[str, Any]:
        return {
            "name": name,
            "ops": [[op, node.hex()] for op, node in ops],
            "hex": dumps([[op, node] for op, node in ops]).hex(),
        }

    return [
        vec("leave joint consensus", []),
        vec("add a learner", [(1, C)]),
        vec("replace a voter (joint)", [(0, C), (2, A)]),
    ]


def build() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "description": (
            "Raft messages (spec/consensus.md section 3, spec/consensus.cddl). 'message': "
            "one valid vector per message type: decoding 'hex' gives 'type', 'to', 'from', "
            "'term' and 'fields' (byte strings in hex; entries as objects), and encoding "
            "those gives 'hex' exactly; 'cddl' names its rule. 'invalid_message': decoding "
            "'hex' raises 'error' (a WireError code). 'conf_change': the data of a "
            "configuration-change entry (section 5): 'ops' as [op, node id hex]."
        ),
        "message": valid(),
        "invalid_message": invalid(),
        "conf_change": conf_changes(),
    }


def main(argv: list[str]) -> int:
    text = render(build())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{FILE} is stale: run python spec/vectors/generate_consensus.py")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
