"""Closing while the peer's last packets and its CONNECTION_CLOSE cross ours.

Found by the cluster soak (issue 11, ``/work/helpers/s5/S_to_T.md``): when both sides
close one connection at once (the duplicate of a simultaneous dial, at every member
restart), a packet of the peer that arrives while we are closing asks to repeat our
CONNECTION_CLOSE (``_close_pending``); if the peer's own CONNECTION_CLOSE comes right
after it, we enter the draining state with that request still set, and ``next_deadline``
answers "now" on every call until the close deadline, three PTOs later: the node's pump
ran ``handle_timer`` about 1,000 times a second and read no datagram meanwhile.
``Pair.run`` fails on such a busy loop (a deadline that stays due after its timer ran).
"""

from __future__ import annotations

from pair import Pair

from foundation_p2p.transport.connection import CLOSED


def test_draining_after_crossing_closes_waits_for_its_deadline_without_a_busy_loop() -> None:
    pair = Pair(21)
    assert pair.run(pair.established, max_time_s=5)
    server = pair.server
    assert server is not None
    sid = server.open_stream()
    server.send(sid, b"last words")
    pair._flush()  # the server's data packet is on its way to the client
    server.close(0, "duplicate")
    pair._flush()  # and right behind it, the server's CONNECTION_CLOSE
    pair.client.close(0, "duplicate")
    pair._flush()  # the client's CONNECTION_CLOSE crosses them
    # both arrive in one step: the data packet asks to repeat the close, then the close
    # puts the client in the draining state, which must send nothing and wait
    assert pair.run(lambda: pair.client.state == CLOSED and server.state == CLOSED,
                    max_time_s=10)
