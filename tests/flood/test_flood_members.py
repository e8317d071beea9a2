"""A member-announcement flood: an insider (it holds the cluster key) gossips signed alive
records of ever new identities to a ``NodeCore``; the member table stops at
``max_members``, the parsed-announcement cache at its bound, and every other table of the
membership stays flat; refusals are counted.

Same method as test_flood_packets.py (two flood sizes, tables and heap measured).
"""

from __future__ import annotations

import random

import pytest
from flood import KEYRING, WALL, booted_core, flood, footprint

from foundation_p2p.clock import Now
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.protection import GossipProtection
from foundation_p2p.membership import frames
from foundation_p2p.membership.frames import Announcement
from foundation_p2p.membership.state import MemberState
from foundation_p2p.node import NodeCore
from foundation_p2p.wire.frames import encode_frames

MAX_MEMBERS = 64
HEAP_SLACK = 96 * 1024


def sizes(core: NodeCore) -> dict[str, int]:
    m = core.membership
    out = footprint(core)
    for name in ("_nodes", "_tombstones", "_relays", "_retry_pings", "_retry_heap",
                 "_pp_pending", "_pp_answered", "_unknown", "_unknown_pulled",
                 "_suspicion_heap", "_bq", "_hot_fifo", "_probe_list", "_gossip_list",
                 "_out"):
        out["membership" + name] = len(getattr(m, name))
    out["parse_cache"] = len(frames._PARSED)
    return out


def test_alive_records_of_ever_new_members_stop_at_max_members(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The process-wide cache of parsed announcements (8,192 entries, 8 MiB) is bounded
    # too; shrunk here so that the small flood already fills it.
    monkeypatch.setattr(frames, "PARSE_CACHE_SIZE", 64)
    core = booted_core(extra={"membership": {"max_members": MAX_MEMBERS}})
    rng = random.Random(12)
    insider = GossipProtection(KEYRING, rng.randbytes(16), 7)
    now = Now(1.0, WALL + 1)

    def attack(i: int) -> None:
        ident = Identity.generate(rng.randbytes)
        ann = Announcement.sign(
            ident, incarnation=1, state=MemberState.ALIVE,
            address=(f"10.2.{i >> 8 & 255}.{i & 255}", 7946), name=f"fake-{i}",
            metadata=b"", observer=False,
        )
        core.handle_datagram(now, ("10.9.9.9", 7946), insider.seal(encode_frames([ann])))
        core.take_outgoing()
        core.take_events()

    res = flood(attack, lambda: sizes(core), 200, 800)
    grown = {k: (res.small[k], v) for k, v in res.large.items() if v > res.small[k]}
    assert not grown, f"grew with the flood size: {grown}"
    assert res.large["membership_nodes"] == MAX_MEMBERS
    assert res.large["parse_cache"] <= 64
    assert core.counters["membership.members.refused_full"] >= 800 - MAX_MEMBERS
    assert res.heap_growth < HEAP_SLACK, res
