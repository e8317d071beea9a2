"""The Jepsen-log and JSON-lines parsers, and pairing events into operations."""

from __future__ import annotations

import pytest

from foundation_p2p.errors import WireError
from foundation_p2p.history import (
    Event,
    HistoryFormatError,
    HistoryLimitError,
    ValueMap,
    detect_format,
    format_jsonl_line,
    pair_events,
    parse_history,
    parse_jepsen,
    parse_jsonl,
    parse_jsonl_line,
)
from foundation_p2p.history.jepsen import parse_edn

# -- Jepsen --------------------------------------------------------------------------------


def test_jepsen_lines_with_tabs_or_spaces() -> None:
    text = (
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2]\n"
        "INFO  jepsen.util - 3   :ok :cas    [1 2]\n"
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 0\t:ok\t:read\t2\n"
    )
    events = parse_jepsen(text)
    assert [(e.process, e.type, e.f, e.value, e.line) for e in events] == [
        (3, "invoke", "cas", (1, 2), 1),
        (3, "ok", "cas", (1, 2), 2),
        (0, "invoke", "read", None, 3),
        (0, "ok", "read", 2, 4),
    ]
    assert [e.time for e in events] == [1.0, 2.0, 3.0, 4.0]


def test_jepsen_info_timed_out_and_free_text_on_failures() -> None:
    text = (
        "INFO  jepsen.util - 1\t:invoke\t:write\t4\n"
        "INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n"
        "INFO  jepsen.util - 2\t:invoke\t:write\t4\n"
        "INFO  jepsen.util - 2\t:fail\t:write\tcould not connect: refused\n"
    )
    ops = pair_events(parse_jepsen(text))
    assert [(o.status, o.ret, o.input) for o in ops] == [("info", None, 4), ("fail", 4.0, 4)]


def test_jepsen_skips_blank_lines_other_loggers_and_the_nemesis() -> None:
    text = (
        "\n"
        "2015-01-01 10:00:00,000{GMT}\tINFO\t[main] jepsen.core - Running test\n"
        "INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n"
        "2015-01-01 10:00:01,000{GMT}\tINFO\t[w3] jepsen.util - 0\t:invoke\t:read\tnil\n"
        "0\t:ok\t:read\t3\r\n"
    )
    events = parse_jepsen(text)
    assert [(e.type, e.value, e.line) for e in events] == [("invoke", None, 4), ("ok", 3, 5)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("INFO  jepsen.util - x\t:invoke\t:read\tnil", "process must be a non-negative integer"),
        ("INFO  jepsen.util - 1\t:begin\t:read\tnil", "type must be :invoke, :ok, :fail or :info"),
        ("INFO  jepsen.util - 1\t:invoke\tread\tnil", "function must be a keyword"),
        ("INFO  jepsen.util - 1\t:invoke\t:read", "missing value"),
        ("INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2", "unterminated vector"),
        ("INFO  jepsen.util - 1\t:ok\t:read\t1 2", "more than one value"),
        ("INFO  jepsen.util - 1\t:ok\t:read\t@x", "unknown token"),
        ("garbage", "not a Jepsen history line"),
    ],
)
def test_jepsen_bad_lines_are_named(line: str, message: str) -> None:
    text = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n" + line + "\n"
    with pytest.raises(HistoryFormatError, match=message) as info:
        parse_jepsen(text, source="h.log")
    assert str(info.value).startswith("h.log:2: ")
    assert info.value.line == 2
    assert isinstance(info.value, WireError)


def test_jepsen_refuses_invalid_utf8_and_overlong_lines() -> None:
    with pytest.raises(HistoryFormatError, match=r"h.log:1: not UTF-8"):
        parse_jepsen(b"\xff\xfe\n", source="h.log")
    with pytest.raises(HistoryLimitError, match="line longer than"):
        parse_jepsen(b"0 :ok :read " + b"1" * 70000)
    with pytest.raises(HistoryLimitError, match="more than 1 events"):
        parse_jepsen("0 :invoke :read nil\n0 :ok :read nil\n", max_events=1)


def test_edn_values() -> None:
    assert parse_edn("nil") is None
    assert parse_edn("[1 [2, -3] :k \"s\\\"q\" true 1.5 (4)]") == (
        1, (2, -3), ":k", 's"q', True, 1.5, (4,))
    with pytest.raises(ValueError, match="nested deeper"):
        parse_edn("[" * 40 + "]" * 40)
    with pytest.raises(ValueError, match="mismatched"):
        parse_edn("[1)")


# -- JSON lines ----------------------------------------------------------------------------


def test_jsonl_events_with_keys_values_and_extra_members() -> None:
    text = (
        '{"process": 3, "type": "invoke", "f": "cas", "key": "k1", "value": ["a", "b"], '
        '"time": 1.25, "node": "n2"}\n'
        "\n"
        '{"process": 3, "type": "ok", "f": "cas", "key": "k1", "value": ["a", "b"], "time": 2}\n'
        '{"process": 4, "type": "invoke", "f": "range", "value": ["a", null], "time": 3}\n'
        '{"process": 4, "type": "ok", "f": "range", "value": {"b": 1, "a": 2}, "time": 4}\n'
    )
    events = parse_jsonl(text)
    assert events[0] == Event(3, "invoke", "cas", "k1", ("a", "b"), 1.25, 1)
    assert events[1].line == 3 and events[1].time == 2.0
    assert events[2].key is None and events[2].value == ("a", None)
    assert events[3].value == ValueMap((("a", 2), ("b", 1)))


def test_jsonl_round_trips_through_the_writer() -> None:
    e = Event(7, "ok", "range", None, ValueMap((("a", (1, None)),)), 0.5, 9)
    again = parse_jsonl_line(format_jsonl_line(e), line=9)
    assert again == e


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1]", "expected a JSON object, got list"),
        ("{", "invalid JSON"),
        ('{"process": 1, "type": "ok", "f": "get"}', "missing member 'time'"),
        ('{"process": -1, "type": "ok", "f": "get", "time": 1}', "process must be"),
        ('{"process": true, "type": "ok", "f": "get", "time": 1}', "process must be"),
        ('{"process": 1, "type": "done", "f": "get", "time": 1}', "type must be"),
        ('{"process": 1, "type": "ok", "f": "", "time": 1}', "f must be a non-empty string"),
        ('{"process": 1, "type": "ok", "f": "get", "time": "1"}', "time must be a number"),
        ('{"process": 1, "type": "ok", "f": "get", "time": NaN}', "NaN is not allowed"),
        ('{"process": 1, "type": "ok", "f": "get", "time": 1e999}', "out of range"),
        ('{"process": 1, "process": 2, "type": "ok", "f": "get", "time": 1}', "duplicate member"),
        ('{"process": 1, "type": "ok", "f": "get", "time": 1, "value": ' + "[" * 40 + "]" * 40
         + "}", "nested deeper"),
    ],
)
def test_jsonl_bad_lines_are_named(line: str, message: str) -> None:
    with pytest.raises(HistoryFormatError, match=message) as info:
        parse_jsonl('{"process": 0, "type": "invoke", "f": "get", "time": 0}\n' + line,
                    source="h.jsonl")
    assert str(info.value).startswith("h.jsonl:2: ")


def test_jsonl_refuses_deep_nesting_without_crashing() -> None:
    with pytest.raises(HistoryFormatError, match=r"h.jsonl:1:"):
        parse_jsonl("[" * 100000 + "]" * 100000, source="h.jsonl")


def test_format_is_detected_from_the_name_or_the_first_line() -> None:
    assert detect_format(b"", "x.jsonl") == "jsonl"
    assert detect_format(b'\n  {"process": 1}') == "jsonl"
    assert detect_format(b"INFO  jepsen.util - 1 :ok :read 1") == "jepsen"


# -- pairing -------------------------------------------------------------------------------


def _jsonl(*lines: str) -> bytes:
    return "\n".join(lines).encode()


def test_pairing_refuses_two_open_operations_on_one_process() -> None:
    data = _jsonl('{"process": 1, "type": "invoke", "f": "get", "key": "a", "time": 1}',
                  '{"process": 1, "type": "invoke", "f": "get", "key": "a", "time": 2}')
    with pytest.raises(HistoryFormatError, match=r"h:2: process 1 invokes get while its get "
                       r"from line 1 has not completed"):
        parse_history(data, source="h")


def test_pairing_refuses_a_completion_without_invoke_or_of_another_function() -> None:
    with pytest.raises(HistoryFormatError, match=r"h:1: process 1 completes get .ok. with no"):
        parse_history(_jsonl('{"process": 1, "type": "ok", "f": "get", "time": 1}'), source="h")
    data = _jsonl('{"process": 1, "type": "invoke", "f": "get", "time": 1}',
                  '{"process": 1, "type": "ok", "f": "put", "time": 2}')
    with pytest.raises(HistoryFormatError, match="h:2: process 1 completes put but invoked get"):
        parse_history(data, source="h")
    data = _jsonl('{"process": 1, "type": "invoke", "f": "get", "key": "a", "time": 1}',
                  '{"process": 1, "type": "ok", "f": "get", "key": "b", "time": 2}')
    with pytest.raises(HistoryFormatError, match="h:2: process 1 completes key 'b'"):
        parse_history(data, source="h")


def test_pairing_refuses_a_completion_before_its_invoke() -> None:
    data = _jsonl('{"process": 1, "type": "invoke", "f": "get", "time": 5}',
                  '{"process": 1, "type": "ok", "f": "get", "time": 4}')
    with pytest.raises(HistoryFormatError, match=r"h:2: completion time 4.0 is before"):
        parse_history(data, source="h")


def test_pairing_refuses_an_invoke_before_the_same_process_completed() -> None:
    data = _jsonl('{"process": 1, "type": "invoke", "f": "get", "time": 1}',
                  '{"process": 1, "type": "ok", "f": "get", "time": 5}',
                  '{"process": 1, "type": "invoke", "f": "get", "time": 4}')
    with pytest.raises(HistoryFormatError, match=r"h:3: process 1 invokes at time 4.0, before"):
        parse_history(data, source="h")


def test_pairing_keeps_invoke_order_and_marks_open_invokes_indeterminate() -> None:
    data = _jsonl(
        '{"process": 1, "type": "invoke", "f": "put", "key": "a", "value": 1, "time": 1}',
        '{"process": 2, "type": "invoke", "f": "get", "key": "a", "time": 2}',
        '{"process": 2, "type": "ok", "f": "get", "key": "a", "value": 1, "time": 3}',
    )
    ops = parse_history(data)
    assert [(o.index, o.process, o.status, o.ret, o.output) for o in ops] == [
        (0, 1, "info", None, None), (1, 2, "ok", 3.0, 1)]
