"""``CoordinationMachine``: agent bindings, auctions and votes in one replicated state machine.

Commands 1..5 go to the :class:`AuctionMachine`, 16..18 to the :class:`VoteMachine`,
9..11 to the :class:`~foundation_p2p.coordination.negotiation_machine.NegotiationMachine`,
8 (bind) to the :class:`~foundation_p2p.coordination.bindings.BindingTable` the three
share (commits, votes and moves are checked against the binding of their agent at their
log position); every entry, whatever it is, first lets the vote and negotiation machines
close what their deadline has passed (deadlines are counted in log entries, so they must
see every index).

Inside a node's Raft group it is machine 1 of the composite
:class:`~foundation_p2p.consensus.machines.MachineSet`: its commands travel enveloped, and
the composite calls :meth:`CoordinationMachine.observe` for every other entry (KV ones
included) so that vote deadlines, counted in log entries, close on time.

Queries (:meth:`CoordinationMachine.query`, linearizable through ``read_query``):
``[1, auction_id]`` answers ``[0, [phase, result]]`` (phase ``"commit"``, ``"reveal"``,
``"done"`` or ``null`` if unknown; result the auction result's wire form or ``null``);
``[16, proposal_id]`` answers ``[0, outcome]`` (the vote outcome's wire form or ``null``).
A bad query gets ``[2, "malformed", message]``.

``[8, agent_id]`` answers ``[0, binding]`` (``[agent_id, node_id, public_key, epoch,
bound_at]`` or ``null``); ``[9, negotiation_id]`` answers ``[0, outcome]`` (the
negotiation outcome's wire form or ``null``).

Equivalent lower-level calls: ``AuctionMachine.apply`` / ``VoteMachine.apply`` /
``BindingTable.apply`` by command number, and ``VoteMachine.expire(index)`` for the entries
routed elsewhere.
"""

from __future__ import annotations

from foundation_p2p.consensus.state_machine import AppliedIndex
from foundation_p2p.errors import MalformedError, WireError
from foundation_p2p.wire import cbor

from .auction import AuctionMachine
from .bindings import DEFAULT_MAX_AGENTS, BindingTable
from .negotiation_machine import NegotiationMachine
from .voting import VoteMachine
from .wire import (
    BIND,
    CLOSE_NEGOTIATION,
    NEGOTIATE,
    OPEN,
    PROPOSE,
    Bind,
    CloseNegotiation,
    NegotiationMove,
    OpenNegotiation,
    applied,
    decode_command,
    decode_snapshot,
    refused,
)

SNAPSHOT_VERSION = 2
MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024


class CoordinationMachine:
    """Bindings and both coordination state machines behind one ``StateMachine``."""

    def __init__(self, *, max_agents: int = DEFAULT_MAX_AGENTS) -> None:
        self.bindings = BindingTable(max_agents=max_agents)
        self.auctions = AuctionMachine(bindings=self.bindings)
        self.votes = VoteMachine(bindings=self.bindings)
        self.negotiations = NegotiationMachine(bindings=self.bindings)
        self._applied = AppliedIndex()

    @property
    def applied_index(self) -> int:
        """The index of the last applied entry (the consensus subsystem skips entries at or
        below it, e.g. after a restore)."""
        return self._applied.index

    def apply(self, index: int, command: bytes) -> bytes:
        """Route the command at ``index`` by its number; never raises for any bytes."""
        self._applied.advance(index)
        tag = _tag(command)
        self.negotiations.expire(index)
        if tag is not None and tag >= PROPOSE:
            return self.votes.apply(index, command)
        self.votes.expire(index)
        if tag == BIND or (tag is not None and NEGOTIATE <= tag <= CLOSE_NEGOTIATION):
            try:
                cmd = decode_command(command)
            except WireError as exc:
                area = "binding" if tag == BIND else "negotiation"
                self.bindings.counters.inc(f"coordination.{area}.refused.malformed")
                return refused("malformed", str(exc))
            if isinstance(cmd, Bind):
                return self.bindings.apply(index, cmd)
            assert isinstance(cmd, OpenNegotiation | NegotiationMove | CloseNegotiation)
            return self.negotiations.apply(index, cmd)
        if tag is None:
            self.auctions.counters.inc("coordination.auction.refused.malformed")
            return refused("malformed", "a coordination command is a CBOR array whose first "
                           "element is a small unsigned integer")
        return self.auctions.apply(index, command)

    def observe(self, index: int) -> None:
        """Entry ``index`` went to another machine: close the votes whose deadline it
        passed (``VoteMachine.expire``) and the negotiations likewise."""
        self.votes.expire(index)
        self.negotiations.expire(index)

    def query(self, op: bytes) -> bytes:
        """Answer a read-only query (see the module docstring); never raises."""
        try:
            value = cbor.decode(op)
        except WireError as exc:
            return refused("malformed", f"coordination query: {exc}")
        if not (type(value) is list and len(value) == 2
                and value[0] in (OPEN, PROPOSE, BIND, NEGOTIATE) and type(value[1]) is bytes):
            return refused("malformed", "coordination query: not [1, auction_id], "
                           "[16, proposal_id], [8, agent_id] or [9, negotiation_id]")
        if value[0] == NEGOTIATE:
            n = self.negotiations.outcome(value[1])
            return applied(None if n is None else n.to_wire())
        if value[0] == BIND:
            binding = self.bindings.get(value[1])
            return applied(None if binding is None else binding.to_wire())
        if value[0] == OPEN:
            result = self.auctions.result(value[1])
            return applied([self.auctions.phase(value[1]),
                            None if result is None else result.to_wire()])
        outcome = self.votes.outcome(value[1])
        return applied(None if outcome is None else outcome.to_wire())

    def snapshot(self) -> bytes:
        """``[2, applied, auction snapshot, vote snapshot, bindings, negotiations]`` (the two
        snapshots as bytes, the bindings as ``BindingTable.to_wire``, the negotiations as
        ``NegotiationMachine.to_wire``)."""
        return cbor.encode([SNAPSHOT_VERSION, self._applied.index, self.auctions.snapshot(),
                            self.votes.snapshot(), self.bindings.to_wire(),
                            self.negotiations.to_wire()])

    def restore(self, data: bytes) -> None:
        """Replace both states by a snapshot's; a ``WireError`` leaves them unchanged."""
        value = decode_snapshot(data, MAX_SNAPSHOT_BYTES, "coordination snapshot")
        if (type(value) is not list or len(value) != 6 or value[0] != SNAPSHOT_VERSION
                or type(value[1]) is not int or value[1] < 0
                or type(value[2]) is not bytes or type(value[3]) is not bytes):
            raise MalformedError("coordination snapshot: expected [2, applied, bytes, bytes, "
                                 "bindings, negotiations]")
        bindings = BindingTable(max_agents=self.bindings.max_agents)
        bindings.restore_wire(value[4])
        negotiations = NegotiationMachine(max_active=self.negotiations.max_active,
                                          max_results=self.negotiations.max_results,
                                          bindings=bindings)
        negotiations.restore_wire(value[5])
        auctions, votes = AuctionMachine(
            max_active=self.auctions.max_active, max_bidders=self.auctions.max_bidders,
            max_results=self.auctions.max_results, bindings=bindings,
        ), VoteMachine(max_active=self.votes.max_active, max_results=self.votes.max_results,
                       bindings=bindings)
        auctions.restore(value[2])
        votes.restore(value[3])
        auctions.counters, votes.counters = self.auctions.counters, self.votes.counters
        bindings.counters = self.bindings.counters
        negotiations.counters = self.negotiations.counters
        self.auctions, self.votes, self.bindings = auctions, votes, bindings
        self.negotiations = negotiations
        self._applied = AppliedIndex(value[1])


def _tag(command: bytes) -> int | None:
    """The command number from the first bytes (an array head, then a uint below 24)."""
    if len(command) < 2 or not 0x81 <= command[0] <= 0x97 or command[1] >= 24:
        return None
    return command[1]
