"""A test application for ``foundation-p2p node run --app singleton_app:main``.

Every node defines the service ``ticker`` and, once it sees ``SINGLETON_APP_NODES`` members
alive (default 1), starts the cluster's singleton ``ticker`` (the same spec on every node:
one instance runs, where placement puts it). It prints, on stdout:

- ``singleton-running name=ticker node=<hex> handoff=<repr>`` when the service starts here;
- ``singleton-stopping name=ticker reason=<text>`` when it is asked to hand off;
- ``singleton-exited name=ticker`` when the service ends here (however it ends);
- ``lookup name=ticker owner=<hex or None>`` each time ``node.processes.lookup_singleton``
  changes on this node (checked after every pump step, no polling).
"""

from __future__ import annotations

import os
from typing import Any

from foundation_p2p.membership.state import MemberState


async def ticker(node: Any, args: Any, handoff: Any) -> Any:
    """The singleton: runs until the supervisor stops it; hands over where it ran."""
    print(
        f"singleton-running name=ticker node={node.node_id.hex()} handoff={handoff!r}",
        flush=True,
    )
    try:
        reason = await node.supervisor.stop_requested()
        print(f"singleton-stopping name=ticker reason={reason}", flush=True)
        return {"ran_on": node.node_id.hex()}
    finally:
        print("singleton-exited name=ticker", flush=True)


async def main(node: Any) -> None:
    """Define the service, start the singleton once the cluster is formed, report lookups."""
    expect = int(os.environ.get("SINGLETON_APP_NODES", "1"))
    node.supervisor.define_service("ticker", ticker)

    def alive() -> int:
        return sum(1 for m in node.members() if m.state is MemberState.ALIVE)

    await node.wait_until(lambda: alive() >= expect)
    node.processes.start_singleton("ticker", "ticker")
    last: Any = object()
    while True:
        owner = node.processes.lookup_singleton("ticker")
        if owner != last:
            print(f"lookup name=ticker owner={owner.hex() if owner else None}", flush=True)
            last = owner
        await node.wait_until(lambda seen=last: node.processes.lookup_singleton("ticker") != seen)
