"""Prometheus text exposition (format 0.0.4) of a node's counters and gauges.

:func:`render` writes metric families: one ``# HELP`` and one ``# TYPE`` line each, then
their samples, families in name order, one sample per line, a final newline.

- **Names**: ``foundation_p2p_`` + the dotted name with every character outside
  ``[a-zA-Z0-9_]`` replaced by ``_`` (``packets.dropped.auth_failed`` ->
  ``foundation_p2p_packets_dropped_auth_failed``); counters get the ``_total`` suffix.
  Two counters whose names collapse to the same metric name are summed into one sample
  (the exposition format forbids repeated families).
- **Labels** (:class:`Family` samples): names must match ``[a-zA-Z_][a-zA-Z0-9_]*``;
  values are escaped (backslash, double quote and newline as ``\\\\``, ``\\"``, ``\\n``).
- **HELP** text escapes backslash and newline.
- **Values**: integers as written; floats with ``repr`` (shortest round trip), ``NaN``,
  ``+Inf`` and ``-Inf`` spelled as the format wants.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foundation_p2p.health.monitor import HealthReport

PREFIX = "foundation_p2p_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The HTTP ``Content-Type`` of the exposition."""
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def metric_name(dotted: str, *, counter: bool = False) -> str:
    """The Prometheus name of a dotted counter or gauge name."""
    name = PREFIX + _NAME_BAD.sub("_", dotted)
    if counter and not name.endswith("_total"):
        name += "_total"
    return name


def escape_label_value(value: str) -> str:
    """A label value escaped for the text format (``\\``, ``"``, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escaped for the text format (``\\`` and newline)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the text format writes it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass(slots=True)
class Family:
    """One metric family: its full name, type (``counter`` or ``gauge``), help and samples
    (label set -> value)."""

    name: str
    type: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        """Add a sample; ``ValueError`` for a bad label name."""
        for k in labels:
            if not _LABEL_NAME.match(k) or k.startswith("__"):
                raise ValueError(f"prometheus: bad label name {k!r}")
        self.samples.append((labels, value))
        return self


def families_from(
    counters: Mapping[str, int],
    gauges: Mapping[str, float] | None = None,
    helps: Mapping[str, str] | None = None,
) -> list[Family]:
    """Counter and gauge families from dotted names (merging names that collapse)."""
    helps = helps or {}
    out: dict[str, Family] = {}
    for dotted in sorted(counters):
        name = metric_name(dotted, counter=True)
        fam = out.get(name)
        if fam is None:
            fam = out[name] = Family(name, "counter", helps.get(dotted, f"Counter {dotted}."))
            fam.samples.append(({}, 0))
        fam.samples[0] = ({}, fam.samples[0][1] + counters[dotted])
    for dotted in sorted(gauges or {}):
        name = metric_name(dotted)
        if name in out:
            raise ValueError(f"prometheus: gauge {dotted!r} collides with metric {name!r}")
        out[name] = Family(name, "gauge", helps.get(dotted, f"Gauge {dotted}."),
                           [({}, (gauges or {})[dotted])])
    return list(out.values())


def render(
    counters: Mapping[str, int] | None = None,
    gauges: Mapping[str, float] | None = None,
    *,
    helps: Mapping[str, str] | None = None,
    families: Iterable[Family] = (),
) -> str:
    """The exposition text of ``counters``, ``gauges`` and extra (labelled) ``families``.

    ``ValueError`` if two families end up with one name.
    """
    all_families = families_from(counters or {}, gauges, helps)
    seen = {f.name for f in all_families}
    for f in families:
        if f.name in seen:
            raise ValueError(f"prometheus: family {f.name!r} given twice")
        seen.add(f.name)
        all_families.append(f)
    lines: list[str] = []
    for fam in sorted(all_families, key=lambda f: f.name):
        if fam.type not in ("counter", "gauge", "untyped"):
            raise ValueError(f"prometheus: unsupported type {fam.type!r}")
        lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for labels, value in fam.samples:
            if labels:
                body = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
                lines.append(f"{fam.name}{{{body}}} {format_value(value)}")
            else:
                lines.append(f"{fam.name} {format_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def health_families(report: HealthReport) -> list[Family]:
    """Gauges of a health report: the cluster status and each node's (0 healthy, 1
    degraded, 2 critical, labelled by node name and id), and the measured figures."""
    status = Family(PREFIX + "health_status", "gauge",
                    "Cluster health as this node sees it: 0 healthy, 1 degraded, 2 critical.")
    status.add(int(report.status))
    nodes = Family(PREFIX + "health_node_status", "gauge",
                   "Each member's health: 0 healthy, 1 degraded, 2 critical.")
    for n in report.nodes:
        nodes.add(int(n.status), node=n.name, node_id=n.node_id.hex())
    out = [status, nodes]
    for key, value in report.figures.to_json().items():
        if isinstance(value, int | float):
            out.append(Family(PREFIX + "health_" + key, "gauge",
                              f"Health figure {key} of this node.", [({}, value)]))
    return out
