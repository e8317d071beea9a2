"""Regenerate ``spec/vectors/health.json`` deterministically.

Usage: ``python spec/vectors/generate_health.py [--check]``. With ``--check`` nothing is
written; the script exits 1 if the committed file differs from what it would write.

Like the other generators, this script never calls the project's code: summaries and
frames are built with ``cbor2`` from ``spec/health.md`` sections 1 and 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import FORMAT, dumps, render, to_json

HERE = Path(__file__).resolve().parent
FILE = "health.json"
NODE = bytes(range(0x30, 0x40))
EPOCH = 1_790_000_000_000
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
FIELDS = [
    "awareness", "awareness_max", "loop_lag_ms", "drop_permille", "retransmit_permille",
    "queue_depth", "raft_role", "raft_lag", "registry_lag_ms", "rss_kib", "cpu_permille",
]
BOUNDS = [255, 255, U32, 1000, 1000, U32, 4, U32, U32, U32, 64_000]


def summary(epoch: int = EPOCH, version: int = 1, figures: list[int] | None = None) -> list[Any]:
    return [1, NODE, epoch, version, *(figures or [0] * len(FIELDS))]


def valid_vectors() -> list[dict[str, Any]]:
    cases = [
        ("quiet node", summary()),
        ("lagging follower", summary(version=7, figures=[6, 8, 900, 12, 40, 17, 1, 150, 2500,
                                                         81_920, 730])),
        ("every figure at its bound", summary(U64, U64, list(BOUNDS))),
    ]
    out = []
    for name, value in cases:
        out.append({
            "name": name,
            "cddl": "health-summary",
            "value": to_json(value),
            "fields": dict(zip(["node_id", "epoch", "version", *FIELDS],
                               [NODE.hex(), *value[2:]], strict=True)),
            "hex": dumps(value).hex(),
            "frame_hex": dumps([49, value]).hex(),
        })
    return out


def invalid_vectors() -> list[dict[str, Any]]:
    good = summary()
    cases: list[tuple[str, bytes, str]] = [
        ("format 2", dumps([2, *good[1:]]), "unsupported_version"),
        ("format 2, short", dumps([2, NODE]), "unsupported_version"),
        ("14 elements", dumps(good[:-1]), "malformed"),
        ("16 elements", dumps([*good, 0]), "malformed"),
        ("node id of 15 bytes", dumps([1, NODE[:15], *good[2:]]), "malformed"),
        ("negative figure", dumps([*good[:4], -1, *good[5:]]), "malformed"),
        ("text where a figure goes", dumps([*good[:6], "9", *good[7:]]), "malformed"),
        ("not an array", dumps({"format": 1}), "malformed"),
        ("not canonical (epoch with a wide head)",
         bytes.fromhex("8f0150") + NODE + bytes.fromhex("1b00000000000000010100")
         + bytes(10), "malformed"),
        ("over 128 bytes", dumps([1, NODE, 1, 1, b"\x00" * 120]), "limit"),
    ]
    for i, name in enumerate(FIELDS):
        figures = [0] * len(FIELDS)
        figures[i] = BOUNDS[i] + 1
        cases.append((f"{name} above its bound", dumps(summary(figures=figures)), "limit"))
    return [{"name": n, "hex": d.hex(), "error": e} for n, d, e in cases]


def build() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "about": (
            "Vectors for spec/health.md sections 1 and 2. 'summary': 'hex' is the "
            "deterministic encoding of 'value' (a health-summary), which decodes to "
            "'fields'; 'frame_hex' is the same summary in a frame of type 49. "
            "'invalid_summary': decoding 'hex' as a summary must fail with 'error' (the "
            "wire.md error codes)."
        ),
        "summary": valid_vectors(),
        "invalid_summary": invalid_vectors(),
    }


def main(argv: list[str]) -> int:
    text = render(build())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{FILE} is stale: run python spec/vectors/generate_health.py")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
