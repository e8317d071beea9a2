"""Shared helpers of the history tests: building histories by hand, and a brute-force
reference checker that tries every order (small histories only)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from foundation_p2p.history import Event, Operation, Value, pair_events
from foundation_p2p.history.model import EVENT_TYPE_BY_NAME


def ev(process: int, kind: str, f: str, value: Value = None, time: float = 0.0,
       key: Value = None) -> Event:
    """One event; ``line`` is filled in by :func:`history`."""
    return Event(process, EVENT_TYPE_BY_NAME[kind], f, key, value, time, 0)


def history(*events: Event) -> list[Operation]:
    """Pair events given in order; each event's time defaults to its position."""
    numbered = [
        Event(e.process, e.type, e.f, e.key, e.value, e.time or float(i + 1), i + 1)
        for i, e in enumerate(events)
    ]
    return pair_events(numbered)


def spans(*ops: tuple[int, str, Value, Value, float, float | None, str]) -> list[Operation]:
    """Operations as ``(process, f, input, output, call, ret, status)`` (ret None: pending)."""
    out: list[Operation] = []
    for i, (process, f, arg, result, call, ret, status) in enumerate(ops):
        out.append(Operation(i, process, f, None, arg, result, status,  # type: ignore[arg-type]
                             call, ret, i + 1, None if ret is None else i + 1))
    return out


def brute_force_linearizable(ops: Sequence[Operation]) -> bool:
    """Does some order of the register operations respect real time and the register's
    semantics? Tries every order: exponential, for a handful of operations only."""
    live = [op for op in ops if op.status != "fail" and not (
        op.f == "read" and op.status != "ok")]
    n = len(live)

    def precedes(a: Operation, b: Operation) -> bool:
        return a.ret is not None and a.ret < b.call

    def apply(state: Value, op: Operation) -> tuple[bool, Value]:
        if op.f == "read":
            return op.output == state, state
        if op.f == "write":
            return True, op.input
        assert isinstance(op.input, tuple)
        expected, new = op.input
        return (True, new) if state == expected else (False, state)

    def search(done: frozenset[int], state: Value) -> bool:
        if all(i in done or live[i].ret is None for i in range(n)):
            return True
        for i in range(n):
            if i in done:
                continue
            if any(j not in done and precedes(live[j], live[i]) for j in range(n)):
                continue
            ok, new = apply(state, live[i])
            if ok and search(done | {i}, new):
                return True
        return False

    return search(frozenset(), None)


def reference_linearizable(ops: Sequence[Operation]) -> bool:
    """Plain Wing & Gong search with a memo of failed (placed set, value) pairs: none of the
    checker's list structure or pruning, for differential tests on medium histories."""
    live = [op for op in ops if op.status != "fail" and not (
        op.f == "read" and op.status != "ok")]
    n = len(live)
    failed: set[tuple[frozenset[int], Value]] = set()

    def apply(state: Value, op: Operation) -> tuple[bool, Value]:
        if op.f == "read":
            return op.output == state, state
        if op.f == "write":
            return True, op.input
        assert isinstance(op.input, tuple)
        expected, new = op.input
        return (True, new) if state == expected else (False, state)

    def search(done: frozenset[int], state: Value) -> bool:
        open_rets = [live[i].ret for i in range(n) if i not in done and live[i].ret is not None]
        if not open_rets:
            return True
        if (done, state) in failed:
            return False
        horizon = min(r for r in open_rets if r is not None)
        for i in range(n):
            if i in done or live[i].call > horizon:
                continue
            ok, new = apply(state, live[i])
            if ok and search(done | {i}, new):
                return True
        failed.add((done, state))
        return False

    return search(frozenset(), None)


def simulated_register_history(
    rng: random.Random, n_ops: int, processes: int, values: int, info_rate: float = 0.1
) -> list[Operation]:
    """Clients driving one real register (linearizable by construction): each operation
    takes effect at a random instant of its interval; some time out and take effect later
    or never; a cas that does not match completes ``fail``."""
    register: Value = None
    events: list[Event] = []
    idle = list(range(processes))
    next_process = processes
    pending: dict[int, list[Any]] = {}  # process -> [f, arg, applied, result]
    floating: list[tuple[str, Value]] = []
    started = 0

    def apply(f: str, arg: Value) -> tuple[bool, Value]:
        nonlocal register
        if f == "read":
            return True, register
        if f == "write":
            register = arg
            return True, None
        assert isinstance(arg, tuple)
        if register == arg[0]:
            register = arg[1]
            return True, None
        return False, None

    while started < n_ops or pending:
        roll = rng.random()
        if idle and started < n_ops and roll < 0.4:
            p = idle.pop(rng.randrange(len(idle)))
            f = rng.choice(["read", "write", "cas"])
            arg: Value = None
            if f == "write":
                arg = rng.randrange(values)
            elif f == "cas":
                arg = (rng.randrange(values), rng.randrange(values))
            pending[p] = [f, arg, False, None]
            events.append(Event(p, "invoke", f, None, arg, float(len(events)), len(events) + 1))
            started += 1
        elif pending and roll < 0.7:
            p = rng.choice(sorted(pending))
            if not pending[p][2]:
                took, result = apply(pending[p][0], pending[p][1])
                pending[p][2:] = [True, result if took else False]
        elif pending:
            p = rng.choice(sorted(pending))
            f, arg, applied, result = pending[p]
            kind = None
            if rng.random() < info_rate:
                kind, value = "info", ":timed-out"
                if not applied and f != "read":
                    floating.append((f, arg))
                idle.append(next_process)
                next_process += 1
            elif applied:
                kind = "fail" if result is False else "ok"
                value = result if f == "read" else arg
                idle.append(p)
            if kind is not None:
                del pending[p]
                events.append(Event(p, EVENT_TYPE_BY_NAME[kind], f, None, value,
                                    float(len(events)), len(events) + 1))
        if floating and rng.random() < 0.05:
            apply(*floating.pop(rng.randrange(len(floating))))
    return pair_events(events)
