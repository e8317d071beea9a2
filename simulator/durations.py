"""Parse the quantities a scenario file writes as text: durations, latency ranges, rates.

``"60s"``, ``"500ms"``, ``"2m"``, ``"1h"``, ``"250us"`` and ``"1.5s"`` are durations;
``"1ms..10ms"`` is a latency range (uniform between the two); ``"1MB/s"``, ``"10Mbit/s"`` or a
plain integer are bandwidths in bytes per second. Each parser raises ``ValueError`` whose
message says what was wrong and what is accepted; the scenario parser adds the file and key.
"""

from __future__ import annotations

import math
import re

DURATION_UNITS_S: dict[str, float] = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
"""Duration suffixes and their length in seconds."""

BANDWIDTH_UNITS_BYTES: dict[str, float] = {
    "B": 1.0,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "Kbit": 1e3 / 8,
    "Mbit": 1e6 / 8,
    "Gbit": 1e9 / 8,
}
"""Bandwidth units (before ``/s``) and their size in bytes."""

_DURATION_RE = re.compile(r"^\s*([+-]?)(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)\s*$")
_BANDWIDTH_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]+)\s*/\s*s\s*$")
_DURATION_HELP = 'a duration such as "500ms", "60s", "2m" or "1h" (units: us, ms, s, m, h)'


def parse_duration(value: object, *, signed: bool = False) -> float:
    """Return the seconds a duration text such as ``"500ms"`` means.

    Numbers without a unit are refused: ``at = 10`` could mean seconds or milliseconds, and a
    scenario should not make the reader guess. ``signed=True`` accepts a leading ``-`` (a
    clock skew offset); otherwise the duration must be zero or more.
    """
    if not isinstance(value, str):
        raise ValueError(f"must be {_DURATION_HELP}, got {value!r}")
    match = _DURATION_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not {_DURATION_HELP}")
    sign, number, unit = match.groups()
    if unit not in DURATION_UNITS_S:
        raise ValueError(f"{value!r} has an unknown unit {unit!r} (units: us, ms, s, m, h)")
    if sign == "-" and not signed:
        raise ValueError(f"{value!r} is negative; a duration here must be zero or more")
    seconds = float(number) * DURATION_UNITS_S[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is too large")
    return -seconds if sign == "-" else seconds


def parse_latency_range(value: object) -> tuple[float, float]:
    """Return ``(low_s, high_s)`` for ``"1ms..10ms"`` or a single duration (``"50ms"``)."""
    if not isinstance(value, str):
        raise ValueError(
            f'must be a duration ("50ms") or a range ("1ms..10ms"), got {value!r}'
        )
    if ".." in value:
        low_text, _, high_text = value.partition("..")
        if not low_text.strip() or not high_text.strip() or "..." in value or ".." in high_text:
            raise ValueError(f'{value!r} is not a range such as "1ms..10ms"')
        low = parse_duration(low_text)
        high = parse_duration(high_text)
        if low > high:
            raise ValueError(f"{value!r}: the low end is above the high end")
        return low, high
    seconds = parse_duration(value)
    return seconds, seconds


def parse_bandwidth(value: object) -> float:
    """Return bytes per second for ``"1MB/s"``, ``"10Mbit/s"`` or an integer of bytes/s."""
    if isinstance(value, bool):
        raise ValueError(f'must be a rate such as "1MB/s" or bytes per second, got {value!r}')
    if isinstance(value, int):
        rate = float(value)
    elif isinstance(value, str):
        match = _BANDWIDTH_RE.match(value)
        if match is None:
            raise ValueError(
                f'{value!r} is not a rate such as "1MB/s", "500KB/s" or "10Mbit/s"'
            )
        number, unit = match.groups()
        if unit not in BANDWIDTH_UNITS_BYTES:
            raise ValueError(
                f"{value!r} has an unknown unit {unit!r} "
                f"(units: {', '.join(BANDWIDTH_UNITS_BYTES)}, each followed by /s)"
            )
        rate = float(number) * BANDWIDTH_UNITS_BYTES[unit]
    else:
        raise ValueError(f'must be a rate such as "1MB/s" or bytes per second, got {value!r}')
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"{value!r} must be a positive rate")
    return rate


def format_duration(seconds: float) -> str:
    """Render seconds the way a scenario file writes them (``"1.5s"``, ``"250ms"``)."""
    if seconds != 0 and abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
