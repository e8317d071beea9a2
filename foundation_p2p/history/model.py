"""The history model: events as recorded, and operations (an invoke paired with its completion).

A history is what clients saw: each *process* (one client thread, one operation at a time)
*invokes* an operation and later sees it complete ``ok`` (it took effect, with this result),
``fail`` (it did not take effect) or ``info`` (unknown: it may or may not take effect, at any
time after its invoke). An invoke with no completion at all is indeterminate like ``info``.
``spec/history.md`` defines the semantics and the JSON-lines file format.

:func:`pair_events` turns the event list into :class:`Operation` values and refuses a history a
client cannot have produced (two open operations on one process, a completion without an
invoke, a completion naming another function), naming the line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeAlias

from foundation_p2p.errors import LimitError, MalformedError

EventType: TypeAlias = Literal["invoke", "ok", "fail", "info"]
EVENT_TYPES: tuple[EventType, ...] = ("invoke", "ok", "fail", "info")
EVENT_TYPE_BY_NAME: dict[str, EventType] = {
    "invoke": "invoke", "ok": "ok", "fail": "fail", "info": "info"
}

Status: TypeAlias = Literal["ok", "fail", "info"]
_STATUS: dict[str, Status] = {"ok": "ok", "fail": "fail", "info": "info"}


@dataclass(frozen=True, slots=True)
class ValueMap:
    """A JSON object used as a value (a range read's result): its members sorted by name."""

    items: tuple[tuple[str, Value], ...]
    """The ``(name, value)`` pairs, sorted by name, names unique."""

    def get(self, name: str) -> Value:
        """The value of member ``name``, or None when absent."""
        for k, v in self.items:
            if k == name:
                return v
        return None


Value: TypeAlias = "bool | int | float | str | tuple[Value, ...] | ValueMap | None"
"""A value in a history: JSON's scalars, arrays as tuples, objects as :class:`ValueMap`.
Jepsen keywords (``:timed-out``) are strings that start with a colon."""


class HistoryFormatError(MalformedError):
    """A history file or event is malformed; the message names the source and the line."""

    def __init__(self, message: str, *, source: str = "<history>", line: int | None = None):
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line


class HistoryLimitError(LimitError):
    """A history exceeds a size limit (line length, event count); the message names it."""


MAX_EVENTS = 4_000_000
"""Default bound on the events of one history (a parser refuses more, with
:class:`HistoryLimitError`): the checker's memory grows with it."""


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history: a process invoked an operation, or saw it complete."""

    process: int
    """The client that invoked it; one open operation per process at a time."""
    type: EventType
    """``invoke``, or the completion: ``ok``, ``fail`` or ``info``."""
    f: str
    """The function: ``read``/``write``/``cas`` (register) or ``get``/``put``/``delete``/
    ``cas``/``range`` (KV)."""
    key: Value
    """The key it names (None for the single register of a Jepsen history)."""
    value: Value
    """The argument (invoke) or the result (completion)."""
    time: float
    """When it happened, in seconds (Jepsen logs: the line number)."""
    line: int
    """The line of the source it came from (1-based)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """An invoke paired with its completion: what the checker places on a timeline."""

    index: int
    """Its position in the history, in invoke order (0-based)."""
    process: int
    f: str
    key: Value
    input: Value
    """The invoke's value (the argument)."""
    output: Value
    """The completion's value (the result); None when it did not complete ``ok``."""
    status: Status
    """``ok`` took effect; ``fail`` did not; ``info`` unknown (also: no completion)."""
    call: float
    """The invoke's time."""
    ret: float | None
    """The completion's time, or None when indeterminate (``info`` or no completion): the
    operation may take effect at any time after ``call``, or never."""
    line: int
    """The invoke's line."""
    ret_line: int | None
    """The completion's line (None: no completion)."""

    def describe(self) -> str:
        """One line naming the operation, e.g. ``process 3 cas [1 2] -> ok (lines 7-9)``."""
        key = "" if self.key is None else f" {render_value(self.key)}"
        arg = "" if self.input is None else f" {render_value(self.input)}"
        result: str = self.status
        if self.status == "ok" and self.output is not None and self.output != self.input:
            result = f"ok {render_value(self.output)}"
        lines = f"line {self.line}" if self.ret_line is None else (
            f"lines {self.line}-{self.ret_line}"
        )
        return f"process {self.process} {self.f}{key}{arg} -> {result} ({lines})"

    def to_json(self) -> dict[str, object]:
        """The operation as a JSON object (``--json`` output of ``check-history``)."""
        return {
            "index": self.index,
            "process": self.process,
            "f": self.f,
            "key": value_to_json(self.key),
            "value": value_to_json(self.input),
            "output": value_to_json(self.output),
            "status": self.status,
            "invoke_time": self.call,
            "complete_time": self.ret,
            "invoke_line": self.line,
            "complete_line": self.ret_line,
        }


def render_value(value: Value) -> str:
    """A short, deterministic text form of a value (Jepsen's ``nil`` and ``[a b]``)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, tuple):
        return "[" + " ".join(render_value(v) for v in value) + "]"
    if isinstance(value, ValueMap):
        return "{" + ", ".join(f"{k!r} {render_value(v)}" for k, v in value.items) + "}"
    if isinstance(value, str) and not value.startswith(":"):
        return repr(value)
    return str(value)


def value_to_json(value: Value) -> object:
    """The value as plain JSON data (tuples to lists, :class:`ValueMap` to dicts)."""
    if isinstance(value, tuple):
        return [value_to_json(v) for v in value]
    if isinstance(value, ValueMap):
        return {k: value_to_json(v) for k, v in value.items}
    return value


def pair_events(events: Iterable[Event], *, source: str = "<history>") -> list[Operation]:
    """Pair each invoke with its process's next completion, in invoke order.

    Raises :class:`HistoryFormatError` naming the line when a process invokes while its
    previous operation is open or before that one completed, completes nothing, completes
    another function or key, or completes before it invoked. An invoke left open at the
    end is ``info``.
    """
    open_ops: dict[int, tuple[int, Event]] = {}
    last_completion: dict[int, Event] = {}
    slots: list[Operation | tuple[Event, None]] = []
    for ev in events:
        if ev.type == "invoke":
            if ev.process in open_ops:
                _, prior = open_ops[ev.process]
                raise HistoryFormatError(
                    f"process {ev.process} invokes {ev.f} while its {prior.f} from line "
                    f"{prior.line} has not completed",
                    source=source,
                    line=ev.line,
                )
            before = last_completion.get(ev.process)
            if before is not None and ev.time < before.time:
                raise HistoryFormatError(
                    f"process {ev.process} invokes at time {ev.time}, before its previous "
                    f"completion ({before.time}, line {before.line})",
                    source=source,
                    line=ev.line,
                )
            open_ops[ev.process] = (len(slots), ev)
            slots.append((ev, None))
            continue
        opened = open_ops.pop(ev.process, None)
        if opened is None:
            raise HistoryFormatError(
                f"process {ev.process} completes {ev.f} ({ev.type}) with no open invoke",
                source=source,
                line=ev.line,
            )
        slot, inv = opened
        if ev.f != inv.f:
            raise HistoryFormatError(
                f"process {ev.process} completes {ev.f} but invoked {inv.f} at line {inv.line}",
                source=source,
                line=ev.line,
            )
        if ev.key != inv.key:
            raise HistoryFormatError(
                f"process {ev.process} completes key {ev.key!r} but invoked key {inv.key!r} "
                f"at line {inv.line}",
                source=source,
                line=ev.line,
            )
        if ev.time < inv.time:
            raise HistoryFormatError(
                f"completion time {ev.time} is before its invoke's ({inv.time}, line {inv.line})",
                source=source,
                line=ev.line,
            )
        last_completion[ev.process] = ev
        status = _STATUS[ev.type]
        slots[slot] = Operation(
            index=slot,
            process=inv.process,
            f=inv.f,
            key=inv.key,
            input=inv.value,
            output=ev.value if status == "ok" else None,
            status=status,
            call=inv.time,
            ret=ev.time if status != "info" else None,
            line=inv.line,
            ret_line=ev.line,
        )
    ops: list[Operation] = []
    for i, item in enumerate(slots):
        if isinstance(item, Operation):
            ops.append(item)
            continue
        inv = item[0]
        ops.append(
            Operation(
                index=i,
                process=inv.process,
                f=inv.f,
                key=inv.key,
                input=inv.value,
                output=None,
                status="info",
                call=inv.time,
                ret=None,
                line=inv.line,
                ret_line=None,
            )
        )
    return ops


def check_time(value: object, *, source: str, line: int) -> float:
    """``value`` as a finite time in seconds, or :class:`HistoryFormatError`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HistoryFormatError(
            f"time must be a number, got {type(value).__name__}", source=source, line=line
        )
    t = float(value)
    if not math.isfinite(t):
        raise HistoryFormatError(f"time must be finite, got {value!r}", source=source, line=line)
    return t



def text_lines(data: bytes | str, source: str, max_line_bytes: int) -> Iterator[str]:
    """The lines of ``data`` (split at ``\\n``), decoded from UTF-8; every line is yielded,
    blank ones too, so line numbers count from 1 in step.

    Raises :class:`HistoryLimitError` for a line longer than ``max_line_bytes`` and
    :class:`HistoryFormatError` for a line that is not UTF-8, naming the line.
    """
    if isinstance(data, str):
        for number, line in enumerate(data.split("\n"), start=1):
            if len(line) > max_line_bytes:
                raise HistoryLimitError(
                    f"{source}:{number}: line longer than {max_line_bytes} bytes"
                )
            yield line
        return
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > max_line_bytes:
            raise HistoryLimitError(f"{source}:{number}: line longer than {max_line_bytes} bytes")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HistoryFormatError("not UTF-8", source=source, line=number) from None
