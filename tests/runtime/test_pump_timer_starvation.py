"""A timer that is due on every round of the pump must not stop it reading its socket.

Found by the cluster soak (``soak/cluster.py``, issue 11): a node's pump ran
``core.handle_timer`` about 1,000 times a second for two seconds without reading one
datagram (``soak.app`` counts the ``handle_timer`` calls between two reads), and a Raft
leader whose pump does that keeps sending heartbeats on its ticks but reads no answer, so
check-quorum makes it step down after one election timeout and the proposals forwarded to
it are lost (``/work/helpers/s5/S_to_P.md``). Here ``core.next_deadline`` is made to say
"due now" on every round, the worst case of such a timer; a ping from a
:class:`RawPeer` must still be read and answered within a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.runtime import open_node
from foundation_p2p.runtime.rawpeer import RawPeer

WAIT_S = 5.0
"""Bound on the ping's answer (milliseconds on loopback when the pump reads)."""


async def test_a_timer_due_on_every_round_does_not_starve_the_reads(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(name="a"), keyring=keyring) as a:
        peer = await RawPeer.open(keyring)
        real_next_deadline = a.core.next_deadline
        rounds = [0]

        def always_due() -> float | None:
            rounds[0] += 1
            real_next_deadline()
            return time.monotonic() - 1.0

        try:
            with trio.fail_after(WAIT_S):
                assert await peer.ping(a.address) > 0  # a normal pump reads it
            a.core.next_deadline = always_due  # type: ignore[method-assign]
            before = a.counters["udp.datagrams_received"]
            with trio.move_on_after(WAIT_S):
                assert await peer.ping(a.address) > 0
            assert rounds[0] >= 1, "the pump never asked for its deadline"
            assert a.counters["udp.datagrams_received"] > before, (
                f"{rounds[0]} pump rounds with a due timer read no datagram in {WAIT_S:g} s"
            )
        finally:
            a.core.next_deadline = real_next_deadline  # type: ignore[method-assign]
            peer.close()
