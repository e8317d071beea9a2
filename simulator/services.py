"""Virtual services: scripted stand-ins for application code, recording what happens to them.

Where the Trio runtime would run an application's async callable (a singleton service, an
agent, a subscriber), the simulator records the starts, stops and messages of a virtual
service, with virtual timestamps, so placement and failover are observable and checkable.
Every node runs one ``"node"`` service, started when the node boots and stopped when it
crashes or leaves; the ``singleton`` workload (:mod:`simulator.registry`) starts and stops
the services the supervisor asks for. :attr:`ServiceRegistry.listeners` are told of every
start and stop as it is recorded.

The record is bounded: at most ``max_records`` entries are kept (the oldest are dropped
first and counted in ``records_dropped``); the counts of starts, stops and messages are
always exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NODE_SERVICE = "node"
"""The service every node runs while it is up."""


@dataclass(frozen=True)
class ServiceRecord:
    """One thing that happened to a virtual service."""

    t: float
    """Virtual time."""
    what: str
    """``"start"``, ``"stop"`` or ``"message"``."""
    name: str
    """The service's name."""
    node: str
    """The node it runs on."""
    detail: Any = None
    """The stop reason, or the message."""


class ServiceRegistry:
    """Which virtual services run where, and their history; see the module docstring."""

    def __init__(self, max_records: int = 100_000) -> None:
        self.max_records = max_records
        self.records: deque[ServiceRecord] = deque()
        self.records_dropped = 0
        self.starts = 0
        self.stops = 0
        self.messages = 0
        self._running: dict[str, dict[str, float]] = {}  # node -> service name -> start time
        self.double_starts = 0
        self.listeners: list[Callable[[ServiceRecord], None]] = []
        """Called with each start and stop record, after the running set changed."""

    def _record(self, rec: ServiceRecord) -> None:
        if len(self.records) >= self.max_records:
            self.records.popleft()
            self.records_dropped += 1
        self.records.append(rec)
        if rec.what != "message":
            for listener in self.listeners:
                listener(rec)

    def start(self, name: str, node: str, t: float) -> ServiceRecord:
        """Service ``name`` starts on ``node`` at ``t`` (a second start is counted)."""
        running = self._running.setdefault(node, {})
        if name in running:
            self.double_starts += 1
        running[name] = t
        self.starts += 1
        rec = ServiceRecord(t, "start", name, node)
        self._record(rec)
        return rec

    def stop(self, name: str, node: str, t: float, reason: str) -> ServiceRecord | None:
        """Service ``name`` on ``node`` stops at ``t`` for ``reason`` (None if not running)."""
        running = self._running.get(node)
        if running is None or name not in running:
            return None
        del running[name]
        self.stops += 1
        rec = ServiceRecord(t, "stop", name, node, reason)
        self._record(rec)
        return rec

    def stop_all(self, node: str, t: float, reason: str) -> list[ServiceRecord]:
        """Stop every service on ``node`` (in the order they started)."""
        out: list[ServiceRecord] = []
        for name in list(self._running.get(node, {})):
            rec = self.stop(name, node, t, reason)
            if rec is not None:
                out.append(rec)
        return out

    def message(self, name: str, node: str, t: float, message: Any) -> ServiceRecord:
        """Service ``name`` on ``node`` handled ``message`` at ``t``."""
        self.messages += 1
        rec = ServiceRecord(t, "message", name, node, message)
        self._record(rec)
        return rec

    def running_on(self, node: str) -> list[str]:
        """Names of the services running on ``node``, in start order."""
        return list(self._running.get(node, {}))

    def where(self, name: str) -> list[str]:
        """Nodes where service ``name`` runs, in node-name order of first start."""
        return [node for node, running in self._running.items() if name in running]
