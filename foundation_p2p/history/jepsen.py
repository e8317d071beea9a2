"""Parse Jepsen's history log: ``INFO  jepsen.util - 3	:ok	:read	2`` lines.

Each history line is ``PROCESS TYPE F VALUE`` separated by tabs or spaces, optionally after
a log prefix that ends in ``jepsen.util - `` (Jepsen's ``jepsen.log``; a timestamp before the
level is allowed). ``PROCESS`` is an integer, or ``:nemesis`` (fault injection, skipped);
``TYPE`` is ``:invoke``, ``:ok``, ``:fail`` or ``:info``; ``F`` a keyword (``:read``,
``:write``, ``:cas``); ``VALUE`` one EDN value: ``nil``, ``true``/``false``, an integer, a
float, a string, a keyword (kept as ``":name"``) or a vector ``[...]``/list ``(...)`` of them
(kept as a tuple). A ``:fail`` or ``:info`` completion may carry free text instead (an error
message); it is kept as a string, since the checker does not read it.

Blank lines and lines of other loggers (``INFO  jepsen.core - ...``) are skipped. Any other
line raises :class:`~foundation_p2p.history.model.HistoryFormatError` naming it. Jepsen logs
carry no usable times, so an event's time is its line number: the order of the lines is the
real-time order.
"""

from __future__ import annotations

import re

from foundation_p2p.history.model import (
    EVENT_TYPE_BY_NAME,
    EVENT_TYPES,
    MAX_EVENTS,
    Event,
    HistoryFormatError,
    HistoryLimitError,
    Value,
    text_lines,
)

MAX_LINE_BYTES = 1 << 16
"""Longest accepted line; a longer one is refused (a history line is a few dozen bytes)."""
MAX_DEPTH = 16
"""Deepest accepted nesting of EDN vectors."""

_PREFIX = re.compile(r"\bjepsen\.util\s+-\s")
_OTHER_LOGGER = re.compile(r"^\S*.*?\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\b.*?\s-\s")
_FIELDS = re.compile(r"\s*(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*?))?\s*$")
_TOKEN = re.compile(r'\s*(?:([\[\]()])|("(?:[^"\\]|\\.)*")|([^\s\[\]()",]+))\s*,?')
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\d*\.\d+|\d+)([eE][+-]?\d+)?M?")
_KEYWORD = re.compile(r":[^\s:][^\s]*")
_CLOSERS = {"[": "]", "(": ")"}


class _EdnError(Exception):
    pass


def parse_edn(text: str) -> Value:
    """One EDN value of the subset above, the whole of ``text``; raises ``ValueError``."""
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"unexpected character {text[pos]!r} in value {text!r}")
        tokens.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
    if not tokens:
        raise ValueError("missing value")
    try:
        value, end = _parse_tokens(tokens, 0, 0)
    except _EdnError as exc:
        raise ValueError(f"{exc} in value {text!r}") from None
    if end != len(tokens):
        raise ValueError(f"more than one value in {text!r}")
    return value


def _parse_tokens(tokens: list[str], i: int, depth: int) -> tuple[Value, int]:
    if i >= len(tokens):
        raise _EdnError("unterminated vector")
    tok = tokens[i]
    if tok in _CLOSERS:
        if depth >= MAX_DEPTH:
            raise _EdnError(f"nested deeper than {MAX_DEPTH}")
        closer = _CLOSERS[tok]
        items: list[Value] = []
        i += 1
        while True:
            if i >= len(tokens):
                raise _EdnError("unterminated vector")
            if tokens[i] == closer:
                return tuple(items), i + 1
            if tokens[i] in ("]", ")"):
                raise _EdnError(f"mismatched {tokens[i]!r}")
            item, i = _parse_tokens(tokens, i, depth + 1)
            items.append(item)
    if tok in ("]", ")"):
        raise _EdnError(f"unexpected {tok!r}")
    return _atom(tok), i + 1


def _atom(tok: str) -> Value:
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    if tok.startswith('"'):
        body = tok[1:-1]
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
    if _INT.fullmatch(tok):
        return int(tok.rstrip("N"))
    if _FLOAT.fullmatch(tok):
        return float(tok.rstrip("M"))
    if _KEYWORD.fullmatch(tok):
        return tok
    raise _EdnError(f"unknown token {tok!r}")


def parse_jepsen(
    data: bytes | str, *, source: str = "<jepsen>", max_events: int = MAX_EVENTS
) -> list[Event]:
    """The client events of a Jepsen history log, in line order (see the module docstring).

    Raises :class:`~foundation_p2p.history.model.HistoryFormatError` naming the line for a
    malformed line, and :class:`~foundation_p2p.history.model.HistoryLimitError` for a line
    longer than :data:`MAX_LINE_BYTES` or more than ``max_events`` events.
    """
    events: list[Event] = []
    for number, line in enumerate(text_lines(data, source, MAX_LINE_BYTES), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        prefix = _PREFIX.search(line)
        if prefix is not None:
            body = line[prefix.end():]
        elif _OTHER_LOGGER.match(line):
            continue
        else:
            body = line
        event = _parse_body(body, source=source, line=number)
        if event is None:
            continue
        if len(events) >= max_events:
            raise HistoryLimitError(f"{source}: more than {max_events} events")
        events.append(event)
    return events


def _parse_body(body: str, *, source: str, line: int) -> Event | None:
    m = _FIELDS.fullmatch(body)
    if m is None:
        raise HistoryFormatError(
            "not a Jepsen history line (expected PROCESS :TYPE :F VALUE)", source=source, line=line
        )
    process_text, type_text, f_text, value_text = m.groups()
    if process_text == ":nemesis":
        return None
    if not re.fullmatch(r"\d+", process_text):
        raise HistoryFormatError(
            f"process must be a non-negative integer or :nemesis, got {process_text!r}",
            source=source,
            line=line,
        )
    kind = type_text[1:] if type_text.startswith(":") else ""
    if kind not in EVENT_TYPES:
        raise HistoryFormatError(
            f"type must be :invoke, :ok, :fail or :info, got {type_text!r}",
            source=source,
            line=line,
        )
    event_type = EVENT_TYPE_BY_NAME[kind]
    if not _KEYWORD.fullmatch(f_text):
        raise HistoryFormatError(
            f"function must be a keyword like :read, got {f_text!r}", source=source, line=line
        )
    value: Value
    if value_text is None:
        if event_type in ("invoke", "ok"):
            raise HistoryFormatError("missing value (use nil)", source=source, line=line)
        value = None
    else:
        try:
            value = parse_edn(value_text)
        except ValueError as exc:
            if event_type in ("invoke", "ok"):
                raise HistoryFormatError(str(exc), source=source, line=line) from None
            value = value_text  # an error message on a fail/info completion
    return Event(
        process=int(process_text),
        type=event_type,
        f=f_text[1:],
        key=None,
        value=value,
        time=float(line),
        line=line,
    )
