"""Shared helpers of the history tests: building histories by hand, and a brute-force
reference checker that tries every order (small histories only)."""

from __future__ import annotations

from collections.abc import Sequence

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
