"""The CRDT map: the join is a semilattice join, removals leave no tombstone, contexts
compact; any delivery of deltas followed by anti-entropy converges (Hypothesis)."""

from __future__ import annotations

import contextlib
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from registry_net import RegistryNet, node_id

from foundation_p2p.clock import Now
from foundation_p2p.registry.core import AlreadyRegistered, RegistryCore
from foundation_p2p.registry.crdt import (
    DotContext,
    Entry,
    RegistryState,
    add_delta,
    remove_delta,
)
from foundation_p2p.registry.hlc import Stamp
from foundation_p2p.registry.wire import state_from_wire, state_to_wire
from foundation_p2p.wire import cbor

A, B, C = node_id(0), node_id(1), node_id(2)


def entry(name: str, writer: bytes, ms: int, value: object = 0) -> Entry:
    return Entry(name, value, {}, writer, Stamp(ms, 0, writer))


def joined(a: RegistryState, b: RegistryState) -> RegistryState:
    out = a.copy()
    out.join(b)
    return out


# -- DotContext -------------------------------------------------------------------------


def test_context_compacts_contiguous_dots_into_the_vector() -> None:
    ctx = DotContext()
    for counter in (3, 1, 5, 2):
        ctx.add((A, counter))
    assert ctx.vv == {A: 3}
    assert ctx.cloud == {(A, 5)}
    ctx.add((A, 4))
    assert ctx.vv == {A: 5} and not ctx.cloud


def test_context_merge_fills_gaps_and_is_idempotent() -> None:
    left = DotContext(cloud=[(A, 2), (B, 1)])
    right = DotContext(vv={A: 1})
    left.merge(right)
    assert left.vv == {A: 2, B: 1} and not left.cloud
    again = left.copy()
    left.merge(right)
    assert left == again


def test_context_contains_vector_and_cloud() -> None:
    ctx = DotContext(vv={A: 2}, cloud=[(B, 7)])
    assert (A, 1) in ctx and (A, 2) in ctx and (B, 7) in ctx
    assert (A, 3) not in ctx and (B, 6) not in ctx and (C, 1) not in ctx


# -- join semantics ---------------------------------------------------------------------


def test_remove_wins_only_over_what_it_saw() -> None:
    """Add-wins: a removal drops the dots it observed, a concurrent add survives."""
    s = RegistryState()
    s.join(add_delta((A, 1), entry("x", A, 1)))
    removal = remove_delta([(A, 1)])
    concurrent = add_delta((B, 1), entry("x", B, 2))
    one = joined(joined(s, removal), concurrent)
    two = joined(joined(s, concurrent), removal)
    assert one == two
    assert list(one.entries["x"]) == [(B, 1)]


def test_removal_leaves_no_tombstone() -> None:
    s = RegistryState()
    for i in range(1, 101):
        s.join(add_delta((A, i), entry(f"n{i}", A, i)))
        s.join(remove_delta([(A, i)]))
    assert not s.entries and not s.dot_names
    assert s.ctx.vv == {A: 100} and not s.ctx.cloud
    assert len(state_to_wire(s)[0]) == 0


def test_concurrent_writes_keep_both_until_removed() -> None:
    a = RegistryState()
    a.join(add_delta((A, 1), entry("x", A, 5)))
    b = RegistryState()
    b.join(add_delta((B, 1), entry("x", B, 7)))
    both = joined(a, b)
    assert set(both.entries["x"]) == {(A, 1), (B, 1)}


def test_bucket_digests_equal_for_equal_live_dots() -> None:
    a, b = RegistryState(), RegistryState()
    for i, w in enumerate((A, B, C), start=1):
        a.join(add_delta((w, 1), entry(f"k{i}", w, i)))
    for i, w in reversed(list(enumerate((A, B, C), start=1))):
        b.join(add_delta((w, 1), entry(f"k{i}", w, i)))
    assert a.buckets == b.buckets and a.group_digests() == b.group_digests()
    b.join(remove_delta([(B, 1)]))
    assert a.group_digests() != b.group_digests()


# -- Hypothesis: semilattice laws over reachable states ---------------------------------

NAMES = ["a", "b", "c", "svc/1", "svc/2"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("reg"), st.integers(0, 2), st.sampled_from(NAMES), st.integers(0, 9)),
        st.tuples(st.just("unreg"), st.integers(0, 2), st.sampled_from(NAMES), st.just(0)),
        st.tuples(st.just("put"), st.integers(0, 2), st.sampled_from(NAMES), st.integers(0, 9)),
        st.tuples(st.just("merge"), st.integers(0, 2), st.integers(0, 2), st.just(0)),
    ),
    max_size=30,
)


def replicas(script: list[tuple[str, int, object, int]]) -> list[RegistryState]:
    """Three replicas after ``script``: local writes, and full-state merges between them."""
    cores = [RegistryCore(node_id(i), rng=random.Random(i)) for i in range(3)]
    for step, (op, i, arg, value) in enumerate(script):
        now = Now(float(step), 1000.0 + step * 0.001 * (i + 1))
        core = cores[i]
        if op == "reg":
            with contextlib.suppress(AlreadyRegistered):
                core.register(now, str(arg), value)
        elif op == "unreg":
            core.unregister(now, str(arg))
        elif op == "put":
            core.put(now, str(arg), value)
        else:
            assert isinstance(arg, int)
            core.state.join(cores[arg].state.copy())
    return [c.state for c in cores]


@settings(max_examples=150, deadline=None)
@given(ops)
def test_join_is_commutative_associative_idempotent(
    script: list[tuple[str, int, object, int]],
) -> None:
    a, b, c = replicas(script)
    assert joined(a, b) == joined(b, a)
    assert joined(joined(a, b), c) == joined(a, joined(b, c))
    assert joined(a, a) == a
    assert joined(joined(a, b), b) == joined(a, b)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_state_round_trips_through_the_wire_form(
    script: list[tuple[str, int, object, int]],
) -> None:
    for s in replicas(script):
        assert state_from_wire(state_to_wire(s)) == s


# -- Hypothesis: any delivery of deltas, then anti-entropy, converges ------------------

actions = st.lists(
    st.tuples(
        st.sampled_from(["reg", "unreg", "put", "deliver"]),
        st.integers(0, 3),
        st.sampled_from([*NAMES, "d/1", "d/2", "d/3"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    actions,
    st.floats(0.0, 0.9),
    st.floats(0.0, 0.5),
    st.integers(0, 2**16),
)
def test_lossy_duplicated_reordered_deltas_then_anti_entropy_converge(
    script: list[tuple[str, int, str]], loss: float, dup: float, seed: int
) -> None:
    net = RegistryNet(4, seed=seed)
    # The oracle: every local delta (writes, removals, conflict retractions) as made.
    written: set[tuple[bytes, int]] = set()
    removed: set[tuple[bytes, int]] = set()
    for core in net.cores:
        original = core._buffer

        def logged(delta: RegistryState, *args: Any, original: Any = original) -> None:
            written.update(delta.dot_names)
            removed.update(d for d in delta.ctx.dots() if d not in delta.dot_names)
            original(delta, *args)

        core._buffer = logged  # type: ignore[method-assign]
    for op, i, name in script:
        net.t += 0.01
        core = net.cores[i]
        if op == "reg":
            with contextlib.suppress(AlreadyRegistered):
                core.register(net.now(), name, i)
        elif op == "unreg":
            core.unregister(net.now(), name)
        elif op == "put":
            core.put(net.now(), name, -i)
        else:
            net.pump(loss=loss, dup=dup, shuffle=True)
    net.pump(loss=loss, dup=dup, shuffle=True)
    # Anti-entropy alone (no loss now): every replica pulls from random peers.
    for _ in range(400):
        net.run(1.0, dt=0.25)
        if net.converged():
            break
    assert net.converged()
    # state_bytes (kept incrementally) is the size of the whole state's encoding.
    for core in net.cores:
        assert core.state_bytes() == len(cbor.encode(state_to_wire(core.state)))
    # Add-wins semantics: exactly the dots written and never removed by anyone are live.
    assert set(net.cores[0].state.dot_names) == written - removed
    # Same lookups everywhere, and at most one live dot per name once conflicts resolved.
    names = sorted(set([*NAMES, "d/1", "d/2", "d/3"]))
    views = [[c.lookup(n) for n in names] for c in net.cores]
    assert all(v == views[0] for v in views)
    assert all(len(s) == 1 for s in net.cores[0].state.entries.values())
