"""Hypothesis stateful test of the registry CRDT (``foundation_p2p.registry.crdt``)
against a reference model built from the operations each replica has seen.

Three replicas write and remove names; every mutation makes a delta (``add_delta``,
``remove_delta``) that the network delivers to each other replica in any order, any
number of times (duplicates), or never; full-state sync (``join`` of a whole state, also
through the wire encoding) happens between any two. The model: each replica's set of
*seen operations*; an operation adds one dot (or none) and removes the dots its writer
saw. From a set of operations the model computes the expected replica: a dot is live if
some seen operation added it and no seen operation removed it (add-wins: a removal only
covers what its writer saw), the context is every dot any seen operation names, and the
dict view (``name -> value``) is the last writer by stamp. After every step:

- every replica equals the model of what it has seen (entries, context, dict view);
- its indexes agree with its entries (sorted names, bucket digests equal those of a
  state rebuilt from scratch);
- two replicas that have seen the same operations are equal, digests included.

The ``algebra`` rule checks the semilattice laws on the current replicas (join
commutative, associative, idempotent) and that a state survives the wire encoding; the
teardown delivers everything and checks that all replicas converge to one state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from stateful_run import run_machine

from foundation_p2p.registry import wire as rwire
from foundation_p2p.registry.crdt import (
    Dot,
    Entry,
    RegistryState,
    add_delta,
    remove_delta,
    winner,
)
from foundation_p2p.registry.hlc import Stamp

NODES = [bytes([n]) * 16 for n in (1, 2, 3)]
NAMES = ["a", "b", "svc/x", "svc/y"]


@dataclass(frozen=True)
class Op:
    """One mutation as the model sees it."""

    number: int
    """Its identity (equality and hash use only this)."""
    added: Dot | None = field(compare=False)
    entry: Entry | None = field(compare=False)
    removed: frozenset[Dot] = field(compare=False)


def model_state(ops: set[Op]) -> tuple[dict[str, dict[Dot, Entry]], set[Dot]]:
    """The live entries (name -> dot -> entry) and the context of a replica that has seen
    exactly ``ops``."""
    removed: set[Dot] = set()
    context: set[Dot] = set()
    for op in ops:
        removed |= op.removed
        context |= op.removed
        if op.added is not None:
            context.add(op.added)
    live: dict[str, dict[Dot, Entry]] = {}
    for op in ops:
        if op.added is not None and op.added not in removed:
            assert op.entry is not None
            live.setdefault(op.entry.name, {})[op.added] = op.entry
    return live, context


def dict_view(entries: dict[str, dict[Dot, Entry]]) -> dict[str, object]:
    """``name -> value`` of the last writer of each name."""
    out = {}
    for name, slot in entries.items():
        best = winner(slot.values())
        if best is not None:
            out[name] = best.value
    return out


def rebuilt(state: RegistryState) -> RegistryState:
    """A state built from scratch with ``state``'s entries and context."""
    new = RegistryState()
    new.add_entries(
        (dot, entry) for slot in state.entries.values() for dot, entry in slot.items()
    )
    new.ctx = state.ctx.copy()
    return new


class RegistryReplicas(RuleBasedStateMachine):
    """Three replicas, their deltas in flight, and the model of what each has seen."""

    def __init__(self) -> None:
        super().__init__()
        self.replicas = {n: RegistryState() for n in NODES}
        self.seen: dict[bytes, set[Op]] = {n: set() for n in NODES}
        self.inflight: list[tuple[bytes, RegistryState, Op]] = []
        """(destination, delta, the op it carries): unordered, may be delivered twice."""
        self.ops = 0
        self.clock = 1_000

    def _mutate(self, node: bytes, delta: RegistryState, op: Op) -> None:
        self.replicas[node].join(delta)
        self.seen[node].add(op)
        for other in NODES:
            if other != node:
                self.inflight.append((other, delta, op))

    @rule(node=st.sampled_from(NODES), name=st.sampled_from(NAMES), value=st.integers(0, 9),
          same_ms=st.booleans())
    def write(self, node: bytes, name: str, value: int, same_ms: bool) -> None:
        replica = self.replicas[node]
        if not same_ms:
            self.clock += 1
        dot = replica.ctx.next_dot(node)
        stamp = Stamp(self.clock, self.ops, node)
        entry = Entry(name, value, {}, node, stamp)
        supersedes = frozenset(replica.entries.get(name, {}))
        self.ops += 1
        op = Op(self.ops, dot, entry, supersedes)
        self._mutate(node, add_delta(dot, entry, supersedes), op)

    @rule(node=st.sampled_from(NODES), name=st.sampled_from(NAMES))
    def remove(self, node: bytes, name: str) -> None:
        dots = frozenset(self.replicas[node].entries.get(name, {}))
        if not dots:
            return
        self.ops += 1
        self._mutate(node, remove_delta(dots), Op(self.ops, None, None, dots))

    @precondition(lambda self: bool(self.inflight))
    @rule(data=st.data(), keep=st.booleans())
    def deliver(self, data: st.DataObject, keep: bool) -> None:
        """Deliver one delta; ``keep`` leaves a copy in flight (a duplicate later)."""
        i = data.draw(st.integers(0, len(self.inflight) - 1), label="delta")
        dest, delta, op = self.inflight[i] if keep else self.inflight.pop(i)
        self.replicas[dest].join(delta)
        self.seen[dest].add(op)

    @precondition(lambda self: bool(self.inflight))
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.inflight.pop(data.draw(st.integers(0, len(self.inflight) - 1), label="delta"))

    @rule(src=st.sampled_from(NODES), dst=st.sampled_from(NODES), over_wire=st.booleans())
    def full_sync(self, src: bytes, dst: bytes, over_wire: bool) -> None:
        state = self.replicas[src].copy()
        if over_wire:
            state = rwire.state_from_wire(rwire.state_to_wire(state))
        self.replicas[dst].join(state)
        self.seen[dst] |= self.seen[src]

    @rule(a=st.sampled_from(NODES), b=st.sampled_from(NODES), c=st.sampled_from(NODES))
    def algebra(self, a: bytes, b: bytes, c: bytes) -> None:
        x, y, z = (self.replicas[n] for n in (a, b, c))

        def join(*states: RegistryState) -> RegistryState:
            out = states[0].copy()
            for s in states[1:]:
                out.join(s.copy())
            return out

        assert join(x, y) == join(y, x), "join is not commutative"
        assert join(join(x, y), z) == join(x, join(y, z)), "join is not associative"
        assert join(x, x) == x, "join is not idempotent"
        assert rwire.state_from_wire(rwire.state_to_wire(x)) == x, "state wire round trip"

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def replicas_match_the_model(self) -> None:
        for node in NODES:
            replica = self.replicas[node]
            live, context = model_state(self.seen[node])
            got = {name: dict(slot) for name, slot in replica.entries.items() if slot}
            assert got == live, f"replica {node[0]}: entries differ from the model"
            assert set(replica.ctx.dots()) == context, f"replica {node[0]}: context differs"
            assert dict_view(got) == dict_view(live)

    @invariant()
    def indexes_agree(self) -> None:
        for node in NODES:
            replica = self.replicas[node]
            assert replica.sorted_names() == sorted(n for n, s in replica.entries.items() if s)
            fresh = rebuilt(replica)
            assert replica.group_digests() == fresh.group_digests(), "digests drifted"
            assert replica.live_dots() == sum(len(s) for s in replica.entries.values())

    @invariant()
    def same_history_same_state(self) -> None:
        for a in NODES:
            for b in NODES:
                if a < b and self.seen[a] == self.seen[b]:
                    assert self.replicas[a] == self.replicas[b]
                    assert self.replicas[a].group_digests() == self.replicas[b].group_digests()

    def teardown(self) -> None:
        # Deliver everything still in flight, then a round of full syncs: convergence.
        for dest, delta, op in self.inflight:
            self.replicas[dest].join(delta)
            self.seen[dest].add(op)
        for a in NODES:
            for b in NODES:
                self.full_sync(a, b, over_wire=False)
        first = self.replicas[NODES[0]]
        for node in NODES[1:]:
            assert self.replicas[node] == first, "replicas did not converge"
        self.replicas_match_the_model()


def test_registry_crdt() -> None:
    run_machine(RegistryReplicas, 100, 40)


@pytest.mark.soak
def test_registry_crdt_soak() -> None:
    run_machine(RegistryReplicas, 2000, 80, soak=True)
