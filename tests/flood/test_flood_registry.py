"""Registry floods against a ``RegistryCore``: a peer shipping deltas as fast as it likes.

Same method as test_flood_packets.py. A peer that rewrites one name forever leaves one entry
and a bounded change queue; a peer that registers ever new names fills the replica up to
``max_entries_per_writer`` (``RegistryConfig``) and every entry beyond is refused and
counted, while the node's own writes still go in.
"""

from __future__ import annotations

from flood import flood

from foundation_p2p.clock import Now
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.core import RegistryCore

HOME = bytes([1]) * 16
ATTACKER = bytes([2]) * 16
WALL = 1_700_000_000.0
HEAP_SLACK = 96 * 1024
MAX_CHANGES = 256
PER_WRITER = 300
"""``max_entries_per_writer`` of the ever-new-names flood: below its smaller size (400)."""


def sizes(core: RegistryCore) -> dict[str, int]:
    state = core.state
    return {
        "names": len(state.entries),
        "entries": sum(len(s) for s in state.entries.values()),
        "dot_names": len(state.dot_names),
        "state_bytes": core.state_bytes(),
        "changes": len(core._changes),
        "deltas": len(core._deltas),
        "outbox": len(core._outbox),
        "conflicts": len(core._recent_conflicts),
        "counter_names": len(core.counters),
    }


def _pair(**bounds: int) -> tuple[RegistryCore, RegistryCore]:
    home = RegistryCore(HOME, config=RegistryConfig(max_changes=MAX_CHANGES, **bounds))
    attacker = RegistryCore(ATTACKER)
    home.set_peers([ATTACKER])
    attacker.set_peers([HOME])
    return home, attacker


def _ship(home: RegistryCore, attacker: RegistryCore, now: Now) -> None:
    for _peer, msg in attacker.take_messages():
        home.handle_message(now, ATTACKER, msg)
    home.take_messages()
    attacker.take_changes()  # the attacker's own queue is not what is measured


def _flat(small: dict[str, int], large: dict[str, int]) -> None:
    grown = {k: (small[k], v) for k, v in large.items() if v > small[k]}
    assert not grown, f"grew with the flood size: {grown}"


def test_one_name_rewritten_forever_keeps_one_entry_and_a_bounded_change_queue() -> None:
    home, attacker = _pair()

    def attack(i: int) -> None:
        now = Now(1.0 + i * 1e-3, WALL + 1.0 + i * 1e-3)
        attacker.put(now, "hot", {"i": i, "pad": "x" * 100})
        _ship(home, attacker, now)

    res = flood(attack, lambda: sizes(home), 400, 1600)
    _flat({k: v for k, v in res.small.items() if k != "state_bytes"},
          {k: v for k, v in res.large.items() if k != "state_bytes"})
    assert res.large["state_bytes"] <= res.small["state_bytes"] + 16  # the counter's digits
    assert res.large["entries"] == 1 and res.large["changes"] == MAX_CHANGES
    assert home.counters["registry.changes.dropped"] > 0
    assert home.counters["registry.messages.received"] == 1600
    assert res.heap_growth < HEAP_SLACK, res


def test_ever_new_names_from_one_peer_stop_at_a_bound_and_are_counted() -> None:
    home, attacker = _pair(max_entries_per_writer=PER_WRITER)

    def attack(i: int) -> None:
        now = Now(1.0 + i * 1e-3, WALL + 1.0 + i * 1e-3)
        attacker.register(now, f"spam/{i}", i)
        _ship(home, attacker, now)

    res = flood(attack, lambda: sizes(home), 400, 1600)
    _flat(res.small, res.large)
    assert res.large["entries"] == PER_WRITER
    assert home.counters["registry.entries.refused_writer"] == 1600 - PER_WRITER
    # the home node's own writes still go in: the bound is per writer
    home.register(Now(9.0, WALL + 9.0), "mine", 1)
    assert home.lookup("mine") is not None
