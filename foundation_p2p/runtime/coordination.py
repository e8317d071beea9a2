"""``node.coordination``: agents, sealed-bid auctions, votes and negotiation on a running node.

A thin, leaky layer over the node's Raft member, whose state machine is the composite
:class:`~foundation_p2p.consensus.machines.MachineSet`: coordination commands go through
``node.consensus.propose(coordination_envelope(wire.encode_command(...)))`` and every node
computes every outcome from its own replica of the log
(``core.consensus.state_machine.machine(MACHINE_COORDINATION)``, a
:class:`~foundation_p2p.coordination.machine.CoordinationMachine`).

Agents. An agent is a supervised singleton (``node.supervisor.start_singleton(name,
"coordination-agent", args)``) running the service defined here on every node. The instance
builds its handler (``factory(args)``: an object with ``bid(auction)``, ``vote(proposal)``,
``offer(negotiation)``, see :class:`~foundation_p2p.coordination.agents.AgentHandler`),
publishes its :class:`~foundation_p2p.coordination.agents.AgentRecord` with
``node.registry.put("agent/<id hex>", ...)``, and serves until stopped. The agent's id is
16 random bytes drawn by the node that started it and carried in the child's arguments (so
the agent keeps its id when the supervisor moves it; an id is no secret). The agent has no
key: before publishing its record, the instance binds the agent to its node through the
log (``submit(bind_command(core.identity, agent_id, epoch))``, epoch one above the
binding this replica holds; a ``stale`` refusal is retried at most ``BIND_ATTEMPTS``
times with the newer epoch, then the instance fails and the supervisor restarts it), and
every commit and vote of the agent is signed with the node's key (``core.identity``, the
one membership uses). The machines take them only while the agent is bound to that node.
A node without ``[consensus]`` hosts agents unbound (``coordination.binding.skipped``):
they are found by capability but cannot bid or vote.

Auctions. Each node watches the coordination commands its replica applies (a
``MachineSet`` listener feeding a bounded queue). When an ``OpenAuction`` is applied, every
agent hosted on the node that may bid asks its handler (in a worker thread, bounded by
``handler_timeout_s``) and submits the signed commitment (``bid_commands``); the amount and
nonce stay in this node's memory (bounded) until the ``CloseCommit`` entry is applied, then
the reveal is submitted. The node that opened the auction closes the commit phase once every
invited bidder committed or ``commit_timeout_s`` passed, and finalizes once every commitment
was opened or ``reveal_timeout_s`` passed. Proposals are retried on ``NotLeader`` /
``Indeterminate`` / overload until their deadline (the machine deduplicates retries).

Bounds (overflow policy, counter): applied events queued for the worker
``max_events`` (the oldest is dropped, ``coordination.events.dropped``); secret reveals kept
``max_pending_reveals`` (the oldest is dropped, its bid then counts as unrevealed,
``coordination.reveals.dropped``); concurrent handler calls ``max_handler_calls`` (others
wait their turn); tasks in flight for bids, reveals and votes ``max_tasks`` (a new one
beyond is not started, ``coordination.tasks.dropped``: that bid, reveal or vote is
missing, as if the agent had not answered); local agents ``max_local_agents`` (beyond: the
service refuses to start, ``coordination.agents.refused``).

Takeover: if the opener dies mid-auction, any node that saw an auction stay in its commit
(or reveal) phase for ``stall_timeout_s`` (default 60 s, counted from when it applied the
open or the close) submits the close (or the finalize) itself; several nodes doing so is
harmless (the machine takes the first and reports the others as duplicates). Auctions
tracked for this: at most ``max_events`` (the oldest is forgotten,
``coordination.stall.forgotten``). An opener whose own timeouts exceed ``stall_timeout_s``
may see another node close first.

Negotiation. Between two agents hosted here, :meth:`Coordination.negotiate` runs in this
process (handler calls in turn). Otherwise (or with ``replicated=True``) it goes through
the log: the caller submits ``OpenNegotiation``; every node, on applying the open or a
move, asks the handler of the party whose turn it is if it hosts that party, and submits
the move signed with its node key (``NegotiationMove``, at most once per negotiation and
round: ``max_events`` kept, the oldest forgotten); the caller submits
``CloseNegotiation`` once ``deadline_s`` passed without an outcome, and every node reads
the same agreement or typed failure from its replica.

Known limits: any member may bind any agent to itself (signed and logged, not prevented);
agents hosted on a node that lags behind a snapshot miss auctions opened inside
it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from foundation_p2p.consensus.machines import (
    MACHINE_COORDINATION,
    MachineSet,
    coordination_envelope,
)
from foundation_p2p.coordination.agents import (
    AGENT_PREFIX,
    AgentHandler,
    AgentRecord,
    auction_view,
    bid_commands,
    bind_command,
    find_by_capability,
    new_agent_id,
    proposal_view,
    record_from_value,
    vote_command,
)
from foundation_p2p.coordination.auction import DONE, REVEAL_PHASE, AuctionResult
from foundation_p2p.coordination.commitments import MAX_AMOUNT, sign_move
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.negotiation import (
    Accept,
    Agreement,
    Negotiation,
    NegotiationFailed,
    Offer,
    Reject,
)
from foundation_p2p.coordination.negotiation_machine import AGREED
from foundation_p2p.coordination.voting import VoteOutcome
from foundation_p2p.coordination.wire import (
    MAJORITY,
    MAX_ROUND_LIMIT,
    QUORUM,
    RULE_NAMES,
    SUPERMAJORITY,
    UNANIMOUS,
    WEIGHTED,
    CloseCommit,
    CloseNegotiation,
    CloseVote,
    Finalize,
    NegotiationMove,
    OpenAuction,
    OpenNegotiation,
    Propose,
    Voter,
    decode_command,
    encode_command,
)
from foundation_p2p.errors import ConfigError, FoundationError, WireError
from foundation_p2p.runtime.consensus import ConsensusError, Indeterminate, NotLeader
from foundation_p2p.wire import cbor

if TYPE_CHECKING:
    from foundation_p2p.runtime.node import Node

log = logging.getLogger("foundation_p2p.coordination")

AGENT_SERVICE = "coordination-agent"
"""The supervisor service name every node defines for agents."""
AUCTION_RULES = {name: rule for rule, name in RULE_NAMES.items()}
VOTE_RULES = {"majority": MAJORITY, "supermajority": SUPERMAJORITY, "unanimous": UNANIMOUS,
              "quorum": QUORUM, "weighted": WEIGHTED}
VOTE_DEADLINE_ENTRIES = 1_000_000
"""The backstop deadline of a vote, in log entries (the proposer closes it on timeout)."""
NEGOTIATION_DEADLINE_ENTRIES = 1_000_000
"""The backstop deadline of a replicated negotiation, in log entries (the caller closes it
after ``deadline_s``)."""
BIND_ATTEMPTS = 4
"""Bind submissions an agent instance makes (each refused ``stale`` is retried with the
newer epoch) before it fails."""


class CoordinationError(FoundationError):
    """A coordination request could not be completed (names what and why)."""


class CoordinationTimeout(CoordinationError):
    """A coordination step did not complete within its deadline."""


@dataclass(slots=True)
class _LocalAgent:
    record: AgentRecord
    handler: AgentHandler


def _resolve_factory(target: str, local: Mapping[str, Callable[[Any], Any]]) -> Any:
    if target.startswith("callable:"):
        fn = local.get(target)
        if fn is None:
            raise ConfigError(f"agent factory {target!r} is not defined on this node")
        return fn
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"agent factory {target!r} is not 'module:attribute'")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _target_name(module_or_callable: str | Callable[[Any], Any]) -> str:
    if isinstance(module_or_callable, str):
        return module_or_callable
    if not callable(module_or_callable):
        raise ConfigError(f"agent factory {module_or_callable!r} is neither 'module:attr' "
                          "nor callable")
    mod = getattr(module_or_callable, "__module__", "?")
    qual = getattr(module_or_callable, "__qualname__", repr(module_or_callable))
    return f"callable:{mod}:{qual}"


def parse_vote_rule(rule: str, quorum: int = 0) -> tuple[int, int]:
    """``(rule number, quorum)`` for ``"majority"``, ``"supermajority"``, ``"unanimous"``,
    ``"weighted"``, ``"quorum"`` (with ``quorum`` n) or ``"quorum(n)"``."""
    text = rule.strip().lower()
    if text.startswith("quorum(") and text.endswith(")"):
        try:
            quorum = int(text[7:-1])
        except ValueError:
            raise ConfigError(f"vote rule {rule!r}: quorum(n) needs an integer n") from None
        text = "quorum"
    if text not in VOTE_RULES:
        raise ConfigError(f"vote rule {rule!r} is not one of {', '.join(VOTE_RULES)} or "
                          "quorum(n)")
    if (text == "quorum") != (quorum > 0):
        raise ConfigError(f"vote rule {rule!r}: quorum n > 0 goes with quorum(n) only")
    return VOTE_RULES[text], quorum


class Coordination:
    """``node.coordination``; see the module docstring."""

    def __init__(
        self,
        node: Node,
        *,
        handler_timeout_s: float = 2.0,
        max_events: int = 4096,
        max_pending_reveals: int = 4096,
        max_handler_calls: int = 16,
        max_tasks: int = 4096,
        max_local_agents: int = 1024,
        stall_timeout_s: float = 60.0,
    ) -> None:
        self._node = node
        self.stall_timeout_s = stall_timeout_s
        """How long an auction may stay in one phase before any node moves it on."""
        self._stalls: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self.handler_timeout_s = handler_timeout_s
        """Longest an agent's handler may take to answer one request."""
        self.max_events = max_events
        self.max_pending_reveals = max_pending_reveals
        self.max_local_agents = max_local_agents
        self._events: deque[tuple[int, bytes, bytes]] = deque()
        self._reveals: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
        self._agents: dict[bytes, _LocalAgent] = {}
        self._moves_started: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        self._factories: dict[str, Callable[[Any], Any]] = {}
        self._limiter = trio.CapacityLimiter(max_handler_calls)
        self.max_tasks = max_tasks
        self._tasks = 0
        self._worker = False
        self._remove_listener: Callable[[], None] | None = None
        sub = node.core.consensus
        if sub is not None and isinstance(sub.state_machine, MachineSet):
            self._remove_listener = sub.state_machine.add_listener(
                MACHINE_COORDINATION, self._on_applied)
        node.supervisor.define_service(AGENT_SERVICE, self._agent_service)

    # -- the replica ------------------------------------------------------------------

    @property
    def machine(self) -> CoordinationMachine:
        """This node's replica of the coordination state machine
        (``core.consensus.state_machine.machine(1)``); ``CoordinationError`` without
        ``[consensus]``."""
        sub = self._node.core.consensus
        if sub is None or not isinstance(sub.state_machine, MachineSet):
            raise CoordinationError("coordination needs a [consensus] table (a Raft member)")
        m = sub.state_machine.machine(MACHINE_COORDINATION)
        assert isinstance(m, CoordinationMachine)
        return m

    @property
    def results(self) -> dict[bytes, AuctionResult]:
        """Every finalized auction this replica still holds, by id (a copy)."""
        auctions = self.machine.auctions
        return {aid: r for aid in auctions.finished if (r := auctions.result(aid)) is not None}

    async def wait_result(self, auction_id: bytes, timeout_s: float = 30.0) -> AuctionResult:
        """The result of ``auction_id`` once this node applied its ``Finalize``
        (``CoordinationTimeout`` after ``timeout_s``). Equivalent lower-level calls:
        ``node.wait_until(lambda: machine.auctions.result(id) is not None)``."""
        with trio.move_on_after(timeout_s):
            await self._node.wait_until(
                lambda: self.machine.auctions.result(auction_id) is not None)
        result = self.machine.auctions.result(auction_id)
        if result is None:
            phase = self.machine.auctions.phase(auction_id)
            raise CoordinationTimeout(f"auction {auction_id.hex()}: no result here after "
                                      f"{timeout_s} s (phase {phase})")
        return result

    # -- agents -----------------------------------------------------------------------

    def start_coordination_agent(
        self,
        module_or_callable: str | Callable[[Any], Any],
        args: Any = None,
        *,
        name: str | None = None,
        capabilities: Iterable[str] = (),
        protocols: Iterable[str] = ("auction", "vote", "negotiation"),
        requirements: Mapping[str, int] | None = None,
    ) -> AgentRecord:
        """Start a supervised agent and return its record (published in the registry once
        its instance runs: :meth:`wait_agents`). ``module_or_callable`` is
        ``"package.module:factory"`` (importable on every node) or a callable (then only
        nodes that started or :meth:`define_agent`-ed it can host it); ``factory(args)``
        returns the handler.

        Equivalent lower-level calls: ``node.supervisor.define_service("coordination-agent",
        ...)`` (done on every node), ``new_agent_id(os.urandom)`` for the agent id,
        ``AgentRecord.create(...)``, ``node.supervisor.start_singleton("agent-<id hex>",
        "coordination-agent", args)``; the instance then calls :meth:`submit` of
        ``bind_command(core.identity, agent_id, epoch)`` and
        ``node.registry.put("agent/<id hex>", record.to_value(), metadata)``.
        """
        target = _target_name(module_or_callable)
        if not isinstance(module_or_callable, str):
            self._factories[target] = module_or_callable
        agent_id = new_agent_id(os.urandom)
        record = AgentRecord.create(name or f"agent-{agent_id.hex()[:8]}", agent_id,
                                    capabilities, protocols, requirements)
        spec_args = {"target": target, "args": args, "record": record.to_value()}
        log.debug("start_coordination_agent %s: Supervisor.start_singleton", record.name)
        self._node.supervisor.start_singleton("agent-" + record.agent_id.hex(), AGENT_SERVICE,
                                              spec_args)
        return record

    def define_agent(self, fn: Callable[[Any], Any]) -> None:
        """Let this node host agents built by the callable ``fn`` (started elsewhere)."""
        self._factories[_target_name(fn)] = fn

    def find_agents(self, capability: str, protocol: str | None = None) -> list[AgentRecord]:
        """Registered agents with ``capability`` (and ``protocol``), sorted by id.
        Equivalent lower-level calls: ``node.registry.select("agent/")`` then
        ``coordination.agents.find_by_capability``."""
        found, bad = find_by_capability(self._node.registry.select(AGENT_PREFIX), capability,
                                        protocol=protocol)
        if bad:
            self._node.counters.inc("coordination.agents.malformed", bad)
        return found

    def agent(self, agent_id: bytes) -> AgentRecord:
        """The registered record of ``agent_id`` (``CoordinationError`` if not visible)."""
        entry = self._node.registry.lookup(AGENT_PREFIX + agent_id.hex())
        if entry is None:
            raise CoordinationError(f"agent {agent_id.hex()} is not registered")
        try:
            return record_from_value(entry.value)
        except WireError as exc:
            raise CoordinationError(f"agent {agent_id.hex()}: bad record: {exc}") from None

    async def wait_agents(self, count: int, capability: str | None = None,
                          timeout_s: float = 30.0) -> list[AgentRecord]:
        """Wait until at least ``count`` agents (with ``capability``, if given) are
        registered; their records (``CoordinationTimeout`` after ``timeout_s``)."""
        def found() -> list[AgentRecord]:
            if capability is not None:
                return self.find_agents(capability)
            out = []
            for e in self._node.registry.select(AGENT_PREFIX):
                try:
                    out.append(record_from_value(e.value))
                except WireError:
                    continue
            return out

        with trio.move_on_after(timeout_s):
            await self._node.wait_until(lambda: len(found()) >= count)
        agents = found()
        if len(agents) < count:
            raise CoordinationTimeout(f"{len(agents)} of {count} agents registered after "
                                      f"{timeout_s} s")
        return agents

    @property
    def local_agents(self) -> list[AgentRecord]:
        """The agents whose instance runs on this node now."""
        return [a.record for a in self._agents.values()]

    async def _agent_service(self, node: Node, args: Any, handoff: Any) -> Any:
        """The supervised body of one agent (see the module docstring)."""
        if not isinstance(args, dict) or not {"target", "record"} <= set(args):
            raise ConfigError("coordination-agent: args must carry target and record")
        record = record_from_value(args["record"])
        if len(self._agents) >= self.max_local_agents:
            node.counters.inc("coordination.agents.refused")
            raise CoordinationError(f"this node already hosts {self.max_local_agents} agents")
        factory = _resolve_factory(args["target"], self._factories)
        handler = factory(args.get("args"))
        self._ensure_worker()
        if isinstance(handoff, list):  # reveals kept by the previous instance
            for item in handoff:
                if isinstance(item, list) and len(item) == 2 and all(
                        isinstance(x, bytes) for x in item):
                    self._keep_reveal(item[0], record.agent_id, item[1])
        if node.core.consensus is not None:
            await self.bind(record.agent_id)
        else:  # no Raft member here: the agent is found, but cannot bid or vote
            node.counters.inc("coordination.binding.skipped")
            log.warning("agent %s runs on a node without [consensus]: not bound, its bids "
                        "and votes cannot be submitted", record.name)
        self._agents[record.agent_id] = _LocalAgent(record, handler)
        name, value, metadata = record.to_registry()
        node.registry.put(name, value, metadata)
        log.info("agent %s (%s) runs here", record.name, record.agent_id.hex())
        try:
            await node.supervisor.stop_requested()
            return [[aid, rev] for (aid, bidder), rev in self._reveals.items()
                    if bidder == record.agent_id]
        finally:
            self._agents.pop(record.agent_id, None)
            if not node._closed:
                node.registry.unregister(name)

    async def bind(self, agent_id: bytes, timeout_s: float = 30.0) -> int:
        """Bind ``agent_id`` to this node through the log; the epoch it was bound at.

        ``CoordinationError`` if every one of ``BIND_ATTEMPTS`` binds was refused (each
        ``stale`` refusal is retried with the epoch this replica shows then).
        Equivalent lower-level calls: ``machine.bindings.epoch(agent_id)``,
        ``bind_command(core.identity, agent_id, epoch + 1)``, :meth:`submit`.
        """
        identity = self._node.core.identity
        last: list[Any] = []
        for _ in range(BIND_ATTEMPTS):
            epoch = self.machine.bindings.epoch(agent_id) + 1
            log.debug("agent %s: submit(bind_command(core.identity, epoch %d))",
                      agent_id.hex(), epoch)
            last = await self.submit(bind_command(identity, agent_id, epoch), timeout_s)
            if last[0] in (0, 1):
                self._node.counters.inc("coordination.binding.submitted")
                return epoch
            self._node.counters.inc("coordination.binding.retried")
            if last[1] != "stale":
                break
        self._node.counters.inc("coordination.binding.failed")
        raise CoordinationError(f"agent {agent_id.hex()}: bind refused: {last[1:]}")

    # -- the applied log --------------------------------------------------------------

    def _on_applied(self, index: int, command: bytes, result: bytes) -> None:
        """MachineSet listener (inside the pump): queue what local agents must act on."""
        if len(self._events) >= self.max_events:
            self._events.popleft()
            self._node.counters.inc("coordination.events.dropped")
        self._events.append((index, command, result))

    def _ensure_worker(self) -> None:
        if not self._worker:
            self._worker = True
            self._node.start_service(self._work, name="coordination-worker")

    async def _work(self) -> None:
        node = self._node
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep)
                while True:
                    await node.wait_until(lambda: bool(self._events))
                    while self._events:
                        _, command, result = self._events.popleft()
                        self._handle(nursery, command, result)
        except* trio.ClosedResourceError:
            log.debug("coordination worker: the node closed")

    def _handle(self, nursery: trio.Nursery, command: bytes, result: bytes) -> None:
        try:
            cmd = decode_command(command)
            status = cbor.decode(result)[0]
        except (WireError, IndexError, TypeError, KeyError):
            return
        if status != 0:
            return
        if isinstance(cmd, OpenAuction | CloseCommit | Finalize):
            self._track(cmd)
        if isinstance(cmd, OpenAuction):
            for agent in list(self._agents.values()):
                if "auction" not in agent.record.protocols:
                    continue
                if cmd.bidders and agent.record.agent_id not in cmd.bidders:
                    continue
                self._spawn(nursery, self._bid, agent, cmd)
        elif isinstance(cmd, CloseCommit):
            for (aid, bidder), reveal in list(self._reveals.items()):
                if aid == cmd.auction_id:
                    del self._reveals[(aid, bidder)]
                    self._spawn(nursery, self._submit_quietly, reveal, "reveal")
        elif isinstance(cmd, OpenNegotiation | NegotiationMove):
            self._next_move(nursery, cmd.negotiation_id)
        elif isinstance(cmd, Propose):
            eligible = {v.voter for v in cmd.eligible}
            for agent in list(self._agents.values()):
                if agent.record.agent_id in eligible and "vote" in agent.record.protocols:
                    self._spawn(nursery, self._vote, agent, cmd)

    def _next_move(self, nursery: trio.Nursery, nid: bytes) -> None:
        """If the party whose turn it is in negotiation ``nid`` is hosted here, ask it for
        its move (once per negotiation and round)."""
        b = self.machine.negotiations.bargains.get(nid)
        if b is None or b.outcome is not None:
            return
        agent = self._agents.get(b.state.turn)
        if agent is None or "negotiation" not in agent.record.protocols:
            return
        key = (nid, b.state.round)
        if key in self._moves_started:
            return
        if len(self._moves_started) >= self.max_events:
            self._moves_started.popitem(last=False)
        self._moves_started[key] = None
        self._spawn(nursery, self._negotiation_move, agent, nid, b.state.round)

    async def _negotiation_move(self, agent: _LocalAgent, nid: bytes, rnd: int) -> None:
        b = self.machine.negotiations.bargains.get(nid)
        if b is None or b.outcome is not None or b.state.round != rnd:
            return
        view = b.state.view(agent.record.agent_id)
        try:
            move = await self._call_handler(functools.partial(agent.handler.offer, view),
                                            f"agent {agent.record.name} offer")
        except Exception as exc:  # a handler's failure is the agent's: no move
            self._node.counters.inc("coordination.handler.errors")
            log.warning("agent %s: no move in negotiation %s: %s", agent.record.name,
                        nid.hex(), exc)
            return
        if isinstance(move, Offer) and type(move.value) is int and 0 <= move.value <= (
                MAX_AMOUNT):
            kind, value = 0, move.value
        elif isinstance(move, Accept | Reject):
            kind, value = (1 if isinstance(move, Accept) else 2), 0
        else:
            self._node.counters.inc("coordination.handler.errors")
            log.warning("agent %s: move %r in negotiation %s is not an Offer (0..2**64-1), "
                        "Accept or Reject", agent.record.name, move, nid.hex())
            return
        identity = self._node.core.identity
        log.debug("agent %s moves in %s round %d: submit(NegotiationMove, sign_move)",
                  agent.record.name, nid.hex(), rnd)
        await self._submit_quietly(encode_command(NegotiationMove(
            nid, agent.record.agent_id, identity.node_id, rnd, kind, value,
            sign_move(identity, agent.record.agent_id, nid, rnd, kind, value))), "move")

    def _track(self, cmd: OpenAuction | CloseCommit | Finalize) -> None:
        aid = cmd.auction_id
        if isinstance(cmd, Finalize):
            self._stalls.pop(aid, None)
            return
        phase = 0 if isinstance(cmd, OpenAuction) else REVEAL_PHASE
        self._stalls.pop(aid, None)
        if len(self._stalls) >= self.max_events:
            self._stalls.popitem(last=False)
            self._node.counters.inc("coordination.stall.forgotten")
        self._stalls[aid] = (phase, trio.current_time())

    async def _sweep(self) -> None:
        """Move on auctions stuck in one phase for ``stall_timeout_s`` (a timer, every
        quarter of it)."""
        while True:
            await trio.sleep(self.stall_timeout_s / 4)
            now = trio.current_time()
            for aid, (phase, since) in list(self._stalls.items()):
                if now - since < self.stall_timeout_s:
                    continue
                a = self.machine.auctions.auctions.get(aid)
                if a is None or a.phase != phase:
                    self._stalls.pop(aid, None)
                    continue
                self._stalls[aid] = (phase, now)
                self._node.counters.inc("coordination.stall.takeovers")
                command = CloseCommit(aid) if phase == 0 else Finalize(aid)
                log.info("auction %s stalled in phase %d for %.1f s: submitting %s",
                         aid.hex(), phase, now - since, type(command).__name__)
                await self._submit_quietly(encode_command(command), "takeover")

    def _spawn(self, nursery: trio.Nursery, fn: Callable[..., Awaitable[None]],
               *args: Any) -> None:
        if self._tasks >= self.max_tasks:
            self._node.counters.inc("coordination.tasks.dropped")
            return
        self._tasks += 1

        async def run() -> None:
            try:
                await fn(*args)
            finally:
                self._tasks -= 1

        nursery.start_soon(run)

    async def _call_handler(self, fn: Callable[[], Any], what: str) -> Any:
        async with self._limiter:
            with trio.move_on_after(self.handler_timeout_s):
                return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
        self._node.counters.inc("coordination.handler.timeouts")
        raise CoordinationTimeout(f"{what}: the agent's handler took over "
                                  f"{self.handler_timeout_s} s")

    async def _bid(self, agent: _LocalAgent, cmd: OpenAuction) -> None:
        view = auction_view(cmd)
        log.debug("agent %s bids in %s: bid_commands (handler.bid, seal_bid)",
                  agent.record.name, cmd.auction_id.hex())
        try:
            cmds = await self._call_handler(
                lambda: bid_commands(agent.handler, view, agent.record.agent_id,
                                     self._node.core.identity, os.urandom),
                f"agent {agent.record.name} bid")
        except Exception as exc:  # a handler's failure is the agent's
            self._node.counters.inc("coordination.handler.errors")
            log.warning("agent %s: no bid in %s: %s", agent.record.name,
                        cmd.auction_id.hex(), exc)
            return
        if cmds is None:
            return
        commit, reveal = cmds
        self._keep_reveal(cmd.auction_id, agent.record.agent_id, reveal)
        await self._submit_quietly(commit, "commit")
        a = self.machine.auctions.auctions.get(cmd.auction_id)
        if a is not None and a.phase == REVEAL_PHASE:  # closed while we were committing
            pending = self._reveals.pop((cmd.auction_id, agent.record.agent_id), None)
            if pending is not None:
                await self._submit_quietly(pending, "reveal")

    def _keep_reveal(self, auction_id: bytes, bidder: bytes, reveal: bytes) -> None:
        if len(self._reveals) >= self.max_pending_reveals:
            self._reveals.popitem(last=False)
            self._node.counters.inc("coordination.reveals.dropped")
        self._reveals[(auction_id, bidder)] = reveal

    async def _vote(self, agent: _LocalAgent, cmd: Propose) -> None:
        view = proposal_view(cmd)
        try:
            vote = await self._call_handler(
                lambda: vote_command(agent.handler, view, agent.record.agent_id,
                                     self._node.core.identity),
                f"agent {agent.record.name} vote")
        except Exception as exc:  # a handler's failure is the agent's
            self._node.counters.inc("coordination.handler.errors")
            log.warning("agent %s: no vote on %s: %s", agent.record.name,
                        cmd.proposal_id.hex(), exc)
            return
        await self._submit_quietly(vote, "vote")

    async def _submit_quietly(self, command: bytes, what: str) -> None:
        try:
            await self.submit(command, timeout_s=30.0)
        except CoordinationError as exc:
            self._node.counters.inc("coordination.submit.failed")
            log.warning("%s not submitted: %s", what, exc)

    # -- submitting -------------------------------------------------------------------

    async def submit(self, command: bytes, timeout_s: float = 30.0) -> list[Any]:
        """Replicate the coordination ``command`` and return its decoded result
        (``[0, detail]``, ``[1, detail]`` or ``[2, code, message]``), retrying on
        ``NotLeader``/``Indeterminate``/overload until ``timeout_s``. Equivalent lower-level
        calls: ``node.consensus.propose(coordination_envelope(command))`` and
        ``cbor.decode``."""
        env = coordination_envelope(command)
        delay = 0.02
        last = "no attempt"
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    raw = await self._node.consensus.propose(env)
                    value = cbor.decode(raw)
                    if not isinstance(value, list) or not value:
                        raise CoordinationError(f"unexpected result {value!r}")
                    return value
                except (NotLeader, Indeterminate) as exc:
                    last = str(exc)
                    self._node.counters.inc("coordination.submit.retries")
                    if isinstance(exc, NotLeader):
                        with trio.move_on_after(delay):
                            await self._node.consensus.wait_leader()
                except ConsensusError as exc:
                    if "no [consensus]" in exc.reason:
                        raise CoordinationError(str(exc)) from None
                    last = str(exc)
                    self._node.counters.inc("coordination.submit.retries")
                await trio.sleep(delay)  # retry backoff (not synchronisation)
                delay = min(delay * 2, 0.5)
        raise CoordinationTimeout(f"command not applied within {timeout_s} s ({last})")

    # -- auctions ---------------------------------------------------------------------

    async def open_auction(
        self,
        resources: Iterable[str],
        *,
        rule: str = "second-price",
        reserve: int = 0,
        units: int = 1,
        bidders: Iterable[bytes] | None = None,
        auction_id: bytes | None = None,
        commit_timeout_s: float = 5.0,
        reveal_timeout_s: float = 5.0,
    ) -> bytes:
        """Open a sealed-bid auction and drive it (close the commit phase, finalize) in the
        background; its id. Results: :meth:`wait_result` on any node.

        Equivalent lower-level calls: :meth:`submit` of ``OpenAuction`` (agents on every
        node then commit, see the module docstring), ``node.wait_until`` (all invited
        committed) bounded by ``commit_timeout_s``, :meth:`submit` of ``CloseCommit``,
        ``node.wait_until`` (all revealed) bounded by ``reveal_timeout_s``, :meth:`submit`
        of ``Finalize``.
        """
        if rule not in AUCTION_RULES:
            raise ConfigError(f"auction rule {rule!r} is not one of {', '.join(AUCTION_RULES)}")
        aid = auction_id if auction_id is not None else os.urandom(16)
        invited = tuple(sorted(set(bidders))) if bidders is not None else ()
        if bidders is not None and not invited:
            raise ConfigError("open_auction: bidders, when given, must name at least one")
        cmd = OpenAuction(aid, tuple(resources), AUCTION_RULES[rule], reserve, units, invited)
        data = encode_command(cmd)  # checks nothing; the machine refuses a bad open
        self._ensure_worker()
        log.debug("open_auction %s: submit(OpenAuction)", aid.hex())
        result = await self.submit(data)
        if result[0] == 2:
            raise CoordinationError(f"open refused: {result[1]}: {result[2]}")
        self._node.start_service(self._drive, aid, invited, commit_timeout_s,
                                 reveal_timeout_s, name=f"auction-{aid.hex()[:8]}")
        return aid

    async def _drive(self, aid: bytes, invited: tuple[bytes, ...], commit_timeout_s: float,
                     reveal_timeout_s: float) -> None:
        try:
            await self._drive_phases(aid, invited, commit_timeout_s, reveal_timeout_s)
        except trio.ClosedResourceError:
            log.debug("auction %s: the node closed before it was finalized", aid.hex())

    async def _drive_phases(self, aid: bytes, invited: tuple[bytes, ...],
                            commit_timeout_s: float, reveal_timeout_s: float) -> None:
        node = self._node

        def auction() -> Any:
            return self.machine.auctions.auctions.get(aid)

        def all_committed() -> bool:
            a = auction()
            return a is None or a.phase != 0 or (bool(invited) and set(invited) <= set(a.commits))

        def all_revealed() -> bool:
            a = auction()
            return a is None or a.phase == DONE or set(a.commits) <= (
                set(a.reveals) | a.mismatched)

        with trio.move_on_after(commit_timeout_s):
            await node.wait_until(all_committed)
        await self._submit_quietly(encode_command(CloseCommit(aid)), "close-commit")
        with trio.move_on_after(reveal_timeout_s):
            await node.wait_until(all_revealed)
        await self._submit_quietly(encode_command(Finalize(aid)), "finalize")

    async def run_auction(self, resources: Iterable[str], *, timeout_s: float = 30.0,
                          **kwargs: Any) -> AuctionResult:
        """:meth:`open_auction` then :meth:`wait_result`."""
        aid = await self.open_auction(resources, **kwargs)
        return await self.wait_result(aid, timeout_s)

    async def coordinate_resource_allocation(
        self,
        agent_ids: Iterable[bytes],
        resources: Iterable[str],
        *,
        rule: str = "second-price",
        reserve: int = 0,
        units: int = 1,
        timeout_s: float = 30.0,
        commit_timeout_s: float = 5.0,
        reveal_timeout_s: float = 5.0,
    ) -> AuctionResult:
        """Allocate ``resources`` among ``agent_ids`` by a sealed-bid auction (second-price
        by default); the result, agreed by every node.

        Equivalent lower-level calls: :meth:`agent` for each id (they must be registered),
        :meth:`open_auction` with ``bidders=agent_ids`` (``submit(OpenAuction)``; the
        agents' nodes submit ``CommitBid`` then ``RevealBid``; this node submits
        ``CloseCommit`` and ``Finalize``), then :meth:`wait_result`.
        """
        ids = sorted(set(agent_ids))
        if not ids:
            raise ConfigError("coordinate_resource_allocation: no agent ids")
        for a in ids:
            self.agent(a)
        aid = await self.open_auction(resources, rule=rule, reserve=reserve, units=units,
                                      bidders=ids, commit_timeout_s=commit_timeout_s,
                                      reveal_timeout_s=reveal_timeout_s)
        return await self.wait_result(aid, timeout_s)

    # -- votes ------------------------------------------------------------------------

    async def coordinate_consensus(
        self,
        agent_ids: Iterable[bytes],
        proposal: str,
        *,
        rule: str = "majority",
        quorum: int = 0,
        weights: Mapping[bytes, int] | None = None,
        timeout: float = 10.0,
    ) -> bool:
        """Ask the agents ``agent_ids`` to vote on ``proposal`` (a short text); ``True`` if
        accepted, ``False`` if rejected. Raises
        :class:`~foundation_p2p.coordination.voting.ConsensusTimeout` if the votes did not
        decide it within ``timeout`` seconds, :class:`~foundation_p2p.coordination.voting.
        QuorumNotMet` if too few voted.

        Equivalent lower-level calls: :meth:`agent` for each id, :meth:`submit` of
        ``Propose`` (every node's agents then submit signed ``CastVote`` s), ``node.wait_until``
        (``machine.votes.outcome(id)``) bounded by ``timeout``, :meth:`submit` of
        ``CloseVote`` if undecided, then ``machine.votes.decision(id)``.
        """
        outcome = await self.vote(agent_ids, proposal, rule=rule, quorum=quorum,
                                  weights=weights, timeout=timeout)
        decision = self.machine.votes.decision(outcome.proposal_id)
        assert decision is not None
        return decision

    async def vote(
        self,
        agent_ids: Iterable[bytes],
        proposal: str,
        *,
        rule: str = "majority",
        quorum: int = 0,
        weights: Mapping[bytes, int] | None = None,
        timeout: float = 10.0,
    ) -> VoteOutcome:
        """Run a vote and return its outcome (any status; see
        :meth:`coordinate_consensus`)."""
        kind, n = parse_vote_rule(rule, quorum)
        records = [self.agent(a) for a in sorted(set(agent_ids))]
        if not records:
            raise ConfigError("vote: no agent ids")
        voters = tuple(Voter(r.agent_id, (weights or {}).get(r.agent_id, 1))
                       for r in records)
        pid = os.urandom(16)
        self._ensure_worker()
        result = await self.submit(encode_command(
            Propose(pid, proposal, kind, n, voters, VOTE_DEADLINE_ENTRIES)))
        if result[0] == 2:
            raise CoordinationError(f"proposal refused: {result[1]}: {result[2]}")
        with trio.move_on_after(timeout):
            await self._node.wait_until(lambda: self.machine.votes.outcome(pid) is not None)
        if self.machine.votes.outcome(pid) is None:
            await self.submit(encode_command(CloseVote(pid)))
        out = self.machine.votes.outcome(pid)
        if out is None:
            raise CoordinationError(f"proposal {pid.hex()}: no outcome after close")
        return out

    # -- negotiation ------------------------------------------------------------------

    async def negotiate(
        self,
        initiator: bytes,
        responder: bytes,
        *,
        subject: str = "",
        round_limit: int = 16,
        deadline_s: float = 10.0,
        replicated: bool | None = None,
    ) -> Agreement:
        """Alternating offers between two agents, ``initiator`` first; the agreement, or
        :class:`NegotiationFailed` (``rejected``, ``round_limit``, ``deadline``,
        ``invalid_move``).

        Both agents hosted here (and ``replicated`` not true): in this process, positions
        in milliseconds since the start, the deadline ``deadline_s`` later. Equivalent
        lower-level calls: ``Negotiation(id, initiator, responder, ...)``, then
        ``negotiation.move(party, handler.offer(negotiation.view(party)), position)`` in
        turn (each handler call bounded by ``handler_timeout_s``).

        Otherwise through the log (the agents may be hosted anywhere): :meth:`submit` of
        ``OpenNegotiation``; the parties' nodes submit signed ``NegotiationMove`` s;
        ``node.wait_until(machine.negotiations.outcome(id))`` bounded by ``deadline_s``;
        :meth:`submit` of ``CloseNegotiation`` if undecided; the outcome as an
        :class:`Agreement` or :class:`NegotiationFailed`.
        """
        if replicated or (replicated is None and not (
                initiator in self._agents and responder in self._agents)):
            return await self._negotiate_logged(initiator, responder, subject, round_limit,
                                                deadline_s)
        parties = {}
        for a in (initiator, responder):
            agent = self._agents.get(a)
            if agent is None:
                raise CoordinationError(f"agent {a.hex()} is not hosted on this node "
                                        "(negotiate runs between local agents)")
            parties[a] = agent
        nid = os.urandom(16)
        neg = Negotiation(nid, initiator, responder, subject=subject,
                          deadline=int(deadline_s * 1000), round_limit=round_limit)
        start = trio.current_time()
        while not neg.done:
            party = neg.turn
            agent = parties[party]
            view = neg.view(party)
            try:
                move = await self._call_handler(functools.partial(agent.handler.offer, view),
                                                f"agent {agent.record.name} offer")
            except CoordinationTimeout:
                move = None  # counts as no move: fails by deadline below
                neg.move(party, move, int(deadline_s * 1000) + 1)
                break
            neg.move(party, move, int((trio.current_time() - start) * 1000))
        if neg.failure is not None:
            raise neg.failure
        return neg.result()

    async def _negotiate_logged(self, initiator: bytes, responder: bytes, subject: str,
                                round_limit: int, deadline_s: float) -> Agreement:
        if initiator == responder:
            raise ConfigError("a negotiation needs two different parties")
        if not 1 <= round_limit <= MAX_ROUND_LIMIT:
            raise ConfigError(f"round_limit must be 1..{MAX_ROUND_LIMIT}")
        for a in (initiator, responder):
            self.agent(a)  # registered somewhere (CoordinationError if not)
        nid = os.urandom(16)
        self._ensure_worker()
        log.debug("negotiate %s: submit(OpenNegotiation)", nid.hex())
        result = await self.submit(encode_command(OpenNegotiation(
            nid, subject, initiator, responder, round_limit, NEGOTIATION_DEADLINE_ENTRIES)))
        if result[0] == 2:
            raise CoordinationError(f"negotiation refused: {result[1]}: {result[2]}")
        negotiations = self.machine.negotiations
        with trio.move_on_after(deadline_s):
            await self._node.wait_until(lambda: negotiations.outcome(nid) is not None)
        if self.machine.negotiations.outcome(nid) is None:
            await self.submit(encode_command(CloseNegotiation(nid)))
        out = self.machine.negotiations.outcome(nid)
        if out is None:
            raise CoordinationError(f"negotiation {nid.hex()}: no outcome after close")
        if out.status == AGREED:
            assert out.value is not None and out.offered_by and out.accepted_by
            return Agreement(nid, out.value, out.offered_by, out.accepted_by, out.rounds)
        raise NegotiationFailed(nid, out.status, out.detail or f"at entry {out.decided_at}")

    # -- closing ----------------------------------------------------------------------

    def _close(self) -> None:
        """The node closes: stop listening to the log."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None


__all__ = [
    "AGENT_SERVICE",
    "Coordination",
    "CoordinationError",
    "CoordinationTimeout",
    "NegotiationFailed",
    "parse_vote_rule",
]
