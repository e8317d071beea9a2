"""Helpers of the flood tests: a booted ``NodeCore``, and a flood measured at two sizes.

A flood test runs one kind of attack ``small`` times, measures the structures the attack
could grow (``footprint``) and the Python heap (``tracemalloc``), runs it on to ``large``
times (4x), and measures again. A bounded structure has the same size at both points
(at most its configured bound); the heap may not grow by more than a small slack while
3x more attacks arrive. The attacks' overflow must be counted: the counters named by the
test grow by exactly the number of attacks.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.node import NodeCore

KEYRING = Keyring(bytes(range(32)))
WALL = 1_700_000_000.0
HOME = ("10.0.0.1", 7946)


def booted_core(seed: int = 1, **config: object) -> NodeCore:
    """A NodeCore at ``HOME`` whose boot writes are confirmed and events taken."""
    rng = random.Random(seed)
    core = NodeCore(
        NodeConfig(bind=HOME, **config),  # type: ignore[arg-type]
        now=Now(0.0, WALL),
        keyring=KEYRING,
        stored={},
        rng=random.Random(seed),
        secret_bytes=rng.randbytes,
    )
    writes = core.take_writes()
    core.writes_done(Now(0.0, WALL), [w.id for w in writes])
    core.take_events()
    return core


def footprint(core: NodeCore) -> dict[str, int]:
    """Sizes of every per-sender or per-connection structure an outside peer can reach."""
    t = core.transport
    return {
        "peer_addresses": len(core.peer_addresses),
        "replay_senders": len(core.protection.replay._senders),
        "subkey_cache": len(core.protection._openers),
        "members": len(core.membership.members()),
        "events": len(core._events),
        "outbox_frames": core._outbox_frames,
        "connections": len(t),
        "half_open": t.half_open,
        "initials": len(t._initials),
        "half_open_addrs": len(t._half_open_by_addr),
        "transport_events": len(t._events),
        "resets_queued": len(t._resets),
        "peer_epochs": len(t._peer_epochs),
        "counter_names": len(core.counters),
    }


@dataclass
class FloodResult:
    small: dict[str, int]
    large: dict[str, int]
    heap_growth: int
    """Bytes the traced heap grew from the small flood's end to the large flood's end."""


def flood(
    attack: Callable[[int], None],
    measure: Callable[[], dict[str, int]],
    small: int,
    large: int,
) -> FloodResult:
    """Run ``attack(i)`` for i in 0..large-1; measure after ``small`` and after ``large``."""
    assert large >= 4 * small
    # traced from the start: a bounded cache's entries replaced during the large flood are
    # then seen freed, not only their replacements allocated
    tracemalloc.start()
    try:
        for i in range(small):
            attack(i)
        gc.collect()
        at_small = measure()
        before, _ = tracemalloc.get_traced_memory()
        for i in range(small, large):
            attack(i)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        at_large = measure()
    finally:
        tracemalloc.stop()
    return FloodResult(at_small, at_large, after - before)


def spoofed(i: int) -> tuple[str, int]:
    """A distinct source address per attack (a flood from spoofed addresses)."""
    return (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 1024 + i % 50_000)
