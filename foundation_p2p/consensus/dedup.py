"""Proposal windows: every member applies a re-sent proposal at most once (sans-I/O).

A member forwards its proposals to the leader as Raft ``PROP`` messages. A message can be
lost (the connection it was written on closed as a duplicate at a restart, or the leader
changed), and the proposer cannot tell a lost proposal from a slow one. So the proposer
sends it again, in the same envelope ``[proposer, boot, ticket, command, floor]``
(``spec/consensus-client.md`` section 2), and every member skips, in log order, an
envelope it has already applied. The table that decides is replicated state: it is
built only from applied entries and travels in the snapshot, so every member skips the
same entries.

For each proposer run ``(proposer, boot)`` the table keeps a *window*: ``floor``, below
or at which every ticket counts as done (the proposer promised, with the ``floor`` of its
envelopes, never to send those again: they were applied, or it gave up on them and
reported them ``indeterminate``), and the tickets above ``floor`` already applied.

Bounds (each overflow counted by the caller from the return value):

- at most :data:`MAX_WINDOWS` proposer runs; past it the window applied least recently
  (by log index; ties by key) is forgotten;
- at most :data:`MAX_TICKETS` applied tickets above one window's floor; past it the
  floor rises to the smallest of them (a proposer with that many proposals in flight
  at once is far beyond ``max_pending_requests``).

Forgetting can only make a duplicate apply again (a window evicted while its proposer
still re-sends), never skip a first copy: a first copy is skipped only if its ticket is
at or below a floor, which its proposer set or which rose past a full window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foundation_p2p.counters import Counters
from foundation_p2p.errors import MalformedError, WireError
from foundation_p2p.wire import cbor

MAX_WINDOWS = 4096
"""Proposer runs remembered (members and their restarts)."""
MAX_TICKETS = 65_536
"""Applied tickets remembered above one window's floor."""


@dataclass(slots=True)
class Window:
    """One proposer run's window: see the module docstring."""

    floor: int = 0
    done: set[int] = field(default_factory=set)
    last_index: int = 0
    """The log index of the last envelope of this run (eviction order)."""


class ProposalWindows:
    """The replicated table of proposal windows, keyed by ``(proposer, boot)``."""

    def __init__(self, max_windows: int = MAX_WINDOWS, max_tickets: int = MAX_TICKETS) -> None:
        self.max_windows = max_windows
        self.max_tickets = max_tickets
        self.windows: dict[tuple[bytes, int], Window] = {}
        self.counters: Counters | None = None
        """If set: ``raft.windows.evicted`` (a window forgotten past ``max_windows``) and
        ``raft.windows.floor_raised`` (a full window raised its floor)."""

    def admit(self, index: int, proposer: bytes, boot: int, ticket: int, floor: int) -> bool:
        """The envelope at log ``index``: True if it is the first copy (apply it), False if
        a copy was applied before or its ticket is at or below the window's floor (skip
        it). Either way the window's floor rises to ``floor``."""
        key = (proposer, boot)
        w = self.windows.get(key)
        if w is None:
            w = self.windows[key] = Window()
            if len(self.windows) > self.max_windows:
                self._evict(key)
        w.last_index = index
        first = ticket > w.floor and ticket not in w.done
        if first:
            w.done.add(ticket)
        if floor > w.floor:
            done = w.done
            if done:
                if floor - w.floor <= len(done):
                    # floors only rise: each ticket number is passed once (amortized O(1))
                    for t in range(w.floor + 1, floor + 1):
                        done.discard(t)
                else:
                    w.done = {t for t in done if t > floor}
            w.floor = floor
        while len(w.done) > self.max_tickets:
            # deterministic: the smallest applied ticket goes below the floor
            smallest = min(w.done)
            w.done.remove(smallest)
            w.floor = smallest
            if self.counters is not None:
                self.counters.inc("raft.windows.floor_raised")
        return first

    def _evict(self, keep: tuple[bytes, int]) -> None:
        victim = min(
            (k for k in self.windows if k != keep),
            key=lambda k: (self.windows[k].last_index, k),
        )
        del self.windows[victim]
        if self.counters is not None:
            self.counters.inc("raft.windows.evicted")

    def __len__(self) -> int:
        return len(self.windows)

    # -- snapshot ------------------------------------------------------------------------

    def encode(self) -> list[list[object]]:
        """The table as CBOR-ready data, sorted by key: ``[[proposer, boot, floor,
        last_index, [ticket, ...]], ...]`` with tickets ascending (deterministic)."""
        return [
            [p, b, w.floor, w.last_index, sorted(w.done)]
            for (p, b), w in sorted(self.windows.items())
        ]

    @classmethod
    def decode(
        cls, value: object, max_windows: int = MAX_WINDOWS, max_tickets: int = MAX_TICKETS
    ) -> ProposalWindows:
        """The table from :meth:`encode`'s data; ``MalformedError`` naming what is wrong."""
        if type(value) is not list:
            raise MalformedError("proposal windows: expected an array")
        if len(value) > max_windows:
            raise MalformedError(f"proposal windows: {len(value)} windows, at most {max_windows}")
        out = cls(max_windows, max_tickets)
        for item in value:
            if (
                type(item) is not list
                or len(item) != 5
                or type(item[0]) is not bytes
                or len(item[0]) != 16
                or any(type(x) is not int or x < 0 for x in item[1:4])
                or type(item[4]) is not list
            ):
                raise MalformedError(
                    "proposal windows: expected [proposer, boot, floor, last_index, tickets]"
                )
            tickets = item[4]
            if len(tickets) > max_tickets:
                raise MalformedError(
                    f"proposal windows: {len(tickets)} tickets in a window, at most {max_tickets}"
                )
            floor = item[2]
            if any(type(t) is not int or t <= floor for t in tickets):
                raise MalformedError("proposal windows: a ticket at or below its floor")
            key = (item[0], item[1])
            if key in out.windows:
                raise MalformedError("proposal windows: a proposer run twice")
            out.windows[key] = Window(floor, set(tickets), item[3])
        return out


SNAPSHOT_TAG = 0x66707031
"""The CBOR tag (``'fpp1'``) of a subsystem snapshot: ``tag([1, windows, machine])``."""
_SNAPSHOT_HEAD = b"\xda" + SNAPSHOT_TAG.to_bytes(4, "big")


def encode_snapshot(windows: ProposalWindows, machine: bytes) -> bytes:
    """A Raft snapshot's data: the proposal windows and the state machine's snapshot."""
    return _SNAPSHOT_HEAD + cbor.encode([1, windows.encode(), machine])


def decode_snapshot(data: bytes) -> tuple[ProposalWindows, bytes]:
    """The windows and the machine snapshot of :func:`encode_snapshot`'s bytes. Data
    without the tag is a bare machine snapshot of an earlier version: empty windows.
    ``MalformedError`` if the tagged data is not one."""
    if not data.startswith(_SNAPSHOT_HEAD):
        return ProposalWindows(), data
    body = data[len(_SNAPSHOT_HEAD):]
    try:
        # the project's strict decoder: deterministic, nothing after the item, bounded
        # nesting. Not a packet: the snapshot's size was bounded when it was received or
        # stored, and may pass a UDP datagram's 65,507 bytes by far.
        value = cbor.decode(body, max_bytes=len(body))
    except WireError as exc:
        raise MalformedError(f"raft snapshot: not deterministic CBOR: {exc}") from None
    if (
        type(value) is not list
        or len(value) != 3
        or type(value[0]) is not int
        or value[0] != 1
        or type(value[2]) is not bytes
    ):
        raise MalformedError("raft snapshot: expected [1, windows, machine snapshot]")
    return ProposalWindows.decode(value[1]), value[2]
