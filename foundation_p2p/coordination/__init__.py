"""Agent coordination, sans-I/O: sealed-bid auctions, votes, negotiation, agent records.

- :mod:`.commitments`: the commitment hash, commit, vote and binding signatures (by the
  node hosting the agent), reveals;
- :mod:`.bindings`: :class:`BindingTable`, which node hosts each agent, agreed in log order;
- :mod:`.wire`: the commands (Raft entry data) and results;
- :mod:`.auction`: :class:`AuctionMachine` (first-price, second-price, multi-unit);
- :mod:`.voting`: :class:`VoteMachine`, :class:`ConsensusTimeout`, :class:`QuorumNotMet`;
- :mod:`.machine`: :class:`CoordinationMachine`, both behind one ``StateMachine``;
- :mod:`.negotiation`: alternating offers with a deadline and a round limit;
- :mod:`.agents`: the registry record, find-by-capability, the handler interface.

Nothing here reads a clock or draws randomness of its own (nonces come from a handed
``secret_bytes``); ``spec/coordination.md`` is the reference.
"""

from .agents import (
    AgentHandler,
    AgentRecord,
    bid_commands,
    bind_command,
    find_by_capability,
    vote_command,
)
from .auction import AuctionMachine, AuctionResult
from .bindings import Binding, BindingTable
from .commitments import (
    Reveal,
    SealedBid,
    commitment_hash,
    new_agent_id,
    seal_bid,
    sign_binding,
    sign_vote,
)
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
    "Binding",
    "BindingTable",
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
    "bind_command",
    "commitment_hash",
    "find_by_capability",
    "new_agent_id",
    "run_negotiation",
    "seal_bid",
    "sign_binding",
    "sign_vote",
    "vote_command",
]
