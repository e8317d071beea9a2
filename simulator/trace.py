"""The canonical trace of a run: JSON lines, their SHA-256 digest, and line-by-line replay.

Every line is canonical JSON (sorted keys, no spaces, times as fixed-precision text such as
``"12.000000000"``), so the same run gives the same bytes on any machine and under any
``PYTHONHASHSEED``. The first line is the header: format version, scenario text, seed and
every option that affects the run, so a trace file replays on its own. The SHA-256 of all
the trace's bytes (each line ending in ``\\n``) is the run's ``trace_digest``; it is computed
incrementally, and lines are kept in memory only in batches of ``BATCH_LINES`` on their way
to the hash and the optional file.

Line kinds (``ev``), each with ``t`` (virtual time) and, where it applies, ``node`` or
``src``/``dst`` (node names):

- ``boot`` (``boot`` count, ``epoch``), ``boot_failed`` (``error``: the core refused the
  disk), ``service`` (``what`` start/stop, ``name``, ``reason``);
- ``deliver`` (``n``: bytes in ``bytes`` mode, frames in ``messages`` mode), ``drop``
  (``reason``: partition, loss, queue_full, node_down, no_route, clog_overflow), ``hold``
  (a clog took it);
- ``timer`` (``handle_timer`` ran), ``event`` (a protocol event from ``take_events``:
  ``type`` and ``data``; a member record inside it is written as its compact facts, see
  :func:`member_facts`, not field by field);
- ``fault`` (``op``, ``index``: position in the file, negative for drawn random faults,
  ``nodes``, ``detail``), ``undo`` (a fault's inverse), ``fault_skipped``, ``swizzle``,
  ``settle``, ``invariant_failed`` (a safety checker's first failure), ``internal_error``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import IO, Any

from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.state import Member

TRACE_FORMAT = 2
"""Version of the trace's line format; bump when lines change shape (2: member records as
compact facts)."""

BATCH_LINES = 2048
"""Lines buffered before they are hashed (and written); bounds the trace's memory."""


def canonical(obj: dict[str, Any]) -> str:
    """One canonical JSON line (without its newline): sorted keys, compact separators."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fmt_time(t: float) -> str:
    """A virtual time as fixed-precision text (nanoseconds), identical on every platform."""
    return f"{t:.9f}"


class TraceDivergence(Exception):
    """Raised internally by a comparing sink at the first line that differs."""


class TraceSink:
    """Hashes trace lines, and writes them to a file or compares them with an expected file.

    ``line(text)`` takes one canonical line without its newline (it is the batch's
    ``append``: the hot path of a run); the driver calls :meth:`maybe_flush` regularly
    and :meth:`finish` at the end, which bounds the batch. ``expected`` is an
    iterator of the lines of a trace being replayed; the first line that differs is
    recorded in ``divergence`` (its 1-based number and both lines) and comparison stops.
    """

    def __init__(self, out: IO[str] | None = None, expected: Iterator[str] | None = None) -> None:
        self._hash = hashlib.sha256()
        self._out = out
        self._expected = expected
        self._batch: list[str] = []
        self.line: Callable[[str], None] = self._batch.append
        """Add one line (no newline) to the trace."""
        self.lines = 0
        self.divergence: str | None = None

    def maybe_flush(self) -> None:
        """Flush when at least ``BATCH_LINES`` lines are buffered."""
        if len(self._batch) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        """Hash (and write or compare) the buffered lines."""
        batch = self._batch
        if not batch:
            return
        chunk = "\n".join(batch) + "\n"
        self._hash.update(chunk.encode())
        if self._out is not None:
            self._out.write(chunk)
        if self._expected is not None and self.divergence is None:
            for i, text in enumerate(batch):
                want = next(self._expected, None)
                if want is None or want.rstrip("\n") != text:
                    number = self.lines + i + 1
                    shown = "<end of file>" if want is None else want.rstrip("\n")
                    self.divergence = (
                        f"line {number} differs:\n  trace:  {shown}\n  replay: {text}"
                    )
                    break
        self.lines += len(batch)
        batch.clear()

    def finish(self) -> str:
        """Flush, check the expected trace has no extra lines, and return the hex digest."""
        self.flush()
        if self._expected is not None and self.divergence is None:
            extra = next(self._expected, None)
            if extra is not None:
                self.divergence = (
                    f"line {self.lines + 1} differs:\n  trace:  {extra.rstrip()}\n"
                    "  replay: <end of run>"
                )
        if self._out is not None:
            self._out.flush()
        return self._hash.hexdigest()


def header_line(
    scenario_text: str, scenario_name: str, seed: int, options: dict[str, Any]
) -> str:
    """The trace's first line: everything needed to run the same thing again."""
    return canonical(
        {
            "format": TRACE_FORMAT,
            "scenario": scenario_name,
            "scenario_text": scenario_text,
            "seed": seed,
            "options": options,
        }
    )


def read_header(path: str) -> dict[str, Any]:
    """Parse and check a trace file's first line; ``ValueError`` naming the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    if not first:
        raise ValueError(f"{path}: empty file, not a trace")
    try:
        header = json.loads(first)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line 1 is not JSON: {exc}") from None
    if not isinstance(header, dict) or "format" not in header:
        raise ValueError(f"{path}: line 1 is not a trace header (no \"format\")")
    if header["format"] != TRACE_FORMAT:
        raise ValueError(
            f"{path}: trace format {header['format']!r} is not supported (want {TRACE_FORMAT})"
        )
    for key, kind in (("scenario_text", str), ("seed", int), ("options", dict)):
        if not isinstance(header.get(key), kind):
            raise ValueError(f"{path}: header key {key!r} missing or not a {kind.__name__}")
    return header


def member_facts(member: Member) -> dict[str, Any]:
    """A member record as the trace writes it: the facts that say what happened.

    ``id`` (node id, hex), ``name``, ``addr`` (``"host:port"``), ``inc`` (incarnation),
    ``state`` (``alive``, ``suspect``, ``failed``, ``left``), ``meta`` (metadata length in
    bytes) and ``obs`` (observer). Left out: the public key (the id is derived from it), the
    metadata bytes and the viewer's ``since_mono`` (the line's ``t`` says when).
    """
    return {
        "addr": f"{member.address[0]}:{member.address[1]}",
        "id": member.node_id.hex(),
        "inc": member.incarnation,
        "meta": len(member.metadata),
        "name": member.name,
        "obs": member.observer,
        "state": _STATE_NAMES[member.state.value],
    }


_STATE_NAMES = ("alive", "suspect", "failed", "left")
_MEMBER_EVENT_TYPES: tuple[type[Any], ...] = (
    MemberJoined, MemberUpdated, MemberSuspect, MemberAlive, MemberFailed, MemberLeft,
)
_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@")


def _plain(text: str) -> bool:
    """Whether ``text`` needs no escaping in JSON (so it can be written between quotes)."""
    return _SAFE_NAME.issuperset(text)


def member_event_line(node: str, t: str, ev: Any) -> str:
    """The canonical trace line of membership event ``ev`` that ``node`` reported at time
    text ``t`` — the same text as ``canonical({"data": jsonable(ev), "ev": "event",
    "node": node, "t": t, "type": type(ev).__name__})``, built without ``json``.

    Equivalent lower-level calls: :func:`jsonable` then :func:`canonical`.
    """
    kind = type(ev)
    member: Member | None = getattr(ev, "member", None)
    if (
        kind not in _MEMBER_EVENT_TYPES
        or member is None
        or not _plain(node)
        or not _plain(member.name)
        or not _plain(member.address[0])
    ):
        return canonical(
            {"data": jsonable(ev), "ev": "event", "node": node, "t": t, "type": kind.__name__}
        )
    accuser = f'"accuser":"{ev.accuser.hex()}",' if kind is MemberSuspect else ""
    host, port = member.address
    return (
        f'{{"data":{{{accuser}"member":{{"addr":"{host}:{port}","id":"{member.node_id.hex()}",'
        f'"inc":{member.incarnation},"meta":{len(member.metadata)},"name":"{member.name}",'
        f'"obs":{"true" if member.observer else "false"},'
        f'"state":"{_STATE_NAMES[member.state.value]}"}}}},"ev":"event","node":"{node}",'
        f'"t":"{t}","type":"{kind.__name__}"}}'
    )


def jsonable(value: Any) -> Any:
    """A value of a protocol event made canonical: bytes as hex, floats as fixed text,
    addresses (host, port) as ``"host:port"``, member records as :func:`member_facts`,
    dataclasses as sorted dicts."""
    if type(value) is Member:
        return member_facts(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return f"{value:.9f}"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    ):
        return f"{value[0]}:{value[1]}"
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    slots = getattr(type(value), "__dataclass_fields__", None)
    if slots is not None:
        return {name: jsonable(getattr(value, name)) for name in slots}
    return repr(value)
