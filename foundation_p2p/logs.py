"""Logging for the command line: diagnostic logs and one line per application event.

Two streams, both on stderr:

- diagnostics under the ``foundation_p2p`` logger tree, at the ``--log-level`` chosen,
  formatted ``2026-01-01T12:00:00.123Z INFO foundation_p2p.runtime: message``;
- application events under ``foundation_p2p.events``, always at INFO, each one bare line
  ``event <Class> field=value ...`` (see :func:`format_event`) so that tools and later
  tests can parse them by the ``event `` prefix.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import sys
import time
from typing import Any, TextIO

from foundation_p2p.addresses import format_address
from foundation_p2p.events import Event

EVENT_LOGGER = "foundation_p2p.events"

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

HIDDEN_RECORD_FIELDS = frozenset({"public_key", "since_mono"})
"""Fields of a nested record left out of event lines: long (a public key) or meaningful
only inside the process that wrote them (a monotonic time)."""


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{base}.{int(record.msecs):03d}Z"


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send ``foundation_p2p`` logs at ``level`` and every event line to ``stream`` (stderr)."""
    level = level.upper()
    if level not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    stream = stream or sys.stderr
    root = logging.getLogger("foundation_p2p")
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False

    events = logging.getLogger(EVENT_LOGGER)
    for h in list(events.handlers):
        events.removeHandler(h)
    event_handler = logging.StreamHandler(stream)
    event_handler.setFormatter(logging.Formatter("%(message)s"))
    events.addHandler(event_handler)
    events.setLevel(logging.INFO)
    events.propagate = False


def _format_value(name: str, value: Any) -> tuple[str, str]:
    if isinstance(value, bytes):
        return name, value.hex()
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    ):
        return name, format_address((value[0], value[1]))
    if isinstance(value, float) and name.endswith("_s"):
        return name[:-2] + "_ms", f"{value * 1000:.3f}"
    if isinstance(value, bool):
        return name, "true" if value else "false"
    if isinstance(value, enum.Enum):
        return name, str(value.name).lower()
    if isinstance(value, (tuple, list)):
        return name, ",".join(_format_value(name, v)[1] for v in value)
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name, text


def format_event(event: Event) -> str:
    """One line for an event: ``event PeerAcked node_id=<hex> address=H:P rtt_ms=0.312``.

    Bytes are hex, ``(host, port)`` pairs are ``HOST:PORT``, float fields named ``*_s``
    are written in milliseconds as ``*_ms``, enums by their lower-case name, texts with
    spaces are double-quoted. A field holding a record (a dataclass, such as a membership
    event's ``member``) is written as that record's own fields, in place, without those of
    :data:`HIDDEN_RECORD_FIELDS`: ``event MemberFailed node_id=<hex> name=n3
    address=127.0.0.1:7946 incarnation=2 state=failed ...``.
    """
    parts = [f"event {type(event).__name__}"]
    if dataclasses.is_dataclass(event):
        for field in dataclasses.fields(event):
            value = getattr(event, field.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                for inner in dataclasses.fields(value):
                    if inner.name not in HIDDEN_RECORD_FIELDS:
                        name, text = _format_value(inner.name, getattr(value, inner.name))
                        parts.append(f"{name}={text}")
                continue
            name, text = _format_value(field.name, value)
            parts.append(f"{name}={text}")
    return " ".join(parts)


def log_event(event: Event) -> None:
    """Write :func:`format_event` of ``event`` to the event logger."""
    logging.getLogger(EVENT_LOGGER).info("%s", format_event(event))
