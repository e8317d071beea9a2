"""Histories of client operations and a linearizability checker for them.

- :mod:`~foundation_p2p.history.model`: events, operations, pairing, errors.
- :mod:`~foundation_p2p.history.jepsen` / :mod:`~foundation_p2p.history.jsonl`: the parsers
  (Jepsen's log lines; our JSON-lines format of ``spec/history.md``).
- :mod:`~foundation_p2p.history.models`: the compare-and-set register and the KV model.
- :mod:`~foundation_p2p.history.checker`: the Wing & Gong / Porcupine search.
- :mod:`~foundation_p2p.history.recorder`: recording a history in memory.
- :mod:`~foundation_p2p.history.files`: reading a file (the only I/O here).

Typical use::

    result = check(read_history("h.jsonl"), KvModel())
    print(result.summary())
"""

from foundation_p2p.history.checker import (
    Budget,
    CheckResult,
    Explanation,
    PartitionResult,
    Verdict,
    check,
)
from foundation_p2p.history.files import (
    detect_format,
    load_history,
    parse_history,
    read_history,
)
from foundation_p2p.history.jepsen import parse_jepsen
from foundation_p2p.history.jsonl import format_jsonl_line, parse_jsonl, parse_jsonl_line
from foundation_p2p.history.model import (
    Event,
    HistoryFormatError,
    HistoryLimitError,
    Operation,
    Value,
    ValueMap,
    pair_events,
)
from foundation_p2p.history.models import MODELS, KvModel, Model, RegisterModel
from foundation_p2p.history.recorder import HistoryRecorder

__all__ = [
    "MODELS",
    "Budget",
    "CheckResult",
    "Event",
    "Explanation",
    "HistoryFormatError",
    "HistoryLimitError",
    "HistoryRecorder",
    "KvModel",
    "Model",
    "Operation",
    "PartitionResult",
    "RegisterModel",
    "Value",
    "ValueMap",
    "Verdict",
    "check",
    "detect_format",
    "format_jsonl_line",
    "load_history",
    "pair_events",
    "parse_history",
    "parse_jepsen",
    "parse_jsonl",
    "parse_jsonl_line",
    "read_history",
]
