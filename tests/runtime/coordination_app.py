"""A test application for ``foundation-p2p node run --app coordination_app:main``.

Every node starts one coordination agent (a supervised singleton, placed where the
supervisor puts it) that bids ``COORD_APP_AMOUNT`` for the resource ``cpu``. Once
``COORD_APP_NODES`` agents are registered, the node with ``COORD_APP_OPENER=1`` runs
``node.coordination.coordinate_resource_allocation`` over all of them. Every node then
prints, once the auction's ``Finalize`` is applied in its own replica:

``result auction=<hex> winner=<agent id hex> bid=<amount> price=<price> node=<node id hex>
unrevealed=<n> late=<n>`` (one line)

and keeps running until stopped. Nothing is printed before the result is known.
"""

from __future__ import annotations

import os
from typing import Any


class FixedBidder:
    """Bids the amount it was started with; votes yes; accepts any offer."""

    def __init__(self, args: Any) -> None:
        self.amount = int(args["amount"])

    def bid(self, auction: Any) -> int | None:
        return self.amount

    def vote(self, proposal: Any) -> int:
        return 1

    def offer(self, negotiation: Any) -> Any:
        from foundation_p2p.coordination.negotiation import Accept, Offer

        return Accept() if negotiation.last_offer is not None else Offer(self.amount)


def make_agent(args: Any) -> FixedBidder:
    """The agent factory named by ``start_coordination_agent`` (importable on every node)."""
    return FixedBidder(args)


async def main(node: Any) -> None:
    """Start this node's agent; the opener runs the auction; everyone prints the result."""
    expect = int(os.environ.get("COORD_APP_NODES", "3"))
    amount = int(os.environ["COORD_APP_AMOUNT"])
    coord = node.coordination
    coord.start_coordination_agent("coordination_app:make_agent", {"amount": amount},
                                   name=f"bidder-{amount}", capabilities=["cpu"])
    await node.consensus.wait_leader()
    agents = await coord.wait_agents(expect, "cpu", timeout_s=120.0)
    if os.environ.get("COORD_APP_OPENER") == "1":
        # Phases close early once every bidder committed (revealed): the long windows only
        # matter on a loaded machine, where one run of the test under three parallel suites
        # saw two bids miss the 5 s default windows and the auction rightly end with one bid.
        await coord.coordinate_resource_allocation(
            [a.agent_id for a in agents], ["cpu"], timeout_s=120.0,
            commit_timeout_s=60.0, reveal_timeout_s=60.0)
    await node.wait_until(lambda: bool(coord.results))
    (aid, result), = coord.results.items()
    (winner, bid), = result.winners
    print(f"result auction={aid.hex()} winner={winner.hex()} bid={bid} price={result.price} "
          f"node={node.node_id.hex()} unrevealed={len(result.unrevealed)} "
          f"late={len(result.late)}", flush=True)
