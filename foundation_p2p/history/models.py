"""The sequential specifications the checker tests a history against.

Both models are registers per key: ``read`` returns the value, ``write`` sets it, ``cas``
(compare-and-set, argument ``[expected, new]``) sets ``new`` only if the value is
``expected``. The initial value of every key is nil/null (absent).

- :class:`RegisterModel` — Jepsen's compare-and-set register: functions ``read``, ``write``,
  ``cas``. The key is usually nil (one register); a history with keys is checked as one
  independent register per key.
- :class:`KvModel` — our KV store: ``get``, ``put``, ``delete`` (sets absent), ``cas`` (null
  expected = absent, null new = delete) and ``range``. A range read, argument ``[start, end]``
  (end exclusive, null = unbounded) and result an object ``{key: value}``, is checked as one
  read per key over the same interval: every key of the history in ``[start, end)`` reads
  the result's value, or absent when the result leaves it out. That is a necessary condition
  (each reported violation is real) but weaker than an atomic multi-key read: a range whose
  keys were read at different instants, each one a value it may legally see, is not caught.

How statuses are read (``spec/history.md``): ``ok`` took effect with this result; ``fail``
did not take effect, so the operation is dropped (a failed ``cas`` tells nothing about the
value); ``info`` may take effect at any point after its invoke, or never: a ``write`` or
``cas`` stays pending until the end of the history, a ``read`` with no result constrains
nothing and is dropped. The counts of dropped operations are reported.

:meth:`Model.prepare` turns :class:`~foundation_p2p.history.model.Operation` values into
:class:`ModelOp` values grouped by key (the P-compositionality partition: a history is
linearizable iff each key's sub-history is). Values are interned as small integers (0 is
nil), so the search compares and hashes integers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from foundation_p2p.history.model import (
    HistoryFormatError,
    Operation,
    Value,
    ValueMap,
    render_value,
)

READ = 0
WRITE = 1
CAS = 2
_KIND_NAMES = ("read", "write", "cas")

REJECT = -1
"""What :func:`step` returns when the operation cannot take effect in that state."""


def step(state: int, kind: int, a: int, b: int, out: int) -> int:
    """The register's transition: the new state, or :data:`REJECT`.

    ``read`` must see ``out``; ``write`` sets ``a``; ``cas`` needs the value ``a`` and sets
    ``b``. Every argument is an interned value (0 = nil).
    """
    if kind == READ:
        return state if out == state else REJECT
    if kind == WRITE:
        return a
    return b if state == a else REJECT


@dataclass(frozen=True, slots=True)
class ModelOp:
    """One operation as the search sees it: a register step on one key."""

    op: Operation
    """The history's operation it comes from (a range read gives one per key)."""
    key: Value
    kind: int
    """:data:`READ`, :data:`WRITE` or :data:`CAS`."""
    a: int
    """Interned: the written value (write), the expected value (cas)."""
    b: int
    """Interned: the new value (cas)."""
    out: int
    """Interned: the value read (read)."""
    call: float
    ret: float | None
    """None: indeterminate, it may take effect after ``call`` or never."""
    part_of_range: bool = False

    def describe(self) -> str:
        """The operation's one-line description (a range read names the key it checks)."""
        text = self.op.describe()
        if self.part_of_range:
            text += f" [its read of key {render_value(self.key)}]"
        return text


@dataclass
class Prepared:
    """A history ready for the search: per-key operations and the interned values."""

    partitions: dict[Value, list[ModelOp]]
    """Each key's operations, in the history's invoke order."""
    values: list[Value]
    """Interned value ``i`` is ``values[i]``; ``values[0]`` is None (nil)."""
    excluded: dict[str, int] = field(default_factory=dict)
    """Operations the search does not place, by reason (``failed``,
    ``indeterminate_reads``)."""

    def value(self, interned: int) -> Value:
        """The value an interned integer stands for."""
        return self.values[interned]


def _canon(value: Value) -> object:
    # Equality that keeps 1, 1.0 and True apart, as a history's writer meant them.
    if value is None:
        return None
    if isinstance(value, tuple):
        return ("t", tuple(_canon(v) for v in value))
    if isinstance(value, ValueMap):
        return ("m", tuple((k, _canon(v)) for k, v in value.items))
    return (type(value).__name__, value)


class _Interner:
    def __init__(self) -> None:
        self.values: list[Value] = [None]
        self._ids: dict[object, int] = {None: 0}

    def __call__(self, value: Value) -> int:
        c = _canon(value)
        found = self._ids.get(c)
        if found is None:
            found = len(self.values)
            self._ids[c] = found
            self.values.append(value)
        return found


class Model(ABC):
    """A register-per-key specification; subclasses name the functions and their shapes."""

    name = "model"
    functions: tuple[str, ...] = ()

    def describe_refusal(self, mop: ModelOp, state: Value, values: Sequence[Value]) -> str:
        """Why ``mop`` cannot take effect when the key holds ``state``."""
        current = render_value(state)
        if mop.kind == READ:
            return f"it read {render_value(values[mop.out])} but the value was {current}"
        if mop.kind == CAS:
            return f"it expected {render_value(values[mop.a])} but the value was {current}"
        return "it can always take effect"

    def prepare(self, ops: Sequence[Operation], *, source: str = "<history>") -> Prepared:
        """Group ``ops`` per key as :class:`ModelOp` values; refuse unknown functions and
        malformed arguments with :class:`HistoryFormatError` naming the line."""
        intern = _Interner()
        prepared = Prepared(partitions={}, values=intern.values)
        excluded = {"failed": 0, "indeterminate_reads": 0}
        for op in ops:
            if op.f not in self.functions:
                raise HistoryFormatError(
                    f"function {op.f!r} is not a {self.name} operation "
                    f"({', '.join(self.functions)})",
                    source=source,
                    line=op.line,
                )
            self._check_key(op, source)
        self._prepare_ops(ops, intern, prepared, excluded, source)
        prepared.excluded = excluded
        return prepared

    def _check_key(self, op: Operation, source: str) -> None:  # noqa: B027 - optional hook
        """Refuse an operation whose key this model cannot take (the default takes any)."""

    def _prepare_ops(
        self,
        ops: Sequence[Operation],
        intern: _Interner,
        prepared: Prepared,
        excluded: dict[str, int],
        source: str,
    ) -> None:
        for op in ops:
            if op.status == "fail":
                excluded["failed"] += 1
                continue
            mop = self._model_op(op, intern, source)
            if mop is None:
                excluded["indeterminate_reads"] += 1
                continue
            prepared.partitions.setdefault(op.key, []).append(mop)

    @abstractmethod
    def _model_op(self, op: Operation, intern: _Interner, source: str) -> ModelOp | None:
        """The model operation of ``op`` (``None``: it says nothing the search can use)."""

    @staticmethod
    def _make(
        op: Operation, kind: int, a: int = 0, b: int = 0, out: int = 0, key: Value = None
    ) -> ModelOp:
        return ModelOp(
            op=op,
            key=op.key if key is None else key,
            kind=kind,
            a=a,
            b=b,
            out=out,
            call=op.call,
            ret=op.ret,
            part_of_range=key is not None,
        )

    @staticmethod
    def _pair(op: Operation, source: str) -> tuple[Value, Value]:
        if not isinstance(op.input, tuple) or len(op.input) != 2:
            raise HistoryFormatError(
                f"{op.f} needs [expected new], got {render_value(op.input)}",
                source=source,
                line=op.line,
            )
        return op.input[0], op.input[1]


class RegisterModel(Model):
    """Jepsen's compare-and-set register: ``read``, ``write V``, ``cas [expected new]``."""

    name = "register"
    functions = ("read", "write", "cas")

    def _model_op(self, op: Operation, intern: _Interner, source: str) -> ModelOp | None:
        if op.f == "read":
            if op.status != "ok":
                return None
            return self._make(op, READ, out=intern(op.output))
        if op.f == "write":
            return self._make(op, WRITE, a=intern(op.input))
        expected, new = self._pair(op, source)
        return self._make(op, CAS, a=intern(expected), b=intern(new))


class KvModel(Model):
    """Our KV store per key: ``get``, ``put``, ``delete``, ``cas``, and ``range`` checked as
    per-key reads (see the module docstring for what that does not catch)."""

    name = "kv"
    functions = ("get", "put", "delete", "cas", "range")

    def _check_key(self, op: Operation, source: str) -> None:
        if op.f == "range":
            if op.key is not None:
                raise HistoryFormatError(
                    "range takes no key (its value is [start end])", source=source, line=op.line
                )
            start, end = self._pair(op, source)
            for bound in (start, end):
                if bound is not None and not isinstance(bound, str):
                    raise HistoryFormatError(
                        f"range bounds must be strings or null, got {render_value(bound)}",
                        source=source,
                        line=op.line,
                    )
            if op.status == "ok" and not isinstance(op.output, ValueMap):
                raise HistoryFormatError(
                    f"an ok range's result must be an object, got {render_value(op.output)}",
                    source=source,
                    line=op.ret_line,
                )
            return
        if not isinstance(op.key, str):
            raise HistoryFormatError(
                f"{op.f} needs a string key, got {render_value(op.key)}",
                source=source,
                line=op.line,
            )

    def _prepare_ops(
        self,
        ops: Sequence[Operation],
        intern: _Interner,
        prepared: Prepared,
        excluded: dict[str, int],
        source: str,
    ) -> None:
        plain = [op for op in ops if op.f != "range"]
        super()._prepare_ops(plain, intern, prepared, excluded, source)
        ranges = [op for op in ops if op.f == "range"]
        if not ranges:
            return
        universe: set[str] = {op.key for op in plain if isinstance(op.key, str)}
        for op in ranges:
            if isinstance(op.output, ValueMap):
                universe.update(k for k, _ in op.output.items)
        keys = sorted(universe)
        by_key: dict[Value, list[ModelOp]] = {}
        for op in ranges:
            if op.status == "fail":
                excluded["failed"] += 1
                continue
            if op.status != "ok":
                excluded["indeterminate_reads"] += 1
                continue
            start, end = self._pair(op, source)
            assert isinstance(op.output, ValueMap)
            for k, _ in op.output.items:
                if not _in_range(k, start, end):
                    raise HistoryFormatError(
                        f"range [{render_value(start)} {render_value(end)}) returned key "
                        f"{k!r}, outside the range",
                        source=source,
                        line=op.ret_line,
                    )
            for k in keys:
                if _in_range(k, start, end):
                    by_key.setdefault(k, []).append(
                        self._make(op, READ, out=intern(op.output.get(k)), key=k)
                    )
        for range_key, extra in by_key.items():
            merged = prepared.partitions.get(range_key, []) + extra
            merged.sort(key=lambda m: m.op.index)
            prepared.partitions[range_key] = merged

    def _model_op(self, op: Operation, intern: _Interner, source: str) -> ModelOp | None:
        if op.f == "get":
            if op.status != "ok":
                return None
            return self._make(op, READ, out=intern(op.output))
        if op.f == "put":
            return self._make(op, WRITE, a=intern(op.input))
        if op.f == "delete":
            return self._make(op, WRITE, a=0)
        expected, new = self._pair(op, source)
        return self._make(op, CAS, a=intern(expected), b=intern(new))


def _in_range(key: str, start: Value, end: Value) -> bool:
    # The bounds were checked to be strings or None in _check_key.
    low = start if isinstance(start, str) else None
    high = end if isinstance(end, str) else None
    return (low is None or key >= low) and (high is None or key < high)


MODELS: dict[str, type[Model]] = {"register": RegisterModel, "kv": KvModel}
"""The models by the name ``check-history --model`` takes."""

KIND_NAMES = _KIND_NAMES
