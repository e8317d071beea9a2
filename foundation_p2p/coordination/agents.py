"""Agent records as stored in the registry, find-by-capability, and the handler interface.

An agent is registered under ``agent/<agent id hex>`` with a value
``[2, agent_id, name, capabilities, protocols, requirements]`` and metadata
``{"kind": "coordination-agent", "capabilities": [...]}`` (``spec/coordination.md`` 7).
The agent id is 16 random bytes drawn where the agent is started (:func:`new_agent_id`);
the agent holds no key: its bids and votes are signed by the node hosting it, which first
binds the agent to itself through the log (:func:`bind_command`).

Equivalent lower-level calls: ``RegistryCore.register(now, *record.to_registry())`` to
publish, ``RegistryCore.select(AGENT_PREFIX)`` then :func:`find_by_capability` to find.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from foundation_p2p.crypto.identity import Identity
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError
from foundation_p2p.wire import cbor

from .commitments import MAX_AMOUNT, new_agent_id, seal_bid, sign_binding, sign_vote
from .negotiation import Move, NegotiationView
from .wire import Bind, CastVote, CommitBid, OpenAuction, Propose, RevealBid, encode_command

AGENT_PREFIX = "agent/"
AGENT_KIND = "coordination-agent"
RECORD_VERSION = 2
MAX_ITEMS = 64
MAX_TEXT = 128
MAX_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent: id, display name, capabilities, protocols, requirements
    (``(resource, amount)`` pairs). Build with :meth:`create` to normalise and check."""

    agent_id: bytes
    name: str
    capabilities: tuple[str, ...]
    protocols: tuple[str, ...]
    requirements: tuple[tuple[str, int], ...]

    @classmethod
    def create(cls, name: str, agent_id: bytes, capabilities: Iterable[str] = (),
               protocols: Iterable[str] = ("auction", "vote", "negotiation"),
               requirements: Mapping[str, int] | None = None) -> AgentRecord:
        """A checked record (sorted, deduplicated lists); :class:`MalformedError` or
        :class:`LimitError` naming the bad field. ``agent_id``: :func:`new_agent_id`."""
        value = [RECORD_VERSION, agent_id, name,
                 sorted(set(capabilities)), sorted(set(protocols)),
                 [[k, v] for k, v in sorted((requirements or {}).items())]]
        return record_from_value(value)

    @property
    def registry_name(self) -> str:
        """The registry name: ``agent/`` + the id in hex."""
        return AGENT_PREFIX + self.agent_id.hex()

    def to_value(self) -> list[Any]:
        """The registry value (a CBOR array)."""
        return [RECORD_VERSION, self.agent_id, self.name,
                list(self.capabilities), list(self.protocols),
                [[k, v] for k, v in self.requirements]]

    def to_registry(self) -> tuple[str, list[Any], dict[str, Any]]:
        """``(name, value, metadata)`` for ``RegistryCore.register(now, ...)``."""
        return (self.registry_name, self.to_value(),
                {"kind": AGENT_KIND, "capabilities": list(self.capabilities)})


def _texts(v: Any, what: str) -> tuple[str, ...]:
    if type(v) is not list or any(type(t) is not str for t in v):
        raise MalformedError(f"agent: {what} must be an array of text")
    if len(v) > MAX_ITEMS or any(cbor.utf8_longer_than(t, MAX_TEXT) or not t for t in v):
        raise LimitError(f"agent: at most {MAX_ITEMS} {what} of 1..{MAX_TEXT} bytes")
    if v != sorted(set(v)):
        raise MalformedError(f"agent: {what} must be sorted without repeats")
    return tuple(v)


def record_from_value(value: Any) -> AgentRecord:
    """The record of a registry value; :class:`MalformedError`/:class:`LimitError`."""
    if type(value) is not list or len(value) != 6 or value[0] != RECORD_VERSION:
        raise MalformedError("agent: expected [2, id, name, capabilities, protocols, "
                             "requirements]")
    _, agent_id, name, caps, protos, reqs = value
    if type(agent_id) is not bytes or len(agent_id) != 16:
        raise MalformedError("agent: the id must be 16 bytes")
    if type(name) is not str or cbor.utf8_longer_than(name, MAX_TEXT):
        raise MalformedError(f"agent: name must be text of at most {MAX_TEXT} bytes")
    if type(reqs) is not list or len(reqs) > MAX_ITEMS:
        raise MalformedError(f"agent: requirements must be at most {MAX_ITEMS} pairs")
    pairs: list[tuple[str, int]] = []
    for r in reqs:
        if (type(r) is not list or len(r) != 2 or type(r[0]) is not str
                or type(r[1]) is not int or not 0 <= r[1] <= MAX_U64):
            raise MalformedError("agent: a requirement is not [resource, amount]")
        pairs.append((r[0], r[1]))
    _texts([p[0] for p in pairs], "requirement names")
    return AgentRecord(agent_id, name, _texts(caps, "capabilities"),
                       _texts(protos, "protocols"), tuple(pairs))


class RegistryEntryLike(Protocol):
    """What :func:`find_by_capability` reads from a registry entry."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> Any: ...


def find_by_capability(
    entries: Iterable[RegistryEntryLike], capability: str, *, protocol: str | None = None
) -> tuple[list[AgentRecord], int]:
    """The agents among ``entries`` with ``capability`` (and ``protocol`` if given), sorted
    by id, and how many ``agent/`` entries were skipped as malformed."""
    found: list[AgentRecord] = []
    bad = 0
    for e in entries:
        if not e.name.startswith(AGENT_PREFIX):
            continue
        try:
            rec = record_from_value(e.value)
        except WireError:
            bad += 1
            continue
        if e.name != rec.registry_name:
            bad += 1
            continue
        if capability in rec.capabilities and (protocol is None or protocol in rec.protocols):
            found.append(rec)
    found.sort(key=lambda r: r.agent_id)
    return found, bad


@dataclass(frozen=True, slots=True)
class AuctionView:
    """What a bidding agent sees of an open auction."""

    auction_id: bytes
    resources: tuple[str, ...]
    rule: int
    reserve: int
    units: int


@dataclass(frozen=True, slots=True)
class ProposalView:
    """What a voting agent sees of a proposal."""

    proposal_id: bytes
    subject: str
    rule: int
    quorum: int


class AgentHandler(Protocol):
    """The coordination requests an agent answers (the runtime bounds each by a timeout)."""

    def bid(self, auction: AuctionView) -> int | None:
        """The amount to bid, or ``None`` to stay out."""
        ...

    def vote(self, proposal: ProposalView) -> int:
        """0 (no), 1 (yes) or 2 (abstain)."""
        ...

    def offer(self, negotiation: NegotiationView) -> Move:
        """The next negotiation move."""
        ...


def auction_view(cmd: OpenAuction) -> AuctionView:
    """What bidders are shown of an open command."""
    return AuctionView(cmd.auction_id, cmd.resources, cmd.rule, cmd.reserve, cmd.units)


def proposal_view(cmd: Propose) -> ProposalView:
    """What voters are shown of a propose command."""
    return ProposalView(cmd.proposal_id, cmd.subject, cmd.rule, cmd.quorum)


def bind_command(node: Identity, agent_id: bytes, epoch: int) -> bytes:
    """The signed command binding ``agent_id`` to ``node`` at ``epoch`` (greater than the
    agent's current binding epoch, ``BindingTable.epoch``).

    Equivalent lower-level calls: :func:`commitments.sign_binding`,
    :func:`wire.encode_command` of ``Bind``.
    """
    return encode_command(Bind(agent_id, node.node_id, node.public_key, epoch,
                               sign_binding(node, agent_id, epoch)))


def bid_commands(
    handler: AgentHandler, auction: AuctionView, agent_id: bytes, node: Identity,
    secret_bytes: Callable[[int], bytes],
) -> tuple[bytes, bytes] | None:
    """Ask ``handler`` (agent ``agent_id``, hosted by ``node``) for its bid; ``None`` if it
    stays out, else the commit command (signed by ``node``) to submit now and the reveal
    command to keep secret until the commit phase closes.

    :class:`ConfigError` if the handler returns something that is not an amount.
    Equivalent lower-level calls: ``handler.bid``, :func:`commitments.seal_bid`,
    :func:`wire.encode_command` of ``CommitBid`` and ``RevealBid``.
    """
    amount = handler.bid(auction)
    if amount is None:
        return None
    if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
        raise ConfigError(f"agent bid {amount!r} is not an amount in 0..2**64-1")
    bid, reveal = seal_bid(node, agent_id, auction.auction_id, amount, secret_bytes)
    return (
        encode_command(CommitBid(bid.auction_id, bid.bidder, bid.node_id, bid.commitment,
                                 bid.signature)),
        encode_command(RevealBid(reveal.auction_id, reveal.bidder, reveal.amount,
                                 reveal.nonce)),
    )


def vote_command(handler: AgentHandler, proposal: ProposalView, agent_id: bytes,
                 node: Identity) -> bytes:
    """Ask ``handler`` (agent ``agent_id``, hosted by ``node``) for its vote and return the
    vote command signed by ``node``.

    Equivalent lower-level calls: ``handler.vote``, :func:`commitments.sign_vote`,
    :func:`wire.encode_command` of ``CastVote``.
    """
    choice = handler.vote(proposal)
    if choice not in (0, 1, 2) or type(choice) is not int:
        raise ConfigError(f"agent vote {choice!r} is not 0 (no), 1 (yes) or 2 (abstain)")
    return encode_command(CastVote(proposal.proposal_id, agent_id, node.node_id, choice,
                                   sign_vote(node, agent_id, proposal.proposal_id, choice)))


__all__ = [
    "AGENT_KIND",
    "AGENT_PREFIX",
    "AgentHandler",
    "AgentRecord",
    "AuctionView",
    "ProposalView",
    "auction_view",
    "bid_commands",
    "bind_command",
    "find_by_capability",
    "new_agent_id",
    "proposal_view",
    "record_from_value",
    "vote_command",
]
