"""Plain UDP probes between network namespaces: verify that a fault is applied.

Run inside a namespace (``ip netns exec NS python netns_probe.py ...``):

- ``echo PORT``: answer every datagram on ``0.0.0.0:PORT`` with the same bytes, forever;
  prints ``ready`` once bound.
- ``probe COUNT HOST:PORT...``: send ``COUNT`` numbered datagrams to each echo server, in
  batches of :data:`BATCH` to all at once, and count the distinct answers; a batch ends
  when every target answered and then none for :data:`QUIET_S`, or after
  :data:`FIRST_S` if a target has not answered (a cut one: a partition check costs
  :data:`FIRST_S` per batch); late answers count until none came for :data:`DRAIN_S`.
  Prints one JSON object ``{"answers": {"HOST:PORT": answers, ...}, "seconds": s}``.

Nothing here knows about the node: these are the probes the fault is judged by, before
the protocol is.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import sys
import time

BATCH = 50
FIRST_S = 2.0
"""A batch's first answer is awaited this long (a loaded machine may not run the echo
server at once)."""
QUIET_S = 0.05
"""Once every target answered, a batch's answers are awaited until none came for this long (veth
round trips are well under a millisecond)."""
DRAIN_S = 0.3
"""After the last batch, answers are still counted until none came for this long."""


def echo(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, src = sock.recvfrom(2048)
        sock.sendto(data, src)


def _collect(sock: socket.socket, got: list[set[int]], wait: float) -> int | None:
    """Receive one answer within ``wait`` seconds into ``got``; its target's tag, or None."""
    ready, _, _ = select.select([sock], [], [], max(wait, 0.0))
    if not ready:
        return None
    data, _src = sock.recvfrom(2048)
    if len(data) == 8:
        tag, i = struct.unpack("!II", data)
        if tag < len(got):
            got[tag].add(i)
            return int(tag)
    return -1


def probe(count: int, targets: list[str]) -> dict[str, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("0.0.0.0", 0))
    addrs = []
    for text in targets:
        host, port = text.rsplit(":", 1)
        addrs.append((host, int(port)))
    got: list[set[int]] = [set() for _ in targets]
    seq = 0
    while seq < count:
        n = min(BATCH, count - seq)
        for tag, addr in enumerate(addrs):
            for i in range(seq, seq + n):
                with contextlib.suppress(OSError):  # a local refusal: that probe is lost
                    sock.sendto(struct.pack("!II", tag, i), addr)
        seq += n
        first_by = time.monotonic() + FIRST_S
        answered: set[int] = set()
        while True:
            wait = QUIET_S if len(answered) == len(addrs) else first_by - time.monotonic()
            if wait <= 0:
                break
            tag = _collect(sock, got, wait)
            if tag is None:
                break
            answered.add(tag)
    # stragglers of the last batches (a loaded machine answers late, not never)
    while _collect(sock, got, DRAIN_S) is not None:
        pass
    return {text: len(g) for text, g in zip(targets, got, strict=True)}


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "echo":
        echo(int(argv[1]))
        return 0
    if len(argv) >= 3 and argv[0] == "probe":
        started = time.monotonic()
        result = probe(int(argv[1]), argv[2:])
        print(json.dumps({"answers": result, "seconds": time.monotonic() - started}))
        return 0
    print("usage: netns_probe.py echo PORT | probe COUNT HOST:PORT...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
