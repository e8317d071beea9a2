"""Regenerate ``spec/vectors/registry.json`` deterministically.

Usage: ``python spec/vectors/generate_registry.py [--check]``. With ``--check`` nothing is
written; the script exits 1 if the committed file differs from what it would write.

Like the other generators, this script never calls the project's code: bucket numbers and
item hashes come from ``hashlib`` as ``spec/registry.md`` section 3.6 says, contexts are
compacted and states joined by the rules of sections 3.1 and 3.2 written out again here,
and messages are built with ``cbor2`` from the layout of section 4.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import FORMAT, MAX_U64, dumps, render, to_json

HERE = Path(__file__).resolve().parent
FILE = "registry.json"

N1 = bytes(range(0x10, 0x20))
N2 = bytes(range(0x20, 0x30))
N3 = bytes(range(0x30, 0x40))
WALL_MS = 1_790_000_000_000

Dot = tuple[bytes, int]


# -- section 3.6: buckets and hashes ----------------------------------------------------


def bucket(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big") % 1024


def item_hash(name: str, dot: Dot) -> int:
    data = dot[0] + dot[1].to_bytes(8, "big") + name.encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


# -- sections 3.1, 3.2: contexts and states ---------------------------------------------


def compact(dots: set[Dot]) -> list[Any]:
    """The wire form of a set of dots: [vector, cloud], both sorted."""
    vector: dict[bytes, int] = {}
    for node in sorted({n for n, _ in dots}):
        n = 0
        while (node, n + 1) in dots:
            n += 1
        if n:
            vector[node] = n
    cloud = sorted(d for d in dots if d[1] > vector.get(d[0], 0))
    return [[[node, n] for node, n in sorted(vector.items())], [[a, b] for a, b in cloud]]


class State:
    """entries: dot -> (name, writer-stamp fields...); ctx: a plain set of dots."""

    def __init__(self, entries: dict[Dot, list[Any]] | None = None,
                 ctx: set[Dot] | None = None) -> None:
        self.entries = dict(entries or {})
        self.ctx = set(ctx or set()) | set(self.entries)

    def wire(self) -> list[Any]:
        items = sorted(self.entries.items(), key=lambda kv: (kv[1][0], kv[0]))
        return [[e for _, e in items], compact(self.ctx)]

    def digests(self) -> list[int]:
        buckets = [0] * 1024
        for dot, e in self.entries.items():
            buckets[bucket(e[0])] ^= item_hash(e[0], dot)
        return [_xor(buckets[g * 32 : (g + 1) * 32]) for g in range(32)]


def _xor(values: list[int]) -> int:
    out = 0
    for v in values:
        out ^= v
    return out


def join(a: State, b: State) -> State:
    entries = {}
    for dot, e in a.entries.items():
        if dot in b.entries or dot not in b.ctx:
            entries[dot] = e
    for dot, e in b.entries.items():
        if dot not in a.ctx:
            entries[dot] = e
    return State(entries, a.ctx | b.ctx)


def entry(name: str, writer: bytes, counter: int, ms: int = 0, logical: int = 0,
          owner: bytes | str | None = "writer", value: Any = None,
          metadata: dict[str, Any] | None = None) -> tuple[Dot, list[Any]]:
    own = writer if owner == "writer" else owner
    return (writer, counter), [name, writer, counter, WALL_MS + ms, logical, own, value,
                               metadata or {}]


def state_of(*items: tuple[Dot, list[Any]], removed: tuple[Dot, ...] = ()) -> State:
    return State(dict(items), set(removed))


# -- vectors ------------------------------------------------------------------------------


def bucket_vectors() -> list[dict[str, Any]]:
    out = []
    for name in ["a", "svc/web", "$sup/spec/worker", "caf\u00e9", "\u65e5\u672c", "x" * 255]:
        dot = (N1, 7)
        out.append({
            "name": name if len(name) < 255 else "x*255",
            "text": name,
            "bucket": bucket(name),
            "group": bucket(name) // 32,
            "dot": [{"bytes": N1.hex()}, 7],
            "item_hash": item_hash(name, dot),
        })
    return out


def context_vectors() -> list[dict[str, Any]]:
    cases: list[tuple[str, set[Dot]]] = [
        ("empty", set()),
        ("one node contiguous", {(N1, 1), (N1, 2), (N1, 3)}),
        ("a gap leaves the later dots in the cloud", {(N1, 1), (N1, 3), (N1, 4)}),
        ("no first dot: all in the cloud", {(N2, 2), (N2, 5)}),
        ("three nodes", {(N3, 1), (N1, 1), (N1, 2), (N2, 1), (N2, 3), (N3, 9)}),
    ]
    out = []
    for name, dots in cases:
        wire = compact(dots)
        out.append({
            "name": name,
            "dots": [[{"bytes": n.hex()}, c] for n, c in sorted(dots)],
            "value": to_json(wire),
            "hex": dumps(wire).hex(),
            "cddl": "context",
        })
    return out


def _states() -> dict[str, State]:
    e1 = entry("svc/a", N1, 1, ms=5, value={"port": 80})
    e2 = entry("svc/b", N2, 1, ms=7, value="b", metadata={"zone": "eu"})
    e3 = entry("spec", N1, 2, ms=9, owner=None, value=[1, 2])
    return {
        "empty": State(),
        "one entry": state_of(e1),
        "two writers, a cluster-scoped entry": state_of(e1, e2, e3),
        "everything removed: only the context remains": state_of(
            removed=((N1, 1), (N1, 2), (N1, 3))
        ),
        "a live entry and a removed dot in the cloud": state_of(e2, removed=((N1, 3),)),
    }


def state_vectors() -> list[dict[str, Any]]:
    out = []
    for name, s in _states().items():
        wire = s.wire()
        out.append({
            "name": name,
            "value": to_json(wire),
            "hex": dumps(wire).hex(),
            "group_digests": s.digests(),
            "cddl": "registry-state",
        })
    return out


def join_vectors() -> list[dict[str, Any]]:
    x1 = entry("x", N1, 1, ms=1, value=1)
    x2 = entry("x", N2, 1, ms=2, value=2)
    y1 = entry("y", N1, 2, ms=3, value=3)
    base = state_of(x1)
    cases = [
        ("a removal drops only the dots it saw; a concurrent add survives (add-wins)",
         state_of(removed=((N1, 1),)), state_of(x1, x2)),
        ("concurrent writes of one name keep both dots",
         state_of(x1), state_of(x2)),
        ("a delta fills the gap of the receiver's cloud",
         state_of(y1, removed=((N1, 1),)), state_of(removed=((N1, 1),))),
        ("joining a state with itself changes nothing", base, base),
        ("a removal the other side has not seen wins over its stale copy",
         state_of(x1, y1), state_of(y1, removed=((N1, 1),))),
        # section 3.4: x1 lost to x2; N1's retraction carries x2 (context: both dots)
        ("a retraction reaching a replica before its winner brings the winner",
         state_of(x1), state_of(x2, removed=((N1, 1),))),
        ("a retraction's winner already removed here stays removed",
         state_of(x1, removed=((N2, 1),)), state_of(x2, removed=((N1, 1),))),
    ]
    out = []
    for name, a, b in cases:
        j = join(a, b)
        assert j.wire() == join(b, a).wire()
        out.append({
            "name": name,
            "a": dumps(a.wire()).hex(),
            "b": dumps(b.wire()).hex(),
            "joined": dumps(j.wire()).hex(),
            "joined_value": to_json(j.wire()),
        })
    return out


def message_vectors() -> list[dict[str, Any]]:
    web_dot, web = entry("svc/web", N1, 4, ms=11, logical=2, value={"port": 8080},
                         metadata={"zone": "eu"})
    spec_dot, spec = entry("$sup/spec/worker", N2, 1, owner=None, value="worker")
    full = State({web_dot: web, spec_dot: spec}, {(N1, 1), (N1, 2), (N1, 3)})
    messages: list[tuple[str, str, list[Any]]] = [
        ("delta: register (the entry and its dot)", "delta",
         [1, [web], compact({web_dot})]),
        ("delta: put (new dot supersedes dot 3)", "delta",
         [1, [web], compact({web_dot, (N1, 3)})]),
        ("delta: unregister (no entries, the removed dots)", "delta",
         [1, [], compact({(N1, 4), (N2, 1)})]),
        ("delta: retract (node 1's dot 3 lost to node 2's entry, which it carries)",
         "delta", [1, [spec], compact({spec_dot, (N1, 3)})]),
        ("sync request", "sync-request",
         [2, 7, compact({(N1, 1), (N1, 2)}), State().digests()]),
        ("sync request with the largest digests and sid", "sync-request",
         [2, 2**32 - 1, compact(set()), [MAX_U64] * 32]),
        ("sync reply: complete, with context and the digests of one group", "sync-reply",
         [3, 7, full.wire()[0], compact(full.ctx),
          {b: 0 for b in range(32, 64)}, False]),
        ("sync reply: cut by the size cap", "sync-reply", [3, 8, [spec], None, {}, True]),
        ("sync check", "sync-check", [4, 7, [[N1, 4], [N2, 1]]]),
        ("sync removed", "sync-removed", [5, 7, [[N1, 4]]]),
        ("sync removed: nothing", "sync-removed", [5, 9, []]),
    ]
    return [
        {"name": name, "cddl": rule, "value": to_json(v), "hex": dumps(v).hex()}
        for name, rule, v in messages
    ]


def _hex(value: Any) -> str:
    return dumps(value).hex()


def invalid_vectors() -> list[dict[str, Any]]:
    _, good = entry("n", N1, 1)
    ctx1 = compact({(N1, 1)})

    def with_field(i: int, v: Any) -> list[Any]:
        e = list(good)
        e[i] = v
        return [1, [e], ctx1]

    nested: Any = 0
    for _ in range(14):
        nested = [nested]
    cases: list[tuple[str, str, str]] = [
        ("not an array", _hex({"type": 1}), "malformed"),
        ("empty array", _hex([]), "malformed"),
        ("unknown type 6", _hex([6, 0, []]), "malformed"),
        ("type as text", _hex(["1", [], ctx1]), "malformed"),
        ("delta with a missing field", _hex([1, []]), "malformed"),
        ("entry with 7 fields", _hex([1, [good[:7]], ctx1]), "malformed"),
        ("empty name", _hex(with_field(0, "")), "malformed"),
        ("name with a control character", _hex(with_field(0, "a\u0007b")), "malformed"),
        ("name of 256 bytes", _hex(with_field(0, "x" * 256)), "limit"),
        ("writer of 15 bytes", _hex(with_field(1, N1[:15])), "malformed"),
        ("counter 0", _hex(with_field(2, 0)), "malformed"),
        ("negative wall_ms", _hex(with_field(3, -1)), "malformed"),
        ("logical above 2^32-1", _hex(with_field(4, 2**32)), "malformed"),
        ("owner as text", _hex(with_field(5, "me")), "malformed"),
        ("metadata with an integer key", _hex(with_field(7, {1: 2})), "malformed"),
        ("metadata not a map", _hex(with_field(7, [])), "malformed"),
        ("value nested 14 deep", _hex(with_field(6, nested)), "limit"),
        ("entry dot outside the delta context", _hex([1, [good], compact(set())]), "malformed"),
        ("the same dot twice", _hex([1, [good, good], ctx1]), "malformed"),
        ("entries not in ascending name order",
         _hex([1, [entry("b", N1, 1)[1], entry("a", N1, 2)[1]], compact({(N1, 1), (N1, 2)})]),
         "malformed"),
        ("check dots not ascending", _hex([4, 1, [[N2, 1], [N1, 1]]]), "malformed"),
        ("vector nodes not ascending",
         _hex([1, [], [[[N2, 1], [N1, 1]], []]]), "malformed"),
        ("vector counter 0", _hex([1, [], [[[N1, 0]], []]]), "malformed"),
        ("cloud dot covered by the vector",
         _hex([1, [], [[[N1, 2]], [[N1, 1]]]]), "malformed"),
        ("cloud dot next after the vector (not compact)",
         _hex([1, [], [[[N1, 2]], [[N1, 3]]]]), "malformed"),
        ("cloud holds the first dot of a node (not compact)",
         _hex([1, [], [[], [[N2, 1]]]]), "malformed"),
        ("cloud not sorted",
         _hex([1, [], [[], [[N1, 5], [N1, 3]]]]), "malformed"),
        ("sid above 2^32-1", _hex([4, 2**32, []]), "malformed"),
        ("31 group digests", _hex([2, 1, compact(set()), [0] * 31]), "malformed"),
        ("digest above 2^64-1 (a bignum tag)",
         _hex([2, 1, compact(set()), [0] * 31 + [2**64]]), "malformed"),
        ("bucket 1024", _hex([3, 1, [], None, {1024: 0}, False]), "malformed"),
        ("more as an integer", _hex([3, 1, [], None, {}, 0]), "malformed"),
        ("a dot twice in a check", _hex([4, 1, [[N1, 1], [N1, 1]]]), "malformed"),
        ("indefinite-length array", "9f0400" + "80" + "ff", "malformed"),
        ("map keys not in length-first order",
         dumps([3, 1, [], None, {}, False])[:-2].hex() + "a2" + "1901f4" + "00" + "01" + "00"
         + "f4", "malformed"),
    ]
    return [{"name": n, "hex": h, "error": e} for n, h, e in cases]


def build() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "about": (
            "Vectors for spec/registry.md. 'buckets': bucket(text) and item_hash(text, dot) "
            "(section 3.6). 'context': a set of dots and its compact wire form (section "
            "3.1). 'state': a replica's [entries, context] and its 32 group digests. "
            "'join': the join of states 'a' and 'b' (hex of their wire forms) is 'joined' "
            "(section 3.2; commutative, so b with a gives the same). 'message': valid "
            "messages of section 4, each with its 'cddl' rule of spec/registry.cddl; "
            "decoding 'hex' gives 'value' and re-encoding gives 'hex'. 'invalid_message': "
            "decoding 'hex' must raise 'error'."
        ),
        "buckets": bucket_vectors(),
        "context": context_vectors(),
        "state": state_vectors(),
        "join": join_vectors(),
        "message": message_vectors(),
        "invalid_message": invalid_vectors(),
    }


def main(argv: list[str]) -> int:
    text = render(build())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{FILE} is stale: run python spec/vectors/generate_registry.py")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
