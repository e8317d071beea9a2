"""Read a history file: the one module of :mod:`foundation_p2p.history` that does I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from foundation_p2p.history.jepsen import parse_jepsen
from foundation_p2p.history.jsonl import parse_jsonl
from foundation_p2p.history.model import HistoryFormatError, Operation, pair_events

HistoryFormat = Literal["jepsen", "jsonl"]


def detect_format(data: bytes, path: str = "") -> HistoryFormat:
    """``jsonl`` for a ``.jsonl``/``.json`` name or when the first non-blank line starts with
    ``{``; ``jepsen`` otherwise."""
    if path.endswith((".jsonl", ".json")):
        return "jsonl"
    for line in data.split(b"\n"):
        if line.strip():
            return "jsonl" if line.lstrip().startswith(b"{") else "jepsen"
    return "jepsen"


def parse_history(
    data: bytes, *, format: HistoryFormat | None = None, source: str = "<history>"
) -> list[Operation]:
    """The operations of a history held in ``data`` (format detected when None).

    Equivalent lower-level calls: ``pair_events(parse_jepsen(data))`` or
    ``pair_events(parse_jsonl(data))``.
    """
    fmt = format or detect_format(data, source)
    events = parse_jepsen(data, source=source) if fmt == "jepsen" else parse_jsonl(
        data, source=source
    )
    return pair_events(events, source=source)


def load_history(
    path: str | Path, *, format: HistoryFormat | None = None
) -> tuple[HistoryFormat, list[Operation]]:
    """The format (given or detected) and the operations of the history file at ``path``.

    Raises :class:`~foundation_p2p.history.model.HistoryFormatError` naming the file (and
    line) when it cannot be read or is malformed.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise HistoryFormatError(f"cannot read: {exc.strerror}", source=name) from None
    fmt = format or detect_format(data, name)
    return fmt, parse_history(data, format=fmt, source=name)


def read_history(path: str | Path, *, format: HistoryFormat | None = None) -> list[Operation]:
    """The operations of the history file at ``path`` (see :func:`load_history`)."""
    return load_history(path, format=format)[1]
