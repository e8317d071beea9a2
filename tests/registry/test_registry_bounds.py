"""The registry's entry bounds (``max_entries``, ``max_entries_per_writer``): a local write
beyond them is a clear error; a sync reply beyond them is cut and counted; names already
held still update."""

from __future__ import annotations

import pytest

from foundation_p2p.clock import Now
from foundation_p2p.errors import ConfigError
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.core import RegistryCore

A, B = bytes([1]) * 16, bytes([2]) * 16
WALL = 1_700_000_000.0


def now(t: float) -> Now:
    return Now(t, WALL + t)


def test_a_local_write_of_a_new_name_beyond_the_bounds_names_the_bound() -> None:
    core = RegistryCore(A, config=RegistryConfig(max_entries_per_writer=3))
    for i in range(3):
        core.register(now(1 + i), f"n{i}", i)
    with pytest.raises(ConfigError, match="max_entries_per_writer = 3"):
        core.register(now(5), "n3", 3)
    core.put(now(6), "n0", "again")  # a name already held still updates
    assert core.lookup("n0") is not None and core.lookup("n0").value == "again"
    small = RegistryCore(A, config=RegistryConfig(max_entries=2))
    small.register(now(1), "x", 1)
    small.register(now(2), "y", 1)
    with pytest.raises(ConfigError, match="max_entries = 2"):
        small.register(now(3), "z", 1)
    with pytest.raises(ConfigError, match="max_entries"):
        RegistryConfig(max_entries=0)


def test_a_sync_reply_beyond_the_bound_is_cut_and_counted() -> None:
    # B wrote 10 names before A knew it: anti-entropy (not deltas) brings them to A
    a = RegistryCore(A, config=RegistryConfig(max_entries_per_writer=4))
    b = RegistryCore(B)
    for i in range(10):
        b.register(now(1 + i * 0.01), f"b{i}", i)
    b.take_messages()  # the eager deltas are lost
    a.set_peers([B])
    b.set_peers([A])
    for step in range(40):
        t = now(2 + step * 0.5)
        a.handle_timer(t)
        b.handle_timer(t)
        for _, msg in a.take_messages():
            b.handle_message(t, A, msg)
        for _, msg in b.take_messages():
            a.handle_message(t, B, msg)
    held = [n for n in (f"b{i}" for i in range(10)) if a.lookup(n) is not None]
    assert len(held) == 4
    assert a.counters["registry.entries.refused_writer"] >= 6
