"""Record client operations as a history, in memory (for the simulator's ``--history`` and
for recorders on real clusters), ready to check or to write as JSON lines.

Equivalent lower-level calls: each :meth:`HistoryRecorder.invoke` / :meth:`~HistoryRecorder.
complete` appends an :class:`~foundation_p2p.history.model.Event`; :meth:`~HistoryRecorder.
operations` is ``pair_events(recorder.events)``; :meth:`~HistoryRecorder.jsonl_lines` is
``format_jsonl_line`` per event.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from foundation_p2p.errors import ConfigError
from foundation_p2p.history.jsonl import format_jsonl_line, to_value
from foundation_p2p.history.model import (
    EVENT_TYPE_BY_NAME,
    MAX_EVENTS,
    Event,
    HistoryLimitError,
    Operation,
    Value,
    pair_events,
)


class HistoryRecorder:
    """Append-only history of one run: ``invoke`` when a client sends a request,
    ``complete`` when it learns the outcome (``ok``, ``fail``, or ``info`` when it cannot
    know: a timeout, a lost connection).

    Bounded: at most ``max_events`` events. Overflow policy: an event past the bound is
    refused with :class:`~foundation_p2p.history.model.HistoryLimitError` and counted in
    :attr:`refused`; nothing is dropped silently (a history with a hole could be judged
    wrongly). Misuse (a second invoke on an open process, a completion without an invoke, a
    time going backwards for a process, a value that is not JSON data) raises
    :class:`~foundation_p2p.errors.ConfigError`.
    """

    def __init__(self, *, max_events: int = MAX_EVENTS) -> None:
        if max_events <= 0:
            raise ConfigError(f"max_events must be positive, got {max_events}")
        self.max_events = max_events
        self.refused = 0
        """Events refused because the bound was reached."""
        self._events: list[Event] = []
        self._open: dict[int, Event] = {}

    @property
    def events(self) -> Sequence[Event]:
        """The events so far, in recording order (line ``i + 1`` is event ``i``)."""
        return self._events

    @property
    def open_processes(self) -> list[int]:
        """The processes with an operation invoked and not completed, sorted."""
        return sorted(self._open)

    def _append(self, event: Event) -> None:
        if len(self._events) >= self.max_events:
            self.refused += 1
            raise HistoryLimitError(f"history recorder: more than {self.max_events} events")
        self._events.append(event)

    @staticmethod
    def _value(value: object, what: str) -> Value:
        try:
            return to_value(value)
        except ValueError as exc:
            raise ConfigError(f"history recorder: {what}: {exc}") from None

    def invoke(
        self, process: int, f: str, key: object = None, value: object = None, *, time: float
    ) -> None:
        """Process ``process`` asks for ``f`` on ``key`` with argument ``value`` at ``time``."""
        if process in self._open:
            raise ConfigError(
                f"history recorder: process {process} invokes {f} while its "
                f"{self._open[process].f} is open"
            )
        if process < 0 or not f:
            raise ConfigError(f"history recorder: bad process {process} or function {f!r}")
        event = Event(
            process, "invoke", f, self._value(key, "key"), self._value(value, "value"),
            float(time), len(self._events) + 1,
        )
        self._append(event)
        self._open[process] = event

    def complete(self, process: int, outcome: str, value: object = None, *, time: float) -> None:
        """Process ``process`` learns the outcome (``ok``, ``fail`` or ``info``) at ``time``;
        ``value`` is the result (a read's value) for ``ok``."""
        invoked = self._open.get(process)
        if invoked is None:
            raise ConfigError(f"history recorder: process {process} completes with no invoke")
        if outcome not in ("ok", "fail", "info"):
            raise ConfigError(f"history recorder: outcome must be ok, fail or info: {outcome!r}")
        if time < invoked.time:
            raise ConfigError(
                f"history recorder: process {process} completes at {time}, before its "
                f"invoke at {invoked.time}"
            )
        event = Event(
            process, EVENT_TYPE_BY_NAME[outcome], invoked.f, invoked.key,
            self._value(value, "value"), float(time), len(self._events) + 1,
        )
        self._append(event)
        del self._open[process]

    def operations(self) -> list[Operation]:
        """The history as operations (open invokes are indeterminate)."""
        return pair_events(self._events, source="history recorder")

    def jsonl_lines(self) -> Iterator[str]:
        """The history in the JSON-lines format of ``spec/history.md``, one line each."""
        for event in self._events:
            yield format_jsonl_line(event)
