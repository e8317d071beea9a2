"""The last-known-stable configured set of quorum mode (``RegistrySubsystem``,
spec/supervisor.md section 7): it changes only after every member in the view has been
alive, with no membership change, for ``stable_s``; joiners seen during a partition are
not counted (horde#45); a crashed member is never dropped automatically, a graceful leave
is; ``set_configured`` and ``quorum_members`` freeze it.

The whole-cluster case (a real partition, joiners on the minority side, no moment with
two instances) is ``simulator/scenarios/registry-quorum-joiners.toml``, run by
``tests/simulator/test_registry_scenarios.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from foundation_p2p.addresses import NodeId
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError
from foundation_p2p.events import Event
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.membership.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberSuspect,
    MemberUpdated,
)
from foundation_p2p.membership.state import Member, MemberState
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.subsystem import RegistrySubsystem
from foundation_p2p.registry.supervisor import SupervisorConfig


def nid(i: int) -> NodeId:
    return bytes([i]) * 16


A, B, C, D, E = (nid(i) for i in range(1, 6))


class FakeMembership:
    """The part of SwimMembership the subsystem reads: ``members()``, ``local`` and
    ``config`` (its ``reap_after_s``, for the orphan scan)."""

    def __init__(self, me: NodeId, reap_after_s: float = 3600.0) -> None:
        self.config = MembershipConfig(reap_after_s=reap_after_s)
        self.view: dict[NodeId, Member] = {}
        self.local = self.put(me, MemberState.ALIVE)

    def put(self, node_id: NodeId, state: MemberState) -> Member:
        m = Member(node_id, node_id.hex()[:4], ("127.0.0.1", 1), 1, state, b"", False,
                   b"k" * 32, 0.0)
        self.view[node_id] = m
        return m

    def members(self) -> list[Member]:
        return [self.view[k] for k in sorted(self.view)]


class FakeMessenger:
    def register(self, service: int, on_message: Callable[..., None],
                 on_peer_lost: Callable[..., None] | None = None, **kw: Any) -> None:
        pass

    def send(self, now: Now, node_id: NodeId, service: int, message: Any) -> bool:
        return True

    def forget(self, node_id: NodeId) -> None:
        pass


class Harness:
    def __init__(self, me: NodeId = A, reap_after_s: float = 3600.0, **config: Any) -> None:
        self.me = me
        self.t = 0.0
        self.membership = FakeMembership(me, reap_after_s)
        self.counters = Counters()
        self.sub = RegistrySubsystem(
            me, messenger=FakeMessenger(), membership=self.membership,  # type: ignore[arg-type]
            config=RegistryConfig(), supervisor_config=SupervisorConfig(**config),
            counters=self.counters, rng=random.Random(1),
        )

    def now(self) -> Now:
        return Now(self.t, 1_767_225_600.0 + self.t)

    def event(self, node_id: NodeId, state: MemberState, kind: type[Event]) -> None:
        if kind is MemberReaped:
            self.membership.view.pop(node_id, None)
            self.sub.on_member_event(self.now(), MemberReaped(node_id))
            return
        m = self.membership.put(node_id, state)
        if kind is MemberSuspect:
            self.sub.on_member_event(self.now(), MemberSuspect(m, self.me))
            return
        self.sub.on_member_event(self.now(), kind(m))  # type: ignore[call-arg]

    def join(self, *ids: NodeId) -> None:
        for i in ids:
            self.event(i, MemberState.ALIVE, MemberJoined)

    def advance(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            self.t = min(end, self.t + 0.25)
            self.sub.handle_timer(self.now())

    @property
    def configured(self) -> frozenset[NodeId]:
        assert self.sub.configured == self.sub.supervisor.quorum_members
        return self.sub.configured


def test_the_set_is_empty_until_the_view_was_alive_and_quiet_for_stable_s() -> None:
    h = Harness()
    h.join(B, C)
    h.advance(9.5)
    assert h.configured == frozenset()  # no lease for anyone yet
    assert not h.sub.supervisor.holds_lease(h.now())
    h.advance(1.0)
    assert h.configured == {A, B, C}
    assert h.counters.get("registry.quorum.configured_changes") == 1


def test_every_membership_change_restarts_the_stability_clock() -> None:
    h = Harness()
    h.join(B)
    h.advance(8.0)
    h.join(C)  # a change: 10 more seconds from here
    h.advance(8.0)
    assert h.configured == frozenset()
    h.advance(2.5)
    assert h.configured == {A, B, C}
    # metadata updates are not membership changes
    h.join(D)
    h.advance(9.0)
    h.event(D, MemberState.ALIVE, MemberUpdated)
    h.advance(1.5)
    assert h.configured == {A, B, C, D}


def test_a_suspect_or_failed_member_blocks_the_change() -> None:
    h = Harness()
    h.join(B, C)
    h.advance(11.0)
    h.event(C, MemberState.SUSPECT, MemberSuspect)
    h.join(D)
    h.advance(30.0)
    assert h.configured == {A, B, C}  # C suspect: not stable, D not counted
    h.event(C, MemberState.ALIVE, MemberAlive)
    h.advance(10.5)
    assert h.configured == {A, B, C, D}


def test_horde_45_joiners_on_a_partitioned_side_are_not_counted() -> None:
    # {A} | {B, C} of configured {A, B, C}; D and E join on A's side
    h = Harness()
    h.join(B, C)
    h.advance(11.0)
    assert h.configured == {A, B, C}
    for x in (B, C):
        h.event(x, MemberState.SUSPECT, MemberSuspect)
    h.advance(3.0)
    for x in (B, C):
        h.event(x, MemberState.FAILED, MemberFailed)
    h.advance(1.0)
    h.join(D, E)
    h.advance(60.0)
    # A still counts 1 of 3: no majority, while {B, C} count 2 of 3
    assert h.configured == {A, B, C}
    sup = h.sub.supervisor
    h.sub.heard(h.now(), D)
    h.sub.heard(h.now(), E)
    h.advance(0.5)
    assert not sup.holds_lease(h.now())


def test_a_crashed_member_is_never_dropped_automatically_a_leaver_is() -> None:
    h = Harness()
    h.join(B, C, D)
    h.advance(11.0)
    assert h.configured == {A, B, C, D}
    h.event(B, MemberState.FAILED, MemberFailed)
    h.event(C, MemberState.LEFT, MemberLeft)
    h.advance(30.0)
    assert h.configured == {A, B, C, D}  # B failed: not stable; nothing changes
    h.event(B, MemberState.FAILED, MemberReaped)  # reaped: out of the view, still counted
    h.advance(10.5)
    assert h.configured == {A, B, D}  # the leaver dropped, the crashed member kept
    h.event(C, MemberState.ALIVE, MemberJoined)  # C comes back: counted again when stable
    h.advance(10.5)
    assert h.configured == {A, B, C, D}


def test_set_configured_and_quorum_members_freeze_the_set() -> None:
    h = Harness()
    h.join(B, C)
    h.advance(11.0)
    h.sub.set_configured(h.now(), [A, B])
    assert h.configured == {A, B}
    h.join(D)
    h.advance(20.0)
    assert h.configured == {A, B}
    static = Harness(quorum_members=frozenset({A, C, E}))
    static.join(B)
    static.advance(20.0)
    assert static.configured == {A, C, E}


def test_stable_s_is_a_positive_number() -> None:
    assert SupervisorConfig.from_mapping({"stable_s": 2.5}).stable_s == 2.5
    for bad in (0, -1.0, "10s", True):
        with pytest.raises(ConfigError, match="stable_s"):
            SupervisorConfig.from_mapping({"stable_s": bad})


# -- orphans: entries of an owner membership does not know at all --------------------------


def owners(h: Harness) -> set[NodeId | None]:
    return {e.owner for slot in h.sub.core.state.entries.values() for e in slot.values()}


def test_an_unknown_owner_is_reaped_after_reap_after_s_and_not_before() -> None:
    h = Harness(reap_after_s=100.0)
    h.join(B)
    core = h.sub.core
    core.register(h.now(), "mine", 1)
    core.register(h.now(), "cluster", 2, owner=None)
    core.register(h.now(), "b's", 3, owner=B)
    core.register(h.now(), "x1", 4, owner=E)  # E: never a member here
    core.register(h.now(), "x2", 5, owner=E)
    assert core.lookup("x1") is None  # hidden at once: membership does not vouch for E
    h.advance(99.0)
    assert owners(h) == {A, None, B, E}
    assert h.counters["registry.orphans_reaped"] == 0
    h.advance(12.0)  # first seen at the first scan (t = 0.25); scans every 10 s here
    assert owners(h) == {A, None, B}
    assert h.counters["registry.orphans_reaped"] == 1
    assert h.counters["registry.reaped"] == 2
    assert [c.name for c in h.sub.take_changes() if c.entry.owner == E] == ["x1", "x2"]


def test_a_known_failed_owner_is_left_to_membership_and_a_returning_one_starts_over() -> None:
    h = Harness(reap_after_s=100.0)
    h.join(B, C)
    core = h.sub.core
    core.register(h.now(), "b's", 1, owner=B)
    core.register(h.now(), "c's", 2, owner=C)
    h.event(B, MemberState.FAILED, MemberFailed)  # known (failed): membership reaps it
    h.event(C, MemberState.FAILED, MemberFailed)
    h.event(C, MemberState.FAILED, MemberReaped)  # C forgotten: its entries go at once
    assert owners(h) == {B}
    core.register(h.now(), "d's", 3, owner=D)  # D unknown from now (t = 0)
    h.advance(60.0)
    h.join(D)  # D becomes known at 60 s: the orphan clock stops
    h.advance(60.0)
    h.event(D, MemberState.FAILED, MemberReaped)  # reaped by membership at 120 s
    assert owners(h) == {B}
    core.register(h.now(), "d's again", 4, owner=D)  # unknown again from 120 s
    h.advance(95.0)
    assert owners(h) == {B, D}
    h.advance(20.0)
    assert owners(h) == {B}  # B, failed but known, outlived it: membership's to reap
    assert h.counters["registry.orphans_reaped"] == 1


def test_reap_orphans_called_directly_with_zero_reaps_every_unknown_owner() -> None:
    h = Harness()
    h.join(B)
    core = h.sub.core
    core.register(h.now(), "b's", 1, owner=B)
    core.register(h.now(), "d's", 2, owner=D)
    core.register(h.now(), "e's", 3, owner=E)
    assert h.sub.reap_orphans(h.now(), 0.0) == sorted([D, E])
    assert owners(h) == {B}
