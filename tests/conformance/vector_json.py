"""The JSON form of test vectors (spec/README.md, "Test vectors"), shared by the
conformance modules."""

from __future__ import annotations

from typing import Any


def ids(entries: list[dict[str, Any]]) -> list[str]:
    """Test ids: each vector's name."""
    return [e["name"] for e in entries]


def from_json(value: Any) -> Any:
    """The Python value of a vector's JSON form: ``{"bytes": hex}``, ``{"map": [[k, v]...]}``
    and ``{"float": x}`` stand for byte strings, maps in wire order and floats."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"bytes"}:
            return bytes.fromhex(value["bytes"])
        if set(value) == {"map"}:
            return {from_json(k): from_json(v) for k, v in value["map"]}
        if set(value) == {"float"}:
            return float(value["float"])
        raise AssertionError(f"unknown JSON form {value!r}")
    return value
