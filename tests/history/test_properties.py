"""Properties of the checker, with Hypothesis.

1. A history produced by a real sequential register, with clients whose operations overlap
   at random (each takes effect at some instant between its invoke and its completion, some
   time out and take effect later or never), is always linearizable.
2. The same history with one read's result replaced by a value nobody wrote is not.
3. On small random histories (arbitrary results, arbitrary overlap) the verdict equals the
   one of a brute-force reference that tries every order.
4. On medium histories (up to 40 operations, small value domains, many timeouts, one read
   changed to another legal value, so the change may or may not be observable) the verdict
   equals a plain Wing & Gong search without the checker's list or pruning.
"""

from __future__ import annotations

import random
from dataclasses import replace

from history_helpers import (
    brute_force_linearizable,
    reference_linearizable,
    simulated_register_history,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation_p2p.history import (
    Budget,
    Event,
    Operation,
    RegisterModel,
    Verdict,
    check,
    pair_events,
)
from foundation_p2p.history.model import EVENT_TYPE_BY_NAME, Value

VALUES = st.integers(min_value=0, max_value=3)
NEVER_WRITTEN = 99


@st.composite
def register_runs(draw: st.DrawFn, max_actions: int = 60) -> list[Event]:
    """Events of clients driving one real register; see the module docstring."""
    processes = draw(st.integers(min_value=1, max_value=5))
    register: Value = None
    idle = list(range(processes))
    next_process = processes
    invoked: dict[int, tuple[str, Value]] = {}  # process -> (f, argument), not yet applied
    applied: dict[int, tuple[str, Value, Value, bool]] = {}  # -> (f, arg, result, took effect)
    floating: list[tuple[str, Value]] = []  # timed out, not applied: may apply later
    events: list[Event] = []
    time = 0.0

    def emit(process: int, kind: str, f: str, value: Value) -> None:
        nonlocal time
        time += 1.0
        events.append(Event(process, EVENT_TYPE_BY_NAME[kind], f, None, value, time,
                            len(events) + 1))

    for _ in range(draw(st.integers(min_value=0, max_value=max_actions))):
        choices = []
        if idle:
            choices.append("invoke")
        if invoked or floating:
            choices.append("apply")
        if applied:
            choices.append("complete")
        if invoked:
            choices.append("time_out")
        if not choices:
            break
        action = draw(st.sampled_from(choices))
        if action == "invoke":
            process = draw(st.sampled_from(idle))
            idle.remove(process)
            f = draw(st.sampled_from(["read", "write", "cas"]))
            arg: Value = None
            if f == "write":
                arg = draw(VALUES)
            elif f == "cas":
                arg = (draw(st.one_of(st.none(), VALUES)), draw(VALUES))
            invoked[process] = (f, arg)
            emit(process, "invoke", f, arg)
        elif action == "apply":
            pool = sorted(invoked) + [-1 - i for i in range(len(floating))]
            pick = draw(st.sampled_from(pool))
            f, arg = invoked.pop(pick) if pick >= 0 else floating.pop(-1 - pick)
            result: Value = None
            took_effect = True
            if f == "read":
                result = register
            elif f == "write":
                register = arg
            else:
                assert isinstance(arg, tuple)
                took_effect = register == arg[0]
                if took_effect:
                    register = arg[1]
            if pick >= 0:
                applied[pick] = (f, arg, result, took_effect)
        elif action == "complete":
            process = draw(st.sampled_from(sorted(applied)))
            f, arg, result, took_effect = applied.pop(process)
            if draw(st.booleans()) and draw(st.booleans()):
                emit(process, "info", f, ":timed-out")  # applied, but the client never knew
            elif not took_effect:
                emit(process, "fail", f, arg)
            else:
                emit(process, "ok", f, result if f == "read" else arg)
            idle.append(process)
        else:
            process = draw(st.sampled_from(sorted(invoked)))
            f, arg = invoked.pop(process)
            emit(process, "info", f, ":timed-out")
            if f != "read":
                floating.append((f, arg))
            # Jepsen's rule: a process that timed out is replaced by a fresh one.
            idle.append(next_process)
            next_process += 1
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_runs())
def test_histories_of_a_real_register_are_linearizable(events: list[Event]) -> None:
    ops = pair_events(events)
    result = check(ops, RegisterModel(), budget=Budget(max_steps=2_000_000))
    assert result.verdict is Verdict.LINEARIZABLE, result.summary()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_runs(), st.data())
def test_a_read_of_a_value_nobody_wrote_is_caught(events: list[Event], data: st.DataObject) -> None:
    ops = pair_events(events)
    reads = [op for op in ops if op.f == "read" and op.status == "ok"]
    if not reads:
        return
    victim = data.draw(st.sampled_from(reads))
    corrupted = [replace(op, output=NEVER_WRITTEN) if op is victim else op for op in ops]
    result = check(corrupted, RegisterModel(), budget=Budget(max_steps=2_000_000))
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    (exp,) = result.explanations
    assert any(r.op.op.index == victim.index for r in exp.refused)


@st.composite
def small_histories(draw: st.DrawFn) -> list[Operation]:
    """Up to 6 register operations with arbitrary intervals, results and statuses."""
    n = draw(st.integers(min_value=0, max_value=6))
    ops = []
    for i in range(n):
        f = draw(st.sampled_from(["read", "write", "cas"]))
        call = float(draw(st.integers(min_value=0, max_value=10)))
        status = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
        ret = None if status == "info" else call + draw(st.integers(min_value=0, max_value=6))
        arg: Value = None
        output: Value = None
        if f == "read":
            output = draw(st.one_of(st.none(), VALUES))
        elif f == "write":
            arg = draw(VALUES)
        else:
            arg = (draw(st.one_of(st.none(), VALUES)), draw(VALUES))
        ops.append(Operation(i, i, f, None, arg, output if status == "ok" else None,
                             status, call, ret, i + 1, None))  # type: ignore[arg-type]
    return ops


@settings(max_examples=1500, deadline=None)
@given(small_histories())
def test_the_verdict_matches_a_brute_force_search(ops: list[Operation]) -> None:
    expected = brute_force_linearizable(ops)
    result = check(ops, RegisterModel())
    assert (result.verdict is Verdict.LINEARIZABLE) == expected, [op.describe() for op in ops]


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    n_ops=st.integers(min_value=5, max_value=40),
    processes=st.integers(min_value=2, max_value=8),
    values=st.integers(min_value=2, max_value=4),
    info_rate=st.sampled_from([0.0, 0.1, 0.3]),
    corrupt=st.booleans(),
)
def test_the_verdict_matches_a_plain_wing_gong_search(
    seed: int, n_ops: int, processes: int, values: int, info_rate: float, corrupt: bool
) -> None:
    rng = random.Random(seed)
    ops = simulated_register_history(rng, n_ops, processes, values, info_rate)
    reads = [op for op in ops if op.f == "read" and op.status == "ok"]
    if corrupt and reads:
        victim = rng.choice(reads)
        wrong = rng.choice([v for v in [None, *range(values)] if v != victim.output])
        ops = [replace(op, output=wrong) if op is victim else op for op in ops]
    expected = reference_linearizable(ops)
    if not corrupt:
        assert expected
    result = check(ops, RegisterModel())
    assert (result.verdict is Verdict.LINEARIZABLE) == expected
