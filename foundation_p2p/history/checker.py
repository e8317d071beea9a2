"""Decide whether a history is linearizable: Wing & Gong's search with Lowe's memoization,
in Porcupine's shape, one key at a time.

Per key (P-compositionality: a history of independent keys is linearizable iff each key's
sub-history is), the operations' invokes and completions are put in time order in a
doubly-linked list (at equal times invokes first: touching operations count as concurrent,
so a tie never produces a false violation). The search walks the list from the front:

- at an invoke, it tries to make that operation take effect now: if the model accepts it in
  the current state and the pair (set of operations placed so far, new state) was never
  reached before, the operation is placed (pushed on a stack, its invoke and completion
  unlinked) and the walk restarts from the front;
- at a completion, the operation had to be placed before it returned and was not: the last
  placement is undone (popped, relinked) and the walk goes on after it; an empty stack
  means no order works, and the key is not linearizable.

The key is linearizable once every operation that completed is placed. Indeterminate
operations (``info``, or no completion) have no completion in the list: they may be placed
at any point after their invoke, or never. The memo (bitsets and an interned state per
entry) is what makes the search practical: it never explores the same (placed set, state)
twice. It is bounded by the step budget (one entry at most per step).

Indeterminate operations stay pending to the end, so they multiply the orders to try. Three
rules cut them down without changing any verdict (each keeps at least one linearization of
every linearizable history):

- *twins*: indeterminate operations with the same effect (a class) are interchangeable, so
  only the earliest invoked one not yet placed is tried;
- *observed or dropped*: an indeterminate operation is placed only when the next operation
  placed observes its effect (a read of the value it leaves, a cas that expects it); one
  followed by a write could as well never have happened. Classes whose value nothing
  observes are never linked; when every observer of a class is placed, its next member is
  unlinked until one of them is unplaced again (dancing links, undone in reverse order).
  Observers are counted per class, so memory stays linear in observers times classes;
- *dominance*: for the same completed operations placed, state and flag, having placed more
  indeterminate operations leaves fewer choices, so a state whose indeterminate set is a
  superset of one already explored is not explored again.

The worst case stays exponential (the problem is NP-complete): many timed-out operations
over a small value domain make a violation slow to prove. Recorders that write unique
values keep histories easy.

Each model step counts as a step. When ``max_steps`` or the time limit runs out, the key and
every key after it are ``unknown`` (and so is the history, unless some key was already found
not linearizable). Keys are searched smallest first, so a violation in a small key is found
before a large key exhausts the budget.

On a violation the explanation is the furthest point the search reached: the earliest
completion that no order of the operations can get past (so the history up to it is
linearizable, and not beyond), with the longest linearizable prefix found up to there, the
value after it, and the pending operations the model refused there and why.

Equivalent lower-level calls: :func:`check` is ``model.prepare(ops)`` then
:func:`search_partition` on each key's operations.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from foundation_p2p.history.model import Operation, Value, render_value, value_to_json
from foundation_p2p.history.models import (
    CAS,
    READ,
    REJECT,
    WRITE,
    Model,
    ModelOp,
    Prepared,
    step,
)

DEFAULT_MAX_STEPS = 20_000_000
"""Default step budget of one check (all keys together): some 15-30 s of CPU here."""
_CLOCK_EVERY_STEPS = 4096
_SHOWN_PREFIX = 8


class Verdict(enum.Enum):
    """The answer: linearizable, not, or unknown (the budget ran out first); the values are
    the words of ``--json`` output (and of the Jepsen data's ``VERDICTS`` file)."""

    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not-linearizable"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Refusal:
    """A pending operation the model refused at the point the search got stuck."""

    op: ModelOp
    reason: str


@dataclass(frozen=True)
class Explanation:
    """Why a key is not linearizable: the furthest point the search reached."""

    key: Value
    prefix: tuple[ModelOp, ...]
    """The longest linearizable prefix found, in the order the operations took effect."""
    state: Value
    """The key's value after the prefix."""
    blocked: ModelOp
    """The operation whose completion no order gets past: the earliest such completion in
    the history; it could not be placed after the prefix."""
    refused: tuple[Refusal, ...]
    """The operations pending there (invoked, not placed, completed later) that the model
    refused from ``state``, ``blocked`` among them when it was refused; the others it
    accepted led only to dead ends."""

    def lines(self) -> list[str]:
        """A human-readable account, a few lines."""
        key = "the register" if self.key is None else f"key {render_value(self.key)}"
        out = [
            f"{key}: the longest linearizable prefix found has {len(self.prefix)} operations; "
            f"the value after it is {render_value(self.state)}",
        ]
        shown = self.prefix[-_SHOWN_PREFIX:]
        if len(self.prefix) > len(shown):
            out.append(f"  ... {len(self.prefix) - len(shown)} earlier operations")
        out += [f"  {len(self.prefix) - len(shown) + i + 1}. {m.describe()}"
                for i, m in enumerate(shown)]
        out.append(f"  then this operation completed but could not be placed: "
                   f"{self.blocked.describe()}")
        for r in self.refused:
            out.append(f"  refused: {r.op.describe()}: {r.reason}")
        if not any(r.op is self.blocked for r in self.refused):
            out.append("  (the model accepts it there, but every order of the pending "
                       "operations from that point leads to a dead end)")
        return out

    def to_json(self) -> dict[str, object]:
        """The explanation as a JSON object."""
        return {
            "key": value_to_json(self.key),
            "prefix": [_mop_json(m) for m in self.prefix],
            "state": value_to_json(self.state),
            "blocked": _mop_json(self.blocked),
            "refused": [{"operation": _mop_json(r.op), "reason": r.reason} for r in self.refused],
        }


def _mop_json(m: ModelOp) -> dict[str, object]:
    obj = m.op.to_json()
    if m.part_of_range:
        obj["range_key"] = value_to_json(m.key)
    return obj


@dataclass(frozen=True)
class PartitionResult:
    """The verdict on one key."""

    key: Value
    verdict: Verdict
    operations: int
    """Operations searched (indeterminate ones included)."""
    steps: int
    explanation: Explanation | None = None


@dataclass(frozen=True)
class CheckResult:
    """The verdict on a whole history, per key, with the work it took."""

    verdict: Verdict
    model: str
    operations: int
    """Operations in the history (invokes)."""
    excluded: dict[str, int]
    """Operations not searched, by reason (see :mod:`foundation_p2p.history.models`)."""
    partitions: tuple[PartitionResult, ...]
    steps: int
    reason: str | None = None
    """Why the verdict is unknown (the budget that ran out)."""
    source: str = "<history>"

    @property
    def explanations(self) -> list[Explanation]:
        """The explanation of every key found not linearizable, in search order."""
        return [p.explanation for p in self.partitions if p.explanation is not None]

    def summary(self) -> str:
        """The verdict and its explanation as text (what ``check-history`` prints)."""
        counts = {v: sum(1 for p in self.partitions if p.verdict is v) for v in Verdict}
        head = (
            f"{self.source}: {_words(self.verdict)} ({self.model} model, "
            f"{self.operations} operations, {_plural(len(self.partitions), 'key')}, "
            f"{self.steps} steps)"
        )
        lines = [head]
        if self.reason:
            lines.append(f"  {self.reason}")
        if len(self.partitions) > 1:
            lines.append(
                "  keys: "
                + ", ".join(f"{counts[v]} {_words(v)}" for v in Verdict if counts[v])
            )
        excluded = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.excluded.items() if n)
        if excluded:
            lines.append(f"  not searched: {excluded}")
        for exp in self.explanations:
            lines += ["  " + line for line in exp.lines()]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """The result as one JSON object (``check-history --json``)."""
        return {
            "source": self.source,
            "verdict": self.verdict.value,
            "model": self.model,
            "operations": self.operations,
            "excluded": dict(self.excluded),
            "steps": self.steps,
            "reason": self.reason,
            "partitions": [
                {
                    "key": value_to_json(p.key),
                    "verdict": p.verdict.value,
                    "operations": p.operations,
                    "steps": p.steps,
                    "explanation": None if p.explanation is None else p.explanation.to_json(),
                }
                for p in self.partitions
            ],
        }


@dataclass
class Budget:
    """What one check may spend: model steps and, with a clock, seconds."""

    max_steps: int | None = DEFAULT_MAX_STEPS
    time_limit_s: float | None = None
    clock: Callable[[], float] | None = None
    """Read only when ``time_limit_s`` is set; the caller's clock (sans-I/O)."""
    steps: int = 0
    started: float | None = field(default=None)
    exhausted: str | None = None

    def start(self) -> None:
        """Note the start time (when there is a time limit)."""
        if self.time_limit_s is not None:
            if self.clock is None:
                raise ValueError("a time limit needs a clock")
            self.started = self.clock()

    def remaining_steps(self) -> int | None:
        """Steps left, or None when unbounded."""
        return None if self.max_steps is None else max(0, self.max_steps - self.steps)

    def out_of_time(self) -> bool:
        """True (and ``exhausted`` set) once the time limit has passed."""
        if self.time_limit_s is None or self.clock is None or self.started is None:
            return False
        if self.clock() - self.started > self.time_limit_s:
            self.exhausted = f"unknown: time limit of {self.time_limit_s:g} s exceeded"
            return True
        return False


@dataclass
class _Outcome:
    verdict: Verdict
    steps: int
    explanation: Explanation | None = None


def search_partition(
    mops: Sequence[ModelOp], prepared: Prepared, model: Model, budget: Budget
) -> _Outcome:
    """Wing & Gong search with memoization over one key's operations (module docstring)."""
    n = len(mops)
    # Indeterminate operations with the same effect form a class and are interchangeable:
    # only the earliest invoked one not yet placed is tried (twin[i]: the previous one of
    # its class, which must be placed first).
    cls_of = [-1] * n
    classes: dict[tuple[int, int, int], int] = {}
    members: list[list[int]] = []
    for i in sorted(range(n), key=lambda k: (mops[k].call, k)):
        m = mops[i]
        if m.ret is None:
            c = classes.setdefault((m.kind, m.a, m.b), len(classes))
            if c == len(members):
                members.append([])
            cls_of[i] = c
            members[c].append(i)
    twin = [-1] * n
    for group in members:
        for prev, i in itertools.pairwise(group):
            twin[i] = prev
    # A class is only worth placing right before an operation that observes its effect (a
    # read of the value it leaves, a cas expecting it): ``live[c]`` counts the unplaced
    # observers of class c. A class with none is never linked; one whose observers are all
    # placed has its next member unlinked until an observer is unplaced again.
    result_classes: dict[int, list[int]] = {}
    for (kind, a, b), c in classes.items():
        result_classes.setdefault(b if kind == CAS else a, []).append(c)
    live = [0] * len(members)
    watched: list[list[int]] = [[] for _ in range(n)]
    for j, m in enumerate(mops):
        seen_value = m.out if m.kind == READ else m.a if m.kind == CAS else None
        if seen_value is None:
            continue
        for c in result_classes.get(seen_value, ()):
            live[c] += 1
            watched[j].append(c)
    placed_in_class = [0] * len(members)
    events: list[tuple[float, int, int]] = []
    for i, m in enumerate(mops):
        if m.ret is None and live[cls_of[i]] == 0:
            continue
        events.append((m.call, 0, i))
        if m.ret is not None:
            events.append((m.ret, 1, i))
    events.sort()
    indeterminate = [m.ret is None for m in mops]
    # Nodes: 0 the head, 1..len(events) the events, len(events) + 1 the tail.
    size = len(events) + 2
    tail = size - 1
    nxt = [*range(1, size), tail]
    prv = [0, *range(0, size - 1)]
    is_call = [False] * size
    op_of = [-1] * size
    ret_node = [-1] * n
    call_node = [-1] * n
    for node, (_, kind, i) in enumerate(events, start=1):
        op_of[node] = i
        if kind == 0:
            is_call[node] = True
            call_node[i] = node
        else:
            ret_node[i] = node
    kinds = [m.kind for m in mops]
    arg_a = [m.a for m in mops]
    arg_b = [m.b for m in mops]
    outs = [m.out for m in mops]

    remaining = sum(1 for m in mops if m.ret is not None)
    state = 0
    placed = 0
    # After an indeterminate operation is placed, the next one placed must observe its
    # effect (a read, or a cas: a write would make it pointless; it could have been left
    # out). ``unobserved`` is that flag; it is part of the memo key.
    unobserved = False
    stack: list[tuple[int, int, bool, list[int]]] = []
    # The memo: per (completed operations placed, state, flag), the sets of indeterminate
    # operations placed with it, minimal ones only. Having placed more indeterminate
    # operations leaves fewer choices, so a superset of a set seen before is not explored.
    seen: dict[tuple[int, int, bool], list[int]] = {}
    done = 0  # the completed operations placed (bits); ``placed`` minus ``done`` are the rest
    steps = 0
    limit = budget.remaining_steps()
    best_node = -1
    best_depth = -1
    best: tuple[list[int], int, int, list[int]] | None = None
    check_clock = budget.time_limit_s is not None
    entry = nxt[0]
    while remaining > 0:
        if is_call[entry]:
            i = op_of[entry]
            if limit is not None and steps >= limit:
                budget.steps += steps
                budget.exhausted = f"unknown: budget of {budget.max_steps} steps exceeded"
                return _Outcome(Verdict.UNKNOWN, steps)
            if check_clock and steps % _CLOCK_EVERY_STEPS == 0 and budget.out_of_time():
                budget.steps += steps
                return _Outcome(Verdict.UNKNOWN, steps)
            steps += 1
            if (unobserved and kinds[i] == WRITE) or (
                twin[i] >= 0 and not (placed >> twin[i]) & 1
            ):
                entry = nxt[entry]
                continue
            new = step(state, kinds[i], arg_a[i], arg_b[i], outs[i])
            if new != REJECT:
                bit = 1 << i
                marked = placed | bit
                memo = (done, new, True) if indeterminate[i] else (done | bit, new, False)
                used = marked & ~memo[0]
                fresh = True
                kept = seen.get(memo)
                if kept is None:
                    seen[memo] = [used]
                else:
                    for old in kept:
                        if old & ~used == 0:
                            fresh = False
                            break
                    if fresh:
                        kept[:] = [old for old in kept if used & ~old != 0]
                        kept.append(used)
                if fresh:
                    if not indeterminate[i]:
                        done |= bit
                    dead: list[int] = []
                    stack.append((entry, state, unobserved, dead))
                    state = new
                    unobserved = indeterminate[i]
                    placed = marked
                    # Unlink the invoke and (if any) the completion.
                    p, q = prv[entry], nxt[entry]
                    nxt[p] = q
                    prv[q] = p
                    r = ret_node[i]
                    if r >= 0:
                        p, q = prv[r], nxt[r]
                        nxt[p] = q
                        prv[q] = p
                        remaining -= 1
                    c = cls_of[i]
                    if c >= 0:
                        placed_in_class[c] += 1
                    for c in watched[i]:
                        live[c] -= 1
                        if live[c] == 0 and placed_in_class[c] < len(members[c]):
                            node = call_node[members[c][placed_in_class[c]]]
                            p, q = prv[node], nxt[node]
                            nxt[p] = q
                            prv[q] = p
                            dead.append(node)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
            continue
        # A completion: its operation should have been placed by now.
        if entry > best_node or (entry == best_node and len(stack) > best_depth):
            best_node = entry
            best_depth = len(stack)
            pending: list[int] = []
            node = nxt[0]
            while node != entry:
                pending.append(op_of[node])
                node = nxt[node]
            best = ([op_of[e] for e, _, _, _ in stack], state, op_of[entry], pending)
        if not stack:
            break
        entry, state, unobserved, dead = stack.pop()
        i = op_of[entry]
        placed &= ~(1 << i)
        done &= ~(1 << i)
        # Relink in the reverse order of the unlinking: the dead, the completion, the invoke.
        for node in reversed(dead):
            nxt[prv[node]] = node
            prv[nxt[node]] = node
        for c in watched[i]:
            live[c] += 1
        if cls_of[i] >= 0:
            placed_in_class[cls_of[i]] -= 1
        r = ret_node[i]
        if r >= 0:
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            remaining += 1
        nxt[prv[entry]] = entry
        prv[nxt[entry]] = entry
        entry = nxt[entry]
    budget.steps += steps
    if remaining == 0:
        return _Outcome(Verdict.LINEARIZABLE, steps)
    assert best is not None
    order, final_state, blocked, pending = best
    refused = []
    for i in pending:  # the blocked operation's invoke is among them
        m = mops[i]
        if m.ret is None:
            continue
        if step(final_state, m.kind, m.a, m.b, m.out) == REJECT:
            reason = model.describe_refusal(m, prepared.value(final_state), prepared.values)
            refused.append(Refusal(m, reason))
    explanation = Explanation(
        key=mops[blocked].key,
        prefix=tuple(mops[i] for i in order),
        state=prepared.value(final_state),
        blocked=mops[blocked],
        refused=tuple(refused),
    )
    return _Outcome(Verdict.NOT_LINEARIZABLE, steps, explanation)


def _key_order(item: tuple[Value, list[ModelOp]]) -> tuple[int, str, str]:
    key, mops = item
    return (len(mops), type(key).__name__, repr(key))


def check(
    ops: Sequence[Operation],
    model: Model,
    *,
    budget: Budget | None = None,
    source: str = "<history>",
) -> CheckResult:
    """Is the history ``ops`` linearizable under ``model``? Deterministic for a step budget.

    Raises :class:`~foundation_p2p.history.model.HistoryFormatError` (naming the line) when
    an operation does not fit the model.
    """
    budget = budget or Budget()
    budget.start()
    prepared = model.prepare(ops, source=source)
    results: list[PartitionResult] = []
    for key, mops in sorted(prepared.partitions.items(), key=_key_order):
        if budget.exhausted is not None:
            results.append(PartitionResult(key, Verdict.UNKNOWN, len(mops), 0))
            continue
        outcome = search_partition(mops, prepared, model, budget)
        results.append(
            PartitionResult(key, outcome.verdict, len(mops), outcome.steps, outcome.explanation)
        )
    verdicts = {r.verdict for r in results}
    if Verdict.NOT_LINEARIZABLE in verdicts:
        verdict = Verdict.NOT_LINEARIZABLE
    elif Verdict.UNKNOWN in verdicts:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.LINEARIZABLE
    return CheckResult(
        verdict=verdict,
        model=model.name,
        operations=len(ops),
        excluded=prepared.excluded,
        partitions=tuple(results),
        steps=budget.steps,
        reason=budget.exhausted if verdict is Verdict.UNKNOWN else None,
        source=source,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _words(verdict: Verdict) -> str:
    return verdict.value.replace("-", " ")
