"""Client sessions: a retried command is applied at most once (Raft dissertation 6.3).

A client registers once (a ``register`` command through the log); its client id is the
log index of that command, so ids are unique, agreed by every replica and never reused.
Every later command carries ``(client_id, seq, acked)``: ``seq`` numbers the client's
commands from 1, ``acked`` says the client has received every response up to that
sequence number (so those responses can be forgotten).

For each live session the table keeps the result of every command the client has not
acknowledged yet. When a command arrives:

- its ``seq`` has a kept result: it was applied already; the kept result is returned and
  nothing is applied again (a retry, or a duplicate the network made);
- its ``seq`` is at or below ``acked``: the client already has that response and will not
  retry it; this is a stale duplicate, refused with ``stale_sequence`` and not applied;
- otherwise it is applied and its result kept, unless the session already keeps
  ``max_results_per_session`` unacknowledged results or ``max_result_bytes_per_session``
  bytes of them: then it is refused with ``too_many_pending`` (not applied), so no result
  is ever dropped unacknowledged.

Read-only commands (the store decides which) are checked the same way but their results
are not kept: executing a retried read again is harmless, and its answer is then taken
at a point inside the client's still-open request, which keeps it linearizable.

Bounds and eviction: the table holds at most ``max_sessions`` sessions. Registering one
more evicts the least recently used session (by the log index of its last command; every
replica sees the same log, so every replica evicts the same one). A command from an
evicted (or never registered, or closed) client id is refused with ``session_expired`` and
not applied.

The guarantee, then: a command with a session is applied at most once, always. It is
applied exactly once if the client retries it until it gets a response other than
``session_expired`` / ``too_many_pending``. After eviction the client gets
``session_expired`` for every command, including retries of commands that may or may not
have been applied before the eviction: it must treat those as indeterminate (Jepsen's
``:info``) and register again for new commands. Memory is bounded by ``max_sessions`` x
(``max_result_bytes_per_session`` + one result), and at most ``max_results_per_session``
results per session.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum

from foundation_p2p.errors import ConfigError


class SessionVerdict(IntEnum):
    """What to do with a command that carries a session."""

    APPLY = 0
    """New: apply it, then :meth:`SessionTable.record` its result."""
    DUPLICATE = 1
    """Applied before: answer with the kept result."""
    SESSION_EXPIRED = 2
    STALE_SEQUENCE = 3
    TOO_MANY_PENDING = 4


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Bounds of the session table."""

    max_sessions: int = 10_000
    """Sessions kept; registering one more evicts the least recently used."""
    max_results_per_session: int = 128
    """Unacknowledged results kept per session; more commands are refused until acked."""
    max_result_bytes_per_session: int = 256 * 1024
    """Bytes of kept results per session past which new commands are refused until acked
    (one result may pass it: the check is made before applying)."""

    def __post_init__(self) -> None:
        for name in ("max_sessions", "max_results_per_session", "max_result_bytes_per_session"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(
                    f"SessionLimits.{name}: must be a positive integer, got {value!r}"
                )


@dataclass(slots=True)
class Session:
    """One client's session."""

    client_id: int
    last_index: int
    """The log index of its latest command (the LRU order)."""
    acked: int = 0
    """Every response up to this sequence number has reached the client."""
    results: dict[int, bytes] = field(default_factory=dict)
    """Kept results of the unacknowledged commands applied, by sequence number."""
    result_bytes: int = 0
    """Total size of ``results``."""


class SessionTable:
    """The bounded table of client sessions; see the module docstring."""

    def __init__(self, limits: SessionLimits | None = None) -> None:
        self.limits = limits or SessionLimits()
        self._sessions: OrderedDict[int, Session] = OrderedDict()
        """Least recently used first."""
        self.evictions = 0
        """Sessions evicted to make room (also in the state, so in snapshots' effects)."""

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, client_id: int) -> Session | None:
        """The live session ``client_id``, or ``None``."""
        return self._sessions.get(client_id)

    def sessions(self) -> list[Session]:
        """Every live session, least recently used first."""
        return list(self._sessions.values())

    def register(self, index: int) -> tuple[int, int | None]:
        """Open a session for the ``register`` command at log ``index``: ``(client id,
        evicted client id or None)``."""
        evicted = None
        if len(self._sessions) >= self.limits.max_sessions:
            evicted, _ = self._sessions.popitem(last=False)
            self.evictions += 1
        self._sessions[index] = Session(client_id=index, last_index=index)
        return index, evicted

    def close(self, client_id: int) -> bool:
        """End a session (its client is done); False if it was not live."""
        return self._sessions.pop(client_id, None) is not None

    def check(
        self, client_id: int, seq: int, acked: int, index: int
    ) -> tuple[SessionVerdict, bytes | None]:
        """Decide about command ``seq`` of ``client_id`` at log ``index``; a live session
        forgets the results up to ``acked`` and becomes the most recently used."""
        session = self._sessions.get(client_id)
        if session is None:
            return SessionVerdict.SESSION_EXPIRED, None
        session.last_index = index
        self._sessions.move_to_end(client_id)
        if acked > session.acked:
            for s in [s for s in session.results if s <= acked]:
                session.result_bytes -= len(session.results.pop(s))
            session.acked = acked
        kept = session.results.get(seq)
        if kept is not None:
            return SessionVerdict.DUPLICATE, kept
        if seq <= session.acked:
            return SessionVerdict.STALE_SEQUENCE, None
        if (
            len(session.results) >= self.limits.max_results_per_session
            or session.result_bytes >= self.limits.max_result_bytes_per_session
        ):
            return SessionVerdict.TOO_MANY_PENDING, None
        return SessionVerdict.APPLY, None

    def record(self, client_id: int, seq: int, result: bytes) -> None:
        """Keep the result of command ``seq`` just applied (after an ``APPLY`` verdict)."""
        session = self._sessions[client_id]
        session.results[seq] = result
        session.result_bytes += len(result)

    def load(self, sessions: list[Session], evictions: int) -> None:
        """Replace the table (from a snapshot), ``sessions`` least recently used first."""
        if len(sessions) > self.limits.max_sessions:
            raise ConfigError(
                f"session table: {len(sessions)} sessions exceed max_sessions "
                f"({self.limits.max_sessions})"
            )
        self._sessions = OrderedDict((s.client_id, s) for s in sessions)
        self.evictions = evictions
