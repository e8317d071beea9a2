"""``HistoryRecorder``: recording, its bound, its misuse errors, and its JSON lines."""

from __future__ import annotations

import pytest

from foundation_p2p.errors import ConfigError
from foundation_p2p.history import (
    HistoryLimitError,
    HistoryRecorder,
    KvModel,
    ValueMap,
    Verdict,
    check,
    pair_events,
    parse_jsonl,
)


def _recorded() -> HistoryRecorder:
    rec = HistoryRecorder()
    rec.invoke(0, "put", "a", "x", time=1.0)
    rec.invoke(1, "get", "a", time=1.5)
    rec.complete(0, "ok", "x", time=2.0)
    rec.complete(1, "ok", "x", time=2.5)
    rec.invoke(2, "range", None, ["a", None], time=3.0)
    rec.complete(2, "ok", {"a": "x"}, time=3.5)
    rec.invoke(3, "cas", "a", ["x", "y"], time=4.0)
    rec.complete(3, "info", time=9.0)
    return rec


def test_a_recorded_history_pairs_and_checks() -> None:
    rec = _recorded()
    ops = rec.operations()
    assert [(o.f, o.status) for o in ops] == [
        ("put", "ok"), ("get", "ok"), ("range", "ok"), ("cas", "info")]
    assert ops[2].output == ValueMap((("a", "x"),)) and ops[3].input == ("x", "y")
    assert check(ops, KvModel()).verdict is Verdict.LINEARIZABLE


def test_its_json_lines_parse_back_to_the_same_events() -> None:
    rec = _recorded()
    text = "\n".join(rec.jsonl_lines()) + "\n"
    assert parse_jsonl(text) == list(rec.events)
    assert pair_events(parse_jsonl(text)) == rec.operations()


def test_an_open_invoke_is_indeterminate() -> None:
    rec = HistoryRecorder()
    rec.invoke(5, "put", "a", 1, time=0.0)
    assert rec.open_processes == [5]
    assert rec.operations()[0].status == "info"


def test_misuse_is_a_config_error() -> None:
    rec = HistoryRecorder()
    rec.invoke(0, "get", "a", time=1.0)
    with pytest.raises(ConfigError, match="process 0 invokes put while its get is open"):
        rec.invoke(0, "put", "a", 1, time=2.0)
    with pytest.raises(ConfigError, match="process 1 completes with no invoke"):
        rec.complete(1, "ok", time=2.0)
    with pytest.raises(ConfigError, match="outcome must be ok, fail or info"):
        rec.complete(0, "done", time=2.0)
    with pytest.raises(ConfigError, match="before its invoke"):
        rec.complete(0, "ok", time=0.5)
    with pytest.raises(ConfigError, match="not JSON data"):
        rec.invoke(2, "put", "a", object(), time=1.0)


def test_the_bound_refuses_and_counts() -> None:
    rec = HistoryRecorder(max_events=2)
    rec.invoke(0, "get", "a", time=1.0)
    rec.complete(0, "ok", None, time=2.0)
    with pytest.raises(HistoryLimitError, match="more than 2 events"):
        rec.invoke(0, "get", "a", time=3.0)
    assert rec.refused == 1 and len(rec.events) == 2 and rec.open_processes == []
