"""Fuzz targets of the history parsers (``spec/history.md``), in the shape of
``fuzz/targets.py``: each takes arbitrary bytes; the only allowed outcomes are "parsed" (with
the target's properties) or a :class:`~foundation_p2p.errors.WireError` (the history's
``HistoryFormatError`` / ``HistoryLimitError``) naming the source.

- ``history-jepsen``: ``parse_jepsen``; parsed events have increasing line numbers and the
  line as their time; they are paired and checked (register model, a small step budget),
  which must give a verdict or a ``HistoryFormatError``.
- ``history-jsonl``: ``parse_jsonl``; every parsed event re-encodes with
  ``format_jsonl_line`` to a line that parses back to the same event; then paired and
  checked (KV model, a small step budget) like the other.

Seeds are the small histories below (the Jepsen data in ``../shared/data`` is never copied
here). Register them in ``fuzz/targets.py`` with ``**targets_history.HISTORY_TARGETS`` in
``TARGETS`` and ``history_seeds`` in ``seeds()``.
"""

from __future__ import annotations

from collections.abc import Callable

from foundation_p2p.errors import WireError
from foundation_p2p.history import (
    Budget,
    HistoryFormatError,
    KvModel,
    RegisterModel,
    check,
    format_jsonl_line,
    pair_events,
    parse_jepsen,
    parse_jsonl,
    parse_jsonl_line,
)
from foundation_p2p.history.model import Event
from foundation_p2p.history.models import Model

SOURCE = "fuzz.history"
_BUDGET_STEPS = 2_000


def _check_all(events: list[Event], model: Model) -> None:
    try:
        ops = pair_events(events, source=SOURCE)
    except HistoryFormatError as exc:
        assert str(exc).startswith(SOURCE), "a pairing error must name the source"
        return
    try:
        result = check(ops, model, budget=Budget(max_steps=_BUDGET_STEPS), source=SOURCE)
    except HistoryFormatError as exc:
        assert str(exc).startswith(SOURCE), "a model error must name the source"
        return
    assert result.steps <= _BUDGET_STEPS
    assert result.summary().startswith(SOURCE)
    result.to_json()


def fuzz_history_jepsen(data: bytes) -> None:
    """``parse_jepsen``, then pairing and a bounded check (register model)."""
    try:
        events = parse_jepsen(data, source=SOURCE, max_events=2_000)
    except WireError as exc:
        assert str(exc).startswith(SOURCE), "a parser error must name the source"
        return
    lines = [e.line for e in events]
    assert lines == sorted(set(lines)), "one event per line, in line order"
    assert all(e.time == float(e.line) for e in events)
    _check_all(events, RegisterModel())


def fuzz_history_jsonl(data: bytes) -> None:
    """``parse_jsonl``: events round-trip through the writer; then a bounded check (KV)."""
    try:
        events = parse_jsonl(data, source=SOURCE, max_events=2_000)
    except WireError as exc:
        assert str(exc).startswith(SOURCE), "a parser error must name the source"
        return
    for e in events:
        again = parse_jsonl_line(format_jsonl_line(e), source=SOURCE, line=e.line)
        assert again == e, "an event does not round-trip through format_jsonl_line"
    _check_all(events, KvModel())


HISTORY_TARGETS: dict[str, Callable[[bytes], None]] = {
    "history-jepsen": fuzz_history_jepsen,
    "history-jsonl": fuzz_history_jsonl,
}

_JEPSEN_SEEDS = [
    "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\n"
    "INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t1\n",
    "INFO  jepsen.util - 2   :invoke :cas    [1 2]\nINFO  jepsen.util - 3\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 2\t:info\t:cas\t:timed-out\nINFO  jepsen.util - 3\t:ok\t:read\t2\n",
    "INFO  jepsen.util - 4\t:invoke\t:write\t0\nINFO  jepsen.util - 4\t:fail\t:write\tno leader\n"
    "INFO  jepsen.util - :nemesis\t:info\t:start\tnil\nINFO  jepsen.core - done\n",
    '0 :invoke :cas [nil "a"]\n0 :ok :cas [nil "a"]\n1 :invoke :read nil\n1 :ok :read "a"\n',
]

_JSONL_SEEDS = [
    '{"process":0,"type":"invoke","f":"put","key":"a","value":1,"time":0.5}\n'
    '{"process":1,"type":"invoke","f":"get","key":"a","time":0.6}\n'
    '{"process":0,"type":"ok","f":"put","key":"a","value":1,"time":0.7}\n'
    '{"process":1,"type":"ok","f":"get","key":"a","value":null,"time":0.8}\n',
    '{"process":2,"type":"invoke","f":"cas","key":"b","value":[null,"x"],"time":1}\n'
    '{"process":2,"type":"info","f":"cas","key":"b","time":2}\n'
    '{"process":3,"type":"invoke","f":"range","value":["a",null],"time":3}\n'
    '{"process":3,"type":"ok","f":"range","value":{"b":"x"},"time":4}\n',
    '{"process":4,"type":"invoke","f":"delete","key":"a","time":1}\n'
    '{"process":4,"type":"fail","f":"delete","key":"a","time":1,"error":"no quorum"}\n',
]


def history_seeds(target: str) -> list[bytes]:
    """Seed inputs for ``target``: the small histories above."""
    if target == "history-jepsen":
        return [s.encode() for s in _JEPSEN_SEEDS]
    if target == "history-jsonl":
        return [s.encode() for s in _JSONL_SEEDS]
    raise KeyError(target)
