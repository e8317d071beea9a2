"""Read and write the JSON-lines history format of ``spec/history.md``.

One JSON object per line::

    {"process": 3, "type": "invoke", "f": "cas", "key": "k1", "value": ["a", "b"], "time": 1.25}

``process`` a non-negative integer; ``type`` one of ``invoke``, ``ok``, ``fail``, ``info``;
``f`` a non-empty string; ``time`` a finite number of seconds (any origin); ``key`` and
``value`` optional (default null). Values are JSON; arrays become tuples and objects
:class:`~foundation_p2p.history.model.ValueMap`. Other members are ignored (a recorder may add
``node``, ``error``...). Blank lines are skipped. NaN and Infinity, duplicate member names and
invalid UTF-8 are refused. Every refusal is a
:class:`~foundation_p2p.history.model.HistoryFormatError` naming the line.
"""

from __future__ import annotations

import json
from typing import Any

from foundation_p2p.history.model import (
    EVENT_TYPE_BY_NAME,
    MAX_EVENTS,
    Event,
    HistoryFormatError,
    HistoryLimitError,
    Value,
    ValueMap,
    check_time,
    text_lines,
    value_to_json,
)

MAX_LINE_BYTES = 1 << 20
"""Longest accepted line (a range read's result may be long); a longer one is refused."""
MAX_DEPTH = 32
"""Deepest accepted nesting of arrays and objects in a value."""


class _Refused(Exception):
    pass


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"number {text} is out of range")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"duplicate member {k!r}")
        out[k] = v
    return out


def to_value(data: object, depth: int = 0) -> Value:
    """Plain JSON data as a :data:`~foundation_p2p.history.model.Value`; ``ValueError`` if
    it is nested deeper than :data:`MAX_DEPTH` or is not JSON data."""
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH}")
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list | tuple):
        return tuple(to_value(v, depth + 1) for v in data)
    if isinstance(data, dict):
        items = []
        for k, v in data.items():
            if not isinstance(k, str):
                raise ValueError(f"object member names must be strings, got {k!r}")
            items.append((k, to_value(v, depth + 1)))
        return ValueMap(tuple(sorted(items, key=lambda kv: kv[0])))
    raise ValueError(f"not JSON data: {type(data).__name__}")


def parse_jsonl(
    data: bytes | str, *, source: str = "<jsonl>", max_events: int = MAX_EVENTS
) -> list[Event]:
    """The events of a JSON-lines history, in line order.

    Raises :class:`~foundation_p2p.history.model.HistoryFormatError` naming the line for a
    malformed line, :class:`~foundation_p2p.history.model.HistoryLimitError` for a line
    longer than :data:`MAX_LINE_BYTES` or more than ``max_events`` events.
    """
    events: list[Event] = []
    for number, line in enumerate(text_lines(data, source, MAX_LINE_BYTES), start=1):
        if not line.strip():
            continue
        if len(events) >= max_events:
            raise HistoryLimitError(f"{source}: more than {max_events} events")
        events.append(parse_jsonl_line(line, source=source, line=number))
    return events


def parse_jsonl_line(text: str, *, source: str = "<jsonl>", line: int = 1) -> Event:
    """One line of a JSON-lines history as an :class:`~foundation_p2p.history.model.Event`."""
    try:
        obj = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_members,
        )
    except _Refused as exc:
        raise HistoryFormatError(f"invalid JSON: {exc}", source=source, line=line) from None
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(f"invalid JSON: {exc.msg}", source=source, line=line) from None
    except RecursionError:
        raise HistoryFormatError("JSON nested too deeply", source=source, line=line) from None
    if not isinstance(obj, dict):
        raise HistoryFormatError(
            f"expected a JSON object, got {type(obj).__name__}", source=source, line=line
        )
    for name in ("process", "type", "f", "time"):
        if name not in obj:
            raise HistoryFormatError(f"missing member {name!r}", source=source, line=line)
    process = obj["process"]
    if isinstance(process, bool) or not isinstance(process, int) or process < 0:
        raise HistoryFormatError(
            f"process must be a non-negative integer, got {process!r}", source=source, line=line
        )
    kind = obj["type"]
    if not isinstance(kind, str) or kind not in EVENT_TYPE_BY_NAME:
        raise HistoryFormatError(
            f"type must be invoke, ok, fail or info, got {kind!r}", source=source, line=line
        )
    f = obj["f"]
    if not isinstance(f, str) or not f:
        raise HistoryFormatError(
            f"f must be a non-empty string, got {f!r}", source=source, line=line
        )
    time = check_time(obj["time"], source=source, line=line)
    try:
        key = to_value(obj.get("key"))
        value = to_value(obj.get("value"))
    except ValueError as exc:
        raise HistoryFormatError(str(exc), source=source, line=line) from None
    return Event(
        process=process,
        type=EVENT_TYPE_BY_NAME[kind],
        f=f,
        key=key,
        value=value,
        time=time,
        line=line,
    )


def format_jsonl_line(event: Event) -> str:
    """One event as a line of the JSON-lines format (no newline); keys sorted, compact.

    ``parse_jsonl_line(format_jsonl_line(e))`` equals ``e`` except for ``line``.
    """
    obj: dict[str, object] = {
        "process": event.process,
        "type": event.type,
        "f": event.f,
        "key": value_to_json(event.key),
        "value": value_to_json(event.value),
        "time": event.time,
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
