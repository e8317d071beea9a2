"""One simulated machine: a ``NodeCore`` (when up), its virtual disk, wall clock and inbox.

A host is ``new`` (not started yet), ``up``, ``down`` (crashed) or ``left`` (stopped after
a graceful leave). Only ``up`` hosts have a core. A paused host is up but starved: what
arrives for it (datagrams, timer firings, disk confirmations) piles up in ``pile`` and runs
when it resumes. The pile is bounded to ``MAX_PILE`` items; when full the oldest item is
dropped and counted in ``pile_dropped``.

A *slow* host (the ``slow`` fault) is up and its timers keep firing, but its message
handler lags: datagrams wait in a bounded receive queue (:class:`SlowState`, like a kernel
socket buffer) and a single handler takes them in arrival order at a limited rate; see
:class:`SlowParams` for the model and its parameters.

The host also keeps its own model of what the disk must hold after a crash
(``expected_durable``: every write confirmed synced), which the
``disk.no_unsynced_after_crash`` checker compares with what a restart actually reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from foundation_p2p.addresses import Address
from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus.wal import WalStorage
from foundation_p2p.counters import Counters
from foundation_p2p.node import NodeCore
from simulator.clock import SkewedClock
from simulator.disk import TornWrite, VirtualDisk
from simulator.vfs import MemoryVfs

MAX_PILE = 100_000
"""Most items a paused host piles up; the oldest is dropped first (counted)."""

TIMERS_ON_TIME = "on_time"
TIMERS_LATE = "late"
TIMER_MODES = (TIMERS_ON_TIME, TIMERS_LATE)


@dataclass(frozen=True)
class SlowParams:
    """How a slow (CPU-starved) node handles what it receives; the ``slow`` fault's keys.

    The model (Lifeguard, Dadgar et al. 2018: a slow member's *message processing* lags
    while its timers still fire, so its probes time out on acks it has not read yet and
    refutations reach its suspicion logic late). While the fault is on (the *starved*
    phase, ``for`` of each occurrence) and afterwards until the backlog is gone:

    - every arriving datagram joins a receive queue bounded to ``queue_packets`` datagrams
      and ``queue_bytes`` bytes (a socket buffer; Linux's default ``rmem_default`` is
      212992). When either bound would be exceeded the arriving datagram is dropped
      (tail-drop, as the kernel does) and counted (``node.recv_queue_dropped``);
    - one handler takes datagrams from the head in arrival order, each no sooner than
      ``lag_s`` after its arrival (scheduling delay) and at most ``rate`` per second while
      starved (0: the handler does not run at all) and ``drain_rate`` per second after the
      starved phase until the queue is empty (a recovering process; the backlog of one
      starved phase drains slowly). When the queue is empty after the starved phase the
      node is back to normal (datagrams handled on arrival);
    - timers: ``timers = "on_time"`` (default) fire on time, as a starved process's timer
      thread does (memberlist's probe timers are their own goroutines); ``"late"`` queues
      each timer firing behind the datagrams already waiting (a single-threaded event
      loop), not counted against the bounds, at most one waiting at a time;
    - what the node sends is not slowed (its sends go out when its code runs).

    The model draws nothing at random: it is arithmetic on virtual time.
    """

    rate: float = 0.0
    """Datagrams per second handled while starved (0: none)."""
    drain_rate: float = 100.0
    """Datagrams per second handled after the starved phase until the queue is empty."""
    lag_s: float = 0.0
    """Least time a datagram waits between arrival and handling while the node is slow."""
    queue_packets: int = 256
    """Most datagrams waiting; an arrival beyond it is dropped (counted)."""
    queue_bytes: int = 212_992
    """Most bytes waiting; an arrival beyond it is dropped (counted)."""
    timers: str = TIMERS_ON_TIME
    """``"on_time"`` or ``"late"`` (see the class docstring)."""


class SlowState:
    """The receive queue of one slow host (bounded by its :class:`SlowParams`; tail-drop).

    ``queue`` holds ``(arrival time, fn, arg, size)``; ``fn(arg)`` handles the item.
    Timer firings (``timers = "late"``) have size -1 and do not count against the bounds.
    """

    __slots__ = (
        "bytes", "dropped", "free_at", "lag_max", "lag_sum", "packets", "params", "processed",
        "queue", "scheduled", "since", "starved", "timer_waiting",
    )

    def __init__(self, params: SlowParams, now: float) -> None:
        self.params = params
        self.since = now
        self.starved = True
        self.queue: deque[tuple[float, Callable[[Any], None], Any, int]] = deque()
        self.packets = 0
        self.bytes = 0
        self.free_at = now
        self.scheduled = False
        self.timer_waiting = False
        self.dropped = 0
        self.processed = 0
        self.lag_sum = 0.0
        self.lag_max = 0.0

    def admit(self, now: float, fn: Callable[[Any], None], arg: Any, size: int) -> bool:
        """Queue one datagram of ``size`` bytes; False (and counted) if a bound is hit."""
        p = self.params
        if self.packets + 1 > p.queue_packets or self.bytes + size > p.queue_bytes:
            self.dropped += 1
            return False
        self.packets += 1
        self.bytes += size
        self.queue.append((now, fn, arg, size))
        return True

    def add_timer(self, now: float, fn: Callable[[Any], None], arg: Any) -> None:
        """Queue one timer firing behind the waiting datagrams (at most one waits)."""
        if not self.timer_waiting:
            self.timer_waiting = True
            self.queue.append((now, fn, arg, -1))

    def rate(self) -> float:
        """Datagrams per second the handler takes now."""
        return self.params.rate if self.starved else self.params.drain_rate

    def take(self, now: float) -> tuple[Callable[[Any], None], Any]:
        """Remove the head item (the handler takes it now)."""
        arrival, fn, arg, size = self.queue.popleft()
        if size < 0:
            self.timer_waiting = False
        else:
            self.packets -= 1
            self.bytes -= size
            self.processed += 1
            lag = now - arrival
            self.lag_sum += lag
            if lag > self.lag_max:
                self.lag_max = lag
        return fn, arg


NEW = "new"
UP = "up"
DOWN = "down"
LEFT = "left"


class Host:
    """One machine of the simulated cluster; see the module docstring."""

    __slots__ = (
        "addr", "addr_text", "boots", "clock", "config", "core", "disk", "expected_durable",
        "index", "last_ack", "leaving", "name", "old_counters", "paused", "pile", "pile_dropped",
        "raft_vfs", "raft_wal", "secret_bytes", "slow", "slow_dropped", "slow_lag_max",
        "slow_lag_sum", "slow_processed", "status", "timer_at", "timer_missed", "torn",
        "unsynced_model",
    )

    def __init__(
        self,
        name: str,
        index: int,
        config: NodeConfig,
        secret_bytes: Callable[[int], bytes],
    ) -> None:
        self.name = name
        self.index = index
        self.addr: Address = config.bind
        self.addr_text = f"{self.addr[0]}:{self.addr[1]}"
        self.config = config
        self.secret_bytes = secret_bytes
        self.clock = SkewedClock()
        self.disk = VirtualDisk()
        self.raft_vfs = MemoryVfs(f"{name}/raft")
        """The Raft log's disk (``[consensus]`` nodes): survives crashes, loses what was
        not synced."""
        self.raft_wal: WalStorage | None = None
        """The open WAL of the current boot (``None`` when down or without consensus)."""
        self.status = NEW
        self.core: NodeCore | None = None
        self.paused = False
        self.pile: deque[tuple[Callable[[Any], None], Any]] = deque()
        self.pile_dropped = 0
        self.slow: SlowState | None = None
        self.slow_dropped = 0
        self.slow_processed = 0
        self.slow_lag_sum = 0.0
        self.slow_lag_max = 0.0
        self.boots = 0
        self.timer_at: float | None = None
        self.timer_missed = False
        self.old_counters = Counters()
        self.last_ack: dict[Address, float] = {}
        self.expected_durable: dict[str, bytes] = {}
        self.unsynced_model: list[tuple[str, bytes]] = []
        self.torn: TornWrite | None = None
        self.leaving: int | None = None
        """The boot being shut down gracefully (``World.leave`` handing services off)."""

    @property
    def is_live(self) -> bool:
        """Up and not paused: it answers."""
        return self.core is not None and not self.paused

    def total_counters(self) -> Counters:
        """This node's counters summed over all its boots."""
        total = Counters(self.old_counters)
        if self.core is not None:
            for k, v in self.core.counters.items():
                total[k] = total.get(k, 0) + v
        return total

    def counter(self, name: str) -> int:
        """One counter of this node, summed over all its boots (no copy)."""
        n = self.old_counters.get(name, 0)
        if self.core is not None:
            n += self.core.counters.get(name, 0)
        return n

    def retire_core(self) -> None:
        """Forget the running core (crash, leave), keeping its counters."""
        if self.core is not None:
            for k, v in self.core.counters.items():
                self.old_counters[k] = self.old_counters.get(k, 0) + v
        self.core = None
        self.paused = False
        self.pile.clear()
        self.end_slow()
        self.timer_at = None
        self.timer_missed = False
        self.last_ack.clear()

    def pile_up(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Keep something for when the host resumes (bounded; oldest dropped)."""
        if len(self.pile) >= MAX_PILE:
            self.pile.popleft()
            self.pile_dropped += 1
        self.pile.append((fn, arg))

    def end_slow(self) -> None:
        """Forget the receive queue of a slow period, keeping its counts."""
        st = self.slow
        if st is None:
            return
        self.slow = None
        self.slow_dropped += st.dropped
        self.slow_processed += st.processed
        self.slow_lag_sum += st.lag_sum
        self.slow_lag_max = max(self.slow_lag_max, st.lag_max)

    def slow_totals(self) -> tuple[int, int, float, float]:
        """Receive-queue datagrams dropped, handled, lag sum and lag max over all slow periods."""
        d, n = self.slow_dropped, self.slow_processed
        lag_sum, lag_max = self.slow_lag_sum, self.slow_lag_max
        st = self.slow
        if st is not None:
            d += st.dropped
            n += st.processed
            lag_sum += st.lag_sum
            lag_max = max(lag_max, st.lag_max)
        return d, n, lag_sum, lag_max
