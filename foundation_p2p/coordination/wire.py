"""CBOR encoding of the coordination commands and results (``spec/coordination.md`` 3-5).

Every command is a CBOR array whose first element names it:

- auctions: ``[1, auction_id, resources, rule, reserve, units]`` open (or
  ``[1, auction_id, resources, rule, reserve, units, bidders]`` naming the only bidder ids
  that may commit: a non-empty array sorted without repeats; absent means anyone),
  ``[2, auction_id, bidder, node_id, commitment, signature]`` commit (bidder: an agent id;
  node_id: the node hosting it, whose key made the signature),
  ``[3, auction_id]`` close commit phase, ``[4, auction_id, bidder, amount, nonce]`` reveal,
  ``[5, auction_id]`` finalize;
- votes: ``[16, proposal_id, subject, [rule, n], eligible, deadline]`` propose with
  eligible ``[[voter, weight], ...]`` (agent ids), ``[17, proposal_id, voter, node_id,
  choice, signature]`` vote, ``[18, proposal_id]`` close;
- agents: ``[8, agent_id, node_id, public_key, epoch, signature]`` bind (the node
  ``node_id``, whose key is ``public_key``, hosts ``agent_id`` from now on);
- negotiations: ``[9, negotiation_id, subject, initiator, responder, round_limit,
  deadline]`` open, ``[10, negotiation_id, party, node_id, round, kind, value, signature]``
  move (kind 0 offer of ``value``, 1 accept, 2 reject; ``value`` 0 unless an offer),
  ``[11, negotiation_id]`` close.

A result is ``[0, detail]`` (applied), ``[1, detail]`` (a duplicate of an applied command:
nothing changed) or ``[2, code, message]`` (refused). Decoders raise only
:class:`~foundation_p2p.errors.WireError` subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from foundation_p2p.errors import LimitError, MalformedError
from foundation_p2p.wire import cbor

OPEN, COMMIT, CLOSE_COMMIT, REVEAL, FINALIZE = 1, 2, 3, 4, 5
BIND = 8
NEGOTIATE, MOVE, CLOSE_NEGOTIATION = 9, 10, 11
OFFER_MOVE, ACCEPT_MOVE, REJECT_MOVE = 0, 1, 2
MAX_ROUND_LIMIT = 1024
PROPOSE, VOTE, CLOSE_VOTE = 16, 17, 18

FIRST_PRICE, SECOND_PRICE, MULTI_UNIT = 1, 2, 3
RULE_NAMES = {FIRST_PRICE: "first-price", SECOND_PRICE: "second-price", MULTI_UNIT: "multi-unit"}
MAJORITY, SUPERMAJORITY, UNANIMOUS, QUORUM, WEIGHTED = 1, 2, 3, 4, 5
VOTE_RULE_NAMES = {
    MAJORITY: "majority", SUPERMAJORITY: "supermajority", UNANIMOUS: "unanimous",
    QUORUM: "quorum", WEIGHTED: "weighted",
}
NO, YES, ABSTAIN = 0, 1, 2

MAX_RESOURCES = 64
MAX_TEXT_BYTES = 256
MAX_UNITS = 1024
MAX_ELIGIBLE = 1024
MAX_WEIGHT = 1 << 32
MAX_U64 = (1 << 64) - 1
MAX_COMMAND_BYTES = 65_507

APPLIED, DUPLICATE, REFUSED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class OpenAuction:
    auction_id: bytes
    resources: tuple[str, ...]
    rule: int
    reserve: int
    units: int
    bidders: tuple[bytes, ...] = ()
    """The only bidder ids that may commit (sorted, no repeats); empty: anyone."""


@dataclass(frozen=True, slots=True)
class CommitBid:
    auction_id: bytes
    bidder: bytes
    """The bidding agent's id."""
    node_id: bytes
    """The node hosting the agent, whose key signed the commit."""
    commitment: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class CloseCommit:
    auction_id: bytes


@dataclass(frozen=True, slots=True)
class RevealBid:
    auction_id: bytes
    bidder: bytes
    amount: int
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Finalize:
    auction_id: bytes


@dataclass(frozen=True, slots=True)
class Voter:
    voter: bytes
    """An agent id (its key is the one of the node it is bound to when it votes)."""
    weight: int


@dataclass(frozen=True, slots=True)
class Propose:
    proposal_id: bytes
    subject: str
    rule: int
    quorum: int
    eligible: tuple[Voter, ...]
    deadline: int


@dataclass(frozen=True, slots=True)
class CastVote:
    proposal_id: bytes
    voter: bytes
    node_id: bytes
    """The node hosting the voting agent, whose key signed the vote."""
    choice: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class CloseVote:
    proposal_id: bytes


@dataclass(frozen=True, slots=True)
class Bind:
    """Node ``node_id`` (key ``public_key``) hosts agent ``agent_id`` from this entry on;
    ``epoch`` orders the bindings of one agent (each must exceed the last)."""

    agent_id: bytes
    node_id: bytes
    public_key: bytes
    epoch: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class OpenNegotiation:
    """Alternating offers between agents ``initiator`` (first) and ``responder``;
    ``deadline`` counts log entries after this one."""

    negotiation_id: bytes
    subject: str
    initiator: bytes
    responder: bytes
    round_limit: int
    deadline: int


@dataclass(frozen=True, slots=True)
class NegotiationMove:
    """Agent ``party``'s move in round ``round``, signed by its host ``node_id``."""

    negotiation_id: bytes
    party: bytes
    node_id: bytes
    round: int
    kind: int
    value: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class CloseNegotiation:
    negotiation_id: bytes


Command = (
    OpenAuction | CommitBid | CloseCommit | RevealBid | Finalize | Propose | CastVote
    | CloseVote | Bind | OpenNegotiation | NegotiationMove | CloseNegotiation
)


def encode_command(cmd: Command) -> bytes:
    """The deterministic CBOR bytes of ``cmd`` (the Raft entry's data)."""
    return cbor.encode(command_to_wire(cmd))


def command_to_wire(cmd: Command) -> list[Any]:
    """The CBOR value of ``cmd``."""
    if isinstance(cmd, OpenAuction):
        out: list[Any] = [OPEN, cmd.auction_id, list(cmd.resources), cmd.rule, cmd.reserve,
                          cmd.units]
        if cmd.bidders:
            out.append(list(cmd.bidders))
        return out
    if isinstance(cmd, CommitBid):
        return [COMMIT, cmd.auction_id, cmd.bidder, cmd.node_id, cmd.commitment,
                cmd.signature]
    if isinstance(cmd, CloseCommit):
        return [CLOSE_COMMIT, cmd.auction_id]
    if isinstance(cmd, RevealBid):
        return [REVEAL, cmd.auction_id, cmd.bidder, cmd.amount, cmd.nonce]
    if isinstance(cmd, Finalize):
        return [FINALIZE, cmd.auction_id]
    if isinstance(cmd, Propose):
        return [PROPOSE, cmd.proposal_id, cmd.subject, [cmd.rule, cmd.quorum],
                [[v.voter, v.weight] for v in cmd.eligible], cmd.deadline]
    if isinstance(cmd, CastVote):
        return [VOTE, cmd.proposal_id, cmd.voter, cmd.node_id, cmd.choice, cmd.signature]
    if isinstance(cmd, Bind):
        return [BIND, cmd.agent_id, cmd.node_id, cmd.public_key, cmd.epoch, cmd.signature]
    if isinstance(cmd, OpenNegotiation):
        return [NEGOTIATE, cmd.negotiation_id, cmd.subject, cmd.initiator, cmd.responder,
                cmd.round_limit, cmd.deadline]
    if isinstance(cmd, NegotiationMove):
        return [MOVE, cmd.negotiation_id, cmd.party, cmd.node_id, cmd.round, cmd.kind,
                cmd.value, cmd.signature]
    if isinstance(cmd, CloseNegotiation):
        return [CLOSE_NEGOTIATION, cmd.negotiation_id]
    return [CLOSE_VOTE, cmd.proposal_id]


def _bstr(v: Any, size: int | tuple[int, int], what: str) -> bytes:
    if type(v) is not bytes:
        raise MalformedError(f"{what}: expected a byte string")
    lo, hi = (size, size) if isinstance(size, int) else size
    if not lo <= len(v) <= hi:
        want = f"{lo}" if lo == hi else f"{lo}..{hi}"
        raise MalformedError(f"{what}: {len(v)} bytes, expected {want}")
    return v


def _uint(v: Any, hi: int, what: str, lo: int = 0) -> int:
    if type(v) is not int or v < 0:
        raise MalformedError(f"{what}: expected an unsigned integer")
    if not lo <= v <= hi:
        raise LimitError(f"{what}: {v} outside {lo}..{hi}")
    return v


def _text(v: Any, what: str) -> str:
    if type(v) is not str:
        raise MalformedError(f"{what}: expected a text string")
    if cbor.utf8_longer_than(v, MAX_TEXT_BYTES):
        raise LimitError(f"{what}: longer than {MAX_TEXT_BYTES} bytes")
    return v


def _array(v: Any, n: int, what: str) -> list[Any]:
    if type(v) is not list or len(v) != n:
        raise MalformedError(f"{what}: expected an array of {n}")
    return v


def _bidders(v: Any) -> tuple[bytes, ...]:
    if type(v) is not list or not v:
        raise MalformedError("open: bidders must be a non-empty array")
    if len(v) > MAX_ELIGIBLE:
        raise LimitError(f"open: more than {MAX_ELIGIBLE} bidders")
    ids = [_bstr(b, 16, "open: bidder") for b in v]
    if ids != sorted(set(ids)):
        raise MalformedError("open: bidders must be sorted by id, no repeats")
    return tuple(ids)


def command_from_wire(value: Any) -> Command:
    """The command of a decoded CBOR value; :class:`MalformedError`/:class:`LimitError`."""
    if type(value) is not list or not value:
        raise MalformedError("coordination command: expected a non-empty array")
    tag = value[0]
    if type(tag) is not int:
        raise MalformedError("coordination command: the first element must be an integer")
    if tag == OPEN:
        bidders: tuple[bytes, ...] = ()
        if len(value) == 7:
            bidders = _bidders(value[6])
            value = value[:6]
        _, aid, res, rule, reserve, units = _array(value, 6, "open")
        if type(res) is not list:
            raise MalformedError("open: resources must be an array")
        if len(res) > MAX_RESOURCES:
            raise LimitError(f"open: more than {MAX_RESOURCES} resources")
        rule = _uint(rule, 3, "open: rule", 1)
        units = _uint(units, MAX_UNITS, "open: units", 1)
        if rule != MULTI_UNIT and units != 1:
            raise MalformedError("open: first- and second-price auctions sell one unit")
        return OpenAuction(
            _bstr(aid, 16, "open: auction id"),
            tuple(_text(r, "open: resource") for r in res),
            rule, _uint(reserve, MAX_U64, "open: reserve"), units, bidders,
        )
    if tag == COMMIT:
        _, aid, bidder, node, com, sig = _array(value, 6, "commit")
        return CommitBid(
            _bstr(aid, 16, "commit: auction id"), _bstr(bidder, 16, "commit: bidder"),
            _bstr(node, 16, "commit: node id"), _bstr(com, 32, "commit: commitment"),
            _bstr(sig, 64, "commit: signature"),
        )
    if tag == CLOSE_COMMIT:
        return CloseCommit(_bstr(_array(value, 2, "close-commit")[1], 16, "close-commit: id"))
    if tag == REVEAL:
        _, aid, bidder, amount, nonce = _array(value, 5, "reveal")
        return RevealBid(
            _bstr(aid, 16, "reveal: auction id"), _bstr(bidder, 16, "reveal: bidder"),
            _uint(amount, MAX_U64, "reveal: amount"), _bstr(nonce, (16, 64), "reveal: nonce"),
        )
    if tag == FINALIZE:
        return Finalize(_bstr(_array(value, 2, "finalize")[1], 16, "finalize: auction id"))
    if tag == PROPOSE:
        _, pid, subject, rule, eligible, deadline = _array(value, 6, "propose")
        kind, quorum = _array(rule, 2, "propose: rule")
        kind = _uint(kind, 5, "propose: rule", 1)
        if type(eligible) is not list or not eligible:
            raise MalformedError("propose: eligible must be a non-empty array")
        if len(eligible) > MAX_ELIGIBLE:
            raise LimitError(f"propose: more than {MAX_ELIGIBLE} eligible voters")
        voters = []
        for e in eligible:
            voter, weight = _array(e, 2, "propose: eligible voter")
            voters.append(Voter(
                _bstr(voter, 16, "propose: voter"),
                _uint(weight, MAX_WEIGHT, "propose: weight", 1),
            ))
        ids = [v.voter for v in voters]
        if ids != sorted(set(ids)):
            raise MalformedError("propose: eligible voters must be sorted by id, no repeats")
        quorum = _uint(quorum, MAX_ELIGIBLE, "propose: quorum")
        if (kind == QUORUM) != (quorum > 0) or quorum > len(voters):
            raise MalformedError("propose: quorum n is 1..len(eligible) for quorum(n), else 0")
        return Propose(
            _bstr(pid, 16, "propose: proposal id"), _text(subject, "propose: subject"),
            kind, quorum, tuple(voters), _uint(deadline, MAX_U64, "propose: deadline"),
        )
    if tag == VOTE:
        _, pid, voter, node, choice, sig = _array(value, 6, "vote")
        return CastVote(
            _bstr(pid, 16, "vote: proposal id"), _bstr(voter, 16, "vote: voter"),
            _bstr(node, 16, "vote: node id"), _uint(choice, 2, "vote: choice"),
            _bstr(sig, 64, "vote: signature"),
        )
    if tag == CLOSE_VOTE:
        return CloseVote(_bstr(_array(value, 2, "close-vote")[1], 16, "close-vote: id"))
    if tag == BIND:
        _, agent, node, pk, epoch, sig = _array(value, 6, "bind")
        return Bind(
            _bstr(agent, 16, "bind: agent id"), _bstr(node, 16, "bind: node id"),
            _bstr(pk, 32, "bind: public key"), _uint(epoch, MAX_U64, "bind: epoch", 1),
            _bstr(sig, 64, "bind: signature"),
        )
    if tag == NEGOTIATE:
        _, nid, subject, init, resp, limit, deadline = _array(value, 7, "negotiate")
        init = _bstr(init, 16, "negotiate: initiator")
        if _bstr(resp, 16, "negotiate: responder") == init:
            raise MalformedError("negotiate: the initiator and the responder must differ")
        return OpenNegotiation(
            _bstr(nid, 16, "negotiate: negotiation id"), _text(subject, "negotiate: subject"),
            init, resp, _uint(limit, MAX_ROUND_LIMIT, "negotiate: round limit", 1),
            _uint(deadline, MAX_U64, "negotiate: deadline", 1),
        )
    if tag == MOVE:
        _, nid, party, node, rnd, kind, val, sig = _array(value, 8, "move")
        kind = _uint(kind, REJECT_MOVE, "move: kind")
        val = _uint(val, MAX_U64, "move: value")
        if kind != OFFER_MOVE and val != 0:
            raise MalformedError("move: the value is 0 unless the move is an offer")
        return NegotiationMove(
            _bstr(nid, 16, "move: negotiation id"), _bstr(party, 16, "move: party"),
            _bstr(node, 16, "move: node id"), _uint(rnd, MAX_ROUND_LIMIT, "move: round"),
            kind, val, _bstr(sig, 64, "move: signature"),
        )
    if tag == CLOSE_NEGOTIATION:
        return CloseNegotiation(_bstr(_array(value, 2, "close-negotiation")[1], 16,
                                      "close-negotiation: id"))
    raise MalformedError(f"coordination command: unknown command {tag}")


def decode_command(data: bytes) -> Command:
    """The command of an entry's bytes (raises only ``WireError`` subclasses)."""
    if len(data) > MAX_COMMAND_BYTES:
        raise LimitError(f"coordination command: {len(data)} bytes > {MAX_COMMAND_BYTES}")
    return command_from_wire(cbor.decode(data))


def applied(detail: Any = None) -> bytes:
    """The result of an applied command."""
    return cbor.encode([APPLIED, detail])


def duplicate(detail: Any = None) -> bytes:
    """The result of a retried command that was already applied (nothing changed)."""
    return cbor.encode([DUPLICATE, detail])


def refused(code: str, message: str) -> bytes:
    """The result of a refused command: a short ``code`` and a message naming the problem."""
    return cbor.encode([REFUSED, code, message])


def decode_snapshot(data: bytes, max_bytes: int, what: str) -> Any:
    """Decode a snapshot: one deterministic CBOR item of at most ``max_bytes``, nesting at
    most 8 deep (snapshots exceed the packet limit ``cbor.decode`` enforces)."""
    if type(data) is not bytes:
        raise MalformedError(f"{what}: not bytes")
    if len(data) > max_bytes:
        raise LimitError(f"{what}: {len(data)} bytes exceed the limit of {max_bytes}")
    try:
        value = cbor2.loads(data, max_depth=8, allow_indefinite=False)
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # cbor2 raises many types; all mean "not our CBOR"
        raise MalformedError(f"{what}: not well-formed CBOR: {type(exc).__name__}") from None
    if again != data:
        raise MalformedError(f"{what}: not deterministic CBOR (or trailing bytes)")
    return value
