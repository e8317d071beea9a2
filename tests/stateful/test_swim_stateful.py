"""Hypothesis stateful test of the SWIM membership core (``SwimMembership``) against a
reference model of which nodes are really up, frozen, crashed or gone.

Up to six cores run on :class:`membership_harness.Net` (frames through their codecs, a
fixed latency, virtual time). Hypothesis picks the steps: a node joins through a live
seed, leaves gracefully, crashes for good, freezes (stops sending, receiving and running
timers) and thaws, a link pair is cut and healed, and virtual time advances. The model
records the truth; after every step, for every observer ``O`` and member ``M`` that
``O`` knows:

- ``O``'s incarnation for ``M`` never exceeds ``M``'s own (records are signed: nobody
  but ``M`` can raise it), and never goes down while ``O`` keeps ``M``;
- each node's own incarnation never goes down, and a node that is not running (crashed,
  frozen) does not raise it;
- no resurrection without refutation: once ``O`` holds ``M`` as failed or left at
  incarnation ``i``, it holds ``M`` alive or suspect again only at an incarnation above
  ``i`` (``M`` refuted), and a member that left is never alive again anywhere;
- accuracy on a perfect network: while no link has ever been cut and nothing frozen, a
  node that never crashed is never declared failed.

The teardown heals every link, thaws every node and runs two virtual minutes: then every
running node holds every other running member alive, every crashed member failed, and
every member that left as left (completeness and eventual agreement).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from stateful_run import run_machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "membership"))
from membership_harness import Net

from foundation_p2p.events import Join, Leave
from foundation_p2p.membership.state import MemberState
from foundation_p2p.membership.swim import SwimMembership

NAMES = [f"n{i}" for i in range(1, 7)]
S = MemberState


class SwimCluster(RuleBasedStateMachine):
    """Cores on a virtual network; the model knows who is really running."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Net(latency=0.002, seed=11)
        self.cores: dict[str, SwimMembership] = {}
        self.running: set[str] = set()
        self.frozen: set[str] = set()
        self.crashed: set[str] = set()
        self.left: set[str] = set()
        self.cuts: set[tuple[str, str]] = set()
        self.seeds: dict[str, set[str]] = {}
        """The nodes each one joined through: of those it was told to join through (all
        running ones at the time), the ones its join reached (see ``_run``)."""
        self.pending: dict[str, set[str]] = {}
        """Joins not yet sent: no virtual time has passed since they were commanded."""
        self.ever_imperfect = False
        self.seen_inc: dict[tuple[str, bytes], int] = {}
        self.own_inc: dict[str, int] = {}
        self.dead_at: dict[tuple[str, bytes], int] = {}
        """(observer, member) -> the highest incarnation it held the member failed/left at."""
        self.net.cut = lambda src, dst: (src[0], dst[0]) in self.cuts
        for name in NAMES[:3]:
            self._start(name)
        self._run(3.0)
        self._check_all()

    # -- helpers ---------------------------------------------------------------------

    def _start(self, name: str) -> None:
        core = self.net.add(name, number=NAMES.index(name) + 1)
        self.cores[name] = core
        self.running.add(name)
        seeds = sorted(self.running - {name})
        self.seeds[name] = set()
        self.pending[name] = set(seeds)
        if seeds:
            self.net.command(core, Join(tuple((n, 7946) for n in seeds)))

    def _run(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass. Joins commanded since time last passed
        leave now: a seed that was crashed, frozen or cut off from the joiner in between
        never hears of it. (Hypothesis found the case: n5 and n6 joined through n3 and n4 in
        zero time, n3 froze at once, n4 answered; thawed, n3 knew only crashed members, and
        nobody knew n3, so the two sides rightly never met.)"""
        for name, seeds in self.pending.items():
            self.seeds[name] = {
                seed for seed in seeds if seed in self.running and (name, seed) not in self.cuts
            }
        self.pending.clear()
        self.net.run_until(self.net.t + seconds)

    def _by_id(self) -> dict[bytes, str]:
        return {core.node_id: name for name, core in self.cores.items()}

    def _check_all(self) -> None:
        self.incarnations()
        self.no_resurrection()
        self.accuracy()

    # -- rules ------------------------------------------------------------------------

    @precondition(lambda self: len(self.cores) < len(NAMES))
    @rule()
    def join(self) -> None:
        self._start(NAMES[len(self.cores)])

    @precondition(lambda self: len(self.running) > 2)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.running)), label="node")
        self.net.command(self.cores[name], Leave())
        self._run(1.0)  # its last gossip goes out
        self.incarnations()  # (leaving signs a record at a higher incarnation)
        self.net.crash(self.cores[name])  # then the process is gone
        self.running.discard(name)
        self.left.add(name)

    @precondition(lambda self: len(self.running) > 2)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.running)), label="node")
        self.net.crash(self.cores[name])
        self.running.discard(name)
        self.crashed.add(name)

    @precondition(lambda self: len(self.running) > 2)
    @rule(data=st.data())
    def freeze(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.running)), label="node")
        self.net.crash(self.cores[name])
        self.running.discard(name)
        self.frozen.add(name)
        self.ever_imperfect = True

    @precondition(lambda self: bool(self.frozen))
    @rule(data=st.data())
    def thaw(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.frozen)), label="node")
        self.net.down.discard((name, 7946))
        self.frozen.discard(name)
        self.running.add(name)

    @rule(a=st.sampled_from(NAMES), b=st.sampled_from(NAMES))
    def cut(self, a: str, b: str) -> None:
        if a != b:
            self.cuts |= {(a, b), (b, a)}
            self.ever_imperfect = True

    @rule()
    def heal(self) -> None:
        self.cuts.clear()

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.0, 5.0, 15.0]))
    def advance(self, seconds: float) -> None:
        self._run(seconds)

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def incarnations(self) -> None:
        by_id = self._by_id()
        for name, core in self.cores.items():
            own = core.local.incarnation
            prev = self.own_inc.get(name, 0)
            assert own >= prev, f"{name}: own incarnation went down {prev} -> {own}"
            if name not in self.running:
                assert own == prev, f"{name} is not running but its incarnation rose"
            self.own_inc[name] = own
        for obs, core in self.cores.items():
            for m in core.members():
                member = by_id.get(m.node_id)
                assert member is not None, f"{obs} holds a member nobody started"
                true_inc = self.cores[member].local.incarnation
                assert m.incarnation <= true_inc, (
                    f"{obs} holds {member} at incarnation {m.incarnation} > its own {true_inc}"
                )
                key = (obs, m.node_id)
                prev = self.seen_inc.get(key, 0)
                assert m.incarnation >= prev, f"{obs}: {member}'s incarnation went down"
                self.seen_inc[key] = m.incarnation

    @invariant()
    def no_resurrection(self) -> None:
        by_id = self._by_id()
        for obs, core in self.cores.items():
            for m in core.members():
                member = by_id[m.node_id]
                key = (obs, m.node_id)
                if m.state in (S.FAILED, S.LEFT):
                    self.dead_at[key] = max(self.dead_at.get(key, 0), m.incarnation)
                    continue
                if key in self.dead_at:
                    assert m.incarnation > self.dead_at[key], (
                        f"{obs} holds {member} {m.state.name} at incarnation {m.incarnation} "
                        f"after holding it failed/left at {self.dead_at[key]}"
                    )
                if member in self.left and member != obs:
                    assert m.state is not S.ALIVE or m.incarnation < self.own_inc[member], (
                        f"{obs} holds {member}, which left, alive at its last incarnation"
                    )

    @invariant()
    def accuracy(self) -> None:
        if self.ever_imperfect:
            return
        by_id = self._by_id()
        for obs in self.running:
            for m in self.cores[obs].members():
                member = by_id[m.node_id]
                if member in self.running:
                    assert m.state is not S.FAILED, (
                        f"{obs} declared {member} failed on a perfect network"
                    )

    def teardown(self) -> None:
        self.cuts.clear()
        for name in sorted(self.frozen):
            self.thaw_name(name)
        self._run(120.0)
        self._check_all()
        by_id = self._by_id()
        held = {
            obs: {by_id[m.node_id]: m.state for m in self.cores[obs].members()}
            for obs in self.running
        }
        for obs in sorted(self.running):
            for other in self._component(obs, held) - {obs}:
                assert held[obs].get(other) is S.ALIVE, (
                    f"{obs} holds running {other} as {held[obs].get(other)}"
                )
            for other in self.crashed:
                assert held[obs].get(other, S.FAILED) is S.FAILED, (
                    f"{obs} holds crashed {other} as {held[obs].get(other)}"
                )
            for other in self.left:
                # LEFT if its goodbye reached anyone; FAILED if it left while cut off.
                assert held[obs].get(other, S.LEFT) in (S.LEFT, S.FAILED), (
                    f"{obs} holds {other}, which left, as {held[obs].get(other)}"
                )

    def _component(self, start: str, held: dict[str, dict[str, MemberState]]) -> set[str]:
        """The running nodes connected to ``start`` by a join seed or a known record:
        a node whose every seed crashed never joins, and only then may groups stay apart."""
        edges: dict[str, set[str]] = {n: set() for n in self.running}
        for a in self.running:
            for b in (self.seeds.get(a, set()) | set(held[a])) & self.running:
                edges[a].add(b)
                edges[b].add(a)
        out, todo = {start}, [start]
        while todo:
            for b in edges[todo.pop()] - out:
                out.add(b)
                todo.append(b)
        return out

    def thaw_name(self, name: str) -> None:
        self.net.down.discard((name, 7946))
        self.frozen.discard(name)
        self.running.add(name)


def test_swim_membership() -> None:
    run_machine(SwimCluster, 40, 30)


@pytest.mark.soak
def test_swim_membership_soak() -> None:
    run_machine(SwimCluster, 500, 60, soak=True)


class _Drawn:
    """Stands for ``st.data()`` in a replayed case: every draw returns ``value``."""

    def __init__(self, value: str) -> None:
        self.value = value

    def draw(self, strategy: object, label: str | None = None) -> str:
        return self.value


def test_a_seed_frozen_before_the_join_left_is_not_expected_to_meet_the_joiner() -> None:
    # the case `make soak` found (run L): n4..n6 join in zero time, n1 and n2 crash, n3
    # freezes before any join left, n4 crashes later. n5 and n6 met through n4; n3 heard of
    # none of them, and after the thaw it knows only n1 and n2, both crashed. The model
    # used to expect n3 and n6 to agree because n6 had been told to join through n3.
    m = SwimCluster()
    steps: list[Callable[[], None]] = [
        m.join, m.join, m.join,
        lambda: m.crash(_Drawn("n1")),  # type: ignore[arg-type]
        lambda: m.crash(_Drawn("n2")),  # type: ignore[arg-type]
        lambda: m.freeze(_Drawn("n3")),  # type: ignore[arg-type]
        lambda: m.advance(15.0),
        lambda: m.crash(_Drawn("n4")),  # type: ignore[arg-type]
    ]
    for step in steps:
        step()
        m._check_all()  # the invariants, after every step as Hypothesis runs them
    assert m.seeds["n6"] == {"n4", "n5"} and m.seeds["n5"] == {"n4"}
    m.teardown()
    held = {m._by_id()[x.node_id] for x in m.cores["n3"].members()}
    assert held == {"n1", "n2", "n3"}  # the two sides never met: nobody could bridge them
