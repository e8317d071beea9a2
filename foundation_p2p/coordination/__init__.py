"""Agent coordination, sans-I/O: sealed-bid auctions, votes, negotiation, agent records.

- :mod:`.commitments`: the commitment hash, commit and vote signatures, reveals;
- :mod:`.wire`: the commands (Raft entry data) and results;
- :mod:`.auction`: :class:`AuctionMachine` (first-price, second-price, multi-unit);
- :mod:`.voting`: :class:`VoteMachine`, :class:`ConsensusTimeout`, :class:`QuorumNotMet`;
- :mod:`.machine`: :class:`CoordinationMachine`, both behind one ``StateMachine``;
- :mod:`.negotiation`: alternating offers with a deadline and a round limit;
- :mod:`.agents`: the registry record, find-by-capability, the handler interface.

Nothing here reads a clock or draws randomness of its own (nonces come from a handed
``secret_bytes``); ``spec/coordination.md`` is the reference.
"""

from .agents import AgentHandler, AgentRecord, bid_commands, find_by_capability, vote_command
from .auction import AuctionMachine, AuctionResult
from .commitments import Reveal, SealedBid, commitment_hash, seal_bid, sign_vote
from .machine import CoordinationMachine
from .negotiation import (
    Accept,
    Agreement,
    LinearConcession,
    Negotiation,
    NegotiationFailed,
    Offer,
    Reject,
    run_negotiation,
)
from .voting import ConsensusTimeout, QuorumNotMet, VoteMachine, VoteOutcome

__all__ = [
    "Accept",
    "AgentHandler",
    "AgentRecord",
    "Agreement",
    "AuctionMachine",
    "AuctionResult",
    "ConsensusTimeout",
    "CoordinationMachine",
    "LinearConcession",
    "Negotiation",
    "NegotiationFailed",
    "Offer",
    "QuorumNotMet",
    "Reject",
    "Reveal",
    "SealedBid",
    "VoteMachine",
    "VoteOutcome",
    "bid_commands",
    "commitment_hash",
    "find_by_capability",
    "run_negotiation",
    "seal_bid",
    "sign_vote",
    "vote_command",
]
